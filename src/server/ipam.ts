// Address and name allocation for the overlay: pure functions, no I/O, so the
// store (SQLite now, PostgreSQL later) decides only what is taken and these
// decide what comes next.
import { formatIp, parseCidr, parseIPv4 } from '../net/ipaddr.js';

/** The CGNAT range every node's IPv4 comes from (as Tailscale uses it). */
export const OVERLAY_V4 = '100.64.0.0/10';
/** The ULA /48 every node's IPv6 comes from; the low 32 bits carry its IPv4. */
export const OVERLAY_V6 = 'fd7a:115c:a1e0::/48';

const V6_PREFIX = [0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0];
const LABEL_MAX = 63;

/**
 * Dotted quad to number, as strict as parseIPv4 (no leading zeros) but
 * without its regexes and allocations: this runs once per node per
 * allocation, so it is the allocator's hot loop.
 */
function v4ToNumber(text: string): number | null {
  let value = 0;
  let octet = -1; // -1: no digit yet in this octet
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46 /* . */) {
      if (octet < 0 || ++dots > 3) return null;
      value = value * 256 + octet;
      octet = -1;
    } else if (c >= 48 && c <= 57) {
      if (octet === 0) return null; // a leading zero
      octet = octet < 0 ? c - 48 : octet * 10 + (c - 48);
      if (octet > 255) return null;
    } else {
      return null;
    }
  }
  return dots === 3 && octet >= 0 ? value * 256 + octet : null;
}

function numberToV4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
}

/** The smallest allocatable address >= n: .0 and .255 look like network and broadcast addresses, so never hand them out. */
function allocatableFrom(n: number): number {
  const last = n & 0xff;
  if (last === 0) return n + 1;
  if (last === 255) return n + 2;
  return n;
}

/** The first and last address of an IPv4 CIDR, as numbers. */
function v4Range(pool: string): [number, number] {
  const p = parseCidr(pool, { mask: true });
  if (!p.ok || p.value.family !== 4) throw new RangeError(`"${pool}" is not an IPv4 prefix`);
  const b = p.value.bytes;
  const first = ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
  return [first, first + 2 ** (32 - p.value.bits) - 1];
}

/**
 * The lowest free address in the pool (100.64.0.0/10 unless told), never
 * the pool's own network address nor one ending in .0 or .255; null when
 * every one is taken. Entries of `used` outside the pool or not IPv4 are
 * ignored. O(n log n) in the size of `used`: one sorted walk over numbers
 * rather than probing candidate strings.
 */
export function nextFreeIpv4(used: ReadonlySet<string>, pool: string = OVERLAY_V4): string | null {
  const [first, last] = v4Range(pool);
  const buf = new Uint32Array(used.size);
  let count = 0;
  for (const text of used) {
    const n = v4ToNumber(text);
    if (n !== null && n >= first && n <= last) buf[count++] = n;
  }
  const taken = buf.subarray(0, count).sort(); // typed arrays sort numerically
  let candidate = allocatableFrom(first + 1);
  for (const n of taken) {
    if (n > candidate) break; // a gap: candidate is free
    if (n === candidate) candidate = allocatableFrom(candidate + 1);
  }
  return candidate <= last ? numberToV4(candidate) : null;
}

/** fd7a:115c:a1e0::<the 32 bits of ipv4>, canonical (RFC 5952): 100.64.0.1 -> fd7a:115c:a1e0::6440:1. */
export function ipv6ForIpv4(ipv4: string): string {
  const v4 = parseIPv4(ipv4);
  if (v4 === null) throw new RangeError(`"${ipv4}" is not an IPv4 address`);
  const bytes = new Uint8Array(16);
  bytes.set(V6_PREFIX, 0);
  bytes.set(v4, 12);
  return formatIp({ family: 6, bytes });
}

/** A DNS label from whatever a node calls itself: lowercase [a-z0-9-], no leading, trailing or repeated '-', at most 63 chars; 'node' if nothing is left. */
export function sanitizeHostname(requested: string): string {
  const label = requested
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-{2,}/g, '-')
    .replace(/^-+/, '')
    .slice(0, LABEL_MAX)
    .replace(/-+$/, ''); // after slicing, which can end on a '-'
  return label === '' ? 'node' : label;
}

// uniqueName's suffixes stay under 8 characters ("-9999999") for any
// realistic number of nodes, so its trimmed bases keep at least this much.
const MAX_SUFFIX = 8;

/**
 * A prefix every name uniqueName(base, taken) can return starts with (for
 * fewer than 10^7 taken names), so a store need only pass the taken names
 * that start with it.
 */
export function nameCandidatesPrefix(base: string): string {
  return base.slice(0, LABEL_MAX - MAX_SUFFIX).replace(/-+$/, '');
}

/**
 * `base` if no one has it, else the first free of base-1, base-2, ...; base
 * is trimmed (and any '-' it then ends in) so the name stays within 63 chars.
 * `base` should be a sanitized label.
 */
export function uniqueName(base: string, taken: ReadonlySet<string>): string {
  if (!taken.has(base)) return base;
  // base-1 .. base-(size+1) are distinct names, so one of them is free.
  const limit = taken.size + 1;
  for (let i = 1; i <= limit; i++) {
    const suffix = `-${i}`;
    const head = base.slice(0, LABEL_MAX - suffix.length).replace(/-+$/, '');
    const name = `${head}${suffix}`;
    if (!taken.has(name)) return name;
  }
  throw new Error('unreachable: more candidates than taken names');
}
