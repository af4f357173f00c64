import { describe, expect, it } from 'vitest';
import { decideMarkAction, handledToken, markIsCurrent, recordMatches, wasInitialized } from '../../controller/src/agent/mark-decision.ts';
import { encodeMark, encodeNetnsRecord, parseMark } from '../../controller/src/pod-contract/index.ts';

const at = '2026-11-23T01:02:03Z';
const good = encodeMark({ v: 2, state: 'initialized', netns: 4026532845, rules: 'abcdef0123456789', at, id: 'mark-id-0001' });
const current = { netnsInode: 4026532845, rulesHash: 'abcdef0123456789', reinitToken: undefined };

describe('does the existing mark count', () => {
  it('counts only when state, netns and rules hash all match: then the rules are verified', () => {
    expect(decideMarkAction({ ...current, markText: good })).toEqual({ kind: 'verify' });
  });

  it('programs when there is no mark or an unreadable one', () => {
    expect(decideMarkAction({ ...current, markText: undefined })).toEqual({ kind: 'program', why: 'no-mark' });
    expect(decideMarkAction({ ...current, markText: 'initialized' })).toEqual({ kind: 'program', why: 'unreadable-mark' });
    expect(decideMarkAction({ ...current, markText: '{"state":"done"}' })).toEqual({ kind: 'program', why: 'unreadable-mark' });
  });

  it('programs when the mark names another netns (new sandbox after a reboot, or forged)', () => {
    expect(decideMarkAction({ ...current, netnsInode: 4026532999, markText: good })).toEqual({ kind: 'program', why: 'other-netns' });
    const noNetns = encodeMark({ state: 'initialized', rules: 'abcdef0123456789', at });
    expect(decideMarkAction({ ...current, markText: noNetns })).toEqual({ kind: 'program', why: 'other-netns' });
  });

  it('programs over an initialized mark of the first format (no v, no id): nothing in the netns can confirm it', () => {
    const old = encodeMark({ state: 'initialized', netns: 4026532845, rules: 'abcdef0123456789', at });
    expect(decideMarkAction({ ...current, markText: old })).toEqual({ kind: 'program', why: 'old-format' });
    expect(decideMarkAction({ ...current, markText: '{"v":3,"state":"initialized","netns":4026532845}' })).toEqual({ kind: 'program', why: 'unreadable-mark' });
  });

  it("takes the netns record as the mark's only when netns, rules and id all agree", () => {
    const mark = parseMark(good);
    expect(recordMatches(good, encodeNetnsRecord(mark))).toBe(true);
    expect(recordMatches(good, `${encodeNetnsRecord(mark)}\n`)).toBe(true);
    expect(recordMatches(good, '')).toBe(false);
    expect(recordMatches(good, 'eth-uplink')).toBe(false);
    expect(recordMatches(good, encodeNetnsRecord({ ...mark, id: 'mark-id-0002' }))).toBe(false);
    expect(recordMatches(good, encodeNetnsRecord({ ...mark, netns: 4026532846 }))).toBe(false);
    expect(recordMatches(good, encodeNetnsRecord({ ...mark, rules: '0000000000000000' }))).toBe(false);
    expect(recordMatches(good, 'pod-network-controller/3 netns=4026532845 rules=abcdef0123456789 id=mark-id-0001')).toBe(false);
  });

  it('programs when the rules hash differs from the current plan', () => {
    expect(decideMarkAction({ ...current, rulesHash: '0000000000000000', markText: good })).toEqual({ kind: 'program', why: 'rules-changed' });
  });

  it('programs pods marked error or pending', () => {
    for (const state of ['error', 'pending'] as const) {
      expect(decideMarkAction({ ...current, markText: encodeMark({ state, netns: 4026532845, rules: 'abcdef0123456789', at }) })).toEqual({
        kind: 'program',
        why: 'not-initialized',
      });
    }
  });

  it('handles a new re-init token once', () => {
    expect(decideMarkAction({ ...current, markText: good, reinitToken: 't1' })).toEqual({ kind: 'reinit', token: 't1' });
    const handled = encodeMark({ ...parseMark(good), reinit: 't1' });
    expect(decideMarkAction({ ...current, markText: handled, reinitToken: 't1' })).toEqual({ kind: 'verify' });
    expect(decideMarkAction({ ...current, markText: handled, reinitToken: 't2' })).toEqual({ kind: 'reinit', token: 't2' });
    expect(decideMarkAction({ ...current, markText: good, reinitToken: '' })).toEqual({ kind: 'verify' });
  });

  it('keeps the handled token across marks', () => {
    const handled = encodeMark({ state: 'error', at, reason: 'x', reinit: 't1' });
    expect(handledToken(handled)).toBe('t1');
    expect(handledToken(handled, 't2')).toBe('t2');
    expect(handledToken(undefined)).toBeUndefined();
  });

  it('tells whether a pod was initialized before', () => {
    expect(wasInitialized(good)).toBe(true);
    expect(wasInitialized(encodeMark({ state: 'error', at, reason: 'x' }))).toBe(false);
    expect(wasInitialized('garbage')).toBe(false);
  });

  it('does not rewrite an error mark that already says the same', () => {
    const error = encodeMark({ state: 'error', at, reason: 'bad port' });
    expect(markIsCurrent(error, 'error', 'bad port')).toBe(true);
    expect(markIsCurrent(error, 'error', 'another')).toBe(false);
    expect(markIsCurrent(good, 'error', 'bad port')).toBe(false);
    expect(markIsCurrent(undefined, 'error', 'bad port')).toBe(false);
  });
});
