// Which families the kernel can redirect, probed for real: the family's rules restored into a
// scratch netns (unshare --net). A kernel without IPv6 cannot be booted here, so that state is
// a stand-in /proc without sys/net/ipv6 (what ipv6.disable=1 leaves); the rest is real.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectNodeFamilies, withEnabledFamilies } from '../../controller/src/agent/node-families.ts';
import { DEFAULT_NODE_CONFIG, applyRedirect, planFromPod, probeFamily, validateNodeConfig, type IptablesMode } from '../../controller/src/redirect/index.ts';
import { createNetns, deleteNetns, isRoot, ROOT_SKIP_MESSAGE, runInNetns, type TestNetns } from '../../hack/lib/netns.ts';
import { must } from '../../hack/lib/process.ts';

if (!isRoot) console.warn(`family-probe: ${ROOT_SKIP_MESSAGE}`);

/** Our chains in this process's own netns, per family and backend: the probe must leave none. */
const ownChains = () =>
  ['iptables-nft-save', 'ip6tables-nft-save', 'iptables-legacy-save', 'ip6tables-legacy-save'].map(
    (save) =>
      must([save])
        .split('\n')
        .filter((line) => line.startsWith(':ISTIO_')).length,
  );

describe.skipIf(!isRoot)('family probe against the real kernel', () => {
  let noIpv6Proc: string;
  let pod: TestNetns | undefined;
  beforeAll(() => {
    noIpv6Proc = mkdtempSync(join(tmpdir(), 'pnc-proc-'));
    mkdirSync(join(noIpv6Proc, 'sys/net/ipv4'), { recursive: true });
    pod = createNetns('pncfam');
  });
  afterAll(() => {
    rmSync(noIpv6Proc, { recursive: true, force: true });
    deleteNetns(pod);
  });

  it.each(['nft', 'legacy'] as IptablesMode[])('finds IPv4 and IPv6 nat working with iptables-%s, and leaves nothing in this netns', async (mode) => {
    const before = ownChains();
    expect(await probeFamily('ipv4', mode)).toEqual({ ok: true });
    expect(await probeFamily('ipv6', mode)).toEqual({ ok: true });
    expect(ownChains()).toEqual(before);
  });

  it('reports the restore failing, with its message, when the rules cannot be taken', async () => {
    // The real restore, run where our chains already exist ("-N" of an existing chain fails as a whole).
    const occupied = createNetns('pncfam');
    try {
      const inOccupied = (argv: string[], stdin: string) => Promise.resolve(runInNetns(occupied.path, argv, stdin));
      expect(await probeFamily('ipv6', 'nft', { runIsolated: inOccupied })).toEqual({ ok: true });
      const again = await probeFamily('ipv6', 'nft', { runIsolated: inOccupied });
      expect(again.ok).toBe(false);
      if (!again.ok) expect(again.why).toMatch(/^ip6tables-nft-restore of the redirect rules failed in a scratch network namespace \(exit \d+\): \S/);
    } finally {
      deleteNetns(occupied);
    }
  });

  it('drops IPv6 on a kernel without it, and then programs a pod with IPv4 only', async () => {
    const families = await detectNodeFamilies(['ipv4', 'ipv6'], (family) => probeFamily(family, 'nft', { procRoot: noIpv6Proc }));
    expect(families.enabled).toEqual(['ipv4']);
    expect(families.missing.get('ipv6')).toBe(`the kernel has no IPv6 (${noIpv6Proc}/sys/net/ipv6 is missing: booted with ipv6.disable=1?)`);

    const config = validateNodeConfig(withEnabledFamilies({ ...DEFAULT_NODE_CONFIG, excludeOutboundCidrs: ['203.0.113.0/24', '2001:db8::/32'] }, families));
    const plan = planFromPod({ metadata: { namespace: 'shop', name: 'web' } }, config);
    expect(plan.families).toEqual(['ipv4']);
    await applyRedirect(pod!.path, plan, { mode: 'nft' });
    expect(must(['nsenter', `--net=${pod!.path}`, '--', 'iptables-nft-save', '-t', 'nat'])).toContain('-A ISTIO_OUTPUT -d 203.0.113.0/24 -j RETURN');
    expect(must(['nsenter', `--net=${pod!.path}`, '--', 'ip6tables-nft-save', '-t', 'nat'])).not.toContain('ISTIO');
  });
});
