// Fakes for the agent's reconciler, so its executor runs without root or an API server:
// a clock that moves only when told, an API server holding pods, a /proc finder, a
// redirect engine, an Event recorder and a log that keep what they were given.
import type { V1Pod } from '@kubernetes/client-node';
import pino from 'pino';
import type { Counter, Histogram } from 'prom-client';
import { parseConfig } from '../../controller/src/agent/config.ts';
import { createMetrics } from '../../controller/src/agent/metrics.ts';
import type { SandboxNetns } from '../../controller/src/agent/netns-finder.ts';
import { type Clock, type RedirectEngine, Reconciler, type ReconcilerDeps } from '../../controller/src/agent/reconciler.ts';
import type { EventReason } from '../../controller/src/kube/event-recorder.ts';
import type { PodRef, WriteResult } from '../../controller/src/kube/pod-status-writer.ts';
import { type Mark, STATUS_ANNOTATION, encodeMark, parseMark } from '../../controller/src/pod-contract/index.ts';
import {
  type ApplyOptions,
  DEFAULT_NODE_CONFIG,
  type EngineOptions,
  type Netns,
  type RedirectPlan,
  renderPlan,
  rulesHash,
  validateNodeConfig,
} from '../../controller/src/redirect/index.ts';
import { meshPod } from '../../hack/lib/mesh-pods.ts';

export const NODE = 'node-1';
export const NAMESPACE = 'shop';

export class FakeClock implements Clock {
  /** Monotonic milliseconds. */
  ms = 1_000_000;
  readonly wallStart = Date.parse('2026-12-01T12:00:00Z');
  now(): number {
    return this.ms;
  }
  date(): Date {
    return new Date(this.wallStart + this.ms);
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

/** What the API server and the netns saw, in order: `mark <state>`, `apply`, `verify` (the rules and the record, read together), `record <text>`. */
export type Journal = string[];

/** The API server's pods and what the informer cache holds; a write changes the first only. */
export class FakeApi {
  readonly journal: Journal;
  constructor(journal: Journal = []) {
    this.journal = journal;
  }
  readonly server = new Map<string, V1Pod>();
  readonly cache = new Map<string, V1Pod>();
  readonly writes: Mark[] = [];
  reads = 0;
  #resourceVersion = 100;
  /** Thrown by the next writeMark. */
  failNextWrite: unknown;

  /** Creates the pod on the server and in the cache. */
  add(pod: V1Pod): V1Pod {
    const uid = pod.metadata!.uid!;
    pod.metadata!.resourceVersion = String(++this.#resourceVersion);
    this.server.set(uid, pod);
    this.cache.set(uid, structuredClone(pod));
    return pod;
  }

  /** The watch delivers the server's current copy. */
  deliver(uid: string): V1Pod {
    const pod = structuredClone(this.server.get(uid)!);
    this.cache.set(uid, pod);
    return pod;
  }

  markOf(uid: string): Mark | undefined {
    const text = this.server.get(uid)?.metadata?.annotations?.[STATUS_ANNOTATION];
    return text === undefined ? undefined : parseMark(text);
  }

  async writeMark(ref: PodRef, mark: Mark): Promise<WriteResult> {
    if (this.failNextWrite !== undefined) {
      const error = this.failNextWrite;
      this.failNextWrite = undefined;
      throw error;
    }
    const pod = this.server.get(ref.uid);
    if (!pod) return 'gone';
    this.writes.push(mark);
    this.journal.push(`mark ${mark.state}`);
    pod.metadata!.annotations = { ...pod.metadata!.annotations, [STATUS_ANNOTATION]: encodeMark(mark) };
    pod.metadata!.resourceVersion = String(++this.#resourceVersion);
    return { resourceVersion: pod.metadata!.resourceVersion };
  }

  async readPod(ref: PodRef): Promise<V1Pod | 'gone'> {
    this.reads++;
    const pod = this.server.get(ref.uid);
    return pod ? structuredClone(pod) : 'gone';
  }
}

export class FakeFinder {
  readonly sandboxes = new Map<string, SandboxNetns>();
  readonly dead = new Set<number>();
  scanError: string | undefined;
  /** Called for every sandbox started: its netns is new. */
  onStart: (sandbox: SandboxNetns) => void = () => {};

  async find(uid: string): Promise<SandboxNetns | undefined> {
    const sandbox = this.sandboxes.get(uid);
    return sandbox && !this.dead.has(sandbox.pid) ? sandbox : undefined;
  }

  isAlive(sandbox: SandboxNetns): boolean {
    return (
      !this.dead.has(sandbox.pid) &&
      [...this.sandboxes.values()].some((s) => s.pid === sandbox.pid && s.startTime === sandbox.startTime && s.inode === sandbox.inode)
    );
  }

  /** A sandbox for the pod: pid and netns inode derived from `n`, unless `given` says otherwise (a reused inode, a reused pid). */
  start(uid: string, n = 1, given: Partial<Pick<SandboxNetns, 'pid' | 'inode' | 'startTime'>> = {}): SandboxNetns {
    const pid = given.pid ?? 4000 + n;
    const sandbox = { pid, inode: given.inode ?? 4026532000 + n, path: `/proc/${pid}/ns/net`, startTime: given.startTime ?? 100 + n };
    this.sandboxes.set(uid, sandbox);
    this.onStart(sandbox);
    return sandbox;
  }
}

export class FakeWatcher {
  readonly watching = new Set<string>();
  watch(uid: string): void {
    this.watching.add(uid);
  }
  forget(uid: string): void {
    this.watching.delete(uid);
  }
}

export interface RecordedEvent {
  uid: string;
  reason: EventReason;
  note: string;
  name: string | undefined;
}

export class FakeEvents {
  readonly recorded: RecordedEvent[] = [];
  record(pod: PodRef, reason: EventReason, note: string, name?: string): void {
    this.recorded.push({ uid: pod.uid, reason, note, name });
  }
  of(reason: EventReason): RecordedEvent[] {
    return this.recorded.filter((event) => event.reason === reason);
  }
}

/** A hash no plan renders to: set as FakeEngine.appliedHash, it shows where a mark's hash came from. */
export const APPLIED_HASH = 'feedfacecafe0001';

export class FakeEngine implements RedirectEngine {
  readonly journal: Journal;
  readonly applied: { netns: Netns; plan: RedirectPlan; options: ApplyOptions }[] = [];
  readonly verified: { netns: Netns; options: EngineOptions }[] = [];
  /** Each netns's record (lo's alias), by path: a new netns has none. */
  readonly records = new Map<string, string>();
  /** Thrown by the next writeRecord (then cleared). */
  recordError: unknown;
  /** Thrown by the next apply (then cleared). */
  applyError: unknown;
  verifyResult = { ok: true, diff: '' };
  /** What apply reports having applied; by default the plan's hash, as the real engine's. */
  appliedHash: string | undefined;

  constructor(journal: Journal = []) {
    this.journal = journal;
  }

  async apply(netns: Netns, plan: RedirectPlan, options: ApplyOptions): Promise<{ hash: string; changed: boolean }> {
    if (this.applyError !== undefined) {
      const error = this.applyError;
      this.applyError = undefined;
      throw error;
    }
    this.applied.push({ netns, plan, options });
    this.journal.push('apply');
    return { hash: this.appliedHash ?? rulesHash(renderPlan(plan)), changed: true };
  }

  async verifyWithRecord(netns: Netns, _plan: RedirectPlan, options: EngineOptions): Promise<{ ok: boolean; diff: string; record: string }> {
    this.verified.push({ netns, options });
    this.journal.push('verify');
    return { ...this.verifyResult, record: this.records.get(netns.path) ?? '' };
  }

  async writeRecord(netns: Netns, text: string): Promise<void> {
    if (this.recordError !== undefined) {
      const error = this.recordError;
      this.recordError = undefined;
      throw error;
    }
    this.journal.push(`record ${text}`);
    this.records.set(netns.path, text);
  }
}

export interface LogLine {
  level: number;
  msg: string;
  uid?: string;
  [key: string]: unknown;
}

/** A reconciler on fakes, with everything it touches exposed. */
export function fakeReconciler(env: Record<string, string> = {}, deps: Pick<ReconcilerDeps, 'nodeFamilies'> = {}) {
  const config = parseConfig({ NODE_NAME: NODE, PNC_IPTABLES_LOCK_TIMEOUT: '5', ...env }, []);
  const redirectConfig = validateNodeConfig(DEFAULT_NODE_CONFIG);
  const clock = new FakeClock();
  const journal: Journal = [];
  const api = new FakeApi(journal);
  const finder = new FakeFinder();
  const watcher = new FakeWatcher();
  const events = new FakeEvents();
  const engine = new FakeEngine(journal);
  finder.onStart = (sandbox) => engine.records.delete(sandbox.path);
  const metrics = createMetrics();
  const logs: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) });
  const namespaces = new Map<string, Record<string, string>>([[NAMESPACE, {}]]);
  const namespaceLabels = new Map<string, Record<string, string>>([[NAMESPACE, {}]]);
  const reconciler = new Reconciler({
    config,
    redirectConfig,
    iptablesMode: 'nft',
    getPod: (uid) => api.cache.get(uid),
    getNamespaceAnnotations: (namespace) => namespaces.get(namespace),
    getNamespaceLabels: (namespace) => namespaceLabels.get(namespace),
    finder,
    watcher,
    writer: api,
    events,
    metrics,
    log,
    engine,
    clock,
    ...deps,
  });
  return { reconciler, config, redirectConfig, clock, api, finder, watcher, events, engine, metrics, logs, namespaces, namespaceLabels, journal };
}

let pods = 0;
/** A mesh pod on NODE in NAMESPACE with a fresh UID. */
export function testPod(options: Parameters<typeof meshPod>[2] = {}): V1Pod {
  const pod = meshPod(`web-${++pods}`, NODE, options);
  pod.metadata!.namespace = NAMESPACE;
  pod.metadata!.uid = `uid-${pods}`;
  pod.status = { phase: 'Pending' };
  return pod;
}

export async function counterValue(counter: Counter, labels: Record<string, string> = {}): Promise<number> {
  const { values } = await counter.get();
  return values.find((value) => Object.entries(labels).every(([key, v]) => value.labels[key] === v))?.value ?? 0;
}

export async function histogramCount(histogram: Histogram): Promise<number> {
  const { values } = await histogram.get();
  return values.find((value) => value.metricName?.endsWith('_count'))?.value ?? 0;
}
