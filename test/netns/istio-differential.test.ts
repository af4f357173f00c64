// Differential test against Istio itself: for each pod configuration, Istio's own
// istio-iptables (built from the Go module proxy, given the arguments Istio's injector would
// give istio-init) programs one pod netns, our engine programs another, identical one. The same
// real connections run in both (outbound as the app, the proxy UID and the proxy GID; inbound
// from a peer netns; loopback, own pod IP, passthrough source, DNS over UDP and TCP), and every
// connection must reach the same listener with the same original destination in both.
// Differences we keep on purpose are listed below with their reason, and asserted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runInNetns } from '../../controller/src/redirect/index.ts';
import { AnnotationError, applyRedirect, planFromPod, type IptablesMode } from '../../controller/src/redirect/index.ts';
import { iptablesBinary, IPTABLES_MODES } from '../../controller/src/redirect/index.ts';
import { istioBinDir } from '../../hack/lib/istio-injector.ts';
import { CONFIGS, EXTRA_LOOPBACK, HOSTS, ISTIO_DEFAULT, nodeConfigOf, podLinks, podOf, RANGE_A, RANGE_B, T, type Config } from '../support/istio-configs.ts';
import { runIstioIptables, type IstioPodSettings } from '../support/istio-reference.ts';
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

if (!isRoot) console.warn(`istio-differential: ${ROOT_SKIP_MESSAGE}`);

const APP = { uid: 1000, gid: 1000 };

// Envoy's outbound/inbound capture ports, HBONE, agent, health, Prometheus, DNS; app ports.
const POD_PORTS = [15001, 15006, 15008, 15020, 15021, 15090, 15053, 'udp:15053', 8080, 9090, 9091] as const;
const PEER_PORTS = [80, 443, 5432, 53, 'udp:53'] as const;

type Client = 'app' | 'proxy-uid' | 'proxy-gid' | 'peer';
interface Flow {
  id: string;
  client: Client;
  host: string;
  port: number;
  udp?: boolean;
  /** TCP source address. */
  local?: string;
}

const hostPort = (host: string, port: number) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

function flow(client: Client, host: string, port: number, extra: { udp?: boolean; local?: string } = {}): Flow {
  const from = extra.local ? ` from ${extra.local}` : '';
  return { id: `${client}${from} -> ${hostPort(host, port)}${extra.udp ? '/udp' : ''}`, client, host, port, ...extra };
}

/** The same connections for every configuration, both families (IPv4-only configurations keep the pod's IPv6 addresses unredirected). */
const FLOWS: Flow[] = (['ipv4', 'ipv6'] as const).flatMap((family) => {
  const h = HOSTS[family];
  const outbound = (['app', 'proxy-uid', 'proxy-gid'] as const).flatMap((client) => [
    ...[80, 443, 5432, 53].map((port) => flow(client, h.peer, port)),
    flow(client, h.peer, 53, { udp: true }),
    flow(client, h.rangeA, 80),
    flow(client, h.rangeB, 80),
    flow(client, h.net1Peer, 80),
    flow(client, h.loopback, 8080),
    ...(family === 'ipv4' ? [flow(client, EXTRA_LOOPBACK, 8080)] : []),
    flow(client, h.pod, 8080),
    flow(client, h.pod, 15008),
    flow(client, h.pod, 15020),
  ]);
  // Envoy's inbound passthrough connects to the app from 127.0.0.6 / ::6.
  const passthrough = (['proxy-uid', 'app'] as const).map((client) => flow(client, h.pod, 8080, { local: h.passthrough }));
  const inbound = [...[8080, 9090, 9091, 15001, 15006, 15008, 15020, 15021, 15090].map((port) => flow('peer', h.pod, port)), flow('peer', h.net1Pod, 8080)];
  return [...outbound, ...passthrough, ...inbound];
});

interface ExpectedDifference {
  flow: string;
  istio: string;
  ours: string;
  why: string;
}

/** Differences we keep on purpose, per configuration: asserted exactly, so a fixed one must be removed here. */
const EXPECTED_DIFFERENCES: Record<string, ExpectedDifference[]> = {
  'IPv6-only pod on a node that programs IPv6 only': [
    {
      flow: `proxy-uid -> ${EXTRA_LOOPBACK}:8080`,
      istio: `pod:15006 orig=${EXTRA_LOOPBACK}:8080`,
      ours: `pod:8080 orig=${EXTRA_LOOPBACK}:8080`,
      why: "a node set to IPv6 only programs no IPv4 rules; Istio always does, and there the proxy's own connections over lo to any 127/8 address but 127.0.0.1 go to 15006",
    },
  ],
  'node-wide and pod exclusions together': (['ipv4', 'ipv6'] as const).map((family) => ({
    flow: `app -> ${hostPort(HOSTS[family].rangeB, 80)}`,
    istio: `pod:15001 orig=${hostPort(HOSTS[family].rangeB, 80)}`,
    ours: `peer:80 orig=${hostPort(HOSTS[family].rangeB, 80)}`,
    why: "the node's exclusions are the operator's and hold on every pod; Istio's mesh-wide default is replaced by the pod's annotation",
  })),
};

/** Annotations Istio honours and we refuse (with an AnnotationError) rather than half-honour. */
const REFUSED: { name: string; annotations: Record<string, string>; why: string }[] = [
  { name: 'TPROXY interception', annotations: { 'sidecar.istio.io/interceptionMode': 'TPROXY' }, why: 'only REDIRECT is implemented' },
  { name: 'kubevirtInterfaces', annotations: { [`${T}/kubevirtInterfaces`]: 'net1' }, why: 'rerouting VM interfaces to 15001 is not implemented' },
  {
    name: 'reroute-virtual-interfaces',
    annotations: { 'istio.io/reroute-virtual-interfaces': 'net1' },
    why: 'rerouting VM interfaces to 15001 is not implemented',
  },
];

function settingsOf(config: Config): IstioPodSettings {
  const proxy = config.proxy ?? ISTIO_DEFAULT;
  return {
    annotations: config.annotations ?? {},
    dualStack: config.dualStack,
    proxyUid: proxy.uid,
    proxyGid: proxy.gid,
    captureDns: config.dns !== undefined,
    ...config.node,
  };
}

interface Side {
  pod: TestNetns;
  peer: TestNetns;
  clients: Map<string, Promise<TcpClient>>;
}

// Flushing every table we or Istio touch (no --noflush) removes all rules and user chains.
const FLUSH = Object.entries({
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  raw: ['PREROUTING', 'OUTPUT'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
})
  .map(([table, chains]) => `*${table}\n${chains.map((chain) => `:${chain} ACCEPT [0:0]`).join('\n')}\nCOMMIT\n`)
  .join('');

// Both backends: Istio is pinned to the one our engine uses (--force-iptables-binary).
describe.skipIf(!isRoot).each([...IPTABLES_MODES])('our engine against Istio istio-iptables, flow for flow (iptables-%s)', (mode: IptablesMode) => {
  let binDir = '';
  const namespaces: TestNetns[] = [];
  const listeners: Listeners[] = [];
  type Pair = Partial<Record<'istio' | 'ours', Side>>;
  const sides: Pair = {};
  const ipv6OnlySides: Pair = {};
  const pairOf = (config: Config) => (config.ipv6Only ? ipv6OnlySides : sides);

  function createSide(withIpv4: boolean): Side {
    const pod = createNetns('pncdp');
    namespaces.push(pod);
    const peer = createNetns('pncdr');
    namespaces.push(peer);
    const [eth0, net1] = podLinks(withIpv4);
    connectNetns({ netns: pod, ...eth0! }, { netns: peer, addresses: ['192.0.2.2/24', '2001:db8::2/64'] });
    connectNetns({ netns: pod, ...net1! }, { netns: peer, addresses: ['203.0.113.2/24', '2001:db8:3::2/64'] });
    for (const family of ['ipv4', 'ipv6'] as const) {
      for (const host of [HOSTS[family].rangeA, HOSTS[family].rangeB]) {
        must(['ip', '-n', peer.name, 'addr', 'add', family === 'ipv4' ? `${host}/32` : `${host}/128`, 'dev', 'lo', ...(family === 'ipv6' ? ['nodad'] : [])]);
      }
    }
    if (withIpv4) must(['ip', '-n', pod.name, 'route', 'add', '198.51.100.0/24', 'via', '192.0.2.2']);
    for (const range of [RANGE_A.ipv6, RANGE_B.ipv6]) must(['ip', '-n', pod.name, '-6', 'route', 'add', range, 'via', '2001:db8::2']);
    return { pod, peer, clients: new Map() };
  }

  function client(side: Side, netns: TestNetns, identity: { uid: number; gid: number }): Promise<TcpClient> {
    const key = `${netns.name}/${identity.uid}/${identity.gid}`;
    let started = side.clients.get(key);
    if (!started) {
      started = startClient(netns.path, identity);
      side.clients.set(key, started);
    }
    return started;
  }

  beforeAll(async () => {
    binDir = await istioBinDir('istio-iptables');
    sides.istio = createSide(true);
    sides.ours = createSide(true);
    ipv6OnlySides.istio = createSide(false);
    ipv6OnlySides.ours = createSide(false);
    for (const side of [sides.istio, sides.ours, ipv6OnlySides.istio, ipv6OnlySides.ours]) {
      // Loads the nat table (and with it conntrack, whose settings exist only then).
      await reset(side);
      // The listeners read the conntrack table on every accept: let closed connections leave it quickly.
      for (const setting of ['tcp_timeout_time_wait=1', 'udp_timeout=5', 'udp_timeout_stream=5']) {
        must(['nsenter', `--net=${side.pod.path}`, '--', 'sysctl', '-qw', `net.netfilter.nf_conntrack_${setting}`]);
      }
      listeners.push(await startListeners(side.pod.path, 'pod', [...POD_PORTS], undefined, { originalDst: true }));
      listeners.push(await startListeners(side.peer.path, 'peer', [...PEER_PORTS], undefined, { originalDst: true }));
    }
  }, 20 * 60_000);

  afterAll(async () => {
    const started = [sides.istio, sides.ours, ipv6OnlySides.istio, ipv6OnlySides.ours].flatMap((side) => [...(side?.clients.values() ?? [])]);
    for (const result of await Promise.allSettled(started)) if (result.status === 'fulfilled') result.value.stop();
    for (const listener of listeners) listener.stop();
    for (const netns of namespaces) deleteNetns(netns);
  });

  async function reset(side: Side): Promise<void> {
    for (const family of ['ipv4', 'ipv6'] as const) {
      const result = await runInNetns(side.pod.path, [iptablesBinary(mode, family, 'restore')], FLUSH);
      if (result.code !== 0) throw new Error(`flushing ${family} rules in ${side.pod.name}: ${result.stderr}`);
    }
    // Istio (and, for IPv6, our engine) add ::6 to lo; a later IPv4-only pod must not inherit it.
    await runInNetns(side.pod.path, ['ip', '-6', 'addr', 'del', '::6/128', 'dev', 'lo']);
  }

  async function programIstio(side: Side, settings: IstioPodSettings): Promise<void> {
    const result = await runIstioIptables(binDir, side.pod.path, settings, mode);
    if (result.code !== 0) throw new Error(`istio-iptables failed (${result.code}):\n${result.stdout}${result.stderr}`);
  }

  /**
   * Istio adds ::6 without nodad: the address stays tentative (unbindable) until the kernel's
   * DAD work runs, a moment after istio-iptables exits. Envoy binds it much later; wait the same.
   */
  async function addressesSettled(side: Side): Promise<void> {
    for (let attempt = 0; attempt < 100; attempt++) {
      const result = await runInNetns(side.pod.path, ['ip', '-6', 'addr', 'show', 'dev', 'lo', 'tentative']);
      if (result.code === 0 && result.stdout.trim() === '') return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`an address on lo in ${side.pod.name} stays tentative`);
  }

  /**
   * A destination nobody answers (e.g. IPv4 in an IPv6-only pod) ends in a timeout or in
   * EHOSTUNREACH depending on when neighbour resolution gives up, not on the rules: one verdict.
   */
  function sameVerdict(answer: string): string {
    return answer === 'ERR:timeout' || answer === 'ERR:EHOSTUNREACH' ? 'ERR:unreachable' : answer;
  }

  /** Every flow's answer: "<listener>:<port> orig=<dialled destination>" or "ERR:<code>" ("ERR:unreachable": see sameVerdict). */
  async function observe(side: Side, config: Config): Promise<Record<string, string>> {
    const proxy = config.proxy ?? ISTIO_DEFAULT;
    const identities = { app: APP, 'proxy-uid': { uid: proxy.uid, gid: APP.gid }, 'proxy-gid': { uid: APP.uid, gid: proxy.gid } };
    const answers = await Promise.all(
      FLOWS.map(async (f) => {
        const c = await (f.client === 'peer' ? client(side, side.peer, { uid: 0, gid: 0 }) : client(side, side.pod, identities[f.client]));
        return [f.id, sameVerdict(f.udp ? await c.udp(f.host, f.port) : await c.connect(f.host, f.port, f.local))] as const;
      }),
    );
    return Object.fromEntries(answers);
  }

  async function observeBoth(config: Config) {
    const pair = pairOf(config);
    await Promise.all([addressesSettled(pair.istio!), addressesSettled(pair.ours!)]);
    const [istio, ours] = await Promise.all([observe(pair.istio!, config), observe(pair.ours!, config)]);
    const differences = FLOWS.filter((f) => istio[f.id] !== ours[f.id]).map((f) => ({ flow: f.id, istio: istio[f.id], ours: ours[f.id] }));
    return { istio, ours, differences };
  }

  it('without rules, both pods reach every real destination (the harness sees no difference by itself)', async () => {
    await Promise.all([reset(sides.istio!), reset(sides.ours!)]);
    const { istio, differences } = await observeBoth(CONFIGS[0]!);
    expect(differences).toEqual([]);
    expect(istio['app -> 192.0.2.2:80']).toBe('peer:80 orig=192.0.2.2:80');
    expect(istio['peer -> [2001:db8::1]:8080']).toBe('pod:8080 orig=[2001:db8::1]:8080');
    // The peer has no rules: its kernel may keep no conntrack entry, so a UDP listener on :: may not know its address.
    expect(istio['app -> 192.0.2.2:53/udp']).toMatch(/^peer:udp:53 orig=(\*|192\.0\.2\.2):53$/);
  });

  it('the defaults capture what Istio documents (anchors for the comparison)', async () => {
    const config = CONFIGS[1]!;
    await reset(sides.istio!);
    await programIstio(sides.istio!, settingsOf(config));
    await addressesSettled(sides.istio!);
    const istio = await observe(sides.istio!, config);
    expect({
      outbound: istio['app -> 192.0.2.2:80'],
      outboundFromProxy: istio['proxy-uid -> 192.0.2.2:80'],
      outboundFromProxyGroup: istio['proxy-gid -> [2001:db8::2]:443'],
      inbound: istio['peer -> [2001:db8::1]:8080'],
      inboundHealth: istio['peer -> 192.0.2.1:15021'],
      hairpinFromProxy: istio['proxy-uid -> 192.0.2.1:8080'],
      passthrough: istio['proxy-uid from ::6 -> [2001:db8::1]:8080'],
    }).toEqual({
      outbound: 'pod:15001 orig=192.0.2.2:80',
      outboundFromProxy: 'peer:80 orig=192.0.2.2:80',
      outboundFromProxyGroup: 'peer:443 orig=[2001:db8::2]:443',
      inbound: 'pod:15006 orig=[2001:db8::1]:8080',
      inboundHealth: 'pod:15021 orig=192.0.2.1:15021',
      hairpinFromProxy: 'pod:15006 orig=192.0.2.1:8080',
      passthrough: 'pod:8080 orig=[2001:db8::1]:8080',
    });
  });

  it('every expected difference names a configuration of the matrix', () => {
    expect(Object.keys(EXPECTED_DIFFERENCES).filter((name) => !CONFIGS.some((config) => config.name === name))).toEqual([]);
  });

  // One test per configuration, named in full (it.each would shorten long names).
  for (const config of CONFIGS)
    it(config.name, async () => {
      const pair = pairOf(config);
      await Promise.all([reset(pair.istio!), reset(pair.ours!)]);
      await Promise.all([
        programIstio(pair.istio!, settingsOf(config)),
        applyRedirect(pair.ours!.pod.path, planFromPod(podOf(config), nodeConfigOf(config)), { mode }),
      ]);
      const { istio, differences } = await observeBoth(config);
      // Istio's side is really redirected (the comparison is not between two unredirected pods).
      const captured = Object.values(istio).filter((answer) => /^pod:(15001|15006|15053) /.test(answer) || answer.startsWith('pod:udp:15053 '));
      expect(captured.length).toBeGreaterThan(0);
      expect(differences).toEqual((EXPECTED_DIFFERENCES[config.name] ?? []).map(({ flow, istio, ours }) => ({ flow, istio, ours })));
    });

  for (const { name, annotations, why } of REFUSED)
    it(`${name}: Istio programs it, we refuse it (${why})`, async () => {
      const config: Config = { name: 'refused', dualStack: true, annotations };
      await reset(sides.istio!);
      try {
        await programIstio(sides.istio!, settingsOf(config));
      } finally {
        // TPROXY also adds policy routing (fwmark 1337 -> table 133), which no flush removes.
        for (const family of ['-4', '-6']) await runInNetns(sides.istio!.pod.path, ['ip', family, 'rule', 'del', 'fwmark', '1337', 'lookup', '133']);
        await reset(sides.istio!);
      }
      const plan = () => planFromPod(podOf(config), nodeConfigOf(config));
      expect(plan).toThrow(AnnotationError);
      expect(plan).toThrow(Object.keys(annotations)[0]!);
    });
});
