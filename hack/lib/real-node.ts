// What the demo and bench:node share on the local cluster's real node
// (hack/local-cluster.sh up --with-node, then deploy): the image names, the stand-in pods,
// kubectl, a long step's progress, and the pod's sandbox netns found from the node's side.
import { execFile } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { CoreV1Api, V1Container, V1Pod } from '@kubernetes/client-node';
import { ensureLocalCluster, isLocalClusterRunning, readLocalNode } from './local-cluster.ts';
import type { LocalCluster, LocalNode } from './local-cluster.ts';
import { APP_UID, PROXY_UID, WAITER_CONTAINER } from './mesh-pods.ts';
import { pollUntil } from './poll.ts';
import { runWithProgress } from './process.ts';

const execFileAsync = promisify(execFile);

export const IMAGES = {
  controller: 'localhost/pod-network-controller/controller:dev',
  initWaiter: 'localhost/pod-network-controller/init-waiter:dev',
  testProxy: 'localhost/pod-network-controller/test-proxy:dev',
} as const;

export const APP_PORT = 8080;

/**
 * plain: app + a second container; trivial-init: the same plus an init container of the
 * waiter's image and resources that exits at once; mesh: app + istio-proxy, which the
 * admission policy gives the waiter. Same images and container count for all three.
 */
export type StandInKind = 'plain' | 'trivial-init' | 'mesh';

const restricted = (uid: number) => ({
  runAsUser: uid,
  runAsGroup: uid,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
});

/** A pod of the test-proxy image that fits Pod Security "restricted"; the app answers on APP_PORT. */
export function standInPod(name: string, kind: StandInKind): V1Pod {
  const container = (containerName: string, uid: number, args: string[]): V1Container => ({
    name: containerName,
    image: IMAGES.testProxy,
    imagePullPolicy: 'IfNotPresent',
    args,
    securityContext: restricted(uid),
  });
  const pod: V1Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { 'pnc-demo/kind': kind } },
    spec: {
      securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
      // The default token volume, as most pods have: every kind then waits for a volume the same way.
      automountServiceAccountToken: true,
      terminationGracePeriodSeconds: 5,
      containers: [
        container('app', APP_UID, ['listen', String(APP_PORT)]),
        // Only a container named istio-proxy makes a mesh pod.
        kind === 'mesh' ? container('istio-proxy', PROXY_UID, []) : container('sidecar', PROXY_UID, ['listen', '9090']),
      ],
    },
  };
  if (kind === 'trivial-init') {
    pod.spec!.initContainers = [
      {
        name: 'trivial-init',
        image: IMAGES.initWaiter,
        imagePullPolicy: 'IfNotPresent',
        args: ['--help'],
        // The waiter's own resources (init-waiter-snippet.yaml: a small request, a 500m limit for a fast Node start).
        resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { cpu: '500m', memory: '64Mi' } },
        securityContext: { ...restricted(65532), readOnlyRootFilesystem: true },
      },
    ];
  }
  return pod;
}

/** A namespace where mesh pods get the waiter injected and every pod must be "restricted". */
export function meshNamespace(name: string) {
  return {
    metadata: {
      name,
      labels: { 'pod-network-controller.io/inject': 'enabled', 'pod-security.kubernetes.io/enforce': 'restricted' },
    },
  };
}

/** Waits until the injection policy is in effect for NAMESPACE (a policy applies a moment after it is created). */
export function waitForInjection(core: CoreV1Api, namespace: string, timeoutMs = 30_000): Promise<void> {
  return waitForInjected(core, namespace, standInPod('injection-probe', 'mesh'), WAITER_CONTAINER, 'the injection policy', timeoutMs);
}

/**
 * Waits until INJECTOR (named in the error) adds the init container CONTAINER to PROBE in
 * NAMESPACE, asking with server-side dry-run creates.
 */
export async function waitForInjected(
  core: CoreV1Api,
  namespace: string,
  probe: V1Pod,
  container: string,
  injector: string,
  timeoutMs = 30_000,
): Promise<void> {
  await pollUntil(
    async () => {
      const admitted = await core.createNamespacedPod({ namespace, body: probe, dryRun: 'All' }).catch(() => undefined);
      return admitted?.spec?.initContainers?.some((c) => c.name === container) ?? false;
    },
    timeoutMs,
    () => `${injector} did not inject ${container} in namespace ${namespace} within ${timeoutMs} ms`,
    200,
  );
}

/** The STATUS column of `kubectl get pod` for the cases these pods go through. */
export function podStatusText(pod: V1Pod): string {
  if (pod.metadata?.deletionTimestamp) return 'Terminating';
  const inits = pod.status?.initContainerStatuses ?? [];
  const total = pod.spec?.initContainers?.length ?? 0;
  const done = inits.filter((s) => s.state?.terminated?.exitCode === 0).length;
  if (done < total) {
    const failing = inits.find((s) => s.state?.terminated && s.state.terminated.exitCode !== 0);
    const waiting = inits.find((s) => s.state?.waiting?.reason && s.state.waiting.reason !== 'PodInitializing');
    if (failing) return `Init:${failing.state!.terminated!.reason ?? 'Error'}`;
    if (waiting) return `Init:${waiting.state!.waiting!.reason}`;
    return `Init:${done}/${total}`;
  }
  const waiting = (pod.status?.containerStatuses ?? []).find((s) => s.state?.waiting?.reason);
  if (waiting) return waiting.state!.waiting!.reason!;
  return pod.status?.phase ?? 'Pending';
}

export const isReady = (pod: V1Pod) => pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

/** The built kubectl against the cluster; stdout, or an error with its stderr. */
export async function kubectl(binDir: string, kubeconfig: string, args: string[], timeoutMs = 30_000): Promise<string> {
  try {
    const { stdout } = await execFileAsync(join(binDir, 'kubectl'), args, { env: { ...process.env, KUBECONFIG: kubeconfig }, timeout: timeoutMs });
    return stdout;
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    throw new Error(`kubectl ${args.join(' ')}: ${stderr?.trim() || String(error)}`, { cause: error });
  }
}

/** What the test-proxy answers: the port that accepted the connection and its original destination. */
export interface ProxyAnswer {
  listener: number;
  original: string;
}

/**
 * Runs the test-proxy's client inside CONTAINER of the pod (`kubectl exec`); its JSON answer.
 * With `asUid` it first calls setuid(asUid), as a root container keeping CAP_SETUID can.
 */
export async function connectFromPod(
  k: (args: string[]) => Promise<string>,
  namespace: string,
  pod: string,
  container: string,
  address: string,
  port: number,
  asUid?: number,
): Promise<ProxyAnswer> {
  const connect = asUid === undefined ? ['connect'] : ['connect-as', String(asUid)];
  const out = await k(['-n', namespace, 'exec', pod, '-c', container, '--', '/test-proxy', ...connect, address, String(port)]);
  return JSON.parse(out.trim()) as ProxyAnswer;
}

/**
 * The sandbox netns holding the pod's IP, found from the node's side (the runtime's CNI
 * netns files, the addresses inside each), independent of the agent's own lookup.
 */
export async function podNetns(clusterStateDir: string, podIP: string): Promise<{ path: string; inode: number }> {
  // The node's runtime keeps the CNI network namespaces under the node's dir.
  const dir = (await readLocalNode(clusterStateDir)).netnsDir;
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    const { stdout } = await execFileAsync('nsenter', [`--net=${path}`, '--', 'ip', '-o', 'addr', 'show']).catch(() => ({ stdout: '' }));
    if (stdout.split('\n').some((line) => line.split(/\s+/).some((word) => word.split('/')[0] === podIP))) {
      return { path, inode: (await stat(path)).ino };
    }
  }
  throw new Error(`no CNI netns in ${dir} holds the pod IP ${podIP}`);
}

export interface DeployedNode {
  cluster: LocalCluster;
  node: LocalNode;
  /** A control plane that was running before is left running by its callers. */
  controlPlaneWasRunning: boolean;
  upMs: number;
  deployMs: number;
}

/**
 * `hack/local-cluster.sh up --with-node`, then `deploy` (images built from the Dockerfile,
 * the shipped manifests applied), each printing its progress: a cold first run builds the
 * kubelet and the images and takes minutes.
 */
export async function deployOnRealNode(print: (line: string) => void): Promise<DeployedNode> {
  const script = fileURLToPath(new URL('../local-cluster.sh', import.meta.url));
  const controlPlaneWasRunning = await isLocalClusterRunning();
  let at = performance.now();
  print('hack/local-cluster.sh up --with-node (a cold first run builds the kubelet and the control plane: several minutes)');
  await runWithProgress(['bash', script, 'up', '--with-node']);
  const cluster = await ensureLocalCluster({ withNode: true });
  const upMs = performance.now() - at;
  at = performance.now();
  print('hack/local-cluster.sh deploy (a cold first run makes the base images and builds both Dockerfile targets: about 3 minutes)');
  await runWithProgress(['bash', script, 'deploy']);
  return { cluster, node: cluster.node!, controlPlaneWasRunning, upMs, deployMs: performance.now() - at };
}
