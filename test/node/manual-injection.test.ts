// A mesh pod that carries the waiter in its own spec (the documented snippet, added by hand or by
// a tool of the user's), on the real node: the route every supported Kubernetes release has,
// including 1.35, whose API server serves no MutatingAdmissionPolicy v1. `npm test` runs this file
// on the newest release with the rest of the node suite, and again on the oldest.
import { CoreV1Api } from '@kubernetes/client-node';
import type { V1Container, V1Pod, V1Volume } from '@kubernetes/client-node';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { parse } from 'yaml';
import { STATUS_ANNOTATION, parseMark } from '../../controller/src/pod-contract/index.ts';
import { pollFor } from '../../hack/lib/poll.ts';
import { APP_PORT, IMAGES, connectFromPod, isReady, kubectl, podNetns, standInPod } from '../../hack/lib/real-node.ts';
import { adminKubeConfig, freshNamespace } from '../support/cluster.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const nodeName = inject('nodeName');

describe.skipIf(!nodeName)('a mesh pod with the waiter in its own spec (skipped without root: no real node)', () => {
  it('is held until the agent marks its real netns, then Ready and redirected', async () => {
    const kc = adminKubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    // No injection label: the spec alone makes it a mesh pod with a waiter.
    const namespace = await freshNamespace(kc, { 'pod-security.kubernetes.io/enforce': 'restricted' });
    const snippet = parse(await readFile(join(ROOT, 'manifests/injection/init-waiter-snippet.yaml'), 'utf8')) as {
      initContainer: V1Container;
      volume: V1Volume;
    };
    const pod: V1Pod = standInPod('by-hand', 'mesh');
    pod.spec!.initContainers = [{ ...snippet.initContainer, image: IMAGES.initWaiter, imagePullPolicy: 'IfNotPresent' }];
    pod.spec!.volumes = [snippet.volume];
    await core.createNamespacedPod({ namespace, body: pod });

    const ready = await pollFor(
      'the pod to be Ready',
      async () => {
        const current = await core.readNamespacedPod({ namespace, name: 'by-hand' });
        return isReady(current) ? current : undefined;
      },
      120_000,
    );
    const mark = parseMark(ready.metadata!.annotations![STATUS_ANNOTATION]!);
    expect(mark.state).toBe('initialized');
    expect(mark.netns).toBe((await podNetns(inject('clusterDir'), ready.status!.podIP!)).inode);
    expect(ready.status?.initContainerStatuses?.[0]?.state?.terminated?.exitCode).toBe(0);
    const k = (args: string[]) => kubectl(inject('binDir'), inject('kubeconfig'), args);
    expect(await connectFromPod(k, namespace, 'by-hand', 'app', '198.51.100.230', APP_PORT)).toMatchObject({
      listener: 15001,
      original: `198.51.100.230:${APP_PORT}`,
    });
  });
});
