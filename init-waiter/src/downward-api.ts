// Parser of the kubelet's downward-API format for `metadata.annotations` (pure).
// The kubelet (pkg/fieldpath FormatMap) writes one `key="value"` line per annotation,
// sorted by key, the value quoted by Go's strconv.Quote (%q): `\"`, `\\`, `\n`, `\t`...,
// `\xNN` for bytes, `\uNNNN`/`\UNNNNNNNN` for non-printable runes. A malformed line is
// reported and skipped, never fatal: the waiter keeps waiting and says why.

export interface ParsedAnnotations {
  annotations: Map<string, string>;
  /** How many lines could not be parsed. */
  problemCount: number;
  /** The first few problems, each naming its line, for the log. */
  problems: string[];
}

const MAX_REPORTED_PROBLEMS = 5;
const MAX_QUOTED_IN_MESSAGE = 60;

export function parseDownwardApiAnnotations(text: string): ParsedAnnotations {
  const annotations = new Map<string, string>();
  const problems: string[] = [];
  let problemCount = 0;
  const report = (lineNumber: number, line: string, why: string) => {
    problemCount++;
    if (problems.length < MAX_REPORTED_PROBLEMS) problems.push(`line ${lineNumber}: ${why}: ${excerpt(line)}`);
  };

  let lineNumber = 0;
  let start = 0;
  // Walk with indexOf instead of split(): a million-line file then allocates no line array.
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    lineNumber++;
    const line = text.slice(start, end);
    start = end + 1;
    if (line === '') continue;

    const eq = line.indexOf('=');
    if (eq <= 0) {
      report(lineNumber, line, eq === 0 ? 'empty key' : 'no key="value"');
      continue;
    }
    const key = line.slice(0, eq);
    if (/[\s"]/.test(key)) {
      report(lineNumber, line, 'invalid key');
      continue;
    }
    const value = unquoteGo(line.slice(eq + 1));
    if (typeof value !== 'string') {
      report(lineNumber, line, value.error);
      continue;
    }
    if (annotations.has(key)) {
      // The kubelet never repeats a key; keeping the first makes a later line unable to override it.
      report(lineNumber, line, `duplicate key ${key}`);
      continue;
    }
    annotations.set(key, value);
  }
  return { annotations, problemCount, problems };
}

function excerpt(line: string): string {
  const shown = line.length > MAX_QUOTED_IN_MESSAGE ? `${line.slice(0, MAX_QUOTED_IN_MESSAGE)}...` : line;
  return `${JSON.stringify(shown)}${line.length > MAX_QUOTED_IN_MESSAGE ? ` (${line.length} chars)` : ''}`;
}

const SIMPLE_ESCAPES: Record<string, string> = {
  a: '\x07',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
  '\\': '\\',
  '"': '"',
};

/** Go strconv.Unquote for a double-quoted string; returns the error instead of throwing. */
export function unquoteGo(quoted: string): string | { error: string } {
  if (quoted.length < 2 || quoted[0] !== '"' || quoted[quoted.length - 1] !== '"') {
    return { error: 'value is not a double-quoted string' };
  }
  const body = quoted.slice(1, -1);
  if (!body.includes('\\')) {
    return body.includes('"') ? { error: 'unescaped " inside the value' } : body;
  }

  // Escapes can spell raw bytes (\xNN, octal) that only form text together, so collect bytes.
  const parts: Buffer[] = [];
  let plainStart = 0;
  let i = 0;
  const flushPlain = (upTo: number) => {
    if (upTo > plainStart) parts.push(Buffer.from(body.slice(plainStart, upTo), 'utf8'));
  };
  while (i < body.length) {
    const ch = body[i];
    if (ch === '"') return { error: 'unescaped " inside the value' };
    if (ch !== '\\') {
      i++;
      continue;
    }
    flushPlain(i);
    const kind = body[i + 1];
    if (kind === undefined) return { error: 'value ends inside an escape' };
    const simple = SIMPLE_ESCAPES[kind];
    if (simple !== undefined) {
      parts.push(Buffer.from(simple, 'utf8'));
      i += 2;
    } else if (kind === 'x' || kind === 'u' || kind === 'U') {
      const digits = kind === 'x' ? 2 : kind === 'u' ? 4 : 8;
      const hex = body.slice(i + 2, i + 2 + digits);
      if (hex.length !== digits || !/^[0-9a-fA-F]+$/.test(hex)) return { error: `invalid \\${kind} escape` };
      const code = parseInt(hex, 16);
      if (kind === 'x') parts.push(Buffer.from([code]));
      else if (code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return { error: `invalid code point \\${kind}${hex}` };
      else parts.push(Buffer.from(String.fromCodePoint(code), 'utf8'));
      i += 2 + digits;
    } else if (kind >= '0' && kind <= '7') {
      const octal = body.slice(i + 1, i + 4);
      if (!/^[0-7]{3}$/.test(octal) || parseInt(octal, 8) > 255) return { error: 'invalid octal escape' };
      parts.push(Buffer.from([parseInt(octal, 8)]));
      i += 4;
    } else {
      return { error: `unknown escape \\${kind}` };
    }
    plainStart = i;
  }
  flushPlain(body.length);
  return Buffer.concat(parts).toString('utf8');
}
