// The differential test gives Istio's istio-iptables the arguments Istio's injection template
// writes for istio-init; these pin that mapping (defaults, the status port, optional flags).
import { describe, expect, it } from 'vitest';
import { istioInitArgs, type IstioPodSettings } from '../support/istio-reference.ts';

const base: IstioPodSettings = { annotations: {}, dualStack: false, proxyUid: 1337, proxyGid: 1337, captureDns: false };
const flag = (args: string[], name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);

describe('istio-init arguments as the injector writes them', () => {
  it('defaults: capture everything, exclude 15090, 15021 and the status port inbound', () => {
    expect(istioInitArgs(base, 'nft')).toEqual({
      args: [
        '-p',
        '15001',
        '-z',
        '15006',
        '-u',
        '1337',
        '-m',
        'REDIRECT',
        '-i',
        '*',
        '-x',
        '',
        '-b',
        '*',
        '-d',
        '15090,15021,15020',
        '-g',
        '1337',
        '--force-iptables-binary',
        'nft',
        '--log_output_level=default:warn',
      ],
      env: {},
    });
  });

  it('the status port joins excludeInboundPorts once, and a status port of 0 adds none', () => {
    const exclude = (annotations: Record<string, string>) => flag(istioInitArgs({ ...base, annotations }, 'nft').args, '-d');
    expect(exclude({ 'traffic.sidecar.istio.io/excludeInboundPorts': '9090' })).toBe('15090,15021,9090,15020');
    expect(exclude({ 'traffic.sidecar.istio.io/excludeInboundPorts': '15020,9090' })).toBe('15090,15021,15020,9090');
    expect(exclude({ 'status.sidecar.istio.io/port': '15030' })).toBe('15090,15021,15030');
    expect(exclude({ 'status.sidecar.istio.io/port': '0' })).toBe('15090,15021');
  });

  it('-q and -c only when the pod sets them (even empty); -o also from the mesh-wide default', () => {
    const args = (settings: Partial<IstioPodSettings>) => istioInitArgs({ ...base, ...settings }, 'legacy').args;
    expect(flag(args({}), '-q')).toBeUndefined();
    expect(flag(args({}), '-o')).toBeUndefined();
    expect(flag(args({}), '-c')).toBeUndefined();
    expect(flag(args({ annotations: { 'traffic.sidecar.istio.io/includeOutboundPorts': '' } }), '-q')).toBe('');
    expect(flag(args({ excludeOutboundPorts: [5432] }), '-o')).toBe('5432');
    // A pod's annotation replaces the mesh-wide value.
    expect(flag(args({ excludeOutboundPorts: [5432], annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '53' } }), '-o')).toBe('53');
    expect(flag(args({ annotations: { 'traffic.sidecar.istio.io/excludeInterfaces': 'net1' } }), '-c')).toBe('net1');
  });

  it('dual-stack through ISTIO_DUAL_STACK, DNS capture of every port-53 flow, the proxy GID', () => {
    const { args, env } = istioInitArgs({ ...base, dualStack: true, captureDns: true, proxyUid: 1000659999, proxyGid: 1000650000 }, 'nft');
    expect(env).toEqual({ ISTIO_DUAL_STACK: 'true' });
    expect(args).toEqual(expect.arrayContaining(['--redirect-dns', '--capture-all-dns']));
    expect([flag(args, '-u'), flag(args, '-g')]).toEqual(['1000659999', '1000650000']);
  });
});
