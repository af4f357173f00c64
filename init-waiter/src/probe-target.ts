// Chooses where the self-test dials so that, under the pod's own Istio traffic
// annotations, the connection IS one the redirect must capture (pure). Otherwise a pod
// that excludes the probe's port or range would fail the self-test although its rules
// are right. Mirrors ISTIO_OUTPUT's order for the app's traffic: excluded interfaces,
// excluded ports, excluded CIDRs RETURN; included ports, included CIDRs ('*' = all) REDIRECT.
import {
  addressValue,
  ANNOTATIONS,
  cidrBounds,
  formatAddress,
  InvalidValue,
  parseCidr,
  parseCidrList,
  parseCidrListOrAll,
  parseInterfaceList,
  parsePortList,
  type Cidr,
  type Family,
} from '../../controller/src/pod-contract/index.ts';

export type { Family };

export interface ProbeTarget {
  family: Family;
  address: string;
  port: number;
}

/** The pod's interfaces other than loopback, with their addresses as CIDRs ("192.0.2.1/24"). */
export type PodInterfaces = readonly { name: string; cidrs: readonly string[] }[];

/** The pod's routes ("0.0.0.0/0" is the default) and the interface each leaves by. */
export type PodRoutes = readonly { cidr: string; ifname: string }[];

/** What the waiter knows of the pod's network; without routes, only the interfaces' own subnets tell where a probe leaves. */
export interface PodNetwork {
  interfaces: PodInterfaces;
  routes?: PodRoutes;
}

/** A target, or why this family has none (logged; its self-test is skipped). */
export type ProbeChoice = { target: ProbeTarget } | { skip: string };

const OUTBOUND_ANNOTATIONS = {
  includeCidrs: ANNOTATIONS.includeOutboundIPRanges,
  excludeCidrs: ANNOTATIONS.excludeOutboundIPRanges,
  includePorts: ANNOTATIONS.includeOutboundPorts,
  excludePorts: ANNOTATIONS.excludeOutboundPorts,
  excludeInterfaces: ANNOTATIONS.excludeInterfaces,
} as const;

/** Stand in for '*' when the probe address is excluded: addresses that lead nowhere real if the probe escapes. */
const DOCUMENTATION_RANGES: Record<Family, string[]> = {
  ipv4: ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24'],
  ipv6: ['2001:db8::/32'],
};
/** Never captured for the app: ISTIO_OUTPUT lets its loopback traffic go. */
const LOOPBACK: Record<Family, string> = { ipv4: '127.0.0.0/8', ipv6: '::1/128' };
/** The app's port-53 traffic goes to the proxy's DNS port when DNS capture is on, not to the capture port. */
const DNS_PORT = 53;
const BITS_MAX: Record<Family, bigint> = { ipv4: (1n << 32n) - 1n, ipv6: (1n << 128n) - 1n };

export class ProbeTargetError extends Error {
  override name = 'ProbeTargetError';
}

interface Avoided {
  first: bigint;
  last: bigint;
  /** Why an address in it cannot be the probe. */
  why: string;
}

/**
 * Throws ProbeTargetError only for an annotation value that does not parse (naming it); the
 * agent refuses such a pod too. Every valid combination gives a target or a reason to skip.
 */
export function chooseProbeTarget(
  annotations: ReadonlyMap<string, string>,
  family: Family,
  preferred: { address: string; port: number },
  { interfaces, routes }: PodNetwork,
): ProbeChoice {
  const a = OUTBOUND_ANNOTATIONS;
  const shown = (key: string) => `${key}=${JSON.stringify(annotations.get(key))}`;
  const includeAll = parseWith(annotations, a.includeCidrs, parseCidrListOrAll) ?? '*';
  const included = includeAll === '*' ? '*' : includeAll.filter((cidr) => cidr.family === family);
  const excludedPorts = new Set([DNS_PORT, ...(parseWith(annotations, a.excludePorts, parsePortList) ?? [])]);
  const includedPort = (parseWith(annotations, a.includePorts, parsePortList) ?? []).find((port) => !excludedPorts.has(port));
  const excludedInterfaces = new Set(parseWith(annotations, a.excludeInterfaces, parseInterfaceList) ?? []);

  if (included !== '*' && included.length === 0 && includedPort === undefined) {
    const ports = annotations.has(a.includePorts)
      ? `every port of ${shown(a.includePorts)} is excluded (by ${a.excludePorts}, or 53, which DNS capture takes)`
      : `there is no ${a.includePorts}`;
    return { skip: `${shown(a.includeCidrs)} names no ${family} range and ${ports}: no ${family} outbound traffic is captured, nothing to prove` };
  }
  const names = interfaces.map((link) => link.name);
  if (names.length > 0 && names.every((name) => excludedInterfaces.has(name))) {
    return { skip: `${shown(a.excludeInterfaces)} names every interface of the pod (${names.join(', ')}): no outbound traffic is captured, nothing to prove` };
  }

  const avoided: Avoided[] = [
    ...(parseWith(annotations, a.excludeCidrs, parseCidrList) ?? [])
      .filter((cidr) => cidr.family === family)
      .map((cidr) => ({ ...cidrBounds(cidr), why: `in ${a.excludeCidrs} ${cidr.text}` })),
    { ...cidrBounds(parseCidr(LOOPBACK[family])), why: 'loopback' },
    ...interfaces.flatMap((link) =>
      link.cidrs.flatMap((written) => {
        const subnet = parseCidr(written);
        if (subnet.family !== family) return [];
        // The pod's own address is reached over lo, which ISTIO_OUTPUT lets go.
        const own = { ...cidrBounds(parseCidr(written.split('/')[0]!)), why: "the pod's own address" };
        return excludedInterfaces.has(link.name) ? [own, { ...cidrBounds(subnet), why: `on ${link.name}, which ${a.excludeInterfaces} names` }] : [own];
      }),
    ),
  ];
  // Where a probe leaves (most specific route): by an excluded interface, or over lo, it is not captured.
  const known = routes
    ?.map((route) => ({ ...route, cidr: parseCidr(route.cidr) }))
    .filter((route) => route.cidr.family === family)
    .sort((x, y) => y.cidr.prefix - x.cidr.prefix);
  /** Why the addresses looked at could not be the probe: the reason of a skip. */
  const seen = new Set<string>();
  const unusable = (value: bigint): Avoided | undefined => {
    const hit = avoided.find((range) => inside(range, value)) ?? exitProblem(value);
    if (hit) seen.add(hit.why);
    return hit;
  };
  const exitProblem = (value: bigint): Avoided | undefined => {
    if (known === undefined) return undefined;
    const route = known.find((candidate) => inside(cidrBounds(candidate.cidr), value));
    if (route === undefined) {
      // No route: skip to the next address some route covers.
      const next = known.map((candidate) => cidrBounds(candidate.cidr).first).filter((first) => first > value);
      return { first: value, last: next.length > 0 ? next.reduce((x, y) => (y < x ? y : x)) - 1n : BITS_MAX[family], why: 'no route' };
    }
    if (route.ifname === 'lo') return { ...cidrBounds(route.cidr), why: `routed over lo (${route.cidr.text})` };
    if (excludedInterfaces.has(route.ifname))
      return { ...cidrBounds(route.cidr), why: `routed out of ${route.ifname} (${route.cidr.text}), which ${a.excludeInterfaces} names` };
    return undefined;
  };
  const port = firstFreePort(preferred.port, excludedPorts);
  const captures = (value: bigint) => included === '*' || included.some((cidr) => inside(cidrBounds(cidr), value));
  const target = (value: bigint, targetPort: number): ProbeChoice => ({ target: { family, address: formatAddress(family, value), port: targetPort } });

  const preferredValue = addressValue(family, preferred.address);
  if (unusable(preferredValue) === undefined) {
    if (port !== undefined && captures(preferredValue)) return target(preferredValue, port);
    if (includedPort !== undefined) return target(preferredValue, includedPort);
  }
  // Another address: the first usable host of the first included range that has one.
  seen.clear();
  const searched: Cidr[] = included === '*' ? DOCUMENTATION_RANGES[family].map((range) => parseCidr(range)) : included;
  if (port !== undefined) {
    for (const cidr of searched) {
      const host = firstUsableHost(cidr, unusable);
      if (host !== undefined) return target(host, port);
    }
  }
  if (includedPort !== undefined) {
    for (const cidr of DOCUMENTATION_RANGES[family].map((range) => parseCidr(range))) {
      const host = firstUsableHost(cidr, unusable);
      if (host !== undefined) return target(host, includedPort);
    }
  }
  const ranges = included === '*' ? `the documentation ranges (${DOCUMENTATION_RANGES[family].join(', ')}), standing in for "*"` : shown(a.includeCidrs);
  const reasons = [...seen].join('; ');
  return {
    skip:
      port === undefined
        ? `every port from ${preferred.port} up is in ${shown(a.excludePorts)}: no port to probe`
        : `no ${family} address to probe: every host of ${ranges} is excluded (${reasons}); set --probe-address to a captured address`,
  };
}

function inside(range: { first: bigint; last: bigint }, value: bigint): boolean {
  return range.first <= value && value <= range.last;
}

function firstFreePort(from: number, excluded: ReadonlySet<number>): number | undefined {
  for (let port = from; port <= 65_535; port++) if (!excluded.has(port)) return port;
  return undefined;
}

/**
 * The lowest address of the CIDR that no avoided range holds, leaving out the network
 * address (and IPv4's broadcast) of ranges that have hosts besides. Each step jumps past
 * the range it hit (an avoided one, or a route out of an excluded interface), so this ends
 * after at most one step per range and route.
 */
function firstUsableHost(cidr: Cidr, unusable: (value: bigint) => Avoided | undefined): bigint | undefined {
  const { first, last } = cidrBounds(cidr);
  const hostBits = (cidr.family === 'ipv4' ? 32 : 128) - cidr.prefix;
  let candidate = hostBits > 1 ? first + 1n : first;
  const end = hostBits > 1 && cidr.family === 'ipv4' ? last - 1n : last;
  while (candidate <= end) {
    const hit = unusable(candidate);
    if (!hit) return candidate;
    candidate = hit.last + 1n;
  }
  return undefined;
}

/** Parses with the controller's own parser (so both read an annotation alike), naming annotation and value on error. */
function parseWith<T>(annotations: ReadonlyMap<string, string>, key: string, parse: (text: string) => T): T | undefined {
  const value = annotations.get(key);
  if (value === undefined) return undefined;
  try {
    return parse(value);
  } catch (error) {
    if (!(error instanceof InvalidValue)) throw error;
    throw new ProbeTargetError(`${key}=${JSON.stringify(value)}: ${error.message}`);
  }
}
