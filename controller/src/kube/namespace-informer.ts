// One shared namespace cache, never a GET per pod: eligibility reads a namespace's opt-in
// annotation from here, the proxy identity its OpenShift UID and group ranges
// (openshift.io/sa.scc.*), so the cache keeps every annotation.
import type { V1Namespace } from '@kubernetes/client-node';
import type { ListWatchTransport } from './kube-client.ts';
import { type InformerHandlers, ResourceInformer } from './resource-informer.ts';

export function createNamespaceInformer(transport: ListWatchTransport, handlers: InformerHandlers<V1Namespace>): ResourceInformer<V1Namespace> {
  return new ResourceInformer<V1Namespace>({ transport, path: '/api/v1/namespaces', handlers });
}
