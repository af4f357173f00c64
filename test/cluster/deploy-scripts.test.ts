// The shell scripts under hack/ and hack/lib/ (including the kind e2e script users run with Docker,
// which cannot run here) are shellcheck-clean.
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
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

describe('hack/install-deps.sh (npm test, npm run demo and CI share it)', () => {
  it('is quiet when nothing is missing', async () => {
    const { stdout, stderr } = await run('bash', ['hack/install-deps.sh'], { cwd: ROOT });
    expect(stdout + stderr).toBe('');
  });

  it.skipIf(process.getuid?.() !== 0)('tells another user, in one line, the exact command that installs what is missing', async () => {
    // A dpkg that knows no package: every one is missing.
    const bin = await mkdtemp(join(tmpdir(), 'pnc-no-packages-'));
    try {
      await writeFile(join(bin, 'dpkg-query'), '#!/bin/sh\nexit 1\n');
      await chmod(bin, 0o755);
      await chmod(join(bin, 'dpkg-query'), 0o755);
      const failed = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'bash', 'hack/install-deps.sh'], {
        cwd: ROOT,
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
      }).then(
        () => undefined,
        (error: { code: number; stderr: string }) => error,
      );
      expect(failed?.code).toBe(1);
      const lines = failed!.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        /^install-deps: missing Debian packages; install them with: sudo apt-get install -y --no-install-recommends iptables iproute2 .* containerd runc containernetworking-plugins .*buildah mmdebstrap( [a-z0-9.+-]+)*$/,
      );
    } finally {
      await rm(bin, { recursive: true, force: true });
    }
  });
});
