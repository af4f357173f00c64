// The seed's platform on a real node: a cluster of its own with OpenShift's SCC admission
// (`hack/local-cluster.sh up --with-node --openshift`), the chart installed the seed's way
// (`helm template -n pod-network-controller --set kubernetesDistribution=OpenShift ... | kubectl
// apply --server-side -f -`, only the image names ours), then a mesh pod created by a plain user
// in a new namespace: admitted under restricted-v2 with the proxy at the top of the namespace's UID
// range, programmed for that UID, Ready and redirected.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { V1Pod } from '@kubernetes/client-node';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { STATUS_ANNOTATION, parseMark } from '../../controller/src/pod-contract/index.ts';
import { CHART_DIR, ROOT, helmBinary } from '../../hack/lib/chart.ts';
import { ensureLocalCluster, stopLocalCluster, type LocalCluster } from '../../hack/lib/local-cluster.ts';
import { OPENSHIFT_SCC_ANNOTATION } from '../../hack/lib/mesh-pods.ts';
import { pollFor } from '../../hack/lib/poll.ts';
import { processStartTime } from '../../hack/lib/proc.ts';
import { APP_PORT, IMAGES, connectFromPod, isReady, podNetns, standInPod } from '../../hack/lib/real-node.ts';
import { runInNetns } from '../../hack/lib/netns.ts';
import { LIFECYCLE_DIR_PREFIX } from '../support/node-global-setup.ts';

const execFileAsync = promisify(execFile);
const nodeName = inject('nodeName');
const UID_RANGE = 'openshift.io/sa.scc.uid-range';
const PLAIN_USER = ['--as=someone', '--as-group=system:authenticated'];

/** kubectl against CLUSTER, with INPUT on its stdin; rejects with its stderr. */
function kubectlWithInput(cluster: LocalCluster, args: string[], input = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      join(cluster.binDir, 'kubectl'),
      ['--kubeconfig', cluster.kubeconfig, ...args],
      { maxBuffer: 16 * 1024 * 1024, timeout: 180_000 },
      (error, stdout, stderr) => (error ? reject(new Error(`kubectl ${args.join(' ')}: ${stderr || error.message}`)) : resolve(stdout)),
    );
    child.stdin!.end(input);
  });
}

describe.skipIf(!nodeName)('OpenShift: the chart the seed way, a plain user mesh pod under restricted-v2 (skipped without root: no real node)', () => {
  let stateDir = '';
  let cluster: LocalCluster;
  let k: (args: string[], input?: string) => Promise<string>;
  let core: CoreV1Api;

  beforeAll(async () => {
    // Named like the lifecycle test's clusters, so the next run removes it if this one crashes.
    stateDir = join(tmpdir(), `${LIFECYCLE_DIR_PREFIX}openshift-${process.pid}-${await processStartTime(process.pid)}`);
    cluster = await ensureLocalCluster({ stateDir, withNode: true, openshift: true });
    const node = cluster.node!;
    // The images the node global setup built, imported into this node too.
    await execFileAsync('bash', [join(ROOT, 'hack/build-images.sh'), '--import'], {
      env: { ...process.env, CONTAINERD_ADDRESS: node.containerdAddress },
      maxBuffer: 64 * 1024 * 1024,
    });
    k = (args, input) => kubectlWithInput(cluster, args, input);
    const kc = new KubeConfig();
    kc.loadFromFile(cluster.kubeconfig);
    core = kc.makeApiClient(CoreV1Api);

    const [controllerRepo, controllerTag] = IMAGES.controller.split(':');
    const [waiterRepo, waiterTag] = IMAGES.initWaiter.split(':');
    const { stdout: rendered } = await execFileAsync(
      await helmBinary(),
      [
        'template',
        '-n',
        'pod-network-controller',
        '--set',
        'kubernetesDistribution=OpenShift',
        ...['--set', `images.controller.repository=${controllerRepo}`, '--set', `images.controller.tag=${controllerTag}`],
        ...['--set', `images.initWaiter.repository=${waiterRepo}`, '--set', `images.initWaiter.tag=${waiterTag}`],
        join(ROOT, CHART_DIR),
      ],
      { maxBuffer: 16 * 1024 * 1024 },
    );
    await k(['apply', '--server-side', '-f', '-'], rendered);
    await k(['-n', 'pod-network-controller', 'rollout', 'status', 'daemonset/pod-network-controller', '--timeout=180s']);
  });

  afterAll(async () => {
    if (!stateDir) return;
    await stopLocalCluster({ stateDir }).catch(() => undefined);
    await rm(`${stateDir}.lock`, { force: true });
  });

  it("runs the agent Ready under OpenShift's privileged SCC, the grant the chart ships", async () => {
    const pods = await core.listNamespacedPod({ namespace: 'pod-network-controller', labelSelector: 'app.kubernetes.io/name=pod-network-controller' });
    expect(pods.items).toHaveLength(1);
    expect(isReady(pods.items[0]!)).toBe(true);
    expect(pods.items[0]!.metadata?.annotations?.[OPENSHIFT_SCC_ANNOTATION]).toBe('privileged');
  });

  it('admits a plain user mesh pod under restricted-v2, programs the proxy UID at the range top, and redirects it', async () => {
    const namespace = `pnc-os-${process.pid}`;
    await core.createNamespace({
      body: { metadata: { name: namespace, labels: { 'pod-network-controller.io/inject': 'enabled', 'pod-security.kubernetes.io/enforce': 'restricted' } } },
    });
    try {
      // The plain user may create pods there, as a project member would.
      await k(['-n', namespace, 'create', 'rolebinding', 'someone-edit', '--clusterrole=edit', '--user=someone']);
      const range = await pollFor(
        `${UID_RANGE} on ${namespace}`,
        async () => (await core.readNamespace({ name: namespace })).metadata?.annotations?.[UID_RANGE],
        15_000,
      );
      const [first, size] = range.split('/').map(Number) as [number, number];
      const top = first + size - 1;
      // OpenShift's shape: nothing pinned but the proxy, at the top of the range as Istio's injector puts it.
      const pod: V1Pod = standInPod('os-mesh', 'mesh');
      for (const container of pod.spec!.containers) {
        delete container.securityContext!.runAsUser;
        delete container.securityContext!.runAsGroup;
        if (container.name === 'istio-proxy') Object.assign(container.securityContext!, { runAsUser: top, runAsGroup: top });
      }
      await k(['create', '-n', namespace, '-f', '-', ...PLAIN_USER], JSON.stringify(pod));

      const ready = await pollFor(
        'the mesh pod to be Ready',
        async () => {
          const current = await core.readNamespacedPod({ namespace, name: 'os-mesh' });
          return isReady(current) ? current : undefined;
        },
        180_000,
      );
      expect(ready.metadata?.annotations?.[OPENSHIFT_SCC_ANNOTATION]).toBe('restricted-v2');
      const app = ready.spec!.containers.find((c) => c.name === 'app')!;
      expect(app.securityContext?.runAsUser ?? ready.spec?.securityContext?.runAsUser).toBe(first);
      expect(ready.spec!.initContainers?.map((c) => c.name)).toContain('pnc-init-waiter');
      expect(parseMark(ready.metadata!.annotations![STATUS_ANNOTATION]!).state).toBe('initialized');
      // The agent exempted the proxy's own UID, the range top, in the pod's netns.
      const rules = runInNetns((await podNetns(stateDir, ready.status!.podIP!)).path, ['iptables-save', '-t', 'nat']).stdout;
      expect(rules).toContain(`--uid-owner ${top}`);
      const answer = await connectFromPod(k, namespace, 'os-mesh', 'app', '198.51.100.230', APP_PORT);
      expect(answer).toMatchObject({ listener: 15001, original: `198.51.100.230:${APP_PORT}` });
    } finally {
      await core.deleteNamespace({ name: namespace }).catch(() => undefined);
    }
  });
});
