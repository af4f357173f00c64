// Decides from the netns record (lo's alias), the annotations file and the waiter's own netns
// inode whether the controller lets this pod go on, or what it still waits for (pure).
// The record alone lets it pass: only CAP_NET_ADMIN over this netns can write it and it dies
// with the netns, so it can never belong to an earlier sandbox, whereas the mark's netns inode
// can (Linux reuses inodes). The mark only explains the wait.
import { MarkFormatError, parseMark, parseNetnsRecord, STATUS_ANNOTATION, type Mark, type NetnsRecord } from '../../controller/src/pod-contract/index.ts';
import { parseDownwardApiAnnotations } from './downward-api.ts';
import type { ParsedAnnotations } from './downward-api.ts';
import type { AnnotationsSnapshot } from './annotations-watcher.ts';

/** What the waiter is still waiting for; each maps to one exit code on timeout (see exit-codes.ts). */
export type WaitCode = 'no-file' | 'no-mark' | 'pending' | 'mark-error' | 'other-netns' | 'unrecorded' | 'malformed' | 'self-test';

export interface Waiting {
  code: WaitCode;
  message: string;
}

export type MarkVerdict = { ready: true; record: NetnsRecord; parsed: ParsedAnnotations } | { ready: false; waiting: Waiting; parsed?: ParsedAnnotations };

/** What /sys/class/net/lo/ifalias held: its text ('' when lo has no alias), or why it could not be read. */
export type RecordSnapshot = { kind: 'text'; text: string } | { kind: 'unreadable'; path: string; error: string };

/** The annotations file is still needed: the self-test follows the pod's traffic annotations. */
export function assessMark(snapshot: AnnotationsSnapshot, ownNetns: number, recordSnapshot: RecordSnapshot): MarkVerdict {
  switch (snapshot.kind) {
    case 'missing':
      return waiting('no-file', `annotations file ${snapshot.path} does not exist yet (is the downward-API volume mounted?)`);
    case 'unreadable':
      return waiting('malformed', `annotations file ${snapshot.path} cannot be read: ${snapshot.error}`);
    case 'too-large':
      return waiting('malformed', `annotations file ${snapshot.path} is ${snapshot.size} bytes, over the ${snapshot.limit}-byte limit; not reading it`);
    case 'content':
      break;
  }

  const parsed = parseDownwardApiAnnotations(snapshot.text);
  if (recordSnapshot.kind === 'unreadable') {
    return waiting('unrecorded', `the netns record ${recordSnapshot.path} cannot be read: ${recordSnapshot.error}`, parsed);
  }
  let record: NetnsRecord | undefined;
  try {
    record = parseNetnsRecord(recordSnapshot.text);
  } catch (error) {
    if (!(error instanceof MarkFormatError)) throw error;
    return waiting('malformed', error.message, parsed);
  }
  if (record !== undefined) {
    if (record.netns === ownNetns) return { ready: true, record, parsed };
    // Only the agent writes records, into the netns it names: this sysfs is not our netns's.
    return waiting(
      'other-netns',
      `lo's netns record names network namespace ${record.netns}, but this pod's is ${ownNetns} (is /sys this network namespace's sysfs?)`,
      parsed,
    );
  }

  const raw = parsed.annotations.get(STATUS_ANNOTATION);
  if (raw === undefined) {
    const unparsed = parsed.problemCount > 0 ? ` (${parsed.problemCount} malformed line(s) in ${snapshot.path}: ${parsed.problems[0]})` : '';
    return waiting('no-mark', `no ${STATUS_ANNOTATION} annotation yet: the node's pod-network-controller has not handled this pod${unparsed}`, parsed);
  }

  let mark: Mark;
  try {
    mark = parseMark(raw);
  } catch (error) {
    if (!(error instanceof MarkFormatError)) throw error;
    return waiting('malformed', `${error.message} (value ${excerpt(raw)})`, parsed);
  }

  const because = mark.reason ? `: ${mark.reason}` : ' (no reason given)';
  if (mark.state === 'pending') return waiting('pending', `${STATUS_ANNOTATION} is pending${because}`, parsed);
  if (mark.state === 'error') {
    // An error about an earlier sandbox says nothing about this one, which the controller has yet to program.
    if (mark.netns !== undefined && mark.netns !== ownNetns) {
      return waiting(
        'other-netns',
        `${STATUS_ANNOTATION} is error for network namespace ${mark.netns}, but this pod's is ${ownNetns} (stale mark from an earlier sandbox)${because}`,
        parsed,
      );
    }
    return waiting('mark-error', `${STATUS_ANNOTATION} is error${because}`, parsed);
  }
  if (mark.netns === undefined) {
    // Without a netns the mark cannot be tied to this sandbox: a forged or stale mark looks the same.
    return waiting('malformed', `${STATUS_ANNOTATION} is initialized but names no netns (value ${excerpt(raw)})`, parsed);
  }
  if (mark.netns !== ownNetns) {
    return waiting(
      'other-netns',
      `${STATUS_ANNOTATION} is for network namespace ${mark.netns}, but this pod's is ${ownNetns} (stale mark from an earlier sandbox, or forged)`,
      parsed,
    );
  }
  // An inode match alone: the netns may be a new one that got an earlier sandbox's inode.
  return waiting(
    'unrecorded',
    `${STATUS_ANNOTATION} is initialized for network namespace ${ownNetns}, but lo has no netns record of it: ` +
      (mark.v === undefined
        ? "the mark has the first format, so the node's pod-network-controller is older than this waiter, or the mark is from an earlier sandbox that had this netns inode"
        : "the mark is from an earlier sandbox that had this netns inode, or the node's pod-network-controller has yet to record it"),
    parsed,
  );
}

function waiting(code: WaitCode, message: string, parsed?: ParsedAnnotations): MarkVerdict {
  return parsed ? { ready: false, waiting: { code, message }, parsed } : { ready: false, waiting: { code, message } };
}

function excerpt(value: string): string {
  return JSON.stringify(value.length > 120 ? `${value.slice(0, 120)}...` : value);
}
