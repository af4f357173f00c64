// Carries out one pass for a pod: asks reconcile-decision.ts what to do, then does it
// with the injected engine, finder, writer and Event recorder, and records what happened
// in the pod's memory, the metrics and the log. Failures of the pod are marked and
// evented; API failures and bugs go to the work queue, which logs, counts and retries.
import type { V1Pod } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { type Mark, encodeMark, encodeNetnsRecord } from '../pod-contract/index.ts';
import {
  type ApplyOptions,
  type EngineOptions,
  type IptablesMode,
  type Netns,
  type RedirectPlan,
  type ValidatedNodeConfig,
  RedirectError,
  applyRedirect,
  verifyRedirectWithRecord,
  writeNetnsRecord,
} from '../redirect/index.ts';
import { type EventRecorder, eventNameFor } from '../kube/event-recorder.ts';
import { isConnectionError } from '../kube/kube-client.ts';
import { type PodRef, type PodStatusWriter, type WriteResult, isPermanentRefusal } from '../kube/pod-status-writer.ts';
import { ERROR_BACKOFF, SANDBOX_BACKOFF } from './backoff.ts';
import { countFindings } from './bypass-audit.ts';
import type { AgentConfig } from './config.ts';
import { SandboxChanged, classifyEngineFailure } from './engine-failure.ts';
import type { AgentMetrics } from './metrics.ts';
import type { NetnsFinder, SandboxNetns } from './netns-finder.ts';
import type { NamespaceAnnotations, NamespaceLabels } from './namespace-keys.ts';
import { allConfigured, type NodeFamilies } from './node-families.ts';
import { PodMemories, type PodMemory } from './pod-memory.ts';
import { type Bypass, ECHO_WAIT_MS, type Failure, type Programming, type Target, decidePod, decideTarget, decideWithSandbox } from './reconcile-decision.ts';
import { markIsCurrent, recordMatches } from './mark-decision.ts';
import { errorMark, initializedMark, markRefusedNote, programmedNote, recoveredInitializedEvent } from './reconcile-reports.ts';
import type { SandboxWatcher } from './sandbox-watcher.ts';
import type { WorkResult } from './work-queue.ts';

/**
 * A mark the API server refuses for good (422: no room left under the annotation size
 * limit) is retried this slowly: the pod owner has to act, and the Warning says so.
 */
const MARK_REFUSED_BACKOFF = { initialMs: 60_000, maxMs: 600_000, factor: 2, jitter: 0.2 };
/** The xtables lock held elsewhere: try again soon, but do not pile up on it. */
const LOCK_BACKOFF = { initialMs: 1_000, maxMs: 30_000, factor: 2, jitter: 0.2 };
/** An iptables run still going after this long is waiting for the lock (legacy); say so. */
const LOCK_WARN_MS = 3_000;
/** The echo's own event queues the pod again; this retry only covers a lost echo. */
const ECHO_BACKSTOP = { initialMs: ECHO_WAIT_MS, maxMs: ECHO_WAIT_MS, factor: 1, jitter: 0 };

/** Programs and checks the rules in a netns: the redirect engine, or a fake in tests. */
export interface RedirectEngine {
  /**
   * Throws unless the rules read back equal the plan; returns the hash of the rules it applied.
   * Enters the netns only while its inode is still the one the finder saw (else NetnsMismatch).
   */
  apply(netns: Netns, plan: RedirectPlan, options: ApplyOptions): Promise<{ hash: string; changed: boolean }>;
  /** Whether the rules equal the plan, and the netns record (lo's alias, '' when none), read together. */
  verifyWithRecord(netns: Netns, plan: RedirectPlan, options: EngineOptions): Promise<{ ok: boolean; diff: string; record: string }>;
  /** Sets the netns record; '' clears it. */
  writeRecord(netns: Netns, text: string): Promise<void>;
}

const REDIRECT_ENGINE: RedirectEngine = { apply: applyRedirect, verifyWithRecord: verifyRedirectWithRecord, writeRecord: writeNetnsRecord };

/** A mark's id: 96 random bits, 16 base64url characters. */
const newMarkId = (): string => randomBytes(12).toString('base64url');

/** Monotonic milliseconds (latencies, waits) and the wall clock (marks, Event ages). */
export interface Clock {
  now(): number;
  date(): Date;
}

const SYSTEM_CLOCK: Clock = { now: () => performance.now(), date: () => new Date() };

export interface ReconcilerDeps {
  config: AgentConfig;
  /** Plans with the node's enabled families (nodeFamilies.enabled). */
  redirectConfig: ValidatedNodeConfig;
  iptablesMode: IptablesMode;
  /** What the kernel can redirect; default: every family of redirectConfig. */
  nodeFamilies?: NodeFamilies;
  /** The pod with this UID from the informer cache. */
  getPod: (uid: string) => V1Pod | undefined;
  /** The namespace's annotations from the namespace informer; undefined when unknown. */
  getNamespaceAnnotations: (namespace: string) => NamespaceAnnotations | undefined;
  /** The namespace's labels from the namespace informer; undefined when unknown. */
  getNamespaceLabels: (namespace: string) => NamespaceLabels | undefined;
  finder: Pick<NetnsFinder, 'find' | 'isAlive' | 'scanError'>;
  watcher: Pick<SandboxWatcher, 'watch' | 'forget'>;
  writer: Pick<PodStatusWriter, 'writeMark' | 'readPod'>;
  events: Pick<EventRecorder, 'record'>;
  metrics: AgentMetrics;
  log: Logger;
  engine?: RedirectEngine;
  clock?: Clock;
  /** Ids for new marks; random by default. */
  newMarkId?: () => string;
}

/** One pass's context. */
interface Pass {
  ref: PodRef;
  log: Logger;
  memory: PodMemory;
}

export class Reconciler {
  readonly #deps: ReconcilerDeps;
  readonly #engine: RedirectEngine;
  readonly #clock: Clock;
  readonly #nodeFamilies: NodeFamilies;
  readonly #newId: () => string;
  readonly #memories = new PodMemories();
  /** Bugs already logged and counted on their way to the queue. */
  readonly #reportedBugs = new WeakSet<Error>();

  constructor(deps: ReconcilerDeps) {
    this.#deps = deps;
    this.#engine = deps.engine ?? REDIRECT_ENGINE;
    this.#clock = deps.clock ?? SYSTEM_CLOCK;
    this.#nodeFamilies = deps.nodeFamilies ?? allConfigured(deps.redirectConfig.families);
    this.#newId = deps.newMarkId ?? newMarkId;
  }

  forget(uid: string): void {
    const gauge = this.#memories.get(uid)?.bypassGauge;
    if (gauge) for (const finding of gauge.kinds) this.#deps.metrics.podBypassFindings.remove({ namespace: gauge.namespace, pod: gauge.pod, finding });
    this.#memories.forget(uid);
    this.#deps.watcher.forget(uid);
  }

  /** Called for every pod event before it is queued. */
  observe(uid: string, resourceVersion: string | undefined): void {
    this.#memories.get(uid)?.echoSeen(resourceVersion);
  }

  /** UIDs of pods whose last known sandbox process is gone or changed netns. */
  podsWithChangedSandbox(): string[] {
    const changed: string[] = [];
    for (const [uid, memory] of this.#memories.entries()) {
      if (memory.sandbox && !this.#deps.finder.isAlive(memory.sandbox)) changed.push(uid);
    }
    return changed;
  }

  /**
   * `queuedAt`: when the pod was queued for this pass; a sandbox found in it counts as found then.
   * Throws for API failures and bugs (a bug is logged and counted as one first).
   */
  async reconcile(uid: string, queuedAt = this.#clock.now()): Promise<WorkResult> {
    try {
      return await this.#pass(uid, queuedAt);
    } catch (error) {
      if (isProgrammingError(error) && !this.#reportedBugs.has(error)) this.#bug(this.#deps.log.child({ uid }), error);
      throw error;
    }
  }

  async #pass(uid: string, queuedAt: number): Promise<WorkResult> {
    const { config, redirectConfig } = this.#deps;
    const nodeFamilies = this.#nodeFamilies;
    const cached = this.#deps.getPod(uid);
    const meta = cached?.metadata;
    const ref: PodRef = { namespace: meta?.namespace ?? '', name: meta?.name ?? '', uid };
    const log = this.#deps.log.child({ namespace: ref.namespace, pod: ref.name, uid });
    const namespaceAnnotations = cached ? this.#deps.getNamespaceAnnotations(ref.namespace) : undefined;
    const namespaceLabels = cached ? this.#deps.getNamespaceLabels(ref.namespace) : undefined;
    this.observe(uid, meta?.resourceVersion);
    const now = this.#clock.now();
    let step = decidePod({ pod: cached, namespaceAnnotations, namespaceLabels, memory: this.#memories.get(uid), now, config, redirectConfig, nodeFamilies });
    if (step.kind === 'skip') {
      if (step.why !== 'gone') log.debug({ reason: step.why }, 'not eligible');
      this.forget(uid);
      return { kind: 'done' };
    }
    const memory = this.#memories.of(uid, now);
    const pass: Pass = { ref, log, memory };
    if (step.kind === 'wait-for-echo') {
      log.debug({ resourceVersion: step.resourceVersion }, 'older than our last mark write; waiting for its echo');
      return { kind: 'retry', policy: ECHO_BACKSTOP };
    }
    if (step.kind === 'read-fresh') {
      // The wait for the echo stays until the watch has caught up, so older copies it still delivers are never acted on.
      const fresh = await this.#deps.writer.readPod(ref);
      memory.freshlyRead();
      if (fresh === 'gone') {
        this.forget(uid);
        return { kind: 'done' };
      }
      log.debug({ cached: step.cachedResourceVersion, fresh: fresh.metadata?.resourceVersion }, 'echo of our mark write is late; acting on a fresh read');
      step = decideTarget({ pod: fresh, namespaceAnnotations, namespaceLabels, config, redirectConfig, nodeFamilies });
    }
    if (step.kind === 'find-sandbox') this.#publishBypass(pass, step.target.bypass);
    if (step.kind === 'refuse' && step.bypass) this.#publishBypass(pass, step.bypass);
    switch (step.kind) {
      case 'wait-for-namespace':
        log.debug('namespace not known yet; proxy identity or bypass policy undecided');
        return { kind: 'retry', policy: SANDBOX_BACKOFF };
      case 'wait-for-pod-ips':
        // The status update that brings them queues the pod again.
        log.debug('addresses not known yet; this node lacks a family the pod may need');
        return { kind: 'retry', policy: SANDBOX_BACKOFF };
      case 'refuse':
      case 'invalid':
        return this.#fail(pass, step);
      case 'find-sandbox':
        return this.#withSandbox(pass, step.target, queuedAt);
    }
  }

  async #withSandbox(pass: Pass, target: Target, queuedAt: number): Promise<WorkResult> {
    const { ref, log, memory } = pass;
    const sandbox = await this.#deps.finder.find(ref.uid);
    const inputs = { target, sandbox, memory, now: this.#clock.now(), procRoot: this.#deps.config.procRoot, scanError: this.#deps.finder.scanError };
    const step = decideWithSandbox(inputs);
    if (!sandbox || step.kind === 'wait-for-sandbox') {
      memory.sandboxMissing();
      this.#deps.watcher.watch(ref.uid);
      if (step.kind === 'wait-for-sandbox' && step.report) {
        memory.reportedSandboxNotFound();
        log.warn(step.report);
        this.#deps.events.record(ref, 'SandboxNotFound', step.report);
      }
      log.debug('sandbox not found yet');
      return { kind: 'retry', policy: SANDBOX_BACKOFF };
    }
    this.#deps.watcher.forget(ref.uid);
    memory.sandboxFound(sandbox, queuedAt);
    this.#warnOfBypass(pass, target.bypass, sandbox.inode);
    const engine = { mode: this.#deps.iptablesMode, lockWaitSeconds: this.#deps.config.iptablesLockTimeout };
    try {
      switch (step.kind) {
        case 'fresh':
          memory.settled(this.#clock.now());
          return { kind: 'done' };
        case 'verify': {
          const check = await this.#inNetns(log, () => this.#engine.verifyWithRecord(sandbox, target.plan, engine));
          if (!check.ok) {
            log.warn({ netns: sandbox.inode, diff: check.diff }, 'rules drifted from the mark; repairing');
            return await this.#program(pass, target, sandbox, step.drifted, engine);
          }
          if (!recordMatches(step.markText, check.record)) {
            log.warn({ netns: sandbox.inode, record: check.record }, 'the netns holds no record of this mark; programming it');
            return await this.#program(pass, target, sandbox, step.unrecorded, engine);
          }
          memory.settled(this.#clock.now());
          memory.verifiedNow({ markText: step.markText, sandbox, hash: target.hash, at: this.#clock.now() });
          this.#deps.metrics.podResults.inc({ outcome: 'verified' });
          log.debug({ netns: sandbox.inode }, 'mark, netns record and rules verified');
          this.#ensureMarkEvent(pass, step.markText);
          return { kind: 'done' };
        }
        default:
          return await this.#program(pass, target, sandbox, step, engine);
      }
    } catch (error) {
      return await this.#engineFailed(pass, target, sandbox, error);
    }
  }

  async #program(pass: Pass, target: Target, sandbox: SandboxNetns, programming: Programming, engine: EngineOptions): Promise<WorkResult> {
    const { ref, log, memory } = pass;
    // Fail closed: a waiter passes on the record, so it goes before the rules it describes change.
    if (programming.clearRecord) await this.#inNetns(log, () => this.#engine.writeRecord(sandbox, ''));
    const applied = await this.#inNetns(log, () => this.#engine.apply(sandbox, target.plan, { ...engine, force: programming.force }));
    if (programming.why !== undefined) log.debug({ why: programming.why, changed: applied.changed }, 'programmed');
    // Fail closed: apply reads the rules back from the pod's own netns and throws unless they
    // equal the plan; that read-back is the verification the mark waits for. The netns must
    // still be the pod's: a sandbox replaced meanwhile gets programmed afresh.
    if (!this.#deps.finder.isAlive(sandbox)) throw new SandboxChanged();
    // The mark records what was applied.
    const mark = initializedMark(sandbox.inode, applied.hash, this.#newId(), this.#clock.date(), target.markText, programming.reinitToken);
    const written = await this.#writeMark(pass, mark);
    if (written === 'gone') return { kind: 'done' };
    if ('refused' in written) return written.refused;
    // After the API write: a pod held by a mark the API server refused must not start on the record alone.
    await this.#inNetns(log, () => this.#engine.writeRecord(sandbox, encodeNetnsRecord(mark)));
    const now = this.#clock.now();
    const latencyMs = memory.settled(now);
    memory.initializedMarkWritten(written.resourceVersion, { markText: encodeMark(mark), sandbox, hash: applied.hash, at: now });
    this.#deps.metrics.markLatency.observe(latencyMs / 1000);
    this.#deps.metrics.podResults.inc({ outcome: programming.outcome });
    log.info({ netns: sandbox.inode, rules: applied.hash, outcome: programming.outcome, latencyMs: Math.round(latencyMs) }, `pod ${programming.outcome}`);
    const note = programmedNote(programming.note, sandbox.inode, applied.hash, latencyMs);
    this.#deps.events.record(ref, programming.event, note, eventNameFor(ref, mark.at));
    return { kind: 'done' };
  }

  async #engineFailed(pass: Pass, target: Target, sandbox: SandboxNetns, error: unknown): Promise<WorkResult> {
    const { ref, log } = pass;
    const failure = classifyEngineFailure(error, sandbox.inode, () => this.#deps.finder.isAlive(sandbox), this.#deps.config.iptablesLockTimeout);
    switch (failure.kind) {
      case 'sandbox-changed':
        log.info('sandbox changed while programming; looking again');
        this.#deps.watcher.watch(ref.uid);
        return { kind: 'retry', policy: SANDBOX_BACKOFF };
      case 'lock-timeout':
        this.#deps.metrics.iptablesLockTimeouts.inc();
        this.#deps.events.record(ref, 'IptablesLockTimeout', failure.note);
        log.warn({ netns: sandbox.inode }, failure.note);
        return { kind: 'retry', policy: LOCK_BACKOFF };
      case 'redirect-failed':
        this.#deps.metrics.podResults.inc({ outcome: 'error' });
        this.#deps.events.record(ref, 'RedirectFailed', failure.reason);
        log.warn({ outcome: 'error' }, failure.reason);
        await this.#writeError(pass, target.markText, failure.reason, sandbox);
        return { kind: 'retry', policy: ERROR_BACKOFF };
      case 'unhandled':
        // Not the pod's failure: the queue logs and retries it.
        throw error;
    }
  }

  /**
   * After a restart, an initialized mark whose Event may have been lost with the previous
   * process (killed between the two writes) gets it now. The Event's name comes from the
   * mark, so one recorded before is found (409) and nothing doubles. Once per pod and process.
   */
  #ensureMarkEvent(pass: Pass, markText: string): void {
    if (!pass.memory.claimMarkEvent()) return;
    const recovered = recoveredInitializedEvent(markText, this.#clock.date());
    if (recovered) this.#deps.events.record(pass.ref, 'Initialized', recovered.note, eventNameFor(pass.ref, recovered.at));
  }

  /**
   * Writes a mark. A refusal retrying cannot fix (the annotations have no room left, RBAC)
   * becomes a Warning Event naming the cause and a slow retry: the init-waiter keeps the pod
   * waiting (fail closed), and `kubectl describe pod` says why.
   */
  async #writeMark(pass: Pass, mark: Mark): Promise<WriteResult | { refused: WorkResult }> {
    try {
      return await this.#deps.writer.writeMark(pass.ref, mark);
    } catch (error) {
      if (isConnectionError(error)) pass.memory.writeMayHaveLanded();
      if (!isPermanentRefusal(error)) throw error;
      this.#deps.metrics.markWriteRefusals.inc({ status: String(error.status) });
      const note = markRefusedNote(mark.state, error.message);
      pass.log.warn({ status: error.status }, note);
      this.#deps.events.record(pass.ref, 'MarkWriteFailed', note);
      return { refused: { kind: 'retry', policy: MARK_REFUSED_BACKOFF } };
    }
  }

  /** Runs an engine call; one still running after LOCK_WARN_MS is waiting for the xtables lock: warned and counted. */
  async #inNetns<T>(log: Logger, operation: () => Promise<T>): Promise<T> {
    const startedAt = this.#clock.now();
    const slow = setTimeout(() => {
      this.#deps.metrics.iptablesLockWaits.inc();
      log.warn(
        { waitedMs: LOCK_WARN_MS },
        `iptables still running after ${LOCK_WARN_MS / 1000} s: most likely waiting for the xtables lock another program holds (up to ${this.#deps.config.iptablesLockTimeout} s)`,
      );
    }, LOCK_WARN_MS);
    try {
      return await operation();
    } catch (error) {
      // Anything but the engine's own errors is a bug in the engine or in how it is called.
      if (!(error instanceof RedirectError)) this.#bug(log, error);
      throw error;
    } finally {
      clearTimeout(slow);
      const tookMs = this.#clock.now() - startedAt;
      if (tookMs >= LOCK_WARN_MS) log.info({ tookMs: Math.round(tookMs) }, 'iptables done after a wait');
    }
  }

  /**
   * Audit mode: a pod whose containers could bypass the redirect is programmed, and said so
   * once per sandbox (not every resync). The Event is named after the sandbox and the note,
   * so an agent restart finds it already there (409) instead of doubling it.
   */
  #warnOfBypass(pass: Pass, bypass: Bypass, inode: number): void {
    const { ref, log, memory } = pass;
    if (bypass.containers.length === 0) return;
    if (memory.bypassWarned?.inode === inode && memory.bypassWarned.note === bypass.note) return;
    memory.warnedOfBypass(inode, bypass.note);
    const findings = Object.fromEntries(bypass.containers.map((c) => [c.container, c.findings.map((f) => f.kind)]));
    log.warn({ netns: inode, bypass: findings }, bypass.note);
    this.#deps.events.record(ref, 'RedirectBypassPossible', bypass.note, eventNameFor(ref, `bypass/${inode}/${bypass.note}`));
  }

  /** The pod's series of pnc_pod_bypass_findings: one per finding, the number of containers with it. */
  #publishBypass(pass: Pass, bypass: Bypass): void {
    const { ref, memory } = pass;
    const counts = countFindings(bypass.containers);
    const gauge = this.#deps.metrics.podBypassFindings;
    for (const finding of memory.bypassGauge?.kinds ?? []) if (!counts.has(finding)) gauge.remove({ namespace: ref.namespace, pod: ref.name, finding });
    for (const [finding, containers] of counts) gauge.set({ namespace: ref.namespace, pod: ref.name, finding }, containers);
    memory.publishedBypass(counts.size > 0 ? { namespace: ref.namespace, pod: ref.name, kinds: [...counts.keys()] } : undefined);
  }

  /** A pod that cannot be programmed until it changes: mark `error` (once), Warning, count. */
  async #fail(pass: Pass, failure: Failure): Promise<WorkResult> {
    // Re-evaluated on every pod update (our own mark write included): say it once.
    if (failure.reported) return { kind: 'done' };
    pass.log.warn({ outcome: failure.outcome }, failure.reason);
    this.#deps.metrics.podResults.inc({ outcome: failure.outcome });
    const known = pass.memory.sandbox;
    await this.#writeError(pass, failure.markText, failure.reason, known && this.#deps.finder.isAlive(known) ? known : undefined);
    // After the mark, as for Initialized: whoever reads the Warning finds the pod marked.
    this.#deps.events.record(pass.ref, failure.event, failure.reason);
    return { kind: 'done' };
  }

  /** `sandbox`: the pod's, when known; its netns record is cleared first, so no waiter passes on it any more. */
  async #writeError(pass: Pass, markText: string | undefined, reason: string, sandbox?: SandboxNetns): Promise<void> {
    pass.memory.failed();
    if (sandbox) {
      // Best effort: an error mark is due whatever happens to the record (the netns may be gone).
      await this.#engine.writeRecord(sandbox, '').catch((error: unknown) => {
        if (!(error instanceof RedirectError)) throw error;
        pass.log.warn({ netns: sandbox.inode, err: error.message }, 'could not clear the netns record before the error mark');
      });
    }
    if (markIsCurrent(markText, 'error', reason)) return;
    const written = await this.#writeMark(pass, errorMark(reason, this.#clock.date(), markText, sandbox?.inode));
    if (written === 'gone' || 'refused' in written) return;
    pass.memory.errorMarkWritten(written.resourceVersion, this.#clock.now());
  }

  /** Logged at error level and counted once; the caller rethrows, so the queue retries the pod. */
  #bug(log: Logger, error: unknown): void {
    if (error instanceof Error) this.#reportedBugs.add(error);
    this.#deps.metrics.reconcileBugs.inc();
    log.error({ err: error }, 'bug in the agent (not a failure of the pod); the pod is retried');
  }
}

/** Errors JavaScript itself throws at code that is wrong, as opposed to failures of the world outside. */
function isProgrammingError(error: unknown): error is Error {
  return error instanceof TypeError || error instanceof RangeError || error instanceof ReferenceError || error instanceof SyntaxError;
}
