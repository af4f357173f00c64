// Writes a downward-API volume the way the kubelet does, for the init-waiter's tests and
// benchmark: the `key="value"` format of pkg/fieldpath FormatMap (Go %q quoting), and the
// AtomicWriter layout: a timestamped directory, `..data` -> it swapped by renaming
// `..data_tmp`, and `annotations -> ..data/annotations` made once.
import { chmodSync, mkdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** FormatMap: keys sorted, one `key="value"` per line, no trailing newline. */
export function formatDownwardApiAnnotations(annotations: Readonly<Record<string, string>>): string {
  return Object.keys(annotations)
    .sort()
    .map((key) => `${key}=${quoteGo(annotations[key] as string)}`)
    .join('\n');
}

const GO_ESCAPES: Record<string, string> = {
  '\x07': '\\a',
  '\b': '\\b',
  '\f': '\\f',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\v': '\\v',
  '\\': '\\\\',
  '"': '\\"',
};

// Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space.
const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

/** strconv.Quote for valid Unicode text. */
export function quoteGo(value: string): string {
  let out = '"';
  for (const ch of value) {
    const code = ch.codePointAt(0) as number;
    const escape = GO_ESCAPES[ch];
    if (escape !== undefined) out += escape;
    else if (PRINTABLE.test(ch)) out += ch;
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else if (code < 0x10000) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else out += `\\U${code.toString(16).padStart(8, '0')}`;
  }
  return `${out}"`;
}

let sequence = 0;

/** `..2026_11_23_01_02_03.123456789`, unique within this process even within one millisecond. */
function timestampedName(): string {
  const now = new Date();
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  const stamp = `${now.getUTCFullYear()}_${pad(now.getUTCMonth() + 1)}_${pad(now.getUTCDate())}_${pad(now.getUTCHours())}_${pad(now.getUTCMinutes())}_${pad(now.getUTCSeconds())}`;
  sequence = (sequence + 1) % 1_000_000;
  return `..${stamp}.${pad(now.getUTCMilliseconds(), 3)}${pad(sequence, 6)}`;
}

/**
 * Publishes files (name -> raw content) into dir atomically, readable by any UID
 * (the kubelet's default mode 0644). The old timestamped directory is removed after the swap.
 */
export function writeDownwardApiVolume(dir: string, files: Readonly<Record<string, string | Buffer>>): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chmodSync(dir, 0o755);
  const dataLink = join(dir, '..data');
  let previous: string | undefined;
  try {
    previous = readlinkSync(dataLink);
  } catch {
    previous = undefined;
  }
  const version = timestampedName();
  mkdirSync(join(dir, version), { mode: 0o755 });
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, version, name), content, { mode: 0o644 });
  const tmpLink = join(dir, '..data_tmp');
  rmSync(tmpLink, { force: true });
  symlinkSync(version, tmpLink);
  renameSync(tmpLink, dataLink);
  for (const name of Object.keys(files)) {
    try {
      symlinkSync(join('..data', name), join(dir, name));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  if (previous !== undefined && previous !== version) rmSync(join(dir, previous), { recursive: true, force: true });
}

/** Publishes the annotations file of a downward-API volume (`fieldRef: metadata.annotations`). */
export function writeAnnotations(dir: string, annotations: Readonly<Record<string, string>>): void {
  writeDownwardApiVolume(dir, { annotations: formatDownwardApiAnnotations(annotations) });
}
