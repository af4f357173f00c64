// The netns record (format in pod-contract/mark.ts): the alias of the pod netns's own `lo`,
// written and cleared with `ip link set dev lo alias TEXT` inside the netns and read back with
// `ip -j link show dev lo`. Only CAP_NET_ADMIN over the netns can write an interface alias, and
// the kernel drops it with the netns; any UID in the pod reads it from /sys/class/net/lo/ifalias.
import { RedirectError } from './errors.ts';
import { runInNetns, type Netns } from './exec.ts';

/** The kernel's IFALIASZ (256) less the terminating NUL. */
const MAX_ALIAS_BYTES = 255;

/** Sets lo's alias; '' clears it. */
export async function writeNetnsRecord(netns: Netns, text: string): Promise<void> {
  if (Buffer.byteLength(text) > MAX_ALIAS_BYTES) throw new RedirectError(netns.path, `netns record over ${MAX_ALIAS_BYTES} bytes: ${text.slice(0, 80)}`);
  const result = await runInNetns(netns, ['ip', 'link', 'set', 'dev', 'lo', 'alias', text]);
  if (result.code !== 0) {
    throw new RedirectError(
      netns.path,
      `${text === '' ? 'clearing' : 'writing'} the netns record (lo's alias) failed (exit ${result.code}): ${result.stderr.trim()}`,
    );
  }
}

/** Prints lo's link as JSON, its alias (`ifalias`) included when it has one. */
export const READ_RECORD_ARGV = ['ip', '-j', 'link', 'show', 'dev', 'lo'];

/** lo's alias from what READ_RECORD_ARGV printed; '' when it has none. */
export function parseRecord(netns: Netns, stdout: string): string {
  let links: unknown;
  try {
    links = JSON.parse(stdout);
  } catch {
    throw new RedirectError(netns.path, `ip -j link show dev lo printed no JSON: ${stdout.slice(0, 120)}`);
  }
  const alias = Array.isArray(links) ? (links[0] as { ifalias?: unknown } | undefined)?.ifalias : undefined;
  return typeof alias === 'string' ? alias : '';
}
