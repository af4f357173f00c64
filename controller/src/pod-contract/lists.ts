// Parsers for the comma-separated values of Istio's traffic annotations. They throw
// InvalidValue with a reason; callers add the pod and the annotation to the message.
import { InvalidValue, parseCidr, type Cidr } from './cidr.ts';

/** Bounds the rules one pod can ask for (each entry becomes a rule per family). */
export const MAX_LIST_ENTRIES = 256;

function splitList(text: string): string[] {
  if (text.trim() === '') return [];
  const items = text.split(',').map((item) => item.trim());
  if (items.some((item) => item === '')) throw new InvalidValue('has an empty list entry');
  if (items.length > MAX_LIST_ENTRIES) throw new InvalidValue(`has more than ${MAX_LIST_ENTRIES} entries`);
  return items;
}

export function parsePort(text: string): number {
  if (!/^[1-9]\d{0,4}$/.test(text) || Number(text) > 65535) {
    throw new InvalidValue(`${JSON.stringify(text)} is not a port (1..65535)`);
  }
  return Number(text);
}

export function sortedUnique(values: number[]): number[] {
  return [...new Set(values)].sort((a, b) => a - b);
}

export function parsePortList(text: string): number[] {
  return sortedUnique(splitList(text).map(parsePort));
}

/** A port list where "*" (alone) means every port. */
export function parsePortListOrAll(text: string): '*' | number[] {
  if (text.trim() === '*') return '*';
  const items = splitList(text);
  if (items.includes('*')) throw new InvalidValue('mixes "*" with other entries');
  return sortedUnique(items.map(parsePort));
}

export function parseCidrList(text: string): Cidr[] {
  const seen = new Map<string, Cidr>();
  for (const item of splitList(text)) {
    const cidr = parseCidr(item);
    seen.set(cidr.text, cidr);
  }
  return [...seen.values()];
}

/** A CIDR list where "*" (alone) means every destination. */
export function parseCidrListOrAll(text: string): '*' | Cidr[] {
  if (text.trim() === '*') return '*';
  if (splitList(text).includes('*')) throw new InvalidValue('mixes "*" with other entries');
  return parseCidrList(text);
}

/**
 * Linux interface names (at most 15 bytes) in the characters CNI plugins use; anything else
 * (spaces, "/", iptables' "+" wildcard, shell metacharacters) is refused.
 */
const INTERFACE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

export function parseInterfaceList(text: string): string[] {
  const names = splitList(text);
  const bad = names.find((name) => !INTERFACE_NAME.test(name));
  if (bad !== undefined) throw new InvalidValue(`${JSON.stringify(bad)} is not an interface name (1-15 of A-Z a-z 0-9 _ . -, starting with a letter or digit)`);
  return [...new Set(names)].sort();
}
