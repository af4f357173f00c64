// Polls the netns record: the alias of this netns's own lo, which the node agent sets once
// the pod's rules are verified and marked. sysfs has no inotify, and a read costs
// microseconds, so it is read every few tens of milliseconds until the waiter is done.
import { readFileSync } from 'node:fs';
import type { RecordSnapshot } from './readiness.ts';

/** /sys of a container shows its own netns's interfaces (the runtime mounts sysfs inside it). */
export const LO_ALIAS_PATH = '/sys/class/net/lo/ifalias';
export const RECORD_POLL_MS = 25;

export function readRecord(path: string): RecordSnapshot {
  try {
    return { kind: 'text', text: readFileSync(path, 'utf8') };
  } catch (error) {
    return { kind: 'unreadable', path, error: (error as NodeJS.ErrnoException).code ?? String(error) };
  }
}

/** Calls onRecord at once with the current record, then on every change, until closed. */
export function watchRecord(onRecord: (record: RecordSnapshot) => void, path = LO_ALIAS_PATH, pollMs = RECORD_POLL_MS): { close(): void } {
  let last: string | undefined;
  const check = () => {
    const record = readRecord(path);
    const identity = record.kind === 'text' ? `text:${record.text}` : `unreadable:${record.error}`;
    if (identity === last) return;
    last = identity;
    onRecord(record);
  };
  const timer = setInterval(check, pollMs);
  check();
  return { close: () => clearInterval(timer) };
}
