// vitest globalSetup of the `node` project: one local cluster with a real node (kubelet +
// containerd, or CRI-O with PNC_NODE_RUNTIME=cri-o) per run, the product installed on it as a
// user would (hack/local-cluster.sh deploy: images from the Dockerfile, the kubernetes overlay,
// the admission-policy injection),
// in a private state dir, removed at the end even when tests fail;
// nodes left by crashed runs are removed at the start of the next. Without root there is
// no node: the tests skip, saying so.
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import {
  deployToLocalCluster,
  ensureLocalCluster,
  NODE_RUNTIMES,
  stopLocalCluster,
  type LocalCluster,
  type NodeRuntime,
} from '../../hack/lib/local-cluster.ts';
import { processStartTime } from '../../hack/lib/proc.ts';
import { sweepClustersOfDeadRuns } from './cluster-global-setup.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The node's name, '' when there is no node (not root). */
    nodeName: string;
    /** '' on CRI-O. */
    containerdAddress: string;
    /** The node's runtime: containerd or cri-o; '' without a node. */
    nodeRuntime: string;
    /** The runtime's CRI socket (crictl's endpoint without `unix://`). */
    criSocket: string;
    /** The cluster's state dir (hack/local-cluster.sh node-reboot needs it). */
    clusterDir: string;
    kubernetesServiceIp: string;
  }
}

const RUN_DIR_PREFIX = 'pnc-test-kubelet-';
/** test/node/local-node-lifecycle.test.ts's second cluster. */
export const LIFECYCLE_DIR_PREFIX = 'pnc-test-lifecycle-';
export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  if (process.getuid?.() !== 0) {
    console.warn('node-global-setup: not root, so no real node: the node tests skip');
    for (const key of ['kubeconfig', 'binDir', 'nodeName', 'containerdAddress', 'nodeRuntime', 'criSocket', 'clusterDir', 'kubernetesServiceIp'] as const) {
      project.provide(key, '');
    }
    return undefined;
  }
  const runtime = nodeRuntime(process.env.PNC_NODE_RUNTIME);
  await sweepClustersOfDeadRuns(RUN_DIR_PREFIX);
  await sweepClustersOfDeadRuns(LIFECYCLE_DIR_PREFIX);
  const stateDir = join(tmpdir(), `${RUN_DIR_PREFIX}${process.pid}-${await processStartTime(process.pid)}`);
  const stop = async () => {
    await stopLocalCluster({ stateDir });
    await rm(`${stateDir}.lock`, { force: true });
  };
  const started = Date.now();
  // `up` removes what it started when it fails; stop anyway in case it was killed half-way,
  // and after a failed deploy, so no cluster outlives a failed setup.
  let cluster: LocalCluster;
  try {
    cluster = await ensureLocalCluster({ stateDir, withNode: true, runtime });
    console.log(`node-global-setup: control plane and node (${runtime}) ready in ${Date.now() - started} ms (${stateDir})`);
    const deployStarted = Date.now();
    await deployToLocalCluster({ stateDir });
    console.log(`node-global-setup: product deployed in ${Date.now() - deployStarted} ms`);
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
  project.provide('kubeconfig', cluster.kubeconfig);
  project.provide('binDir', cluster.binDir);
  project.provide('nodeName', cluster.node!.name);
  project.provide('containerdAddress', cluster.node!.containerdAddress);
  project.provide('nodeRuntime', cluster.node!.runtime);
  project.provide('criSocket', cluster.node!.criSocket);
  project.provide('clusterDir', stateDir);
  project.provide('kubernetesServiceIp', cluster.kubernetesServiceIp);
  return stop;
}

/** The runtime PNC_NODE_RUNTIME names (containerd when unset); anything else fails the run at once. */
export function nodeRuntime(value: string | undefined): NodeRuntime {
  if (value === undefined || value === '') return 'containerd';
  const runtime = NODE_RUNTIMES.find((r) => r === value);
  if (!runtime) throw new Error(`PNC_NODE_RUNTIME=${value} is not a runtime the local node runs (${NODE_RUNTIMES.join(', ')})`);
  return runtime;
}
