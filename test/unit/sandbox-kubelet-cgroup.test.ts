// Kubelet cgroup layout and QoS derivation used by the pod-sandbox simulator.
import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { cgroup2MountPoint, kubeletCgroupSegments, podQosClass } from '../../hack/lib/kubelet-cgroup.ts';

const uid = '1b638b03-d95d-4db3-b2b5-b80a8bc92e83';
const id = 'a'.repeat(64);

describe('kubeletCgroupSegments', () => {
  it('spells the systemd layout with the uid in underscores', () => {
    expect(kubeletCgroupSegments(uid, 'besteffort', 'systemd', id).join('/')).toBe(
      `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1b638b03_d95d_4db3_b2b5_b80a8bc92e83.slice/cri-containerd-${id}.scope`,
    );
    expect(kubeletCgroupSegments(uid, 'guaranteed', 'systemd', id).join('/')).toBe(
      `kubepods.slice/kubepods-pod1b638b03_d95d_4db3_b2b5_b80a8bc92e83.slice/cri-containerd-${id}.scope`,
    );
  });

  it('spells the cgroupfs layout with the uid in dashes', () => {
    expect(kubeletCgroupSegments(uid, 'burstable', 'cgroupfs', id).join('/')).toBe(`kubepods/burstable/pod${uid}/${id}`);
    expect(kubeletCgroupSegments(uid, 'guaranteed', 'cgroupfs', id).join('/')).toBe(`kubepods/pod${uid}/${id}`);
  });
});

describe('podQosClass', () => {
  const withResources = (...resources: object[]): V1Pod => ({
    spec: { containers: resources.map((r, i) => ({ name: `c${i}`, resources: r })) },
  });

  it('derives the class the way the kubelet does', () => {
    expect(podQosClass(withResources({}))).toBe('besteffort');
    expect(podQosClass(withResources({ requests: { cpu: '100m' } }))).toBe('burstable');
    expect(podQosClass(withResources({ limits: { cpu: '1', memory: '1Gi' } }))).toBe('guaranteed');
    expect(podQosClass(withResources({ limits: { cpu: '1', memory: '1Gi' } }, {}))).toBe('burstable');
    expect(podQosClass(withResources({ limits: { cpu: '1', memory: '1Gi' }, requests: { cpu: '500m', memory: '1Gi' } }))).toBe('burstable');
  });
});

describe('cgroup2MountPoint', () => {
  it('finds the cgroup2 mount of hybrid and pure-v2 machines', () => {
    const hybrid = [
      '30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755',
      '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
      '42 30 0:39 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
    ].join('\n');
    expect(cgroup2MountPoint(hybrid)).toBe('/sys/fs/cgroup/unified');
    expect(cgroup2MountPoint('35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate')).toBe('/sys/fs/cgroup');
    expect(cgroup2MountPoint('42 30 0:39 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory')).toBeUndefined();
  });
});
