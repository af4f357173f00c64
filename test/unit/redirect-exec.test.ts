// runSteps: several programs through one runner process, in order, each step's output and
// outcome kept apart; a failed required step stops the chain, a failed optional one does not.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NetnsMismatch, RedirectError } from '../../controller/src/redirect/errors.ts';
import { runInNetns, runSteps } from '../../controller/src/redirect/exec.ts';

describe('runSteps (in the current netns)', () => {
  it('runs steps in order, feeds stdin to the first reader and keeps each output apart', async () => {
    const result = await runSteps(
      undefined,
      [
        { name: 'first', argv: ['echo', 'one'] },
        { name: 'reader', argv: ['cat'] },
        { name: 'last', argv: ['echo', 'two', 'lines\n--pnc-x'] },
      ],
      'from stdin\n',
    );
    expect(result.failure).toBeUndefined();
    expect([...result.succeeded]).toEqual(['first', 'reader', 'last']);
    expect(Object.fromEntries(result.stdout)).toEqual({ first: 'one\n', reader: 'from stdin\n', last: 'two lines\n--pnc-x\n' });
  });

  it('stops at a failed required step (keeping what it printed), goes on after a failed optional one', async () => {
    const result = await runSteps(undefined, [
      { name: 'optional', argv: ['ls', '/no/such/path'], optional: true },
      { name: 'ok', argv: ['echo', 'ran'] },
      { name: 'required', argv: ['cat', '/no/such/file'] },
      { name: 'never', argv: ['echo', 'not reached'] },
    ]);
    expect([...result.succeeded]).toEqual(['ok']);
    expect(result.stdout.get('ok')).toBe('ran\n');
    expect(result.stdout.has('never')).toBe(false);
    expect(result.stderr).toContain('/no/such/path');
    expect(result.stderr).toContain('/no/such/file');
  });

  it('refuses arguments that find itself would interpret', async () => {
    await expect(runSteps(undefined, [{ name: 'x', argv: ['echo', '{}'] }])).rejects.toThrow(/would rewrite/);
    await expect(runSteps(undefined, [{ name: 'x', argv: ['echo', ';'] }])).rejects.toThrow(/would rewrite/);
  });

  it('reports a runner that could not start as the failure of every step', async () => {
    // Opens and has the expected inode, but is no netns: nsenter's setns fails.
    const result = await runSteps({ path: '/dev/null', inode: statSync('/dev/null').ino }, [{ name: 'x', argv: ['true'] }]);
    expect(result.failure).toMatch(/exited 1: nsenter/);
    expect(result.succeeded.size).toBe(0);
  });

  it('on timeout kills the whole chain, the running step too, and returns', async () => {
    const marker = `${29 + (process.pid % 1000) / 1000}`;
    const started = performance.now();
    const result = await runSteps(undefined, [{ name: 'stuck', argv: ['sleep', marker] }], undefined, 300);
    expect(performance.now() - started).toBeLessThan(20_000);
    expect(result.failure).toMatch(/killed by SIGKILL/);
    const left = spawnSync('pgrep', ['-f', `^sleep ${marker}$`], { encoding: 'utf8' });
    expect(left.stdout.trim()).toBe('');
  });
});

describe('entering a netns with an expected inode', () => {
  const own = { path: `/proc/${process.pid}/ns/net`, inode: statSync('/proc/self/ns/net').ino };

  it('runs nothing when the path is another netns than expected (a reused PID): NetnsMismatch naming both', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pnc-exec-'));
    try {
      const stale = { path: own.path, inode: own.inode + 1 };
      const marker = join(dir, 'ran');
      await expect(runSteps(stale, [{ name: 'touch', argv: ['touch', marker] }])).rejects.toBeInstanceOf(NetnsMismatch);
      await expect(runInNetns(stale, ['touch', marker])).rejects.toThrow(`netns ${own.path}: is net:[${own.inode}], not the expected net:[${own.inode + 1}]`);
      expect(existsSync(marker)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a path that cannot be opened is a RedirectError naming it, nothing started', async () => {
    const attempt = runInNetns({ path: '/no/such/netns', inode: own.inode }, ['true']);
    await expect(attempt).rejects.toBeInstanceOf(RedirectError);
    await expect(attempt).rejects.toThrow(/^netns \/no\/such\/netns: cannot open the network namespace: ENOENT/);
  });
});
