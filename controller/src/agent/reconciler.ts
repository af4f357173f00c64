// One pod, one pass: eligible? -> allowed identity? -> plan -> sandbox netns ->
// does the existing mark count? -> apply -> verify -> mark. Every per-pod failure is
// caught here or by the work queue: logged, counted, evented, marked `error`.
import type { V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { type Mark, REINIT_ANNOTATION, STATUS_ANNOTATION, encodeMark } from '../pod-contract/index.ts';
import {
  AnnotationError,
  type EngineOptions,
  type IptablesMode,
  type ValidatedNodeConfig,
  type RedirectPlan,
  applyRedirect,
  planFromPod,
  renderPlan,
  rulesHash,
  verifyRedirect,
  XtablesLockTimeout,
} from '../redirect/index.ts';
import { ERROR_BACKOFF, SANDBOX_BACKOFF } from './backoff.ts';
import type { AgentConfig } from './config.ts';
import { decideEligibility } from './eligibility.ts';
import { type EventReason, type EventRecorder, eventNameFor } from '../kube/event-recorder.ts';
import { isConnectionError } from '../kube/kube-client.ts';
import { describeViolations, findIdentityViolations } from './identity-policy.ts';
import { decideProxyIdentity } from './proxy-identity.ts';
import { decideMarkAction, handledToken, markIsCurrent, readMark, wasInitialized } from './mark-decision.ts';
import type { AgentMetrics, Outcome } from './metrics.ts';
import type { NetnsFinder, SandboxNetns } from './netns-finder.ts';
import { type PodRef, type PodStatusWriter, type WriteResult, isPermanentRefusal, resourceVersionAtLeast } from '../kube/pod-status-writer.ts';
import type { SandboxWatcher } from './sandbox-watcher.ts';
import type { WorkResult } from './work-queue.ts';

/** How long a sandbox may stay missing before a SandboxNotFound Warning. */
export const SANDBOX_REPORT_AFTER_MS = 60_000;
/**
 * Our own mark write comes back as a pod update; rules verified this recently in the
 * same netns with the same hash are not read back again for it.
 */
const VERIFIED_FRESH_MS = 30_000;
/**
 * A mark the API server refuses for good (422: no room left under the annotation size
 * limit) is retried this slowly: the pod owner has to act, and the Warning says so.
 */
const MARK_REFUSED_BACKOFF = { initialMs: 60_000, maxMs: 600_000, factor: 2, jitter: 0.2 };
/** The xtables lock held elsewhere: try again soon, but do not pile up on it. */
const LOCK_BACKOFF = { initialMs: 1_000, maxMs: 30_000, factor: 2, jitter: 0.2 };
/** An iptables run still going after this long is waiting for the lock (legacy); say so. */
const LOCK_WARN_MS = 3_000;
/**
 * After a restart, an initialized mark this recent may have lost its Event (the agent
 * died between the mark write and the Event); older ones would have outlived the
 * apiserver's Event TTL (1 h by default) anyway.
 */
const EVENT_RECOVERY_WINDOW_MS = 10 * 60_000;

export interface ReconcilerDeps {
  config: AgentConfig;
  redirectConfig: ValidatedNodeConfig;
  iptablesMode: IptablesMode;
  /** The pod with this UID from the informer cache. */
  getPod: (uid: string) => V1Pod | undefined;
  /** The namespace's annotations from the namespace informer; undefined when unknown. */
  getNamespaceAnnotations: (namespace: string) => Record<string, string> | undefined;
  finder: NetnsFinder;
  watcher: SandboxWatcher;
  writer: PodStatusWriter;
  events: EventRecorder;
  metrics: AgentMetrics;
  log: Logger;
}

interface MarkWhat {
  hash: string;
  markText: string | undefined;
  /** A re-init token handled by this programming. */
  reinitToken?: string;
  outcome: Outcome;
  event: EventReason;
  /** What happened, for the Event; empty for a first initialization. */
  note: string;
}

/**
 * After a mark write, the informer still holds older versions of the pod until the
 * write's own watch event arrives (watch events come in resourceVersion order). Acting
 * on such a stale copy would program the pod a second time; wait for the echo instead,
 * at most this long (a relist may skip the exact version).
 */
const ECHO_WAIT_MS = 5_000;
const ECHO_BACKSTOP = { initialMs: ECHO_WAIT_MS, maxMs: ECHO_WAIT_MS, factor: 1, jitter: 0 };

/** What the agent remembers per pod between passes; dropped when the pod is deleted. */
interface PodMemory {
  /** resourceVersion of our last mark write, until the watch delivers it. */
  awaitingEcho?: { resourceVersion: string; at: number };
  firstSeenAt: number;
  sandboxNotFoundReported: boolean;
  /** The sandbox last found, and when first found (start of the mark latency). */
  sandbox?: SandboxNetns;
  sandboxFoundAt?: number;
  /** Last successful verification: what the mark said and what was verified. */
  verified?: { markText: string; inode: number; hash: string; at: number };
  /** This process has made sure the current mark's Event exists (written it, or checked after a restart). */
  markEventKnown?: boolean;
  /** A mark write got no answer: it may have landed, and the cache cannot say until the watch delivers it. */
  writeUncertain?: boolean;
}

export class Reconciler {
  readonly #deps: ReconcilerDeps;
  readonly #memory = new Map<string, PodMemory>();

  constructor(deps: ReconcilerDeps) {
    this.#deps = deps;
  }

  forget(uid: string): void {
    this.#memory.delete(uid);
    this.#deps.watcher.forget(uid);
  }

  /**
   * Called for every pod event before it is queued. Watch events arrive in
   * resourceVersion order, so once our own write shows up every later copy is newer.
   */
  observe(uid: string, resourceVersion: string | undefined): void {
    const memory = this.#memory.get(uid);
    if (memory?.awaitingEcho && resourceVersionAtLeast(resourceVersion, memory.awaitingEcho.resourceVersion)) memory.awaitingEcho = undefined;
  }

  /** UIDs of pods whose last known sandbox process is gone or changed netns. */
  podsWithChangedSandbox(): string[] {
    const changed: string[] = [];
    for (const [uid, memory] of this.#memory) {
      if (memory.sandbox && !this.#deps.finder.isAlive(memory.sandbox)) changed.push(uid);
    }
    return changed;
  }

  /** `queuedAt`: when the pod was queued for this pass; a sandbox found in it counts as found then. */
  async reconcile(uid: string, queuedAt = performance.now()): Promise<WorkResult> {
    const { config, log } = this.#deps;
    let pod = this.#deps.getPod(uid);
    if (!pod) {
      this.forget(uid);
      return { kind: 'done' };
    }
    let meta = pod.metadata!;
    const ref: PodRef = { namespace: meta.namespace!, name: meta.name!, uid };
    const podLog = log.child({ namespace: ref.namespace, pod: ref.name, uid });
    const eligibility = decideEligibility(pod, this.#deps.getNamespaceAnnotations(ref.namespace), config);
    if (!eligibility.eligible) {
      podLog.debug({ reason: eligibility.reason }, 'not eligible');
      this.forget(uid);
      return { kind: 'done' };
    }
    podLog.debug({ reason: eligibility.reason }, 'eligible');
    const memory = this.#memoryOf(uid);
    this.observe(uid, meta.resourceVersion);
    if (memory.awaitingEcho || memory.writeUncertain) {
      if (memory.awaitingEcho && performance.now() - memory.awaitingEcho.at < ECHO_WAIT_MS) {
        podLog.debug({ resourceVersion: meta.resourceVersion }, 'older than our last mark write; waiting for its echo');
        // The echo's own event queues the pod again; this retry only covers a lost echo.
        return { kind: 'retry', policy: ECHO_BACKSTOP };
      }
      // The watch is late (down, or replaying from before our write): the cached copy cannot
      // be trusted, so read the pod itself. The wait for the echo stays until the watch has
      // caught up, so older copies it still delivers are never acted on.
      const fresh = await this.#deps.writer.readPod(ref);
      memory.writeUncertain = false;
      if (fresh === 'gone') {
        this.forget(uid);
        return { kind: 'done' };
      }
      podLog.debug({ cached: meta.resourceVersion, fresh: fresh.metadata?.resourceVersion }, 'echo of our mark write is late; acting on a fresh read');
      pod = fresh;
      meta = fresh.metadata!;
    }
    const annotations = meta.annotations ?? {};
    const markText = annotations[STATUS_ANNOTATION];

    const nodeIdentity = { uid: this.#deps.redirectConfig.proxyUid, gid: this.#deps.redirectConfig.proxyGid };
    const namespaceAnnotations = this.#deps.getNamespaceAnnotations(ref.namespace);
    const proxy = decideProxyIdentity(pod, config.proxyContainer, { name: ref.namespace, annotations: namespaceAnnotations }, nodeIdentity);
    if (!proxy.ok) {
      if (namespaceAnnotations === undefined) {
        // Its namespace's UID range may still be on its way: the namespace event requeues the pod.
        podLog.debug('namespace not known yet; proxy identity undecided');
        return { kind: 'retry', policy: SANDBOX_BACKOFF };
      }
      return this.#fail(ref, podLog, markText, proxy.reason, 'refused', 'ProxyIdentityRefused');
    }
    const { uid: proxyUid, gid: proxyGid } = proxy.identity;

    if (!config.allowProxyUidApps) {
      const violations = findIdentityViolations(pod, { proxyContainer: config.proxyContainer, proxyUid, proxyGid, proxyImageIdentity: nodeIdentity });
      if (violations.length > 0) {
        const reason = `refused: ${describeViolations(violations)} equals the proxy identity (uid ${proxyUid}, gid ${proxyGid}); its traffic would bypass the redirect`;
        return this.#fail(ref, podLog, markText, reason, 'refused', 'ProxyIdentityRefused');
      }
    }

    let plan: RedirectPlan;
    try {
      plan = planFromPod(pod, this.#deps.redirectConfig, { uid: proxyUid, gid: proxyGid });
    } catch (error) {
      if (!(error instanceof AnnotationError)) throw error;
      // The message names the pod, the annotation and the bad value.
      const reason = error.message;
      return this.#fail(ref, podLog, markText, reason, 'invalid_annotation', 'InvalidAnnotation');
    }
    const hash = rulesHash(renderPlan(plan));

    const sandbox = await this.#deps.finder.find(uid);
    if (!sandbox) {
      memory.sandbox = undefined; // gone: the liveness check has nothing left to watch
      this.#deps.watcher.watch(uid);
      const waited = performance.now() - memory.firstSeenAt;
      if (waited >= SANDBOX_REPORT_AFTER_MS && !memory.sandboxNotFoundReported) {
        memory.sandboxNotFoundReported = true;
        const scanError = this.#deps.finder.scanError ? ` (scanning failed: ${this.#deps.finder.scanError})` : '';
        const note = `no process of this pod with its own network namespace under ${config.procRoot} after ${Math.round(waited / 1000)} s${scanError}; still looking`;
        podLog.warn(note);
        this.#deps.events.record(ref, 'SandboxNotFound', note);
      }
      podLog.debug('sandbox not found yet');
      return { kind: 'retry', policy: SANDBOX_BACKOFF };
    }
    this.#deps.watcher.forget(uid);
    if (memory.sandbox?.inode !== sandbox.inode || memory.sandbox.pid !== sandbox.pid) memory.sandboxFoundAt = undefined;
    memory.sandbox = sandbox;
    // The latency clock starts when this sandbox is found for the programming to come; it
    // runs on through retries of that programming and stops when the pass is done.
    memory.sandboxFoundAt ??= queuedAt;

    const action = decideMarkAction({ markText, reinitToken: annotations[REINIT_ANNOTATION], netnsInode: sandbox.inode, rulesHash: hash });
    const mode: EngineOptions = { mode: this.#deps.iptablesMode, lockWaitSeconds: config.iptablesLockTimeout };
    const inNetns = <T>(operation: () => Promise<T>) => this.#inNetns(podLog, operation);
    try {
      if (action.kind === 'verify') {
        const fresh = memory.verified;
        if (fresh && fresh.markText === markText && fresh.inode === sandbox.inode && fresh.hash === hash && performance.now() - fresh.at < VERIFIED_FRESH_MS) {
          memory.sandboxFoundAt = undefined;
          return { kind: 'done' };
        }
        const check = await inNetns(() => verifyRedirect(sandbox.path, plan, mode));
        if (check.ok) {
          memory.sandboxFoundAt = undefined;
          memory.verified = { markText: markText!, inode: sandbox.inode, hash, at: performance.now() };
          this.#deps.metrics.podResults.inc({ outcome: 'verified' });
          podLog.debug({ netns: sandbox.inode }, 'mark and rules verified');
          this.#ensureMarkEvent(ref, memory, markText!);
          return { kind: 'done' };
        }
        podLog.warn({ netns: sandbox.inode, diff: check.diff }, 'rules drifted from the mark; repairing');
        await inNetns(() => applyRedirect(sandbox.path, plan, mode));
        return await this.#markInitialized(ref, podLog, sandbox, { hash, markText, outcome: 'repaired', event: 'Repaired', note: `rules had drifted in netns ${sandbox.inode}; re-programmed` });
      }
      if (action.kind === 'reinit') {
        // Rewritten in one transaction per family: no moment without redirection.
        await inNetns(() => applyRedirect(sandbox.path, plan, { ...mode, force: true }));
        const note = `re-initialized for token ${JSON.stringify(action.token)}`;
        return await this.#markInitialized(ref, podLog, sandbox, { hash, markText, reinitToken: action.token, outcome: 'initialized', event: 'Reinitialized', note });
      }
      const applied = await inNetns(() => applyRedirect(sandbox.path, plan, mode));
      podLog.debug({ why: action.why, changed: applied.changed }, 'programmed');
      if (wasInitialized(markText)) {
        const why = action.why === 'other-netns' ? 'the mark named another network namespace (new sandbox, or a forged mark)' : `the mark did not match (${action.why})`;
        return await this.#markInitialized(ref, podLog, sandbox, { hash, markText, outcome: 'repaired', event: 'Repaired', note: `${why}; programmed netns ${sandbox.inode}` });
      }
      return await this.#markInitialized(ref, podLog, sandbox, { hash, markText, outcome: 'initialized', event: 'Initialized', note: '' });
    } catch (error) {
      // A sandbox torn down under our feet (nsenter into a dead process) is no failure of the pod.
      if (error instanceof SandboxChanged || (error instanceof NetnsOperationError && !this.#deps.finder.isAlive(sandbox))) {
        podLog.info('sandbox changed while programming; looking again');
        this.#deps.watcher.watch(uid);
        return { kind: 'retry', policy: SANDBOX_BACKOFF };
      }
      if (!(error instanceof NetnsOperationError)) throw error; // API failures: the queue logs, counts and retries
      if (error.cause instanceof XtablesLockTimeout) {
        // Another program holds the lock: nothing wrong with the pod, so no error mark; it waits, told why.
        const note = `the xtables lock stayed held by another program for ${config.iptablesLockTimeout} s (PNC_IPTABLES_LOCK_TIMEOUT); retrying`;
        this.#deps.metrics.iptablesLockTimeouts.inc();
        this.#deps.events.record(ref, 'IptablesLockTimeout', note);
        podLog.warn({ netns: sandbox.inode }, note);
        return { kind: 'retry', policy: LOCK_BACKOFF };
      }
      const reason = `redirect failed in netns ${sandbox.inode}: ${error.message}`;
      this.#deps.metrics.podResults.inc({ outcome: 'error' });
      this.#deps.events.record(ref, 'RedirectFailed', reason);
      podLog.warn({ outcome: 'error' }, reason);
      await this.#writeError(ref, markText, reason, sandbox.inode);
      return { kind: 'retry', policy: ERROR_BACKOFF };
    }
  }

  async #markInitialized(ref: PodRef, podLog: Logger, sandbox: SandboxNetns, what: MarkWhat): Promise<WorkResult> {
    const { hash, markText, reinitToken, outcome, event, note } = what;
    // Fail closed: only called after applyRedirect succeeded, and applyRedirect reads the
    // rules back from the pod's own netns and throws unless they equal the plan (when it
    // changed nothing, its first read already equalled the plan): that read-back is the
    // verification the mark waits for, without a third iptables-save per family.
    // The netns must still be the pod's: a sandbox replaced meanwhile gets programmed afresh.
    if (!this.#deps.finder.isAlive(sandbox)) throw new SandboxChanged();
    const mark: Mark = { state: 'initialized', netns: sandbox.inode, rules: hash, at: new Date().toISOString() };
    const token = handledToken(markText, reinitToken);
    if (token !== undefined) mark.reinit = token;
    const written = await this.#writeMark(ref, podLog, mark);
    if (written === 'gone') return { kind: 'done' };
    if ('refused' in written) return written.refused;
    const memory = this.#memoryOf(ref.uid);
    memory.awaitingEcho = written.resourceVersion ? { resourceVersion: written.resourceVersion, at: performance.now() } : undefined;
    memory.markEventKnown = true;
    const latencyMs = performance.now() - (memory.sandboxFoundAt ?? performance.now());
    memory.sandboxFoundAt = undefined;
    this.#deps.metrics.markLatency.observe(latencyMs / 1000);
    this.#deps.metrics.podResults.inc({ outcome });
    memory.verified = { markText: encodeMark(mark), inode: sandbox.inode, hash, at: performance.now() };
    const ms = Math.round(latencyMs);
    podLog.info({ netns: sandbox.inode, rules: hash, outcome, latencyMs: ms }, `pod ${outcome}`);
    const detail = note ? `${note}; ` : '';
    const eventNote = `${detail}redirect programmed and verified in netns ${sandbox.inode} (rules ${hash}) in ${ms} ms from sandbox found to mark written`;
    this.#deps.events.record(ref, event, eventNote, eventNameFor(ref, mark.at));
    return { kind: 'done' };
  }

  /**
   * After a restart, an initialized mark whose Event may have been lost with the previous
   * process (killed between the two writes) gets it now. The Event's name comes from the
   * mark, so one recorded before is found (409) and nothing doubles. Once per pod and process.
   */
  #ensureMarkEvent(ref: PodRef, memory: PodMemory, markText: string): void {
    if (memory.markEventKnown) return;
    memory.markEventKnown = true;
    const mark = readMark(markText);
    if (mark?.state !== 'initialized' || !(Date.now() - Date.parse(mark.at) < EVENT_RECOVERY_WINDOW_MS)) return;
    const note = `redirect programmed and verified in netns ${mark.netns} (rules ${mark.rules}); mark written at ${mark.at} (recorded after an agent restart)`;
    this.#deps.events.record(ref, 'Initialized', note, eventNameFor(ref, mark.at));
  }

  /**
   * Writes a mark. A refusal retrying cannot fix (the annotations have no room left, RBAC)
   * becomes a Warning Event naming the cause and a slow retry: the init-waiter keeps the pod
   * waiting (fail closed), and `kubectl describe pod` says why.
   */
  async #writeMark(ref: PodRef, podLog: Logger, mark: Mark): Promise<WriteResult | { refused: WorkResult }> {
    try {
      return await this.#deps.writer.writeMark(ref, mark);
    } catch (error) {
      if (isConnectionError(error)) this.#memoryOf(ref.uid).writeUncertain = true;
      if (!isPermanentRefusal(error)) throw error;
      this.#deps.metrics.markWriteRefusals.inc({ status: String(error.status) });
      const note = `the API server refused the mark annotation ${STATUS_ANNOTATION} (${mark.state}): ${error.message}; the pod stays held by its init-waiter until the mark can be written (retried every few minutes)`;
      podLog.warn({ status: error.status }, note);
      this.#deps.events.record(ref, 'MarkWriteFailed', note);
      return { refused: { kind: 'retry', policy: MARK_REFUSED_BACKOFF } };
    }
  }

  /** Runs an engine call; one still running after LOCK_WARN_MS is waiting for the xtables lock: warned and counted. */
  async #inNetns<T>(podLog: Logger, operation: () => Promise<T>): Promise<T> {
    const startedAt = performance.now();
    const slow = setTimeout(() => {
      this.#deps.metrics.iptablesLockWaits.inc();
      podLog.warn({ waitedMs: LOCK_WARN_MS }, `iptables still running after ${LOCK_WARN_MS / 1000} s: most likely waiting for the xtables lock another program holds (up to ${this.#deps.config.iptablesLockTimeout} s)`);
    }, LOCK_WARN_MS);
    try {
      return await inNetns(operation);
    } finally {
      clearTimeout(slow);
      const tookMs = performance.now() - startedAt;
      if (tookMs >= LOCK_WARN_MS) podLog.info({ tookMs: Math.round(tookMs) }, 'iptables done after a wait');
    }
  }

  /** A pod that cannot be programmed until it changes: mark `error` (once), Warning, count. */
  async #fail(ref: PodRef, podLog: Logger, markText: string | undefined, reason: string, outcome: Outcome, eventReason: EventReason): Promise<WorkResult> {
    // Re-evaluated on every pod update (our own mark write included): say it once.
    if (markIsCurrent(markText, 'error', reason)) return { kind: 'done' };
    podLog.warn({ outcome }, reason);
    this.#deps.metrics.podResults.inc({ outcome });
    this.#deps.events.record(ref, eventReason, reason);
    await this.#writeError(ref, markText, reason);
    return { kind: 'done' };
  }

  async #writeError(ref: PodRef, markText: string | undefined, reason: string, netns?: number): Promise<void> {
    this.#memoryOf(ref.uid).verified = undefined;
    if (markIsCurrent(markText, 'error', reason)) return;
    const mark: Mark = { state: 'error', at: new Date().toISOString(), reason };
    if (netns !== undefined) mark.netns = netns;
    const token = handledToken(markText);
    if (token !== undefined) mark.reinit = token;
    const written = await this.#writeMark(ref, this.#deps.log.child({ namespace: ref.namespace, pod: ref.name, uid: ref.uid }), mark);
    if (written === 'gone' || 'refused' in written) return;
    if (written.resourceVersion) this.#memoryOf(ref.uid).awaitingEcho = { resourceVersion: written.resourceVersion, at: performance.now() };
  }

  #memoryOf(uid: string): PodMemory {
    let memory = this.#memory.get(uid);
    if (!memory) {
      memory = { firstSeenAt: performance.now(), sandboxNotFoundReported: false };
      this.#memory.set(uid, memory);
    }
    return memory;
  }
}

class SandboxChanged extends Error {
  override name = 'SandboxChanged';
}

/** Anything that went wrong inside the pod's netns (iptables, nsenter, verification). */
class NetnsOperationError extends Error {
  override name = 'NetnsOperationError';
}

async function inNetns<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (error instanceof NetnsOperationError) throw error;
    throw new NetnsOperationError(error instanceof Error ? error.message : String(error), { cause: error });
  }
}
