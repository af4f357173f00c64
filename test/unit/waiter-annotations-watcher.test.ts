// The watcher against a real directory updated exactly like the kubelet's AtomicWriter
// does it (no root needed): every swap is seen, unchanged content is not re-delivered.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readSnapshot, watchAnnotations } from '../../init-waiter/src/annotations-watcher.ts';
import type { AnnotationsSnapshot, AnnotationsWatcher } from '../../init-waiter/src/annotations-watcher.ts';
import { writeAnnotationsVolume, writeAtomicVolume } from '../../hack/lib/downward-api.ts';

describe('watchAnnotations', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  function setup(options?: { pollMs: number; maxBytes: number }, { existingDir = false } = {}) {
    const root = mkdtempSync(join(tmpdir(), 'pnc-watch-'));
    const dir = join(root, 'podinfo');
    if (existingDir) mkdirSync(dir);
    const file = join(dir, 'annotations');
    const seen: AnnotationsSnapshot[] = [];
    let notify: (() => void) | undefined;
    const watcher: AnnotationsWatcher = watchAnnotations(
      file,
      (snapshot) => {
        seen.push(snapshot);
        notify?.();
      },
      options,
    );
    cleanups.push(() => {
      watcher.close();
      rmSync(root, { recursive: true, force: true });
    });
    const next = (count: number) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${seen.length} snapshots: ${JSON.stringify(seen)}`)), 5_000);
        notify = () => {
          if (seen.length >= count) {
            clearTimeout(timer);
            resolve();
          }
        };
        notify();
      });
    return { dir, file, seen, next };
  }

  it('reports missing first, then each atomic swap, including a directory created later', async () => {
    const { dir, seen, next } = setup();
    expect(seen).toEqual([{ kind: 'missing', path: expect.stringContaining('annotations') }]);
    writeAnnotationsVolume(dir, { a: '1' });
    await next(2);
    expect(seen[1]).toMatchObject({ kind: 'content', text: 'a="1"' });
    writeAnnotationsVolume(dir, { a: '2', b: 'x' });
    await next(3);
    expect(seen[2]).toMatchObject({ kind: 'content', text: 'a="2"\nb="x"' });
  });

  it('sees a swap through fs.watch alone (polling a minute apart)', async () => {
    const { dir, seen, next } = setup({ pollMs: 60_000, maxBytes: 1024 }, { existingDir: true });
    expect(seen).toHaveLength(1);
    writeAnnotationsVolume(dir, { a: '1' });
    await next(2);
    writeAnnotationsVolume(dir, { a: '2' });
    await next(3);
    expect(seen.map((s) => (s.kind === 'content' ? s.text : s.kind))).toEqual(['missing', 'a="1"', 'a="2"']);
  });

  it('does not deliver the same content twice when the kubelet rewrites it unchanged', async () => {
    const { dir, seen, next } = setup({ pollMs: 20, maxBytes: 1024 });
    writeAnnotationsVolume(dir, { a: '1' });
    await next(2);
    writeAnnotationsVolume(dir, { a: '1' });
    writeAnnotationsVolume(dir, { a: '2' });
    await next(3);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(seen.map((s) => (s.kind === 'content' ? s.text : s.kind))).toEqual(['missing', 'a="1"', 'a="2"']);
  });

  it('does not read a file over the size limit', async () => {
    const { dir, seen, next } = setup({ pollMs: 20, maxBytes: 100 });
    writeAtomicVolume(dir, { annotations: 'k="' + 'v'.repeat(200) + '"' });
    await next(2);
    expect(seen[1]).toMatchObject({ kind: 'too-large', size: 204, limit: 100 });
  });
});

describe('readSnapshot', () => {
  it('says missing for an absent path and unreadable for a directory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pnc-read-'));
    try {
      expect(readSnapshot(join(dir, 'nope'), 1024)).toEqual({ kind: 'missing', path: join(dir, 'nope') });
      expect(readSnapshot(dir, 1024)).toEqual({ kind: 'unreadable', path: dir, error: 'not a regular file' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
