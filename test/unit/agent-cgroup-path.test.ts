// cgroup path -> pod, for every layout the agent may see. Where each string comes from:
// - "recorded on a real node": the systemd + cgroup v2 VM node (containerd, SystemdCgroup = true,
//   kubelet cgroupDriver systemd), read from a non-privileged hostPID container like our DaemonSet's
//   and from the host; "recorded on the VM node": the same shape, our hack/vm-node.sh, verbatim;
// - "lab node": our local node (containerd, cgroupfs, cgroup v1 hybrid): this machine's hierarchies
//   with the kubelet's cgroupRoot /pnc-node-<slot>;
// - "issue": the cgroupfs + cgroup v2 relative form named in the issue;
// - "from CRI-O's source": its cgroup managers name a container `crio-<id>.scope` (systemd) or
//   `crio-<id>` (cgroupfs), conmon `crio-conmon-<id>.scope` or `crio-conmon-<id>`, both under the
//   kubelet's pod cgroup; crun adds a `container` child;
// - "recorded on a real node (CRI-O 1.34, cgroupfs, cgroup v1 hybrid)": our local node with
//   `--runtime cri-o` (conmon in the pod's cgroup, the infra container dropped), read from the host;
// - "derived": the same layouts from another QoS class or cgroupRoot, not recorded anywhere.
// <uid>, <uid_> and <id> of the recorded strings are filled in below.
import { describe, expect, it } from 'vitest';
import { cgroupViewOf, ownerOfCgroupFile, ownerOfCgroupPath, type CgroupView } from '../../controller/src/agent/cgroup-path.ts';

const uid = '0f2c9a4e-5b7d-4c1e-9a3b-6d8e2f1a4c7b';
const uid_ = uid.replaceAll('-', '_');
const other = '7e1d2c3b-4a59-4867-8f90-a1b2c3d4e5f6';
const own = 'c0ffee00-1234-4abc-8def-0123456789ab';
const id = 'a'.repeat(32) + '0123456789abcdef0123456789abcdef';
const id2 = 'b'.repeat(64);
const fill = (s: string) => s.replaceAll('<uid_>', uid_).replaceAll('<uid>', uid).replaceAll('<id>', id);
const PRIVATE: CgroupView = { kind: 'private', ownPodUid: own };

// [source, path, owner]; `pod` = { podUid: uid }, `container` = also containerId id.
const pod = { podUid: uid };
const container = { podUid: uid, containerId: id };
const conmon = { podUid: uid, conmon: true };

describe('cgroup path -> pod, from the host cgroup namespace (absolute paths)', () => {
  it.each([
    [
      'recorded on a real node: systemd v2 BestEffort',
      '/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/cri-containerd-<id>.scope',
      container,
    ],
    [
      'recorded on a real node: systemd v2 Burstable',
      '/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope',
      container,
    ],
    ['recorded on a real node: systemd v2 Guaranteed', '/kubepods.slice/kubepods-pod<uid_>.slice/cri-containerd-<id>.scope', container],
    ['lab node: cgroupfs under --cgroup-root, BestEffort', '/pnc-node-3/kubepods/besteffort/pod<uid>/<id>', container],
    ['lab node: cgroupfs under --cgroup-root, Guaranteed', '/pnc-node-3/kubepods/pod<uid>/<id>', container],
    ['derived: cgroupfs, default cgroupRoot, Burstable', '/kubepods/burstable/pod<uid>/<id>', container],
    [
      'derived: systemd with a cgroupRoot slice prefixing the slice names',
      '/pnc.slice/pnc-kubepods.slice/pnc-kubepods-burstable.slice/pnc-kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope',
      container,
    ],
    ['derived: a kind node (kubepods inside a docker container cgroup)', `/docker/${id2}/kubepods/burstable/pod<uid>/<id>`, container],
    ['derived: docker under systemd', '/kubepods.slice/kubepods-pod<uid_>.slice/docker-<id>.scope', container],
    ["from CRI-O's source: systemd container scope", '/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/crio-<id>.scope', container],
    [
      "from CRI-O's source: systemd, crun's child cgroup",
      '/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/crio-<id>.scope/container',
      container,
    ],
    ["from CRI-O's source: systemd, the dropped infra container's empty cgroup", '/kubepods.slice/kubepods-pod<uid_>.slice/crio-<id>', container],
    [
      "from CRI-O's source: systemd conmon (conmon_cgroup = pod)",
      '/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/crio-conmon-<id>.scope',
      conmon,
    ],
    ["from CRI-O's source: cgroupfs container", '/kubepods/burstable/pod<uid>/crio-<id>', container],
    ["from CRI-O's source: cgroupfs conmon", '/kubepods/besteffort/pod<uid>/crio-conmon-<id>', conmon],
    ['recorded on a real node (CRI-O 1.34, cgroupfs, cgroup v1 hybrid): container', '/pnc-node-0/kubepods/burstable/pod<uid>/crio-<id>', container],
    ['recorded on a real node (CRI-O 1.34, cgroupfs, cgroup v1 hybrid): conmon', '/pnc-node-0/kubepods/burstable/pod<uid>/crio-conmon-<id>', conmon],
    ['derived: the pod-level cgroup itself', '/kubepods/besteffort/pod<uid>', pod],
  ])('%s', (_source, path, owner) => {
    expect(ownerOfCgroupPath(fill(path))).toEqual(owner);
  });
});

describe('cgroup path -> pod, from a private cgroup namespace (cgroup v2, non-privileged container)', () => {
  it.each([
    ['recorded on a real node: systemd, other pod of the same QoS class', '/../../kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope', container],
    [
      'recorded on a real node: systemd, other QoS class',
      '/../../../kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/cri-containerd-<id>.scope',
      container,
    ],
    ['recorded on a real node: systemd, Guaranteed', '/../../../kubepods-pod<uid_>.slice/cri-containerd-<id>.scope', container],
    ['issue: cgroupfs, other QoS class', '/../../../besteffort/pod<uid>/<id>', container],
    ['derived: cgroupfs, same QoS class', '/../../pod<uid>/<id>', container],
    ['derived: cgroupfs, Guaranteed seen from Burstable', '/../../../pod<uid>/<id>', container],
    ['derived: cgroupfs, BestEffort seen from Guaranteed', '/../../besteffort/pod<uid>/<id>', container],
    ['derived: cgroupfs under --cgroup-root, from deeper', '/../../../../../pnc-node-3/kubepods/burstable/pod<uid>/<id>', container],
    ["from CRI-O's source: systemd, other QoS class", '/../../../kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/crio-<id>.scope', container],
    ["from CRI-O's source: cgroupfs, same QoS class", '/../../pod<uid>/crio-<id>', container],
    ["from CRI-O's source: cgroupfs conmon", '/../../../besteffort/pod<uid>/crio-conmon-<id>', conmon],
  ])('%s', (_source, path, owner) => {
    // The `..` count and the names say where they lead, whether or not the reader knows its own pod.
    expect(ownerOfCgroupPath(fill(path), PRIVATE)).toEqual(owner);
    expect(ownerOfCgroupPath(fill(path))).toEqual(owner);
  });

  it.each([
    ['recorded on a real node: itself', '/', { podUid: own }],
    ['recorded on a real node: its own pod sandbox', '/../cri-containerd-<id>.scope', { podUid: own, containerId: id }],
    ["from CRI-O's source: its own pod's other container", '/../crio-<id>.scope', { podUid: own, containerId: id }],
    ["from CRI-O's source: its own pod's conmon", '/../crio-conmon-<id>.scope', { podUid: own, conmon: true }],
    ['derived: cgroupfs, its own pod sandbox', '/../<id>', { podUid: own, containerId: id }],
    ['derived: a child of its own cgroup (crun)', '/container', { podUid: own }],
  ])("names the reader's own pod: %s", (_source, path, owner) => {
    expect(ownerOfCgroupPath(fill(path), PRIVATE)).toEqual(owner);
    // Without knowing it reads from its own pod's namespace, nobody's: `/` is the host's root there.
    expect(ownerOfCgroupPath(fill(path))).toBeUndefined();
  });

  it('never reads a pod segment inside its own pod as another pod', () => {
    expect(ownerOfCgroupPath(fill('/kubepods/besteffort/pod<uid>/<id>'), PRIVATE)).toEqual({ podUid: own });
    expect(ownerOfCgroupPath(fill('/../pod<uid>/<id>'), PRIVATE)).toEqual({ podUid: own });
  });
});

describe('fails closed', () => {
  it.each([
    ['the root', '/'],
    ['the host init', '/init.scope'],
    ['a service', '/system.slice/containerd.service'],
    ['a pod-like unit outside kubepods', `/user.slice/pod${uid}.slice`],
    ['not a UID', '/kubepods/besteffort/podnot-a-uid'],
    ['a prefixed pod segment', `/kubepods/besteffort/xpod${uid}`],
    ['cgroupfs UID with underscores', `/kubepods/besteffort/pod${uid_}/${id}`],
    ['systemd UID with dashes', `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid}.slice/cri-containerd-${id}.scope`],
    ['cgroupfs pod outside kubepods', `/besteffort/pod${uid}/${id}`],
    ['cgroupfs pod under something not a QoS class', `/kubepods/other/pod${uid}/${id}`],
    ['relative, too far up for a kubelet layout', `/../../../../pod${uid}/${id}`],
    ['relative, under something not a QoS class', `/../../system.slice/pod${uid}/${id}`],
    ['relative, one level up (only the own pod can be there)', `/../pod${uid}/${id}`],
    ['a node nested in a pod: two pod segments', `/kubepods/burstable/pod${other}/${id2}/kubepods/besteffort/pod${uid}/${id}`],
    ['a `..` after a name (the kernel never prints one)', `/kubepods/../kubepods/besteffort/pod${uid}/${id}`],
    ['not a path', `kubepods/besteffort/pod${uid}/${id}`],
  ])('%s', (_name, path) => {
    expect(ownerOfCgroupPath(path)).toBeUndefined();
  });
});

describe('a whole /proc/PID/cgroup file', () => {
  // This machine's hierarchies (the lab node's), as the kubelet lays a pod out under its cgroupRoot.
  const hybrid = (path: string, overrides: Record<string, string> = {}) =>
    ['9:name=systemd', '8:pids', '7:blkio', '6:freezer', '5:devices', '4:memory', '3:cpuset', '2:cpuacct', '1:cpu', '0:']
      .map((h) => `${h}:${overrides[h] ?? path}`)
      .join('\n') + '\n';

  it.each([
    ['recorded on a real node: cgroup v2, systemd', `0::/kubepods.slice/kubepods-pod${uid_}.slice/cri-containerd-${id}.scope\n`],
    ['lab node: cgroup v1 hybrid, cgroupfs, every hierarchy', hybrid(`/pnc-node-3/kubepods/besteffort/pod${uid}/${id}`)],
    [
      'derived: cgroup v1 hybrid, a hierarchy the runtime leaves at the root',
      hybrid(`/pnc-node-3/kubepods/besteffort/pod${uid}/${id}`, { '5:devices': '/', '0:': '/' }),
    ],
    ['derived: cgroup v1, systemd driver', hybrid(`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${uid_}.slice/cri-containerd-${id}.scope`)],
    ["from CRI-O's source: cgroup v1, cgroupfs", hybrid(`/kubepods/burstable/pod${uid}/crio-${id}`)],
    // runc puts the container in every v1 hierarchy, name=systemd and the unified one included.
    ['recorded on a real node (CRI-O 1.34, cgroupfs, cgroup v1 hybrid): a container', hybrid(`/pnc-node-0/kubepods/burstable/pod${uid}/crio-${id}`)],
  ])('%s', (_source, text) => {
    expect(ownerOfCgroupFile(text)).toEqual(container);
  });

  it('recorded on a real node (CRI-O 1.34, cgroupfs, cgroup v1 hybrid): conmon, left at the root of name=systemd and the unified hierarchy', () => {
    const text = hybrid(`/pnc-node-0/kubepods/burstable/pod${uid}/crio-conmon-${id}`, { '9:name=systemd': '/', '0:': '/' });
    expect(ownerOfCgroupFile(text)).toEqual(conmon);
  });

  it('refuses lines that disagree (two pods, two containers, a container and conmon)', () => {
    expect(ownerOfCgroupFile(hybrid(`/kubepods/besteffort/pod${uid}/${id}`, { '4:memory': `/kubepods/besteffort/pod${other}/${id}` }))).toBeUndefined();
    expect(ownerOfCgroupFile(hybrid(`/kubepods/besteffort/pod${uid}/${id}`, { '4:memory': `/kubepods/besteffort/pod${uid}/${id2}` }))).toBeUndefined();
    expect(
      ownerOfCgroupFile(hybrid(`/kubepods/besteffort/pod${uid}/crio-${id}`, { '4:memory': `/kubepods/besteffort/pod${uid}/crio-conmon-${id}` })),
    ).toBeUndefined();
  });

  it('ignores what is not a pod', () => {
    expect(ownerOfCgroupFile('0::/init.scope\n')).toBeUndefined();
    expect(ownerOfCgroupFile('12:memory:/user.slice\n1:name=systemd:/user.slice/user-0.slice/session-1.scope\n0::/user.slice\n')).toBeUndefined();
    expect(ownerOfCgroupFile('garbage without colons pod')).toBeUndefined();
    expect(ownerOfCgroupFile('', PRIVATE)).toBeUndefined();
  });

  it("from a private namespace: the reader's own pod only when every line stays in it", () => {
    expect(ownerOfCgroupFile('0::/\n', PRIVATE)).toEqual({ podUid: own });
    expect(ownerOfCgroupFile(`0::/../cri-containerd-${id}.scope\n`, PRIVATE)).toEqual({ podUid: own, containerId: id });
    // cgroup v1 in a private namespace: a hierarchy the runtime left alone is rooted at the host's root.
    const leftAtRoot = { '5:devices': '/' };
    expect(ownerOfCgroupFile(hybrid(`/../${id}`, leftAtRoot), PRIVATE)).toEqual({ podUid: own, containerId: id });
    // A host process there reads `/` too, on that one line: not the reader's pod.
    expect(ownerOfCgroupFile(hybrid('/../../../../system.slice/cron.service', leftAtRoot), PRIVATE)).toBeUndefined();
    // Another pod's process, with the same `/` line: that pod.
    expect(ownerOfCgroupFile(hybrid(`/../../../besteffort/pod${uid}/${id}`, leftAtRoot), PRIVATE)).toEqual(container);
    expect(ownerOfCgroupFile('0::/../../../../init.scope\n', PRIVATE)).toBeUndefined();
  });
});

describe('recorded on the VM node (hack/vm-node.sh: systemd 252, cgroup v2 only, containerd 1.6.20 with SystemdCgroup, kubelet v1.34.4 cgroupDriver systemd), verbatim', () => {
  // A BestEffort pod "probe" (non-privileged, hostPID), its sandbox, a BestEffort privileged pod
  // and a Burstable pod, all on the VM node; read from the guest's root cgroup namespace and from
  // the probe's container, which has a private one.
  const probe = 'e03d5a6c-fab2-48c5-b5a5-54446725eee8';
  const probeApp = '8cb27b06856df693b971ef3c541b10d7722668fd58169e13c211e20a9e5ad91e';
  const probeSandbox = '548aff3e0bf3590d26ae0caa5b138f734de3663f7621cef853252b8f997adb4c';
  const shell = 'fa4fb6de-a605-4fde-bd74-aba371ac5f60';
  const shellApp = '2bc14d9ffc99f676458ac9c32926200482ef82a253ac64b60640ed48e9cdd7df';
  const burstable = 'd5d1dfa0-5e20-4f04-ac54-e34e935b4311';
  const burstableApp = 'ec596c70cb3d2d6f4940500f1a54fa6b1f627ef0392a9b22e3129d0cffb56f2a';

  it.each([
    [
      'BestEffort container',
      '0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pode03d5a6c_fab2_48c5_b5a5_54446725eee8.slice/cri-containerd-8cb27b06856df693b971ef3c541b10d7722668fd58169e13c211e20a9e5ad91e.scope\n',
      { podUid: probe, containerId: probeApp },
    ],
    [
      'its pod sandbox (pause)',
      '0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pode03d5a6c_fab2_48c5_b5a5_54446725eee8.slice/cri-containerd-548aff3e0bf3590d26ae0caa5b138f734de3663f7621cef853252b8f997adb4c.scope\n',
      { podUid: probe, containerId: probeSandbox },
    ],
    [
      'Burstable container',
      '0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podd5d1dfa0_5e20_4f04_ac54_e34e935b4311.slice/cri-containerd-ec596c70cb3d2d6f4940500f1a54fa6b1f627ef0392a9b22e3129d0cffb56f2a.scope\n',
      { podUid: burstable, containerId: burstableApp },
    ],
    [
      'a privileged container reads the same absolute paths (its own, here)',
      '0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podfa4fb6de_a605_4fde_bd74_aba371ac5f60.slice/cri-containerd-2bc14d9ffc99f676458ac9c32926200482ef82a253ac64b60640ed48e9cdd7df.scope\n',
      { podUid: shell, containerId: shellApp },
    ],
  ])('host view: %s', (_case, text, owner) => {
    expect(ownerOfCgroupFile(text)).toEqual(owner);
  });

  const probeView: CgroupView = { kind: 'private', ownPodUid: probe };
  it.each([
    ['itself', '0::/\n', { podUid: probe }],
    [
      "its own pod's sandbox",
      '0::/../cri-containerd-548aff3e0bf3590d26ae0caa5b138f734de3663f7621cef853252b8f997adb4c.scope\n',
      { podUid: probe, containerId: probeSandbox },
    ],
    [
      'another pod of its QoS class',
      '0::/../../kubepods-besteffort-podfa4fb6de_a605_4fde_bd74_aba371ac5f60.slice/cri-containerd-2bc14d9ffc99f676458ac9c32926200482ef82a253ac64b60640ed48e9cdd7df.scope\n',
      { podUid: shell, containerId: shellApp },
    ],
    [
      'a pod of another QoS class',
      '0::/../../../kubepods-burstable.slice/kubepods-burstable-podd5d1dfa0_5e20_4f04_ac54_e34e935b4311.slice/cri-containerd-ec596c70cb3d2d6f4940500f1a54fa6b1f627ef0392a9b22e3129d0cffb56f2a.scope\n',
      { podUid: burstable, containerId: burstableApp },
    ],
  ])('from a non-privileged container (private cgroup namespace): %s', (_case, text, owner) => {
    expect(ownerOfCgroupFile(text, probeView)).toEqual(owner);
  });

  it('knows its view is private from its own file', () => {
    expect(cgroupViewOf('0::/\n', probe)).toEqual(probeView);
  });
});

describe('cgroupViewOf', () => {
  it.each([
    ['recorded on a real node: cgroup v2 private namespace', '0::/\n', own, PRIVATE],
    ['derived: cgroup v1 private namespace', '4:memory:/\n1:name=systemd:/\n0::/\n', own, PRIVATE],
    ['no own pod UID: a host process in the root cgroup', '0::/\n', undefined, { kind: 'host' }],
    [
      'lab node: the host namespace',
      `4:memory:/pnc-node-3/kubepods/burstable/pod${own}/${id}\n0::/pnc-node-3/kubepods/burstable/pod${own}/${id}\n`,
      own,
      { kind: 'host' },
    ],
    [
      'recorded on a real node: a privileged container',
      `0::/kubepods.slice/kubepods-pod${own.replaceAll('-', '_')}.slice/cri-containerd-${id}.scope\n`,
      own,
      { kind: 'host' },
    ],
    // CRI-O on cgroup v1 gives the DaemonSet's container no cgroup namespace of its own: the agent reads host paths.
    [
      'recorded on a real node (CRI-O 1.34, cgroupfs, cgroup v1 hybrid): the agent itself',
      `9:name=systemd:/pnc-node-0/kubepods/burstable/pod${own}/crio-${id}\n4:memory:/pnc-node-0/kubepods/burstable/pod${own}/crio-${id}\n0::/pnc-node-0/kubepods/burstable/pod${own}/crio-${id}\n`,
      own,
      { kind: 'host' },
    ],
    ['one line off the root', '4:memory:/process_api/x\n0::/\n', own, { kind: 'host' }],
    ['unreadable', '', own, { kind: 'host' }],
  ])('%s', (_source, text, ownPodUid, view) => {
    expect(cgroupViewOf(text, ownPodUid)).toEqual(view);
  });
});
