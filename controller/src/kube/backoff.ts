// Exponential backoff with jitter. Pure: the random source is a parameter.

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  /** Multiplier per attempt. */
  factor: number;
  /** Fraction of the delay randomised either way (0.2 = +-20%), so retries of many pods spread out. */
  jitter: number;
}

/** Delay before retry number `attempt` (0 = first retry), never above maxMs. */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const exponent = Math.max(0, Math.floor(attempt));
  const base = Math.min(policy.maxMs, policy.initialMs * policy.factor ** exponent);
  const jittered = base * (1 + policy.jitter * (2 * random() - 1));
  return Math.round(Math.min(policy.maxMs, Math.max(0, jittered)));
}

/** Restarting a failed list or watch. */
export const WATCH_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 30_000, factor: 2, jitter: 0.5 };
