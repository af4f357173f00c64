// The informer's risky paths against a scripted transport: no apiserver, no root. Each
// list or watch request takes the next step of the script; a watch step is a function
// that plays events into the stream and then ends it, fails it, or holds it open.
import { afterEach, describe, expect, it } from 'vitest';
import { KubeApiError, type ListWatchTransport, type WatchEvent, type WatchHandlers } from '../../controller/src/kube/kube-client.ts';
import type { ListHead } from '../../controller/src/kube/list-stream.ts';
import { ResourceInformer } from '../../controller/src/kube/resource-informer.ts';
import { type CachedNamespace, createNamespaceInformer } from '../../controller/src/kube/namespace-informer.ts';

interface Obj {
  metadata: { name: string; namespace?: string; uid: string; resourceVersion: string };
  spec?: { big?: string };
}

const obj = (name: string, uid: string, rv: string, namespace = 'ns'): Obj => ({ metadata: { name, namespace, uid, resourceVersion: rv } });

/** `continue`: the token of the next page (absent on the last page). */
type ListStep = { items: Obj[]; rv: string; continue?: string } | Error;
interface Stream {
  emit(event: WatchEvent<Obj>): void;
  end(): void;
  fail(error: Error): void;
  signal: AbortSignal;
}
type WatchStep = ((stream: Stream) => void) | Error;

class ScriptedTransport implements ListWatchTransport {
  readonly requests: string[] = [];
  /** The Accept header of each request ('' for the default). */
  readonly accepts: string[] = [];
  readonly lists: ListStep[] = [];
  readonly watches: WatchStep[] = [];
  /** Resolves when the request with this index (0-based, lists and watches together) starts. */
  readonly #waiters = new Map<number, () => void>();

  requested(count: number): Promise<void> {
    if (this.requests.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.set(count, resolve));
  }

  #note(path: string): void {
    this.requests.push(path);
    this.#waiters.get(this.requests.length)?.();
  }

  list<T>(path: string, onItem: (item: T) => void, accept = ''): Promise<ListHead> {
    this.accepts.push(accept);
    this.#note(`LIST ${path}`);
    const step = this.lists.shift();
    if (!step) return new Promise(() => {}); // nothing scripted: hang
    if (step instanceof Error) return Promise.reject(step);
    try {
      for (const item of step.items) onItem(item as T);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    return Promise.resolve({ metadata: { resourceVersion: step.rv, ...(step.continue ? { continue: step.continue } : {}) } });
  }

  watch<T>(path: string, handlers: WatchHandlers<T>, signal: AbortSignal, accept = ''): Promise<void> {
    this.accepts.push(accept);
    this.#note(`WATCH ${path}`);
    const step = this.watches.shift();
    if (step instanceof Error) return Promise.reject(step);
    return new Promise<void>((resolve, reject) => {
      signal.addEventListener('abort', () => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted')));
      handlers.onOpen?.();
      if (!step) return; // hold open until aborted
      step({
        emit: (event) => {
          try {
            handlers.onEvent(event as unknown as WatchEvent<T>);
          } catch (error) {
            reject(error as Error);
          }
        },
        end: resolve,
        fail: reject,
        signal,
      });
    });
  }
}

const connectionRefused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { code: 'ECONNREFUSED' });
const until = async (check: () => boolean, what: string, timeoutMs = 2_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

describe('ResourceInformer with a scripted transport', () => {
  const informers: ResourceInformer<Obj>[] = [];
  afterEach(async () => {
    await Promise.all(informers.splice(0).map((informer) => informer.stop()));
  });

  function make(transport: ScriptedTransport, extra: Partial<ConstructorParameters<typeof ResourceInformer<Obj>>[0]> = {}) {
    const log: string[] = [];
    const restarts: { error: unknown; delayMs: number }[] = [];
    const informer = new ResourceInformer<Obj>({
      transport,
      path: '/api/v1/pods',
      keyBy: 'uid',
      backoff: { initialMs: 20, maxMs: 20, factor: 1, jitter: 0 },
      handlers: {
        onAdd: (o) => log.push(`add ${o.metadata.name} ${o.metadata.resourceVersion}`),
        onUpdate: (o) => log.push(`update ${o.metadata.name} ${o.metadata.resourceVersion}`),
        onDelete: (o) => log.push(`delete ${o.metadata.name}`),
        onRestart: (error, delayMs) => restarts.push({ error, delayMs }),
      },
      ...extra,
    });
    informers.push(informer);
    return { informer, log, restarts };
  }

  it('lists, then watches from the list resourceVersion; indexes by UID', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push({ items: [obj('a', 'u1', '5')], rv: '10' });
    transport.watches.push((s) => s.emit({ type: 'ADDED', object: obj('b', 'u2', '11') }));
    const { informer, log } = make(transport);
    await informer.start();
    await until(() => log.length === 2, 'watch event applied');
    expect(log).toEqual(['add a 5', 'add b 11']);
    expect(transport.requests[1]).toMatch(/^WATCH \/api\/v1\/pods\?watch=1&resourceVersion=10&allowWatchBookmarks=true/);
    expect(informer.get('u2')?.metadata.name).toBe('b');
    expect(informer.synced).toBe(true);
    expect(informer.watching).toBe(true);
  });

  it('a pod recreated under the same name while disconnected is a delete and an add, not an update', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push({ items: [obj('a', 'old', '5')], rv: '10' }, { items: [obj('a', 'new', '20')], rv: '21' });
    transport.watches.push((s) => s.emit({ type: 'ERROR', object: { code: 410, reason: 'Expired' } as unknown as Obj }));
    const { informer, log } = make(transport);
    await informer.start();
    await until(() => log.length === 3, 'relist applied');
    expect(log).toEqual(['add a 5', 'add a 20', 'delete a']);
    expect(informer.get('old')).toBeUndefined();
    expect(informer.get('new')?.metadata.resourceVersion).toBe('20');
  });

  it('relists at once on 410 (an ERROR event or an HTTP 410), without backoff, and reports deletes missed meanwhile', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push(
      { items: [obj('a', 'u1', '5'), obj('b', 'u2', '6')], rv: '10' },
      { items: [obj('a', 'u1', '30')], rv: '31' },
      { items: [obj('a', 'u1', '30')], rv: '40' },
    );
    transport.watches.push(
      (s) => s.emit({ type: 'ERROR', object: { code: 410 } as unknown as Obj }),
      new KubeApiError('GET', '/api/v1/pods', 410, '{"reason":"Expired"}'),
    );
    const { informer, log, restarts } = make(transport, { backoff: { initialMs: 60_000, maxMs: 60_000, factor: 1, jitter: 0 } });
    await informer.start();
    await transport.requested(6);
    expect(transport.requests.map((r) => r.split(' ')[0])).toEqual(['LIST', 'WATCH', 'LIST', 'WATCH', 'LIST', 'WATCH']);
    expect(log).toEqual(['add a 5', 'add b 6', 'update a 30', 'delete b', 'update a 30']);
    expect(restarts).toEqual([]);
    expect(transport.requests[5]).toContain('resourceVersion=40');
  });

  it('an ERROR event other than 410 restarts the watch with backoff from the last resourceVersion', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push({ items: [], rv: '10' });
    transport.watches.push((s) => {
      s.emit({ type: 'ADDED', object: obj('a', 'u1', '12') });
      s.emit({ type: 'ERROR', object: { code: 500, message: 'internal' } as unknown as Obj });
    });
    const { informer, restarts } = make(transport);
    await informer.start();
    await transport.requested(3);
    expect(restarts).toHaveLength(1);
    expect(String(restarts[0]!.error)).toContain('error event {"code":500');
    expect(transport.requests[2]).toMatch(/^WATCH .*resourceVersion=12&/);
  });

  it('bookmarks move the resourceVersion without touching the cache', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push({ items: [obj('a', 'u1', '5')], rv: '10' });
    transport.watches.push((s) => {
      s.emit({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '99' } } as unknown as Obj });
      s.end();
    });
    const { informer, log } = make(transport, { minWatchMs: 0 });
    await informer.start();
    await transport.requested(3);
    expect(log).toEqual(['add a 5']);
    expect(transport.requests[2]).toContain('resourceVersion=99');
  });

  it('the idle watchdog ends a watch that goes silent and resumes it', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push({ items: [], rv: '10' });
    transport.watches.push(() => {}); // opens, then nothing: no event, no bookmark, no end
    const { informer, restarts } = make(transport, { watchIdleMs: 50 });
    await informer.start();
    await transport.requested(3);
    expect(String(restarts[0]!.error)).toContain('no event or bookmark for 0.05 s');
    expect(transport.requests[2]).toMatch(/^WATCH .*resourceVersion=10&/);
  });

  it('the spin guard: a watch closed at once with no event counts as a failure and backs off', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push({ items: [], rv: '10' });
    for (let i = 0; i < 5; i++) transport.watches.push((s) => s.end());
    const { informer, restarts } = make(transport, { backoff: { initialMs: 40, maxMs: 40, factor: 1, jitter: 0 } });
    const startedAt = performance.now();
    await informer.start();
    await transport.requested(4);
    // Three watches closed at once: two restarts, each after the 40 ms backoff.
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(75);
    expect(restarts.map((r) => String(r.error))).toEqual(expect.arrayContaining([expect.stringContaining('closed at once by the server')]));
    expect(restarts.every((r) => r.delayMs === 40)).toBe(true);
    // The server is up and closing watches: an answering API server must not cut the backoff short.
    expect(informer.disconnected).toBe(false);
    expect(informer.retryNow()).toBe(false);
  });

  it('a 429 waits at least its Retry-After, longer than the backoff', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push(new KubeApiError('GET', '/api/v1/pods', 429, '{"reason":"TooManyRequests"}', '2'), { items: [], rv: '10' });
    const { informer, restarts } = make(transport);
    await informer.start();
    expect(restarts).toHaveLength(1);
    expect(restarts[0]!.delayMs).toBe(2_000);
    expect(informer.synced).toBe(false);
  });

  it('retryNow ends the backoff after a connection failure, and not after an HTTP refusal', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push({ items: [], rv: '10' });
    transport.watches.push(connectionRefused(), new KubeApiError('GET', '/api/v1/pods', 403, '{"reason":"Forbidden"}'));
    const { informer, restarts } = make(transport, { backoff: { initialMs: 60_000, maxMs: 60_000, factor: 1, jitter: 0 } });
    await informer.start();
    await until(() => restarts.length === 1, 'first failure');
    expect(informer.watching).toBe(false);
    expect(String(informer.lastError)).toContain('ECONNREFUSED');
    expect(informer.retryNow()).toBe(true); // the API answers again: no 60 s wait
    await until(() => restarts.length === 2, 'second failure');
    expect(informer.retryNow()).toBe(false); // 403: the server is up and refused; the backoff stands
    expect(transport.requests).toHaveLength(3);
  });

  it('reports the watch going up and down', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push({ items: [], rv: '10' });
    let end!: () => void;
    transport.watches.push((s) => (end = () => s.fail(new Error('connection closed'))));
    const states: boolean[] = [];
    const { informer } = make(transport, { handlers: { onWatching: (up) => states.push(up) } });
    await informer.start();
    await until(() => states.length === 1, 'watch opened');
    end();
    await until(() => states.length === 2, 'watch ended');
    expect(states).toEqual([true, false]);
    expect(informer.watching).toBe(false);
  });

  it('trims objects on ingest, from lists and from watch events', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push({ items: [{ ...obj('a', 'u1', '5'), spec: { big: 'x'.repeat(1000) } }], rv: '10' });
    transport.watches.push((s) => s.emit({ type: 'MODIFIED', object: { ...obj('a', 'u1', '11'), spec: { big: 'y'.repeat(1000) } } }));
    const { informer } = make(transport, { trim: (o) => ({ metadata: o.metadata }) });
    await informer.start();
    await until(() => informer.get('u1')?.metadata.resourceVersion === '11', 'update applied');
    expect(informer.get('u1')).toEqual({ metadata: obj('a', 'u1', '11').metadata });
  });

  it('keyed by name, finds namespaced and cluster-scoped objects', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push({ items: [obj('a', 'u1', '5', 'ns1'), { metadata: { name: 'cluster-wide', uid: 'u2', resourceVersion: '6' } }], rv: '10' });
    const { informer } = make(transport, { keyBy: 'name' });
    await informer.start();
    expect(informer.get('a', 'ns1')?.metadata.uid).toBe('u1');
    expect(informer.get('cluster-wide')?.metadata.uid).toBe('u2');
    expect(informer.list('ns1')).toHaveLength(1);
  });

  it('lists in pages: limit, then each continue token, and watches from the resourceVersion of the pages', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push(
      { items: [obj('a', 'u1', '5'), obj('b', 'u2', '6')], rv: '10', continue: 'token-1' },
      { items: [obj('c', 'u3', '7'), obj('d', 'u4', '8')], rv: '10', continue: 'token-2' },
      { items: [obj('e', 'u5', '9')], rv: '10' },
    );
    const { informer, log } = make(transport, { pageSize: 2 });
    await informer.start();
    await transport.requested(4);
    expect(transport.requests.slice(0, 3)).toEqual([
      'LIST /api/v1/pods?limit=2',
      'LIST /api/v1/pods?limit=2&continue=token-1',
      'LIST /api/v1/pods?limit=2&continue=token-2',
    ]);
    expect(transport.requests[3]).toMatch(/^WATCH \/api\/v1\/pods\?watch=1&resourceVersion=10&/);
    expect(log).toEqual(['add a 5', 'add b 6', 'add c 7', 'add d 8', 'add e 9']);
    expect(informer.size).toBe(5);
    expect(informer.synced).toBe(true);
  });

  it('deletes nothing on a relist that fails halfway through its pages', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push(
      { items: [obj('a', 'u1', '5')], rv: '10' },
      { items: [obj('b', 'u2', '6')], rv: '20', continue: 'token-1' },
      new KubeApiError('GET', '/api/v1/pods', 500, '{"reason":"InternalError"}'),
    );
    transport.watches.push((s) => s.emit({ type: 'ERROR', object: { code: 410 } as unknown as Obj }));
    const { informer, log, restarts } = make(transport, { pageSize: 1, backoff: { initialMs: 60_000, maxMs: 60_000, factor: 1, jitter: 0 } });
    await informer.start();
    await until(() => restarts.length === 1, 'second page failed');
    expect(transport.requests[3]).toBe('LIST /api/v1/pods?limit=1&continue=token-1');
    expect(log).toEqual(['add a 5', 'add b 6']);
    expect(informer.get('u1')).toBeDefined();
  });

  it('a continue token that expired (410) starts the list over at once; what the new list lacks is deleted', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push(
      { items: [obj('a', 'u1', '5'), obj('b', 'u2', '6')], rv: '10', continue: 'token-1' },
      new KubeApiError('GET', '/api/v1/pods', 410, '{"reason":"Expired","message":"The provided continue parameter is too old"}'),
      { items: [obj('a', 'u1', '30'), obj('c', 'u3', '31')], rv: '40', continue: 'token-2' },
      { items: [obj('d', 'u4', '32')], rv: '40' },
    );
    const { informer, log, restarts } = make(transport, { pageSize: 2, backoff: { initialMs: 60_000, maxMs: 60_000, factor: 1, jitter: 0 } });
    await informer.start();
    await transport.requested(5);
    expect(transport.requests).toEqual([
      'LIST /api/v1/pods?limit=2',
      'LIST /api/v1/pods?limit=2&continue=token-1',
      'LIST /api/v1/pods?limit=2',
      'LIST /api/v1/pods?limit=2&continue=token-2',
      expect.stringMatching(/^WATCH \/api\/v1\/pods\?watch=1&resourceVersion=40&/),
    ]);
    expect(restarts).toEqual([]);
    expect(log).toEqual(['add a 5', 'add b 6', 'update a 30', 'add c 31', 'add d 32', 'delete b']);
    expect([...informer.keys()].sort()).toEqual(['u1', 'u3', 'u4']);
  });

  it('pages that keep expiring take the backoff instead of listing again and again', async () => {
    const transport = new ScriptedTransport();
    const expired = () => new KubeApiError('GET', '/api/v1/pods', 410, '{"reason":"Expired"}');
    for (let i = 0; i < 3; i++) transport.lists.push({ items: [obj('a', 'u1', '5')], rv: '10', continue: 'token' }, expired());
    const { informer, restarts } = make(transport, { pageSize: 1, backoff: { initialMs: 60_000, maxMs: 60_000, factor: 1, jitter: 0 } });
    await informer.start();
    expect(transport.requests).toHaveLength(6);
    expect(restarts).toHaveLength(1);
    expect((restarts[0]!.error as KubeApiError).status).toBe(410);
    expect(restarts[0]!.delayMs).toBe(60_000);
    expect(informer.synced).toBe(false);
  });
});

describe('the namespace informer', () => {
  const managedFields = [
    { manager: 'openshift-controller-manager', operation: 'Apply', fieldsV1: { 'f:metadata': { 'f:annotations': { [`f:${'x'.repeat(2000)}`]: {} } } } },
  ];
  const openshiftNamespace = (name: string, rv: string, extra: Record<string, string> = {}) => ({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name,
      uid: `uid-${name}`,
      resourceVersion: rv,
      creationTimestamp: '2026-12-01T00:00:00Z',
      managedFields,
      labels: { 'kubernetes.io/metadata.name': name, 'pod-security.kubernetes.io/audit': 'restricted', 'pod-network-controller.io/bypass-policy': 'strict' },
      annotations: {
        'openshift.io/description': 'a team namespace',
        'openshift.io/requester': 'alice',
        'openshift.io/sa.scc.mcs': 's0:c26,c15',
        'openshift.io/sa.scc.supplemental-groups': '1000680000/10000',
        'openshift.io/sa.scc.uid-range': '1000680000/10000',
        ...extra,
      },
    },
    spec: { finalizers: ['kubernetes'] },
    status: { phase: 'Active' },
  });
  const keep = { labels: ['pod-network-controller.io/bypass-policy'], annotations: ['openshift.io/sa.scc.uid-range', 'pod-network-controller.io/initialize'] };

  it('keeps of each namespace its name and the allow-listed labels and annotations, from lists and watch events; asks for metadata only, in pages', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push(
      { items: [openshiftNamespace('team-a', '5') as unknown as Obj], rv: '10', continue: 'token-1' },
      { items: [{ metadata: { name: 'plain', uid: 'u-plain', resourceVersion: '6' } } as Obj], rv: '10' },
    );
    transport.watches.push((s) =>
      s.emit({ type: 'MODIFIED', object: openshiftNamespace('team-a', '11', { 'pod-network-controller.io/initialize': 'true' }) as unknown as Obj }),
    );
    const added: CachedNamespace[] = [];
    const informer = createNamespaceInformer(transport, keep, { onAdd: (ns) => added.push(ns), onUpdate: (ns) => added.push(ns) }, 1);
    try {
      await informer.start();
      await until(() => added.length === 3, 'watch event applied');
      expect(transport.requests.slice(0, 2)).toEqual(['LIST /api/v1/namespaces?limit=1', 'LIST /api/v1/namespaces?limit=1&continue=token-1']);
      expect(transport.accepts).toEqual([
        'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json',
        'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json',
        'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json',
      ]);
      const teamA = {
        name: 'team-a',
        labels: { 'pod-network-controller.io/bypass-policy': 'strict' },
        annotations: { 'openshift.io/sa.scc.uid-range': '1000680000/10000' },
      };
      expect(added).toEqual([
        { metadata: teamA },
        { metadata: { name: 'plain' } },
        { metadata: { ...teamA, annotations: { ...teamA.annotations, 'pod-network-controller.io/initialize': 'true' } } },
      ]);
      expect(informer.get('team-a')).toBe(added[2]);
    } finally {
      await informer.stop();
    }
  });

  it('tells nothing of a namespace update that changes only what it drops, so no pod is queued again for it', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push({ items: [openshiftNamespace('team-a', '5') as unknown as Obj], rv: '10' });
    transport.watches.push((s) => {
      // OpenShift and controllers touch namespaces all day: another annotation, managedFields.
      s.emit({ type: 'MODIFIED', object: openshiftNamespace('team-a', '11', { 'openshift.io/display-name': 'Team A' }) as unknown as Obj });
      s.emit({ type: 'MODIFIED', object: openshiftNamespace('team-a', '12', { 'pod-network-controller.io/initialize': 'true' }) as unknown as Obj });
    });
    const updates: CachedNamespace[] = [];
    const informer = createNamespaceInformer(transport, keep, { onUpdate: (ns) => updates.push(ns) });
    try {
      await informer.start();
      await until(() => updates.length === 1, 'the second event applied');
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(updates.map((ns) => ns.metadata?.annotations?.['pod-network-controller.io/initialize'])).toEqual(['true']);
    } finally {
      await informer.stop();
    }
  });
});
