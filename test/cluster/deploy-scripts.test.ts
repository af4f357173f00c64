// The shell scripts under hack/ (including the kind e2e script users run with Docker,
// which cannot run here) are shellcheck-clean.
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');

describe('hack/*.sh', () => {
  it('passes shellcheck', async () => {
    const scripts = (await readdir(resolve(ROOT, 'hack'))).filter((name) => name.endsWith('.sh')).map((name) => `hack/${name}`);
    expect(scripts).toContain('hack/kind-e2e.sh');
    const result = await run('shellcheck', ['--format=gcc', ...scripts], { cwd: ROOT }).then(
      () => ({ code: 0, output: '' }),
      (error: { code?: number | string; stdout?: string; stderr?: string }) => ({ code: error.code, output: `${error.stdout ?? ''}${error.stderr ?? ''}` }),
    );
    expect(result.output).toBe('');
    expect(result.code).toBe(0);
  });
});
