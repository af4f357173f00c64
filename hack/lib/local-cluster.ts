// TypeScript face of hack/local-cluster.sh for tests, the demo and the benchmarks:
// start (or reuse) the local control plane and learn where its kubeconfig and binaries are.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../local-cluster.sh', import.meta.url));
const DEFAULT_CLUSTER_DIR = '/tmp/pod-network-controller-cluster';

export interface LocalClusterOptions {
  /** State directory (PNC_CLUSTER_DIR); defaults to $PNC_CLUSTER_DIR, then /tmp/pod-network-controller-cluster. */
  stateDir?: string;
  /** Also run kube-controller-manager (serviceaccount, namespace, garbagecollector controllers). */
  withControllerManager?: boolean;
  /** Also run kube-scheduler, the workload controllers and one real node (kubelet + containerd or CRI-O; root). */
  withNode?: boolean;
  /** Also run kube-scheduler, the workload controllers and a node in a QEMU guest (systemd, cgroup v2, the systemd cgroup driver; root; minutes). */
  withVmNode?: boolean;
  /** The node's runtime (`--runtime`); unset: PNC_NODE_RUNTIME, else containerd. */
  runtime?: NodeRuntime;
  /** Also run OpenShift's SecurityContextConstraints admission (its CRD, default SCCs and plugin as webhooks). */
  openshift?: boolean;
}

export const NODE_RUNTIMES = ['containerd', 'cri-o'] as const;
export type NodeRuntime = (typeof NODE_RUNTIMES)[number];

export interface LocalNode {
  name: string;
  runtime: NodeRuntime;
  /** The runtime's CRI socket (crictl's endpoint, without `unix://`). */
  criSocket: string;
  /** containerd's socket, images in namespace k8s.io; '' on CRI-O. */
  containerdAddress: string;
  /** Where the runtime pins its pods' network namespaces. */
  netnsDir: string;
  /** The node's InternalIPs, IPv4 first. */
  ips: string[];
  /** The pods' IPv4 and IPv6 ranges. */
  podCidrs: string[];
}

export interface LocalCluster {
  kubeconfig: string;
  binDir: string;
  stateDir: string;
  /** The `kubernetes` Service's ClusterIP (hack/lib/host-network.sh). */
  kubernetesServiceIp: string;
  /** Present when started with withNode. */
  node?: LocalNode;
  /** Present when started with withVmNode. */
  vmNode?: VmNode;
}

export interface VmNode {
  name: string;
  /** The node's InternalIP (IPv6: the guest's link to the host). */
  ips: string[];
  /** The pods' IPv4 and IPv6 ranges, inside the guest. */
  podCidrs: string[];
}

function resolveStateDir(options: LocalClusterOptions): string {
  return options.stateDir ?? process.env.PNC_CLUSTER_DIR ?? DEFAULT_CLUSTER_DIR;
}

async function runScript(stateDir: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync('bash', [SCRIPT, ...args], {
      env: { ...process.env, PNC_CLUSTER_DIR: stateDir },
      // A cold build of the binaries can take many minutes; a warm start takes seconds.
      timeout: 30 * 60_000,
      // deploy's image builds are chatty.
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    // The end of a long log says what failed.
    const stderr = (error as { stderr?: string }).stderr?.trim().split('\n').slice(-20).join('\n');
    throw new Error(`hack/local-cluster.sh ${args.join(' ')} failed (state dir ${stateDir}): ${stderr || String(error)}`, {
      cause: error,
    });
  }
}

/** KEY=VALUE lines as written by `local-cluster.sh up` into cluster.env. */
function parseClusterEnv(text: string): Record<string, string> {
  const entries: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) entries[line.slice(0, at)] = line.slice(at + 1);
  }
  return entries;
}

/** Starts the local control plane, or reuses the one already running in the state dir. */
export async function ensureLocalCluster(options: LocalClusterOptions = {}): Promise<LocalCluster> {
  const stateDir = resolveStateDir(options);
  const flags = [
    ...(options.withControllerManager ? ['--with-controller-manager'] : []),
    ...(options.withNode ? ['--with-node'] : []),
    ...(options.withVmNode ? ['--with-vm-node'] : []),
    ...(options.withNode && options.runtime ? ['--runtime', options.runtime] : []),
    ...(options.openshift ? ['--openshift'] : []),
  ];
  const stdout = await runScript(stateDir, ['up', ...flags]);
  const kubeconfig = stdout.trim().split('\n').pop() ?? '';
  const env = parseClusterEnv(await readFile(join(stateDir, 'cluster.env'), 'utf8'));
  if (!kubeconfig || !env.BIN_DIR || !env.KUBERNETES_SERVICE_IP) {
    throw new Error(`hack/local-cluster.sh up in ${stateDir} printed no kubeconfig or wrote no BIN_DIR or KUBERNETES_SERVICE_IP`);
  }
  const cluster: LocalCluster = { kubeconfig, binDir: env.BIN_DIR, stateDir, kubernetesServiceIp: env.KUBERNETES_SERVICE_IP };
  if (options.withNode) cluster.node = await readLocalNode(stateDir);
  if (options.withVmNode) {
    const node = parseClusterEnv(await readFile(join(stateDir, 'vm-node', 'node.env'), 'utf8'));
    if (!node.NODE_NAME) throw new Error(`hack/local-cluster.sh up --with-vm-node in ${stateDir} wrote no vm-node/node.env`);
    cluster.vmNode = { name: node.NODE_NAME, ips: (node.NODE_IPS ?? '').split(','), podCidrs: (node.POD_CIDRS ?? '').split(',') };
  }
  return cluster;
}

/** The node `up --with-node` started in the state dir, as its node.env says. */
export async function readLocalNode(stateDir: string): Promise<LocalNode> {
  const node = parseClusterEnv(await readFile(join(stateDir, 'node', 'node.env'), 'utf8'));
  const runtime = NODE_RUNTIMES.find((r) => r === node.RUNTIME);
  if (!node.NODE_NAME || !runtime || !node.CRI_ENDPOINT?.startsWith('unix://') || !node.NETNS_DIR) {
    throw new Error(`hack/local-cluster.sh up --with-node in ${stateDir} wrote no node.env with NODE_NAME, RUNTIME, CRI_ENDPOINT and NETNS_DIR`);
  }
  return {
    name: node.NODE_NAME,
    runtime,
    criSocket: node.CRI_ENDPOINT.slice('unix://'.length),
    containerdAddress: node.CONTAINERD_ADDRESS ?? '',
    netnsDir: node.NETNS_DIR,
    ips: (node.NODE_IPS ?? '').split(','),
    podCidrs: (node.POD_CIDRS ?? '').split(','),
  };
}

/** A node reboot as its pods see it: every sandbox killed, containerd and the kubelet started again. */
export async function rebootLocalNode(options: Pick<LocalClusterOptions, 'stateDir'> = {}): Promise<void> {
  await runScript(resolveStateDir(options), ['node-reboot']);
}

/** Installs the product on the cluster's node as a user would (`local-cluster.sh deploy`: images from the Dockerfile, the shipped manifests). */
export async function deployToLocalCluster(options: Pick<LocalClusterOptions, 'stateDir'> = {}): Promise<void> {
  await runScript(resolveStateDir(options), ['deploy']);
}

/** True when a control plane recorded in the state dir answers /readyz. */
export async function isLocalClusterRunning(options: Pick<LocalClusterOptions, 'stateDir'> = {}): Promise<boolean> {
  return runScript(resolveStateDir(options), ['status']).then(
    () => true,
    () => false,
  );
}

/** Stops the processes `up` recorded in the state dir and removes it. */
export async function stopLocalCluster(options: Pick<LocalClusterOptions, 'stateDir'> = {}): Promise<void> {
  await runScript(resolveStateDir(options), ['down']);
}
