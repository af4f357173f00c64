// applyRedirect/verifyRedirect/removeRedirect against real iptables in real netns,
// for both backends: idempotence, replacement, ownership, drift, no mixing of backends.
import { spawn } from 'node:child_process';
import { readlinkSync, rmSync, statSync } from 'node:fs';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  applyRedirect,
  DEFAULT_NODE_CONFIG,
  NetnsMismatch,
  planFromPod,
  RedirectError,
  removeRedirect,
  verifyRedirect,
  verifyRedirectWithRecord,
  writeNetnsRecord,
  XtablesLockTimeout,
  validateNodeConfig,
  type IptablesMode,
} from '../../controller/src/redirect/index.ts';
import { classifyEngineFailure } from '../../controller/src/agent/engine-failure.ts';
import { encodeMark, parseMark } from '../../controller/src/pod-contract/index.ts';
import { createNetns, deleteNetns, isRoot, ROOT_SKIP_MESSAGE, runInNetns, type TestNetns } from '../../hack/lib/netns.ts';
import { must } from '../../hack/lib/process.ts';

if (!isRoot) console.warn(`redirect-apply: ${ROOT_SKIP_MESSAGE}`);

const podWith = (annotations: Record<string, string>) => ({ metadata: { namespace: 'ns', name: 'p', annotations } });
const basePlan = planFromPod(podWith({}));
const changedPlan = planFromPod(
  podWith({ 'traffic.sidecar.istio.io/includeInboundPorts': '8080,9090', 'traffic.sidecar.istio.io/excludeOutboundPorts': '5432' }),
);

const save = (netns: TestNetns, mode: IptablesMode, family: 'ipv4' | 'ipv6') =>
  must(['nsenter', `--net=${netns.path}`, '--', `${family === 'ipv4' ? 'iptables' : 'ip6tables'}-${mode}-save`, '-t', 'nat'])
    .split('\n')
    .filter((line) => !line.startsWith('#'))
    .join('\n');

const foreignRules = (family: 'ipv4' | 'ipv6') => [
  '-N OTHER_CHAIN',
  '-A OTHER_CHAIN -p tcp --dport 7777 -j RETURN',
  `-A OUTPUT -d ${family === 'ipv4' ? '203.0.113.9' : '2001:db8:9::9'} -j OTHER_CHAIN`,
  '-A PREROUTING -p udp --dport 7778 -j RETURN',
];

describe.skipIf(!isRoot).each(['nft', 'legacy'] as IptablesMode[])('redirect engine in a netns (iptables-%s)', (mode) => {
  let netns: TestNetns | undefined;
  beforeEach(() => {
    netns = createNetns('pnca');
  });
  afterEach(() => {
    deleteNetns(netns);
    netns = undefined;
  });

  const addForeignRules = () => {
    for (const family of ['ipv4', 'ipv6'] as const) {
      for (const rule of foreignRules(family)) {
        must(['nsenter', `--net=${netns!.path}`, '--', `${family === 'ipv4' ? 'iptables' : 'ip6tables'}-${mode}`, '-w', '-t', 'nat', ...rule.split(' ')]);
      }
    }
  };
  const foreignLines = (family: 'ipv4' | 'ipv6') =>
    save(netns!, mode, family)
      .split('\n')
      .filter((line) => line.includes('OTHER_CHAIN') || line.includes('7778'));

  it('applies once; a second apply changes nothing and leaves the exact same ruleset', async () => {
    const first = await applyRedirect(netns!.path, basePlan, { mode });
    expect(first.changed).toBe(true);
    expect(first.hash).toMatch(/^[0-9a-f]{16}$/);
    const before = { ipv4: save(netns!, mode, 'ipv4'), ipv6: save(netns!, mode, 'ipv6') };
    const second = await applyRedirect(netns!.path, basePlan, { mode });
    expect(second).toEqual({ hash: first.hash, changed: false });
    expect({ ipv4: save(netns!, mode, 'ipv4'), ipv6: save(netns!, mode, 'ipv6') }).toEqual(before);
    expect(before.ipv4.match(/-j ISTIO_OUTPUT/g)).toHaveLength(1);
    expect(before.ipv6.match(/-j ISTIO_INBOUND/g)).toHaveLength(1);
    expect(before.ipv6).toContain('-A ISTIO_OUTPUT -s ::6/128 -o lo -j RETURN');
  });

  it('replaces only our chains and jumps with a changed plan; rules of others stay', async () => {
    addForeignRules();
    const foreignBefore = { ipv4: foreignLines('ipv4'), ipv6: foreignLines('ipv6') };
    expect(foreignBefore.ipv4).toHaveLength(4);
    await applyRedirect(netns!.path, basePlan, { mode });
    const changed = await applyRedirect(netns!.path, changedPlan, { mode });
    expect(changed.changed).toBe(true);
    expect(await verifyRedirect(netns!.path, changedPlan, { mode })).toEqual({ ok: true, diff: '' });
    const ipv4 = save(netns!, mode, 'ipv4');
    expect(ipv4.match(/-j ISTIO_OUTPUT/g)).toHaveLength(1);
    expect(ipv4).toContain('-A ISTIO_INBOUND -p tcp -m tcp --dport 8080 -j ISTIO_IN_REDIRECT');
    expect(ipv4).not.toContain('-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT');
    expect({ ipv4: foreignLines('ipv4'), ipv6: foreignLines('ipv6') }).toEqual(foreignBefore);

    await removeRedirect(netns!.path, { mode });
    for (const family of ['ipv4', 'ipv6'] as const) {
      expect(save(netns!, mode, family)).not.toContain('ISTIO_');
      expect(foreignLines(family)).toEqual(foreignBefore[family]);
    }
    // Removing again is a no-op, not an error.
    await removeRedirect(netns!.path, { mode });
  });

  it('force rewrites our chains in place even when they match, leaving the same ruleset', async () => {
    addForeignRules();
    await applyRedirect(netns!.path, basePlan, { mode });
    // A rule someone slipped into our chain after it: force flushes and refills the chain.
    must(['nsenter', `--net=${netns!.path}`, '--', `iptables-${mode}`, '-w', '-t', 'nat', '-A', 'ISTIO_OUTPUT', '-d', '203.0.113.7/32', '-j', 'RETURN']);
    const before = save(netns!, mode, 'ipv6');
    expect(await applyRedirect(netns!.path, basePlan, { mode, force: true })).toMatchObject({ changed: true });
    expect(save(netns!, mode, 'ipv6')).toEqual(before);
    expect(save(netns!, mode, 'ipv4')).not.toContain('203.0.113.7');
    expect(await verifyRedirect(netns!.path, basePlan, { mode })).toEqual({ ok: true, diff: '' });
    expect(foreignLines('ipv4')).toHaveLength(4);
  });

  it("the agent's check reads the rules and the netns record together, whatever either holds", async () => {
    const pod = { path: netns!.path, inode: statSync(netns!.path).ino };
    expect(await verifyRedirectWithRecord(pod, basePlan, { mode })).toMatchObject({ ok: false, record: '' });
    await applyRedirect(pod, basePlan, { mode });
    expect(await verifyRedirectWithRecord(pod, basePlan, { mode })).toEqual({ ok: true, diff: '', record: '' });
    await writeNetnsRecord(pod, 'pod-network-controller/2 netns=1 rules=abc id=x');
    expect(await verifyRedirectWithRecord(pod, basePlan, { mode })).toEqual({ ok: true, diff: '', record: 'pod-network-controller/2 netns=1 rules=abc id=x' });
    must(['nsenter', `--net=${netns!.path}`, '--', `iptables-${mode}`, '-w', '-t', 'nat', '-A', 'ISTIO_OUTPUT', '-d', '203.0.113.7/32', '-j', 'RETURN']);
    const drifted = await verifyRedirectWithRecord(pod, basePlan, { mode });
    expect(drifted).toMatchObject({ ok: false, record: 'pod-network-controller/2 netns=1 rules=abc id=x' });
    expect(drifted.diff).toContain('+ -A ISTIO_OUTPUT -d 203.0.113.7/32 -j RETURN');
    await expect(verifyRedirectWithRecord({ ...pod, inode: pod.inode + 1 }, basePlan, { mode })).rejects.toBeInstanceOf(NetnsMismatch);
  });

  it('verify reports drift as a readable diff, and apply repairs it', async () => {
    expect((await verifyRedirect(netns!.path, basePlan, { mode })).diff).toContain("none of this project's chains or jumps are present");
    await applyRedirect(netns!.path, basePlan, { mode });
    must(['nsenter', `--net=${netns!.path}`, '--', `ip6tables-${mode}`, '-w', '-t', 'nat', '-D', 'ISTIO_OUTPUT', '-d', '::1/128', '-j', 'RETURN']);
    must(['nsenter', `--net=${netns!.path}`, '--', `ip6tables-${mode}`, '-w', '-t', 'nat', '-A', 'ISTIO_OUTPUT', '-d', '2001:db8::5/128', '-j', 'RETURN']);
    const drift = await verifyRedirect(netns!.path, basePlan, { mode });
    expect(drift.ok).toBe(false);
    expect(drift.diff).toContain('--- ipv6');
    expect(drift.diff).not.toContain('--- ipv4');
    expect(drift.diff).toContain('- -A ISTIO_OUTPUT -d ::1/128 -j RETURN');
    expect(drift.diff).toContain('+ -A ISTIO_OUTPUT -d 2001:db8::5/128 -j RETURN');
    expect((await applyRedirect(netns!.path, basePlan, { mode })).changed).toBe(true);
    expect(await verifyRedirect(netns!.path, basePlan, { mode })).toEqual({ ok: true, diff: '' });
  });

  it('removes our rules from a family the plan no longer has, and verify reports them until then', async () => {
    addForeignRules();
    await applyRedirect(netns!.path, basePlan, { mode });
    const ipv4Only = planFromPod(podWith({}), validateNodeConfig({ ...DEFAULT_NODE_CONFIG, families: ['ipv4'] }));
    const before = await verifyRedirect(netns!.path, ipv4Only, { mode });
    expect(before.ok).toBe(false);
    expect(before.diff).toContain('--- ipv6: not in the plan');
    expect((await applyRedirect(netns!.path, ipv4Only, { mode })).changed).toBe(true);
    expect(save(netns!, mode, 'ipv6')).not.toContain('ISTIO_');
    expect(foreignLines('ipv6')).toHaveLength(4);
    expect(save(netns!, mode, 'ipv4')).toContain('-j ISTIO_OUTPUT');
    expect(await verifyRedirect(netns!.path, ipv4Only, { mode })).toEqual({ ok: true, diff: '' });
  });

  it('adds the raw-table DNS zones with DNS capture and removes them when it is turned off', async () => {
    addForeignRules();
    const dnsPlan = planFromPod(podWith({}), validateNodeConfig({ ...DEFAULT_NODE_CONFIG, captureDns: true }));
    const rawOf = (family: 'ipv4' | 'ipv6') =>
      must(['nsenter', `--net=${netns!.path}`, '--', `${family === 'ipv4' ? 'iptables' : 'ip6tables'}-${mode}-save`, '-t', 'raw']);
    await applyRedirect(netns!.path, basePlan, { mode });
    expect((await applyRedirect(netns!.path, dnsPlan, { mode })).changed).toBe(true);
    expect(rawOf('ipv6')).toContain('-A ISTIO_OUTPUT_DNS -p udp -m udp --dport 53 -j CT --zone 2');
    expect(await verifyRedirect(netns!.path, basePlan, { mode })).toMatchObject({
      ok: false,
      diff: expect.stringContaining('+ -A ISTIO_INBOUND -p udp -m udp --sport 53 -j CT --zone 1'),
    });
    expect((await applyRedirect(netns!.path, basePlan, { mode })).changed).toBe(true);
    for (const family of ['ipv4', 'ipv6'] as const) expect(rawOf(family)).not.toContain('ISTIO_');
    expect(await verifyRedirect(netns!.path, basePlan, { mode })).toEqual({ ok: true, diff: '' });
    await applyRedirect(netns!.path, dnsPlan, { mode });
    await removeRedirect(netns!.path, { mode });
    for (const family of ['ipv4', 'ipv6'] as const) {
      expect(rawOf(family)).not.toContain('ISTIO_');
      expect(foreignLines(family)).toHaveLength(4);
    }
  });

  it('refuses to program a netns whose other backend already has our rules', async () => {
    const other: IptablesMode = mode === 'nft' ? 'legacy' : 'nft';
    await applyRedirect(netns!.path, basePlan, { mode: other });
    const attempt = applyRedirect(netns!.path, basePlan, { mode });
    await expect(attempt).rejects.toBeInstanceOf(RedirectError);
    await expect(attempt).rejects.toThrow(`exist in iptables-${other}`);
    expect(save(netns!, mode, 'ipv4')).not.toContain('ISTIO_');
    await removeRedirect(netns!.path, { mode: other });
  });

  it('a refused rule is named in the error, which stays bounded and quotes none of the tens of KB restored', async () => {
    // 128 ranges per family (the 256 entries a list may have) make the transaction KBs; an out-of-range port makes its REDIRECT target bad.
    const ranges = Array.from({ length: 128 }, (_, i) => `10.${i}.0.0/16,2001:db8:${i.toString(16)}::/48`).join(',');
    const plan = { ...planFromPod(podWith({ 'traffic.sidecar.istio.io/includeOutboundIPRanges': ranges })), outboundPort: 70_000 };
    const error = await applyRedirect(netns!.path, plan, { mode }).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(RedirectError);
    const message = (error as RedirectError).message;
    expect(message).toMatch(
      /^netns \S+: ip6?tables-(nft|legacy)-restore --noflush failed \(exit 2\) at line \d+: -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 70000; it said: .*Port `70000' not valid/,
    );
    expect(message).not.toContain('10.100.0.0/16');
    expect(Buffer.byteLength(message)).toBeLessThan(1024);
    // What the agent writes into the pod's error mark from it.
    const failure = classifyEngineFailure(error, 1, () => true, 5);
    expect(failure.kind).toBe('redirect-failed');
    const reason = parseMark(encodeMark({ state: 'error', at: new Date().toISOString(), reason: (failure as { reason: string }).reason })).reason!;
    expect(reason).toContain('-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 70000');
    expect(save(netns!, mode, 'ipv4')).not.toContain('ISTIO_');
  });

  it('writes CIDRs exactly as iptables-save prints them (random ranges verify after apply)', async () => {
    const v4 = fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 32 })).map(([ip, prefix]) => `${ip}/${prefix}`);
    // Long prefixes keep most bits, so the text formatting (zero runs, dotted tails) is exercised.
    const v6 = fc.tuple(fc.ipV6(), fc.integer({ min: 64, max: 128 })).map(([ip, prefix]) => `${ip}/${prefix}`);
    const samples = fc.sample(fc.tuple(fc.array(v4, { minLength: 1, maxLength: 8 }), fc.array(v6, { minLength: 1, maxLength: 8 })), { numRuns: 10 });
    for (const [ipv4, ipv6] of samples) {
      const plan = planFromPod(podWith({ 'traffic.sidecar.istio.io/excludeOutboundIPRanges': [...ipv4, ...ipv6].join(',') }));
      await applyRedirect(netns!.path, plan, { mode });
      const verified = await verifyRedirect(netns!.path, plan, { mode });
      expect(verified.diff).toBe('');
      expect((await applyRedirect(netns!.path, plan, { mode })).changed).toBe(false);
    }
    expect(runInNetns(netns!.path, [`iptables-${mode}-save`]).code).toBe(0);
  });
});

describe.skipIf(!isRoot)('redirect engine: netns by process and concurrent pods', () => {
  const created: TestNetns[] = [];
  afterEach(() => {
    for (const netns of created.splice(0)) deleteNetns(netns);
  });

  it('programs a netns given as /proc/PID/ns/net of a process inside it', async () => {
    const netns = createNetns('pncq');
    created.push(netns);
    const sleeper = spawn('nsenter', [`--net=${netns.path}`, '--', 'sleep', '60'], { stdio: 'ignore' });
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const procPath = `/proc/${sleeper.pid}/ns/net`;
      expect(readlinkSync(procPath)).toBe(`net:[${statSync(netns.path).ino}]`);
      expect((await applyRedirect(procPath, basePlan, { mode: 'nft' })).changed).toBe(true);
      expect(await verifyRedirect(netns.path, basePlan, { mode: 'nft' })).toEqual({ ok: true, diff: '' });
      // ::6 read from /proc/PID/net/if_inet6: added when missing, found when there, missed by verify.
      expect(must(['ip', '-n', netns.name, '-6', '-o', 'addr', 'show', 'dev', 'lo'])).toContain('inet6 ::6/128');
      expect((await applyRedirect(procPath, basePlan, { mode: 'nft' })).changed).toBe(false);
      must(['ip', '-n', netns.name, '-6', 'addr', 'del', '::6/128', 'dev', 'lo']);
      expect((await verifyRedirect(procPath, basePlan, { mode: 'nft' })).diff).toContain('::6/128 is missing from lo');
      expect((await applyRedirect(procPath, basePlan, { mode: 'nft' })).changed).toBe(true);
      expect(await verifyRedirect(procPath, basePlan, { mode: 'nft' })).toEqual({ ok: true, diff: '' });
    } finally {
      sleeper.kill('SIGKILL');
    }
  });

  it('acts only in the netns with the expected inode: another one behind the path gets nothing (NetnsMismatch), the right one works as before', async () => {
    const pod = createNetns('pnci');
    const other = createNetns('pnci');
    created.push(pod, other);
    const podInode = statSync(pod.path).ino;
    // A sandbox process found in `pod` whose PID now belongs to a process in `other` (a reused PID).
    const reused = spawn('nsenter', [`--net=${other.path}`, '--', 'sleep', '60'], { stdio: 'ignore' });
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const stale = { path: `/proc/${reused.pid}/ns/net`, inode: podInode };
      for (const action of [
        () => applyRedirect(stale, basePlan, { mode: 'nft' }),
        () => verifyRedirect(stale, basePlan, { mode: 'nft' }),
        () => removeRedirect(stale, { mode: 'nft' }),
      ]) {
        const attempt = action();
        await expect(attempt).rejects.toBeInstanceOf(NetnsMismatch);
        await expect(attempt).rejects.toThrow(`is net:[${statSync(other.path).ino}], not the expected net:[${podInode}]`);
      }
      await expect(applyRedirect({ path: other.path, inode: podInode }, basePlan, { mode: 'nft' })).rejects.toBeInstanceOf(NetnsMismatch);
      for (const netns of [pod, other]) {
        for (const family of ['ipv4', 'ipv6'] as const) expect(save(netns, 'nft', family)).not.toContain('ISTIO_');
        expect(must(['ip', '-n', netns.name, '-6', '-o', 'addr', 'show', 'dev', 'lo'])).not.toContain('::6/128');
      }
      const right = { path: pod.path, inode: podInode };
      expect((await applyRedirect(right, basePlan, { mode: 'nft' })).changed).toBe(true);
      expect(await verifyRedirect(right, basePlan, { mode: 'nft' })).toEqual({ ok: true, diff: '' });
      await removeRedirect(right, { mode: 'nft' });
      expect(save(pod, 'nft', 'ipv4')).not.toContain('ISTIO_');
      expect(save(other, 'nft', 'ipv4')).not.toContain('ISTIO_');
    } finally {
      reused.kill('SIGKILL');
    }
  });

  it("refuses to program the caller's own netns (a hostNetwork pod's would be the node's)", () => {
    // Run the engine from inside a test netns, so even a broken guard could only touch that netns.
    const netns = createNetns('pncs');
    created.push(netns);
    const engine = new URL('../../controller/src/redirect/index.ts', import.meta.url).href;
    const script = `
      const { applyRedirect, removeRedirect, planFromPod } = await import(${JSON.stringify(engine)});
      for (const action of [() => applyRedirect('/proc/self/ns/net', planFromPod({}), { mode: 'nft' }), () => removeRedirect('/proc/self/ns/net', { mode: 'nft' })]) {
        try { await action(); console.log('programmed'); } catch (error) { console.log(error.name + ': ' + error.message); }
      }`;
    const result = runInNetns(netns.path, [process.execPath, '--input-type=module', '-e', script]);
    expect(result.stderr).toBe('');
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(line).toMatch(/^RedirectError: netns \/proc\/self\/ns\/net: is this process's own network namespace/);
    expect(save(netns, 'nft', 'ipv4')).not.toContain('ISTIO_');
  });

  it('gives up on a held xtables lock after lockWaitSeconds with XtablesLockTimeout, changing nothing', async () => {
    const netns = createNetns('pncl');
    created.push(netns);
    // A private lock file (iptables-legacy honours XTABLES_LOCKFILE), so other suites' iptables never wait on it.
    const lockFile = `/run/pnc-test-xtables-${process.pid}.lock`;
    const previous = process.env.XTABLES_LOCKFILE;
    process.env.XTABLES_LOCKFILE = lockFile;
    const holder = spawn('flock', ['--exclusive', lockFile, 'sleep', '30'], { stdio: 'ignore' });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = performance.now();
      await expect(applyRedirect(netns.path, basePlan, { mode: 'legacy', lockWaitSeconds: 1 })).rejects.toBeInstanceOf(XtablesLockTimeout);
      expect(performance.now() - started).toBeLessThan(10_000);
      expect(save(netns, 'legacy', 'ipv4')).not.toContain('ISTIO_');
    } finally {
      holder.kill('SIGKILL');
      if (previous === undefined) delete process.env.XTABLES_LOCKFILE;
      else process.env.XTABLES_LOCKFILE = previous;
      rmSync(lockFile, { force: true });
    }
    expect((await applyRedirect(netns.path, basePlan, { mode: 'legacy', lockWaitSeconds: 1 })).changed).toBe(true);
  });

  it.each(['nft', 'legacy'] as IptablesMode[])('applies to 8 pods at once (iptables-%s, xtables lock waits) and each verifies', async (mode) => {
    const pods = Array.from({ length: 8 }, () => createNetns('pncm'));
    created.push(...pods);
    const results = await Promise.all(pods.map((netns) => applyRedirect(netns.path, changedPlan, { mode })));
    expect(results.every((result) => result.changed)).toBe(true);
    const verified = await Promise.all(pods.map((netns) => verifyRedirect(netns.path, changedPlan, { mode })));
    expect(verified.every((result) => result.ok)).toBe(true);
  });
});
