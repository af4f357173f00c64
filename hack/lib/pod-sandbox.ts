// Pod-sandbox simulator: stands in for kubelet + CNI on one node, so the controller's tests
// find pods through /proc exactly as on a real node. Per pod it makes:
// - a pod netns with `eth0` (one veth end) and a "peer" netns on the other end (the node side /
//   a remote host, where tests run listeners), with documentation addresses unique per sandbox;
// - a long-lived pause process (`sleep infinity`) in the pod netns, moved into a kubelet-shaped
//   cgroup on the machine's cgroup2 hierarchy (systemd or cgroupfs layout, QoS level included);
// - optionally a downward-API annotations volume kept up to date the way the kubelet does;
// - optionally status.podIP(s)/hostIP(s)/phase written through the pods/status subresource.
//
// Addressing: sandbox slot k (0..255) owns one /31 and one /64: k < 128 -> 198.51.100.2k/31,
// else 203.0.113.2(k-128)/31, and 2001:db8:5ad:<k hex>::/64; the peer holds the even address
// (::1), the pod the odd one (::2) with default routes via the peer. Slots are claimed across
// processes with exclusive-create files in /run/pod-network-controller/sandboxes, which also
// record what was made, so sandboxes of a crashed process are removed by the next one.
// Needs root. Never touches the host netns: both veth ends are created inside their netns.
import { CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { removeAtomicVolume, writeAnnotationsVolume } from './downward-api.ts';
import { cgroup2MountPoint, kubeletCgroupSegments, podQosClass } from './kubelet-cgroup.ts';
import type { CgroupDriver, QosClass } from './kubelet-cgroup.ts';
import { isSameProcessAlive, processStartTime } from './proc.ts';
import { mustAsync } from './process.ts';

export { formatDownwardApiAnnotations } from './downward-api.ts';

export interface PodSandboxOptions {
  /** When given, status.podIP(s), hostIP(s), startTime and phase are written through pods/status. */
  kc?: KubeConfig;
  /** Kubelet cgroup driver layout (default systemd). */
  cgroupDriver?: CgroupDriver;
  /** Keep a downward-API `annotations` file (fieldRef metadata.annotations) in this directory. */
  annotationsDir?: string;
  /** Also give the sandbox IPv6 addresses (default true). */
  ipv6?: boolean;
}

export interface PodSandbox {
  netnsPath: string;
  netnsInode: number;
  pausePid: number;
  podIPs: string[];
  peerNetnsPath: string;
  peerIPs: string[];
  /** The pause process's cgroup as /proc/PID/cgroup shows it (`0::` line). */
  cgroupPath: string;
  annotationsFile?: string;
  /** Rewrites the downward-API file (atomic `..data` swap), as the kubelet does after an annotation change. */
  writeAnnotations(annotations: Record<string, string>): Promise<void>;
  /** A new pod netns and pause process for the same pod (sandbox restart, node reboot); same addresses and peer. */
  recreate(): Promise<void>;
  /** Removes everything the sandbox made, the annotations volume included (idempotent). */
  destroy(): Promise<void>;
}

/** Bad input or a failed step, naming the pod. */
export class PodSandboxError extends Error {
  override name = 'PodSandboxError';
}

const SLOTS = 256;
const STATE_DIR = '/run/pod-network-controller/sandboxes';
const NETNS_DIR = '/run/netns';
const POD_IFNAME = 'eth0';
const PEER_IFNAME = 'vpod';

export interface SandboxAddresses {
  pod: { ipv4: string; ipv6: string };
  peer: { ipv4: string; ipv6: string };
  ipv4PrefixLength: 31;
  ipv6PrefixLength: 64;
}

/** The addresses of sandbox slot K (0..255): see the file comment. */
export function sandboxAddresses(slot: number): SandboxAddresses {
  if (!Number.isInteger(slot) || slot < 0 || slot >= SLOTS) throw new RangeError(`sandbox slot ${slot} is not in 0..${SLOTS - 1}`);
  const network = slot < 128 ? '198.51.100' : '203.0.113';
  const even = 2 * (slot % 128);
  // The apiserver wants canonical IPv6 text (2001:db8:5ad::2, not 2001:db8:5ad:0::2); URL parsing makes it.
  const canonicalIpv6 = (text: string) => new URL(`http://[${text}]/`).hostname.slice(1, -1);
  const ipv6Prefix = `2001:db8:5ad:${slot.toString(16)}`;
  return {
    pod: { ipv4: `${network}.${even + 1}`, ipv6: canonicalIpv6(`${ipv6Prefix}::2`) },
    peer: { ipv4: `${network}.${even}`, ipv6: canonicalIpv6(`${ipv6Prefix}::1`) },
    ipv4PrefixLength: 31,
    ipv6PrefixLength: 64,
  };
}

/** What a slot claim file records: enough to undo the sandbox after its owner died. */
interface SandboxRecord {
  ownerPid: number;
  ownerStart: string;
  pod: string;
  netns: string[];
  /** Cgroup dirs this sandbox made, deepest first. */
  cgroupDirs: string[];
  pausePid?: number;
  annotationsDir?: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const errno = (error: unknown) => (error as NodeJS.ErrnoException).code;

async function cgroupRoot(): Promise<string> {
  const mountPoint = cgroup2MountPoint(await readFile('/proc/self/mountinfo', 'utf8'));
  if (!mountPoint) throw new PodSandboxError('no cgroup2 hierarchy is mounted (see /proc/self/mountinfo)');
  return mountPoint;
}

/** Creates ROOT/segments..., retrying when a concurrent cleanup removes an empty shared parent meanwhile. */
async function makeCgroupDirs(root: string, segments: string[]): Promise<string[]> {
  const made: string[] = [];
  for (let attempt = 0; ; attempt++) {
    try {
      let path = root;
      for (const segment of segments) {
        path = join(path, segment);
        try {
          await mkdir(path);
          made.unshift(path);
        } catch (error) {
          if (errno(error) !== 'EEXIST') throw error;
        }
      }
      return made;
    } catch (error) {
      if (errno(error) !== 'ENOENT' || attempt >= 10) throw error;
    }
  }
}

/** Removes a cgroup dir once its processes have left it (they leave a moment after dying). */
async function removeCgroupDir(path: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(path);
      return;
    } catch (error) {
      if (errno(error) === 'ENOENT') return;
      if (errno(error) !== 'EBUSY' || attempt >= 50) throw error;
      await sleep(20);
    }
  }
}

/** Removes the shared kubepods levels above a pod when nothing else lives there any more. */
async function removeEmptyParents(root: string, segments: string[]): Promise<void> {
  for (let depth = segments.length - 1; depth >= 1; depth--) {
    try {
      await rmdir(join(root, ...segments.slice(0, depth)));
    } catch {
      return; // another pod still uses it (EBUSY/ENOTEMPTY), or it is gone already
    }
  }
}

async function killPause(pid: number, cgroupDirs: string[], root: string): Promise<void> {
  let cgroup: string;
  try {
    cgroup = (await readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n').find((line) => line.startsWith('0::')) ?? '';
  } catch {
    return; // already gone
  }
  // Only the process still in our cgroup is ours: the pid may have been reused.
  if (!cgroupDirs.some((dir) => cgroup === `0::${dir.slice(root.length)}`)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  for (let attempt = 0; attempt < 250; attempt++) {
    const state = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (!state || / Z /.test(state.slice(state.lastIndexOf(')')))) return;
    await sleep(20);
  }
}

async function deleteNetns(names: string[]): Promise<void> {
  const present: string[] = [];
  for (const name of names) {
    if (
      await stat(join(NETNS_DIR, name)).then(
        () => true,
        () => false,
      )
    )
      present.push(name);
  }
  if (present.length) await mustAsync(['ip', '-batch', '-'], present.map((name) => `netns del ${name}\n`).join(''));
}

async function undoRecord(record: SandboxRecord): Promise<void> {
  const root = await cgroupRoot();
  if (record.pausePid) await killPause(record.pausePid, record.cgroupDirs, root);
  await deleteNetns(record.netns);
  for (const dir of record.cgroupDirs) await removeCgroupDir(dir);
  if (record.annotationsDir) removeAtomicVolume(record.annotationsDir, ['annotations']);
  const deepest = record.cgroupDirs.at(-1);
  if (deepest) await removeEmptyParents(root, deepest.slice(root.length + 1).split('/'));
}

let sweptThisProcess = false;

/** Removes the sandboxes of processes that died without destroying them (a crashed test run). */
export async function sweepStaleSandboxes(): Promise<number> {
  await mkdir(STATE_DIR, { recursive: true });
  let swept = 0;
  for (const entry of await readdir(STATE_DIR)) {
    const path = join(STATE_DIR, entry);
    let record: SandboxRecord;
    try {
      record = JSON.parse(await readFile(path, 'utf8')) as SandboxRecord;
    } catch {
      continue; // being written, or taken by another sweeper
    }
    const reclaimer = /\.reclaim-(\d+)-(\d+)$/.exec(entry);
    if (reclaimer ? await isSameProcessAlive(Number(reclaimer[1]), reclaimer[2]!) : await isSameProcessAlive(record.ownerPid, record.ownerStart)) {
      continue;
    }
    // The rename decides which of several sweepers undoes it.
    const mine = `${path.replace(/\.reclaim-.*$/, '')}.reclaim-${process.pid}-${await processStartTime(process.pid)}`;
    try {
      await rename(path, mine);
    } catch {
      continue;
    }
    await undoRecord(record);
    await unlink(mine);
    swept++;
  }
  return swept;
}

async function claimSlot(record: SandboxRecord): Promise<{ slot: number; file: string }> {
  for (let pass = 0; pass < 2; pass++) {
    for (let slot = 0; slot < SLOTS; slot++) {
      const file = join(STATE_DIR, `${slot}.json`);
      try {
        await writeFile(file, JSON.stringify(record), { flag: 'wx' });
        return { slot, file };
      } catch (error) {
        if (errno(error) !== 'EEXIST') throw error;
      }
    }
    if (pass === 0) await sweepStaleSandboxes();
  }
  throw new PodSandboxError(`all ${SLOTS} sandbox slots are in use (claims in ${STATE_DIR})`);
}

function podRef(pod: V1Pod): string {
  return `${pod.metadata?.namespace ?? '?'}/${pod.metadata?.name ?? '?'}`;
}

async function waitForPause(pid: number, netnsInode: number, exited: () => string | undefined, pod: string): Promise<void> {
  for (let attempt = 0; attempt < 250; attempt++) {
    const why = exited();
    if (why) throw new PodSandboxError(`pod ${pod}: the pause process exited at once (${why})`);
    const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
    const inode = await stat(`/proc/${pid}/ns/net`).then(
      (s) => s.ino,
      () => 0,
    );
    if (comm === 'sleep\n' && inode === netnsInode) return;
    await sleep(20);
  }
  throw new PodSandboxError(`pod ${pod}: the pause process ${pid} did not reach its netns within 5 s`);
}

class SimulatedSandbox implements PodSandbox {
  netnsPath = '';
  netnsInode = 0;
  pausePid = 0;
  podIPs: string[];
  peerNetnsPath: string;
  peerIPs: string[];
  cgroupPath = '';
  annotationsFile?: string;

  readonly #pod: V1Pod;
  readonly #options: PodSandboxOptions;
  readonly #record: SandboxRecord;
  readonly #slot: number;
  /** Name of the peer netns (under /run/netns), the node side of the veth. */
  readonly #peerNetns: string;
  readonly #claimFile: string;
  readonly #cgroupRoot: string;
  readonly #qos: QosClass;
  #destroyed = false;

  constructor(pod: V1Pod, options: PodSandboxOptions, record: SandboxRecord, slot: number, claimFile: string, root: string) {
    this.#pod = pod;
    this.#options = options;
    this.#record = record;
    this.#slot = slot;
    this.#claimFile = claimFile;
    this.#cgroupRoot = root;
    this.#qos = podQosClass(pod);
    const addresses = sandboxAddresses(slot);
    const ipv6 = options.ipv6 ?? true;
    this.podIPs = ipv6 ? [addresses.pod.ipv4, addresses.pod.ipv6] : [addresses.pod.ipv4];
    this.peerIPs = ipv6 ? [addresses.peer.ipv4, addresses.peer.ipv6] : [addresses.peer.ipv4];
    this.#peerNetns = `pnc-s${slot}-peer-${randomBytes(3).toString('hex')}`;
    this.peerNetnsPath = join(NETNS_DIR, this.#peerNetns);
    if (options.annotationsDir) this.annotationsFile = join(options.annotationsDir, 'annotations');
  }

  get #podRef(): string {
    return podRef(this.#pod);
  }

  async #saveRecord(): Promise<void> {
    await writeFile(this.#claimFile, JSON.stringify(this.#record));
  }

  async #createPeer(): Promise<void> {
    this.#record.netns.push(this.#peerNetns);
    await this.#saveRecord();
    await mustAsync(['ip', 'netns', 'add', this.#peerNetns]);
  }

  /** The pod netns, its veth to the peer, addresses and routes on both ends. */
  async #createPodNetwork(): Promise<void> {
    const podNetns = `pnc-s${this.#slot}-pod-${randomBytes(3).toString('hex')}`;
    const peerNetns = this.#peerNetns;
    this.#record.netns.push(podNetns);
    await this.#saveRecord();
    await mustAsync(
      ['ip', '-batch', '-'],
      `netns add ${podNetns}\nlink add ${POD_IFNAME} netns ${podNetns} type veth peer name ${PEER_IFNAME} netns ${peerNetns}\n`,
    );
    const { pod, peer, ipv4PrefixLength, ipv6PrefixLength } = sandboxAddresses(this.#slot);
    const ipv6 = this.#options.ipv6 ?? true;
    const podSide = [
      `link set lo up`,
      `link set ${POD_IFNAME} up`,
      `address add ${pod.ipv4}/${ipv4PrefixLength} dev ${POD_IFNAME}`,
      `route add default via ${peer.ipv4}`,
    ];
    const peerSide = ['link set lo up', `link set ${PEER_IFNAME} up`, `address add ${peer.ipv4}/${ipv4PrefixLength} dev ${PEER_IFNAME}`];
    if (ipv6) {
      // nodad: usable at once, no duplicate address detection wait.
      podSide.push(`address add ${pod.ipv6}/${ipv6PrefixLength} dev ${POD_IFNAME} nodad`, `route add default via ${peer.ipv6}`);
      peerSide.push(`address add ${peer.ipv6}/${ipv6PrefixLength} dev ${PEER_IFNAME} nodad`);
    }
    await mustAsync(['ip', '-n', podNetns, '-batch', '-'], podSide.map((line) => `${line}\n`).join(''));
    await mustAsync(['ip', '-n', peerNetns, '-batch', '-'], peerSide.map((line) => `${line}\n`).join(''));
    this.netnsPath = join(NETNS_DIR, podNetns);
    this.netnsInode = (await stat(this.netnsPath)).ino;
  }

  /** The pause process in the pod netns and in the pod's kubelet-shaped container cgroup. */
  async #startPause(): Promise<void> {
    const uid = this.#pod.metadata!.uid!;
    const containerId = randomBytes(32).toString('hex');
    const segments = kubeletCgroupSegments(uid, this.#qos, this.#options.cgroupDriver ?? 'systemd', containerId);
    const containerDir = join(this.#cgroupRoot, ...segments);
    // Record before creating, so a crash right after still gets them removed. The pod's own
    // levels are ours; the shared kubepods levels above are only removed when left empty.
    const ownLevels = segments
      .map((_, depth) => join(this.#cgroupRoot, ...segments.slice(0, depth + 1)))
      .filter((dir) => dir.includes(uid) || dir.includes(uid.replaceAll('-', '_')))
      .reverse();
    this.#record.cgroupDirs = [...new Set([...ownLevels, ...this.#record.cgroupDirs])];
    await this.#saveRecord();
    await makeCgroupDirs(this.#cgroupRoot, segments);

    // setpriv --pdeathsig: the pause dies with the process that made it, so a crash leaks no processes.
    const child = spawn('nsenter', [`--net=${this.netnsPath}`, '--', 'setpriv', '--pdeathsig', 'KILL', '--', 'sleep', 'infinity'], {
      stdio: 'ignore',
    });
    let exited: string | undefined;
    child.on('error', (error) => (exited = error.message));
    child.on('exit', (code, signal) => (exited = `exit ${code ?? signal}`));
    child.unref();
    if (child.pid === undefined) {
      await sleep(0);
      throw new PodSandboxError(`pod ${this.#podRef}: cannot start the pause process: ${exited ?? 'no pid'}`);
    }
    this.pausePid = child.pid;
    this.#record.pausePid = child.pid;
    await this.#saveRecord();
    await writeFile(join(containerDir, 'cgroup.procs'), String(child.pid));
    await waitForPause(child.pid, this.netnsInode, () => exited, this.#podRef);
    this.cgroupPath = `/${segments.join('/')}`;
  }

  async #writeStatus(): Promise<void> {
    const { kc } = this.#options;
    if (!kc) return;
    const now = new Date();
    await kc.makeApiClient(CoreV1Api).patchNamespacedPodStatus(
      {
        name: this.#pod.metadata!.name!,
        namespace: this.#pod.metadata!.namespace!,
        fieldManager: 'pnc-pod-sandbox',
        body: {
          status: {
            phase: 'Running',
            podIP: this.podIPs[0],
            podIPs: this.podIPs.map((ip) => ({ ip })),
            hostIP: this.peerIPs[0],
            hostIPs: this.peerIPs.map((ip) => ({ ip })),
            startTime: this.#pod.status?.startTime ?? now,
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  async start(): Promise<void> {
    await this.#createPeer();
    await this.#createPodNetwork();
    await this.#startPause();
    if (this.#options.annotationsDir) await this.writeAnnotations(this.#pod.metadata?.annotations ?? {});
    await this.#writeStatus();
  }

  async writeAnnotations(annotations: Record<string, string>): Promise<void> {
    const dir = this.#options.annotationsDir;
    if (!dir) throw new PodSandboxError(`pod ${this.#podRef}: the sandbox was created without annotationsDir`);
    writeAnnotationsVolume(dir, annotations);
  }

  async recreate(): Promise<void> {
    if (this.#destroyed) throw new PodSandboxError(`pod ${this.#podRef}: recreate() after destroy()`);
    const oldNetns = this.netnsPath.slice(NETNS_DIR.length + 1);
    const oldContainerDir = join(this.#cgroupRoot, this.cgroupPath);
    await killPause(this.pausePid, [oldContainerDir], this.#cgroupRoot);
    // The kernel frees a deleted netns (and the veth in it) later, in a work queue: delete the
    // veth now, or the new one with the same peer name can meet "File exists".
    await mustAsync(['ip', '-n', this.#peerNetns, 'link', 'del', PEER_IFNAME]);
    await deleteNetns([oldNetns]);
    await removeCgroupDir(oldContainerDir);
    this.#record.netns = this.#record.netns.filter((name) => name !== oldNetns);
    this.#record.cgroupDirs = this.#record.cgroupDirs.filter((dir) => dir !== oldContainerDir);
    await this.#createPodNetwork();
    await this.#startPause();
    await this.#writeStatus();
  }

  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    await undoRecord(this.#record);
    await unlink(this.#claimFile).catch(() => undefined);
  }
}

/**
 * Creates the sandbox of POD (which must have metadata.uid, name, namespace and spec.nodeName,
 * i.e. a pod created in the apiserver and scheduled). On failure nothing is left behind.
 */
export async function createPodSandbox(pod: V1Pod, options: PodSandboxOptions = {}): Promise<PodSandbox> {
  const ref = podRef(pod);
  for (const [field, value] of [
    ['metadata.uid', pod.metadata?.uid],
    ['metadata.name', pod.metadata?.name],
    ['metadata.namespace', pod.metadata?.namespace],
    ['spec.nodeName', pod.spec?.nodeName],
  ] as const) {
    if (!value) throw new PodSandboxError(`pod ${ref}: ${field} is required to make its sandbox (got ${JSON.stringify(value)})`);
  }
  if (!/^[0-9a-f-]{36}$/.test(pod.metadata!.uid!)) {
    throw new PodSandboxError(`pod ${ref}: metadata.uid ${JSON.stringify(pod.metadata!.uid)} is not a UUID`);
  }
  if (process.getuid?.() !== 0) throw new PodSandboxError(`pod ${ref}: the sandbox simulator needs root (netns, veth, cgroups)`);
  if (!sweptThisProcess) {
    sweptThisProcess = true;
    await sweepStaleSandboxes();
  }
  const root = await cgroupRoot();
  const ownerStart = await processStartTime(process.pid);
  const record: SandboxRecord = {
    ownerPid: process.pid,
    ownerStart: ownerStart ?? '',
    pod: ref,
    netns: [],
    cgroupDirs: [],
    ...(options.annotationsDir && { annotationsDir: options.annotationsDir }),
  };
  const { slot, file } = await claimSlot(record);
  const sandbox = new SimulatedSandbox(pod, options, record, slot, file, root);
  try {
    await sandbox.start();
  } catch (error) {
    await sandbox.destroy().catch(() => undefined);
    if (error instanceof PodSandboxError) throw error;
    throw new PodSandboxError(`pod ${ref}: making its sandbox failed: ${(error as Error).message}`, { cause: error });
  }
  return sandbox;
}
