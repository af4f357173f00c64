// Which pod (and container) a process belongs to, from the lines of /proc/PID/cgroup.
// Pure. The kubelet names pod cgroups after the pod UID: with dashes under the
// cgroupfs driver (`/kubepods/burstable/pod<uid>/<id>`), with underscores under the
// systemd driver (`kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope`).

export interface CgroupOwner {
  /** Pod UID with dashes, as in metadata.uid. */
  podUid: string;
  /** Container (or sandbox) id when the path names one. */
  containerId?: string;
}

const HEX = '[0-9a-f]';
const UID = `${HEX}{8}[-_]${HEX}{4}[-_]${HEX}{4}[-_]${HEX}{4}[-_]${HEX}{12}`;
// The pod segment: `pod<uid>` (cgroupfs) or `kubepods[-qos]-pod<uid>.slice` (systemd).
const POD_SEGMENT = new RegExp(`^(?:kubepods(?:-(?:besteffort|burstable|guaranteed))?-)?pod(${UID})(?:\\.slice)?$`);
// containerd `cri-containerd-<id>.scope`, CRI-O `crio-<id>.scope`, docker `docker-<id>.scope`, cgroupfs `<id>`.
const CONTAINER_SEGMENT = /^(?:(?:cri-containerd|crio|docker)-)?([0-9a-f]{64})(?:\.scope)?$/;

/** The pod owning a cgroup path such as `/kubepods.slice/.../cri-containerd-<id>.scope`. */
export function ownerOfCgroupPath(path: string): CgroupOwner | undefined {
  const segments = path.split('/');
  // Only paths under the kubelet's hierarchy, so a unit named like a pod elsewhere cannot match.
  if (!segments.some((s) => s === 'kubepods' || s.startsWith('kubepods.') || s.startsWith('kubepods-'))) return undefined;
  for (let i = 0; i < segments.length; i++) {
    const match = POD_SEGMENT.exec(segments[i]!);
    if (!match) continue;
    const owner: CgroupOwner = { podUid: match[1]!.replaceAll('_', '-') };
    const container = CONTAINER_SEGMENT.exec(segments[i + 1] ?? '');
    if (container) owner.containerId = container[1]!;
    return owner;
  }
  return undefined;
}

/**
 * The owner from a whole /proc/PID/cgroup file (`hierarchy:controllers:path` lines;
 * cgroup v2 has the one line `0::/path`, hybrid v1 has several naming the same pod).
 */
export function ownerOfCgroupFile(text: string): CgroupOwner | undefined {
  // Fast reject: most processes on a node are not in a pod.
  if (!text.includes('pod')) return undefined;
  for (const line of text.split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first === -1 || second === -1) continue;
    const owner = ownerOfCgroupPath(line.slice(second + 1));
    if (owner) return owner;
  }
  return undefined;
}
