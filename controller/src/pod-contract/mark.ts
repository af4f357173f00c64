// The mark: the annotation through which the controller tells a pod's init-waiter
// (and operators) whether its redirect is in place.
import { cutUtf8 } from './utf8.ts';

const ANNOTATION_PREFIX = 'pod-network-controller.io/';
export const STATUS_ANNOTATION = `${ANNOTATION_PREFIX}status`;
export const REINIT_ANNOTATION = `${ANNOTATION_PREFIX}reinit`;
export const INITIALIZE_ANNOTATION = `${ANNOTATION_PREFIX}initialize` as const;

const MARK_STATES = ['initialized', 'pending', 'error'] as const;
type MarkState = (typeof MARK_STATES)[number];

/**
 * The format this release writes. The first release wrote no `v` (format 1, no `id`, no
 * netns record). Readers of format 1 ignore unknown fields and throw on an unknown `state`:
 * a later format may add fields freely, but a change of meaning needs new state names (which
 * those readers refuse) as well as a new `v`.
 */
export const MARK_VERSION = 2;

export interface Mark {
  /** The format; absent: 1. A parsed mark has it only when the text had it. */
  v?: number;
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
  /**
   * Names this programming of this sandbox (format 2, initialized): random, written also into
   * the netns itself (the netns record), so a mark and a netns that belong together are known.
   */
  id?: string;
}

/**
 * A reason is cut to this many UTF-8 bytes when written: a failure's text (e.g. iptables'
 * stderr) must never crowd the pod's other annotations (256 KiB for all of them together).
 */
export const MARK_REASON_MAX_BYTES = 1024;

/** The reason as a written mark carries it. */
export function boundedReason(reason: string): string {
  return cutUtf8(reason, MARK_REASON_MAX_BYTES);
}

const ID_PATTERN = /^[A-Za-z0-9_-]{8,64}$/;
const RULES_PATTERN = /^[0-9a-f]{1,64}$/;

export class MarkFormatError extends Error {
  override name = 'MarkFormatError';
}

export function encodeMark(mark: Mark): string {
  const ordered: Mark = mark.v === undefined ? { state: mark.state, at: mark.at } : { v: mark.v, state: mark.state, at: mark.at };
  if (mark.netns !== undefined) ordered.netns = mark.netns;
  if (mark.rules !== undefined) ordered.rules = mark.rules;
  if (mark.reason !== undefined) ordered.reason = boundedReason(mark.reason);
  if (mark.reinit !== undefined) ordered.reinit = mark.reinit;
  if (mark.id !== undefined) ordered.id = mark.id;
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
  // A format this release does not know may mean anything: never read it by today's rules.
  if (record.v !== undefined && record.v !== MARK_VERSION) {
    throw new MarkFormatError(`${STATUS_ANNOTATION} has format ${JSON.stringify(record.v)}; this release reads 1 (no "v") and ${MARK_VERSION}`);
  }
  const state = record.state;
  if (typeof state !== 'string' || !(MARK_STATES as readonly string[]).includes(state)) {
    throw new MarkFormatError(`${STATUS_ANNOTATION} has an unknown state ${JSON.stringify(state)}`);
  }
  const mark: Mark = { state: state as MarkState, at: typeof record.at === 'string' ? record.at : '' };
  if (record.v !== undefined) mark.v = MARK_VERSION;
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
  if (record.id !== undefined) {
    if (typeof record.id !== 'string' || !ID_PATTERN.test(record.id)) {
      throw new MarkFormatError(`${STATUS_ANNOTATION} has an invalid id ${JSON.stringify(record.id)} (8-64 letters, digits, - or _)`);
    }
    mark.id = record.id;
  }
  return mark;
}

/**
 * The netns record: an `initialized` mark of format 2, written by the agent as the alias of the
 * pod netns's own `lo` after the mark's API write, and read by the init-waiter from
 * /sys/class/net/lo/ifalias. Only a process with CAP_NET_ADMIN over that netns can write it,
 * and it dies with the netns. At most 255 bytes (the kernel's IFALIASZ).
 */
export interface NetnsRecord {
  netns: number;
  rules: string;
  id: string;
}

const RECORD_PREFIX = 'pod-network-controller/';
const RECORD_PATTERN = /^pod-network-controller\/(\d+) netns=(\d+) rules=(\S+) id=(\S+)$/;

/** Throws unless the mark is an initialized one of this format with netns, rules and id. */
export function encodeNetnsRecord(mark: Mark): string {
  if (mark.v !== MARK_VERSION || mark.state !== 'initialized' || mark.netns === undefined || mark.rules === undefined || mark.id === undefined) {
    throw new MarkFormatError(`only an initialized format-${MARK_VERSION} mark with netns, rules and id has a netns record: ${encodeMark(mark)}`);
  }
  if (!RULES_PATTERN.test(mark.rules) || !ID_PATTERN.test(mark.id)) throw new MarkFormatError(`mark fields unfit for a netns record: ${encodeMark(mark)}`);
  return `${RECORD_PREFIX}${MARK_VERSION} netns=${mark.netns} rules=${mark.rules} id=${mark.id}`;
}

/**
 * undefined: not a record of ours (empty, or another program's alias). Throws MarkFormatError
 * for a record of ours that is malformed or of a format this release does not know.
 */
export function parseNetnsRecord(text: string): NetnsRecord | undefined {
  const line = text.endsWith('\n') ? text.slice(0, -1) : text;
  if (!line.startsWith(RECORD_PREFIX)) return undefined;
  const match = RECORD_PATTERN.exec(line);
  if (!match) throw new MarkFormatError(`lo's alias is a malformed netns record: ${JSON.stringify(line.slice(0, 120))}`);
  const [, version, netns, rules, id] = match as unknown as [string, string, string, string, string];
  if (Number(version) !== MARK_VERSION) throw new MarkFormatError(`lo's alias is a netns record of format ${version}; this release reads ${MARK_VERSION}`);
  const inode = Number(netns);
  if (!Number.isSafeInteger(inode) || inode <= 0 || !RULES_PATTERN.test(rules) || !ID_PATTERN.test(id)) {
    throw new MarkFormatError(`lo's alias is a malformed netns record: ${JSON.stringify(line.slice(0, 120))}`);
  }
  return { netns: inode, rules, id };
}

/** `net:[4026532845]` -> 4026532845, as readlink(/proc/PID/ns/net) shows it. */
export function netnsInodeFromLink(link: string): number {
  const match = /^net:\[(\d+)\]$/.exec(link);
  if (!match) throw new MarkFormatError(`not a network namespace link: ${JSON.stringify(link)}`);
  return Number(match[1]);
}
