// Keeps compiled filters small: rules that differ in one dimension only
// (sources, destinations, ports or protocols) become one rule with the union
// in that dimension, and rules another rule already covers are dropped. Both
// steps keep exactly the same set of allowed packets.

import type { IpPrefix } from '../net/ipaddr.js';
import { contains, formatPrefixes, normalizePrefixes } from './cidr.js';
import { DEFAULT_PROTOS, mergeRanges } from './ports.js';
import type { FilterRule, PortRange } from './types.js';

/** A filter rule before printing: the packets with src in srcs, dst in dsts, proto in protos and (if it has ports) port in ports. */
export interface Rule {
  srcs: IpPrefix[];
  dsts: IpPrefix[];
  ports: PortRange[];
  /** Explicit, sorted, unique. */
  protos: number[];
}

type Dim = 'srcs' | 'dsts' | 'ports' | 'protos';
const DIMS: readonly Dim[] = ['dsts', 'ports', 'srcs', 'protos'];

function uniqueSorted(ns: number[]): number[] {
  return [...new Set(ns)].sort((a, b) => a - b);
}

function normalize(r: Rule): Rule {
  return { srcs: normalizePrefixes(r.srcs), dsts: normalizePrefixes(r.dsts), ports: mergeRanges(r.ports), protos: uniqueSorted(r.protos) };
}

function key(r: Rule, dim: Dim): string {
  switch (dim) {
    case 'srcs':
    case 'dsts':
      return formatPrefixes(r[dim]).join(',');
    case 'ports':
      return r.ports.map(([a, b]) => `${a}-${b}`).join(',');
    case 'protos':
      return r.protos.join(',');
  }
}

function unite(a: Rule, b: Rule, dim: Dim): Rule {
  const r = { ...a };
  if (dim === 'srcs' || dim === 'dsts') r[dim] = normalizePrefixes([...a[dim], ...b[dim]]);
  else if (dim === 'ports') r.ports = mergeRanges([...a.ports, ...b.ports]);
  else r.protos = uniqueSorted([...a.protos, ...b.protos]);
  return r;
}

/** One pass joining rules equal in every dimension but `dim`; order of first appearance is kept. */
function joinOn(rules: Rule[], dim: Dim): Rule[] {
  const groups = new Map<string, Rule>();
  for (const r of rules) {
    const k = DIMS.filter((d) => d !== dim)
      .map((d) => key(r, d))
      .join('|');
    const prev = groups.get(k);
    groups.set(k, prev === undefined ? r : unite(prev, r, dim));
  }
  return [...groups.values()];
}

function prefixesCovered(inner: IpPrefix[], outer: IpPrefix[]): boolean {
  return inner.every((p) => outer.some((o) => contains(o, p)));
}

/** Whether every packet `a` allows, `b` allows too (a sufficient test on normalized rules). */
function covers(b: Rule, a: Rule): boolean {
  return (
    a.protos.every((p) => b.protos.includes(p)) &&
    a.ports.every(([lo, hi]) => b.ports.some(([blo, bhi]) => lo >= blo && hi <= bhi)) &&
    prefixesCovered(a.srcs, b.srcs) &&
    prefixesCovered(a.dsts, b.dsts)
  );
}

/** The same packets as `rules`, in as few rules as these joins find. */
export function mergeRules(rules: Rule[]): Rule[] {
  let list = rules.filter((r) => r.srcs.length > 0 && r.dsts.length > 0 && r.ports.length > 0 && r.protos.length > 0).map(normalize);
  for (;;) {
    const before = list.length;
    for (const dim of DIMS) list = joinOn(list, dim);
    const kept: Rule[] = [];
    list.forEach((r, i) => {
      const redundant = list.some((o, j) => j !== i && covers(o, r) && (!covers(r, o) || j < i));
      if (!redundant) kept.push(r);
    });
    list = kept;
    if (list.length === before) return list;
  }
}

function isDefaultProtos(protos: number[]): boolean {
  return protos.length === DEFAULT_PROTOS.length && DEFAULT_PROTOS.every((p) => protos.includes(p));
}

export function toFilterRule(r: Rule): FilterRule {
  return {
    srcs: formatPrefixes(r.srcs),
    dsts: formatPrefixes(r.dsts),
    ports: r.ports.map(([a, b]): PortRange => [a, b]),
    protos: isDefaultProtos(r.protos) ? null : [...r.protos],
  };
}
