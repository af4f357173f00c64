// A keyed work queue on p-queue: bounded concurrency, at most one run per key at a
// time, coalescing (a key added while queued runs once; added while running runs
// again after, so the latest state wins), retries with backoff + jitter (never sooner than
// an error's `retryAfterMs`, e.g. from a 429's Retry-After). Memory is
// bounded by the number of distinct live keys: each key has at most one entry.
import PQueue from 'p-queue';
import { type BackoffPolicy, backoffDelay } from '../kube/backoff.ts';
import { ERROR_BACKOFF } from './backoff.ts';

export type WorkResult = { kind: 'done' } | { kind: 'retry'; policy: BackoffPolicy };

export interface WorkQueueOptions {
  concurrency: number;
  /** `queuedAt`: performance.now() when the key was queued for this run (queue wait counts in latencies). */
  handler: (key: string, attempt: number, queuedAt: number) => Promise<WorkResult>;
  /** Called when the handler throws; the key is then retried with ERROR_BACKOFF. */
  onError?: (key: string, error: unknown) => void;
  onDepthChange?: (depth: number) => void;
  random?: () => number;
}

export class WorkQueue {
  readonly #queue: PQueue;
  readonly #options: WorkQueueOptions;
  readonly #queued = new Set<string>();
  readonly #running = new Set<string>();
  /** Keys added again while running: run once more when the current run ends. */
  readonly #dirty = new Set<string>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #attempts = new Map<string, number>();
  readonly #queuedAt = new Map<string, number>();
  #closed = false;

  constructor(options: WorkQueueOptions) {
    this.#options = options;
    this.#queue = new PQueue({ concurrency: options.concurrency });
  }

  /** Keys waiting to run (not running, not waiting for a retry). */
  get depth(): number {
    return this.#queued.size;
  }

  /** Keys with a retry scheduled. */
  get retrying(): number {
    return this.#timers.size;
  }

  /** Run `key` soon. A scheduled retry is brought forward: new state deserves a look now. */
  add(key: string): void {
    if (this.#closed) return;
    if (this.#running.has(key)) {
      this.#dirty.add(key);
      return;
    }
    if (this.#queued.has(key)) return;
    const timer = this.#timers.get(key);
    if (timer) {
      clearTimeout(timer);
      this.#timers.delete(key);
    }
    this.#queued.add(key);
    this.#queuedAt.set(key, performance.now());
    this.#depthChanged();
    void this.#queue.add(() => this.#run(key));
  }

  /** Drop every trace of `key` (the object is gone). A run in progress finishes. */
  forget(key: string): void {
    const timer = this.#timers.get(key);
    if (timer) clearTimeout(timer);
    this.#timers.delete(key);
    this.#attempts.delete(key);
    this.#dirty.delete(key);
  }

  /** Stop taking work, drop scheduled retries, wait for runs in progress and queued ones. */
  async drain(): Promise<void> {
    this.#closed = true;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#dirty.clear();
    await this.#queue.onIdle();
  }

  async #run(key: string): Promise<void> {
    this.#queued.delete(key);
    this.#running.add(key);
    this.#depthChanged();
    const attempt = this.#attempts.get(key) ?? 0;
    const queuedAt = this.#queuedAt.get(key) ?? performance.now();
    this.#queuedAt.delete(key);
    let result: WorkResult;
    let notBeforeMs = 0;
    try {
      result = await this.#options.handler(key, attempt, queuedAt);
    } catch (error) {
      this.#options.onError?.(key, error);
      result = { kind: 'retry', policy: ERROR_BACKOFF };
      const retryAfter = (error as { retryAfterMs?: unknown } | undefined)?.retryAfterMs;
      if (typeof retryAfter === 'number') notBeforeMs = retryAfter;
    }
    this.#running.delete(key);
    if (result.kind === 'done') this.#attempts.delete(key);
    else this.#attempts.set(key, attempt + 1);
    if (this.#closed) return;
    if (this.#dirty.delete(key)) {
      this.add(key);
    } else if (result.kind === 'retry') {
      const delay = Math.max(notBeforeMs, backoffDelay(attempt, result.policy, this.#options.random));
      const timer = setTimeout(() => {
        this.#timers.delete(key);
        this.add(key);
      }, delay);
      timer.unref();
      this.#timers.set(key, timer);
    }
  }

  #depthChanged(): void {
    this.#options.onDepthChange?.(this.#queued.size);
  }
}
