// Operator tools of dist/controller.js: render, apply, verify, remove (debugging one pod on a node).
import { stat } from 'node:fs/promises';
import { PodManifestError, readPodManifest } from '../pod-manifest.ts';
import {
  AnnotationError,
  applyRedirect,
  DEFAULT_NODE_CONFIG,
  detectIptablesMode,
  NodeConfigError,
  parseIptablesMode,
  planFromPod,
  removeRedirect,
  renderPlan,
  rulesHash,
  verifyRedirect,
  type Family,
  type IptablesMode,
  type RedirectPlan,
} from '../redirect/index.ts';

export const redirectHelp = `Redirect tools (debug one pod's rules on a node; run as root on the node):
  render --pod FILE [--family 4|6]
      Print the iptables-restore payload(s) for the Pod manifest FILE (YAML or JSON). Touches nothing.
  apply  --netns PATH --pod FILE [--family 4|6] [--iptables-mode legacy|nft]
      Program the rules in the network namespace PATH (/run/netns/NAME or /proc/PID/ns/net):
      atomic per family, a no-op when they are already in place, verified after applying.
  verify --netns PATH --pod FILE [--family 4|6] [--iptables-mode legacy|nft]
      Exit 0 when the rules in PATH match the plan, 3 and a diff (- wanted, + found) when not.
  remove --netns PATH [--iptables-mode legacy|nft]
      Delete this project's chains and jumps from PATH (both families); other rules stay.
  --family limits the plan to IPv4 or IPv6 (as on a single-stack node); default both.
  --iptables-mode overrides the backend detected from the host (also env PNC_IPTABLES_MODE).
`;

class UsageError extends Error {
  override name = 'UsageError';
}

type Flags = Map<string, string>;

function parseFlags(args: string[], allowed: readonly string[]): Flags {
  const flags: Flags = new Map();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument ${JSON.stringify(arg)}`);
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    if (!allowed.includes(name)) throw new UsageError(`unknown flag --${name} (allowed: ${allowed.map((f) => `--${f}`).join(' ')})`);
    const value = eq === -1 ? args[++i] : arg.slice(eq + 1);
    if (value === undefined || value === '') throw new UsageError(`flag --${name} needs a value`);
    if (flags.has(name)) throw new UsageError(`flag --${name} given twice`);
    flags.set(name, value);
  }
  return flags;
}

function required(flags: Flags, name: string): string {
  const value = flags.get(name);
  if (value === undefined) throw new UsageError(`missing --${name}`);
  return value;
}

function families(flags: Flags): Family[] {
  const value = flags.get('family');
  if (value === undefined) return ['ipv4', 'ipv6'];
  if (value === '4' || value === 'ipv4') return ['ipv4'];
  if (value === '6' || value === 'ipv6') return ['ipv6'];
  throw new UsageError(`--family ${JSON.stringify(value)}: must be 4 or 6`);
}

async function plan(flags: Flags): Promise<RedirectPlan> {
  const pod = await readPodManifest(required(flags, 'pod'));
  return planFromPod(pod, { ...DEFAULT_NODE_CONFIG, families: families(flags) });
}

async function netns(flags: Flags): Promise<string> {
  const path = required(flags, 'netns');
  try {
    await stat(path);
  } catch (error) {
    throw new UsageError(`--netns ${path}: ${(error as Error).message}`);
  }
  return path;
}

async function mode(flags: Flags): Promise<IptablesMode> {
  const flag = flags.get('iptables-mode');
  const chosen = flag !== undefined ? parseIptablesMode(flag, '--iptables-mode') : parseIptablesMode(process.env.PNC_IPTABLES_MODE, 'PNC_IPTABLES_MODE');
  return chosen ?? (await detectIptablesMode());
}

/** The netns, the pod's plan and the backend that apply and verify act on. */
async function target(args: string[]): Promise<{ path: string; redirectPlan: RedirectPlan; iptablesMode: IptablesMode }> {
  const flags = parseFlags(args, ['netns', 'pod', 'family', 'iptables-mode']);
  const [path, redirectPlan, iptablesMode] = await Promise.all([netns(flags), plan(flags), mode(flags)]);
  return { path, redirectPlan, iptablesMode };
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
        error instanceof NodeConfigError;
      process.stderr.write(`error: ${(error as Error).message}\n`);
      if (error instanceof UsageError) process.stderr.write(`\n${redirectHelp}`);
      return bad ? 2 : 1;
    }
  };
}

export const redirectCommands: Record<string, (args: string[]) => Promise<number>> = {
  render: handle(async (args) => {
    const flags = parseFlags(args, ['pod', 'family']);
    const rendered = renderPlan(await plan(flags));
    process.stdout.write(`# pod-network-controller rules hash ${rulesHash(rendered)}\n`);
    for (const [family, payload] of Object.entries(rendered)) {
      process.stdout.write(`# ${family}: ${family === 'ipv4' ? 'iptables' : 'ip6tables'}-restore --noflush\n${payload}`);
    }
    return 0;
  }),
  apply: handle(async (args) => {
    const { path, redirectPlan, iptablesMode } = await target(args);
    const result = await applyRedirect(path, redirectPlan, { mode: iptablesMode });
    process.stdout.write(
      `${result.changed ? 'applied' : 'unchanged'}: pod ${redirectPlan.pod} in ${path} (iptables-${iptablesMode}, rules ${result.hash})\n`,
    );
    return 0;
  }),
  verify: handle(async (args) => {
    const { path, redirectPlan, iptablesMode } = await target(args);
    const result = await verifyRedirect(path, redirectPlan, { mode: iptablesMode });
    if (result.ok) {
      process.stdout.write(`ok: pod ${redirectPlan.pod} rules are in place in ${path} (iptables-${iptablesMode})\n`);
      return 0;
    }
    process.stdout.write(`drift: pod ${redirectPlan.pod} rules in ${path} differ from the plan (iptables-${iptablesMode})\n${result.diff}\n`);
    return 3;
  }),
  remove: handle(async (args) => {
    const flags = parseFlags(args, ['netns', 'iptables-mode']);
    const path = await netns(flags);
    const iptablesMode = await mode(flags);
    await removeRedirect(path, { mode: iptablesMode });
    process.stdout.write(`removed: pod-network-controller rules from ${path} (iptables-${iptablesMode})\n`);
    return 0;
  }),
};
