// The client's own behaviour against a plain HTTP server on loopback: Retry-After on the
// error, reachability across an outage, the probe, and the small pure helpers beside it.
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { KubeApiError, KubeClient, isConnectionError, parseRetryAfter } from '../../controller/src/kube/kube-client.ts';
import { trimPod } from '../../controller/src/kube/pod-informer.ts';
import { isPermanentRefusal, resourceVersionAtLeast } from '../../controller/src/kube/pod-status-writer.ts';
import { eventNameFor } from '../../controller/src/kube/event-recorder.ts';

type Handler = (path: string, respond: (status: number, body: string, headers?: Record<string, string>) => void) => void;

async function serve(handler: Handler, port = 0): Promise<Server> {
  const server = createServer((request, response) =>
    handler(request.url ?? '', (status, body, headers = {}) => {
      response.writeHead(status, { 'content-type': 'application/json', ...headers });
      response.end(body);
    }),
  );
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return server;
}

const clientFor = (port: number) =>
  new KubeClient({ server: new URL(`http://127.0.0.1:${port}`), insecureSkipTlsVerify: false, token: () => undefined, source: 'test' });
const close = (server: Server) => new Promise<void>((resolve) => server.close(() => resolve()));

describe('KubeClient', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('a 429 carries the Retry-After the server asked for', async () => {
    const server = await serve((_path, respond) => respond(429, '{"kind":"Status","reason":"TooManyRequests","message":"slow down"}', { 'retry-after': '3' }));
    cleanups.push(() => close(server));
    const client = clientFor((server.address() as AddressInfo).port);
    cleanups.push(() => client.close());
    const error = await client.request('GET', '/api/v1/pods').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubeApiError);
    expect(error).toMatchObject({ status: 429, reason: 'TooManyRequests', retryAfterMs: 3_000 });
    expect(isConnectionError(error)).toBe(false);
  });

  it('goes unreachable on a refused connection and calls back when the server answers again', async () => {
    const server = await serve((_path, respond) => respond(200, '{}'));
    const port = (server.address() as AddressInfo).port;
    await close(server); // nothing listens there now
    const client = clientFor(port);
    cleanups.push(() => client.close());
    let answered = 0;
    client.onReachable(() => answered++);
    const error = await client.request('GET', '/version').catch((e: unknown) => e);
    expect(isConnectionError(error)).toBe(true);
    expect(client.reachable).toBe(false);
    expect(await client.probe()).toBe(false);

    const again = await serve((path, respond) => (path === '/readyz' ? respond(200, 'ok') : respond(404, '{}')), port);
    cleanups.push(() => close(again));
    expect(await client.probe()).toBe(true);
    expect(client.reachable).toBe(true);
    expect(answered).toBe(1);
    // Any answer counts, an HTTP error included; a second answer is no new recovery.
    await client.request('GET', '/nothing').catch(() => {});
    expect(answered).toBe(1);
  });
});

describe('kube helpers', () => {
  it('parses Retry-After seconds and caps them', () => {
    expect(parseRetryAfter('1')).toBe(1_000);
    expect(parseRetryAfter(' 7 ')).toBe(7_000);
    expect(parseRetryAfter('86400')).toBe(300_000);
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });

  it('compares resourceVersions as integers when they are, else only for equality', () => {
    expect(resourceVersionAtLeast('100', '99')).toBe(true);
    expect(resourceVersionAtLeast('99', '100')).toBe(false);
    expect(resourceVersionAtLeast('100', '100')).toBe(true);
    expect(resourceVersionAtLeast('abc', 'abc')).toBe(true);
    expect(resourceVersionAtLeast('abd', 'abc')).toBe(false);
    expect(resourceVersionAtLeast(undefined, '1')).toBe(false);
  });

  it('tells refusals retrying cannot fix from those it can', () => {
    const status = (code: number) => new KubeApiError('PATCH', '/x', code, '{}');
    for (const code of [400, 403, 413, 422]) expect(isPermanentRefusal(status(code)), String(code)).toBe(true);
    for (const code of [401, 404, 408, 409, 429, 500, 503]) expect(isPermanentRefusal(status(code)), String(code)).toBe(false);
    expect(isPermanentRefusal(new Error('ECONNRESET'))).toBe(false);
  });

  it('names the Event of one mark the same way every time, and another mark differently', () => {
    const pod = { namespace: 'ns', name: 'web-0', uid: 'u1' };
    const name = eventNameFor(pod, '2026-01-01T00:00:00.000Z');
    expect(name).toMatch(/^web-0\.[0-9a-f]{16}$/);
    expect(eventNameFor(pod, '2026-01-01T00:00:00.000Z')).toBe(name);
    expect(eventNameFor(pod, '2026-01-01T00:00:01.000Z')).not.toBe(name);
    expect(eventNameFor({ ...pod, uid: 'u2' }, '2026-01-01T00:00:00.000Z')).not.toBe(name);
  });

  it('trims a pod to what the agent reads', () => {
    const trimmed = trimPod({
      metadata: { name: 'p', uid: 'u', annotations: { a: 'b' }, managedFields: [{ manager: 'kubectl' }] },
      spec: {
        nodeName: 'n',
        volumes: [{ name: 'v' }],
        containers: [{ name: 'app', env: [{ name: 'X', value: 'y' }], securityContext: { runAsUser: 1000 }, ports: [{ containerPort: 80 }] }],
        initContainers: [{ name: 'w', resources: { limits: { cpu: '1' } }, securityContext: { runAsUser: 65532 } }],
      },
      status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] },
    });
    expect(trimmed).toEqual({
      metadata: { name: 'p', uid: 'u', annotations: { a: 'b' } },
      spec: {
        nodeName: 'n',
        containers: [{ name: 'app', securityContext: { runAsUser: 1000 }, ports: [{ containerPort: 80 }] }],
        initContainers: [{ name: 'w', securityContext: { runAsUser: 65532 } }],
      },
      status: { phase: 'Running' },
    });
  });
});
