// The LIST splitter: however the response text is cut into chunks, it hands over exactly the
// items JSON.parse finds in the whole text, in order, and returns the rest of the list.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ListItemSplitter } from '../../controller/src/kube/list-stream.ts';

function split(text: string, cuts: number[]) {
  const items: unknown[] = [];
  const splitter = new ListItemSplitter<unknown>((item) => items.push(item));
  let at = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    splitter.push(text.slice(at, cut));
    at = cut;
  }
  splitter.push(text.slice(at));
  return { items, head: splitter.end() };
}

const tricky = {
  kind: 'NamespaceList',
  apiVersion: 'v1',
  metadata: { resourceVersion: '42', continue: 'eyJ2Ijoi]}{"' },
  items: [
    { metadata: { name: 'a', annotations: { 'x/items': '["items"]', quote: 'say "}" \\ done', unicode: 'ünï\u2603' } }, spec: { items: [{}] } },
    { metadata: { name: 'b', labels: {} }, status: { phase: 'Active' } },
  ],
};

describe('ListItemSplitter', () => {
  it('hands over each item and returns the list without them, braces and quotes inside strings included', () => {
    const { items, head } = split(JSON.stringify(tricky), []);
    expect(items).toEqual(tricky.items);
    expect(head).toEqual({ ...tricky, items: [] });
  });

  it('the same for every way of cutting the text into chunks', () => {
    const text = JSON.stringify(tricky, null, 1);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: text.length }), { maxLength: 12 }), (cuts) => {
        const { items, head } = split(text, cuts);
        expect(items).toEqual(tricky.items);
        expect(head.metadata).toEqual(tricky.metadata);
      }),
    );
  });

  it('items hand over in order for any list of JSON objects; a key named like items elsewhere does not count', () => {
    fc.assert(
      fc.property(fc.array(fc.object(), { maxLength: 5 }), fc.array(fc.nat(), { maxLength: 6 }), (objects, cuts) => {
        const text = JSON.stringify({ itemsX: [{ not: 'an item' }], metadata: { items: [1] }, items: objects });
        const { items, head } = split(
          text,
          cuts.map((cut) => cut % (text.length + 1)),
        );
        expect(items).toEqual(JSON.parse(text).items);
        expect(head).toEqual({ itemsX: [{ not: 'an item' }], metadata: { items: [1] }, items: [] });
      }),
    );
  });

  it('a list without items, and items: null', () => {
    expect(split('{"kind":"List","metadata":{"resourceVersion":"7"},"items":null}', [5]).head.metadata).toEqual({ resourceVersion: '7' });
    expect(split('{"kind":"List","metadata":{}}', []).items).toEqual([]);
  });

  it('a text that ends inside the JSON is an error, not a shorter list', () => {
    const text = JSON.stringify(tricky);
    const splitter = new ListItemSplitter<unknown>(() => {});
    splitter.push(text.slice(0, text.length - 10));
    expect(() => splitter.end()).toThrow(/ended in the middle/);
  });
});
