// The redirect engine's public surface: pod -> plan -> payloads (pure) and
// apply/verify/remove inside a netns (effects).
export type { CidrsByFamily, Family, NodeRedirectConfig, PodLike, RedirectPlan } from './types.ts';
export { BUILTIN_EXCLUDED_INBOUND_PORTS, DEFAULT_NODE_CONFIG, FAMILIES } from './types.ts';
export { AnnotationError, BackendMixError, NodeConfigError, RedirectError } from './errors.ts';
export { ANNOTATIONS, planFromPod, podKey, validateNodeConfig } from './plan.ts';
export { OWNED_CHAINS, OWNER_COMMENT, renderPlan, rulesHash, TABLES } from './render.ts';
export type { Table } from './render.ts';
export type { IptablesMode } from './mode.ts';
export { chooseIptablesMode, detectIptablesMode, IptablesModeError, parseIptablesMode } from './mode.ts';
export type { ApplyOptions, EngineOptions } from './apply.ts';
export { applyRedirect, removeRedirect, verifyRedirect } from './apply.ts';
