// Pod + node configuration -> RedirectPlan (pure). Every annotation value is validated;
// any bad value throws AnnotationError and no plan exists, so nothing half-applies.
import { parseDocument } from 'yaml';
import {
  ANNOTATIONS,
  InvalidValue,
  parseCidr,
  parseCidrList,
  parseCidrListOrAll,
  parseInterfaceList,
  parsePort,
  parsePortList,
  parsePortListOrAll,
  sortedUnique,
  UNSUPPORTED_ANNOTATIONS,
  type Cidr,
} from '../pod-contract/index.ts';
import { AnnotationError, NodeConfigError } from './errors.ts';
import {
  BUILTIN_EXCLUDED_INBOUND_PORTS,
  DEFAULT_NODE_CONFIG,
  DEFAULT_STATUS_PORT,
  FAMILIES,
  type CidrsByFamily,
  type Family,
  type NodeRedirectConfig,
  type PodLike,
  type ProxyIdentity,
  type RedirectPlan,
  type ValidatedNodeConfig,
} from './types.ts';

/** Longer values are refused before parsing (a list of 256 IPv6 CIDRs fits easily). */
const MAX_ANNOTATION_LENGTH = 16_384;

export function podKey(pod: PodLike): string {
  return `${pod.metadata?.namespace ?? 'default'}/${pod.metadata?.name ?? '<unnamed>'}`;
}

function isPort(value: number): boolean {
  return Number.isInteger(value) && value >= 1 && value <= 65535;
}

function failConfig(field: string, value: unknown, why: string): never {
  throw new NodeConfigError(`node config ${field}=${JSON.stringify(value)}: ${why}`);
}

function checkProxyIds(identity: ProxyIdentity): void {
  for (const [field, id] of [
    ['proxyUid', identity.uid],
    ['proxyGid', identity.gid],
  ] as const) {
    // 0 would exempt every root process of the pod from redirection.
    if (!Number.isInteger(id) || id < 1 || id > 0xfffffffe) failConfig(field, id, 'must be an integer 1..4294967294');
  }
}

/** The config, frozen and marked validated; throws NodeConfigError naming the first bad field. */
export function validateNodeConfig(config: NodeRedirectConfig): ValidatedNodeConfig {
  checkProxyIds({ uid: config.proxyUid, gid: config.proxyGid });
  for (const field of ['outboundPort', 'inboundPort', 'dnsPort'] as const) {
    if (!isPort(config[field])) failConfig(field, config[field], 'must be a port 1..65535');
  }
  if (typeof config.captureDns !== 'boolean') failConfig('captureDns', config.captureDns, 'must be a boolean');
  const families = config.families;
  if (
    !Array.isArray(families) ||
    families.length === 0 ||
    new Set(families).size !== families.length ||
    families.some((family) => !FAMILIES.includes(family))
  ) {
    failConfig('families', families, 'must be a non-empty list of distinct ipv4/ipv6');
  }
  for (const field of ['excludeInboundPorts', 'excludeOutboundPorts'] as const) {
    const ports = config[field];
    if (!Array.isArray(ports) || !ports.every(isPort)) failConfig(field, ports, 'must be a list of ports 1..65535');
  }
  if (!Array.isArray(config.excludeOutboundCidrs)) failConfig('excludeOutboundCidrs', config.excludeOutboundCidrs, 'must be a list');
  for (const text of config.excludeOutboundCidrs) {
    let cidr: Cidr;
    try {
      cidr = parseCidr(String(text));
    } catch (error) {
      return failConfig('excludeOutboundCidrs', text, (error as Error).message);
    }
    if (!families.includes(cidr.family)) failConfig('excludeOutboundCidrs', text, `is ${cidr.family} but families are ${families.join(',')}`);
  }
  const frozen = <T>(list: T[]) => Object.freeze([...list]) as T[];
  return Object.freeze({
    ...config,
    families: frozen(families),
    excludeInboundPorts: frozen(config.excludeInboundPorts),
    excludeOutboundPorts: frozen(config.excludeOutboundPorts),
    excludeOutboundCidrs: frozen(config.excludeOutboundCidrs),
  }) as ValidatedNodeConfig;
}

const DEFAULT_VALIDATED = validateNodeConfig(DEFAULT_NODE_CONFIG);

function byFamily(cidrs: Cidr[]): CidrsByFamily {
  const sorted = (family: Family) => [...new Set(cidrs.filter((c) => c.family === family).map((c) => c.text))].sort();
  return { ipv4: sorted('ipv4'), ipv6: sorted('ipv6') };
}

/**
 * Computes the pod's plan. Pure: reads only the pod's annotations, the node config and the
 * proxy identity (the node's unless given: the agent decides it per pod from the proxy
 * container). Throws AnnotationError for any bad annotation value, NodeConfigError for a
 * root or out-of-range identity. No annotation can change the proxy UID/GID or ports.
 */
export function planFromPod(pod: PodLike, config: ValidatedNodeConfig = DEFAULT_VALIDATED, proxy?: ProxyIdentity): RedirectPlan {
  const identity = proxy ?? { uid: config.proxyUid, gid: config.proxyGid };
  if (proxy) checkProxyIds(proxy);
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

  for (const [name, reason] of Object.entries(UNSUPPORTED_ANNOTATIONS)) {
    const value = read(name);
    if (value !== undefined) throw new AnnotationError(key, name, value, reason);
  }
  const mode = read(ANNOTATIONS.interceptionMode);
  if (mode !== undefined) checkInterceptionMode(key, ANNOTATIONS.interceptionMode, mode, mode);
  const proxyConfigText = read(ANNOTATIONS.proxyConfig);
  const captureDns = proxyConfigText === undefined ? config.captureDns : readProxyConfig(key, proxyConfigText, config.captureDns);

  const includeInbound = parse(ANNOTATIONS.includeInboundPorts, parsePortListOrAll, '*' as const);
  // As in Istio, exclusions apply only to "*": a list captures exactly its ports (but never 15008).
  const excludeInbound = parse(ANNOTATIONS.excludeInboundPorts, parsePortList, []);
  const statusPort = parse(ANNOTATIONS.statusPort, parseStatusPort, DEFAULT_STATUS_PORT);

  const includeCidrs = parse(ANNOTATIONS.includeOutboundIPRanges, parseCidrListOrAll, '*' as const);
  const excludeCidrs = parse(ANNOTATIONS.excludeOutboundIPRanges, parseCidrList, []);
  if (includeCidrs !== '*') checkFamilies(ANNOTATIONS.includeOutboundIPRanges, includeCidrs);
  // Excluding a family this node does not redirect changes nothing (Istio's injector writes
  // mesh-wide lists of both families); capturing one it cannot is refused above.
  const includeOutboundPorts = parse(ANNOTATIONS.includeOutboundPorts, parsePortList, []);
  const excludeOutboundPorts = parse(ANNOTATIONS.excludeOutboundPorts, parsePortList, []);
  const excludeInterfaces = parse(ANNOTATIONS.excludeInterfaces, parseInterfaceList, []);

  const nodeExcludedCidrs = config.excludeOutboundCidrs.map((text) => parseCidr(text));
  return {
    pod: key,
    families: FAMILIES.filter((family) => config.families.includes(family)),
    proxyUid: identity.uid,
    proxyGid: identity.gid,
    outboundPort: config.outboundPort,
    inboundPort: config.inboundPort,
    dnsPort: config.dnsPort,
    captureDns,
    excludeInterfaces,
    inbound: {
      includePorts: includeInbound,
      excludePorts:
        includeInbound === '*'
          ? sortedUnique([
              ...BUILTIN_EXCLUDED_INBOUND_PORTS,
              ...(statusPort === undefined ? [] : [statusPort]),
              ...config.excludeInboundPorts,
              ...excludeInbound,
            ])
          : [],
    },
    outbound: {
      includeCidrs: includeCidrs === '*' ? '*' : byFamily(includeCidrs),
      includesLoopback: includeCidrs !== '*' && includeCidrs.some((cidr) => cidr.loopback),
      excludeCidrs: byFamily([...nodeExcludedCidrs, ...excludeCidrs.filter((cidr) => config.families.includes(cidr.family))]),
      includePorts: includeOutboundPorts,
      excludePorts: sortedUnique([...config.excludeOutboundPorts, ...excludeOutboundPorts]),
    },
  };
}

/** "" or "0" mean no status port (Istio's injector then excludes none); else a port. */
function parseStatusPort(text: string): number | undefined {
  const trimmed = text.trim();
  return trimmed === '' || trimmed === '0' ? undefined : parsePort(trimmed);
}

function checkInterceptionMode(pod: string, annotation: string, value: string, mode: unknown): void {
  if (mode === 'REDIRECT') return;
  const reason =
    mode === 'TPROXY'
      ? 'TPROXY interception is not supported, only REDIRECT (remove the annotation or set REDIRECT)'
      : mode === 'NONE'
        ? 'NONE (no redirection) is not supported: every pod this controller handles is redirected (opt the pod out of the mesh with sidecar.istio.io/inject: "false")'
        : 'only REDIRECT is supported';
  throw new AnnotationError(pod, annotation, value, reason);
}

/** Go's strconv.ParseBool, which Istio uses for proxyMetadata switches. */
const TRUE_WORDS = ['1', 't', 'T', 'TRUE', 'true', 'True'];
const FALSE_WORDS = ['0', 'f', 'F', 'FALSE', 'false', 'False'];

function proxyBool(value: unknown): boolean | undefined {
  const text = typeof value === 'boolean' ? String(value) : value;
  if (typeof text !== 'string') return undefined;
  if (TRUE_WORDS.includes(text)) return true;
  if (FALSE_WORDS.includes(text)) return false;
  return undefined;
}

/**
 * Reads the pod's proxy.istio.io/config (Istio's ProxyConfig, YAML or JSON): DNS capture from
 * proxyMetadata.ISTIO_META_DNS_CAPTURE (else the node's default); settings that would change
 * redirection in ways not implemented here are refused rather than ignored.
 */
function readProxyConfig(pod: string, text: string, nodeCaptureDns: boolean): boolean {
  const name = ANNOTATIONS.proxyConfig;
  const fail = (reason: string): never => {
    throw new AnnotationError(pod, name, text, reason);
  };
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0) fail(`is not valid YAML/JSON: ${doc.errors[0]!.message.split('\n')[0]}`);
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 10 });
  } catch (error) {
    return fail(`is not valid YAML/JSON: ${(error as Error).message}`);
  }
  if (value === null || value === undefined) return nodeCaptureDns;
  if (typeof value !== 'object' || Array.isArray(value)) return fail('is not a ProxyConfig object');
  const proxyConfig = value as Record<string, unknown>;
  if (proxyConfig.interceptionMode !== undefined) checkInterceptionMode(pod, name, text, proxyConfig.interceptionMode);
  const metadata = proxyConfig.proxyMetadata;
  if (metadata === undefined || metadata === null) return nodeCaptureDns;
  if (typeof metadata !== 'object' || Array.isArray(metadata)) return fail('proxyMetadata is not a map of strings');
  const env = metadata as Record<string, unknown>;
  if (env.INVALID_DROP !== undefined && proxyBool(env.INVALID_DROP) !== false) {
    fail('proxyMetadata.INVALID_DROP (dropping invalid packets in the mangle table) is not supported');
  }
  const dns = env.ISTIO_META_DNS_CAPTURE;
  if (dns === undefined) return nodeCaptureDns;
  return proxyBool(dns) ?? fail(`proxyMetadata.ISTIO_META_DNS_CAPTURE=${JSON.stringify(dns)} is not "true" or "false"`);
}
