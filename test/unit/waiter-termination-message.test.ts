// The waiter's last words in the container's termination message file (kubectl describe pod).
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TERMINATION_MESSAGE_MAX_BYTES, writeTerminationMessage } from '../../init-waiter/src/termination-message.ts';

describe('writeTerminationMessage', () => {
  const dirs: string[] = [];
  const freshDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'pnc-termination-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('replaces the content of the file the kubelet created', () => {
    const path = join(freshDir(), 'termination-log');
    writeFileSync(path, 'an earlier, longer message from somewhere');
    expect(writeTerminationMessage(path, 'gave up: refused')).toBe(true);
    expect(readFileSync(path, 'utf8')).toBe('gave up: refused');
  });

  it('never creates the file (outside a pod nothing appears at /dev/termination-log)', () => {
    const path = join(freshDir(), 'termination-log');
    expect(writeTerminationMessage(path, 'x')).toBe(false);
    expect(existsSync(path)).toBe(false);
  });

  // Both alignments of the two-byte characters: with the prefix the cut falls between two, without it inside one.
  it.each(['a', ''])("cuts a long message to the kubelet's limit without splitting a character (prefix %j)", (prefix) => {
    const path = join(freshDir(), 'termination-log');
    writeFileSync(path, '');
    writeTerminationMessage(path, `${prefix}${'é'.repeat(TERMINATION_MESSAGE_MAX_BYTES)}`);
    const written = readFileSync(path);
    expect(written.length).toBeLessThanOrEqual(TERMINATION_MESSAGE_MAX_BYTES);
    expect(written.length).toBeGreaterThan(TERMINATION_MESSAGE_MAX_BYTES - 5);
    const text = written.toString('utf8');
    expect(text).not.toContain('\uFFFD');
    expect(text.endsWith('é…')).toBe(true);
  });
});
