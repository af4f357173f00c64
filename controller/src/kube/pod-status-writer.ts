// Writes the mark through the pods/status subresource with a JSON merge patch, so the
// agent's RBAC needs no write access to pod specs and never conflicts on
// resourceVersion. The patch carries metadata.uid: the apiserver rejects it (409)
// when a pod of the same name but another UID took this one's place. Also reads one
// pod fresh, for when the watch has not yet delivered our last write.
import type { V1Pod } from '@kubernetes/client-node';
import { type Mark, STATUS_ANNOTATION, encodeMark } from '../pod-contract/index.ts';
import { KubeApiError, type KubeClient } from './kube-client.ts';
import { trimPod } from './pod-informer.ts';

export const FIELD_MANAGER = 'pod-network-controller';

export interface PodRef {
  namespace: string;
  name: string;
  uid: string;
}

/** 'gone', or the resourceVersion the pod got from this write. */
export type WriteResult = { resourceVersion: string } | 'gone';

export class PodStatusWriter {
  readonly #client: KubeClient;

  constructor(client: KubeClient) {
    this.#client = client;
  }

  /** Returns 'gone' when the pod (this UID) no longer exists; throws on other API errors. */
  async writeMark(pod: PodRef, mark: Mark): Promise<WriteResult> {
    const body = { metadata: { uid: pod.uid, annotations: { [STATUS_ANNOTATION]: encodeMark(mark) } } };
    const path = `/api/v1/namespaces/${encodeURIComponent(pod.namespace)}/pods/${encodeURIComponent(pod.name)}/status?fieldManager=${FIELD_MANAGER}`;
    try {
      const pod = await this.#client.request<{ metadata?: { resourceVersion?: string } }>('PATCH', path, body, 'application/merge-patch+json');
      return { resourceVersion: pod.metadata?.resourceVersion ?? '' };
    } catch (error) {
      if (error instanceof KubeApiError && (error.status === 404 || error.status === 409)) return 'gone';
      throw error;
    }
  }

  /** The pod as the API server has it now (a quorum read), or 'gone' when this UID no longer exists. */
  async readPod(pod: PodRef): Promise<V1Pod | 'gone'> {
    const path = `/api/v1/namespaces/${encodeURIComponent(pod.namespace)}/pods/${encodeURIComponent(pod.name)}`;
    try {
      const fresh = await this.#client.request<V1Pod>('GET', path);
      return fresh.metadata?.uid === pod.uid ? trimPod(fresh) : 'gone';
    } catch (error) {
      if (error instanceof KubeApiError && error.status === 404) return 'gone';
      throw error;
    }
  }
}

/** Whether resourceVersion `a` is at least `b`. Opaque strings in general; etcd's are integers, compared as such. */
export function resourceVersionAtLeast(a: string | undefined, b: string): boolean {
  if (a === undefined) return false;
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return BigInt(a) >= BigInt(b);
  return a === b;
}

/**
 * A refusal that retrying the same write cannot fix (422 Invalid: the annotations would
 * exceed the API's size limit; 400; 403 missing RBAC; 413). Not 404/409 (the pod is gone),
 * 401 (a token about to rotate), 408 or 429 (the server asks us to come back).
 */
export function isPermanentRefusal(error: unknown): error is KubeApiError {
  return error instanceof KubeApiError && error.status >= 400 && error.status < 500 && ![401, 404, 408, 409, 429].includes(error.status);
}
