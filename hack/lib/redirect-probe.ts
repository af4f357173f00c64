// Looks into a pod's network namespace from outside: which iptables rules are there,
// and where a real TCP connection made inside it actually lands. Used by the
// controller's end-to-end tests and the demo, so both prove redirection the same way.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { runInNetns } from '../../controller/src/redirect/index.ts';

/** Our jump rules (nat PREROUTING -> ISTIO_INBOUND, OUTPUT -> ISTIO_OUTPUT) and ISTIO_* chains (any table), per save tool. */
export interface JumpRuleCount {
  tool: string;
  inbound: number;
  outbound: number;
  istioChains: number;
}

const SAVE_TOOLS = ['iptables-legacy-save', 'iptables-nft-save', 'ip6tables-legacy-save', 'ip6tables-nft-save'] as const;

async function saveInNetns(netnsPath: string, argv: string[]): Promise<string> {
  const result = await runInNetns(netnsPath, argv);
  if (result.code !== 0) throw new Error(`${argv.join(' ')} in ${netnsPath}: exit ${result.code}: ${result.stderr.trim()}`);
  return result.stdout;
}

/** `iptables-save -t nat` (of the given tool) inside a netns; stdout. */
export function natRules(netnsPath: string, tool = 'iptables-save'): Promise<string> {
  return saveInNetns(netnsPath, [tool, '-t', 'nat']);
}

/**
 * Pure: counts jumps to our chains in the nat table and ISTIO_* chain declarations in every
 * table of one `*-save` output. Loose on purpose (no owner comment needed), so a copy of the
 * rules made by someone else counts too.
 */
function countJumpRules(saveOutput: string): Omit<JumpRuleCount, 'tool'> {
  const counts = { inbound: 0, outbound: 0, istioChains: 0 };
  let table = '';
  for (const line of saveOutput.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1);
    else if (line.startsWith(':ISTIO_')) counts.istioChains++;
    else if (table === 'nat' && /^-A PREROUTING\b.*-j ISTIO_INBOUND\b/.test(line)) counts.inbound++;
    else if (table === 'nat' && /^-A OUTPUT\b.*-j ISTIO_OUTPUT\b/.test(line)) counts.outbound++;
  }
  return counts;
}

/**
 * Counts our jump rules with every backend (legacy and nft, IPv4 and IPv6), reading every
 * table, so rules programmed twice, into the wrong backend, or left in raw all show up.
 */
export async function jumpRuleCounts(netnsPath: string): Promise<JumpRuleCount[]> {
  return Promise.all(SAVE_TOOLS.map(async (tool) => ({ tool, ...countJumpRules(await saveInNetns(netnsPath, [tool])) })));
}

/** Pure: true when no backend of either family holds an ISTIO_* chain or one of our jumps. */
export function noRedirectRules(counts: readonly JumpRuleCount[]): boolean {
  return counts.every((c) => c.inbound === 0 && c.outbound === 0 && c.istioChains === 0);
}

// The node process that runs in a netns: listens on PORT and answers every connection
// with NAME, or connects to HOST:PORT as UID and prints the answer (or the error code).
const LISTENER_SCRIPT = `
const net = require('node:net');
const [port, name] = process.argv.slice(1);
const server = net.createServer((socket) => { socket.on('error', () => {}); socket.end(name); });
server.listen({ port: Number(port), host: '::', ipv6Only: false }, () => process.stdout.write('listening\\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`;

const CLIENT_SCRIPT = `
const net = require('node:net');
const [host, port, uid, timeout] = process.argv.slice(1);
process.setgid(Number(uid));
process.setuid(Number(uid));
let answer = '';
const socket = net.connect({ host, port: Number(port) });
socket.setTimeout(Number(timeout), () => { process.stdout.write('error:ETIMEDOUT'); process.exit(0); });
socket.on('data', (chunk) => { answer += chunk; });
socket.on('end', () => { process.stdout.write('answer:' + answer); process.exit(0); });
socket.on('error', (error) => { process.stdout.write('error:' + (error.code ?? error.message)); process.exit(0); });
`;

export interface Listener {
  stop(): Promise<void>;
}

/** Starts a TCP listener on all addresses of the netns that answers every connection with `name`. */
export async function startListener(netnsPath: string, port: number, name: string): Promise<Listener> {
  // The listener's own UID does not matter for redirection (only the connecting socket's owner does).
  const child = spawn('nsenter', [`--net=${netnsPath}`, '--', process.execPath, '-e', LISTENER_SCRIPT, String(port), name], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('listening')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`listener ${name} on port ${port} in ${netnsPath} exited ${code}: ${stderr.trim()}`)));
  });
  return { stop: () => stopChild(child) };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
  await exited;
  clearTimeout(timer);
}

/**
 * Connects from inside the netns as `uid` to host:port; resolves with the listener's
 * answer as `answer:<name>`, or `error:<code>` when the connection fails.
 */
export async function connectFrom(netnsPath: string, host: string, port: number, uid: number, timeoutMs = 3000): Promise<string> {
  const result = await runInNetns(netnsPath, [process.execPath, '-e', CLIENT_SCRIPT, host, String(port), String(uid), String(timeoutMs)]);
  if (result.code !== 0) throw new Error(`client in ${netnsPath}: exit ${result.code}: ${result.stderr.trim()}`);
  return result.stdout.trim();
}
