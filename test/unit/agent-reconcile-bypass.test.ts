import { describe, expect, it } from 'vitest';
import { BYPASS_POLICY_LABEL } from '../../controller/src/agent/bypass-audit.ts';
import { eventNameFor } from '../../controller/src/kube/event-recorder.ts';
import { NAMESPACE, counterValue, fakeReconciler, testPod } from '../support/reconciler-fakes.ts';

const ROOT_APP_NOTE = 'container "app" (image USER, may be root): CAP_SETUID, CAP_SETGID, CAP_NET_RAW';

/** A reconciler with one mesh pod whose app container sets no securityContext (the image's USER, the runtime's capabilities). */
function withRootApp(env: Record<string, string> = {}) {
  const fakes = fakeReconciler(env);
  const pod = testPod();
  delete pod.spec!.containers.find((c) => c.name === 'app')!.securityContext;
  fakes.api.add(pod);
  const uid = pod.metadata!.uid!;
  const ref = { namespace: NAMESPACE, name: pod.metadata!.name!, uid };
  const netns = fakes.finder.start(uid);
  return { ...fakes, pod, uid, ref, netns };
}

type Fakes = ReturnType<typeof fakeReconciler>;

async function gaugeSeries(t: Fakes): Promise<Record<string, number>> {
  const { values } = await t.metrics.podBypassFindings.get();
  return Object.fromEntries(values.map((v) => [`${v.labels.namespace}/${v.labels.pod}/${v.labels.finding}`, v.value]));
}

/** The watch delivers the pod as the server has it now, and a pass runs on it. */
async function echoAndPass(t: ReturnType<typeof withRootApp>) {
  const echo = t.api.deliver(t.uid);
  t.reconciler.observe(t.uid, echo.metadata!.resourceVersion);
  return t.reconciler.reconcile(t.uid);
}

describe('reconciler: redirect bypass, audit mode (the default)', () => {
  it('programs and marks the pod, and warns once per sandbox: Event, log line and gauge', async () => {
    const t = withRootApp();
    expect(await t.reconciler.reconcile(t.uid)).toEqual({ kind: 'done' });

    expect(t.api.markOf(t.uid)).toMatchObject({ state: 'initialized', netns: t.netns.inode });
    expect(t.engine.applied).toHaveLength(1);
    const note = `redirect bypass possible (bypass policy audit: node setting PNC_BYPASS_POLICY=audit): ${ROOT_APP_NOTE}`;
    expect(t.events.of('RedirectBypassPossible')).toEqual([
      { uid: t.uid, reason: 'RedirectBypassPossible', note, name: eventNameFor(t.ref, `bypass/${t.netns.inode}/${note}`) },
    ]);
    expect(t.logs.filter((line) => line.msg === note)).toEqual([
      expect.objectContaining({ level: 40, uid: t.uid, netns: t.netns.inode, bypass: { app: ['cap_setuid', 'cap_setgid', 'cap_net_raw'] } }),
    ]);
    const pod = t.ref.name;
    expect(await gaugeSeries(t)).toEqual({ [`shop/${pod}/cap_setuid`]: 1, [`shop/${pod}/cap_setgid`]: 1, [`shop/${pod}/cap_net_raw`]: 1 });

    // The echo of the mark, then a resync later: verified, not warned about again.
    await echoAndPass(t);
    t.clock.advance(10 * 60_000);
    await t.reconciler.reconcile(t.uid);
    expect(t.engine.verified.length).toBeGreaterThan(0);
    expect(t.events.of('RedirectBypassPossible')).toHaveLength(1);
    expect(t.logs.filter((line) => line.msg === note)).toHaveLength(1);

    // A new sandbox (the pod's netns was recreated) is warned about again, under its own Event name.
    const next = t.finder.start(t.uid, 2);
    t.clock.advance(1_000);
    await t.reconciler.reconcile(t.uid);
    expect(t.events.of('RedirectBypassPossible').map((e) => e.name)).toEqual([
      eventNameFor(t.ref, `bypass/${t.netns.inode}/${note}`),
      eventNameFor(t.ref, `bypass/${next.inode}/${note}`),
    ]);
  });

  it('removes the pod from the gauge when it forgets the pod', async () => {
    const t = withRootApp();
    await t.reconciler.reconcile(t.uid);
    expect(Object.keys(await gaugeSeries(t))).toHaveLength(3);
    t.reconciler.forget(t.uid);
    expect(await gaugeSeries(t)).toEqual({});
  });

  it('says nothing about a pod that drops ALL and runs as non-root without privilege escalation', async () => {
    const t = fakeReconciler();
    const pod = t.api.add(testPod());
    t.finder.start(pod.metadata!.uid!);
    await t.reconciler.reconcile(pod.metadata!.uid!);
    expect(t.api.markOf(pod.metadata!.uid!)).toMatchObject({ state: 'initialized' });
    expect(t.events.of('RedirectBypassPossible')).toEqual([]);
    expect(await gaugeSeries(t)).toEqual({});
  });

  it('waits for the namespace before deciding, since its label may make the pod strict', async () => {
    const t = withRootApp();
    t.namespaceLabels.delete(NAMESPACE);
    expect(await t.reconciler.reconcile(t.uid)).toMatchObject({ kind: 'retry' });
    expect(t.engine.applied).toEqual([]);
    expect(t.api.writes).toEqual([]);
  });
});

describe('reconciler: redirect bypass, strict mode', () => {
  it('on a strict node refuses the pod: error mark and Warning with the same reason, once; nothing programmed', async () => {
    const t = withRootApp({ PNC_BYPASS_POLICY: 'strict' });
    expect(await t.reconciler.reconcile(t.uid)).toEqual({ kind: 'done' });

    const reason = `refused: redirect bypass possible (bypass policy strict: node setting PNC_BYPASS_POLICY=strict): ${ROOT_APP_NOTE}`;
    expect(t.api.markOf(t.uid)).toMatchObject({ state: 'error', reason });
    expect(t.engine.applied).toEqual([]);
    expect(t.events.of('RedirectBypassPossible')).toEqual([{ uid: t.uid, reason: 'RedirectBypassPossible', note: reason, name: undefined }]);
    expect(await counterValue(t.metrics.podResults, { outcome: 'refused' })).toBe(1);
    expect(Object.keys(await gaugeSeries(t))).toHaveLength(3);

    // Its mark already says so: not said again.
    await echoAndPass(t);
    expect(t.events.of('RedirectBypassPossible')).toHaveLength(1);
    expect(t.api.writes).toHaveLength(1);
  });

  it('refuses the pod of a namespace labelled strict on an audit node', async () => {
    const t = withRootApp();
    t.namespaceLabels.set(NAMESPACE, { [BYPASS_POLICY_LABEL]: 'strict' });
    await t.reconciler.reconcile(t.uid);
    const mark = t.api.markOf(t.uid)!;
    expect(mark.state).toBe('error');
    expect(mark.reason).toContain(`bypass policy strict: namespace "shop" label ${BYPASS_POLICY_LABEL}="strict"`);
    expect(mark.reason).toContain(ROOT_APP_NOTE);
    expect(t.engine.applied).toEqual([]);
    expect(t.events.of('RedirectBypassPossible')).toHaveLength(1);
  });

  it('does not let a namespace labelled audit relax a strict node', async () => {
    const t = withRootApp({ PNC_BYPASS_POLICY: 'strict' });
    t.namespaceLabels.set(NAMESPACE, { [BYPASS_POLICY_LABEL]: 'audit' });
    await t.reconciler.reconcile(t.uid);
    expect(t.api.markOf(t.uid)).toMatchObject({ state: 'error' });
    expect(t.engine.applied).toEqual([]);
  });

  it('still programs a quiet pod on a strict node', async () => {
    const t = fakeReconciler({ PNC_BYPASS_POLICY: 'strict' });
    const pod = t.api.add(testPod());
    t.finder.start(pod.metadata!.uid!);
    await t.reconciler.reconcile(pod.metadata!.uid!);
    expect(t.api.markOf(pod.metadata!.uid!)).toMatchObject({ state: 'initialized' });
  });
});
