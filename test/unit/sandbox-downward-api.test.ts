// The simulator's downward-API file content must be byte-for-byte what the kubelet writes:
// the golden file was produced by Go itself (fieldpath.FormatMap: sorted keys, `%v=%q` lines),
// see test/golden/downward-api/generate.go.txt.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatDownwardApiAnnotations, goQuote } from '../../hack/lib/downward-api.ts';

interface GoldenCase {
  annotations: Record<string, string>;
  file: string;
}
const golden = JSON.parse(readFileSync(new URL('../golden/downward-api/annotations.json', import.meta.url), 'utf8')) as GoldenCase[];

describe('formatDownwardApiAnnotations', () => {
  it.each(golden.map((entry) => [Object.keys(entry.annotations).join(',') || '(none)', entry] as const))('matches Go for %s', (_, { annotations, file }) => {
    expect(formatDownwardApiAnnotations(annotations)).toBe(file);
  });
});

describe('goQuote', () => {
  it('escapes what strconv.Quote escapes and keeps printable text', () => {
    expect(goQuote('a"b\\c')).toBe('"a\\"b\\\\c"');
    expect(goQuote('\u0000\u007f')).toBe('"\\x00\\x7f"');
    expect(goQuote('\u00a0')).toBe('"\\u00a0"');
    expect(goQuote('日本')).toBe('"日本"');
  });
});
