// hack/local-cluster.sh up --with-node / down on a second, private cluster: idempotent,
// recovers from a crash, refuses a machine that lacks a package in one line before starting
// anything, and `down` leaves no trace on the host.
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { KubeConfig } from '@kubernetes/client-node';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ensureLocalCluster, stopLocalCluster } from '../../hack/lib/local-cluster.ts';
import { processStartTime } from '../../hack/lib/proc.ts';
import { LIFECYCLE_DIR_PREFIX } from '../support/node-global-setup.ts';

const execFileAsync = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../hack/local-cluster.sh', import.meta.url));
const nodeName = inject('nodeName');

async function sh(argv: string[]): Promise<string> {
  return (await execFileAsync(argv[0]!, argv.slice(1), { encoding: 'utf8' })).stdout;
}

/**
 * What the node of stateDir, in SLOT, may leave on the host; every entry is a trace. Once
 * another cluster has claimed the slot, its bridges, cgroups and chains are that node's.
 */
async function hostTraces(stateDir: string, slot: string, sandboxIds: string[]): Promise<string[]> {
  const traces: string[] = [];
  const claim = await readFile(`/run/pod-network-controller/nodes/slot-${slot}`, 'utf8').catch(() => undefined);
  if (claim === undefined || claim.trim() === stateDir) {
    const links = await sh(['ip', '-o', 'link', 'show']);
    for (const bridge of [`pncn${slot}`, `pncp${slot}`]) if (new RegExp(`^\\d+: ${bridge}[:@]`, 'm').test(links)) traces.push(`link ${bridge}`);
    for (const hierarchy of await readdir('/sys/fs/cgroup')) {
      if (existsSync(join('/sys/fs/cgroup', hierarchy, `pnc-node-${slot}`))) traces.push(`cgroup ${hierarchy}/pnc-node-${slot}`);
    }
    for (const save of ['iptables-save', 'ip6tables-save']) {
      if ((await sh([save])).includes(`PNC-NODE-${slot}`)) traces.push(`${save}: PNC-NODE-${slot}`);
    }
    if (claim !== undefined) traces.push(`slot-${slot} claim`);
  }
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  if (mounts.includes(`${stateDir}/`)) traces.push('mounts under the state dir');
  const results = await readdir('/var/lib/cni/results').catch(() => [] as string[]);
  for (const file of results)
    if (file.startsWith(`pnc-node-${slot}-`) || sandboxIds.some((id) => file.includes(id))) traces.push(`/var/lib/cni/results/${file}`);
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(`${stateDir}/`)) traces.push(`process ${pid}: ${cmdline.replaceAll('\0', ' ').slice(0, 80)}`);
  }
  if (existsSync(stateDir)) traces.push('state dir');
  return traces;
}

/** The container id of the namespace's Ready pod, once it is not `previous`. */
async function readyContainer(kc: KubeConfig, namespace: string, previous?: string): Promise<string> {
  const core = kc.makeApiClient(CoreV1Api);
  const deadline = Date.now() + 90_000;
  for (;;) {
    const pods = await core.listNamespacedPod({ namespace });
    const ready = pods.items
      .filter((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
      .map((p) => p.status?.containerStatuses?.[0]?.containerID)
      .find((id) => id && id !== previous);
    if (ready) return ready;
    if (Date.now() > deadline) throw new Error(`no Ready pod in ${namespace} after 90 s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

describe.skipIf(!nodeName)('hack/local-cluster.sh up --with-node / down (skipped without root: no real node)', () => {
  // Named like the global setup's clusters, so the next run removes it if this one crashes.
  let stateDir = '';
  beforeAll(async () => {
    stateDir = join(tmpdir(), `${LIFECYCLE_DIR_PREFIX}${process.pid}-${await processStartTime(process.pid)}`);
  });
  afterAll(async () => {
    if (!stateDir) return;
    await stopLocalCluster({ stateDir }).catch(() => undefined);
    await rm(`${stateDir}.lock`, { force: true });
  });

  it('refuses a machine without containerd in one line, starting nothing', async () => {
    // A PATH with every tool the script needs except containerd.
    const bin = await mkdtemp(join(tmpdir(), 'pnc-no-containerd-'));
    try {
      for (const tool of ['bash', 'id', 'dirname', 'mkdir', 'flock', 'sed', 'cat', 'grep', 'tr']) {
        await symlink((await sh(['bash', '-c', `command -v ${tool}`])).trim(), join(bin, tool));
      }
      const failed = await execFileAsync('/bin/bash', [SCRIPT, 'up', '--with-node'], {
        env: { PATH: bin, HOME: process.env.HOME, PNC_CLUSTER_DIR: `${stateDir}-refused` },
        encoding: 'utf8',
      }).then(
        () => undefined,
        (error: { code: number; stderr: string }) => error,
      );
      expect(failed?.code).toBe(1);
      expect(failed?.stderr.trim()).toMatch(/^local-node: missing containerd: install it with: apt-get install containerd runc containernetworking-plugins/);
      expect(failed?.stderr.trim().split('\n')).toHaveLength(1);
      expect(existsSync(join(`${stateDir}-refused`, 'etcd.pid'))).toBe(false);
    } finally {
      await rm(bin, { recursive: true, force: true });
      await rm(`${stateDir}-refused`, { recursive: true, force: true });
      await rm(`${stateDir}-refused.lock`, { force: true });
    }
  });

  it('comes up again after a crash, is reused when running, and leaves no trace when down', async () => {
    const cluster = await ensureLocalCluster({ stateDir, withNode: true });
    const slot = (await readFile(join(stateDir, 'node', 'slot'), 'utf8')).trim();
    expect(await hostTraces(stateDir, slot, [])).toEqual(expect.arrayContaining([`link pncn${slot}`, `link pncp${slot}`, 'state dir']));
    const kc = new KubeConfig();
    kc.loadFromFile(cluster.kubeconfig);
    const namespace = 'lifecycle';
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
    await kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
      namespace,
      body: {
        metadata: { name: 'pause' },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'pause' } },
          template: {
            metadata: { labels: { app: 'pause' } },
            spec: { containers: [{ name: 'pause', image: 'localhost/pod-network-controller/pause:dev', imagePullPolicy: 'Never' }] },
          },
        },
      },
    });
    const before = await readyContainer(kc, namespace);

    // A crash: the kubelet and containerd die at once, the pod's processes and mounts stay.
    for (const name of ['kubelet', 'containerd']) process.kill(Number(await readFile(join(stateDir, 'node', `${name}.pid`), 'utf8')), 'SIGKILL');
    await ensureLocalCluster({ stateDir, withNode: true });
    // The pod runs again, in a new container.
    const after = await readyContainer(kc, namespace, before);

    const started = Date.now();
    await ensureLocalCluster({ stateDir, withNode: true });
    expect(Date.now() - started, 'a running node is reused, not restarted').toBeLessThan(10_000);
    expect(await readyContainer(kc, namespace)).toBe(after);

    const sandboxes = await readdir(join(stateDir, 'node', 'containerd', 'root', 'io.containerd.grpc.v1.cri', 'sandboxes'));
    expect(sandboxes.length).toBeGreaterThan(0);
    await stopLocalCluster({ stateDir });
    expect(await hostTraces(stateDir, slot, sandboxes)).toEqual([]);
  });

  it.each([
    ['with 20 pods running', 20, undefined],
    ['after its containerd was killed', 2, 'containerd'],
    ['after its kubelet was killed', 2, 'kubelet'],
  ] as const)('down finishes and leaves no trace %s', async (_case, replicas, killed) => {
    const cluster = await ensureLocalCluster({ stateDir, withNode: true });
    const slot = (await readFile(join(stateDir, 'node', 'slot'), 'utf8')).trim();
    const kc = new KubeConfig();
    kc.loadFromFile(cluster.kubeconfig);
    const namespace = `down-${replicas}-${killed ?? 'none'}`;
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
    await kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
      namespace,
      body: {
        metadata: { name: 'pause' },
        spec: {
          replicas,
          selector: { matchLabels: { app: 'pause' } },
          template: {
            metadata: { labels: { app: 'pause' } },
            // A volume per pod: tmpfs mounts under the node's dir, as real workloads have.
            spec: {
              containers: [
                {
                  name: 'pause',
                  image: 'localhost/pod-network-controller/pause:dev',
                  imagePullPolicy: 'Never',
                  volumeMounts: [{ name: 'scratch', mountPath: '/scratch' }],
                },
              ],
              volumes: [{ name: 'scratch', emptyDir: { medium: 'Memory' } }],
            },
          },
        },
      },
    });
    const core = kc.makeApiClient(CoreV1Api);
    const deadline = Date.now() + 150_000;
    for (;;) {
      const pods = await core.listNamespacedPod({ namespace });
      if (pods.items.filter((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).length === replicas) break;
      if (Date.now() > deadline) throw new Error(`${replicas} pods not Ready after 150 s`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    if (killed) process.kill(Number(await readFile(join(stateDir, 'node', `${killed}.pid`), 'utf8')), 'SIGKILL');
    // Mounts stacked on one point, as the kubelet's shared root propagates them: each pass of an
    // unmount loop that lists a point once takes one layer only.
    const stacked = join(stateDir, 'node', 'stacked');
    await sh(['mkdir', '-p', stacked]);
    for (let layer = 0; layer < 8; layer++) await sh(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'pnc-stacked', stacked]);
    const sandboxes = await readdir(join(stateDir, 'node', 'containerd', 'root', 'io.containerd.grpc.v1.cri', 'sandboxes'));
    expect(sandboxes.length).toBeGreaterThanOrEqual(replicas);
    expect((await readFile('/proc/self/mountinfo', 'utf8')).split(`${stateDir}/node/`).length - 1, 'mounts under the node dir').toBeGreaterThan(replicas);
    await stopLocalCluster({ stateDir });
    expect(await hostTraces(stateDir, slot, sandboxes)).toEqual([]);
  });
});
