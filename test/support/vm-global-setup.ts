// vitest globalSetup of the `vm` project: one local cluster per run with the VM node (a QEMU
// guest: systemd, cgroup v2, containerd and the kubelet with the systemd cgroup driver) and,
// unless PNC_VM_LAB_NODE=0, the lab node beside it: two real nodes. The product is installed as a
// user would (hack/local-cluster.sh deploy). The cluster is removed at the end even when tests
// fail; clusters left by crashed runs are removed at the start of the next. Without root there
// is no node: the tests skip, saying so.
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { deployToLocalCluster, ensureLocalCluster, stopLocalCluster, type LocalCluster } from '../../hack/lib/local-cluster.ts';
import { processStartTime } from '../../hack/lib/proc.ts';
import { sweepClustersOfDeadRuns } from './cluster-global-setup.ts';
import { nodeRuntime } from './node-global-setup.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The VM node's name, '' when there is none (not root). */
    vmNodeName: string;
  }
}

const RUN_DIR_PREFIX = 'pnc-test-vm-';

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  if (process.getuid?.() !== 0) {
    console.warn('vm-global-setup: not root, so no VM node: the VM tests skip');
    for (const key of ['kubeconfig', 'binDir', 'nodeName', 'nodeRuntime', 'vmNodeName', 'clusterDir'] as const) project.provide(key, '');
    return undefined;
  }
  await sweepClustersOfDeadRuns(RUN_DIR_PREFIX);
  const stateDir = join(tmpdir(), `${RUN_DIR_PREFIX}${process.pid}-${await processStartTime(process.pid)}`);
  const stop = async () => {
    await stopLocalCluster({ stateDir });
    await rm(`${stateDir}.lock`, { force: true });
  };
  const withNode = process.env.PNC_VM_LAB_NODE !== '0';
  const started = Date.now();
  let cluster: LocalCluster;
  try {
    // The lab node's runtime: PNC_NODE_RUNTIME (npm test runs this project with CRI-O).
    cluster = await ensureLocalCluster({ stateDir, withNode, withVmNode: true, runtime: nodeRuntime(process.env.PNC_NODE_RUNTIME) });
    console.log(`vm-global-setup: control plane and ${withNode ? 'both nodes' : 'the VM node'} ready in ${Date.now() - started} ms (${stateDir})`);
    const deployStarted = Date.now();
    await deployToLocalCluster({ stateDir });
    console.log(`vm-global-setup: product deployed in ${Date.now() - deployStarted} ms`);
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
  project.provide('kubeconfig', cluster.kubeconfig);
  project.provide('binDir', cluster.binDir);
  project.provide('nodeName', cluster.node?.name ?? '');
  project.provide('nodeRuntime', cluster.node?.runtime ?? '');
  project.provide('vmNodeName', cluster.vmNode!.name);
  project.provide('clusterDir', stateDir);
  return stop;
}
