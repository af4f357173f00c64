// The contract between the controller and the pods it serves, shared by both bundles
// (dist/controller.js and dist/init-waiter.js): the mark and our annotation names, the
// Istio traffic annotations, and the parsers of their values. It imports nothing outside
// this folder, not even a package, so the init-waiter bundle stays small and
// dependency-free; the ESLint config keeps the init-waiter to this entry point.
export type { Mark, NetnsRecord } from './mark.ts';
export {
  boundedReason,
  encodeMark,
  encodeNetnsRecord,
  INITIALIZE_ANNOTATION,
  MARK_REASON_MAX_BYTES,
  MARK_VERSION,
  MarkFormatError,
  netnsInodeFromLink,
  parseMark,
  parseNetnsRecord,
  REINIT_ANNOTATION,
  STATUS_ANNOTATION,
} from './mark.ts';
export { ANNOTATIONS, UNSUPPORTED_ANNOTATIONS } from './istio-annotations.ts';
export type { Cidr, Family } from './cidr.ts';
export { addressValue, cidrBounds, formatAddress, InvalidValue, parseCidr } from './cidr.ts';
export { parseCidrList, parseCidrListOrAll, parseInterfaceList, parsePort, parsePortList, parsePortListOrAll, sortedUnique } from './lists.ts';
export { CUT_MARK, cutUtf8 } from './utf8.ts';
