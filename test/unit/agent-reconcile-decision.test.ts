import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../controller/src/agent/config.ts';
import { allConfigured, decideNodeFamilies, withEnabledFamilies } from '../../controller/src/agent/node-families.ts';
import { PodMemory } from '../../controller/src/agent/pod-memory.ts';
import {
  ECHO_WAIT_MS,
  SANDBOX_REPORT_AFTER_MS,
  type SandboxInputs,
  type Target,
  VERIFIED_FRESH_MS,
  decidePod,
  decideTarget,
  decideWithSandbox,
} from '../../controller/src/agent/reconcile-decision.ts';
import { MARK_VERSION, REINIT_ANNOTATION, STATUS_ANNOTATION, encodeMark } from '../../controller/src/pod-contract/index.ts';
import { DEFAULT_NODE_CONFIG, planFromPod, renderPlan, rulesHash, validateNodeConfig } from '../../controller/src/redirect/index.ts';
import { BAD_ANNOTATION, BAD_VALUE, PROXY_UID } from '../../hack/lib/mesh-pods.ts';
import { NAMESPACE, NODE, testPod } from '../support/reconciler-fakes.ts';

const config = parseConfig({ NODE_NAME: NODE }, []);
const redirectConfig = validateNodeConfig(DEFAULT_NODE_CONFIG);
const now = 5_000_000;
const base = {
  namespaceAnnotations: {},
  namespaceLabels: {},
  memory: undefined,
  now,
  config,
  redirectConfig,
  nodeFamilies: allConfigured(redirectConfig.families),
};
const sandbox = { pid: 4001, inode: 4026532001, path: '/proc/4001/ns/net', startTime: 101 };
const at = '2026-12-01T12:00:00.000Z';

function targetOf(annotations: Record<string, string> = {}): Target {
  const step = decideTarget({ ...base, pod: testPod({ annotations }) });
  if (step.kind !== 'find-sandbox') throw new Error(`expected find-sandbox, got ${step.kind}`);
  return step.target;
}

describe('decidePod: before anything is looked up', () => {
  it('skips a pod that is gone, or not eligible (and says why)', () => {
    expect(decidePod({ ...base, pod: undefined })).toEqual({ kind: 'skip', why: 'gone' });
    expect(decidePod({ ...base, pod: testPod({ hostNetwork: true }) })).toEqual({ kind: 'skip', why: 'host-network' });
    expect(decidePod({ ...base, pod: testPod({ proxy: false }) })).toEqual({ kind: 'skip', why: 'no-proxy-container' });
  });

  it('waits for the echo of our last write while it may still come, then asks for a fresh read', () => {
    const pod = testPod();
    pod.metadata!.resourceVersion = '7';
    const memory = new PodMemory(now - 10_000);
    memory.errorMarkWritten('9', now - 1_000);
    expect(decidePod({ ...base, pod, memory })).toEqual({ kind: 'wait-for-echo', resourceVersion: '7' });
    expect(decidePod({ ...base, pod, memory, now: now - 1_000 + ECHO_WAIT_MS })).toEqual({ kind: 'read-fresh', cachedResourceVersion: '7' });
  });

  it('asks for a fresh read after a write that got no answer (it may have landed)', () => {
    const memory = new PodMemory(now);
    memory.writeMayHaveLanded();
    expect(decidePod({ ...base, pod: testPod(), memory }).kind).toBe('read-fresh');
    memory.freshlyRead();
    expect(decidePod({ ...base, pod: testPod(), memory }).kind).toBe('find-sandbox');
  });

  it('ignores the echo wait for an ineligible pod: it is forgotten instead', () => {
    const memory = new PodMemory(now);
    memory.errorMarkWritten('9', now);
    expect(decidePod({ ...base, pod: testPod({ waiter: false }), memory }).kind).toBe('skip');
  });
});

describe('decideTarget: identity and plan', () => {
  it('plans an eligible pod and hashes the plan as the engine renders it', () => {
    const pod = testPod();
    const step = decideTarget({ ...base, pod });
    const plan = planFromPod(pod, redirectConfig, { uid: PROXY_UID, gid: PROXY_UID });
    expect(step).toEqual({
      kind: 'find-sandbox',
      target: { plan, hash: rulesHash(renderPlan(plan)), markText: undefined, reinitToken: undefined, bypass: { containers: [], note: '' } },
    });
  });

  it('refuses an app container running as the proxy UID, once', () => {
    const pod = testPod({ appUid: PROXY_UID });
    const step = decideTarget({ ...base, pod });
    expect(step).toMatchObject({ kind: 'refuse', outcome: 'refused', event: 'ProxyIdentityRefused', reported: false });
    if (step.kind !== 'refuse') throw new Error('unreachable');
    expect(step.reason).toContain('container "app" runAsUser=1337');
    // The same reason already in the mark: nothing new to say.
    pod.metadata!.annotations![STATUS_ANNOTATION] = encodeMark({ state: 'error', at, reason: step.reason });
    expect(decideTarget({ ...base, pod })).toMatchObject({ kind: 'refuse', reported: true });
  });

  it('lets such a pod through when the node allows proxy-UID apps', () => {
    const allowing = parseConfig({ NODE_NAME: NODE, PNC_ALLOW_PROXY_UID_APPS: 'true' }, []);
    const step = decideTarget({ ...base, config: allowing, pod: testPod({ appUid: PROXY_UID }) });
    expect(step.kind).toBe('find-sandbox');
    // Still a bypass: the audit warns about it, through the identity policy's own finding.
    if (step.kind === 'find-sandbox')
      expect(step.target.bypass.containers.map((c) => [c.container, c.findings.map((f) => `${f.kind} ${f.detail}`)])).toEqual([
        ['app', ['proxy_identity runAsUser=1337', 'proxy_identity runAsGroup=1337']],
      ]);
  });

  it('refuses a proxy running as an identity it may not have, but waits when the namespace is not known yet', () => {
    const pod = testPod();
    pod.spec!.containers.find((c) => c.name === 'istio-proxy')!.securityContext!.runAsUser = 2000;
    expect(decideTarget({ ...base, pod, namespaceAnnotations: undefined })).toEqual({ kind: 'wait-for-namespace' });
    const step = decideTarget({ ...base, pod });
    expect(step).toMatchObject({ kind: 'refuse', event: 'ProxyIdentityRefused' });
    if (step.kind === 'refuse') expect(step.reason).toContain('runAsUser=2000');
  });

  it('calls a bad annotation invalid, naming it and its value', () => {
    const step = decideTarget({ ...base, pod: testPod({ annotations: { [BAD_ANNOTATION]: BAD_VALUE } }) });
    expect(step).toMatchObject({ kind: 'invalid', outcome: 'invalid_annotation', event: 'InvalidAnnotation', reported: false });
    if (step.kind !== 'invalid') throw new Error('unreachable');
    expect(step.reason).toContain(BAD_ANNOTATION);
    expect(step.reason).toContain(BAD_VALUE);
    expect(step.reason).toContain(NAMESPACE);
  });
});

describe('decideTarget: families the node has', () => {
  const why = 'the kernel has no IPv6 (/proc/sys/net/ipv6 is missing: booted with ipv6.disable=1?)';
  const withoutV6 = decideNodeFamilies(
    ['ipv4', 'ipv6'],
    new Map([
      ['ipv4', { ok: true }],
      ['ipv6', { ok: false, why }],
    ]),
  );
  const narrowed = { ...base, nodeFamilies: withoutV6, redirectConfig: validateNodeConfig(withEnabledFamilies(DEFAULT_NODE_CONFIG, withoutV6)) };
  const podWithIps = (...ips: string[]) => {
    const pod = testPod();
    pod.status = { ...pod.status, podIPs: ips.map((ip) => ({ ip })) };
    return pod;
  };

  it('refuses a pod with an address of a family the kernel lacks: FamilyUnavailable, once', () => {
    const pod = podWithIps('192.0.2.10', '2001:db8::a');
    const step = decideTarget({ ...narrowed, pod });
    expect(step).toMatchObject({ kind: 'refuse', outcome: 'refused', event: 'FamilyUnavailable', reported: false });
    if (step.kind !== 'refuse') throw new Error('unreachable');
    expect(step.reason).toBe(
      `refused: the pod has the ipv6 address 2001:db8::a, but this node cannot redirect ipv6: ${why}; its ipv6 traffic would bypass the proxy`,
    );
    pod.metadata!.annotations![STATUS_ANNOTATION] = encodeMark({ state: 'error', at, reason: step.reason });
    expect(decideTarget({ ...narrowed, pod })).toMatchObject({ kind: 'refuse', reported: true });
  });

  it('programs an IPv4 pod with the families the node has, and waits for the addresses of a pod that has none yet', () => {
    const step = decideTarget({ ...narrowed, pod: podWithIps('192.0.2.10') });
    if (step.kind !== 'find-sandbox') throw new Error(`expected find-sandbox, got ${step.kind}`);
    expect(step.target.plan.families).toEqual(['ipv4']);
    expect(decideTarget({ ...narrowed, pod: testPod() })).toEqual({ kind: 'wait-for-pod-ips' });
    // A node that lacks nothing does not wait.
    expect(decideTarget({ ...base, pod: testPod() }).kind).toBe('find-sandbox');
  });
});

describe('decideWithSandbox: what the mark is worth', () => {
  const inputs = (target: Target, memory?: PodMemory, more: Partial<SandboxInputs> = {}): SandboxInputs => ({
    target,
    sandbox,
    memory,
    now,
    procRoot: '/host/proc',
    scanError: undefined,
    ...more,
  });
  const markFor = (target: Target, extra: object = {}) =>
    encodeMark({ v: MARK_VERSION, state: 'initialized', netns: sandbox.inode, rules: target.hash, at, id: 'mark-id-0001', ...extra });

  it('waits for a missing sandbox, reporting it once after a minute, with the scan error if any', () => {
    const memory = new PodMemory(now - SANDBOX_REPORT_AFTER_MS + 1);
    expect(decideWithSandbox(inputs(targetOf(), memory, { sandbox: undefined }))).toEqual({ kind: 'wait-for-sandbox' });
    const late = decideWithSandbox(inputs(targetOf(), memory, { sandbox: undefined, now: now + 1, scanError: 'EACCES' }));
    expect(late).toEqual({
      kind: 'wait-for-sandbox',
      report: 'no process of this pod with its own network namespace under /host/proc after 60 s (scanning failed: EACCES); still looking',
    });
    memory.reportedSandboxNotFound();
    expect(decideWithSandbox(inputs(targetOf(), memory, { sandbox: undefined, now: now + 1 }))).toEqual({ kind: 'wait-for-sandbox' });
  });

  it('programs a pod without a mark: Initialized, outcome initialized, no extra note', () => {
    expect(decideWithSandbox(inputs(targetOf()))).toEqual({
      kind: 'program',
      why: 'no-mark',
      force: false,
      clearRecord: false,
      outcome: 'initialized',
      event: 'Initialized',
      note: '',
    });
  });

  it('programs a pod marked error as a first initialization', () => {
    const target = targetOf({ [STATUS_ANNOTATION]: encodeMark({ state: 'error', at, reason: 'x' }) });
    expect(decideWithSandbox(inputs(target))).toMatchObject({ kind: 'program', why: 'not-initialized', event: 'Initialized' });
  });

  it('repairs a pod whose initialized mark names another netns or other rules', () => {
    const otherNetns = targetOf({ [STATUS_ANNOTATION]: encodeMark({ state: 'initialized', netns: 4026531999, rules: '0123456789abcdef', at }) });
    expect(decideWithSandbox(inputs(otherNetns))).toEqual({
      kind: 'repair',
      why: 'other-netns',
      force: false,
      clearRecord: true,
      outcome: 'repaired',
      event: 'Repaired',
      note: `the mark named another network namespace (new sandbox, or a forged mark); programmed netns ${sandbox.inode}`,
    });
    const otherRules = targetOf({ [STATUS_ANNOTATION]: encodeMark({ state: 'initialized', netns: sandbox.inode, rules: '0123456789abcdef', at }) });
    expect(decideWithSandbox(inputs(otherRules))).toMatchObject({
      kind: 'repair',
      why: 'rules-changed',
      note: `the mark did not match (rules-changed); programmed netns ${sandbox.inode}`,
    });
  });

  it('re-initializes, forced, for a new token', () => {
    const target = targetOf({ [REINIT_ANNOTATION]: 't1' });
    target.markText = markFor(target);
    expect(decideWithSandbox(inputs(target))).toEqual({
      kind: 'reinit',
      force: true,
      clearRecord: true,
      reinitToken: 't1',
      outcome: 'initialized',
      event: 'Reinitialized',
      note: 're-initialized for token "t1"',
    });
    target.markText = markFor(target, { reinit: 't1' });
    expect(decideWithSandbox(inputs(target)).kind).toBe('verify');
  });

  it('verifies a mark that counts, with repairs ready for drift and for a netns without its record', () => {
    const target = targetOf();
    target.markText = markFor(target);
    const repair = { force: false, clearRecord: true, outcome: 'repaired', event: 'Repaired' };
    expect(decideWithSandbox(inputs(target))).toEqual({
      kind: 'verify',
      markText: target.markText,
      drifted: { ...repair, note: `rules had drifted in netns ${sandbox.inode}; re-programmed` },
      unrecorded: {
        ...repair,
        note: `netns ${sandbox.inode} holds no record of the mark (a new sandbox that got the inode of the one the mark was written for); programmed it`,
      },
    });
  });

  it('programs again over a mark of the first format (no id): its netns has no record to check it by', () => {
    const target = targetOf();
    target.markText = encodeMark({ state: 'initialized', netns: sandbox.inode, rules: target.hash, at });
    expect(decideWithSandbox(inputs(target))).toMatchObject({
      kind: 'repair',
      why: 'old-format',
      clearRecord: true,
      note: `the mark was written by an earlier release (format 1, without a netns record); programmed netns ${sandbox.inode}`,
    });
  });

  it('leaves a pod verified lately with this very mark alone, until that is too old', () => {
    const target = targetOf();
    target.markText = markFor(target);
    const memory = new PodMemory(now);
    memory.verifiedNow({ markText: target.markText, sandbox, hash: target.hash, at: now - VERIFIED_FRESH_MS + 1 });
    expect(decideWithSandbox(inputs(target, memory))).toEqual({ kind: 'fresh' });
    expect(decideWithSandbox(inputs(target, memory, { now: now + 1 })).kind).toBe('verify');
    // Another sandbox with the same netns inode (Linux reuses them): verified again.
    expect(decideWithSandbox(inputs(target, memory, { sandbox: { ...sandbox, pid: sandbox.pid + 1 } })).kind).toBe('verify');
    expect(decideWithSandbox(inputs(target, memory, { sandbox: { ...sandbox, startTime: sandbox.startTime + 1 } })).kind).toBe('verify');
    expect(decideWithSandbox(inputs(target, memory, { sandbox: { ...sandbox, inode: sandbox.inode + 1 } })).kind).toBe('repair');
    const otherMark = markFor(target, { at: '2026-12-01T12:00:01.000Z' });
    expect(decideWithSandbox(inputs({ ...target, markText: otherMark }, memory)).kind).toBe('verify');
  });
});
