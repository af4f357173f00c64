import { describe, expect, it } from 'vitest';
import { type WorkResult, WorkQueue } from '../../controller/src/agent/work-queue.ts';

const fast = { initialMs: 5, maxMs: 20, factor: 2, jitter: 0 };
const slow = { initialMs: 60_000, maxMs: 60_000, factor: 2, jitter: 0 };
const done: WorkResult = { kind: 'done' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

async function until(condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(2);
  }
}

describe('work queue', () => {
  it('never runs more than `concurrency` keys at once', async () => {
    let running = 0;
    let peak = 0;
    const ran: string[] = [];
    const queue = new WorkQueue({
      concurrency: 3,
      handler: async (key) => {
        running++;
        peak = Math.max(peak, running);
        await sleep(5);
        running--;
        ran.push(key);
        return done;
      },
    });
    for (let i = 0; i < 12; i++) queue.add(`k${i}`);
    await queue.drain();
    expect(peak).toBe(3);
    expect(ran.sort()).toEqual(Array.from({ length: 12 }, (_, i) => `k${i}`).sort());
  });

  it('coalesces adds of a queued key into one run', async () => {
    const gate = deferred();
    const runs: string[] = [];
    const queue = new WorkQueue({
      concurrency: 1,
      handler: async (key) => {
        runs.push(key);
        if (key === 'blocker') await gate.promise;
        return done;
      },
    });
    queue.add('blocker');
    for (let i = 0; i < 5; i++) queue.add('pod');
    expect(queue.depth).toBe(1);
    gate.resolve();
    await queue.drain();
    expect(runs).toEqual(['blocker', 'pod']);
  });

  it('runs a key once more after its current run when added meanwhile (latest state wins), never twice at once', async () => {
    const gate = deferred();
    let concurrentSameKey = 0;
    let active = 0;
    let runs = 0;
    const queue = new WorkQueue({
      concurrency: 4,
      handler: async () => {
        active++;
        concurrentSameKey = Math.max(concurrentSameKey, active);
        runs++;
        if (runs === 1) await gate.promise;
        active--;
        return done;
      },
    });
    queue.add('pod');
    await until(() => runs === 1);
    queue.add('pod');
    queue.add('pod');
    gate.resolve();
    await until(() => runs === 2);
    await queue.drain();
    expect(runs).toBe(2);
    expect(concurrentSameKey).toBe(1);
  });

  it('retries with growing attempts until done', async () => {
    const attempts: number[] = [];
    const queue = new WorkQueue({
      concurrency: 1,
      handler: async (_key, attempt) => {
        attempts.push(attempt);
        return attempt < 3 ? { kind: 'retry', policy: fast } : done;
      },
    });
    queue.add('pod');
    await until(() => attempts.length === 4);
    expect(attempts).toEqual([0, 1, 2, 3]);
    expect(queue.retrying).toBe(0);
    await queue.drain();
  });

  it('brings a scheduled retry forward when the key is added again', async () => {
    let runs = 0;
    const queue = new WorkQueue({
      concurrency: 1,
      handler: async () => {
        runs++;
        return runs === 1 ? { kind: 'retry', policy: slow } : done;
      },
    });
    queue.add('pod');
    await until(() => queue.retrying === 1);
    queue.add('pod');
    await until(() => runs === 2);
    expect(queue.retrying).toBe(0);
    await queue.drain();
  });

  it('forget drops a scheduled retry', async () => {
    let runs = 0;
    const queue = new WorkQueue({
      concurrency: 1,
      handler: async () => {
        runs++;
        return { kind: 'retry', policy: fast };
      },
    });
    queue.add('pod');
    await until(() => queue.retrying === 1);
    queue.forget('pod');
    expect(queue.retrying).toBe(0);
    await sleep(50);
    expect(runs).toBe(1);
    await queue.drain();
  });

  it('reports a throwing handler and retries it', async () => {
    const errors: unknown[] = [];
    let runs = 0;
    const queue = new WorkQueue({
      concurrency: 1,
      handler: async () => {
        runs++;
        if (runs === 1) throw new Error('api down');
        return done;
      },
      onError: (_key, error) => errors.push(error),
    });
    queue.add('pod');
    await until(() => runs === 2, 5_000);
    expect((errors[0] as Error).message).toBe('api down');
    await queue.drain();
  });

  it("waits at least an error's retryAfterMs (a 429's Retry-After) before the retry", async () => {
    const runs: number[] = [];
    const queue = new WorkQueue({
      concurrency: 1,
      random: () => 0.5,
      handler: async () => {
        runs.push(performance.now());
        if (runs.length === 1) throw Object.assign(new Error('HTTP 429'), { retryAfterMs: 300 });
        return done;
      },
    });
    queue.add('pod');
    await until(() => runs.length === 2, 5_000);
    // ERROR_BACKOFF alone would retry after 250 ms.
    expect(runs[1]! - runs[0]!).toBeGreaterThanOrEqual(295);
    await queue.drain();
  });

  it('hands the handler when the key was queued, so time spent waiting in the queue counts', async () => {
    const gate = deferred();
    const seen: { key: string; waitedMs: number }[] = [];
    const queue = new WorkQueue({
      concurrency: 1,
      handler: async (key, _attempt, queuedAt) => {
        seen.push({ key, waitedMs: performance.now() - queuedAt });
        if (key === 'first') await gate.promise;
        return done;
      },
    });
    queue.add('first');
    queue.add('second');
    await sleep(100);
    gate.resolve();
    await until(() => seen.length === 2);
    expect(seen[1]!.key).toBe('second');
    expect(seen[1]!.waitedMs).toBeGreaterThanOrEqual(95);
    await queue.drain();
  });

  it('drain waits for runs in progress, drops retries and takes no new work', async () => {
    const gate = deferred();
    let finished = false;
    let runs = 0;
    const queue = new WorkQueue({
      concurrency: 2,
      handler: async (key) => {
        runs++;
        if (key === 'slow') {
          await gate.promise;
          finished = true;
          return done;
        }
        return { kind: 'retry', policy: fast };
      },
    });
    queue.add('slow');
    queue.add('failing');
    await until(() => queue.retrying === 1);
    const drained = queue.drain();
    queue.add('late');
    setTimeout(() => gate.resolve(), 20);
    await drained;
    expect(finished).toBe(true);
    expect(queue.retrying).toBe(0);
    await sleep(30);
    expect(runs).toBe(2);
  });

  it('reports its depth as keys are queued and started', async () => {
    const depths: number[] = [];
    const gate = deferred();
    const queue = new WorkQueue({
      concurrency: 1,
      handler: async () => {
        await gate.promise;
        return done;
      },
      onDepthChange: (depth) => depths.push(depth),
    });
    queue.add('a');
    queue.add('b');
    queue.add('c');
    expect(queue.depth).toBe(2);
    gate.resolve();
    await queue.drain();
    expect(queue.depth).toBe(0);
    expect(depths.at(-1)).toBe(0);
    // "a" starts at once; "b" and "c" wait.
    expect(Math.max(...depths)).toBe(2);
  });
});
