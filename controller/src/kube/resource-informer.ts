// List, then watch from the list's resourceVersion, keeping a cache of the objects:
// watch bookmarks on (cheap resumption), restart after an error with jittered backoff
// from the last resourceVersion, relist on 410 Gone, every LIST and WATCH counted.
// "synced" once the first list has landed in the cache.
import { WATCH_BACKOFF, backoffDelay } from '../agent/backoff.ts';
import { KubeApiError, type KubeClient, type WatchEvent } from './kube-client.ts';

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
}

export interface ResourceInformerOptions<T> {
  client: KubeClient;
  /** Collection path, e.g. `/api/v1/pods`. */
  path: string;
  fieldSelector?: string;
  handlers: InformerHandlers<T>;
}

interface ListResponse<T> {
  metadata?: { resourceVersion?: string };
  items?: T[];
}

/** The apiserver sends a bookmark about once a minute: silence this long means a dead connection. */
const WATCH_IDLE_MS = 150_000;

class Expired extends Error {
  override name = 'Expired';
}

export class ResourceInformer<T extends KubeObject> {
  readonly #options: ResourceInformerOptions<T>;
  readonly #objects = new Map<string, T>();
  #resourceVersion = '';
  #synced = false;
  #stopped = false;
  #failures = 0;
  #abort: AbortController | undefined;
  #sleep: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  #loop: Promise<void> | undefined;

  constructor(options: ResourceInformerOptions<T>) {
    this.#options = options;
  }

  get synced(): boolean {
    return this.#synced;
  }

  get(name: string, namespace?: string): T | undefined {
    return this.#objects.get(`${namespace ?? ''}/${name}`);
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
    if (this.#sleep) {
      clearTimeout(this.#sleep.timer);
      this.#sleep.wake();
    }
    await this.#loop;
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
        if (error instanceof Expired || (error instanceof KubeApiError && error.status === 410)) {
          this.#resourceVersion = ''; // too old to resume: relist at once
          continue;
        }
        const delay = backoffDelay(this.#failures++, WATCH_BACKOFF);
        this.#options.handlers.onRestart?.(error, delay);
        await new Promise<void>((wake) => (this.#sleep = { timer: setTimeout(wake, delay), wake }));
        this.#sleep = undefined;
      }
    }
  }

  async #list(): Promise<void> {
    const { client, path, fieldSelector, handlers } = this.#options;
    handlers.onRequest?.('list');
    const query = new URLSearchParams();
    if (fieldSelector) query.set('fieldSelector', fieldSelector);
    const list = await client.request<ListResponse<T>>('GET', `${path}?${query}`);
    const seen = new Set<string>();
    for (const object of list.items ?? []) {
      const key = keyOf(object);
      seen.add(key);
      const known = this.#objects.has(key);
      this.#objects.set(key, object);
      if (known) handlers.onUpdate?.(object);
      else handlers.onAdd?.(object);
    }
    // Deleted while we were not watching.
    for (const [key, object] of this.#objects) {
      if (seen.has(key)) continue;
      this.#objects.delete(key);
      handlers.onDelete?.(object);
    }
    this.#resourceVersion = list.metadata?.resourceVersion ?? '';
    this.#synced = true;
    this.#failures = 0;
  }

  async #watch(): Promise<void> {
    const { client, path, fieldSelector, handlers } = this.#options;
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
    let idle = setTimeout(() => abort.abort(new Error(`watch ${path}: no event or bookmark for ${WATCH_IDLE_MS / 1000} s`)), WATCH_IDLE_MS);
    let expired = false;
    let events = 0;
    const startedAt = performance.now();
    try {
      await client.watch<T>(
        `${path}?${query}`,
        (event) => {
          clearTimeout(idle);
          idle = setTimeout(() => abort.abort(new Error(`watch ${path}: no event or bookmark for ${WATCH_IDLE_MS / 1000} s`)), WATCH_IDLE_MS);
          this.#failures = 0;
          events++;
          if (!expired && !this.#apply(event)) {
            expired = true;
            abort.abort(new Expired());
          }
        },
        abort.signal,
      );
    } catch (error) {
      if (expired) throw new Expired();
      throw abort.signal.aborted && abort.signal.reason instanceof Error ? abort.signal.reason : error;
    } finally {
      clearTimeout(idle);
      this.#abort = undefined;
    }
    // A server that closes every watch at once must not make us spin.
    if (events === 0 && performance.now() - startedAt < 1_000) throw new Error(`watch ${path}: closed at once by the server`);
  }

  /** Applies one watch event to the cache; false when the server says our resourceVersion expired. */
  #apply(event: WatchEvent<T>): boolean {
    const { handlers } = this.#options;
    if (event.type === 'ERROR') {
      const status = event.object as { code?: number };
      if (status.code === 410) return false;
      throw new Error(`watch ${this.#options.path}: error event ${JSON.stringify(event.object).slice(0, 300)}`);
    }
    const resourceVersion = event.object.metadata?.resourceVersion;
    if (resourceVersion) this.#resourceVersion = resourceVersion;
    if (event.type === 'BOOKMARK') return true;
    const key = keyOf(event.object);
    if (event.type === 'DELETED') {
      this.#objects.delete(key);
      handlers.onDelete?.(event.object);
    } else if (this.#objects.has(key)) {
      this.#objects.set(key, event.object);
      handlers.onUpdate?.(event.object);
    } else {
      this.#objects.set(key, event.object);
      handlers.onAdd?.(event.object);
    }
    return true;
  }
}

function keyOf(object: KubeObject): string {
  return `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}
