// The Store on one SQLite file (better-sqlite3). better-sqlite3 is
// synchronous; the methods still return promises so a PostgreSQL store can
// sit behind the same interface. Every change is one BEGIN IMMEDIATE
// transaction holding its audit row, and synchronous=FULL in WAL mode makes
// a commit durable before the call returns, against kill -9 and power loss.
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import { migrate } from './migrations.js';
import { advertiseRoutes, approveRoute, getPolicy, listRoutes, routeStatements, setPolicy } from './sqliteRoutes.js';
import { ipv6ForIpv4, nameCandidatesPrefix, nextFreeIpv4, sanitizeHostname, uniqueName } from './ipam.js';
import type {
  AuditEntry,
  AuditInput,
  AuthKeyRecord,
  NewAuthKey,
  NodeRecord,
  NodeUpdate,
  PolicyRecord,
  RegisterInput,
  RegisterResult,
  RouteRecord,
  Store,
  User,
} from './store.js';

interface UserRow {
  id: number;
  name: string;
  created_at: number;
}

interface AuthKeyRow {
  id: number;
  prefix: string;
  secret_hash: string;
  user_id: number | null;
  tags: string;
  reusable: number;
  ephemeral: number;
  preauthorized: number;
  expires_at: number | null;
  created_at: number;
  revoked_at: number | null;
  used_count: number;
  last_used_at: number | null;
}

interface NodeRow {
  id: number;
  node_key: string;
  requested_hostname: string;
  name: string;
  user_id: number | null;
  tags: string;
  ipv4: string;
  ipv6: string;
  endpoints: string;
  ephemeral: number;
  authorized: number;
  auth_key_id: number | null;
  key_expiry: number | null;
  created_at: number;
  last_seen: number | null;
}

interface AuditRow {
  id: number;
  at: number;
  actor: string;
  action: string;
  target: string;
  detail: string;
}

const toUser = (r: UserRow): User => ({ id: r.id, name: r.name, createdAt: r.created_at });

const toAuthKey = (r: AuthKeyRow): AuthKeyRecord => ({
  id: r.id,
  prefix: r.prefix,
  secretHash: r.secret_hash,
  userId: r.user_id,
  tags: JSON.parse(r.tags) as string[],
  reusable: r.reusable === 1,
  ephemeral: r.ephemeral === 1,
  preauthorized: r.preauthorized === 1,
  expiresAt: r.expires_at,
  createdAt: r.created_at,
  revokedAt: r.revoked_at,
  usedCount: r.used_count,
  lastUsedAt: r.last_used_at,
});

const toNode = (r: NodeRow): NodeRecord => ({
  id: r.id,
  nodeKey: r.node_key,
  requestedHostname: r.requested_hostname,
  name: r.name,
  userId: r.user_id,
  tags: JSON.parse(r.tags) as string[],
  ipv4: r.ipv4,
  ipv6: r.ipv6,
  endpoints: JSON.parse(r.endpoints) as string[],
  ephemeral: r.ephemeral === 1,
  authorized: r.authorized === 1,
  authKeyId: r.auth_key_id,
  keyExpiry: r.key_expiry,
  createdAt: r.created_at,
  lastSeen: r.last_seen,
});

const toAudit = (r: AuditRow): AuditEntry => ({
  id: r.id,
  at: r.at,
  actor: r.actor,
  action: r.action,
  target: r.target,
  detail: JSON.parse(r.detail) as Record<string, unknown>,
});

const bit = (b: boolean): number => (b ? 1 : 0);

/** Opens with a umask that keeps the database, -wal and -shm files private to this user. */
function openPrivate(path: string): Database.Database {
  const onDisk = path !== ':memory:' && path !== '';
  if (onDisk && !existsSync(path)) {
    try {
      closeSync(openSync(path, 'wx', 0o600));
    } catch (err) {
      // Someone else created it first: theirs is opened as is.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  let previous: number | null = null;
  try {
    previous = process.umask(0o077);
  } catch {
    // Worker threads cannot change the umask; the chmod below still applies.
  }
  try {
    const db = new Database(path, { timeout: 5000 });
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
      migrate(db);
      if (onDisk) {
        // SQLite gives -wal and -shm the database file's mode; make sure anyway.
        for (const f of [`${path}-wal`, `${path}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
      }
      return db;
    } catch (err) {
      db.close();
      throw err;
    }
  } finally {
    if (previous !== null) process.umask(previous);
  }
}

/** Every statement, prepared once per connection. */
function prepareStatements(db: Database.Database) {
  const p = <R>(sql: string) => db.prepare<unknown[], R>(sql);
  return {
    userByName: p<UserRow>('SELECT * FROM users WHERE name = ?'),
    insertUser: p<UserRow>('INSERT INTO users (name, created_at) VALUES (?, ?) RETURNING *'),
    listUsers: p<UserRow>('SELECT * FROM users ORDER BY id'),
    insertKey: p<AuthKeyRow>(
      `INSERT INTO auth_keys (prefix, secret_hash, user_id, tags, reusable, ephemeral, preauthorized, expires_at, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
    ),
    keyById: p<AuthKeyRow>('SELECT * FROM auth_keys WHERE id = ?'),
    keyByPrefix: p<AuthKeyRow>('SELECT * FROM auth_keys WHERE prefix = ?'),
    listKeys: p<AuthKeyRow>('SELECT * FROM auth_keys ORDER BY id'),
    revokeKey: p('UPDATE auth_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL'),
    useKey: p('UPDATE auth_keys SET used_count = used_count + 1, last_used_at = ? WHERE id = ?'),
    nodeByKey: p<NodeRow>('SELECT * FROM nodes WHERE node_key = ?'),
    nodeById: p<NodeRow>('SELECT * FROM nodes WHERE id = ?'),
    listNodes: p<NodeRow>('SELECT * FROM nodes ORDER BY id'),
    allIpv4: p<string>('SELECT ipv4 FROM nodes').pluck(),
    // Names are [a-z0-9-], all below '~': the range is "starts with ?", on the index.
    namesFrom: p<string>("SELECT name FROM nodes WHERE name >= @p AND name < @p || '~'").pluck(),
    insertNode: p<NodeRow>(
      `INSERT INTO nodes (node_key, requested_hostname, name, user_id, tags, ipv4, ipv6, endpoints, ephemeral, authorized, auth_key_id, key_expiry, created_at, last_seen)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
    ),
    reauthNode: p<NodeRow>(
      `UPDATE nodes SET requested_hostname = ?, user_id = ?, tags = ?, endpoints = ?, ephemeral = ?, authorized = ?,
         auth_key_id = ?, key_expiry = ?, last_seen = ? WHERE id = ? RETURNING *`,
    ),
    reconnectNode: p<NodeRow>('UPDATE nodes SET endpoints = ?, last_seen = ? WHERE id = ? RETURNING *'),
    updateNode: p<NodeRow>('UPDATE nodes SET name = ?, authorized = ?, key_expiry = ?, tags = ? WHERE id = ? RETURNING *'),
    touchNode: p('UPDATE nodes SET last_seen = ?, endpoints = coalesce(?, endpoints) WHERE id = ?'),
    deleteNode: p('DELETE FROM nodes WHERE id = ?'),
    insertAudit: p('INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)'),
    listAudit: p<AuditRow>('SELECT * FROM audit ORDER BY id DESC LIMIT ?'),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly q: Statements;
  private readonly r: ReturnType<typeof routeStatements>;

  private constructor(db: Database.Database) {
    this.db = db;
    this.q = prepareStatements(db);
    this.r = routeStatements(db);
  }

  /** Opens (creating with mode 0600 and migrating as needed) the database at `path`; ':memory:' for tests. */
  static open(path: string): SqliteStore {
    return new SqliteStore(openPrivate(path));
  }

  /** A write transaction taken with BEGIN IMMEDIATE: no lock upgrade that could fail half way with SQLITE_BUSY. */
  private tx<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
    // Made on first use: field initializers run before the constructor sets db.
    let t: Database.Transaction<(...args: A) => R> | undefined;
    return (...args: A) => (t ??= this.db.transaction(fn)).immediate(...args);
  }

  /** A unique name from a sanitized one; `own` (a node's current name) does not count as taken. */
  private freeName(base: string, own: string | null): string {
    const taken = new Set(this.q.namesFrom.all({ p: nameCandidatesPrefix(base) }));
    if (own !== null) taken.delete(own);
    return uniqueName(base, taken);
  }

  private writeAudit(e: AuditInput): void {
    this.q.insertAudit.run(e.at, e.actor, e.action, e.target, JSON.stringify(e.detail));
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  private readonly ensureUserTx = this.tx((name: string, now: number, actor: string): User => {
    const existing = this.q.userByName.get(name);
    if (existing) return toUser(existing);
    const row = this.q.insertUser.get(name, now)!;
    this.writeAudit({ at: now, actor, action: 'user.create', target: `user:${row.id}`, detail: { name } });
    return toUser(row);
  });

  async ensureUser(name: string, now: number, actor: string): Promise<User> {
    return this.ensureUserTx(name, now, actor);
  }

  async listUsers(): Promise<User[]> {
    return this.q.listUsers.all().map(toUser);
  }

  private readonly createAuthKeyTx = this.tx((k: NewAuthKey, audit: AuditInput): AuthKeyRecord => {
    const row = this.q.insertKey.get(
      k.prefix, k.secretHash, k.userId, JSON.stringify(k.tags), bit(k.reusable), bit(k.ephemeral), bit(k.preauthorized), k.expiresAt, k.createdAt,
    )!;
    // Only the store knows the new id, so it names the target.
    this.writeAudit({ ...audit, target: `authkey:${row.id}`, detail: { prefix: k.prefix, ...audit.detail } });
    return toAuthKey(row);
  });

  async createAuthKey(key: NewAuthKey, audit: AuditInput): Promise<AuthKeyRecord> {
    return this.createAuthKeyTx(key, audit);
  }

  async authKeyByPrefix(prefix: string): Promise<AuthKeyRecord | null> {
    const row = this.q.keyByPrefix.get(prefix);
    return row ? toAuthKey(row) : null;
  }

  async listAuthKeys(): Promise<AuthKeyRecord[]> {
    return this.q.listKeys.all().map(toAuthKey);
  }

  private readonly revokeAuthKeyTx = this.tx((id: number, now: number, audit: AuditInput): boolean => {
    if (this.q.revokeKey.run(now, id).changes === 0) return false;
    this.writeAudit(audit);
    return true;
  });

  async revokeAuthKey(id: number, now: number, audit: AuditInput): Promise<boolean> {
    return this.revokeAuthKeyTx(id, now, audit);
  }

  private readonly registerTx = this.tx((input: RegisterInput): RegisterResult => {
    const { now } = input;
    const existing = this.q.nodeByKey.get(input.nodeKey);
    const endpoints = JSON.stringify(input.endpoints);

    if (input.authKeyId === null) {
      // Reconnect: liveness only, so not audited (as touchNode).
      if (!existing) return { ok: false, reason: 'node-unknown' };
      if (existing.key_expiry !== null && existing.key_expiry <= now) return { ok: false, reason: 'node-expired' };
      return { ok: true, node: toNode(this.q.reconnectNode.get(endpoints, now, existing.id)!), created: false };
    }

    const key = this.q.keyById.get(input.authKeyId);
    if (!key) return { ok: false, reason: 'authkey-unknown' };
    if (key.revoked_at !== null) return { ok: false, reason: 'authkey-revoked' };
    if (key.expires_at !== null && key.expires_at <= now) return { ok: false, reason: 'authkey-expired' };
    if (key.reusable === 0 && key.used_count > 0) return { ok: false, reason: 'authkey-used' };

    let row: NodeRow;
    let created: boolean;
    if (existing) {
      // Re-authentication (also how an expired node comes back): same id, name
      // and addresses; ownership, tags and ephemerality follow the new key.
      const authorized = key.preauthorized === 1 ? 1 : existing.authorized;
      row = this.q.reauthNode.get(
        input.requestedHostname, key.user_id, key.tags, endpoints, key.ephemeral, authorized, key.id, input.keyExpiry, now, existing.id,
      )!;
      created = false;
    } else {
      const ipv4 = nextFreeIpv4(new Set(this.q.allIpv4.all()));
      if (ipv4 === null) return { ok: false, reason: 'address-space-full' };
      const name = this.freeName(sanitizeHostname(input.requestedHostname), null);
      row = this.q.insertNode.get(
        input.nodeKey, input.requestedHostname, name, key.user_id, key.tags, ipv4, ipv6ForIpv4(ipv4), endpoints,
        key.ephemeral, key.preauthorized, key.id, input.keyExpiry, now, now,
      )!;
      created = true;
    }
    this.q.useKey.run(now, key.id);
    this.writeAudit({
      at: now,
      actor: `node:${row.id}`,
      action: created ? 'node.register' : 'node.reauth',
      target: `node:${row.id}`,
      detail: { authKeyId: key.id, name: row.name, ipv4: row.ipv4, ipv6: row.ipv6, authorized: row.authorized === 1, keyExpiry: row.key_expiry },
    });
    return { ok: true, node: toNode(row), created };
  });

  async registerNode(input: RegisterInput): Promise<RegisterResult> {
    return this.registerTx(input);
  }

  async nodeByKey(nodeKey: string): Promise<NodeRecord | null> {
    const row = this.q.nodeByKey.get(nodeKey);
    return row ? toNode(row) : null;
  }

  async nodeById(id: number): Promise<NodeRecord | null> {
    const row = this.q.nodeById.get(id);
    return row ? toNode(row) : null;
  }

  async listNodes(): Promise<NodeRecord[]> {
    return this.q.listNodes.all().map(toNode);
  }

  private readonly updateNodeTx = this.tx((id: number, u: NodeUpdate, audit: AuditInput): NodeRecord | null => {
    const cur = this.q.nodeById.get(id);
    if (!cur) return null;
    const changes: Record<string, unknown> = {};
    let name = cur.name;
    if (u.name !== undefined) {
      const wanted = sanitizeHostname(u.name);
      if (wanted !== cur.name) name = this.freeName(wanted, cur.name);
      changes.name = name;
    }
    if (u.authorized !== undefined) changes.authorized = u.authorized;
    if (u.keyExpiry !== undefined) changes.keyExpiry = u.keyExpiry;
    if (u.tags !== undefined) changes.tags = u.tags;
    const row = this.q.updateNode.get(
      name,
      u.authorized === undefined ? cur.authorized : bit(u.authorized),
      u.keyExpiry === undefined ? cur.key_expiry : u.keyExpiry,
      u.tags === undefined ? cur.tags : JSON.stringify(u.tags),
      id,
    )!;
    // What was actually applied (a rename may differ from what was asked).
    this.writeAudit({ ...audit, detail: { ...audit.detail, changes } });
    return toNode(row);
  });

  async updateNode(id: number, update: NodeUpdate, audit: AuditInput): Promise<NodeRecord | null> {
    return this.updateNodeTx(id, update, audit);
  }

  private readonly touchNodeTx = this.tx((id: number, lastSeen: number, endpoints: string | null): void => {
    this.q.touchNode.run(lastSeen, endpoints, id);
  });

  async touchNode(id: number, lastSeen: number, endpoints?: string[]): Promise<void> {
    this.touchNodeTx(id, lastSeen, endpoints === undefined ? null : JSON.stringify(endpoints));
  }

  private readonly deleteNodeTx = this.tx((id: number, audit: AuditInput): boolean => {
    if (this.q.deleteNode.run(id).changes === 0) return false;
    this.writeAudit(audit);
    return true;
  });

  async deleteNode(id: number, audit: AuditInput): Promise<boolean> {
    return this.deleteNodeTx(id, audit);
  }

  private readonly advertiseTx = this.tx((nodeId: number, prefixes: string[], auto: string[], now: number) => advertiseRoutes(this.r, (e) => this.writeAudit(e), nodeId, prefixes, auto, now));

  async setAdvertisedRoutes(nodeId: number, prefixes: string[], autoApprove: string[], now: number): Promise<boolean> {
    return this.advertiseTx(nodeId, prefixes, autoApprove, now);
  }

  async listRoutes(): Promise<RouteRecord[]> {
    return listRoutes(this.r);
  }

  private readonly approveTx = this.tx((id: number, approved: boolean, audit: AuditInput) => approveRoute(this.r, (e) => this.writeAudit(e), id, approved, audit));

  async setRouteApproval(id: number, approved: boolean, audit: AuditInput): Promise<RouteRecord | null> {
    return this.approveTx(id, approved, audit);
  }

  async getPolicy(): Promise<PolicyRecord | null> {
    return getPolicy(this.r);
  }

  private readonly policyTx = this.tx((text: string, now: number, audit: AuditInput) => setPolicy(this.r, (e) => this.writeAudit(e), text, now, audit));

  async setPolicy(text: string, now: number, audit: AuditInput): Promise<void> {
    this.policyTx(text, now, audit);
  }

  private readonly auditTx = this.tx((entry: AuditInput): void => this.writeAudit(entry));

  async audit(entry: AuditInput): Promise<void> {
    this.auditTx(entry);
  }

  async listAudit(limit: number): Promise<AuditEntry[]> {
    return this.q.listAudit.all(limit).map(toAudit);
  }
}
