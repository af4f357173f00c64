// Which pods the agent programs, and why it leaves each other pod alone. Pure: every
// decision carries a reason code that the reconciler logs at debug level.
import type { V1Pod } from '@kubernetes/client-node';
import { INITIALIZE_ANNOTATION } from '../pod-contract/index.ts';
import type { NamespaceAnnotations } from './namespace-keys.ts';

export interface EligibilityPolicy {
  proxyContainer: string;
  waiterContainer: string;
  excludedNamespaces: ReadonlySet<string>;
}

export type IneligibleReason =
  | 'host-network'
  | 'excluded-namespace'
  | 'terminal'
  | 'deleting'
  | 'no-proxy-container'
  | 'not-opted-in'
  | 'inject-disabled'
  | 'openshift-build'
  | 'openshift-deployer';

export type Eligibility = { eligible: true; reason: 'has-waiter' | 'pod-opt-in' | 'namespace-opt-in' } | { eligible: false; reason: IneligibleReason };

const INJECT = 'sidecar.istio.io/inject';
// Go's strconv.ParseBool spellings of false, as Istio reads this annotation.
const FALSE_VALUES = new Set(['0', 'f', 'F', 'false', 'FALSE', 'False']);

/**
 * `namespaceAnnotations` comes from the shared namespace informer; undefined when the
 * namespace is not (yet) known, in which case a namespace opt-in cannot count.
 */
export function decideEligibility(pod: V1Pod, namespaceAnnotations: NamespaceAnnotations | undefined, policy: EligibilityPolicy): Eligibility {
  const meta = pod.metadata ?? {};
  const annotations = meta.annotations ?? {};
  const labels = meta.labels ?? {};
  const spec = pod.spec;
  // hostNetwork first: a node's own netns must never get pod rules, whatever else holds.
  if (spec?.hostNetwork) return { eligible: false, reason: 'host-network' };
  if (policy.excludedNamespaces.has(meta.namespace ?? '')) return { eligible: false, reason: 'excluded-namespace' };
  if (meta.deletionTimestamp) return { eligible: false, reason: 'deleting' };
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return { eligible: false, reason: 'terminal' };
  if (annotations['openshift.io/build.name'] !== undefined || labels['openshift.io/build.name'] !== undefined) {
    return { eligible: false, reason: 'openshift-build' };
  }
  if (annotations['openshift.io/deployer-pod-for.name'] !== undefined || labels['openshift.io/deployer-pod-for.name'] !== undefined) {
    return { eligible: false, reason: 'openshift-deployer' };
  }
  const inject = annotations[INJECT] ?? labels[INJECT];
  if (inject !== undefined && FALSE_VALUES.has(inject)) return { eligible: false, reason: 'inject-disabled' };
  // The proxy may be a regular container or a native sidecar (an init container).
  const hasProxy = [...(spec?.containers ?? []), ...(spec?.initContainers ?? [])].some((c) => c.name === policy.proxyContainer);
  if (!hasProxy) return { eligible: false, reason: 'no-proxy-container' };
  if ((spec?.initContainers ?? []).some((c) => c.name === policy.waiterContainer)) return { eligible: true, reason: 'has-waiter' };
  if (annotations[INITIALIZE_ANNOTATION] === 'true') return { eligible: true, reason: 'pod-opt-in' };
  if (namespaceAnnotations?.[INITIALIZE_ANNOTATION] === 'true') return { eligible: true, reason: 'namespace-opt-in' };
  return { eligible: false, reason: 'not-opted-in' };
}
