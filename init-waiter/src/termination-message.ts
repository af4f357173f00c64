// The waiter's last words as the container's termination message, which `kubectl describe pod`
// shows (Last State: Terminated, Message). The kubelet creates the file (terminationMessagePath,
// writable by any UID) and prefers it to the log tail FallbackToLogsOnError would take.
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { cutUtf8 } from '../../controller/src/pod-contract/index.ts';

/** The kubelet keeps at most this much of a container's termination message. */
export const TERMINATION_MESSAGE_MAX_BYTES = 4096;

/**
 * Replaces the file's content with MESSAGE (cut to the kubelet's limit on a character boundary).
 * Never creates the file, so outside a pod nothing appears at /dev/termination-log; a missing
 * or unwritable file (or a FIFO without a reader) is skipped: the log still has the message.
 */
export function writeTerminationMessage(path: string, message: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_TRUNC | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch {
    return false;
  }
  try {
    writeSync(fd, cutUtf8(message, TERMINATION_MESSAGE_MAX_BYTES));
    return true;
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}
