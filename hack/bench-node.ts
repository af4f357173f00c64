// `npm run bench:node` (root): what a mesh pod's start costs on a real node here. Starts (or
// reuses) the local cluster's real node with the product deployed (as `npm run demo`), then
// creates, in one run and interleaved, N pods of each kind (hack/lib/real-node.ts
// standInPod): plain; plain + a trivial init container (the waiter's image and resources,
// exits at once: what any init container costs under this kubelet); mesh (the same + our
// waiter, injected). One pod at a time, each deleted once Ready, after a random 0.2-1.2 s
// pause (so creates fall at every phase of the kubelet's 1 s relist): each start is measured
// on a quiet node. Prints create -> Ready per kind, the differences, and where a mesh
// pod's time goes, from the API (a watch), the mark's own time and the containers' log
// timestamps (the runtime's, nanoseconds). Prints numbers, asserts none.
// istio: the same app injected by Istio's own injector with our Helm values (hack/lib/istio-node.ts):
// Istio's real istio-validation, a native-sidecar istio-proxy, our waiter; counts
// istio-validation restarts (each costs a kubelet back-off; the goal is none).
//   --pods N (default 30)  --keep-cluster
import { CoreV1Api, KubeConfig, Watch } from '@kubernetes/client-node';
import type { V1Pod } from '@kubernetes/client-node';
import { parseMark, STATUS_ANNOTATION } from '../controller/src/pod-contract/index.ts';
import { positiveInteger } from './lib/flags.ts';
import { stopLocalCluster } from './lib/local-cluster.ts';
import { pollUntil } from './lib/poll.ts';
import { istioAppPod, setUpIstioPath, VALIDATION_CONTAINER, VALIDATION_PASSED } from './lib/istio-node.ts';
import type { IstioPath } from './lib/istio-node.ts';
import { deployOnRealNode, isReady, meshNamespace, standInPod, waitForInjection } from './lib/real-node.ts';
import { WAITER_CONTAINER } from './lib/mesh-pods.ts';
import type { StandInKind } from './lib/real-node.ts';
import { quantile } from './lib/stats.ts';

type Kind = StandInKind | 'istio';
const KINDS: readonly Kind[] = ['plain', 'trivial-init', 'mesh', 'istio'];
const TRIVIAL_INIT = 'trivial-init';

const args = process.argv.slice(2);
const podsFlag = args.indexOf('--pods');
const perKind = podsFlag === -1 ? 30 : positiveInteger('pods', args[podsFlag + 1]);
const keepCluster = args.includes('--keep-cluster');
if (process.getuid?.() !== 0) {
  console.error('bench:node needs root: it runs a kubelet and containerd');
  process.exit(2);
}

/** Epoch ms now, on the clock the agent's mark and the runtime's log timestamps use. */
const now = () => performance.timeOrigin + performance.now();

interface Sample {
  name: string;
  kind: Kind;
  created: number;
  markSeen?: number;
  initExitSeen?: number;
  readySeen?: number;
  markWritten?: number;
  /** The init container's first and last log lines (its start, and just before its exit). */
  initFirstLog?: number;
  initLastLog?: number;
  /** The pod's deletion is complete (a watch saw DELETED). */
  gone?: boolean;
  /** istio: istio-validation's restarts once the pod is Ready, its log's last line, and whether it logged its pass. */
  validationRestarts?: number;
  validationLastLog?: number;
  validationPassed?: boolean;
}

/** Observes every pod of the namespace through one watch; first-seen times of the mark, the init container's exit and Ready. */
function observe(pod: V1Pod, samples: Map<string, Sample>): void {
  const sample = samples.get(pod.metadata?.name ?? '');
  if (!sample) return;
  const at = now();
  if (sample.markSeen === undefined && pod.metadata?.annotations?.[STATUS_ANNOTATION]) sample.markSeen = at;
  const init = pod.status?.initContainerStatuses?.find((s) => s.name === WAITER_CONTAINER || s.name === TRIVIAL_INIT)?.state?.terminated;
  if (sample.initExitSeen === undefined && init?.exitCode === 0) sample.initExitSeen = at;
  if (sample.readySeen === undefined && isReady(pod)) sample.readySeen = at;
}

/** A container's log with the runtime's own timestamps (`timestamps=true`); empty when it cannot be read. */
const timestampedLog = (core: CoreV1Api, namespace: string, name: string, container: string) =>
  core.readNamespacedPodLog({ namespace, name, container, timestamps: true }).catch(() => '');

/** Epoch ms of the first and last lines of a timestamped log. */
function logSpan(text: string): [number, number] | undefined {
  const stamps = text
    .split('\n')
    .filter(Boolean)
    .map((line) => Date.parse(line.slice(0, line.indexOf(' '))));
  return stamps.length === 0 ? undefined : [stamps[0]!, stamps.at(-1)!];
}

const started = performance.now();
let startedCluster = false;
let core: CoreV1Api | undefined;
let namespace: string | undefined;
let istio: IstioPath | undefined;
let exitCode = 0;
let watch: AbortController | undefined;
// Set when the run ends, also by a failure: the watch must not restart against a stopped cluster.
let finished = false;
try {
  console.log('== the real node and the product');
  const deployed = await deployOnRealNode((line) => console.log(`   ${line}`));
  startedCluster = !deployed.controlPlaneWasRunning;
  const kc = new KubeConfig();
  kc.loadFromFile(deployed.cluster.kubeconfig);
  core = kc.makeApiClient(CoreV1Api);

  namespace = `bench-node-${Date.now().toString(36)}`;
  await core.createNamespace({ body: meshNamespace(namespace) });
  await waitForInjection(core, namespace);
  console.log("   Istio's injector with our Helm values, and the Istio proxy stand-in image");
  istio = await setUpIstioPath(kc, deployed.cluster.kubeconfig, deployed.node.containerdAddress, `${namespace}-istio`, (line) => console.log(`   ${line}`));

  const samples = new Map<string, Sample>();
  // One watch for the whole run; restarted if the server or the client's idle timeout ends it.
  const startWatch = async (): Promise<void> => {
    // Both namespaces' pods, by their kind label.
    watch = await new Watch(kc).watch(
      '/api/v1/pods',
      { labelSelector: 'pnc-demo/kind' },
      (type: string, pod: V1Pod) => {
        const sample = samples.get(pod.metadata?.name ?? '');
        if (type === 'DELETED' && sample) sample.gone = true;
        else observe(pod, samples);
      },
      () => {
        if (finished) return;
        // The new watch replays every pod there is (synthetic ADDED events); a pod deleted in the
        // gap shows only by its absence, and only a Ready pod is ever deleted.
        void startWatch().then(async () => {
          const present = new Set((await core!.listPodForAllNamespaces({ labelSelector: 'pnc-demo/kind' })).items.map((pod) => pod.metadata?.name));
          for (const sample of samples.values()) if (sample.readySeen !== undefined && !present.has(sample.name)) sample.gone = true;
        });
      },
    );
  };
  await startWatch();
  const until = (what: string, done: () => boolean, timeoutMs = 120_000) =>
    pollUntil(done, timeoutMs, () => `timed out after ${timeoutMs} ms waiting for ${what}`, 20);

  console.log(`\n== ${perKind} pods of each kind on ${deployed.node.name}: one at a time, kinds interleaved`);
  for (let round = 0; round < perKind; round++) {
    // Each round in a fresh random order, so no kind always follows another.
    const order = [...KINDS].sort(() => Math.random() - 0.5);
    for (const kind of order) {
      // The waiter (and the trivial init container) request 500m CPU, which a pod holds for its
      // whole life: on a 2-CPU node only 3 such pods fit, so at most 2 others may be terminating.
      await until('earlier pods to go', () => [...samples.values()].filter((s) => s.kind !== 'plain' && !s.gone).length < 3);
      // A random pause, so creates fall at every phase of the kubelet's 1 s relist.
      await new Promise((resolve) => setTimeout(resolve, 200 + Math.random() * 1000));
      const name = `${kind}-${round}`;
      const sample: Sample = { name, kind, created: now() };
      samples.set(name, sample);
      const podNamespace = kind === 'istio' ? istio.namespace : namespace;
      await core.createNamespacedPod({ namespace: podNamespace, body: kind === 'istio' ? istioAppPod(name) : standInPod(name, kind) });
      await until(`pod ${name} to be Ready`, () => sample.readySeen !== undefined);
      const pod = await core.readNamespacedPod({ namespace: podNamespace, name });
      const mark = pod.metadata?.annotations?.[STATUS_ANNOTATION];
      if (mark) sample.markWritten = Date.parse(parseMark(mark).at);
      const container = kind === 'mesh' || kind === 'istio' ? WAITER_CONTAINER : kind === TRIVIAL_INIT ? TRIVIAL_INIT : undefined;
      if (container) [sample.initFirstLog, sample.initLastLog] = logSpan(await timestampedLog(core, podNamespace, name, container)) ?? [];
      if (kind === 'istio') {
        sample.validationRestarts = pod.status?.initContainerStatuses?.find((s) => s.name === VALIDATION_CONTAINER)?.restartCount;
        // One read: the timestamps prefix each line and leave the message in it.
        const log = await timestampedLog(core, podNamespace, name, VALIDATION_CONTAINER);
        sample.validationLastLog = logSpan(log)?.[1];
        sample.validationPassed = log.includes(VALIDATION_PASSED);
      }
      await core.deleteNamespacedPod({ namespace: podNamespace, name });
    }
    if ((round + 1) % 5 === 0) console.log(`   ${(round + 1) * KINDS.length} pods Ready`);
  }
  finished = true;
  watch?.abort();

  const of = (kind: Kind) => [...samples.values()].filter((s) => s.kind === kind);
  const ms = (n: number) => `${Math.round(n)} ms`.padStart(8);
  const row = (label: string, values: number[]) => {
    const valid = values.filter((v) => Number.isFinite(v));
    console.log(
      `   ${label.padEnd(60)} ${ms(quantile(valid, 0.5))} ${ms(quantile(valid, 0.99))}${valid.length < values.length ? `   (${values.length - valid.length} missing)` : ''}`,
    );
  };
  const span = (kind: Kind, from: keyof Sample, to: keyof Sample) => of(kind).map((s) => (s[to] as number) - (s[from] as number));

  console.log(`\n== create -> Ready (${perKind} pods each)${' '.repeat(30)}      p50      p99`);
  const ready = Object.fromEntries(KINDS.map((kind) => [kind, span(kind, 'created', 'readySeen')])) as Record<Kind, number[]>;
  for (const kind of KINDS) row(kind, ready[kind]);
  const diff = (a: Kind, b: Kind) =>
    console.log(
      `   ${`${a} - ${b} (difference of the quantiles)`.padEnd(60)} ${ms(quantile(ready[a], 0.5) - quantile(ready[b], 0.5))} ${ms(quantile(ready[a], 0.99) - quantile(ready[b], 0.99))}`,
    );
  diff('mesh', TRIVIAL_INIT);
  diff('mesh', 'plain');
  diff(TRIVIAL_INIT, 'plain');
  diff('istio', 'mesh');

  console.log(`\n== where a mesh pod's time goes${' '.repeat(37)}      p50      p99`);
  row('create -> waiter started (its first log line)', span('mesh', 'created', 'initFirstLog'));
  row('create -> mark written (the agent, mark.at)', span('mesh', 'created', 'markWritten'));
  row('create -> mark seen by a watch', span('mesh', 'created', 'markSeen'));
  row('waiter started -> mark written', span('mesh', 'initFirstLog', 'markWritten'));
  row('mark written -> waiter exits (its last log line)', span('mesh', 'markWritten', 'initLastLog'));
  row('mark written -> waiter exit seen in the API', span('mesh', 'markWritten', 'initExitSeen'));
  row('waiter exits -> exit seen in the API (kubelet relist)', span('mesh', 'initLastLog', 'initExitSeen'));
  row('waiter exit seen -> Ready (app containers start)', span('mesh', 'initExitSeen', 'readySeen'));

  console.log(`\n== the same for the trivial init container${' '.repeat(26)}      p50      p99`);
  row('create -> init started (its log line)', span(TRIVIAL_INIT, 'created', 'initFirstLog'));
  row('init exits -> exit seen in the API (kubelet relist)', span(TRIVIAL_INIT, 'initLastLog', 'initExitSeen'));
  row('init exit seen -> Ready (app containers start)', span(TRIVIAL_INIT, 'initExitSeen', 'readySeen'));

  console.log(`\n== Istio's path (istio-validation, native istio-proxy, waiter)${' '.repeat(6)}      p50      p99`);
  row('create -> istio-validation exits (its last log line)', span('istio', 'created', 'validationLastLog'));
  row('create -> mark written (the agent, mark.at)', span('istio', 'created', 'markWritten'));
  row('create -> waiter started (its first log line)', span('istio', 'created', 'initFirstLog'));
  row('waiter exit seen -> Ready (app container starts)', span('istio', 'initExitSeen', 'readySeen'));
  const istioPods = of('istio');
  const restarts = istioPods.reduce((sum, s) => sum + (s.validationRestarts ?? 0), 0);
  const passed = istioPods.filter((s) => s.validationRestarts === 0 && s.validationPassed).length;
  console.log(`   istio-validation restarts: ${restarts} in ${istioPods.length} pods (goal: none); passed at the first try: ${passed}/${istioPods.length}`);
  console.log('\n   target for what the product adds (mesh - trivial-init): p50 <= 150 ms, p99 <= 500 ms');
} catch (error) {
  console.error(`\nbench:node FAILED: ${error instanceof Error ? error.message : String(error)}`);
  exitCode = 1;
} finally {
  finished = true;
  watch?.abort();
  await istio?.stop();
  if (core && namespace) await core.deleteNamespace({ name: namespace }).catch(() => undefined);
  if (startedCluster && !keepCluster) {
    await stopLocalCluster().catch((error: unknown) => {
      console.error(`stopping the cluster failed: ${String(error)}`);
      exitCode = 1;
    });
  }
}
console.log(`\nbench:node ${exitCode === 0 ? 'done' : 'FAILED'} in ${((performance.now() - started) / 1000).toFixed(0)} s`);
process.exit(exitCode);
