// The address ::6/128 on the pod's lo, which IPv6 redirection needs besides the rules: the
// proxy binds its inbound passthrough connections to ::6 (IPv4 uses 127.0.0.6, which lo's
// 127.0.0.0/8 already covers; IPv6 lo has only ::1/128), and ISTIO_OUTPUT RETURNs traffic from
// it. Without the address, bind() fails with EADDRNOTAVAIL and every IPv6 inbound request
// through the proxy fails. Istio's istio-iptables adds it the same way; nobody removes it.
import { readFile, stat } from 'node:fs/promises';
import { RedirectError } from './errors.ts';
import { runInNetns, type Netns } from './exec.ts';

export const PASSTHROUGH_V6 = '::6/128';

/** present; absent; or off: lo has no IPv6 address at all (IPv6 disabled in the netns), so nothing can bind ::6 and nothing is needed. */
export type LoopbackV6State = 'present' | 'absent' | 'off';

/** Parses /proc/net/if_inet6 ("<32 hex address> <ifindex> <prefix hex> <scope> <flags> <name>"). */
function loopbackStateFromIfInet6(text: string): LoopbackV6State {
  const lo = text
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields[5] === 'lo');
  if (lo.length === 0) return 'off';
  return lo.some((fields) => fields[0] === '00000000000000000000000000000006' && fields[2] === '80') ? 'present' : 'absent';
}

/** Parses `ip -6 -o addr show dev lo`. */
function loopbackStateFromIp(text: string): LoopbackV6State {
  const lines = text.split('\n').filter((line) => / inet6 /.test(line));
  if (lines.length === 0) return 'off';
  return lines.some((line) => line.includes(` inet6 ${PASSTHROUGH_V6} `)) ? 'present' : 'absent';
}

/**
 * lo's state read from /proc/PID/net/if_inet6 when the netns is a process's (no process
 * started), undefined when it cannot be read so. The PID must still have the expected netns
 * after the read: else the file may have been another process's, after the PID was reused.
 */
async function stateFromProc(netns: Netns): Promise<LoopbackV6State | undefined> {
  const match = /^(.*\/\d+)\/ns\/net$/.exec(netns.path);
  if (!match) return undefined;
  try {
    const state = loopbackStateFromIfInet6(await readFile(`${match[1]}/net/if_inet6`, 'utf8'));
    return (await stat(netns.path)).ino === netns.inode ? state : undefined;
  } catch {
    // no IPv6 in the kernel, or the process is gone
    return undefined;
  }
}

/** The state when it can be read without entering the netns; else 'absent', so that the caller adds it (EEXIST is fine). */
export async function knownLoopbackV6(netns: Netns): Promise<LoopbackV6State> {
  return (await stateFromProc(netns)) ?? 'absent';
}

/** Reads the state: from /proc when the netns is a process's, else with one `ip` process inside it. */
export async function readLoopbackV6(netns: Netns): Promise<LoopbackV6State> {
  const known = await stateFromProc(netns);
  if (known !== undefined) return known;
  const result = await runInNetns(netns, ['ip', '-6', '-o', 'addr', 'show', 'dev', 'lo']);
  if (result.code !== 0) throw new RedirectError(netns.path, `ip -6 addr show dev lo failed (exit ${result.code}): ${result.stderr.trim()}`);
  return loopbackStateFromIp(result.stdout);
}

/** Istio's `ip -6 addr add ::6/128 dev lo`; the kernel's netlink acknowledgement (exit 0) is the proof. */
export const ADD_PASSTHROUGH_V6 = ['ip', '-6', 'addr', 'add', PASSTHROUGH_V6, 'dev', 'lo'];

/** EEXIST, worded by iproute2 or (with extended acks) by the kernel: the address is there. */
const ADDRESS_EXISTS = /RTNETLINK answers: File exists|address already assigned/;

/**
 * After running ADD_PASSTHROUGH_V6 (`succeeded`: it exited 0; `stderr` may hold other programs' too): true when it added the address, false when it was there
 * already or lo has IPv6 disabled (then nothing can bind ::6 and nothing needs it); else throws.
 */
export async function passthroughAddressAdded(netns: Netns, succeeded: boolean, stderr: string): Promise<boolean> {
  if (succeeded) return true;
  if (ADDRESS_EXISTS.test(stderr)) return false;
  const state = await readLoopbackV6(netns);
  if (state === 'present' || state === 'off') return false;
  throw new RedirectError(netns.path, `${ADD_PASSTHROUGH_V6.join(' ')} failed: ${stderr.trim()}`);
}
