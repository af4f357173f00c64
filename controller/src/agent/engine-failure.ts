// Which failures of programming a pod's netns are the pod's business, and which are not.
// Only the engine's own errors (RedirectError and its kinds) and a sandbox replaced under
// our feet are handled; anything else thrown on the way is a bug in this program and must
// surface as one, never be written onto the user's pod as a redirect failure. Pure.
import { NetnsMismatch, RedirectError, XtablesLockTimeout } from '../redirect/index.ts';

/** The sandbox found for this pass was replaced (or died) before its mark was written. */
export class SandboxChanged extends Error {
  override name = 'SandboxChanged';
}

export type EngineFailure =
  /** No failure of the pod: look for its sandbox again. */
  | { kind: 'sandbox-changed' }
  /** Another program holds the xtables lock: nothing wrong with the pod, so no error mark; it waits, told why. */
  | { kind: 'lock-timeout'; note: string }
  /** The pod's netns refused our rules: an `error` mark and a Warning, retried. */
  | { kind: 'redirect-failed'; reason: string }
  /** Not an engine error (a bug, or the API server failing a write): for the caller to rethrow. */
  | { kind: 'unhandled' };

/** `sandboxAlive` is asked only for an engine error: nsenter into a dead process fails too. */
export function classifyEngineFailure(error: unknown, netns: number, sandboxAlive: () => boolean, lockTimeoutSeconds: number): EngineFailure {
  // NetnsMismatch: the path no longer leads to the sandbox found (its PID was reused); nothing ran.
  if (error instanceof SandboxChanged || error instanceof NetnsMismatch) return { kind: 'sandbox-changed' };
  if (!(error instanceof RedirectError)) return { kind: 'unhandled' };
  if (!sandboxAlive()) return { kind: 'sandbox-changed' };
  if (error instanceof XtablesLockTimeout) {
    return { kind: 'lock-timeout', note: `the xtables lock stayed held by another program for ${lockTimeoutSeconds} s (PNC_IPTABLES_LOCK_TIMEOUT); retrying` };
  }
  return { kind: 'redirect-failed', reason: `redirect failed in netns ${netns}: ${error.message}` };
}
