// Writes the mark through the pods/status subresource with a JSON merge patch, so the
// agent's RBAC needs no write access to pod specs and never conflicts on
// resourceVersion. The patch carries metadata.uid: the apiserver rejects it (409)
// when a pod of the same name but another UID took this one's place.
import { type Mark, STATUS_ANNOTATION, encodeMark } from '../mark.ts';
import { KubeApiError, type KubeClient } from './kube-client.ts';

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
}
