// Finds which of many prefixes (nodes' addresses and routes) overlap a
// query prefix without scanning them all: host prefixes are kept sorted and
// found by binary search, broader ones (routes, usually few) are scanned.

import type { IpPrefix } from '../net/ipaddr.js';
import { comparePrefixes, contains, isHost, overlaps } from './cidr.js';

export interface Indexed<T> {
  prefix: IpPrefix;
  value: T;
}

function compareNetwork(a: IpPrefix, b: IpPrefix): number {
  if (a.family !== b.family) return a.family - b.family;
  for (let i = 0; i < a.bytes.length; i++) if (a.bytes[i] !== b.bytes[i]) return a.bytes[i] - b.bytes[i];
  return 0;
}

export class PrefixIndex<T> {
  private readonly hosts: Indexed<T>[];
  private readonly nets: Indexed<T>[];

  /** Prefixes must have their host bits clear. */
  constructor(entries: Iterable<Indexed<T>>) {
    const all = [...entries];
    this.hosts = all.filter((e) => isHost(e.prefix)).sort((a, b) => comparePrefixes(a.prefix, b.prefix));
    this.nets = all.filter((e) => !isHost(e.prefix));
  }

  /** The entries sharing an address with `q` (host bits clear). */
  overlapping(q: IpPrefix): Indexed<T>[] {
    const out: Indexed<T>[] = [];
    let lo = 0;
    let hi = this.hosts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareNetwork(this.hosts[mid].prefix, q) < 0) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.hosts.length && contains(q, this.hosts[i].prefix); i++) out.push(this.hosts[i]);
    for (const e of this.nets) if (overlaps(q, e.prefix)) out.push(e);
    return out;
  }
}
