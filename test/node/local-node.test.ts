// The local cluster's real node (hack/local-cluster.sh up --with-node): a kubelet and
// containerd (or CRI-O) that run workloads from locally imported images, scheduled by kube-scheduler and
// managed by the controllers, on a dual-stack bridge network that stays on the node.
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, inject, it } from 'vitest';
import { NetnsFinder } from '../../controller/src/agent/netns-finder.ts';
import { adminKubeConfig, freshNamespace } from '../support/cluster.ts';
import { runInNetns } from '../../hack/lib/netns.ts';
import { pollFor } from '../../hack/lib/poll.ts';
import { isReady } from '../../hack/lib/real-node.ts';

const nodeName = inject('nodeName');
const PAUSE_IMAGE = 'localhost/pod-network-controller/pause:dev';
const KUBERNETES_SERVICE_IP = inject('kubernetesServiceIp');

const poll = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000) => pollFor(what, probe, timeoutMs);

/** A one-replica Deployment of the pause image under Pod Security "restricted"; resolves with its Ready pod. */
async function readyPausePod(kc: KubeConfig, namespace: string): Promise<V1Pod> {
  const apps = kc.makeApiClient(AppsV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  const labels = { app: 'pause' };
  await apps.createNamespacedDeployment({
    namespace,
    body: {
      metadata: { name: 'pause' },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            securityContext: { runAsNonRoot: true, runAsUser: 65535, seccompProfile: { type: 'RuntimeDefault' } },
            containers: [
              {
                name: 'pause',
                image: PAUSE_IMAGE,
                imagePullPolicy: 'Never',
                securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
              },
            ],
          },
        },
      },
    },
  });
  return poll('the pause Deployment to have a Ready pod', async () => {
    const pods = await core.listNamespacedPod({ namespace, labelSelector: 'app=pause' });
    return pods.items.find(isReady);
  });
}

function inCidr(address: string, cidr: string): boolean {
  const [network, bits] = cidr.split('/');
  const expand = (text: string): bigint => {
    if (text.includes('.')) return text.split('.').reduce((acc, part) => (acc << 8n) | BigInt(part), 0n);
    const [head, tail = ''] = text.split('::');
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = text.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
    return groups.reduce((acc, group) => (acc << 16n) | BigInt(parseInt(group, 16)), 0n);
  };
  const width = address.includes('.') ? 32n : 128n;
  const shift = width - BigInt(bits!);
  return expand(address) >> shift === expand(network!) >> shift;
}

describe.skipIf(!nodeName)('the local node (skipped without root: no real node)', () => {
  it('is Ready with dual-stack documentation-range InternalIPs, its not-ready taint gone', async () => {
    const core = adminKubeConfig().makeApiClient(CoreV1Api);
    const node = await poll('the not-ready taint to be removed', async () => {
      const current = await core.readNode({ name: nodeName });
      return current.spec?.taints?.length ? undefined : current;
    });
    expect(node.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    const internal = (node.status?.addresses ?? []).filter((a) => a.type === 'InternalIP').map((a) => a.address);
    expect(internal).toHaveLength(2);
    expect(inCidr(internal[0]!, '198.51.100.192/29')).toBe(true);
    expect(inCidr(internal[1]!, '2001:db8:ad0::/44')).toBe(true);
  });

  it("puts no address of ours inside a subnet the machine's uplink routes", () => {
    const json = <T>(argv: string[]) => JSON.parse(execFileSync('ip', ['-j', ...argv], { encoding: 'utf8' })) as T;
    type Route = { dst: string; dev?: string; gateway?: string };
    const routes = [...json<Route[]>(['-4', 'route', 'show']), ...json<Route[]>(['-6', 'route', 'show'])];
    const uplinks = new Set(routes.filter((r) => r.dst === 'default').map((r) => r.dev));
    expect(uplinks.size, 'the machine has a default route').toBeGreaterThan(0);
    const uplinkSubnets = routes
      .filter((r) => uplinks.has(r.dev) && r.dst !== 'default' && !r.gateway && !r.dst.startsWith('fe80:'))
      .map((r) => (r.dst.includes('/') ? r.dst : `${r.dst}/${r.dst.includes(':') ? 128 : 32}`));
    expect(uplinkSubnets.length).toBeGreaterThan(0);
    type Link = { ifname: string; addr_info: { local: string; prefixlen: number; scope: string }[] };
    const ours = json<Link[]>(['addr', 'show'])
      .filter((link) => /^pnc[np]\d+$/.test(link.ifname))
      .flatMap((link) => link.addr_info.filter((a) => a.scope === 'global').map((a) => a.local));
    expect(ours.length, "the node's bridges hold its and its pods' gateway addresses").toBeGreaterThanOrEqual(4);
    const sameFamily = (address: string, subnet: string) => address.includes(':') === subnet.includes(':');
    const clashes = [...ours, KUBERNETES_SERVICE_IP].flatMap((address) =>
      uplinkSubnets.filter((subnet) => sameFamily(address, subnet) && inCidr(address, subnet)).map((subnet) => `${address} in ${subnet}`),
    );
    expect(clashes).toEqual([]);
  });

  it("exports the node's CRI endpoint and where images go from `env`; the runtime holds the imported pause image", () => {
    const env = execFileSync('bash', [fileURLToPath(new URL('../../hack/local-cluster.sh', import.meta.url)), 'env'], {
      encoding: 'utf8',
      env: { ...process.env, PNC_CLUSTER_DIR: inject('clusterDir') },
    });
    const socket = inject('criSocket');
    if (inject('nodeRuntime') === 'cri-o') {
      expect(env).toContain(`export CRIO_STORAGE_CONF=${inject('clusterDir')}/node/crio/storage.conf CONTAINER_RUNTIME_ENDPOINT=unix://${socket}\n`);
    } else {
      expect(env).toContain(`export CONTAINERD_ADDRESS=${socket} CONTAINERD_NAMESPACE=k8s.io CONTAINER_RUNTIME_ENDPOINT=unix://${socket}\n`);
    }
    const listed = execFileSync(`${inject('binDir')}/crictl`, ['--runtime-endpoint', `unix://${socket}`, 'images', '-o', 'json'], { encoding: 'utf8' });
    const images = (JSON.parse(listed) as { images: { repoTags?: string[] }[] }).images;
    expect(images.flatMap((image) => image.repoTags ?? [])).toContain(PAUSE_IMAGE);
  });

  it("runs a Deployment's pod from a locally imported image, with IPv4 and IPv6 from the node's ranges", async () => {
    const kc = adminKubeConfig();
    const namespace = await freshNamespace(kc, { 'pod-security.kubernetes.io/enforce': 'restricted' });
    const pod = await readyPausePod(kc, namespace);
    expect(pod.spec?.nodeName).toBe(nodeName);
    const ips = (pod.status?.podIPs ?? []).map((p) => p.ip);
    expect(ips).toHaveLength(2);
    expect(inCidr(ips[0]!, '198.51.100.0/24')).toBe(true);
    expect(inCidr(ips[1]!, '2001:db8:ad1::/48')).toBe(true);
    // The projected token volume mounted: the root-CA publisher and the token controller ran.
    expect(pod.spec?.volumes?.some((v) => v.projected?.sources?.some((s) => s.configMap?.name === 'kube-root-ca.crt'))).toBe(true);
    // The API server reached the kubelet through the node's InternalIP, with both sides' certificates.
    const logs = execFileSync(`${inject('binDir')}/kubectl`, ['--kubeconfig', inject('kubeconfig'), '-n', namespace, 'logs', pod.metadata!.name!], {
      encoding: 'utf8',
    });
    expect(logs).toBe('');
  });

  it('gives pods a default route via the bridge, the kubernetes Service, and nothing past the node', async () => {
    const kc = adminKubeConfig();
    const namespace = await freshNamespace(kc, { 'pod-security.kubernetes.io/enforce': 'restricted' });
    const pod = await readyPausePod(kc, namespace);
    const sandbox = await new NetnsFinder({ procRoot: '/proc' }).find(pod.metadata!.uid!, 0);
    expect(sandbox, 'the pod sandbox process').toBeDefined();
    const routes = runInNetns(sandbox!.path, ['ip', '-4', 'route', 'show', 'default']);
    expect(routes.stdout).toMatch(/^default via 198\.51\.100\.\d+ dev eth0/);
    expect(runInNetns(sandbox!.path, ['ip', '-6', 'route', 'show', 'default']).stdout).toMatch(/^default via 2001:db8:ad1:/);
    // A TLS handshake through the ClusterIP: the DNAT to the API server works from the pod.
    const tls = runInNetns(sandbox!.path, [
      process.execPath,
      '-e',
      `const s = require('node:tls').connect({ host: '${KUBERNETES_SERVICE_IP}', port: 443, rejectUnauthorized: false, timeout: 5000 }, () => { console.log(s.getPeerCertificate().subject.CN); s.end(); });
       s.on('error', (e) => { console.log('ERR ' + e.code); }); s.on('timeout', () => { console.log('ERR timeout'); s.destroy(); });`,
    ]);
    expect(tls.stdout.trim()).toBe('kube-apiserver');
    // An address of ours that nobody holds: the node never forwards pod traffic.
    const away = runInNetns(sandbox!.path, [
      process.execPath,
      '-e',
      `const s = require('node:net').connect({ host: '198.51.100.230', port: 80, timeout: 1500 }, () => { console.log('connected'); s.end(); });
       s.on('error', (e) => console.log('ERR ' + e.code)); s.on('timeout', () => { console.log('ERR timeout'); s.destroy(); });`,
    ]);
    expect(away.stdout.trim()).toMatch(/^ERR /);
  });
});
