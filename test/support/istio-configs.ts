// The pod configurations of the differential test against Istio (test/netns/istio-differential.test.ts),
// and the pod it runs them in, shared with the tests that must hold for every one of them
// (the init-waiter's choice of a probe target, test/unit/waiter-probe-target.test.ts).
import { DEFAULT_NODE_CONFIG, validateNodeConfig, type NodeRedirectConfig, type ValidatedNodeConfig } from '../../controller/src/redirect/index.ts';

export const ISTIO_DEFAULT = { uid: 1337, gid: 1337 };
// Istio's injector on OpenShift: the top of the namespace's uid-range (and, with istio-cni,
// the runAsGroup from supplemental-groups, which may differ).
export const OPENSHIFT_SAME = { uid: 1000659999, gid: 1000659999 };
export const OPENSHIFT_SPLIT = { uid: 1000659999, gid: 1000650000 };

// Two links, as a pod with a secondary network: eth0 and net1 (the one excludeInterfaces names).
// The peer also holds two more hosts (ranges A and B) routed through eth0.
export const RANGE_A = { ipv4: '198.51.100.0/25', ipv6: '2001:db8:1::/64' };
export const RANGE_B = { ipv4: '198.51.100.128/25', ipv6: '2001:db8:2::/64' };
export const HOSTS = {
  ipv4: {
    pod: '192.0.2.1',
    peer: '192.0.2.2',
    rangeA: '198.51.100.2',
    rangeB: '198.51.100.200',
    net1Pod: '203.0.113.1',
    net1Peer: '203.0.113.2',
    loopback: '127.0.0.1',
    passthrough: '127.0.0.6',
  },
  ipv6: {
    pod: '2001:db8::1',
    peer: '2001:db8::2',
    rangeA: '2001:db8:1::2',
    rangeB: '2001:db8:2::2',
    net1Pod: '2001:db8:3::1',
    net1Peer: '2001:db8:3::2',
    loopback: '::1',
    passthrough: '::6',
  },
} as const;
export const EXTRA_LOOPBACK = '127.1.2.3';

/** The pod's two links and their addresses (an IPv6-only pod has no IPv4 ones); lo besides. */
export function podLinks(withIpv4: boolean): { ifname: string; addresses: string[] }[] {
  const v4 = (addresses: string[]) => (withIpv4 ? addresses : []);
  return [
    { ifname: 'eth0', addresses: [...v4(['192.0.2.1/24']), '2001:db8::1/64'] },
    { ifname: 'net1', addresses: [...v4(['203.0.113.1/24']), '2001:db8:3::1/64'] },
  ];
}

export interface Config {
  name: string;
  /** ISTIO_DUAL_STACK for Istio; our node programs IPv4 only without it (except for IPv6-only pods). */
  dualStack: boolean;
  /** The pod has IPv6 addresses only: Istio then programs both families without ISTIO_DUAL_STACK. */
  ipv6Only?: boolean;
  /** Our node's families, when not the ones the pod's addresses imply. */
  nodeFamilies?: NodeRedirectConfig['families'];
  annotations?: Record<string, string>;
  proxy?: { uid: number; gid: number };
  /** DNS capture from the node's setting, or from the pod's proxy.istio.io/config. */
  dns?: 'node' | 'pod';
  /** Node-wide exclusions (Istio: the mesh-wide values.global.proxy defaults). */
  node?: Pick<NodeRedirectConfig, 'excludeInboundPorts' | 'excludeOutboundPorts' | 'excludeOutboundCidrs'>;
}

export const both = (range: { ipv4: string; ipv6: string }) => `${range.ipv4},${range.ipv6}`;
export const T = 'traffic.sidecar.istio.io';

export const CONFIGS: Config[] = [
  { name: 'defaults, IPv4 only', dualStack: false },
  { name: 'defaults, dual-stack', dualStack: true },
  { name: 'defaults, IPv6-only pod', dualStack: false, ipv6Only: true },
  { name: 'IPv6-only pod on a node that programs IPv6 only', dualStack: false, ipv6Only: true, nodeFamilies: ['ipv6'] },
  {
    name: 'DNS capture and exclusions, IPv6-only pod',
    dualStack: false,
    ipv6Only: true,
    dns: 'node',
    annotations: { [`${T}/excludeOutboundIPRanges`]: RANGE_A.ipv6, [`${T}/excludeOutboundPorts`]: '5432' },
  },
  // A list captures the listed 15020/15021 (exclusions apply only to "*"), but never 15008.
  { name: 'includeInboundPorts list', dualStack: true, annotations: { [`${T}/includeInboundPorts`]: '8080,15008,15020,15021' } },
  { name: 'includeInboundPorts empty', dualStack: true, annotations: { [`${T}/includeInboundPorts`]: '' } },
  { name: 'excludeInboundPorts', dualStack: true, annotations: { [`${T}/excludeInboundPorts`]: '9090' } },
  {
    name: 'includeInboundPorts list and excludeInboundPorts naming a listed port',
    dualStack: true,
    annotations: { [`${T}/includeInboundPorts`]: '8080,9090', [`${T}/excludeInboundPorts`]: '9090' },
  },
  { name: 'status port moved', dualStack: true, annotations: { 'status.sidecar.istio.io/port': '15030' } },
  { name: 'includeOutboundIPRanges', dualStack: true, annotations: { [`${T}/includeOutboundIPRanges`]: both(RANGE_A) } },
  { name: 'includeOutboundIPRanges as explicit all-ranges', dualStack: true, annotations: { [`${T}/includeOutboundIPRanges`]: '0.0.0.0/0,::/0' } },
  { name: 'includeOutboundIPRanges empty', dualStack: true, annotations: { [`${T}/includeOutboundIPRanges`]: '' } },
  { name: 'excludeOutboundIPRanges, IPv4 only', dualStack: false, annotations: { [`${T}/excludeOutboundIPRanges`]: RANGE_A.ipv4 } },
  // The injector's lists name both families; an IPv4-only node drops the IPv6 ranges, which must change nothing.
  { name: 'excludeOutboundIPRanges of both families, IPv4 only', dualStack: false, annotations: { [`${T}/excludeOutboundIPRanges`]: both(RANGE_A) } },
  { name: 'excludeOutboundIPRanges', dualStack: true, annotations: { [`${T}/excludeOutboundIPRanges`]: both(RANGE_A) } },
  {
    name: "excludeOutboundIPRanges naming the pod's own addresses",
    dualStack: true,
    annotations: { [`${T}/excludeOutboundIPRanges`]: '192.0.2.1/32,2001:db8::1/128' },
  },
  {
    name: 'includeOutboundIPRanges and excludeOutboundIPRanges',
    dualStack: true,
    annotations: { [`${T}/includeOutboundIPRanges`]: `198.51.100.0/24,2001:db8::/32`, [`${T}/excludeOutboundIPRanges`]: both(RANGE_B) },
  },
  {
    name: 'loopback range in includeOutboundIPRanges',
    dualStack: true,
    annotations: { [`${T}/includeOutboundIPRanges`]: `${EXTRA_LOOPBACK}/32,${both(RANGE_A)}` },
  },
  { name: 'includeOutboundPorts', dualStack: true, annotations: { [`${T}/includeOutboundPorts`]: '443' } },
  {
    name: 'includeOutboundPorts without ranges',
    dualStack: true,
    annotations: { [`${T}/includeOutboundIPRanges`]: '', [`${T}/includeOutboundPorts`]: '443,5432' },
  },
  { name: 'excludeOutboundPorts', dualStack: true, annotations: { [`${T}/excludeOutboundPorts`]: '5432,443' } },
  {
    name: 'includeOutboundPorts and excludeOutboundPorts naming the same port',
    dualStack: true,
    annotations: { [`${T}/includeOutboundIPRanges`]: '', [`${T}/includeOutboundPorts`]: '443,5432', [`${T}/excludeOutboundPorts`]: '5432' },
  },
  { name: 'excludeInterfaces', dualStack: true, annotations: { [`${T}/excludeInterfaces`]: 'net1' } },
  { name: 'excludeInterfaces naming every interface', dualStack: true, annotations: { [`${T}/excludeInterfaces`]: 'eth0,net1' } },
  { name: 'DNS capture, IPv4 only', dualStack: false, dns: 'node' },
  { name: 'DNS capture, dual-stack', dualStack: true, dns: 'node' },
  { name: 'DNS capture with excludeOutboundPorts 53', dualStack: true, dns: 'node', annotations: { [`${T}/excludeOutboundPorts`]: '53' } },
  {
    name: 'DNS capture from the pod proxy config',
    dualStack: true,
    dns: 'pod',
    annotations: { 'proxy.istio.io/config': 'proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: "true"\n' },
  },
  { name: 'OpenShift proxy UID, IPv4 only', dualStack: false, proxy: OPENSHIFT_SAME },
  { name: 'OpenShift proxy UID and GID, dual-stack, DNS capture', dualStack: true, proxy: OPENSHIFT_SPLIT, dns: 'node' },
  {
    name: 'node-wide exclusions',
    dualStack: true,
    node: { excludeInboundPorts: [9091], excludeOutboundPorts: [5432], excludeOutboundCidrs: [RANGE_B.ipv4, RANGE_B.ipv6] },
  },
  {
    name: 'node-wide inbound exclusion and an includeInboundPorts list',
    dualStack: true,
    node: { excludeInboundPorts: [8080], excludeOutboundPorts: [], excludeOutboundCidrs: [] },
    annotations: { [`${T}/includeInboundPorts`]: '8080,9090' },
  },
  {
    name: 'node-wide and pod exclusions together',
    dualStack: true,
    node: { excludeInboundPorts: [], excludeOutboundPorts: [], excludeOutboundCidrs: [RANGE_B.ipv4, RANGE_B.ipv6] },
    annotations: { [`${T}/excludeOutboundIPRanges`]: both(RANGE_A) },
  },
  {
    name: 'everything combined',
    dualStack: true,
    proxy: OPENSHIFT_SPLIT,
    dns: 'node',
    annotations: {
      [`${T}/includeInboundPorts`]: '8080,9091,15020',
      [`${T}/excludeInboundPorts`]: '9090',
      [`${T}/includeOutboundIPRanges`]: `${both(RANGE_A)},${both(RANGE_B)}`,
      [`${T}/excludeOutboundIPRanges`]: '198.51.100.200/32',
      [`${T}/includeOutboundPorts`]: '443',
      [`${T}/excludeOutboundPorts`]: '5432,53',
      [`${T}/excludeInterfaces`]: 'net1',
    },
  },
];

export function nodeConfigOf(config: Config): ValidatedNodeConfig {
  const proxy = config.proxy ?? ISTIO_DEFAULT;
  return validateNodeConfig({
    ...DEFAULT_NODE_CONFIG,
    proxyUid: proxy.uid,
    proxyGid: proxy.gid,
    captureDns: config.dns === 'node',
    families: config.nodeFamilies ?? (config.dualStack || config.ipv6Only ? ['ipv4', 'ipv6'] : ['ipv4']),
    ...config.node,
  });
}

export const podOf = (config: Config) => ({
  metadata: { namespace: 'differential', name: config.name.replace(/[^a-z0-9]+/gi, '-').toLowerCase(), annotations: config.annotations ?? {} },
});
