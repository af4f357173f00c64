// Pod + node configuration -> RedirectPlan (pure). Every annotation value is validated;
// any bad value throws AnnotationError and no plan exists, so nothing half-applies.
import { InvalidValue, parseCidr, type Cidr } from './cidr.ts';
import { AnnotationError, NodeConfigError } from './errors.ts';
import { parseCidrList, parseCidrListOrAll, parseInterfaceList, parsePortList, parsePortListOrAll, sortedUnique } from './lists.ts';
import {
  BUILTIN_EXCLUDED_INBOUND_PORTS,
  DEFAULT_NODE_CONFIG,
  FAMILIES,
  type CidrsByFamily,
  type Family,
  type NodeRedirectConfig,
  type PodLike,
  type RedirectPlan,
} from './types.ts';

export const ANNOTATIONS = {
  interceptionMode: 'sidecar.istio.io/interceptionMode',
  includeInboundPorts: 'traffic.sidecar.istio.io/includeInboundPorts',
  excludeInboundPorts: 'traffic.sidecar.istio.io/excludeInboundPorts',
  includeOutboundIPRanges: 'traffic.sidecar.istio.io/includeOutboundIPRanges',
  excludeOutboundIPRanges: 'traffic.sidecar.istio.io/excludeOutboundIPRanges',
  includeOutboundPorts: 'traffic.sidecar.istio.io/includeOutboundPorts',
  excludeOutboundPorts: 'traffic.sidecar.istio.io/excludeOutboundPorts',
  excludeInterfaces: 'traffic.sidecar.istio.io/excludeInterfaces',
} as const;

/** Longer values are refused before parsing (a list of 256 IPv6 CIDRs fits easily). */
const MAX_ANNOTATION_LENGTH = 16_384;

export function podKey(pod: PodLike): string {
  return `${pod.metadata?.namespace ?? 'default'}/${pod.metadata?.name ?? '<unnamed>'}`;
}

function isPort(value: number): boolean {
  return Number.isInteger(value) && value >= 1 && value <= 65535;
}

/** Throws NodeConfigError naming the first bad field. */
export function validateNodeConfig(config: NodeRedirectConfig): void {
  const fail = (field: string, value: unknown, why: string) => {
    throw new NodeConfigError(`node config ${field}=${JSON.stringify(value)}: ${why}`);
  };
  for (const field of ['proxyUid', 'proxyGid'] as const) {
    const id = config[field];
    // 0 would exempt every root process of the pod from redirection.
    if (!Number.isInteger(id) || id < 1 || id > 0xfffffffe) fail(field, id, 'must be an integer 1..4294967294');
  }
  for (const field of ['outboundPort', 'inboundPort', 'dnsPort'] as const) {
    if (!isPort(config[field])) fail(field, config[field], 'must be a port 1..65535');
  }
  if (typeof config.captureDns !== 'boolean') fail('captureDns', config.captureDns, 'must be a boolean');
  const families = config.families;
  if (
    !Array.isArray(families) ||
    families.length === 0 ||
    new Set(families).size !== families.length ||
    families.some((family) => !FAMILIES.includes(family))
  ) {
    fail('families', families, 'must be a non-empty list of distinct ipv4/ipv6');
  }
  for (const field of ['excludeInboundPorts', 'excludeOutboundPorts'] as const) {
    const ports = config[field];
    if (!Array.isArray(ports) || !ports.every(isPort)) fail(field, ports, 'must be a list of ports 1..65535');
  }
  if (!Array.isArray(config.excludeOutboundCidrs)) fail('excludeOutboundCidrs', config.excludeOutboundCidrs, 'must be a list');
  for (const text of config.excludeOutboundCidrs) {
    let cidr: Cidr;
    try {
      cidr = parseCidr(String(text));
    } catch (error) {
      return fail('excludeOutboundCidrs', text, (error as Error).message);
    }
    if (!families.includes(cidr.family)) fail('excludeOutboundCidrs', text, `is ${cidr.family} but families are ${families.join(',')}`);
  }
}

function byFamily(cidrs: Cidr[]): CidrsByFamily {
  const sorted = (family: Family) => [...new Set(cidrs.filter((c) => c.family === family).map((c) => c.text))].sort();
  return { ipv4: sorted('ipv4'), ipv6: sorted('ipv6') };
}

/**
 * Computes the pod's plan. Pure: reads only the pod's annotations and the node config.
 * Throws AnnotationError for any bad annotation value, NodeConfigError for a bad config.
 * No annotation can change the proxy UID/GID or ports: those come from the node only.
 */
export function planFromPod(pod: PodLike, config: NodeRedirectConfig = DEFAULT_NODE_CONFIG): RedirectPlan {
  validateNodeConfig(config);
  const key = podKey(pod);
  const annotations: Record<string, unknown> = pod.metadata?.annotations ?? {};

  const read = (name: string): string | undefined => {
    const value = annotations[name];
    if (value === undefined) return undefined;
    if (typeof value !== 'string') throw new AnnotationError(key, name, String(value), 'is not a string');
    if (value.length > MAX_ANNOTATION_LENGTH) {
      throw new AnnotationError(key, name, value.slice(0, 64) + '...', `is longer than ${MAX_ANNOTATION_LENGTH} characters`);
    }
    return value;
  };
  const parse = <T>(name: string, parser: (text: string) => T, fallback: T): T => {
    const value = read(name);
    if (value === undefined) return fallback;
    try {
      return parser(value);
    } catch (error) {
      if (error instanceof InvalidValue) throw new AnnotationError(key, name, value, error.message);
      throw error;
    }
  };
  const checkFamilies = (name: string, cidrs: Cidr[]) => {
    const foreign = cidrs.find((cidr) => !config.families.includes(cidr.family));
    if (foreign) {
      throw new AnnotationError(key, name, read(name) ?? '', `${foreign.text} is ${foreign.family} but this node programs only ${config.families.join(',')}`);
    }
  };

  const mode = read(ANNOTATIONS.interceptionMode);
  if (mode !== undefined && mode !== 'REDIRECT') {
    throw new AnnotationError(key, ANNOTATIONS.interceptionMode, mode, 'only REDIRECT is supported');
  }

  const includeInbound = parse(ANNOTATIONS.includeInboundPorts, parsePortListOrAll, '*' as const);
  const excludeInbound = parse(ANNOTATIONS.excludeInboundPorts, parsePortList, []);
  if (Array.isArray(includeInbound) && includeInbound.length === 0 && excludeInbound.length > 0) {
    throw new AnnotationError(key, ANNOTATIONS.excludeInboundPorts, read(ANNOTATIONS.excludeInboundPorts) ?? '',
      `excludes ports while ${ANNOTATIONS.includeInboundPorts} is empty (captures nothing)`);
  }

  const includeCidrs = parse(ANNOTATIONS.includeOutboundIPRanges, parseCidrListOrAll, '*' as const);
  const excludeCidrs = parse(ANNOTATIONS.excludeOutboundIPRanges, parseCidrList, []);
  if (includeCidrs !== '*') checkFamilies(ANNOTATIONS.includeOutboundIPRanges, includeCidrs);
  checkFamilies(ANNOTATIONS.excludeOutboundIPRanges, excludeCidrs);
  if (Array.isArray(includeCidrs) && includeCidrs.length === 0 && excludeCidrs.length > 0) {
    throw new AnnotationError(key, ANNOTATIONS.excludeOutboundIPRanges, read(ANNOTATIONS.excludeOutboundIPRanges) ?? '',
      `excludes ranges while ${ANNOTATIONS.includeOutboundIPRanges} is empty (captures nothing)`);
  }
  const includeOutboundPorts = parse(ANNOTATIONS.includeOutboundPorts, parsePortList, []);
  const excludeOutboundPorts = parse(ANNOTATIONS.excludeOutboundPorts, parsePortList, []);
  const excludeInterfaces = parse(ANNOTATIONS.excludeInterfaces, parseInterfaceList, []);

  const nodeExcludedCidrs = config.excludeOutboundCidrs.map((text) => parseCidr(text));
  return {
    pod: key,
    families: FAMILIES.filter((family) => config.families.includes(family)),
    proxyUid: config.proxyUid,
    proxyGid: config.proxyGid,
    outboundPort: config.outboundPort,
    inboundPort: config.inboundPort,
    dnsPort: config.dnsPort,
    captureDns: config.captureDns,
    excludeInterfaces,
    inbound: {
      includePorts: includeInbound,
      excludePorts: sortedUnique([...BUILTIN_EXCLUDED_INBOUND_PORTS, ...config.excludeInboundPorts, ...excludeInbound]),
    },
    outbound: {
      includeCidrs: includeCidrs === '*' ? '*' : byFamily(includeCidrs),
      excludeCidrs: byFamily([...nodeExcludedCidrs, ...excludeCidrs]),
      includePorts: includeOutboundPorts,
      excludePorts: sortedUnique([...config.excludeOutboundPorts, ...excludeOutboundPorts]),
    },
  };
}
