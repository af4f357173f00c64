// The mark: the annotation through which the controller tells a pod's init-waiter
// (and operators) whether its redirect is in place.

const ANNOTATION_PREFIX = 'pod-network-controller.io/';
export const STATUS_ANNOTATION = `${ANNOTATION_PREFIX}status`;
export const REINIT_ANNOTATION = `${ANNOTATION_PREFIX}reinit`;
export const INITIALIZE_ANNOTATION = `${ANNOTATION_PREFIX}initialize` as const;

const MARK_STATES = ['initialized', 'pending', 'error'] as const;
type MarkState = (typeof MARK_STATES)[number];

export interface Mark {
  state: MarkState;
  /** Inode of the pod's network namespace: the number in `readlink /proc/self/ns/net` = `net:[N]`. */
  netns?: number;
  /** Hash of the rules that were applied and verified (sha256 of the restore payloads, hex, 16 chars). */
  rules?: string;
  /** When this mark was written, RFC 3339. */
  at: string;
  /** Why the pod is not initialized (error and pending states). */
  reason?: string;
  /** The last `pod-network-controller.io/reinit` token the controller handled. */
  reinit?: string;
}

export class MarkFormatError extends Error {
  override name = 'MarkFormatError';
}

export function encodeMark(mark: Mark): string {
  const ordered: Mark = { state: mark.state, at: mark.at };
  if (mark.netns !== undefined) ordered.netns = mark.netns;
  if (mark.rules !== undefined) ordered.rules = mark.rules;
  if (mark.reason !== undefined) ordered.reason = mark.reason;
  if (mark.reinit !== undefined) ordered.reinit = mark.reinit;
  return JSON.stringify(ordered);
}

/** Parses and validates a mark; throws MarkFormatError naming what is wrong. */
export function parseMark(text: string): Mark {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new MarkFormatError(`${STATUS_ANNOTATION} is not JSON: ${JSON.stringify(text.slice(0, 80))}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new MarkFormatError(`${STATUS_ANNOTATION} is not a JSON object`);
  }
  const record = value as Record<string, unknown>;
  const state = record.state;
  if (typeof state !== 'string' || !(MARK_STATES as readonly string[]).includes(state)) {
    throw new MarkFormatError(`${STATUS_ANNOTATION} has an unknown state ${JSON.stringify(state)}`);
  }
  const mark: Mark = { state: state as MarkState, at: typeof record.at === 'string' ? record.at : '' };
  if (record.netns !== undefined) {
    if (typeof record.netns !== 'number' || !Number.isSafeInteger(record.netns) || record.netns <= 0) {
      throw new MarkFormatError(`${STATUS_ANNOTATION} has an invalid netns ${JSON.stringify(record.netns)}`);
    }
    mark.netns = record.netns;
  }
  for (const key of ['rules', 'reason', 'reinit'] as const) {
    const field = record[key];
    if (field === undefined) continue;
    if (typeof field !== 'string') throw new MarkFormatError(`${STATUS_ANNOTATION} has a non-string ${key}`);
    mark[key] = field;
  }
  return mark;
}

/** `net:[4026532845]` -> 4026532845, as readlink(/proc/PID/ns/net) shows it. */
export function netnsInodeFromLink(link: string): number {
  const match = /^net:\[(\d+)\]$/.exec(link);
  if (!match) throw new MarkFormatError(`not a network namespace link: ${JSON.stringify(link)}`);
  return Number(match[1]);
}
