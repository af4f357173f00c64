// Proof with real traffic: two netns joined by a veth pair (documentation addresses),
// real TCP listeners and clients running as an app UID and as the proxy UID. Each
// connection's answer names the socket that accepted it, so we see where it landed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyRedirect,
  DEFAULT_NODE_CONFIG,
  planFromPod,
  removeRedirect,
  verifyRedirect,
  validateNodeConfig,
  type IptablesMode,
} from '../../controller/src/redirect/index.ts';
import {
  connectNetns,
  createNetns,
  deleteNetns,
  isRoot,
  ROOT_SKIP_MESSAGE,
  startClient,
  startListeners,
  type Listeners,
  type TcpClient,
  type TestNetns,
} from '../../hack/lib/netns.ts';
import { must } from '../../hack/lib/process.ts';

if (!isRoot) console.warn(`redirect-traffic: ${ROOT_SKIP_MESSAGE}`);

const APP_UID = 1000;
const PROXY_UID = 1337;

const pod = {
  metadata: {
    namespace: 'traffic',
    name: 'app',
    annotations: {
      'traffic.sidecar.istio.io/excludeInboundPorts': '9090',
      'traffic.sidecar.istio.io/excludeOutboundPorts': '5432',
      'traffic.sidecar.istio.io/excludeOutboundIPRanges': '198.51.100.0/24,2001:db8:1::/64',
    },
  },
};
const plan = planFromPod(pod);
const dnsPlan = planFromPod(pod, validateNodeConfig({ ...DEFAULT_NODE_CONFIG, captureDns: true }));

const ADDRESSES = {
  ipv4: { pod: '192.0.2.1', remote: '192.0.2.2', excludedRemote: '198.51.100.2', loopback: '127.0.0.1' },
  ipv6: { pod: '2001:db8::1', remote: '2001:db8::2', excludedRemote: '2001:db8:1::2', loopback: '::1' },
} as const;

describe.skipIf(!isRoot).each(['nft', 'legacy'] as IptablesMode[])('traffic through the redirect (iptables-%s)', (mode) => {
  let podNs: TestNetns | undefined;
  let remoteNs: TestNetns | undefined;
  const listeners: Listeners[] = [];
  const clients: Partial<Record<'app' | 'proxy' | 'remote', TcpClient>> = {};
  let podInterface = '';

  beforeAll(async () => {
    podNs = createNetns('pncp');
    remoteNs = createNetns('pncr');
    [podInterface] = connectNetns(
      { netns: podNs, addresses: ['192.0.2.1/24', '2001:db8::1/64'] },
      { netns: remoteNs, addresses: ['192.0.2.2/24', '2001:db8::2/64'] },
    );
    // A second, excluded destination range behind the remote host.
    must(['ip', '-n', remoteNs.name, 'addr', 'add', '198.51.100.2/32', 'dev', 'lo']);
    must(['ip', '-n', remoteNs.name, 'addr', 'add', '2001:db8:1::2/128', 'dev', 'lo', 'nodad']);
    must(['ip', '-n', podNs.name, 'route', 'add', '198.51.100.0/24', 'via', '192.0.2.2']);
    must(['ip', '-n', podNs.name, '-6', 'route', 'add', '2001:db8:1::/64', 'via', '2001:db8::2']);
    listeners.push(await startListeners(podNs.path, 'pod', [15001, 15006, 8080, 9090, 8081]));
    // The proxy's DNS server runs as the proxy: its answers belong to conntrack zone 2.
    listeners.push(await startListeners(podNs.path, 'pod', [15053, 'udp:15053'], { uid: PROXY_UID, gid: PROXY_UID }));
    listeners.push(await startListeners(remoteNs.path, 'remote', [80, 5432, 53, 'udp:53']));
    clients.app = await startClient(podNs.path, { uid: APP_UID, gid: APP_UID });
    clients.proxy = await startClient(podNs.path, { uid: PROXY_UID, gid: PROXY_UID });
    clients.remote = await startClient(remoteNs.path, { uid: 0, gid: 0 });
  });

  afterAll(() => {
    for (const client of Object.values(clients)) client.stop();
    for (const listener of listeners) listener.stop();
    deleteNetns(podNs);
    deleteNetns(remoteNs);
  });

  /** Where each interesting connection lands, per family. */
  async function observe(family: 'ipv4' | 'ipv6') {
    const a = ADDRESSES[family];
    return {
      inboundAppPort: await clients.remote!.connect(a.pod, 8080),
      inboundExcludedPort: await clients.remote!.connect(a.pod, 9090),
      outboundFromApp: await clients.app!.connect(a.remote, 80),
      outboundExcludedPort: await clients.app!.connect(a.remote, 5432),
      outboundExcludedCidr: await clients.app!.connect(a.excludedRemote, 80),
      outboundFromProxy: await clients.proxy!.connect(a.remote, 80),
      loopbackFromApp: await clients.app!.connect(a.loopback, 8081),
      // Own pod IP: goes out over lo; from the proxy it is treated as inbound (service VIP hairpin).
      ownPodIpFromApp: await clients.app!.connect(a.pod, 8080),
      ownPodIpFromProxy: await clients.proxy!.connect(a.pod, 8080),
    };
  }

  const UNREDIRECTED = {
    inboundAppPort: 'pod:8080',
    inboundExcludedPort: 'pod:9090',
    outboundFromApp: 'remote:80',
    outboundExcludedPort: 'remote:5432',
    outboundExcludedCidr: 'remote:80',
    outboundFromProxy: 'remote:80',
    loopbackFromApp: 'pod:8081',
    ownPodIpFromApp: 'pod:8080',
    ownPodIpFromProxy: 'pod:8080',
  };

  it.each(['ipv4', 'ipv6'] as const)('%s: without rules every connection reaches its real destination', async (family) => {
    await removeRedirect(podNs!.path, { mode });
    expect(await observe(family)).toEqual(UNREDIRECTED);
  });

  it.each(['ipv4', 'ipv6'] as const)('%s: with rules app traffic lands on the proxy ports, exclusions go direct', async (family) => {
    await applyRedirect(podNs!.path, plan, { mode });
    expect(await verifyRedirect(podNs!.path, plan, { mode })).toEqual({ ok: true, diff: '' });
    expect(await observe(family)).toEqual({
      // The wildcard inbound capture covers IPv6 too (no unredirected IPv6 hole).
      inboundAppPort: 'pod:15006',
      inboundExcludedPort: 'pod:9090',
      outboundFromApp: 'pod:15001',
      outboundExcludedPort: 'remote:5432',
      outboundExcludedCidr: 'remote:80',
      outboundFromProxy: 'remote:80',
      loopbackFromApp: 'pod:8081',
      ownPodIpFromApp: 'pod:8080',
      ownPodIpFromProxy: 'pod:15006',
    });
  });

  it.each(['ipv4', 'ipv6'] as const)('%s: after remove every connection reaches its real destination again', async (family) => {
    await applyRedirect(podNs!.path, plan, { mode });
    await removeRedirect(podNs!.path, { mode });
    expect(await observe(family)).toEqual(UNREDIRECTED);
  });

  it("ipv6: the proxy's inbound passthrough from ::6 reaches the app (apply adds ::6/128 to lo; verify misses it)", async () => {
    const passthrough = () => clients.proxy!.connect(ADDRESSES.ipv6.pod, 8080, '::6');
    must(['ip', '-n', podNs!.name, '-6', 'addr', 'flush', 'dev', 'lo', 'to', '::6/128']);
    // Without the address the proxy cannot even bind its passthrough source.
    expect(await passthrough()).toBe('ERR:EADDRNOTAVAIL');
    expect(await applyRedirect(podNs!.path, plan, { mode })).toMatchObject({ changed: true });
    expect(await passthrough()).toBe('pod:8080');
    expect(await clients.proxy!.connect(ADDRESSES.ipv4.pod, 8080, '127.0.0.6')).toBe('pod:8080');
    expect(await verifyRedirect(podNs!.path, plan, { mode })).toEqual({ ok: true, diff: '' });
    // Already there: a second apply changes nothing.
    expect(await applyRedirect(podNs!.path, plan, { mode })).toMatchObject({ changed: false });
    must(['ip', '-n', podNs!.name, '-6', 'addr', 'del', '::6/128', 'dev', 'lo']);
    const drift = await verifyRedirect(podNs!.path, plan, { mode });
    expect(drift.ok).toBe(false);
    expect(drift.diff).toContain('::6/128 is missing from lo');
    // An IPv4-only plan neither needs nor checks it.
    const v4only = planFromPod(pod, validateNodeConfig({ ...DEFAULT_NODE_CONFIG, families: ['ipv4'] }));
    await applyRedirect(podNs!.path, v4only, { mode });
    expect(await verifyRedirect(podNs!.path, v4only, { mode })).toEqual({ ok: true, diff: '' });
    expect(await passthrough()).toBe('ERR:EADDRNOTAVAIL');
    await applyRedirect(podNs!.path, plan, { mode });
    expect(await passthrough()).toBe('pod:8080');
    // remove() leaves the address: a proxy still running needs it, and it may not be ours.
    await removeRedirect(podNs!.path, { mode });
    expect(must(['ip', '-n', podNs!.name, '-6', '-o', 'addr', 'show', 'dev', 'lo'])).toContain('inet6 ::6/128');
  });

  it.each(['ipv4', 'ipv6'] as const)('%s: traffic in and out of an excluded interface is not captured', async (family) => {
    const excluding = planFromPod({
      metadata: { ...pod.metadata, annotations: { ...pod.metadata.annotations, 'traffic.sidecar.istio.io/excludeInterfaces': podInterface } },
    });
    await applyRedirect(podNs!.path, excluding, { mode });
    try {
      const a = ADDRESSES[family];
      expect({
        inbound: await clients.remote!.connect(a.pod, 8080),
        outbound: await clients.app!.connect(a.remote, 80),
        // lo is not excluded: the proxy's hairpin to its own pod IP is still captured.
        ownPodIpFromProxy: await clients.proxy!.connect(a.pod, 8080),
      }).toEqual({ inbound: 'pod:8080', outbound: 'remote:80', ownPodIpFromProxy: 'pod:15006' });
    } finally {
      await removeRedirect(podNs!.path, { mode });
    }
  });

  it.each(['ipv4', 'ipv6'] as const)("%s: with DNS capture, app DNS (UDP and TCP) lands on 15053, the proxy's goes out", async (family) => {
    await removeRedirect(podNs!.path, { mode });
    const remote = ADDRESSES[family].remote;
    const dns = async () => ({
      appUdp: await clients.app!.udp(remote, 53),
      appTcp: await clients.app!.connect(remote, 53),
      proxyUdp: await clients.proxy!.udp(remote, 53),
      appOther: await clients.app!.connect(remote, 80),
    });
    expect(await dns()).toEqual({ appUdp: 'remote:udp:53', appTcp: 'remote:53', proxyUdp: 'remote:udp:53', appOther: 'remote:80' });
    await applyRedirect(podNs!.path, dnsPlan, { mode });
    expect(await verifyRedirect(podNs!.path, dnsPlan, { mode })).toEqual({ ok: true, diff: '' });
    try {
      expect(await dns()).toEqual({ appUdp: 'pod:udp:15053', appTcp: 'pod:15053', proxyUdp: 'remote:udp:53', appOther: 'pod:15001' });
      // The app's query (redirected to the proxy) and the proxy's own query live in separate conntrack zones.
      const udpDns = must(['nsenter', `--net=${podNs!.path}`, '--', 'cat', '/proc/net/nf_conntrack'])
        .split('\n')
        .filter((line) => line.startsWith(family) && / udp .* dport=53 /.test(line));
      expect(udpDns.filter((line) => / sport=15053 .* zone=2 /.test(line)).length).toBeGreaterThan(0);
      expect(udpDns.filter((line) => / sport=53 .* zone=1 /.test(line)).length).toBeGreaterThan(0);
    } finally {
      await removeRedirect(podNs!.path, { mode });
    }
  });
});
