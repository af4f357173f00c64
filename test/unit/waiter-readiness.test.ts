import { describe, expect, it } from 'vitest';
import { encodeMark, encodeNetnsRecord, STATUS_ANNOTATION } from '../../controller/src/pod-contract/index.ts';
import type { Mark } from '../../controller/src/pod-contract/index.ts';
import type { AnnotationsSnapshot } from '../../init-waiter/src/annotations-watcher.ts';
import { EXIT, exitCodeForTimeout } from '../../init-waiter/src/exit-codes.ts';
import { assessMark, type RecordSnapshot } from '../../init-waiter/src/readiness.ts';
import { formatDownwardApiAnnotations } from '../../hack/lib/downward-api.ts';

const OWN = 4026532845;
const path = '/etc/podinfo/annotations';
const content = (annotations: Record<string, string>): AnnotationsSnapshot => ({ kind: 'content', path, text: formatDownwardApiAnnotations(annotations) });
const withMark = (mark: Mark, extra: Record<string, string> = {}) => content({ ...extra, [STATUS_ANNOTATION]: encodeMark(mark) });
const at = '2026-11-23T01:02:03Z';

/** lo without an alias: a netns the agent has not recorded (a new one always starts so). */
const NONE: RecordSnapshot = { kind: 'text', text: '' };
const ours: Mark = { v: 2, state: 'initialized', netns: OWN, rules: 'abcdef0123456789', at, id: 'mark-id-0001' };
/** As the waiter reads it from sysfs: with a newline. */
const recorded = (mark: Mark): RecordSnapshot => ({ kind: 'text', text: `${encodeNetnsRecord(mark)}\n` });

function waitingFor(snapshot: AnnotationsSnapshot, record: RecordSnapshot = NONE) {
  const verdict = assessMark(snapshot, OWN, record);
  if (verdict.ready) throw new Error('unexpectedly ready');
  return verdict.waiting;
}

describe('assessMark', () => {
  it('is ready on the netns record of its own netns, whatever the file shows yet', () => {
    for (const snapshot of [withMark(ours, { 'a/b': 'c' }), withMark({ state: 'pending', at }, { 'a/b': 'c' }), content({ 'a/b': 'c' })]) {
      const verdict = assessMark(snapshot, OWN, recorded(ours));
      expect(verdict.ready).toBe(true);
      if (verdict.ready) {
        expect(verdict.record).toEqual({ netns: OWN, rules: 'abcdef0123456789', id: 'mark-id-0001' });
        expect(verdict.parsed.annotations.get('a/b')).toBe('c');
      }
    }
  });

  it("never passes on an initialized mark naming its netns inode without the record: the inode may be an earlier sandbox's", () => {
    const stale = waitingFor(withMark(ours));
    expect(stale).toEqual({
      code: 'unrecorded',
      message:
        `${STATUS_ANNOTATION} is initialized for network namespace ${OWN}, but lo has no netns record of it: ` +
        "the mark is from an earlier sandbox that had this netns inode, or the node's pod-network-controller has yet to record it",
    });
    const firstFormat = waitingFor(withMark({ state: 'initialized', netns: OWN, rules: 'abcdef0123456789', at }));
    expect(firstFormat.code).toBe('unrecorded');
    expect(firstFormat.message).toContain("the mark has the first format, so the node's pod-network-controller is older than this waiter");
    // Another program's alias on lo is no record.
    expect(waitingFor(withMark(ours), { kind: 'text', text: 'uplink to rack 7\n' }).code).toBe('unrecorded');
  });

  it("never passes on a record naming another netns (a /sys that is not this netns's), nor on one it cannot read", () => {
    const other = waitingFor(withMark(ours), recorded({ ...ours, netns: OWN + 1 }));
    expect(other.code).toBe('other-netns');
    expect(other.message).toBe(`lo's netns record names network namespace ${OWN + 1}, but this pod's is ${OWN} (is /sys this network namespace's sysfs?)`);
    const unreadable = waitingFor(withMark(ours), { kind: 'unreadable', path: '/sys/class/net/lo/ifalias', error: 'ENOENT' });
    expect(unreadable).toEqual({ code: 'unrecorded', message: 'the netns record /sys/class/net/lo/ifalias cannot be read: ENOENT' });
  });

  it('never passes on a record of a format it does not know, or a malformed one', () => {
    const newer = waitingFor(withMark(ours), { kind: 'text', text: `pod-network-controller/3 netns=${OWN} rules=abcdef0123456789 id=mark-id-0001\n` });
    expect(newer).toEqual({ code: 'malformed', message: "lo's alias is a netns record of format 3; this release reads 2" });
    expect(waitingFor(withMark(ours), { kind: 'text', text: `pod-network-controller/2 netns=${OWN}\n` }).code).toBe('malformed');
  });

  it('waits for the annotations file even with a record: the self-test follows its annotations', () => {
    expect(waitingFor({ kind: 'missing', path }, recorded(ours)).code).toBe('no-file');
  });

  it.each<[string, AnnotationsSnapshot, string, RegExp]>([
    ['a missing file', { kind: 'missing', path }, 'no-file', /annotations file \/etc\/podinfo\/annotations does not exist yet/],
    ['no status annotation', content({ 'sidecar.istio.io/status': '{}' }), 'no-mark', /^no pod-network-controller\.io\/status annotation yet/],
    ['a pending mark', withMark({ state: 'pending', reason: 'netns not found yet', at }), 'pending', /is pending: netns not found yet$/],
    ['an error mark', withMark({ state: 'error', reason: 'iptables-restore exit 4', at }), 'mark-error', /is error: iptables-restore exit 4$/],
    ['an error mark without reason', withMark({ state: 'error', at }), 'mark-error', /is error \(no reason given\)$/],
    [
      'an error mark for our own netns',
      withMark({ state: 'error', netns: OWN, reason: 'iptables-restore exit 4', at }),
      'mark-error',
      /is error: iptables-restore exit 4$/,
    ],
    [
      'an error mark for an earlier sandbox',
      withMark({ state: 'error', netns: OWN + 7, reason: 'iptables-restore exit 4', at }),
      'other-netns',
      new RegExp(`is error for network namespace ${OWN + 7}, but this pod's is ${OWN} \\(stale mark from an earlier sandbox\\): iptables-restore exit 4$`),
    ],
    [
      'a mark for another netns',
      withMark({ state: 'initialized', netns: OWN + 7, at }),
      'other-netns',
      new RegExp(`network namespace ${OWN + 7}, but this pod's is ${OWN}`),
    ],
    ['an initialized mark without netns', withMark({ state: 'initialized', at }), 'malformed', /is initialized but names no netns/],
    ['a mark that is not JSON', content({ [STATUS_ANNOTATION]: 'initialized' }), 'malformed', /is not JSON: "initialized"/],
    ['a mark with an unknown state', content({ [STATUS_ANNOTATION]: '{"state":"done"}' }), 'malformed', /unknown state "done"/],
    ['an unreadable file', { kind: 'unreadable', path, error: 'EACCES' }, 'malformed', /cannot be read: EACCES/],
    ['a too large file', { kind: 'too-large', path, size: 5_000_000, limit: 2_097_152 }, 'malformed', /is 5000000 bytes, over the 2097152-byte limit/],
  ])('waits on %s', (_name, snapshot, code, message) => {
    const waiting = waitingFor(snapshot);
    expect(waiting.code).toBe(code);
    expect(waiting.message).toMatch(message);
  });

  it('mentions malformed lines when the mark is not found, in case they hid it', () => {
    const waiting = waitingFor({ kind: 'content', path, text: 'a="1"\n\x00\x01binary' });
    expect(waiting.code).toBe('no-mark');
    expect(waiting.message).toContain('1 malformed line(s) in /etc/podinfo/annotations: line 2');
  });

  it('maps every reason to its documented exit code', () => {
    expect(exitCodeForTimeout('no-file')).toBe(EXIT.noMark);
    expect(exitCodeForTimeout('no-mark')).toBe(3);
    expect(EXIT.noMark).toBe(3);
    expect(exitCodeForTimeout('pending')).toBe(3);
    expect(exitCodeForTimeout('mark-error')).toBe(4);
    expect(exitCodeForTimeout('other-netns')).toBe(5);
    expect(exitCodeForTimeout('unrecorded')).toBe(5);
    expect(exitCodeForTimeout('self-test')).toBe(6);
    expect(exitCodeForTimeout('malformed')).toBe(7);
  });
});
