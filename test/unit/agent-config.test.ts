import { describe, expect, it } from 'vitest';
import { RUNTIME_DEFAULT_CAPABILITIES } from '../../controller/src/agent/bypass-audit.ts';
import { ConfigError, flagName, parseConfig } from '../../controller/src/agent/config.ts';

const base = { NODE_NAME: 'node-a' };

function configError(env: Record<string, string>, args: string[] = []): ConfigError {
  try {
    parseConfig(env, args);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('agent config', () => {
  it('applies the documented defaults', () => {
    const config = parseConfig(base, []);
    expect(config).toMatchObject({
      nodeName: 'node-a',
      podNamespace: '',
      proxyContainer: 'istio-proxy',
      waiterContainer: 'pnc-init-waiter',
      allowProxyUidApps: false,
      bypassPolicy: 'audit',
      iptablesMode: 'auto',
      iptablesLockTimeout: 10,
      httpPort: 9102,
      httpAddress: '',
      concurrency: 4,
      procRoot: '/proc',
      families: ['ipv4', 'ipv6'],
      captureDns: false,
      excludeInboundPorts: [],
      excludeOutboundPorts: [],
      excludeOutboundCidrs: [],
      logLevel: 'info',
    });
    expect([...config.excludedNamespaces]).toEqual(['kube-system']);
    expect([...config.runtimeDefaultCapabilities]).toEqual([...RUNTIME_DEFAULT_CAPABILITIES]);
    expect(config.runtimeDefaultCapabilities.has('SETUID')).toBe(true);
  });

  it("reads the bypass policy and the runtime's default capabilities (any case, with or without CAP_, or none)", () => {
    expect(parseConfig({ ...base, PNC_BYPASS_POLICY: 'strict' }, []).bypassPolicy).toBe('strict');
    expect(parseConfig(base, ['--bypass-policy', 'strict']).bypassPolicy).toBe('strict');
    const crio = parseConfig({ ...base, PNC_RUNTIME_DEFAULT_CAPABILITIES: 'chown, CAP_SETUID,setgid' }, []);
    expect([...crio.runtimeDefaultCapabilities]).toEqual(['CHOWN', 'SETUID', 'SETGID']);
    expect(parseConfig(base, ['--runtime-default-capabilities=none']).runtimeDefaultCapabilities.size).toBe(0);
  });

  it('takes its own pod UID from the downward API, and runs without one', () => {
    expect(parseConfig({ ...base, POD_UID: '0f2c9a4e-5b7d-4c1e-9a3b-6d8e2f1a4c7b' }, []).podUid).toBe('0f2c9a4e-5b7d-4c1e-9a3b-6d8e2f1a4c7b');
    expect(parseConfig(base, []).podUid).toBe('');
  });

  it('always excludes its own namespace', () => {
    const config = parseConfig({ ...base, POD_NAMESPACE: 'pnc', PNC_EXCLUDED_NAMESPACES: 'a,b' }, []);
    expect([...config.excludedNamespaces].sort()).toEqual(['a', 'b', 'pnc']);
  });

  it('lets flags win over the environment, in both spellings', () => {
    const config = parseConfig({ ...base, PNC_CONCURRENCY: '2', PNC_HTTP_PORT: '1' }, ['--concurrency', '8', '--http-port=0', '--node-name', 'node-b']);
    expect(config.concurrency).toBe(8);
    expect(config.httpPort).toBe(0);
    expect(config.nodeName).toBe('node-b');
  });

  it('reads a bare boolean flag as true and an explicit value as given', () => {
    expect(parseConfig(base, ['--allow-proxy-uid-apps']).allowProxyUidApps).toBe(true);
    expect(parseConfig(base, ['--capture-dns', '--concurrency', '3']).captureDns).toBe(true);
    expect(parseConfig({ ...base, PNC_CAPTURE_DNS: 'true' }, ['--capture-dns=false']).captureDns).toBe(false);
    expect(parseConfig({ ...base, PNC_CAPTURE_DNS: 'true' }, ['--capture-dns', 'false']).captureDns).toBe(false);
  });

  it('parses lists of ports and CIDRs, completing a bare address to a host prefix', () => {
    const config = parseConfig(
      {
        ...base,
        PNC_EXCLUDE_INBOUND_PORTS: '22, 8080',
        PNC_EXCLUDE_OUTBOUND_PORTS: '443',
        PNC_EXCLUDE_OUTBOUND_CIDRS: '192.0.2.0/24,2001:db8::1',
        PNC_FAMILIES: 'ipv6',
      },
      [],
    );
    expect(config.excludeInboundPorts).toEqual([22, 8080]);
    expect(config.excludeOutboundPorts).toEqual([443]);
    expect(config.excludeOutboundCidrs).toEqual(['192.0.2.0/24', '2001:db8::1/128']);
    expect(config.families).toEqual(['ipv6']);
  });

  it.each([
    [{ NODE_NAME: '' }, 'NODE_NAME', ''],
    [{ NODE_NAME: 'Bad_Node' }, 'NODE_NAME', 'Bad_Node'],
    [{ ...base, POD_UID: 'my-pod' }, 'POD_UID', 'my-pod'],
    [{ ...base, POD_UID: '0F2C9A4E-5B7D-4C1E-9A3B-6D8E2F1A4C7B' }, 'POD_UID', '0F2C9A4E-5B7D-4C1E-9A3B-6D8E2F1A4C7B'],
    [{ ...base, PNC_CONCURRENCY: '0' }, 'PNC_CONCURRENCY', '0'],
    [{ ...base, PNC_CONCURRENCY: 'four' }, 'PNC_CONCURRENCY', 'four'],
    [{ ...base, PNC_HTTP_PORT: '65536' }, 'PNC_HTTP_PORT', '65536'],
    [{ ...base, PNC_HTTP_ADDRESS: 'localhost' }, 'PNC_HTTP_ADDRESS', 'localhost'],
    [{ ...base, PNC_IPTABLES_MODE: 'nftables' }, 'PNC_IPTABLES_MODE', 'nftables'],
    [{ ...base, PNC_ALLOW_PROXY_UID_APPS: 'yes' }, 'PNC_ALLOW_PROXY_UID_APPS', 'yes'],
    [{ ...base, PNC_BYPASS_POLICY: 'warn' }, 'PNC_BYPASS_POLICY', 'warn'],
    [{ ...base, PNC_RUNTIME_DEFAULT_CAPABILITIES: 'SETUID,NET_RAWW' }, 'PNC_RUNTIME_DEFAULT_CAPABILITIES', 'SETUID,NET_RAWW'],
    [{ ...base, PNC_RUNTIME_DEFAULT_CAPABILITIES: '' }, 'PNC_RUNTIME_DEFAULT_CAPABILITIES', ''],
    [{ ...base, PNC_FAMILIES: 'ipv4,ipv5' }, 'PNC_FAMILIES', 'ipv4,ipv5'],
    [{ ...base, PNC_FAMILIES: 'ipv4,ipv4' }, 'PNC_FAMILIES', 'ipv4,ipv4'],
    [{ ...base, PNC_EXCLUDE_INBOUND_PORTS: '22,0' }, 'PNC_EXCLUDE_INBOUND_PORTS', '0'],
    [{ ...base, PNC_EXCLUDE_OUTBOUND_PORTS: '80,' }, 'PNC_EXCLUDE_OUTBOUND_PORTS', ''],
    [{ ...base, PNC_EXCLUDE_OUTBOUND_CIDRS: '192.0.2.0/33' }, 'PNC_EXCLUDE_OUTBOUND_CIDRS', '192.0.2.0/33'],
    [{ ...base, PNC_EXCLUDE_OUTBOUND_CIDRS: '2001:db8::/129' }, 'PNC_EXCLUDE_OUTBOUND_CIDRS', '2001:db8::/129'],
    [{ ...base, PNC_EXCLUDE_OUTBOUND_CIDRS: '300.0.0.0/8' }, 'PNC_EXCLUDE_OUTBOUND_CIDRS', '300.0.0.0/8'],
    [{ ...base, PNC_EXCLUDED_NAMESPACES: 'Kube_System' }, 'PNC_EXCLUDED_NAMESPACES', 'Kube_System'],
    [{ ...base, PNC_PROXY_CONTAINER: 'istio proxy' }, 'PNC_PROXY_CONTAINER', 'istio proxy'],
    [{ ...base, PNC_PROC_ROOT: 'proc' }, 'PNC_PROC_ROOT', 'proc'],
    [{ ...base, LOG_LEVEL: 'verbose' }, 'LOG_LEVEL', 'verbose'],
  ])('refuses %j naming %s and the value', (env, variable, value) => {
    const error = configError(env as Record<string, string>);
    expect(error.variable).toBe(variable);
    expect(error.value).toBe(value);
    expect(error.message).toContain(variable);
    expect(error.message).toContain(JSON.stringify(value));
  });

  it('refuses unknown flags and flags without a value', () => {
    expect(configError(base, ['--nodename', 'x']).value).toBe('--nodename');
    expect(configError(base, ['--concurrency']).variable).toBe('--concurrency');
    expect(configError(base, ['--nodename=x']).value).toBe('--nodename=x');
    expect(configError(base, ['stray']).value).toBe('stray');
  });

  it('derives flag names from the variables', () => {
    expect(flagName('NODE_NAME')).toBe('--node-name');
    expect(flagName('PNC_EXCLUDE_OUTBOUND_CIDRS')).toBe('--exclude-outbound-cidrs');
    expect(flagName('LOG_LEVEL')).toBe('--log-level');
  });
});
