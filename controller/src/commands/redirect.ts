// Operator tools of dist/controller.js: render, apply, verify, remove (debugging one pod on a node).
// They plan with the agent's own node settings (the same PNC_* environment and flags), so
// on an agent's node (`kubectl exec AGENT -- node /app/controller.js verify ...`) they see
// the rules the agent programmed as correct.
import { stat } from 'node:fs/promises';
import type { V1Pod } from '@kubernetes/client-node';
import {
  ConfigError,
  configHelp,
  flagName,
  nodeRedirectConfig,
  parseRedirectSettings,
  REDIRECT_SETTINGS,
  scanFlags,
  SETTINGS,
  settingOptions,
  type FlagOptions,
  type RedirectSettings,
} from '../agent/config.ts';
import { effectiveIdentity, findProxyContainer } from '../agent/proxy-identity.ts';
import { PodManifestError, readPodManifest } from '../pod-manifest.ts';
import {
  AnnotationError,
  applyRedirect,
  detectIptablesMode,
  NodeConfigError,
  planFromPod,
  podKey,
  removeRedirect,
  renderPlan,
  rulesHash,
  verifyRedirect,
  type Family,
  type IptablesMode,
  type Netns,
  type RedirectPlan,
} from '../redirect/index.ts';

export const redirectHelp = `Redirect tools (debug one pod's rules on a node; run as root on the node):
  render --pod FILE [--family 4|6] [node settings]
      Print the iptables-restore payload(s) for the Pod manifest FILE (YAML or JSON). Touches nothing.
  apply  --netns PATH --pod FILE [--family 4|6] [node settings]
      Program the rules in the network namespace PATH (/run/netns/NAME or /proc/PID/ns/net):
      atomic per family, a no-op when they are already in place, verified after applying.
  verify --netns PATH --pod FILE [--family 4|6] [node settings]
      Exit 0 when the rules in PATH match the plan, 3 and a diff (- wanted, + found) when not.
  remove --netns PATH [--iptables-mode legacy|nft]
      Clear the netns record (lo's alias), then delete this project's chains and jumps from PATH (both families); other rules stay.
  --family limits the plan to IPv4 or IPv6 (as on a single-stack node).
  The proxy UID/GID are what the manifest's proxy container runs as (else 1337), as the agent
  takes them. Node settings: the agent's own environment variables and flags, so inside the
  agent's container the plan is the agent's:
${configHelp(REDIRECT_SETTINGS)}
`;

class UsageError extends Error {
  override name = 'UsageError';
}

type Flags = Map<string, string>;

/** The redirect commands' own flags (node:util parseArgs options); each command takes some of them. */
export const REDIRECT_COMMAND_OPTIONS = {
  netns: { type: 'string' },
  pod: { type: 'string' },
  family: { type: 'string' },
} as const satisfies FlagOptions;

type CommandFlag = keyof typeof REDIRECT_COMMAND_OPTIONS;

/** The node settings the redirect commands take as flags, besides their own. */
export const REDIRECT_SETTING_OPTIONS = settingOptions(SETTINGS.filter((s) => REDIRECT_SETTINGS.includes(s.env)));

/** This command's own flags; the node settings among the arguments go to parseRedirectSettings. */
function parseFlags(args: string[], allowed: readonly CommandFlag[]): { flags: Flags; settings: RedirectSettings } {
  const own: FlagOptions = Object.fromEntries(allowed.map((name) => [name, REDIRECT_COMMAND_OPTIONS[name]]));
  const unknown = (arg: string, name: string | undefined) =>
    name === undefined || !arg.startsWith('--')
      ? new UsageError(`unexpected argument ${JSON.stringify(arg)}`)
      : new UsageError(`unknown flag --${name} (allowed: ${[...allowed.map((f) => `--${f}`), ...REDIRECT_SETTINGS.map(flagName)].join(' ')})`);
  const flags: Flags = new Map();
  const settingArgs: string[] = [];
  for (const { name, value } of scanFlags(args, { ...own, ...REDIRECT_SETTING_OPTIONS }, unknown)) {
    if (!Object.hasOwn(own, name)) {
      settingArgs.push(value === undefined ? `--${name}` : `--${name}=${value}`);
      continue;
    }
    if (value === undefined || value === '') throw new UsageError(`flag --${name} needs a value`);
    if (flags.has(name)) throw new UsageError(`flag --${name} given twice`);
    flags.set(name, value);
  }
  return { flags, settings: parseRedirectSettings(process.env, settingArgs) };
}

function required(flags: Flags, name: string): string {
  const value = flags.get(name);
  if (value === undefined) throw new UsageError(`missing --${name}`);
  return value;
}

function families(flags: Flags, settings: RedirectSettings): Family[] {
  const value = flags.get('family');
  if (value === undefined) return settings.families;
  if (value === '4' || value === 'ipv4') return ['ipv4'];
  if (value === '6' || value === 'ipv6') return ['ipv6'];
  throw new UsageError(`--family ${JSON.stringify(value)}: must be 4 or 6`);
}

async function plan(flags: Flags, settings: RedirectSettings): Promise<RedirectPlan> {
  const pod = await readPodManifest(required(flags, 'pod'));
  const node = nodeRedirectConfig({ ...settings, families: families(flags, settings) });
  const proxy = findProxyContainer(pod as V1Pod, settings.proxyContainer);
  const identity = proxy ? effectiveIdentity(proxy, pod as V1Pod, { uid: node.proxyUid, gid: node.proxyGid }) : { uid: node.proxyUid, gid: node.proxyGid };
  // Root would exempt every root process of the pod from the redirect.
  if (proxy && (identity.uid === 0 || identity.gid === 0)) {
    throw new PodManifestError(
      `pod ${podKey(pod)}: container ${JSON.stringify(proxy.name)} runs with runAsUser=${identity.uid} runAsGroup=${identity.gid}; the proxy identity must not be root`,
    );
  }
  return planFromPod(pod, node, identity);
}

/** The netns named by --netns, with its inode now: every later entry must find that same netns. */
async function netns(flags: Flags): Promise<Netns> {
  const path = required(flags, 'netns');
  try {
    return { path, inode: (await stat(path)).ino };
  } catch (error) {
    throw new UsageError(`--netns ${path}: ${(error as Error).message}`);
  }
}

async function mode(settings: RedirectSettings): Promise<IptablesMode> {
  return settings.iptablesMode === 'auto' ? (await detectIptablesMode()).mode : settings.iptablesMode;
}

/** The netns, the pod's plan and the backend that apply and verify act on. */
async function target(args: string[]) {
  const { flags, settings } = parseFlags(args, ['netns', 'pod', 'family']);
  const [where, redirectPlan, iptablesMode] = await Promise.all([netns(flags), plan(flags, settings), mode(settings)]);
  return { where, path: where.path, redirectPlan, iptablesMode, lockWaitSeconds: settings.iptablesLockTimeout };
}

/** Maps errors to the exit codes of the help text: 2 = bad usage or input, 1 = failure while acting. */
function handle(command: (args: string[]) => Promise<number>): (args: string[]) => Promise<number> {
  return async (args) => {
    try {
      return await command(args);
    } catch (error) {
      const bad =
        error instanceof UsageError ||
        error instanceof PodManifestError ||
        error instanceof AnnotationError ||
        error instanceof NodeConfigError ||
        error instanceof ConfigError;
      process.stderr.write(`error: ${(error as Error).message}\n`);
      if (error instanceof UsageError) process.stderr.write(`\n${redirectHelp}`);
      return bad ? 2 : 1;
    }
  };
}

export const redirectCommands: Record<string, (args: string[]) => Promise<number>> = {
  render: handle(async (args) => {
    const { flags, settings } = parseFlags(args, ['pod', 'family']);
    const rendered = renderPlan(await plan(flags, settings));
    process.stdout.write(`# pod-network-controller rules hash ${rulesHash(rendered)}\n`);
    for (const [family, payload] of Object.entries(rendered)) {
      process.stdout.write(`# ${family}: ${family === 'ipv4' ? 'iptables' : 'ip6tables'}-restore --noflush\n${payload}`);
    }
    return 0;
  }),
  apply: handle(async (args) => {
    const { where, path, redirectPlan, iptablesMode, lockWaitSeconds } = await target(args);
    const result = await applyRedirect(where, redirectPlan, { mode: iptablesMode, lockWaitSeconds });
    process.stdout.write(`${result.changed ? 'applied' : 'unchanged'}: pod ${redirectPlan.pod} in ${path} (iptables-${iptablesMode}, rules ${result.hash})\n`);
    return 0;
  }),
  verify: handle(async (args) => {
    const { where, path, redirectPlan, iptablesMode } = await target(args);
    const result = await verifyRedirect(where, redirectPlan, { mode: iptablesMode });
    if (result.ok) {
      process.stdout.write(`ok: pod ${redirectPlan.pod} rules are in place in ${path} (iptables-${iptablesMode})\n`);
      return 0;
    }
    process.stdout.write(`drift: pod ${redirectPlan.pod} rules in ${path} differ from the plan (iptables-${iptablesMode})\n${result.diff}\n`);
    return 3;
  }),
  remove: handle(async (args) => {
    const { flags, settings } = parseFlags(args, ['netns']);
    const where = await netns(flags);
    const iptablesMode = await mode(settings);
    await removeRedirect(where, { mode: iptablesMode });
    process.stdout.write(`removed: pod-network-controller rules from ${where.path} (iptables-${iptablesMode})\n`);
    return 0;
  }),
};
