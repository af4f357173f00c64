import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDownwardApiAnnotations, unquoteGo } from '../../init-waiter/src/downward-api.ts';
import { formatDownwardApiAnnotations, goQuote } from '../../hack/lib/downward-api.ts';

describe('unquoteGo (Go strconv.Unquote for "...")', () => {
  it.each([
    ['"plain"', 'plain'],
    ['""', ''],
    ['"say \\"hi\\""', 'say "hi"'],
    ['"back\\\\slash"', 'back\\slash'],
    ['"line1\\nline2\\ttab\\r"', 'line1\nline2\ttab\r'],
    ['"\\a\\b\\f\\v"', '\x07\b\f\v'],
    ['"\\x00\\x1f\\x7f"', '\x00\x1f\x7f'],
    ['"\\u200b\\U0001f600"', '\u200b\u{1f600}'],
    ['"\\xe2\\x82\\xac"', '€'], // bytes that only form text together
    ['"\\342\\202\\254"', '€'], // the same in octal
    ['"héllo 世界"', 'héllo 世界'],
  ])('%s -> %j', (quoted, expected) => {
    expect(unquoteGo(quoted)).toBe(expected);
  });

  it.each([
    ['no quotes', 'error'],
    ['"unterminated', 'error'],
    ['"a"b"', 'error'],
    ['"bad \\q escape"', 'error'],
    ['"\\x4"', 'error'],
    ['"\\ud800"', 'error'],
    ['"\\U00110000"', 'error'],
    ['"\\400"', 'error'],
    ['"ends \\"', 'error'],
  ])('rejects %s', (quoted) => {
    const result = unquoteGo(quoted);
    expect(typeof result).toBe('object');
    expect((result as { error: string }).error.length).toBeGreaterThan(0);
  });

  it('round-trips anything strconv.Quote produces', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme-composite', maxLength: 40 }), (value) => {
        expect(unquoteGo(goQuote(value))).toBe(value);
      }),
    );
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (value) => {
        // Lone surrogates are not text Go could hold: skip those inputs.
        fc.pre(!/\p{Cs}/u.test(value));
        expect(unquoteGo(goQuote(value))).toBe(value);
      }),
    );
  });
});

describe('parseDownwardApiAnnotations', () => {
  it('reads what the kubelet writes, including multi-line JSON values', () => {
    const annotations = {
      'pod-network-controller.io/status': '{"state":"initialized","netns":4026532845}',
      'kubectl.kubernetes.io/last-applied-configuration': '{\n  "kind": "Pod"\n}\n',
      'example.com/empty': '',
    };
    const parsed = parseDownwardApiAnnotations(formatDownwardApiAnnotations(annotations));
    expect(parsed.problemCount).toBe(0);
    expect(Object.fromEntries(parsed.annotations)).toEqual(annotations);
  });

  it('treats an empty file as no annotations', () => {
    expect(parseDownwardApiAnnotations('')).toEqual({ annotations: new Map(), problemCount: 0, problems: [] });
  });

  it('reports malformed lines by number and keeps the good ones', () => {
    const text = ['a="1"', 'garbage without equals', '="no key"', 'b=unquoted', 'c="2"', 'a="again"', 'd e="x"'].join('\n');
    const parsed = parseDownwardApiAnnotations(text);
    expect(Object.fromEntries(parsed.annotations)).toEqual({ a: '1', c: '2' });
    expect(parsed.problemCount).toBe(5);
    expect(parsed.problems).toEqual([
      'line 2: no key="value": "garbage without equals"',
      'line 3: empty key: "=\\"no key\\""',
      'line 4: value is not a double-quoted string: "b=unquoted"',
      'line 6: duplicate key a: "a=\\"again\\""',
      'line 7: invalid key: "d e=\\"x\\""',
    ]);
  });

  it('keeps only the first few problem messages but counts them all', () => {
    const parsed = parseDownwardApiAnnotations('x\n'.repeat(100_000));
    expect(parsed.problemCount).toBe(100_000);
    expect(parsed.problems).toHaveLength(5);
    expect(parsed.annotations.size).toBe(0);
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (bytes) => {
        const parsed = parseDownwardApiAnnotations(Buffer.from(bytes).toString('utf8'));
        expect(parsed.problemCount).toBeGreaterThanOrEqual(0);
        // Every problem is counted, and the first ones (up to 5) are kept to be shown.
        expect(parsed.problems).toHaveLength(Math.min(parsed.problemCount, 5));
      }),
    );
  });

  it('shortens long bad lines in messages', () => {
    const parsed = parseDownwardApiAnnotations(`k=${'z'.repeat(10_000)}`);
    expect(parsed.problems[0]).toMatch(/\.\.\." \(10002 chars\)$/);
  });
});
