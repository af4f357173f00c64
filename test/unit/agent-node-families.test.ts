// Which families the node redirects (configured x what the kernel can), and which pods need
// one it cannot: pure decisions, probes faked.
import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  allConfigured,
  decideNodeFamilies,
  describeNodeFamilies,
  detectNodeFamilies,
  missingFamilyNeed,
  withEnabledFamilies,
} from '../../controller/src/agent/node-families.ts';
import { startHttpServer } from '../../controller/src/agent/http-server.ts';
import { createMetrics, setNodeFamilies } from '../../controller/src/agent/metrics.ts';
import type { Family, FamilyProbe } from '../../controller/src/redirect/index.ts';

const OK: FamilyProbe = { ok: true };
const NO_V6: FamilyProbe = { ok: false, why: 'the kernel has no IPv6 (/proc/sys/net/ipv6 is missing: booted with ipv6.disable=1?)' };
const NO_V6_NAT: FamilyProbe = {
  ok: false,
  why: 'ip6tables-legacy-restore of the redirect rules failed in a scratch network namespace (exit 2): nat table missing',
};
const probes = (ipv4: FamilyProbe, ipv6: FamilyProbe) =>
  new Map<Family, FamilyProbe>([
    ['ipv4', ipv4],
    ['ipv6', ipv6],
  ]);

describe('decideNodeFamilies: configured x available', () => {
  it.each([
    ['dual-stack node, both work', ['ipv4', 'ipv6'], probes(OK, OK), ['ipv4', 'ipv6'], []],
    ['kernel without IPv6', ['ipv4', 'ipv6'], probes(OK, NO_V6), ['ipv4'], ['ipv6']],
    ['no ip6 nat', ['ipv4', 'ipv6'], probes(OK, NO_V6_NAT), ['ipv4'], ['ipv6']],
    ['IPv4 configured only: IPv6 is not probed, not missing', ['ipv4'], new Map([['ipv4', OK]]), ['ipv4'], []],
    ['IPv6-only node without IPv4 nat', ['ipv4', 'ipv6'], probes({ ok: false, why: 'no nat' }, OK), ['ipv6'], ['ipv4']],
    ['nothing works', ['ipv6'], new Map([['ipv6', NO_V6]]), [], ['ipv6']],
  ] as const)('%s', (_name, configured, results, enabled, missing) => {
    const families = decideNodeFamilies(configured, results as ReadonlyMap<Family, FamilyProbe>);
    expect(families.enabled).toEqual(enabled);
    expect([...families.missing.keys()]).toEqual(missing);
  });

  it('keeps why a family is missing, and tells "not configured" apart', () => {
    const families = decideNodeFamilies(['ipv6'], new Map([['ipv6', NO_V6]]));
    expect(families.missing.get('ipv6')).toBe(NO_V6.why);
    expect(describeNodeFamilies(families)).toEqual(['ipv4: off (not in PNC_FAMILIES)', `ipv6: off: ${NO_V6.why}`]);
    expect(describeNodeFamilies(allConfigured(['ipv4', 'ipv6']))).toEqual(['ipv4: redirected', 'ipv6: redirected']);
  });

  it('probes only the configured families', async () => {
    const asked: Family[] = [];
    const families = await detectNodeFamilies(['ipv6'], async (family) => {
      asked.push(family);
      return NO_V6_NAT;
    });
    expect(asked).toEqual(['ipv6']);
    expect(families.enabled).toEqual([]);
  });
});

describe('withEnabledFamilies', () => {
  it('narrows the families and drops node-excluded CIDRs of a family the kernel lacks', () => {
    const settings = { families: ['ipv4', 'ipv6'] as Family[], excludeOutboundCidrs: ['203.0.113.0/24', '2001:db8::/32'], captureDns: true };
    const narrowed = withEnabledFamilies(settings, decideNodeFamilies(['ipv4', 'ipv6'], probes(OK, NO_V6)));
    expect(narrowed).toEqual({ families: ['ipv4'], excludeOutboundCidrs: ['203.0.113.0/24'], captureDns: true });
  });
});

const pod = (status: V1Pod['status'], annotations: Record<string, string> = {}): V1Pod => ({
  metadata: { namespace: 'shop', name: 'web', annotations },
  status,
});
const withoutV6 = decideNodeFamilies(['ipv4', 'ipv6'], probes(OK, NO_V6));
const RANGES = 'traffic.sidecar.istio.io/includeOutboundIPRanges';

describe('missingFamilyNeed: what a pod needs', () => {
  it('refuses a pod with an address of the missing family, saying which and why', () => {
    const reason = missingFamilyNeed(pod({ podIPs: [{ ip: '192.0.2.10' }, { ip: '2001:db8::a' }] }), withoutV6);
    expect(reason).toBe(
      `refused: the pod has the ipv6 address 2001:db8::a, but this node cannot redirect ipv6: ${NO_V6.why}; its ipv6 traffic would bypass the proxy`,
    );
    expect(missingFamilyNeed(pod({ podIPs: [{ ip: '2001:db8::a' }] }), withoutV6)).toContain('the ipv6 address 2001:db8::a');
    // Only podIP (older status writers).
    expect(missingFamilyNeed(pod({ podIP: '2001:db8::b' }), withoutV6)).toContain('2001:db8::b');
  });

  it('refuses a pod that captures a range of the missing family, naming pod, annotation and value', () => {
    const reason = missingFamilyNeed(pod({ podIPs: [{ ip: '192.0.2.10' }] }, { [RANGES]: '10.0.0.0/8,2001:db8:1::/48' }), withoutV6);
    expect(reason).toBe(
      `refused: pod shop/web annotation ${RANGES}="10.0.0.0/8,2001:db8:1::/48" captures 2001:db8:1::/48, but this node cannot redirect ipv6: ${NO_V6.why}`,
    );
    // Before its addresses are known too.
    expect(missingFamilyNeed(pod({}, { [RANGES]: '2001:db8:1::/48' }), withoutV6)).toMatch(/^refused: pod shop\/web annotation/);
  });

  it('lets through a pod that uses only families that work ("*" and exclusions need nothing)', () => {
    expect(missingFamilyNeed(pod({ podIPs: [{ ip: '192.0.2.10' }] }), withoutV6)).toBeUndefined();
    expect(missingFamilyNeed(pod({ podIPs: [{ ip: '192.0.2.10' }] }, { [RANGES]: '*' }), withoutV6)).toBeUndefined();
    const excluding = { 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '2001:db8::/32' };
    expect(missingFamilyNeed(pod({ podIPs: [{ ip: '192.0.2.10' }] }, excluding), withoutV6)).toBeUndefined();
    // A bad range is the plan's to refuse, with its own message.
    expect(missingFamilyNeed(pod({ podIPs: [{ ip: '192.0.2.10' }] }, { [RANGES]: 'not-a-cidr' }), withoutV6)).toBeUndefined();
  });

  it('cannot tell before the addresses are known while a family is missing; needs nothing when none is', () => {
    expect(missingFamilyNeed(pod({}), withoutV6)).toBe('unknown');
    expect(missingFamilyNeed(pod({ podIPs: [] }), withoutV6)).toBe('unknown');
    expect(missingFamilyNeed(pod({}), allConfigured(['ipv4', 'ipv6']))).toBeUndefined();
    expect(missingFamilyNeed(pod({ podIPs: [{ ip: '2001:db8::a' }] }), allConfigured(['ipv4']))).toBeUndefined();
  });
});

describe('pnc_redirect_family_enabled', () => {
  it('is 1 for a redirected family and 0 for one the kernel lacks or PNC_FAMILIES leaves out', async () => {
    const metrics = createMetrics();
    setNodeFamilies(metrics, withoutV6);
    const text = await metrics.registry.getSingleMetricAsString('pnc_redirect_family_enabled');
    expect(text).toContain('pnc_redirect_family_enabled{family="ipv4"} 1');
    expect(text).toContain('pnc_redirect_family_enabled{family="ipv6"} 0');
  });
});

describe('/readyz with a reduced family set', () => {
  it('is ready and says which families are redirected and why one is not; an unready agent says so too', async () => {
    let notReady: string | undefined;
    const server = await startHttpServer('127.0.0.1', 0, createMetrics().registry, {
      healthy: () => true,
      notReady: () => notReady,
      details: () => describeNodeFamilies(withoutV6),
    });
    try {
      const ready = await fetch(`http://127.0.0.1:${server.port}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.text()).toBe(`ok\nipv4: redirected\nipv6: off: ${NO_V6.why}\n`);
      notReady = 'pods watch down for 6 s';
      const unready = await fetch(`http://127.0.0.1:${server.port}/readyz`);
      expect(unready.status).toBe(503);
      expect(await unready.text()).toBe(`pods watch down for 6 s\nipv4: redirected\nipv6: off: ${NO_V6.why}\n`);
    } finally {
      await server.close();
    }
  });
});
