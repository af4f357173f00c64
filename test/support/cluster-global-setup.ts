// vitest globalSetup of the `cluster` project: one real control plane per run, provided as
// inject('kubeconfig'). Each run gets a private cluster (its own state dir) so cluster-scoped
// objects (admission policies, Nodes, CRDs) of parallel runs never meet; it is stopped at the
// end, and clusters left by crashed runs are stopped at the start of the next.
// PNC_TEST_CLUSTER_DIR=<dir> instead reuses a long-lived cluster there (faster iteration) and leaves it running.
import { readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { ensureBundles } from '../../hack/lib/ensure-bundles.ts';
import { ensureLocalCluster, stopLocalCluster } from '../../hack/lib/local-cluster.ts';
import { isSameProcessAlive, processStartTime } from '../../hack/lib/proc.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfig: string;
    /** Where this cluster's kube-apiserver, etcd and kubectl are. */
    binDir: string;
  }
}

const RUN_DIR_PREFIX = 'pnc-test-cluster-';

/** Stops the clusters (and nodes) of runs that died, found by their `<prefix><pid>-<start>` state dirs. */
export async function sweepClustersOfDeadRuns(prefix = RUN_DIR_PREFIX): Promise<void> {
  const entries = await readdir(tmpdir(), { withFileTypes: true });
  for (const entry of entries) {
    const owner = new RegExp(`^${prefix}(\\d+)-(\\d+)(\\.lock)?$`).exec(entry.name);
    if (!owner || (await isSameProcessAlive(Number(owner[1]), owner[2]!))) continue;
    if (owner[3]) {
      await rm(join(tmpdir(), entry.name), { force: true }); // a private cluster's lock, its run gone
      continue;
    }
    console.warn(`cluster-global-setup: stopping the control plane left by a crashed run in ${join(tmpdir(), entry.name)}`);
    await stopLocalCluster({ stateDir: join(tmpdir(), entry.name) }).catch((error: unknown) => console.warn(String(error)));
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const shared = process.env.PNC_TEST_CLUSTER_DIR;
  await sweepClustersOfDeadRuns();
  // The cluster tests run dist/controller.js: never a stale one on a targeted run.
  ensureBundles();
  const stateDir = shared ?? join(tmpdir(), `${RUN_DIR_PREFIX}${process.pid}-${await processStartTime(process.pid)}`);
  const started = Date.now();
  const cluster = await ensureLocalCluster({ stateDir, withControllerManager: true }).catch(async (error: unknown) => {
    // A half-started private cluster (apiserver never ready) must not outlive the failed run.
    if (!shared) await stopLocalCluster({ stateDir }).catch(() => undefined);
    throw error;
  });
  console.log(`cluster-global-setup: control plane ready in ${Date.now() - started} ms (${cluster.kubeconfig})`);
  project.provide('kubeconfig', cluster.kubeconfig);
  project.provide('binDir', cluster.binDir);
  return async () => {
    if (shared) return;
    await stopLocalCluster({ stateDir });
    // local-cluster.sh keeps its lock file (removing it could let two runs overlap); this private one is done.
    await rm(`${stateDir}.lock`, { force: true });
  };
}
