// The finder against a fake /proc tree (PNC_PROC_ROOT): cgroup files, stat files and
// ns/net links shaped like the kernel's. The real /proc path is covered by the
// controller's end-to-end tests with the pod-sandbox simulator.
import { mkdirSync, mkdtempSync, readlinkSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetnsFinder, parseStartTime } from '../../controller/src/agent/netns-finder.ts';
import { netnsInodeFromLink } from '../../controller/src/pod-contract/index.ts';

const podA = '11111111-2222-3333-4444-555555555555';
const podB = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';
const HOST_NETNS = 4026531840;
let root: string;

function proc(pid: number, opts: { cgroup: string; netns: number; start: number; comm?: string; parent?: number }): void {
  const dir = join(root, String(pid));
  mkdirSync(join(dir, 'ns'), { recursive: true });
  writeFileSync(join(dir, 'cgroup'), opts.cgroup);
  const fields = [
    'S',
    String(opts.parent ?? 1),
    String(pid),
    String(pid),
    '0',
    '-1',
    '4194560',
    '0',
    '0',
    '0',
    '0',
    '0',
    '0',
    '0',
    '0',
    '20',
    '0',
    '1',
    '0',
    String(opts.start),
    '0',
  ];
  writeFileSync(join(dir, 'stat'), `${pid} (${opts.comm ?? 'pause'}) ${fields.join(' ')}\n`);
  symlinkSync(`net:[${opts.netns}]`, join(dir, 'ns', 'net'));
}

const systemd = (uid: string, id: string) =>
  `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid.replaceAll('-', '_')}.slice/cri-containerd-${id.padEnd(64, '0')}.scope\n`;
const cgroupfs = (uid: string, id: string) =>
  `12:memory:/kubepods/burstable/pod${uid}/${id.padEnd(64, '0')}\n0::/kubepods/burstable/pod${uid}/${id.padEnd(64, '0')}\n`;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), `pnc-fake-proc-${process.pid}-`));
  proc(1, { cgroup: '0::/init.scope\n', netns: HOST_NETNS, start: 1 });
  mkdirSync(join(root, 'self'));
  writeFileSync(join(root, 'meminfo'), 'not a pid');
});

afterEach(() => rmSync(root, { recursive: true, force: true }));

const hex = (id: string) => id.padEnd(64, '0');
const underscores = (uid: string) => uid.replaceAll('-', '_');

describe('netns finder', () => {
  it('finds the oldest process of the pod with its own netns, skipping the host netns (conmon)', async () => {
    proc(300, { cgroup: systemd(podA, 'c1'), netns: 4026532001, start: 500, comm: 'app' });
    proc(200, { cgroup: systemd(podA, 'sb'), netns: 4026532001, start: 400 });
    proc(150, { cgroup: systemd(podA, 'conmon'), netns: HOST_NETNS, start: 100, comm: 'conmon' });
    const finder = new NetnsFinder({ procRoot: root });
    expect(await finder.find(podA)).toEqual({ pid: 200, inode: 4026532001, path: `${root}/200/ns/net`, startTime: 400 });
  });

  it("never takes the runtime's process that shares its parent's netns, even when /proc/1 is unreadable", async () => {
    // In a container, readlink /proc/1/ns/net of the node's init can fail: the host check knows nothing.
    rmSync(join(root, '1'), { recursive: true });
    const NODE_NETNS = 4026531999;
    proc(90, { cgroup: '0::/system.slice/containerd.service\n', netns: NODE_NETNS, start: 5, comm: 'runc' });
    // runc's init, already in the pod's cgroup, not yet in the pod's netns.
    proc(100, { cgroup: cgroupfs(podA, 'sb'), netns: NODE_NETNS, start: 50, comm: 'runc:[0:PARENT]', parent: 90 });
    const finder = new NetnsFinder({ procRoot: root, minScanIntervalMs: 0 });
    expect(await finder.find(podA, 0)).toBeUndefined();
    proc(80, { cgroup: '0::/system.slice/containerd.service\n', netns: NODE_NETNS, start: 4, comm: 'containerd-shim' });
    proc(101, { cgroup: cgroupfs(podA, 'sb'), netns: 4026532009, start: 60, parent: 80 });
    // pause's child in the same netns (its parent is of the pod) counts as usual.
    proc(102, { cgroup: cgroupfs(podA, 'app'), netns: 4026532009, start: 70, comm: 'app', parent: 101 });
    expect(await finder.find(podA, 0)).toEqual({ pid: 101, inode: 4026532009, path: `${root}/101/ns/net`, startTime: 60 });
  });

  it('resolves many pods with one scan (cgroupfs and systemd forms)', async () => {
    proc(400, { cgroup: cgroupfs(podB, 'x'), netns: 4026532002, start: 10 });
    proc(401, { cgroup: systemd(podA, 'y'), netns: 4026532003, start: 11 });
    const finder = new NetnsFinder({ procRoot: root });
    const [a, b] = await Promise.all([finder.find(podA), finder.find(podB)]);
    expect(a?.inode).toBe(4026532003);
    expect(b?.inode).toBe(4026532002);
    expect(finder.scans).toBe(1);
    expect((await finder.find(podA))?.pid).toBe(401);
    expect(finder.scans).toBe(1);
  });

  it('returns undefined until the sandbox appears, then finds it', async () => {
    const finder = new NetnsFinder({ procRoot: root, minScanIntervalMs: 0 });
    expect(await finder.find(podA, 0)).toBeUndefined();
    proc(500, { cgroup: systemd(podA, 'sb'), netns: 4026532010, start: 900 });
    // Right after a scan, a miss is answered from that scan (the SandboxWatcher rescans).
    expect(await finder.find(podA, 60_000)).toBeUndefined();
    expect((await finder.find(podA, 0))?.pid).toBe(500);
  });

  it('notices a replaced sandbox (process gone, new netns) and finds the new one', async () => {
    proc(600, { cgroup: systemd(podA, 'sb'), netns: 4026532020, start: 1000 });
    const finder = new NetnsFinder({ procRoot: root, minScanIntervalMs: 0 });
    const first = (await finder.find(podA))!;
    expect(finder.isAlive(first)).toBe(true);
    rmSync(join(root, '600'), { recursive: true });
    proc(601, { cgroup: systemd(podA, 'sb2'), netns: 4026532021, start: 2000 });
    expect(finder.isAlive(first)).toBe(false);
    expect(finder.peek(podA)).toBeUndefined();
    expect(await finder.find(podA, 0)).toMatchObject({ pid: 601, inode: 4026532021 });
  });

  it('treats a reused PID (other start time) as another process', async () => {
    proc(700, { cgroup: systemd(podA, 'sb'), netns: 4026532030, start: 1000 });
    const finder = new NetnsFinder({ procRoot: root, minScanIntervalMs: 0 });
    const first = (await finder.find(podA))!;
    unlinkSync(join(root, '700', 'stat'));
    writeFileSync(join(root, '700', 'stat'), `700 (other) S 1 700 700 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5000 0\n`);
    expect(finder.isAlive(first)).toBe(false);
  });

  it('skips processes that vanish mid-scan and pods with only host-netns processes', async () => {
    mkdirSync(join(root, '800'));
    proc(801, { cgroup: systemd(podA, 'conmon'), netns: HOST_NETNS, start: 5 });
    const finder = new NetnsFinder({ procRoot: root });
    expect(await finder.find(podA)).toBeUndefined();
  });

  it('reports an unreadable proc root instead of throwing', async () => {
    const finder = new NetnsFinder({ procRoot: join(root, 'missing') });
    expect(await finder.find(podA, 0)).toBeUndefined();
    expect(finder.scanError).toContain('ENOENT');
  });

  it('finds pods from a private cgroup namespace (relative paths), its own pod included', async () => {
    // What a non-privileged hostPID container reads on cgroup v2 (recorded on the systemd VM node;
    // the cgroupfs form is the issue's). The agent's netns is its own pod's.
    const own = 'c0ffee00-1234-4abc-8def-0123456789ab';
    const podC = '99999999-8888-4777-8666-555555555555';
    const podD = 'dddddddd-0000-4000-8000-000000000000';
    const selfNetns = netnsInodeFromLink(readlinkSync('/proc/self/ns/net'))!;
    writeFileSync(join(root, 'self', 'cgroup'), '0::/\n');
    writeFileSync(join(root, '1', 'cgroup'), '0::/../../../../init.scope\n');
    proc(50, { cgroup: '0::/../../../../system.slice/containerd.service\n', netns: HOST_NETNS, start: 5, comm: 'containerd-shim' });
    proc(850, { cgroup: `0::/../cri-containerd-${hex('5b')}.scope\n`, netns: selfNetns, start: 200, parent: 50 });
    proc(900, { cgroup: '0::/\n', netns: selfNetns, start: 300, comm: 'node', parent: 50 });
    proc(860, {
      cgroup: `0::/../../kubepods-burstable-pod${underscores(podB)}.slice/cri-containerd-${hex('b1')}.scope\n`,
      netns: 4026532101,
      start: 210,
      parent: 50,
    });
    proc(870, { cgroup: `0::/../../../besteffort/pod${podC}/${hex('c1')}\n`, netns: 4026532102, start: 220, parent: 50 });
    // Another pod's process in the agent's netns: for any pod but the agent's own, that netns is not theirs.
    proc(880, { cgroup: `0::/../../../kubepods-pod${underscores(podD)}.slice/cri-containerd-${hex('d1')}.scope\n`, netns: selfNetns, start: 230, parent: 50 });

    const finder = new NetnsFinder({ procRoot: root, ownPodUid: own });
    expect(finder.cgroupView).toEqual({ kind: 'private', ownPodUid: own });
    expect(await finder.find(own)).toMatchObject({ pid: 850, inode: selfNetns });
    expect(await finder.find(podB)).toMatchObject({ pid: 860, inode: 4026532101 });
    expect(await finder.find(podC)).toMatchObject({ pid: 870, inode: 4026532102 });
    expect(await finder.find(podD)).toBeUndefined();
    expect(finder.scans).toBe(1);

    // Not told its own pod: its own pod's processes are nobody's; the others are still found.
    const unaware = new NetnsFinder({ procRoot: root });
    expect(unaware.cgroupView).toEqual({ kind: 'host' });
    expect(await unaware.find(own)).toBeUndefined();
    expect(await unaware.find(podC)).toMatchObject({ pid: 870 });
  });

  it("CRI-O without an infra container: the first init container's process, never conmon, another pod's or the node's netns", async () => {
    // drop_infra_ctr: no pause process; the pod's netns is pinned, and its first process is the
    // first init container's. conmon (conmon_cgroup = pod) sits in the pod's cgroup in the node's
    // netns, reparented to PID 1, whose netns may be unreadable from a container.
    rmSync(join(root, '1'), { recursive: true });
    const NODE_NETNS = 4026531999;
    const slice = (uid: string) => `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${underscores(uid)}.slice`;
    const podH = '44444444-3333-4222-8111-000000000000';
    proc(900, { cgroup: `${slice(podB)}/crio-${hex('b1')}.scope\n`, netns: 4026532201, start: 50, parent: 899 });
    proc(1000, { cgroup: `${slice(podA)}/crio-conmon-${hex('1a')}.scope\n`, netns: NODE_NETNS, start: 100, comm: 'conmon' });
    proc(1001, { cgroup: `${slice(podA)}/crio-${hex('1a')}.scope\n`, netns: 4026532202, start: 110, comm: 'pnc-init-waiter', parent: 1000 });
    // A hostNetwork pod: its container shares conmon's netns, the node's.
    proc(1100, { cgroup: `${slice(podH)}/crio-conmon-${hex('4a')}.scope\n`, netns: NODE_NETNS, start: 120, comm: 'conmon' });
    proc(1101, { cgroup: `${slice(podH)}/crio-${hex('4a')}.scope\n`, netns: NODE_NETNS, start: 130, comm: 'app', parent: 1100 });
    const finder = new NetnsFinder({ procRoot: root, minScanIntervalMs: 0 });
    const init = await finder.find(podA, 0);
    expect(init).toEqual({ pid: 1001, inode: 4026532202, path: `${root}/1001/ns/net`, startTime: 110 });
    expect(await finder.find(podH, 0)).toBeUndefined();
    expect(await finder.find(podB, 0)).toMatchObject({ pid: 900, inode: 4026532201 });

    // The init container exits; until the app container runs, the pod has no process in its netns.
    rmSync(join(root, '1001'), { recursive: true });
    rmSync(join(root, '1000'), { recursive: true });
    expect(finder.isAlive(init!)).toBe(false);
    expect(await finder.find(podA, 0)).toBeUndefined();
    proc(1200, { cgroup: `${slice(podA)}/crio-conmon-${hex('2a')}.scope\n`, netns: NODE_NETNS, start: 300, comm: 'conmon' });
    proc(1201, { cgroup: `${slice(podA)}/crio-${hex('2a')}.scope/container\n`, netns: 4026532202, start: 310, comm: 'app', parent: 1200 });
    expect(await finder.find(podA, 0)).toMatchObject({ pid: 1201, inode: 4026532202 });
  });

  it('reads the start time after a command name with spaces and parentheses', () => {
    expect(parseStartTime('42 (my (odd) name) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 0')).toBe(98765);
    expect(parseStartTime('garbage')).toBeUndefined();
  });
});
