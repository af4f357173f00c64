// renderPlan output for interesting plans, compared with reviewed files in test/golden/redirect.
// UPDATE_GOLDEN=1 rewrites them (review the git diff before committing).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_NODE_CONFIG, planFromPod, renderPlan, validateNodeConfig, type NodeRedirectConfig } from '../../controller/src/redirect/index.ts';

const GOLDEN_DIR = join(import.meta.dirname, '..', 'golden', 'redirect');

const cases: { name: string; annotations: Record<string, string>; config?: Partial<NodeRedirectConfig> }[] = [
  { name: 'default', annotations: {} },
  { name: 'include-inbound-list', annotations: { 'traffic.sidecar.istio.io/includeInboundPorts': '8080, 9443,80' } },
  {
    name: 'excluded-cidrs-and-ports',
    annotations: {
      'traffic.sidecar.istio.io/excludeInboundPorts': '22,9090',
      'traffic.sidecar.istio.io/excludeOutboundPorts': '5432,3306',
      'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.96.0.0/12,169.254.169.254,fd00:10:96::/112',
    },
    config: { excludeOutboundCidrs: ['192.0.2.0/24'], excludeOutboundPorts: [6379] },
  },
  {
    name: 'include-outbound-ranges-and-ports',
    annotations: {
      'traffic.sidecar.istio.io/includeOutboundIPRanges': '10.0.0.0/8,2001:db8::/32',
      'traffic.sidecar.istio.io/includeOutboundPorts': '443',
    },
  },
  { name: 'no-inbound-capture', annotations: { 'traffic.sidecar.istio.io/includeInboundPorts': '' } },
  { name: 'ipv6-only', annotations: { 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '2001:db8:0:0::1/64' }, config: { families: ['ipv6'] } },
  { name: 'dns-capture', annotations: {}, config: { captureDns: true } },
  {
    name: 'dns-capture-per-pod-exclude-53',
    annotations: {
      'proxy.istio.io/config': 'proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: "true"\n',
      'traffic.sidecar.istio.io/excludeOutboundPorts': '53',
    },
    config: { families: ['ipv4'] },
  },
  {
    name: 'include-inbound-list-ignores-exclusions',
    annotations: { 'traffic.sidecar.istio.io/includeInboundPorts': '8080,15020', 'traffic.sidecar.istio.io/excludeInboundPorts': '8080' },
    config: { families: ['ipv4'] },
  },
  { name: 'include-loopback-range', annotations: { 'traffic.sidecar.istio.io/includeOutboundIPRanges': '127.1.2.3/32,2001:db8::/32' } },
  { name: 'status-port', annotations: { 'status.sidecar.istio.io/port': '15999' }, config: { families: ['ipv4'] } },
  { name: 'openshift-proxy-identity', annotations: {}, config: { proxyUid: 1000659999, proxyGid: 1000650000, captureDns: true } },
  { name: 'exclude-interfaces', annotations: { 'traffic.sidecar.istio.io/excludeInterfaces': 'net1, eth1.100' } },
];

describe('renderPlan golden files', () => {
  it.each(cases)('$name', ({ name, annotations, config }) => {
    const plan = planFromPod({ metadata: { namespace: 'golden', name, annotations } }, validateNodeConfig({ ...DEFAULT_NODE_CONFIG, ...config }));
    const rendered = renderPlan(plan);
    expect(Object.keys(rendered)).toEqual(plan.families);
    for (const [family, payload] of Object.entries(rendered)) {
      const file = join(GOLDEN_DIR, `${name}.${family}.rules`);
      if (process.env.UPDATE_GOLDEN === '1') {
        mkdirSync(GOLDEN_DIR, { recursive: true });
        writeFileSync(file, payload);
      }
      expect(payload).toBe(readFileSync(file, 'utf8'));
    }
  });
});
