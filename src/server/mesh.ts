// The live side of the coordination server: who is online, the long polls
// waiting for a change, and the periodic sweep (nodes going offline,
// ephemeral nodes removed, key expiries taking effect). Every change goes
// through `changed()`, which versions it and wakes the polls; views are
// rebuilt at most once per burst of changes.
import type { MapResponse } from '../control/messages.js';
import { MAP_POLL_MS } from '../control/messages.js';
import { compilePolicy, DEFAULT_POLICY_TEXT, parsePolicy, type Policy, type PolicyNode } from '../policy/index.js';
import { isActive, Netmaps } from './netmap.js';
import { electPrimaries, type RouteTable } from './routes.js';
import type { NodeRecord, Store } from './store.js';

/** A node with no open poll for this long is offline. */
export const OFFLINE_AFTER_MS = 15_000;
export const SWEEP_MS = 1_000;
/** Long polls one node may have parked at once: its memory and sockets are the server's to bound. */
export const MAX_POLLS_PER_NODE = 4;

interface Waiter {
  nodeKey: string;
  since: number;
  resolve: (r: MapResponse | null) => void;
}

interface Presence {
  polls: number;
  lastSeen: number;
  online: boolean;
}

export interface MeshOptions {
  store: Store;
  now: () => number;
  /** Ephemeral nodes offline this long are deleted. */
  ephemeralTimeoutMs: number;
  onError: (err: Error) => void;
  pollMs?: number;
}

/** A node as the policy compiler sees it. */
export function policyNode(n: NodeRecord, user: string | null, routes: string[]): PolicyNode {
  return { id: n.id, name: n.name, user, tags: n.tags, addresses: [n.ipv4, n.ipv6], routes };
}

export class Mesh {
  readonly netmaps = new Netmaps();
  /** The policy in force; the server sets it (stored, --policy, or the default). */
  policy: Policy = parsePolicy(DEFAULT_POLICY_TEXT);
  /** Route states as of the last rebuild (for the admin API). */
  routes: RouteTable = { byNode: new Map(), primaries: new Map() };
  /** Each node's last applied hostinfo (server.ts), so a poll that repeats it costs nothing. */
  readonly hostinfoSeen = new Map<string, string>();
  /** The active nodes as the policy saw them at the last rebuild (policy tests run against them). */
  policyNodes: PolicyNode[] = [];
  /** The last compiled policy and the inputs it was compiled from. */
  private compiledFor: { policy: Policy; inputs: string; compiled: ReturnType<typeof compilePolicy> } | null = null;
  private readonly presence = new Map<string, Presence>();
  private readonly waiters = new Set<Waiter>();
  private nodes: NodeRecord[] = [];
  private rebuilding: Promise<void> | null = null;
  private flushScheduled = false;
  private sweeper: NodeJS.Timeout | null = null;
  private lastSweep: number;
  /** Counters for metrics and the benchmark. */
  readonly stats = { pushes: 0, rebuilds: 0 };

  constructor(private readonly o: MeshOptions) {
    this.lastSweep = o.now();
  }

  start(): void {
    this.sweeper = setInterval(() => void this.sweep().catch((e: Error) => this.o.onError(e)), SWEEP_MS);
    this.sweeper.unref();
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    for (const w of this.waiters) w.resolve(null);
    this.waiters.clear();
  }

  isOnline(nodeKey: string): boolean {
    return this.presence.get(nodeKey)?.online ?? false;
  }

  /**
   * Records a change (null: may touch every view) and answers the polls it
   * concerns. `peersOnly`: only how others see the node changed (Netmaps.changed).
   */
  changed(nodeKey: string | null, peersOnly = false): void {
    this.netmaps.changed(nodeKey, peersOnly);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      void this.flush().catch((e: Error) => this.o.onError(e));
    });
  }

  /** Views, routes and compiled policy as of the latest change. */
  settle(): Promise<void> {
    return this.fresh();
  }

  /** Puts a checked policy in force everywhere. */
  setPolicy(p: Policy): void {
    this.policy = p;
    this.changed(null);
  }

  private async fresh(): Promise<void> {
    while (this.netmaps.stale) {
      if (!this.rebuilding) {
        this.rebuilding = (async () => {
          // The views are as of the version before the read: a change recorded
          // while the store is read (an async store) makes them stale again.
          const version = this.netmaps.version;
          const [nodes, users, routes] = await Promise.all([this.o.store.listNodes(), this.o.store.listUsers(), this.o.store.listRoutes()]);
          const names = new Map(users.map((u) => [u.id, u.name]));
          const userName = (id: number | null) => (id === null ? null : (names.get(id) ?? null));
          const now = this.o.now();
          const active = new Set(nodes.filter((n) => isActive(n, now)).map((n) => n.id));
          const table = electPrimaries(routes, (id) => active.has(id));
          this.routes = table;
          // The store's last-seen is written only now and then (server.ts); the mesh's is per request.
          for (const n of nodes) {
            const seen = this.presence.get(n.nodeKey)?.lastSeen;
            if (seen !== undefined && seen > (n.lastSeen ?? 0)) n.lastSeen = seen;
          }
          this.nodes = nodes;
          const policyNodes = nodes.filter((n) => active.has(n.id)).map((n) => policyNode(n, userName(n.userId), table.primaries.get(n.id) ?? []));
          // Compiling is O(nodes^2) with the default allow-all policy (132 ms
          // at 1,000 nodes): only when the policy or what it reads of the nodes
          // changed, not for every change (online, endpoints, last-seen).
          const inputs = JSON.stringify(policyNodes);
          if (this.compiledFor?.policy !== this.policy || this.compiledFor.inputs !== inputs) {
            this.compiledFor = { policy: this.policy, inputs, compiled: compilePolicy(this.policy, policyNodes) };
          }
          const compiled = this.compiledFor.compiled;
          this.policyNodes = policyNodes;
          this.netmaps.rebuild(nodes, userName, (k) => this.isOnline(k), now, version, { routes: table, compiled });
          this.stats.rebuilds++;
        })().finally(() => {
          this.rebuilding = null;
        });
      }
      await this.rebuilding;
    }
  }

  private async flush(): Promise<void> {
    await this.fresh();
    const version = this.netmaps.version;
    for (const w of [...this.waiters]) {
      if (w.since >= version) continue;
      this.waiters.delete(w);
      w.resolve(this.netmaps.responseFor(w.nodeKey, w.since));
      this.stats.pushes++;
    }
  }

  /** The map for a node at `since`: at once if it is behind, else when something changes or the poll times out. */
  async poll(nodeKey: string, since: number, wait: boolean, closed: Promise<void>): Promise<MapResponse | null> {
    // A node in its long-poll loop is online even when its poll is answered
    // at once (it was behind). Marking it only when a poll parks starved busy
    // meshes: each node coming online is a change that sends every other
    // node's poll back, so few ever parked (200 nodes: ~2 a second came online).
    const p = this.presenceOf(nodeKey);
    if (wait && !p.online) this.setOnline(nodeKey, p, true);
    await this.fresh();
    // A node holds one poll; past a few (a retry overlapping the old one) it gets no more parked requests.
    const parked = p.polls >= MAX_POLLS_PER_NODE;
    if (!wait || parked || since < this.netmaps.version || since > this.netmaps.version) return this.netmaps.responseFor(nodeKey, since);
    p.polls++;
    try {
      const r = await new Promise<MapResponse | null | 'timeout'>((resolve) => {
        const w: Waiter = { nodeKey, since, resolve };
        this.waiters.add(w);
        const t = setTimeout(() => {
          this.waiters.delete(w);
          resolve('timeout');
        }, this.o.pollMs ?? MAP_POLL_MS);
        void closed.then(() => {
          clearTimeout(t);
          this.waiters.delete(w);
          resolve(null);
        });
      });
      if (r !== 'timeout') return r;
      await this.fresh();
      return this.netmaps.responseFor(nodeKey, since);
    } finally {
      p.polls--;
      p.lastSeen = this.o.now();
    }
  }

  /** A request from the node: it is alive now. */
  seen(nodeKey: string): void {
    this.presenceOf(nodeKey).lastSeen = this.o.now();
  }

  /** A deleted node: nothing of it is kept (so node churn cannot grow these tables). */
  forget(nodeKey: string): void {
    this.presence.delete(nodeKey);
    this.hostinfoSeen.delete(nodeKey);
  }

  private presenceOf(nodeKey: string): Presence {
    let p = this.presence.get(nodeKey);
    if (!p) {
      p = { polls: 0, lastSeen: this.o.now(), online: false };
      this.presence.set(nodeKey, p);
    }
    return p;
  }

  private setOnline(nodeKey: string, p: Presence, online: boolean): void {
    p.online = online;
    this.changed(nodeKey, true);
  }

  /** Offline transitions, ephemeral clean-up, expiries that came due. */
  async sweep(): Promise<void> {
    const now = this.o.now();
    await this.fresh();
    for (const n of this.nodes) {
      const p = this.presence.get(n.nodeKey);
      if (p?.online && p.polls === 0 && now - p.lastSeen > OFFLINE_AFTER_MS) this.setOnline(n.nodeKey, p, false);
      if (n.keyExpiry !== null && n.keyExpiry > this.lastSweep && n.keyExpiry <= now) this.changed(n.nodeKey);
      if (n.ephemeral && !(p?.polls) ) {
        const last = Math.max(p?.lastSeen ?? 0, n.lastSeen ?? 0, n.createdAt);
        if (now - last > this.o.ephemeralTimeoutMs) {
          await this.o.store.deleteNode(n.id, { at: now, actor: 'server', action: 'node.delete', target: `node:${n.id}`, detail: { name: n.name, reason: 'ephemeral node offline' } });
          this.forget(n.nodeKey);
          this.changed(n.nodeKey);
        }
      }
    }
    this.lastSweep = now;
  }
}
