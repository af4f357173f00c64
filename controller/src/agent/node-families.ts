// Which address families this node redirects: the configured ones (PNC_FAMILIES) the kernel
// can take (probed once at start), and which pods need one it cannot. Pure but for
// detectNodeFamilies, which runs the injected probe.
import type { V1Pod } from '@kubernetes/client-node';
import { ANNOTATIONS, InvalidValue, parseCidrListOrAll } from '../pod-contract/index.ts';
import { type Family, type FamilyProbe, podKey } from '../redirect/index.ts';

const ALL_FAMILIES: readonly Family[] = ['ipv4', 'ipv6'];

export interface NodeFamilies {
  /** Configured and working: what every plan programs, in ipv4, ipv6 order. */
  enabled: Family[];
  /** Configured but not working on this node, and why. */
  missing: ReadonlyMap<Family, string>;
  /** Left out by PNC_FAMILIES. */
  notConfigured: Family[];
}

/** The node's families from what is configured and what each configured family's probe found. */
export function decideNodeFamilies(configured: readonly Family[], probes: ReadonlyMap<Family, FamilyProbe>): NodeFamilies {
  const missing = new Map<Family, string>();
  for (const family of configured) {
    const probe = probes.get(family);
    if (probe === undefined) throw new Error(`bug: family ${family} is configured but was not probed`);
    if (!probe.ok) missing.set(family, probe.why);
  }
  return {
    enabled: ALL_FAMILIES.filter((family) => configured.includes(family) && !missing.has(family)),
    missing,
    notConfigured: ALL_FAMILIES.filter((family) => !configured.includes(family)),
  };
}

/** Every configured family works: what a node without probes (tests, tools) assumes. */
export function allConfigured(configured: readonly Family[]): NodeFamilies {
  return decideNodeFamilies(configured, new Map(configured.map((family) => [family, { ok: true } as const])));
}

/** Probes the configured families (in parallel) and decides. */
export async function detectNodeFamilies(configured: readonly Family[], probe: (family: Family) => Promise<FamilyProbe>): Promise<NodeFamilies> {
  const results = await Promise.all(configured.map(async (family) => [family, await probe(family)] as const));
  return decideNodeFamilies(configured, new Map(results));
}

/** One line per family, for /readyz and the start-up log. */
export function describeNodeFamilies(families: NodeFamilies): string[] {
  return ALL_FAMILIES.map((family) => {
    if (families.enabled.includes(family)) return `${family}: redirected`;
    const why = families.missing.get(family);
    return why === undefined ? `${family}: off (not in PNC_FAMILIES)` : `${family}: off: ${why}`;
  });
}

/** Of an address or a canonical CIDR: IPv6 ones, and only they, hold a colon. */
const familyOfAddress = (address: string): Family => (address.includes(':') ? 'ipv6' : 'ipv4');

/**
 * Why the pod cannot be redirected on this node, when it needs a family the kernel lacks;
 * undefined when it does not (nothing missing, or the pod uses only families that work).
 * A pod needs a family when it has an address of it (status.podIPs: its traffic of that
 * family would bypass the proxy) or captures a range of it (includeOutboundIPRanges). A
 * pod whose addresses are not known yet is 'unknown' while a family is missing: programming
 * it could let its traffic of that family out unredirected.
 */
export function missingFamilyNeed(pod: V1Pod, families: NodeFamilies): string | 'unknown' | undefined {
  if (families.missing.size === 0) return undefined;
  const cannot = (family: Family) => `this node cannot redirect ${family}: ${families.missing.get(family)}`;
  const addresses = (pod.status?.podIPs ?? []).map((entry) => entry.ip).filter((ip) => ip !== '');
  if (addresses.length === 0 && pod.status?.podIP) addresses.push(pod.status.podIP);
  for (const address of addresses) {
    const family = familyOfAddress(address);
    if (families.missing.has(family))
      return `refused: the pod has the ${family} address ${address}, but ${cannot(family)}; its ${family} traffic would bypass the proxy`;
  }
  const name = ANNOTATIONS.includeOutboundIPRanges;
  const value = pod.metadata?.annotations?.[name];
  if (value !== undefined) {
    let ranges: ReturnType<typeof parseCidrListOrAll> = [];
    try {
      ranges = parseCidrListOrAll(value);
    } catch (error) {
      // A bad value is the plan's to refuse, with its own message.
      if (!(error instanceof InvalidValue)) throw error;
    }
    const foreign = ranges === '*' ? undefined : ranges.find((cidr) => families.missing.has(cidr.family));
    if (foreign) return `refused: pod ${podKey(pod)} annotation ${name}=${JSON.stringify(value)} captures ${foreign.text}, but ${cannot(foreign.family)}`;
  }
  return addresses.length === 0 ? 'unknown' : undefined;
}

/**
 * The node's redirect settings narrowed to the enabled families. A CIDR the node excludes in a
 * family it cannot redirect changes nothing, so it goes too (settings whose lists disagree
 * with PNC_FAMILIES were refused before this).
 */
export function withEnabledFamilies<T extends { families: Family[]; excludeOutboundCidrs: string[] }>(settings: T, families: NodeFamilies): T {
  const enabled = (text: string) => families.enabled.includes(familyOfAddress(text));
  return { ...settings, families: families.enabled, excludeOutboundCidrs: settings.excludeOutboundCidrs.filter(enabled) };
}
