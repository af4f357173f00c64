// Where the kubelet puts a pod's containers in the cgroup tree, for the pod-sandbox simulator.
// Pure functions: the simulator creates these paths under the machine's cgroup2 mount.
import type { V1Pod } from '@kubernetes/client-node';

export type CgroupDriver = 'systemd' | 'cgroupfs';
export type QosClass = 'besteffort' | 'burstable' | 'guaranteed';

/**
 * The pod's QoS class as the kubelet derives it: guaranteed when every container sets
 * cpu and memory limits equal to its requests, besteffort when none sets any, else burstable.
 */
export function podQosClass(pod: V1Pod): QosClass {
  const containers = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  let any = false;
  let guaranteed = containers.length > 0;
  for (const { resources } of containers) {
    const requests = { ...resources?.limits, ...resources?.requests };
    const limits = resources?.limits ?? {};
    if (Object.keys(requests).length > 0 || Object.keys(limits).length > 0) any = true;
    for (const resource of ['cpu', 'memory']) {
      if (limits[resource] === undefined || String(limits[resource]) !== String(requests[resource])) guaranteed = false;
    }
  }
  if (!any) return 'besteffort';
  return guaranteed ? 'guaranteed' : 'burstable';
}

/**
 * The cgroup path segments of one container of pod UID, from the root of the hierarchy:
 * systemd:  kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
 * cgroupfs: kubepods/besteffort/pod<uid>/<id>
 * (guaranteed pods sit directly under kubepods, without a QoS level).
 */
export function kubeletCgroupSegments(uid: string, qos: QosClass, driver: CgroupDriver, containerId: string): string[] {
  if (driver === 'cgroupfs') {
    return ['kubepods', ...(qos === 'guaranteed' ? [] : [qos]), `pod${uid}`, containerId];
  }
  const podUnit = uid.replaceAll('-', '_');
  if (qos === 'guaranteed') return ['kubepods.slice', `kubepods-pod${podUnit}.slice`, `cri-containerd-${containerId}.scope`];
  return ['kubepods.slice', `kubepods-${qos}.slice`, `kubepods-${qos}-pod${podUnit}.slice`, `cri-containerd-${containerId}.scope`];
}

/**
 * The mount point of the cgroup2 hierarchy from /proc/self/mountinfo text: /sys/fs/cgroup on
 * pure-v2 machines, /sys/fs/cgroup/unified on hybrid ones; undefined when there is none.
 */
export function cgroup2MountPoint(mountinfo: string): string | undefined {
  for (const line of mountinfo.split('\n')) {
    const [before, after] = line.split(' - ');
    if (after?.split(' ')[0] !== 'cgroup2') continue;
    // Mount points escape spaces and the like as octal (\040).
    const mountPoint = before?.split(' ')[4];
    if (mountPoint) return mountPoint.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  }
  return undefined;
}
