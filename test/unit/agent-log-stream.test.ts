// The agent's log stream on a real pipe that nobody reads for a while (a stalled container log
// pipe): at most its queue waits in memory, whole lines are dropped and counted, none is torn.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { boundedLogStream } from '../../controller/src/agent/log-stream.ts';

const QUEUE_BYTES = 256 * 1024;
const LINES = 5_000;

/** What the pipe holds now; '' when empty. */
function drain(fd: number): string {
  const chunks: Buffer[] = [];
  const buffer = Buffer.alloc(65_536);
  for (;;) {
    try {
      const n = readSync(fd, buffer);
      if (n === 0) break;
      chunks.push(Buffer.from(buffer.subarray(0, n)));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') break;
      throw error;
    }
  }
  return Buffer.concat(chunks).toString();
}

describe('boundedLogStream', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0).reverse()) cleanup();
  });

  it('queues at most its bytes while the pipe is not read, drops whole lines beyond, and delivers the rest once it is', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pnc-log-stream-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const fifo = join(dir, 'stdout');
    execFileSync('mkfifo', [fifo]);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    cleanups.push(() => closeSync(reader));
    const writer = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    const { stream, onDrop } = boundedLogStream(writer, QUEUE_BYTES);
    cleanups.push(() => closeSync(writer));
    let dropped = 0;
    onDrop(() => dropped++);
    const log = pino({ base: null }, stream);
    const padding = 'x'.repeat(200);
    // About 1.3 MB of lines at once, while the pipe (64 KiB) is read by nobody.
    for (let i = 0; i < LINES; i++) log.info({ i, padding }, 'line');
    expect(dropped).toBeGreaterThan(0);

    let received = '';
    let quietSince = Date.now();
    while (Date.now() - quietSince < 1_000) {
      const got = drain(reader);
      if (got !== '') quietSince = Date.now();
      received += got;
      await new Promise((done) => setTimeout(done, 20));
    }
    const lines = received.split('\n').filter((line) => line !== '');
    const numbers = lines.map((line) => (JSON.parse(line) as { i: number }).i);
    expect(lines.length + dropped).toBe(LINES);
    // Nothing beyond what the pipe and the queue hold was kept.
    expect(Buffer.byteLength(received)).toBeLessThanOrEqual(65_536 + QUEUE_BYTES + 300);
    // In order, and the first lines are never the ones dropped.
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
    expect(numbers[0]).toBe(0);
  });
});
