// compilePolicy against a naive reading of the policy: for random small
// policies and nodes, a packet passes some FilterRule of the node owning or
// routing its destination exactly when some acl, read directly, accepts it;
// and two nodes see each other exactly when some acl lets one reach the other.
// Address arithmetic here is BigInt, independent of src/policy/cidr.ts.
import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/net/ipaddr.js';
import { compilePolicy, parsePolicy, type FilterRule, type Policy, type PolicyAlias, type PolicyNode } from '../../src/policy/index.js';
import { prng as rng } from '../support/prng.js';


interface Net {
  v6: boolean;
  net: bigint;
  bits: number;
}

function toNet(text: string): Net {
  const [addr, len] = text.split('/');
  const ip = parseIp(addr)!;
  let n = 0n;
  for (const b of ip.bytes) n = (n << 8n) | BigInt(b);
  const max = ip.family === 4 ? 32 : 128;
  return { v6: ip.family === 6, net: n, bits: len === undefined ? max : Number(len) };
}

function netContains(outer: Net, inner: Net): boolean {
  if (outer.v6 !== inner.v6 || outer.bits > inner.bits) return false;
  const shift = BigInt((outer.v6 ? 128 : 32) - outer.bits);
  return outer.net >> shift === inner.net >> shift;
}

const inside = (cidr: string, addr: string): boolean => netContains(toNet(cidr), toNet(addr));
const overlap = (a: string, b: string): boolean => netContains(toNet(a), toNet(b)) || netContains(toNet(b), toNet(a));

const USERS = ['alice', 'bob', 'carol'];
const TAGS = ['tag:x', 'tag:y', 'tag:z'];
const HEAD = `
  "groups": { "group:a": ["alice", "bob"], "group:b": ["carol"], "group:none": [] },
  "tagOwners": { "tag:x": [], "tag:y": ["alice"], "tag:z": ["tag:x"] },
  "hosts": { "h1": "10.0.1.0/24", "h2": "10.0.1.10", "h3": "192.168.0.0/25", "h6": "fd00:1::/64", "hm": "100.64.0.2" },`;
const CIDRS = ['100.64.0.0/30', '100.64.0.4/31', '10.0.0.0/8', '10.0.1.0/28', 'fd7a::/126', 'fd00::/8', '0.0.0.0/0', '172.16.5.0/24', '::/0', '100.64.0.3'];
const ALIASES = ['*', ...USERS, 'group:a', 'group:b', 'group:none', ...TAGS, 'h1', 'h2', 'h3', 'h6', 'hm', ...CIDRS];
// Sources lean towards names that cover many nodes, so that packets pass often enough.
const SRC_ALIASES = [...ALIASES, '*', 'group:a', '100.64.0.0/29', 'fd7a::/120', 'tag:x'];
const DST_ALIASES = [...ALIASES, '*', '10.0.0.0/8', 'fd00::/8', 'group:a'];
// Some lists leave a gap of one port, to catch ranges joined too eagerly.
const PORTS = ['*', '*', '22', '22,24', '80,443', '79,81-82', '1000-2000', '1000-1999,2001', '0-10,65535', '80-90,85-100'];
const PROTOS: Array<string | number | undefined> = [undefined, undefined, undefined, 'tcp', 'udp', 'icmp', 'icmpv6', 'sctp', 47];
const ROUTES: Record<string, string[]> = {
  '10.0.0.0/16': ['10.0.0.1', '10.0.1.10', '10.0.1.5', '10.0.200.1'],
  '192.168.0.0/24': ['192.168.0.1', '192.168.0.200'],
  'fd00:1::/48': ['fd00:1::1', 'fd00:1::10', 'fd00:1:0:ffff::1'],
  '172.16.0.0/12': ['172.16.5.5', '172.31.0.1'],
};
const EXTERNAL = { v4: ['10.0.1.10', '192.168.0.7', '8.8.8.8', '172.16.5.9'], v6: ['fd00:1::9', '2001:db8::1'] };
const TEST_PORTS = [0, 10, 11, 22, 23, 24, 79, 80, 85, 95, 443, 1000, 1500, 1999, 2000, 2001, 65535];
const TEST_PROTOS = [6, 17, 1, 58, 132, 47, 50];

function generate(r: () => number): { text: string; nodes: PolicyNode[] } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const some = <T>(xs: readonly T[], max: number): T[] => Array.from({ length: 1 + Math.floor(r() * max) }, () => pick(xs));
  const acls = some([0], 5).map(() => {
    const proto = pick(PROTOS);
    const portless = proto !== undefined && !['tcp', 'udp', 'sctp'].includes(String(proto));
    const dst = some(DST_ALIASES, 3).map((t) => `${t.includes(':') && !t.startsWith('tag:') && !t.startsWith('group:') ? `[${t}]` : t}:${portless ? '*' : pick(PORTS)}`);
    return { action: 'accept', src: some(SRC_ALIASES, 3), dst, ...(proto === undefined ? {} : { proto }) };
  });
  const routes = Object.keys(ROUTES);
  const nodes: PolicyNode[] = Array.from({ length: 2 + Math.floor(r() * 4) }, (_, i) => {
    const tagged = r() < 0.4;
    return {
      id: i + 1,
      name: `n${i + 1}`,
      user: tagged ? null : pick(USERS),
      tags: tagged ? [...new Set(some(TAGS, 2))] : [],
      addresses: r() < 0.8 ? [`100.64.0.${i + 1}`, `fd7a::${i + 1}`] : [`100.64.0.${i + 1}`],
      routes: [],
    };
  });
  for (const route of routes) if (r() < 0.5) pick(nodes).routes.push(route);
  return { text: `{${HEAD}\n  "acls": ${JSON.stringify(acls)},\n}`, nodes };
}

/** The acl reading: does this alias name the source (a node's address, or an outside one)? */
function srcMatches(p: Policy, a: PolicyAlias, addr: string, node: PolicyNode | null): boolean {
  switch (a.kind) {
    case 'any':
      return true;
    case 'user':
      return node !== null && node.user === a.text;
    case 'group':
      return node !== null && node.user !== null && p.groups.get(a.text)!.includes(node.user);
    case 'tag':
      return node !== null && node.tags.includes(a.text);
    default:
      return inside(a.prefix, addr);
  }
}

/** Nodes an identity alias names. */
function named(p: Policy, a: PolicyAlias, nodes: PolicyNode[]): PolicyNode[] {
  return nodes.filter((n) => (a.kind === 'user' ? n.user === a.text : a.kind === 'group' ? n.user !== null && p.groups.get(a.text)!.includes(n.user) : a.kind === 'tag' && n.tags.includes(a.text)));
}

function targetCovers(p: Policy, a: PolicyAlias, addr: string, nodes: PolicyNode[]): boolean {
  if (a.kind === 'any') return true;
  if (a.kind === 'host' || a.kind === 'prefix') return inside(a.prefix, addr);
  return named(p, a, nodes).some((n) => n.addresses.some((x) => inside(x, addr)));
}

const portOk = (ports: Array<[number, number]>, proto: number, port: number): boolean => ![6, 17, 132].includes(proto) || ports.some(([lo, hi]) => port >= lo && port <= hi);

/** The ports of a dst as written ("x:80,90-99"), read here rather than taken from the parser. */
function portsOf(dstText: string): Array<[number, number]> {
  const spec = dstText.slice(dstText.lastIndexOf(':') + 1);
  if (spec === '*') return [[0, 65535]];
  return spec.split(',').map((part) => {
    const [lo, hi] = part.split('-').map(Number);
    return [lo, hi ?? lo];
  });
}

function naiveAllows(p: Policy, nodes: PolicyNode[], src: string, srcNode: PolicyNode | null, dst: string, port: number, proto: number): boolean {
  return p.acls.some(
    (acl) =>
      (acl.protos ?? [1, 6, 17, 58]).includes(proto) &&
      acl.src.some((a) => srcMatches(p, a, src, srcNode)) &&
      acl.dst.some((d) => portOk(portsOf(d.text), proto, port) && targetCovers(p, d.target, dst, nodes)),
  );
}

function filterAllows(filter: FilterRule[], src: string, dst: string, port: number, proto: number): boolean {
  return filter.some(
    (r) => r.srcs.some((s) => inside(s, src)) && r.dsts.some((d) => inside(d, dst)) && (r.protos ?? [1, 6, 17, 58]).includes(proto) && portOk(r.ports, proto, port),
  );
}

/** The acl reading of visibility: some acl names a as a source (by identity, addresses or routes) and a target in b's addresses or routes. */
function naiveReaches(p: Policy, nodes: PolicyNode[], a: PolicyNode, b: PolicyNode): boolean {
  const from = [...a.addresses, ...a.routes];
  const to = [...b.addresses, ...b.routes];
  return p.acls.some(
    (acl) =>
      acl.src.some((s) => (s.kind === 'host' || s.kind === 'prefix' ? from.some((f) => overlap(s.prefix, f)) : srcMatches(p, s, a.addresses[0], a))) &&
      acl.dst.some((d) => {
        if (d.target.kind === 'any') return to.length > 0;
        if (d.target.kind === 'host' || d.target.kind === 'prefix') return to.some((t) => overlap((d.target as { prefix: string }).prefix, t));
        return named(p, d.target, nodes).some((n) => n.addresses.some((x) => to.some((t) => overlap(t, x))));
      }),
  );
}

describe('compilePolicy against a naive evaluator', () => {
  it('agrees on random policies, nodes and packets', () => {
    for (const [route, hosts] of Object.entries(ROUTES)) for (const h of hosts) expect(inside(route, h), `${h} in ${route}`).toBe(true);
    let checked = 0;
    let allowed = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
      const { text, nodes } = generate(r);
      const p = parsePolicy(text);
      const compiled = compilePolicy(p, nodes);
      for (const n of nodes) {
        const filter = compiled.get(n.id)!.filter;
        expect(new Set(filter.map((f) => JSON.stringify(f))).size, `seed ${seed}: duplicate rules`).toBe(filter.length);
      }
      for (let k = 0; k < 40; k++) {
        const dstNode = pick(nodes);
        const dst = r() < 0.5 || dstNode.routes.length === 0 ? pick(dstNode.addresses) : pick(ROUTES[pick(dstNode.routes)]);
        const v6 = dst.includes(':');
        const srcNode = r() < 0.8 ? pick(nodes) : null;
        const src = srcNode === null ? pick(v6 ? EXTERNAL.v6 : EXTERNAL.v4) : srcNode.addresses.find((x) => x.includes(':') === v6);
        if (src === undefined) continue;
        const port = pick(TEST_PORTS);
        const proto = pick(TEST_PROTOS);
        const want = naiveAllows(p, nodes, src, srcNode, dst, port, proto);
        const got = filterAllows(compiled.get(dstNode.id)!.filter, src, dst, port, proto);
        expect(got, `seed ${seed}: ${src} -> ${dst} (node ${dstNode.name}) port ${port} proto ${proto}\n${text}\n${JSON.stringify(nodes)}`).toBe(want);
        checked++;
        if (want) allowed++;
      }
      for (const a of nodes) {
        for (const b of nodes) {
          if (a === b) continue;
          const want = naiveReaches(p, nodes, a, b) || naiveReaches(p, nodes, b, a);
          expect(compiled.get(a.id)!.visible.has(b.id), `seed ${seed}: visibility ${a.name} -> ${b.name}\n${text}\n${JSON.stringify(nodes)}`).toBe(want);
        }
      }
    }
    // The generator must exercise both outcomes.
    expect(checked).toBeGreaterThan(8000);
    expect(allowed).toBeGreaterThan(checked / 20);
    expect(allowed).toBeLessThan(checked - checked / 20);
  });
});
