// Choosing the iptables backend from what the host already uses (pure decision).
import { describe, expect, it } from 'vitest';
import { chooseIptablesMode, IptablesModeError, NodeConfigError, parseIptablesMode } from '../../controller/src/redirect/index.ts';

describe('chooseIptablesMode', () => {
  it.each([
    [{ legacyRules: 40, nftRules: 0 }, 'legacy'],
    [{ legacyRules: 40, nftRules: undefined }, 'legacy'],
    [{ legacyRules: 3, nftRules: 50 }, 'nft'],
    [{ legacyRules: 0, nftRules: 0 }, 'nft'],
    [{ legacyRules: undefined, nftRules: 0 }, 'nft'],
    [{ legacyRules: 0, nftRules: undefined }, 'legacy'],
  ] as const)('%j -> %s', (backends, mode) => {
    expect(chooseIptablesMode(backends)).toBe(mode);
  });

  it('fails when neither backend works', () => {
    expect(() => chooseIptablesMode({ legacyRules: undefined, nftRules: undefined })).toThrow(IptablesModeError);
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
