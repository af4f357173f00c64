// Running programs inside a network namespace: `nsenter --net=PATH prog args...`,
// argument arrays only (no shell), optional stdin, bounded time.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { open, type FileHandle } from 'node:fs/promises';
import { NetnsMismatch, RedirectError } from './errors.ts';

/**
 * A network namespace to enter and the inode it must have. A /proc/PID/ns/net path names
 * whatever netns the process holding PID has when it is opened: once the sandbox's process
 * exits, its PID can be reused (PIDs wrap) by a process in another netns, the node's included.
 */
export interface Netns {
  path: string;
  /** As in `net:[N]`: what the finder saw, or stat(path).ino taken before anything else. */
  inode: number;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Kills a stuck iptables (e.g. a lock held forever) instead of hanging the caller. */
const TIMEOUT_MS = 30_000;

/**
 * The child leads its own process group, so a timeout kills everything it started (a runSteps
 * chain's current program too, which would otherwise keep the output pipes open and could still
 * apply a transaction after the caller gave up).
 */
function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * Opens the netns once and checks the inode of what was opened: the open file keeps that netns,
 * and nsenter enters it through the inherited descriptor (fd 3), so no reused PID can swap the
 * netns between the check and the entry. Throws NetnsMismatch on another inode.
 */
async function openNetns(netns: Netns): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    handle = await open(netns.path, 'r');
  } catch (error) {
    throw new RedirectError(netns.path, `cannot open the network namespace: ${(error as Error).message}`);
  }
  const { ino } = await handle.stat().catch(async (error: unknown) => {
    await handle.close();
    throw new RedirectError(netns.path, `cannot stat the network namespace: ${(error as Error).message}`);
  });
  if (ino !== netns.inode) {
    await handle.close();
    throw new NetnsMismatch(netns.path, netns.inode, ino);
  }
  return handle;
}

/**
 * Runs argv in a netns: a path is entered as it is (callers outside the engine: tests, tools);
 * a Netns only after checking its inode, else NetnsMismatch and nothing runs. Undefined: the
 * current netns.
 */
export async function runInNetns(netns: string | Netns | undefined, argv: string[], stdin?: string, timeoutMs = TIMEOUT_MS): Promise<ExecResult> {
  if (typeof netns === 'object') {
    const handle = await openNetns(netns);
    try {
      return await run(['nsenter', '--net=/proc/self/fd/3', '--', ...argv], stdin, timeoutMs, handle.fd);
    } finally {
      await handle.close();
    }
  }
  return run(netns === undefined ? argv : ['nsenter', `--net=${netns}`, '--', ...argv], stdin, timeoutMs);
}

function run(argv: string[], stdin: string | undefined, timeoutMs: number, netnsFd?: number): Promise<ExecResult> {
  const [program, ...args] = argv;
  return new Promise((resolve) => {
    // fds 0-2 are pipes; fd 3 carries the netns to enter, if any.
    const child = spawn(program!, args, { stdio: ['pipe', 'pipe', 'pipe', netnsFd ?? 'ignore'], detached: true }) as ChildProcessWithoutNullStreams;
    const timer = setTimeout(() => killGroup(child.pid), timeoutMs);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout: '', stderr: error.message });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const err = Buffer.concat(stderr).toString();
      resolve({ code: code ?? 128, stdout: Buffer.concat(stdout).toString(), stderr: signal ? `${err}killed by ${signal}` : err });
    });
    // A program that exits before reading stdin makes the write fail with EPIPE; its exit code tells.
    child.stdin.on('error', () => {});
    child.stdin.end(stdin ?? '');
  });
}

/** One program of a runSteps chain. */
export interface Step {
  /** Names the step in the result (letters, digits and dashes). */
  name: string;
  argv: string[];
  /** When it fails, the chain goes on (its failure is still reported). */
  optional?: boolean;
}

export interface StepsResult {
  /** Steps that exited 0. */
  succeeded: Set<string>;
  /** Each step's standard output, by name (steps that did not run have none). */
  stdout: Map<string, string>;
  /** Every step's standard error, together. */
  stderr: string;
  /** Set when the chain itself could not run (nsenter or find failed): every step counts as failed. */
  failure?: string;
}

const STEP_OK = '--pnc-step-ok ';
const STEP_FAILED = '--pnc-step-failed ';

/**
 * Several programs, one after the other, inside the netns through ONE nsenter: a process start
 * from Node costs about as much as a small iptables run, and a new pod's rules need a restore
 * and a read-back per family. GNU find (Essential on Debian, so in every image built from it)
 * is the runner: on its single starting point it evaluates `-exec` in order, flushing its
 * output before each; an `-exec` is true only when the program exits 0, so a failed required
 * step stops the chain, and `-printf` after each step marks how it ended. Argument arrays
 * throughout, never a shell; stdin goes to the first step that reads it.
 */
export async function runSteps(netns: Netns | undefined, steps: Step[], stdin?: string, timeoutMs?: number): Promise<StepsResult> {
  const expression: string[] = [];
  for (const step of steps) {
    // find would end the command at ";" and put its starting point in place of "{}".
    if (step.argv.some((arg) => arg === ';' || arg.includes('{}'))) throw new Error(`runSteps: step ${step.name} has an argument find would rewrite`);
    const ran = ['-exec', ...step.argv, ';', '-printf', `${STEP_OK}${step.name}\n`];
    expression.push(...(step.optional ? ['(', ...ran, '-o', '-printf', `${STEP_FAILED}${step.name}\n`, ')'] : ran));
  }
  const result = await runInNetns(netns, ['find', '/', '-maxdepth', '0', ...expression], stdin, timeoutMs);
  const succeeded = new Set<string>();
  const stdout = new Map<string, string>();
  let chunk: string[] = [];
  const lines = result.stdout.endsWith('\n') ? result.stdout.slice(0, -1).split('\n') : result.stdout.split('\n');
  const close = (name: string) => {
    stdout.set(name, chunk.map((line) => `${line}\n`).join(''));
    chunk = [];
  };
  for (const line of result.stdout === '' ? [] : lines) {
    if (line.startsWith(STEP_OK)) {
      succeeded.add(line.slice(STEP_OK.length));
      close(line.slice(STEP_OK.length));
    } else if (line.startsWith(STEP_FAILED)) {
      close(line.slice(STEP_FAILED.length));
    } else {
      chunk.push(line);
    }
  }
  // What a failed required step printed: it stopped the chain.
  const stopped = steps.find((step) => !stdout.has(step.name));
  if (stopped && chunk.length > 0) close(stopped.name);
  const failure =
    result.code === 0 ? undefined : `find (running ${steps.map((step) => step.argv[0]).join(', ')}) exited ${result.code}: ${result.stderr.trim()}`;
  return { succeeded: failure ? new Set() : succeeded, stdout, stderr: result.stderr, ...(failure ? { failure } : {}) };
}
