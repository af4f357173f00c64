// Pods usually appear before their sandboxes. Instead of each waiting pod scanning /proc
// on its own backoff, one watcher rescans for all of them: every 100 ms while some pod
// has waited less than 20 s (a sandbox normally appears within seconds; a scan costs a
// few ms), then slower, up to every 2 s, for pods that have waited long. A pod whose
// sandbox shows up is handed back (the agent queues it) at once.
import type { NetnsFinder } from './netns-finder.ts';

export interface SandboxWatcherOptions {
  finder: NetnsFinder;
  onFound: (podUid: string) => void;
  minIntervalMs?: number;
  maxIntervalMs?: number;
}

/** Delay before the next scan, from how long the most recent waiter has waited. Pure. */
export function pollDelay(youngestWaitMs: number, minIntervalMs = 100, maxIntervalMs = 2_000): number {
  if (youngestWaitMs < 20_000) return minIntervalMs;
  return Math.round(Math.min(maxIntervalMs, Math.max(minIntervalMs, youngestWaitMs / 10)));
}

export class SandboxWatcher {
  readonly #options: SandboxWatcherOptions;
  /** pod UID -> when it started waiting. Bounded by the pods on the node. */
  readonly #waiting = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: SandboxWatcherOptions) {
    this.#options = options;
  }

  get waiting(): number {
    return this.#waiting.size;
  }

  watch(podUid: string): void {
    if (this.#stopped) return;
    if (!this.#waiting.has(podUid)) this.#waiting.set(podUid, performance.now());
    this.#schedule();
  }

  forget(podUid: string): void {
    this.#waiting.delete(podUid);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#waiting.clear();
  }

  #schedule(): void {
    if (this.#timer || this.#stopped || this.#waiting.size === 0) return;
    const youngest = Math.max(...this.#waiting.values());
    const delay = pollDelay(performance.now() - youngest, this.#options.minIntervalMs, this.#options.maxIntervalMs);
    this.#timer = setTimeout(() => void this.#tick(), delay);
  }

  async #tick(): Promise<void> {
    try {
      await this.#options.finder.rescan();
      for (const podUid of [...this.#waiting.keys()]) {
        if (!this.#options.finder.peek(podUid)) continue;
        this.#waiting.delete(podUid);
        this.#options.onFound(podUid);
      }
    } finally {
      this.#timer = undefined;
      this.#schedule();
    }
  }
}
