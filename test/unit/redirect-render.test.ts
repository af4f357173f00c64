// Properties of renderPlan and rulesHash over many plans (the golden files pin exact text).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_NODE_CONFIG, planFromPod, renderPlan, rulesHash, validateNodeConfig } from '../../controller/src/redirect/index.ts';

const v4 = fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 })).map(([ip, prefix]) => `${ip}/${prefix}`);
const v6 = fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 })).map(([ip, prefix]) => `${ip}/${prefix}`);
const ports = fc.array(fc.integer({ min: 1, max: 65535 }), { maxLength: 5 }).map((list) => list.join(','));
const annotations = fc.record(
  {
    'traffic.sidecar.istio.io/includeInboundPorts': fc.oneof(fc.constant('*'), ports),
    'traffic.sidecar.istio.io/excludeOutboundIPRanges': fc.array(fc.oneof(v4, v6), { maxLength: 5 }).map((list) => list.join(',')),
    'traffic.sidecar.istio.io/includeOutboundPorts': ports,
    'traffic.sidecar.istio.io/excludeOutboundPorts': ports,
  },
  { requiredKeys: [] },
);

describe('renderPlan', () => {
  it('keeps each family in its own payload, with exactly our two jumps and only our chains', () => {
    fc.assert(
      fc.property(annotations, fc.boolean(), (given, captureDns) => {
        const rendered = renderPlan(
          planFromPod({ metadata: { name: 'p', namespace: 'n', annotations: given } }, validateNodeConfig({ ...DEFAULT_NODE_CONFIG, captureDns })),
        );
        for (const [family, payload] of Object.entries(rendered)) {
          const [nat, raw = ''] = payload.split('*raw\n');
          const rules = nat!.split('\n').filter((line) => line.startsWith('-A '));
          expect(rules.filter((rule) => / -j ISTIO_(INBOUND|OUTPUT)$/.test(rule) && /^-A (PREROUTING|OUTPUT) /.test(rule))).toHaveLength(2);
          for (const rule of rules)
            expect(rule).toMatch(/^-A (PREROUTING|OUTPUT|ISTIO_INBOUND|ISTIO_IN_REDIRECT|ISTIO_OUTPUT|ISTIO_REDIRECT|ISTIO_OUTPUT_DNS) /);
          expect(rules.some((rule) => rule.startsWith('-A ISTIO_OUTPUT_DNS '))).toBe(captureDns);
          // raw only with DNS capture, and only conntrack zones for UDP DNS
          const rawRules = raw.split('\n').filter((line) => line.startsWith('-A '));
          expect(rawRules.length > 0).toBe(captureDns);
          for (const rule of rawRules)
            expect(rule).toMatch(/^-A (PREROUTING|OUTPUT|ISTIO_INBOUND|ISTIO_OUTPUT_DNS) -p udp .*-j (CT --zone [12]|ISTIO_INBOUND|ISTIO_OUTPUT_DNS)$/);
          const addresses = payload.match(/-[sd] \S+/g) ?? [];
          for (const address of addresses) expect(address.includes(':')).toBe(family === 'ipv6');
          expect(payload.startsWith('*nat\n') && payload.endsWith('COMMIT\n')).toBe(true);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('rulesHash', () => {
  const base = renderPlan(planFromPod({ metadata: { name: 'p' } }));

  it('is 16 hex chars, stable, and independent of pod identity', () => {
    expect(rulesHash(base)).toMatch(/^[0-9a-f]{16}$/);
    expect(rulesHash(renderPlan(planFromPod({ metadata: { name: 'other', namespace: 'x' } })))).toBe(rulesHash(base));
  });

  it('changes when any rule or the set of families changes', () => {
    const changed = renderPlan(planFromPod({ metadata: { name: 'p', annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '5432' } } }));
    expect(rulesHash(changed)).not.toBe(rulesHash(base));
    expect(rulesHash({ ipv4: base.ipv4 })).not.toBe(rulesHash(base));
    expect(rulesHash({ ipv6: base.ipv4 })).not.toBe(rulesHash({ ipv4: base.ipv4 }));
  });
});
