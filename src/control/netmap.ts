// The node's copy of its netmap, and the pure step from netmap to interface
// configuration (what the engine applies). Full maps replace the peer set;
// deltas change or remove peers by key. An endpoint is handed to the engine
// only when the server's candidates for that peer changed, so an endpoint
// learned from the peer's own authenticated packets (roaming) is kept.
import { decodeKeyBase64 } from '../config/keys.js';
import type { MeshConfig, MeshPeer } from '../daemon/engine.js';
import { formatIp, parseCidr, parseIpEndpoint, unmap, type IpPrefix } from '../net/ipaddr.js';
import type { FilterRule, MapResponse, PeerNode, SelfNode } from './messages.js';

export const OVERLAY_ROUTES = ['100.64.0.0/10', 'fd7a:115c:a1e0::/48'];

export class NetmapView {
  version = 0;
  self: SelfNode | null = null;
  readonly peers = new Map<string, PeerNode>();
  /** Until a netmap says otherwise, nothing is allowed in. */
  packetFilter: FilterRule[] = [];

  /** Applies a map response; returns whether anything changed. */
  apply(r: MapResponse): boolean {
    const before = JSON.stringify([this.self, this.packetFilter, [...this.peers.values()]]);
    this.version = r.version;
    this.self = r.self;
    if (r.packetFilter) this.packetFilter = r.packetFilter;
    if (r.peers) {
      this.peers.clear();
      for (const p of r.peers) this.peers.set(p.publicKey, p);
    }
    for (const p of r.peersChanged ?? []) this.peers.set(p.publicKey, p);
    for (const k of r.peersRemoved ?? []) this.peers.delete(k);
    return before !== JSON.stringify([this.self, this.packetFilter, [...this.peers.values()]]);
  }

  toJSON(): MapResponse {
    return { version: this.version, self: this.self!, packetFilter: this.packetFilter, peers: [...this.peers.values()] };
  }
}

/** Allowed IPs are masked; interface addresses keep their host bits. */
function prefixes(cidrs: readonly string[], mask: boolean): IpPrefix[] {
  const out: IpPrefix[] = [];
  for (const c of cidrs) {
    const p = parseCidr(c, { mask });
    if (p.ok) out.push(p.value);
  }
  return out;
}

/** The endpoint to try first: the first candidate that is not itself inside the overlay. */
export function pickEndpoint(candidates: readonly string[]): { address: string; port: number } | null {
  for (const c of candidates) {
    const ep = parseIpEndpoint(c);
    if (!ep.ok || ep.value.port === 0 || ep.value.zone !== undefined) continue; // a zone only means something on the peer's own link
    const ip = unmap(ep.value);
    const address = formatIp(ip);
    if (ip.family === 4 && ip.bytes[0] === 100 && ip.bytes[1] >= 64 && ip.bytes[1] < 128) continue;
    if (address.startsWith('fd7a:115c:a1e0:')) continue;
    return { address, port: ep.value.port };
  }
  return null;
}

/**
 * What the interface should be. `applied` holds each peer's candidates as
 * last applied, and is updated: a peer keeps its endpoint until they change.
 */
/** The subnets this node routes for the mesh: its approved routes where it is the primary router. */
export function routedSubnets(view: NetmapView): string[] {
  return (view.self?.routes ?? []).filter((r) => r.primary).map((r) => r.prefix);
}

/** Subnets other nodes route, for a node with --accept-routes. */
export function acceptedSubnets(view: NetmapView): string[] {
  const out = new Set<string>();
  for (const p of view.peers.values()) for (const r of p.primaryRoutes ?? []) out.add(r);
  return [...out];
}

export function meshConfig(view: NetmapView, applied: Map<string, string>, opts: { greetOnline?: boolean; extraRoutes?: readonly string[] } = {}): MeshConfig {
  const peers: MeshPeer[] = [];
  const seen = new Set<string>();
  for (const p of view.peers.values()) {
    let publicKey: Uint8Array;
    try {
      publicKey = decodeKeyBase64(p.publicKey);
    } catch {
      continue;
    }
    seen.add(p.publicKey);
    const candidates = p.endpoints.join(',');
    const peer: MeshPeer = { publicKey, allowedIps: prefixes(p.allowedIps, true), persistentKeepalive: 0, greet: opts.greetOnline === true && p.online };
    if (applied.get(p.publicKey) !== candidates) {
      peer.endpoint = pickEndpoint(p.endpoints);
      applied.set(p.publicKey, candidates);
    }
    peers.push(peer);
  }
  for (const k of [...applied.keys()]) if (!seen.has(k)) applied.delete(k);
  const addresses = view.self ? prefixes(view.self.addresses, false) : [];
  return { addresses, peers, routes: [...OVERLAY_ROUTES, ...(opts.extraRoutes ?? [])] };
}
