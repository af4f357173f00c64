// The operator CLI (controller/src/cli.ts) end to end: exit codes, messages and the
// apply -> verify -> drift -> remove cycle in a real netns.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeRedirectConfig, parseConfig } from '../../controller/src/agent/config.ts';
import { applyRedirect, planFromPod, removeRedirect } from '../../controller/src/redirect/index.ts';
import { createNetns, deleteNetns, isRoot, ROOT_SKIP_MESSAGE, type TestNetns } from '../../hack/lib/netns.ts';
import { must, run } from '../../hack/lib/process.ts';

if (!isRoot) console.warn(`redirect-cli: ${ROOT_SKIP_MESSAGE}`);

const CLI = join(import.meta.dirname, '..', '..', 'controller', 'src', 'cli.ts');
const cli = (...args: string[]) => run([process.execPath, CLI, ...args]);
/** The CLI with extra environment (and none of the PNC_* variables this process may have). */
function cliWithEnv(env: Record<string, string>, ...args: string[]) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PNC_')));
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...base, ...env } });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

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
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'web', namespace: 'demo', annotations: { 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.0.0.0/33' } },
      }),
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
    expect(cli('apply', '--netns', netns!.path, '--pod', goodPod, '--iptables-mode', 'xtables').stderr).toContain('PNC_IPTABLES_MODE="xtables"');
    expect(cli('render', '--pod', goodPod, '--concurrency', '2').stderr).toContain('unknown flag --concurrency');
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

  it("plans with the agent's node settings: verify in the agent's environment accepts what the agent applied", async () => {
    // An agent on a node with DNS capture and extra exclusions, programming an OpenShift-style proxy identity.
    const agentEnv = {
      NODE_NAME: 'node-a',
      PNC_CAPTURE_DNS: 'true',
      PNC_EXCLUDE_OUTBOUND_PORTS: '6379',
      PNC_EXCLUDE_INBOUND_PORTS: '22',
      PNC_IPTABLES_MODE: 'nft',
    };
    const openshiftPod = join(dir, 'openshift.yaml');
    writeFileSync(
      openshiftPod,
      [
        'apiVersion: v1',
        'kind: Pod',
        'metadata: {name: web, namespace: demo}',
        'spec:',
        '  securityContext: {runAsGroup: 1000650000}',
        '  containers:',
        '  - {name: app, image: app}',
        '  - {name: istio-proxy, image: proxy, securityContext: {runAsUser: 1000659999}}',
        '',
      ].join('\n'),
    );
    const node = nodeRedirectConfig(parseConfig(agentEnv, []));
    const pod = { metadata: { name: 'web', namespace: 'demo' } };
    await removeRedirect(netns!.path, { mode: 'nft' });
    await applyRedirect(netns!.path, planFromPod(pod, node, { uid: 1000659999, gid: 1000650000 }), { mode: 'nft' });
    try {
      const asAgent = cliWithEnv(agentEnv, 'verify', '--netns', netns!.path, '--pod', openshiftPod);
      expect(asAgent.stderr).toBe('');
      expect(asAgent.stdout).toMatch(/^ok: /);
      expect(asAgent.code).toBe(0);
      // The same settings as flags work too.
      const flags = ['--capture-dns', '--exclude-outbound-ports', '6379', '--exclude-inbound-ports=22', '--iptables-mode', 'nft'];
      expect(cliWithEnv({}, 'verify', '--netns', netns!.path, '--pod', openshiftPod, ...flags).code).toBe(0);
      // Without the node's settings the CLI plans other rules and reports drift.
      const bare = cliWithEnv({ PNC_IPTABLES_MODE: 'nft' }, 'verify', '--netns', netns!.path, '--pod', openshiftPod);
      expect(bare.code).toBe(3);
      // (+ found, not wanted without the node's DNS capture and exclusions)
      expect(bare.stdout).toContain('+ -A ISTIO_OUTPUT -j ISTIO_OUTPUT_DNS');
      expect(bare.stdout).toContain('+ -A ISTIO_OUTPUT -p udp -m udp --dport 6379 -j RETURN');
      // render shows the proxy identity taken from the manifest.
      expect(cliWithEnv(agentEnv, 'render', '--pod', openshiftPod).stdout).toContain('-m owner --uid-owner 1000659999 -j RETURN');
      expect(cliWithEnv(agentEnv, 'render', '--pod', openshiftPod).stdout).toContain('-m owner --gid-owner 1000650000 -j RETURN');
      const rootProxy = join(dir, 'root-proxy.yaml');
      writeFileSync(
        rootProxy,
        'kind: Pod\nmetadata: {name: web, namespace: demo}\nspec:\n  containers:\n  - {name: istio-proxy, securityContext: {runAsUser: 0}}\n',
      );
      const refused = cliWithEnv(agentEnv, 'render', '--pod', rootProxy);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('pod demo/web: container "istio-proxy" runs with runAsUser=0');
    } finally {
      await removeRedirect(netns!.path, { mode: 'nft' });
    }
  });
});
