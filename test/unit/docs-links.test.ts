// Every relative link in README.md and docs/ reaches an existing file and, when it names one,
// an existing heading there (GitHub's anchor for it), so moving text between documents cannot
// leave a link dangling.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');

const docFiles = [
  'README.md',
  ...(existsSync(join(ROOT, 'docs'))
    ? readdirSync(join(ROOT, 'docs'), { recursive: true, encoding: 'utf8' })
        .filter((f) => f.endsWith('.md'))
        .map((f) => join('docs', f))
    : []),
];

/** The text outside fenced code blocks and inline code, where links are links. */
function prose(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, (code) => code.replace(/[[\]()]/g, ' '));
}

/** GitHub's anchors for a document's headings: lowercased, punctuation dropped, spaces to hyphens, repeats numbered. */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const withoutCode = markdown.replace(/^```[\s\S]*?^```/gm, '');
  for (const [, text] of withoutCode.matchAll(/^#{1,6} (.+)$/gm)) {
    const base = text!
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N} _-]/gu, '')
      .replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

function relativeLinks(markdown: string): string[] {
  return [...prose(markdown).matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

describe('documentation links', () => {
  it('computes anchors as GitHub does', () => {
    const anchors = headingAnchors('# A real node: `up --with-node`\n## Faults and recovery\n## Faults and recovery\n```\n# not a heading\n```\n');
    expect([...anchors]).toEqual(['a-real-node-up---with-node', 'faults-and-recovery', 'faults-and-recovery-1']);
  });

  it('finds links in every document', () => {
    expect(docFiles).toContain('docs/operating.md');
    expect(relativeLinks(readFileSync(join(ROOT, 'README.md'), 'utf8')).length).toBeGreaterThan(10);
  });

  it.each(docFiles)('every relative link in %s resolves to a file and heading', (file) => {
    const text = readFileSync(join(ROOT, file), 'utf8');
    const broken = relativeLinks(text).filter((link) => {
      const [path, anchor] = link.split('#', 2) as [string, string | undefined];
      const target = path === '' ? join(ROOT, file) : join(ROOT, dirname(file), decodeURI(path));
      if (!existsSync(target) || relative(ROOT, target).startsWith('..')) return true;
      if (anchor === undefined || !target.endsWith('.md')) return false;
      return !headingAnchors(readFileSync(target, 'utf8')).has(anchor);
    });
    expect(broken, `${file}: links to missing files or headings`).toEqual([]);
  });
});
