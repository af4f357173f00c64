// The stand-in proxy of the real-node tests and the demo (hack/images/test-proxy), run as
// the proxy UID in a netns of its own: what it answers must be the connection's original
// destination, read through SO_ORIGINAL_DST after a REDIRECT, for IPv4 and IPv6.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetns, deleteNetns, isRoot, ROOT_SKIP_MESSAGE, runInNetns, type TestNetns } from '../../hack/lib/netns.ts';
import { must, run } from '../../hack/lib/process.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const PROXY_UID = 1337;
// Documentation addresses nothing listens on: only the REDIRECT can answer them.
const REMOTE_V4 = '203.0.113.9';
const REMOTE_V6 = '2001:db8::9';
const POD_V4 = '198.51.100.7';
const POD_V6 = '2001:db8::7';

if (!isRoot) console.warn(`test-proxy: ${ROOT_SKIP_MESSAGE}`);

describe.skipIf(!isRoot)('test-proxy', () => {
  let dir: string;
  let binary: string;
  let netns: TestNetns | undefined;
  let proxy: ChildProcess | undefined;

  const connect = (address: string, port: number) => runInNetns(netns!.path, [binary, 'connect', address, String(port)]);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pnc-test-proxy-'));
    binary = join(dir, 'test-proxy');
    must(['bash', join(ROOT, 'hack/images/test-proxy/build.sh'), binary]);
    netns = createNetns('pnctp');
    // The pod's own addresses (a connection needs a source address besides 127.0.0.1).
    must(['ip', '-n', netns.name, 'addr', 'add', `${POD_V4}/32`, 'dev', 'lo']);
    must(['ip', '-n', netns.name, 'addr', 'add', `${POD_V6}/128`, 'dev', 'lo', 'nodad']);
    must(['ip', '-n', netns.name, 'route', 'add', `${REMOTE_V4}/32`, 'dev', 'lo']);
    must(['ip', '-n', netns.name, '-6', 'route', 'add', `${REMOTE_V6}/128`, 'dev', 'lo']);
    // Outbound to REMOTE_V4 lands on 15001, to REMOTE_V6 on 15006: each family on its own port.
    const redirect = (tool: string, destination: string, port: number) =>
      must([
        'ip',
        'netns',
        'exec',
        netns!.name,
        tool,
        '-w',
        '-t',
        'nat',
        '-A',
        'OUTPUT',
        '-p',
        'tcp',
        '-d',
        destination,
        '-j',
        'REDIRECT',
        '--to-ports',
        String(port),
      ]);
    redirect('iptables', REMOTE_V4, 15001);
    redirect('ip6tables', REMOTE_V6, 15006);
    proxy = spawn('nsenter', [`--net=${netns.path}`, '--', 'setpriv', `--reuid=${PROXY_UID}`, `--regid=${PROXY_UID}`, '--clear-groups', binary]);
    // Ready once both ports listen on both families.
    await new Promise<void>((resolveReady, reject) => {
      let stderr = '';
      proxy!.stderr!.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        if ((stderr.match(/listening on port \d+ \(ipv4 ipv6\)/g) ?? []).length === 2) resolveReady();
      });
      proxy!.once('exit', (code) => reject(new Error(`test-proxy exited (${code}) before listening: ${stderr}`)));
    });
  });

  afterAll(async () => {
    proxy?.kill('SIGKILL');
    deleteNetns(netns);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it.each([
    ['IPv4', REMOTE_V4, 8080, 15001, `${REMOTE_V4}:8080`, /^198\.51\.100\.7:\d+$/],
    ['IPv6', REMOTE_V6, 443, 15006, `[${REMOTE_V6}]:443`, /^\[2001:db8::7\]:\d+$/],
  ])('answers a redirected %s connection on its port with its original destination', (_family, address, port, listener, original, peer) => {
    const result = connect(address, port);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ listener, original, peer: expect.stringMatching(peer) });
  });

  it('answers a direct connection with its own address', () => {
    const result = connect('127.0.0.1', 15006);
    expect(JSON.parse(result.stdout)).toMatchObject({ listener: 15006, original: '127.0.0.1:15006' });
  });

  it('runs as the UID it was started with', () => {
    const status = must(['cat', `/proc/${proxy!.pid}/status`]);
    // nsenter execs setpriv, which execs the proxy: the same pid.
    expect(status).toMatch(new RegExp(`^Uid:\\s+${PROXY_UID}\\s+${PROXY_UID}\\s`, 'm'));
  });

  it('fails a connect with no answer and a bad invocation, saying why', () => {
    const refused = connect('127.0.0.1', 1);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/connect 127\.0\.0\.1 port 1: Connection refused/);
    const badPort = run([binary, 'listen', '99999']);
    expect(badPort.code).toBe(2);
    expect(badPort.stderr).toMatch(/bad port 99999/);
    expect(run([binary, 'connect', 'not-an-address', '80']).stderr).toMatch(/not-an-address is not an IP address/);
  });

  it('connect-as takes the UID before connecting, and exits 3 when the process may not', () => {
    const asProxy = runInNetns(netns!.path, [binary, 'connect-as', String(PROXY_UID), '127.0.0.1', '15006']);
    expect(asProxy.code).toBe(0);
    expect(JSON.parse(asProxy.stdout)).toMatchObject({ listener: 15006 });
    const unprivileged = runInNetns(netns!.path, [
      'setpriv',
      '--reuid=1000',
      '--regid=1000',
      '--clear-groups',
      '--',
      binary,
      'connect-as',
      String(PROXY_UID),
      '127.0.0.1',
      '15006',
    ]);
    expect(unprivileged.code).toBe(3);
    expect(unprivileged.stderr).toMatch(/setuid 1337: Operation not permitted/);
    expect(run([binary, 'connect-as', '-1', '127.0.0.1', '15006'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/-1 is not a UID/) });
  });

  it('exits on SIGTERM (as a container PID 1 it has to handle it itself)', async () => {
    const exited = new Promise<number | null>((resolveExit) => proxy!.once('exit', (code) => resolveExit(code)));
    proxy!.kill('SIGTERM');
    expect(await exited).toBe(128 + 15);
    proxy = undefined;
  });
});
