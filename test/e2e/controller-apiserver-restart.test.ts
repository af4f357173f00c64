// The agent survives its apiserver going away under an open watch: the kube-apiserver
// is stopped and started again on the same etcd, and pods created afterwards are still
// programmed. This runs on a private control plane (its own state dir), so stopping
// that apiserver disturbs no other test or engineer using the shared one.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureLocalCluster, stopLocalCluster } from '../../hack/lib/local-cluster.ts';
import { metricValue, startController } from '../../hack/lib/controller-process.ts';
import { pollUntil } from '../../hack/lib/poll.ts';
import type { ControllerProcess } from '../../hack/lib/controller-process.ts';
import { MeshFixture } from '../../hack/lib/mesh-fixture.ts';
import { meshPod } from '../../hack/lib/mesh-pods.ts';
import { expectMarkMatchesSandbox, expectRulesInPlace } from '../support/redirect-assertions.ts';

const notRoot = process.getuid?.() !== 0;
if (notRoot) console.warn('controller-apiserver-restart e2e skipped: needs root (network namespaces, iptables, cgroups)');

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/** Gone, or a zombie: the apiserver was started detached, so its parent may be a reaper that is slow or absent. */
function hasExited(pid: number): boolean {
  if (!existsSync(`/proc/${pid}`)) return true;
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/**
 * Stops the recorded kube-apiserver and starts it again with the very same command line
 * (same port, certificates and etcd), recording the new pid where `local-cluster.sh down`
 * finds it.
 */
async function restartApiserver(stateDir: string, downtimeMs: number): Promise<void> {
  const pidFile = join(stateDir, 'kube-apiserver.pid');
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
  expect(argv.join(' ')).toContain(stateDir);
  process.kill(pid, 'SIGTERM');
  const escalate = setTimeout(() => process.kill(pid, 'SIGKILL'), 5000);
  await pollUntil(
    () => hasExited(pid),
    30_000,
    () => `kube-apiserver ${pid} did not exit on SIGTERM nor SIGKILL`,
  );
  clearTimeout(escalate);
  await sleep(downtimeMs);
  const log = await open(join(stateDir, 'logs', 'kube-apiserver.log'), 'a');
  try {
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', log.fd, log.fd] });
    child.unref();
    await writeFile(pidFile, `${child.pid}\n`);
  } finally {
    await log.close();
  }
}

describe.skipIf(notRoot)('controller on a real control plane: apiserver restart under the watch', () => {
  const nodeName = `node-e2e-apirestart-${process.pid}`;
  let stateDir = '';
  let kubeconfig = '';
  let kc: KubeConfig;
  let fixture: MeshFixture | undefined;
  let controller: ControllerProcess | undefined;

  beforeAll(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'pnc-e2e-private-cluster-'));
    ({ kubeconfig } = await ensureLocalCluster({ stateDir }));
    kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    fixture = new MeshFixture(kc, nodeName);
    await fixture.createNode();
  });

  afterAll(async () => {
    await controller?.stop('SIGTERM');
    await fixture?.cleanup().catch((error: unknown) => console.warn(`cleanup on the private cluster: ${String(error)}`));
    if (stateDir) {
      await stopLocalCluster({ stateDir });
      // `down` removes the state dir; its lock file sits beside it.
      await rm(stateDir, { recursive: true, force: true });
      await rm(`${stateDir}.lock`, { force: true });
    }
  });

  it('keeps handling new pods after the apiserver was stopped and restarted on the same etcd', async () => {
    const ns = await fixture!.namespace('e2e-apirestart');
    controller = await startController({ kubeconfig, nodeName });
    const before = await fixture!.createPod(ns, meshPod('before-restart', nodeName));
    await fixture!.waitForInitialized(before);

    await restartApiserver(stateDir, 3000);
    const core = kc.makeApiClient(CoreV1Api);
    await pollUntil(
      async () =>
        await core
          .readNamespace({ name: ns })
          .then(() => true)
          .catch(() => false),
      60_000,
      () => 'the restarted kube-apiserver did not come back within 60 s',
    );

    const after = await fixture!.createPod(ns, meshPod('after-restart', nodeName));
    expectMarkMatchesSandbox(after, await fixture!.waitForInitialized(after, 60_000));
    await expectRulesInPlace(after);
    // The pod from before the restart stays initialized for its netns (etcd kept it).
    expectMarkMatchesSandbox(before, (await fixture!.readMark(before))!);

    expect((await controller.get('/readyz')).status).toBe(200);
    expect(metricValue(await controller.metrics(), 'pnc_watch_restarts_total', { resource: 'pods' })).toBeGreaterThanOrEqual(1);
  });
});
