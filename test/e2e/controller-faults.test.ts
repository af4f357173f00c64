// The agent under faults, on the real control plane with simulated sandboxes: an API
// outage as the node sees it (its connections cut, then back), a mark the API can never
// accept, the xtables lock held by another program, and a churn that must not grow the
// agent's memory. Each case is bounded in time; none disturbs the shared control plane.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { metricValue, startController } from '../../hack/lib/controller-process.ts';
import { pollUntil } from '../../hack/lib/poll.ts';
import { statusMiB } from '../../hack/lib/stats.ts';
import type { ControllerProcess, LogLine } from '../../hack/lib/controller-process.ts';
import { startApiGate } from '../support/api-gate.ts';
import type { ApiGate } from '../support/api-gate.ts';
import type { PodHandle } from '../../hack/lib/mesh-fixture.ts';
import { useMeshNode } from '../support/mesh-node.ts';
import { meshPod } from '../../hack/lib/mesh-pods.ts';
import { expectMarkMatchesSandbox, expectRulesInPlace } from '../support/redirect-assertions.ts';

const notRoot = process.getuid?.() !== 0;
if (notRoot) console.warn('controller-faults e2e skipped: needs root (network namespaces, iptables, cgroups)');

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/** Mark writes the agent made for this pod that initialized or repaired it (one log line per write). */
const markWrites = (controller: ControllerProcess, uid: string) =>
  controller.logs.filter((line: LogLine) => line.uid === uid && (line.msg === 'pod initialized' || line.msg === 'pod repaired')).length;

describe.skipIf(notRoot)('controller under faults', () => {
  let controller: ControllerProcess | undefined;
  afterEach(async () => {
    await controller?.stop('SIGTERM');
    controller = undefined;
  });

  describe('API outage: the node cut off from the API server, then back', () => {
    const { kubeconfig, nodeName, fixture } = useMeshNode('faults-outage');
    let gate: ApiGate | undefined;
    afterAll(async () => gate?.close());

    it('marks pods within 2 s of the API answering again, none twice, and shows the broken watch meanwhile', async () => {
      const ns = await fixture.namespace('e2e-faults-outage');
      gate = await startApiGate(kubeconfig);
      gate.open();
      controller = await startController({ kubeconfig: gate.kubeconfig, nodeName });
      const agent = controller;
      const before = await fixture.createPod(ns, meshPod('before', nodeName));
      await fixture.waitForInitialized(before);

      // Pods the agent saw without a sandbox: it programs them during the outage, and their
      // mark writes fail and are retried (the path that once marked twice).
      const seen = await Promise.all([0, 1, 2].map((i) => fixture.createPod(ns, meshPod(`seen-${i}`, nodeName), { sandbox: false })));
      for (const pod of seen) await agent.waitForLog((line) => line.uid === pod.uid && line.msg === 'sandbox not found yet');

      gate.cut();
      const cutAt = Date.now();
      await Promise.all(seen.map((pod) => fixture.addSandbox(pod)));
      // Pods the agent cannot see until it watches again.
      const unseen = await Promise.all([0, 1, 2].map((i) => fixture.createPod(ns, meshPod(`unseen-${i}`, nodeName))));
      // Long enough for the watch backoff (0.5 s doubling) to pass 8 s.
      await pollUntil(
        async () => (await agent.get('/readyz')).status === 503,
        15_000,
        () => '/readyz stayed 200 with the watches down',
      );
      expect((await agent.get('/readyz')).body).toMatch(/watch down for \d+ s/);
      expect(metricValue(await agent.metrics(), 'pnc_watch_up', { resource: 'pods' })).toBe(0);
      await sleep(Math.max(0, cutAt + 20_000 - Date.now()));

      gate.open();
      const backAt = Date.now();
      const after = await Promise.all([0, 1, 2].map((i) => fixture.createPod(ns, meshPod(`after-${i}`, nodeName))));
      const all = [...seen, ...unseen, ...after];
      const marks = await Promise.all(all.map((pod) => fixture.waitForInitialized(pod, 10_000, 50)));
      const lateMs = marks.map((mark) => Date.parse(mark.at) - backAt);
      console.log(
        `API outage ${backAt - cutAt} ms: marks after the API answered again (ms): ${JSON.stringify(Object.fromEntries(all.map((pod, i) => [pod.name, lateMs[i]])))}`,
      );
      for (const [i, pod] of all.entries()) {
        expectMarkMatchesSandbox(pod, marks[i]!);
        expect(lateMs[i], `${pod.name} marked ${lateMs[i]} ms after the API answered`).toBeLessThanOrEqual(2_000);
      }
      await expectRulesInPlace(after[0]!);
      await pollUntil(
        async () => (await agent.get('/readyz')).status === 200,
        5_000,
        () => '/readyz did not recover',
      );
      expect(metricValue(await agent.metrics(), 'pnc_watch_up', { resource: 'pods' })).toBe(1);

      // Past the 5 s echo wait: a stale cache would have acted by now.
      await sleep(7_000);
      for (const pod of [before, ...all]) {
        const initialized = (await fixture.podEvents(pod)).filter((event) => event.reason === 'Initialized');
        expect(initialized, `${pod.name}: Initialized Events`).toHaveLength(1);
        expect(markWrites(agent, pod.uid), `${pod.name}: mark writes`).toBe(1);
      }
      expect(agent.logs.some((line) => line.msg === 'API server answers again')).toBe(true);
    });
  });

  describe('a mark the API server can never accept', () => {
    const { kubeconfig, nodeName, fixture } = useMeshNode('faults-full');

    it('gets a MarkWriteFailed Warning within seconds and is not retried in a storm', async () => {
      const ns = await fixture.namespace('e2e-faults-full');
      controller = await startController({ kubeconfig, nodeName });
      const agent = controller;
      // The API allows 262,144 bytes of annotation keys and values in all: leave 40, less than any mark.
      const key = 'example.com/filler';
      const full = await fixture.createPod(ns, meshPod('full', nodeName, { annotations: { [key]: 'x'.repeat(262_144 - key.length - 40) } }));
      const event = await fixture.waitForEvent(full, 'MarkWriteFailed', 10_000);
      expect(event.type).toBe('Warning');
      expect(event.note).toContain('pod-network-controller.io/status');
      expect(event.note).toMatch(/HTTP 422/);
      expect(event.note).toMatch(/262144/);
      expect(await fixture.readMark(full)).toBeUndefined();
      // Once, or twice when the sandbox's own status update brought the retry forward.
      await sleep(1_000);
      const refusals = metricValue(await agent.metrics(), 'pnc_mark_write_refusals_total', { status: '422' });
      expect(refusals).toBeGreaterThanOrEqual(1);
      expect(refusals).toBeLessThanOrEqual(2);
      // Then retried after a minute or more, not in a loop.
      await sleep(5_000);
      expect(metricValue(await agent.metrics(), 'pnc_mark_write_refusals_total', { status: '422' })).toBe(refusals);
      expect((await fixture.podEvents(full)).filter((e) => e.reason === 'MarkWriteFailed')).toHaveLength(1);
      // Other pods on the node are not held up.
      const fine = await fixture.createPod(ns, meshPod('fine', nodeName));
      expectMarkMatchesSandbox(fine, await fixture.waitForInitialized(fine));
    });
  });

  describe('the xtables lock held by another program', () => {
    const { kubeconfig, nodeName, fixture } = useMeshNode('faults-lock');
    const holders: ReturnType<typeof spawn>[] = [];
    afterAll(() => {
      for (const holder of holders) holder.kill('SIGKILL');
    });

    it('warns, counts, gives up after the limit with an Event, and marks the pod once the lock is free', async () => {
      const ns = await fixture.namespace('e2e-faults-lock');
      controller = await startController({ kubeconfig, nodeName, env: { PNC_IPTABLES_MODE: 'legacy', PNC_IPTABLES_LOCK_TIMEOUT: '5' } });
      const agent = controller;
      const holdMs = 8_000;
      const holder = spawn('flock', ['/run/xtables.lock', 'sleep', String(holdMs / 1000)], { stdio: 'ignore' });
      holders.push(holder);
      const released = new Promise<number>((resolve) => holder.once('exit', () => resolve(Date.now())));
      await sleep(200); // flock has the lock
      const pod = await fixture.createPod(ns, meshPod('locked', nodeName));
      const createdAt = Date.now();
      await agent.waitForLog((line) => line.uid === pod.uid && String(line.msg).includes('waiting for the xtables lock'), 6_000);
      expect(metricValue(await agent.metrics(), 'pnc_iptables_lock_waits_total')).toBeGreaterThanOrEqual(1);
      const timeout = await fixture.waitForEvent(pod, 'IptablesLockTimeout', 10_000);
      expect(timeout.type).toBe('Warning');
      expect(timeout.note).toContain('5 s');
      expect(metricValue(await agent.metrics(), 'pnc_iptables_lock_timeouts_total')).toBeGreaterThanOrEqual(1);
      expect(await fixture.readMark(pod)).toBeUndefined(); // no error mark: nothing is wrong with the pod

      const mark = await fixture.waitForInitialized(pod, 15_000, 50);
      const freedAt = await released;
      console.log(`xtables lock held ${holdMs} ms: pod marked ${Date.parse(mark.at) - freedAt} ms after the lock was released`);
      expectMarkMatchesSandbox(pod, mark);
      await expectRulesInPlace(pod, 'legacy');
      // The latency reported runs from the sandbox being found, the wait for the lock included.
      const initialized = await fixture.waitForEvent(pod, 'Initialized');
      const reportedMs = Number(/in (\d+) ms from sandbox found/.exec(initialized.note ?? '')?.[1]);
      expect(reportedMs).toBeGreaterThanOrEqual(freedAt - createdAt - 1_000);
    });
  });

  describe('an Initialized Event lost with a killed agent', () => {
    const { kubeconfig, nodeName, fixture } = useMeshNode('faults-event');

    it('is recorded once by the next agent, and never doubled by the ones after', async () => {
      const ns = await fixture.namespace('e2e-faults-event');
      controller = await startController({ kubeconfig, nodeName });
      const kept = await fixture.createPod(ns, meshPod('kept', nodeName));
      const lost = await fixture.createPod(ns, meshPod('lost', nodeName));
      await Promise.all([fixture.waitForInitialized(kept), fixture.waitForInitialized(lost)]);
      await Promise.all([fixture.waitForEvent(kept, 'Initialized'), fixture.waitForEvent(lost, 'Initialized')]);
      await controller.stop('SIGKILL');
      // As if the agent had died between the mark write and the Event.
      const gone = await fixture.waitForEvent(lost, 'Initialized');
      await fixture.events.deleteNamespacedEvent({ namespace: ns, name: gone.metadata!.name! });

      for (const round of [1, 2]) {
        controller = await startController({ kubeconfig, nodeName });
        const agent = controller;
        await agent.waitForLog((line) => line.uid === lost.uid && line.msg === 'mark, netns record and rules verified');
        await agent.waitForLog((line) => line.uid === kept.uid && line.msg === 'mark, netns record and rules verified');
        await sleep(1_000); // Events are sent in the background
        const initialized = (await fixture.podEvents(lost)).filter((event) => event.reason === 'Initialized');
        expect(initialized, `round ${round}`).toHaveLength(1);
        expect(initialized[0]!.note).toContain('recorded after an agent restart');
        expect(
          (await fixture.podEvents(kept)).filter((event) => event.reason === 'Initialized'),
          `round ${round}`,
        ).toHaveLength(1);
        await agent.stop('SIGKILL');
      }
    });
  });

  describe('churn', () => {
    const { kubeconfig, nodeName, fixture } = useMeshNode('faults-churn');

    it("keeps the agent's memory flat while pods come and go for 45 s", { timeout: 120_000 }, async () => {
      const ns = await fixture.namespace('e2e-faults-churn');
      controller = await startController({ kubeconfig, nodeName });
      const agent = controller;
      // The agent re-executes itself with small young generations, no JIT, a small device's heap growth and two malloc arenas.
      expect((await readFile(`/proc/${agent.pid}/cmdline`, 'utf8')).split('\0')).toEqual(
        expect.arrayContaining(['--max-semi-space-size=1', '--jitless', '--max-old-space-size=256']),
      );
      expect(await readFile(`/proc/${agent.pid}/maps`, 'utf8'), 'no writable and executable memory').not.toMatch(/ rwx. /);
      expect((await readFile(`/proc/${agent.pid}/environ`, 'utf8')).split('\0')).toContain('MALLOC_ARENA_MAX=2');
      // RSS, and its anonymous part and the JS heap to tell a leak from pages of node's binary.
      const samples: number[] = [];
      const details: string[] = [];
      const sample = async () => {
        const [status, metrics] = await Promise.all([readFile(`/proc/${agent.pid}/status`, 'utf8'), agent.metrics().catch(() => '')]);
        const heapMiB = metricValue(metrics, 'nodejs_heap_size_used_bytes') / 1024 / 1024;
        samples.push(statusMiB(status, 'VmRSS'));
        details.push(`${statusMiB(status, 'VmRSS')}/${statusMiB(status, 'RssAnon')}/${heapMiB.toFixed(1)}`);
      };
      const sampler = setInterval(() => void sample().catch(() => {}), 1_000);
      const endAt = Date.now() + 45_000;
      let round = 0;
      let handled = 0;
      try {
        while (Date.now() < endAt) {
          const pods: PodHandle[] = await Promise.all(Array.from({ length: 10 }, (_, i) => fixture.createPod(ns, meshPod(`churn-${round}-${i}`, nodeName))));
          await Promise.all(pods.map((pod) => fixture.waitForInitialized(pod, 20_000, 50)));
          await Promise.all(
            pods.map(async (pod) => {
              await pod.sandbox?.destroy();
              pod.sandbox = undefined;
              await fixture.deletePod(pod);
            }),
          );
          handled += pods.length;
          round++;
        }
      } finally {
        clearInterval(sampler);
      }
      // Warm-up (first quarter) aside, the last quarter may not sit well above the second.
      const quarter = Math.floor(samples.length / 4);
      const peak = (part: number[]) => Math.max(...part);
      const early = peak(samples.slice(quarter, 2 * quarter));
      const late = peak(samples.slice(3 * quarter));
      console.log(
        `churn: ${handled} pods in ${round} rounds; RSS MB second quarter peak ${early.toFixed(1)}, last quarter peak ${late.toFixed(1)}, overall peak ${peak(samples).toFixed(1)}`,
      );
      expect(handled).toBeGreaterThanOrEqual(50);
      expect(late, `samples, MiB RSS/anonymous/JS heap: ${details.join(' ')}`).toBeLessThanOrEqual(early + 10);
      expect(peak(samples)).toBeLessThanOrEqual(100);
    });
  });
});
