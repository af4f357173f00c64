// Decides from the annotations file and the waiter's own netns inode whether the
// controller's mark lets this pod go on, or what it still waits for (pure).
import { MarkFormatError, parseMark, STATUS_ANNOTATION, type Mark } from '../../controller/src/pod-contract/index.ts';
import { parseDownwardApiAnnotations } from './downward-api.ts';
import type { ParsedAnnotations } from './downward-api.ts';
import type { AnnotationsSnapshot } from './annotations-watcher.ts';

/** What the waiter is still waiting for; each maps to one exit code on timeout (see exit-codes.ts). */
export type WaitCode = 'no-file' | 'no-mark' | 'pending' | 'mark-error' | 'other-netns' | 'malformed' | 'self-test';

export interface Waiting {
  code: WaitCode;
  message: string;
}

export type MarkVerdict = { ready: true; mark: Mark; parsed: ParsedAnnotations } | { ready: false; waiting: Waiting; parsed?: ParsedAnnotations };

export function assessMark(snapshot: AnnotationsSnapshot, ownNetns: number): MarkVerdict {
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
  return { ready: true, mark, parsed };
}

function waiting(code: WaitCode, message: string, parsed?: ParsedAnnotations): MarkVerdict {
  return parsed ? { ready: false, waiting: { code, message }, parsed } : { ready: false, waiting: { code, message } };
}

function excerpt(value: string): string {
  return JSON.stringify(value.length > 120 ? `${value.slice(0, 120)}...` : value);
}
