// What a pass writes about a pod: the marks and the texts of its Events. Pure.
import { type Mark, MARK_VERSION, STATUS_ANNOTATION } from '../pod-contract/index.ts';
import { handledToken, readMark } from './mark-decision.ts';

/**
 * After a restart, an initialized mark this recent may have lost its Event (the agent
 * died between the mark write and the Event); older ones would have outlived the
 * apiserver's Event TTL (1 h by default) anyway.
 */
export const EVENT_RECOVERY_WINDOW_MS = 10 * 60_000;

/**
 * The mark for rules `hash` (as applied) in netns `netns`, named by `id` (random, also in the
 * netns record); keeps the re-init token handled now or before.
 */
export function initializedMark(netns: number, hash: string, id: string, at: Date, markText: string | undefined, reinitToken?: string): Mark {
  const mark: Mark = { v: MARK_VERSION, state: 'initialized', netns, rules: hash, at: at.toISOString(), id };
  const token = handledToken(markText, reinitToken);
  if (token !== undefined) mark.reinit = token;
  return mark;
}

export function errorMark(reason: string, at: Date, markText: string | undefined, netns?: number): Mark {
  const mark: Mark = { v: MARK_VERSION, state: 'error', at: at.toISOString(), reason };
  if (netns !== undefined) mark.netns = netns;
  const token = handledToken(markText);
  if (token !== undefined) mark.reinit = token;
  return mark;
}

/** The Event note of a programming: what happened (if more than a first initialization), and how long it took. */
export function programmedNote(note: string, netns: number, hash: string, latencyMs: number): string {
  const detail = note ? `${note}; ` : '';
  return `${detail}redirect programmed and verified in netns ${netns} (rules ${hash}) in ${Math.round(latencyMs)} ms from sandbox found to mark written`;
}

/**
 * The Initialized Event an earlier process may have lost with the mark it wrote, when
 * that mark is recent enough to still have one; its Event name comes from the mark's `at`.
 */
export function recoveredInitializedEvent(markText: string, now: Date): { note: string; at: string } | undefined {
  const mark = readMark(markText);
  if (mark?.state !== 'initialized' || !(now.getTime() - Date.parse(mark.at) < EVENT_RECOVERY_WINDOW_MS)) return undefined;
  return {
    note: `redirect programmed and verified in netns ${mark.netns} (rules ${mark.rules}); mark written at ${mark.at} (recorded after an agent restart)`,
    at: mark.at,
  };
}

export function markRefusedNote(state: Mark['state'], message: string): string {
  return `the API server refused the mark annotation ${STATUS_ANNOTATION} (${state}): ${message}; the pod stays held by its init-waiter until the mark can be written (retried every few minutes)`;
}
