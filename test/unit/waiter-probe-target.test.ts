import { describe, expect, it } from 'vitest';
import { hasGlobalIpv6 } from '../../init-waiter/src/pod-addresses.ts';
import { chooseProbeTarget, ProbeTargetError } from '../../init-waiter/src/probe-target.ts';

const choose = (annotations: Record<string, string>, family: 'ipv4' | 'ipv6' = 'ipv4', address = family === 'ipv4' ? '192.0.2.2' : '2001:db8::2') =>
  chooseProbeTarget(new Map(Object.entries(annotations)), family, address, 9);

describe('chooseProbeTarget', () => {
  it('dials the preferred port when the pod captures everything (no annotations)', () => {
    expect(choose({})).toEqual({ family: 'ipv4', address: '192.0.2.2', port: 9 });
    expect(choose({}, 'ipv6')).toEqual({ family: 'ipv6', address: '2001:db8::2', port: 9 });
  });

  it('moves past excluded outbound ports', () => {
    expect(choose({ 'traffic.sidecar.istio.io/excludeOutboundPorts': '9, 10,12' })).toMatchObject({ port: 11 });
  });

  it('uses an included port when the CIDRs do not cover the probe address', () => {
    const annotations = {
      'traffic.sidecar.istio.io/includeOutboundIPRanges': '10.0.0.0/8',
      'traffic.sidecar.istio.io/includeOutboundPorts': '443,8080',
      'traffic.sidecar.istio.io/excludeOutboundPorts': '443',
    };
    expect(choose(annotations)).toEqual({ family: 'ipv4', address: '192.0.2.2', port: 8080 });
  });

  it('accepts an include list that covers the probe, per family', () => {
    const annotations = { 'traffic.sidecar.istio.io/includeOutboundIPRanges': '10.0.0.0/8,192.0.2.0/24,2001:db8::/32' };
    expect(choose(annotations)).toMatchObject({ port: 9 });
    expect(choose(annotations, 'ipv6')).toMatchObject({ port: 9 });
    expect(choose({ 'traffic.sidecar.istio.io/includeOutboundIPRanges': '*' })).toMatchObject({ port: 9 });
  });

  it('has nothing to prove for a family the pod captures nothing of', () => {
    expect(choose({ 'traffic.sidecar.istio.io/includeOutboundIPRanges': '10.0.0.0/8' }, 'ipv6')).toBeUndefined();
    expect(choose({ 'traffic.sidecar.istio.io/includeOutboundIPRanges': '' })).toBeUndefined();
  });

  it('refuses, naming annotation and value, when the probe address is excluded', () => {
    const annotations = { 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '192.0.2.0/25' };
    expect(() => choose(annotations)).toThrow(ProbeTargetError);
    expect(() => choose(annotations)).toThrow(
      'probe address 192.0.2.2 is in traffic.sidecar.istio.io/excludeOutboundIPRanges="192.0.2.0/25"; set --probe-address',
    );
    // An exclusion of the other family does not matter.
    expect(choose(annotations, 'ipv6')).toMatchObject({ port: 9 });
  });

  it('refuses when the family is captured but not at the probe address', () => {
    expect(() => choose({ 'traffic.sidecar.istio.io/includeOutboundIPRanges': '10.0.0.0/8' })).toThrow(
      'probe address 192.0.2.2 is not captured under traffic.sidecar.istio.io/includeOutboundIPRanges="10.0.0.0/8"',
    );
    expect(choose({ 'traffic.sidecar.istio.io/includeOutboundIPRanges': '10.0.0.0/8' }, 'ipv4', '10.9.9.9')).toMatchObject({ address: '10.9.9.9' });
  });

  it.each([
    ['traffic.sidecar.istio.io/excludeOutboundPorts', '9,http', '"http" is not a port'],
    ['traffic.sidecar.istio.io/excludeOutboundIPRanges', '192.0.2.0/33', '"192.0.2.0/33" has an invalid prefix length'],
    ['traffic.sidecar.istio.io/includeOutboundIPRanges', 'nonsense', '"nonsense" is not an IPv4 address'],
  ])('names a bad %s value', (key, value, message) => {
    expect(() => choose({ [key]: value })).toThrow(`${key}=${JSON.stringify(value)}: ${message}`);
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
