// The init-waiter's state machine: holds the pod until the node's controller has recorded it
// initialized IN THIS network namespace (the netns record, lo's alias) and (unless turned off)
// outbound capture demonstrably works; on timeout, or once an `error` mark has stood for the error grace, it
// ends with the reason (a restartPolicy Never pod has neither by default: an exit would fail it for good). Every effect (annotations file, self-test, timers, log, exit) is
// injected: main.ts wires the real ones, unit tests fakes.
import type { AnnotationsSnapshot } from './annotations-watcher.ts';
import { EXIT, exitCodeForTimeout } from './exit-codes.ts';
import type { WaiterOptions } from './options.ts';
import { chooseProbeTarget, ProbeTargetError } from './probe-target.ts';
import type { Family, PodNetwork, ProbeTarget } from './probe-target.ts';
import { assessMark } from './readiness.ts';
import type { RecordSnapshot, Waiting } from './readiness.ts';
import type { SelfTestResult } from './self-test.ts';

export const STILL_WAITING_LOG_MS = 5_000;
export const SELF_TEST_RETRY_MS = 1_000;

export interface Clock {
  /** Calls fn once after ms; the returned function cancels it. */
  after(ms: number, fn: () => void): () => void;
  /** Calls fn every ms (need not keep the process alive); the returned function cancels it. */
  every(ms: number, fn: () => void): () => void;
}

/** Delivers the current snapshot at once (possibly before returning), then every change, until closed. */
export type AnnotationsSource = (onSnapshot: (snapshot: AnnotationsSnapshot) => void) => { close(): void };

/** Delivers the netns record at once (possibly before returning), then every change, until closed. */
export type RecordSource = (onRecord: (record: RecordSnapshot) => void) => { close(): void };

export type SelfTest = (targets: ProbeTarget[]) => Promise<SelfTestResult>;

export interface WaiterDeps {
  options: WaiterOptions;
  /** What the container knows of its pod: its netns inode, the families it has, its interfaces and routes, the UID it runs as (for the log). */
  pod: { netns: number; families: readonly Family[]; network: PodNetwork; uid: number | undefined };
  annotations: AnnotationsSource;
  netnsRecord: RecordSource;
  selfTest: SelfTest;
  clock: Clock;
  log(message: string): void;
  /** Ends the run with the code and the last words; in a pod it never returns. */
  exit(code: number, message: string): void;
}

/**
 * - starting: before start().
 * - waiting: the latest snapshot does not let the pod go; waits for the next one.
 * - testing: the self-test runs for the snapshot judged last; a newer snapshot voids its result.
 * - retrying: the self-test failed; it runs again after SELF_TEST_RETRY_MS unless a new snapshot comes first.
 * - done: exit was called; nothing happens any more.
 */
type State = { name: 'starting' } | { name: 'waiting' } | { name: 'testing' } | { name: 'retrying'; cancel: () => void } | { name: 'done' };

export type Phase = State['name'];

export class Waiter {
  readonly #deps: WaiterDeps;
  #state: State = { name: 'starting' };
  /** What it waits for: logged on change, every STILL_WAITING_LOG_MS, and on timeout or SIGTERM. */
  #waiting: Waiting = { code: 'no-file', message: 'starting' };
  #snapshot: AnnotationsSnapshot | undefined;
  #record: RecordSnapshot = { kind: 'text', text: '' };
  /** Counts the inputs (annotations, record) received: a self-test's pass counts only if none came while it ran. */
  #inputs = 0;
  #reportedProblems: string | undefined;
  #reportedSkips: string | undefined;
  #stop: (() => void)[] = [];
  /** Cancels the error-grace timer, which runs while an `error` mark stands. */
  #cancelErrorGrace: (() => void) | undefined;

  constructor(deps: WaiterDeps) {
    this.#deps = deps;
  }

  get phase(): Phase {
    return this.#state.name;
  }

  start(): void {
    const { options, pod, clock, log } = this.#deps;
    log(
      `waiting for pod-network-controller to record netns ${pod.netns} initialized (lo's alias; ${options.annotationsFile} for the mark and annotations); ` +
        `self-test ${options.validate ? `on (${pod.families.join('+')}, proxy port ${options.proxyPort})` : 'off'}; ` +
        `uid ${pod.uid}; ${limits(options)}`,
    );
    // The record first, so the annotations' first snapshot is judged with it.
    const record = this.#deps.netnsRecord((next) => this.#guard(() => this.#onInput(() => (this.#record = next))));
    this.#stop.push(() => record.close());
    const source = this.#deps.annotations((snapshot) => this.#guard(() => this.#onInput(() => (this.#snapshot = snapshot))));
    this.#stop.push(() => source.close());
    // The first snapshot may already have ended it.
    if (this.#state.name === 'done') return this.#stopAll();
    this.#stop.push(clock.every(STILL_WAITING_LOG_MS, () => log(`still waiting: ${this.#waiting.message}`)));
    if (options.timeoutMs !== undefined) this.#stop.push(clock.after(options.timeoutMs, () => this.#onTimeout()));
  }

  /** SIGTERM: the pod was deleted while waiting. */
  terminate(): void {
    this.#finish(EXIT.terminated, `terminated while waiting: ${this.#waiting.message}`);
  }

  #onInput(update: () => void): void {
    if (this.#state.name === 'done') return;
    update();
    this.#inputs++;
    // Before the annotations' first snapshot there is nothing to judge.
    if (this.#snapshot === undefined) return;
    // Judged once the running test is over, so a pass never outlives its mark.
    if (this.#state.name === 'testing') return;
    if (this.#state.name === 'retrying') this.#state.cancel();
    this.#judge();
  }

  #judge(): void {
    const { options, pod } = this.#deps;
    const snapshot = this.#snapshot as AnnotationsSnapshot;
    const verdict = assessMark(snapshot, pod.netns, this.#record);
    if (verdict.parsed && verdict.parsed.problemCount > 0) {
      const problems = `${verdict.parsed.problemCount} malformed line(s) in ${options.annotationsFile} ignored: ${verdict.parsed.problems.join('; ')}`;
      if (problems !== this.#reportedProblems) this.#deps.log(problems);
      this.#reportedProblems = problems;
    }
    if (!verdict.ready) return this.#wait(verdict.waiting);

    const markSummary = `rules ${verdict.record.rules}, mark ${verdict.record.id}, recorded in lo's alias`;
    if (!options.validate) {
      return this.#finish(EXIT.ready, `ready: pod-network-controller recorded netns ${pod.netns} initialized (${markSummary}); self-test off`);
    }
    const targets: ProbeTarget[] = [];
    const skipped: string[] = [];
    try {
      for (const family of pod.families) {
        const choice = chooseProbeTarget(verdict.parsed.annotations, family, { address: options.probeAddresses[family], port: options.probePort }, pod.network);
        if ('target' in choice) targets.push(choice.target);
        else skipped.push(`${family}: ${choice.skip}`);
      }
    } catch (error) {
      if (!(error instanceof ProbeTargetError)) throw error;
      return this.#wait({ code: 'self-test', message: `cannot run the redirect self-test: ${error.message}` });
    }
    const skips = skipped.length > 0 ? `no self-test for ${skipped.join('; ')}` : undefined;
    if (skips !== undefined && skips !== this.#reportedSkips) this.#deps.log(skips);
    this.#reportedSkips = skips;
    if (targets.length === 0)
      return this.#finish(
        EXIT.ready,
        `ready: netns ${pod.netns} recorded initialized (${markSummary}); ${skips ?? 'the pod has no address to probe from, nothing to self-test'}`,
      );
    // So a timeout during the first test names the test, not the state before the mark came.
    if (this.#waiting.code !== 'self-test') this.#setWaiting({ code: 'self-test', message: 'the netns record is right; running the redirect self-test' });
    this.#state = { name: 'testing' };
    const tested = this.#inputs;
    this.#deps.selfTest(targets).then(
      (result) => this.#guard(() => this.#onSelfTestDone(tested, result, markSummary)),
      (error: unknown) => this.#finish(EXIT.internalError, `self-test crashed: ${errorText(error)}`),
    );
  }

  /** `tested`: the input count when the test started. */
  #onSelfTestDone(tested: number, result: SelfTestResult, markSummary: string): void {
    if (this.#state.name !== 'testing') return;
    // The record or the annotations may have changed while the test ran: only pass on what is current now.
    if (this.#inputs !== tested) return this.#judge();
    if (result.ok) {
      const skips = this.#reportedSkips === undefined ? '' : `; ${this.#reportedSkips}`;
      return this.#finish(
        EXIT.ready,
        `ready: netns ${this.#deps.pod.netns} recorded initialized (${markSummary}); self-test passed: ${result.summary}${skips}`,
      );
    }
    this.#setWaiting({ code: 'self-test', message: result.reason });
    this.#state = { name: 'retrying', cancel: this.#deps.clock.after(SELF_TEST_RETRY_MS, () => this.#guard(() => this.#judge())) };
  }

  #onTimeout(): void {
    // The controller's Warning Events say why a mark never came (e.g. MarkWriteFailed: no room left for it in the annotations).
    const hint = this.#waiting.code === 'no-mark' ? "; the controller's Events on this pod (kubectl describe pod) say why, e.g. MarkWriteFailed" : '';
    this.#finish(exitCodeForTimeout(this.#waiting.code), `timed out after ${(this.#deps.options.timeoutMs ?? 0) / 1000} s: ${this.#waiting.message}${hint}`);
  }

  /**
   * The controller retries a transient failure on its own (repairing the mark within seconds);
   * an error that stands this long (a refusal, a bad annotation) needs a fix. Exiting puts the reason
   * into `kubectl describe pod` at once, and the kubelet's restart of this container (with
   * backoff) lets the pod start once the controller marks it initialized; a Never pod runs only
   * with a grace its owner asked for, and fails.
   */
  #onErrorGrace(): void {
    this.#cancelErrorGrace = undefined;
    const { errorGraceMs, restartPolicy } = this.#deps.options;
    const next =
      restartPolicy === 'Never'
        ? 'restartPolicy Never: the pod fails'
        : 'the kubelet restarts this container, and the pod starts once the controller marks it initialized';
    this.#finish(EXIT.markError, `gave up after ${(errorGraceMs ?? 0) / 1000} s of an error mark: ${this.#waiting.message}; ${next}`);
  }

  #wait(waiting: Waiting): void {
    this.#state = { name: 'waiting' };
    this.#setWaiting(waiting);
  }

  #setWaiting(next: Waiting): void {
    if (next.message !== this.#waiting.message) this.#deps.log(`waiting: ${next.message}`);
    this.#waiting = next;
    // The grace runs from the first of a series of error marks (a new reason does not restart it).
    const grace = this.#deps.options.errorGraceMs;
    if (next.code !== 'mark-error') this.#stopErrorGrace();
    else if (grace !== undefined) this.#cancelErrorGrace ??= this.#deps.clock.after(grace, () => this.#guard(() => this.#onErrorGrace()));
  }

  /** A throw out of a transition is a bug: it ends the run as an internal error with the stack. */
  #guard(transition: () => void): void {
    try {
      transition();
    } catch (error) {
      this.#finish(EXIT.internalError, `internal error: ${errorText(error)}`);
    }
  }

  #finish(code: number, message: string): void {
    if (this.#state.name === 'done') return;
    if (this.#state.name === 'retrying') this.#state.cancel();
    this.#state = { name: 'done' };
    this.#stopAll();
    this.#deps.exit(code, message);
  }

  #stopAll(): void {
    for (const stop of this.#stop.splice(0)) stop();
    this.#stopErrorGrace();
  }

  #stopErrorGrace(): void {
    this.#cancelErrorGrace?.();
    this.#cancelErrorGrace = undefined;
  }
}

/** When it gives up, for the first log line. */
function limits({ timeoutMs, errorGraceMs, restartPolicy }: WaiterOptions): string {
  const timeout = timeoutMs === undefined ? 'no timeout' : `timeout ${timeoutMs / 1000} s`;
  if (restartPolicy !== 'Never') return timeout;
  const grace = errorGraceMs === undefined ? 'error marks waited out' : `error grace ${errorGraceMs / 1000} s`;
  return `${timeout}, ${grace} (restartPolicy Never: a failed init container fails the pod)`;
}

function errorText(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}
