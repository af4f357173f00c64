// hack/crio-runc.sh, the runc the local CRI-O node runs: the bundle's config.json edited as
// containerd's restrict_oom_score_adj and disable_hugetlb_controller would, then runc called with
// the same arguments. runc here is a fake on PATH that records how it was called.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const SCRIPT = resolve(import.meta.dirname, '../../hack/crio-runc.sh');
// What the script compares against: its own score, inherited from this process.
const OWN = Number(readFileSync('/proc/self/oom_score_adj', 'utf8'));
const HUGETLB_MOUNTED = existsSync('/sys/fs/cgroup/cgroup.controllers') || existsSync('/sys/fs/cgroup/hugetlb');

describe('hack/crio-runc.sh', () => {
  let dir: string;
  let bundle: string;
  const run = (args: string[]) =>
    execFileSync('bash', [SCRIPT, ...args], { encoding: 'utf8', env: { ...process.env, PATH: `${join(dir, 'bin')}:${process.env.PATH}` } });
  const config = () => JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as { process: { oomScoreAdj?: number }; linux?: { resources?: object } };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'pnc-crio-runc-'));
    bundle = join(dir, 'bundle');
    mkdirSync(join(dir, 'bin'));
    mkdirSync(bundle);
    writeFileSync(join(dir, 'bin/runc'), `#!/bin/sh\ntouch ${join(dir, 'called')}\necho "runc $*"\n`);
    chmodSync(join(dir, 'bin/runc'), 0o755);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const spec = (oomScoreAdj: number | undefined) => ({
    process: { args: ['/app'], ...(oomScoreAdj === undefined ? {} : { oomScoreAdj }) },
    linux: { resources: { memory: { limit: 1024 }, hugepageLimits: [{ pageSize: '2MB', limit: 0 }] } },
  });

  it('raises a score below its own (a node-critical pod: -997) before create, and calls runc with the same arguments', () => {
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec(-997), null, '\t'));
    expect(run(['--root', '/r', 'create', '--bundle', bundle, '--pid-file', '/p', 'id1'])).toBe(`runc --root /r create --bundle ${bundle} --pid-file /p id1\n`);
    expect(config().process.oomScoreAdj).toBe(OWN);
    expect(config().linux?.resources).toEqual(HUGETLB_MOUNTED ? spec(-997).linux.resources : { memory: { limit: 1024 } });
  });

  it('leaves a score above its own, and a spec without one, as they are (--bundle=DIR too)', () => {
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec(OWN + 500)));
    run(['create', `--bundle=${bundle}`, 'id2']);
    expect(config().process.oomScoreAdj).toBe(OWN + 500);
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec(undefined)));
    run(['run', '-b', bundle, 'id3']);
    expect(config().process.oomScoreAdj).toBeUndefined();
  });

  it('passes other calls straight to runc, touching no file', () => {
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec(-997)));
    expect(run(['--root', '/r', 'state', 'id1'])).toBe('runc --root /r state id1\n');
    expect(config().process.oomScoreAdj).toBe(-997);
  });

  it('fails, without calling runc, on a config it cannot read as JSON', () => {
    writeFileSync(join(bundle, 'config.json'), '{"process": ');
    expect(() => run(['create', '--bundle', bundle, 'id4'])).toThrow();
    expect(existsSync(join(dir, 'called'))).toBe(false);
  });
});
