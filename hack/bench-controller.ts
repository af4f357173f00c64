// `npm run bench:controller` (root): a burst of 110 mesh pods (a node's default pod limit)
// on one simulated node against the real local control plane, in two scenarios:
//  arrival: the agent runs while pods and their sandboxes arrive as fast as the simulator
//           makes them; per pod, sandbox ready -> mark seen through a watch.
//  startup: 110 pods with ready sandboxes exist before the agent starts (node reboot,
//           agent upgrade): all of them at once; agent start -> each mark.
// Also the agent's memory and its LIST/WATCH requests. Prints a table and a JSON line.
import { KubeConfig, Watch } from '@kubernetes/client-node';
import type { V1Pod } from '@kubernetes/client-node';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { parseMark, STATUS_ANNOTATION } from '../controller/src/pod-contract/index.ts';
import { metricValue, startController } from './lib/controller-process.ts';
import type { ControllerProcess } from './lib/controller-process.ts';
import { MeshFixture, uniqueSuffix } from './lib/mesh-fixture.ts';
import type { PodHandle } from './lib/mesh-fixture.ts';
import { meshPod } from './lib/mesh-pods.ts';
import { ensureBundles } from './lib/ensure-bundles.ts';
import { positiveInteger } from './lib/flags.ts';
import { ensureLocalCluster } from './lib/local-cluster.ts';
import { quantile, statCpuSeconds, statusMiB } from './lib/stats.ts';

const { values: flags } = parseArgs({
  options: {
    pods: { type: 'string', default: '110' },
    'sandbox-concurrency': { type: 'string', default: '16' },
    timeout: { type: 'string', default: '60' },
    'node-options': { type: 'string' },
  },
});
const POD_COUNT = positiveInteger('pods', flags.pods);
const SANDBOX_CONCURRENCY = positiveInteger('sandbox-concurrency', flags['sandbox-concurrency']);
const TIMEOUT_MS = positiveInteger('timeout', flags.timeout) * 1000;
/** allWithinMs: /readyz -> all marked (110 pods); startAllMs: agent start -> all marked (250 pods, a node's larger limit). */
const TARGETS = { p99Ms: 500, allWithinMs: 3000, startAllMs: 4000, rssMb: 100 };

if (process.getuid?.() !== 0) {
  console.error('bench:controller needs root (network namespaces, iptables, cgroups)');
  process.exit(2);
}

const round = (value: number) => Math.round(value * 10) / 10;

/** Records when each pod of the namespace first shows an `initialized` mark. */
async function watchMarks(kc: KubeConfig, namespace: string) {
  const markedAt = new Map<string, number>();
  let allMarked: () => void = () => {};
  const done = new Promise<void>((resolve) => (allMarked = resolve));
  let finished = false;
  let abort: AbortController | undefined;
  // A watch the apiserver ends (its timeout, a busy machine) is started again, so no mark goes unseen.
  const watch = async (): Promise<void> => {
    abort = await new Watch(kc).watch(
      `/api/v1/namespaces/${namespace}/pods`,
      {},
      (_type: string, pod: V1Pod) => {
        const text = pod.metadata?.annotations?.[STATUS_ANNOTATION];
        const name = pod.metadata?.name;
        if (!name || text === undefined || markedAt.has(name) || parseMark(text).state !== 'initialized') return;
        markedAt.set(name, performance.now());
        if (markedAt.size === POD_COUNT) allMarked();
      },
      () => {
        if (!finished) void watch();
      },
    );
  };
  await watch();
  const waitAll = async () => {
    const timedOut = await Promise.race([done.then(() => false), new Promise<boolean>((resolve) => setTimeout(() => resolve(true), TIMEOUT_MS).unref())]);
    finished = true;
    abort?.abort();
    if (timedOut) throw new Error(`only ${markedAt.size}/${POD_COUNT} pods in ${namespace} were marked within ${TIMEOUT_MS / 1000} s`);
  };
  return { markedAt, waitAll };
}

/** Creates the pods, then their sandboxes SANDBOX_CONCURRENCY at a time; returns when each sandbox was ready. */
async function createBurst(fixture: MeshFixture, namespace: string, nodeName: string) {
  const handles = await Promise.all(
    Array.from({ length: POD_COUNT }, (_, i) => fixture.createPod(namespace, meshPod(`bench-${i}`, nodeName), { sandbox: false })),
  );
  const readyAt = new Map<string, number>();
  const queue: PodHandle[] = [...handles];
  await Promise.all(
    Array.from({ length: SANDBOX_CONCURRENCY }, async () => {
      for (let handle = queue.shift(); handle; handle = queue.shift()) {
        await fixture.addSandbox(handle);
        readyAt.set(handle.name, performance.now());
      }
    }),
  );
  return readyAt;
}

async function agentFigures(controller: ControllerProcess) {
  const metrics = await controller.metrics();
  const status = await readFile(`/proc/${controller.pid}/status`, 'utf8');
  return {
    rssMb: statusMiB(status, 'VmRSS'),
    peakRssMb: statusMiB(status, 'VmHWM'),
    anonymousRssMb: statusMiB(status, 'RssAnon'),
    fileRssMb: statusMiB(status, 'RssFile'),
    cpuSeconds: statCpuSeconds(await readFile(`/proc/${controller.pid}/stat`, 'utf8')),
    watchRequests: {
      pods: metricValue(metrics, 'pnc_watch_requests_total', { resource: 'pods' }),
      namespaces: metricValue(metrics, 'pnc_watch_requests_total', { resource: 'namespaces' }),
    },
    agentMarkLatencyMeanMs: round((metricValue(metrics, 'pnc_mark_latency_seconds_sum') / metricValue(metrics, 'pnc_mark_latency_seconds_count')) * 1000),
  };
}

function latencyStats(latencies: number[]) {
  return { p50Ms: round(quantile(latencies, 0.5)), p99Ms: round(quantile(latencies, 0.99)), maxMs: round(quantile(latencies, 1)) };
}

ensureBundles();
const { kubeconfig } = await ensureLocalCluster();
const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);
const nodeName = `node-bench-${uniqueSuffix()}`;
const fixture = new MeshFixture(kc, nodeName);
let controller: ControllerProcess | undefined;
let exitCode = 0;
// --node-options compares V8 settings (e.g. --max-semi-space-size=4, --no-jitless) with the agent's own choice.
const agentEnv: Record<string, string> = { LOG_LEVEL: 'info', ...(flags['node-options'] ? { NODE_OPTIONS: flags['node-options'] } : {}) };

try {
  await fixture.createNode();

  // Scenario 1: arrival while the agent runs.
  const arrivalNs = await fixture.namespace('bench-arrival');
  controller = await startController({ kubeconfig, nodeName, env: agentEnv });
  const arrivalMarks = await watchMarks(kc, arrivalNs);
  const burstStart = performance.now();
  const readyAt = await createBurst(fixture, arrivalNs, nodeName);
  const sandboxesDone = performance.now();
  await arrivalMarks.waitAll();
  const lastArrivalMark = Math.max(...arrivalMarks.markedAt.values());
  const arrival = {
    ...latencyStats([...readyAt].map(([name, ready]) => arrivalMarks.markedAt.get(name)! - ready)),
    sandboxesMs: round(sandboxesDone - burstStart),
    lastSandboxToLastMarkMs: round(lastArrivalMark - sandboxesDone),
    totalMs: round(lastArrivalMark - burstStart),
    ...(await agentFigures(controller)),
  };
  await controller.stop('SIGTERM');
  await fixture.cleanup();

  // Scenario 2: all sandboxes ready before the agent starts.
  await fixture.createNode();
  const startupNs = await fixture.namespace('bench-startup');
  await createBurst(fixture, startupNs, nodeName);
  const startupMarks = await watchMarks(kc, startupNs);
  const agentStart = performance.now();
  controller = await startController({ kubeconfig, nodeName, env: agentEnv });
  const readyMs = round(performance.now() - agentStart);
  await startupMarks.waitAll();
  const startup = {
    ...latencyStats([...startupMarks.markedAt.values()].map((at) => at - agentStart)),
    agentReadyMs: readyMs,
    readyToAllMarkedMs: round(Math.max(...startupMarks.markedAt.values()) - agentStart - readyMs),
    ...(await agentFigures(controller)),
  };

  const check = (ok: boolean) => (ok ? 'ok' : 'MISSED');
  const row = (measure: string, value: string, target = '') => console.log(`| ${measure.padEnd(58)} | ${value.padEnd(18)} | ${target.padEnd(18)} |`);
  console.log(`\nbench:controller: ${POD_COUNT} mesh pods on ${nodeName} (sandboxes made ${SANDBOX_CONCURRENCY} at a time)`);
  row('measure', 'value', 'target');
  console.log(`| ${'-'.repeat(58)} | ${'-'.repeat(18)} | ${'-'.repeat(18)} |`);
  // "Ready" is when the simulator returned, after it wrote the pod's status: the agent may
  // find the pause process before that, so small negative values are real.
  row('arrival: sandbox ready -> mark, p50', `${arrival.p50Ms} ms`);
  row('arrival: sandbox ready -> mark, p99', `${arrival.p99Ms} ms`, `<= ${TARGETS.p99Ms} ms ${check(arrival.p99Ms <= TARGETS.p99Ms)}`);
  row('arrival: sandbox ready -> mark, max', `${arrival.maxMs} ms`);
  row(`arrival: simulator making ${POD_COUNT} sandboxes`, `${arrival.sandboxesMs} ms`);
  row('arrival: last sandbox ready -> last mark', `${arrival.lastSandboxToLastMarkMs} ms`);
  row("arrival: agent's own found -> mark latency, mean", `${arrival.agentMarkLatencyMeanMs} ms`);
  row('arrival: agent RSS now / peak', `${arrival.rssMb} / ${arrival.peakRssMb} MB`, `<= ${TARGETS.rssMb} MB ${check(arrival.peakRssMb <= TARGETS.rssMb)}`);
  row(`arrival: agent RSS now: anonymous / file (node's binary)`, `${arrival.anonymousRssMb} / ${arrival.fileRssMb} MB`);
  row('arrival: agent CPU time, own / its children', `${arrival.cpuSeconds.own} / ${arrival.cpuSeconds.children} s`);
  row('arrival: LIST+WATCH requests pods / namespaces', `${arrival.watchRequests.pods} / ${arrival.watchRequests.namespaces}`);
  row(`startup: agent start -> /readyz 200`, `${startup.agentReadyMs} ms`);
  row(`startup: agent start -> mark, p50`, `${startup.p50Ms} ms`);
  row(`startup: agent start -> mark, p99`, `${startup.p99Ms} ms`);
  row(
    `startup: agent start -> all ${POD_COUNT} marked`,
    `${startup.maxMs} ms`,
    POD_COUNT >= 250 ? `<= ${TARGETS.startAllMs} ms ${check(startup.maxMs <= TARGETS.startAllMs)}` : '',
  );
  row(
    `startup: /readyz 200 -> all ${POD_COUNT} marked`,
    `${startup.readyToAllMarkedMs} ms`,
    POD_COUNT <= 110 ? `<= ${TARGETS.allWithinMs} ms ${check(startup.readyToAllMarkedMs <= TARGETS.allWithinMs)}` : '',
  );
  row('startup: agent RSS now / peak', `${startup.rssMb} / ${startup.peakRssMb} MB`, `<= ${TARGETS.rssMb} MB ${check(startup.peakRssMb <= TARGETS.rssMb)}`);
  row(`startup: agent RSS now: anonymous / file (node's binary)`, `${startup.anonymousRssMb} / ${startup.fileRssMb} MB`);
  row('startup: agent CPU time, own / its children', `${startup.cpuSeconds.own} / ${startup.cpuSeconds.children} s`);
  row('startup: LIST+WATCH requests pods / namespaces', `${startup.watchRequests.pods} / ${startup.watchRequests.namespaces}`);
  console.log(JSON.stringify({ bench: 'controller', pods: POD_COUNT, sandboxConcurrency: SANDBOX_CONCURRENCY, arrival, startup }));
} catch (error) {
  console.error(`bench:controller failed: ${error instanceof Error ? error.stack : String(error)}`);
  exitCode = 1;
} finally {
  await controller?.stop('SIGTERM');
  await fixture.cleanup().catch((error: unknown) => {
    console.error(`cleanup: ${String(error)}`);
    exitCode = 1;
  });
}
process.exit(exitCode);
