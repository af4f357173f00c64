// Reading back what this project owns in a nat table (pure), and the restore
// transactions that replace or remove exactly that, leaving everyone else's rules.
import { OWNED_CHAINS, OWNER_COMMENT } from './render.ts';

/** Our part of one family's nat table: owned chains (with their rules) and our tagged jumps. */
export interface OwnedState {
  /** Owned chain -> its rules ("-A CHAIN ..."), in order; only chains that exist. */
  chains: Map<string, string[]>;
  /** Our tagged jumps in the built-in chains ("-A PREROUTING ..."), in order. */
  jumps: string[];
}

const OWNED = new Set<string>(OWNED_CHAINS);

function isOwnJump(line: string): boolean {
  return line.includes(`-m comment --comment ${OWNER_COMMENT} `) || line.includes(`--comment "${OWNER_COMMENT}"`);
}

/** Parses iptables-save text (or a payload of ours); only the nat table is read. */
export function ownedState(saved: string): OwnedState {
  const state: OwnedState = { chains: new Map(), jumps: [] };
  let inNat = false;
  for (const raw of saved.split('\n')) {
    const line = raw.trimEnd();
    if (line.startsWith('*')) inNat = line === '*nat';
    else if (line === 'COMMIT') inNat = false;
    if (!inNat) continue;
    if (line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0] ?? '';
      if (OWNED.has(name) && !state.chains.has(name)) state.chains.set(name, []);
    } else if (line.startsWith('-A ')) {
      const chain = line.split(' ')[1] ?? '';
      if (OWNED.has(chain)) {
        const rules = state.chains.get(chain) ?? [];
        rules.push(line);
        state.chains.set(chain, rules);
      } else if (isOwnJump(line)) {
        state.jumps.push(line);
      }
    }
  }
  return state;
}

/** Stable text of a state: chains in name order, then jumps; what verify compares and diffs. */
export function stateLines(state: OwnedState): string[] {
  const lines: string[] = [];
  for (const chain of [...state.chains.keys()].sort()) {
    lines.push(`:${chain}`, ...(state.chains.get(chain) ?? []));
  }
  lines.push(...state.jumps);
  return lines;
}

export function isEmptyState(state: OwnedState): boolean {
  return state.chains.size === 0 && state.jumps.length === 0;
}

/** A line diff (longest common subsequence): "-" wanted but missing, "+" present but unwanted. */
export function lineDiff(want: string[], have: string[]): string {
  const n = want.length;
  const m = have.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i]![j] = want[i] === have[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
    }
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && want[i] === have[j]) {
      out.push(`  ${want[i]}`);
      i++;
      j++;
    } else if (j < m && (i === n || lcs[i]![j + 1]! >= lcs[i + 1]![j]!)) {
      out.push(`+ ${have[j]}`);
      j++;
    } else {
      out.push(`- ${want[i]}`);
      i++;
    }
  }
  return out.join('\n');
}

/** Diff of desired vs current; '' when equal. */
export function stateDiff(desired: OwnedState, current: OwnedState): string {
  const want = stateLines(desired);
  const have = stateLines(current);
  if (want.length === have.length && want.every((line, index) => line === have[index])) return '';
  return lineDiff(want, have);
}

const deleteLine = (appendLine: string) => `-D ${appendLine.slice(3)}`;

/**
 * One transaction for `iptables-restore --noflush` turning `current` into the payload:
 * its ":CHAIN" lines create or flush only our chains, stale jumps of ours are deleted
 * and owned chains the payload no longer has are dropped. All or nothing.
 */
export function replaceTransaction(payload: string, current: OwnedState): string {
  const desired = ownedState(payload);
  const keepJumps = current.jumps.length === desired.jumps.length && current.jumps.every((jump, i) => jump === desired.jumps[i]);
  const lines = ['*nat'];
  for (const chain of desired.chains.keys()) lines.push(`:${chain} - [0:0]`);
  if (!keepJumps) {
    lines.push(...current.jumps.map(deleteLine), ...desired.jumps);
  }
  const dropped = [...current.chains.keys()].filter((chain) => !desired.chains.has(chain));
  lines.push(...dropped.map((chain) => `-F ${chain}`), ...dropped.map((chain) => `-X ${chain}`));
  for (const chain of desired.chains.keys()) lines.push(...(desired.chains.get(chain) ?? []));
  lines.push('COMMIT');
  return lines.join('\n') + '\n';
}

/**
 * The transaction for a netns holding none of our chains: "-N" fails if one exists,
 * which aborts the whole transaction, so it can never duplicate our jumps.
 */
export function freshTransaction(payload: string): string {
  return payload.replace(/^:(\S+) - \[0:0\]$/gm, '-N $1');
}

/** The transaction deleting our jumps and chains; undefined when nothing of ours exists. */
export function removeTransaction(current: OwnedState): string | undefined {
  if (isEmptyState(current)) return undefined;
  const chains = [...current.chains.keys()];
  const lines = [
    '*nat',
    ...current.jumps.map(deleteLine),
    ...chains.map((chain) => `-F ${chain}`),
    ...chains.map((chain) => `-X ${chain}`),
    'COMMIT',
  ];
  return lines.join('\n') + '\n';
}
