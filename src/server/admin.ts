// The admin API: auth keys, nodes, users and the audit log, behind a bearer
// token. JSON in and out; every change is audited by the store in the same
// transaction and announced to the mesh.
import type { IncomingMessage } from 'node:http';
import { formatIp, parseIp } from '../net/ipaddr.js';
import { generateAuthKey, parseDuration } from './authkeys.js';
import { ApiError, asObject, badRequest, optBool, optString, optStringArray, readJson } from './http.js';
import { isActive } from './netmap.js';
import type { Mesh } from './mesh.js';
import type { AuthKeyRecord, NodeRecord, Store } from './store.js';
import { checkPolicy, DEFAULT_POLICY_TEXT } from './policy.js';
import { routeView } from './routes.js';

export const ADMIN = '/meshd/v1/admin';
const TAG = /^tag:[a-z0-9][a-z0-9-]{0,62}$/;
const USER = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export interface AdminContext {
  store: Store;
  mesh: Mesh;
  now: () => number;
  /** Key expiry given to nodes, ms; null for never. */
  nodeKeyExpiryMs: number | null;
}

const audit = (ctx: AdminContext, action: string, target: string, detail: Record<string, unknown> = {}) => ({ at: ctx.now(), actor: 'admin', action, target, detail });

export function keyView(k: AuthKeyRecord, users: Map<number, string>, now: number) {
  const state = k.revokedAt !== null ? 'revoked' : k.expiresAt !== null && k.expiresAt <= now ? 'expired' : !k.reusable && k.usedCount > 0 ? 'used' : 'valid';
  return {
    id: k.id,
    prefix: k.prefix,
    user: k.userId === null ? null : (users.get(k.userId) ?? null),
    tags: k.tags,
    reusable: k.reusable,
    ephemeral: k.ephemeral,
    preauthorized: k.preauthorized,
    createdAt: k.createdAt,
    expiresAt: k.expiresAt,
    revokedAt: k.revokedAt,
    usedCount: k.usedCount,
    state,
  };
}

export function nodeView(n: NodeRecord, users: Map<number, string>, ctx: AdminContext) {
  const now = ctx.now();
  return {
    id: n.id,
    name: n.name,
    hostname: n.requestedHostname,
    user: n.userId === null ? null : (users.get(n.userId) ?? null),
    tags: n.tags,
    publicKey: n.nodeKey,
    ipv4: n.ipv4,
    ipv6: n.ipv6,
    endpoints: n.endpoints,
    ephemeral: n.ephemeral,
    authorized: n.authorized,
    online: ctx.mesh.isOnline(n.nodeKey),
    expired: n.keyExpiry !== null && n.keyExpiry <= now,
    active: isActive(n, now),
    keyExpiry: n.keyExpiry,
    lastSeen: n.lastSeen,
    createdAt: n.createdAt,
  };
}

async function userNames(store: Store): Promise<Map<number, string>> {
  return new Map((await store.listUsers()).map((u) => [u.id, u.name]));
}

/** A node by id, name, overlay IP or public key. */
async function findNode(store: Store, ref: string | undefined): Promise<NodeRecord> {
  if (ref === undefined) throw new ApiError(404, 'no-such-node', 'name a node: its id, name, overlay IP or public key');
  const nodes = await store.listNodes();
  const ip = parseIp(ref);
  const text = ip ? formatIp(ip) : ref;
  const n = nodes.find((x) => String(x.id) === ref || x.name === ref || x.ipv4 === text || x.ipv6 === text || x.nodeKey === ref);
  if (!n) throw new ApiError(404, 'no-such-node', `no node "${ref}" (give an id, name, overlay IP or public key)`);
  return n;
}

async function findKey(store: Store, ref: string): Promise<AuthKeyRecord> {
  const keys = await store.listAuthKeys();
  const k = keys.find((x) => String(x.id) === ref || x.prefix === ref || ref.startsWith(`mskey-${x.prefix}-`) || ref === `mskey-${x.prefix}`);
  if (!k) throw new ApiError(404, 'no-such-key', `no auth key "${ref}" (give its id or prefix)`);
  return k;
}

export async function serveAdmin(ctx: AdminContext, req: IncomingMessage, path: string, query: URLSearchParams): Promise<unknown> {
  const { store } = ctx;
  const parts = path.slice(ADMIN.length).split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      throw badRequest(`"${p}" in the path is not valid percent-encoding`);
    }
  });
  const method = req.method ?? 'GET';
  const route = parts[0] === 'policy' && parts.length === 2 ? `${method} policy ${parts[1]}` : `${method} ${parts[0] ?? ''}${parts.length > 2 ? ` ${parts[2]}` : ''}`;
  const ref = parts[1];
  switch (route) {
    case 'GET keys': {
      const users = await userNames(store);
      return { keys: (await store.listAuthKeys()).map((k) => keyView(k, users, ctx.now())) };
    }
    case 'POST keys': {
      const body = asObject(await readJson(req, 64 * 1024));
      const tags = optStringArray(body, 'tags', 32, 64) ?? [];
      for (const t of tags) if (!TAG.test(t)) throw badRequest(`tag "${t}" must look like tag:name (lowercase letters, digits, '-')`, 'bad-tag');
      let user = optString(body, 'user', 64);
      if (user !== undefined && tags.length) throw badRequest('give a user or tags, not both: tagged nodes belong to their tags', 'bad-owner');
      if (user === undefined && !tags.length) user = 'default';
      if (user !== undefined && !USER.test(user)) throw badRequest(`user "${user}" may hold letters, digits and . _ @ -`, 'bad-user');
      const expiryText = optString(body, 'expiry', 32) ?? '90d';
      const expiryMs = parseDuration(expiryText);
      if (expiryMs === null || expiryMs <= 0) throw badRequest(`expiry "${expiryText}" is not a duration like 90d, 12h, 30m`, 'bad-expiry');
      // Every field is checked before anything is written: a refused request creates no user.
      const reusable = optBool(body, 'reusable') ?? false;
      const ephemeral = optBool(body, 'ephemeral') ?? false;
      const preauthorized = optBool(body, 'preauthorized') ?? false;
      const now = ctx.now();
      const owner = user !== undefined ? await store.ensureUser(user, now, 'admin') : null;
      const gen = generateAuthKey();
      const rec = await store.createAuthKey(
        {
          prefix: gen.prefix,
          secretHash: gen.secretHash,
          userId: owner?.id ?? null,
          tags,
          reusable,
          ephemeral,
          preauthorized,
          expiresAt: now + expiryMs,
          createdAt: now,
        },
        audit(ctx, 'authkey.create', 'authkey:?', { prefix: gen.prefix, user: user ?? null, tags }),
      );
      return { key: gen.key, ...keyView(rec, await userNames(store), now) };
    }
    case 'POST keys revoke': {
      const k = await findKey(store, ref);
      if (!(await store.revokeAuthKey(k.id, ctx.now(), audit(ctx, 'authkey.revoke', `authkey:${k.id}`, { prefix: k.prefix })))) {
        throw new ApiError(409, 'already-revoked', `auth key ${k.prefix} is already revoked`);
      }
      return { revoked: k.id };
    }
    case 'GET nodes': {
      const users = await userNames(store);
      return { nodes: (await store.listNodes()).map((n) => nodeView(n, users, ctx)) };
    }
    case 'DELETE nodes': {
      const n = await findNode(store, ref);
      await store.deleteNode(n.id, audit(ctx, 'node.delete', `node:${n.id}`, { name: n.name }));
      ctx.mesh.forget(n.nodeKey);
      ctx.mesh.changed(n.nodeKey);
      return { deleted: n.id };
    }
    case 'POST nodes expire':
      return updateNode(ctx, ref, 'node.expire', () => ({ keyExpiry: ctx.now() }));
    case 'POST nodes approve':
      return updateNode(ctx, ref, 'node.approve', () => ({ authorized: true }));
    case 'POST nodes rename': {
      const body = asObject(await readJson(req, 64 * 1024));
      const name = optString(body, 'name', 63);
      if (!name || !NAME.test(name)) throw badRequest(`name "${name ?? ''}" must be a DNS label: lowercase letters, digits and '-'`, 'bad-name');
      return updateNode(ctx, ref, 'node.rename', () => ({ name }));
    }
    case 'GET routes':
      return { routes: await routeList(ctx) };
    case 'POST routes approve':
    case 'POST routes reject': {
      const approve = parts[2] === 'approve';
      const all = await store.listRoutes();
      const picked = all.filter((r) => String(r.id) === ref || r.prefix === ref);
      if (!picked.length) throw new ApiError(404, 'no-such-route', `no advertised route "${ref}" (give its id or prefix; see meshd admin routes list)`);
      for (const r of picked) {
        await store.setRouteApproval(r.id, approve, audit(ctx, approve ? 'route.approve' : 'route.reject', `node:${r.nodeId}`, { prefix: r.prefix, route: r.id }));
      }
      ctx.mesh.changed(null);
      const ids = new Set(picked.map((r) => r.id));
      return { routes: (await routeList(ctx)).filter((r) => ids.has(r.id)) };
    }
    case 'GET policy': {
      const p = await store.getPolicy();
      return p ? { text: p.text, default: false, updatedAt: p.updatedAt } : { text: DEFAULT_POLICY_TEXT, default: true, updatedAt: null };
    }
    case 'POST policy check':
    case 'POST policy set': {
      const body = asObject(await readJson(req, 1 << 20));
      const text = optString(body, 'text', 1 << 20);
      if (text === undefined) throw badRequest('give the policy as {"text": "..."}');
      await ctx.mesh.settle();
      const checked = checkPolicy(text, ctx.mesh.policyNodes);
      if (parts[1] === 'set') {
        await store.setPolicy(text, ctx.now(), audit(ctx, 'policy.set', 'policy', { bytes: text.length, tests: checked.tests }));
        ctx.mesh.setPolicy(checked.policy);
      }
      return { ok: true, tests: checked.tests };
    }
    case 'GET users':
      return { users: await store.listUsers() };
    case 'GET audit': {
      const limit = Math.min(Number(query.get('limit') ?? 100) || 100, 10_000);
      return { audit: await store.listAudit(limit) };
    }
    default:
      throw new ApiError(404, 'no-such-endpoint', `no admin endpoint ${method} ${path}`);
  }
}

async function updateNode(ctx: AdminContext, ref: string, action: string, change: () => { name?: string; authorized?: boolean; keyExpiry?: number }) {
  const n = await findNode(ctx.store, ref);
  const update = change();
  const after = await ctx.store.updateNode(n.id, update, audit(ctx, action, `node:${n.id}`, { name: n.name, ...update }));
  if (!after) throw new ApiError(404, 'no-such-node', `node ${ref} is gone`);
  ctx.mesh.changed(n.nodeKey);
  return { node: nodeView(after, await userNames(ctx.store), ctx) };
}

async function routeList(ctx: AdminContext) {
  await ctx.mesh.settle();
  const names = new Map((await ctx.store.listNodes()).map((n) => [n.id, n.name]));
  return (await ctx.store.listRoutes()).map((r) => routeView(r, ctx.mesh.routes, (id) => names.get(id) ?? `node ${id}`));
}
