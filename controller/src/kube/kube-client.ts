// A small Kubernetes API client: the few requests the agent makes (list, watch, get,
// merge patch, create) over one keep-alive HTTPS agent. Not client-node: with it the same
// two informers take ~57 MB more RSS, past the agent's 100 MB budget (`npm run bench:client`).
// It also tracks whether the API server answers at all, so callers can act the moment an
// outage ends instead of when their backoff happens to expire.
import http from 'node:http';
import https from 'node:https';
import type { KubeCredentials } from './kubeconfig.ts';
import { type ListHead, ListItemSplitter } from './list-stream.ts';

export class KubeApiError extends Error {
  override name = 'KubeApiError';
  readonly status: number;
  /** The Status reason (`NotFound`, `Conflict`, `Expired`, ...) when the server sent one. */
  readonly reason: string;
  /** From a Retry-After header (429, 503): the server asks us to wait at least this long. */
  readonly retryAfterMs: number | undefined;
  constructor(method: string, path: string, status: number, body: string, retryAfter?: string) {
    let message = body.slice(0, 300);
    let reason = '';
    try {
      const parsed = JSON.parse(body) as { message?: string; reason?: string };
      message = parsed.message ?? message;
      reason = parsed.reason ?? '';
    } catch {
      // not a Status object: keep the raw text
    }
    super(`${method} ${path.split('?')[0]}: HTTP ${status}: ${message}`);
    this.status = status;
    this.reason = reason;
    this.retryAfterMs = parseRetryAfter(retryAfter);
  }
}

/** Retry-After in seconds (an HTTP date is not what the apiserver sends); capped so a bad header cannot park us. */
export function parseRetryAfter(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d+$/.test(value.trim())) return undefined;
  return Math.min(Number(value.trim()), 300) * 1000;
}

/** No HTTP answer at all (refused, reset, timed out): the API server is unreachable, not refusing. */
export function isConnectionError(error: unknown): boolean {
  return error instanceof Error && !(error instanceof KubeApiError) && error.name !== 'AbortError';
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export interface WatchHandlers<T> {
  /** The server accepted the watch (HTTP 200): events may follow. */
  onOpen?: () => void;
  onEvent: (event: WatchEvent<T>) => void;
}

/** What an informer needs from the API: a list and a watch stream; `accept` is the Accept header (default JSON). */
export interface ListWatchTransport {
  /** Hands each item to `onItem` as it arrives; resolves with the rest of the list (its metadata). */
  list<T>(path: string, onItem: (item: T) => void, accept?: string): Promise<ListHead>;
  /** Resolves when the server ends the stream; rejects on a connection or HTTP error. */
  watch<T>(path: string, handlers: WatchHandlers<T>, signal: AbortSignal, accept?: string): Promise<void>;
}

/** Requests without a body answer within this; a watch has its own (server-side) timeout. */
const REQUEST_TIMEOUT_MS = 30_000;

export class KubeClient implements ListWatchTransport {
  readonly #credentials: KubeCredentials;
  readonly #agent: http.Agent;
  #reachable = true;
  readonly #onReachable = new Set<() => void>();

  constructor(credentials: KubeCredentials) {
    this.#credentials = credentials;
    const { server, ca, cert, key, insecureSkipTlsVerify, tlsServerName } = credentials;
    this.#agent =
      server.protocol === 'https:'
        ? new https.Agent({ keepAlive: true, maxSockets: 16, ca, cert, key, rejectUnauthorized: !insecureSkipTlsVerify, servername: tlsServerName })
        : new http.Agent({ keepAlive: true, maxSockets: 16 });
  }

  /** One JSON request; resolves with the parsed body, throws KubeApiError on HTTP >= 300. */
  async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json', accept = 'application/json'): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { accept };
    if (payload !== undefined) headers['content-type'] = contentType;
    const response = await this.#send(method, path, headers, payload, REQUEST_TIMEOUT_MS);
    const text = await readAll(response);
    if ((response.statusCode ?? 0) >= 300) throw apiError(method, path, response, text);
    return JSON.parse(text) as T;
  }

  /** A LIST read as it arrives, item by item (list-stream.ts): its whole body is never in memory. */
  async list<T>(path: string, onItem: (item: T) => void, accept = 'application/json'): Promise<ListHead> {
    const response = await this.#send('GET', path, { accept }, undefined, REQUEST_TIMEOUT_MS);
    if ((response.statusCode ?? 0) >= 300) throw apiError('GET', path, response, await readAll(response));
    response.setEncoding('utf8');
    const splitter = new ListItemSplitter<T>(onItem);
    // A handler's exception or bad JSON ends the loop, which destroys the response.
    for await (const chunk of response) splitter.push(chunk as string);
    return splitter.end();
  }

  /** False from a request that got no answer until the next one that got any. */
  get reachable(): boolean {
    return this.#reachable;
  }

  /** Called each time the API server answers again after being unreachable. */
  onReachable(listener: () => void): void {
    this.#onReachable.add(listener);
  }

  /**
   * A cheap request to learn whether the API server answers (`/readyz` is readable by
   * everyone, authenticated or not); true on HTTP 200.
   */
  async probe(): Promise<boolean> {
    try {
      const response = await this.#send('GET', '/readyz', { accept: 'text/plain' }, undefined, 2_000);
      await readAll(response);
      return response.statusCode === 200;
    } catch {
      return false;
    }
  }

  /**
   * A watch stream: calls onEvent per event line; resolves when the server ends the
   * stream, rejects on a connection error or an HTTP error status. `signal` aborts it.
   */
  async watch<T>(path: string, handlers: WatchHandlers<T>, signal: AbortSignal, accept = 'application/json'): Promise<void> {
    const { onEvent } = handlers;
    const response = await this.#send('GET', path, { accept }, undefined, 0, signal);
    if ((response.statusCode ?? 0) >= 300) throw apiError('GET', path, response, await readAll(response));
    handlers.onOpen?.();
    response.setEncoding('utf8');
    let partial = '';
    await new Promise<void>((resolve, reject) => {
      response.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        try {
          for (const line of lines) if (line.trim() !== '') onEvent(JSON.parse(line) as WatchEvent<T>);
        } catch (error) {
          // A bad line or a handler's refusal ends this watch; the caller decides what next.
          response.destroy();
          reject(error);
        }
      });
      response.on('end', resolve);
      response.on('error', reject);
      response.on('close', () => (response.complete ? resolve() : reject(new Error(`watch ${path.split('?')[0]}: connection closed`))));
    });
  }

  async #send(
    method: string,
    path: string,
    headers: Record<string, string>,
    payload: string | undefined,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<http.IncomingMessage> {
    const url = new URL(path, this.#credentials.server);
    // Per request: a rotated service-account token is picked up.
    const token = this.#credentials.token();
    const allHeaders: Record<string, string> = { ...headers };
    if (token) allHeaders.authorization = `Bearer ${token}`;
    if (payload !== undefined) allHeaders['content-length'] = String(Buffer.byteLength(payload));
    return await new Promise<http.IncomingMessage>((resolve, reject) => {
      const transport = url.protocol === 'https:' ? https : http;
      const request = transport.request(url, { method, agent: this.#agent, headers: allHeaders, signal }, (response) => {
        this.#answered();
        resolve(response);
      });
      request.on('error', (error) => {
        if (isConnectionError(error)) this.#reachable = false;
        reject(error);
      });
      if (timeoutMs > 0) request.setTimeout(timeoutMs, () => request.destroy(new Error(`${method} ${url.pathname}: no answer within ${timeoutMs} ms`)));
      request.end(payload);
    });
  }

  close(): void {
    this.#agent.destroy();
  }

  #answered(): void {
    if (this.#reachable) return;
    this.#reachable = true;
    for (const listener of this.#onReachable) listener();
  }
}

function apiError(method: string, path: string, response: http.IncomingMessage, body: string): KubeApiError {
  const retryAfter = response.headers['retry-after'];
  return new KubeApiError(method, path, response.statusCode ?? 0, body, Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
}

async function readAll(response: http.IncomingMessage): Promise<string> {
  response.setEncoding('utf8');
  let text = '';
  for await (const chunk of response) text += chunk as string;
  return text;
}
