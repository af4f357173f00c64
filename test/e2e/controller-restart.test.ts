// Restart safety: the agent is SIGKILLed in the middle of a 50-pod burst and started
// again; every pod ends up initialized for its own netns with exactly one copy of our
// rules (no duplicate jumps from a half-finished first run).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMark, STATUS_ANNOTATION } from '../../controller/src/pod-contract/index.ts';
import { pollUntil } from '../../hack/lib/poll.ts';
import { startController } from '../../hack/lib/controller-process.ts';
import type { ControllerProcess } from '../../hack/lib/controller-process.ts';
import { useMeshNode } from '../support/mesh-node.ts';
import type { PodHandle } from '../../hack/lib/mesh-fixture.ts';
import { meshPod } from '../../hack/lib/mesh-pods.ts';
import { expectMarkMatchesSandbox, expectRulesInPlace } from '../support/redirect-assertions.ts';

const notRoot = process.getuid?.() !== 0;
if (notRoot) console.warn('controller-restart e2e skipped: needs root (network namespaces, iptables, cgroups)');

const BURST = 50;
/** Sandboxes started at once: slower than the agent, so it is killed while pods still arrive. */
const SANDBOX_CONCURRENCY = 4;

describe.skipIf(notRoot)('controller on a real control plane: SIGKILL during a burst', () => {
  const { kubeconfig, nodeName, fixture } = useMeshNode('e2e-restart');
  const controllers: ControllerProcess[] = [];
  let ns = '';

  beforeAll(async () => {
    ns = await fixture.namespace('e2e-restart');
  });

  afterAll(async () => {
    for (const controller of controllers) await controller.stop('SIGKILL');
  });

  const countInitialized = async () => {
    const pods = await fixture.core.listNamespacedPod({ namespace: ns });
    return pods.items.filter((pod) => {
      const text = pod.metadata?.annotations?.[STATUS_ANNOTATION];
      return text !== undefined && parseMark(text).state === 'initialized';
    }).length;
  };

  it('initializes all 50 pods, each with one copy of the rules, after a SIGKILL mid-burst and a restart', async () => {
    const first = await startController({ kubeconfig, nodeName });
    controllers.push(first);
    const handles = await Promise.all(Array.from({ length: BURST }, (_, i) => fixture.createPod(ns, meshPod(`burst-${i}`, nodeName), { sandbox: false })));
    const pending = [...handles];
    const sandboxes = Promise.all(
      Array.from({ length: SANDBOX_CONCURRENCY }, async () => {
        for (let handle = pending.shift(); handle; handle = pending.shift()) await fixture.addSandbox(handle);
      }),
    );

    await pollUntil(
      async () => (await countInitialized()) >= 5,
      30_000,
      () => 'the first controller initialized fewer than 5 pods in 30 s',
    );
    const killed = await first.stop('SIGKILL');
    const initializedAtKill = await countInitialized();
    expect(killed.signal).toBe('SIGKILL');
    // The kill really fell inside the burst (the set-up's own premise).
    expect(initializedAtKill).toBeLessThan(BURST);
    console.log(`controller SIGKILLed with ${initializedAtKill}/${BURST} pods initialized and ${pending.length} sandboxes not yet created`);

    const second = await startController({ kubeconfig, nodeName });
    controllers.push(second);
    await sandboxes;
    for (const handle of handles as PodHandle[]) {
      expectMarkMatchesSandbox(handle, await fixture.waitForInitialized(handle, 30_000));
    }
    // A few netns at a time: each check runs iptables-save in every backend.
    for (let i = 0; i < handles.length; i += 5) await Promise.all(handles.slice(i, i + 5).map((handle) => expectRulesInPlace(handle)));
  });
});
