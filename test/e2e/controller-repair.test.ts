// The agent never trusts a mark it did not just verify: a forged mark, a recreated
// sandbox and flushed rules all get re-programmed; a re-init token is handled exactly
// once; and a pod deleted while it waits for its sandbox does not leave an error loop.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMark, REINIT_ANNOTATION, STATUS_ANNOTATION } from '../../controller/src/pod-contract/index.ts';
import { planFromPod, removeRedirect, verifyRedirect } from '../../controller/src/redirect/index.ts';
import { metricValue, startController } from '../../hack/lib/controller-process.ts';
import type { ControllerProcess, LogLine } from '../../hack/lib/controller-process.ts';
import { useMeshNode } from '../support/mesh-node.ts';
import { meshPod } from '../../hack/lib/mesh-pods.ts';
import { expectMarkMatchesSandbox, expectRulesInPlace } from '../support/redirect-assertions.ts';

const notRoot = process.getuid?.() !== 0;
if (notRoot) console.warn('controller-repair e2e skipped: needs root (network namespaces, iptables, cgroups)');

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
/** pino levels: 40 = warn, 50 = error. */
const isWarnOrWorse = (line: LogLine) => typeof line.level === 'number' && line.level >= 40;

describe.skipIf(notRoot)('controller on a real control plane: repair and re-init', () => {
  const { kubeconfig, nodeName, fixture } = useMeshNode('e2e-repair');
  let controller: ControllerProcess;
  let ns = '';

  beforeAll(async () => {
    ns = await fixture.namespace('e2e-repair');
    controller = await startController({ kubeconfig, nodeName });
  });

  afterAll(async () => {
    await controller?.stop('SIGTERM');
  });

  it('re-programs a pod created with a forged "initialized" mark for another netns, and rewrites the mark', async () => {
    const forged = { state: 'initialized' as const, netns: 4026531999, rules: '0123456789abcdef', at: '2020-01-01T00:00:00Z' };
    const handle = await fixture.createPod(ns, meshPod('forged', nodeName, { annotations: { [STATUS_ANNOTATION]: encodeMark(forged) } }));
    expect(handle.sandbox!.netnsInode).not.toBe(forged.netns);
    const mark = await fixture.waitForInitialized(handle);
    expectMarkMatchesSandbox(handle, mark);
    expect(mark.at).not.toBe(forged.at);
    await expectRulesInPlace(handle);
  });

  it('re-programs a pod whose sandbox was recreated (new netns), and the mark names the new netns', async () => {
    const handle = await fixture.createPod(ns, meshPod('recreated', nodeName));
    await fixture.waitForInitialized(handle);
    const oldInode = handle.sandbox!.netnsInode;
    await handle.sandbox!.recreate();
    expect(handle.sandbox!.netnsInode).not.toBe(oldInode);
    const mark = await fixture.waitForInitialized(handle);
    expectMarkMatchesSandbox(handle, mark);
    await expectRulesInPlace(handle);
  });

  it('handles a re-init token once: flushed rules come back, mark.reinit records it, the same token does nothing more', async () => {
    const handle = await fixture.createPod(ns, meshPod('reinit', nodeName));
    const first = await fixture.waitForInitialized(handle);
    const plan = planFromPod(handle.pod);
    await removeRedirect(handle.sandbox!.netnsPath);
    expect((await verifyRedirect(handle.sandbox!.netnsPath, plan)).ok).toBe(false);

    await fixture.annotate(handle, { [REINIT_ANNOTATION]: 'token-1' });
    const reinitialized = await fixture.waitForMark(handle, (m) => m.reinit === 'token-1' && m.state === 'initialized');
    expectMarkMatchesSandbox(handle, reinitialized);
    expect(reinitialized.at).not.toBe(first.at);
    await expectRulesInPlace(handle);
    await fixture.waitForEvent(handle, 'Reinitialized');

    // Another update that still carries the same token: verified, not re-programmed.
    const before = await controller.metrics();
    const reprogrammed = (text: string) =>
      metricValue(text, 'pnc_pod_results_total', { outcome: 'initialized' }) + metricValue(text, 'pnc_pod_results_total', { outcome: 'repaired' });
    await fixture.annotate(handle, { 'example.com/touched': 'yes' });
    // The agent sees the update within milliseconds; a freshly verified pod leaves no trace to wait for.
    await sleep(1500);
    const after = await controller.metrics();
    expect(reprogrammed(after)).toBe(reprogrammed(before));
    const mark = await fixture.readMark(handle);
    expect(mark?.at).toBe(reinitialized.at);
    expect(mark?.reinit).toBe('token-1');
    const reinitEvents = (await fixture.podEvents(handle)).filter((event) => event.reason === 'Reinitialized');
    expect(reinitEvents.length).toBe(1);
    expect(reinitEvents[0]!.series?.count ?? 1).toBe(1);
  });

  it('stops working on a pod deleted while it waits for its sandbox: no error loop', async () => {
    const errorsBefore = metricValue(await controller.metrics(), 'pnc_pod_results_total', { outcome: 'error' });
    // No sandbox: the agent keeps looking for the netns with backoff.
    const handle = await fixture.createPod(ns, meshPod('deleted-while-queued', nodeName), { sandbox: false });
    await controller.waitForLog((line) => line.uid === handle.uid, 10_000);
    await sleep(1000);
    await fixture.deletePod(handle);
    await sleep(1500);
    const linesAfterDelete = () => controller.logs.filter((line) => line.uid === handle.uid).length;
    const settled = linesAfterDelete();
    await sleep(4000);
    const late = controller.logs.filter((line) => line.uid === handle.uid).slice(settled);
    expect(late, JSON.stringify(late)).toEqual([]);
    expect(controller.logs.filter((line) => line.uid === handle.uid && isWarnOrWorse(line)).length).toBeLessThanOrEqual(1);
    expect(metricValue(await controller.metrics(), 'pnc_pod_results_total', { outcome: 'error' })).toBe(errorsBefore);
  });
});
