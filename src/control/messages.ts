// The coordination protocol's messages: what a node and the server say to
// each other inside sealed envelopes (envelope.ts), as JSON. Shared by the
// server (src/server/) and the node's control client (src/control/client.ts).

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

export interface RegisterRequest {
  /** Absent when an already registered node reconnects. */
  authKey?: string;
  hostname: string;
  endpoints: string[];
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
}

export interface PeerNode {
  id: number;
  name: string;
  publicKey: string;
  addresses: string[];
  allowedIps: string[];
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
  peers?: PeerNode[];
  peersChanged?: PeerNode[];
  peersRemoved?: string[];
}

/** Every refused request gets this body with a 4xx/5xx status. */
export interface ErrorBody {
  error: { code: string; message: string };
}
