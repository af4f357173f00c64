// Runs the real init-waiter bundle the way a pod does: inside a given network namespace,
// as an unprivileged UID (65534 unless told otherwise), and records its output and exit.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ensureBundles } from './ensure-bundles.ts';
import { nodeForAnyUser } from './netns.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const NOBODY = { uid: 65534, gid: 65534 };

export interface WaiterBundle {
  node: string;
  script: string;
  dispose(): void;
}

/**
 * The shipped bundle (dist/init-waiter.js, rebuilt when stale) copied into a world-readable
 * temp dir: the repo may live under a directory UID 65534 cannot enter.
 */
export function bundleWaiter(): WaiterBundle {
  ensureBundles();
  const dir = mkdtempSync(join(tmpdir(), 'pnc-waiter-'));
  chmodSync(dir, 0o755);
  for (const file of ['init-waiter.js', 'package.json']) {
    copyFileSync(join(ROOT, 'dist', file), join(dir, file));
    chmodSync(join(dir, file), 0o644);
  }
  return { node: nodeForAnyUser(), script: join(dir, 'init-waiter.js'), dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface WaiterExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** performance.now() when the parent saw the exit. */
  at: number;
}

export interface WaiterRun {
  child: ChildProcess;
  /** stdout and stderr interleaved as received. */
  output(): string;
  exited: Promise<WaiterExit>;
  /** Resolves once a line matching re has been printed; rejects on exit or after timeoutMs. */
  waitForOutput(re: RegExp, timeoutMs?: number): Promise<void>;
  kill(): void;
}

export interface StartWaiterOptions {
  netnsPath: string;
  args: string[];
  identity?: { uid: number; gid: number };
  env?: Record<string, string>;
}

export function startWaiter(bundle: WaiterBundle, options: StartWaiterOptions): WaiterRun {
  const identity = options.identity ?? NOBODY;
  const child = spawn(
    'nsenter',
    [`--net=${options.netnsPath}`, `--setuid=${identity.uid}`, `--setgid=${identity.gid}`, '--', bundle.node, bundle.script, ...options.args],
    // A clean environment: the waiter sees only what a container would be given.
    { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin', ...options.env } },
  );
  let output = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    output += chunk.toString();
    for (const listener of listeners) listener();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<WaiterExit>((resolveExit) => {
    child.once('close', (code, signal) => resolveExit({ code, signal, at: performance.now() }));
  });

  return {
    child,
    output: () => output,
    exited,
    waitForOutput(re, timeoutMs = 10_000) {
      return new Promise((resolveWait, reject) => {
        const done = (error?: Error) => {
          listeners.delete(check);
          clearTimeout(timer);
          if (error) reject(error);
          else resolveWait();
        };
        const check = () => {
          if (re.test(output)) done();
        };
        const timer = setTimeout(() => done(new Error(`no output matching ${re} within ${timeoutMs} ms; output:\n${output}`)), timeoutMs);
        listeners.add(check);
        void exited.then((exit) => done(re.test(output) ? undefined : new Error(`waiter exited (${exit.code}) without ${re}; output:\n${output}`)));
        check();
      });
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
