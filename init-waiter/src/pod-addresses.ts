// Whether the pod has IPv6, so the self-test must prove IPv6 capture too: the waiter
// shares the pod's netns, and /proc/net/if_inet6 lists its IPv6 addresses (no privilege).
import { readFileSync } from 'node:fs';

const SCOPE_GLOBAL = 0x00;
const IFA_F_DADFAILED = 0x08;

/**
 * Parses /proc/net/if_inet6 lines (`address ifindex prefixlen scope flags ifname`, hex
 * fields) and tells whether any global-scope address is usable. Link-local fe80::
 * addresses exist on IPv4-only pods too, so they do not count; neither does loopback.
 */
export function hasGlobalIpv6(ifInet6: string): boolean {
  for (const line of ifInet6.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 6) continue;
    const scope = parseInt(fields[3] as string, 16);
    const flags = parseInt(fields[4] as string, 16);
    if (scope === SCOPE_GLOBAL && (flags & IFA_F_DADFAILED) === 0) return true;
  }
  return false;
}

export function podHasIpv6(): boolean {
  try {
    return hasGlobalIpv6(readFileSync('/proc/net/if_inet6', 'utf8'));
  } catch {
    // No IPv6 in the kernel (or it is disabled): the file is absent.
    return false;
  }
}
