// planFromPod: Istio annotations honoured, bad values refused with a typed error naming
// pod, annotation and value, and fuzzed parsers that never yield an invalid plan.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AnnotationError,
  DEFAULT_NODE_CONFIG,
  NodeConfigError,
  planFromPod,
  validateNodeConfig,
  type NodeRedirectConfig,
  type RedirectPlan,
} from '../../controller/src/redirect/index.ts';

const A = {
  mode: 'sidecar.istio.io/interceptionMode',
  inInclude: 'traffic.sidecar.istio.io/includeInboundPorts',
  inExclude: 'traffic.sidecar.istio.io/excludeInboundPorts',
  outRanges: 'traffic.sidecar.istio.io/includeOutboundIPRanges',
  outExcludeRanges: 'traffic.sidecar.istio.io/excludeOutboundIPRanges',
  outPorts: 'traffic.sidecar.istio.io/includeOutboundPorts',
  outExcludePorts: 'traffic.sidecar.istio.io/excludeOutboundPorts',
  excludeInterfaces: 'traffic.sidecar.istio.io/excludeInterfaces',
  statusPort: 'status.sidecar.istio.io/port',
  proxyConfig: 'proxy.istio.io/config',
} as const;

const pod = (annotations: Record<string, string>) => ({ metadata: { namespace: 'shop', name: 'cart-7d9', annotations } });
const plan = (annotations: Record<string, string>, config: Partial<NodeRedirectConfig> = {}) =>
  planFromPod(pod(annotations), validateNodeConfig({ ...DEFAULT_NODE_CONFIG, ...config }));

function expectAnnotationError(annotations: Record<string, string>, annotation: string, value: string, config?: Partial<NodeRedirectConfig>) {
  let caught: unknown;
  try {
    plan(annotations, config);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(AnnotationError);
  const error = caught as AnnotationError;
  expect({ pod: error.pod, annotation: error.annotation, value: error.value }).toEqual({ pod: 'shop/cart-7d9', annotation, value });
  expect(error.message).toContain('shop/cart-7d9');
  expect(error.message).toContain(annotation);
  expect(error.message).toContain(JSON.stringify(value));
}

describe('planFromPod defaults', () => {
  it('captures everything in both families with Istio ports and the proxy identity from the node', () => {
    expect(plan({})).toEqual({
      pod: 'shop/cart-7d9',
      families: ['ipv4', 'ipv6'],
      proxyUid: 1337,
      proxyGid: 1337,
      outboundPort: 15001,
      inboundPort: 15006,
      dnsPort: 15053,
      captureDns: false,
      excludeInterfaces: [],
      inbound: { includePorts: '*', excludePorts: [15020, 15021, 15090] },
      outbound: { includeCidrs: '*', includesLoopback: false, excludeCidrs: { ipv4: [], ipv6: [] }, includePorts: [], excludePorts: [] },
    } satisfies RedirectPlan);
  });

  it('takes ports, identity, DNS capture and families from the node config', () => {
    const result = plan(
      {},
      { proxyUid: 2000, proxyGid: 2001, outboundPort: 16001, inboundPort: 16006, captureDns: true, families: ['ipv6'], excludeInboundPorts: [22] },
    );
    expect(result).toMatchObject({ proxyUid: 2000, proxyGid: 2001, outboundPort: 16001, inboundPort: 16006, captureDns: true, families: ['ipv6'] });
    expect(result.inbound.excludePorts).toEqual([22, 15020, 15021, 15090]);
  });

  it('accepts OpenShift-sized proxy UIDs and a GID different from the UID', () => {
    expect(plan({}, { proxyUid: 1000659999, proxyGid: 1000650000 })).toMatchObject({ proxyUid: 1000659999, proxyGid: 1000650000 });
  });
});

describe('planFromPod honours Istio annotations', () => {
  it('parses lists (spaces, duplicates, order) into sorted unique values', () => {
    const result = plan({
      [A.mode]: 'REDIRECT',
      [A.inInclude]: ' 9443, 8080,8080 ',
      [A.inExclude]: '15020,22',
      [A.outExcludeRanges]: '10.1.2.3/8, 2001:DB8:0::1/48,169.254.169.254',
      [A.outPorts]: '443,80',
      [A.outExcludePorts]: '5432',
    });
    // As in Istio, a list of inbound ports ignores the exclusions.
    expect(result.inbound).toEqual({ includePorts: [8080, 9443], excludePorts: [] });
    expect(result.outbound).toEqual({
      includeCidrs: '*',
      includesLoopback: false,
      excludeCidrs: { ipv4: ['10.0.0.0/8', '169.254.169.254/32'], ipv6: ['2001:db8::/48'] },
      includePorts: [80, 443],
      excludePorts: [5432],
    });
  });

  it('splits include ranges by family; empty include means no capture', () => {
    expect(plan({ [A.outRanges]: '10.0.0.0/8,fd00::/8' }).outbound.includeCidrs).toEqual({ ipv4: ['10.0.0.0/8'], ipv6: ['fd00::/8'] });
    expect(plan({ [A.outRanges]: '' }).outbound.includeCidrs).toEqual({ ipv4: [], ipv6: [] });
    expect(plan({ [A.inInclude]: '' }).inbound.includePorts).toEqual([]);
    expect(plan({ [A.outRanges]: '*' }).outbound.includeCidrs).toBe('*');
  });

  it('takes excluded interfaces as a sorted unique list', () => {
    expect(plan({ [A.excludeInterfaces]: 'net2, net1,eth1.100,net1' }).excludeInterfaces).toEqual(['eth1.100', 'net1', 'net2']);
    expect(plan({}).excludeInterfaces).toEqual([]);
  });

  it('follows Istio where include and exclude meet: list mode ignores exclusions, empty includes keep no exclusion rules', () => {
    expect(plan({ [A.inInclude]: '8080', [A.inExclude]: '8080' }).inbound).toEqual({ includePorts: [8080], excludePorts: [] });
    expect(plan({ [A.inInclude]: '', [A.inExclude]: '8080' }).inbound).toEqual({ includePorts: [], excludePorts: [] });
    expect(plan({ [A.outRanges]: ' ', [A.outExcludeRanges]: '10.0.0.0/8' }).outbound.excludeCidrs.ipv4).toEqual(['10.0.0.0/8']);
  });

  it('marks a loopback include range (any family, as written before masking)', () => {
    for (const ranges of ['127.1.2.3/32', '127.0.0.0/8', '10.0.0.0/8,::1/128', '::1', '127.0.0.1/1']) {
      expect(plan({ [A.outRanges]: ranges }).outbound.includesLoopback, ranges).toBe(true);
    }
    for (const ranges of ['*', '', '10.0.0.0/8', '0.0.0.0/0', '::/0', '::2/128', '128.0.0.1/32']) {
      expect(plan({ [A.outRanges]: ranges }).outbound.includesLoopback, ranges).toBe(false);
    }
  });

  it('excludes the status port of status.sidecar.istio.io/port instead of 15020; "0" or "" exclude none', () => {
    expect(plan({ [A.statusPort]: '15999' }).inbound.excludePorts).toEqual([15021, 15090, 15999]);
    expect(plan({ [A.statusPort]: '0' }).inbound.excludePorts).toEqual([15021, 15090]);
    expect(plan({ [A.statusPort]: '' }).inbound.excludePorts).toEqual([15021, 15090]);
    expect(plan({ [A.statusPort]: '15020', [A.inExclude]: '15020' }).inbound.excludePorts).toEqual([15020, 15021, 15090]);
  });

  it("takes DNS capture from the pod's proxy config, the node setting otherwise", () => {
    const dns = (value: string) => `proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: "${value}"\n`;
    expect(plan({ [A.proxyConfig]: dns('true') }).captureDns).toBe(true);
    expect(plan({ [A.proxyConfig]: dns('True') }, { captureDns: false }).captureDns).toBe(true);
    expect(plan({ [A.proxyConfig]: dns('false') }, { captureDns: true }).captureDns).toBe(false);
    expect(plan({ [A.proxyConfig]: '{"proxyMetadata":{"ISTIO_META_DNS_CAPTURE":"true"}}' }).captureDns).toBe(true);
    expect(plan({ [A.proxyConfig]: 'concurrency: 2\nproxyMetadata:\n  OTHER: x\n' }, { captureDns: true }).captureDns).toBe(true);
    expect(plan({ [A.proxyConfig]: '' }, { captureDns: true }).captureDns).toBe(true);
    expect(plan({ [A.proxyConfig]: 'interceptionMode: REDIRECT\nproxyMetadata: {INVALID_DROP: "false"}' }).captureDns).toBe(false);
  });

  it('never lets an annotation change the proxy identity', () => {
    const result = plan({ 'sidecar.istio.io/proxyUID': '0', 'sidecar.istio.io/proxyGID': '0', 'traffic.sidecar.istio.io/proxyUid': '1000' });
    expect([result.proxyUid, result.proxyGid]).toEqual([1337, 1337]);
  });
});

describe('planFromPod refuses bad values', () => {
  /** The annotation set alone on the pod is refused, naming itself and its value. */
  const refusesAlone = (annotation: string, value: string) => expectAnnotationError({ [annotation]: value }, annotation, value);

  it.each([
    [A.inInclude, '80,abc'],
    [A.inInclude, '0'],
    [A.inInclude, '70000'],
    [A.inInclude, '*,80'],
    [A.inInclude, '80,,81'],
    [A.inInclude, '80;rm -rf /'],
    [A.inExclude, '$(reboot)'],
    [A.inExclude, '-1'],
    [A.outPorts, '08080'],
    [A.outPorts, '443 80'],
    [A.outExcludePorts, '`id`'],
    [A.outRanges, '10.0.0.0/33'],
    [A.outRanges, '10.0.0.0/8|sh'],
    [A.outExcludeRanges, '::/129'],
    [A.outExcludeRanges, '256.1.1.1'],
    [A.outExcludeRanges, '1:2:3:4:5:6:7:8:9/64'],
    [A.outExcludeRanges, '10.0.0.0/08'],
    [A.outExcludeRanges, 'fe80::1%eth0/64'],
    [A.outExcludeRanges, '*'],
    [A.mode, 'TPROXY'],
    [A.mode, 'NONE'],
    [A.mode, 'redirect'],
    [A.excludeInterfaces, 'eth0;reboot'],
    [A.excludeInterfaces, 'veth+'],
    [A.excludeInterfaces, 'averyveryverylongname'],
    [A.excludeInterfaces, 'net1,,net2'],
    [A.excludeInterfaces, '-j ACCEPT'],
  ])('%s=%j', refusesAlone);

  it('refuses to capture a range of a family the node does not redirect; excluding one changes nothing', () => {
    expectAnnotationError({ [A.outRanges]: '10.0.0.0/8' }, A.outRanges, '10.0.0.0/8', { families: ['ipv6'] });
    expectAnnotationError({ [A.outRanges]: '2001:db8::/32' }, A.outRanges, '2001:db8::/32', { families: ['ipv4'] });
    expect(plan({ [A.outExcludeRanges]: '2001:db8::/32,10.0.0.0/8' }, { families: ['ipv6'] }).outbound.excludeCidrs).toEqual({
      ipv4: [],
      ipv6: ['2001:db8::/32'],
    });
  });

  it.each([
    ['traffic.sidecar.istio.io/kubevirtInterfaces', 'net1'],
    ['istio.io/reroute-virtual-interfaces', 'net1'],
    [A.statusPort, '70000'],
    [A.statusPort, 'abc'],
    [A.proxyConfig, 'proxyMetadata: [unclosed'],
    [A.proxyConfig, '- a list'],
    [A.proxyConfig, 'proxyMetadata: {ISTIO_META_DNS_CAPTURE: "yes"}'],
    [A.proxyConfig, 'proxyMetadata: ["ISTIO_META_DNS_CAPTURE"]'],
    [A.proxyConfig, 'interceptionMode: TPROXY'],
    [A.proxyConfig, 'proxyMetadata: {INVALID_DROP: "true"}'],
  ])('refuses %s=%j, which would change redirection in a way not implemented', refusesAlone);

  it('names the unsupported setting in the reason', () => {
    expect(() => plan({ [A.mode]: 'NONE' })).toThrow(/NONE .*sidecar.istio.io\/inject/);
    expect(() => plan({ 'istio.io/reroute-virtual-interfaces': 'net1' })).toThrow(/virtual-machine interfaces/);
    expect(() => plan({ [A.proxyConfig]: 'proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: maybe' })).toThrow(/ISTIO_META_DNS_CAPTURE="maybe"/);
  });

  it('refuses a non-string annotation value (as an untyped client could send)', () => {
    const bad = { metadata: { namespace: 'shop', name: 'cart-7d9', annotations: { [A.inInclude]: 8080 as unknown as string } } };
    expect(() => planFromPod(bad)).toThrow(AnnotationError);
  });

  it('refuses a root or out-of-range proxy identity given for the pod', () => {
    expect(() => planFromPod(pod({}), undefined, { uid: 0, gid: 1337 })).toThrow(/proxyUid=0/);
    expect(() => planFromPod(pod({}), undefined, { uid: 1337, gid: 2 ** 32 })).toThrow(NodeConfigError);
    expect(planFromPod(pod({}), undefined, { uid: 2000, gid: 2001 })).toMatchObject({ proxyUid: 2000, proxyGid: 2001 });
  });
});

describe('validateNodeConfig', () => {
  it('refuses a bad node config with NodeConfigError naming the field', () => {
    const validate = (config: Partial<NodeRedirectConfig>) => validateNodeConfig({ ...DEFAULT_NODE_CONFIG, ...config });
    expect(() => validate({ proxyUid: 0 })).toThrow(/proxyUid=0/);
    expect(() => validate({ inboundPort: 70000 })).toThrow(NodeConfigError);
    expect(() => validate({ families: [] })).toThrow(/families/);
    expect(() => validate({ families: ['ipv6'], excludeOutboundCidrs: ['10.0.0.0/8'] })).toThrow(/excludeOutboundCidrs/);
  });

  it('returns a frozen copy, so the config planFromPod trusts cannot change after validation', () => {
    const given = { ...DEFAULT_NODE_CONFIG, excludeOutboundPorts: [5432] };
    const validated = validateNodeConfig(given);
    given.excludeOutboundPorts.push(0);
    expect(validated.excludeOutboundPorts).toEqual([5432]);
    expect(Object.isFrozen(validated) && Object.isFrozen(validated.excludeOutboundPorts) && Object.isFrozen(validated.families)).toBe(true);
  });
});

/** Every value a plan carries must be one iptables accepts. */
function assertValidPlan(result: RedirectPlan): void {
  const ports = [
    ...(result.inbound.includePorts === '*' ? [] : result.inbound.includePorts),
    ...result.inbound.excludePorts,
    ...result.outbound.includePorts,
    ...result.outbound.excludePorts,
  ];
  for (const port of ports) expect(Number.isInteger(port) && port >= 1 && port <= 65535).toBe(true);
  for (const name of result.excludeInterfaces) expect(name).toMatch(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/);
  const cidrs = result.outbound.includeCidrs === '*' ? { ipv4: [], ipv6: [] } : result.outbound.includeCidrs;
  for (const cidr of [...cidrs.ipv4, ...result.outbound.excludeCidrs.ipv4]) {
    expect(cidr).toMatch(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d|[12]\d|3[0-2])$/);
    expect(
      cidr
        .split('/')[0]!
        .split('.')
        .every((octet) => Number(octet) <= 255),
    ).toBe(true);
  }
  for (const cidr of [...cidrs.ipv6, ...result.outbound.excludeCidrs.ipv6]) {
    expect(cidr).toMatch(/^[0-9a-f:.]+\/(\d|[1-9]\d|1[01]\d|12[0-8])$/);
  }
  expect(typeof result.captureDns).toBe('boolean');
  expect([result.proxyUid, result.proxyGid]).toEqual([1337, 1337]);
}

describe('annotation parsers under fuzzing', () => {
  const names = Object.values(A);
  const tokens = fc.oneof(
    fc.integer({ min: -5, max: 70000 }).map(String),
    fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 40 })).map(([ip, prefix]) => `${ip}/${prefix}`),
    fc.ipV6(),
    fc.ipV6().chain((ip) => fc.integer({ min: 0, max: 140 }).map((prefix) => `${ip}/${prefix}`)),
    fc.constantFrom('*', '', ' ', 'REDIRECT', 'TPROXY', ';', '$(id)', '`x`', '|', '&&', '\n', '0x50', '1e3', '::', '/', '10.0.0.0/', '/8'),
    fc.string({ maxLength: 12 }),
    fc.string({ unit: 'binary', maxLength: 8 }),
  );
  const value = fc.oneof(
    fc.array(tokens, { maxLength: 6 }).map((parts) => parts.join(',')),
    fc.string({ maxLength: 40 }),
  );
  const annotations = fc.dictionary(fc.constantFrom(...names), value, { maxKeys: names.length });
  const families = fc.constantFrom<NodeRedirectConfig['families']>(['ipv4', 'ipv6'], ['ipv4'], ['ipv6']);

  it('only ever throws AnnotationError, and every plan they produce is valid', () => {
    let planned = 0;
    let refused = 0;
    fc.assert(
      fc.property(annotations, families, (given, fams) => {
        try {
          assertValidPlan(plan(given, { families: fams }));
          planned++;
        } catch (error) {
          if (!(error instanceof AnnotationError)) throw error;
          expect(names).toContain(error.annotation);
          expect(error.value).toBe(given[error.annotation]);
          refused++;
        }
      }),
      { numRuns: 5000 },
    );
    // Both outcomes occur, so the property exercised valid and invalid values alike.
    expect(planned).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(100);
  });

  it('accepts every valid port list and range list it is given', () => {
    const portList = fc.array(fc.integer({ min: 1, max: 65535 }), { minLength: 1, maxLength: 20 });
    const v4 = fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 })).map(([ip, p]) => `${ip}/${p}`);
    const v6 = fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 })).map(([ip, p]) => `${ip}/${p}`);
    fc.assert(
      fc.property(portList, portList, fc.array(fc.oneof(v4, v6), { minLength: 1, maxLength: 10 }), (inPorts, outPorts, ranges) => {
        const result = plan({ [A.inInclude]: inPorts.join(','), [A.outExcludePorts]: outPorts.join(','), [A.outExcludeRanges]: ranges.join(',') });
        assertValidPlan(result);
        expect(result.inbound.includePorts).toEqual([...new Set(inPorts)].sort((a, b) => a - b));
        expect(result.outbound.excludeCidrs.ipv4.length + result.outbound.excludeCidrs.ipv6.length).toBeGreaterThan(0);
      }),
      { numRuns: 2000 },
    );
  });
});
