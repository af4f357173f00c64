// `npm run bench:memory` (root): the agent's memory at cluster scale, beside a baseline build.
// A private control plane gets 10,000 OpenShift-like namespaces (the labels and annotations
// OpenShift puts on a project, written by server-side apply from three field managers, so
// each carries managedFields as on a real cluster) and one simulated node with 250 mesh pods
// and their sandboxes. Then each build of the agent starts on that node, in turn, with the
// pods' marks removed before each run: start -> /readyz -> all pods marked again. Reported
// per build: peak RSS (VmHWM), the largest JS heap seen (sampled from /metrics), the heap
// once done, the LIST and WATCH requests for namespaces and the times. The baseline is the agent built
// from a git revision (default: the one before namespaces were paged and trimmed);
// --node-options adds this tree run with NODE_OPTIONS (e.g. --no-jitless) as a third build.
import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { KubeClient } from '../controller/src/kube/kube-client.ts';
import { fromKubeconfigFile } from '../controller/src/kube/kubeconfig.ts';
import { parseMark, STATUS_ANNOTATION } from '../controller/src/pod-contract/index.ts';
import { CONTROLLER_BUNDLE_OPTIONS } from './lib/bundle-options.ts';
import { CONTROLLER_BUNDLE, type ControllerProcess, metricValue, startController } from './lib/controller-process.ts';
import { ensureBundles } from './lib/ensure-bundles.ts';
import { positiveInteger } from './lib/flags.ts';
import { ensureLocalCluster, stopLocalCluster } from './lib/local-cluster.ts';
import { MeshFixture, type PodHandle, uniqueSuffix } from './lib/mesh-fixture.ts';
import { meshPod } from './lib/mesh-pods.ts';
import { pollUntil } from './lib/poll.ts';
import { statusMiB } from './lib/stats.ts';

const ROOT = resolve(import.meta.dirname, '..');
/** The last revision whose agent kept whole namespaces from one unpaginated LIST. */
const BEFORE_PAGED_NAMESPACES = '6a13823';

const { values: flags } = parseArgs({
  options: {
    namespaces: { type: 'string', default: '10000' },
    pods: { type: 'string', default: '250' },
    concurrency: { type: 'string', default: '20' },
    runs: { type: 'string', default: '1' },
    baseline: { type: 'string', default: BEFORE_PAGED_NAMESPACES },
    'cluster-dir': { type: 'string' },
    'node-options': { type: 'string' },
    timeout: { type: 'string', default: '180' },
  },
});
const NAMESPACES = positiveInteger('namespaces', flags.namespaces);
const PODS = positiveInteger('pods', flags.pods);
const CONCURRENCY = positiveInteger('concurrency', flags.concurrency);
const RUNS = positiveInteger('runs', flags.runs);
const TIMEOUT_MS = positiveInteger('timeout', flags.timeout) * 1000;
const TARGET_RSS_MB = 100;
const BENCH_LABEL = 'pnc-bench-memory';

if (process.getuid?.() !== 0) {
  console.error('bench:memory needs root (the pods get simulated sandboxes: network namespaces, iptables, cgroups)');
  process.exit(2);
}

const round = (value: number) => Math.round(value * 10) / 10;
const mib = (bytes: number) => round(bytes / 1024 / 1024);
const applyPatch = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);

/** Builds dist/controller.js of REV as the shipped bundle is built, from `git archive` of its sources. */
async function buildBaseline(rev: string, workDir: string): Promise<string> {
  const tree = join(workDir, 'baseline');
  mkdirSync(tree, { recursive: true });
  const tar = join(workDir, 'baseline.tar');
  execFileSync('git', ['-C', ROOT, 'archive', '--format=tar', `--output=${tar}`, rev, 'controller/src']);
  execFileSync('tar', ['-xf', tar, '-C', tree]);
  const outfile = join(tree, 'dist/controller.js');
  // Its dependencies from this checkout's node_modules (the sources only are archived).
  await build({ ...CONTROLLER_BUNDLE_OPTIONS, entryPoints: [join(tree, 'controller/src/cli.ts')], outfile, nodePaths: [join(ROOT, 'node_modules')] });
  writeFileSync(join(tree, 'dist/package.json'), JSON.stringify({ type: 'module' }) + '\n');
  return outfile;
}

/**
 * One OpenShift project as three of OpenShift's controllers leave it, each applying its own
 * fields: the project request (description, display name, requester), the cluster policy
 * controller (the SCC ranges) and the pod-security label syncer.
 */
function openshiftNamespaceApplies(name: string, index: number) {
  const base = 1_000_000_000 + (index % 100_000) * 10_000;
  const metadata = (fields: object) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, ...fields } });
  return [
    {
      manager: 'openshift-apiserver',
      body: metadata({
        labels: { [BENCH_LABEL]: 'true' },
        annotations: {
          'openshift.io/description': `Team project ${index}: services and jobs of the team`,
          'openshift.io/display-name': `Team ${index}`,
          'openshift.io/requester': `user-${index}@example.com`,
        },
      }),
    },
    {
      manager: 'cluster-policy-controller',
      body: metadata({
        annotations: {
          'openshift.io/sa.scc.mcs': `s0:c${27 + (index % 900)},c${4 + (index % 20)}`,
          'openshift.io/sa.scc.supplemental-groups': `${base}/10000`,
          'openshift.io/sa.scc.uid-range': `${base}/10000`,
        },
      }),
    },
    {
      manager: 'pod-security-admission-label-synchronization-controller',
      body: metadata({
        labels: {
          'pod-security.kubernetes.io/audit': 'restricted',
          'pod-security.kubernetes.io/audit-version': 'latest',
          'pod-security.kubernetes.io/warn': 'restricted',
          'pod-security.kubernetes.io/warn-version': 'latest',
        },
        annotations: { 'security.openshift.io/MinimallySufficientPodSecurityStandard': 'restricted' },
      }),
    },
  ];
}

/** Makes the bench namespaces that do not exist yet, CONCURRENCY at a time; returns how many it made and how long that took. */
async function createNamespaces(core: CoreV1Api, client: KubeClient) {
  const have = new Set<string>();
  await client.list<{ metadata: { name: string } }>(
    `/api/v1/namespaces?labelSelector=${BENCH_LABEL}%3Dtrue`,
    (item) => have.add(item.metadata.name),
    'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1',
  );
  const todo = Array.from({ length: NAMESPACES }, (_, i) => i).filter((i) => !have.has(`team-${String(i).padStart(5, '0')}`));
  const started = performance.now();
  let done = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let index = todo.shift(); index !== undefined; index = todo.shift()) {
        const name = `team-${String(index).padStart(5, '0')}`;
        for (const { manager, body } of openshiftNamespaceApplies(name, index)) {
          await core.patchNamespace({ name, body, fieldManager: manager, force: true }, applyPatch);
        }
        if (++done % 1000 === 0) console.error(`bench:memory: ${done} namespaces made (${round((performance.now() - started) / 1000)} s)`);
      }
    }),
  );
  return { made: done, seconds: round((performance.now() - started) / 1000) };
}

/** Size of the namespace LIST as the old agent got it (whole objects) and as metadata. */
async function listSizes(client: KubeClient) {
  const whole = await client.request<{ items: unknown[] }>('GET', '/api/v1/namespaces');
  const meta = await client.request<{ items: unknown[] }>(
    'GET',
    '/api/v1/namespaces',
    undefined,
    undefined,
    'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1',
  );
  const one = whole.items.find((item) => JSON.stringify(item).includes('sa.scc.uid-range'));
  return {
    count: whole.items.length,
    wholeMb: mib(JSON.stringify(whole).length),
    metadataMb: mib(JSON.stringify(meta).length),
    oneNamespaceBytes: JSON.stringify(one).length,
  };
}

/** Creates the pods, then their sandboxes 16 at a time (as bench:controller does). */
async function createPods(fixture: MeshFixture, namespace: string, nodeName: string): Promise<PodHandle[]> {
  const handles: PodHandle[] = [];
  for (let i = 0; i < PODS; i += 25) {
    const batch = Array.from({ length: Math.min(25, PODS - i) }, (_, j) =>
      fixture.createPod(namespace, meshPod(`bench-${i + j}`, nodeName), { sandbox: false }),
    );
    handles.push(...(await Promise.all(batch)));
  }
  const queue = [...handles];
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let handle = queue.shift(); handle; handle = queue.shift()) await fixture.addSandbox(handle);
    }),
  );
  return handles;
}

async function initializedCount(core: CoreV1Api, namespace: string): Promise<number> {
  const pods = await core.listNamespacedPod({ namespace });
  return pods.items.filter((pod) => {
    const text = pod.metadata?.annotations?.[STATUS_ANNOTATION];
    return text !== undefined && parseMark(text).state === 'initialized';
  }).length;
}

/** Removes every pod's mark, so each run programs and marks all of them. */
async function clearMarks(fixture: MeshFixture, handles: PodHandle[]): Promise<void> {
  const queue = [...handles];
  await Promise.all(
    Array.from({ length: 10 }, async () => {
      for (let handle = queue.shift(); handle; handle = queue.shift()) await fixture.annotate(handle, { [STATUS_ANNOTATION]: null });
    }),
  );
}

interface RunResult {
  build: string;
  readyMs: number;
  allMarkedMs: number;
  peakRssMb: number;
  peakHeapMb: number;
  heapAfterMb: number;
  rssAfterMb: number;
  namespaceRequests: number;
}

interface Build {
  name: string;
  bundle: string;
  /** NODE_OPTIONS for the agent (compares V8 settings with the agent's own choice). */
  nodeOptions?: string;
}

async function runAgent({ name, bundle, nodeOptions }: Build, kubeconfig: string, nodeName: string, core: CoreV1Api, namespace: string): Promise<RunResult> {
  const started = performance.now();
  let controller: ControllerProcess | undefined;
  let peakHeap = 0;
  let sampling = true;
  const sample = async () => {
    while (sampling) {
      if (controller) {
        const metrics = await controller.metrics().catch(() => '');
        peakHeap = Math.max(peakHeap, metricValue(metrics, 'nodejs_heap_size_used_bytes'));
      }
      await new Promise((done) => setTimeout(done, 250));
    }
  };
  try {
    const env = { LOG_LEVEL: 'info', ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}) };
    controller = await startController({ kubeconfig, nodeName, bundle, env, waitReady: false });
    const sampler = sample();
    await controller.waitReady(TIMEOUT_MS);
    const readyMs = performance.now() - started;
    await pollUntil(
      async () => (await initializedCount(core, namespace)) === PODS,
      TIMEOUT_MS,
      () => `${name}: not all ${PODS} pods marked within ${TIMEOUT_MS / 1000} s`,
      500,
    );
    const allMarkedMs = performance.now() - started;
    // Settle: the watch echoes of the marks land, the queue drains.
    await new Promise((done) => setTimeout(done, 3_000));
    const metrics = await controller.metrics();
    const status = readFileSync(`/proc/${controller.pid}/status`, 'utf8');
    sampling = false;
    await sampler;
    return {
      build: name,
      readyMs: Math.round(readyMs),
      allMarkedMs: Math.round(allMarkedMs),
      peakRssMb: statusMiB(status, 'VmHWM'),
      rssAfterMb: statusMiB(status, 'VmRSS'),
      peakHeapMb: mib(Math.max(peakHeap, metricValue(metrics, 'nodejs_heap_size_used_bytes'))),
      heapAfterMb: mib(metricValue(metrics, 'nodejs_heap_size_used_bytes')),
      namespaceRequests: metricValue(metrics, 'pnc_watch_requests_total', { resource: 'namespaces' }),
    };
  } finally {
    sampling = false;
    await controller?.stop('SIGTERM');
  }
}

ensureBundles();
const workDir = mkdtempSync(join(tmpdir(), 'pnc-bench-memory-'));
// A private control plane unless --cluster-dir names one to keep (the namespaces take minutes to make).
const stateDir = flags['cluster-dir'] ?? join(tmpdir(), `pnc-bench-memory-cluster-${process.pid}`);
let client: KubeClient | undefined;
let fixture: MeshFixture | undefined;
let exitCode = 0;

try {
  const builds: Build[] = [
    { name: `baseline (${flags.baseline})`, bundle: await buildBaseline(flags.baseline, workDir) },
    { name: 'this tree', bundle: CONTROLLER_BUNDLE },
    ...(flags['node-options'] ? [{ name: `this tree, ${flags['node-options']}`, bundle: CONTROLLER_BUNDLE, nodeOptions: flags['node-options'] }] : []),
  ];
  const cluster = await ensureLocalCluster({ stateDir });
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  client = new KubeClient(fromKubeconfigFile(cluster.kubeconfig));
  const nodeName = `node-bench-memory-${uniqueSuffix()}`;
  fixture = new MeshFixture(kc, nodeName);
  const made = await createNamespaces(core, client);
  const sizes = await listSizes(client);
  await fixture.createNode();
  const podNamespace = await fixture.namespace('bench-memory');
  const handles = await createPods(fixture, podNamespace, nodeName);
  const results: RunResult[] = [];
  for (let run = 0; run < RUNS; run++) {
    // Alternate which build goes first.
    for (const build of run % 2 === 0 ? builds : [...builds].reverse()) {
      await clearMarks(fixture, handles);
      results.push(await runAgent(build, cluster.kubeconfig, nodeName, core, podNamespace));
    }
  }

  console.log(`\nbench:memory: ${sizes.count} namespaces (${NAMESPACES} OpenShift-like), ${PODS} mesh pods on ${nodeName}; node ${process.version}`);
  console.log(
    `namespaces made: ${made.made} in ${made.seconds} s (${CONCURRENCY} in flight, 3 applies each); LIST of all namespaces: ` +
      `${sizes.wholeMb} MiB whole, ${sizes.metadataMb} MiB as metadata; one namespace ${sizes.oneNamespaceBytes} bytes of JSON\n`,
  );
  console.log(
    '| build                            | start -> /readyz | start -> all marked | peak RSS (VmHWM) | RSS after | peak heap | heap after | namespace LIST+WATCH |',
  );
  console.log(
    '| -------------------------------- | ---------------- | ------------------- | ---------------- | --------- | --------- | ---------- | -------------------- |',
  );
  for (const r of results) {
    const target = r.peakRssMb <= TARGET_RSS_MB ? 'ok' : 'MISSED';
    console.log(
      `| ${r.build.padEnd(32)} | ${`${r.readyMs} ms`.padStart(16)} | ${`${r.allMarkedMs} ms`.padStart(19)} | ${`${r.peakRssMb} MiB ${target}`.padStart(16)} | ` +
        `${`${r.rssAfterMb} MiB`.padStart(9)} | ${`${r.peakHeapMb} MiB`.padStart(9)} | ${`${r.heapAfterMb} MiB`.padStart(10)} | ${String(r.namespaceRequests).padStart(20)} |`,
    );
  }
  console.log(`target: peak RSS <= ${TARGET_RSS_MB} MiB`);
  console.log(JSON.stringify({ bench: 'memory', namespaces: sizes.count, pods: PODS, made, sizes, results }));
} catch (error) {
  console.error(`bench:memory failed: ${error instanceof Error ? error.stack : String(error)}`);
  exitCode = 1;
} finally {
  await fixture?.cleanup().catch((error: unknown) => {
    console.error(`cleanup: ${String(error)}`);
    exitCode = 1;
  });
  client?.close();
  // Also a private control plane that failed halfway through starting.
  if (!flags['cluster-dir']) {
    await stopLocalCluster({ stateDir }).catch((error: unknown) => console.error(`stopping the control plane: ${String(error)}`));
    rmSync(`${stateDir}.lock`, { force: true });
  }
  rmSync(workDir, { recursive: true, force: true });
}
process.exit(exitCode);
