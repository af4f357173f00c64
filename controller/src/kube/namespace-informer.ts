// One shared namespace cache: eligibility reads a namespace's opt-in annotation from
// here, never with a GET per pod.
import type { V1Namespace } from '@kubernetes/client-node';
import type { KubeClient } from './kube-client.ts';
import { type InformerHandlers, ResourceInformer } from './resource-informer.ts';

export function createNamespaceInformer(client: KubeClient, handlers: InformerHandlers<V1Namespace>): ResourceInformer<V1Namespace> {
  return new ResourceInformer<V1Namespace>({ client, path: '/api/v1/namespaces', handlers });
}
