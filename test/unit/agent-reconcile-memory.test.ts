import { describe, expect, it } from 'vitest';
import { PodMemories, PodMemory } from '../../controller/src/agent/pod-memory.ts';

const sandbox = { pid: 4001, inode: 4026532001, path: '/proc/4001/ns/net', startTime: 101 };

describe('per-pod memory', () => {
  it('awaits the echo of a write until a copy at least that new arrives', () => {
    const memory = new PodMemory(0);
    memory.errorMarkWritten('120', 10);
    expect(memory.awaitingEcho).toEqual({ resourceVersion: '120', at: 10 });
    memory.echoSeen('119');
    memory.echoSeen(undefined);
    expect(memory.awaitingEcho).toBeDefined();
    memory.echoSeen('1000'); // compared as integers, not strings
    expect(memory.awaitingEcho).toBeUndefined();
  });

  it('awaits nothing for a write whose answer carried no resourceVersion', () => {
    const memory = new PodMemory(0);
    memory.errorMarkWritten('', 10);
    expect(memory.awaitingEcho).toBeUndefined();
    memory.initializedMarkWritten('', { markText: 'm', sandbox, hash: 'h', at: 5 });
    expect(memory.awaitingEcho).toBeUndefined();
    expect(memory.verified).toEqual({ markText: 'm', sandbox, hash: 'h', at: 5 });
  });

  it('runs the latency clock from the first time this sandbox was found, through retries, until settled', () => {
    const memory = new PodMemory(0);
    memory.sandboxFound(sandbox, 100);
    memory.sandboxFound(sandbox, 900); // a retry of the same programming
    expect(memory.settled(1_100)).toBe(1_000);
    expect(memory.sandboxFoundAt).toBeUndefined();
    memory.sandboxFound(sandbox, 2_000);
    memory.sandboxFound({ ...sandbox, pid: 4002 }, 3_000); // replaced: starts again
    expect(memory.settled(3_500)).toBe(500);
    expect(memory.settled(4_000)).toBe(0);
  });

  it('forgets what was verified once another sandbox is found, even one with the same netns inode', () => {
    for (const next of [
      { ...sandbox, pid: 4002, path: '/proc/4002/ns/net' },
      { ...sandbox, startTime: 202 },
      { ...sandbox, inode: 4026532002 },
    ]) {
      const memory = new PodMemory(0);
      memory.sandboxFound(sandbox, 0);
      memory.verifiedNow({ markText: 'm', sandbox, hash: 'h', at: 5 });
      memory.sandboxFound(sandbox, 10);
      expect(memory.verified).toBeDefined();
      memory.sandboxFound(next, 20);
      expect(memory.verified).toBeUndefined();
    }
  });

  it('forgets a missing sandbox, but not when it was reported missing', () => {
    const memory = new PodMemory(0);
    memory.sandboxFound(sandbox, 0);
    memory.sandboxMissing();
    memory.reportedSandboxNotFound();
    expect(memory.sandbox).toBeUndefined();
    expect(memory.sandboxNotFoundReported).toBe(true);
  });

  it('hands out the mark Event check once; a mark we wrote needs none', () => {
    const memory = new PodMemory(0);
    expect(memory.claimMarkEvent()).toBe(true);
    expect(memory.claimMarkEvent()).toBe(false);
    const written = new PodMemory(0);
    written.initializedMarkWritten('5', { markText: 'm', sandbox, hash: 'h', at: 5 });
    expect(written.claimMarkEvent()).toBe(false);
  });

  it('drops what was verified when the pod fails, and the uncertainty after a fresh read', () => {
    const memory = new PodMemory(0);
    memory.verifiedNow({ markText: 'm', sandbox, hash: 'h', at: 5 });
    memory.failed();
    expect(memory.verified).toBeUndefined();
    memory.writeMayHaveLanded();
    expect(memory.writeUncertain).toBe(true);
    memory.freshlyRead();
    expect(memory.writeUncertain).toBe(false);
  });

  it('keeps one memory per pod, started on first use', () => {
    const memories = new PodMemories();
    expect(memories.get('a')).toBeUndefined();
    const a = memories.of('a', 42);
    expect(memories.of('a', 99)).toBe(a);
    expect(a.firstSeenAt).toBe(42);
    memories.forget('a');
    expect(memories.get('a')).toBeUndefined();
    expect([...memories.entries()]).toEqual([]);
  });
});
