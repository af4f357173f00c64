// Exit codes of the init-waiter: one per reason it gave up, so `kubectl describe pod`
// ("Last State: Terminated, Exit Code: N") tells why a pod is stuck even without its logs.
import type { WaitCode } from './readiness.ts';

export const EXIT = {
  ready: 0,
  internalError: 1,
  usage: 2,
  /** Timed out: no annotations file, no mark, or the mark stayed pending. */
  noMark: 3,
  /** Timed out: the controller marked the pod `error`. */
  markError: 4,
  /** Timed out: the mark names another network namespace (stale or forged), or only its inode, with no netns record. */
  otherNetns: 5,
  /** Timed out: the mark is right but the outbound-capture self-test kept failing. */
  selfTest: 6,
  /** Timed out: the annotations file or the mark is malformed, too large or unreadable. */
  malformed: 7,
  /** SIGTERM (pod deleted while waiting): 128 + 15, as a shell reports it. */
  terminated: 143,
} as const;

const BY_WAIT_CODE: Record<WaitCode, number> = {
  'no-file': EXIT.noMark,
  'no-mark': EXIT.noMark,
  pending: EXIT.noMark,
  'mark-error': EXIT.markError,
  'other-netns': EXIT.otherNetns,
  unrecorded: EXIT.otherNetns,
  'self-test': EXIT.selfTest,
  malformed: EXIT.malformed,
};

export function exitCodeForTimeout(code: WaitCode): number {
  return BY_WAIT_CODE[code];
}
