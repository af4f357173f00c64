// The pod's own proxy identity: the UID/GID the redirect rules exempt. Istio's injector
// gives the proxy 1337, except in an OpenShift namespace (one carrying
// openshift.io/sa.scc.uid-range), where it takes the top of the namespace's ranges so the
// pod fits `restricted-v2`. The agent programs what the pod's proxy container runs as,
// but only when it is one of those values: any other identity is refused. Pure.
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { NamespaceAnnotations } from './namespace-keys.ts';

export const UID_RANGE_ANNOTATION = 'openshift.io/sa.scc.uid-range';
export const SUPPLEMENTAL_GROUPS_ANNOTATION = 'openshift.io/sa.scc.supplemental-groups';

export interface ProxyIdentity {
  uid: number;
  gid: number;
}

export type ProxyIdentityDecision = { ok: true; identity: ProxyIdentity } | { ok: false; reason: string };

/** Highest UID/GID accepted (2^32-2: 2^32-1 is the kernel's "no id"). */
const MAX_ID = 0xfffffffe;

/** A block "start/size" or "start-end" as OpenShift writes it; undefined when malformed. */
function parseBlock(text: string): { start: number; end: number } | undefined {
  const match = /^\s*(\d{1,10})\s*([/-])\s*(\d{1,10})\s*$/.exec(text);
  if (!match) return undefined;
  const start = Number(match[1]);
  const other = Number(match[3]);
  const end = match[2] === '/' ? start + other - 1 : other;
  // A size of 0, an end below the start, root or an id past the 32-bit range: not a range the proxy can take.
  if ((match[2] === '/' && other < 1) || end < start || end < 1 || end > MAX_ID) return undefined;
  return { start, end };
}

/** The end of the first range of a comma-separated list; every range must parse. */
function firstRangeEnd(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const blocks = value.split(',').map(parseBlock);
  if (blocks.some((block) => block === undefined)) return undefined;
  return blocks[0]!.end;
}

export interface NamespaceProxyIds {
  uid?: { value: number; from: string };
  gid?: { value: number; from: string };
}

/**
 * The proxy identity Istio's injector (GetProxyIDs) derives from the namespace: the
 * end of the UID range, and the end of the first supplemental-groups range (falling back
 * to the UID range when that annotation is absent). Unlike Istio, a malformed annotation
 * yields nothing here (Istio's Go scanf also accepts trailing garbage), so the pod must
 * then use the node's identity: fail closed.
 */
export function namespaceProxyIds(annotations: NamespaceAnnotations | undefined): NamespaceProxyIds {
  const ids: NamespaceProxyIds = {};
  if (!annotations) return ids;
  const uidRange = annotations[UID_RANGE_ANNOTATION];
  const uid = firstRangeEnd(uidRange);
  if (uid !== undefined) ids.uid = { value: uid, from: `${UID_RANGE_ANNOTATION} ${JSON.stringify(uidRange)}` };
  const groupsKey = annotations[SUPPLEMENTAL_GROUPS_ANNOTATION] !== undefined ? SUPPLEMENTAL_GROUPS_ANNOTATION : UID_RANGE_ANNOTATION;
  const groups = annotations[groupsKey];
  const gid = firstRangeEnd(groups);
  if (gid !== undefined) ids.gid = { value: gid, from: `${groupsKey} ${JSON.stringify(groups)}` };
  return ids;
}

/** The proxy container: a regular container or a native sidecar (init container). */
export function findProxyContainer(pod: V1Pod, proxyContainer: string): V1Container | undefined {
  return [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].find((c) => c.name === proxyContainer);
}

/**
 * A container's effective runAsUser/runAsGroup: its own securityContext over the pod's.
 * Unset means the image's USER, which the pod spec does not show; it is taken as the
 * node's proxy identity (Istio's proxy image runs as 1337:1337).
 */
export function effectiveIdentity(container: V1Container, pod: V1Pod, fallback: ProxyIdentity): ProxyIdentity {
  const podContext = pod.spec?.securityContext;
  return {
    uid: container.securityContext?.runAsUser ?? podContext?.runAsUser ?? fallback.uid,
    gid: container.securityContext?.runAsGroup ?? podContext?.runAsGroup ?? fallback.gid,
  };
}

/**
 * Accepts the proxy's effective identity when each of its UID and GID is the node's
 * configured one or the one Istio's injector gives this namespace; otherwise the reason
 * names the container, the value and what was expected.
 */
export function decideProxyIdentity(
  pod: V1Pod,
  proxyContainer: string,
  namespace: { name: string; annotations: NamespaceAnnotations | undefined },
  node: ProxyIdentity,
): ProxyIdentityDecision {
  const proxy = findProxyContainer(pod, proxyContainer);
  if (!proxy) return { ok: false, reason: `no container ${JSON.stringify(proxyContainer)}` };
  const identity = effectiveIdentity(proxy, pod, node);
  const fromNamespace = namespaceProxyIds(namespace.annotations);
  const problems: string[] = [];
  for (const [field, key, what] of [
    ['runAsUser', 'uid', 'UID'],
    ['runAsGroup', 'gid', 'GID'],
  ] as const) {
    const value = identity[key];
    const ns = fromNamespace[key];
    if (value === node[key] || value === ns?.value) continue;
    const expected = [`${node[key]} (the node's proxy ${what})`];
    if (ns && ns.value !== node[key]) expected.push(`${ns.value} (the top of namespace ${JSON.stringify(namespace.name)}'s ${ns.from})`);
    problems.push(`${field}=${value}, expected ${expected.join(' or ')}`);
  }
  if (problems.length > 0) {
    return {
      ok: false,
      reason: `refused: proxy container ${JSON.stringify(proxy.name)} runs with ${problems.join(' and ')}; only the node's proxy identity or the one Istio's injector gives the namespace is exempted from the redirect`,
    };
  }
  return { ok: true, identity };
}
