// The shell scripts under hack/ and hack/lib/ (including the kind e2e script users run with Docker,
// which cannot run here) are shellcheck-clean.
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');

describe('hack/*.sh and hack/lib/*.sh', () => {
  it('passes shellcheck', async () => {
    const scripts: string[] = [];
    for (const dir of ['hack', 'hack/lib']) {
      scripts.push(...(await readdir(resolve(ROOT, dir))).filter((name) => name.endsWith('.sh')).map((name) => `${dir}/${name}`));
    }
    expect(scripts).toContain('hack/kind-e2e.sh');
    expect(scripts).toContain('hack/lib/procs.sh');
    const result = await run('shellcheck', ['--format=gcc', ...scripts], { cwd: ROOT }).then(
      () => ({ code: 0, output: '' }),
      (error: { code?: number | string; stdout?: string; stderr?: string }) => ({ code: error.code, output: `${error.stdout ?? ''}${error.stderr ?? ''}` }),
    );
    expect(result.output).toBe('');
    expect(result.code).toBe(0);
  });
});
