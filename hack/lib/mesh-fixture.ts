// What a simulated node needs around the agent (end-to-end tests, demo --simulated,
// bench:controller): namespaces, pods with simulated sandboxes on one node, the pods' marks
// and Events, and a cleanup that removes all of it (sandboxes first, so no netns or pause process outlives a failure).
import { CoreV1Api, EventsV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { EventsV1Event, KubeConfig, V1Pod } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { parseMark, STATUS_ANNOTATION } from '../../controller/src/pod-contract/index.ts';
import type { Mark } from '../../controller/src/pod-contract/index.ts';
import { createNamespace, deleteNamespace, ensureNode, podEvents, waitForPodEvent } from './kube-objects.ts';
import { createPodSandbox } from './pod-sandbox.ts';
import type { PodSandbox } from './pod-sandbox.ts';
import { pollUntil } from './poll.ts';

export interface PodHandle {
  namespace: string;
  name: string;
  uid: string;
  /** The pod as the apiserver returned it on create. */
  pod: V1Pod;
  sandbox?: PodSandbox;
}

export interface CreatePodOptions {
  /** Create a simulated sandbox for the pod right after it exists (default true). */
  sandbox?: boolean;
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export function uniqueSuffix(): string {
  return `${process.pid}-${randomBytes(3).toString('hex')}`;
}

export class MeshFixture {
  readonly core: CoreV1Api;
  readonly events: EventsV1Api;
  readonly kc: KubeConfig;
  readonly nodeName: string;
  private readonly namespaces: string[] = [];
  private readonly pods: PodHandle[] = [];
  private nodeCreated = false;

  constructor(kc: KubeConfig, nodeName: string) {
    this.kc = kc;
    this.nodeName = nodeName;
    this.core = kc.makeApiClient(CoreV1Api);
    this.events = kc.makeApiClient(EventsV1Api);
  }

  /** The Node object of this fixture's simulated node (no kubelet behind it); cleanup deletes it. */
  async createNode(): Promise<void> {
    await ensureNode(this.kc, this.nodeName);
    this.nodeCreated = true;
  }

  /** A new namespace (deleted by cleanup) with a `default` ServiceAccount, so pods are admitted without kube-controller-manager. */
  async namespace(prefix: string, annotations: Record<string, string> = {}): Promise<string> {
    const name = `${prefix}-${uniqueSuffix()}`.slice(0, 63);
    // Recorded first, so cleanup removes it even when its ServiceAccount could not be made.
    this.namespaces.push(name);
    return createNamespace(this.kc, name, { annotations });
  }

  async createPod(namespace: string, manifest: V1Pod, options: CreatePodOptions = {}): Promise<PodHandle> {
    const pod = await this.core.createNamespacedPod({ namespace, body: manifest });
    const handle: PodHandle = { namespace, name: pod.metadata!.name!, uid: pod.metadata!.uid!, pod };
    this.pods.push(handle);
    if (options.sandbox ?? true) await this.addSandbox(handle);
    return handle;
  }

  /** Starts the simulated sandbox (netns + pause process in the pod's cgroup) of an existing pod. */
  async addSandbox(handle: PodHandle): Promise<PodSandbox> {
    handle.sandbox = await createPodSandbox(handle.pod, { kc: this.kc });
    return handle.sandbox;
  }

  async readPod(handle: PodHandle): Promise<V1Pod> {
    return this.core.readNamespacedPod({ namespace: handle.namespace, name: handle.name });
  }

  async readMark(handle: PodHandle): Promise<Mark | undefined> {
    const text = (await this.readPod(handle)).metadata?.annotations?.[STATUS_ANNOTATION];
    return text === undefined ? undefined : parseMark(text);
  }

  /** Polls the pod until its mark satisfies `accept`; the error shows the last mark seen. */
  async waitForMark(handle: PodHandle, accept: (mark: Mark) => boolean, timeoutMs = 20_000, intervalMs?: number): Promise<Mark> {
    let last: Mark | undefined;
    await pollUntil(
      async () => {
        last = await this.readMark(handle);
        return last !== undefined && accept(last);
      },
      timeoutMs,
      () => `pod ${handle.namespace}/${handle.name}: no accepted mark within ${timeoutMs} ms; last mark: ${JSON.stringify(last)}`,
      intervalMs,
    );
    return last as Mark;
  }

  async waitForInitialized(handle: PodHandle, timeoutMs?: number, intervalMs?: number): Promise<Mark> {
    return this.waitForMark(handle, (mark) => mark.state === 'initialized' && mark.netns === handle.sandbox?.netnsInode, timeoutMs, intervalMs);
  }

  /** events.k8s.io Events about this pod (by UID, so a recreated pod of the same name does not count). */
  podEvents(handle: PodHandle): Promise<EventsV1Event[]> {
    return podEvents(this.events, handle);
  }

  waitForEvent(handle: PodHandle, reason: string, timeoutMs = 20_000): Promise<EventsV1Event> {
    return waitForPodEvent(this.events, handle, reason, timeoutMs);
  }

  /** A JSON merge patch of the pod's annotations, as an admin with kubectl would do it (null removes a key). */
  async annotate(handle: PodHandle, annotations: Record<string, string | null>): Promise<V1Pod> {
    return this.core.patchNamespacedPod({ namespace: handle.namespace, name: handle.name, body: { metadata: { annotations } } }, mergePatch);
  }

  /** Deletes the pod at once (grace 0): there is no kubelet to confirm a graceful deletion. */
  async deletePod(handle: PodHandle): Promise<void> {
    await this.core.deleteNamespacedPod({ namespace: handle.namespace, name: handle.name, gracePeriodSeconds: 0 }).catch((error: unknown) => {
      if ((error as { code?: number }).code !== 404) throw error;
    });
  }

  /** Removes every sandbox, pod and namespace this fixture made; keeps going past failures and reports them all. */
  async cleanup(): Promise<void> {
    const failures: unknown[] = [];
    const settle = async (work: Promise<unknown>[]) => {
      for (const result of await Promise.allSettled(work)) if (result.status === 'rejected') failures.push(result.reason);
    };
    await settle(this.pods.map((handle) => handle.sandbox?.destroy() ?? Promise.resolve()));
    await settle(this.pods.map((handle) => this.deletePod(handle)));
    await settle(this.namespaces.map((name) => deleteNamespace(this.kc, name)));
    if (this.nodeCreated) {
      await settle([
        this.core.deleteNode({ name: this.nodeName }).catch((error: unknown) => {
          if ((error as { code?: number }).code !== 404) throw error;
        }),
      ]);
      this.nodeCreated = false;
    }
    this.pods.length = 0;
    this.namespaces.length = 0;
    if (failures.length > 0) throw new AggregateError(failures, `cleanup failed ${failures.length} time(s): ${failures.map(String).join('; ')}`);
  }
}
