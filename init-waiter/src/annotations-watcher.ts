// Watches the downward-API annotations file and hands every new content to a callback.
// The kubelet never edits the file in place: it writes a new timestamped directory and
// renames a `..data_tmp` symlink over `..data` (`annotations -> ..data/annotations`).
// So we watch the DIRECTORY (an inotify watch on the file itself would stay on the old
// inode) and always re-open by path. A sub-second stat poll backs fs.watch up: a missed
// or coalesced event, or a directory that appears later, costs at most one poll period.
import { closeSync, constants, fstatSync, openSync, readSync, statSync, watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { dirname } from 'node:path';

export type AnnotationsSnapshot =
  | { kind: 'missing'; path: string }
  | { kind: 'unreadable'; path: string; error: string }
  | { kind: 'too-large'; path: string; size: number; limit: number }
  | { kind: 'content'; path: string; text: string };

export interface WatchOptions {
  pollMs: number;
  /** Larger files are not read at all (the API server caps annotations at 256 KiB; Go quoting can grow that 4x). */
  maxBytes: number;
}

export const DEFAULT_WATCH_OPTIONS: WatchOptions = { pollMs: 200, maxBytes: 2 * 1024 * 1024 };

export interface AnnotationsWatcher {
  close(): void;
}

/** Calls onSnapshot at once with the current state, then each time the state changes. */
export function watchAnnotations(
  path: string,
  onSnapshot: (snapshot: AnnotationsSnapshot) => void,
  options: WatchOptions = DEFAULT_WATCH_OPTIONS,
): AnnotationsWatcher {
  const directory = dirname(path);
  let watcher: FSWatcher | undefined;
  let lastStatKey: string | undefined;
  let lastDelivered: string | undefined;
  let checkQueued = false;
  let closed = false;

  const check = () => {
    checkQueued = false;
    if (closed) return;
    ensureWatcher();
    const statKey = statIdentity(path);
    if (statKey === lastStatKey) return;
    lastStatKey = statKey;
    const snapshot = readSnapshot(path, options.maxBytes);
    const identity = snapshotIdentity(snapshot);
    if (identity === lastDelivered) return;
    lastDelivered = identity;
    onSnapshot(snapshot);
  };

  // Events come in bursts (new dir, ..data_tmp, rename, old dir removed): coalesce them into one read.
  const queueCheck = () => {
    if (checkQueued || closed) return;
    checkQueued = true;
    setImmediate(check);
  };

  const ensureWatcher = () => {
    if (watcher) return;
    try {
      watcher = watch(directory, { persistent: false }, queueCheck);
      watcher.on('error', () => {
        // The directory went away (volume remounted): fall back to polling until it is back.
        watcher?.close();
        watcher = undefined;
        queueCheck();
      });
    } catch {
      watcher = undefined;
    }
  };

  const poll = setInterval(queueCheck, options.pollMs);
  check();

  return {
    close() {
      closed = true;
      clearInterval(poll);
      watcher?.close();
      watcher = undefined;
    },
  };
}

/** Changes whenever the path resolves to another file or the file's content may have changed. */
function statIdentity(path: string): string {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch (error) {
    return `error:${(error as NodeJS.ErrnoException).code ?? String(error)}`;
  }
}

function snapshotIdentity(snapshot: AnnotationsSnapshot): string {
  switch (snapshot.kind) {
    case 'content':
      return `content:${snapshot.text}`;
    case 'too-large':
      return `too-large:${snapshot.size}`;
    case 'unreadable':
      return `unreadable:${snapshot.error}`;
    case 'missing':
      return 'missing';
  }
}

export function readSnapshot(path: string, maxBytes: number): AnnotationsSnapshot {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted at the path must not hang the waiter in open().
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'missing', path };
    return { kind: 'unreadable', path, error: code ?? String(error) };
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { kind: 'unreadable', path, error: 'not a regular file' };
    if (st.size > maxBytes) return { kind: 'too-large', path, size: st.size, limit: maxBytes };
    // Read one byte past the limit so a file that grew after fstat is still caught.
    const buffer = Buffer.alloc(Math.min(st.size, maxBytes) + 1);
    let length = 0;
    for (;;) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
      if (length === buffer.length) {
        if (length > maxBytes) return { kind: 'too-large', path, size: length, limit: maxBytes };
        // Written in place after fstat (the kubelet never does that): the next poll sees a new stat and re-reads.
        return { kind: 'unreadable', path, error: 'file grew while being read' };
      }
    }
    return { kind: 'content', path, text: buffer.subarray(0, length).toString('utf8') };
  } catch (error) {
    return { kind: 'unreadable', path, error: (error as NodeJS.ErrnoException).code ?? String(error) };
  } finally {
    closeSync(fd);
  }
}
