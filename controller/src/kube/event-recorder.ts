// Kubernetes Events (events.k8s.io/v1) about pods. A repeat of the same reason and note
// for the same pod does not create a new Event: it bumps the first one's series (count
// and lastObservedTime) with a merge patch (an Event's note is immutable, so a new note
// is a new Event). Best effort: a failed Event is logged, never fails the pod's reconcile.
// An Event given its own name is created at most once: its name is derived from what it
// reports (a mark), so recording it again after a restart finds it already there (409).
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { cutUtf8 } from '../pod-contract/index.ts';
import { KubeApiError, type KubeClient } from './kube-client.ts';
import type { PodRef } from './pod-status-writer.ts';

const REPORTING_CONTROLLER = 'pod-network-controller.io/controller';

/** The API server refuses an Event whose note is longer (it counts UTF-8 bytes). */
export const EVENT_NOTE_MAX_BYTES = 1024;

export type EventReason =
  | 'Initialized'
  | 'Reinitialized'
  | 'Repaired'
  | 'InvalidAnnotation'
  | 'ProxyIdentityRefused'
  | 'RedirectBypassPossible'
  | 'FamilyUnavailable'
  | 'RedirectFailed'
  | 'SandboxNotFound'
  | 'MarkWriteFailed'
  | 'IptablesLockTimeout';

const WARNINGS: ReadonlySet<EventReason> = new Set([
  'InvalidAnnotation',
  'ProxyIdentityRefused',
  'RedirectBypassPossible',
  'FamilyUnavailable',
  'RedirectFailed',
  'SandboxNotFound',
  'MarkWriteFailed',
  'IptablesLockTimeout',
]);
const ACTIONS: Record<EventReason, string> = {
  Initialized: 'ProgramRedirect',
  Reinitialized: 'ProgramRedirect',
  Repaired: 'ProgramRedirect',
  InvalidAnnotation: 'PlanRedirect',
  ProxyIdentityRefused: 'CheckProxyIdentity',
  RedirectBypassPossible: 'AuditBypass',
  FamilyUnavailable: 'CheckFamilies',
  RedirectFailed: 'ProgramRedirect',
  SandboxNotFound: 'FindSandbox',
  MarkWriteFailed: 'WriteMark',
  IptablesLockTimeout: 'ProgramRedirect',
};

interface SeriesState {
  name: string;
  note: string;
  count: number;
}

export class EventRecorder {
  readonly #client: KubeClient;
  readonly #instance: string;
  readonly #log: Logger;
  /** `${uid}/${reason}` -> the Event repeats go to. Forgotten with the pod. */
  readonly #series = new Map<string, SeriesState>();
  readonly #inFlight = new Set<Promise<void>>();

  constructor(client: KubeClient, nodeName: string, log: Logger) {
    this.#client = client;
    this.#instance = nodeName;
    this.#log = log;
  }

  /** `name`: an Event name of its own (see eventNameFor): created once, never a series. */
  record(pod: PodRef, reason: EventReason, note: string, name?: string): void {
    const promise = this.#send(pod, reason, cutUtf8(note, EVENT_NOTE_MAX_BYTES), name).catch((error: unknown) => {
      const message = error instanceof Error ? error.message : String(error);
      this.#log.warn({ namespace: pod.namespace, pod: pod.name, uid: pod.uid, reason, error: message.slice(0, 500) }, 'could not record event');
    });
    this.#inFlight.add(promise);
    void promise.finally(() => this.#inFlight.delete(promise));
  }

  forget(uid: string): void {
    for (const key of this.#series.keys()) if (key.startsWith(`${uid}/`)) this.#series.delete(key);
  }

  /** Waits for Events being sent (shutdown). */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.#inFlight]);
  }

  async #send(pod: PodRef, reason: EventReason, note: string, ownName?: string): Promise<void> {
    const key = `${pod.uid}/${reason}`;
    const now = microTime(new Date());
    const events = `/apis/events.k8s.io/v1/namespaces/${encodeURIComponent(pod.namespace)}/events`;
    const existing = ownName === undefined ? this.#series.get(key) : undefined;
    if (existing?.note === note) {
      existing.count++;
      const series = { series: { count: existing.count, lastObservedTime: now } };
      await this.#client.request('PATCH', `${events}/${encodeURIComponent(existing.name)}`, series, 'application/merge-patch+json');
      return;
    }
    // Kubelet-style name: the pod's name and a hex timestamp, unique enough per pod.
    const name = ownName ?? `${pod.name.slice(0, 200)}.${(Date.now() * 1000 + Math.floor(Math.random() * 1000)).toString(16)}`;
    if (ownName === undefined) this.#series.set(key, { name, note, count: 1 });
    try {
      await this.#client.request('POST', events, {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        metadata: { name, namespace: pod.namespace },
        eventTime: now,
        reportingController: REPORTING_CONTROLLER,
        reportingInstance: this.#instance,
        action: ACTIONS[reason],
        reason,
        type: WARNINGS.has(reason) ? 'Warning' : 'Normal',
        note,
        regarding: { apiVersion: 'v1', kind: 'Pod', namespace: pod.namespace, name: pod.name, uid: pod.uid },
      });
    } catch (error) {
      if (ownName !== undefined && error instanceof KubeApiError && error.status === 409) return; // recorded before
      if (ownName === undefined) this.#series.delete(key); // the next repeat creates it afresh
      throw error;
    }
  }
}

/** The name of the one Event about `what` (e.g. a mark's timestamp) for this pod: same inputs, same name. */
export function eventNameFor(pod: PodRef, what: string): string {
  return `${pod.name.slice(0, 200)}.${createHash('sha256').update(`${pod.uid}/${what}`).digest('hex').slice(0, 16)}`;
}

/** events.k8s.io wants MicroTime: RFC 3339 with exactly six fractional digits. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/Z$/, '000Z');
}
