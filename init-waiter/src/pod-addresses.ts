// The pod's addresses as the waiter sees them, sharing the pod's netns (no privilege needed):
// which families the self-test must prove, and which interfaces and addresses the probe must
// avoid and where it leaves (/proc/net/if_inet6 for usable IPv6, getifaddrs through
// os.networkInterfaces for the addresses, /proc/net/route and ipv6_route for the routes).
import { readFileSync } from 'node:fs';
import type { NetworkInterfaceInfo } from 'node:os';
import { formatAddress } from '../../controller/src/pod-contract/index.ts';
import type { PodInterfaces, PodRoutes } from './probe-target.ts';

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

/** The interfaces other than loopback, each with its addresses as CIDRs (os.networkInterfaces() shape). */
export function podInterfaces(found: NodeJS.Dict<NetworkInterfaceInfo[]>): PodInterfaces {
  return Object.entries(found).flatMap(([name, infos = []]) => {
    const cidrs = infos.filter((info) => !info.internal && info.cidr !== null).map((info) => info.cidr as string);
    return cidrs.length > 0 ? [{ name, cidrs }] : [];
  });
}

/** True when some interface but loopback has an IPv4 address (an IPv6-only pod has none to probe from). */
export function hasIpv4(interfaces: PodInterfaces): boolean {
  return interfaces.some((link) => link.cidrs.some((cidr) => !cidr.includes(':')));
}

const RTF_UP = 0x0001;

/**
 * The routes of /proc/net/route (IPv4: destination and mask as 32-bit hex in the host's byte
 * order, little-endian here) and /proc/net/ipv6_route (destination, prefix length in hex, ...,
 * flags, interface), each as a CIDR and the interface it leaves by. Routes that are not up are left out.
 */
export function parseRoutes(route: string, ipv6Route: string): PodRoutes {
  const routes: { cidr: string; ifname: string }[] = [];
  const hostOrder = (hex: string) => {
    const value = parseInt(hex, 16) >>> 0;
    return BigInt(((value & 0xff) << 24) | (((value >>> 8) & 0xff) << 16) | (((value >>> 16) & 0xff) << 8) | (value >>> 24)) & 0xffffffffn;
  };
  for (const line of route.split('\n').slice(1)) {
    const [ifname, destination, , flags, , , , mask] = line.trim().split(/\s+/);
    if (ifname === undefined || mask === undefined || !(parseInt(flags ?? '0', 16) & RTF_UP)) continue;
    const prefix = hostOrder(mask).toString(2).replace(/0+$/, '').length;
    routes.push({ cidr: `${formatAddress('ipv4', hostOrder(destination!))}/${prefix}`, ifname });
  }
  for (const line of ipv6Route.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10 || !(parseInt(fields[8]!, 16) & RTF_UP)) continue;
    routes.push({ cidr: `${formatAddress('ipv6', BigInt(`0x${fields[0]}`))}/${parseInt(fields[1]!, 16)}`, ifname: fields[9]! });
  }
  return routes;
}

/** The pod's routes, or undefined when the kernel does not show them (the probe then trusts the interfaces' subnets). */
export function podRoutes(): PodRoutes | undefined {
  try {
    const ipv6 = (() => {
      try {
        return readFileSync('/proc/net/ipv6_route', 'utf8');
      } catch {
        return ''; // no IPv6 in the kernel
      }
    })();
    return parseRoutes(readFileSync('/proc/net/route', 'utf8'), ipv6);
  } catch {
    return undefined;
  }
}
