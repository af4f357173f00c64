// Where the waiter's self-test dials: always a connection the pod's rules capture (checked
// against the plan's own ISTIO_OUTPUT chain), or a logged reason to skip the family; never a
// throw on valid annotations.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addressValue, cidrBounds, parseCidr } from '../../controller/src/pod-contract/index.ts';
import { planFromPod, type RedirectPlan } from '../../controller/src/redirect/index.ts';
import type { NetworkInterfaceInfo } from 'node:os';
import { hasGlobalIpv6, hasIpv4, parseRoutes, podInterfaces } from '../../init-waiter/src/pod-addresses.ts';
import { chooseProbeTarget, ProbeTargetError, type PodInterfaces, type PodRoutes, type ProbeChoice } from '../../init-waiter/src/probe-target.ts';
import { CONFIGS, HOSTS, nodeConfigOf, podLinks, podOf } from '../support/istio-configs.ts';
import { outboundVerdict } from '../support/output-chain.ts';

type Family = 'ipv4' | 'ipv6';
const T = 'traffic.sidecar.istio.io';
const PROBE = { ipv4: { address: '192.0.2.2', port: 9 }, ipv6: { address: '2001:db8::2', port: 9 } };
/** A plain pod: eth0 only. */
const ETH0: PodInterfaces = [{ name: 'eth0', cidrs: ['10.244.1.7/24', 'fd00:10:244:1::7/64'] }];
const WAITER = { uid: 65534, gid: 65534 };

/** A pod's routes: its links' subnets, and the default route out of the first link. */
const routesOf = (interfaces: PodInterfaces): PodRoutes => [
  ...interfaces.flatMap((link) => link.cidrs.map((cidr) => ({ cidr, ifname: link.name }))),
  { cidr: '0.0.0.0/0', ifname: interfaces[0]!.name },
  { cidr: '::/0', ifname: interfaces[0]!.name },
];
const choose = (annotations: Record<string, string>, family: Family = 'ipv4', interfaces: PodInterfaces = ETH0, probe = PROBE[family]) =>
  chooseProbeTarget(new Map(Object.entries(annotations)), family, probe, { interfaces, routes: routesOf(interfaces) });
const target = (family: Family, address: string, port: number): ProbeChoice => ({ target: { family, address, port } });

function inSubnet(family: Family, address: string, cidr: string): boolean {
  const parsed = parseCidr(cidr);
  if (parsed.family !== family) return false;
  const { first, last } = cidrBounds(parsed);
  const value = addressValue(family, address);
  return first <= value && value <= last;
}

/** The interface the pod's kernel sends it out of: lo for its own addresses and loopback, else the most specific route's. */
function routeOf(interfaces: PodInterfaces, family: Family, address: string): string {
  const own = interfaces.some((link) => link.cidrs.some((cidr) => cidr.split('/')[0] === address));
  if (own || inSubnet(family, address, family === 'ipv4' ? '127.0.0.0/8' : '::1/128')) return 'lo';
  const routes = routesOf(interfaces).filter((route) => inSubnet(family, address, route.cidr));
  return routes.sort((x, y) => parseCidr(y.cidr).prefix - parseCidr(x.cidr).prefix)[0]!.ifname;
}

/** What the plan's rules do with the waiter's connection to address:port. */
function verdict(plan: RedirectPlan, interfaces: PodInterfaces, family: Family, address: string, port: number) {
  const out = routeOf(interfaces, family, address);
  const ofFamily = (cidr: string) => cidr.includes(':') === (family === 'ipv6');
  const source =
    out === 'lo'
      ? HOSTS[family].loopback
      : interfaces
          .find((link) => link.name === out)!
          .cidrs.find(ofFamily)!
          .split('/')[0]!;
  return outboundVerdict(plan, { family, out, source, destination: address, port, ...WAITER });
}

/** The probe the waiter chose is captured to the proxy's outbound port under the plan. */
function expectCaptured(plan: RedirectPlan, interfaces: PodInterfaces, choice: ProbeChoice): void {
  expect(choice).toHaveProperty('target');
  if (!('target' in choice)) return;
  const { family, address, port } = choice.target;
  expect(verdict(plan, interfaces, family, address, port)).toBe('outbound');
}

describe('chooseProbeTarget', () => {
  it('dials the preferred address and port when the pod captures everything (no annotations)', () => {
    expect(choose({})).toEqual(target('ipv4', '192.0.2.2', 9));
    expect(choose({}, 'ipv6')).toEqual(target('ipv6', '2001:db8::2', 9));
  });

  it('moves past excluded outbound ports', () => {
    expect(choose({ [`${T}/excludeOutboundPorts`]: '9, 10,12' })).toEqual(target('ipv4', '192.0.2.2', 11));
  });

  it('uses an included port when the CIDRs do not cover the probe address', () => {
    const annotations = { [`${T}/includeOutboundIPRanges`]: '10.0.0.0/8', [`${T}/includeOutboundPorts`]: '443,8080', [`${T}/excludeOutboundPorts`]: '443' };
    expect(choose(annotations)).toEqual(target('ipv4', '192.0.2.2', 8080));
  });

  it('keeps the probe address when an include list covers it, per family', () => {
    const annotations = { [`${T}/includeOutboundIPRanges`]: '10.0.0.0/8,192.0.2.0/24,2001:db8::/32' };
    expect(choose(annotations)).toEqual(target('ipv4', '192.0.2.2', 9));
    expect(choose(annotations, 'ipv6')).toEqual(target('ipv6', '2001:db8::2', 9));
    expect(choose({ [`${T}/includeOutboundIPRanges`]: '*' })).toEqual(target('ipv4', '192.0.2.2', 9));
  });

  it("Istio's common service-range setting: includeOutboundIPRanges 10.96.0.0/12 without ports probes its first host", () => {
    const annotations = { [`${T}/includeOutboundIPRanges`]: '10.96.0.0/12' };
    const choice = choose(annotations);
    expect(choice).toEqual(target('ipv4', '10.96.0.1', 9));
    expectCaptured(planFromPod({ metadata: { annotations } }), ETH0, choice);
    // The pod has IPv6 but captures none of it: that family is skipped, saying why.
    expect(choose(annotations, 'ipv6')).toEqual({
      skip: `${T}/includeOutboundIPRanges="10.96.0.0/12" names no ipv6 range and there is no ${T}/includeOutboundPorts: no ipv6 outbound traffic is captured, nothing to prove`,
    });
  });

  it("skips the pod's own address, loopback, excluded ranges and the subnets of excluded interfaces, in the order of the include list", () => {
    const interfaces: PodInterfaces = [
      { name: 'eth0', cidrs: ['10.0.0.1/24'] },
      { name: 'net1', cidrs: ['10.1.0.5/24'] },
    ];
    const annotations = {
      [`${T}/includeOutboundIPRanges`]: '127.0.0.0/8,10.1.0.0/16,10.0.0.0/24',
      [`${T}/excludeOutboundIPRanges`]: '10.0.0.2/31,10.0.0.4/32',
      [`${T}/excludeInterfaces`]: 'net1',
    };
    // 127/8 is loopback; 10.1.0.0/24 is net1's; 10.1.1.0 is 10.1.0.0/16's first host past it.
    const choice = choose(annotations, 'ipv4', interfaces);
    expect(choice).toEqual(target('ipv4', '10.1.1.0', 9));
    expectCaptured(planFromPod({ metadata: { annotations } }), interfaces, choice);
    // Without the second range: 10.0.0.1 is the pod's own, .2-.4 excluded.
    const narrower = { ...annotations, [`${T}/includeOutboundIPRanges`]: '10.0.0.0/24' };
    expect(choose(narrower, 'ipv4', interfaces)).toEqual(target('ipv4', '10.0.0.5', 9));
  });

  it('finds another documentation address when the probe address is excluded under "*"', () => {
    const annotations = { [`${T}/excludeOutboundIPRanges`]: '192.0.2.0/25,2001:db8::/48' };
    expect(choose(annotations)).toEqual(target('ipv4', '192.0.2.128', 9));
    expect(choose(annotations, 'ipv6')).toEqual(target('ipv6', '2001:db8:1::', 9));
    for (const family of ['ipv4', 'ipv6'] as const) expectCaptured(planFromPod({ metadata: { annotations } }), ETH0, choose(annotations, family));
  });

  it('says exactly why, and skips, when every host of the included ranges is excluded', () => {
    const annotations = { [`${T}/includeOutboundIPRanges`]: '10.0.0.0/30', [`${T}/excludeOutboundIPRanges`]: '10.0.0.1/32,10.0.0.2/32' };
    expect(choose(annotations)).toEqual({
      skip:
        `no ipv4 address to probe: every host of ${T}/includeOutboundIPRanges="10.0.0.0/30" is excluded ` +
        `(in ${T}/excludeOutboundIPRanges 10.0.0.1/32; in ${T}/excludeOutboundIPRanges 10.0.0.2/32); set --probe-address to a captured address`,
    });
  });

  it('skips when excludeInterfaces names every interface of the pod', () => {
    expect(choose({ [`${T}/excludeInterfaces`]: 'eth0' })).toEqual({
      skip: `${T}/excludeInterfaces="eth0" names every interface of the pod (eth0): no outbound traffic is captured, nothing to prove`,
    });
  });

  it('never probes port 53 (DNS capture would take it to the DNS port)', () => {
    expect(choose({ [`${T}/includeOutboundIPRanges`]: '', [`${T}/includeOutboundPorts`]: '53,443' })).toEqual(target('ipv4', '192.0.2.2', 443));
    expect(choose({ [`${T}/includeOutboundIPRanges`]: '', [`${T}/includeOutboundPorts`]: '53' })).toEqual({
      skip: `${T}/includeOutboundIPRanges="" names no ipv4 range and every port of ${T}/includeOutboundPorts="53" is excluded (by ${T}/excludeOutboundPorts, or 53, which DNS capture takes): no ipv4 outbound traffic is captured, nothing to prove`,
    });
  });

  it.each([
    [`${T}/excludeOutboundPorts`, '9,http', '"http" is not a port'],
    [`${T}/excludeOutboundIPRanges`, '192.0.2.0/33', '"192.0.2.0/33" has an invalid prefix length'],
    [`${T}/includeOutboundIPRanges`, 'nonsense', '"nonsense" is not an IPv4 address'],
    [`${T}/excludeInterfaces`, 'a b', '"a b" is not an interface name'],
  ])('names a bad %s value (the agent refuses such a pod too)', (key, value, message) => {
    expect(() => choose({ [key]: value })).toThrow(ProbeTargetError);
    expect(() => choose({ [key]: value })).toThrow(`${key}=${JSON.stringify(value)}: ${message}`);
  });

  it('never throws on valid annotations, and whatever it dials is captured by the plan', () => {
    const cidrs = [
      '10.96.0.0/12',
      '192.0.2.0/24',
      '192.0.2.0/30',
      '198.51.100.0/25',
      '10.0.0.1/32',
      '127.0.0.0/8',
      '0.0.0.0/0',
      '2001:db8::/32',
      '2001:db8:1::/64',
      'fd00::/8',
      '::/0',
      '::1/128',
    ];
    const list = (items: string[]) => fc.subarray(items).map((chosen) => chosen.join(','));
    const ports = list(['9', '10', '53', '443', '8080']);
    const annotation = (key: string, value: fc.Arbitrary<string>) =>
      fc.option(
        value.map((text) => [`${T}/${key}`, text] as const),
        { nil: undefined },
      );
    fc.assert(
      fc.property(
        fc.tuple(
          annotation('includeOutboundIPRanges', fc.oneof(list(cidrs), fc.constant('*'))),
          annotation('excludeOutboundIPRanges', list(cidrs)),
          annotation('includeOutboundPorts', ports),
          annotation('excludeOutboundPorts', ports),
          annotation('excludeInterfaces', list(['eth0', 'net1'])),
        ),
        fc.constantFrom<Family>('ipv4', 'ipv6'),
        (entries, family) => {
          const annotations = Object.fromEntries(entries.filter((entry) => entry !== undefined));
          const interfaces: PodInterfaces = [
            { name: 'eth0', cidrs: ['192.0.2.1/24', '2001:db8::1/64'] },
            { name: 'net1', cidrs: ['203.0.113.1/24', '2001:db8:3::1/64'] },
          ];
          const choice = choose(annotations, family, interfaces);
          if ('skip' in choice) expect(choice.skip).not.toBe('');
          else expectCaptured(planFromPod({ metadata: { annotations } }), interfaces, choice);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

/** Families and reasons the waiter skips, per configuration of the differential test: these capture nothing of the family outbound. */
const SKIPS: Record<string, Partial<Record<Family, RegExp>>> = {
  'includeOutboundIPRanges empty': { ipv4: /names no ipv4 range and there is no .*includeOutboundPorts/, ipv6: /names no ipv6 range/ },
  'excludeInterfaces naming every interface': { ipv4: /names every interface of the pod \(eth0, net1\)/, ipv6: /names every interface of the pod/ },
};

describe('every pod configuration of the differential test against Istio', () => {
  it('every listed skip names a configuration of the matrix', () => {
    expect(Object.keys(SKIPS).filter((name) => !CONFIGS.some((config) => config.name === name))).toEqual([]);
  });

  // One test per configuration, named in full (it.each would shorten long names).
  for (const config of CONFIGS)
    it(config.name, () => {
      const plan = planFromPod(podOf(config), nodeConfigOf(config));
      const interfaces = podLinks(!config.ipv6Only).map((link) => ({ name: link.ifname, cidrs: link.addresses }));
      const families = plan.families.filter((family) => family === 'ipv6' || !config.ipv6Only);
      expect(families.length).toBeGreaterThan(0);
      for (const family of families) {
        const choice = choose(config.annotations ?? {}, family, interfaces);
        const skip = SKIPS[config.name]?.[family];
        if (skip === undefined) {
          expectCaptured(plan, interfaces, choice);
          continue;
        }
        expect(choice).toEqual({ skip: expect.stringMatching(skip) });
        // Nothing of the family is captured outbound: no destination of the test pod, on any port.
        const hosts = HOSTS[family];
        for (const address of [hosts.peer, hosts.rangeA, hosts.rangeB, hosts.net1Peer, PROBE[family].address]) {
          for (const port of [9, 80, 443, 5432]) expect(verdict(plan, interfaces, family, address, port)).toBe('none');
        }
      }
    });
});

describe('podInterfaces and hasIpv4 (os.networkInterfaces)', () => {
  const info = (address: string, cidr: string, internal = false) =>
    ({ address, cidr, internal, family: address.includes(':') ? 'IPv6' : 'IPv4', netmask: '', mac: '00:00:00:00:00:00', scopeid: 0 }) as NetworkInterfaceInfo;

  it('keeps the interfaces but loopback with their CIDRs; an IPv6-only pod has no IPv4', () => {
    const found = { lo: [info('127.0.0.1', '127.0.0.1/8', true), info('::1', '::1/128', true)], eth0: [info('2001:db8::1', '2001:db8::1/64')] };
    expect(podInterfaces(found)).toEqual([{ name: 'eth0', cidrs: ['2001:db8::1/64'] }]);
    expect(hasIpv4(podInterfaces(found))).toBe(false);
    expect(hasIpv4([{ name: 'eth0', cidrs: ['192.0.2.1/24'] }])).toBe(true);
  });
});

describe('parseRoutes (/proc/net/route, /proc/net/ipv6_route)', () => {
  it('reads each route up as a CIDR and its interface', () => {
    const route = [
      'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
      'eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0',
      'eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
      'net1\t007100CB\t00000000\t0000\t0\t0\t0\t00FFFFFF\t0\t0\t0',
    ].join('\n');
    const ipv6 = [
      '20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0',
      '00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000002 00000400 00000002 00000000 00000003     eth0',
      '00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo',
    ].join('\n');
    expect(parseRoutes(route, ipv6)).toEqual([
      { cidr: '0.0.0.0/0', ifname: 'eth0' },
      { cidr: '192.0.2.0/24', ifname: 'eth0' },
      { cidr: '2001:db8::/64', ifname: 'eth0' },
      { cidr: '::/0', ifname: 'eth0' },
      { cidr: '::1/128', ifname: 'lo' },
    ]);
  });

  it('a probe never leaves by an excluded default route: it takes an address routed out of a captured interface', () => {
    const interfaces: PodInterfaces = [
      { name: 'eth0', cidrs: ['192.0.2.1/24'] },
      { name: 'net1', cidrs: ['203.0.113.1/24'] },
    ];
    const annotations = { [`${T}/excludeInterfaces`]: 'eth0' };
    const choice = choose(annotations, 'ipv4', interfaces);
    expect(choice).toEqual(target('ipv4', '203.0.113.2', 9));
    expectCaptured(planFromPod({ metadata: { annotations } }), interfaces, choice);
  });
});

describe('hasGlobalIpv6 (/proc/net/if_inet6)', () => {
  const loopback = '00000000000000000000000000000001 01 80 10 80       lo';
  const linkLocal = 'fe800000000000000000000000000001 02 40 20 80     eth0';
  const global = '20010db8000000000000000000000001 02 40 00 80     eth0';
  const dadFailed = '20010db8000000000000000000000001 02 40 00 88     eth0';

  it('counts only usable global-scope addresses', () => {
    expect(hasGlobalIpv6([loopback, linkLocal].join('\n'))).toBe(false);
    expect(hasGlobalIpv6([loopback, linkLocal, global].join('\n'))).toBe(true);
    expect(hasGlobalIpv6([loopback, dadFailed].join('\n'))).toBe(false);
    expect(hasGlobalIpv6('')).toBe(false);
  });
});
