// The coordination server's durable state, behind one interface so that
// SQLite (embedded, the default) and PostgreSQL (several replicas) can both
// serve it. Every method that changes state is one atomic transaction and
// writes its audit entry in that same transaction: a crash (kill -9) at any
// moment leaves either all of a change or none of it.
//
// Times are milliseconds since the Unix epoch. Public keys are WireGuard
// base64. Auth keys are never stored: only their public prefix and the
// SHA-256 of their secret part.

export interface User {
  id: number;
  name: string;
  createdAt: number;
}

export interface AuthKeyRecord {
  id: number;
  /** The public, non-secret part of the key, shown in listings ("mskey-<prefix>-..."). */
  prefix: string;
  /** SHA-256 of the secret part, hex. */
  secretHash: string;
  /** Nodes registered with a user key belong to that user; tagged keys make tagged nodes. */
  userId: number | null;
  tags: string[];
  reusable: boolean;
  ephemeral: boolean;
  /** Nodes registered with it are authorized at once; otherwise they wait for an admin. */
  preauthorized: boolean;
  expiresAt: number | null;
  createdAt: number;
  revokedAt: number | null;
  usedCount: number;
  lastUsedAt: number | null;
}

export interface NodeRecord {
  id: number;
  /** The node's WireGuard public key (base64): its identity on the control channel too. */
  nodeKey: string;
  /** The host name the node asked for. */
  requestedHostname: string;
  /** The unique, DNS-safe name it was given (renameable). */
  name: string;
  userId: number | null;
  tags: string[];
  ipv4: string;
  ipv6: string;
  /** ip:port candidates the node (and the server, from the request's source) reported. */
  endpoints: string[];
  ephemeral: boolean;
  /** False while waiting for an admin's approval (a key that is not preauthorized). */
  authorized: boolean;
  authKeyId: number | null;
  /** After this the node is expired: out of every netmap, refused on the control channel. */
  keyExpiry: number | null;
  createdAt: number;
  lastSeen: number | null;
}

export interface AuditEntry {
  id: number;
  at: number;
  /** "admin", "node:<id>", "server". */
  actor: string;
  /** A dotted verb: "authkey.create", "node.register", "node.delete", ... */
  action: string;
  /** What it acted on: "authkey:<id>", "node:<id>", ... */
  target: string;
  detail: Record<string, unknown>;
}

export type AuditInput = Omit<AuditEntry, 'id'>;

/** A key as created: what the store fills in (id, use counts, revocation) left out. */
export type NewAuthKey = Omit<AuthKeyRecord, 'id' | 'revokedAt' | 'usedCount' | 'lastUsedAt'>;

export interface RegisterInput {
  nodeKey: string;
  requestedHostname: string;
  endpoints: string[];
  /** The key presented; null when an already registered node re-registers (reconnect). */
  authKeyId: number | null;
  now: number;
  /** Key expiry given to a new (or re-authenticated) node; null for never. */
  keyExpiry: number | null;
}

/** Why registerNode refused; each maps to one clear line for `meshd up`. */
export type RegisterRefusal = 'authkey-unknown' | 'authkey-revoked' | 'authkey-expired' | 'authkey-used' | 'node-unknown' | 'node-expired' | 'address-space-full';

export type RegisterResult = { ok: true; node: NodeRecord; created: boolean } | { ok: false; reason: RegisterRefusal };

export interface NodeUpdate {
  name?: string;
  authorized?: boolean;
  keyExpiry?: number | null;
  tags?: string[];
}

/** A subnet route a node advertises (`meshd up --advertise-routes`). */
export interface RouteRecord {
  id: number;
  nodeId: number;
  /** Canonical CIDR, host bits clear. */
  prefix: string;
  /** The node still advertises it; a withdrawn route keeps its approval for when it comes back. */
  advertised: boolean;
  approved: boolean;
  createdAt: number;
}

export interface PolicyRecord {
  text: string;
  updatedAt: number;
}

export interface Store {
  close(): Promise<void>;

  /** The user of that name, created (and audited as `actor`) if new. */
  ensureUser(name: string, now: number, actor: string): Promise<User>;
  listUsers(): Promise<User[]>;

  createAuthKey(key: NewAuthKey, audit: AuditInput): Promise<AuthKeyRecord>;
  authKeyByPrefix(prefix: string): Promise<AuthKeyRecord | null>;
  listAuthKeys(): Promise<AuthKeyRecord[]>;
  /** False if there is no such key or it was already revoked. */
  revokeAuthKey(id: number, now: number, audit: AuditInput): Promise<boolean>;

  /**
   * One transaction: with authKeyId set, re-checks the key (exists, not
   * revoked, not expired at `now`, reusable or unused), then either
   * re-authenticates the node that already has this nodeKey (new expiry,
   * authorized if the key is preauthorized, same addresses and name) or
   * creates it: a unique name from the requested host name, the lowest free
   * IPv4 in 100.64.0.0/10 and the IPv6 derived from it, user/tags/ephemeral
   * from the key; counts the key's use; audits. Without authKeyId, only an
   * existing, unexpired node is accepted (its endpoints are updated).
   */
  registerNode(input: RegisterInput): Promise<RegisterResult>;
  nodeByKey(nodeKey: string): Promise<NodeRecord | null>;
  nodeById(id: number): Promise<NodeRecord | null>;
  listNodes(): Promise<NodeRecord[]>;
  /** Renames are made unique like registration names; returns the node after the change, or null if none. */
  updateNode(id: number, update: NodeUpdate, audit: AuditInput): Promise<NodeRecord | null>;
  /** Endpoints and last-seen are liveness, not control-plane changes: not audited. */
  touchNode(id: number, lastSeen: number, endpoints?: string[]): Promise<void>;
  deleteNode(id: number, audit: AuditInput): Promise<boolean>;

  /**
   * Makes `prefixes` the node's advertised routes: new ones are added
   * (approved at once if listed in `autoApprove`), absent ones marked
   * withdrawn. Audits each change; returns whether anything changed.
   */
  setAdvertisedRoutes(nodeId: number, prefixes: string[], autoApprove: string[], now: number): Promise<boolean>;
  listRoutes(): Promise<RouteRecord[]>;
  /** Approve or reject (un-approve) one route; null if there is no such route. */
  setRouteApproval(id: number, approved: boolean, audit: AuditInput): Promise<RouteRecord | null>;

  /** The policy in force, as the text it was set from; null before any was set. */
  getPolicy(): Promise<PolicyRecord | null>;
  setPolicy(text: string, now: number, audit: AuditInput): Promise<void>;

  audit(entry: AuditInput): Promise<void>;
  listAudit(limit: number): Promise<AuditEntry[]>;
}
