import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetnsFinder } from '../../controller/src/agent/netns-finder.ts';
import { SandboxWatcher, pollDelay } from '../../controller/src/agent/sandbox-watcher.ts';

let root: string;
const uids = ['11111111-0000-0000-0000-000000000001', '11111111-0000-0000-0000-000000000002', '11111111-0000-0000-0000-000000000003'];

function sandbox(pid: number, uid: string): void {
  const dir = join(root, String(pid));
  mkdirSync(join(dir, 'ns'), { recursive: true });
  writeFileSync(join(dir, 'cgroup'), `0::/kubepods/besteffort/pod${uid}/${'c'.repeat(64)}\n`);
  writeFileSync(join(dir, 'stat'), `${pid} (pause) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 ${pid} 0\n`);
  symlinkSync(`net:[${4026533000 + pid}]`, join(dir, 'ns', 'net'));
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), `pnc-fake-proc-${process.pid}-`));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('sandbox watcher', () => {
  it('polls fast for new waiters and slower for old ones', () => {
    expect(pollDelay(0)).toBe(100);
    expect(pollDelay(19_999)).toBe(100);
    expect(pollDelay(20_000)).toBe(2_000);
    expect(pollDelay(20_000, 100, 5_000)).toBe(2_000);
    expect(pollDelay(30_000, 100, 5_000)).toBe(3_000);
    expect(pollDelay(600_000)).toBe(2_000);
    expect(pollDelay(0, 25)).toBe(25);
  });

  it('hands back every waiting pod whose sandbox appears, with few scans for many pods', async () => {
    const finder = new NetnsFinder({ procRoot: root });
    const found: string[] = [];
    const watcher = new SandboxWatcher({ finder, onFound: (uid) => found.push(uid), minIntervalMs: 10 });
    for (const uid of uids) watcher.watch(uid);
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(found).toEqual([]);
    sandbox(101, uids[0]!);
    sandbox(102, uids[1]!);
    const scansBefore = finder.scans;
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(found.sort()).toEqual([uids[0], uids[1]]);
    expect(watcher.waiting).toBe(1);
    // Both pods came from the same scan or two; never one scan per pod per tick.
    expect(finder.scans - scansBefore).toBeLessThanOrEqual(7);
    watcher.forget(uids[2]!);
    expect(watcher.waiting).toBe(0);
    watcher.stop();
  });

  it('stops scanning when stopped', async () => {
    const finder = new NetnsFinder({ procRoot: root });
    const watcher = new SandboxWatcher({ finder, onFound: () => {}, minIntervalMs: 5 });
    watcher.watch(uids[0]!);
    watcher.stop();
    const scans = finder.scans;
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(finder.scans).toBe(scans);
  });
});
