// Byte limits: Event notes (the API server counts UTF-8 bytes, at most 1024) and error
// reasons in marks are cut on a character boundary, the cut marked.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { markIsCurrent } from '../../controller/src/agent/mark-decision.ts';
import { EVENT_NOTE_MAX_BYTES, EventRecorder } from '../../controller/src/kube/event-recorder.ts';
import type { KubeClient } from '../../controller/src/kube/kube-client.ts';
import { CUT_MARK, cutUtf8, encodeMark, MARK_REASON_MAX_BYTES, parseMark } from '../../controller/src/pod-contract/index.ts';

const bytes = (text: string) => Buffer.byteLength(text, 'utf8');
/** Survives a UTF-8 round trip unchanged: no half character (a lone surrogate would become U+FFFD). */
const wellFormed = (text: string) => Buffer.from(text, 'utf8').toString('utf8') === text;

describe('cutUtf8', () => {
  it.each([
    ['ASCII', 'a', 1],
    ['two-byte', 'é', 2],
    ['fullwidth (3 bytes)', '\uFF21', 3],
    ['emoji (a surrogate pair, 4 bytes)', '\u{1F600}', 4],
  ])('%s: cuts to the budget on a character boundary, the mark included', (_name, char, size) => {
    for (const prefix of ['', 'x', 'xy', 'xyz']) {
      const text = prefix + char.repeat(2000);
      const cut = cutUtf8(text, 1024);
      expect(bytes(cut)).toBeLessThanOrEqual(1024);
      // No room is wasted beyond what one more character would need.
      expect(bytes(cut)).toBeGreaterThan(1024 - size);
      expect(cut.endsWith(`${char}${CUT_MARK}`)).toBe(true);
      expect(wellFormed(cut)).toBe(true);
      expect(text.startsWith(cut.slice(0, -CUT_MARK.length))).toBe(true);
    }
  });

  it('leaves text of exactly the limit whole, and cuts one byte more', () => {
    const exact = 'a'.repeat(1021) + '\uFF21';
    expect(bytes(exact)).toBe(1024);
    expect(cutUtf8(exact, 1024)).toBe(exact);
    const over = `${exact}b`;
    expect(cutUtf8(over, 1024)).toBe(`${'a'.repeat(1021)}${CUT_MARK}`);
    expect(bytes(cutUtf8(over, 1024))).toBe(1024);
  });

  it('300 fullwidth characters (900 bytes, 300 UTF-16 units) fit; 400 (1200 bytes) do not, although they are under 1000 units', () => {
    expect(cutUtf8('\uFF21'.repeat(300), 1024)).toBe('\uFF21'.repeat(300));
    const cut = cutUtf8('\uFF21'.repeat(400), 1024);
    expect(cut).toBe(`${'\uFF21'.repeat(340)}${CUT_MARK}`);
    expect(bytes(cut)).toBe(1023);
  });
});

describe('error reasons in marks', () => {
  const long = `iptables said: ${'\u{1F600}é-A ISTIO_OUTPUT -d 10.0.0.0/8 -j RETURN '.repeat(800)}`;

  it('are cut to MARK_REASON_MAX_BYTES when the mark is written, on a character boundary', () => {
    const reason = parseMark(encodeMark({ state: 'error', at: '2025-01-01T00:00:00Z', reason: long })).reason!;
    expect(bytes(long)).toBeGreaterThan(20_000);
    expect(bytes(reason)).toBeLessThanOrEqual(MARK_REASON_MAX_BYTES);
    expect(bytes(reason)).toBeGreaterThan(MARK_REASON_MAX_BYTES - 4);
    expect(reason.endsWith(CUT_MARK)).toBe(true);
    expect(wellFormed(reason)).toBe(true);
  });

  it('a written, cut reason still counts as current for the same failure (no rewrite on every pass)', () => {
    const written = encodeMark({ state: 'error', at: '2025-01-01T00:00:00Z', reason: long });
    expect(markIsCurrent(written, 'error', long)).toBe(true);
    expect(markIsCurrent(written, 'error', `${long.slice(0, 500)} and something else`)).toBe(false);
  });
});

describe('EventRecorder notes', () => {
  async function sentNote(note: string): Promise<string> {
    const bodies: { note?: string }[] = [];
    const client = {
      request: (_method: string, _path: string, body: { note?: string }) => {
        bodies.push(body);
        return Promise.resolve({});
      },
    } as unknown as KubeClient;
    const recorder = new EventRecorder(client, 'node-a', pino({ level: 'silent' }));
    recorder.record({ namespace: 'ns', name: 'pod', uid: 'uid-1' }, 'RedirectFailed', note);
    await recorder.flush();
    expect(bodies).toHaveLength(1);
    return bodies[0]!.note!;
  }

  it.each([
    ['ASCII', 'a'.repeat(5000)],
    ['fullwidth', '\uFF21'.repeat(700)],
    ['emoji', '\u{1F600}'.repeat(500)],
    ['mixed', `x${'é\u{1F600}\uFF21'.repeat(300)}`],
  ])('a long %s note is sent within the API limit (1024 bytes), cut on a character boundary', async (_name, note) => {
    const sent = await sentNote(note);
    expect(bytes(sent)).toBeLessThanOrEqual(EVENT_NOTE_MAX_BYTES);
    expect(bytes(sent)).toBeGreaterThan(EVENT_NOTE_MAX_BYTES - 4);
    expect(sent.endsWith(CUT_MARK)).toBe(true);
    expect(wellFormed(sent)).toBe(true);
  });

  it('a note of exactly the limit is sent whole', async () => {
    const note = `${'\u{1F600}'.repeat(255)}abcd`;
    expect(bytes(note)).toBe(EVENT_NOTE_MAX_BYTES);
    expect(await sentNote(note)).toBe(note);
  });
});
