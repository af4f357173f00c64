// The bypass audit on a real node, one test per mode, with a pod whose app container runs as
// root with the runtime's default capabilities (allowed by Pod Security `baseline`). Audit
// (the node's default): the pod runs, warned about, and the warning is true: after
// setuid(1337) its app reaches another pod directly instead of the proxy. Strict (the
// namespace's label): the same pod is refused and its app never starts.
import { CoreV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { BYPASS_POLICY_LABEL } from '../../controller/src/agent/bypass-audit.ts';
import { STATUS_ANNOTATION, parseMark } from '../../controller/src/pod-contract/index.ts';
import { PROXY_UID } from '../../hack/lib/mesh-pods.ts';
import { pollFor } from '../../hack/lib/poll.ts';
import { APP_PORT, connectFromPod, isReady, kubectl, meshNamespace, standInPod, waitForInjection } from '../../hack/lib/real-node.ts';
import { adminKubeConfig, freshNamespace } from '../support/cluster.ts';

const nodeName = inject('nodeName');
const k = (args: string[]) => kubectl(inject('binDir'), inject('kubeconfig'), args);
/** Injection on, Pod Security `baseline`: root containers keeping the default capabilities are admitted. */
const BASELINE_MESH = { ...meshNamespace('').metadata.labels, 'pod-security.kubernetes.io/enforce': 'baseline' };
const ROOT_APP = /container "app" \(uid 0\): CAP_SETUID, CAP_SETGID, CAP_NET_RAW/;

/** A mesh stand-in pod whose app runs as root with the runtime's default capabilities. */
function rootAppPod(name: string): V1Pod {
  const pod = standInPod(name, 'mesh');
  pod.spec!.containers.find((c) => c.name === 'app')!.securityContext = { runAsUser: 0, runAsGroup: 0, runAsNonRoot: false };
  return pod;
}

describe.skipIf(!nodeName)('redirect bypass on a real node (skipped without root: no real node)', () => {
  let kc: KubeConfig;
  let core: CoreV1Api;
  beforeAll(() => {
    kc = adminKubeConfig();
    core = kc.makeApiClient(CoreV1Api);
  });

  const readyPod = (namespace: string, name: string) =>
    pollFor(
      `pod ${name} Ready`,
      async () => {
        const pod = await core.readNamespacedPod({ namespace, name });
        return isReady(pod) ? pod : undefined;
      },
      120_000,
    );

  const bypassWarning = (namespace: string, name: string) =>
    pollFor(
      'the RedirectBypassPossible Warning',
      async () => {
        const events = await core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${name}` });
        const warning = events.items.find((e) => e.reason === 'RedirectBypassPossible');
        return warning?.type === 'Warning' ? warning.message : undefined;
      },
      90_000,
    );

  it('audit: runs the pod with a Warning, and the warning is true: after setuid(1337) the app reaches another pod past the proxy', async () => {
    const namespace = await freshNamespace(kc, BASELINE_MESH);
    await waitForInjection(core, namespace);
    await core.createNamespacedPod({ namespace, body: standInPod('target', 'plain') });
    await core.createNamespacedPod({ namespace, body: rootAppPod('rooted') });
    const [target, rooted] = await Promise.all([readyPod(namespace, 'target'), readyPod(namespace, 'rooted')]);
    expect(parseMark(rooted.metadata!.annotations![STATUS_ANNOTATION]!).state).toBe('initialized');
    expect(await bypassWarning(namespace, 'rooted')).toMatch(ROOT_APP);

    const targetIP = target.status!.podIP!;
    // As root: captured by the proxy.
    expect(await connectFromPod(k, namespace, 'rooted', 'app', targetIP, APP_PORT)).toMatchObject({ listener: 15001, original: `${targetIP}:${APP_PORT}` });
    // After setuid(1337): the target's app answers itself.
    expect(await connectFromPod(k, namespace, 'rooted', 'app', targetIP, APP_PORT, PROXY_UID)).toMatchObject({
      listener: APP_PORT,
      original: `${targetIP}:${APP_PORT}`,
    });
  });

  it("strict (the namespace's label): refuses the same pod with an error mark and the Warning's reason; its app never starts", async () => {
    const namespace = await freshNamespace(kc, { ...BASELINE_MESH, [BYPASS_POLICY_LABEL]: 'strict' });
    await waitForInjection(core, namespace);
    await core.createNamespacedPod({ namespace, body: rootAppPod('rooted') });
    const note = await bypassWarning(namespace, 'rooted');
    expect(note).toMatch(
      /^refused: redirect bypass possible \(bypass policy strict: namespace "[^"]+" label pod-network-controller\.io\/bypass-policy="strict"\)/,
    );
    expect(note).toMatch(ROOT_APP);
    const pod = await core.readNamespacedPod({ namespace, name: 'rooted' });
    expect(parseMark(pod.metadata!.annotations![STATUS_ANNOTATION]!)).toMatchObject({ state: 'error', reason: note });
    expect(isReady(pod)).toBe(false);
    expect(pod.status?.containerStatuses?.some((s) => s.state?.running) ?? false).toBe(false);
  });
});
