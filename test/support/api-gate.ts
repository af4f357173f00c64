// A TCP pass-through in front of the kube-apiserver that holds every connection until
// it is opened: lets a test see the controller before its initial list has synced
// (/readyz must say 503 then) without disturbing the shared control plane. It can also
// cut the controller off (an API outage as the node sees it) while the test itself
// keeps using the apiserver.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';

interface KubeconfigFile {
  clusters?: { cluster?: { server?: string } }[];
}

export interface ApiGate {
  /** A kubeconfig file like the original one, whose server is the gate. */
  kubeconfig: string;
  /** From now on, held and new connections pass through to the apiserver. */
  open(): void;
  /** An outage: every open connection is reset and new ones are refused until open(). */
  cut(): void;
  close(): Promise<void>;
}

export async function startApiGate(kubeconfigPath: string): Promise<ApiGate> {
  const config = parse(await readFile(kubeconfigPath, 'utf8')) as KubeconfigFile;
  const server = config.clusters?.[0]?.cluster?.server;
  if (!server) throw new Error(`${kubeconfigPath} names no cluster server`);
  const upstream = new URL(server);

  let isOpen = false;
  let isCut = false;
  const held: Socket[] = [];
  const sockets = new Set<Socket>();
  const pass = (client: Socket) => {
    const target = connect({ host: upstream.hostname, port: Number(upstream.port || 443) });
    sockets.add(target);
    target.on('close', () => sockets.delete(target));
    client.on('error', () => target.destroy());
    target.on('error', () => client.destroy());
    client.pipe(target).pipe(client);
    client.resume();
  };
  const gate = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    if (isCut) client.resetAndDestroy();
    else if (isOpen) pass(client);
    else {
      client.pause();
      held.push(client);
    }
  });
  await new Promise<void>((done, fail) => gate.once('error', fail).listen(0, '127.0.0.1', done));
  const address = gate.address();
  if (address === null || typeof address === 'string') throw new Error('gate has no TCP address');

  // TLS passes through untouched: the serving certificate is for 127.0.0.1, whatever the port.
  for (const entry of config.clusters ?? []) if (entry.cluster) entry.cluster.server = `https://127.0.0.1:${address.port}`;
  const dir = await mkdtemp(join(tmpdir(), 'pnc-api-gate-'));
  const kubeconfig = join(dir, 'kubeconfig');
  await writeFile(kubeconfig, stringify(config), { mode: 0o600 });

  return {
    kubeconfig,
    open() {
      isOpen = true;
      isCut = false;
      for (const client of held.splice(0)) pass(client);
    },
    cut() {
      isCut = true;
      for (const socket of sockets) socket.resetAndDestroy();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((done) => gate.close(() => done()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
