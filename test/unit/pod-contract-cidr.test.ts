// CIDR canonicalisation: the text must equal what iptables-save prints (glibc inet_ntop).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidValue, parseCidr } from '../../controller/src/pod-contract/index.ts';

describe('parseCidr', () => {
  it.each([
    ['10.1.2.3/8', '10.0.0.0/8'],
    ['192.0.2.77', '192.0.2.77/32'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['203.0.113.255/25', '203.0.113.128/25'],
    ['2001:DB8:0:0:0:0:0:1/128', '2001:db8::1/128'],
    ['2001:db8::1/64', '2001:db8::/64'],
    ['::/0', '::/0'],
    ['::1', '::1/128'],
    ['::6/128', '::6/128'],
    ['2001:0:0:1:0:0:0:1/128', '2001:0:0:1::1/128'],
    ['1:0:2:0:3:0:4:0/128', '1:0:2:0:3:0:4:0/128'],
    ['2001:db8:0:0:1:0:0:0/128', '2001:db8:0:0:1::/128'],
    ['2001:db8:0:0:1:0:0:1/128', '2001:db8::1:0:0:1/128'],
    ['::ffff:192.0.2.1', '::ffff:192.0.2.1/128'],
    ['::ffff:c000:201/128', '::ffff:192.0.2.1/128'],
    ['::192.0.2.1/128', '::192.0.2.1/128'],
    ['fd00:10:96::/112', 'fd00:10:96::/112'],
  ])('%s -> %s', (input, canonical) => {
    expect(parseCidr(input).text).toBe(canonical);
  });

  it.each([
    '10.0.0.0/33',
    '::/129',
    '10.0.0/8',
    '10.0.0.0.0',
    '1.2.3.04',
    '10.0.0.0/',
    '/8',
    'fe80::1%lo',
    ':::',
    '1::2::3',
    '12345::',
    'g::1',
    '',
    ' 10.0.0.0/8',
    '10.0.0.0/-1',
  ])('refuses %j', (input) => {
    expect(() => parseCidr(input)).toThrow(InvalidValue);
  });

  it('is idempotent: parsing canonical text gives the same text, family and prefix', () => {
    const any = fc.oneof(fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 })), fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 })));
    fc.assert(
      fc.property(any, ([ip, prefix]) => {
        const first = parseCidr(`${ip}/${prefix}`);
        expect(parseCidr(first.text)).toMatchObject({ family: first.family, prefix: first.prefix, text: first.text });
        expect(first.prefix).toBe(prefix);
        expect(first.text).toBe(first.text.toLowerCase());
      }),
      { numRuns: 3000 },
    );
  });
});
