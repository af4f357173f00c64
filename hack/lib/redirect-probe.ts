// Looks into a pod's network namespace from outside: which iptables rules are there, in
// every backend. Used by the controller's end-to-end tests and the demos, so both prove
// redirection the same way (where connections land: connectFrom and startListeners in netns.ts).
import { runInNetns } from '../../controller/src/redirect/index.ts';

/** Our jump rules (nat PREROUTING -> ISTIO_INBOUND, OUTPUT -> ISTIO_OUTPUT) and ISTIO_* chains (any table), per save tool. */
export interface JumpRuleCount {
  tool: string;
  inbound: number;
  outbound: number;
  istioChains: number;
}

const SAVE_TOOLS = ['iptables-legacy-save', 'iptables-nft-save', 'ip6tables-legacy-save', 'ip6tables-nft-save'] as const;

async function saveInNetns(netnsPath: string, argv: string[]): Promise<string> {
  const result = await runInNetns(netnsPath, argv);
  if (result.code !== 0) throw new Error(`${argv.join(' ')} in ${netnsPath}: exit ${result.code}: ${result.stderr.trim()}`);
  return result.stdout;
}

/** `iptables-save -t nat` (of the given tool) inside a netns; stdout. */
export function natRules(netnsPath: string, tool = 'iptables-save'): Promise<string> {
  return saveInNetns(netnsPath, [tool, '-t', 'nat']);
}

/**
 * Pure: counts jumps to our chains in the nat table and ISTIO_* chain declarations in every
 * table of one `*-save` output. Loose on purpose (no owner comment needed), so a copy of the
 * rules made by someone else counts too.
 */
function countJumpRules(saveOutput: string): Omit<JumpRuleCount, 'tool'> {
  const counts = { inbound: 0, outbound: 0, istioChains: 0 };
  let table = '';
  for (const line of saveOutput.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1);
    else if (line.startsWith(':ISTIO_')) counts.istioChains++;
    else if (table === 'nat' && /^-A PREROUTING\b.*-j ISTIO_INBOUND\b/.test(line)) counts.inbound++;
    else if (table === 'nat' && /^-A OUTPUT\b.*-j ISTIO_OUTPUT\b/.test(line)) counts.outbound++;
  }
  return counts;
}

/**
 * Counts our jump rules with every backend (legacy and nft, IPv4 and IPv6), reading every
 * table, so rules programmed twice, into the wrong backend, or left in raw all show up.
 */
export async function jumpRuleCounts(netnsPath: string): Promise<JumpRuleCount[]> {
  return Promise.all(SAVE_TOOLS.map(async (tool) => ({ tool, ...countJumpRules(await saveInNetns(netnsPath, [tool])) })));
}

/** Pure: true when no backend of either family holds an ISTIO_* chain or one of our jumps. */
export function noRedirectRules(counts: readonly JumpRuleCount[]): boolean {
  return counts.every((c) => c.inbound === 0 && c.outbound === 0 && c.istioChains === 0);
}
