// Running programs for the harness: argument arrays only, never a shell.
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs argv synchronously (60 s at most); the exit code is 128 when it could not start or was killed. */
export function run(argv: string[], input?: string): RunResult {
  const [program, ...args] = argv;
  const result = spawnSync(program!, args, { input, encoding: 'utf8', timeout: 60_000 });
  return { code: result.status ?? 128, stdout: result.stdout ?? '', stderr: (result.stderr ?? '') + (result.error?.message ?? '') };
}

/** Like run, but throws with the command and its stderr when it fails; returns stdout. */
export function must(argv: string[], input?: string): string {
  const result = run(argv, input);
  if (result.code !== 0) throw new Error(`${argv.join(' ')} failed (${result.code}): ${result.stderr.trim()}`);
  return result.stdout;
}

/** The asynchronous must: resolves with stdout, rejects with the command and its stderr when it exits non-zero. */
export function mustAsync(argv: string[], input?: string): Promise<string> {
  const [program, ...args] = argv;
  return new Promise((resolve, reject) => {
    const child = spawn(program!, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`${argv.join(' ')} exited ${code}: ${stderr.trim()}`));
    });
    // An early exit shows up in the exit code and stderr; the broken pipe adds nothing.
    child.stdin?.on('error', () => undefined).end(input);
  });
}

/** Runs a long step, printing its stderr lines as they come (indented) so a cold run shows progress; resolves with stdout. */
export async function runWithProgress(argv: string[], env: Record<string, string> = {}, indent = '   | '): Promise<string> {
  const [program, ...args] = argv;
  const child = spawn(program!, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const lines = createInterface({ input: child.stderr });
  lines.on('line', (line) => console.log(`${indent}${line}`));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) throw new Error(`${argv.join(' ')} exited with ${code}`);
  return stdout;
}
