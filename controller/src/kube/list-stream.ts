// Splits a LIST response into its items as its text arrives: each item is parsed on its own as
// soon as its last character is in, so neither the whole body nor the whole list of parsed
// objects is ever in memory (a page of OpenShift-like namespaces is ~1 MB of text and more
// as objects; parsed whole, it outlives V8's young generation and inflates the old one). What
// remains without the items (kind, apiVersion, metadata) is small and parsed at the end.

/** A list response without its items. */
export interface ListHead {
  kind?: string;
  metadata?: { resourceVersion?: string; continue?: string };
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

export class ListItemSplitter<T> {
  readonly #onItem: (item: T) => void;
  #depth = 0;
  #inString = false;
  #escaped = false;
  /** The last string at depth 1 (a key of the list object, or a value: a key always comes last before `[`), while it could still be "items". */
  #key = '';
  #keyPossible = false;
  /** Inside the top-level `items` array. */
  #inItems = false;
  /** An item's text begun in an earlier chunk. */
  #item = '';
  #inItem = false;
  /** The list's text without its items. */
  #head = '';

  constructor(onItem: (item: T) => void) {
    this.#onItem = onItem;
  }

  push(chunk: string): void {
    let itemStart = this.#inItem ? 0 : -1;
    // Where the head's current run starts in this chunk; -1 inside the items array.
    let headStart = this.#inItems ? -1 : 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false;
        else if (c === BACKSLASH) this.#escaped = true;
        else if (c === QUOTE) this.#inString = false;
        else if (this.#keyPossible) {
          this.#key += chunk[i];
          this.#keyPossible = this.#key.length <= 'items'.length;
        }
        continue;
      }
      if (c === QUOTE) {
        this.#inString = true;
        if (this.#depth === 1) {
          this.#key = '';
          this.#keyPossible = true;
        }
      } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
        if (this.#inItems && this.#depth === 2 && c === OPEN_OBJECT) {
          this.#inItem = true;
          itemStart = i;
        }
        if (this.#depth === 1 && c === OPEN_ARRAY && this.#key === 'items') {
          this.#inItems = true;
          this.#head += chunk.slice(headStart, i + 1);
          headStart = -1;
        }
        this.#depth++;
      } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
        this.#depth--;
        if (this.#inItem && this.#depth === 2) {
          const text = this.#item + chunk.slice(itemStart, i + 1);
          this.#item = '';
          this.#inItem = false;
          itemStart = -1;
          this.#onItem(JSON.parse(text) as T);
        } else if (this.#inItems && this.#depth === 1) {
          this.#inItems = false;
          headStart = i;
        }
      }
    }
    if (this.#inItem) this.#item += chunk.slice(itemStart);
    if (headStart >= 0) this.#head += chunk.slice(headStart);
  }

  /** The list without its items; throws when the text ended inside a value. */
  end(): ListHead {
    if (this.#depth !== 0 || this.#inString) throw new Error('list response ended in the middle of its JSON');
    return JSON.parse(this.#head) as ListHead;
  }
}
