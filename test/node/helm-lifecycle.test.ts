// The chart's life on a real node, as a platform team lives it, on a cluster of its own: a
// kustomize install taken over by `helm install --take-ownership` at the previous chart version
// (test/fixtures, as released), `helm upgrade --reuse-values` to this one while mesh pods are
// being created, `helm test`, `helm rollback` and forward again, then `helm uninstall` while mesh
// pods are being created: every one starts (marked by an agent, or never injected), none is left
// waiting in Init, and nothing of the injection is left.
import { AdmissionregistrationV1Api, AppsV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { V1Pod } from '@kubernetes/client-node';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse } from 'yaml';
import { STATUS_ANNOTATION, parseMark } from '../../controller/src/pod-contract/index.ts';
import { CHART_DIR, INSTALL_NAMESPACE, ROOT, helmBinary } from '../../hack/lib/chart.ts';
import { deployToLocalCluster, ensureLocalCluster, stopLocalCluster, type LocalCluster } from '../../hack/lib/local-cluster.ts';
import { WAITER_CONTAINER } from '../../hack/lib/mesh-pods.ts';
import { pollFor } from '../../hack/lib/poll.ts';
import { processStartTime } from '../../hack/lib/proc.ts';
import { APP_PORT, IMAGES, connectFromPod, isReady, kubectl, meshNamespace, podStatusText, standInPod, waitForInjection } from '../../hack/lib/real-node.ts';
import { LIFECYCLE_DIR_PREFIX } from '../support/node-global-setup.ts';

const nodeName = inject('nodeName');
const RELEASE = 'pod-network-controller';
const PREVIOUS_CHART = join(ROOT, 'test/fixtures/pod-network-controller-0.1.0.tgz');
const CHART_VERSION = (parse(readFileSync(join(ROOT, CHART_DIR, 'Chart.yaml'), 'utf8')) as { version: string }).version;
const [controllerRepository, controllerTag] = IMAGES.controller.split(':') as [string, string];
const [waiterRepository, waiterTag] = IMAGES.initWaiter.split(':') as [string, string];
const IMAGE_VALUES = [
  `images.controller.repository=${controllerRepository}`,
  `images.controller.tag=${controllerTag}`,
  `images.initWaiter.repository=${waiterRepository}`,
  `images.initWaiter.tag=${waiterTag}`,
].flatMap((value) => ['--set', value]);

interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

interface Release {
  name: string;
  revision: string;
  status: string;
  chart: string;
}

describe.skipIf(!nodeName)('the Helm chart on a real node: take-ownership, upgrade, test, rollback, uninstall (skipped without root: no real node)', () => {
  let stateDir = '';
  let cluster: LocalCluster;
  let helmPath: string;
  let core: CoreV1Api;
  let apps: AppsV1Api;
  let admission: AdmissionregistrationV1Api;
  const namespace = `pnc-helm-${process.pid}`;
  const k = (args: string[]) => kubectl(cluster.binDir, cluster.kubeconfig, args, 60_000);

  /** helm against the cluster in the release namespace; never throws. */
  const helm = (args: string[]): Promise<HelmResult> =>
    new Promise((resolve) => {
      execFile(
        helmPath,
        [...args, '--kubeconfig', cluster.kubeconfig, '--namespace', INSTALL_NAMESPACE],
        { timeout: 420_000, maxBuffer: 16 * 1024 * 1024 },
        (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  const release = async (): Promise<Release> => {
    const listed = await helm(['list', '--output', 'json']);
    expect(listed.code, listed.stderr).toBe(0);
    const releases = JSON.parse(listed.stdout) as Release[];
    expect(releases.map((r) => r.name)).toEqual([RELEASE]);
    return { ...releases[0]!, revision: String(releases[0]!.revision) };
  };

  const createMeshPod = async (name: string): Promise<void> => {
    await core.createNamespacedPod({ namespace, body: standInPod(name, 'mesh') });
  };

  /** Waits until every pod named is Ready; each one's pod. */
  const readyPods = (names: string[], timeoutMs = 180_000): Promise<V1Pod[]> =>
    Promise.all(
      names.map((name) =>
        pollFor(
          `pod ${name} to be Ready`,
          async () => {
            const pod = await core.readNamespacedPod({ namespace, name });
            return isReady(pod) ? pod : undefined;
          },
          timeoutMs,
          500,
        ).catch(async (error: Error) => {
          const pod = await core.readNamespacedPod({ namespace, name }).catch(() => undefined);
          throw new Error(`${error.message}; it is ${pod ? podStatusText(pod) : 'gone'}`, { cause: error });
        }),
      ),
    );

  const expectMarked = (pod: V1Pod) => {
    expect(pod.spec!.initContainers?.map((c) => c.name)).toContain(WAITER_CONTAINER);
    expect(parseMark(pod.metadata!.annotations![STATUS_ANNOTATION]!).state).toBe('initialized');
  };

  const daemonSet = () => apps.readNamespacedDaemonSet({ namespace: INSTALL_NAMESPACE, name: RELEASE });

  /** The agent is rolled out: every scheduled pod updated and Ready. */
  const agentRolledOut = () => k(['-n', INSTALL_NAMESPACE, 'rollout', 'status', `daemonset/${RELEASE}`, '--timeout=180s']);

  beforeAll(async () => {
    // Named like the lifecycle test's clusters, so the next run removes it if this one crashes.
    stateDir = join(tmpdir(), `${LIFECYCLE_DIR_PREFIX}helm-${process.pid}-${await processStartTime(process.pid)}`);
    cluster = await ensureLocalCluster({ stateDir, withNode: true });
    helmPath = await helmBinary();
    const kc = new KubeConfig();
    kc.loadFromFile(cluster.kubeconfig);
    core = kc.makeApiClient(CoreV1Api);
    apps = kc.makeApiClient(AppsV1Api);
    admission = kc.makeApiClient(AdmissionregistrationV1Api);
    // The kustomize install, as hack/local-cluster.sh deploy makes it (kubectl apply -k).
    await deployToLocalCluster({ stateDir });
    await core.createNamespace({ body: meshNamespace(namespace) });
    await waitForInjection(core, namespace);
    await createMeshPod('before-helm');
    expectMarked((await readyPods(['before-helm']))[0]!);
  });

  afterAll(async () => {
    if (!stateDir) return;
    await stopLocalCluster({ stateDir }).catch(() => undefined);
    await rm(`${stateDir}.lock`, { force: true });
  });

  it('helm install --take-ownership --force-conflicts adopts the kustomize install at the previous chart version; its mesh pods carry on', async () => {
    const installed = await helm(['install', RELEASE, PREVIOUS_CHART, '--take-ownership', '--force-conflicts', ...IMAGE_VALUES, '--wait', '--timeout', '5m']);
    expect(installed.code, installed.stderr).toBe(0);
    expect(await release()).toMatchObject({ revision: '1', status: 'deployed', chart: 'pod-network-controller-0.1.0' });
    const adopted = await daemonSet();
    expect(adopted.metadata?.annotations?.['meta.helm.sh/release-name']).toBe(RELEASE);
    expect(adopted.metadata?.labels?.['app.kubernetes.io/managed-by']).toBe('Helm');
    await agentRolledOut();

    // What the release does not own: only kustomize's hash-named ConfigMap, which the docs say to delete.
    const configMaps = await core.listNamespacedConfigMap({ namespace: INSTALL_NAMESPACE });
    const leftovers = configMaps.items.filter(
      (c) => c.metadata?.labels?.['app.kubernetes.io/part-of'] === RELEASE && !c.metadata?.annotations?.['meta.helm.sh/release-name'],
    );
    expect(leftovers.map((c) => c.metadata!.name)).toEqual([expect.stringMatching(/^pod-network-controller-config-[a-z0-9]{10}$/)]);
    await core.deleteNamespacedConfigMap({ namespace: INSTALL_NAMESPACE, name: leftovers[0]!.metadata!.name! });

    const before = await core.readNamespacedPod({ namespace, name: 'before-helm' });
    expect(isReady(before)).toBe(true);
    expect(before.status?.containerStatuses?.every((c) => c.restartCount === 0)).toBe(true);
    await createMeshPod('after-install');
    expectMarked((await readyPods(['after-install']))[0]!);
    const answer = await connectFromPod(k, namespace, 'after-install', 'app', '198.51.100.230', APP_PORT);
    expect(answer).toMatchObject({ listener: 15001, original: `198.51.100.230:${APP_PORT}` });
  });

  it(`helm upgrade --reuse-values to chart ${CHART_VERSION} rolls the agent while mesh pods are created, and every one starts marked`, async () => {
    const upgrade = helm(['upgrade', RELEASE, join(ROOT, CHART_DIR), '--reuse-values', '--wait', '--timeout', '5m']);
    const names = ['during-upgrade-0', 'during-upgrade-1', 'during-upgrade-2'];
    for (const name of names) {
      await createMeshPod(name);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
    }
    const upgraded = await upgrade;
    expect(upgraded.code, upgraded.stderr).toBe(0);
    expect(await release()).toMatchObject({ revision: '2', status: 'deployed', chart: `pod-network-controller-${CHART_VERSION}` });
    // The values given at install were kept: the agent still runs the images set then.
    const spec = (await daemonSet()).spec!.template.spec!;
    expect(spec.containers[0]!.image).toBe(IMAGES.controller);
    expect((await daemonSet()).metadata?.labels?.['app.kubernetes.io/version']).toBe(CHART_VERSION);
    await agentRolledOut();
    for (const pod of await readyPods(names)) expectMarked(pod);
  });

  it("helm test passes: the chart's mesh pod is programmed by its node's agent", async () => {
    const tested = await helm(['test', RELEASE, '--timeout', '4m']);
    if (tested.code !== 0) {
      // A failed test pod stays; helm test --logs looks for it in the release namespace only.
      const name = 'pod-network-controller-test';
      const pod = await core.readNamespacedPod({ namespace: 'default', name }).catch(() => undefined);
      const logs = await Promise.all(
        ['pnc-init-waiter', 'istio-proxy'].map((container) =>
          core.readNamespacedPodLog({ namespace: 'default', name, container }).then(
            (log) => `${container}: ${log}`,
            () => `${container}: no log`,
          ),
        ),
      );
      expect.fail(`${tested.stdout}\n${tested.stderr}\nmark: ${pod?.metadata?.annotations?.[STATUS_ANNOTATION]}\n${logs.join('\n')}`);
    }
    expect(tested.stdout).toMatch(/TEST SUITE:\s+pod-network-controller-test[\s\S]*Phase:\s+Succeeded/);
  });

  it('helm rollback to the previous chart, then upgrade again: each revision runs and marks new mesh pods', async () => {
    const rolledBack = await helm(['rollback', RELEASE, '1', '--wait', '--timeout', '5m']);
    expect(rolledBack.code, rolledBack.stderr).toBe(0);
    expect(await release()).toMatchObject({ revision: '3', status: 'deployed', chart: 'pod-network-controller-0.1.0' });
    expect((await daemonSet()).metadata?.labels?.['app.kubernetes.io/version']).toBe('0.1.0');
    await agentRolledOut();
    await createMeshPod('after-rollback');
    expectMarked((await readyPods(['after-rollback']))[0]!);

    const again = await helm(['upgrade', RELEASE, join(ROOT, CHART_DIR), '--reuse-values', '--wait', '--timeout', '5m']);
    expect(again.code, again.stderr).toBe(0);
    expect(await release()).toMatchObject({ revision: '4', status: 'deployed', chart: `pod-network-controller-${CHART_VERSION}` });
    await agentRolledOut();
  });

  it('helm uninstall removes the injection first: mesh pods created around it all start, none waits in Init, no injection is left', async () => {
    // Pods injected just before the uninstall, and pods created while it runs.
    const names: string[] = [];
    const created: Promise<void>[] = [];
    const create = (name: string) => {
      names.push(name);
      created.push(createMeshPod(name));
    };
    for (let i = 0; i < 3; i++) create(`before-uninstall-${i}`);
    let finished = false;
    const uninstall = helm(['uninstall', RELEASE, '--wait', '--timeout', '5m']).finally(() => (finished = true));
    // Until it is done: the hook's Job takes seconds to start, so the first of these are injected
    // and the later ones come after it removed the injection.
    for (let i = 0; !finished && i < 120; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      create(`during-uninstall-${i}`);
    }
    const uninstalled = await uninstall;
    expect(uninstalled.code, uninstalled.stderr).toBe(0);
    // No pod creation was refused (the injection's parameters gone before its binding would deny them).
    await Promise.all(created);

    const ours = (items: { metadata?: { name?: string } }[]) => items.map((o) => o.metadata!.name!).filter((name) => name.startsWith(RELEASE));
    expect(ours((await admission.listMutatingAdmissionPolicy()).items)).toEqual([]);
    expect(ours((await admission.listMutatingAdmissionPolicyBinding()).items)).toEqual([]);
    expect(ours((await admission.listValidatingAdmissionPolicy()).items)).toEqual([]);
    await pollFor(
      'the agent pods to be gone',
      async () => ((await core.listNamespacedPod({ namespace: INSTALL_NAMESPACE })).items.length === 0 ? true : undefined),
      60_000,
    );

    // Each pod starts: marked by an agent before it left, or never injected. None waits for a mark.
    const pods = await readyPods([...names, 'before-helm'], 120_000);
    const injected = pods.filter((pod) => pod.spec!.initContainers?.some((c) => c.name === WAITER_CONTAINER));
    for (const pod of injected) expectMarked(pod);
    expect(injected.map((p) => p.metadata!.name)).toContain('before-uninstall-0');
    expect(injected.length, 'pods created after the hook removed the injection get no waiter').toBeLessThan(pods.length);
    // A pod created now is not injected.
    const probe = await core.createNamespacedPod({ namespace, body: standInPod('after-uninstall', 'mesh'), dryRun: 'All' });
    expect(probe.spec!.initContainers ?? []).toEqual([]);
  });
});
