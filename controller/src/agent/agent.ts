// Wiring: informers -> work queue -> reconciler, plus the HTTP server, the sandbox
// liveness check, a periodic resync and the SIGTERM drain.
import type { V1Namespace, V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { IptablesMode, NodeRedirectConfig } from '../redirect/index.ts';
import type { AgentConfig } from './config.ts';
import { EventRecorder } from '../kube/event-recorder.ts';
import { type HttpServer, startHttpServer } from './http-server.ts';
import { KubeClient } from '../kube/kube-client.ts';
import { type KubeCredentials, loadCredentials } from '../kube/kubeconfig.ts';
import { type AgentMetrics, createMetrics } from './metrics.ts';
import { createNamespaceInformer } from '../kube/namespace-informer.ts';
import { NetnsFinder } from './netns-finder.ts';
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

export interface AgentOptions {
  config: AgentConfig;
  redirectConfig: NodeRedirectConfig;
  iptablesMode: IptablesMode;
  log: Logger;
  /** Default: KUBECONFIG, ~/.kube/config, or in-cluster. */
  credentials?: KubeCredentials;
}

export class Agent {
  readonly metrics: AgentMetrics;
  readonly #options: AgentOptions;
  readonly #pods: ResourceInformer<V1Pod>;
  readonly #namespaces: ResourceInformer<V1Namespace>;
  readonly #queue: WorkQueue;
  readonly #reconciler: Reconciler;
  readonly #events: EventRecorder;
  readonly #finder: NetnsFinder;
  readonly #client: KubeClient;
  readonly #watcher: SandboxWatcher;
  /** uid -> namespace/name, to find a queued pod in the informer cache. */
  readonly #podNames = new Map<string, { namespace: string; name: string }>();
  readonly #timers: NodeJS.Timeout[] = [];
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
    this.#finder = new NetnsFinder({ procRoot: config.procRoot });
    this.#events = new EventRecorder(client, config.nodeName, log);
    this.#watcher = new SandboxWatcher({ finder: this.#finder, onFound: (uid) => this.#queue.add(uid) });

    this.#namespaces = createNamespaceInformer(client, {
      onAdd: (ns) => this.#namespaceChanged(ns),
      onUpdate: (ns) => this.#namespaceChanged(ns),
      onRequest: () => metrics.watchRequests.inc({ resource: 'namespaces' }),
      onRestart: (error, delayMs) => this.#watchRestart('namespaces', error, delayMs),
    });
    this.#pods = createPodInformer(client, config.nodeName, {
      onAdd: (pod) => this.#podChanged(pod),
      onUpdate: (pod) => this.#podChanged(pod),
      onDelete: (pod) => this.#podDeleted(pod),
      onRequest: () => metrics.watchRequests.inc({ resource: 'pods' }),
      onRestart: (error, delayMs) => this.#watchRestart('pods', error, delayMs),
    });
    this.#reconciler = new Reconciler({
      config,
      redirectConfig: options.redirectConfig,
      iptablesMode: options.iptablesMode,
      getPod: (uid) => this.#podByUid(uid),
      getNamespaceAnnotations: (namespace) => {
        const ns = this.#namespaces.get(namespace);
        return ns ? (ns.metadata?.annotations ?? {}) : undefined;
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
      handler: (uid) => this.#reconciler.reconcile(uid),
      onError: (uid, error) => {
        metrics.podResults.inc({ outcome: 'error' });
        const where = this.#podNames.get(uid);
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
      ready: () => this.#ready,
    });
    log.info({ address: config.httpAddress, port: this.#http.port, iptablesMode: this.#options.iptablesMode }, 'serving /healthz /readyz /metrics');
    // Namespaces first: pods that opt in through their namespace need it to be known.
    await this.#namespaces.start();
    await this.#pods.start();
    // A list that failed at start is retried in the background; readiness waits for it.
    while (!(this.#namespaces.synced && this.#pods.synced)) {
      if (this.#stopping) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    this.#ready = true;
    log.info({ pods: this.#podNames.size }, 'ready');
    this.#timers.push(
      setInterval(() => {
        for (const uid of this.#reconciler.podsWithChangedSandbox()) this.#queue.add(uid);
      }, SANDBOX_CHECK_MS),
      setInterval(() => {
        for (const uid of this.#podNames.keys()) this.#queue.add(uid);
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
    this.#podNames.set(uid, { namespace: pod.metadata!.namespace!, name: pod.metadata!.name! });
    this.#reconciler.observe(uid, pod.metadata?.resourceVersion);
    this.#queue.add(uid);
  }

  #podDeleted(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (!uid) return;
    this.#podNames.delete(uid);
    this.#queue.forget(uid);
    this.#reconciler.forget(uid);
    this.#finder.forget(uid);
    this.#events.forget(uid);
  }

  #podByUid(uid: string): V1Pod | undefined {
    const where = this.#podNames.get(uid);
    if (!where) return undefined;
    const pod = this.#pods.get(where.name, where.namespace);
    return pod?.metadata?.uid === uid ? pod : undefined;
  }

  #namespaceChanged(ns: V1Namespace): void {
    const name = ns.metadata?.name;
    if (!name || this.#stopping) return;
    // Opting a namespace in (or out) concerns its pods on this node; rare enough to just look again.
    for (const pod of this.#pods.list(name)) this.#podChanged(pod);
  }

  #watchRestart(resource: 'pods' | 'namespaces', error: unknown, delayMs: number): void {
    this.metrics.watchRestarts.inc({ resource });
    const message = error instanceof Error ? error.message : String(error);
    this.#options.log.warn({ resource, delayMs, error: message.slice(0, 500) }, 'list/watch failed; restarting');
  }
}
