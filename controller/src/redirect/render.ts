// RedirectPlan -> one iptables-restore payload per family (pure). Rules are written
// exactly as iptables-save prints them back, so verify can compare text with text.
import { createHash } from 'node:crypto';
import { TUNNEL_PORT, type Family, type RedirectPlan } from './types.ts';

/** Comment on our jumps from the built-in chains: how replace/remove find exactly ours. */
export const OWNER_COMMENT = 'pod-network-controller';

export const TABLES = ['nat', 'raw'] as const;
export type Table = (typeof TABLES)[number];

const NAT_CHAINS = ['ISTIO_INBOUND', 'ISTIO_IN_REDIRECT', 'ISTIO_OUTPUT', 'ISTIO_OUTPUT_DNS', 'ISTIO_REDIRECT'] as const;
const RAW_CHAINS = ['ISTIO_INBOUND', 'ISTIO_OUTPUT_DNS'] as const;

/**
 * Chains this project owns, per table (Istio's names, so an unchanged istio-proxy works
 * behind them). ISTIO_OUTPUT_DNS (both tables) and raw's ISTIO_INBOUND exist only with DNS capture.
 */
export const OWNED_CHAINS: Record<Table, readonly string[]> = { nat: NAT_CHAINS, raw: RAW_CHAINS };

/** Our jumps from the built-in chains, one per line, as iptables-save prints them. */
const OWNED_JUMPS: Record<Table, readonly string[]> = {
  nat: [`-A PREROUTING -p tcp -m comment --comment ${OWNER_COMMENT} -j ISTIO_INBOUND`, `-A OUTPUT -m comment --comment ${OWNER_COMMENT} -j ISTIO_OUTPUT`],
  raw: [
    `-A PREROUTING -p udp -m comment --comment ${OWNER_COMMENT} -j ISTIO_INBOUND`,
    `-A OUTPUT -p udp -m comment --comment ${OWNER_COMMENT} -j ISTIO_OUTPUT_DNS`,
  ],
};

const LOOPBACK: Record<Family, { host: string; passthroughSource: string }> = {
  ipv4: { host: '127.0.0.1/32', passthroughSource: '127.0.0.6/32' },
  ipv6: { host: '::1/128', passthroughSource: '::6/128' },
};

/** "-d X " for a destination match; a /0 range matches everything, which iptables-save prints as nothing. */
function destination(cidr: string): string {
  return cidr.endsWith('/0') ? '' : `-d ${cidr} `;
}

function port(proto: 'tcp' | 'udp', value: number): string {
  return `-p ${proto} -m ${proto} --dport ${value}`;
}

/**
 * The nat rules of one family, per chain, in rule order: Istio's istio-iptables layout
 * (tools/istio-iptables/pkg/capture/run.go, REDIRECT mode, DNS capture as istio-cni does it),
 * each rule written the way iptables-save prints it back.
 */
export function renderChains(plan: RedirectPlan, family: Family): Partial<Record<(typeof NAT_CHAINS)[number], string[]>> {
  const { inbound, outbound } = plan;
  const loop = LOOPBACK[family];

  // Istio puts the interface RETURNs in PREROUTING/OUTPUT before its jumps; first in our chains is the same flow.
  const inboundRules = plan.excludeInterfaces.map((name) => `-i ${name} -j RETURN`);
  inboundRules.push(`${port('tcp', TUNNEL_PORT)} -j RETURN`);
  if (inbound.includePorts === '*') {
    inboundRules.push(...inbound.excludePorts.filter((p) => p !== TUNNEL_PORT).map((p) => `${port('tcp', p)} -j RETURN`));
    inboundRules.push('-p tcp -j ISTIO_IN_REDIRECT');
  } else {
    inboundRules.push(...inbound.includePorts.map((p) => `${port('tcp', p)} -j ISTIO_IN_REDIRECT`));
  }

  const outputRules = plan.excludeInterfaces.map((name) => `-o ${name} -j RETURN`);
  for (const p of outbound.excludePorts) outputRules.push(`${port('tcp', p)} -j RETURN`, `${port('udp', p)} -j RETURN`);
  // Inbound passthrough: the proxy forwards inbound traffic to the app from this source.
  outputRules.push(`-s ${loop.passthroughSource} -o lo -j RETURN`);
  const dns = plan.captureDns;
  for (const [match, id] of [
    ['--uid-owner', plan.proxyUid],
    ['--gid-owner', plan.proxyGid],
  ] as const) {
    // Proxy -> own pod IP over lo (app -> service VIP -> itself): treat as inbound, except
    // HBONE and (for the UID only, as in Istio) DNS, which the proxy's DNS server sends itself.
    const notTo = dns && match === '--uid-owner' ? `-m multiport ! --dports 53,${TUNNEL_PORT}` : `-m tcp ! --dport ${TUNNEL_PORT}`;
    outputRules.push(`! -d ${loop.host} -o lo -p tcp ${notTo} -m owner ${match} ${id} -j ISTIO_IN_REDIRECT`);
    // App -> itself over lo stays uncaptured, unless an include range asks for loopback; with
    // DNS capture, TCP DNS to a resolver on lo still goes to the proxy.
    if (!outbound.includesLoopback) {
      outputRules.push(dns ? `-o lo -p tcp -m tcp ! --dport 53 -m owner ! ${match} ${id} -j RETURN` : `-o lo -m owner ! ${match} ${id} -j RETURN`);
    }
    outputRules.push(`-m owner ${match} ${id} -j RETURN`);
  }
  if (dns) outputRules.push('-j ISTIO_OUTPUT_DNS');
  outputRules.push(`-d ${loop.host} -j RETURN`);
  outputRules.push(...outbound.excludeCidrs[family].map((cidr) => `${destination(cidr)}-j RETURN`));
  outputRules.push(...outbound.includePorts.map((p) => `${port('tcp', p)} -j ISTIO_REDIRECT`));
  if (outbound.includeCidrs === '*') outputRules.push('-j ISTIO_REDIRECT');
  else outputRules.push(...outbound.includeCidrs[family].map((cidr) => `${destination(cidr)}-j ISTIO_REDIRECT`));

  return {
    ISTIO_INBOUND: inboundRules,
    ISTIO_IN_REDIRECT: [`-p tcp -j REDIRECT --to-ports ${plan.inboundPort}`],
    ISTIO_OUTPUT: outputRules,
    // Every port-53 query of the app (istio-cni's capture-all, not istio-init's resolv.conf servers).
    ...(dns
      ? { ISTIO_OUTPUT_DNS: [`${port('tcp', 53)} -j REDIRECT --to-ports ${plan.dnsPort}`, `${port('udp', 53)} -j REDIRECT --to-ports ${plan.dnsPort}`] }
      : {}),
    ISTIO_REDIRECT: [`-p tcp -j REDIRECT --to-ports ${plan.outboundPort}`],
  };
}

/**
 * With DNS capture, UDP DNS is split into two conntrack zones as Istio does: the proxy's own
 * queries to the resolvers (and their answers) in zone 1, the app's queries to the proxy (and
 * its answers) in zone 2, so the two flows can never collide in one conntrack entry.
 */
function renderDnsZoneChains(plan: RedirectPlan): Record<(typeof RAW_CHAINS)[number], string[]> {
  const output: string[] = [];
  for (const [match, id] of [
    ['--uid-owner', plan.proxyUid],
    ['--gid-owner', plan.proxyGid],
  ] as const) {
    output.push(
      `-p udp -m udp --dport 53 -m owner ${match} ${id} -j CT --zone 1`,
      `-p udp -m udp --sport ${plan.dnsPort} -m owner ${match} ${id} -j CT --zone 2`,
    );
  }
  output.push('-p udp -m udp --dport 53 -j CT --zone 2');
  return { ISTIO_INBOUND: ['-p udp -m udp --sport 53 -j CT --zone 1'], ISTIO_OUTPUT_DNS: output };
}

/** The table's section: its chains that have rules (in OWNED_CHAINS order), our jumps, the rules. */
function tableSection(table: Table, chains: Partial<Record<string, string[]>>): string[] {
  const names = OWNED_CHAINS[table].filter((chain) => chains[chain] !== undefined);
  const lines = [`*${table}`, ...names.map((chain) => `:${chain} - [0:0]`), ...OWNED_JUMPS[table]];
  for (const chain of names) lines.push(...chains[chain]!.map((rule) => `-A ${chain} ${rule}`));
  lines.push('COMMIT');
  return lines;
}

/** One `iptables-restore --noflush` payload per family of the plan (nat, plus raw with DNS capture). */
export function renderPlan(plan: RedirectPlan): Partial<Record<Family, string>> {
  const rendered: Partial<Record<Family, string>> = {};
  for (const family of plan.families) {
    const lines = tableSection('nat', renderChains(plan, family));
    if (plan.captureDns) lines.push(...tableSection('raw', renderDnsZoneChains(plan)));
    rendered[family] = lines.join('\n') + '\n';
  }
  return rendered;
}

/** 16 hex chars of sha256 over the payloads in family order; what the pod's mark records. */
export function rulesHash(rendered: Partial<Record<Family, string>>): string {
  const hash = createHash('sha256');
  for (const family of ['ipv4', 'ipv6'] as const) {
    const payload = rendered[family];
    if (payload !== undefined) hash.update(`${family}\n${payload}\0`);
  }
  return hash.digest('hex').slice(0, 16);
}
