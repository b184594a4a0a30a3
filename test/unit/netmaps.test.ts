// Netmaps on both sides: the server's versioned per-node views and deltas
// (src/server/netmap.ts), the node's NetmapView that applies them and the
// step from netmap to interface configuration (src/control/netmap.ts).
import { describe, expect, it } from 'vitest';
import { CHANGE_LOG_LEN, isActive, Netmaps } from '../../src/server/netmap.js';
import type { NodeRecord } from '../../src/server/store.js';
import type { MapResponse, PeerNode, SelfNode } from '../../src/control/messages.js';
import { meshConfig, NetmapView, OVERLAY_ROUTES, pickEndpoint } from '../../src/control/netmap.js';
import { decodeKeyBase64, encodeKeyBase64 } from '../../src/config/keys.js';
import { formatCidr, formatIp } from '../../src/net/ipaddr.js';
import { prng } from '../support/prng.js';

const NOW = 1_750_000_000_000;
const START_VERSION = 1_000_000;

const keyOf = (id: number) => encodeKeyBase64(Uint8Array.from({ length: 32 }, (_, i) => (id * 13 + i) & 0xff));

function node(id: number, over: Partial<NodeRecord> = {}): NodeRecord {
  return {
    id,
    nodeKey: keyOf(id),
    requestedHostname: `host${id}`,
    name: `host${id}`,
    userId: id % 2 ? 1 : null,
    tags: id % 2 ? [] : ['tag:server'],
    ipv4: `100.64.0.${id}`,
    ipv6: `fd7a:115c:a1e0::${id.toString(16)}`,
    endpoints: [`192.0.2.${id}:41641`],
    ephemeral: false,
    authorized: true,
    authKeyId: 1,
    keyExpiry: null,
    createdAt: NOW - 1000,
    lastSeen: NOW - 10,
    ...over,
  };
}

const users = new Map<number, string>([[1, 'alice']]);
const userName = (id: number | null) => (id === null ? null : (users.get(id) ?? null));

/** A mutable fixture: the store's node list plus who is online. */
class World {
  nodes: NodeRecord[];
  online = new Set<string>();
  readonly maps = new Netmaps(START_VERSION);
  constructor(nodes: NodeRecord[]) {
    this.nodes = nodes;
    this.rebuild();
  }
  rebuild(now = NOW): void {
    this.maps.rebuild(this.nodes, userName, (k) => this.online.has(k), now);
  }
  /** Replaces node `id` (or removes it with null), records the change and rebuilds. */
  update(id: number, next: Partial<NodeRecord> | null): number {
    const i = this.nodes.findIndex((n) => n.id === id);
    const key = this.nodes[i].nodeKey;
    if (next === null) this.nodes.splice(i, 1);
    else this.nodes[i] = { ...this.nodes[i], ...next };
    const v = this.maps.changed(key);
    this.rebuild();
    return v;
  }
  full(id: number): MapResponse {
    return this.maps.responseFor(keyOf(id), 0)!;
  }
}

const sortPeers = (ps: readonly PeerNode[]) => [...ps].sort((a, b) => a.id - b.id);
const ids = (ps: readonly PeerNode[] | undefined) => (ps ?? []).map((p) => p.id).sort((a, b) => a - b);

describe('isActive', () => {
  it('needs approval and an unexpired key', () => {
    expect(isActive(node(1), NOW)).toBe(true);
    expect(isActive(node(1, { authorized: false }), NOW)).toBe(false);
    expect(isActive(node(1, { keyExpiry: NOW + 1 }), NOW)).toBe(true);
    expect(isActive(node(1, { keyExpiry: NOW }), NOW)).toBe(false);
    expect(isActive(node(1, { keyExpiry: NOW - 1 }), NOW)).toBe(false);
    expect(isActive(node(1, { authorized: false, keyExpiry: NOW + 1 }), NOW)).toBe(false);
  });
});

describe('Netmaps (server)', () => {
  it('needs a build first and does not know unknown nodes', () => {
    const m = new Netmaps(START_VERSION);
    expect(m.version).toBe(START_VERSION);
    expect(m.stale).toBe(true);
    expect(() => m.responseFor(keyOf(1), 0)).toThrow();
    m.rebuild([node(1)], userName, () => false, NOW);
    expect(m.stale).toBe(false);
    expect(m.responseFor(keyOf(2), 0)).toBeNull();
    expect(m.responseFor('not a key', START_VERSION)).toBeNull();
    expect(m.changed(null)).toBe(START_VERSION + 1);
    expect(m.stale).toBe(true);
  });

  it('starts versions from the clock by default', () => {
    const before = Date.now() * 1000;
    const m = new Netmaps();
    expect(m.version).toBeGreaterThanOrEqual(before);
    expect(m.version).toBeLessThanOrEqual(Date.now() * 1000);
  });

  it('gives a first full map of the active peers, without self', () => {
    const w = new World([
      node(1),
      node(2),
      node(3, { authorized: false }),
      node(4, { keyExpiry: NOW - 1 }),
      node(5, { keyExpiry: NOW }),
      node(6, { keyExpiry: NOW + 60_000 }),
    ]);
    w.online.add(keyOf(2));
    w.rebuild();
    const r = w.full(1);
    expect(r.version).toBe(START_VERSION);
    expect(r.peersChanged).toBeUndefined();
    expect(r.peersRemoved).toBeUndefined();
    expect(ids(r.peers)).toEqual([2, 6]);
    const self: SelfNode = {
      id: 1, name: 'host1', addresses: ['100.64.0.1/32', 'fd7a:115c:a1e0::1/128'], user: 'alice', tags: [], keyExpiry: null, authorized: true, routes: [],
    };
    expect(r.self).toEqual(self);
    const p2: PeerNode = {
      id: 2,
      name: 'host2',
      publicKey: keyOf(2),
      addresses: ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'],
      allowedIps: ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'],
      primaryRoutes: [],
      endpoints: ['192.0.2.2:41641'],
      online: true,
      lastSeen: NOW - 10,
      user: null,
      tags: ['tag:server'],
      keyExpiry: null,
    };
    expect(sortPeers(r.peers!)[0]).toEqual(p2);
    expect(sortPeers(r.peers!)[1].online).toBe(false);
    // Each active node sees every other active node.
    expect(ids(w.full(2).peers)).toEqual([1, 6]);
    expect(ids(w.full(6).peers)).toEqual([1, 2]);
  });

  it('gives a pending or expired node its own view and no peers', () => {
    const w = new World([node(1), node(2), node(3, { authorized: false }), node(4, { keyExpiry: NOW - 1 })]);
    const pending = w.full(3);
    expect(pending.self.authorized).toBe(false);
    expect(pending.self.id).toBe(3);
    expect(pending.peers).toEqual([]);
    const expired = w.full(4);
    expect(expired.self.keyExpiry).toBe(NOW - 1);
    expect(expired.peers).toEqual([]);
    // Not a delta even when it is nearly up to date: always the full (empty) list.
    w.update(2, { endpoints: ['198.51.100.2:1'] });
    const r = w.maps.responseFor(keyOf(3), START_VERSION)!;
    expect(r.peers).toEqual([]);
    expect(r.peersChanged).toBeUndefined();
  });

  it('sends a node at the previous version only the peer that changed', () => {
    const w = new World([node(1), node(2), node(3), node(4)]);
    const v0 = w.maps.version;
    const v1 = w.update(2, { endpoints: ['198.51.100.2:41641', '192.0.2.2:41641'] });
    expect(v1).toBe(v0 + 1);
    const r = w.maps.responseFor(keyOf(1), v0)!;
    expect(r.version).toBe(v1);
    expect(r.peers).toBeUndefined();
    expect(r.peersRemoved).toEqual([]);
    expect(r.peersChanged).toHaveLength(1);
    expect(r.peersChanged![0]).toEqual(sortPeers(w.full(1).peers!).find((p) => p.id === 2));
    expect(r.peersChanged![0].endpoints).toEqual(['198.51.100.2:41641', '192.0.2.2:41641']);
    expect(r.self).toEqual(w.full(1).self);
    // Up to date: an empty delta.
    expect(w.maps.responseFor(keyOf(1), v1)).toEqual({ version: v1, self: w.full(1).self, packetFilter: w.full(1).packetFilter, peersChanged: [], peersRemoved: [] });
  });

  it('sends removals for a peer that became inactive or was deleted, and a change when it comes back', () => {
    const w = new World([node(1), node(2), node(3), node(4)]);
    const v0 = w.maps.version;
    const v1 = w.update(2, { authorized: false });
    let r = w.maps.responseFor(keyOf(1), v0)!;
    expect(r.peersChanged).toEqual([]);
    expect(r.peersRemoved).toEqual([keyOf(2)]);
    const v2 = w.update(3, { keyExpiry: NOW - 5 });
    r = w.maps.responseFor(keyOf(1), v1)!;
    expect(r.peersRemoved).toEqual([keyOf(3)]);
    const v3 = w.update(4, null);
    r = w.maps.responseFor(keyOf(1), v2)!;
    expect(r.peersRemoved).toEqual([keyOf(4)]);
    expect(r.peersChanged).toEqual([]);
    // Across all three at once.
    r = w.maps.responseFor(keyOf(1), v0)!;
    expect([...r.peersRemoved!].sort()).toEqual([keyOf(2), keyOf(3), keyOf(4)].sort());
    // The deleted node is now unknown.
    expect(w.maps.responseFor(keyOf(4), v3)).toBeNull();
    // Approved again: a change.
    w.update(2, { authorized: true });
    r = w.maps.responseFor(keyOf(1), v3)!;
    expect(ids(r.peersChanged)).toEqual([2]);
    expect(r.peersRemoved).toEqual([]);
  });

  it('collects every peer changed since the version held, once each', () => {
    const w = new World([node(1), node(2), node(3), node(4)]);
    const v0 = w.maps.version;
    const v1 = w.update(2, { name: 'two' });
    w.update(3, { name: 'three' });
    w.update(2, { name: 'deux' });
    let r = w.maps.responseFor(keyOf(1), v0)!;
    expect(ids(r.peersChanged)).toEqual([2, 3]);
    expect(r.peersChanged!.find((p) => p.id === 2)!.name).toBe('deux');
    r = w.maps.responseFor(keyOf(1), v1)!;
    expect(ids(r.peersChanged)).toEqual([2, 3]);
    // Several changes recorded before one rebuild.
    const v = w.maps.version;
    w.nodes[3] = { ...w.nodes[3], endpoints: [] };
    w.maps.changed(keyOf(4));
    w.maps.changed(keyOf(3));
    expect(w.maps.stale).toBe(true);
    w.rebuild();
    r = w.maps.responseFor(keyOf(1), v)!;
    expect(r.version).toBe(v + 2);
    expect(ids(r.peersChanged)).toEqual([3, 4]);
  });

  it('sends a full map after changed(null), but deltas from versions after it', () => {
    const w = new World([node(1), node(2), node(3)]);
    const v0 = w.maps.version;
    users.set(1, 'alice2');
    try {
      const v1 = w.maps.changed(null);
      w.rebuild();
      const r = w.maps.responseFor(keyOf(2), v0)!;
      expect(r.peersChanged).toBeUndefined();
      expect(ids(r.peers)).toEqual([1, 3]);
      expect(r.peers!.find((p) => p.id === 1)!.user).toBe('alice2');
      w.update(3, { name: 'x' });
      const d = w.maps.responseFor(keyOf(2), v1)!;
      expect(ids(d.peersChanged)).toEqual([3]);
      // But a node from before the null change still gets a full map.
      expect(w.maps.responseFor(keyOf(2), v0)!.peers).toBeDefined();
    } finally {
      users.set(1, 'alice');
    }
  });

  it('sends a full map for since 0, a negative since, or one from the future (a restarted server)', () => {
    const w = new World([node(1), node(2)]);
    w.update(2, { name: 'b' });
    const v = w.maps.version;
    for (const since of [0, -1, v + 1, v + 1_000_000]) {
      const r = w.maps.responseFor(keyOf(1), since)!;
      expect(r.peers, `since ${since}`).toBeDefined();
      expect(r.peersChanged).toBeUndefined();
      expect(r.version).toBe(v);
      expect(ids(r.peers)).toEqual([2]);
    }
    // A restarted server with an older clock-derived start also gives a full map
    // to a node still holding the newer version.
    const restarted = new Netmaps(v - 10);
    restarted.rebuild(w.nodes, userName, () => false, NOW);
    expect(restarted.responseFor(keyOf(1), v)!.peers).toBeDefined();
    // And a node holding a version from before this server's start gets a full map.
    const newer = new Netmaps(v + 100);
    newer.rebuild(w.nodes, userName, () => false, NOW);
    newer.changed(keyOf(2));
    newer.rebuild(w.nodes, userName, () => false, NOW);
    expect(newer.responseFor(keyOf(1), v)!.peers).toBeDefined();
    expect(newer.responseFor(keyOf(1), v + 100)!.peersChanged).toBeDefined();
  });

  it('falls back to a full map once the change log no longer reaches the version held', () => {
    const w = new World([node(1), node(2), node(3)]);
    const v0 = w.maps.version;
    for (let i = 0; i < CHANGE_LOG_LEN; i++) w.maps.changed(keyOf(2 + (i % 2)));
    w.rebuild();
    // Exactly CHANGE_LOG_LEN changes: still reachable.
    let r = w.maps.responseFor(keyOf(1), v0)!;
    expect(ids(r.peersChanged)).toEqual([2, 3]);
    w.maps.changed(keyOf(2));
    w.rebuild();
    // One more: v0 + 1 has left the log.
    r = w.maps.responseFor(keyOf(1), v0)!;
    expect(r.peersChanged).toBeUndefined();
    expect(ids(r.peers)).toEqual([2, 3]);
    r = w.maps.responseFor(keyOf(1), v0 + 1)!;
    expect(ids(r.peersChanged)).toEqual([2, 3]);
    // Far more than the log holds.
    for (let i = 0; i < 3 * CHANGE_LOG_LEN; i++) w.maps.changed(keyOf(2));
    w.rebuild();
    expect(w.maps.responseFor(keyOf(1), v0 + 1)!.peers).toBeDefined();
    r = w.maps.responseFor(keyOf(1), w.maps.version - 5)!;
    expect(ids(r.peersChanged)).toEqual([2]);
  });

  it('sends a node a full map when the change was to the node itself', () => {
    const w = new World([node(1), node(2), node(3)]);
    const v0 = w.maps.version;
    w.update(1, { tags: ['tag:new'] });
    const r = w.maps.responseFor(keyOf(1), v0)!;
    expect(r.peersChanged).toBeUndefined();
    expect(ids(r.peers)).toEqual([2, 3]);
    expect(r.self.tags).toEqual(['tag:new']);
    // Others get it as a delta.
    expect(ids(w.maps.responseFor(keyOf(2), v0)!.peersChanged)).toEqual([1]);
    // A pending node approved: its first view with peers.
    const p = new World([node(1), node(2), node(3, { authorized: false })]);
    const pv = p.maps.version;
    expect(p.maps.responseFor(keyOf(3), pv)!.peers).toEqual([]);
    p.update(3, { authorized: true });
    const approved = p.maps.responseFor(keyOf(3), pv)!;
    expect(approved.self.authorized).toBe(true);
    expect(ids(approved.peers)).toEqual([1, 2]);
  });
});


describe('NetmapView (node) against Netmaps (server)', () => {
  it('applies full maps and deltas, and says whether anything changed', () => {
    const w = new World([node(1), node(2), node(3)]);
    const v = new NetmapView();
    expect(v.version).toBe(0);
    expect(v.apply(w.full(1))).toBe(true);
    expect(v.version).toBe(w.maps.version);
    expect(ids([...v.peers.values()])).toEqual([2, 3]);
    expect(v.apply(w.full(1))).toBe(false);
    const v0 = w.maps.version;
    w.update(3, null);
    expect(v.apply(w.maps.responseFor(keyOf(1), v0)!)).toBe(true);
    expect(ids([...v.peers.values()])).toEqual([2]);
    // An empty delta moves the version but changes nothing.
    const v1 = w.maps.version;
    w.maps.changed(null);
    w.rebuild();
    const empty: MapResponse = { version: w.maps.version, self: w.full(1).self, packetFilter: w.full(1).packetFilter, peersChanged: [], peersRemoved: [] };
    expect(v.apply(empty)).toBe(false);
    expect(v.version).toBe(v1 + 1);
    // A full map replaces, not merges.
    const replaced = v.apply({ version: 9, self: w.full(1).self, packetFilter: w.full(1).packetFilter, peers: [] });
    expect(replaced).toBe(true);
    expect(v.peers.size).toBe(0);
    expect(v.toJSON()).toEqual({ version: 9, self: w.full(1).self, packetFilter: w.full(1).packetFilter, peers: [] });
  });

  it('reproduces the server full map after every step of a random history (200 steps)', () => {
    const rnd = prng(0x6e6d);
    const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)];
    let nextId = 1;
    const nodes: NodeRecord[] = [];
    for (; nextId <= 6; nextId++) nodes.push(node(nextId));
    const w = new World(nodes);
    // Observers that are never deleted; they poll at different rates (some lag many versions).
    const observers = [1, 2, 3].map((id, i) => ({ id, view: new NetmapView(), every: [1, 3, 7][i] }));
    for (const o of observers) o.view.apply(w.full(o.id));
    const kinds = { full: 0, delta: 0 };
    const randomEndpoints = () => Array.from({ length: Math.floor(rnd() * 3) }, () => `203.0.113.${Math.floor(rnd() * 250)}:${1 + Math.floor(rnd() * 65000)}`);

    for (let step = 0; step < 200; step++) {
      // One to three changes per rebuild.
      const changes = 1 + Math.floor(rnd() * 3);
      for (let c = 0; c < changes; c++) {
        const op = rnd();
        const deletable = w.nodes.filter((n) => !observers.some((o) => o.id === n.id));
        if (op < 0.2 || w.nodes.length < 4) {
          const n = node(nextId++, { authorized: rnd() < 0.8, endpoints: randomEndpoints() });
          w.nodes.push(n);
          w.maps.changed(n.nodeKey);
        } else if (op < 0.35 && deletable.length) {
          const n = pick(deletable);
          w.nodes.splice(w.nodes.indexOf(n), 1);
          w.maps.changed(n.nodeKey);
        } else if (op < 0.95) {
          const i = Math.floor(rnd() * w.nodes.length);
          const n = { ...w.nodes[i] };
          const what = Math.floor(rnd() * 6);
          if (what === 0) n.endpoints = randomEndpoints();
          else if (what === 1) n.authorized = !n.authorized;
          else if (what === 2) n.keyExpiry = pick([null, NOW - 1, NOW + 86_400_000]);
          else if (what === 3) n.name = `n${step}-${c}`;
          else if (what === 4) n.tags = rnd() < 0.5 ? [] : [`tag:t${step}`];
          else if (w.online.has(n.nodeKey)) w.online.delete(n.nodeKey);
          else w.online.add(n.nodeKey);
          w.nodes[i] = n;
          w.maps.changed(n.nodeKey);
        } else {
          w.maps.changed(null);
        }
      }
      w.rebuild();
      for (const o of observers) {
        if (step % o.every !== 0) continue;
        const r = w.maps.responseFor(keyOf(o.id), o.view.version)!;
        if (r.peers) kinds.full++;
        else kinds.delta++;
        o.view.apply(r);
        const full = w.full(o.id);
        expect(o.view.version, `step ${step}`).toBe(full.version);
        expect(o.view.self, `step ${step}`).toEqual(full.self);
        expect(sortPeers([...o.view.peers.values()]), `observer ${o.id} step ${step}`).toEqual(sortPeers(full.peers!));
        // The view is keyed by public key.
        for (const [k, p] of o.view.peers) expect(k).toBe(p.publicKey);
      }
    }
    // The history exercised both paths.
    expect(kinds.delta).toBeGreaterThan(50);
    expect(kinds.full).toBeGreaterThan(5);
  });
});

describe('pickEndpoint', () => {
  it('takes the first usable candidate', () => {
    expect(pickEndpoint(['192.0.2.1:41641', '198.51.100.1:1'])).toEqual({ address: '192.0.2.1', port: 41641 });
    expect(pickEndpoint(['[2001:DB8:0:0::1]:51820'])).toEqual({ address: '2001:db8::1', port: 51820 });
    expect(pickEndpoint([])).toBeNull();
  });

  it('skips overlay addresses, port 0 and what does not parse', () => {
    const skipped = [
      '100.64.0.1:41641',
      '100.64.0.0:1',
      '100.100.100.100:53',
      '100.127.255.255:41641',
      '[fd7a:115c:a1e0::1]:41641',
      '[fd7a:115c:a1e0:ab12:4843:cd96:6258:b240]:41641',
      '[FD7A:115C:A1E0:0000::5]:1',
      '[fd7a:115c:a1e0::]:1',
      '192.0.2.1:0',
      '[2001:db8::1]:0',
      'example.com:41641',
      '2001:db8::1:41641',
      '192.0.2.1',
      '192.0.2.1:65536',
      '',
      // an IPv4-mapped overlay address is still the overlay; a zone only means something on the sender's link
      '[::ffff:100.64.0.1]:41641',
      '[fe80::1%eth0]:41641',
    ];
    for (const c of skipped) expect(pickEndpoint([c]), c).toBeNull();
    expect(pickEndpoint([...skipped, '198.51.100.7:7'])).toEqual({ address: '198.51.100.7', port: 7 });
  });

  it('keeps addresses just outside the overlay ranges', () => {
    for (const [c, address] of [
      ['100.63.255.255:1', '100.63.255.255'],
      ['100.128.0.0:1', '100.128.0.0'],
      ['10.100.64.1:1', '10.100.64.1'],
      ['1.100.64.1:1', '1.100.64.1'],
      ['[fd7a:115c:a1e1::1]:1', 'fd7a:115c:a1e1::1'],
      ['[fd7a:115c:a1df:ffff::1]:1', 'fd7a:115c:a1df:ffff::1'],
      ['[fd7a:115c::1]:1', 'fd7a:115c::1'],
    ] as const) {
      expect(pickEndpoint([c]), c).toEqual({ address, port: 1 });
    }
  });
});

describe('meshConfig', () => {
  const self: SelfNode = { id: 1, name: 'me', addresses: ['100.64.0.1/32', 'fd7a:115c:a1e0::1/128'], user: null, tags: [], keyExpiry: null, authorized: true, routes: [] };
  const peer = (id: number, endpoints: string[], over: Partial<PeerNode> = {}): PeerNode => ({
    id, name: `p${id}`, publicKey: keyOf(id), addresses: [`100.64.0.${id}/32`], allowedIps: [`100.64.0.${id}/32`, `fd7a:115c:a1e0::${id}/128`], primaryRoutes: [],
    endpoints, online: true, lastSeen: null, user: null, tags: [], keyExpiry: null, ...over,
  });
  const viewOf = (peers: PeerNode[], s: SelfNode | null = self) => {
    const v = new NetmapView();
    if (s) v.apply({ version: 1, packetFilter: [], self: s, peers });
    else for (const p of peers) v.peers.set(p.publicKey, p);
    return v;
  };
  const byId = (cfg: ReturnType<typeof meshConfig>, id: number) => cfg.peers.find((p) => Buffer.from(p.publicKey).equals(decodeKeyBase64(keyOf(id))))!;

  it('builds the interface: addresses, masked allowed IPs, routes', () => {
    const v = viewOf([peer(2, ['192.0.2.2:41641'], { allowedIps: ['100.64.0.2/32', '10.1.2.3/24', 'not a cidr', 'fd7a:115c:a1e0::2/128'] })], {
      ...self, addresses: ['100.64.0.1/10', 'fd7a:115c:a1e0::1/48', 'junk'],
    });
    const cfg = meshConfig(v, new Map(), { extraRoutes: ['192.168.0.0/16'] });
    expect(cfg.routes).toEqual([...OVERLAY_ROUTES, '192.168.0.0/16']);
    expect(OVERLAY_ROUTES).toEqual(['100.64.0.0/10', 'fd7a:115c:a1e0::/48']);
    // Interface addresses keep their host bits.
    expect(cfg.addresses.map((a) => `${formatIp(a)}/${a.bits}`)).toEqual(['100.64.0.1/10', 'fd7a:115c:a1e0::1/48']);
    expect(cfg.peers).toHaveLength(1);
    const p = cfg.peers[0];
    expect(Buffer.from(p.publicKey).equals(decodeKeyBase64(keyOf(2)))).toBe(true);
    // Allowed IPs are masked and the unparsable one dropped.
    expect(p.allowedIps.map(formatCidr)).toEqual(['100.64.0.2/32', '10.1.2.0/24', 'fd7a:115c:a1e0::2/128']);
    expect(p.persistentKeepalive).toBe(0);
    expect(p.endpoint).toEqual({ address: '192.0.2.2', port: 41641 });
    expect(meshConfig(viewOf([]), new Map()).routes).toEqual(OVERLAY_ROUTES);
    expect(meshConfig(viewOf([], null), new Map()).addresses).toEqual([]);
  });

  it('hands over an endpoint only when the candidates changed', () => {
    const applied = new Map<string, string>();
    const v = viewOf([peer(2, ['192.0.2.2:41641']), peer(3, ['100.64.0.9:1']), peer(4, [])]);
    let cfg = meshConfig(v, applied);
    expect(byId(cfg, 2).endpoint).toEqual({ address: '192.0.2.2', port: 41641 });
    // A peer whose only candidates are unusable is explicitly given none.
    expect('endpoint' in byId(cfg, 3)).toBe(true);
    expect(byId(cfg, 3).endpoint).toBeNull();
    expect(byId(cfg, 4).endpoint).toBeNull();
    expect(applied.get(keyOf(2))).toBe('192.0.2.2:41641');

    // Unchanged candidates: no endpoint key at all, so a roamed endpoint is kept.
    cfg = meshConfig(v, applied);
    for (const id of [2, 3, 4]) expect('endpoint' in byId(cfg, id), `peer ${id}`).toBe(false);

    // Another change to the peer (not its candidates) still leaves the endpoint alone.
    v.apply({ version: 2, packetFilter: [], self, peersChanged: [peer(2, ['192.0.2.2:41641'], { name: 'renamed', online: false })], peersRemoved: [] });
    cfg = meshConfig(v, applied);
    expect('endpoint' in byId(cfg, 2)).toBe(false);

    // New candidates (even the same set reordered): the endpoint is handed over again, for that peer only.
    v.apply({ version: 3, packetFilter: [], self, peersChanged: [peer(2, ['198.51.100.2:5', '192.0.2.2:41641'])], peersRemoved: [] });
    cfg = meshConfig(v, applied);
    expect(byId(cfg, 2).endpoint).toEqual({ address: '198.51.100.2', port: 5 });
    expect('endpoint' in byId(cfg, 3)).toBe(false);
    v.apply({ version: 4, packetFilter: [], self, peersChanged: [peer(2, ['192.0.2.2:41641', '198.51.100.2:5'])], peersRemoved: [] });
    expect(meshConfig(v, applied).peers.find((p) => 'endpoint' in p)!.endpoint).toEqual({ address: '192.0.2.2', port: 41641 });

    // A removed peer is forgotten; when it comes back its endpoint is handed over again.
    v.apply({ version: 5, packetFilter: [], self, peersChanged: [], peersRemoved: [keyOf(2)] });
    cfg = meshConfig(v, applied);
    expect(cfg.peers).toHaveLength(2);
    expect(applied.has(keyOf(2))).toBe(false);
    v.apply({ version: 6, packetFilter: [], self, peersChanged: [peer(2, ['192.0.2.2:41641', '198.51.100.2:5'])], peersRemoved: [] });
    expect(byId(meshConfig(v, applied), 2).endpoint).toEqual({ address: '192.0.2.2', port: 41641 });
  });

  it('greets online peers only when asked (a fresh interface)', () => {
    const v = viewOf([peer(2, ['192.0.2.2:1'], { online: true }), peer(3, ['192.0.2.3:1'], { online: false })]);
    const greeted = meshConfig(v, new Map(), { greetOnline: true });
    expect(byId(greeted, 2).greet).toBe(true);
    expect(byId(greeted, 3).greet).toBe(false);
    for (const cfg of [meshConfig(v, new Map()), meshConfig(v, new Map(), { greetOnline: false })]) {
      for (const id of [2, 3]) expect(byId(cfg, id).greet, `peer ${id}`).toBe(false);
    }
  });

  it('skips a peer whose public key does not decode', () => {
    const applied = new Map<string, string>();
    const v = viewOf([peer(2, ['192.0.2.2:1']), peer(3, ['192.0.2.3:1'], { publicKey: 'bogus' })]);
    const cfg = meshConfig(v, applied);
    expect(cfg.peers).toHaveLength(1);
    expect(Buffer.from(cfg.peers[0].publicKey).equals(decodeKeyBase64(keyOf(2)))).toBe(true);
    expect([...applied.keys()]).toEqual([keyOf(2)]);
  });
});
