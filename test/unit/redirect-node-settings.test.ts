// One set of node settings: the operator CLI reads the redirect settings from the same
// environment and flags as the agent, and both make the same engine node config from them.
import { describe, expect, it } from 'vitest';
import { ConfigError, nodeRedirectConfig, parseConfig, parseRedirectSettings } from '../../controller/src/agent/config.ts';
import { DEFAULT_NODE_CONFIG, NodeConfigError } from '../../controller/src/redirect/index.ts';

const env = {
  NODE_NAME: 'node-a',
  PNC_CAPTURE_DNS: 'true',
  PNC_FAMILIES: 'ipv4',
  PNC_EXCLUDE_INBOUND_PORTS: '22',
  PNC_EXCLUDE_OUTBOUND_PORTS: '6379,53',
  PNC_EXCLUDE_OUTBOUND_CIDRS: '192.0.2.0/24',
  PNC_IPTABLES_MODE: 'legacy',
  PNC_IPTABLES_LOCK_TIMEOUT: '7',
};

describe('parseRedirectSettings', () => {
  it('gives the node config the agent gives, from the environment or from flags', () => {
    const agent = nodeRedirectConfig(parseConfig(env, []));
    expect(agent).toEqual({
      ...DEFAULT_NODE_CONFIG,
      captureDns: true,
      families: ['ipv4'],
      excludeInboundPorts: [22],
      excludeOutboundPorts: [6379, 53],
      excludeOutboundCidrs: ['192.0.2.0/24'],
    });
    expect(nodeRedirectConfig(parseRedirectSettings(env, []))).toEqual(agent);
    const flags = [
      '--capture-dns',
      '--families',
      'ipv4',
      '--exclude-inbound-ports=22',
      '--exclude-outbound-ports',
      '6379,53',
      '--exclude-outbound-cidrs',
      '192.0.2.0/24',
    ];
    expect(nodeRedirectConfig(parseRedirectSettings({}, flags))).toEqual(agent);
    expect(parseRedirectSettings(env, [])).toMatchObject({ iptablesMode: 'legacy', iptablesLockTimeout: 7, proxyContainer: 'istio-proxy' });
  });

  it('needs no NODE_NAME, refuses flags that do not shape rules, and bad values as the agent does', () => {
    expect(parseRedirectSettings({}, []).families).toEqual(['ipv4', 'ipv6']);
    expect(() => parseRedirectSettings({}, ['--concurrency', '3'])).toThrow(ConfigError);
    expect(() => parseRedirectSettings({ PNC_CAPTURE_DNS: 'yes' }, [])).toThrow(/PNC_CAPTURE_DNS="yes"/);
    expect(() => parseRedirectSettings({}, ['--exclude-outbound-cidrs', '10.0.0.0/33'])).toThrow(/PNC_EXCLUDE_OUTBOUND_CIDRS/);
  });

  it('validates the node config where it is built: a CIDR of a family the node does not redirect is refused', () => {
    const settings = parseRedirectSettings({ PNC_FAMILIES: 'ipv6', PNC_EXCLUDE_OUTBOUND_CIDRS: '192.0.2.0/24' }, []);
    expect(() => nodeRedirectConfig(settings)).toThrow(NodeConfigError);
    expect(() => nodeRedirectConfig(settings)).toThrow(/excludeOutboundCidrs="192.0.2.0\/24"/);
  });
});
