// A downward-API `metadata.annotations` volume exactly as the kubelet writes it: the content
// format of k8s.io/kubernetes/pkg/fieldpath.FormatMap and the atomic writer's `..data` swap.
import { randomInt } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, readlink, rename, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
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
 * writes nothing, as with the kubelet.
 */
export async function writeAtomicVolume(dir: string, files: Record<string, string>): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const dataLink = join(dir, '..data');
  const oldTimestampDir = await readlink(dataLink).catch(() => undefined);
  if (oldTimestampDir !== undefined) {
    const unchanged = await Promise.all(
      Object.entries(files).map(async ([name, content]) => (await readFile(join(dir, oldTimestampDir, name), 'utf8').catch(() => null)) === content),
    );
    if (unchanged.every(Boolean)) return;
  }

  let timestampDir = '';
  for (;;) {
    // Go's os.MkdirTemp appends a random decimal number to the pattern.
    timestampDir = `${timestampDirPrefix(new Date())}${randomInt(1, 2 ** 32)}`;
    try {
      await mkdir(join(dir, timestampDir), { mode: 0o755 });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  await chmod(join(dir, timestampDir), 0o755);
  for (const [name, content] of Object.entries(files)) {
    await writeFile(join(dir, timestampDir, name), content, { mode: 0o644 });
  }

  const tmpLink = join(dir, '..data_tmp');
  await rm(tmpLink, { force: true });
  await symlink(timestampDir, tmpLink);
  await rename(tmpLink, dataLink);
  for (const name of Object.keys(files)) {
    await symlink(join('..data', name), join(dir, name)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
  }
  if (oldTimestampDir !== undefined && oldTimestampDir !== timestampDir) {
    await rm(join(dir, oldTimestampDir), { recursive: true, force: true });
  }
}

/** Removes what writeAtomicVolume made in DIR (and DIR once empty), as the kubelet tears a volume down. */
export async function removeAtomicVolume(dir: string, names: string[]): Promise<void> {
  const entries = await readdir(dir).catch(() => [] as string[]);
  for (const entry of entries) {
    if (names.includes(entry) || entry === '..data' || entry === '..data_tmp' || /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d+$/.test(entry)) {
      await rm(join(dir, entry), { recursive: true, force: true });
    }
  }
  await rmdir(dir).catch(() => undefined); // other files in it are not ours: keep them
}
