// The agent's configuration: environment variables, each also a flag (flags win).
// Pure: parses plain string maps, so every bad value is unit-testable.
import { isIPv4, isIPv6 } from 'node:net';
import { parseArgs } from 'node:util';
import { InvalidValue, parseCidr } from '../pod-contract/index.ts';
import { BYPASS_POLICIES, type BypassPolicy, LINUX_CAPABILITIES, RUNTIME_DEFAULT_CAPABILITIES } from './bypass-audit.ts';
import { DEFAULT_NODE_CONFIG, IPTABLES_MODES, validateNodeConfig, type Family, type IptablesMode, type ValidatedNodeConfig } from '../redirect/index.ts';

export interface AgentConfig {
  nodeName: string;
  /** The controller's own namespace; always excluded. Empty when unknown. */
  podNamespace: string;
  /** The controller's own pod UID (downward API metadata.uid); empty when unknown. */
  podUid: string;
  proxyContainer: string;
  waiterContainer: string;
  /** Every excluded namespace, the controller's own included. */
  excludedNamespaces: ReadonlySet<string>;
  allowProxyUidApps: boolean;
  /** audit: warn about pods whose containers could bypass the redirect; strict: refuse them. */
  bypassPolicy: BypassPolicy;
  /** What the node's runtime gives a container that adds and drops nothing (names without `CAP_`). */
  runtimeDefaultCapabilities: ReadonlySet<string>;
  iptablesMode: IptablesMode | 'auto';
  /** Seconds iptables-restore waits for the xtables lock before the pod is retried later. */
  iptablesLockTimeout: number;
  httpPort: number;
  httpAddress: string;
  concurrency: number;
  procRoot: string;
  families: Family[];
  captureDns: boolean;
  excludeInboundPorts: number[];
  excludeOutboundPorts: number[];
  excludeOutboundCidrs: string[];
  logLevel: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly variable: string;
  readonly value: string;
  constructor(variable: string, value: string, why: string) {
    super(`invalid ${variable}=${JSON.stringify(value)}: ${why}`);
    this.variable = variable;
    this.value = value;
  }
}

interface Setting {
  env: string;
  help: string;
  defaultValue: string;
  boolean?: boolean;
}

/** Every setting, in help order. The flag of `PNC_HTTP_PORT` is `--http-port`. */
export const SETTINGS: readonly Setting[] = [
  { env: 'NODE_NAME', help: 'this node (required; downward API spec.nodeName)', defaultValue: '' },
  { env: 'POD_NAMESPACE', help: "the controller's own namespace, always excluded", defaultValue: '' },
  { env: 'POD_UID', help: "the controller's own pod UID (downward API metadata.uid), to know its own pod's cgroups", defaultValue: '' },
  { env: 'PNC_PROXY_CONTAINER', help: 'name of the sidecar proxy container', defaultValue: 'istio-proxy' },
  { env: 'PNC_WAITER_CONTAINER', help: 'name of the init-waiter init container', defaultValue: 'pnc-init-waiter' },
  { env: 'PNC_EXCLUDED_NAMESPACES', help: 'comma list of namespaces never touched', defaultValue: 'kube-system' },
  { env: 'PNC_ALLOW_PROXY_UID_APPS', help: 'allow app containers running as the proxy UID/GID', defaultValue: 'false', boolean: true },
  { env: 'PNC_BYPASS_POLICY', help: 'pods whose containers could bypass the redirect: audit (warn) | strict (refuse)', defaultValue: 'audit' },
  {
    env: 'PNC_RUNTIME_DEFAULT_CAPABILITIES',
    help: "comma list of the capabilities the node's container runtime gives by default (containerd's; 'none' for none)",
    defaultValue: RUNTIME_DEFAULT_CAPABILITIES.join(','),
  },
  { env: 'PNC_IPTABLES_MODE', help: 'auto | legacy | nft', defaultValue: 'auto' },
  { env: 'PNC_IPTABLES_LOCK_TIMEOUT', help: 'seconds to wait for the xtables lock (legacy) before retrying the pod later (1-300)', defaultValue: '10' },
  { env: 'PNC_HTTP_PORT', help: 'port of /healthz, /readyz, /metrics (0 = pick a free one)', defaultValue: '9102' },
  // Empty: every address of both families (`::`, or 0.0.0.0 on a kernel without IPv6), so the
  // kubelet's probes reach it on an IPv6-primary pod too.
  { env: 'PNC_HTTP_ADDRESS', help: 'address the HTTP server listens on (empty: every address, IPv6 and IPv4)', defaultValue: '' },
  { env: 'PNC_CONCURRENCY', help: 'pods programmed at the same time (1-64)', defaultValue: '4' },
  { env: 'PNC_PROC_ROOT', help: 'where the host /proc is (hostPID)', defaultValue: '/proc' },
  { env: 'PNC_FAMILIES', help: 'address families to redirect: ipv4,ipv6', defaultValue: 'ipv4,ipv6' },
  { env: 'PNC_CAPTURE_DNS', help: 'also redirect DNS (port 53) to the proxy', defaultValue: 'false', boolean: true },
  { env: 'PNC_EXCLUDE_INBOUND_PORTS', help: 'comma list of inbound ports never redirected (added to the built-in ones)', defaultValue: '' },
  { env: 'PNC_EXCLUDE_OUTBOUND_PORTS', help: 'comma list of outbound ports never redirected', defaultValue: '' },
  { env: 'PNC_EXCLUDE_OUTBOUND_CIDRS', help: 'comma list of CIDRs never redirected outbound', defaultValue: '' },
  { env: 'LOG_LEVEL', help: 'pino level: fatal error warn info debug trace silent', defaultValue: 'info' },
];

export function flagName(env: string): string {
  return '--' + env.replace(/^PNC_/, '').toLowerCase().replaceAll('_', '-');
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
// The kubelet's pod UIDs are lowercase UUIDs; its cgroup names are built from them.
const POD_UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

type Get = (name: string) => string;

export type FlagOptions = Record<string, { type: 'string' | 'boolean'; short?: string }>;

/** node:util parseArgs options of the settings: `http-port` for PNC_HTTP_PORT. */
export function settingOptions(settings: readonly Setting[] = SETTINGS): FlagOptions {
  return Object.fromEntries(settings.map((s) => [flagName(s.env).slice(2), { type: s.boolean ? ('boolean' as const) : ('string' as const) }]));
}

export interface Flag {
  /** The option's name in the table (`http-port`). */
  name: string;
  /** The argument as given (`--http-port=0`), for messages. */
  arg: string;
  /** undefined: a string flag given no value. A boolean flag takes `=v` or the next non-flag argument, else "true". */
  value: string | undefined;
}

/**
 * The flags in args, tokenized by node:util parseArgs against `options`. Not strict: each
 * token is judged here, so callers word their own errors; an option not in the table or a
 * stray argument is handed to `unknown` (its name, undefined for a stray argument).
 */
export function scanFlags(args: readonly string[], options: FlagOptions, unknown: (arg: string, name: string | undefined) => Error): Flag[] {
  const { tokens } = parseArgs({ args: [...args], options, strict: false, allowPositionals: true, tokens: true });
  const flags: Flag[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    const arg = args[token.index]!;
    if (token.kind !== 'option' || !Object.hasOwn(options, token.name)) {
      throw unknown(arg, token.kind === 'option' ? token.name : undefined);
    }
    const next = tokens[i + 1];
    if (options[token.name]!.type === 'boolean' && !token.inlineValue && next?.kind === 'positional') {
      flags.push({ name: token.name, arg, value: next.value });
      i++;
    } else {
      flags.push({ name: token.name, arg, value: token.value ?? (options[token.name]!.type === 'boolean' ? 'true' : undefined) });
    }
  }
  return flags;
}

/** Reads flags (`--x v`, `--x=v`, booleans also bare `--x`) of `settings` over the environment. */
function readSettings(env: Record<string, string | undefined>, args: readonly string[], settings: readonly Setting[]): Get {
  const values = new Map<string, string>();
  for (const setting of settings) {
    const value = env[setting.env];
    if (value !== undefined) values.set(setting.env, value);
  }
  const byName = new Map(settings.map((s) => [flagName(s.env).slice(2), s]));
  for (const flag of scanFlags(args, settingOptions(settings), (arg) => new ConfigError('flag', arg, 'unknown flag (see --help)'))) {
    if (flag.value === undefined) throw new ConfigError(`--${flag.name}`, '', 'missing value');
    values.set(byName.get(flag.name)!.env, flag.value);
  }
  return (name) => (values.get(name) ?? settings.find((s) => s.env === name)!.defaultValue).trim();
}

/**
 * The settings that decide a pod's rules and how they are programmed. The operator CLI
 * (render/apply/verify) reads exactly these, from the same environment and flags as `run`,
 * so on an agent's node it plans what the agent plans.
 */
export const REDIRECT_SETTINGS: readonly string[] = [
  'PNC_PROXY_CONTAINER',
  'PNC_IPTABLES_MODE',
  'PNC_IPTABLES_LOCK_TIMEOUT',
  'PNC_FAMILIES',
  'PNC_CAPTURE_DNS',
  'PNC_EXCLUDE_INBOUND_PORTS',
  'PNC_EXCLUDE_OUTBOUND_PORTS',
  'PNC_EXCLUDE_OUTBOUND_CIDRS',
];

export type RedirectSettings = Pick<
  AgentConfig,
  | 'proxyContainer'
  | 'iptablesMode'
  | 'iptablesLockTimeout'
  | 'families'
  | 'captureDns'
  | 'excludeInboundPorts'
  | 'excludeOutboundPorts'
  | 'excludeOutboundCidrs'
>;

function redirectSettings(get: Get): RedirectSettings {
  const iptablesMode = get('PNC_IPTABLES_MODE');
  if (iptablesMode !== 'auto' && !(IPTABLES_MODES as readonly string[]).includes(iptablesMode)) {
    throw new ConfigError('PNC_IPTABLES_MODE', iptablesMode, `expected auto, ${IPTABLES_MODES.join(' or ')}`);
  }
  const families = list(get('PNC_FAMILIES'));
  if (families.length === 0 || families.some((f) => f !== 'ipv4' && f !== 'ipv6') || new Set(families).size !== families.length) {
    throw new ConfigError('PNC_FAMILIES', get('PNC_FAMILIES'), 'expected ipv4, ipv6 or ipv4,ipv6');
  }
  return {
    proxyContainer: containerName('PNC_PROXY_CONTAINER', get('PNC_PROXY_CONTAINER')),
    iptablesMode: iptablesMode as IptablesMode | 'auto',
    iptablesLockTimeout: integer('PNC_IPTABLES_LOCK_TIMEOUT', get('PNC_IPTABLES_LOCK_TIMEOUT'), 1, 300),
    families: families as Family[],
    captureDns: bool('PNC_CAPTURE_DNS', get('PNC_CAPTURE_DNS')),
    excludeInboundPorts: list(get('PNC_EXCLUDE_INBOUND_PORTS')).map((p) => integer('PNC_EXCLUDE_INBOUND_PORTS', p, 1, 65535)),
    excludeOutboundPorts: list(get('PNC_EXCLUDE_OUTBOUND_PORTS')).map((p) => integer('PNC_EXCLUDE_OUTBOUND_PORTS', p, 1, 65535)),
    excludeOutboundCidrs: list(get('PNC_EXCLUDE_OUTBOUND_CIDRS')).map((c) => cidr('PNC_EXCLUDE_OUTBOUND_CIDRS', c)),
  };
}

/** REDIRECT_SETTINGS from the environment and flags (any other flag is refused). */
export function parseRedirectSettings(env: Record<string, string | undefined>, args: readonly string[]): RedirectSettings {
  return redirectSettings(
    readSettings(
      env,
      args,
      SETTINGS.filter((s) => REDIRECT_SETTINGS.includes(s.env)),
    ),
  );
}

/**
 * The engine's node config from those settings, validated (NodeConfigError when bad): what
 * every pod's plan starts from. Built once, at agent or CLI start.
 */
export function nodeRedirectConfig(
  settings: Pick<RedirectSettings, 'families' | 'captureDns' | 'excludeInboundPorts' | 'excludeOutboundPorts' | 'excludeOutboundCidrs'>,
): ValidatedNodeConfig {
  const { families, captureDns, excludeInboundPorts, excludeOutboundPorts, excludeOutboundCidrs } = settings;
  return validateNodeConfig({ ...DEFAULT_NODE_CONFIG, families, captureDns, excludeInboundPorts, excludeOutboundPorts, excludeOutboundCidrs });
}

/** Reads flags (`--x v`, `--x=v`, booleans also bare `--x`) over the environment. */
export function parseConfig(env: Record<string, string | undefined>, args: readonly string[]): AgentConfig {
  const get = readSettings(env, args, SETTINGS);

  const nodeName = get('NODE_NAME');
  if (!nodeName) throw new ConfigError('NODE_NAME', '', 'required (set it from the downward API: spec.nodeName)');
  if (!DNS_SUBDOMAIN.test(nodeName) || nodeName.length > 253) throw new ConfigError('NODE_NAME', nodeName, 'not a valid node name');
  const podNamespace = get('POD_NAMESPACE');
  if (podNamespace) namespaceName('POD_NAMESPACE', podNamespace);
  const podUid = get('POD_UID');
  if (podUid && !POD_UID.test(podUid)) throw new ConfigError('POD_UID', podUid, 'expected a pod UID (set it from the downward API: metadata.uid)');
  const excluded = list(get('PNC_EXCLUDED_NAMESPACES')).map((ns) => namespaceName('PNC_EXCLUDED_NAMESPACES', ns));
  if (podNamespace) excluded.push(podNamespace);

  const redirect = redirectSettings(get);
  const logLevel = get('LOG_LEVEL');
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError('LOG_LEVEL', logLevel, `expected one of ${LOG_LEVELS.join(', ')}`);
  const httpAddress = get('PNC_HTTP_ADDRESS');
  if (httpAddress !== '' && !isIPv4(httpAddress) && !isIPv6(httpAddress)) throw new ConfigError('PNC_HTTP_ADDRESS', httpAddress, 'expected an IP address');
  const procRoot = get('PNC_PROC_ROOT');
  if (!procRoot.startsWith('/')) throw new ConfigError('PNC_PROC_ROOT', procRoot, 'expected an absolute path');

  const bypassPolicy = get('PNC_BYPASS_POLICY');
  if (!(BYPASS_POLICIES as readonly string[]).includes(bypassPolicy)) {
    throw new ConfigError('PNC_BYPASS_POLICY', bypassPolicy, `expected ${BYPASS_POLICIES.join(' or ')}`);
  }

  return {
    ...redirect,
    nodeName,
    podNamespace,
    podUid,
    waiterContainer: containerName('PNC_WAITER_CONTAINER', get('PNC_WAITER_CONTAINER')),
    excludedNamespaces: new Set(excluded),
    allowProxyUidApps: bool('PNC_ALLOW_PROXY_UID_APPS', get('PNC_ALLOW_PROXY_UID_APPS')),
    bypassPolicy: bypassPolicy as BypassPolicy,
    runtimeDefaultCapabilities: capabilities('PNC_RUNTIME_DEFAULT_CAPABILITIES', get('PNC_RUNTIME_DEFAULT_CAPABILITIES')),
    httpPort: integer('PNC_HTTP_PORT', get('PNC_HTTP_PORT'), 0, 65535),
    httpAddress,
    concurrency: integer('PNC_CONCURRENCY', get('PNC_CONCURRENCY'), 1, 64),
    procRoot: procRoot.length > 1 ? procRoot.replace(/\/+$/, '') : procRoot,
    logLevel,
  };
}

function list(value: string): string[] {
  return value === '' ? [] : value.split(',').map((item) => item.trim());
}

function bool(variable: string, value: string): boolean {
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new ConfigError(variable, value, 'expected true or false');
}

function integer(variable: string, value: string, min: number, max: number): number {
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new ConfigError(variable, value, `expected an integer from ${min} to ${max}`);
  }
  return Number(value);
}

/** Names with or without `CAP_`, any case; `none` for an empty set (an empty value is the default). */
function capabilities(variable: string, value: string): ReadonlySet<string> {
  if (value === 'none') return new Set();
  const names = list(value).map((name) => name.toUpperCase().replace(/^CAP_/, ''));
  const unknown = names.filter((name) => !LINUX_CAPABILITIES.includes(name));
  if (names.length === 0 || unknown.length > 0) {
    throw new ConfigError(
      variable,
      value,
      `expected a comma list of Linux capabilities (e.g. SETUID,NET_RAW) or none; not one: ${unknown.join(',') || '(empty)'}`,
    );
  }
  return new Set(names);
}

function namespaceName(variable: string, value: string): string {
  if (!DNS_LABEL.test(value) || value.length > 63) throw new ConfigError(variable, value, 'not a valid namespace name');
  return value;
}

function containerName(variable: string, value: string): string {
  if (!DNS_LABEL.test(value) || value.length > 63) throw new ConfigError(variable, value, 'not a valid container name');
  return value;
}

/** The engine's own CIDR parser, so the node's list is held to the same rules as pod annotations. */
function cidr(variable: string, value: string): string {
  try {
    return parseCidr(value).text;
  } catch (error) {
    if (!(error instanceof InvalidValue)) throw error;
    throw new ConfigError(variable, value, `expected an IPv4 or IPv6 CIDR like 192.0.2.0/24 (${error.message})`);
  }
}

/** Help lines of every setting, or of the named ones. */
export function configHelp(only?: readonly string[]): string {
  const settings = only ? SETTINGS.filter((s) => only.includes(s.env)) : SETTINGS;
  const width = Math.max(...settings.map((s) => flagName(s.env).length + s.env.length + 3));
  return settings
    .map((s) => {
      const left = `${flagName(s.env)} / ${s.env}`;
      const def = s.defaultValue ? ` (default ${s.defaultValue})` : '';
      return `    ${left.padEnd(width)}  ${s.help}${def}`;
    })
    .join('\n');
}
