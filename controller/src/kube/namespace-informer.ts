// One shared namespace cache: eligibility reads a namespace's opt-in annotation from
// here, never with a GET per pod.
import type { V1Namespace } from '@kubernetes/client-node';
import type { ListWatchTransport } from './kube-client.ts';
import { type InformerHandlers, ResourceInformer } from './resource-informer.ts';

export function createNamespaceInformer(transport: ListWatchTransport, handlers: InformerHandlers<V1Namespace>): ResourceInformer<V1Namespace> {
  return new ResourceInformer<V1Namespace>({ transport, path: '/api/v1/namespaces', handlers });
}
