// Kubernetes objects the harness makes on a cluster: simulated Nodes, namespaces ready for
// pods, ServiceAccount tokens and KubeConfigs that authenticate with them; and a pod's Events.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { EventsV1Api, EventsV1Event, V1Node } from '@kubernetes/client-node';
import { pollUntil } from './poll.ts';

const isConflict = (error: unknown) => (error as { code?: number }).code === 409;
const ignoreConflict = (error: unknown) => {
  if (!isConflict(error)) throw error;
};
const ignoreNotFound = (error: unknown) => {
  if ((error as { code?: number }).code !== 404) throw error;
};

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

/**
 * Creates namespace NAME and its `default` ServiceAccount, so pods are admitted at once (also
 * without kube-controller-manager, which would make it a moment later). Delete it with deleteNamespace.
 */
export async function createNamespace(
  kc: KubeConfig,
  name: string,
  metadata: { labels?: Record<string, string>; annotations?: Record<string, string> } = {},
): Promise<string> {
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name, ...metadata } } });
  // kube-controller-manager, when it runs, creates it too; whoever is second gets 409.
  await core.createNamespacedServiceAccount({ namespace: name, body: { metadata: { name: 'default' } } }).catch(ignoreConflict);
  return name;
}

/** Deletes the namespace and, at once (grace 0), its pods; ignores one already gone. */
export async function deleteNamespace(kc: KubeConfig, name: string): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  // No kubelet confirms the deletion of pods that name a simulated node, so they (and with
  // them the namespace) would stay Terminating for ever: remove them at once.
  await core.deleteCollectionNamespacedPod({ namespace: name, gracePeriodSeconds: 0 }).catch(ignoreNotFound);
  // The namespace controller (kube-controller-manager) removes the namespace and its contents.
  await core.deleteNamespace({ name }).catch(ignoreNotFound);
}

export interface ServiceAccountTokenOptions {
  /** Bind the token to this pod: its user then carries authentication.kubernetes.io/node-name (and pod-name, pod-uid). */
  boundPod?: { name: string; uid: string };
  expirationSeconds?: number;
}

/** Creates the ServiceAccount when missing and returns a token for it from the TokenRequest API. */
export async function createServiceAccountToken(kc: KubeConfig, namespace: string, name: string, options: ServiceAccountTokenOptions = {}): Promise<string> {
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

/** The events.k8s.io Events regarding the pod (by its UID, so a pod of the same name before it does not count). */
export async function podEvents(events: EventsV1Api, pod: { namespace: string; uid: string }): Promise<EventsV1Event[]> {
  const list = await events.listNamespacedEvent({ namespace: pod.namespace });
  return list.items.filter((event) => event.regarding?.uid === pod.uid);
}

/** Waits for the pod's first Event with REASON. */
export async function waitForPodEvent(
  events: EventsV1Api,
  pod: { namespace: string; name: string; uid: string },
  reason: string,
  timeoutMs = 20_000,
): Promise<EventsV1Event> {
  let found: EventsV1Event | undefined;
  await pollUntil(
    async () => (found = (await podEvents(events, pod)).find((event) => event.reason === reason)) !== undefined,
    timeoutMs,
    () => `pod ${pod.namespace}/${pod.name}: no ${reason} Event within ${timeoutMs} ms`,
  );
  return found as EventsV1Event;
}
