// The stand-in pods of the real-node demo and bench, and the STATUS text they print.
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { IMAGES, podStatusText, standInPod } from '../../hack/lib/real-node.ts';
import { WAITER_CONTAINER } from '../../hack/lib/mesh-pods.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const withStatus = (pod: V1Pod, status: V1Pod['status']): V1Pod => ({ ...pod, status });

describe('standInPod', () => {
  it('gives every kind the same images and container count; only mesh has an istio-proxy', () => {
    for (const kind of ['plain', 'trivial-init', 'mesh'] as const) {
      const pod = standInPod(`p-${kind}`, kind);
      expect(pod.spec!.containers.map((c) => c.image)).toEqual([IMAGES.testProxy, IMAGES.testProxy]);
      expect(pod.spec!.containers.some((c) => c.name === 'istio-proxy')).toBe(kind === 'mesh');
      // Injection adds the waiter to mesh pods; none is written by hand.
      expect(pod.spec!.initContainers?.some((c) => c.name === WAITER_CONTAINER) ?? false).toBe(false);
    }
  });

  it("gives trivial-init an init container of the waiter's image and resources that only prints its usage", async () => {
    const snippet = parse(await readFile(join(ROOT, 'manifests/injection/init-waiter-snippet.yaml'), 'utf8')) as { initContainer: V1Container };
    const init = standInPod('t', 'trivial-init').spec!.initContainers!;
    expect(init).toHaveLength(1);
    expect(init[0]).toMatchObject({ image: IMAGES.initWaiter, args: ['--help'] });
    expect(init[0]!.resources).toEqual(snippet.initContainer.resources);
  });

  it('fits Pod Security "restricted": non-root, no escalation, no capabilities, RuntimeDefault seccomp', () => {
    const pod = standInPod('m', 'trivial-init');
    expect(pod.spec!.securityContext).toEqual({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    for (const container of [...pod.spec!.containers, ...pod.spec!.initContainers!]) {
      expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
      expect(container.securityContext!.runAsUser).toBeGreaterThan(0);
    }
  });
});

describe('podStatusText', () => {
  const mesh = { ...standInPod('m', 'mesh'), spec: { ...standInPod('m', 'mesh').spec!, initContainers: [{ name: WAITER_CONTAINER }] } } as V1Pod;

  it('reads like kubectl get pod', () => {
    expect(podStatusText(mesh)).toBe('Init:0/1');
    expect(podStatusText(withStatus(mesh, { initContainerStatuses: [{ name: WAITER_CONTAINER, state: { running: {} } } as never] }))).toBe('Init:0/1');
    expect(
      podStatusText(
        withStatus(mesh, {
          phase: 'Pending',
          initContainerStatuses: [{ name: WAITER_CONTAINER, state: { terminated: { exitCode: 0 } } } as never],
          containerStatuses: [{ name: 'app', state: { waiting: { reason: 'PodInitializing' } } } as never],
        }),
      ),
    ).toBe('PodInitializing');
    expect(
      podStatusText(
        withStatus(mesh, { phase: 'Running', initContainerStatuses: [{ name: WAITER_CONTAINER, state: { terminated: { exitCode: 0 } } } as never] }),
      ),
    ).toBe('Running');
  });

  it('names a failing or stuck init container, and a pod being deleted', () => {
    expect(
      podStatusText(
        withStatus(mesh, { initContainerStatuses: [{ name: WAITER_CONTAINER, state: { terminated: { exitCode: 3, reason: 'Error' } } } as never] }),
      ),
    ).toBe('Init:Error');
    expect(
      podStatusText(withStatus(mesh, { initContainerStatuses: [{ name: WAITER_CONTAINER, state: { waiting: { reason: 'CrashLoopBackOff' } } } as never] })),
    ).toBe('Init:CrashLoopBackOff');
    expect(podStatusText({ ...mesh, metadata: { ...mesh.metadata, deletionTimestamp: new Date() } })).toBe('Terminating');
  });
});
