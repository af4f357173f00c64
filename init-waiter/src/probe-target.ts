// Chooses where the self-test dials so that, under the pod's own Istio traffic
// annotations, the connection IS one the redirect must capture (pure). Otherwise a pod
// that excludes the probe's port or range would fail the self-test although its rules
// are right. Mirrors ISTIO_OUTPUT's order: excluded ports RETURN, excluded CIDRs RETURN,
// included ports REDIRECT, included CIDRs ('*' = all) REDIRECT.
import { BlockList } from 'node:net';
import { ANNOTATIONS, InvalidValue, parseCidrListOrAll, parsePortList, type Cidr, type Family } from '../../controller/src/pod-contract/index.ts';

export type { Family };

export interface ProbeTarget {
  family: Family;
  address: string;
  port: number;
}

const OUTBOUND_ANNOTATIONS = {
  includeCidrs: ANNOTATIONS.includeOutboundIPRanges,
  excludeCidrs: ANNOTATIONS.excludeOutboundIPRanges,
  includePorts: ANNOTATIONS.includeOutboundPorts,
  excludePorts: ANNOTATIONS.excludeOutboundPorts,
} as const;

export class ProbeTargetError extends Error {
  override name = 'ProbeTargetError';
}

/**
 * Returns undefined when the pod's annotations capture no outbound traffic of this family
 * at all (e.g. includeOutboundIPRanges lists only IPv4 ranges and no included ports):
 * there is nothing to prove. Throws ProbeTargetError naming the annotation and value when
 * capture exists but the probe address is outside it.
 */
export function chooseProbeTarget(annotations: ReadonlyMap<string, string>, family: Family, address: string, preferredPort: number): ProbeTarget | undefined {
  const excludedPorts = new Set(parsePorts(annotations, OUTBOUND_ANNOTATIONS.excludePorts));
  const includedPorts = parsePorts(annotations, OUTBOUND_ANNOTATIONS.includePorts);
  if (matchesCidrs(annotations, OUTBOUND_ANNOTATIONS.excludeCidrs, family, address, false)) {
    throw new ProbeTargetError(
      `probe address ${address} is in ${OUTBOUND_ANNOTATIONS.excludeCidrs}=${JSON.stringify(annotations.get(OUTBOUND_ANNOTATIONS.excludeCidrs))}; ` +
        'set --probe-address to a captured address, or --validate=false',
    );
  }
  if (matchesCidrs(annotations, OUTBOUND_ANNOTATIONS.includeCidrs, family, address, true)) {
    for (let port = preferredPort; port <= 65_535; port++) {
      if (!excludedPorts.has(port)) return { family, address, port };
    }
  }
  const includedPort = includedPorts.find((port) => !excludedPorts.has(port));
  if (includedPort !== undefined) return { family, address, port: includedPort };
  if (!includesAnyOfFamily(annotations, family)) return undefined;
  throw new ProbeTargetError(
    `probe address ${address} is not captured under ${OUTBOUND_ANNOTATIONS.includeCidrs}=${JSON.stringify(annotations.get(OUTBOUND_ANNOTATIONS.includeCidrs))} ` +
      `and no ${OUTBOUND_ANNOTATIONS.includePorts} applies; set --probe-address to a captured address, or --validate=false`,
  );
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

function parsePorts(annotations: ReadonlyMap<string, string>, key: string): number[] {
  return parseWith(annotations, key, parsePortList) ?? [];
}

/** True when the address is in the annotation's CIDR list; `*` matches all; an absent annotation gives `absentMeans`. */
function matchesCidrs(annotations: ReadonlyMap<string, string>, key: string, family: Family, address: string, absentMeans: boolean): boolean {
  const cidrs = parseWith(annotations, key, parseCidrListOrAll);
  if (cidrs === undefined) return absentMeans;
  if (cidrs === '*') return true;
  const list = new BlockList();
  for (const cidr of cidrs) list.addSubnet(cidr.text.split('/')[0]!, cidr.prefix, cidr.family);
  return list.check(address, family);
}

function includesAnyOfFamily(annotations: ReadonlyMap<string, string>, family: Family): boolean {
  const cidrs: '*' | Cidr[] | undefined = parseWith(annotations, OUTBOUND_ANNOTATIONS.includeCidrs, parseCidrListOrAll);
  return cidrs === undefined || cidrs === '*' || cidrs.some((cidr) => cidr.family === family);
}
