// One shared namespace cache, never a GET per pod. Unlike the pods, namespaces grow with the
// cluster, not with this node: an OpenShift namespace is a few KB (managedFields, descriptions,
// SCC ranges) and a cluster may have 10,000 of them. So they are listed in pages and as metadata
// only, and each is cut as it lands to its name and the labels and annotations in the caller's
// allow-list (the keys the agent reads).
import type { ListWatchTransport } from './kube-client.ts';
import { type InformerHandlers, ResourceInformer } from './resource-informer.ts';

/** A namespace as cached: what the API sends has more, which `trimNamespace` drops. */
export interface CachedNamespace {
  metadata?: { name?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
}

export interface NamespaceKeys {
  labels: readonly string[];
  annotations: readonly string[];
}

/** client-go's page size: a page of OpenShift-like namespaces is about 1 MB of JSON. */
export const NAMESPACE_PAGE_SIZE = 500;

export function createNamespaceInformer(
  transport: ListWatchTransport,
  keep: NamespaceKeys,
  handlers: InformerHandlers<CachedNamespace>,
  pageSize = NAMESPACE_PAGE_SIZE,
): ResourceInformer<CachedNamespace> {
  return new ResourceInformer<CachedNamespace>({
    transport,
    path: '/api/v1/namespaces',
    handlers,
    trim: (namespace) => trimNamespace(namespace, keep),
    pageSize,
    metadataOnly: true,
  });
}

/** The name, and of the labels and annotations only the keys in `keep`; no empty maps. */
export function trimNamespace(namespace: CachedNamespace, keep: NamespaceKeys): CachedNamespace {
  const metadata: NonNullable<CachedNamespace['metadata']> = { name: namespace.metadata?.name };
  const labels = pick(namespace.metadata?.labels, keep.labels);
  if (labels) metadata.labels = labels;
  const annotations = pick(namespace.metadata?.annotations, keep.annotations);
  if (annotations) metadata.annotations = annotations;
  return { metadata };
}

function pick(map: Record<string, string> | undefined, keys: readonly string[]): Record<string, string> | undefined {
  if (!map) return undefined;
  let kept: Record<string, string> | undefined;
  for (const key of keys) if (map[key] !== undefined) (kept ??= {})[key] = map[key];
  return kept;
}
