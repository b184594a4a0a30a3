// The coordination protocol's messages: what a node and the server say to
// each other inside sealed envelopes (envelope.ts), as JSON. Shared by the
// server (src/server/) and the node's control client (src/control/client.ts).
import type { FilterRule } from '../policy/types.js';

export type { FilterRule } from '../policy/types.js';

export const API = '/meshd/v1';
export const PATHS = {
  /** GET, in clear: the server's public key and clock, for pinning and clock offset. */
  key: `${API}/key`,
  register: `${API}/register`,
  map: `${API}/map`,
  logout: `${API}/logout`,
} as const;

/** A long poll is answered after at most this long even when nothing changed. */
export const MAP_POLL_MS = 25_000;
/** Largest request body the server reads. */
export const MAX_BODY_BYTES = 1 << 20;
/** Endpoint candidates one node may report. */
export const MAX_ENDPOINTS = 16;

export interface ServerKeyResponse {
  serverKey: string;
  /** The server's clock, ms since the epoch: nodes stamp requests in it. */
  time: number;
}

/** What a node asks for beyond joining: sent with register and with every map request. */
export interface Hostinfo {
  /** Subnets this node offers to route (`--advertise-routes`), canonical CIDRs. */
  advertiseRoutes: string[];
  /** Tags it asks to carry (`--advertise-tags`); only those its key or tagOwners allow are accepted. */
  advertiseTags: string[];
}

/** Most subnet routes one node may advertise. */
export const MAX_ROUTES = 64;

export interface RegisterRequest {
  /** Absent when an already registered node reconnects. */
  authKey?: string;
  hostname: string;
  endpoints: string[];
  hostinfo?: Hostinfo;
}

/** One advertised route as the server sees it. */
export interface RouteState {
  prefix: string;
  approved: boolean;
  /** Approved and this node is the one router chosen for it; the others stand by. */
  primary: boolean;
}

export interface SelfNode {
  id: number;
  name: string;
  /** CIDRs: the node's IPv4 /32 and IPv6 /128. */
  addresses: string[];
  user: string | null;
  tags: string[];
  keyExpiry: number | null;
  authorized: boolean;
  /** The routes this node advertises, with their approval state. */
  routes: RouteState[];
}

export interface RegisterResponse {
  node: SelfNode;
}

export interface MapRequest {
  /** The netmap version the node holds; 0 for none (a full map is sent). */
  since: number;
  endpoints: string[];
  /** Hold the request until something changes (long poll). */
  wait: boolean;
  hostinfo?: Hostinfo;
}

export interface PeerNode {
  id: number;
  name: string;
  publicKey: string;
  addresses: string[];
  /** Its addresses plus the subnets it is the primary router for. */
  allowedIps: string[];
  /** The subnets alone (a node with --accept-routes routes these into its TUN). */
  primaryRoutes: string[];
  endpoints: string[];
  online: boolean;
  lastSeen: number | null;
  user: string | null;
  tags: string[];
  keyExpiry: number | null;
}

/**
 * Either a full peer list (`peers`) or a delta against `since`
 * (`peersChanged` replace or add by public key, `peersRemoved` go).
 */
export interface MapResponse {
  version: number;
  self: SelfNode;
  /**
   * What this node accepts inbound (for its addresses and routed subnets),
   * compiled from the policy; sent whole with every response. Empty: nothing.
   */
  packetFilter: FilterRule[];
  peers?: PeerNode[];
  peersChanged?: PeerNode[];
  peersRemoved?: string[];
}

/** Every refused request gets this body with a 4xx/5xx status. */
export interface ErrorBody {
  error: { code: string; message: string };
}
