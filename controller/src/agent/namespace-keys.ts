// The namespace labels and annotations the agent reads, in one place: the namespace informer
// keeps these and drops every other key as each namespace arrives (memory would otherwise grow
// with every annotation of every namespace in the cluster). The readers take the types below,
// which admit only these keys, so a new reader adds its key here or does not compile.
import { INITIALIZE_ANNOTATION } from '../pod-contract/index.ts';
import { BYPASS_POLICY_LABEL } from './bypass-audit.ts';
import { SUPPLEMENTAL_GROUPS_ANNOTATION, UID_RANGE_ANNOTATION } from './proxy-identity.ts';

export const NAMESPACE_KEYS = {
  /** Eligibility: the namespace opts its pods in. Proxy identity: the UID and GID Istio's injector derives from OpenShift's ranges. */
  annotations: [INITIALIZE_ANNOTATION, UID_RANGE_ANNOTATION, SUPPLEMENTAL_GROUPS_ANNOTATION],
  /** The bypass policy (strict or audit). */
  labels: [BYPASS_POLICY_LABEL],
} as const;

export type NamespaceAnnotations = Readonly<Partial<Record<(typeof NAMESPACE_KEYS.annotations)[number], string>>>;
export type NamespaceLabels = Readonly<Partial<Record<(typeof NAMESPACE_KEYS.labels)[number], string>>>;
