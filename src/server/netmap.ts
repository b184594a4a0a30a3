// Netmaps: each node's own view of the mesh, and the versions that let the
// server send a node only what changed since the map it holds. Pure: the
// server feeds it the store's nodes, who is online, and the time.
//
// Every control-plane change is recorded as a new version naming the node
// that changed (or null: everyone's view may have changed). A poll at
// version v is answered with the peers changed since v when the change log
// still reaches back to v, else with the full list. Views are computed once
// per version and shared by every poll, so one change costs O(nodes) to
// build and O(changes) per node to send.
import type { MapResponse, PeerNode, RouteState, SelfNode } from '../control/messages.js';
import type { CompiledNode } from '../policy/types.js';
import type { RouteTable } from './routes.js';
import type { NodeRecord } from './store.js';

/** How many versions of history deltas can be computed across. */
export const CHANGE_LOG_LEN = 4096;

/** Whether a node takes part in the mesh at `now`: approved and not expired. */
export function isActive(n: NodeRecord, now: number): boolean {
  return n.authorized && (n.keyExpiry === null || n.keyExpiry > now);
}

function addressesOf(n: NodeRecord): string[] {
  return [`${n.ipv4}/32`, `${n.ipv6}/128`];
}

export function selfOf(n: NodeRecord, user: string | null, routes: RouteState[] = []): SelfNode {
  return { id: n.id, name: n.name, addresses: addressesOf(n), user, tags: n.tags, keyExpiry: n.keyExpiry, authorized: n.authorized, routes };
}

export function peerOf(n: NodeRecord, user: string | null, online: boolean, primaryRoutes: string[] = []): PeerNode {
  const addresses = addressesOf(n);
  return {
    id: n.id,
    name: n.name,
    publicKey: n.nodeKey,
    addresses,
    allowedIps: [...addresses, ...primaryRoutes],
    primaryRoutes,
    endpoints: n.endpoints,
    online,
    lastSeen: n.lastSeen,
    user,
    tags: n.tags,
    keyExpiry: n.keyExpiry,
  };
}

interface View {
  version: number;
  /** Active nodes' peer entries by public key. */
  peers: Map<string, PeerNode>;
  /** Every known node's self view (also inactive ones: a pending node learns it is pending). */
  selves: Map<string, SelfNode>;
  peerList: PeerNode[];
  /** Per node id: its inbound filter and whom it may see (the policy, compiled for these nodes). */
  compiled: Map<number, CompiledNode>;
}

/** What the policy and the routes make of the nodes (mesh.ts computes it). */
export interface MeshState {
  routes: RouteTable;
  compiled: Map<number, CompiledNode>;
}

export class Netmaps {
  private current: number;
  /** `peersOnly`: the change is in how others see the node (online, endpoints), not in what it sees. */
  private readonly log: Array<{ version: number; key: string | null; peersOnly: boolean }> = [];
  private view: View | null = null;

  /**
   * Versions start at the start time in microseconds, so a restarted server
   * never reuses a version a node may hold from its previous life.
   */
  constructor(startVersion = Date.now() * 1000) {
    this.current = startVersion;
  }

  get version(): number {
    return this.current;
  }

  /**
   * Records a change; `nodeKey` null means it may touch every view. With
   * `peersOnly` the node's own view is not affected, so it is not sent a full
   * map for it (a node coming online would otherwise get its whole map again).
   * Returns the new version.
   */
  changed(nodeKey: string | null, peersOnly = false): number {
    this.current++;
    this.log.push({ version: this.current, key: nodeKey, peersOnly: peersOnly && nodeKey !== null });
    if (this.log.length > CHANGE_LOG_LEN) this.log.splice(0, this.log.length - CHANGE_LOG_LEN);
    return this.current;
  }

  /** True when the views must be rebuilt from the store before answering. */
  get stale(): boolean {
    return this.view?.version !== this.current;
  }

  /** `version`: the version the node list was read at (default: the current one). */
  rebuild(
    nodes: readonly NodeRecord[],
    userName: (id: number | null) => string | null,
    online: (nodeKey: string) => boolean,
    now: number,
    version = this.current,
    mesh: MeshState = { routes: { byNode: new Map(), primaries: new Map() }, compiled: allVisible(nodes, now) },
  ): void {
    const peers = new Map<string, PeerNode>();
    const selves = new Map<string, SelfNode>();
    for (const n of nodes) {
      const user = userName(n.userId);
      selves.set(n.nodeKey, selfOf(n, user, mesh.routes.byNode.get(n.id)));
      if (isActive(n, now)) peers.set(n.nodeKey, peerOf(n, user, online(n.nodeKey), mesh.routes.primaries.get(n.id)));
    }
    this.view = { version, peers, selves, peerList: [...peers.values()], compiled: mesh.compiled };
  }

  /**
   * The answer for `nodeKey` holding version `since`, or null when the
   * node is unknown. Needs fresh views (rebuild first when `stale`).
   */
  responseFor(nodeKey: string, since: number): MapResponse | null {
    const view = this.view;
    if (!view) throw new Error('netmap views were never built');
    const self = view.selves.get(nodeKey);
    if (!self) return null;
    const version = view.version;
    const active = view.peers.has(nodeKey);
    const compiled = active ? view.compiled.get(self.id) : undefined;
    const packetFilter = compiled?.filter ?? [];
    const visible = (p: PeerNode) => p.publicKey !== nodeKey && compiled !== undefined && compiled.visible.has(p.id);
    const changedKeys = active ? this.changesSince(since) : null;
    // A change to the node itself (approved, re-authenticated) may change what it may see: send all.
    if (changedKeys === null || changedKeys.get(nodeKey) === false) {
      return { version, self, packetFilter, peers: active ? view.peerList.filter(visible) : [] };
    }
    const peersChanged: PeerNode[] = [];
    const peersRemoved: string[] = [];
    for (const key of changedKeys.keys()) {
      if (key === nodeKey) continue;
      const p = view.peers.get(key);
      if (p && visible(p)) peersChanged.push(p);
      else peersRemoved.push(key);
    }
    return { version, self, packetFilter, peersChanged, peersRemoved };
  }

  /** Keys changed after `since` (true: only in how peers see it), or null when a full map is needed. */
  private changesSince(since: number): Map<string, boolean> | null {
    if (since <= 0 || since > this.current) return null;
    if (since === this.current) return new Map();
    const first = this.log[0];
    if (!first || first.version > since + 1) return null;
    const keys = new Map<string, boolean>();
    for (let i = this.log.length - 1; i >= 0 && this.log[i].version > since; i--) {
      const { key, peersOnly } = this.log[i];
      if (key === null) return null;
      keys.set(key, peersOnly && keys.get(key) !== false);
    }
    return keys;
  }
}

/** Without a policy compiled: every active node sees every other and accepts everything (unit tests, tools). */
function allVisible(nodes: readonly NodeRecord[], now: number): Map<number, CompiledNode> {
  const ids = new Set(nodes.filter((n) => isActive(n, now)).map((n) => n.id));
  const everything = [{ srcs: ['0.0.0.0/0', '::/0'], dsts: ['0.0.0.0/0', '::/0'], ports: [[0, 65535]] as Array<[number, number]>, protos: null }];
  return new Map([...ids].map((id) => [id, { filter: everything, visible: ids }]));
}
