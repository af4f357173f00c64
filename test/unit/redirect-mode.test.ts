// Choosing the iptables backend from what the host already uses (pure decision).
import { describe, expect, it } from 'vitest';
import { chooseIptablesMode, IptablesModeError, NodeConfigError, parseIptablesMode } from '../../controller/src/redirect/index.ts';

const rules = (count: number, kubeletHint = false) => ({ rules: count, kubeletHint });

describe('chooseIptablesMode', () => {
  it.each([
    ['legacy rules only', { legacy: rules(40), nft: rules(0) }, 'legacy'],
    ['nft cannot list', { legacy: rules(40), nft: undefined }, 'legacy'],
    ['more in nft (kube-proxy in nft, a few legacy leftovers)', { legacy: rules(3), nft: rules(50) }, 'nft'],
    ['more in legacy (kube-proxy in legacy, a few nft rules)', { legacy: rules(50), nft: rules(3) }, 'legacy'],
    ['a tie with rules: legacy, as the wrapper counts', { legacy: rules(7), nft: rules(7) }, 'legacy'],
    ['an empty host: nft', { legacy: rules(0), nft: rules(0) }, 'nft'],
    ['legacy cannot list', { legacy: undefined, nft: rules(0) }, 'nft'],
    ['only legacy works', { legacy: rules(0), nft: undefined }, 'legacy'],
    ["the kubelet's hint in nft beats more legacy rules", { legacy: rules(90), nft: rules(2, true) }, 'nft'],
    ["the kubelet's hint in legacy beats more nft rules", { legacy: rules(2, true), nft: rules(90) }, 'legacy'],
    ['the hint in both: the counts decide', { legacy: rules(5, true), nft: rules(9, true) }, 'nft'],
  ] as const)('%s -> %s', (_name, backends, mode) => {
    const decision = chooseIptablesMode(backends);
    expect(decision.mode).toBe(mode);
    expect(decision.why).toMatch(/legacy (\d+ rules|cannot list), nft (\d+ rules|cannot list)/);
  });

  it('says why: the hint, or the counts', () => {
    expect(chooseIptablesMode({ legacy: rules(2, true), nft: rules(90) }).why).toBe("the kubelet's hint chain is in legacy (legacy 2 rules, nft 90 rules)");
    expect(chooseIptablesMode({ legacy: rules(0), nft: rules(0) }).why).toBe('no rules in either, nft works (legacy 0 rules, nft 0 rules)');
  });

  it('fails when neither backend works', () => {
    expect(() => chooseIptablesMode({ legacy: undefined, nft: undefined })).toThrow(IptablesModeError);
  });
});

describe('parseIptablesMode', () => {
  it('accepts legacy, nft and auto/empty (detect)', () => {
    expect(parseIptablesMode('legacy', 'X')).toBe('legacy');
    expect(parseIptablesMode('nft', 'X')).toBe('nft');
    expect(parseIptablesMode('auto', 'X')).toBeUndefined();
    expect(parseIptablesMode(undefined, 'X')).toBeUndefined();
  });

  it('refuses anything else naming the source and value', () => {
    expect(() => parseIptablesMode('nf_tables', 'PNC_IPTABLES_MODE')).toThrow(NodeConfigError);
    expect(() => parseIptablesMode('nf_tables', 'PNC_IPTABLES_MODE')).toThrow('PNC_IPTABLES_MODE="nf_tables"');
  });
});
