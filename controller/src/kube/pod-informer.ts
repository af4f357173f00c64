// This node's pods only (field selector spec.nodeName): memory and API load grow
// with the pods on this node, never with the cluster.
import type { V1Pod } from '@kubernetes/client-node';
import type { KubeClient } from './kube-client.ts';
import { type InformerHandlers, ResourceInformer } from './resource-informer.ts';

export function createPodInformer(client: KubeClient, nodeName: string, handlers: InformerHandlers<V1Pod>): ResourceInformer<V1Pod> {
  return new ResourceInformer<V1Pod>({ client, path: '/api/v1/pods', fieldSelector: `spec.nodeName=${nodeName}`, handlers });
}
