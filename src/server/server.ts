// `meshd server`: the coordination server. It owns its state directory (the
// server's private key and the bootstrap admin token, both 0600, and the
// SQLite database), serves the sealed node API and the admin API over HTTP
// or HTTPS, and keeps every node's netmap current.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { FreshnessGuard } from '../control/freshness.js';
import { PATHS, type MapResponse, type RegisterResponse, type ServerKeyResponse } from '../control/messages.js';
import { X25519PrivateKey } from '../crypto/x25519.js';
import { encodeKeyBase64 } from '../config/keys.js';
import type { Logger } from '../daemon/log.js';
import { loadOrCreateKey, writeSecretFile } from '../state/secrets.js';
import { ADMIN, serveAdmin, type AdminContext } from './admin.js';
import { parseAuthKey, secretMatches } from './authkeys.js';
import { endpointsOf, isSealedPath, parseMap, parseRegister, serveSealed, type SealedCall } from './control.js';
import { ApiError, sendError, sendJson } from './http.js';
import { Mesh, policyNode } from './mesh.js';
import { checkPolicy } from './policy.js';
import { parseHostinfo } from './routes.js';
import { autoApproves, mayUseTag, parsePolicy } from '../policy/index.js';
import type { Hostinfo } from '../control/messages.js';
import { selfOf } from './netmap.js';
import { SqliteStore } from './sqliteStore.js';
import type { NodeRecord, RegisterRefusal, Store } from './store.js';
import { MetricsServer } from '../metrics/http.js';
import { serverMetrics, type ServerMetrics } from '../metrics/server.js';

export const DEFAULT_NODE_KEY_EXPIRY_MS = 180 * 86_400_000;
export const DEFAULT_EPHEMERAL_TIMEOUT_MS = 120_000;
/** Open HTTP connections the server accepts (nodes hold one each while they poll). */
export const MAX_CONNECTIONS = 50_000;
/** How stale a node's stored last-seen may get while it polls (less when the ephemeral timeout is short). */
export const LAST_SEEN_WRITE_MS = 30_000;

export interface ServerOptions {
  stateDir: string;
  /** "host:port", ":port" or "[v6]:port". */
  listen: string;
  /** "sqlite:PATH"; default sqlite:<stateDir>/meshd.db. */
  db?: string;
  log: Logger;
  tls?: { cert: string; key: string };
  nodeKeyExpiryMs?: number | null;
  ephemeralTimeoutMs?: number;
  /** A policy to put in force at start (`--policy FILE`); refused, and the start fails, if it does not check. */
  policy?: { text: string; source: string };
  now?: () => number;
  pollMs?: number;
  /** `--metrics ADDR`: serve Prometheus metrics on host:port (meant for localhost); off when absent. */
  metrics?: string;
}

export class ServerError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ServerError';
  }
}

const REFUSALS: Record<RegisterRefusal, [number, string]> = {
  'authkey-unknown': [401, 'auth key is not known to this server'],
  'authkey-revoked': [401, 'auth key was revoked'],
  'authkey-expired': [401, 'auth key has expired'],
  'authkey-used': [401, 'auth key is single-use and was already used'],
  'node-unknown': [401, 'this node is not registered with the server: run meshd up with --authkey'],
  'node-expired': [401, 'this node\'s key has expired: log in again with meshd up --authkey'],
  'address-space-full': [503, 'no free overlay address is left'],
};

export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ServerError('ELISTEN', `--listen "${text}" is not host:port, :port or [v6]:port`);
  return { host: m[1] ?? (m[2] || '::'), port };
}

export function parseDb(text: string | undefined, stateDir: string): string {
  if (text === undefined) return join(stateDir, 'meshd.db');
  if (text.startsWith('sqlite:')) return text.slice('sqlite:'.length);
  if (/^postgres(ql)?:\/\//.test(text)) throw new ServerError('EDB', 'PostgreSQL is not supported yet: use --db sqlite:PATH');
  throw new ServerError('EDB', `--db "${text}" must be sqlite:PATH`);
}

export class CoordinationServer {
  private http: Server | null = null;
  private readonly freshness: FreshnessGuard;
  private readonly mesh: Mesh;
  private readonly now: () => number;
  private readonly admin: AdminContext;
  private readonly lastSeenWriteMs: number;
  private readonly metrics: ServerMetrics;
  private metricsServer: MetricsServer | null = null;

  private constructor(
    readonly o: ServerOptions,
    private readonly key: X25519PrivateKey,
    private readonly adminTokenHash: Buffer,
    readonly store: Store,
  ) {
    this.now = o.now ?? Date.now;
    this.lastSeenWriteMs = Math.min(LAST_SEEN_WRITE_MS, (o.ephemeralTimeoutMs ?? DEFAULT_EPHEMERAL_TIMEOUT_MS) / 4);
    this.freshness = new FreshnessGuard(this.now());
    this.mesh = new Mesh({
      store,
      now: this.now,
      ephemeralTimeoutMs: o.ephemeralTimeoutMs ?? DEFAULT_EPHEMERAL_TIMEOUT_MS,
      onError: (err) => o.log.error({ err: err.message }, 'mesh upkeep failed'),
      pollMs: o.pollMs,
    });
    this.admin = { store, mesh: this.mesh, now: this.now, nodeKeyExpiryMs: o.nodeKeyExpiryMs === undefined ? DEFAULT_NODE_KEY_EXPIRY_MS : o.nodeKeyExpiryMs };
    const mesh = this.mesh;
    this.metrics = serverMetrics({ listNodes: () => store.listNodes(), listAuthKeys: () => store.listAuthKeys(), isOnline: (k) => mesh.isOnline(k), stats: mesh.stats, now: this.now });
  }

  static async start(o: ServerOptions): Promise<CoordinationServer> {
    const listen = parseListen(o.listen);
    const dbPath = parseDb(o.db, o.stateDir);
    mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
    chmodSync(o.stateDir, 0o700);
    const key = X25519PrivateKey.fromBytes(loadOrCreateKey(join(o.stateDir, 'server.key')));
    const token = loadOrCreateAdminToken(join(o.stateDir, 'admin.token'));
    const store = SqliteStore.open(dbPath);
    const s = new CoordinationServer(o, key, createHash('sha256').update(token).digest(), store);
    try {
      await s.loadPolicy();
    } catch (err) {
      await store.close();
      throw err;
    }
    const tls = o.tls ? { cert: readFileSync(o.tls.cert), key: readFileSync(o.tls.key) } : null;
    const handler = (req: IncomingMessage, res: ServerResponse) => void s.serve(req, res);
    s.http = tls ? createHttpsServer(tls, handler) : createHttpServer(handler);
    s.http.requestTimeout = 60_000;
    // Every node parks one long poll; this bounds what many clients can hold open at once.
    s.http.maxConnections = MAX_CONNECTIONS;
    s.http.headersTimeout = 10_000;
    await new Promise<void>((resolve, reject) => {
      s.http!.once('error', (err: NodeJS.ErrnoException) => reject(new ServerError('ELISTEN', `cannot listen on ${o.listen}: ${err.code ?? err.message}`)));
      s.http!.listen(listen.port, listen.host, resolve);
    }).catch(async (err) => {
      await store.close();
      throw err;
    });
    if (o.metrics) {
      s.metricsServer = await MetricsServer.listen(o.metrics, s.metrics.registry, (msg) => o.log.warn(msg)).catch(async (err: Error) => {
        await s.close();
        throw new ServerError('EMETRICS', err.message);
      });
    }
    s.mesh.start();
    return s;
  }

  get publicKey(): string {
    return encodeKeyBase64(this.key.publicKey);
  }

  get port(): number {
    return (this.http?.address() as AddressInfo).port;
  }

  get adminTokenPath(): string {
    return join(this.o.stateDir, 'admin.token');
  }

  get stats() {
    return this.mesh.stats;
  }

  /** The metrics listener's port, null without --metrics. */
  get metricsPort(): number | null {
    return this.metricsServer?.port ?? null;
  }

  async close(): Promise<void> {
    this.mesh.stop();
    await this.metricsServer?.close();
    this.metricsServer = null;
    await new Promise<void>((resolve) => {
      if (!this.http) return resolve();
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
    await this.store.close();
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = this.now();
    const t0 = performance.now();
    let status = 200;
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    try {
      if (path === PATHS.key && req.method === 'GET') {
        const body: ServerKeyResponse = { serverKey: this.publicKey, time: this.now() };
        sendJson(res, 200, body);
      } else if (path === '/health') {
        sendJson(res, 200, { ok: true });
      } else if (isSealedPath(path)) {
        await serveSealed(req, res, path, this.key, this.freshness, this.now, (call) => this.node(path, call));
      } else if (path === ADMIN || path.startsWith(`${ADMIN}/`)) {
        this.checkAdmin(req);
        sendJson(res, 200, await serveAdmin(this.admin, req, path, url.searchParams));
      } else {
        throw new ApiError(404, 'no-such-endpoint', `no endpoint ${path}`);
      }
    } catch (err) {
      const e = sendError(res, err);
      status = e.status;
      if (e.status >= 500) this.o.log.error({ err: (err as Error).message, path }, 'request failed');
    } finally {
      this.o.log.debug({ method: req.method, path, status, ms: this.now() - started }, 'http');
      this.metrics.observe(path, req.method, status, (performance.now() - t0) / 1000);
    }
  }

  private checkAdmin(req: IncomingMessage): void {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    const given = m ? createHash('sha256').update(m[1]).digest() : Buffer.alloc(32);
    if (!m || !timingSafeEqual(given, this.adminTokenHash)) {
      throw new ApiError(401, 'admin-token', `admin API needs "Authorization: Bearer <token>" with the token from ${this.adminTokenPath}`);
    }
  }

  private async node(path: string, call: SealedCall): Promise<unknown> {
    const endpoints = endpointsOf(call.payload, call.remoteAddress);
    switch (path) {
      case PATHS.register:
        return this.register(call, endpoints);
      case PATHS.map:
        return this.map(call, endpoints);
      default:
        return this.logout(call);
    }
  }

  /** The stored policy, replaced first by --policy if given (which must check); else the default. */
  private async loadPolicy(): Promise<void> {
    await this.mesh.settle();
    if (this.o.policy) {
      let checked;
      try {
        checked = checkPolicy(this.o.policy.text, this.mesh.policyNodes);
      } catch (err) {
        throw new ServerError('EPOLICY', `${this.o.policy.source}:${(err as Error).message.match(/^\d+:/) ? '' : ' '}${(err as Error).message}`);
      }
      const stored = await this.store.getPolicy();
      if (stored?.text !== this.o.policy.text) {
        await this.store.setPolicy(this.o.policy.text, this.now(), { at: this.now(), actor: 'server', action: 'policy.set', target: 'policy', detail: { source: this.o.policy.source } });
      }
      this.mesh.setPolicy(checked.policy);
      return;
    }
    const stored = await this.store.getPolicy();
    if (stored) this.mesh.setPolicy(parsePolicy(stored.text));
    else this.o.log.warn('no policy set: every node may reach every node (meshd admin policy set FILE to restrict)');
  }

  /**
   * What the node asked for beyond joining: its tags (only those its auth
   * key carries or tagOwners lets its owner use) and its advertised routes
   * (auto-approved where the policy's autoApprovers say so). Applied when it
   * differs from what this node last sent.
   */
  private async applyHostinfo(node: NodeRecord, h: Hostinfo | null): Promise<void> {
    if (!h) return;
    const seen = JSON.stringify(h);
    if (this.mesh.hostinfoSeen.get(node.nodeKey) === seen) return;
    const policy = this.mesh.policy;
    const key = node.authKeyId === null ? null : (await this.store.listAuthKeys()).find((k) => k.id === node.authKeyId);
    const keyTags = key?.tags ?? [];
    const user = node.userId === null ? null : ((await this.store.listUsers()).find((u) => u.id === node.userId)?.name ?? null);
    for (const t of h.advertiseTags) {
      if (!keyTags.includes(t) && !mayUseTag(policy, t, { user, tags: keyTags })) {
        throw new ApiError(403, 'tag-not-allowed', `${t} is not a tag of this node's auth key, and the policy's tagOwners does not let ${user ?? keyTags.join(',')} use it`);
      }
    }
    const tags = [...new Set([...keyTags, ...h.advertiseTags])].sort();
    let changed = false;
    if (tags.join(',') !== [...node.tags].sort().join(',')) {
      await this.store.updateNode(node.id, { tags }, { at: this.now(), actor: `node:${node.id}`, action: 'node.tags', target: `node:${node.id}`, detail: { tags } });
      changed = true;
    }
    const pn = policyNode({ ...node, tags }, user, []);
    const auto = h.advertiseRoutes.filter((r) => autoApproves(policy, r, pn));
    if (await this.store.setAdvertisedRoutes(node.id, h.advertiseRoutes, auto, this.now())) changed = true;
    this.mesh.hostinfoSeen.set(node.nodeKey, seen);
    if (changed) this.mesh.changed(null);
  }

  private async register(call: SealedCall, endpoints: string[]): Promise<RegisterResponse> {
    const req = parseRegister(call.payload);
    const hostinfo = parseHostinfo(call.payload);
    const now = this.now();
    let authKeyId: number | null = null;
    if (req.authKey !== undefined) {
      const parts = parseAuthKey(req.authKey);
      if (!parts) throw new ApiError(401, 'authkey-malformed', 'auth key is malformed (expected mskey-<prefix>-<secret>)');
      const rec = await this.store.authKeyByPrefix(parts.prefix);
      if (!rec || !secretMatches(parts.secret, rec.secretHash)) throw new ApiError(401, 'authkey-unknown', REFUSALS['authkey-unknown'][1]);
      authKeyId = rec.id;
    } else if (!(await this.store.nodeByKey(call.nodeKey))) {
      throw new ApiError(401, 'node-unknown', REFUSALS['node-unknown'][1]);
    }
    call.admit();
    const expiry = this.admin.nodeKeyExpiryMs;
    const r = await this.store.registerNode({
      nodeKey: call.nodeKey,
      requestedHostname: req.hostname,
      endpoints,
      authKeyId,
      now,
      keyExpiry: expiry === null ? null : now + expiry,
    });
    if (!r.ok) {
      const [status, message] = REFUSALS[r.reason];
      throw new ApiError(status, r.reason, message);
    }
    this.mesh.seen(call.nodeKey);
    this.mesh.changed(call.nodeKey);
    if (r.created) this.o.log.info({ node: r.node.id, name: r.node.name, ipv4: r.node.ipv4 }, 'node registered');
    this.mesh.hostinfoSeen.delete(r.node.nodeKey);
    await this.applyHostinfo(r.node, hostinfo);
    const users = await this.store.listUsers();
    const user = users.find((u) => u.id === r.node.userId)?.name ?? null;
    return { node: selfOf(r.node, user) };
  }

  private async map(call: SealedCall, endpoints: string[]): Promise<MapResponse> {
    const req = parseMap(call.payload);
    const hostinfo = parseHostinfo(call.payload);
    const node = await this.store.nodeByKey(call.nodeKey);
    if (!node) throw new ApiError(401, 'node-unknown', REFUSALS['node-unknown'][1]);
    const now = this.now();
    if (node.keyExpiry !== null && node.keyExpiry <= now) throw new ApiError(401, 'node-expired', REFUSALS['node-expired'][1]);
    call.admit();
    this.mesh.seen(call.nodeKey);
    const moved = endpoints.length > 0 && endpoints.join(',') !== node.endpoints.join(',');
    // Last-seen is liveness, kept per request in memory by the mesh; the store
    // gets it only every LAST_SEEN_WRITE_MS (or with new endpoints). Writing it
    // on every poll was one durable commit (an fsync) per node per change:
    // 1,000 nodes answering one change meant 1,000 fsyncs on the event loop.
    if (moved || node.lastSeen === null || now - node.lastSeen >= this.lastSeenWriteMs) await this.store.touchNode(node.id, now, moved ? endpoints : undefined);
    if (moved) this.mesh.changed(call.nodeKey, true);
    await this.applyHostinfo(node, hostinfo);
    const r = await this.mesh.poll(call.nodeKey, req.since, req.wait, call.closed);
    if (!r) throw new ApiError(401, 'node-unknown', 'this node was removed from the mesh');
    return r;
  }

  private async logout(call: SealedCall): Promise<{ loggedOut: true }> {
    const node = await this.store.nodeByKey(call.nodeKey);
    if (!node) throw new ApiError(401, 'node-unknown', REFUSALS['node-unknown'][1]);
    call.admit();
    await this.store.deleteNode(node.id, { at: this.now(), actor: `node:${node.id}`, action: 'node.logout', target: `node:${node.id}`, detail: { name: node.name } });
    this.mesh.forget(call.nodeKey);
    this.mesh.changed(call.nodeKey);
    return { loggedOut: true };
  }
}

/** The bootstrap admin token: made once, 0600, read back on every start. */
function loadOrCreateAdminToken(path: string): string {
  if (existsSync(path)) {
    const t = readFileSync(path, 'utf8').trim();
    if (t) return t;
  }
  const token = `msadm-${randomBytes(32).toString('base64url')}`;
  writeSecretFile(path, `${token}\n`);
  return token;
}
