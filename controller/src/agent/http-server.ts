// /healthz, /readyz and /metrics on one small node:http server.
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface HealthSource {
  /** The process loop is alive (it answers at all) and not shutting down. */
  healthy(): boolean;
  /** undefined when ready, else why not (the body of the 503). */
  notReady(): string | undefined;
  /** Lines /readyz adds either way (the node's families), so a ready agent says what it does. */
  details(): string[];
}

export interface HttpServer {
  port: number;
  close(): Promise<void>;
}

export async function startHttpServer(address: string, port: number, registry: Registry, health: HealthSource): Promise<HttpServer> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    const text = (status: number, body: string) => {
      response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
      response.end(body);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') return text(405, 'method not allowed\n');
    if (path === '/healthz') return health.healthy() ? text(200, 'ok\n') : text(503, 'shutting down\n');
    if (path === '/readyz') {
      const why = health.notReady();
      const details = health
        .details()
        .map((line) => `${line}\n`)
        .join('');
      return why === undefined ? text(200, `ok\n${details}`) : text(503, `${why}\n${details}`);
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (body) => {
          response.writeHead(200, { 'content-type': registry.contentType });
          response.end(body);
        },
        (error: unknown) => text(500, `${String(error)}\n`),
      );
      return;
    }
    text(404, 'not found\n');
  });
  // Keep-alive connections from probes must not hold up shutdown.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // No host: Node listens on `::` (both families) where the kernel has IPv6, else on 0.0.0.0.
    server.listen(port, address === '' ? undefined : address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
