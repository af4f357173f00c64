// A downward-API `metadata.annotations` volume exactly as the kubelet writes it: the content
// format of k8s.io/kubernetes/pkg/fieldpath.FormatMap and the atomic writer's `..data` swap.
import { randomInt } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;
const SHORT_ESCAPES: Record<string, string> = {
  '\x07': '\\a',
  '\b': '\\b',
  '\f': '\\f',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\v': '\\v',
  '"': '\\"',
  '\\': '\\\\',
};

/** Go's strconv.Quote (what `%q` prints): printable runes as they are, the rest escaped. */
export function goQuote(value: string): string {
  let quoted = '"';
  for (const char of value) {
    const codePoint = char.codePointAt(0)!;
    if (SHORT_ESCAPES[char]) quoted += SHORT_ESCAPES[char];
    // A lone surrogate cannot come from the apiserver: Go's JSON decoder turns it into U+FFFD.
    else if (codePoint >= 0xd800 && codePoint <= 0xdfff) quoted += '\ufffd';
    else if (PRINTABLE.test(char)) quoted += char;
    else if (codePoint < 0x80) quoted += `\\x${codePoint.toString(16).padStart(2, '0')}`;
    else if (codePoint < 0x10000) quoted += `\\u${codePoint.toString(16).padStart(4, '0')}`;
    else quoted += `\\U${codePoint.toString(16).padStart(8, '0')}`;
  }
  return `${quoted}"`;
}

/** The file content for a `fieldRef: metadata.annotations` volume: `key="value"` lines sorted by key, no final newline. */
export function formatDownwardApiAnnotations(annotations: Record<string, string>): string {
  // Go sorts strings by bytes (UTF-8), which is not always JavaScript's UTF-16 order.
  const keys = Object.keys(annotations).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return keys.map((key) => `${key}=${goQuote(annotations[key]!)}`).join('\n');
}

/** `..2026_11_23_01_02_03.` as Go formats time.Now().UTC() with "..2006_01_02_15_04_05." */
function timestampDirPrefix(now: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `..${now.getUTCFullYear()}_${pad(now.getUTCMonth() + 1)}_${pad(now.getUTCDate())}_${pad(now.getUTCHours())}_${pad(now.getUTCMinutes())}_${pad(now.getUTCSeconds())}.`;
}

/**
 * Writes FILES into volume directory DIR the way the kubelet's AtomicWriter does: a new
 * timestamped directory, a `..data_tmp` symlink to it renamed over `..data`, user-visible
 * `name -> ..data/name` symlinks, then the old timestamped directory removed. A reader
 * following DIR/name sees the old content or the new one, never a mix. Unchanged content
 * writes nothing, as with the kubelet. Synchronous, so a test publishes exactly when it says.
 */
export function writeAtomicVolume(dir: string, files: Readonly<Record<string, string | Buffer>>): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chmodSync(dir, 0o755);
  const dataLink = join(dir, '..data');
  const oldTimestampDir = readlinkOrUndefined(dataLink);
  if (oldTimestampDir !== undefined && Object.entries(files).every(([name, content]) => sameContent(join(dir, oldTimestampDir, name), content))) return;

  let timestampDir = '';
  for (;;) {
    // Go's os.MkdirTemp appends a random decimal number to the pattern.
    timestampDir = `${timestampDirPrefix(new Date())}${randomInt(1, 2 ** 32)}`;
    try {
      mkdirSync(join(dir, timestampDir), { mode: 0o755 });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  chmodSync(join(dir, timestampDir), 0o755);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, timestampDir, name), content, { mode: 0o644 });

  const tmpLink = join(dir, '..data_tmp');
  rmSync(tmpLink, { force: true });
  symlinkSync(timestampDir, tmpLink);
  renameSync(tmpLink, dataLink);
  for (const name of Object.keys(files)) {
    try {
      symlinkSync(join('..data', name), join(dir, name));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  if (oldTimestampDir !== undefined && oldTimestampDir !== timestampDir) rmSync(join(dir, oldTimestampDir), { recursive: true, force: true });
}

/** Publishes the `annotations` file of a `fieldRef: metadata.annotations` volume. */
export function writeAnnotationsVolume(dir: string, annotations: Record<string, string>): void {
  writeAtomicVolume(dir, { annotations: formatDownwardApiAnnotations(annotations) });
}

function readlinkOrUndefined(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

function sameContent(path: string, content: string | Buffer): boolean {
  try {
    return readFileSync(path).equals(Buffer.isBuffer(content) ? content : Buffer.from(content));
  } catch {
    return false;
  }
}

/** Removes what writeAtomicVolume made in DIR (and DIR once empty), as the kubelet tears a volume down. */
export function removeAtomicVolume(dir: string, names: string[]): void {
  let entries: string[] = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const entry of entries) {
    if (names.includes(entry) || entry === '..data' || entry === '..data_tmp' || /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d+$/.test(entry)) {
      rmSync(join(dir, entry), { recursive: true, force: true });
    }
  }
  try {
    rmdirSync(dir);
  } catch {
    // other files in it are not ours: keep them
  }
}

/**
 * A new, empty temp directory for a downward-API volume that any UID can read (the waiter
 * runs as 65534); the caller removes it. Its annotations file will be DIR/annotations.
 */
export function volumeDir(prefix = 'pnc-podinfo-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}
