import { describe, expect, it, vi } from 'vitest';
import { SANDBOX_BACKOFF, ERROR_BACKOFF } from '../../controller/src/agent/backoff.ts';
import { decideNodeFamilies } from '../../controller/src/agent/node-families.ts';
import { eventNameFor } from '../../controller/src/kube/event-recorder.ts';
import { KubeApiError } from '../../controller/src/kube/kube-client.ts';
import { MARK_VERSION, REINIT_ANNOTATION, STATUS_ANNOTATION, encodeMark, encodeNetnsRecord } from '../../controller/src/pod-contract/index.ts';
import { RedirectError, XtablesLockTimeout, planFromPod, renderPlan, rulesHash } from '../../controller/src/redirect/index.ts';
import { BAD_ANNOTATION, BAD_VALUE, PROXY_UID } from '../../hack/lib/mesh-pods.ts';
import { APPLIED_HASH, counterValue, fakeReconciler, histogramCount, testPod } from '../support/reconciler-fakes.ts';

/** A reconciler with one pod in the API and the cache, and its sandbox running. */
function withPod(options: Parameters<typeof testPod>[0] = {}, sandbox = true) {
  const fakes = fakeReconciler();
  const pod = fakes.api.add(testPod(options));
  const uid = pod.metadata!.uid!;
  const ref = { namespace: pod.metadata!.namespace!, name: pod.metadata!.name!, uid };
  const netns = sandbox ? fakes.finder.start(uid) : undefined;
  return { ...fakes, pod, uid, ref, netns };
}

/** The hash the decision computes for a pod: what a mark must carry to be verified. */
const planHash = (pod: Parameters<typeof planFromPod>[0]) => rulesHash(renderPlan(planFromPod(pod, undefined, { uid: PROXY_UID, gid: PROXY_UID })));

describe('reconciler executor: programming', () => {
  it('programs a new pod and marks it with the hash apply returned, from sandbox found to mark written', async () => {
    const t = withPod();
    t.engine.appliedHash = APPLIED_HASH;
    const queuedAt = t.clock.now();
    t.clock.advance(40);
    expect(await t.reconciler.reconcile(t.uid, queuedAt)).toEqual({ kind: 'done' });

    expect(t.engine.applied).toHaveLength(1);
    expect(t.engine.applied[0]).toMatchObject({
      netns: { path: t.netns!.path, inode: t.netns!.inode },
      options: { mode: 'nft', lockWaitSeconds: 5, force: false },
    });
    const mark = t.api.markOf(t.uid)!;
    expect(mark).toMatchObject({ state: 'initialized', netns: t.netns!.inode, rules: APPLIED_HASH, at: t.clock.date().toISOString() });
    expect(APPLIED_HASH).not.toBe(planHash(t.pod));
    const [event] = t.events.of('Initialized');
    expect(event).toEqual({
      uid: t.uid,
      reason: 'Initialized',
      name: eventNameFor(t.ref, mark.at),
      note: `redirect programmed and verified in netns ${t.netns!.inode} (rules ${APPLIED_HASH}) in 40 ms from sandbox found to mark written`,
    });
    expect(await counterValue(t.metrics.podResults, { outcome: 'initialized' })).toBe(1);
    expect(await histogramCount(t.metrics.markLatency)).toBe(1);
    expect(t.logs.find((line) => line.msg === 'pod initialized')).toMatchObject({ uid: t.uid, rules: APPLIED_HASH, latencyMs: 40 });
  });

  it('waits for the echo of its write instead of acting on the stale cached copy', async () => {
    const t = withPod();
    await t.reconciler.reconcile(t.uid);
    // The cache still holds the copy without the mark.
    t.clock.advance(1_000);
    expect(await t.reconciler.reconcile(t.uid)).toMatchObject({ kind: 'retry', policy: { initialMs: 5_000 } });
    expect(t.engine.applied).toHaveLength(1);
    expect(t.api.writes).toHaveLength(1);
    expect(t.api.reads).toBe(0);
  });

  it('reads the pod fresh when the echo is late, and does not program or mark it a second time', async () => {
    const t = withPod();
    await t.reconciler.reconcile(t.uid);
    t.clock.advance(6_000);
    expect(await t.reconciler.reconcile(t.uid)).toEqual({ kind: 'done' });
    expect(t.api.reads).toBe(1);
    expect(t.engine.applied).toHaveLength(1);
    expect(t.api.writes).toHaveLength(1);
    expect(t.events.of('Initialized')).toHaveLength(1);
    expect(t.logs.some((line) => line.msg === 'echo of our mark write is late; acting on a fresh read')).toBe(true);
    // The echo arrives: cached copies are trusted again.
    const echo = t.api.deliver(t.uid);
    t.reconciler.observe(t.uid, echo.metadata!.resourceVersion);
    await t.reconciler.reconcile(t.uid);
    expect(t.api.reads).toBe(1);
  });

  it('forgets a pod the fresh read finds gone', async () => {
    const t = withPod();
    await t.reconciler.reconcile(t.uid);
    t.api.server.delete(t.uid);
    t.clock.advance(6_000);
    expect(await t.reconciler.reconcile(t.uid)).toEqual({ kind: 'done' });
    expect(t.reconciler.podsWithChangedSandbox()).toEqual([]);
    expect(t.api.writes).toHaveLength(1);
  });

  it('reads fresh after a write that got no answer, since it may have landed', async () => {
    const t = withPod();
    t.api.failNextWrite = new Error('socket hang up');
    await expect(t.reconciler.reconcile(t.uid)).rejects.toThrow('socket hang up');
    expect(await t.reconciler.reconcile(t.uid)).toEqual({ kind: 'done' });
    expect(t.api.reads).toBe(1);
    expect(t.api.markOf(t.uid)).toMatchObject({ state: 'initialized' });
    expect(await counterValue(t.metrics.reconcileBugs)).toBe(0);
  });

  it('re-initializes for a new token, forced, once', async () => {
    const t = withPod({ annotations: { [REINIT_ANNOTATION]: 'token-1' } });
    await t.reconciler.reconcile(t.uid);
    expect(t.engine.applied[0]!.options.force).toBe(true);
    expect(t.api.markOf(t.uid)).toMatchObject({ state: 'initialized', reinit: 'token-1' });
    expect(t.events.of('Reinitialized')[0]!.note).toMatch(/^re-initialized for token "token-1"; redirect programmed/);
  });

  it('repairs a pod whose mark names another netns', async () => {
    const forged = encodeMark({ state: 'initialized', netns: 4026531999, rules: '0123456789abcdef', at: '2020-01-01T00:00:00Z' });
    const t = withPod({ annotations: { [STATUS_ANNOTATION]: forged } });
    await t.reconciler.reconcile(t.uid);
    expect(t.api.markOf(t.uid)).toMatchObject({ state: 'initialized', netns: t.netns!.inode });
    expect(t.events.of('Repaired')[0]!.note).toContain('the mark named another network namespace');
    expect(await counterValue(t.metrics.podResults, { outcome: 'repaired' })).toBe(1);
  });
});

describe('reconciler executor: verifying', () => {
  /** A pod an earlier agent process programmed: its mark, and the record in its netns. */
  function verifiedPod(markAt: string) {
    const t = withPod();
    const mark = { v: MARK_VERSION, state: 'initialized', netns: t.netns!.inode, rules: planHash(t.pod), at: markAt, id: 'mark-id-0001' } as const;
    t.pod.metadata!.annotations![STATUS_ANNOTATION] = encodeMark(mark);
    t.engine.records.set(t.netns!.path, encodeNetnsRecord(mark));
    t.api.deliver(t.uid);
    return t;
  }

  it('verifies a mark that counts, records its Initialized Event if an earlier agent lost it, once', async () => {
    const t = verifiedPod(new Date(t0() - 60_000).toISOString());
    expect(await t.reconciler.reconcile(t.uid)).toEqual({ kind: 'done' });
    expect(t.engine.verified).toHaveLength(1);
    expect(t.engine.applied).toHaveLength(0);
    expect(t.api.writes).toHaveLength(0);
    expect(await counterValue(t.metrics.podResults, { outcome: 'verified' })).toBe(1);
    const [event] = t.events.of('Initialized');
    expect(event!.note).toContain('(recorded after an agent restart)');
    // Verified moments ago: not read back again; later, read back but no second Event.
    await t.reconciler.reconcile(t.uid);
    expect(t.engine.verified).toHaveLength(1);
    t.clock.advance(31_000);
    await t.reconciler.reconcile(t.uid);
    expect(t.engine.verified).toHaveLength(2);
    expect(t.events.of('Initialized')).toHaveLength(1);
  });

  it('records no Event for a mark older than Events live', async () => {
    const t = verifiedPod('2020-01-01T00:00:00Z');
    await t.reconciler.reconcile(t.uid);
    expect(t.events.recorded).toEqual([]);
  });

  it('repairs drifted rules and says so', async () => {
    const t = verifiedPod('2020-01-01T00:00:00Z');
    t.engine.appliedHash = APPLIED_HASH;
    t.engine.verifyResult = { ok: false, diff: '--- ipv4: none of this project' };
    await t.reconciler.reconcile(t.uid);
    expect(t.engine.applied).toHaveLength(1);
    expect(t.api.markOf(t.uid)).toMatchObject({ state: 'initialized', rules: APPLIED_HASH });
    expect(t.events.of('Repaired')[0]!.note).toMatch(/^rules had drifted in netns \d+; re-programmed; redirect programmed/);
    expect(t.logs.find((line) => line.msg === 'rules drifted from the mark; repairing')).toMatchObject({ level: 40 });
  });
});

describe('reconciler executor: a new sandbox is a new sandbox, whatever its netns inode', () => {
  /** Programmed, its echo delivered; then the sandbox is replaced within VERIFIED_FRESH_MS by one with the same netns inode. */
  async function replacedWithSameInode(next: (old: { pid: number; startTime: number }) => { pid: number; startTime: number }) {
    const t = withPod();
    await t.reconciler.reconcile(t.uid);
    t.reconciler.observe(t.uid, t.api.deliver(t.uid).metadata!.resourceVersion);
    t.clock.advance(2_000);
    t.finder.start(t.uid, 2, { ...next(t.netns!), inode: t.netns!.inode });
    // The real engine finds none of our rules in the new netns.
    t.engine.verifyResult = { ok: false, diff: '--- ipv4: none of this project' };
    t.engine.applied.length = 0;
    t.engine.verified.length = 0;
    await t.reconciler.reconcile(t.uid);
    return t;
  }

  it('a new pid with the same inode is verified and programmed', async () => {
    const t = await replacedWithSameInode((old) => ({ pid: old.pid + 1000, startTime: old.startTime + 50 }));
    expect(t.engine.verified).toHaveLength(1);
    expect(t.engine.applied).toHaveLength(1);
    expect(t.engine.applied[0]!.netns.path).toBe(`/proc/${t.netns!.pid + 1000}/ns/net`);
  });

  it('the same pid with a new start time (the pid was reused) is verified and programmed', async () => {
    const t = await replacedWithSameInode((old) => ({ pid: old.pid, startTime: old.startTime + 50 }));
    expect(t.engine.verified).toHaveLength(1);
    expect(t.engine.applied).toHaveLength(1);
  });

  it('rules that happen to verify in the new netns are not enough: without its record the netns is programmed and recorded', async () => {
    const t = withPod();
    await t.reconciler.reconcile(t.uid);
    t.reconciler.observe(t.uid, t.api.deliver(t.uid).metadata!.resourceVersion);
    t.finder.start(t.uid, 2, { inode: t.netns!.inode });
    t.journal.length = 0;
    await t.reconciler.reconcile(t.uid);
    const mark = t.api.markOf(t.uid)!;
    expect(t.journal).toEqual(['verify', 'record ', 'apply', 'mark initialized', `record ${encodeNetnsRecord(mark)}`]);
    expect(t.events.of('Repaired')[0]!.note).toContain('holds no record of the mark');
  });
});

describe('reconciler executor: the netns record', () => {
  it("writes the record after the mark, with the mark's netns, rules and id", async () => {
    const t = withPod();
    await t.reconciler.reconcile(t.uid);
    const mark = t.api.markOf(t.uid)!;
    expect(mark).toMatchObject({ v: MARK_VERSION, id: expect.stringMatching(/^[A-Za-z0-9_-]{16}$/) as unknown as string });
    expect(t.journal).toEqual(['apply', 'mark initialized', `record pod-network-controller/2 netns=${t.netns!.inode} rules=${mark.rules} id=${mark.id}`]);
  });

  it('clears the record before a re-init touches the rules, and records the new mark after it', async () => {
    const t = withPod();
    await t.reconciler.reconcile(t.uid);
    const first = t.api.markOf(t.uid)!;
    t.api.server.get(t.uid)!.metadata!.annotations![REINIT_ANNOTATION] = 't1';
    t.reconciler.observe(t.uid, t.api.deliver(t.uid).metadata!.resourceVersion);
    t.journal.length = 0;
    await t.reconciler.reconcile(t.uid);
    const second = t.api.markOf(t.uid)!;
    expect(second.id).not.toBe(first.id);
    expect(t.journal).toEqual(['record ', 'apply', 'mark initialized', `record ${encodeNetnsRecord(second)}`]);
  });

  it('clears the record before an error mark', async () => {
    const t = withPod();
    await t.reconciler.reconcile(t.uid);
    t.reconciler.observe(t.uid, t.api.deliver(t.uid).metadata!.resourceVersion);
    t.engine.verifyResult = { ok: false, diff: 'drift' };
    t.engine.applyError = new RedirectError(t.netns!.path, 'iptables-restore: line 3 failed');
    t.clock.advance(31_000);
    t.journal.length = 0;
    await t.reconciler.reconcile(t.uid);
    expect(t.journal).toEqual(['verify', 'record ', 'record ', 'mark error']);
    expect(t.engine.records.get(t.netns!.path)).toBe('');
  });

  it('a record that cannot be written leaves the pod held: an error mark, retried', async () => {
    const t = withPod();
    t.engine.recordError = new RedirectError(t.netns!.path, 'ip: RTNETLINK answers: Operation not permitted');
    expect(await t.reconciler.reconcile(t.uid)).toMatchObject({ kind: 'retry' });
    expect(t.api.markOf(t.uid)).toMatchObject({ state: 'error', reason: expect.stringContaining('Operation not permitted') as unknown as string });
    expect(t.engine.records.get(t.netns!.path)).toBe('');
  });

  it("rewrites a mark of the first format (an earlier release's agent) in this one, with its record", async () => {
    const t = withPod();
    t.pod.metadata!.annotations![STATUS_ANNOTATION] = encodeMark({
      state: 'initialized',
      netns: t.netns!.inode,
      rules: planHash(t.pod),
      at: '2026-12-01T11:00:00Z',
    });
    t.api.deliver(t.uid);
    await t.reconciler.reconcile(t.uid);
    const mark = t.api.markOf(t.uid)!;
    expect(mark).toMatchObject({ v: MARK_VERSION, state: 'initialized', netns: t.netns!.inode });
    expect(t.engine.records.get(t.netns!.path)).toBe(encodeNetnsRecord(mark));
    expect(t.events.of('Repaired')[0]!.note).toContain('written by an earlier release (format 1');
  });
});

/** The fake clock's wall time at its start. */
const t0 = () => Date.parse('2026-12-01T12:00:00Z') + 1_000_000;

describe('reconciler executor: failures', () => {
  it('keeps a pod whose sandbox is missing looking, and reports it once after a minute', async () => {
    const t = withPod({}, false);
    expect(await t.reconciler.reconcile(t.uid)).toEqual({ kind: 'retry', policy: SANDBOX_BACKOFF });
    expect(t.watcher.watching.has(t.uid)).toBe(true);
    expect(t.events.recorded).toEqual([]);
    t.clock.advance(60_000);
    await t.reconciler.reconcile(t.uid);
    await t.reconciler.reconcile(t.uid);
    expect(t.events.of('SandboxNotFound')).toHaveLength(1);
    expect(t.events.of('SandboxNotFound')[0]!.note).toContain('after 60 s');
    t.finder.start(t.uid);
    await t.reconciler.reconcile(t.uid);
    expect(t.watcher.watching.has(t.uid)).toBe(false);
    expect(t.api.markOf(t.uid)).toMatchObject({ state: 'initialized' });
  });

  it('refuses a pod whose app runs as the proxy: error mark, Warning, once', async () => {
    const t = withPod({ appUid: PROXY_UID });
    expect(await t.reconciler.reconcile(t.uid)).toEqual({ kind: 'done' });
    const mark = t.api.markOf(t.uid)!;
    expect(mark.state).toBe('error');
    expect(t.events.of('ProxyIdentityRefused')[0]!.note).toBe(mark.reason);
    expect(await counterValue(t.metrics.podResults, { outcome: 'refused' })).toBe(1);
    t.reconciler.observe(t.uid, t.api.deliver(t.uid).metadata!.resourceVersion);
    await t.reconciler.reconcile(t.uid);
    expect(t.api.writes).toHaveLength(1);
    expect(t.events.recorded).toHaveLength(1);
    expect(t.engine.applied).toHaveLength(0);
  });

  it('refuses a pod that needs a family the kernel lacks: error mark saying so, FamilyUnavailable Warning, once', async () => {
    const why = 'the kernel has no IPv6 (/proc/sys/net/ipv6 is missing: booted with ipv6.disable=1?)';
    const nodeFamilies = decideNodeFamilies(
      ['ipv4', 'ipv6'],
      new Map([
        ['ipv4', { ok: true }],
        ['ipv6', { ok: false, why }],
      ]),
    );
    const t = fakeReconciler({}, { nodeFamilies });
    const pod = testPod();
    pod.status = { ...pod.status, podIPs: [{ ip: '2001:db8::a' }] };
    const uid = t.api.add(pod).metadata!.uid!;
    t.finder.start(uid);
    expect(await t.reconciler.reconcile(uid)).toEqual({ kind: 'done' });
    const mark = t.api.markOf(uid)!;
    expect(mark.state).toBe('error');
    expect(mark.reason).toContain(`the pod has the ipv6 address 2001:db8::a, but this node cannot redirect ipv6: ${why}`);
    expect(t.events.of('FamilyUnavailable')[0]!.note).toBe(mark.reason);
    expect(await counterValue(t.metrics.podResults, { outcome: 'refused' })).toBe(1);
    t.reconciler.observe(uid, t.api.deliver(uid).metadata!.resourceVersion);
    await t.reconciler.reconcile(uid);
    expect(t.api.writes).toHaveLength(1);
    expect(t.events.recorded).toHaveLength(1);
    expect(t.engine.applied).toHaveLength(0);
  });

  it('marks a pod with a bad annotation invalid, naming it', async () => {
    const t = withPod({ annotations: { [BAD_ANNOTATION]: BAD_VALUE } });
    await t.reconciler.reconcile(t.uid);
    expect(t.api.markOf(t.uid)!.reason).toContain(BAD_VALUE);
    expect(t.events.of('InvalidAnnotation')).toHaveLength(1);
    expect(await counterValue(t.metrics.podResults, { outcome: 'invalid_annotation' })).toBe(1);
  });

  it('turns a mark the API server refuses for good (422) into a MarkWriteFailed Warning and a slow retry', async () => {
    const t = withPod();
    t.api.failNextWrite = new KubeApiError(
      'PATCH',
      '/api/v1/namespaces/shop/pods/x/status',
      422,
      '{"message":"metadata.annotations: Too long: must have at most 262144 bytes"}',
    );
    const result = await t.reconciler.reconcile(t.uid);
    expect(result).toMatchObject({ kind: 'retry', policy: { initialMs: 60_000 } });
    const [event] = t.events.of('MarkWriteFailed');
    expect(event!.note).toContain(STATUS_ANNOTATION);
    expect(event!.note).toMatch(/HTTP 422.*262144/);
    expect(await counterValue(t.metrics.markWriteRefusals, { status: '422' })).toBe(1);
    expect(t.api.markOf(t.uid)).toBeUndefined();
    expect(t.events.of('Initialized')).toEqual([]);
  });

  it('retries a pod whose programming timed out on the xtables lock, without an error mark; latency counts the wait', async () => {
    const t = withPod();
    const queuedAt = t.clock.now();
    t.engine.applyError = new XtablesLockTimeout(t.netns!.path, 5, 'iptables-restore: held');
    expect(await t.reconciler.reconcile(t.uid, queuedAt)).toMatchObject({ kind: 'retry', policy: { initialMs: 1_000 } });
    expect(t.events.of('IptablesLockTimeout')[0]!.note).toContain('5 s');
    expect(await counterValue(t.metrics.iptablesLockTimeouts)).toBe(1);
    expect(t.api.writes).toEqual([]);
    t.clock.advance(7_000);
    await t.reconciler.reconcile(t.uid, t.clock.now());
    expect(t.api.markOf(t.uid)).toMatchObject({ state: 'initialized' });
    expect(t.events.of('Initialized')[0]!.note).toContain('in 7000 ms from sandbox found');
  });

  it('marks a pod error when its netns refuses the rules, with a Warning, and retries', async () => {
    const t = withPod();
    t.engine.applyError = new RedirectError(t.netns!.path, 'iptables-restore --noflush failed (exit 2)');
    expect(await t.reconciler.reconcile(t.uid)).toEqual({ kind: 'retry', policy: ERROR_BACKOFF });
    const mark = t.api.markOf(t.uid)!;
    expect(mark).toMatchObject({ state: 'error', netns: t.netns!.inode });
    expect(mark.reason).toContain('iptables-restore --noflush failed');
    expect(t.events.of('RedirectFailed')[0]!.note).toBe(mark.reason);
    expect(await counterValue(t.metrics.podResults, { outcome: 'error' })).toBe(1);
  });

  it('looks again when the sandbox died under the engine: no failure of the pod', async () => {
    const t = withPod();
    t.engine.apply = async () => {
      t.finder.dead.add(t.netns!.pid);
      throw new RedirectError(t.netns!.path, 'nsenter: No such file or directory');
    };
    expect(await t.reconciler.reconcile(t.uid)).toEqual({ kind: 'retry', policy: SANDBOX_BACKOFF });
    expect(t.logs.some((line) => line.msg === 'sandbox changed while programming; looking again')).toBe(true);
    expect(t.watcher.watching.has(t.uid)).toBe(true);
    expect(t.api.writes).toEqual([]);
    expect(t.events.recorded).toEqual([]);
  });

  it('does not mark a pod whose sandbox was replaced between apply and the mark', async () => {
    const t = withPod();
    const apply = t.engine.apply.bind(t.engine);
    t.engine.apply = async (...args) => {
      const result = await apply(...args);
      t.finder.start(t.uid, 2); // a new sandbox took its place
      return result;
    };
    expect(await t.reconciler.reconcile(t.uid)).toEqual({ kind: 'retry', policy: SANDBOX_BACKOFF });
    expect(t.api.writes).toEqual([]);
    expect(t.watcher.watching.has(t.uid)).toBe(true);
    expect(t.reconciler.podsWithChangedSandbox()).toEqual([t.uid]);
  });

  it('lets a bug in the engine surface as a bug: logged, counted, retried by the queue, nothing written onto the pod', async () => {
    const t = withPod();
    const bug = new TypeError("Cannot read properties of undefined (reading 'families')");
    t.engine.applyError = bug;
    await expect(t.reconciler.reconcile(t.uid)).rejects.toBe(bug);
    expect(t.api.writes).toEqual([]);
    expect(t.events.recorded).toEqual([]);
    expect(await counterValue(t.metrics.reconcileBugs)).toBe(1);
    expect(await counterValue(t.metrics.podResults, { outcome: 'error' })).toBe(0);
    const logged = t.logs.filter((line) => line.level === 50);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ uid: t.uid, msg: 'bug in the agent (not a failure of the pod); the pod is retried' });
    // Even when the sandbox died meanwhile: still a bug, not a sandbox change.
    t.engine.applyError = new RangeError('bad');
    t.finder.dead.add(t.netns!.pid);
    t.finder.find = async () => t.netns;
    await expect(t.reconciler.reconcile(t.uid)).rejects.toThrow(RangeError);
    expect(await counterValue(t.metrics.reconcileBugs)).toBe(2);
  });

  it('counts a bug in its own code once', async () => {
    const t = withPod();
    t.api.cache.get(t.uid)!.spec!.initContainers = 5 as never;
    await expect(t.reconciler.reconcile(t.uid)).rejects.toThrow(TypeError);
    expect(await counterValue(t.metrics.reconcileBugs)).toBe(1);
    expect(t.api.writes).toEqual([]);
  });

  it('warns about and counts an iptables run still going after 3 s (waiting for the xtables lock, most likely)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const t = withPod();
      const apply = t.engine.apply.bind(t.engine);
      let release = () => {};
      t.engine.apply = async (...args) => {
        await new Promise<void>((resolve) => (release = resolve));
        return apply(...args);
      };
      const pass = t.reconciler.reconcile(t.uid);
      await vi.advanceTimersByTimeAsync(2_999);
      expect(await counterValue(t.metrics.iptablesLockWaits)).toBe(0);
      await vi.advanceTimersByTimeAsync(1);
      expect(await counterValue(t.metrics.iptablesLockWaits)).toBe(1);
      expect(t.logs.find((line) => String(line.msg).includes('waiting for the xtables lock'))).toMatchObject({ level: 40, uid: t.uid });
      t.clock.advance(4_000);
      release();
      expect(await pass).toEqual({ kind: 'done' });
      expect(t.logs.find((line) => line.msg === 'iptables done after a wait')).toMatchObject({ tookMs: 4_000 });
    } finally {
      vi.useRealTimers();
    }
  });

  it('forgets a pod that is gone or no longer eligible', async () => {
    const t = withPod({}, false);
    await t.reconciler.reconcile(t.uid);
    expect(t.watcher.watching.has(t.uid)).toBe(true);
    t.api.cache.delete(t.uid);
    expect(await t.reconciler.reconcile(t.uid)).toEqual({ kind: 'done' });
    expect(t.watcher.watching.has(t.uid)).toBe(false);
  });
});
