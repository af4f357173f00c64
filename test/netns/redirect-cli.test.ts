// The operator CLI (controller/src/cli.ts) end to end: exit codes, messages and the
// apply -> verify -> drift -> remove cycle in a real netns.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetns, deleteNetns, isRoot, must, ROOT_SKIP_MESSAGE, run, type TestNetns } from '../support/netns.ts';

if (!isRoot) console.warn(`redirect-cli: ${ROOT_SKIP_MESSAGE}`);

const CLI = join(import.meta.dirname, '..', '..', 'controller', 'src', 'cli.ts');
const cli = (...args: string[]) => run([process.execPath, CLI, ...args]);

describe.skipIf(!isRoot)('controller CLI redirect commands', () => {
  let dir = '';
  let netns: TestNetns | undefined;
  let goodPod = '';
  let badPod = '';

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'pnc-cli-'));
    goodPod = join(dir, 'pod.yaml');
    badPod = join(dir, 'bad.json');
    writeFileSync(
      goodPod,
      'apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: demo\n  annotations:\n    traffic.sidecar.istio.io/excludeOutboundPorts: "5432"\n',
    );
    writeFileSync(
      badPod,
      JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'demo', annotations: { 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.0.0.0/33' } } }),
    );
    netns = createNetns('pncc');
  });

  afterAll(() => {
    deleteNetns(netns);
    rmSync(dir, { recursive: true, force: true });
  });

  it('render prints one payload per family, or one with --family', () => {
    const both = cli('render', '--pod', goodPod);
    expect(both.code).toBe(0);
    expect(both.stdout).toMatch(/^# pod-network-controller rules hash [0-9a-f]{16}\n/);
    expect(both.stdout).toContain('-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN');
    expect(both.stdout).toContain('-A ISTIO_OUTPUT -d ::1/128 -j RETURN');
    expect(both.stdout).toContain('-A ISTIO_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN');
    const v6 = cli('render', '--pod', goodPod, '--family', '6');
    expect(v6.code).toBe(0);
    expect(v6.stdout).toContain('::1/128');
    expect(v6.stdout).not.toContain('127.0.0.1');
  });

  it('exits 2 naming pod, annotation and value for a bad annotation; 2 for bad usage', () => {
    const bad = cli('render', '--pod', badPod);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('demo/web');
    expect(bad.stderr).toContain('traffic.sidecar.istio.io/excludeOutboundIPRanges="10.0.0.0/33"');
    expect(bad.stdout).toBe('');
    expect(cli('render').code).toBe(2);
    expect(cli('render', '--pod', goodPod, '--family', '5').code).toBe(2);
    expect(cli('apply', '--netns', join(dir, 'no-such-netns'), '--pod', goodPod).code).toBe(2);
    expect(cli('apply', '--netns', netns!.path, '--pod', goodPod, '--iptables-mode', 'xtables').stderr).toContain('--iptables-mode="xtables"');
  });

  it('apply, apply again, verify, drift (exit 3 with diff), repair, remove', () => {
    const mode = ['--iptables-mode', 'nft'];
    const first = cli('apply', '--netns', netns!.path, '--pod', goodPod, ...mode);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^applied: pod demo\/web in \/run\/netns\/\S+ \(iptables-nft, rules [0-9a-f]{16}\)\n$/);
    expect(cli('apply', '--netns', netns!.path, '--pod', goodPod, ...mode).stdout).toMatch(/^unchanged: /);
    expect(cli('verify', '--netns', netns!.path, '--pod', goodPod, ...mode).code).toBe(0);

    must(['nsenter', `--net=${netns!.path}`, '--', 'iptables-nft', '-w', '-t', 'nat', '-D', 'ISTIO_OUTPUT', '-p', 'tcp', '--dport', '5432', '-j', 'RETURN']);
    const drift = cli('verify', '--netns', netns!.path, '--pod', goodPod, ...mode);
    expect(drift.code).toBe(3);
    expect(drift.stdout).toContain('--- ipv4 (- wanted, + found)');
    expect(drift.stdout).toContain('- -A ISTIO_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN');
    expect(drift.stdout).not.toContain('--- ipv6');

    expect(cli('apply', '--netns', netns!.path, '--pod', goodPod, ...mode).stdout).toMatch(/^applied: /);
    expect(cli('verify', '--netns', netns!.path, '--pod', goodPod, ...mode).code).toBe(0);
    expect(cli('remove', '--netns', netns!.path, ...mode).code).toBe(0);
    const gone = cli('verify', '--netns', netns!.path, '--pod', goodPod, ...mode);
    expect(gone.code).toBe(3);
    expect(gone.stdout).toContain("none of this project's chains or jumps are present");
  });
});
