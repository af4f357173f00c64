// Cutting text to a byte budget: the API server measures Event notes (and our marks are kept
// small) in UTF-8 bytes, while JavaScript strings count UTF-16 units.

/** Marks a cut; its 3 UTF-8 bytes count in the budget. */
export const CUT_MARK = '…';

/** UTF-8 length of one code point; a lone surrogate is written as U+FFFD, 3 bytes. */
function utf8Length(codePoint: number): number {
  return codePoint < 0x80 ? 1 : codePoint < 0x800 ? 2 : codePoint < 0x10000 ? 3 : 4;
}

/**
 * TEXT when its UTF-8 encoding fits in maxBytes; else its longest prefix of whole code points
 * (never half a surrogate pair or of a multi-byte character) that fits with CUT_MARK after it.
 */
export function cutUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  const budget = maxBytes - Buffer.byteLength(CUT_MARK, 'utf8');
  let bytes = 0;
  let end = 0;
  for (const char of text) {
    bytes += utf8Length(char.codePointAt(0)!);
    if (bytes > budget) break;
    end += char.length;
  }
  return text.slice(0, end) + CUT_MARK;
}
