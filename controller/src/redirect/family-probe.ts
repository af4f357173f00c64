// Can this node redirect a family at all? A kernel booted with ipv6.disable=1 has no IPv6;
// one without the ip6table_nat module (legacy) or nft's nat chain type cannot take the rules.
// Asked once at agent start by doing the real thing where it harms nothing: the family's
// rules of a default plan, restored into a throwaway netns that vanishes with the process.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { runInNetns } from './exec.ts';
import { iptablesBinary, type IptablesMode } from './mode.ts';
import { planFromPod, validateNodeConfig } from './plan.ts';
import { renderPlan } from './render.ts';
import { freshTransaction } from './ruleset.ts';
import { DEFAULT_NODE_CONFIG, type Family } from './types.ts';

export type FamilyProbe = { ok: true } | { ok: false; why: string };

export interface FamilyProbeOptions {
  /** Where /proc is (the agent's PNC_PROC_ROOT); its sys/net/ipv6 exists when the kernel has IPv6. */
  procRoot?: string;
  /** Runs argv with stdin in a netns of its own; default: a fresh one, `unshare --net`. */
  runIsolated?: (argv: string[], stdin: string) => Promise<{ code: number; stderr: string }>;
}

const PROBE_POD = { metadata: { namespace: 'pod-network-controller', name: 'family-probe' } };
/** Legacy may wait for the xtables lock (a global file, even in a fresh netns); not forever. */
const PROBE_LOCK_WAIT_SECONDS = 10;

const unshareNet = (argv: string[], stdin: string) => runInNetns(undefined, ['unshare', '--net', '--', ...argv], stdin);

/** Whether `family`'s redirect rules can be programmed on this kernel with `mode`; why not when not. */
export async function probeFamily(family: Family, mode: IptablesMode, options: FamilyProbeOptions = {}): Promise<FamilyProbe> {
  if (family === 'ipv6') {
    const sysctls = join(options.procRoot ?? '/proc', 'sys/net/ipv6');
    const present = await stat(sysctls).then(
      () => true,
      () => false,
    );
    if (!present) return { ok: false, why: `the kernel has no IPv6 (${sysctls} is missing: booted with ipv6.disable=1?)` };
  }
  const plan = planFromPod(PROBE_POD, validateNodeConfig({ ...DEFAULT_NODE_CONFIG, families: [family] }));
  const binary = iptablesBinary(mode, family, 'restore');
  const result = await (options.runIsolated ?? unshareNet)(
    [binary, '--noflush', `--wait=${PROBE_LOCK_WAIT_SECONDS}`],
    freshTransaction(renderPlan(plan)[family]!),
  );
  if (result.code === 0) return { ok: true };
  const stderr = result.stderr.trim().split('\n').slice(0, 3).join(' / ');
  return { ok: false, why: `${binary} of the redirect rules failed in a scratch network namespace (exit ${result.code}): ${stderr || 'no message'}` };
}
