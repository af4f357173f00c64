// Which pod (and container) a process belongs to, from the lines of /proc/PID/cgroup.
// Pure. The kubelet names pod cgroups after the pod UID: with dashes under the cgroupfs
// driver (`<cgroupRoot>/kubepods/burstable/pod<uid>/<id>`), with underscores under the
// systemd driver (`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/
// cri-containerd-<id>.scope`; a cgroupRoot becomes a slice-name prefix). The kernel shows
// these paths relative to the reader's cgroup namespace: absolute from the host's, and with
// leading `..` from a container's private one (cgroup v2 gives every non-privileged container
// its own, rooted at the container's cgroup).

export interface CgroupOwner {
  /** Pod UID with dashes, as in metadata.uid. */
  podUid: string;
  /** Container (or sandbox) id when the path names one. */
  containerId?: string;
  /** CRI-O's conmon (`crio-conmon-<id>`): in the pod's cgroup, but never in the pod's netns. */
  conmon?: true;
}

/**
 * Where the reader stands. `host`: paths are absolute (the host's cgroup namespace; also a
 * privileged container, and any container on cgroup v1). `private`: the reader is a container
 * of pod ownPodUid in its own cgroup namespace, so `/` is its own container's cgroup and
 * `/../<scope>` its pod's other containers and sandbox.
 */
export type CgroupView = { kind: 'host' } | { kind: 'private'; ownPodUid: string };

export const HOST_VIEW: CgroupView = { kind: 'host' };

const uid = (sep: string) => ['{8}', '{4}', '{4}', '{4}', '{12}'].map((n) => `[0-9a-f]${n}`).join(sep);
const UID_DASHES = uid('-');
const UID_UNDERSCORES = uid('_');
// cgroupfs: `pod<uid>`, anchored by the `kubepods` segment above it.
const CGROUPFS_POD = new RegExp(`^pod(${UID_DASHES})$`);
// systemd: the slice name spells its ancestry (`a-b.slice` lives in `a.slice`), so a pod
// slice is under the kubelet's kubepods slice wherever it shows; `[root-]kubepods[-qos]-pod<uid_>.slice`.
const SYSTEMD_POD = new RegExp(`^(?:[\\w:.]+-)*kubepods(?:-(?:besteffort|burstable))?-pod(${UID_UNDERSCORES})\\.slice$`);
const QOS = new Set(['besteffort', 'burstable']);
// containerd `cri-containerd-<id>.scope`, CRI-O `crio-<id>.scope` (systemd) and `crio-<id>`
// (cgroupfs), docker `docker-<id>.scope`, containerd and docker under cgroupfs `<id>`. CRI-O's
// `crio-conmon-<id>` names no container of the pod: it is conmon's.
const CONTAINER_SEGMENT = /^(?:(?:cri-containerd|crio|docker)-)?([0-9a-f]{64})(?:\.scope)?$/;
const CONMON_SEGMENT = /^crio-conmon-[0-9a-f]{64}(?:\.scope)?$/;

interface Resolved {
  owner: CgroupOwner;
  /** Known only from the reader's own place in a private namespace, not from a pod segment. */
  own: boolean;
}

/** The pod owning one cgroup path, e.g. `/kubepods.slice/.../cri-containerd-<id>.scope` or `/../../../besteffort/pod<uid>/<id>`. */
export function ownerOfCgroupPath(path: string, view: CgroupView = HOST_VIEW): CgroupOwner | undefined {
  return resolve(path, view)?.owner;
}

function resolve(path: string, view: CgroupView): Resolved | undefined {
  if (!path.startsWith('/')) return undefined;
  const parts = path.split('/').filter((s) => s !== '');
  let up = 0;
  while (parts[up] === '..') up++;
  const down = parts.slice(up);
  if (down.includes('..') || down.includes('.')) return undefined;

  if (view.kind === 'private' && up <= 1) {
    // Inside the reader's own container (up 0) or beside it in its own pod's cgroup (up 1).
    return { owner: withContainer({ podUid: view.ownPodUid }, up === 1 ? down[0] : undefined), own: true };
  }
  // One level up from a container is its own pod, which only a reader in that pod can name.
  if (up === 1) return undefined;

  let found: { index: number; podUid: string } | undefined;
  for (let i = 0; i < down.length; i++) {
    const segment = down[i]!;
    const systemd = segment.endsWith('.slice') ? SYSTEMD_POD.exec(segment) : null;
    const cgroupfs = segment.startsWith('pod') ? CGROUPFS_POD.exec(segment) : null;
    if (!systemd && !(cgroupfs && cgroupfsAnchored(down, i, up))) continue;
    // Two pod segments (a node nested in a pod's container): the process is not plainly either's.
    if (found) return undefined;
    found = { index: i, podUid: (systemd ?? cgroupfs)![1]!.replaceAll('_', '-') };
  }
  if (!found) return undefined;
  return { owner: withContainer({ podUid: found.podUid }, down[found.index + 1]), own: false };
}

/**
 * A cgroupfs `pod<uid>` at down[i] counts only where the kubelet puts pods: right under
 * `kubepods` or under `kubepods/<qos>`. Seen from a private namespace rooted at a container
 * (2 levels under kubepods for a Guaranteed pod, 3 for the others) the `kubepods` segment is
 * gone: another pod of the reader's QoS class is `../../pod<uid>`, one of another class
 * `../../<qos>/pod<uid>` or `../../../<qos>/pod<uid>`, a Guaranteed pod `../../../pod<uid>`.
 * The reader's own class is not known, so both depths count; read at the wrong depth they
 * would land beside `kubepods` or in a child of a QoS cgroup named like one, where the kubelet
 * makes no pod cgroups.
 */
function cgroupfsAnchored(down: string[], i: number, up: number): boolean {
  if (down[i - 1] === 'kubepods' || (QOS.has(down[i - 1]!) && down[i - 2] === 'kubepods')) return true;
  if (up !== 2 && up !== 3) return false;
  return i === 0 || (i === 1 && QOS.has(down[0]!));
}

/** The owner with what the segment below the pod's cgroup says: a container, conmon, or nothing known. */
function withContainer(owner: CgroupOwner, segment: string | undefined): CgroupOwner {
  if (segment === undefined) return owner;
  if (CONMON_SEGMENT.test(segment)) return { ...owner, conmon: true };
  const container = CONTAINER_SEGMENT.exec(segment);
  return container ? { ...owner, containerId: container[1]! } : owner;
}

/** The owner both name, or undefined when they name different pods, containers, or a container and conmon. */
function merge(a: CgroupOwner | undefined, b: CgroupOwner): CgroupOwner | undefined {
  if (!a) return b;
  if (a.podUid !== b.podUid) return undefined;
  if (a.containerId && b.containerId && a.containerId !== b.containerId) return undefined;
  const containerId = a.containerId ?? b.containerId;
  const conmon = a.conmon ?? b.conmon;
  if (containerId && conmon) return undefined;
  return { podUid: a.podUid, ...(containerId && { containerId }), ...(conmon && { conmon }) };
}

/**
 * The owner from a whole /proc/PID/cgroup file (`hierarchy:controllers:path` lines; cgroup v2
 * has the one line `0::/path`, hybrid v1 one per hierarchy). Lines that name a pod must agree,
 * or the process is nobody's. Lines that stay in the reader's own pod count only when every
 * line does: on v1, a hierarchy the runtime leaves alone has the reader's namespace root at
 * the host's root, where any host process also reads `/`.
 */
export function ownerOfCgroupFile(text: string, view: CgroupView = HOST_VIEW): CgroupOwner | undefined {
  // Fast reject: most processes on a node are not in a pod.
  if (view.kind === 'host' && !text.includes('pod')) return undefined;
  let named: CgroupOwner | undefined;
  let own: CgroupOwner | undefined;
  let allOwn = true;
  const paths = cgroupPaths(text);
  for (let i = 0; i < paths.length; i++) {
    // v1 hierarchies mostly repeat the line before: it says nothing new.
    if (i > 0 && paths[i] === paths[i - 1]) continue;
    const resolved = resolve(paths[i]!, view);
    if (!resolved) {
      allOwn = false;
    } else if (resolved.own) {
      own = merge(own, resolved.owner);
      if (!own) return undefined;
    } else {
      allOwn = false;
      named = merge(named, resolved.owner);
      if (!named) return undefined;
    }
  }
  if (named) return named;
  return paths.length > 0 && allOwn ? own : undefined;
}

/** The path of each `hierarchy:controllers:path` line. */
function cgroupPaths(text: string): string[] {
  const paths: string[] = [];
  for (const line of text.split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first !== -1 && second !== -1) paths.push(line.slice(second + 1));
  }
  return paths;
}

/**
 * The reader's view from its own /proc/self/cgroup. Private only for a pod that knows its
 * UID and reads `/` on every line: a container in the host's namespace reads its kubepods
 * path, and a host process that reads `/` has no pod.
 */
export function cgroupViewOf(selfCgroup: string, ownPodUid: string | undefined): CgroupView {
  if (!ownPodUid) return HOST_VIEW;
  const paths = cgroupPaths(selfCgroup);
  return paths.length > 0 && paths.every((path) => path === '/') ? { kind: 'private', ownPodUid } : HOST_VIEW;
}
