// The init-waiter's active proof of outbound capture, against real rules programmed by
// the redirect engine in a real pod netns, the waiter running unprivileged as a pod would.
import { afterEach, describe, expect, it } from 'vitest';
import { applyRedirect, planFromPod, removeRedirect } from '../../controller/src/redirect/index.ts';
import { isRoot, ROOT_SKIP_MESSAGE, runInNetns } from '../../hack/lib/netns.ts';
import { markInitialized } from '../../hack/lib/waiter-process.ts';
import { useWaiterSandbox } from '../support/waiter-sandbox.ts';

if (!isRoot) console.warn(`waiter-self-test.test.ts ${ROOT_SKIP_MESSAGE}`);

describe.skipIf(!isRoot)('init-waiter self-test against real redirect rules', () => {
  const waiter = useWaiterSandbox();
  const { freshVolume, start } = waiter;
  // Each test programs what it needs; none inherits rules from the one before.
  afterEach(() => removeRedirect(waiter.sandbox.pod.path));

  /** The agent's mark and netns record; `extra`: the pod's other annotations. */
  const markOurs = (dir: string, extra: Record<string, string> = {}) => markInitialized(dir, waiter.netns, extra);
  const program = (annotations: Record<string, string> = {}) =>
    applyRedirect(waiter.sandbox.pod.path, planFromPod({ metadata: { namespace: 'test', name: 'waiter', annotations } }));

  it('with a correct mark but no rules: the self-test fails (refused by the network) and it does not pass (exit 6)', async () => {
    const { dir, file } = freshVolume();
    await markOurs(dir);
    const run = start(['--annotations-file', file, '--timeout', '2.5']);
    const exit = await run.exited;
    expect(exit.code).toBe(6);
    expect(run.output()).toMatch(
      /timed out after 2\.5 s: redirect self-test failed: 192\.0\.2\.2:9 was not captured to 127\.0\.0\.1:15001 \(connect ECONNREFUSED\)/,
    );
    expect(run.output()).toContain('[2001:db8::2]:9 was not captured to [::1]:15001');
    expect(run.output()).not.toMatch(/ready:/);
  });

  it('with rules applied by the redirect engine: exits 0 soon after the mark is written, and frees the proxy port', async () => {
    const { dir, file } = freshVolume();
    const run = start(['--annotations-file', file, '--timeout', '30']);
    await run.waitForOutput(/does not exist yet/);
    await program();
    const written = performance.now();
    await markOurs(dir);
    const exit = await run.exited;
    expect(exit.code).toBe(0);
    // A generous sanity bound only; the benchmark (npm run bench:waiter) measures the real latency.
    expect(exit.at - written).toBeLessThan(2_000);
    expect(run.output()).toMatch(/self-test passed: 192\.0\.2\.2:9 -> 127\.0\.0\.1:15001, \[2001:db8::2\]:9 -> \[::1\]:15001/);
    // No listener and no TIME_WAIT left on 15001: the proxy can bind it right away.
    const sockets = runInNetns(waiter.sandbox.pod.path, ['ss', '-Htan', 'state', 'all', '( sport = :15001 or dport = :15001 )']);
    expect(sockets.code).toBe(0);
    expect(sockets.stdout.trim()).toBe('');
  });

  it("picks a probe port the pod's own excludeOutboundPorts does not exempt", async () => {
    const { dir, file } = freshVolume();
    const annotations = { 'traffic.sidecar.istio.io/excludeOutboundPorts': '9,10' };
    await program(annotations);
    await markOurs(dir, annotations);
    const run = start(['--annotations-file', file, '--timeout', '10']);
    const exit = await run.exited;
    expect(exit.code).toBe(0);
    expect(run.output()).toContain('192.0.2.2:11 -> 127.0.0.1:15001');
  });

  it('with include ranges and no include ports (documentation ranges here), probes the first host of each and passes', async () => {
    const { dir, file } = freshVolume();
    const annotations = { 'traffic.sidecar.istio.io/includeOutboundIPRanges': '198.51.100.0/24,2001:db8:1::/64' };
    await program(annotations);
    await markOurs(dir, annotations);
    const run = start(['--annotations-file', file, '--timeout', '10']);
    const exit = await run.exited;
    expect(run.output()).toMatch(/self-test passed: 198\.51\.100\.1:9 -> 127\.0\.0\.1:15001, \[2001:db8:1::1\]:9 -> \[::1\]:15001/);
    expect(exit.code).toBe(0);
  });

  it('run as the proxy UID 1337, whose traffic the rules exempt, it fails and says why', async () => {
    const { dir, file } = freshVolume();
    await program();
    await markOurs(dir);
    const run = start(['--annotations-file', file, '--timeout', '2.5'], { identity: { uid: 1337, gid: 1337 } });
    const exit = await run.exited;
    expect(exit.code).toBe(6);
    expect(run.output()).toContain("this container runs as UID/GID 1337/1337; traffic of the proxy's identity");
  });

  it('passes when the rules arrive after the mark (a repair), retrying the self-test', async () => {
    const { dir, file } = freshVolume();
    await markOurs(dir);
    const run = start(['--annotations-file', file, '--timeout', '30']);
    await run.waitForOutput(/redirect self-test failed/);
    await program();
    const exit = await run.exited;
    expect(exit.code).toBe(0);
    expect(run.output()).toMatch(/self-test passed/);
  });
});

describe.skipIf(!isRoot)('init-waiter self-test in an IPv4-only pod', () => {
  const v4 = useWaiterSandbox({ ipv6: false });

  it('proves IPv4 capture only (no global IPv6 address, so no [::1] listener)', async () => {
    const { dir, file } = v4.freshVolume();
    await applyRedirect(v4.sandbox.pod.path, planFromPod({ metadata: { namespace: 'test', name: 'v4' } }));
    await markInitialized(dir, v4.netns);
    const run = v4.start(['--annotations-file', file, '--timeout', '10']);
    const exit = await run.exited;
    expect(exit.code).toBe(0);
    expect(run.output()).toContain('self-test on (ipv4, proxy port 15001)');
    expect(run.output()).toMatch(/self-test passed: 192\.0\.2\.2:9 -> 127\.0\.0\.1:15001 \(exit 0/);
  });
});
