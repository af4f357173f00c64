import { describe, expect, it } from 'vitest';
import { SANDBOX_BACKOFF } from '../../controller/src/agent/backoff.ts';
import { backoffDelay } from '../../controller/src/kube/backoff.ts';

const policy = { initialMs: 100, maxMs: 2_000, factor: 2, jitter: 0.2 };

describe('backoff', () => {
  it('grows exponentially up to the cap without jitter at the midpoint', () => {
    const mid = () => 0.5;
    expect([0, 1, 2, 3, 4, 5, 10].map((attempt) => backoffDelay(attempt, policy, mid))).toEqual([100, 200, 400, 800, 1600, 2000, 2000]);
  });

  it('spreads by the jitter fraction either way, never above the cap', () => {
    expect(backoffDelay(0, policy, () => 0)).toBe(80);
    expect(backoffDelay(0, policy, () => 1)).toBe(120);
    expect(backoffDelay(10, policy, () => 1)).toBe(2000);
    expect(backoffDelay(10, policy, () => 0)).toBe(1600);
  });

  it('treats negative and fractional attempts as whole retries from 0', () => {
    expect(backoffDelay(-3, policy, () => 0.5)).toBe(100);
    expect(backoffDelay(1.9, policy, () => 0.5)).toBe(200);
  });

  it('keeps backstop retries of a sandbox-less pod within seconds (the watcher finds it fast)', () => {
    for (let i = 0; i < 50; i++) {
      expect(backoffDelay(0, SANDBOX_BACKOFF)).toBeGreaterThanOrEqual(800);
      expect(backoffDelay(20, SANDBOX_BACKOFF)).toBeLessThanOrEqual(10_000);
    }
  });
});
