// Where the first packet of an app's outbound TCP connection goes under a plan's rules (pure):
// walks the nat table's ISTIO_OUTPUT chain of the very payload the engine restores, rule by
// rule, as the kernel would. Knows only the matches renderChains uses, and throws on any other, so a new kind of
// rule cannot be silently misread.
import { addressValue, cidrBounds, parseCidr, type Family } from '../../controller/src/pod-contract/index.ts';
import { renderPlan, type RedirectPlan } from '../../controller/src/redirect/index.ts';

export interface OutboundPacket {
  family: Family;
  /** The interface the route sends it out of. */
  out: string;
  source: string;
  destination: string;
  port: number;
  uid: number;
  gid: number;
}

/** outbound: to the proxy's capture port; inbound: to its inbound port; dns: to its DNS port; none: not redirected. */
export type Verdict = 'outbound' | 'inbound' | 'dns' | 'none';

const TARGETS: Record<string, Verdict | 'RETURN'> = { ISTIO_REDIRECT: 'outbound', ISTIO_IN_REDIRECT: 'inbound', REDIRECT: 'dns', RETURN: 'RETURN' };

export function outboundVerdict(plan: RedirectPlan, packet: OutboundPacket): Verdict {
  const chains = natChains(renderPlan(plan)[packet.family] ?? '');
  const walk = (rules: readonly string[]): Verdict | undefined => {
    for (const rule of rules) {
      const { matches, target } = judge(rule, packet);
      if (!matches) continue;
      const verdict = TARGETS[target];
      if (verdict === 'RETURN') return 'none';
      if (verdict !== undefined) return verdict;
      // A jump to a user chain: its verdict, or on past the jump when it ends without one.
      const chain = chains[target];
      if (chain === undefined) throw new Error(`unknown target in ${rule}`);
      const inner = walk(chain);
      if (inner !== undefined) return inner;
    }
    return undefined;
  };
  return walk(chains.OUTPUT ?? []) ?? 'none';
}

/** The nat table's rules per chain ("-A CHAIN rule" -> CHAIN: [rule]). */
function natChains(payload: string): Partial<Record<string, string[]>> {
  const chains: Partial<Record<string, string[]>> = {};
  let table = '';
  for (const line of payload.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1);
    const rule = /^-A (\S+) (.*)$/.exec(line);
    if (table === 'nat' && rule) (chains[rule[1]!] ??= []).push(rule[2]!);
  }
  return chains;
}

function inCidr(family: Family, address: string, cidr: string): boolean {
  const parsed = parseCidr(cidr);
  if (parsed.family !== family) return false;
  const { first, last } = cidrBounds(parsed);
  const value = addressValue(family, address);
  return first <= value && value <= last;
}

function judge(rule: string, packet: OutboundPacket): { matches: boolean; target: string } {
  const tokens = rule.split(' ');
  let matches = true;
  let target = '';
  for (let i = 0; i < tokens.length; i++) {
    const negate = tokens[i] === '!';
    if (negate) i++;
    const option = tokens[i]!;
    const value = tokens[i + 1]!;
    const holds = (result: boolean) => {
      if (result === negate) matches = false;
      i++;
    };
    switch (option) {
      case '-o':
        holds(packet.out === value);
        break;
      case '-s':
        holds(inCidr(packet.family, packet.source, value));
        break;
      case '-d':
        holds(inCidr(packet.family, packet.destination, value));
        break;
      case '-p':
        holds(value === 'tcp');
        break;
      case '-m':
      case '--comment':
        i++;
        break;
      case '--dport':
        holds(packet.port === Number(value));
        break;
      case '--dports':
        holds(value.split(',').map(Number).includes(packet.port));
        break;
      case '--uid-owner':
        holds(packet.uid === Number(value));
        break;
      case '--gid-owner':
        holds(packet.gid === Number(value));
        break;
      case '-j':
        target = value;
        i = tokens.length;
        break;
      default:
        throw new Error(`unknown match ${option} in ${rule}`);
    }
  }
  return { matches, target };
}
