// Prefix arithmetic the policy compiler needs, for IPv4 and IPv6 alike:
// containment, overlap, intersection and a canonical minimal form for lists.
// Prefixes of different families never contain or overlap each other.

import { formatCidr, maskBytes, parseCidr, parseIp, type IpPrefix } from '../net/ipaddr.js';

/** A prefix from text the policy parser already checked; throws on anything else. */
export function prefixOf(text: string): IpPrefix {
  const r = parseCidr(text, { allowBare: true, mask: true });
  if (!r.ok) throw new RangeError(`not a CIDR: ${text} (${r.reason})`);
  return r.value;
}

/** An address as a host prefix (/32 or /128), or null if it is not an address. */
export function hostPrefix(address: string): IpPrefix | null {
  const a = parseIp(address);
  return a === null ? null : { family: a.family, bytes: a.bytes, bits: a.family === 4 ? 32 : 128 };
}

export function maxBits(p: { family: 4 | 6 }): number {
  return p.family === 4 ? 32 : 128;
}

export function isHost(p: IpPrefix): boolean {
  return p.bits === maxBits(p);
}

/** The whole address space of both families: what `*` stands for. */
export function everything(): IpPrefix[] {
  return [
    { family: 4, bytes: new Uint8Array(4), bits: 0 },
    { family: 6, bytes: new Uint8Array(16), bits: 0 },
  ];
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether every address of `inner` is in `outer`. (Hot in the compiler: no allocation.) */
export function contains(outer: IpPrefix, inner: IpPrefix): boolean {
  if (outer.family !== inner.family || outer.bits > inner.bits) return false;
  const whole = outer.bits >> 3;
  const a = outer.bytes;
  const b = inner.bytes;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  const rest = outer.bits & 7;
  if (rest === 0) return true;
  const mask = (0xff00 >> rest) & 0xff;
  return (a[whole] & mask) === (b[whole] & mask);
}

/** Whether the two share an address; for prefixes that means one contains the other. */
export function overlaps(a: IpPrefix, b: IpPrefix): boolean {
  return contains(a, b) || contains(b, a);
}

/** The addresses in both, which for prefixes is the narrower of the two, or null. */
export function intersect(a: IpPrefix, b: IpPrefix): IpPrefix | null {
  if (contains(a, b)) return b;
  if (contains(b, a)) return a;
  return null;
}

/** IPv4 before IPv6, then by network address, then broader first. */
export function comparePrefixes(a: IpPrefix, b: IpPrefix): number {
  if (a.family !== b.family) return a.family - b.family;
  for (let i = 0; i < a.bytes.length; i++) if (a.bytes[i] !== b.bytes[i]) return a.bytes[i] - b.bytes[i];
  return a.bits - b.bits;
}

function masked(p: IpPrefix): IpPrefix {
  return { family: p.family, bytes: maskBytes(p.bytes, p.bits), bits: p.bits };
}

/** Two halves of one prefix one bit shorter. */
function siblings(a: IpPrefix, b: IpPrefix): boolean {
  return a.family === b.family && a.bits === b.bits && a.bits > 0 && !sameBytes(a.bytes, b.bytes) && sameBytes(maskBytes(a.bytes, a.bits - 1), maskBytes(b.bytes, b.bits - 1));
}

/**
 * The same set of addresses as the fewest prefixes, sorted: host bits
 * cleared, duplicates and prefixes inside others dropped, and two halves of
 * a prefix replaced by it.
 */
export function normalizePrefixes(list: IpPrefix[]): IpPrefix[] {
  const sorted = list.map(masked).sort(comparePrefixes);
  const out: IpPrefix[] = [];
  for (const p of sorted) {
    // Sorted by address then length, a prefix covering p is the last one kept if any.
    if (out.length > 0 && contains(out[out.length - 1], p)) continue;
    out.push(p);
    while (out.length >= 2 && siblings(out[out.length - 2], out[out.length - 1])) {
      const b = out.pop()!;
      out.pop();
      out.push({ family: b.family, bytes: maskBytes(b.bytes, b.bits - 1), bits: b.bits - 1 });
    }
  }
  return out;
}

export function formatPrefixes(list: IpPrefix[]): string[] {
  return list.map(formatCidr);
}
