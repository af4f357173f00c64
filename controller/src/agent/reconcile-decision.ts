// What one pass does for a pod, decided without effects. In phases, because the effects
// between them are the executor's: decidePod (eligible? has our last write come back?),
// decideTarget (proxy identity? plan? on the cached copy, or on a fresh read when our
// write's echo is late), then, once the sandbox was looked up, decideWithSandbox (found?
// does the mark count? verified lately?). Each step carries its outcome, Event reason and note.
import type { V1Pod } from '@kubernetes/client-node';
import { REINIT_ANNOTATION, STATUS_ANNOTATION } from '../pod-contract/index.ts';
import { AnnotationError, type RedirectPlan, type ValidatedNodeConfig, planFromPod, renderPlan, rulesHash } from '../redirect/index.ts';
import type { EventReason } from '../kube/event-recorder.ts';
import { type ContainerBypass, auditBypass, bypassPolicyFor, describeBypass } from './bypass-audit.ts';
import type { AgentConfig } from './config.ts';
import { type IneligibleReason, decideEligibility } from './eligibility.ts';
import { describeViolations, findIdentityViolations } from './identity-policy.ts';
import { type MarkAction, decideMarkAction, markIsCurrent, wasInitialized } from './mark-decision.ts';
import type { Outcome } from './metrics.ts';
import type { NamespaceAnnotations, NamespaceLabels } from './namespace-keys.ts';
import { type SandboxNetns, sameSandbox } from './netns-finder.ts';
import { missingFamilyNeed, type NodeFamilies } from './node-families.ts';
import type { PodMemoryView } from './pod-memory.ts';
import { decideProxyIdentity } from './proxy-identity.ts';

/** How long a sandbox may stay missing before a SandboxNotFound Warning. */
export const SANDBOX_REPORT_AFTER_MS = 60_000;
/**
 * Our own mark write comes back as a pod update; rules verified this recently in the
 * same sandbox (pid, start time and netns inode) with the same hash are not read back again for it.
 */
export const VERIFIED_FRESH_MS = 30_000;
/**
 * After a mark write, the informer still holds older versions of the pod until the
 * write's own watch event arrives (watch events come in resourceVersion order). Acting
 * on such a stale copy would program the pod a second time; wait for the echo instead,
 * at most this long (a relist may skip the exact version), then read the pod fresh.
 */
export const ECHO_WAIT_MS = 5_000;

export type DecisionConfig = Pick<
  AgentConfig,
  'proxyContainer' | 'waiterContainer' | 'excludedNamespaces' | 'allowProxyUidApps' | 'bypassPolicy' | 'runtimeDefaultCapabilities' | 'procRoot'
>;

export interface PodInputs {
  /** The informer's cached copy; undefined when the pod is gone. */
  pod: V1Pod | undefined;
  /** Undefined when the namespace is not known (yet). */
  namespaceAnnotations: NamespaceAnnotations | undefined;
  /** Undefined when the namespace is not known (yet). */
  namespaceLabels: NamespaceLabels | undefined;
  memory: PodMemoryView | undefined;
  now: number;
  config: DecisionConfig;
  redirectConfig: ValidatedNodeConfig;
  nodeFamilies: NodeFamilies;
}

/** A pod to program, once its sandbox is known. */
export interface Target {
  plan: RedirectPlan;
  /** The rules hash of the plan, to compare with the mark's. */
  hash: string;
  markText: string | undefined;
  reinitToken: string | undefined;
  /** Containers that could bypass the redirect (audit mode let the pod through): warned about once per sandbox. */
  bypass: Bypass;
}

/** What the bypass audit found (no containers: nothing), and the note that says so. */
export interface Bypass {
  containers: ContainerBypass[];
  note: string;
}

/** The pod cannot be programmed until it changes: an `error` mark (once) and a Warning. */
export interface Failure {
  outcome: Outcome;
  event: EventReason;
  reason: string;
  markText: string | undefined;
  /** The pod's mark already says exactly this: nothing to report again. */
  reported: boolean;
  /** Set when the bypass policy refused the pod. */
  bypass?: Bypass;
}

/** What to do with a copy of the pod that can be trusted. */
export type TargetStep =
  | { kind: 'wait-for-namespace' }
  /** A family the node cannot redirect is missing: the pod's addresses decide whether it needs it. */
  | { kind: 'wait-for-pod-ips' }
  | ({ kind: 'refuse' } & Failure)
  | ({ kind: 'invalid' } & Failure)
  | { kind: 'find-sandbox'; target: Target };

export type PodStep =
  | { kind: 'skip'; why: 'gone' | IneligibleReason }
  | { kind: 'wait-for-echo'; resourceVersion: string | undefined }
  /** Read the pod from the API server, then decide on that copy with decideTarget. */
  | { kind: 'read-fresh'; cachedResourceVersion: string | undefined }
  | TargetStep;

export function decidePod(inputs: PodInputs): PodStep {
  const { pod, namespaceAnnotations, namespaceLabels, memory, now, config } = inputs;
  if (!pod) return { kind: 'skip', why: 'gone' };
  const eligibility = decideEligibility(pod, namespaceAnnotations, config);
  if (!eligibility.eligible) return { kind: 'skip', why: eligibility.reason };
  const resourceVersion = pod.metadata?.resourceVersion;
  if (memory?.awaitingEcho || memory?.writeUncertain) {
    // The echo's own event queues the pod again; waiting only covers a lost echo.
    if (memory.awaitingEcho && now - memory.awaitingEcho.at < ECHO_WAIT_MS) return { kind: 'wait-for-echo', resourceVersion };
    // The watch is late (down, or replaying from before our write): the cached copy cannot be trusted.
    return { kind: 'read-fresh', cachedResourceVersion: resourceVersion };
  }
  return decideTarget({ pod, namespaceAnnotations, namespaceLabels, config, redirectConfig: inputs.redirectConfig, nodeFamilies: inputs.nodeFamilies });
}

export interface TargetInputs {
  /** An eligible pod, from the cache or read fresh. */
  pod: V1Pod;
  namespaceAnnotations: NamespaceAnnotations | undefined;
  namespaceLabels: NamespaceLabels | undefined;
  config: DecisionConfig;
  redirectConfig: ValidatedNodeConfig;
  nodeFamilies: NodeFamilies;
}

/** Allowed proxy identity? Families the node has? Can its containers bypass the redirect, and may they? A valid plan? */
export function decideTarget(inputs: TargetInputs): TargetStep {
  const { pod, namespaceAnnotations, namespaceLabels, config } = inputs;
  const meta = pod.metadata ?? {};
  const annotations = meta.annotations ?? {};
  const markText = annotations[STATUS_ANNOTATION];
  const failure = (reason: string, outcome: Outcome, event: EventReason): Failure => ({
    outcome,
    event,
    reason,
    markText,
    reported: markIsCurrent(markText, 'error', reason),
  });

  const nodeIdentity = { uid: inputs.redirectConfig.proxyUid, gid: inputs.redirectConfig.proxyGid };
  const proxy = decideProxyIdentity(pod, config.proxyContainer, { name: meta.namespace ?? '', annotations: namespaceAnnotations }, nodeIdentity);
  if (!proxy.ok) {
    // Its namespace's UID range may still be on its way: the namespace event requeues the pod.
    if (namespaceAnnotations === undefined) return { kind: 'wait-for-namespace' };
    return { kind: 'refuse', ...failure(proxy.reason, 'refused', 'ProxyIdentityRefused') };
  }
  const { uid: proxyUid, gid: proxyGid } = proxy.identity;
  const identityPolicy = { proxyContainer: config.proxyContainer, proxyUid, proxyGid, proxyImageIdentity: nodeIdentity };
  if (!config.allowProxyUidApps) {
    const violations = findIdentityViolations(pod, identityPolicy);
    if (violations.length > 0) {
      const reason = `refused: ${describeViolations(violations)} equals the proxy identity (uid ${proxyUid}, gid ${proxyGid}); its traffic would bypass the redirect`;
      return { kind: 'refuse', ...failure(reason, 'refused', 'ProxyIdentityRefused') };
    }
  }
  const need = missingFamilyNeed(pod, inputs.nodeFamilies);
  if (need === 'unknown') return { kind: 'wait-for-pod-ips' };
  if (need !== undefined) return { kind: 'refuse', ...failure(need, 'refused', 'FamilyUnavailable') };
  const containers = auditBypass(pod, { ...identityPolicy, runtimeDefaultCapabilities: config.runtimeDefaultCapabilities });
  const bypass: Bypass = { containers, note: '' };
  if (containers.length > 0) {
    // Whether its namespace is strict is not known yet: the namespace event requeues the pod.
    if (namespaceLabels === undefined) return { kind: 'wait-for-namespace' };
    const policy = bypassPolicyFor(config.bypassPolicy, meta.namespace ?? '', namespaceLabels);
    const found = describeBypass(containers);
    if (policy.policy === 'strict') {
      bypass.note = `refused: redirect bypass possible (bypass policy strict: ${policy.from}): ${found}`;
      return { kind: 'refuse', ...failure(bypass.note, 'refused', 'RedirectBypassPossible'), bypass };
    }
    bypass.note = `redirect bypass possible (bypass policy audit: ${policy.from}): ${found}`;
  }
  let plan: RedirectPlan;
  try {
    plan = planFromPod(pod, inputs.redirectConfig, proxy.identity);
  } catch (error) {
    if (!(error instanceof AnnotationError)) throw error;
    // The message names the pod, the annotation and the bad value.
    return { kind: 'invalid', ...failure(error.message, 'invalid_annotation', 'InvalidAnnotation') };
  }
  return { kind: 'find-sandbox', target: { plan, hash: rulesHash(renderPlan(plan)), markText, reinitToken: annotations[REINIT_ANNOTATION], bypass } };
}

/** Programming the pod's netns, then writing an `initialized` mark and this Event. */
export interface Programming {
  /** Rewrite our chains even when they already match (re-init). */
  force: boolean;
  /** The re-init token this programming handles, recorded in the mark. */
  reinitToken?: string;
  outcome: Outcome;
  event: EventReason;
  /** What happened, for the Event; empty for a first initialization. */
  note: string;
  /** Why the mark did not count, when it did not. */
  why?: MarkMismatch;
  /**
   * Clear the netns record before touching the rules: the netns may hold one for the rules
   * about to be replaced, and a waiter passes on it. A first programming finds none (a new
   * netns has no alias, and every error mark is preceded by clearing it).
   */
  clearRecord: boolean;
}

export type SandboxStep =
  | { kind: 'wait-for-sandbox'; report?: string }
  /** Verified this recently with this very mark: nothing to do. */
  | { kind: 'fresh' }
  /**
   * The mark (`markText`) counts: read the rules and the netns record back; if the rules
   * drifted, carry out `drifted`; if the record is not this mark's, `unrecorded`.
   */
  | { kind: 'verify'; markText: string; drifted: Programming; unrecorded: Programming }
  | ({ kind: 'program' } & Programming)
  | ({ kind: 'reinit' } & Programming)
  | ({ kind: 'repair' } & Programming);

/** Why the mark did not count. */
export type MarkMismatch = Extract<MarkAction, { kind: 'program' }>['why'];

export interface SandboxInputs {
  target: Target;
  sandbox: SandboxNetns | undefined;
  memory: PodMemoryView | undefined;
  now: number;
  procRoot: string;
  /** Why the last /proc scan failed, if it did. */
  scanError: string | undefined;
}

export function decideWithSandbox(inputs: SandboxInputs): SandboxStep {
  const { target, sandbox, memory, now } = inputs;
  if (!sandbox) {
    const waited = now - (memory?.firstSeenAt ?? now);
    if (waited < SANDBOX_REPORT_AFTER_MS || memory?.sandboxNotFoundReported) return { kind: 'wait-for-sandbox' };
    const scanError = inputs.scanError ? ` (scanning failed: ${inputs.scanError})` : '';
    const report = `no process of this pod with its own network namespace under ${inputs.procRoot} after ${Math.round(waited / 1000)} s${scanError}; still looking`;
    return { kind: 'wait-for-sandbox', report };
  }
  const { markText, hash } = target;
  const action = decideMarkAction({ markText, reinitToken: target.reinitToken, netnsInode: sandbox.inode, rulesHash: hash });
  if (action.kind === 'reinit') {
    // Rewritten in one transaction per family: no moment without redirection.
    const note = `re-initialized for token ${JSON.stringify(action.token)}`;
    return { kind: 'reinit', force: true, clearRecord: true, reinitToken: action.token, outcome: 'initialized', event: 'Reinitialized', note };
  }
  if (action.kind === 'program') {
    if (!wasInitialized(markText)) {
      return { kind: 'program', why: action.why, force: false, clearRecord: false, outcome: 'initialized', event: 'Initialized', note: '' };
    }
    const why = REPAIR_WHY[action.why] ?? `the mark did not match (${action.why})`;
    return {
      kind: 'repair',
      why: action.why,
      force: false,
      clearRecord: true,
      outcome: 'repaired',
      event: 'Repaired',
      note: `${why}; programmed netns ${sandbox.inode}`,
    };
  }
  // The mark counts, so there is one.
  const counted = markText!;
  const verified = memory?.verified;
  if (verified && verified.markText === counted && sameSandbox(verified.sandbox, sandbox) && verified.hash === hash && now - verified.at < VERIFIED_FRESH_MS) {
    return { kind: 'fresh' };
  }
  const repair = (note: string): Programming => ({ force: false, clearRecord: true, outcome: 'repaired', event: 'Repaired', note });
  return {
    kind: 'verify',
    markText: counted,
    drifted: repair(`rules had drifted in netns ${sandbox.inode}; re-programmed`),
    unrecorded: repair(
      `netns ${sandbox.inode} holds no record of the mark (a new sandbox that got the inode of the one the mark was written for); programmed it`,
    ),
  };
}

const REPAIR_WHY: Partial<Record<MarkMismatch, string>> = {
  'other-netns': 'the mark named another network namespace (new sandbox, or a forged mark)',
  'old-format': 'the mark was written by an earlier release (format 1, without a netns record)',
};
