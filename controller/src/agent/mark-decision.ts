// Whether an existing mark counts, and what the reconciler must do about it. Pure.
// A mark is never trusted on its own: it counts only when it names the pod's current
// netns and the current plan's rules hash, and even then the rules are verified.
import { boundedReason, type Mark, MarkFormatError, parseMark, parseNetnsRecord } from '../pod-contract/index.ts';

export type MarkAction =
  /** The mark names this netns and these rules: verify the rules in the netns. */
  | { kind: 'verify' }
  /** A new re-init token: flush our rules, apply, verify, record the token. */
  | { kind: 'reinit'; token: string }
  /** Program (idempotent apply), verify, write the mark. */
  | { kind: 'program'; why: 'no-mark' | 'unreadable-mark' | 'not-initialized' | 'other-netns' | 'rules-changed' | 'old-format' };

export interface MarkContext {
  /** The pod's current `pod-network-controller.io/status` value, if any. */
  markText: string | undefined;
  /** The pod's current `pod-network-controller.io/reinit` value, if any. */
  reinitToken: string | undefined;
  netnsInode: number;
  rulesHash: string;
}

export function readMark(text: string | undefined): Mark | undefined {
  if (text === undefined) return undefined;
  try {
    return parseMark(text);
  } catch (error) {
    if (error instanceof MarkFormatError) return undefined;
    throw error;
  }
}

export function decideMarkAction(context: MarkContext): MarkAction {
  const mark = readMark(context.markText);
  const token = context.reinitToken;
  if (token !== undefined && token !== '' && token !== mark?.reinit) return { kind: 'reinit', token };
  if (context.markText === undefined) return { kind: 'program', why: 'no-mark' };
  if (!mark) return { kind: 'program', why: 'unreadable-mark' };
  if (mark.state !== 'initialized') return { kind: 'program', why: 'not-initialized' };
  if (mark.netns !== context.netnsInode) return { kind: 'program', why: 'other-netns' };
  if (mark.rules !== context.rulesHash) return { kind: 'program', why: 'rules-changed' };
  // Format 1 (an earlier release's agent) has no id, so its netns holds no record to check it by.
  if (mark.id === undefined) return { kind: 'program', why: 'old-format' };
  return { kind: 'verify' };
}

/**
 * True when the netns's record (lo's alias) is the one written for this mark. A new sandbox
 * starts with none, so a mark naming its netns inode by reuse never matches.
 */
export function recordMatches(markText: string, recordText: string): boolean {
  const mark = readMark(markText);
  let record;
  try {
    record = parseNetnsRecord(recordText);
  } catch (error) {
    if (error instanceof MarkFormatError) return false;
    throw error;
  }
  return record !== undefined && mark?.id !== undefined && record.id === mark.id && record.netns === mark.netns && record.rules === mark.rules;
}

/** True when the pod carried an initialized mark before (programming it again is a repair). */
export function wasInitialized(markText: string | undefined): boolean {
  return readMark(markText)?.state === 'initialized';
}

/** The token to keep in a new mark: the one just handled, else the one handled before. */
export function handledToken(markText: string | undefined, justHandled?: string): string | undefined {
  return justHandled ?? readMark(markText)?.reinit;
}

/**
 * An error/pending mark only needs writing when it says something new; rewriting the
 * same state and reason would only bump `at` and cause another pod update event.
 */
export function markIsCurrent(markText: string | undefined, state: Mark['state'], reason: string | undefined): boolean {
  const mark = readMark(markText);
  // A written reason is cut to its bound: compare with what writing this one would leave.
  return mark !== undefined && mark.state === state && mark.reason === (reason === undefined ? undefined : boundedReason(reason));
}
