// Runs the real bundled node agent (`node dist/controller.js run`) as a child process,
// the way the DaemonSet does: configuration through env, health and metrics over HTTP,
// JSON logs on stdout. Callers drive it only through those public surfaces.
import { spawn } from 'node:child_process';
import type { ChildProcessByStdio } from 'node:child_process';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pollUntil } from './poll.ts';

export const CONTROLLER_BUNDLE = resolve(import.meta.dirname, '../../dist/controller.js');

export type LogLine = Record<string, unknown> & { msg?: string; level?: number };

export interface ControllerOptions {
  kubeconfig: string;
  nodeName: string;
  /** Extra env (PNC_* settings); wins over the defaults set here. */
  env?: Record<string, string>;
  /** Another build of the agent (a baseline in a benchmark); default CONTROLLER_BUNDLE. */
  bundle?: string;
  /** Wait for /readyz 200 before returning (default true). */
  waitReady?: boolean;
  readyTimeoutMs?: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ControllerProcess {
  readonly pid: number;
  readonly port: number;
  /** Every stdout line parsed as JSON so far (non-JSON lines are kept as `{ msg: raw }`). */
  readonly logs: LogLine[];
  readonly stderr: () => string;
  readonly exited: Promise<ExitStatus>;
  /** GET a path on the health/metrics port; status and body. */
  get(path: string): Promise<{ status: number; body: string }>;
  waitReady(timeoutMs?: number): Promise<void>;
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  metrics(): Promise<string>;
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<ExitStatus>;
}

/** A free TCP port on loopback (the kernel picks it; we release it for the controller). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done, fail) => server.once('error', fail).listen(0, '127.0.0.1', done));
  const address = server.address();
  await new Promise<void>((done) => server.close(() => done()));
  if (address === null || typeof address === 'string') throw new Error('no TCP address for a free port');
  return address.port;
}

export async function startController(options: ControllerOptions): Promise<ControllerProcess> {
  const port = await freePort();
  const child: ChildProcessByStdio<null, Readable, Readable> = spawn(process.execPath, [options.bundle ?? CONTROLLER_BUNDLE, 'run'], {
    env: {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      KUBECONFIG: options.kubeconfig,
      NODE_NAME: options.nodeName,
      PNC_HTTP_PORT: String(port),
      PNC_HTTP_ADDRESS: '127.0.0.1',
      LOG_LEVEL: 'debug',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  let stderr = '';
  let partial = '';
  child.stdout.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) logs.push(parseLogLine(line));
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  // A runner that exits (or is interrupted) before stop() must not leave an agent behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = new Promise<ExitStatus>((done) =>
    child.once('exit', (code, signal) => {
      process.off('exit', killOnExit);
      done({ code, signal });
    }),
  );
  let exitStatus: ExitStatus | undefined;
  void exited.then((status) => (exitStatus = status));

  const describe = () =>
    `controller ${options.nodeName} (pid ${child.pid})${exitStatus ? ` exited ${JSON.stringify(exitStatus)}` : ''}; ` +
    `stderr: ${stderr.slice(-2000)}; last logs: ${logs
      .slice(-15)
      .map((l) => JSON.stringify(l))
      .join('\n')}`;

  const get = async (path: string) => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
    return { status: response.status, body: await response.text() };
  };

  const controller: ControllerProcess = {
    pid: child.pid ?? -1,
    port,
    logs,
    stderr: () => stderr,
    exited,
    get,
    async waitReady(timeoutMs = options.readyTimeoutMs ?? 30_000) {
      await pollUntil(
        async () => {
          if (exitStatus) throw new Error(`exited before ready: ${describe()}`);
          return (await get('/readyz').catch(() => ({ status: 0 }))).status === 200;
        },
        timeoutMs,
        () => `not ready within ${timeoutMs} ms: ${describe()}`,
      );
    },
    async waitForLog(predicate, timeoutMs = 15_000) {
      let found: LogLine | undefined;
      await pollUntil(
        async () => (found = logs.find(predicate)) !== undefined,
        timeoutMs,
        () => `no matching log line within ${timeoutMs} ms: ${describe()}`,
      );
      return found as LogLine;
    },
    async metrics() {
      const { status, body } = await get('/metrics');
      if (status !== 200) throw new Error(`/metrics answered ${status}: ${body.slice(0, 200)}`);
      return body;
    },
    async stop(signal = 'SIGTERM') {
      if (!exitStatus) {
        child.kill(signal);
        // SIGTERM drains in-flight work; do not let a hung drain hang the test run.
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
      return exited;
    },
  };
  if (options.waitReady ?? true) {
    try {
      await controller.waitReady();
    } catch (error) {
      await controller.stop('SIGKILL');
      throw error;
    }
  }
  return controller;
}

function parseLogLine(line: string): LogLine {
  try {
    const value: unknown = JSON.parse(line);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as LogLine;
  } catch {
    // A non-JSON line is itself worth seeing in a failure message.
  }
  return { msg: line };
}

/**
 * The value of one sample in Prometheus text format, e.g.
 * metricValue(text, 'pnc_pod_results_total', { outcome: 'initialized' }); 0 when absent.
 */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const sampleLabels = parseLabels(match[2] ?? '');
    if (Object.entries(labels).every(([key, value]) => sampleLabels[key] === value)) total += Number(match[3]);
  }
  return total;
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const match of text.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[match[1] as string] = match[2] as string;
  return labels;
}
