// Fixture helpers for tests against the real control plane started by cluster-global-setup.ts.
// Also importable outside vitest (the demo and benchmarks use ensureNode): only
// adminKubeConfig() and freshNamespace() need the vitest runner.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { V1Node } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { afterAll, inject, onTestFinished } from 'vitest';

const isConflict = (error: unknown) => (error as { code?: number }).code === 409;
const ignoreConflict = (error: unknown) => {
  if (!isConflict(error)) throw error;
};

/** A client-node KubeConfig for the cluster admin (O=system:masters: RBAC does not apply to it). */
export function adminKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfig'));
  return kc;
}

// Namespaces made outside a running test (in beforeAll) are deleted when the test file ends.
const namespacesOfFile: { kc: KubeConfig; name: string }[] = [];
try {
  afterAll(async () => {
    for (const { kc, name } of namespacesOfFile.splice(0)) await deleteNamespace(kc, name);
  });
} catch {
  // Not inside a vitest test file (the demo, a benchmark): nothing registers namespaces then.
}

async function deleteNamespace(kc: KubeConfig, name: string): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  const ignoreNotFound = (error: unknown) => {
    if ((error as { code?: number }).code !== 404) throw error;
  };
  // No kubelet confirms the deletion of pods that name a node, so they (and with them the
  // namespace) would stay Terminating for ever: remove them at once.
  await core.deleteCollectionNamespacedPod({ namespace: name, gracePeriodSeconds: 0 }).catch(ignoreNotFound);
  // The test cluster runs the namespace controller, so the namespace and its contents go away.
  await core.deleteNamespace({ name }).catch(ignoreNotFound);
}

/**
 * Creates a namespace with a unique name (and its `default` ServiceAccount, so pods are admitted
 * at once) and deletes it after the current test, or after the test file when called outside a test.
 */
export async function freshNamespace(kc: KubeConfig, labels: Record<string, string> = {}): Promise<string> {
  const core = kc.makeApiClient(CoreV1Api);
  const name = `pnc-test-${randomBytes(4).toString('hex')}`;
  await core.createNamespace({ body: { metadata: { name, labels } } });
  try {
    onTestFinished(() => deleteNamespace(kc, name));
  } catch {
    namespacesOfFile.push({ kc, name });
  }
  // kube-controller-manager creates it too, a moment later; whoever is second gets 409.
  await core.createNamespacedServiceAccount({ namespace: name, body: { metadata: { name: 'default' } } }).catch(ignoreConflict);
  return name;
}

export interface ServiceAccountTokenOptions {
  /** Bind the token to this pod: its user then carries authentication.kubernetes.io/node-name (and pod-name, pod-uid). */
  boundPod?: { name: string; uid: string };
  expirationSeconds?: number;
}

/** Creates the ServiceAccount when missing and returns a token for it from the TokenRequest API. */
export async function createServiceAccountToken(
  kc: KubeConfig,
  namespace: string,
  name: string,
  options: ServiceAccountTokenOptions = {},
): Promise<string> {
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } }).catch(ignoreConflict);
  const { boundPod, expirationSeconds = 3600 } = options;
  const request = await core.createNamespacedServiceAccountToken({
    name,
    namespace,
    body: {
      spec: {
        audiences: [],
        expirationSeconds,
        ...(boundPod && { boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: boundPod.name, uid: boundPod.uid } }),
      },
    },
  });
  const token = request.status?.token;
  if (!token) throw new Error(`TokenRequest for ${namespace}/${name} returned no token`);
  return token;
}

/** A KubeConfig for the same cluster that authenticates with TOKEN (and so is subject to RBAC). */
export function kubeConfigForToken(kc: KubeConfig, token: string): KubeConfig {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeConfigForToken: the KubeConfig has no current cluster');
  const asToken = new KubeConfig();
  asToken.loadFromOptions({
    clusters: [cluster],
    users: [{ name: 'token-user', token }],
    contexts: [{ name: 'token', cluster: cluster.name, user: 'token-user' }],
    currentContext: 'token',
  });
  return asToken;
}

/** Creates the Node object NAME when missing (no kubelet behind it), so pods and pod-bound tokens can name it. */
export async function ensureNode(kc: KubeConfig, name: string): Promise<V1Node> {
  const core = kc.makeApiClient(CoreV1Api);
  try {
    return await core.createNode({
      body: { metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux' } } },
    });
  } catch (error) {
    if (!isConflict(error)) throw error;
    return core.readNode({ name });
  }
}
