import { describe, expect, it } from 'vitest';
import { SandboxChanged, classifyEngineFailure } from '../../controller/src/agent/engine-failure.ts';
import {
  EVENT_RECOVERY_WINDOW_MS,
  errorMark,
  initializedMark,
  markRefusedNote,
  programmedNote,
  recoveredInitializedEvent,
} from '../../controller/src/agent/reconcile-reports.ts';
import { encodeMark } from '../../controller/src/pod-contract/index.ts';
import { NetnsMismatch, RedirectError, XtablesLockTimeout } from '../../controller/src/redirect/index.ts';

const at = new Date('2026-12-01T12:00:00.000Z');
const previous = encodeMark({ state: 'initialized', netns: 4026532001, rules: '0123456789abcdef', at: '2026-12-01T11:59:00.000Z', reinit: 'old' });

describe('marks and Event texts', () => {
  it('builds an initialized mark from what was applied, keeping the re-init token handled now or before', () => {
    expect(initializedMark(4026532002, 'feedfacecafe0001', 'mark-id-0001', at, previous)).toEqual({
      v: 2,
      id: 'mark-id-0001',
      state: 'initialized',
      netns: 4026532002,
      rules: 'feedfacecafe0001',
      at: at.toISOString(),
      reinit: 'old',
    });
    expect(initializedMark(4026532002, 'feedfacecafe0001', 'mark-id-0001', at, previous, 'new').reinit).toBe('new');
    expect(initializedMark(4026532002, 'feedfacecafe0001', 'mark-id-0001', at, undefined)).not.toHaveProperty('reinit');
  });

  it('builds an error mark with its reason, the netns when known, and the token handled before', () => {
    expect(errorMark('bad', at, previous, 7)).toEqual({ v: 2, state: 'error', at: at.toISOString(), reason: 'bad', netns: 7, reinit: 'old' });
    expect(errorMark('bad', at, undefined)).toEqual({ v: 2, state: 'error', at: at.toISOString(), reason: 'bad' });
  });

  it('says what was programmed, where and how long it took', () => {
    expect(programmedNote('', 7, 'abc', 12.4)).toBe('redirect programmed and verified in netns 7 (rules abc) in 12 ms from sandbox found to mark written');
    expect(programmedNote('rules had drifted', 7, 'abc', 3)).toMatch(/^rules had drifted; redirect programmed/);
  });

  it('recovers the Initialized Event of a recent initialized mark only', () => {
    const recovered = recoveredInitializedEvent(previous, at);
    expect(recovered).toEqual({ at: '2026-12-01T11:59:00.000Z', note: expect.stringContaining('(recorded after an agent restart)') as unknown as string });
    expect(recoveredInitializedEvent(previous, new Date(Date.parse('2026-12-01T11:59:00.000Z') + EVENT_RECOVERY_WINDOW_MS))).toBeUndefined();
    expect(recoveredInitializedEvent(encodeMark({ state: 'error', at: at.toISOString(), reason: 'x' }), at)).toBeUndefined();
    expect(recoveredInitializedEvent('garbage', at)).toBeUndefined();
  });

  it('names the annotation and the cause of a refused mark write', () => {
    expect(markRefusedNote('initialized', 'HTTP 422: too long')).toBe(
      'the API server refused the mark annotation pod-network-controller.io/status (initialized): HTTP 422: too long; the pod stays held by its init-waiter until the mark can be written (retried every few minutes)',
    );
  });
});

describe('engine failures', () => {
  const alive = () => true;
  it('takes a replaced sandbox, or any engine error in a dead one, as a sandbox change', () => {
    expect(classifyEngineFailure(new SandboxChanged(), 7, alive, 5)).toEqual({ kind: 'sandbox-changed' });
    expect(classifyEngineFailure(new RedirectError('/proc/1/ns/net', 'nsenter failed'), 7, () => false, 5)).toEqual({ kind: 'sandbox-changed' });
    // Even while the finder still believes in the process: what the path leads to is not the sandbox; never marked.
    expect(classifyEngineFailure(new NetnsMismatch('/proc/9/ns/net', 7, 8), 7, alive, 5)).toEqual({ kind: 'sandbox-changed' });
  });

  it('waits out a held xtables lock without blaming the pod', () => {
    const failure = classifyEngineFailure(new XtablesLockTimeout('/p', 5, 'held'), 7, alive, 5);
    expect(failure).toEqual({ kind: 'lock-timeout', note: 'the xtables lock stayed held by another program for 5 s (PNC_IPTABLES_LOCK_TIMEOUT); retrying' });
  });

  it('blames the pod for any other engine error, naming the netns', () => {
    expect(classifyEngineFailure(new RedirectError('/p', 'iptables-restore failed'), 7, alive, 5)).toEqual({
      kind: 'redirect-failed',
      reason: 'redirect failed in netns 7: netns /p: iptables-restore failed',
    });
  });

  it('leaves anything else (bugs, API failures) unhandled, without looking at the sandbox', () => {
    const never = () => {
      throw new Error('asked');
    };
    expect(classifyEngineFailure(new TypeError('x is undefined'), 7, never, 5)).toEqual({ kind: 'unhandled' });
    expect(classifyEngineFailure(new Error('ECONNRESET'), 7, never, 5)).toEqual({ kind: 'unhandled' });
  });
});
