// Waiting for a condition by polling, for the harness, the demo and the tests alike.

/**
 * Calls `check` every `intervalMs` (default 100 ms) until it returns true; throws
 * `message()` once `timeoutMs` has passed. A `check` that throws ends the wait with its error.
 */
export async function pollUntil(check: () => Promise<boolean> | boolean, timeoutMs: number, message: () => string, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(message());
    await new Promise((done) => setTimeout(done, intervalMs));
  }
}

/**
 * Polls `probe` every `intervalMs` (default 200 ms) until it returns a value other than
 * undefined, and returns that value; throws "timed out after N ms waiting for WHAT".
 */
export async function pollFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 200): Promise<T> {
  let value: T | undefined;
  await pollUntil(
    async () => (value = await probe()) !== undefined,
    timeoutMs,
    () => `timed out after ${timeoutMs} ms waiting for ${what}`,
    intervalMs,
  );
  return value as T;
}
