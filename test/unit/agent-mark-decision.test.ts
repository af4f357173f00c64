import { describe, expect, it } from 'vitest';
import { decideMarkAction, handledToken, markIsCurrent, wasInitialized } from '../../controller/src/agent/mark-decision.ts';
import { encodeMark } from '../../controller/src/pod-contract/index.ts';

const at = '2026-11-23T01:02:03Z';
const good = encodeMark({ state: 'initialized', netns: 4026532845, rules: 'abcdef0123456789', at });
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
    const handled = encodeMark({ state: 'initialized', netns: 4026532845, rules: 'abcdef0123456789', at, reinit: 't1' });
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
