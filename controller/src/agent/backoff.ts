// The agent's retry policies per pod (the curve itself is the client's backoffDelay).
import type { BackoffPolicy } from '../kube/backoff.ts';

/**
 * Backstop retries of a pod whose sandbox is not there yet. Finding it fast is the
 * SandboxWatcher's job (one /proc scan for all waiting pods, every 100 ms at first).
 */
export const SANDBOX_BACKOFF: BackoffPolicy = { initialMs: 1_000, maxMs: 10_000, factor: 2, jitter: 0.2 };
/** Failures talking to the API or running iptables. */
export const ERROR_BACKOFF: BackoffPolicy = { initialMs: 250, maxMs: 60_000, factor: 2, jitter: 0.2 };
