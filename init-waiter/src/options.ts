// Flags and environment variables of the init-waiter (pure). A flag beats its
// environment variable, which beats the default; anything unparsable is a UsageError.
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';

export interface ProbeAddresses {
  ipv4: string;
  ipv6: string;
}

/** The pod's spec.restartPolicy. With Never a failed init container fails the pod for good. */
export type RestartPolicy = 'Always' | 'OnFailure' | 'Never';
const RESTART_POLICIES: readonly RestartPolicy[] = ['Always', 'OnFailure', 'Never'];

export interface WaiterOptions {
  annotationsFile: string;
  /** undefined: no timeout (a Never pod without an explicit --timeout). */
  timeoutMs: number | undefined;
  /** undefined: an error mark is waited out (a Never pod without an explicit --error-grace). */
  errorGraceMs: number | undefined;
  restartPolicy: RestartPolicy;
  validate: boolean;
  proxyPort: number;
  probeAddresses: ProbeAddresses;
  probePort: number;
  terminationMessagePath: string;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

export class HelpRequested extends Error {
  override name = 'HelpRequested';
}

interface OptionSpec {
  flag: string;
  env: string;
  fallback: string;
  help: string;
}

// RFC 5737 / RFC 3849 documentation addresses: never routed anywhere real, so a
// probe that escapes capture (no rules) reaches nobody.
export const WAITER_SETTINGS = {
  annotationsFile: {
    flag: '--annotations-file',
    env: 'PNC_WAITER_ANNOTATIONS_FILE',
    fallback: '/etc/podinfo/annotations',
    help: 'downward-API file holding the pod annotations (fieldRef: metadata.annotations)',
  },
  timeout: {
    flag: '--timeout',
    env: 'PNC_WAITER_TIMEOUT',
    fallback: '300',
    help: 'seconds to wait before giving up with the reason (decimals allowed); with --restart-policy Never no default: it waits until the pod ends',
  },
  errorGrace: {
    flag: '--error-grace',
    env: 'PNC_WAITER_ERROR_GRACE',
    fallback: '15',
    help: 'seconds an `error` mark may stand (the controller retrying) before giving up with its reason (0: at once); with --restart-policy Never no default',
  },
  restartPolicy: {
    flag: '--restart-policy',
    env: 'PNC_WAITER_RESTART_POLICY',
    fallback: 'Always',
    help: "the pod's spec.restartPolicy (Always|OnFailure|Never; injection sets it): a Never pod fails for good when the waiter exits non-zero",
  },
  validate: {
    flag: '--validate',
    env: 'PNC_WAITER_VALIDATE',
    fallback: 'true',
    help: 'true|false: run the outbound-capture self-test before passing',
  },
  proxyPort: {
    flag: '--proxy-port',
    env: 'PNC_WAITER_PROXY_PORT',
    fallback: '15001',
    help: "the proxy's outbound capture port the self-test listens on",
  },
  probeAddress: {
    flag: '--probe-address',
    env: 'PNC_WAITER_PROBE_ADDRESS',
    fallback: '192.0.2.2,2001:db8::2',
    help: 'comma-separated destination(s) the self-test dials: one IPv4 and/or one IPv6 address',
  },
  probePort: {
    flag: '--probe-port',
    env: 'PNC_WAITER_PROBE_PORT',
    fallback: '9',
    help: "destination port the self-test dials (moved up past the pod's excluded outbound ports)",
  },
  terminationMessagePath: {
    flag: '--termination-message-path',
    env: 'PNC_WAITER_TERMINATION_MESSAGE_PATH',
    fallback: '/dev/termination-log',
    help: "the container's terminationMessagePath: the last words go there (only if it exists) for kubectl describe pod",
  },
} as const satisfies Record<string, OptionSpec>;

type OptionName = keyof typeof WAITER_SETTINGS;

export const USAGE = [
  'usage: node init-waiter.js [flags]',
  '',
  ...Object.values(WAITER_SETTINGS).map(
    (spec: OptionSpec) => `  ${spec.flag.padEnd(28)} env ${spec.env.padEnd(36)} default ${spec.fallback}\n      ${spec.help}`,
  ),
  '  --help                       print this text',
].join('\n');

// node:util parseArgs options: every setting's flag, and help.
export const WAITER_OPTIONS = {
  ...Object.fromEntries(Object.values(WAITER_SETTINGS).map((spec: OptionSpec) => [spec.flag.slice(2), { type: 'string' as const }])),
  help: { type: 'boolean', short: 'h' },
} satisfies ParseArgsConfig['options'];

const NAME_BY_FLAG = new Map<string, OptionName>((Object.entries(WAITER_SETTINGS) as [OptionName, OptionSpec][]).map(([name, spec]) => [spec.flag, name]));

export function parseOptions(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): WaiterOptions {
  // Not strict: each token is judged below, so every mistake is a UsageError quoting the argument as given.
  const { tokens } = parseArgs({ args: [...argv], options: WAITER_OPTIONS, strict: false, allowPositionals: true, tokens: true });
  const fromFlags = new Map<OptionName, string>();
  for (const token of tokens) {
    const arg = argv[token.index] as string;
    if (token.kind === 'option' && token.name === 'help' && (arg === '--help' || arg === '-h')) throw new HelpRequested(USAGE);
    const name = token.kind === 'option' ? NAME_BY_FLAG.get(token.rawName) : undefined;
    if (token.kind !== 'option' || name === undefined) throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    if (token.value === undefined) throw new UsageError(`${token.rawName} needs a value`);
    fromFlags.set(name, token.value);
  }

  const raw = (name: OptionName): { value: string; source: string; given: boolean } => {
    const spec: OptionSpec = WAITER_SETTINGS[name];
    const flagValue = fromFlags.get(name);
    if (flagValue !== undefined) return { value: flagValue, source: spec.flag, given: true };
    const envValue = env[spec.env];
    if (envValue !== undefined && envValue !== '') return { value: envValue, source: spec.env, given: true };
    return { value: spec.fallback, source: `default of ${spec.flag}`, given: false };
  };

  const restartPolicy = parseRestartPolicy(raw('restartPolicy'));
  // A Never pod fails for good when an init container exits non-zero, so the waiter gives up
  // on nothing transient (a late agent, an error mark the agent will repair) unless told to.
  const bounded = (name: 'timeout' | 'errorGrace', zero: boolean): number | undefined => {
    const setting = raw(name);
    return restartPolicy === 'Never' && !setting.given ? undefined : parseSeconds(setting, { zero });
  };

  return {
    annotationsFile: parsePath(raw('annotationsFile')),
    timeoutMs: bounded('timeout', false),
    errorGraceMs: bounded('errorGrace', true),
    restartPolicy,
    validate: parseBoolean(raw('validate')),
    proxyPort: parsePort(raw('proxyPort')),
    probeAddresses: parseProbeAddresses(raw('probeAddress')),
    probePort: parsePort(raw('probePort')),
    terminationMessagePath: parsePath(raw('terminationMessagePath')),
  };
}

function parsePath({ value, source }: { value: string; source: string }): string {
  if (value.trim() === '') throw new UsageError(`${source}: empty path`);
  return value;
}

function parseSeconds({ value, source }: { value: string; source: string }, { zero = false } = {}): number {
  const seconds = /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : NaN;
  // A day is far beyond any sane pod start; the cap keeps setTimeout's 32-bit limit out of reach.
  if (!((zero ? seconds >= 0 : seconds > 0) && seconds <= 86_400)) {
    throw new UsageError(`${source}: ${JSON.stringify(value)} is not a number of seconds in ${zero ? '[' : '('}0, 86400]`);
  }
  return Math.round(seconds * 1000);
}

function parseRestartPolicy({ value, source }: { value: string; source: string }): RestartPolicy {
  const policy = RESTART_POLICIES.find((p) => p === value.trim());
  if (policy === undefined) throw new UsageError(`${source}: ${JSON.stringify(value)} is not a restart policy (${RESTART_POLICIES.join(', ')})`);
  return policy;
}

function parseBoolean({ value, source }: { value: string; source: string }): boolean {
  const normalized = value.trim().toLowerCase();
  if (normalized === 'true') return true;
  if (normalized === 'false') return false;
  throw new UsageError(`${source}: ${JSON.stringify(value)} is neither true nor false`);
}

function parsePort({ value, source }: { value: string; source: string }): number {
  const port = /^\d{1,5}$/.test(value.trim()) ? Number(value) : NaN;
  if (!(port >= 1 && port <= 65_535)) throw new UsageError(`${source}: ${JSON.stringify(value)} is not a port (1-65535)`);
  return port;
}

function parseProbeAddresses({ value, source }: { value: string; source: string }): ProbeAddresses {
  const found: Partial<ProbeAddresses> = {};
  for (const entry of value.split(',').map((part) => part.trim())) {
    const version = isIP(entry);
    if (version === 0) throw new UsageError(`${source}: ${JSON.stringify(entry)} is not an IP address`);
    const family = version === 4 ? 'ipv4' : 'ipv6';
    if (found[family] !== undefined) throw new UsageError(`${source}: more than one ${family} address in ${JSON.stringify(value)}`);
    if (entry === '::1' || entry.startsWith('127.')) {
      // Istio's OUTPUT chain never redirects traffic to loopback, so such a probe could never pass.
      throw new UsageError(`${source}: ${entry} is a loopback address, which is never captured`);
    }
    found[family] = entry;
  }
  // A family left out keeps its default, so overriding only the IPv4 probe stays dual-stack safe.
  const defaults = WAITER_SETTINGS.probeAddress.fallback.split(',');
  return { ipv4: found.ipv4 ?? (defaults[0] as string), ipv6: found.ipv6 ?? (defaults[1] as string) };
}
