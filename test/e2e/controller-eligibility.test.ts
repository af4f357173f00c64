// The node agent on a real control plane with simulated sandboxes: readiness, which
// pods it programs and which it must leave alone, the proxy-UID refusal, bad
// annotations and their recovery, and the metrics that count all of it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INITIALIZE_ANNOTATION } from '../../controller/src/pod-contract/index.ts';
import { startApiGate } from '../support/api-gate.ts';
import { metricValue, startController } from '../../hack/lib/controller-process.ts';
import type { ControllerProcess } from '../../hack/lib/controller-process.ts';
import { useMeshNode } from '../support/mesh-node.ts';
import type { PodHandle } from '../../hack/lib/mesh-fixture.ts';
import { BAD_ANNOTATION, BAD_VALUE, badAnnotationPod, hostNetworkMeshPod, meshPod, plainPod, proxyUidAppPod } from '../../hack/lib/mesh-pods.ts';
import {
  expectMarkMatchesSandbox,
  expectNoRedirectRules,
  expectRulesInPlace,
  expectTrafficRedirected,
  expectUntouched,
} from '../support/redirect-assertions.ts';

const notRoot = process.getuid?.() !== 0;
if (notRoot) console.warn('controller-eligibility e2e skipped: needs root (network namespaces, iptables, cgroups)');

describe.skipIf(notRoot)('controller on a real control plane: eligibility, refusal, bad annotations', () => {
  const { kubeconfig, nodeName, fixture } = useMeshNode('e2e-elig');
  let controller: ControllerProcess | undefined;
  let meshNs = '';
  let optInNs = '';
  let excludedNs = '';
  let ownNs = '';

  beforeAll(async () => {
    [meshNs, optInNs, excludedNs, ownNs] = await Promise.all([
      fixture.namespace('e2e-mesh'),
      fixture.namespace('e2e-optin', { [INITIALIZE_ANNOTATION]: 'true' }),
      fixture.namespace('e2e-excluded'),
      fixture.namespace('e2e-own'),
    ]);
  });

  afterAll(async () => {
    await controller?.stop('SIGTERM');
  });

  it('answers /readyz 503 until the initial lists synced, then 200 and logs "ready"', async () => {
    const gate = await startApiGate(kubeconfig);
    const early = await startController({ kubeconfig: gate.kubeconfig, nodeName: `${nodeName}-gated`, waitReady: false });
    try {
      // The process is alive and serving while its first LIST is held at the gate.
      await expect.poll(async () => (await early.get('/healthz').catch(() => ({ status: 0 }))).status, { timeout: 15_000 }).toBe(200);
      for (let i = 0; i < 3; i++) {
        expect((await early.get('/readyz')).status).toBe(503);
        await new Promise((done) => setTimeout(done, 300));
      }
      expect(early.logs.some((line) => line.msg === 'ready')).toBe(false);
      gate.open();
      await early.waitReady(20_000);
      expect((await early.get('/readyz')).status).toBe(200);
      await early.waitForLog((line) => line.msg === 'ready', 5000);
    } finally {
      await early.stop('SIGTERM');
      await gate.close();
    }
  });

  it('starts as the node, with its own and the configured namespaces excluded', async () => {
    controller = await startController({
      kubeconfig,
      nodeName,
      env: { POD_NAMESPACE: ownNs, PNC_EXCLUDED_NAMESPACES: `kube-system,${excludedNs}` },
    });
    expect((await controller.get('/healthz')).status).toBe(200);
    expect((await controller.get('/readyz')).status).toBe(200);
  });

  it('initializes eligible pods: waiter, pod opt-in, namespace opt-in; rules verified and traffic redirected', async () => {
    const handles = await Promise.all([
      fixture.createPod(meshNs, meshPod('with-waiter', nodeName)),
      fixture.createPod(meshNs, meshPod('pod-opt-in', nodeName, { waiter: false, annotations: { [INITIALIZE_ANNOTATION]: 'true' } })),
      fixture.createPod(optInNs, meshPod('ns-opt-in', nodeName, { waiter: false })),
    ]);
    for (const handle of handles) {
      const mark = await fixture.waitForInitialized(handle);
      expectMarkMatchesSandbox(handle, mark);
      await expectRulesInPlace(handle);
    }
    await expectTrafficRedirected(handles[0]!);
    const event = await fixture.waitForEvent(handles[0]!, 'Initialized');
    expect(event.type).toBe('Normal');
    expect(event.reportingController).toBe('pod-network-controller.io/controller');
    expect(event.reportingInstance).toBe(nodeName);
    expect(event.note).toMatch(/\d+(\.\d+)? ?ms/);
  });

  it('leaves ineligible, excluded and hostNetwork pods untouched: no mark, no rules', async () => {
    const untouched = await Promise.all([
      fixture.createPod(meshNs, plainPod('no-proxy', nodeName)),
      fixture.createPod(meshNs, meshPod('inject-false', nodeName, { annotations: { 'sidecar.istio.io/inject': 'false' } })),
      fixture.createPod(meshNs, meshPod('not-opted-in', nodeName, { waiter: false })),
      fixture.createPod(excludedNs, meshPod('in-excluded-ns', nodeName)),
      fixture.createPod(ownNs, meshPod('in-own-ns', nodeName)),
      // A sandbox the agent could wrongly program if it ignored hostNetwork.
      fixture.createPod(meshNs, hostNetworkMeshPod('host-network', nodeName)),
    ]);
    // A pod created after them is the sync point: once it is initialized, the agent has seen the others.
    const sentinel = await fixture.createPod(meshNs, meshPod('sentinel', nodeName));
    await fixture.waitForInitialized(sentinel);
    await new Promise((done) => setTimeout(done, 1000));
    for (const handle of untouched) {
      expect(await fixture.readMark(handle), `${handle.namespace}/${handle.name}`).toBeUndefined();
      await expectUntouched(handle);
    }
    // The node's own netns (where hostNetwork pods live) never gets our chains either.
    const hostNetns = `/proc/${process.pid}/ns/net`;
    await expectNoRedirectRules(hostNetns);
  });

  it('refuses pods whose app runs as the proxy UID: Warning ProxyIdentityRefused, error mark, no rules', async () => {
    const refused = await Promise.all([
      fixture.createPod(meshNs, proxyUidAppPod('app-as-proxy', nodeName)),
      fixture.createPod(meshNs, meshPod('pod-as-proxy', nodeName, { podRunAsUser: 1337 })),
    ]);
    for (const handle of refused) {
      const mark = await fixture.waitForMark(handle, (m) => m.state === 'error');
      expect(mark.reason).toMatch(/1337/);
      const event = await fixture.waitForEvent(handle, 'ProxyIdentityRefused');
      expect(event.type).toBe('Warning');
      await expectNoRedirectRules(handle.sandbox!.netnsPath);
    }
  });

  it('marks a bad annotation as an error naming it and its value, then recovers once an admin fixes it', async () => {
    const handle = await fixture.createPod(meshNs, badAnnotationPod('bad-annotation', nodeName));
    const mark = await fixture.waitForMark(handle, (m) => m.state === 'error');
    expect(mark.reason).toContain(BAD_ANNOTATION);
    expect(mark.reason).toContain(BAD_VALUE);
    const event = await fixture.waitForEvent(handle, 'InvalidAnnotation');
    expect(event.type).toBe('Warning');
    expect(event.note).toContain(BAD_ANNOTATION);
    expect(event.note).toContain(BAD_VALUE);
    await expectNoRedirectRules(handle.sandbox!.netnsPath);

    const fixed = await fixture.annotate(handle, { [BAD_ANNOTATION]: '15020' });
    const recovered: PodHandle = { ...handle, pod: fixed };
    expectMarkMatchesSandbox(recovered, await fixture.waitForInitialized(recovered));
    await expectRulesInPlace(recovered);
  });

  it('counts every outcome in /metrics', async () => {
    const text = await controller!.metrics();
    // 3 eligible + sentinel + the recovered pod were initialized; 2 refused; 1 invalid annotation.
    expect(metricValue(text, 'pnc_pod_results_total', { outcome: 'initialized' })).toBeGreaterThanOrEqual(5);
    expect(metricValue(text, 'pnc_pod_results_total', { outcome: 'refused' })).toBeGreaterThanOrEqual(2);
    expect(metricValue(text, 'pnc_pod_results_total', { outcome: 'invalid_annotation' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'pnc_mark_latency_seconds_count')).toBeGreaterThanOrEqual(5);
    expect(metricValue(text, 'pnc_watch_requests_total', { resource: 'pods' })).toBeGreaterThanOrEqual(2);
    expect(metricValue(text, 'pnc_watch_requests_total', { resource: 'namespaces' })).toBeGreaterThanOrEqual(2);
    expect(text).toMatch(/^pnc_queue_depth \d+/m);
  });
});
