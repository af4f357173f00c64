// This node's pods only (field selector spec.nodeName): memory and API load grow
// with the pods on this node, never with the cluster. Keyed by UID: a pod deleted and
// recreated under its name is another pod.
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { ListWatchTransport } from './kube-client.ts';
import { type InformerHandlers, ResourceInformer } from './resource-informer.ts';

export function createPodInformer(transport: ListWatchTransport, nodeName: string, handlers: InformerHandlers<V1Pod>): ResourceInformer<V1Pod> {
  return new ResourceInformer<V1Pod>({ transport, path: '/api/v1/pods', fieldSelector: `spec.nodeName=${nodeName}`, keyBy: 'uid', handlers, trim: trimPod });
}

/**
 * Drops what the agent never reads and what makes a pod object large: managed fields,
 * status beyond the phase, volumes, and per container its env, mounts, probes and
 * resources. Kept: metadata, and the spec's containers with names, ports and security contexts.
 */
export function trimPod(pod: V1Pod): V1Pod {
  const metadata = { ...pod.metadata };
  delete metadata.managedFields;
  const trimmed: V1Pod = { metadata };
  if (pod.spec) {
    const spec = { ...pod.spec, containers: pod.spec.containers.map(trimContainer) };
    delete spec.volumes;
    if (spec.initContainers) spec.initContainers = spec.initContainers.map(trimContainer);
    trimmed.spec = spec;
  }
  if (pod.status?.phase) trimmed.status = { phase: pod.status.phase };
  return trimmed;
}

const DROPPED_CONTAINER_FIELDS = ['env', 'envFrom', 'volumeMounts', 'livenessProbe', 'readinessProbe', 'startupProbe', 'resources'] as const;

function trimContainer(container: V1Container): V1Container {
  const kept = { ...container };
  for (const field of DROPPED_CONTAINER_FIELDS) delete kept[field];
  return kept;
}
