// compilePolicy: per-node inbound filters and visibility, on the seeds'
// deployment (a router for the VPC, alice's laptop, bob's node) and smaller
// cases for each alias kind, IPv6, protocols and merging.
import { describe, expect, it } from 'vitest';
import { compilePolicy, DEFAULT_POLICY_TEXT, parsePolicy, type CompiledNode, type PolicyNode } from '../../src/policy/index.js';
import { intersect, normalizePrefixes, prefixOf } from '../../src/policy/cidr.js';
import { PrefixIndex } from '../../src/policy/prefixindex.js';
import { formatCidr } from '../../src/net/ipaddr.js';

const ROUTER: PolicyNode = { id: 1, name: 'router', user: null, tags: ['tag:router'], addresses: ['100.64.0.1', 'fd7a:115c:a1e0::1'], routes: ['10.0.0.0/16'] };
const LAPTOP: PolicyNode = { id: 2, name: 'laptop', user: 'alice', tags: [], addresses: ['100.64.0.2', 'fd7a:115c:a1e0::2'], routes: [] };
const BOB: PolicyNode = { id: 3, name: 'bob-desk', user: 'bob', tags: [], addresses: ['100.64.0.3', 'fd7a:115c:a1e0::3'], routes: [] };
const SEEDS = [ROUTER, LAPTOP, BOB];

const HEAD = '"tagOwners": {"tag:router": ["alice"], "tag:ci": []}, "groups": {"group:eng": ["alice", "bob"]}, "hosts": {"vpc": "10.0.0.0/8", "db": "10.0.1.10", "lan": "10.0.1.0/24"}';

function compile(acls: string, nodes: PolicyNode[] = SEEDS): Map<number, CompiledNode> {
  return compilePolicy(parsePolicy(`{${HEAD}, "acls": [${acls}]}`), nodes);
}

const rule = (src: string[], dst: string[], proto?: string): string => JSON.stringify({ action: 'accept', src, dst, ...(proto === undefined ? {} : { proto }) });
const visible = (c: Map<number, CompiledNode>): Record<number, number[]> => Object.fromEntries([...c].map(([id, n]) => [id, [...n.visible].sort()]));
const dsts = (c: Map<number, CompiledNode>, id: number): string[][] => c.get(id)!.filter.map((r) => r.dsts);

describe('the seeds deployment: alice -> 10.0.1.10:80 only', () => {
  const c = compile(rule(['alice'], ['10.0.1.10:80']));

  it('puts the rule in the router filter, narrowed to the host', () => {
    expect(c.get(1)!.filter).toEqual([{ srcs: ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'], dsts: ['10.0.1.10/32'], ports: [[80, 80]], protos: null }]);
    expect(c.get(2)!.filter).toEqual([]);
    expect(c.get(3)!.filter).toEqual([]);
  });

  it('lets alice and the router see each other, and bob nobody', () => {
    expect(visible(c)).toEqual({ 1: [2], 2: [1], 3: [] });
  });

  it('denies everything once the rule is gone', () => {
    const empty = compile('');
    expect([...empty.values()].every((n) => n.filter.length === 0 && n.visible.size === 0)).toBe(true);
  });
});

describe('destinations', () => {
  it('gives each node its addresses and routes for *:*', () => {
    const c = compile(rule(['*'], ['*:*']));
    expect(c.get(1)!.filter).toEqual([{ srcs: ['0.0.0.0/0', '::/0'], dsts: ['10.0.0.0/16', '100.64.0.1/32', 'fd7a:115c:a1e0::1/128'], ports: [[0, 65535]], protos: null }]);
    expect(dsts(c, 2)).toEqual([['100.64.0.2/32', 'fd7a:115c:a1e0::2/128']]);
    expect(visible(c)).toEqual({ 1: [2, 3], 2: [1, 3], 3: [1, 2] });
  });

  it('takes a tag, user or group target as overlay addresses only', () => {
    expect(dsts(compile(rule(['bob'], ['tag:router:22'])), 1)).toEqual([['100.64.0.1/32', 'fd7a:115c:a1e0::1/128']]);
    const c = compile(rule(['tag:router'], ['group:eng:22', 'alice:23']));
    expect(c.get(2)!.filter).toEqual([{ srcs: ['100.64.0.1/32', 'fd7a:115c:a1e0::1/128'], dsts: ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'], ports: [[22, 23]], protos: null }]);
    expect(dsts(c, 3)).toEqual([['100.64.0.3/32', 'fd7a:115c:a1e0::3/128']]);
    expect(c.get(1)!.filter).toEqual([]);
  });

  it('narrows hosts and CIDRs to what the node routes', () => {
    expect(dsts(compile(rule(['alice'], ['vpc:443'])), 1)).toEqual([['10.0.0.0/16']]); // route inside the target
    expect(dsts(compile(rule(['alice'], ['lan:443'])), 1)).toEqual([['10.0.1.0/24']]); // target inside the route
    expect(dsts(compile(rule(['alice'], ['db:443'])), 1)).toEqual([['10.0.1.10/32']]);
    expect(dsts(compile(rule(['alice'], ['10.1.0.0/16:443'])), 1)).toEqual([]);
    expect(dsts(compile(rule(['alice'], ['100.64.0.0/10:22'])), 3)).toEqual([['100.64.0.3/32']]);
  });

  it('handles IPv6 routes and targets', () => {
    const r6: PolicyNode = { ...ROUTER, routes: ['10.0.0.0/16', 'fd00:1::/48'] };
    const c = compile(rule(['alice'], ['[fd00:1::5]:22', 'fd00::/16:80', '[fd7a:115c:a1e0::/48]:53']), [r6, LAPTOP, BOB]);
    expect(c.get(1)!.filter).toEqual([
      { srcs: ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'], dsts: ['fd00:1::5/128'], ports: [[22, 22]], protos: null },
      { srcs: ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'], dsts: ['fd00:1::/48'], ports: [[80, 80]], protos: null },
      { srcs: ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'], dsts: ['fd7a:115c:a1e0::1/128'], ports: [[53, 53]], protos: null },
    ]);
    expect(dsts(c, 3)).toEqual([['fd7a:115c:a1e0::3/128']]);
  });
});

describe('sources', () => {
  const srcsAt = (src: string[], id = 1): string[] => compile(rule(src, ['*:*'])).get(id)!.filter.flatMap((r) => r.srcs);

  it('resolves every alias kind', () => {
    expect(srcsAt(['alice'])).toEqual(['100.64.0.2/32', 'fd7a:115c:a1e0::2/128']);
    expect(srcsAt(['group:eng'])).toEqual(['100.64.0.2/31', 'fd7a:115c:a1e0::2/127']); // .2 and .3, joined
    expect(srcsAt(['tag:router'], 2)).toEqual(['100.64.0.1/32', 'fd7a:115c:a1e0::1/128']);
    expect(srcsAt(['db', '192.168.0.0/24', 'fd00::1'])).toEqual(['10.0.1.10/32', '192.168.0.0/24', 'fd00::1/128']);
    expect(srcsAt(['*', 'alice'])).toEqual(['0.0.0.0/0', '::/0']);
  });

  it('drops a rule whose sources name no node', () => {
    expect(srcsAt(['carol'])).toEqual([]);
    expect(srcsAt(['tag:ci'])).toEqual([]);
    expect(compile(rule(['carol', 'tag:ci'], ['*:*'])).get(1)!.visible.size).toBe(0);
  });
});

describe('protocols and merging', () => {
  it('keeps the rule protocol, null for the default set', () => {
    expect(compile(rule(['alice'], ['db:*'], 'icmp')).get(1)!.filter[0].protos).toEqual([1]);
    expect(compile(rule(['alice'], ['db:53'], 'udp')).get(1)!.filter[0].protos).toEqual([17]);
    expect(compile(rule(['alice'], ['db:53'])).get(1)!.filter[0].protos).toBeNull();
  });

  it('merges rules that differ in one dimension', () => {
    const c = compile([rule(['alice'], ['db:80']), rule(['alice'], ['db:443', 'db:81']), rule(['bob'], ['db:80-81,443']), rule(['alice'], ['db:80'])].join(','));
    expect(c.get(1)!.filter).toEqual([{ srcs: ['100.64.0.2/31', 'fd7a:115c:a1e0::2/127'], dsts: ['10.0.1.10/32'], ports: [[80, 81], [443, 443]], protos: null }]);
    const p = compile([rule(['alice'], ['db:53'], 'udp'), rule(['alice'], ['db:53'], 'tcp')].join(','));
    expect(p.get(1)!.filter).toEqual([expect.objectContaining({ ports: [[53, 53]], protos: [6, 17] })]);
    const d = compile([rule(['alice'], ['db:22']), rule(['alice'], ['lan:22'])].join(','));
    expect(dsts(d, 1)).toEqual([['10.0.1.0/24']]);
  });

  it('drops rules another covers', () => {
    const c = compile([rule(['alice'], ['db:22']), rule(['*'], ['*:*'])].join(','));
    expect(c.get(1)!.filter).toHaveLength(1);
    expect(c.get(1)!.filter[0].srcs).toEqual(['0.0.0.0/0', '::/0']);
  });
});

describe('visibility', () => {
  it('is symmetric for a one-way rule', () => {
    expect(visible(compile(rule(['alice'], ['bob:22'])))).toEqual({ 1: [], 2: [3], 3: [2] });
  });

  it('shows a destination to everyone a * source covers, but not them to each other', () => {
    expect(visible(compile(rule(['*'], ['bob:*'])))).toEqual({ 1: [3], 2: [3], 3: [1, 2] });
  });

  it('counts a routed subnet as its router source (subnet -> mesh through the router)', () => {
    expect(visible(compile(rule(['10.0.5.0/24'], ['alice:22'])))).toEqual({ 1: [2], 2: [1], 3: [] });
    expect(compile(rule(['vpc'], ['alice:22'])).get(2)!.filter[0].srcs).toEqual(['10.0.0.0/8']);
  });

  it('lets a node reach a subnet only through its router', () => {
    const other: PolicyNode = { id: 4, name: 'r2', user: null, tags: [], addresses: ['100.64.0.4'], routes: ['192.168.0.0/24'] };
    const c = compile(rule(['bob'], ['192.168.0.7:80']), [...SEEDS, other]);
    expect(visible(c)).toEqual({ 1: [], 2: [], 3: [4], 4: [3] });
  });

  it('never lists a node as its own peer', () => {
    const c = compile(rule(['alice'], ['alice:*']));
    expect(c.get(2)!.filter).toHaveLength(1);
    expect(c.get(2)!.visible.size).toBe(0);
  });
});

describe('cidr helpers', () => {
  it('intersects and normalizes prefixes of both families', () => {
    const fmt = (t: string[]): string[] => normalizePrefixes(t.map(prefixOf)).map(formatCidr);
    expect(fmt(['10.0.0.128/25', '10.0.0.0/25', '10.0.0.5', '::/0', 'fd00::/8', '10.0.1.0/24'])).toEqual(['10.0.0.0/23', '::/0']);
    expect(fmt(['10.0.0.0/25', '10.0.1.0/25'])).toEqual(['10.0.0.0/25', '10.0.1.0/25']);
    expect(fmt(['10.1.2.3/8'])).toEqual(['10.0.0.0/8']);
    const x = (a: string, b: string): string | null => {
      const r = intersect(prefixOf(a), prefixOf(b));
      return r === null ? null : formatCidr(r);
    };
    expect(x('10.0.0.0/8', '10.2.0.0/16')).toBe('10.2.0.0/16');
    expect(x('10.2.0.0/16', '10.0.0.0/8')).toBe('10.2.0.0/16');
    expect(x('10.0.0.0/16', '10.1.0.0/16')).toBeNull();
    expect(x('0.0.0.0/0', '::/0')).toBeNull();
    expect(x('fd00::/8', 'fd00:1:2::/48')).toBe('fd00:1:2::/48');
  });

  it('finds the prefixes overlapping a query in an index', () => {
    const entries = ['100.64.0.1', '100.64.0.2', '100.64.1.1', '10.0.0.0/16', 'fd7a::1', '::/0', '100.64.0.0/31'].map((t, value) => ({ prefix: prefixOf(t), value }));
    const idx = new PrefixIndex(entries);
    const q = (t: string): number[] => idx.overlapping(prefixOf(t)).map((e) => e.value).sort();
    expect(q('100.64.0.0/24')).toEqual([0, 1, 6]);
    expect(q('100.64.0.0/16')).toEqual([0, 1, 2, 6]);
    expect(q('100.64.0.2')).toEqual([1]);
    expect(q('10.0.1.10')).toEqual([3]);
    expect(q('0.0.0.0/0')).toEqual([0, 1, 2, 3, 6]);
    expect(q('fd7a::/16')).toEqual([4, 5]);
    expect(q('192.168.0.0/16')).toEqual([]);
  });
});

describe('shared visibility for open policies on big meshes', () => {
  it('gives the same answers as the per-pair sets, in O(nodes) memory', () => {
    const nodes = Array.from({ length: 300 }, (_, i) => ({
      id: i + 1, name: `n${i + 1}`, user: i % 3 ? 'alice' : null, tags: i % 3 ? [] : ['tag:ci'],
      addresses: [`100.64.${(i + 1) >> 8}.${(i + 1) & 255}`, `fd7a:115c:a1e0::${(i + 1).toString(16)}`], routes: i === 7 ? ['10.0.0.0/16'] : [],
    }));
    const open = parsePolicy(DEFAULT_POLICY_TEXT);
    const fast = compilePolicy(open, nodes);
    const slow = compilePolicy(open, nodes, Infinity);
    expect(fast.get(1)!.visible).not.toBeInstanceOf(Set);
    expect(slow.get(1)!.visible).toBeInstanceOf(Set);
    for (const n of nodes) {
      const f = fast.get(n.id)!;
      const s = slow.get(n.id)!;
      expect(f.filter).toEqual(s.filter);
      expect(f.visible.size).toBe(s.visible.size);
      expect([...f.visible].sort((a, b) => a - b)).toEqual([...s.visible].sort((a, b) => a - b));
      expect(f.visible.has(n.id)).toBe(false);
    }
    // A policy that is not open everywhere keeps exact per-node sets.
    const some = parsePolicy('{ "acls": [ { "action": "accept", "src": ["alice"], "dst": ["*:*"] } ] }');
    expect(compilePolicy(some, nodes).get(1)!.visible).toBeInstanceOf(Set);
  });
});
