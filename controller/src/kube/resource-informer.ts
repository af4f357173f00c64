// List (in pages, when asked), then watch from the list's resourceVersion, keeping a cache
// of the objects: watch bookmarks on (cheap resumption), restart after an error with jittered
// backoff from the last resourceVersion (at least what a 429's Retry-After asks), relist on
// 410 Gone, every LIST page and WATCH counted. "synced" once the first list has landed in
// the cache; "watching" while a watch stream is open. After a connection failure,
// retryNow() ends the backoff: the agent calls it the moment the API server answers again.
import { isDeepStrictEqual } from 'node:util';
import { type BackoffPolicy, WATCH_BACKOFF, backoffDelay } from './backoff.ts';
import { KubeApiError, type ListWatchTransport, type WatchEvent, isConnectionError } from './kube-client.ts';
import type { ListHead } from './list-stream.ts';

export interface KubeObject {
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}

export interface InformerHandlers<T> {
  onAdd?: (object: T) => void;
  onUpdate?: (object: T) => void;
  onDelete?: (object: T) => void;
  onRequest?: (verb: 'list' | 'watch') => void;
  /** A list or watch failed; it restarts after `delayMs`. */
  onRestart?: (error: unknown, delayMs: number) => void;
  /** A watch stream opened (true) or ended (false). */
  onWatching?: (watching: boolean) => void;
}

export interface ResourceInformerOptions<T> {
  transport: ListWatchTransport;
  /** Collection path, e.g. `/api/v1/pods`. */
  path: string;
  fieldSelector?: string;
  /** The cache key: `uid` for objects that can be replaced under the same name (pods). Default `name`. */
  keyBy?: 'uid' | 'name';
  handlers: InformerHandlers<T>;
  /** Ingest hook: keep only what the agent reads (memory scales with the objects cached). */
  trim?: (object: T) => T;
  /**
   * List in pages of this many objects (`limit` and `continue`), so neither the apiserver nor we
   * ever hold one response of the whole collection. Unset: one LIST. Either way each object is
   * parsed and trimmed as it arrives (the transport streams a list item by item).
   */
  pageSize?: number;
  /**
   * Ask for PartialObjectMetadata (metadata only: no spec or status). The Accept header lets a
   * server that cannot serve it answer with the full objects, which `trim` cuts the same way.
   */
  metadataOnly?: boolean;
  backoff?: BackoffPolicy;
  /** Silence this long on an open watch means a dead connection (the apiserver bookmarks about once a minute). */
  watchIdleMs?: number;
  /** A watch that ends this soon with no event counts as a failure (a server closing every watch must not make us spin). */
  minWatchMs?: number;
  random?: () => number;
}

// Preferred first, plain JSON as the fallback (as client-go's metadata informers ask).
const METADATA_LIST_ACCEPT = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';
const METADATA_WATCH_ACCEPT = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json';

/**
 * A continue token outlives the snapshot it pages through only until etcd compacts it (about 5
 * minutes): the server then answers 410 and the list starts over at once, this many times in a
 * row; after that the 410 takes the usual backoff.
 */
const EXPIRED_LIST_RESTARTS = 2;

class Expired extends Error {
  override name = 'Expired';
}

/** The server answered the watch and ended it badly (an ERROR event, a stream closed at once): it is up, and retrying sooner will not help. */
class WatchRefused extends Error {
  override name = 'WatchRefused';
}

export class ResourceInformer<T extends KubeObject> {
  readonly #options: ResourceInformerOptions<T>;
  readonly #objects = new Map<string, T>();
  readonly #keyOf: (object: KubeObject) => string;
  #resourceVersion = '';
  #synced = false;
  #watching = false;
  #stopped = false;
  #failures = 0;
  #lastError: unknown;
  #abort: AbortController | undefined;
  #sleep: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  #loop: Promise<void> | undefined;

  constructor(options: ResourceInformerOptions<T>) {
    this.#options = options;
    this.#keyOf =
      options.keyBy === 'uid' ? (object) => object.metadata?.uid ?? '' : (object) => `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
  }

  get synced(): boolean {
    return this.#synced;
  }

  /** A watch stream is open: changes reach the cache as they happen. */
  get watching(): boolean {
    return this.#watching;
  }

  /** Why the last list or watch failed, while it is not watching. */
  get lastError(): unknown {
    return this.#watching ? undefined : this.#lastError;
  }

  /** Not watching because the API server could not be reached (not because it refused). */
  get disconnected(): boolean {
    return !this.#watching && isConnectionError(this.#lastError) && !(this.#lastError instanceof WatchRefused);
  }

  /** By UID (keyBy 'uid') or by name (and namespace, for namespaced objects). */
  get(key: string, namespace?: string): T | undefined {
    return this.#objects.get(this.#options.keyBy === 'uid' ? key : `${namespace ?? ''}/${key}`);
  }

  keys(): IterableIterator<string> {
    return this.#objects.keys();
  }

  get size(): number {
    return this.#objects.size;
  }

  list(namespace?: string): T[] {
    const all = [...this.#objects.values()];
    return namespace === undefined ? all : all.filter((object) => object.metadata?.namespace === namespace);
  }

  /** Starts the list/watch loop; resolves once the first list succeeded or failed. */
  async start(): Promise<void> {
    let firstAttempt!: () => void;
    const attempted = new Promise<void>((resolve) => (firstAttempt = resolve));
    this.#loop = this.#run(firstAttempt);
    await attempted;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#abort?.abort();
    this.#wake();
    await this.#loop;
  }

  /**
   * The API server answers again: a list/watch waiting out its backoff after a connection
   * failure restarts now, with the backoff reset. One that failed with an HTTP error (403,
   * 429, 500) keeps its delay: the server is up and said to wait.
   */
  retryNow(): boolean {
    if (!this.#sleep || !this.disconnected) return false;
    this.#failures = 0;
    this.#wake();
    return true;
  }

  #wake(): void {
    if (!this.#sleep) return;
    clearTimeout(this.#sleep.timer);
    this.#sleep.wake();
  }

  async #run(firstAttempt: () => void): Promise<void> {
    while (!this.#stopped) {
      try {
        if (this.#resourceVersion === '') await this.#list();
        firstAttempt();
        await this.#watch();
      } catch (error) {
        firstAttempt();
        if (this.#stopped) break;
        // Too old to resume: relist at once. A list that failed with 410 (its pages kept
        // expiring) has no resourceVersion to drop and takes the backoff, so it cannot spin.
        if ((error instanceof Expired || (error instanceof KubeApiError && error.status === 410)) && this.#resourceVersion !== '') {
          this.#resourceVersion = '';
          continue;
        }
        this.#lastError = error;
        const backoff = backoffDelay(this.#failures++, this.#options.backoff ?? WATCH_BACKOFF, this.#options.random);
        const delay = Math.max(backoff, error instanceof KubeApiError ? (error.retryAfterMs ?? 0) : 0);
        this.#options.handlers.onRestart?.(error, delay);
        await new Promise<void>((wake) => (this.#sleep = { timer: setTimeout(wake, delay), wake }));
        this.#sleep = undefined;
      }
    }
  }

  async #list(): Promise<void> {
    const { transport, path, fieldSelector, handlers, pageSize } = this.#options;
    const accept = this.#options.metadataOnly ? METADATA_LIST_ACCEPT : undefined;
    let seen = new Set<string>();
    let continueToken = '';
    let restarts = 0;
    let resourceVersion = '';
    for (;;) {
      handlers.onRequest?.('list');
      const query = new URLSearchParams();
      if (fieldSelector) query.set('fieldSelector', fieldSelector);
      if (pageSize) query.set('limit', String(pageSize));
      if (continueToken) query.set('continue', continueToken);
      let page: ListHead;
      try {
        page = await transport.list<T>(`${path}?${query}`, (item) => this.#listed(item, seen), accept);
      } catch (error) {
        if (continueToken === '' || !(error instanceof KubeApiError && error.status === 410) || restarts++ >= EXPIRED_LIST_RESTARTS) throw error;
        // The snapshot the pages came from is gone: list again from the start, from now.
        // What the first pages put in the cache stays; whatever the new list lacks is deleted below.
        continueToken = '';
        seen = new Set();
        continue;
      }
      // Every page of one list carries the resourceVersion of the snapshot they come from.
      resourceVersion = page.metadata?.resourceVersion ?? '';
      continueToken = page.metadata?.continue ?? '';
      if (continueToken === '') break;
    }
    // Deleted while we were not watching.
    for (const [key, object] of this.#objects) {
      if (seen.has(key)) continue;
      this.#objects.delete(key);
      handlers.onDelete?.(object);
    }
    this.#resourceVersion = resourceVersion;
    this.#synced = true;
    this.#failures = 0;
  }

  /** One listed object, trimmed and cached as it arrives. */
  #listed(item: T, seen: Set<string>): void {
    const { handlers, trim } = this.#options;
    const object = trim ? trim(item) : item;
    const key = this.#keyOf(object);
    seen.add(key);
    const known = this.#objects.get(key);
    if (known !== undefined && this.#unchanged(known, object)) return;
    this.#objects.set(key, object);
    if (known !== undefined) handlers.onUpdate?.(object);
    else handlers.onAdd?.(object);
  }

  /**
   * A trimmed object equal to the cached one changed nothing the caller reads (a namespace's
   * other labels, say): no update, and the cached copy stays. Untrimmed objects always differ
   * (resourceVersion).
   */
  #unchanged(cached: T, object: T): boolean {
    return this.#options.trim !== undefined && isDeepStrictEqual(cached, object);
  }

  async #watch(): Promise<void> {
    const { transport, path, fieldSelector, handlers } = this.#options;
    const idleMs = this.#options.watchIdleMs ?? 150_000;
    handlers.onRequest?.('watch');
    // Server-side timeout spread over 5-10 minutes (as client-go does), so watches do not all reconnect at once.
    const query = new URLSearchParams({
      watch: '1',
      resourceVersion: this.#resourceVersion,
      allowWatchBookmarks: 'true',
      timeoutSeconds: String(300 + Math.floor(Math.random() * 300)),
    });
    if (fieldSelector) query.set('fieldSelector', fieldSelector);
    const abort = new AbortController();
    this.#abort = abort;
    const idleError = () => new Error(`watch ${path}: no event or bookmark for ${idleMs / 1000} s`);
    let idle = setTimeout(() => abort.abort(idleError()), idleMs);
    let expired = false;
    let events = 0;
    const startedAt = performance.now();
    try {
      await transport.watch<T>(
        `${path}?${query}`,
        {
          onOpen: () => this.#setWatching(true),
          onEvent: (event) => {
            clearTimeout(idle);
            idle = setTimeout(() => abort.abort(idleError()), idleMs);
            this.#failures = 0;
            events++;
            if (!expired && !this.#apply(event)) {
              expired = true;
              abort.abort(new Expired());
            }
          },
        },
        abort.signal,
        this.#options.metadataOnly ? METADATA_WATCH_ACCEPT : undefined,
      );
    } catch (error) {
      if (expired) throw new Expired();
      throw abort.signal.aborted && abort.signal.reason instanceof Error ? abort.signal.reason : error;
    } finally {
      clearTimeout(idle);
      this.#abort = undefined;
      this.#setWatching(false);
    }
    if (events === 0 && performance.now() - startedAt < (this.#options.minWatchMs ?? 1_000))
      throw new WatchRefused(`watch ${path}: closed at once by the server`);
  }

  #setWatching(watching: boolean): void {
    if (this.#watching === watching) return;
    this.#watching = watching;
    this.#options.handlers.onWatching?.(watching);
  }

  /** Applies one watch event to the cache; false when the server says our resourceVersion expired. */
  #apply(event: WatchEvent<T>): boolean {
    const { handlers, trim } = this.#options;
    if (event.type === 'ERROR') {
      const status = event.object as { code?: number };
      if (status.code === 410) return false;
      throw new WatchRefused(`watch ${this.#options.path}: error event ${JSON.stringify(event.object).slice(0, 300)}`);
    }
    const resourceVersion = event.object.metadata?.resourceVersion;
    if (resourceVersion) this.#resourceVersion = resourceVersion;
    if (event.type === 'BOOKMARK') return true;
    const object = trim ? trim(event.object) : event.object;
    const key = this.#keyOf(object);
    if (event.type === 'DELETED') {
      this.#objects.delete(key);
      handlers.onDelete?.(object);
    } else if (this.#objects.has(key)) {
      if (this.#unchanged(this.#objects.get(key)!, object)) return true;
      this.#objects.set(key, object);
      handlers.onUpdate?.(object);
    } else {
      this.#objects.set(key, object);
      handlers.onAdd?.(object);
    }
    return true;
  }
}
