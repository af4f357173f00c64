// A rolling update puts agents and waiters of two releases side by side. The previous release's
// readers are not copies written for this test: they are that release's own files, taken from
// git (the last commit before the mark had a format version) into a temp dir and imported.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decideMarkAction as newAgentDecides } from '../../controller/src/agent/mark-decision.ts';
import { errorMark, initializedMark } from '../../controller/src/agent/reconcile-reports.ts';
import { encodeMark, encodeNetnsRecord, parseMark, STATUS_ANNOTATION, type Mark } from '../../controller/src/pod-contract/index.ts';
import { assessMark as newWaiterAssesses } from '../../init-waiter/src/readiness.ts';
import { formatDownwardApiAnnotations } from '../../hack/lib/downward-api.ts';

/** The last commit whose mark had no `v`: the previous release's agent and waiter. */
const PREVIOUS_RELEASE = '4b1697e';
const ROOT = resolve(import.meta.dirname, '../..');
const FILES = ['controller/src/pod-contract', 'controller/src/agent/mark-decision.ts', 'init-waiter/src/readiness.ts', 'init-waiter/src/downward-api.ts'];

type OldAssess = (snapshot: unknown, ownNetns: number) => { ready: boolean; waiting?: { code: string; message: string } };
type OldDecide = (context: { markText: string | undefined; reinitToken: string | undefined; netnsInode: number; rulesHash: string }) => { kind: string };
type OldParse = (text: string) => Record<string, unknown>;

let dir: string;
let oldWaiter: { assessMark: OldAssess };
let oldAgent: { decideMarkAction: OldDecide };
let oldContract: { parseMark: OldParse; encodeMark: (mark: object) => string };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pnc-previous-release-'));
  const archive = execFileSync('git', ['-C', ROOT, 'archive', PREVIOUS_RELEASE, ...FILES]);
  execFileSync('tar', ['-x', '-C', dir], { input: archive });
  oldWaiter = (await import(join(dir, 'init-waiter/src/readiness.ts'))) as typeof oldWaiter;
  oldAgent = (await import(join(dir, 'controller/src/agent/mark-decision.ts'))) as typeof oldAgent;
  oldContract = (await import(join(dir, 'controller/src/pod-contract/index.ts'))) as typeof oldContract;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const OWN = 4026532845;
const RULES = 'abcdef0123456789';
const at = new Date('2026-12-01T12:00:00Z');
const path = '/etc/podinfo/annotations';
const file = (markText: string) => ({ kind: 'content' as const, path, text: formatDownwardApiAnnotations({ [STATUS_ANNOTATION]: markText }) });
const NO_RECORD = { kind: 'text' as const, text: '' };

/** What each release's agent writes for a pod it programmed in netns OWN. */
const newInitialized = (netns = OWN) => initializedMark(netns, RULES, 'mark-id-0001', at, undefined);
const oldInitialized = (netns = OWN) => ({ state: 'initialized', netns, rules: RULES, at: at.toISOString() });

describe('a new waiter beside an old agent', () => {
  it("never passes on the old agent's initialized mark alone, even for its own netns inode: nothing in the netns confirms it", () => {
    const verdict = newWaiterAssesses(file(oldContract.encodeMark(oldInitialized())), OWN, NO_RECORD);
    expect(verdict.ready).toBe(false);
    expect(!verdict.ready && verdict.waiting.code).toBe('unrecorded');
    expect(!verdict.ready && verdict.waiting.message).toContain(
      "the mark has the first format, so the node's pod-network-controller is older than this waiter",
    );
  });

  it("reads the old agent's error and pending marks by the old rules: reason, error grace, another netns", () => {
    const error = newWaiterAssesses(file(oldContract.encodeMark({ state: 'error', at: at.toISOString(), reason: 'bad annotation' })), OWN, NO_RECORD);
    expect(!error.ready && error.waiting).toEqual({ code: 'mark-error', message: `${STATUS_ANNOTATION} is error: bad annotation` });
    const pending = newWaiterAssesses(file(oldContract.encodeMark({ state: 'pending', at: at.toISOString(), reason: 'x' })), OWN, NO_RECORD);
    expect(!pending.ready && pending.waiting.code).toBe('pending');
    const other = newWaiterAssesses(file(oldContract.encodeMark(oldInitialized(OWN + 1))), OWN, NO_RECORD);
    expect(!other.ready && other.waiting.code).toBe('other-netns');
  });

  it("passes once the node's agent is the new one: its mark and record", () => {
    const mark = newInitialized();
    expect(newWaiterAssesses(file(encodeMark(mark)), OWN, { kind: 'text', text: `${encodeNetnsRecord(mark)}\n` }).ready).toBe(true);
  });
});

describe('an old waiter beside a new agent', () => {
  it("reads the new agent's marks field for field as the new release does (the extra v and id are ignored, not misread)", () => {
    for (const mark of [newInitialized(), errorMark('refused: uid 1337', at, undefined, OWN), { ...newInitialized(), reinit: 't1' }]) {
      const text = encodeMark(mark);
      const shared: Partial<Mark> = parseMark(text);
      delete shared.v;
      delete shared.id;
      expect(oldContract.parseMark(text)).toEqual(shared);
    }
  });

  it("passes the new agent's initialized mark for its own netns only, as it always did, and never an error or another netns's", () => {
    expect(oldWaiter.assessMark(file(encodeMark(newInitialized())), OWN).ready).toBe(true);
    const other = oldWaiter.assessMark(file(encodeMark(newInitialized(OWN + 1))), OWN);
    expect(other.ready).toBe(false);
    expect(other.waiting?.code).toBe('other-netns');
    const error = oldWaiter.assessMark(file(encodeMark(errorMark('iptables-restore: line 3 failed', at, undefined, OWN))), OWN);
    expect(error.waiting).toEqual({ code: 'mark-error', message: `${STATUS_ANNOTATION} is error: iptables-restore: line 3 failed` });
  });

  it('refuses a mark of a later format that changes the meaning of a state: such a format must use new state names', () => {
    const later = '{"v":3,"state":"recorded","netns":4026532845,"at":"2026-12-01T12:00:00.000Z"}';
    expect(oldWaiter.assessMark(file(later), OWN).ready).toBe(false);
    expect(() => parseMark(later)).toThrow(/has format 3; this release reads 1 \(no "v"\) and 2/);
  });
});

describe('agents of both releases on one pod (an agent rolled forward or back)', () => {
  it("the new agent programs over an old agent's mark (and records it); the old one verifies the new agent's", () => {
    const context = { reinitToken: undefined, netnsInode: OWN, rulesHash: RULES };
    expect(newAgentDecides({ ...context, markText: oldContract.encodeMark(oldInitialized()) })).toEqual({ kind: 'program', why: 'old-format' });
    expect(oldAgent.decideMarkAction({ ...context, markText: encodeMark(newInitialized()) })).toEqual({ kind: 'verify' });
    // Both still program over a mark for another netns.
    expect(oldAgent.decideMarkAction({ ...context, markText: encodeMark(newInitialized(OWN + 1)) })).toEqual({ kind: 'program', why: 'other-netns' });
  });

  it('the previous release is what it claims: its marks have no v and no id', () => {
    const mark: Mark = parseMark(oldContract.encodeMark({ ...newInitialized() }));
    expect(mark.v).toBeUndefined();
    expect(mark.id).toBeUndefined();
  });
});
