// One pod, one pass: eligible? -> allowed identity? -> plan -> sandbox netns ->
// does the existing mark count? -> apply -> verify -> mark. Every per-pod failure is
// caught here or by the work queue: logged, counted, evented, marked `error`.
import type { V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { type Mark, REINIT_ANNOTATION, STATUS_ANNOTATION, encodeMark } from '../mark.ts';
import {
  AnnotationError,
  type IptablesMode,
  type NodeRedirectConfig,
  type RedirectPlan,
  applyRedirect,
  planFromPod,
  renderPlan,
  rulesHash,
  verifyRedirect,
} from '../redirect/index.ts';
import { ERROR_BACKOFF, SANDBOX_BACKOFF } from './backoff.ts';
import type { AgentConfig } from './config.ts';
import { decideEligibility } from './eligibility.ts';
import type { EventReason, EventRecorder } from '../kube/event-recorder.ts';
import { describeViolations, findIdentityViolations } from './identity-policy.ts';
import { decideProxyIdentity } from './proxy-identity.ts';
import { decideMarkAction, handledToken, markIsCurrent, wasInitialized } from './mark-decision.ts';
import type { AgentMetrics, Outcome } from './metrics.ts';
import type { NetnsFinder, SandboxNetns } from './netns-finder.ts';
import type { PodRef, PodStatusWriter } from '../kube/pod-status-writer.ts';
import type { SandboxWatcher } from './sandbox-watcher.ts';
import type { WorkResult } from './work-queue.ts';

/** How long a sandbox may stay missing before a SandboxNotFound Warning. */
export const SANDBOX_REPORT_AFTER_MS = 60_000;
/**
 * Our own mark write comes back as a pod update; rules verified this recently in the
 * same netns with the same hash are not read back again for it.
 */
const VERIFIED_FRESH_MS = 30_000;

export interface ReconcilerDeps {
  config: AgentConfig;
  redirectConfig: NodeRedirectConfig;
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
    if (memory?.awaitingEcho && memory.awaitingEcho.resourceVersion === resourceVersion) memory.awaitingEcho = undefined;
  }

  /** UIDs of pods whose last known sandbox process is gone or changed netns. */
  podsWithChangedSandbox(): string[] {
    const changed: string[] = [];
    for (const [uid, memory] of this.#memory) {
      if (memory.sandbox && !this.#deps.finder.isAlive(memory.sandbox)) changed.push(uid);
    }
    return changed;
  }

  async reconcile(uid: string): Promise<WorkResult> {
    const { config, log } = this.#deps;
    const pod = this.#deps.getPod(uid);
    if (!pod) {
      this.forget(uid);
      return { kind: 'done' };
    }
    const meta = pod.metadata!;
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
    if (memory.awaitingEcho) {
      if (performance.now() - memory.awaitingEcho.at < ECHO_WAIT_MS) {
        podLog.debug({ resourceVersion: meta.resourceVersion }, 'older than our last mark write; waiting for its echo');
        // The echo's own event queues the pod again; this retry only covers a lost echo.
        return { kind: 'retry', policy: ECHO_BACKSTOP };
      }
      memory.awaitingEcho = undefined;
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
      plan = planFromPod(pod, { ...this.#deps.redirectConfig, proxyUid, proxyGid });
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
    memory.sandboxFoundAt ??= performance.now();

    const action = decideMarkAction({ markText, reinitToken: annotations[REINIT_ANNOTATION], netnsInode: sandbox.inode, rulesHash: hash });
    const mode = { mode: this.#deps.iptablesMode };
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
    const written = await this.#deps.writer.writeMark(ref, mark);
    if (written === 'gone') return { kind: 'done' };
    const memory = this.#memoryOf(ref.uid);
    memory.awaitingEcho = { resourceVersion: written.resourceVersion, at: performance.now() };
    const latencyMs = performance.now() - (memory.sandboxFoundAt ?? performance.now());
    memory.sandboxFoundAt = undefined;
    this.#deps.metrics.markLatency.observe(latencyMs / 1000);
    this.#deps.metrics.podResults.inc({ outcome });
    memory.verified = { markText: encodeMark(mark), inode: sandbox.inode, hash, at: performance.now() };
    const ms = Math.round(latencyMs);
    podLog.info({ netns: sandbox.inode, rules: hash, outcome, latencyMs: ms }, `pod ${outcome}`);
    const detail = note ? `${note}; ` : '';
    this.#deps.events.record(ref, event, `${detail}redirect programmed and verified in netns ${sandbox.inode} (rules ${hash}) in ${ms} ms from sandbox found to mark written`);
    return { kind: 'done' };
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
    const written = await this.#deps.writer.writeMark(ref, mark);
    if (written !== 'gone') this.#memoryOf(ref.uid).awaitingEcho = { resourceVersion: written.resourceVersion, at: performance.now() };
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
