// Running one program inside a network namespace: `nsenter --net=PATH prog args...`,
// argument arrays only (no shell), optional stdin, bounded time.
import { spawn } from 'node:child_process';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Kills a stuck iptables (e.g. a lock held forever) instead of hanging the caller. */
const TIMEOUT_MS = 30_000;

/** Runs argv in the netns at netnsPath (or the current one when netnsPath is undefined). */
export function runInNetns(netnsPath: string | undefined, argv: string[], stdin?: string): Promise<ExecResult> {
  const [program, ...args] = netnsPath === undefined ? argv : ['nsenter', `--net=${netnsPath}`, '--', ...argv];
  return new Promise((resolve) => {
    const child = spawn(program!, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: TIMEOUT_MS });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', (error) => resolve({ code: 127, stdout: '', stderr: error.message }));
    child.on('close', (code, signal) => {
      const err = Buffer.concat(stderr).toString();
      resolve({ code: code ?? 128, stdout: Buffer.concat(stdout).toString(), stderr: signal ? `${err}killed by ${signal}` : err });
    });
    // A program that exits before reading stdin makes the write fail with EPIPE; its exit code tells.
    child.stdin.on('error', () => {});
    child.stdin.end(stdin ?? '');
  });
}
