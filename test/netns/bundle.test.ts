// The bundles run with no node_modules: copied to a temp dir outside the repo, they
// still print help and render a plan (and the controller applies and removes one).
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBundles } from '../../hack/lib/ensure-bundles.ts';
import { createNetns, deleteNetns, isRoot, ROOT_SKIP_MESSAGE, type TestNetns } from '../../hack/lib/netns.ts';
import { run } from '../../hack/lib/process.ts';

if (!isRoot) console.warn(`bundle: ${ROOT_SKIP_MESSAGE}`);

const REPO = join(import.meta.dirname, '..', '..');
const DIST = join(REPO, 'dist');

describe('bundles without node_modules', () => {
  let dir = '';
  let netns: TestNetns | undefined;

  beforeAll(() => {
    // `npm test` builds first; a targeted run rebuilds stale bundles here.
    ensureBundles();
    dir = mkdtempSync(join(tmpdir(), 'pnc-bundle-'));
    for (const file of ['controller.js', 'init-waiter.js', 'package.json']) copyFileSync(join(DIST, file), join(dir, file));
    writeFileSync(join(dir, 'pod.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'b', namespace: 'n' } }));
  }, 120_000);

  afterAll(() => {
    deleteNetns(netns);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const node = (...args: string[]) => run([process.execPath, ...args]);

  it('has no node_modules anywhere above the copy', () => {
    let parent = dir;
    while (parent !== join(parent, '..')) {
      expect(existsSync(join(parent, 'node_modules'))).toBe(false);
      parent = join(parent, '..');
    }
  });

  it('controller.js prints help and renders a pod', () => {
    const help = node(join(dir, 'controller.js'), '--help');
    expect(help.stderr).toBe('');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('render --pod FILE');
    expect(help.stdout).toContain('Exit codes:');
    const rendered = node(join(dir, 'controller.js'), 'render', '--pod', join(dir, 'pod.json'), '--family', '4');
    expect(rendered.code).toBe(0);
    expect(rendered.stdout).toContain('-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001');
  });

  it('init-waiter.js prints its usage', () => {
    const help = node(join(dir, 'init-waiter.js'), '--help');
    expect(help.stderr).not.toMatch(/ERR_MODULE_NOT_FOUND|Cannot find/);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('usage');
  });

  it.skipIf(!isRoot)('controller.js applies and removes rules in a netns', () => {
    netns = createNetns('pncb');
    const applied = node(join(dir, 'controller.js'), 'apply', '--netns', netns.path, '--pod', join(dir, 'pod.json'));
    expect(applied.stderr).toBe('');
    expect(applied.stdout).toMatch(/^applied: pod n\/b /);
    expect(node(join(dir, 'controller.js'), 'verify', '--netns', netns.path, '--pod', join(dir, 'pod.json')).code).toBe(0);
    expect(node(join(dir, 'controller.js'), 'remove', '--netns', netns.path).code).toBe(0);
  });
});
