// Which of a mesh pod's own containers could get around the redirect, and how, read from
// the pod spec alone. The rules send every other process's TCP to the proxy, except the
// proxy's own UID and GID, and live in the pod's netns: a container that can take that
// identity (CAP_SETUID, CAP_SETGID), rewrite the rules (CAP_NET_ADMIN), send below them
// (CAP_NET_RAW: packet sockets skip netfilter), or gain any of these (privileged, setuid
// binaries) is reported; in strict mode such a pod is refused. Pure.
import type { V1Capabilities, V1Container, V1Pod } from '@kubernetes/client-node';
import { type IdentityPolicy, findIdentityViolations, isIstioValidation } from './identity-policy.ts';
import { findProxyContainer } from './proxy-identity.ts';
import type { NamespaceLabels } from './namespace-keys.ts';

/** Every Linux capability (without `CAP_`), as of Linux 6.x: what `add: [ALL]` grants. */
export const LINUX_CAPABILITIES: readonly string[] = [
  'CHOWN',
  'DAC_OVERRIDE',
  'DAC_READ_SEARCH',
  'FOWNER',
  'FSETID',
  'KILL',
  'SETGID',
  'SETUID',
  'SETPCAP',
  'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE',
  'NET_BROADCAST',
  'NET_ADMIN',
  'NET_RAW',
  'IPC_LOCK',
  'IPC_OWNER',
  'SYS_MODULE',
  'SYS_RAWIO',
  'SYS_CHROOT',
  'SYS_PTRACE',
  'SYS_PACCT',
  'SYS_ADMIN',
  'SYS_BOOT',
  'SYS_NICE',
  'SYS_RESOURCE',
  'SYS_TIME',
  'SYS_TTY_CONFIG',
  'MKNOD',
  'LEASE',
  'AUDIT_WRITE',
  'AUDIT_CONTROL',
  'SETFCAP',
  'MAC_OVERRIDE',
  'MAC_ADMIN',
  'SYSLOG',
  'WAKE_ALARM',
  'BLOCK_SUSPEND',
  'AUDIT_READ',
  'PERFMON',
  'BPF',
  'CHECKPOINT_RESTORE',
];

/** containerd's default set for a container that asks for nothing (CRI-O's recent default lacks NET_RAW, MKNOD, SYS_CHROOT, AUDIT_WRITE). */
export const RUNTIME_DEFAULT_CAPABILITIES: readonly string[] = [
  'CHOWN',
  'DAC_OVERRIDE',
  'FSETID',
  'FOWNER',
  'MKNOD',
  'NET_RAW',
  'SETGID',
  'SETUID',
  'SETFCAP',
  'SETPCAP',
  'NET_BIND_SERVICE',
  'SYS_CHROOT',
  'KILL',
  'AUDIT_WRITE',
];

/** On a Namespace: `strict` refuses its pods that could bypass the redirect. Labels are the cluster operator's, not the pod author's. */
export const BYPASS_POLICY_LABEL = 'pod-network-controller.io/bypass-policy';
export const BYPASS_POLICIES = ['audit', 'strict'] as const;
export type BypassPolicy = (typeof BYPASS_POLICIES)[number];

/** Metric label values: a closed set. */
export const FINDING_KINDS = [
  'privileged',
  'cap_setuid',
  'cap_setgid',
  'cap_net_admin',
  'cap_net_raw',
  'privilege_escalation',
  'shared_pid',
  'proxy_identity',
] as const;
export type FindingKind = (typeof FINDING_KINDS)[number];

export interface Finding {
  kind: FindingKind;
  /** What the note names: `CAP_SETUID`, `privileged`, `runAsUser=1337`, ... */
  detail: string;
}

export interface ContainerBypass {
  container: string;
  /** Its UID as far as the spec tells: `uid 0`, `uid 1000`, or unset (the image's USER, root for all we know). */
  runsAs: string;
  findings: Finding[];
}

export interface AuditPolicy extends IdentityPolicy {
  /** What the runtime gives a container that adds and drops nothing (names without `CAP_`). */
  runtimeDefaultCapabilities: ReadonlySet<string>;
}

/** Capabilities whose holder bypasses the redirect on its own, and the finding each is. */
const BYPASS_CAPABILITIES = [
  ['SETUID', 'cap_setuid'],
  ['SETGID', 'cap_setgid'],
  ['NET_ADMIN', 'cap_net_admin'],
  ['NET_RAW', 'cap_net_raw'],
] as const;

/**
 * The containers (init, native sidecar, regular and ephemeral) that could bypass the
 * redirect, in spec order, each with how. The proxy (judged by the proxy identity
 * decision) and Istio's exact istio-validation are left out; a container running as the
 * proxy's identity is found by the identity policy, reported here as `proxy_identity`.
 */
export function auditBypass(pod: V1Pod, policy: AuditPolicy): ContainerBypass[] {
  const spec = pod.spec;
  const containers: V1Container[] = [...(spec?.initContainers ?? []), ...(spec?.containers ?? []), ...((spec?.ephemeralContainers ?? []) as V1Container[])];
  const violations = findIdentityViolations(pod, policy);
  const result: ContainerBypass[] = [];
  for (const container of containers) {
    if (container.name === policy.proxyContainer || isIstioValidation(container, pod, policy)) continue;
    const { runsAs, findings } = containerFindings(container, pod, policy);
    for (const v of violations) if (v.container === container.name) findings.push({ kind: 'proxy_identity', detail: `${v.field}=${v.value}` });
    if (findings.length > 0) result.push({ container: container.name, runsAs, findings });
  }
  return result;
}

function containerFindings(container: V1Container, pod: V1Pod, policy: AuditPolicy): { runsAs: string; findings: Finding[] } {
  const context = container.securityContext;
  const podContext = pod.spec?.securityContext;
  // As the identity policy reads it: a container of the proxy's image without runAsUser runs as the image's known USER.
  const proxyImage = container.image !== undefined && container.image === findProxyContainer(pod, policy.proxyContainer)?.image;
  const uid = context?.runAsUser ?? podContext?.runAsUser ?? (proxyImage ? policy.proxyImageIdentity.uid : undefined);
  const nonRootEnforced = (context?.runAsNonRoot ?? podContext?.runAsNonRoot) === true;
  const runsAs = uid !== undefined ? `uid ${uid}` : nonRootEnforced ? 'image USER, non-root' : 'image USER, may be root';
  if (context?.privileged === true) return { runsAs, findings: [{ kind: 'privileged', detail: 'privileged' }] };
  const root = uid !== undefined ? uid === 0 : !nonRootEnforced;
  // Kubernetes' default is true: without no_new_privs, setuid-root and file-capability binaries give what the bounding set holds.
  const escalation = context?.allowPrivilegeEscalation !== false;
  if (!root && !escalation) return { runsAs, findings: [] };
  const has = boundingSet(context?.capabilities, policy.runtimeDefaultCapabilities);
  const sharedPid = pod.spec?.shareProcessNamespace === true ? (['SYS_PTRACE', 'SETUID'] as const).filter(has) : [];
  const held = BYPASS_CAPABILITIES.filter(([capability]) => has(capability));
  const findings: Finding[] = [];
  if (root) {
    // Root's effective set is the bounding set.
    for (const [capability, kind] of held) findings.push({ kind, detail: `CAP_${capability}` });
  } else if (held.length > 0 || sharedPid.length > 0) {
    const reached = [...new Set([...held.map(([capability]) => capability), ...sharedPid])].map((c) => `CAP_${c}`);
    findings.push({ kind: 'privilege_escalation', detail: `allowPrivilegeEscalation (setuid binaries reach ${reached.join(', ')})` });
  }
  // The proxy's processes are in reach: ptrace them, or setuid to their UID and read their /proc entries.
  if (sharedPid.length > 0) findings.push({ kind: 'shared_pid', detail: `shareProcessNamespace+${sharedPid.map((c) => `CAP_${c}`).join('+')}` });
  return { runsAs, findings };
}

/**
 * Whether the container's bounding set holds a capability, as containerd builds it: `add:
 * [ALL]` gives all, `drop: [ALL]` then empties it, then single adds, then single drops. A
 * name with a `CAP_` prefix counts when added but not when dropped: containerd prefixes
 * every name itself, so `drop: [CAP_SETUID]` drops nothing there.
 */
function boundingSet(capabilities: V1Capabilities | undefined, defaults: ReadonlySet<string>): (capability: string) => boolean {
  const add = new Set((capabilities?.add ?? []).map((c) => c.toUpperCase().replace(/^CAP_/, '')));
  const drop = new Set((capabilities?.drop ?? []).map((c) => c.toUpperCase()));
  const base = drop.has('ALL') ? new Set<string>() : add.has('ALL') ? new Set(LINUX_CAPABILITIES) : defaults;
  return (capability) => !drop.has(capability) && (base.has(capability) || add.has(capability));
}

/** Room the container list may take in a note, so Event notes (1 KiB) and marks stay small. */
const NOTE_BUDGET = 640;

/** `container "app" (image USER, may be root): CAP_SETUID, CAP_NET_RAW; container "dbg" (uid 0): privileged`, cut to a budget. */
export function describeBypass(bypass: readonly ContainerBypass[]): string {
  const parts: string[] = [];
  let used = 0;
  for (const [index, entry] of bypass.entries()) {
    const part = `container ${JSON.stringify(entry.container)} (${entry.runsAs}): ${entry.findings.map((f) => f.detail).join(', ')}`;
    if (used + Buffer.byteLength(part) > NOTE_BUDGET && parts.length > 0) {
      parts.push(`and ${bypass.length - index} more container(s)`);
      break;
    }
    parts.push(part);
    used += Buffer.byteLength(part) + 2;
  }
  return parts.join('; ');
}

/** Containers with each finding, for the pod's gauge. */
export function countFindings(bypass: readonly ContainerBypass[]): Map<FindingKind, number> {
  const counts = new Map<FindingKind, number>();
  for (const entry of bypass) for (const kind of new Set(entry.findings.map((f) => f.kind))) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return counts;
}

export interface EffectiveBypassPolicy {
  policy: BypassPolicy;
  /** Where it comes from, for the note. */
  from: string;
}

/**
 * The node's setting is the floor: a namespace label can make its pods strict on an audit
 * node, never relax a strict node. A label value other than audit or strict counts as
 * strict (fail closed), and the reason says so.
 */
export function bypassPolicyFor(node: BypassPolicy, namespace: string, labels: NamespaceLabels): EffectiveBypassPolicy {
  if (node === 'strict') return { policy: 'strict', from: 'node setting PNC_BYPASS_POLICY=strict' };
  const value = labels[BYPASS_POLICY_LABEL];
  const label = `namespace ${JSON.stringify(namespace)} label ${BYPASS_POLICY_LABEL}=${JSON.stringify(value)}`;
  if (value === undefined || value === 'audit') return { policy: 'audit', from: value === undefined ? 'node setting PNC_BYPASS_POLICY=audit' : label };
  if (value === 'strict') return { policy: 'strict', from: label };
  return { policy: 'strict', from: `${label}, not audit or strict: taken as strict` };
}
