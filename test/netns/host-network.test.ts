// The local cluster's host-side address plan (hack/lib/host-network.sh) against a stand-in
// machine: a netns whose "uplink" veth leads to a "world" netns of ours, so nothing here leaves
// the real machine. The uplink audit that `npm test` runs around every suite must count a
// packet of our ranges that goes out that way, and `local-cluster.sh up` must refuse a machine
// that already routes one of our ranges.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connectNetns, createNetns, deleteNetns, isRoot, removeNetnsOfDeadRuns, ROOT_SKIP_MESSAGE, runInNetns } from '../../hack/lib/netns.ts';
import type { TestNetns } from '../../hack/lib/netns.ts';
import { must } from '../../hack/lib/process.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const AUDIT = join(ROOT, 'hack/uplink-audit.sh');

describe.skipIf(!isRoot)('host-side ranges and the uplink audit', () => {
  if (!isRoot) console.warn(`host-network: ${ROOT_SKIP_MESSAGE}`);
  let machine: TestNetns;
  let world: TestNetns;
  let uplink: string;

  beforeEach(() => {
    machine = createNetns('pncum');
    world = createNetns('pncuw');
    [uplink] = connectNetns(
      { netns: machine, addresses: ['192.0.2.2/24', '2001:db8:ffff::2/64'] },
      { netns: world, addresses: ['192.0.2.1/24', '2001:db8:ffff::1/64'] },
    );
    must(['ip', '-n', machine.name, 'route', 'add', 'default', 'via', '192.0.2.1']);
    must(['ip', '-n', machine.name, '-6', 'route', 'add', 'default', 'via', '2001:db8:ffff::1']);
  });
  afterEach(() => {
    deleteNetns(machine);
    deleteNetns(world);
  });

  const sendUdp = (family: 'udp4' | 'udp6', host: string) =>
    must([
      'nsenter',
      `--net=${machine.path}`,
      '--',
      process.execPath,
      '-e',
      `require('node:dgram').createSocket('${family}').send('x', 9, '${host}', (e) => process.exit(e ? 1 : 0))`,
    ]);

  it('passes when nothing of ours left through the uplink', () => {
    expect(runInNetns(machine.path, ['bash', AUDIT, 'start']).code).toBe(0);
    sendUdp('udp4', '192.0.2.1'); // the machine's own traffic to its gateway is not ours
    const check = runInNetns(machine.path, ['bash', AUDIT, 'check']);
    expect(check.stderr).toContain('no packet of our ranges went, or tried to go, through');
    expect(check.code).toBe(0);
    // check removes its counters
    expect(runInNetns(machine.path, ['iptables', '-t', 'mangle', '-S', 'OUTPUT']).stdout).not.toContain('PNC-UPLINK-AUDIT');
  });

  it.each([
    ['udp4', '198.51.100.230', `-d 198.51.100.0/24 -o`],
    ['udp6', '2001:db8:ad1:5::9', `-d 2001:db8:ad0::/44 -o`],
  ] as const)('counts a %s packet to %s that leaves through the uplink, and fails', (family, host, rule) => {
    expect(runInNetns(machine.path, ['bash', AUDIT, 'start']).code).toBe(0);
    sendUdp(family, host);
    const check = runInNetns(machine.path, ['bash', AUDIT, 'check']);
    expect(check.stderr).toContain(`1 packet(s) left: ${rule} ${uplink}`);
    expect(check.code).toBe(1);
  });

  it('with --guard, drops such a packet instead: nothing leaves, but the check still fails on it', () => {
    expect(runInNetns(machine.path, ['bash', AUDIT, 'start', '--guard']).code).toBe(0);
    const sent = runInNetns(machine.path, [
      process.execPath,
      '-e',
      `require('node:dgram').createSocket('udp4').send('x', 9, '198.51.100.230', (e) => process.exit(e ? 1 : 0))`,
    ]);
    expect(sent.code, 'the guard refuses the send').toBe(1);
    const check = runInNetns(machine.path, ['bash', AUDIT, 'check']);
    expect(check.stderr).toContain(`1 packet(s) stopped by the guard: -d 198.51.100.0/24 -o ${uplink} -j DROP`);
    expect(check.stderr).toContain('0 packet(s) of our ranges went through the machine');
    expect(check.code).toBe(1);
    expect(runInNetns(machine.path, ['iptables', '-S', 'OUTPUT']).stdout).not.toContain('PNC-UPLINK-GUARD');
  });

  it('local-cluster.sh up refuses a machine that routes one of our ranges, naming the route', () => {
    must(['ip', '-n', machine.name, 'addr', 'add', '198.51.100.70/26', 'dev', uplink]);
    const stateDir = mkdtempSync(join(tmpdir(), 'pnc-ranges-'));
    try {
      const up = runInNetns(machine.path, ['env', `PNC_CLUSTER_DIR=${stateDir}/cluster`, 'bash', join(ROOT, 'hack/local-cluster.sh'), 'up']);
      expect(up.code).not.toBe(0);
      expect(up.stderr).toContain('refusing to start');
      expect(up.stderr).toMatch(new RegExp(`198\\.51\\.100\\.0/24 overlaps the machine's route: 198\\.51\\.100\\.64/26 dev ${uplink}`));
      // refused before anything started or was built
      expect(up.stderr).not.toContain('build-k8s-binaries');
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it("removes the test netns of a run that died without cleaning up, and keeps a live run's", () => {
    const orphan = createNetns('pncuo');
    // As a killed run leaves it: its owner record names a process that is gone.
    writeFileSync(`/run/pod-network-controller/netns-owners/${orphan.name}`, '999999999 1\n');
    try {
      removeNetnsOfDeadRuns();
      expect(existsSync(orphan.path)).toBe(false);
      expect(existsSync(machine.path), "this run's own netns").toBe(true);
    } finally {
      deleteNetns(orphan);
    }
  });
});
