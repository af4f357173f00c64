// Reading back what this project owns in the nat and raw tables (pure), and the restore
// transactions that replace or remove exactly that, leaving everyone else's rules.
import { cutUtf8 } from '../pod-contract/index.ts';
import { OWNED_CHAINS, OWNER_COMMENT, TABLES, type Table } from './render.ts';

/** Our part of one table: owned chains (with their rules) and our tagged jumps. */
export interface TableState {
  /** Owned chain -> its rules ("-A CHAIN ..."), in order; only chains that exist. */
  chains: Map<string, string[]>;
  /** Our tagged jumps in the built-in chains ("-A PREROUTING ..."), in order. */
  jumps: string[];
}

/** Our part of one family's ruleset, per table (raw holds only the DNS conntrack zones). */
export type OwnedState = Record<Table, TableState>;

function isOwnJump(line: string): boolean {
  return line.includes(`-m comment --comment ${OWNER_COMMENT} `) || line.includes(`--comment "${OWNER_COMMENT}"`);
}

/** Parses iptables-save text (or a payload of ours); only the nat and raw tables are read. */
export function ownedState(saved: string): OwnedState {
  const state: OwnedState = { nat: { chains: new Map(), jumps: [] }, raw: { chains: new Map(), jumps: [] } };
  let current: TableState | undefined;
  let owned: readonly string[] = [];
  for (const raw of saved.split('\n')) {
    const line = raw.trimEnd();
    if (line.startsWith('*')) {
      const table = line.slice(1);
      current = (TABLES as readonly string[]).includes(table) ? state[table as Table] : undefined;
      owned = current ? OWNED_CHAINS[table as Table] : [];
    } else if (line === 'COMMIT') {
      current = undefined;
    }
    if (!current) continue;
    if (line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0] ?? '';
      if (owned.includes(name) && !current.chains.has(name)) current.chains.set(name, []);
    } else if (line.startsWith('-A ')) {
      const chain = line.split(' ')[1] ?? '';
      if (owned.includes(chain)) {
        const rules = current.chains.get(chain) ?? [];
        rules.push(line);
        current.chains.set(chain, rules);
      } else if (isOwnJump(line)) {
        current.jumps.push(line);
      }
    }
  }
  return state;
}

function isEmptyTable(state: TableState): boolean {
  return state.chains.size === 0 && state.jumps.length === 0;
}

/** Stable text of a state: per non-empty table, chains in name order, then jumps; what verify compares and diffs. */
export function stateLines(state: OwnedState): string[] {
  const lines: string[] = [];
  for (const table of TABLES) {
    const part = state[table];
    if (isEmptyTable(part)) continue;
    lines.push(`*${table}`);
    for (const chain of [...part.chains.keys()].sort()) lines.push(`:${chain}`, ...(part.chains.get(chain) ?? []));
    lines.push(...part.jumps);
  }
  return lines;
}

export function isEmptyState(state: OwnedState): boolean {
  return TABLES.every((table) => isEmptyTable(state[table]));
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
 * per table, its ":CHAIN" lines create or flush only our chains, stale jumps of ours are
 * deleted and owned chains the payload no longer has are dropped. All or nothing.
 */
export function replaceTransaction(payload: string, current: OwnedState): string {
  const desired = ownedState(payload);
  const lines: string[] = [];
  for (const table of TABLES) {
    const want = desired[table];
    const have = current[table];
    if (isEmptyTable(want) && isEmptyTable(have)) continue;
    lines.push(`*${table}`);
    for (const chain of want.chains.keys()) lines.push(`:${chain} - [0:0]`);
    const keepJumps = have.jumps.length === want.jumps.length && have.jumps.every((jump, i) => jump === want.jumps[i]);
    if (!keepJumps) lines.push(...have.jumps.map(deleteLine), ...want.jumps);
    const dropped = [...have.chains.keys()].filter((chain) => !want.chains.has(chain));
    lines.push(...dropped.map((chain) => `-F ${chain}`), ...dropped.map((chain) => `-X ${chain}`));
    for (const chain of want.chains.keys()) lines.push(...(want.chains.get(chain) ?? []));
    lines.push('COMMIT');
  }
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
  const lines: string[] = [];
  for (const table of TABLES) {
    const part = current[table];
    if (isEmptyTable(part)) continue;
    const chains = [...part.chains.keys()];
    lines.push(`*${table}`, ...part.jumps.map(deleteLine), ...chains.map((chain) => `-F ${chain}`), ...chains.map((chain) => `-X ${chain}`), 'COMMIT');
  }
  return lines.join('\n') + '\n';
}

/** Bounds on a failed restore's message: the rule it names, and iptables' own words. */
const FAILED_RULE_MAX_BYTES = 384;
const RESTORE_STDERR_MAX_BYTES = 512;

/**
 * Why a restore failed, naming the line of the transaction iptables reports (legacy's "line N
 * failed" and "Error occurred at line: N", nft's "line N: RULE_APPEND failed") rather than
 * quoting the transaction, which a pod's include lists make tens of KB. A COMMIT line means
 * the kernel refused the table as a whole: iptables names no rule then, and neither can we.
 */
export function restoreFailure(binary: string, transaction: string, code: number, stderr: string): string {
  const said = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('Try `'))
    .join(' ');
  const lines = transaction.replace(/\n$/, '').split('\n');
  const reported = /\bline:? (\d+)\b/.exec(stderr);
  let where = ' (iptables named no line)';
  if (reported) {
    const number = Number(reported[1]);
    const line = lines[number - 1];
    if (line === undefined) where = ` at line ${number}, past the end of its ${lines.length}-line input`;
    else if (line === 'COMMIT')
      where = ` at line ${number}, the COMMIT of table ${tableOf(lines, number - 1)} (the kernel refused the table; iptables names no rule)`;
    else where = ` at line ${number}: ${cutUtf8(line, FAILED_RULE_MAX_BYTES)}`;
  }
  return `${binary} --noflush failed (exit ${code})${where}; it said: ${cutUtf8(said, RESTORE_STDERR_MAX_BYTES)}`;
}

/** The table whose "*table" header comes last before lines[index]. */
function tableOf(lines: string[], index: number): string {
  for (let i = index; i >= 0; i--) if (lines[i]!.startsWith('*')) return lines[i]!.slice(1);
  return '(none)';
}
