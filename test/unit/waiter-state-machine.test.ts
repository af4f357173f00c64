// The init-waiter's state machine with a fake clock, annotations source and self-test
// (no root, no files, no sockets): what it waits for, what it says, how it ends.
import { describe, expect, it } from 'vitest';
import { encodeMark, encodeNetnsRecord, parseMark, STATUS_ANNOTATION } from '../../controller/src/pod-contract/index.ts';
import type { Mark } from '../../controller/src/pod-contract/index.ts';
import { parseDownwardApiAnnotations } from '../../init-waiter/src/downward-api.ts';
import type { RecordSnapshot } from '../../init-waiter/src/readiness.ts';
import type { AnnotationsSnapshot } from '../../init-waiter/src/annotations-watcher.ts';
import { EXIT } from '../../init-waiter/src/exit-codes.ts';
import { parseOptions } from '../../init-waiter/src/options.ts';
import type { WaiterOptions } from '../../init-waiter/src/options.ts';
import type { Family, PodNetwork, ProbeTarget } from '../../init-waiter/src/probe-target.ts';
import type { SelfTestResult } from '../../init-waiter/src/self-test.ts';
import { SELF_TEST_RETRY_MS, STILL_WAITING_LOG_MS, Waiter } from '../../init-waiter/src/waiter.ts';
import type { Clock } from '../../init-waiter/src/waiter.ts';
import { formatDownwardApiAnnotations } from '../../hack/lib/downward-api.ts';

const OWN = 4026532845;
const path = '/etc/podinfo/annotations';
const at = '2026-11-23T01:02:03Z';
const MISSING: AnnotationsSnapshot = { kind: 'missing', path };
const content = (annotations: Record<string, string>): AnnotationsSnapshot => ({ kind: 'content', path, text: formatDownwardApiAnnotations(annotations) });
/** A mark as this release's agent writes it (format 2; an initialized one has rules and an id), unless `mark` says otherwise. */
const withMark = (mark: Omit<Mark, 'at'>, extra: Record<string, string> = {}) =>
  content({
    ...extra,
    [STATUS_ANNOTATION]: encodeMark({ v: 2, at, ...(mark.state === 'initialized' ? { rules: 'abcdef0123456789', id: 'mark-id-0001' } : {}), ...mark }),
  });
const OURS = withMark({ state: 'initialized', netns: OWN });
const RECORDED = `rules abcdef0123456789, mark mark-id-0001, recorded in lo's alias`;

/**
 * The netns record the agent has written by the time the kubelet shows `snapshot`: that of an
 * initialized format-2 mark for this netns, else none (a new netns has none, and the agent
 * clears it before anything else).
 */
function recordFor(snapshot: AnnotationsSnapshot): string {
  if (snapshot.kind !== 'content') return '';
  const raw = parseDownwardApiAnnotations(snapshot.text).annotations.get(STATUS_ANNOTATION);
  let mark: Mark;
  try {
    mark = parseMark(raw ?? '');
  } catch {
    return '';
  }
  return mark.state === 'initialized' && mark.v === 2 && mark.netns === OWN ? encodeNetnsRecord(mark) : '';
}
const PASSED: SelfTestResult = { ok: true, summary: '192.0.2.2:9 -> 127.0.0.1:15001' };
const FAILED: SelfTestResult = { ok: false, reason: 'redirect self-test failed: 192.0.2.2:9 was not captured (connect ECONNREFUSED)' };

/** Timers that run only when the test advances time, in order of their due time. */
class FakeClock implements Clock {
  #now = 0;
  #nextId = 0;
  readonly #timers = new Map<number, { at: number; every: number | undefined; fn: () => void }>();

  after(ms: number, fn: () => void): () => void {
    return this.#add(ms, undefined, fn);
  }

  every(ms: number, fn: () => void): () => void {
    return this.#add(ms, ms, fn);
  }

  get pending(): number {
    return this.#timers.size;
  }

  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const due = [...this.#timers].filter(([, timer]) => timer.at <= end).sort(([a, x], [b, y]) => x.at - y.at || a - b)[0];
      if (!due) break;
      const [id, timer] = due;
      this.#now = timer.at;
      if (timer.every === undefined) this.#timers.delete(id);
      else timer.at += timer.every;
      timer.fn();
    }
    this.#now = end;
  }

  #add(ms: number, every: number | undefined, fn: () => void): () => void {
    const id = this.#nextId++;
    this.#timers.set(id, { at: this.#now + ms, every, fn });
    return () => this.#timers.delete(id);
  }
}

interface RunningSelfTest {
  targets: ProbeTarget[];
  settle(result: SelfTestResult): void;
  crash(error: Error): void;
}

/** A pod on eth0 with a default route. */
const NETWORK: PodNetwork = {
  interfaces: [{ name: 'eth0', cidrs: ['10.244.1.7/24', 'fd00:10:244:1::7/64'] }],
  routes: [
    { cidr: '10.244.1.0/24', ifname: 'eth0' },
    { cidr: '0.0.0.0/0', ifname: 'eth0' },
    { cidr: 'fd00:10:244:1::/64', ifname: 'eth0' },
    { cidr: '::/0', ifname: 'eth0' },
  ],
};

/** Lets the self-test's promise callbacks run. */
const settled = () => new Promise<void>((resolve) => setImmediate(resolve));

function setup({
  first = MISSING,
  options = {},
  families = ['ipv4', 'ipv6'],
}: { first?: AnnotationsSnapshot; options?: Partial<WaiterOptions>; families?: Family[] } = {}) {
  const clock = new FakeClock();
  const logs: string[] = [];
  const exits: { code: number; message: string }[] = [];
  const selfTests: RunningSelfTest[] = [];
  let deliver: ((snapshot: AnnotationsSnapshot) => void) | undefined;
  let deliverRecord: ((record: RecordSnapshot) => void) | undefined;
  let record = recordFor(first);
  let closed = 0;
  let recordClosed = 0;
  /** As the real watcher: only a change is delivered. */
  const setRecord = (text: string) => {
    if (text === record) return;
    record = text;
    deliverRecord?.({ kind: 'text', text });
  };
  const waiter = new Waiter({
    options: { ...parseOptions([], {}), timeoutMs: 10_000, ...options },
    pod: { netns: OWN, families, network: NETWORK, uid: 65534 },
    annotations: (onSnapshot) => {
      deliver = onSnapshot;
      onSnapshot(first);
      return { close: () => closed++ };
    },
    netnsRecord: (onRecord) => {
      deliverRecord = onRecord;
      onRecord({ kind: 'text', text: record });
      return { close: () => recordClosed++ };
    },
    selfTest: (targets) => new Promise((resolve, reject) => selfTests.push({ targets, settle: resolve, crash: reject })),
    clock,
    log: (message) => logs.push(message),
    exit: (code, message) => exits.push({ code, message }),
  });
  return {
    waiter,
    clock,
    logs,
    exits,
    selfTests,
    /** The agent's record (written before the kubelet refreshes the file), then the file. */
    publish: (snapshot: AnnotationsSnapshot) => {
      setRecord(recordFor(snapshot));
      deliver?.(snapshot);
    },
    /** The record alone (the kubelet has not refreshed the file yet). */
    setRecord,
    /** The file alone. */
    publishFile: (snapshot: AnnotationsSnapshot) => deliver?.(snapshot),
    closed: () => closed,
    /** The one exit, once it happened; and that the waiter left nothing running behind it. */
    ended() {
      expect(exits).toHaveLength(1);
      expect(waiter.phase).toBe('done');
      expect(clock.pending).toBe(0);
      expect(closed).toBe(1);
      expect(recordClosed).toBe(1);
      return exits[0] as { code: number; message: string };
    },
  };
}

/** Delivers a snapshot of the file without the agent's record: what a waiter in a netns the agent never programmed sees. */
function deliverOnly(run: ReturnType<typeof setup>, snapshot: AnnotationsSnapshot): void {
  run.publishFile(snapshot);
}

/** A started waiter whose own mark just arrived: the first self-test is running. */
function testingOurs() {
  const run = setup();
  run.waiter.start();
  run.publish(OURS);
  return run;
}

describe('Waiter', () => {
  it('says what it waits for, as whom and how long, before anything else', () => {
    const { waiter, logs } = setup();
    expect(waiter.phase).toBe('starting');
    waiter.start();
    expect(logs[0]).toBe(
      `waiting for pod-network-controller to record netns ${OWN} initialized (lo's alias; ${path} for the mark and annotations); ` +
        'self-test on (ipv4+ipv6, proxy port 15001); uid 65534; timeout 10 s',
    );
    expect(logs[1]).toMatch(/^waiting: annotations file .* does not exist yet/);
    expect(waiter.phase).toBe('waiting');
  });

  it('passes as soon as its own mark arrives (self-test off), naming the rules and the time', () => {
    const run = setup({ options: { validate: false } });
    run.waiter.start();
    run.publish(withMark({ state: 'pending', reason: 'netns not found yet' }));
    expect(run.exits).toEqual([]);
    run.publish(OURS);
    expect(run.ended()).toEqual({
      code: EXIT.ready,
      message: `ready: pod-network-controller recorded netns ${OWN} initialized (${RECORDED}); self-test off`,
    });
    expect(run.logs.at(-1)).toMatch(/is pending: netns not found yet$/);
  });

  it('passes on a mark already there at start, and closes the source it was given', () => {
    const run = setup({ first: OURS, options: { validate: false } });
    run.waiter.start();
    expect(run.ended().code).toBe(EXIT.ready);
  });

  it('runs the self-test on its own mark, for every family the pod has, and passes when it passes', async () => {
    const run = testingOurs();
    expect(run.waiter.phase).toBe('testing');
    expect(run.logs.at(-1)).toBe('waiting: the netns record is right; running the redirect self-test');
    expect(run.selfTests.map((test) => test.targets)).toEqual([
      [
        { family: 'ipv4', address: '192.0.2.2', port: 9 },
        { family: 'ipv6', address: '2001:db8::2', port: 9 },
      ],
    ]);
    run.selfTests[0]?.settle(PASSED);
    await settled();
    expect(run.ended()).toEqual({
      code: EXIT.ready,
      message: `ready: netns ${OWN} recorded initialized (${RECORDED}); self-test passed: ${PASSED.summary}`,
    });
  });

  it("probes only IPv4 in an IPv4-only pod, on a port the pod's annotations do not exclude", () => {
    const run = setup({ families: ['ipv4'] });
    run.waiter.start();
    run.publish(withMark({ state: 'initialized', netns: OWN }, { 'traffic.sidecar.istio.io/excludeOutboundPorts': '9,10' }));
    expect(run.selfTests[0]?.targets).toEqual([{ family: 'ipv4', address: '192.0.2.2', port: 11 }]);
  });

  it('passes without a self-test when the annotations capture no outbound traffic, saying why', () => {
    const run = setup({ families: ['ipv4'] });
    run.waiter.start();
    run.publish(withMark({ state: 'initialized', netns: OWN }, { 'traffic.sidecar.istio.io/includeOutboundIPRanges': '2001:db8:1::/48' }));
    expect(run.selfTests).toEqual([]);
    const why =
      'no self-test for ipv4: traffic.sidecar.istio.io/includeOutboundIPRanges="2001:db8:1::/48" names no ipv4 range and there is no traffic.sidecar.istio.io/includeOutboundPorts: no ipv4 outbound traffic is captured, nothing to prove';
    expect(run.logs).toContain(why);
    expect(run.ended().message).toBe(`ready: netns ${OWN} recorded initialized (${RECORDED}); ${why}`);
  });

  it("with include ranges and no include ports, probes the first host of the first included range of each family (Istio's service-range setting)", async () => {
    const run = setup();
    run.waiter.start();
    run.publish(withMark({ state: 'initialized', netns: OWN }, { 'traffic.sidecar.istio.io/includeOutboundIPRanges': '10.96.0.0/12' }));
    expect(run.selfTests[0]?.targets).toEqual([{ family: 'ipv4', address: '10.96.0.1', port: 9 }]);
    expect(
      run.logs.some((line) => line.startsWith('no self-test for ipv6: traffic.sidecar.istio.io/includeOutboundIPRanges="10.96.0.0/12" names no ipv6 range')),
    ).toBe(true);
    run.selfTests[0]?.settle({ ok: true, summary: '10.96.0.1:9 -> 127.0.0.1:15001' });
    await settled();
    expect(run.ended()).toEqual({ code: 0, message: expect.stringMatching(/self-test passed: 10\.96\.0\.1:9 -> 127\.0\.0\.1:15001; no self-test for ipv6: /) });
  });

  it('retries a failing self-test every second and passes once the rules arrive', async () => {
    const run = testingOurs();
    run.selfTests[0]?.settle(FAILED);
    await settled();
    expect(run.waiter.phase).toBe('retrying');
    expect(run.logs.at(-1)).toBe(`waiting: ${FAILED.reason}`);
    run.clock.advance(SELF_TEST_RETRY_MS - 1);
    expect(run.selfTests).toHaveLength(1);
    run.clock.advance(1);
    expect(run.selfTests).toHaveLength(2);
    expect(run.waiter.phase).toBe('testing');
    // The reason stays the failure until a test passes: a timeout now says why it kept failing.
    expect(run.logs.at(-1)).toBe(`waiting: ${FAILED.reason}`);
    run.selfTests[1]?.settle(PASSED);
    await settled();
    expect(run.ended().code).toBe(EXIT.ready);
  });

  it('times out with exit 6 and the self-test failure when it kept failing', async () => {
    const run = testingOurs();
    run.selfTests[0]?.settle(FAILED);
    await settled();
    run.clock.advance(10_000);
    expect(run.ended()).toEqual({ code: EXIT.selfTest, message: `timed out after 10 s: ${FAILED.reason}` });
  });

  it('times out with exit 6 naming the test when the first self-test is still running', () => {
    const run = testingOurs();
    run.clock.advance(10_000);
    expect(run.ended()).toEqual({ code: EXIT.selfTest, message: 'timed out after 10 s: the netns record is right; running the redirect self-test' });
  });

  it('ignores a result that comes after the end', async () => {
    const run = testingOurs();
    run.clock.advance(10_000);
    run.selfTests[0]?.settle(PASSED);
    await settled();
    expect(run.ended().code).toBe(EXIT.selfTest);
  });

  it('does not pass on a test that ran for a mark that changed meanwhile: it judges the new one', async () => {
    const run = testingOurs();
    run.publish(withMark({ state: 'error', reason: 'iptables-restore exit 4' }));
    expect(run.waiter.phase).toBe('testing');
    run.selfTests[0]?.settle(PASSED);
    await settled();
    expect(run.exits).toEqual([]);
    expect(run.waiter.phase).toBe('waiting');
    expect(run.logs.at(-1)).toBe(`waiting: ${STATUS_ANNOTATION} is error: iptables-restore exit 4`);
    run.clock.advance(10_000);
    expect(run.ended()).toEqual({ code: EXIT.markError, message: `timed out after 10 s: ${STATUS_ANNOTATION} is error: iptables-restore exit 4` });
  });

  it('tests again when its mark is rewritten during a test (a new rules hash), and passes on that test', async () => {
    const run = testingOurs();
    run.publish(withMark({ state: 'initialized', netns: OWN, rules: '0000111122223333' }));
    run.selfTests[0]?.settle(PASSED);
    await settled();
    expect(run.selfTests).toHaveLength(2);
    run.selfTests[1]?.settle(PASSED);
    await settled();
    expect(run.ended().message).toContain('rules 0000111122223333');
  });

  it('judges a new snapshot at once while waiting to retry, without the old retry running later', async () => {
    const run = testingOurs();
    run.selfTests[0]?.settle(FAILED);
    await settled();
    run.publish(withMark({ state: 'pending', reason: 'reprogramming' }));
    expect(run.waiter.phase).toBe('waiting');
    run.clock.advance(SELF_TEST_RETRY_MS * 3);
    expect(run.selfTests).toHaveLength(1);
    expect(run.logs.at(-1)).toMatch(/is pending: reprogramming$/);
  });

  it.each<[string, AnnotationsSnapshot, number, string]>([
    ['no file', MISSING, EXIT.noMark, `annotations file ${path} does not exist yet`],
    ['a pending mark', withMark({ state: 'pending', reason: 'netns not found yet' }), EXIT.noMark, 'is pending: netns not found yet'],
    ['an error mark', withMark({ state: 'error', reason: '"nat" table busy' }), EXIT.markError, `${STATUS_ANNOTATION} is error: "nat" table busy`],
    [
      'a mark for another netns',
      withMark({ state: 'initialized', netns: OWN + 1 }),
      EXIT.otherNetns,
      `is for network namespace ${OWN + 1}, but this pod's is ${OWN}`,
    ],
    ['a malformed mark', content({ [STATUS_ANNOTATION]: 'initialized' }), EXIT.malformed, 'is not JSON'],
  ])('on %s times out with its exit code and reason, and no pointer to Events', (_name, snapshot, code, reason) => {
    const run = setup({ first: snapshot });
    run.waiter.start();
    run.clock.advance(9_999);
    expect(run.exits).toEqual([]);
    run.clock.advance(1);
    const { code: exitCode, message } = run.ended();
    expect(exitCode).toBe(code);
    expect(message).toMatch(/^timed out after 10 s: /);
    expect(message).toContain(reason);
    expect(message).not.toContain('MarkWriteFailed');
  });

  it('without a mark times out with exit 3 and points at the Events that say why (MarkWriteFailed)', () => {
    const run = setup({ first: content({ 'sidecar.istio.io/status': '{}' }) });
    run.waiter.start();
    run.clock.advance(10_000);
    expect(run.ended()).toEqual({
      code: EXIT.noMark,
      message:
        `timed out after 10 s: no ${STATUS_ANNOTATION} annotation yet: the node's pod-network-controller has not handled this pod; ` +
        "the controller's Events on this pod (kubectl describe pod) say why, e.g. MarkWriteFailed",
    });
  });

  it('passes on the netns record alone, before the kubelet shows the mark', () => {
    const run = setup({ first: withMark({ state: 'pending', reason: 'netns not found yet' }), options: { validate: false } });
    run.waiter.start();
    expect(run.exits).toEqual([]);
    run.setRecord(recordFor(OURS));
    expect(run.ended()).toEqual({ code: EXIT.ready, message: `ready: pod-network-controller recorded netns ${OWN} initialized (${RECORDED}); self-test off` });
  });

  it.each<[string, AnnotationsSnapshot]>([
    ["this release's", OURS],
    ["an earlier release's (format 1)", content({ [STATUS_ANNOTATION]: encodeMark({ state: 'initialized', netns: OWN, rules: 'abcdef0123456789', at }) })],
  ])('does not pass on %s initialized mark naming its netns inode without the netns record (a reused inode): exit 5', (_name, snapshot) => {
    const run = setup({ options: { validate: false } });
    run.waiter.start();
    // The kubelet shows the mark; the agent wrote no record here: this netns is a new one with a reused inode.
    deliverOnly(run, snapshot);
    expect(run.exits).toEqual([]);
    expect(run.logs.at(-1)).toContain(`is initialized for network namespace ${OWN}, but lo has no netns record of it`);
    run.clock.advance(10_000);
    expect(run.ended().code).toBe(EXIT.otherNetns);
  });

  it("does not pass on a record lo's alias names another netns with (a sysfs that is not this netns's)", () => {
    const run = setup({ first: content({}), options: { validate: false } });
    run.waiter.start();
    run.setRecord(
      encodeNetnsRecord({ ...parseMark(encodeMark({ v: 2, state: 'initialized', netns: OWN + 3, rules: 'abcdef0123456789', id: 'mark-id-0001', at })) }),
    );
    expect(run.exits).toEqual([]);
    expect(run.logs.at(-1)).toContain(`lo's netns record names network namespace ${OWN + 3}, but this pod's is ${OWN}`);
  });

  it('does not pass on a test that ran for a record that was cleared meanwhile (the agent reprogramming)', async () => {
    const run = testingOurs();
    run.setRecord('');
    run.selfTests[0]?.settle(PASSED);
    await settled();
    expect(run.exits).toEqual([]);
    expect(run.logs.at(-1)).toContain('but lo has no netns record of it');
  });

  it('does not pass on a mark for another netns, but does once its own replaces it', () => {
    const run = setup({ first: withMark({ state: 'initialized', netns: OWN + 7 }), options: { validate: false } });
    run.waiter.start();
    expect(run.exits).toEqual([]);
    expect(run.logs.at(-1)).toContain(`is for network namespace ${OWN + 7}, but this pod's is ${OWN}`);
    run.publish(OURS);
    expect(run.ended().code).toBe(EXIT.ready);
  });

  it('probes another documentation address when the pod excludes the probe address', () => {
    const run = setup({ first: withMark({ state: 'initialized', netns: OWN }, { 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '192.0.2.0/24' }) });
    run.waiter.start();
    expect(run.selfTests[0]?.targets).toEqual([
      { family: 'ipv4', address: '198.51.100.1', port: 9 },
      { family: 'ipv6', address: '2001:db8::2', port: 9 },
    ]);
  });

  it('waits with the self-test reason on an annotation value that does not parse (exit 6 on timeout)', () => {
    const run = setup({ first: withMark({ state: 'initialized', netns: OWN }, { 'traffic.sidecar.istio.io/excludeOutboundPorts': '9,http' }) });
    run.waiter.start();
    expect(run.selfTests).toEqual([]);
    expect(run.logs.at(-1)).toBe(
      'waiting: cannot run the redirect self-test: traffic.sidecar.istio.io/excludeOutboundPorts="9,http": "http" is not a port (1..65535)',
    );
    run.clock.advance(10_000);
    expect(run.ended().code).toBe(EXIT.selfTest);
  });

  it('logs a change of reason once, the malformed lines once, and "still waiting" every 5 s', () => {
    const run = setup({ first: { kind: 'content', path, text: 'a="1"\n\x00garbage' } });
    run.waiter.start();
    run.publish({ kind: 'content', path, text: 'a="1"\n\x00garbage\n' });
    expect(run.logs.filter((line) => line.includes('1 malformed line(s) in /etc/podinfo/annotations ignored: line 2'))).toHaveLength(1);
    expect(run.logs.filter((line) => line.startsWith('waiting: no '))).toHaveLength(1);
    run.clock.advance(STILL_WAITING_LOG_MS * 2);
    expect(run.logs.filter((line) => line.startsWith('still waiting: no '))).toHaveLength(2);
  });

  describe('an error mark standing for the error grace', () => {
    const REFUSED = withMark({ state: 'error', reason: 'refused: container "app" runAsUser=1337 equals the proxy identity' });
    const grace = { timeoutMs: 300_000, errorGraceMs: 15_000 };
    const gaveUp = (seconds: number, reason: string) =>
      `gave up after ${seconds} s of an error mark: ${STATUS_ANNOTATION} is error: ${reason}; ` +
      'the kubelet restarts this container, and the pod starts once the controller marks it initialized';

    it("ends with exit 4 and the mark's reason once the grace is over, long before the timeout", () => {
      const run = setup({ first: REFUSED, options: grace });
      run.waiter.start();
      run.clock.advance(14_999);
      expect(run.exits).toEqual([]);
      run.clock.advance(1);
      expect(run.ended()).toEqual({ code: EXIT.markError, message: gaveUp(15, 'refused: container "app" runAsUser=1337 equals the proxy identity') });
    });

    it('counts from when the error mark came, not from the start', () => {
      const run = setup({ options: grace });
      run.waiter.start();
      run.clock.advance(10_000);
      run.publish(REFUSED);
      run.clock.advance(14_999);
      expect(run.exits).toEqual([]);
      run.clock.advance(1);
      expect(run.ended().code).toBe(EXIT.markError);
    });

    it('starts over when the mark leaves error in between (the controller retrying), and a new reason does not restart it', () => {
      const run = setup({ first: REFUSED, options: grace });
      run.waiter.start();
      run.clock.advance(10_000);
      run.publish(withMark({ state: 'pending', reason: 'retrying' }));
      run.clock.advance(1_000);
      run.publish(withMark({ state: 'error', reason: 'iptables-restore exit 1' }));
      run.clock.advance(10_000);
      run.publish(withMark({ state: 'error', reason: 'iptables-restore exit 4' }));
      run.clock.advance(4_999);
      expect(run.exits).toEqual([]);
      run.clock.advance(1);
      // The latest reason is the one given.
      expect(run.ended()).toEqual({ code: EXIT.markError, message: gaveUp(15, 'iptables-restore exit 4') });
    });

    it('passes when its own mark replaces the error within the grace, leaving no timer behind', () => {
      const run = setup({ first: REFUSED, options: { ...grace, validate: false } });
      run.waiter.start();
      run.clock.advance(14_000);
      run.publish(OURS);
      expect(run.ended().code).toBe(EXIT.ready);
    });

    it('stops the grace when the self-test starts on a mark that follows the error', async () => {
      const run = setup({ first: REFUSED, options: grace });
      run.waiter.start();
      run.clock.advance(14_000);
      run.publish(OURS);
      run.clock.advance(5_000);
      expect(run.exits).toEqual([]);
      // The record came first, so the first test ran while the file still showed the error: it is tested again.
      run.selfTests[0]?.settle(PASSED);
      await settled();
      run.selfTests[1]?.settle(PASSED);
      await settled();
      expect(run.ended().code).toBe(EXIT.ready);
    });

    it('with a grace of 0 gives up on the first error mark', () => {
      const run = setup({ first: withMark({ state: 'error', reason: 'bad annotation' }), options: { errorGraceMs: 0 } });
      run.waiter.start();
      run.clock.advance(0);
      expect(run.ended()).toEqual({ code: EXIT.markError, message: gaveUp(0, 'bad annotation') });
    });

    it('keeps waiting on an error mark of an earlier sandbox, and times out with exit 5', () => {
      const run = setup({ first: withMark({ state: 'error', netns: OWN + 1, reason: 'iptables-restore exit 4' }), options: { errorGraceMs: 1_000 } });
      run.waiter.start();
      run.clock.advance(9_999);
      expect(run.exits).toEqual([]);
      run.clock.advance(1);
      expect(run.ended().code).toBe(EXIT.otherNetns);
    });

    it('an error mark for its own netns counts', () => {
      const run = setup({ first: withMark({ state: 'error', netns: OWN, reason: 'iptables-restore exit 4' }), options: { errorGraceMs: 1_000 } });
      run.waiter.start();
      run.clock.advance(1_000);
      expect(run.ended()).toEqual({ code: EXIT.markError, message: gaveUp(1, 'iptables-restore exit 4') });
    });
  });

  describe("in a restartPolicy Never pod (a Job's), where any exit but 0 fails the pod for good", () => {
    const NEVER = parseOptions([], { PNC_WAITER_RESTART_POLICY: 'Never' });

    it('outlasts an agent that is late and then marks errors for minutes, logging as it waits, and passes on its own mark', () => {
      const run = setup({ options: { ...NEVER, validate: false } });
      run.waiter.start();
      expect(run.logs[0]).toMatch(/; no timeout, error marks waited out \(restartPolicy Never: a failed init container fails the pod\)$/);
      // Far past the default timeout (300 s) with no mark at all: an agent restarting, an API outage.
      run.clock.advance(600_000);
      run.publish(withMark({ state: 'error', reason: 'iptables-restore exit 4' }));
      // Far past the default error grace (15 s).
      run.clock.advance(120_000);
      expect(run.exits).toEqual([]);
      expect(run.waiter.phase).toBe('waiting');
      expect(run.logs.filter((line) => line.startsWith('still waiting: '))).toHaveLength(144);
      expect(run.logs.at(-1)).toBe(`still waiting: ${STATUS_ANNOTATION} is error: iptables-restore exit 4`);
      run.publish(OURS);
      expect(run.ended()).toEqual({
        code: EXIT.ready,
        message: `ready: pod-network-controller recorded netns ${OWN} initialized (${RECORDED}); self-test off`,
      });
    });

    it('keeps retrying a failing self-test past the default timeout', async () => {
      const run = setup({ options: NEVER });
      run.waiter.start();
      run.publish(OURS);
      for (let attempt = 0; attempt < 400; attempt++) {
        run.selfTests[attempt]?.settle(FAILED);
        await settled();
        run.clock.advance(SELF_TEST_RETRY_MS);
      }
      expect(run.exits).toEqual([]);
      run.selfTests[400]?.settle(PASSED);
      await settled();
      expect(run.ended().code).toBe(EXIT.ready);
    });

    it('still ends on a timeout and an error grace its owner set, saying the pod fails', () => {
      const timed = setup({ options: { ...parseOptions(['--timeout', '30'], { PNC_WAITER_RESTART_POLICY: 'Never' }) } });
      timed.waiter.start();
      expect(timed.logs[0]).toMatch(/; timeout 30 s, error marks waited out \(restartPolicy Never/);
      timed.clock.advance(30_000);
      expect(timed.ended().code).toBe(EXIT.noMark);

      const graced = setup({
        first: withMark({ state: 'error', reason: 'bad annotation' }),
        options: parseOptions(['--error-grace', '5'], { PNC_WAITER_RESTART_POLICY: 'Never' }),
      });
      graced.waiter.start();
      graced.clock.advance(5_000);
      expect(graced.ended()).toEqual({
        code: EXIT.markError,
        message: `gave up after 5 s of an error mark: ${STATUS_ANNOTATION} is error: bad annotation; restartPolicy Never: the pod fails`,
      });
    });
  });

  it('on SIGTERM ends with 143 and what it was waiting for', () => {
    const run = setup({ first: withMark({ state: 'pending', reason: 'netns not found yet' }) });
    run.waiter.start();
    run.waiter.terminate();
    expect(run.ended()).toEqual({ code: EXIT.terminated, message: `terminated while waiting: ${STATUS_ANNOTATION} is pending: netns not found yet` });
  });

  it('does nothing after the end: later snapshots, timers and signals', () => {
    const run = setup({ options: { validate: false } });
    run.waiter.start();
    run.publish(OURS);
    run.publish(withMark({ state: 'error' }));
    run.waiter.terminate();
    run.clock.advance(60_000);
    expect(run.ended().code).toBe(EXIT.ready);
  });

  it('ends with exit 1 and the stack when the self-test crashes', async () => {
    const run = setup({ first: OURS });
    run.waiter.start();
    run.selfTests[0]?.crash(new Error('EMFILE in the self-test'));
    await settled();
    const { code, message } = run.ended();
    expect(code).toBe(EXIT.internalError);
    expect(message).toMatch(/^self-test crashed: Error: EMFILE in the self-test\n\s+at /);
  });

  it('ends with exit 1 and the stack on a bug in a transition, instead of dying silently later', () => {
    const clock = new FakeClock();
    const exits: { code: number; message: string }[] = [];
    let deliver: ((snapshot: AnnotationsSnapshot) => void) | undefined;
    const waiter = new Waiter({
      options: { ...parseOptions([], {}), timeoutMs: 10_000 },
      pod: { netns: OWN, families: ['ipv4'], network: NETWORK, uid: 65534 },
      annotations: (onSnapshot) => {
        deliver = onSnapshot;
        onSnapshot(MISSING);
        return { close: () => {} };
      },
      netnsRecord: (onRecord) => {
        onRecord({ kind: 'text', text: recordFor(OURS) });
        return { close: () => {} };
      },
      selfTest: () => {
        throw new TypeError('not a function');
      },
      clock,
      log: () => {},
      exit: (code, message) => exits.push({ code, message }),
    });
    waiter.start();
    deliver?.(OURS);
    expect(exits).toHaveLength(1);
    expect(exits[0]?.code).toBe(EXIT.internalError);
    expect(exits[0]?.message).toMatch(/^internal error: TypeError: not a function/);
    expect(clock.pending).toBe(0);
  });
});
