// The bypass the audit warns about is real: with the engine's rules in place for proxy UID
// 1337, a root process holding the container runtime's default capabilities calls
// setuid(1337) (or setgid(1337)) and its next connection reaches the remote host directly,
// while the same program as a non-root UID, or as root with every capability dropped, cannot
// and stays captured by 15001.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUNTIME_DEFAULT_CAPABILITIES } from '../../controller/src/agent/bypass-audit.ts';
import { type IptablesMode, applyRedirect, planFromPod } from '../../controller/src/redirect/index.ts';
import {
  type Listeners,
  ROOT_SKIP_MESSAGE,
  type TestNetns,
  connectNetns,
  createNetns,
  deleteNetns,
  isRoot,
  nodeForAnyUser,
  startListeners,
} from '../../hack/lib/netns.ts';
import { mustAsync } from '../../hack/lib/process.ts';

if (!isRoot) console.warn(`bypass-setuid: ${ROOT_SKIP_MESSAGE}`);

const PROXY_UID = 1337;
const REMOTE = '192.0.2.2';

// Connects, switches identity with the named call (setuid or setgid to 1337), connects again;
// prints what each connection's listener answered and how the switch went.
const SWITCH_AND_CONNECT = `
const net = require('node:net');
const [host, port, call] = process.argv.slice(1);
const connect = () => new Promise((resolve) => {
  let data = '';
  const socket = net.connect({ host, port: Number(port) });
  socket.setTimeout(3000, () => { socket.destroy(); resolve('ERR:timeout'); });
  socket.on('data', (chunk) => { data += chunk; });
  socket.on('end', () => resolve(data.trim()));
  socket.on('error', (error) => resolve('ERR:' + error.code));
});
(async () => {
  const before = await connect();
  let switched = 'ok';
  try { process[call](${PROXY_UID}); } catch (error) { switched = error.code; }
  const after = await connect();
  console.log(JSON.stringify({ before, switched, after }));
})();
`;

interface Outcome {
  before: string;
  switched: string;
  after: string;
}

describe.skipIf(!isRoot).each(['nft', 'legacy'] as IptablesMode[])('a bypass by setuid/setgid to the proxy identity (iptables-%s)', (mode) => {
  let podNs: TestNetns | undefined;
  let remoteNs: TestNetns | undefined;
  const listeners: Listeners[] = [];

  beforeAll(async () => {
    podNs = createNetns('pncb');
    remoteNs = createNetns('pncq');
    connectNetns({ netns: podNs, addresses: ['192.0.2.1/24'] }, { netns: remoteNs, addresses: [`${REMOTE}/24`] });
    listeners.push(await startListeners(podNs.path, 'pod', [15001]));
    listeners.push(await startListeners(remoteNs.path, 'remote', [80]));
    await applyRedirect(podNs.path, planFromPod({ metadata: { namespace: 'bypass', name: 'app' } }), { mode });
  });

  afterAll(() => {
    for (const listener of listeners) listener.stop();
    deleteNetns(podNs);
    deleteNetns(remoteNs);
  });

  /** The program in the pod's netns, started as `uid` with `capabilities` as its bounding set (root's effective set). */
  async function runAs(uid: number, capabilities: readonly string[], call: 'setuid' | 'setgid'): Promise<Outcome> {
    const bounding = ['-all', ...capabilities.map((c) => `+${c.toLowerCase()}`)].join(',');
    const identity = ['--reuid', String(uid), '--regid', String(uid), '--clear-groups'];
    const argv = [
      'nsenter',
      `--net=${podNs!.path}`,
      '--',
      'setpriv',
      ...identity,
      '--bounding-set',
      bounding,
      '--',
      nodeForAnyUser(),
      '-e',
      SWITCH_AND_CONNECT,
    ];
    return JSON.parse(await mustAsync([...argv, REMOTE, '80', call])) as Outcome;
  }

  it("root with the runtime's default capabilities escapes after setuid(1337)", async () => {
    expect(await runAs(0, RUNTIME_DEFAULT_CAPABILITIES, 'setuid')).toEqual({ before: 'pod:15001', switched: 'ok', after: 'remote:80' });
  });

  it('root escapes after setgid(1337) alone: the rules exempt the proxy GID too', async () => {
    expect(await runAs(0, ['SETGID'], 'setgid')).toEqual({ before: 'pod:15001', switched: 'ok', after: 'remote:80' });
  });

  it('a non-root UID cannot switch and stays captured', async () => {
    expect(await runAs(1000, RUNTIME_DEFAULT_CAPABILITIES, 'setuid')).toEqual({ before: 'pod:15001', switched: 'EPERM', after: 'pod:15001' });
  });

  it('root with every capability dropped cannot switch and stays captured', async () => {
    expect(await runAs(0, [], 'setuid')).toEqual({ before: 'pod:15001', switched: 'EPERM', after: 'pod:15001' });
  });
});
