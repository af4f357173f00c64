import { describe, expect, it } from 'vitest';
import { ownerOfCgroupFile, ownerOfCgroupPath } from '../../controller/src/agent/cgroup-path.ts';

const uid = '0f2c9a4e-5b7d-4c1e-9a3b-6d8e2f1a4c7b';
const uidUnderscores = uid.replaceAll('-', '_');
const id = 'a'.repeat(32) + '0123456789abcdef0123456789abcdef';

describe('cgroup path -> pod', () => {
  it.each([
    ['systemd containerd besteffort', `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uidUnderscores}.slice/cri-containerd-${id}.scope`],
    ['systemd CRI-O burstable', `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${uidUnderscores}.slice/crio-${id}.scope`],
    ['systemd docker guaranteed', `/kubepods.slice/kubepods-pod${uidUnderscores}.slice/docker-${id}.scope`],
    ['cgroupfs besteffort', `/kubepods/besteffort/pod${uid}/${id}`],
    ['cgroupfs guaranteed', `/kubepods/pod${uid}/${id}`],
    ['nested under a container cgroup', `/docker/${'b'.repeat(64)}/kubepods/burstable/pod${uid}/${id}`],
  ])('%s', (_name, path) => {
    expect(ownerOfCgroupPath(path)).toEqual({ podUid: uid, containerId: id });
  });

  it('names the pod even without a container segment (pod-level cgroup, conmon)', () => {
    expect(ownerOfCgroupPath(`/kubepods/besteffort/pod${uid}`)).toEqual({ podUid: uid });
    expect(ownerOfCgroupPath(`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uidUnderscores}.slice/crio-conmon-${id}.scope`)).toEqual({
      podUid: uid,
    });
  });

  it('ignores paths outside the kubelet hierarchy and look-alikes', () => {
    expect(ownerOfCgroupPath('/system.slice/containerd.service')).toBeUndefined();
    expect(ownerOfCgroupPath(`/user.slice/pod${uid}.slice`)).toBeUndefined();
    expect(ownerOfCgroupPath('/kubepods/besteffort/podnot-a-uid')).toBeUndefined();
    expect(ownerOfCgroupPath(`/kubepods/besteffort/xpod${uid}`)).toBeUndefined();
    expect(ownerOfCgroupPath('/')).toBeUndefined();
  });

  it('reads a cgroup v2 file and a hybrid v1 file', () => {
    expect(ownerOfCgroupFile(`0::/kubepods/besteffort/pod${uid}/${id}\n`)).toEqual({ podUid: uid, containerId: id });
    const hybrid = [
      '12:memory:/user.slice',
      '11:cpu,cpuacct:/user.slice',
      '1:name=systemd:/user.slice/user-0.slice/session-1.scope',
      `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uidUnderscores}.slice/cri-containerd-${id}.scope`,
      '',
    ].join('\n');
    expect(ownerOfCgroupFile(hybrid)).toEqual({ podUid: uid, containerId: id });
    expect(ownerOfCgroupFile('0::/init.scope\n')).toBeUndefined();
    expect(ownerOfCgroupFile('garbage without colons pod')).toBeUndefined();
  });
});
