// Sandbox addressing: every slot's pod and peer addresses are distinct, canonical and inside the documentation ranges.
import { isIPv4, isIPv6 } from 'node:net';
import { describe, expect, it } from 'vitest';
import { sandboxAddresses } from '../../hack/lib/pod-sandbox.ts';

const slots = Array.from({ length: 256 }, (_, slot) => sandboxAddresses(slot));

describe('sandboxAddresses', () => {
  it('gives all 256 slots distinct addresses', () => {
    const all = slots.flatMap(({ pod, peer }) => [pod.ipv4, pod.ipv6, peer.ipv4, peer.ipv6]);
    expect(new Set(all).size).toBe(256 * 4);
  });

  it('stays inside 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32, with pod and peer in one /31', () => {
    for (const { pod, peer } of slots) {
      expect(isIPv4(pod.ipv4) && isIPv4(peer.ipv4)).toBe(true);
      expect(pod.ipv4).toMatch(/^(198\.51\.100|203\.0\.113)\.\d+$/);
      const [podLast, peerLast] = [pod.ipv4, peer.ipv4].map((ip) => Number(ip.split('.')[3]));
      expect(peerLast! % 2).toBe(0);
      expect(podLast).toBe(peerLast! + 1);
      expect(isIPv6(pod.ipv6) && isIPv6(peer.ipv6)).toBe(true);
      expect(pod.ipv6.startsWith('2001:db8:')).toBe(true);
    }
  });

  it('writes IPv6 in canonical form, as the apiserver expects', () => {
    expect(sandboxAddresses(0).pod.ipv6).toBe('2001:db8:5ad::2');
    expect(sandboxAddresses(255).peer.ipv6).toBe('2001:db8:5ad:ff::1');
  });

  it('rejects slots outside 0..255', () => {
    expect(() => sandboxAddresses(256)).toThrow(RangeError);
    expect(() => sandboxAddresses(-1)).toThrow(RangeError);
  });
});
