// Istio's injection path on the real node: pods injected by Istio's own injector (istiod chart
// rendered with our Helm values, pkg/kube/inject served as the cluster's webhook), with Istio's
// real pilot-agent running istio-validation in the proxy stand-in image, and the product's
// DaemonSet agent programming the rules. istio-validation must pass at its first try: a failed
// try costs the pod a kubelet back-off (10 s, then more).
import { CoreV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { STATUS_ANNOTATION, parseMark } from '../../controller/src/pod-contract/index.ts';
import { ISTIO_PROXY_IMAGE, VALIDATION_CONTAINER, VALIDATION_PASSED, istioAppPod, setUpIstioPath } from '../../hack/lib/istio-node.ts';
import type { IstioPath } from '../../hack/lib/istio-node.ts';
import { PROXY_UID, WAITER_CONTAINER } from '../../hack/lib/mesh-pods.ts';
import { connectFromPod, isReady, kubectl, podNetns } from '../../hack/lib/real-node.ts';
import { adminKubeConfig } from '../support/cluster.ts';

const nodeName = inject('nodeName');
const READY_WITHIN_MS = 60_000;

describe.skipIf(!nodeName)("Istio's injection path on a real node (skipped without root: no real node)", () => {
  let kc: KubeConfig;
  let core: CoreV1Api;
  let istio: IstioPath | undefined;
  const k = (args: string[]) => kubectl(inject('binDir'), inject('kubeconfig'), args);

  beforeAll(async () => {
    kc = adminKubeConfig();
    core = kc.makeApiClient(CoreV1Api);
    istio = await setUpIstioPath(kc, inject('kubeconfig'), inject('containerdAddress'), `pnc-istio-${randomBytes(3).toString('hex')}`, (line) =>
      console.log(line),
    );
  });
  afterAll(async () => {
    await istio?.stop();
  });

  async function readyPod(name: string): Promise<V1Pod> {
    const deadline = Date.now() + READY_WITHIN_MS;
    for (;;) {
      const pod = await core.readNamespacedPod({ namespace: istio!.namespace, name });
      if (isReady(pod)) return pod;
      if (Date.now() > deadline) {
        const describe = await k(['-n', istio!.namespace, 'describe', 'pod', name]).catch((error: unknown) => String(error));
        throw new Error(`pod ${name} not Ready within ${READY_WITHIN_MS} ms:\n${describe}`);
      }
      await new Promise((done) => setTimeout(done, 200));
    }
  }

  const exitedOnce = (status: V1ContainerStatus | undefined) => ({ restartCount: status?.restartCount, exitCode: status?.state?.terminated?.exitCode });

  /** Creates the pod, waits for Ready; checks istio-validation and the waiter each passed at their first try and the redirect works from the app. */
  async function startsAtFirstTry(name: string, sidecar: 'native' | 'classic'): Promise<void> {
    const { namespace } = istio!;
    const created = await core.createNamespacedPod({ namespace, body: istioAppPod(name, sidecar) });
    const init = created.spec?.initContainers ?? [];
    expect(init.map((c) => c.name)).toEqual([VALIDATION_CONTAINER, ...(sidecar === 'native' ? ['istio-proxy'] : []), WAITER_CONTAINER]);
    expect(created.spec?.containers.map((c) => c.name)).toEqual(sidecar === 'native' ? ['app'] : ['app', 'istio-proxy']);
    const validation = init[0]!;
    expect(validation.image).toBe(ISTIO_PROXY_IMAGE);
    expect(validation.args).toEqual(expect.arrayContaining(['istio-iptables', '--run-validation', '--skip-rule-apply']));
    expect(validation.securityContext).toMatchObject({ runAsUser: PROXY_UID, runAsGroup: PROXY_UID });

    const pod = await readyPod(name);
    const statuses = pod.status?.initContainerStatuses ?? [];
    const status = (container: string) => statuses.find((s) => s.name === container);
    expect(exitedOnce(status(VALIDATION_CONTAINER)), 'istio-validation passes at its first try').toEqual({ restartCount: 0, exitCode: 0 });
    expect(exitedOnce(status(WAITER_CONTAINER))).toEqual({ restartCount: 0, exitCode: 0 });
    const log = await core.readNamespacedPodLog({ namespace, name, container: VALIDATION_CONTAINER });
    expect(log).toContain(VALIDATION_PASSED);
    const proxy = sidecar === 'native' ? status('istio-proxy') : pod.status?.containerStatuses?.find((s) => s.name === 'istio-proxy');
    expect(proxy).toMatchObject({ ready: true, restartCount: 0 });

    // The agent marked the pod for its real sandbox netns.
    const mark = parseMark(pod.metadata!.annotations![STATUS_ANNOTATION]!);
    expect(mark.state).toBe('initialized');
    expect(mark.netns).toBe((await podNetns(inject('clusterDir'), pod.status!.podIP!)).inode);

    // From the app container, an outbound connection lands on the stand-in proxy with its original destination.
    for (const [address, original] of [
      ['198.51.100.231', '198.51.100.231:8443'],
      ['2001:db8:adf::80', '[2001:db8:adf::80]:8443'],
    ] as const) {
      expect(await connectFromPod(k, namespace, name, 'app', address, 8443)).toMatchObject({ listener: 15001, original });
    }
    await core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 0 });
  }

  it('native sidecar (the kubelet is v1.37): istio-validation passes at its first try, then the proxy, the waiter; Ready and redirected', async () => {
    await startsAtFirstTry('native', 'native');
  });

  it('classic sidecar (sidecar.istio.io/nativeSidecar: "false"): the same, with istio-proxy a regular container', async () => {
    await startsAtFirstTry('classic', 'classic');
  });
});
