// Choosing iptables-legacy or iptables-nft to match the host, so a pod's rules live in
// the same backend as everything else on the node (mixing both in one netns breaks). The
// agent is no hostNetwork pod: its own netns is an empty pod netns that says nothing about
// the node, so the host's rules are read in PID 1's netns (the agent has hostPID).
import { stat } from 'node:fs/promises';
import { NodeConfigError } from './errors.ts';
import { runSteps, type Netns } from './exec.ts';
import { FAMILIES, type Family } from './types.ts';

export type IptablesMode = 'legacy' | 'nft';
export const IPTABLES_MODES: readonly IptablesMode[] = ['legacy', 'nft'];

/** The host's netns as a process with hostPID (or a root shell on the node) sees it. */
export const HOST_NETNS = '/proc/1/ns/net';

export class IptablesModeError extends Error {
  override name = 'IptablesModeError';
}

/** What one backend's save listed in the host netns, IPv4 and IPv6 together. */
export interface BackendListing {
  /** Rules ("-A" lines). */
  rules: number;
  /** The kubelet's KUBE-IPTABLES-HINT or KUBE-KUBELET-CANARY chain is there: the kubelet uses this backend. */
  kubeletHint: boolean;
}

export interface HostBackends {
  /** undefined when that backend's iptables-save failed for IPv4. */
  legacy: BackendListing | undefined;
  nft: BackendListing | undefined;
}

export interface IptablesModeDecision {
  mode: IptablesMode;
  /** Why, for the log. */
  why: string;
}

const count = (listing: BackendListing | undefined) => (listing === undefined ? 'cannot list' : `${listing.rules} rules`);

/**
 * Pure decision, as kubernetes-sigs/iptables-wrappers decides for kube-proxy: the backend
 * that holds the kubelet's hint chain (the kubelet writes it since Kubernetes 1.17) when only
 * one does; else the one with more rules (legacy on a tie with rules, as the wrapper's count
 * did); else, on a host without rules, nft when it works (Istio's and the wrapper's default).
 */
export function chooseIptablesMode({ legacy, nft }: HostBackends): IptablesModeDecision {
  const counts = `legacy ${count(legacy)}, nft ${count(nft)}`;
  if (nft?.kubeletHint && !legacy?.kubeletHint) return { mode: 'nft', why: `the kubelet's hint chain is in nft (${counts})` };
  if (legacy?.kubeletHint && !nft?.kubeletHint) return { mode: 'legacy', why: `the kubelet's hint chain is in legacy (${counts})` };
  if (legacy !== undefined && legacy.rules > 0 && legacy.rules >= (nft?.rules ?? 0)) return { mode: 'legacy', why: `more rules in legacy (${counts})` };
  if (nft !== undefined) return { mode: 'nft', why: nft.rules > 0 ? `more rules in nft (${counts})` : `no rules in either, nft works (${counts})` };
  if (legacy !== undefined) return { mode: 'legacy', why: `only legacy can list (${counts})` };
  throw new IptablesModeError('neither iptables-nft-save nor iptables-legacy-save works in the host network namespace');
}

/** Validates a mode given by flag or environment ("auto"/empty = detect); NodeConfigError when bad. */
export function parseIptablesMode(value: string | undefined, source: string): IptablesMode | undefined {
  if (value === undefined || value === '' || value === 'auto') return undefined;
  if ((IPTABLES_MODES as readonly string[]).includes(value)) return value as IptablesMode;
  throw new NodeConfigError(`${source}=${JSON.stringify(value)}: must be legacy, nft or auto`);
}

export function iptablesBinary(mode: IptablesMode, family: Family, tool: 'save' | 'restore'): string {
  return `${family === 'ipv4' ? 'iptables' : 'ip6tables'}-${mode}-${tool}`;
}

const KUBELET_HINT = /^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY) /m;

/**
 * Lists both backends, both families, in `netns` (undefined: this process's own): read only
 * (no `-t`, which would make iptables-legacy create the table), one nsenter for the four saves.
 */
export async function listHostBackends(netns: Netns | undefined): Promise<HostBackends> {
  const steps = IPTABLES_MODES.flatMap((mode) =>
    FAMILIES.map((family) => ({ name: `${mode}-${family}`, argv: [iptablesBinary(mode, family, 'save')], optional: true })),
  );
  const run = await runSteps(netns, steps);
  if (run.failure !== undefined) throw new IptablesModeError(`listing iptables rules in ${netns?.path ?? 'this network namespace'}: ${run.failure}`);
  const listing = (mode: IptablesMode): BackendListing | undefined => {
    if (!run.succeeded.has(`${mode}-ipv4`)) return undefined;
    // A host without IPv6 cannot list it: its IPv4 rules still count.
    const text = FAMILIES.filter((family) => run.succeeded.has(`${mode}-${family}`))
      .map((family) => run.stdout.get(`${mode}-${family}`) ?? '')
      .join('');
    return { rules: text.split('\n').filter((line) => line.startsWith('-A ')).length, kubeletHint: KUBELET_HINT.test(text) };
  };
  return { legacy: listing('legacy'), nft: listing('nft') };
}

/**
 * Decides from the rules in the netns at `netnsPath`. When it cannot be opened for want of
 * permission (PID 1 guarded more strictly than this process, as in some sandboxes), from this
 * process's own netns instead, and the reason says so: right when this process runs in the
 * node's netns, and either backend still works inside a pod's netns.
 */
async function decide(netnsPath: string): Promise<IptablesModeDecision> {
  let inode: number;
  try {
    inode = (await stat(netnsPath)).ino;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') {
      throw new IptablesModeError(`cannot open the host network namespace ${netnsPath} (hostPID?): ${(error as Error).message}`);
    }
    const { mode, why } = chooseIptablesMode(await listHostBackends(undefined));
    return { mode, why: `${why}, counted in this process's own network namespace: ${netnsPath} is not readable (${code})` };
  }
  return chooseIptablesMode(await listHostBackends({ path: netnsPath, inode }));
}

const detected = new Map<string, Promise<IptablesModeDecision>>();

/**
 * The host's mode, from the rules in the netns at `netnsPath` (default: PID 1's). Cached per
 * path. Overrides are the callers' (flags, env).
 */
export function detectIptablesMode(netnsPath = HOST_NETNS): Promise<IptablesModeDecision> {
  let decision = detected.get(netnsPath);
  if (decision === undefined) {
    decision = decide(netnsPath).catch((error: unknown) => {
      detected.delete(netnsPath); // a later call may succeed (e.g. modules loaded meanwhile)
      throw error;
    });
    detected.set(netnsPath, decision);
  }
  return decision;
}
