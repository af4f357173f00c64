// CIDR parsing into the canonical text iptables-save prints (network address, glibc
// inet_ntop style), so rendered rules compare equal to what is read back from a netns.

/** An IP address family; the redirect engine programs one ruleset per family. */
export type Family = 'ipv4' | 'ipv6';

export class InvalidValue extends Error {
  override name = 'InvalidValue';
}

export interface Cidr {
  family: Family;
  /** Canonical "address/prefix" with host bits cleared. */
  text: string;
  prefix: number;
  /**
   * The address as written (before masking) is a loopback address (127.0.0.0/8, ::1 or
   * ::ffff:127.x.y.z), the test Istio uses to decide that a range means loopback traffic.
   */
  loopback: boolean;
}

const IPV4_OCTET = /^(0|[1-9]\d{0,2})$/;
const IPV6_GROUP = /^[0-9a-fA-F]{1,4}$/;

function parseIpv4(text: string): number[] {
  const parts = text.split('.');
  if (parts.length !== 4) throw new InvalidValue(`${JSON.stringify(text)} is not an IPv4 address`);
  return parts.map((part) => {
    if (!IPV4_OCTET.test(part) || Number(part) > 255) {
      throw new InvalidValue(`${JSON.stringify(text)} is not an IPv4 address`);
    }
    return Number(part);
  });
}

/** 8 groups of 16 bits; accepts "::" compression and a trailing dotted IPv4 part. */
function parseIpv6(text: string): number[] {
  const bad = () => new InvalidValue(`${JSON.stringify(text)} is not an IPv6 address`);
  let body = text;
  let tail: number[] | undefined;
  const lastColon = body.lastIndexOf(':');
  if (body.slice(lastColon + 1).includes('.')) {
    // A trailing dotted IPv4 part stands for the last two groups.
    const v4 = parseIpv4(body.slice(lastColon + 1));
    tail = [((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0)];
    body = body.slice(0, lastColon + 1) + '0:0';
  }
  const halves = body.split('::');
  if (halves.length > 2) throw bad();
  const groups = (half: string) => (half === '' ? [] : half.split(':'));
  const head = groups(halves[0] ?? '');
  const rest = halves.length === 2 ? groups(halves[1] ?? '') : [];
  for (const group of [...head, ...rest]) if (!IPV6_GROUP.test(group)) throw bad();
  const explicit = head.length + rest.length;
  if (halves.length === 1 ? explicit !== 8 : explicit > 7) throw bad();
  const zeros = new Array<number>(8 - explicit).fill(0);
  const words = [...head.map((g) => parseInt(g, 16)), ...zeros, ...rest.map((g) => parseInt(g, 16))];
  if (tail) words.splice(6, 2, ...tail);
  return words;
}

function maskBits(words: number[], wordBits: number, prefix: number): number[] {
  return words.map((word, index) => {
    const keep = Math.max(0, Math.min(wordBits, prefix - index * wordBits));
    const mask = keep === 0 ? 0 : ((0xffffffff << (wordBits - keep)) >>> 0) & ((1 << wordBits) - 1);
    return word & mask;
  });
}

/** Formats like glibc's inet_ntop: longest run (>= 2) of zero groups as "::", IPv4-mapped/compatible dotted. */
export function formatIpv6(words: number[]): string {
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestLength < 2) bestStart = -1;
  const dotted = (hi: number, lo: number) => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (bestStart !== -1 && i >= bestStart && i < bestStart + bestLength) {
      if (i === bestStart) out += ':';
      continue;
    }
    if (i !== 0) out += ':';
    if (i === 6 && bestStart === 0 && (bestLength === 6 || (bestLength === 7 && words[7] !== 0x0001) || (bestLength === 5 && words[5] === 0xffff))) {
      return out + dotted(words[6] ?? 0, words[7] ?? 0);
    }
    out += (words[i] ?? 0).toString(16);
  }
  if (bestStart !== -1 && bestStart + bestLength === 8) out += ':';
  return out;
}

/** "10.1.2.3/8" -> 10.0.0.0/8; a bare address is a host route (/32, /128). */
export function parseCidr(input: string): Cidr {
  const slash = input.indexOf('/');
  const address = slash === -1 ? input : input.slice(0, slash);
  const prefixText = slash === -1 ? undefined : input.slice(slash + 1);
  const family: Family = address.includes(':') ? 'ipv6' : 'ipv4';
  const maxPrefix = family === 'ipv4' ? 32 : 128;
  let prefix = maxPrefix;
  if (prefixText !== undefined) {
    if (!/^(0|[1-9]\d{0,2})$/.test(prefixText) || Number(prefixText) > maxPrefix) {
      throw new InvalidValue(`${JSON.stringify(input)} has an invalid prefix length (0..${maxPrefix})`);
    }
    prefix = Number(prefixText);
  }
  if (family === 'ipv4') {
    const given = parseIpv4(address);
    return { family, prefix, text: `${maskBits(given, 8, prefix).join('.')}/${prefix}`, loopback: given[0] === 127 };
  }
  const given = parseIpv6(address);
  const loopback = given.slice(0, 7).every((word) => word === 0)
    ? given[7] === 1
    : given.slice(0, 5).every((word) => word === 0) && given[5] === 0xffff && given[6]! >> 8 === 127;
  return { family, prefix, text: `${formatIpv6(maskBits(given, 16, prefix))}/${prefix}`, loopback };
}

const BITS: Record<Family, number> = { ipv4: 32, ipv6: 128 };

/** An address (no prefix) of the family as a number, for range arithmetic. */
export function addressValue(family: Family, address: string): bigint {
  const [words, bits] = family === 'ipv4' ? [parseIpv4(address), 8n] : [parseIpv6(address), 16n];
  return words.reduce((value, word) => (value << bits) | BigInt(word), 0n);
}

/** The inverse of addressValue, in the canonical text. */
export function formatAddress(family: Family, value: bigint): string {
  const [count, bits] = family === 'ipv4' ? [4, 8n] : [8, 16n];
  const words = Array.from({ length: count }, (_, i) => Number((value >> (bits * BigInt(count - 1 - i))) & ((1n << bits) - 1n)));
  return family === 'ipv4' ? words.join('.') : formatIpv6(words);
}

/** The first and last address a CIDR covers. */
export function cidrBounds(cidr: Cidr): { first: bigint; last: bigint } {
  const first = addressValue(cidr.family, cidr.text.slice(0, cidr.text.indexOf('/')));
  return { first, last: first + (1n << BigInt(BITS[cidr.family] - cidr.prefix)) - 1n };
}
