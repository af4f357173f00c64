// The pod-sandbox simulator makes what a node makes for a pod: its pause process is found by
// scanning /proc for the pod UID (as the controller will), sits in the pod's netns and in a
// kubelet-shaped cgroup, the netns reaches its veth peer over IPv4 and IPv6, the apiserver
// shows the pod's IPs, and the downward-API file is swapped atomically like the kubelet's.
import { CoreV1Api } from '@kubernetes/client-node';
import type { V1Pod } from '@kubernetes/client-node';
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, rmdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { ownerOfCgroupFile } from '../../controller/src/agent/cgroup-path.ts';
import { NetnsFinder } from '../../controller/src/agent/netns-finder.ts';
import { cgroup2MountPoint, kubeletCgroupSegments, type CgroupDriver } from '../../hack/lib/kubelet-cgroup.ts';
import { createPodSandbox, formatDownwardApiAnnotations, PodSandboxError, sweepStaleSandboxes } from '../../hack/lib/pod-sandbox.ts';
import type { PodSandbox } from '../../hack/lib/pod-sandbox.ts';
import { adminKubeConfig, freshNamespace } from '../support/cluster.ts';
import { ensureNode } from '../../hack/lib/kube-objects.ts';

const notRoot = process.getuid?.() !== 0;
if (notRoot) console.warn('pod-sandbox tests skipped: they need root (network namespaces, veth pairs, cgroups)');

const admin = adminKubeConfig();
const core = admin.makeApiClient(CoreV1Api);
const nodeName = `pnc-sandbox-node-${randomBytes(3).toString('hex')}`;

/** Every live pid the controller's own cgroup parser assigns to pod UID (either form the kubelet writes). */
async function findPodPidsByUid(uid: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    // A zombie (killed, not yet reaped by its new parent) still lists its cgroup but has no netns.
    const procStat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    if (!procStat || procStat.slice(procStat.lastIndexOf(')') + 2).startsWith('Z')) continue;
    const cgroup = await readFile(`/proc/${entry}/cgroup`, 'utf8').catch(() => '');
    if (ownerOfCgroupFile(cgroup)?.podUid === uid) pids.push(Number(entry));
  }
  return pids;
}

const netnsInode = (pid: number | 'self') => stat(`/proc/${pid}/ns/net`).then((s) => s.ino);
const unifiedCgroup = async (pid: number) => (await readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n').find((line) => line.startsWith('0::'));

/** Runs a small JavaScript program with node inside netns PATH; resolves with its stdout once it prints a line matching UNTIL (or exits). */
function nodeInNetns(path: string, program: string, args: string[], until?: RegExp) {
  const child = spawn('nsenter', [`--net=${path}`, '--', process.execPath, '-e', program, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const output = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (until?.test(stdout)) resolve(stdout);
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`node in ${path} exited ${code}: ${stderr}`))));
  });
  return { child, output };
}

const LISTENER = `
const net = require('node:net');
const [token, ...addresses] = process.argv.slice(1);
let ready = 0;
for (const address of addresses) {
  net.createServer((socket) => socket.end(token + ' from ' + socket.localAddress)).listen(15999, address, () => {
    if (++ready === addresses.length) console.log('listening');
  });
}`;
const CLIENT = `
const net = require('node:net');
const socket = net.connect({ host: process.argv[1], port: 15999, timeout: 5000 });
let data = '';
socket.on('data', (chunk) => (data += chunk));
socket.on('end', () => { console.log(data); });
socket.on('timeout', () => { console.error('timeout'); process.exit(3); });`;

/** Proves the pod netns reaches its peer: a listener on every peer address answers a client in the pod netns. */
async function expectPeerReachable(sandbox: PodSandbox): Promise<void> {
  const token = randomBytes(8).toString('hex');
  const listener = nodeInNetns(sandbox.peerNetnsPath, LISTENER, [token, ...sandbox.peerIPs], /listening/);
  try {
    await listener.output;
    for (const peerIP of sandbox.peerIPs) {
      const reply = await nodeInNetns(sandbox.netnsPath, CLIENT, [peerIP]).output;
      expect(reply.trim()).toBe(`${token} from ${peerIP}`);
    }
  } finally {
    listener.child.kill('SIGKILL');
  }
}

// Stands in for a non-privileged agent container on cgroup v2: joins the cgroup whose procs
// file is argv[1], then runs the rest of argv under `unshare --cgroup`, so its cgroup namespace
// is rooted at that container cgroup.
const IN_CONTAINER_CGROUP = `
require('node:fs').writeFileSync(process.argv[1], String(process.pid));
const run = require('node:child_process').spawnSync('unshare', ['--cgroup', '--', ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(run.status ?? 1);`;
// The agent's finder on the real /proc, from there: the view it sees, what it finds for each UID,
// and each pid's cgroup file as the kernel shows it in that namespace.
const FINDER = `
const [finderModule, ownPodUid, ...rest] = process.argv.slice(1);
const { NetnsFinder } = await import(finderModule);
const finder = new NetnsFinder({ procRoot: '/proc', ownPodUid });
const found = {};
const cgroups = {};
for (const pair of rest) {
  const [uid, pid] = pair.split('=');
  found[uid] = (await finder.find(uid, 0))?.pid ?? null;
  cgroups[uid] = (await import('node:fs')).readFileSync('/proc/' + pid + '/cgroup', 'utf8');
}
console.log(JSON.stringify({ view: finder.cgroupView?.kind, found, cgroups }));`;

async function createPod(namespace: string, name: string, pod: Partial<V1Pod> = {}): Promise<V1Pod> {
  return core.createNamespacedPod({
    namespace,
    body: {
      ...pod,
      metadata: { name, ...pod.metadata },
      spec: { nodeName, containers: [{ name: 'app', image: 'registry.invalid/app:1' }], ...pod.spec },
    },
  });
}

describe.skipIf(notRoot)('pod-sandbox simulator', () => {
  let namespace: string;
  const sandboxes: PodSandbox[] = [];
  const track = (sandbox: PodSandbox) => (sandboxes.push(sandbox), sandbox);

  beforeAll(async () => {
    await ensureNode(admin, nodeName);
    namespace = await freshNamespace(admin);
  });
  afterAll(async () => {
    for (const sandbox of sandboxes) await sandbox.destroy();
    await core.deleteNode({ name: nodeName });
  });

  it('runs a pause process found through /proc by pod UID, in the pod netns, reaching its peer, with the IPs in the pod status', async () => {
    const pod = await createPod(namespace, 'sandboxed');
    const uid = pod.metadata!.uid!;
    const sandbox = track(await createPodSandbox(pod, { kc: admin }));

    const pids = await findPodPidsByUid(uid);
    expect(pids).toEqual([sandbox.pausePid]);
    // The controller's own finder, on the real /proc, takes the pause process's netns.
    expect(await new NetnsFinder({ procRoot: '/proc' }).find(uid, 0)).toMatchObject({ pid: sandbox.pausePid, inode: sandbox.netnsInode });
    expect(await readFile(`/proc/${sandbox.pausePid}/comm`, 'utf8')).toBe('sleep\n');
    expect(await netnsInode(sandbox.pausePid)).toBe(sandbox.netnsInode);
    expect(sandbox.netnsInode).not.toBe(await netnsInode('self'));
    expect(await unifiedCgroup(sandbox.pausePid)).toMatch(
      new RegExp(
        `^0::/kubepods\\.slice/kubepods-besteffort\\.slice/kubepods-besteffort-pod${uid.replaceAll('-', '_')}\\.slice/cri-containerd-[0-9a-f]{64}\\.scope$`,
      ),
    );

    await expectPeerReachable(sandbox);

    const status = (await core.readNamespacedPodStatus({ namespace, name: 'sandboxed' })).status;
    expect(status?.phase).toBe('Running');
    expect(status?.podIP).toBe(sandbox.podIPs[0]);
    expect(status?.podIPs?.map(({ ip }) => ip)).toEqual(sandbox.podIPs);
    expect(sandbox.podIPs).toHaveLength(2);
  });

  it('uses the cgroupfs layout and the QoS class of the pod resources', async () => {
    const pod = await createPod(namespace, 'guaranteed', {
      spec: {
        containers: [
          { name: 'app', image: 'registry.invalid/app:1', resources: { limits: { cpu: '100m', memory: '64Mi' }, requests: { cpu: '100m', memory: '64Mi' } } },
        ],
      },
    });
    const uid = pod.metadata!.uid!;
    const sandbox = track(await createPodSandbox(pod, { cgroupDriver: 'cgroupfs', ipv6: false }));
    expect(await unifiedCgroup(sandbox.pausePid)).toMatch(new RegExp(`^0::/kubepods/pod${uid}/[0-9a-f]{64}$`));
    expect(await findPodPidsByUid(uid)).toEqual([sandbox.pausePid]);
    expect(sandbox.podIPs).toHaveLength(1);
    await expectPeerReachable(sandbox);
  });

  it.each<[CgroupDriver, (uid: string) => RegExp, (uid: string) => RegExp]>([
    [
      'cgroupfs',
      (uid) => new RegExp(`^0::/\\.\\./\\.\\./\\.\\./besteffort/pod${uid}/[0-9a-f]{64}$`, 'm'),
      (uid) => new RegExp(`^0::/\\.\\./\\.\\./\\.\\./pod${uid}/[0-9a-f]{64}$`, 'm'),
    ],
    [
      'systemd',
      (uid) =>
        new RegExp(
          `^0::/\\.\\./\\.\\./\\.\\./kubepods-besteffort\\.slice/kubepods-besteffort-pod${uid.replaceAll('-', '_')}\\.slice/cri-containerd-[0-9a-f]{64}\\.scope$`,
          'm',
        ),
      (uid) => new RegExp(`^0::/\\.\\./\\.\\./\\.\\./kubepods-pod${uid.replaceAll('-', '_')}\\.slice/cri-containerd-[0-9a-f]{64}\\.scope$`, 'm'),
    ],
  ])(
    'is found by an agent in a private cgroup namespace (%s driver), through the relative paths the kernel shows it',
    async (driver, bestEffortPath, guaranteedPath) => {
      const limits = { cpu: '100m', memory: '64Mi' };
      const bestEffort = await createPod(namespace, `private-view-be-${driver}`);
      const guaranteed = await createPod(namespace, `private-view-g-${driver}`, {
        spec: { nodeName, containers: [{ name: 'app', image: 'registry.invalid/app:1', resources: { limits, requests: limits } }] },
      });
      const made = [
        track(await createPodSandbox(bestEffort, { cgroupDriver: driver, ipv6: false })),
        track(await createPodSandbox(guaranteed, { cgroupDriver: driver, ipv6: false })),
      ];
      // The agent's own container cgroup: a Burstable pod of the same layout.
      const agentUid = randomUUID();
      const root = cgroup2MountPoint(await readFile('/proc/self/mountinfo', 'utf8'))!;
      const segments = kubeletCgroupSegments(agentUid, 'burstable', driver, randomBytes(32).toString('hex'));
      const containerDir = join(root, ...segments);
      await mkdir(containerDir, { recursive: true });
      onTestFinished(async () => {
        await rmdir(containerDir);
        await rmdir(join(root, ...segments.slice(0, -1)));
        // The QoS level is shared: left to whoever still has pods in it.
        await rmdir(join(root, ...segments.slice(0, -2))).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOTEMPTY' && error.code !== 'EBUSY') throw error;
        });
      });

      const uids = [bestEffort.metadata!.uid!, guaranteed.metadata!.uid!];
      const finderModule = join(import.meta.dirname, '../../controller/src/agent/netns-finder.ts');
      const pairs = uids.map((uid, i) => `${uid}=${made[i]!.pausePid}`);
      const inner = [process.execPath, '--input-type=module', '-e', FINDER, finderModule, agentUid, ...pairs];
      const child = spawn(process.execPath, ['-e', IN_CONTAINER_CGROUP, join(containerDir, 'cgroup.procs'), ...inner], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect(stderr).toBe('');
      expect(code).toBe(0);
      const seen = JSON.parse(stdout) as { view: string; found: Record<string, number | null>; cgroups: Record<string, string> };

      // What the kernel shows from there: no kubepods segment for cgroupfs (the form).
      expect(seen.cgroups[uids[0]!]).toMatch(bestEffortPath(uids[0]!));
      expect(seen.cgroups[uids[1]!]).toMatch(guaranteedPath(uids[1]!));
      expect(seen.found).toEqual({ [uids[0]!]: made[0]!.pausePid, [uids[1]!]: made[1]!.pausePid });
      expect(seen.view).toBe('private');
    },
  );

  it('gives every sandbox its own addresses', async () => {
    const pods = await Promise.all(['a', 'b', 'c'].map((suffix) => createPod(namespace, `unique-${suffix}`)));
    const made = await Promise.all(pods.map((pod) => createPodSandbox(pod).then(track)));
    const all = made.flatMap((sandbox) => [...sandbox.podIPs, ...sandbox.peerIPs]);
    expect(new Set(all).size).toBe(all.length);
    expect(new Set(made.map((sandbox) => sandbox.netnsInode)).size).toBe(made.length);
  });

  it('keeps a downward-API annotations file the way the kubelet does', async () => {
    const annotationsDir = await mkdtemp(join(tmpdir(), 'pnc-podinfo-'));
    onTestFinished(() => rm(annotationsDir, { recursive: true, force: true }));
    const initial = { 'example.com/b': 'two "quoted"\nlines', 'example.com/a': 'plain' };
    const pod = await createPod(namespace, 'downward', { metadata: { name: 'downward', annotations: initial } });
    const sandbox = track(await createPodSandbox(pod, { annotationsDir }));

    expect(sandbox.annotationsFile).toBe(join(annotationsDir, 'annotations'));
    expect(await readFile(sandbox.annotationsFile!, 'utf8')).toBe('example.com/a="plain"\nexample.com/b="two \\"quoted\\"\\nlines"');
    expect(await readlink(join(annotationsDir, 'annotations'))).toBe('..data/annotations');
    const firstDir = await readlink(join(annotationsDir, '..data'));
    expect(firstDir).toMatch(/^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d+$/);

    const updated = { ...initial, 'pod-network-controller.io/status': '{"state":"initialized"}' };
    await sandbox.writeAnnotations(updated);
    const secondDir = await readlink(join(annotationsDir, '..data'));
    expect(secondDir).not.toBe(firstDir);
    expect(await readFile(sandbox.annotationsFile!, 'utf8')).toBe(formatDownwardApiAnnotations(updated));
    // The old timestamped dir is gone, and no temporary link is left behind.
    expect((await readdir(annotationsDir)).sort()).toEqual([secondDir, '..data', 'annotations'].sort());

    await sandbox.destroy();
    expect(existsSync(annotationsDir)).toBe(false);
  });

  it('recreates the sandbox with a new netns and pause process, and removes everything on destroy', async () => {
    const pod = await createPod(namespace, 'restarted');
    const uid = pod.metadata!.uid!;
    const sandbox = await createPodSandbox(pod, { kc: admin });
    onTestFinished(() => sandbox.destroy());
    const before = { netnsPath: sandbox.netnsPath, netnsInode: sandbox.netnsInode, pausePid: sandbox.pausePid, cgroup: await unifiedCgroup(sandbox.pausePid) };

    await sandbox.recreate();
    expect(sandbox.netnsInode).not.toBe(before.netnsInode);
    expect(existsSync(before.netnsPath)).toBe(false);
    expect(existsSync(`/proc/${before.pausePid}`) && (await unifiedCgroup(before.pausePid)) === before.cgroup).toBe(false);
    expect(await findPodPidsByUid(uid)).toEqual([sandbox.pausePid]);
    expect(await netnsInode(sandbox.pausePid)).toBe(sandbox.netnsInode);
    expect(await unifiedCgroup(sandbox.pausePid)).not.toBe(before.cgroup);
    await expectPeerReachable(sandbox);

    const cgroupDir = (await unifiedCgroup(sandbox.pausePid))!.slice('0::'.length);
    await sandbox.destroy();
    expect(await findPodPidsByUid(uid)).toEqual([]);
    expect(existsSync(sandbox.netnsPath)).toBe(false);
    expect(existsSync(sandbox.peerNetnsPath)).toBe(false);
    const unified = cgroup2MountPoint(await readFile('/proc/self/mountinfo', 'utf8'))!;
    expect(existsSync(join(unified, cgroupDir))).toBe(false);
    expect(existsSync(join(unified, cgroupDir, '..'))).toBe(false);
  });

  it('refuses a pod that is not scheduled, naming the pod and the field', async () => {
    const pod: V1Pod = { metadata: { name: 'unscheduled', namespace, uid: '00000000-0000-4000-8000-000000000001' }, spec: { containers: [] } };
    await expect(createPodSandbox(pod)).rejects.toThrow(PodSandboxError);
    await expect(createPodSandbox(pod)).rejects.toThrow(`pod ${namespace}/unscheduled: spec.nodeName is required to make its sandbox (got undefined)`);
  });

  it('removes the sandboxes of a process that crashed without destroying them', async () => {
    const pod = await createPod(namespace, 'orphaned');
    const uid = pod.metadata!.uid!;
    const program = `
      const { createPodSandbox } = await import(${JSON.stringify(new URL('../../hack/lib/pod-sandbox.ts', import.meta.url).href)});
      const sandbox = await createPodSandbox(JSON.parse(process.argv[1]));
      console.log(JSON.stringify({ netnsPath: sandbox.netnsPath, peerNetnsPath: sandbox.peerNetnsPath, pausePid: sandbox.pausePid }));
      setInterval(() => {}, 1000);`;
    const crashing = spawn(process.execPath, ['--input-type=module', '-e', program, JSON.stringify(pod)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const made = await new Promise<{ netnsPath: string; peerNetnsPath: string; pausePid: number }>((resolve, reject) => {
      let out = '';
      crashing.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('\n')) resolve(JSON.parse(out) as { netnsPath: string; peerNetnsPath: string; pausePid: number });
      });
      crashing.on('exit', (code) => reject(new Error(`sandbox process exited ${code} before making its sandbox`)));
    });
    expect(await findPodPidsByUid(uid)).toEqual([made.pausePid]);
    const exited = new Promise((resolve) => crashing.on('exit', resolve));
    crashing.kill('SIGKILL');
    await exited;

    // A sweep by a parallel test process may come first; either way the orphan must be gone.
    await sweepStaleSandboxes();
    expect(await findPodPidsByUid(uid)).toEqual([]);
    expect(existsSync(made.netnsPath)).toBe(false);
    expect(existsSync(made.peerNetnsPath)).toBe(false);
  });
});
