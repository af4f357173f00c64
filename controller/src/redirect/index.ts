// The redirect engine's public surface: pod -> plan -> payloads (pure) and
// apply/verify/remove inside a netns (effects).
export type { Family, NodeRedirectConfig, PodLike, ProxyIdentity, RedirectPlan, ValidatedNodeConfig } from './types.ts';
export { DEFAULT_NODE_CONFIG } from './types.ts';
export { AnnotationError, NetnsMismatch, NodeConfigError, RedirectError, XtablesLockTimeout } from './errors.ts';
export { planFromPod, podKey, validateNodeConfig } from './plan.ts';
export { renderPlan, rulesHash } from './render.ts';
export type { BackendListing, HostBackends, IptablesMode, IptablesModeDecision } from './mode.ts';
export {
  chooseIptablesMode,
  detectIptablesMode,
  HOST_NETNS,
  iptablesBinary,
  IPTABLES_MODES,
  IptablesModeError,
  listHostBackends,
  parseIptablesMode,
} from './mode.ts';
export type { ExecResult, Netns } from './exec.ts';
export { runInNetns } from './exec.ts';
export type { ApplyOptions, EngineOptions } from './apply.ts';
export { applyRedirect, removeRedirect, verifyRedirect, verifyRedirectWithRecord, type Verification } from './apply.ts';
export type { FamilyProbe, FamilyProbeOptions } from './family-probe.ts';
export { probeFamily } from './family-probe.ts';
export { writeNetnsRecord } from './netns-record.ts';
