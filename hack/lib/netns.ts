// Real network namespaces for the harness: create/destroy netns and veth links, run
// programs inside them, and real TCP/UDP listeners and clients that report who answered.
// Everything takes argument arrays (no shell) and names are unique per process.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { processStartTimeSync } from './proc.ts';
import { must, run, type RunResult } from './process.ts';

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
export const ROOT_SKIP_MESSAGE = 'skipped: needs root (network namespaces and iptables); CI runs it as root';

/** Runs argv inside the netns at path (e.g. /run/netns/NAME). */
export function runInNetns(netnsPath: string, argv: string[], input?: string): RunResult {
  return run(['nsenter', `--net=${netnsPath}`, '--', ...argv], input);
}

let counter = 0;
/** A short unique name (interface names are limited to 15 characters). */
function uniqueName(prefix: string): string {
  counter++;
  return `${prefix}${(process.pid % 100000).toString(36)}${counter.toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`.slice(0, 15);
}

export interface TestNetns {
  name: string;
  path: string;
}

// Who made each test netns (pid and start time), so the netns of a run that was killed (a test
// timeout, a crash: no afterAll ran) are removed by the next run that makes one.
const OWNERS_DIR = '/run/pod-network-controller/netns-owners';
let sweptOrphans = false;

/** Deletes the test netns whose creating process is gone (createNetns does it once per process). */
export function removeNetnsOfDeadRuns(): void {
  sweptOrphans = true;
  mkdirSync(OWNERS_DIR, { recursive: true });
  for (const name of readdirSync(OWNERS_DIR)) {
    const [pid, start] = readFileSync(join(OWNERS_DIR, name), 'utf8').trim().split(' ');
    if (processStartTimeSync(Number(pid)) === start) continue;
    run(['ip', 'netns', 'del', name]);
    rmSync(join(OWNERS_DIR, name), { force: true });
  }
}

/** `ip netns add` with loopback up. Delete with deleteNetns (in afterAll/finally). */
export function createNetns(prefix = 'pnct'): TestNetns {
  if (!sweptOrphans) removeNetnsOfDeadRuns();
  const name = uniqueName(prefix);
  writeFileSync(join(OWNERS_DIR, name), `${process.pid} ${processStartTimeSync(process.pid)}\n`);
  must(['ip', 'netns', 'add', name]);
  must(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
  return { name, path: `/run/netns/${name}` };
}

/** Deletes the netns (and with it its veth ends and rules); ignores one already gone. */
export function deleteNetns(netns: TestNetns | undefined): void {
  if (!netns) return;
  run(['ip', 'netns', 'del', netns.name]);
  rmSync(join(OWNERS_DIR, netns.name), { force: true });
}

export interface LinkEnd {
  netns: TestNetns;
  /** Addresses with prefix, e.g. 192.0.2.1/24 and 2001:db8::1/64 (IPv6 ones get nodad: usable at once). */
  addresses: string[];
  /** A fixed interface name (e.g. one an annotation names); else a unique one. */
  ifname?: string;
}

/** A veth pair between two netns with the given addresses, both ends up. Returns the interface names. */
export function connectNetns(a: LinkEnd, b: LinkEnd): [string, string] {
  const nameA = a.ifname ?? uniqueName('va');
  const nameB = b.ifname ?? uniqueName('vb');
  must(['ip', '-n', a.netns.name, 'link', 'add', nameA, 'type', 'veth', 'peer', 'name', nameB, 'netns', b.netns.name]);
  for (const [end, ifname] of [
    [a, nameA],
    [b, nameB],
  ] as const) {
    for (const address of end.addresses) {
      must(['ip', '-n', end.netns.name, 'addr', 'add', address, 'dev', ifname, ...(address.includes(':') ? ['nodad'] : [])]);
    }
    must(['ip', '-n', end.netns.name, 'link', 'set', ifname, 'up']);
  }
  return [nameA, nameB];
}

/**
 * A bare stand-in for a mesh pod's network, for the init-waiter (no apiserver, no cgroup; for
 * a kubelet-shaped pod use createPodSandbox in pod-sandbox.ts): a "pod" netns with
 * 192.0.2.1/24 and 2001:db8::1/64 on a veth whose other end is in a "network" netns holding
 * 192.0.2.2 and 2001:db8::2 (the waiter's default probe addresses), with default routes
 * through it. Nothing listens in the network netns, so a probe that escapes capture is
 * refused there, never sent anywhere real. The host netns is not touched.
 */
export interface RoutedNetns {
  pod: TestNetns;
  network: TestNetns;
  /** The pod netns's inode: what a correct mark names in `netns`. */
  inode: number;
  destroy(): void;
}

/** Creates a RoutedNetns (IPv6 too unless `ipv6: false`); on failure nothing is left behind. */
export function createRoutedNetns(options: { ipv6?: boolean } = {}): RoutedNetns {
  const ipv6 = options.ipv6 ?? true;
  const pod = createNetns('pncwp');
  let network: TestNetns | undefined;
  try {
    network = createNetns('pncwn');
    const [podLink] = connectNetns(
      { netns: pod, addresses: ['192.0.2.1/24', ...(ipv6 ? ['2001:db8::1/64'] : [])] },
      { netns: network, addresses: ['192.0.2.2/24', ...(ipv6 ? ['2001:db8::2/64'] : [])] },
    );
    must(['ip', '-n', pod.name, 'route', 'add', 'default', 'via', '192.0.2.2', 'dev', podLink]);
    if (ipv6) must(['ip', '-n', pod.name, '-6', 'route', 'add', 'default', 'via', '2001:db8::2', 'dev', podLink]);
  } catch (error) {
    deleteNetns(network);
    deleteNetns(pod);
    throw error;
  }
  const networkNetns = network;
  return {
    pod,
    network: networkNetns,
    inode: statSync(pod.path).ino,
    destroy() {
      deleteNetns(pod);
      deleteNetns(networkNetns);
    },
  };
}

/**
 * A node binary any UID can execute (test clients run as app and proxy UIDs): this one when
 * every parent directory is world-searchable, else a hard link (a copy across filesystems) at a
 * fixed path per node binary in the temp dir. Shared by all test processes and kept, so runs
 * never pile up copies (test workers are killed without running exit handlers).
 */
export function nodeForAnyUser(): string {
  let dir = dirname(process.execPath);
  let reachable = (statSync(process.execPath).mode & 0o001) !== 0;
  while (reachable && dir !== dirname(dir)) {
    reachable = (statSync(dir).mode & 0o001) !== 0;
    dir = dirname(dir);
  }
  if (reachable) return process.execPath;
  const binary = statSync(process.execPath);
  const key = createHash('sha256').update(`${process.execPath}:${binary.size}:${binary.mtimeMs}`).digest('hex').slice(0, 12);
  const shared = join(tmpdir(), `pnc-test-node-${key}`);
  const path = join(shared, 'node');
  if (existsSync(path)) return path;
  mkdirSync(shared, { recursive: true, mode: 0o755 });
  chmodSync(shared, 0o755);
  // Link (or copy) under a private name, then rename: concurrent test processes never see half a file.
  const staging = join(shared, `node.${process.pid}.tmp`);
  try {
    linkSync(process.execPath, staging);
  } catch {
    copyFileSync(process.execPath, staging);
    chmodSync(staging, 0o755);
  }
  renameSync(staging, path);
  return path;
}

// Each listener accepts on :: (IPv4 and IPv6) and answers "<name>:<port>" (TCP) or
// "<name>:udp:<port>" (UDP, port given as "udp:N"), so the client learns which socket got it.
// With PNC_ORIGINAL_DST=1 it appends " orig=<address>:<port>", the destination the client
// dialled: what SO_ORIGINAL_DST returns, which Node cannot call, so it is read from the same
// conntrack entry in /proc/net/nf_conntrack (this netns's; needs root). No entry means no
// translation: the local address (unknown for UDP on ::, shown as *).
const LISTENER = `
const net = require('node:net');
const dgram = require('node:dgram');
const { readFileSync } = require('node:fs');
const [name, ...ports] = process.argv.slice(1);
const withOriginal = process.env.PNC_ORIGINAL_DST === '1';
const show = (address) => {
  const plain = address.replace(/^::ffff:(?=[0-9]+[.])/, '');
  return plain.includes(':') ? new URL('http://[' + plain + ']').hostname : plain;
};
function original(proto, local, localPort, peer, peerPort) {
  let table = '';
  try { table = readFileSync('/proc/net/nf_conntrack', 'utf8'); } catch {}
  for (const line of table.split('\\n')) {
    if (!line.includes(' dport=' + peerPort + ' ')) continue;
    const fields = line.trim().split(/ +/);
    if (fields[2] !== proto) continue;
    const tuples = [];
    for (const field of fields) {
      const [key, value] = field.split('=');
      if (key === 'src') tuples.push({});
      if (['src', 'dst', 'sport', 'dport'].includes(key) && tuples.length) tuples[tuples.length - 1][key] = value;
    }
    const [dialled, reply] = tuples;
    if (reply && Number(reply.sport) === localPort && show(reply.dst) === peer && Number(reply.dport) === peerPort &&
        (local === '*' || show(reply.src) === local)) return show(dialled.dst) + ':' + dialled.dport;
  }
  return local + ':' + localPort;
}
let ready = 0;
const up = () => { if (++ready === ports.length) console.log('ready'); };
for (const port of ports) {
  if (port.startsWith('udp:')) {
    const socket = dgram.createSocket({ type: 'udp6', ipv6Only: false });
    const number = Number(port.slice(4));
    socket.on('message', (_msg, from) => {
      const suffix = withOriginal ? ' orig=' + original('udp', '*', number, show(from.address), from.port) : '';
      socket.send(name + ':' + port + suffix, from.port, from.address);
    });
    socket.bind(number, '::', up);
  } else {
    net.createServer((socket) => {
      const suffix = withOriginal
        ? ' orig=' + original('tcp', show(socket.localAddress), socket.localPort, show(socket.remoteAddress), socket.remotePort)
        : '';
      socket.on('error', () => {});
      socket.end(name + ':' + port + suffix + '\\n');
    }).listen({ port: Number(port), host: '::', ipv6Only: false }, up);
  }
}
`;

// Reads {"id","host","port","udp","local"} lines (local: TCP source address) and answers
// {"id","reply"} with what the server said, or ERR:<code>.
const CLIENT = `
const net = require('node:net');
const dgram = require('node:dgram');
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, host, port, udp, local } = JSON.parse(line);
  let done = false;
  const finish = (reply) => { if (!done) { done = true; process.stdout.write(JSON.stringify({ id, reply }) + '\\n'); } };
  if (udp) {
    const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    const timer = setTimeout(() => { socket.close(); finish('ERR:timeout'); }, 3000);
    socket.on('message', (msg) => { clearTimeout(timer); socket.close(); finish(String(msg)); });
    socket.on('error', (error) => { clearTimeout(timer); finish('ERR:' + error.code); });
    socket.send('ping', port, host);
    return;
  }
  let data = '';
  const socket = net.connect({ host, port, localAddress: local });
  socket.setTimeout(3000, () => { socket.destroy(); finish('ERR:timeout'); });
  socket.on('data', (chunk) => { data += chunk; });
  socket.on('end', () => finish(data.trim()));
  socket.on('error', (error) => finish('ERR:' + error.code));
});
console.log(JSON.stringify({ ready: true }));
`;

function startNodeInNetns(
  netnsPath: string,
  code: string,
  args: string[],
  identity?: { uid: number; gid: number },
  env: Record<string, string> = {},
): ChildProcessWithoutNullStreams {
  const ids = identity ? ['--setuid', String(identity.uid), '--setgid', String(identity.gid)] : [];
  return spawn('nsenter', [`--net=${netnsPath}`, ...ids, '--', nodeForAnyUser(), '-e', code, ...args], { stdio: 'pipe', env: { ...process.env, ...env } });
}

function firstLine(child: ChildProcessWithoutNullStreams, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}) before ready: ${stderr}`)));
    child.stdout.once('data', () => resolve());
  });
}

export interface Listeners {
  stop(): void;
}

/**
 * Listeners on the given ports (all addresses; "udp:N" for UDP) inside the netns, answering
 * "<name>:<port>", plus " orig=<address>:<port>" (the dialled destination) with originalDst.
 */
export async function startListeners(
  netnsPath: string,
  name: string,
  ports: (number | `udp:${number}`)[],
  identity?: { uid: number; gid: number },
  opts: { originalDst?: boolean } = {},
): Promise<Listeners> {
  const env: Record<string, string> = opts.originalDst ? { PNC_ORIGINAL_DST: '1' } : {};
  const child = startNodeInNetns(netnsPath, LISTENER, [name, ...ports.map(String)], identity, env);
  await firstLine(child, `listeners ${name}`);
  return { stop: () => child.kill('SIGKILL') };
}

export interface TcpClient {
  /** Connects to host:port (from localAddress if given) and resolves with the server's answer ("<name>:<port>") or "ERR:<code>". */
  connect(host: string, port: number, localAddress?: string): Promise<string>;
  /** Sends one UDP datagram to host:port and resolves with the answer ("<name>:udp:<port>") or "ERR:<code>". */
  udp(host: string, port: number): Promise<string>;
  stop(): void;
}

/** A long-lived client process inside the netns running as uid/gid (one process, many connections). */
export async function startClient(netnsPath: string, identity: { uid: number; gid: number }): Promise<TcpClient> {
  const child = startNodeInNetns(netnsPath, CLIENT, [], identity);
  await firstLine(child, `client uid ${identity.uid}`);
  const pending = new Map<number, (reply: string) => void>();
  let nextId = 0;
  createInterface({ input: child.stdout }).on('line', (line) => {
    const { id, reply } = JSON.parse(line) as { id: number; reply: string };
    pending.get(id)?.(reply);
    pending.delete(id);
  });
  const request = (host: string, port: number, udp: boolean, local?: string) =>
    new Promise<string>((resolve) => {
      const id = nextId++;
      pending.set(id, resolve);
      child.stdin.write(JSON.stringify({ id, host, port, udp, local }) + '\n');
    });
  return {
    connect: (host, port, localAddress) => request(host, port, false, localAddress),
    udp: (host, port) => request(host, port, true),
    stop: () => child.kill('SIGKILL'),
  };
}

/**
 * One connection from inside the netns as `uid` (gid the same) to host:port: resolves with
 * the listener's answer ("<name>:<port>", see startListeners) or "ERR:<code>".
 */
export async function connectFrom(netnsPath: string, host: string, port: number, uid: number): Promise<string> {
  const client = await startClient(netnsPath, { uid, gid: uid });
  try {
    return await client.connect(host, port);
  } finally {
    client.stop();
  }
}
