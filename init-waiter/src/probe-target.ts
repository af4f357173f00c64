// Chooses where the self-test dials so that, under the pod's own Istio traffic
// annotations, the connection IS one the redirect must capture (pure). Otherwise a pod
// that excludes the probe's port or range would fail the self-test although its rules
// are right. Mirrors ISTIO_OUTPUT's order: excluded ports RETURN, excluded CIDRs RETURN,
// included ports REDIRECT, included CIDRs ('*' = all) REDIRECT.
import { BlockList } from 'node:net';

export type Family = 'ipv4' | 'ipv6';

export interface ProbeTarget {
  family: Family;
  address: string;
  port: number;
}

export const OUTBOUND_ANNOTATIONS = {
  includeCidrs: 'traffic.sidecar.istio.io/includeOutboundIPRanges',
  excludeCidrs: 'traffic.sidecar.istio.io/excludeOutboundIPRanges',
  includePorts: 'traffic.sidecar.istio.io/includeOutboundPorts',
  excludePorts: 'traffic.sidecar.istio.io/excludeOutboundPorts',
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
export function chooseProbeTarget(
  annotations: ReadonlyMap<string, string>,
  family: Family,
  address: string,
  preferredPort: number,
): ProbeTarget | undefined {
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

function parsePorts(annotations: ReadonlyMap<string, string>, key: string): number[] {
  const value = annotations.get(key);
  if (value === undefined) return [];
  const ports: number[] = [];
  for (const entry of splitList(value)) {
    const port = /^\d{1,5}$/.test(entry) ? Number(entry) : NaN;
    if (!(port >= 1 && port <= 65_535)) throw new ProbeTargetError(`${key}=${JSON.stringify(value)}: ${JSON.stringify(entry)} is not a port`);
    ports.push(port);
  }
  return ports;
}

/** True when the address is in the annotation's CIDR list; `*` matches all; an absent annotation gives `absentMeans`. */
function matchesCidrs(
  annotations: ReadonlyMap<string, string>,
  key: string,
  family: Family,
  address: string,
  absentMeans: boolean,
): boolean {
  const value = annotations.get(key);
  if (value === undefined) return absentMeans;
  const list = new BlockList();
  for (const entry of splitList(value)) {
    if (entry === '*') return true;
    const [network, prefixText] = entry.split('/');
    const entryFamily = network?.includes(':') ? 'ipv6' : 'ipv4';
    const prefix = prefixText === undefined ? (entryFamily === 'ipv6' ? 128 : 32) : Number(prefixText);
    try {
      list.addSubnet(network as string, prefix, entryFamily);
    } catch {
      throw new ProbeTargetError(`${key}=${JSON.stringify(value)}: ${JSON.stringify(entry)} is not a CIDR`);
    }
  }
  return list.check(address, family);
}

function includesAnyOfFamily(annotations: ReadonlyMap<string, string>, family: Family): boolean {
  const value = annotations.get(OUTBOUND_ANNOTATIONS.includeCidrs);
  if (value === undefined) return true;
  return splitList(value).some((entry) => entry === '*' || entry.includes(':') === (family === 'ipv6'));
}

function splitList(value: string): string[] {
  return value
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
}
