// The active proof that outbound capture works, needing no privilege: listen where the
// proxy will (loopback, outbound capture port), dial a documentation address, and pass
// only if that very connection arrives at our own listener carrying a random token.
// Without the redirect the connection leaves the pod (and fails or times out) instead.
import { closeSync, openSync, readSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import type { ProbeTarget } from './probe-target.ts';

export interface SelfTestOptions {
  proxyPort: number;
  targets: ProbeTarget[];
  timeoutMs: number;
}

export type SelfTestResult = { ok: true; summary: string } | { ok: false; reason: string };

const LISTEN_ADDRESS = { ipv4: '127.0.0.1', ipv6: '::1' } as const;
const TOKEN_BYTES = 16;

export async function runSelfTest(options: SelfTestOptions): Promise<SelfTestResult> {
  const sockets = new Set<Socket>();
  const servers: Server[] = [];
  // One token per target: each family must be captured on its own.
  const expected = new Map(options.targets.map((target) => [randomToken(), target]));
  const arrived = new Set<string>();
  const failures = new Map<ProbeTarget, string>();
  let settle: () => void = () => {};
  const done = new Promise<void>((resolve) => (settle = resolve));
  const check = () => {
    if (arrived.size + failures.size === expected.size) settle();
  };

  const onAccepted = (socket: Socket) => {
    sockets.add(socket);
    let received = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      received += chunk;
      const token = received.slice(0, TOKEN_BYTES * 2);
      if (token.length === TOKEN_BYTES * 2 && expected.has(token) && !arrived.has(token)) {
        arrived.add(token);
        check();
      }
      // Anything else (a stray client) is dropped after the token's length.
      if (received.length >= TOKEN_BYTES * 2) socket.pause();
    });
    socket.on('error', () => {});
  };

  try {
    const families = new Set(options.targets.map((target) => target.family));
    for (const family of families) {
      const server = createServer(onAccepted);
      servers.push(server);
      const listenError = await listen(server, LISTEN_ADDRESS[family], options.proxyPort);
      if (listenError) return { ok: false, reason: `cannot listen on ${hostPort(LISTEN_ADDRESS[family], options.proxyPort)}: ${listenError}` };
    }

    for (const [token, target] of expected) {
      const client = createConnection({ host: target.address, port: target.port, family: target.family === 'ipv6' ? 6 : 4 });
      sockets.add(client);
      client.on('connect', () => client.write(token));
      client.on('error', (error: NodeJS.ErrnoException) => {
        if (arrived.has(token)) return;
        failures.set(target, `connect ${error.code ?? error.message}`);
        check();
      });
    }

    const timer = setTimeout(settle, options.timeoutMs);
    await done;
    clearTimeout(timer);

    const problems = [...expected].flatMap(([token, target]) => {
      if (arrived.has(token)) return [];
      const why = failures.get(target) ?? `nothing arrived within ${options.timeoutMs} ms`;
      return [`${hostPort(target.address, target.port)} was not captured to ${hostPort(LISTEN_ADDRESS[target.family], options.proxyPort)} (${why})`];
    });
    if (problems.length > 0) return { ok: false, reason: `redirect self-test failed: ${problems.join('; ')}${uidHint()}` };
    return {
      ok: true,
      summary: options.targets.map((t) => `${hostPort(t.address, t.port)} -> ${hostPort(LISTEN_ADDRESS[t.family], options.proxyPort)}`).join(', '),
    };
  } finally {
    // RST instead of FIN: no TIME_WAIT is left on the proxy port, so the proxy binds it at once.
    for (const socket of sockets) {
      if (socket.readyState === 'open' || socket.readyState === 'readOnly' || socket.readyState === 'writeOnly') socket.resetAndDestroy();
      else socket.destroy();
    }
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()))));
  }
}

/**
 * 16 bytes from the kernel's CSPRNG. Read from /dev/urandom rather than node:crypto, whose
 * OpenSSL initialisation alone costs the waiter about 3 MB of its RSS budget.
 */
function randomToken(): string {
  const bytes = Buffer.alloc(TOKEN_BYTES);
  const fd = openSync('/dev/urandom', 'r');
  try {
    if (readSync(fd, bytes, 0, TOKEN_BYTES, null) !== TOKEN_BYTES) throw new Error('short read from /dev/urandom');
  } finally {
    closeSync(fd);
  }
  return bytes.toString('hex');
}

function listen(server: Server, host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    server.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    server.listen({ host, port, exclusive: true }, () => resolve(undefined));
  });
}

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * The rules never redirect the proxy's own UID/GID, so a waiter running as it cannot pass.
 * The waiter cannot see which identity that is (1337, or the top of an OpenShift
 * namespace's range), so it always says what it runs as.
 */
function uidHint(): string {
  return ` (this container runs as UID/GID ${process.getuid?.()}/${process.getgid?.()}; traffic of the proxy's identity, 1337 or on OpenShift the top of the namespace's UID range, is never redirected)`;
}
