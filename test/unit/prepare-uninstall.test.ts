import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { awaitsItsMark, prepareUninstallCommand } from '../../controller/src/commands/prepare-uninstall.ts';
import { STATUS_ANNOTATION, encodeMark } from '../../controller/src/pod-contract/index.ts';

const WAITER = 'pnc-init-waiter';

function pod(
  options: { mark?: string; waiter?: 'running' | 'done' | 'failed' | 'none'; phase?: string; deleting?: boolean; initContainer?: string } = {},
): V1Pod {
  const { mark, waiter = 'running', phase = 'Pending', deleting = false, initContainer = WAITER } = options;
  const states = {
    running: { running: {} },
    done: { terminated: { exitCode: 0 } },
    failed: { terminated: { exitCode: 5 } },
  };
  return {
    metadata: {
      name: 'p',
      namespace: 'shop',
      annotations: mark === undefined ? {} : { [STATUS_ANNOTATION]: mark },
      ...(deleting ? { deletionTimestamp: new Date() } : {}),
    },
    spec: { initContainers: [{ name: initContainer }], containers: [{ name: 'app' }] },
    status: {
      phase,
      initContainerStatuses: waiter === 'none' ? [] : [{ name: initContainer, state: states[waiter], ready: false, restartCount: 0, image: '', imageID: '' }],
    },
  };
}

const at = '2026-12-05T00:00:00Z';

describe('prepare-uninstall: which pods still await their mark', () => {
  it.each([
    ['an injected pod whose waiter runs, not marked yet', pod(), true],
    ['an injected pod not started yet (no status for its waiter)', pod({ waiter: 'none' }), true],
    ['a waiter that failed and will run again, unmarked', pod({ waiter: 'failed' }), true],
    ['a pending mark', pod({ mark: encodeMark({ state: 'pending', at, reason: 'sandbox not found' }) }), true],
    ['an unreadable mark', pod({ mark: '{not json' }), true],
    ['marked initialized (its waiter passes without an agent)', pod({ mark: encodeMark({ state: 'initialized', at }) }), false],
    ['marked error (the agent has decided)', pod({ mark: encodeMark({ state: 'error', at, reason: 'bad annotation' }) }), false],
    ['its waiter is done', pod({ waiter: 'done' }), false],
    ['running', pod({ phase: 'Running' }), false],
    ['being deleted', pod({ deleting: true }), false],
    ['no waiter of ours', pod({ initContainer: 'istio-init' }), false],
  ])('%s: %s', (_name, subject, expected) => {
    expect(awaitsItsMark(subject, WAITER)).toBe(expected);
  });
});

describe('prepare-uninstall: bad flags', () => {
  it.each([
    [['--timeout', '0'], /--timeout "0" is not a whole number of seconds/],
    [['--timeout', '2m'], /--timeout "2m" is not a whole number of seconds/],
    [['--api-version', 'v2'], /--api-version "v2" is not one of v1, v1beta1/],
    [['--bindings', 'x'], /Unknown option '--bindings'/],
  ])('%j exits 2 naming the flag and its value', async (args, message) => {
    const written: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => written.push(chunk) > 0) as typeof process.stderr.write;
    try {
      expect(await prepareUninstallCommand(args)).toBe(2);
    } finally {
      process.stderr.write = write;
    }
    expect(written.join('')).toMatch(message);
  });
});
