// Choosing iptables-legacy or iptables-nft to match the host, so a pod's rules live in
// the same backend as everything else on the node (mixing both in one netns breaks).
import { NodeConfigError } from './errors.ts';
import { runInNetns } from './exec.ts';
import type { Family } from './types.ts';

export type IptablesMode = 'legacy' | 'nft';
export const IPTABLES_MODES: readonly IptablesMode[] = ['legacy', 'nft'];

export class IptablesModeError extends Error {
  override name = 'IptablesModeError';
}

export interface HostBackends {
  /** Rules ("-A" lines) the host has in each backend; undefined when that backend failed to list. */
  legacyRules: number | undefined;
  nftRules: number | undefined;
}

/**
 * Pure decision: legacy when the host already has legacy rules (and at least as many as in
 * nft: the node's kubelet/kube-proxy use it), else nft when it works, else legacy when that works.
 */
export function chooseIptablesMode({ legacyRules, nftRules }: HostBackends): IptablesMode {
  if (legacyRules !== undefined && legacyRules > 0 && legacyRules >= (nftRules ?? 0)) return 'legacy';
  if (nftRules !== undefined) return 'nft';
  if (legacyRules !== undefined) return 'legacy';
  throw new IptablesModeError('neither iptables-nft-save nor iptables-legacy-save works on this host');
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

async function countRules(mode: IptablesMode): Promise<number | undefined> {
  const result = await runInNetns(undefined, [iptablesBinary(mode, 'ipv4', 'save')]);
  if (result.code !== 0) return undefined;
  return result.stdout.split('\n').filter((line) => line.startsWith('-A ')).length;
}

let detected: Promise<IptablesMode> | undefined;

/** The host's mode (read-only listing in the current netns). Cached. Overrides are the callers' (flags, env). */
export function detectIptablesMode(): Promise<IptablesMode> {
  detected ??= Promise.all([countRules('legacy'), countRules('nft')])
    .then(([legacyRules, nftRules]) => chooseIptablesMode({ legacyRules, nftRules }))
    .catch((error: unknown) => {
      detected = undefined; // a later call may succeed (e.g. modules loaded meanwhile)
      throw error;
    });
  return detected;
}
