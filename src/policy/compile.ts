// compilePolicy: a checked policy and the nodes the server knows, to each
// node's inbound filter and the peers it may see.
//
// Sources resolve to addresses: a user, group or tag to the overlay addresses
// of the nodes it names, a host or CIDR to itself, `*` to everything. A dst
// target names destination addresses the same way. A node's filter holds, for
// every acl and dst entry, the part of the target that is the node's own
// addresses or lies in the subnets it routes; the rest of the target belongs
// to other nodes' filters. Visibility follows from the filters: A and B see
// each other when one's filter admits a source in the other's addresses or
// routed subnets (traffic from a routed subnet enters the mesh through its
// router, which must therefore be a peer of the destination).

import { parseCidr, type IpPrefix } from '../net/ipaddr.js';
import { everything, hostPrefix, intersect, normalizePrefixes, prefixOf } from './cidr.js';
import { mergeRules, toFilterRule, type Rule } from './merge.js';
import { DEFAULT_PROTOS } from './ports.js';
import { PrefixIndex } from './prefixindex.js';
import type { CompiledNode, Policy, PolicyAlias, PolicyNode, PortRange } from './types.js';

export interface NodeSpace {
  node: PolicyNode;
  /** Its overlay addresses as /32 and /128. */
  addrs: IpPrefix[];
  /** The subnets it routes. */
  routes: IpPrefix[];
}

/** A node's addresses and routes parsed; text that does not parse is left out. */
export function nodeSpace(node: PolicyNode): NodeSpace {
  const addrs = node.addresses.map(hostPrefix).filter((p): p is IpPrefix => p !== null);
  const routes: IpPrefix[] = [];
  for (const r of node.routes) {
    const parsed = parseCidr(r, { allowBare: true, mask: true });
    if (parsed.ok) routes.push(parsed.value);
  }
  return { node, addrs: normalizePrefixes(addrs), routes: normalizePrefixes(routes) };
}

/** Resolves aliases to the addresses they stand for among `nodes`, caching by text. */
export function aliasResolver(p: Policy, nodes: NodeSpace[]): (a: PolicyAlias) => IpPrefix[] {
  const cache = new Map<string, IpPrefix[]>();
  const ofNodes = (pred: (n: PolicyNode) => boolean): IpPrefix[] => nodes.filter((n) => pred(n.node)).flatMap((n) => n.addrs);
  const compute = (a: PolicyAlias): IpPrefix[] => {
    switch (a.kind) {
      case 'any':
        return everything();
      case 'user':
        return ofNodes((n) => n.user === a.text);
      case 'group': {
        const members = new Set(p.groups.get(a.text) ?? []);
        return ofNodes((n) => n.user !== null && members.has(n.user));
      }
      case 'tag':
        return ofNodes((n) => n.tags.includes(a.text));
      case 'host':
      case 'prefix':
        return [prefixOf(a.prefix)];
    }
  };
  return (a) => {
    const k = `${a.kind}:${a.text}`;
    let v = cache.get(k);
    if (v === undefined) {
      v = normalizePrefixes(compute(a));
      cache.set(k, v);
    }
    return v;
  };
}

interface ResolvedAcl {
  srcs: IpPrefix[];
  dsts: Array<{ prefixes: IpPrefix[]; ports: PortRange[] }>;
  protos: number[];
}

function resolveAcls(p: Policy, nodes: NodeSpace[]): ResolvedAcl[] {
  const resolve = aliasResolver(p, nodes);
  return p.acls.map((acl) => ({
    srcs: normalizePrefixes(acl.src.flatMap(resolve)),
    dsts: acl.dst.map((d) => ({ prefixes: resolve(d.target), ports: d.ports })),
    protos: acl.protos ?? [...DEFAULT_PROTOS],
  }));
}

/** Each node's internal filter rules: every acl's dst narrowed to what that node owns or routes. */
function filters(spaces: NodeSpace[], acls: ResolvedAcl[], index: PrefixIndex<number>): Rule[][] {
  const raw: Rule[][] = spaces.map(() => []);
  for (const acl of acls) {
    if (acl.srcs.length === 0) continue;
    for (const d of acl.dsts) {
      const per = new Map<number, IpPrefix[]>();
      for (const t of d.prefixes) {
        for (const hit of index.overlapping(t)) {
          const x = intersect(t, hit.prefix);
          if (x === null) continue;
          const list = per.get(hit.value);
          if (list === undefined) per.set(hit.value, [x]);
          else list.push(x);
        }
      }
      for (const [i, dsts] of per) raw[i].push({ srcs: acl.srcs, dsts, ports: d.ports, protos: acl.protos });
    }
  }
  return raw.map(mergeRules);
}

/** Meshes at least this big get the shared everyone-sees-everyone view when every filter admits any source. */
export const SHARED_VISIBILITY_MIN_NODES = 256;

/**
 * "Every node but `self`" over one shared set: what an allow-all policy makes
 * of visibility, in O(nodes) memory instead of O(nodes²).
 */
class AllBut implements ReadonlySet<number> {
  constructor(
    private readonly all: ReadonlySet<number>,
    private readonly self: number,
  ) {}
  has(id: number): boolean {
    return id !== this.self && this.all.has(id);
  }
  get size(): number {
    return this.all.size - (this.all.has(this.self) ? 1 : 0);
  }
  *values(): IterableIterator<number> {
    for (const id of this.all) if (id !== this.self) yield id;
  }
  keys(): IterableIterator<number> {
    return this.values();
  }
  *entries(): IterableIterator<[number, number]> {
    for (const id of this.values()) yield [id, id];
  }
  forEach(cb: (value: number, key: number, set: ReadonlySet<number>) => void): void {
    for (const id of this.values()) cb(id, id, this);
  }
  [Symbol.iterator](): IterableIterator<number> {
    return this.values();
  }
}

const ANY4 = '0.0.0.0/0';
const ANY6 = '::/0';

export function compilePolicy(p: Policy, nodes: PolicyNode[], sharedVisibilityMinNodes = SHARED_VISIBILITY_MIN_NODES): Map<number, CompiledNode> {
  const spaces = nodes.map(nodeSpace);
  // Each node's own space (addresses and routes), also what it may send from.
  const index = new PrefixIndex(spaces.flatMap((s, i) => [...s.addrs, ...s.routes].map((prefix) => ({ prefix, value: i }))));
  const rules = filters(spaces, resolveAcls(p, spaces), index);
  if (spaces.length >= sharedVisibilityMinNodes) {
    const open = rules.every((rs) => rs.some((r) => r.srcs.some((x) => x.bits === 0 && x.family === 4)) && rs.some((r) => r.srcs.some((x) => x.bits === 0 && x.family === 6)));
    if (open) {
      // Every filter admits any source, so every pair sees each other.
      const all = new Set(spaces.map((s) => s.node.id));
      const out = new Map<number, CompiledNode>();
      spaces.forEach((s, i) => out.set(s.node.id, { filter: rules[i].map(toFilterRule), visible: new AllBut(all, s.node.id) }));
      return out;
    }
  }
  // Whoever a source of b's filter lies in the space of, and b, see each other.
  const peers: number[][] = spaces.map(() => []);
  const seen = new Int32Array(spaces.length).fill(-1);
  spaces.forEach((b, i) => {
    seen[i] = i;
    for (const src of normalizePrefixes(rules[i].flatMap((r) => r.srcs))) {
      for (const hit of index.overlapping(src)) {
        const j = hit.value;
        if (seen[j] === i) continue;
        seen[j] = i;
        if (spaces[j].node.id === b.node.id) continue;
        peers[i].push(spaces[j].node.id);
        peers[j].push(b.node.id);
      }
    }
  });
  const out = new Map<number, CompiledNode>();
  spaces.forEach((s, i) => out.set(s.node.id, { filter: rules[i].map(toFilterRule), visible: new Set(peers[i]) }));
  return out;
}
