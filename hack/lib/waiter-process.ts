// Runs the real init-waiter bundle the way a pod does: inside a given network namespace with
// that netns's own /sys (as a container runtime mounts it: the waiter reads lo's alias there),
// as an unprivileged UID (65534 unless told otherwise), and records its output and exit.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { encodeMark, encodeNetnsRecord, MARK_VERSION, STATUS_ANNOTATION, type Mark } from '../../controller/src/pod-contract/index.ts';
import { writeNetnsRecord, type Netns } from '../../controller/src/redirect/index.ts';
import { writeAnnotationsVolume } from './downward-api.ts';
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
  /** A named netns, /run/netns/NAME: `ip netns exec` mounts its sysfs over /sys for the waiter. */
  netnsPath: string;
  args: string[];
  identity?: { uid: number; gid: number };
  env?: Record<string, string>;
}

export function startWaiter(bundle: WaiterBundle, options: StartWaiterOptions): WaiterRun {
  const identity = options.identity ?? NOBODY;
  const name = /^\/run\/netns\/([^/]+)$/.exec(options.netnsPath)?.[1];
  if (name === undefined) throw new Error(`startWaiter: ${options.netnsPath} is not a named netns (/run/netns/NAME)`);
  const child = spawn(
    'ip',
    ['netns', 'exec', name, 'nsenter', `--setuid=${identity.uid}`, `--setgid=${identity.gid}`, '--', bundle.node, bundle.script, ...options.args],
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

/** An initialized mark for the netns, as the agent writes it (format 2, with an id). */
export function initializedMarkFor(netns: Netns, rules = '0123456789abcdef'): Mark {
  return { v: MARK_VERSION, state: 'initialized', netns: netns.inode, rules, at: new Date().toISOString(), id: 'test-mark-0001' };
}

/**
 * What the agent does for a programmed pod, in its order: the mark through the API (here the
 * downward-API volume, which the kubelet refreshes later in a real pod), then the netns record
 * written by the agent's own code. `annotations`: the pod's others.
 */
export async function markInitialized(volume: string, netns: Netns, annotations: Record<string, string> = {}, mark = initializedMarkFor(netns)): Promise<Mark> {
  writeAnnotationsVolume(volume, { ...annotations, [STATUS_ANNOTATION]: encodeMark(mark) });
  await writeNetnsRecord(netns, encodeNetnsRecord(mark));
  return mark;
}
