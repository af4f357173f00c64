// Vitest fixtures for tests against the real control plane started by cluster-global-setup.ts;
// the objects themselves are made by the harness (hack/lib/kube-objects.ts).
import { AdmissionregistrationV1Api, KubeConfig } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { afterAll, inject, onTestFinished } from 'vitest';
import { createNamespace, deleteNamespace } from '../../hack/lib/kube-objects.ts';

/** A client-node KubeConfig for the cluster admin (O=system:masters: RBAC does not apply to it). */
export function adminKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfig'));
  return kc;
}

// Namespaces made outside a running test (in beforeAll) are deleted when the test file ends.
const namespacesOfFile: { kc: KubeConfig; name: string }[] = [];
afterAll(async () => {
  for (const { kc, name } of namespacesOfFile.splice(0)) await deleteNamespace(kc, name);
});

/**
 * Creates a namespace with a unique name (and its `default` ServiceAccount, so pods are admitted
 * at once) and deletes it after the current test, or after the test file when called outside a test.
 */
export async function freshNamespace(kc: KubeConfig, labels: Record<string, string> = {}): Promise<string> {
  const name = `pnc-test-${randomBytes(4).toString('hex')}`;
  // Registered before the ServiceAccount is made, so a failure there still removes the namespace.
  await createNamespace(kc, name, { labels }).finally(() => {
    try {
      onTestFinished(() => deleteNamespace(kc, name));
    } catch {
      namespacesOfFile.push({ kc, name });
    }
  });
  return name;
}

/**
 * Whether the API server serves MutatingAdmissionPolicy v1, which our injection is: a stock one
 * does from Kubernetes 1.36; on 1.35, the oldest release we support, it does not.
 */
export async function servesMutatingAdmissionPolicyV1(kc: KubeConfig): Promise<boolean> {
  const resources = await kc.makeApiClient(AdmissionregistrationV1Api).getAPIResources();
  return resources.resources.some((resource) => resource.name === 'mutatingadmissionpolicies');
}
