// Deciding iptables-legacy or nft from the HOST's rules: each "host" is a real netns stand-in
// holding real rules in one backend, the other or both, and the detector is pointed at it as
// the agent points it at PID 1's netns. The agent's own netns (this process's here) is empty.
import { accessSync, constants } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectIptablesMode, type IptablesMode } from '../../controller/src/redirect/index.ts';
import { createNetns, deleteNetns, isRoot, ROOT_SKIP_MESSAGE, runInNetns, type TestNetns } from '../../hack/lib/netns.ts';

if (!isRoot) console.warn(`redirect-mode: ${ROOT_SKIP_MESSAGE}`);

/** Some sandboxes guard PID 1 more strictly than root's other processes (ptrace rules). */
const pid1Readable = (() => {
  try {
    accessSync('/proc/1/ns/net', constants.R_OK);
    return true;
  } catch {
    return false;
  }
})();

/** `count` filter rules (kube-proxy-like), and with `kubeletHint` the kubelet's hint chain in mangle. */
function ruleset(count: number, family: 'ipv4' | 'ipv6', kubeletHint = false): string {
  const address = (i: number) => (family === 'ipv4' ? `198.51.100.${i + 1}/32` : `2001:db8::${(i + 1).toString(16)}/128`);
  const filter = ['*filter', ':KUBE-TEST - [0:0]', ...Array.from({ length: count }, (_, i) => `-A KUBE-TEST -d ${address(i)} -j RETURN`), 'COMMIT'];
  return [...filter, ...(kubeletHint ? ['*mangle', ':KUBE-IPTABLES-HINT - [0:0]', 'COMMIT'] : [])].join('\n') + '\n';
}

function program(netns: TestNetns, mode: IptablesMode, rules: { ipv4: number; ipv6: number; kubeletHint?: boolean }): void {
  for (const family of ['ipv4', 'ipv6'] as const) {
    if (rules[family] === 0 && !rules.kubeletHint) continue;
    const binary = `${family === 'ipv4' ? 'iptables' : 'ip6tables'}-${mode}-restore`;
    const result = runInNetns(netns.path, [binary, '--noflush'], ruleset(rules[family], family, rules.kubeletHint));
    if (result.code !== 0) throw new Error(`${binary} in ${netns.name} failed: ${result.stderr}`);
  }
}

describe.skipIf(!isRoot)('iptables mode from a host netns stand-in', () => {
  const hosts: TestNetns[] = [];
  const host = (setup: (netns: TestNetns) => void): TestNetns => {
    const netns = createNetns('pncmode');
    hosts.push(netns);
    setup(netns);
    return netns;
  };
  let legacyHost: TestNetns;
  let nftHost: TestNetns;
  let moreNft: TestNetns;
  let moreLegacy: TestNetns;
  let hinted: TestNetns;
  let empty: TestNetns;

  beforeAll(() => {
    legacyHost = host((netns) => program(netns, 'legacy', { ipv4: 12, ipv6: 4 }));
    nftHost = host((netns) => program(netns, 'nft', { ipv4: 12, ipv6: 4 }));
    // kube-proxy-like: both backends hold rules; the one with more wins, IPv6 counted too.
    moreNft = host((netns) => {
      program(netns, 'legacy', { ipv4: 6, ipv6: 0 });
      program(netns, 'nft', { ipv4: 4, ipv6: 4 });
    });
    moreLegacy = host((netns) => {
      program(netns, 'legacy', { ipv4: 3, ipv6: 6 });
      program(netns, 'nft', { ipv4: 8, ipv6: 0 });
    });
    // The kubelet's hint chain outweighs a backend with more rules.
    hinted = host((netns) => {
      program(netns, 'legacy', { ipv4: 20, ipv6: 0 });
      program(netns, 'nft', { ipv4: 0, ipv6: 0, kubeletHint: true });
    });
    empty = host(() => undefined);
  });
  afterAll(() => {
    for (const netns of hosts) deleteNetns(netns);
  });

  it('picks legacy for a host whose rules are in iptables-legacy, though the agent’s own netns has none', async () => {
    const decision = await detectIptablesMode(legacyHost.path);
    expect(decision.mode).toBe('legacy');
    expect(decision.why).toBe('more rules in legacy (legacy 16 rules, nft 0 rules)');
  });

  it('picks nft for a host whose rules are in iptables-nft', async () => {
    expect(await detectIptablesMode(nftHost.path)).toEqual({ mode: 'nft', why: 'more rules in nft (legacy 0 rules, nft 16 rules)' });
  });

  it('follows the backend with more rules when both hold some (IPv4 and IPv6 together)', async () => {
    expect((await detectIptablesMode(moreNft.path)).mode).toBe('nft');
    expect((await detectIptablesMode(moreLegacy.path)).mode).toBe('legacy');
  });

  it("follows the kubelet's hint chain over a count", async () => {
    expect(await detectIptablesMode(hinted.path)).toEqual({ mode: 'nft', why: "the kubelet's hint chain is in nft (legacy 20 rules, nft 0 rules)" });
  });

  it('picks nft for a host without rules, and fails clearly for a netns path that does not exist', async () => {
    expect((await detectIptablesMode(empty.path)).mode).toBe('nft');
    await expect(detectIptablesMode('/run/netns/pnc-no-such-host')).rejects.toThrow(/cannot open the host network namespace \/run\/netns\/pnc-no-such-host/);
  });

  it.skipIf(pid1Readable)("counts in its own netns when PID 1's cannot be read, and says so", async () => {
    const decision = await detectIptablesMode('/proc/1/ns/net');
    expect(decision.why).toMatch(/, counted in this process's own network namespace: \/proc\/1\/ns\/net is not readable \((EACCES|EPERM)\)$/);
  });
});
