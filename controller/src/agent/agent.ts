// Wiring: informers -> work queue -> reconciler, plus the HTTP server, the sandbox
// liveness check, a periodic resync, recovery from API outages and the SIGTERM drain.
import type { V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { IptablesMode, ValidatedNodeConfig } from '../redirect/index.ts';
import type { AgentConfig } from './config.ts';
import { EventRecorder } from '../kube/event-recorder.ts';
import { type HttpServer, startHttpServer } from './http-server.ts';
import { KubeClient, isConnectionError } from '../kube/kube-client.ts';
import { type KubeCredentials, loadCredentials } from '../kube/kubeconfig.ts';
import { type AgentMetrics, createMetrics, setNodeFamilies } from './metrics.ts';
import { type CachedNamespace, createNamespaceInformer } from '../kube/namespace-informer.ts';
import { NAMESPACE_KEYS } from './namespace-keys.ts';
import { NetnsFinder } from './netns-finder.ts';
import { describeNodeFamilies, type NodeFamilies } from './node-families.ts';
import { createPodInformer } from '../kube/pod-informer.ts';
import { PodStatusWriter } from '../kube/pod-status-writer.ts';
import { Reconciler } from './reconciler.ts';
import { SandboxWatcher } from './sandbox-watcher.ts';
import type { ResourceInformer } from '../kube/resource-informer.ts';
import { WorkQueue } from './work-queue.ts';

/** How often known sandboxes are checked for being replaced (a few readlinks per pod). */
const SANDBOX_CHECK_MS = 1_000;
/** Every pod is verified again this often, so rules flushed behind our back come back. */
const RESYNC_MS = 5 * 60_000;
/**
 * While the API server does not answer, it is probed this often, so watches restart (and
 * writes that failed are retried) within about this long of it answering again, however
 * far their backoff had grown.
 */
const API_PROBE_MS = 500;
/** A watch down this long makes /readyz fail; shorter gaps are the normal reconnects every 5-10 minutes. */
const WATCH_DOWN_UNREADY_MS = 5_000;

export interface AgentOptions {
  config: AgentConfig;
  /** Plans with nodeFamilies.enabled. */
  redirectConfig: ValidatedNodeConfig;
  iptablesMode: IptablesMode;
  nodeFamilies: NodeFamilies;
  log: Logger;
  /** Default: KUBECONFIG, ~/.kube/config, or in-cluster. */
  credentials?: KubeCredentials;
}

export class Agent {
  readonly metrics: AgentMetrics;
  readonly #options: AgentOptions;
  readonly #pods: ResourceInformer<V1Pod>;
  readonly #namespaces: ResourceInformer<CachedNamespace>;
  readonly #queue: WorkQueue;
  readonly #reconciler: Reconciler;
  readonly #events: EventRecorder;
  readonly #finder: NetnsFinder;
  readonly #client: KubeClient;
  readonly #watcher: SandboxWatcher;
  /** Pods whose last pass failed for want of an answer from the API: retried the moment it answers. */
  readonly #waitingForApi = new Set<string>();
  /** When each watch went down; absent while it is up. */
  readonly #watchDownSince = new Map<'pods' | 'namespaces', number>();
  readonly #timers: NodeJS.Timeout[] = [];
  #probing = false;
  #http: HttpServer | undefined;
  #ready = false;
  #stopping = false;

  constructor(options: AgentOptions) {
    this.#options = options;
    const { config, log } = options;
    const client = new KubeClient(options.credentials ?? loadCredentials());
    this.#client = client;
    this.metrics = createMetrics();
    const metrics = this.metrics;
    setNodeFamilies(metrics, options.nodeFamilies);
    this.#finder = new NetnsFinder({ procRoot: config.procRoot, ownPodUid: config.podUid || undefined });
    this.#events = new EventRecorder(client, config.nodeName, log);
    this.#watcher = new SandboxWatcher({ finder: this.#finder, onFound: (uid) => this.#queue.add(uid) });

    this.#namespaces = createNamespaceInformer(client, NAMESPACE_KEYS, {
      onAdd: (ns) => this.#namespaceChanged(ns),
      onUpdate: (ns) => this.#namespaceChanged(ns),
      onRequest: () => metrics.watchRequests.inc({ resource: 'namespaces' }),
      onRestart: (error, delayMs) => this.#watchRestart('namespaces', error, delayMs),
      onWatching: (up) => this.#watchState('namespaces', up),
    });
    this.#pods = createPodInformer(client, config.nodeName, {
      onAdd: (pod) => this.#podChanged(pod),
      onUpdate: (pod) => this.#podChanged(pod),
      onDelete: (pod) => this.#podDeleted(pod),
      onRequest: () => metrics.watchRequests.inc({ resource: 'pods' }),
      onRestart: (error, delayMs) => this.#watchRestart('pods', error, delayMs),
      onWatching: (up) => this.#watchState('pods', up),
    });
    this.#watchDownSince.set('pods', performance.now());
    this.#watchDownSince.set('namespaces', performance.now());
    client.onReachable(() => this.#apiAnswers());
    this.#reconciler = new Reconciler({
      config,
      redirectConfig: options.redirectConfig,
      iptablesMode: options.iptablesMode,
      nodeFamilies: options.nodeFamilies,
      getPod: (uid) => this.#pods.get(uid),
      getNamespaceAnnotations: (namespace) => {
        const ns = this.#namespaces.get(namespace);
        return ns ? (ns.metadata?.annotations ?? {}) : undefined;
      },
      getNamespaceLabels: (namespace) => {
        const ns = this.#namespaces.get(namespace);
        return ns ? (ns.metadata?.labels ?? {}) : undefined;
      },
      finder: this.#finder,
      watcher: this.#watcher,
      writer: new PodStatusWriter(client),
      events: this.#events,
      metrics,
      log,
    });
    this.#queue = new WorkQueue({
      concurrency: config.concurrency,
      handler: (uid, _attempt, queuedAt) => this.#reconciler.reconcile(uid, queuedAt),
      onError: (uid, error) => {
        metrics.podResults.inc({ outcome: 'error' });
        if (isConnectionError(error)) this.#waitingForApi.add(uid);
        const where = this.#pods.get(uid)?.metadata;
        const message = error instanceof Error ? error.message : String(error);
        log.warn({ namespace: where?.namespace, pod: where?.name, uid, error: message.slice(0, 1000) }, 'reconcile failed; will retry');
      },
      onDepthChange: (depth) => metrics.queueDepth.set(depth),
    });
  }

  get httpPort(): number | undefined {
    return this.#http?.port;
  }

  /** Serves HTTP at once, then lists namespaces and pods; resolves when ready. */
  async start(): Promise<void> {
    const { config, log } = this.#options;
    this.#http = await startHttpServer(config.httpAddress, config.httpPort, this.metrics.registry, {
      healthy: () => !this.#stopping,
      notReady: () => this.#notReady(),
      details: () => describeNodeFamilies(this.#options.nodeFamilies),
    });
    log.info(
      {
        address: config.httpAddress || 'every address',
        port: this.#http.port,
        iptablesMode: this.#options.iptablesMode,
        cgroupNamespace: this.#finder.cgroupView.kind,
      },
      'serving /healthz /readyz /metrics',
    );
    // Namespaces first: pods that opt in through their namespace need it to be known.
    await this.#namespaces.start();
    await this.#pods.start();
    // A list that failed at start is retried in the background; readiness waits for it.
    while (!(this.#namespaces.synced && this.#pods.synced)) {
      if (this.#stopping) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    this.#ready = true;
    log.info({ pods: this.#pods.size }, 'ready');
    this.#timers.push(
      setInterval(() => void this.#probeApi(), API_PROBE_MS),
      setInterval(() => {
        for (const uid of this.#reconciler.podsWithChangedSandbox()) this.#queue.add(uid);
      }, SANDBOX_CHECK_MS),
      setInterval(() => {
        for (const uid of this.#pods.keys()) this.#queue.add(uid);
      }, RESYNC_MS),
    );
  }

  /** SIGTERM: stop watching, finish what is in flight, flush Events, close HTTP. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#ready = false;
    for (const timer of this.#timers) clearInterval(timer);
    this.#watcher.stop();
    await Promise.all([this.#pods.stop(), this.#namespaces.stop()]);
    await this.#queue.drain();
    await this.#events.flush();
    await this.#http?.close();
    this.#client.close();
  }

  #podChanged(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (!uid || this.#stopping) return;
    this.#reconciler.observe(uid, pod.metadata?.resourceVersion);
    this.#queue.add(uid);
  }

  #podDeleted(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (!uid) return;
    this.#waitingForApi.delete(uid);
    this.#queue.forget(uid);
    this.#reconciler.forget(uid);
    this.#finder.forget(uid);
    this.#events.forget(uid);
  }

  #namespaceChanged(ns: CachedNamespace): void {
    const name = ns.metadata?.name;
    if (!name || this.#stopping) return;
    // Opting a namespace in (or out) concerns its pods on this node; rare enough to just look again.
    for (const pod of this.#pods.list(name)) this.#podChanged(pod);
  }

  #watchRestart(resource: 'pods' | 'namespaces', error: unknown, delayMs: number): void {
    this.metrics.watchRestarts.inc({ resource });
    const message = error instanceof Error ? error.message : String(error);
    const since = this.#watchDownSince.get(resource);
    const downMs = since === undefined ? 0 : Math.round(performance.now() - since);
    this.#options.log.warn({ resource, delayMs, downMs, error: message.slice(0, 500) }, 'list/watch failed; restarting');
  }

  #watchState(resource: 'pods' | 'namespaces', up: boolean): void {
    this.metrics.watchUp.set({ resource }, up ? 1 : 0);
    if (!up) {
      if (!this.#stopping) this.#watchDownSince.set(resource, performance.now());
      return;
    }
    const since = this.#watchDownSince.get(resource);
    this.#watchDownSince.delete(resource);
    // Reconnects after the server's watch timeout are routine; say so only after a real gap.
    if (this.#ready && since !== undefined && performance.now() - since >= WATCH_DOWN_UNREADY_MS) {
      this.#options.log.info({ resource, downMs: Math.round(performance.now() - since) }, 'watching again');
    }
  }

  #notReady(): string | undefined {
    if (!this.#ready) return 'initial lists not synced';
    const now = performance.now();
    for (const [resource, since] of this.#watchDownSince) {
      if (now - since < WATCH_DOWN_UNREADY_MS) continue;
      const informer = resource === 'pods' ? this.#pods : this.#namespaces;
      const error = informer.lastError instanceof Error ? `: ${informer.lastError.message.slice(0, 300)}` : '';
      return `${resource} watch down for ${Math.round((now - since) / 1000)} s${error}`;
    }
    return undefined;
  }

  /** While the API server does not answer, a cheap request every API_PROBE_MS notices the moment it does. */
  async #probeApi(): Promise<void> {
    if (this.#probing || this.#stopping) return;
    const unreachable = !this.#client.reachable || this.#pods.disconnected || this.#namespaces.disconnected;
    if (!unreachable) return;
    this.#probing = true;
    try {
      // An answer marks the client reachable, which calls #apiAnswers; the informers need the nudge either way.
      if (await this.#client.probe()) this.#apiAnswers();
    } finally {
      this.#probing = false;
    }
  }

  /** The API server answers again: restart watches now and retry what failed for want of it. */
  #apiAnswers(): void {
    if (this.#stopping) return;
    const restarted = [this.#pods, this.#namespaces].filter((informer) => informer.retryNow()).length;
    const retried = this.#waitingForApi.size;
    for (const uid of this.#waitingForApi) this.#queue.add(uid);
    this.#waitingForApi.clear();
    if (restarted > 0 || retried > 0) this.#options.log.info({ watchesRestarted: restarted, podsRetried: retried }, 'API server answers again');
  }
}
