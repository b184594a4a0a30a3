// SqliteStore against the Store contract: registration and every refusal,
// allocation and reuse, renames, audit rows, persistence, migrations, file
// modes, and crash consistency with a child process killed by SIGKILL.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ipv6ForIpv4, nextFreeIpv4 } from '../../src/server/ipam.js';
import { latestVersion, migrate, MIGRATIONS, schemaVersion } from '../../src/server/migrations.js';
import { SqliteStore } from '../../src/server/sqliteStore.js';
import type { AuditInput, NewAuthKey, RegisterInput } from '../../src/server/store.js';

// The real allocator, except when a test declares the address space full.
const ipam = vi.hoisted(() => ({ full: false }));
vi.mock('../../src/server/ipam.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/server/ipam.js')>();
  return { ...real, nextFreeIpv4: (used: ReadonlySet<string>) => (ipam.full ? null : real.nextFreeIpv4(used)) };
});

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const audit = (action: string, target = ''): AuditInput => ({ at: 500, actor: 'admin', action, target, detail: { why: 'test' } });

let prefixes = 0;
const newKey = (over: Partial<NewAuthKey> = {}): NewAuthKey => ({
  prefix: `p${++prefixes}`, secretHash: 'ab'.repeat(32), userId: null, tags: ['tag:server'], reusable: true,
  ephemeral: false, preauthorized: true, expiresAt: null, createdAt: 1000, ...over,
});
const reg = (nodeKey: string, authKeyId: number | null, over: Partial<RegisterInput> = {}): RegisterInput => ({
  nodeKey, requestedHostname: 'web', endpoints: ['192.0.2.1:41641'], authKeyId, now: 2000, keyExpiry: null, ...over,
});

describe('SqliteStore (in memory)', () => {
  let store: SqliteStore;
  beforeEach(() => {
    store = SqliteStore.open(':memory:');
  });
  afterEach(async () => {
    ipam.full = false;
    await store.close();
  });
  const actions = async () => (await store.listAudit(1000)).map((e) => e.action).reverse();
  const mustRegister = async (input: RegisterInput) => {
    const r = await store.registerNode(input);
    if (!r.ok) throw new Error(`refused: ${r.reason}`);
    return r;
  };

  it('creates a user once and audits it once', async () => {
    const a = await store.ensureUser('alice', 100, 'admin');
    expect(a).toEqual({ id: a.id, name: 'alice', createdAt: 100 });
    expect(await store.ensureUser('alice', 200, 'admin')).toEqual(a);
    await store.ensureUser('bob', 300, 'server');
    expect((await store.listUsers()).map((u) => u.name)).toEqual(['alice', 'bob']);
    const log = await store.listAudit(10);
    expect(log.map((e) => [e.actor, e.action, e.target])).toEqual([['server', 'user.create', expect.stringMatching(/^user:\d+$/)], ['admin', 'user.create', `user:${a.id}`]]);
  });

  it('stores auth keys with typed fields, finds them by prefix, audits creation with the new id', async () => {
    const alice = await store.ensureUser('alice', 1, 'admin');
    const k = await store.createAuthKey(newKey({ prefix: 'abc', userId: alice.id, tags: [], reusable: false, ephemeral: true, preauthorized: false, expiresAt: 9000 }), audit('authkey.create'));
    expect(k).toEqual({ id: k.id, prefix: 'abc', secretHash: 'ab'.repeat(32), userId: alice.id, tags: [], reusable: false, ephemeral: true, preauthorized: false, expiresAt: 9000, createdAt: 1000, revokedAt: null, usedCount: 0, lastUsedAt: null });
    expect(await store.authKeyByPrefix('abc')).toEqual(k);
    expect(await store.authKeyByPrefix('nope')).toBeNull();
    await expect(store.createAuthKey(newKey({ prefix: 'abc' }), audit('authkey.create'))).rejects.toThrow(/UNIQUE/);
    expect(await store.listAuthKeys()).toEqual([k]);
    const [entry] = await store.listAudit(1);
    expect(entry).toMatchObject({ action: 'authkey.create', target: `authkey:${k.id}`, detail: { prefix: 'abc', why: 'test' } });
  });

  it('revokes a key once', async () => {
    const k = await store.createAuthKey(newKey(), audit('authkey.create'));
    expect(await store.revokeAuthKey(k.id, 700, audit('authkey.revoke', `authkey:${k.id}`))).toBe(true);
    expect(await store.revokeAuthKey(k.id, 800, audit('authkey.revoke', `authkey:${k.id}`))).toBe(false);
    expect(await store.revokeAuthKey(999, 800, audit('authkey.revoke', 'authkey:999'))).toBe(false);
    expect((await store.authKeyByPrefix(k.prefix))!.revokedAt).toBe(700);
    expect(await actions()).toEqual(['authkey.create', 'authkey.revoke']);
  });

  it('registers a new node: first address, derived IPv6, sanitized name, owner and flags from the key', async () => {
    const alice = await store.ensureUser('alice', 1, 'admin');
    const k = await store.createAuthKey(newKey({ userId: alice.id, tags: [], ephemeral: true, preauthorized: false }), audit('authkey.create'));
    const r = await mustRegister(reg('nk1', k.id, { requestedHostname: 'Web Server.local', keyExpiry: 50_000 }));
    expect(r.created).toBe(true);
    expect(r.node).toEqual({
      id: r.node.id, nodeKey: 'nk1', requestedHostname: 'Web Server.local', name: 'web-server-local', userId: alice.id, tags: [],
      ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::6440:1', endpoints: ['192.0.2.1:41641'], ephemeral: true, authorized: false,
      authKeyId: k.id, keyExpiry: 50_000, createdAt: 2000, lastSeen: 2000,
    });
    expect(await store.nodeByKey('nk1')).toEqual(r.node);
    expect(await store.nodeById(r.node.id)).toEqual(r.node);
    expect(await store.nodeByKey('other')).toBeNull();
    expect(await store.authKeyByPrefix(k.prefix)).toMatchObject({ usedCount: 1, lastUsedAt: 2000 });
    const [entry] = await store.listAudit(1);
    expect(entry).toMatchObject({ at: 2000, actor: `node:${r.node.id}`, action: 'node.register', target: `node:${r.node.id}`, detail: { authKeyId: k.id, ipv4: '100.64.0.1', name: 'web-server-local' } });
  });

  it('allocates addresses in order and reuses the address and name of a deleted node', async () => {
    const k = await store.createAuthKey(newKey(), audit('authkey.create'));
    const nodes = [];
    for (let i = 0; i < 4; i++) nodes.push((await mustRegister(reg(`nk${i}`, k.id))).node);
    expect(nodes.map((n) => [n.name, n.ipv4])).toEqual([['web', '100.64.0.1'], ['web-1', '100.64.0.2'], ['web-2', '100.64.0.3'], ['web-3', '100.64.0.4']]);
    expect(await store.deleteNode(nodes[1].id, audit('node.delete', `node:${nodes[1].id}`))).toBe(true);
    expect(await store.deleteNode(nodes[1].id, audit('node.delete', `node:${nodes[1].id}`))).toBe(false);
    const again = (await mustRegister(reg('nk-new', k.id))).node;
    expect([again.name, again.ipv4, again.ipv6]).toEqual(['web-1', '100.64.0.2', 'fd7a:115c:a1e0::6440:2']);
    expect(again.id).toBeGreaterThan(nodes[3].id); // ids are never reused: audit rows name them
    expect(await store.nodeById(nodes[1].id)).toBeNull();
    expect((await store.listNodes()).map((n) => n.ipv4)).toEqual(['100.64.0.1', '100.64.0.3', '100.64.0.4', '100.64.0.2']);
    expect(await actions()).toEqual(['authkey.create', ...Array(4).fill('node.register'), 'node.delete', 'node.register']);
  });

  it('gives every node a distinct DNS-safe name, long and prefix-sharing ones too', async () => {
    const k = await store.createAuthKey(newKey(), audit('authkey.create'));
    const long = 'x'.repeat(70);
    const asked = ['web', 'webserver', 'WEB', 'web-1', 'web', long, long, ''];
    const names = [];
    for (const [i, h] of asked.entries()) names.push((await mustRegister(reg(`nk${i}`, k.id, { requestedHostname: h }))).node.name);
    expect(names).toEqual(['web', 'webserver', 'web-1', 'web-1-1', 'web-2', 'x'.repeat(63), `${'x'.repeat(61)}-1`, 'node']);
  });

  it('refuses unknown, revoked and expired keys, writing nothing', async () => {
    const revoked = await store.createAuthKey(newKey(), audit('authkey.create'));
    await store.revokeAuthKey(revoked.id, 1500, audit('authkey.revoke'));
    const expired = await store.createAuthKey(newKey({ expiresAt: 2000 }), audit('authkey.create'));
    const before = await store.listAudit(100);
    expect(await store.registerNode(reg('nk', 12345))).toEqual({ ok: false, reason: 'authkey-unknown' });
    expect(await store.registerNode(reg('nk', revoked.id))).toEqual({ ok: false, reason: 'authkey-revoked' });
    expect(await store.registerNode(reg('nk', expired.id, { now: 2000 }))).toEqual({ ok: false, reason: 'authkey-expired' });
    expect(await store.registerNode(reg('nk', expired.id, { now: 3000 }))).toEqual({ ok: false, reason: 'authkey-expired' });
    expect(await store.listNodes()).toEqual([]);
    expect(await store.listAudit(100)).toEqual(before);
    expect((await store.listAuthKeys()).map((k) => k.usedCount)).toEqual([0, 0]);
    expect((await store.registerNode(reg('nk', expired.id, { now: 1999 }))).ok).toBe(true);
  });

  it('consumes a single-use key exactly once, even for two registrations at once or the same node again', async () => {
    const k = await store.createAuthKey(newKey({ reusable: false }), audit('authkey.create'));
    const results = await Promise.all([store.registerNode(reg('nk-a', k.id)), store.registerNode(reg('nk-b', k.id))]);
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(results.filter((r) => !r.ok)).toEqual([{ ok: false, reason: 'authkey-used' }]);
    expect(await store.registerNode(reg('nk-a', k.id))).toEqual({ ok: false, reason: 'authkey-used' });
    expect((await store.authKeyByPrefix(k.prefix))!.usedCount).toBe(1);
    expect(await store.listNodes()).toHaveLength(1);
  });

  it('refuses "address-space-full" without counting the key', async () => {
    const k = await store.createAuthKey(newKey({ reusable: false }), audit('authkey.create'));
    ipam.full = true;
    expect(await store.registerNode(reg('nk', k.id))).toEqual({ ok: false, reason: 'address-space-full' });
    expect((await store.authKeyByPrefix(k.prefix))!.usedCount).toBe(0);
    expect(await actions()).toEqual(['authkey.create']);
    ipam.full = false;
    expect((await store.registerNode(reg('nk', k.id))).ok).toBe(true);
  });

  it('reconnects a known node without a key: endpoints and last-seen only, not audited, key not counted', async () => {
    const k = await store.createAuthKey(newKey({ reusable: false }), audit('authkey.create'));
    const first = (await mustRegister(reg('nk', k.id))).node;
    expect(await store.registerNode(reg('stranger', null))).toEqual({ ok: false, reason: 'node-unknown' });
    const r = await mustRegister(reg('nk', null, { now: 3000, endpoints: ['198.51.100.7:1234'], requestedHostname: 'ignored', keyExpiry: 1 }));
    expect(r.created).toBe(false);
    expect(r.node).toEqual({ ...first, endpoints: ['198.51.100.7:1234'], lastSeen: 3000 });
    expect((await store.authKeyByPrefix(k.prefix))!.usedCount).toBe(1);
    expect(await actions()).toEqual(['authkey.create', 'node.register']);
  });

  it('refuses an expired node without a key and takes it back with one', async () => {
    const k = await store.createAuthKey(newKey({ preauthorized: false }), audit('authkey.create'));
    const first = (await mustRegister(reg('nk', k.id, { keyExpiry: 5000 }))).node;
    expect((await mustRegister(reg('nk', null, { now: 4999 }))).node.id).toBe(first.id);
    expect(await store.registerNode(reg('nk', null, { now: 5000 }))).toEqual({ ok: false, reason: 'node-expired' });
    const back = await mustRegister(reg('nk', k.id, { now: 6000, keyExpiry: 90_000 }));
    expect(back.created).toBe(false);
    expect(back.node).toMatchObject({ id: first.id, name: first.name, ipv4: first.ipv4, ipv6: first.ipv6, keyExpiry: 90_000, authorized: false });
    expect((await mustRegister(reg('nk', null, { now: 7000 }))).node.keyExpiry).toBe(90_000);
    expect(await actions()).toEqual(['authkey.create', 'node.register', 'node.reauth']);
  });

  it('re-authenticates with a new key: same id, name and addresses; owner, tags and flags from the new key', async () => {
    const alice = await store.ensureUser('alice', 1, 'admin');
    const tagged = await store.createAuthKey(newKey({ tags: ['tag:a'], preauthorized: false }), audit('authkey.create'));
    const first = (await mustRegister(reg('nk', tagged.id))).node;
    await mustRegister(reg('other', tagged.id));
    expect(first.authorized).toBe(false);
    // Not preauthorized: the node keeps waiting for approval.
    const userKey = await store.createAuthKey(newKey({ userId: alice.id, tags: [], preauthorized: false, ephemeral: true }), audit('authkey.create'));
    const r1 = await mustRegister(reg('nk', userKey.id, { requestedHostname: 'renamed-host', now: 3000, keyExpiry: 10_000 }));
    expect(r1.created).toBe(false);
    expect(r1.node).toEqual({ ...first, requestedHostname: 'renamed-host', userId: alice.id, tags: [], ephemeral: true, authKeyId: userKey.id, keyExpiry: 10_000, lastSeen: 3000 });
    // Preauthorized: approved now. Approval, once given, survives a key that is not preauthorized.
    const pre = await store.createAuthKey(newKey({ preauthorized: true }), audit('authkey.create'));
    expect((await mustRegister(reg('nk', pre.id))).node.authorized).toBe(true);
    expect((await mustRegister(reg('nk', tagged.id))).node).toMatchObject({ authorized: true, name: 'web', ipv4: '100.64.0.1' });
    expect((await store.listAuthKeys()).map((k) => k.usedCount)).toEqual([3, 1, 1]);
    expect(await store.listNodes()).toHaveLength(2);
  });

  it('renames uniquely, updates fields, audits what was applied', async () => {
    const k = await store.createAuthKey(newKey(), audit('authkey.create'));
    const web = (await mustRegister(reg('nk1', k.id))).node;
    const db = (await mustRegister(reg('nk2', k.id, { requestedHostname: 'db' }))).node;
    const renamed = await store.updateNode(db.id, { name: 'Web' }, audit('node.update', `node:${db.id}`));
    expect(renamed!.name).toBe('web-1');
    // Its own name is not taken from itself.
    expect((await store.updateNode(db.id, { name: 'web-1' }, audit('node.update')))!.name).toBe('web-1');
    expect((await store.updateNode(web.id, { name: '' }, audit('node.update')))!.name).toBe('node');
    const u = await store.updateNode(db.id, { authorized: false, keyExpiry: 77, tags: ['tag:x'] }, audit('node.update'));
    expect(u).toEqual({ ...db, name: 'web-1', authorized: false, keyExpiry: 77, tags: ['tag:x'] });
    expect((await store.updateNode(db.id, { keyExpiry: null }, audit('node.update')))!.keyExpiry).toBeNull();
    expect(await store.updateNode(999, { name: 'x' }, audit('node.update'))).toBeNull();
    const log = await store.listAudit(5);
    expect(log.map((e) => e.detail.changes)).toEqual([{ keyExpiry: null }, { authorized: false, keyExpiry: 77, tags: ['tag:x'] }, { name: 'node' }, { name: 'web-1' }, { name: 'web-1' }]);
    expect(log[4]).toMatchObject({ actor: 'admin', target: `node:${db.id}`, detail: { why: 'test' } });
  });

  it('touches nodes without auditing', async () => {
    const k = await store.createAuthKey(newKey(), audit('authkey.create'));
    const n = (await mustRegister(reg('nk', k.id))).node;
    await store.touchNode(n.id, 4000, ['203.0.113.1:9']);
    expect(await store.nodeById(n.id)).toMatchObject({ lastSeen: 4000, endpoints: ['203.0.113.1:9'] });
    await store.touchNode(n.id, 5000);
    expect(await store.nodeById(n.id)).toMatchObject({ lastSeen: 5000, endpoints: ['203.0.113.1:9'] });
    await store.touchNode(999, 5000);
    expect(await actions()).toEqual(['authkey.create', 'node.register']);
  });

  it('lists audit entries newest first, bounded by the limit', async () => {
    for (let i = 0; i < 5; i++) await store.audit({ at: i, actor: 'server', action: 'test.tick', target: `t:${i}`, detail: { i } });
    const log = await store.listAudit(3);
    expect(log.map((e) => e.detail)).toEqual([{ i: 4 }, { i: 3 }, { i: 2 }]);
    expect(log[0]).toMatchObject({ at: 4, actor: 'server', action: 'test.tick', target: 't:4' });
  });

  it('fails loudly once closed', async () => {
    await store.close();
    await store.close();
    await expect(store.listNodes()).rejects.toThrow();
  });
});

describe('SqliteStore on disk', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'meshd-store-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps everything across close and reopen, with the schema migrated once', async () => {
    const path = join(dir, 'meshd.db');
    const s1 = SqliteStore.open(path);
    const alice = await s1.ensureUser('alice', 1, 'admin');
    const k = await s1.createAuthKey(newKey({ userId: alice.id, reusable: false }), audit('authkey.create'));
    await s1.registerNode(reg('nk', k.id));
    const snapshot = [await s1.listUsers(), await s1.listAuthKeys(), await s1.listNodes(), await s1.listAudit(100)];
    await s1.close();
    for (let i = 0; i < 2; i++) {
      const s = SqliteStore.open(path);
      expect([await s.listUsers(), await s.listAuthKeys(), await s.listNodes(), await s.listAudit(100)]).toEqual(snapshot);
      expect(await s.registerNode(reg('nk2', k.id))).toEqual({ ok: false, reason: 'authkey-used' });
      await s.close();
    }
    const raw = new Database(path);
    expect(schemaVersion(raw)).toBe(latestVersion());
    expect(migrate(raw)).toBe(latestVersion());
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    raw.close();
  });

  it('writes a change and its audit row in one transaction: a failing audit insert undoes the change', async () => {
    const path = join(dir, 'atomic.db');
    const s = SqliteStore.open(path);
    const k = await s.createAuthKey(newKey({ reusable: false }), audit('authkey.create'));
    const raw = new Database(path);
    raw.exec("CREATE TRIGGER no_audit BEFORE INSERT ON audit WHEN NEW.action <> 'authkey.create' BEGIN SELECT RAISE(ABORT, 'injected'); END");
    await expect(s.registerNode(reg('nk', k.id))).rejects.toThrow(/injected/);
    expect(await s.listNodes()).toEqual([]);
    expect((await s.authKeyByPrefix(k.prefix))!.usedCount).toBe(0);
    await expect(s.revokeAuthKey(k.id, 9, audit('authkey.revoke'))).rejects.toThrow(/injected/);
    expect((await s.authKeyByPrefix(k.prefix))!.revokedAt).toBeNull();
    raw.exec('DROP TRIGGER no_audit');
    const n = (await s.registerNode(reg('nk', k.id))) as { ok: true; node: { id: number } };
    raw.exec("CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'injected'); END");
    await expect(s.updateNode(n.node.id, { name: 'other', authorized: false }, audit('node.update'))).rejects.toThrow(/injected/);
    await expect(s.deleteNode(n.node.id, audit('node.delete'))).rejects.toThrow(/injected/);
    await expect(s.ensureUser('alice', 1, 'admin')).rejects.toThrow(/injected/);
    expect(await s.nodeById(n.node.id)).toMatchObject({ name: 'web', authorized: true });
    expect(await s.listUsers()).toEqual([]);
    raw.close();
    await s.close();
  });

  it('creates the database, -wal and -shm files with mode 0600', async () => {
    const path = join(dir, 'private.db');
    const s = SqliteStore.open(path);
    await s.ensureUser('alice', 1, 'admin');
    for (const f of [path, `${path}-wal`, `${path}-shm`]) {
      expect(existsSync(f)).toBe(true);
      expect((statSync(f).mode & 0o777).toString(8)).toBe('600');
    }
    await s.close();
  });

  it('refuses a database from a newer schema', () => {
    const path = join(dir, 'future.db');
    const raw = new Database(path);
    raw.pragma(`user_version = ${latestVersion() + 1}`);
    raw.close();
    expect(() => SqliteStore.open(path)).toThrow(/newer than this meshd supports/);
  });

  it('rolls back a failing migration, leaving the previous version', () => {
    const raw = new Database(join(dir, 'm.db'));
    const bad = [...MIGRATIONS, { version: MIGRATIONS.length + 1, sql: 'CREATE TABLE half (a); INSERT INTO nowhere VALUES (1);' }];
    expect(() => migrate(raw, bad)).toThrow(/nowhere/);
    expect(schemaVersion(raw)).toBe(latestVersion());
    expect(raw.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'half'").pluck().get()).toBe(0);
    expect(() => migrate(raw, [{ version: 2, sql: '' }])).toThrow(/versions must be/);
    raw.close();
  });
});

// Child processes run the compiled store (dist/, built by test/support/build.ts).
describe('SqliteStore across processes', () => {
  const DIST = join(ROOT, 'dist/server/sqliteStore.js');
  let dir: string;
  beforeAll(() => {
    if (!existsSync(DIST)) throw new Error(`${DIST} is missing: run npm run build`);
    dir = mkdtempSync(join(tmpdir(), 'meshd-crash-'));
    writeFileSync(join(dir, 'child.mjs'), CHILD.replace('STORE_URL', pathToFileURL(DIST).href));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs the child script; onLine may return true to SIGKILL it. */
  function runChild(args: string[], onLine: (line: string) => boolean = () => false): Promise<{ lines: string[]; signal: string | null; code: number | null }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [join(dir, 'child.mjs'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
      const lines: string[] = [];
      let buf = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          lines.push(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          if (onLine(lines[lines.length - 1])) child.kill('SIGKILL');
        }
      });
      child.on('error', reject);
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ lines, signal, code });
      });
    });
  }

  it('leaves a consistent database when killed with SIGKILL mid-way', async () => {
    const path = join(dir, 'crash.db');
    for (const stopAt of [150, 61, 333, 97, 205, 42]) {
      const run = await runChild(['churn', path, String(stopAt)], (line) => line === `${stopAt}`);
      expect(run.signal).toBe('SIGKILL');
    }
    const s = SqliteStore.open(path);
    const nodes = await s.listNodes();
    const keys = await s.listAuthKeys();
    const log = (await s.listAudit(1_000_000)).reverse();
    expect(nodes.length).toBeGreaterThan(100);
    for (const field of ['ipv4', 'ipv6', 'name', 'nodeKey'] as const) expect(new Set(nodes.map((n) => n[field])).size).toBe(nodes.length);
    for (const n of nodes) expect(n.ipv6).toBe(ipv6ForIpv4(n.ipv4));
    // Every counted use is one registration in the log, and every registration has a created key.
    const registered = log.filter((e) => e.action === 'node.register');
    const usedBy = new Map(registered.map((e) => [e.detail.authKeyId, e.target]));
    expect(usedBy.size).toBe(registered.length);
    for (const k of keys) expect(usedBy.has(k.id)).toBe(k.usedCount === 1);
    expect(log.filter((e) => e.action === 'authkey.create')).toHaveLength(keys.length);
    for (const n of nodes) expect(usedBy.get(n.authKeyId)).toBe(`node:${n.id}`);
    expect(registered.length - log.filter((e) => e.action === 'node.delete').length).toBe(nodes.length);
    // And it carries on: the next node gets the lowest free address.
    const expected = nextFreeIpv4(new Set(nodes.map((n) => n.ipv4)));
    const k = await s.createAuthKey(newKey({ prefix: 'after-crash' }), audit('authkey.create'));
    expect((await s.registerNode(reg('after-crash', k.id)))).toMatchObject({ ok: true, node: { ipv4: expected } });
    await s.close();
    const raw = new Database(path, { readonly: true });
    expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(raw.pragma('foreign_key_check')).toEqual([]);
    raw.close();
  });

  it('hands one single-use key to exactly one of several racing processes, and distinct addresses to all', async () => {
    const path = join(dir, 'race.db');
    const s = SqliteStore.open(path);
    const once = await s.createAuthKey(newKey({ prefix: 'once', reusable: false }), audit('authkey.create'));
    const many = await s.createAuthKey(newKey({ prefix: 'many' }), audit('authkey.create'));
    await s.close();
    const startAt = String(Date.now() + 1500);
    const runs = await Promise.all([0, 1, 2, 3].map((i) => runChild(['race', path, startAt, `c${i}`, String(once.id), String(many.id)])));
    const outcomes = runs.flatMap((r) => r.lines.map((l) => JSON.parse(l) as { kind: string; ok: boolean; reason?: string }));
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0, 0]);
    const onceResults = outcomes.filter((o) => o.kind === 'once');
    expect(onceResults.filter((o) => o.ok)).toHaveLength(1);
    expect(onceResults.filter((o) => !o.ok).map((o) => o.reason)).toEqual(['authkey-used', 'authkey-used', 'authkey-used']);
    expect(outcomes.filter((o) => o.kind === 'many' && o.ok)).toHaveLength(4 * 20);
    const after = SqliteStore.open(path);
    const nodes = await after.listNodes();
    expect(nodes).toHaveLength(81);
    expect(new Set(nodes.map((n) => n.ipv4)).size).toBe(81);
    expect(new Set(nodes.map((n) => n.name)).size).toBe(81);
    expect((await after.authKeyByPrefix('once'))!.usedCount).toBe(1);
    await after.close();
  });
});

// churn <db> <n>: create a single-use key and register with it, deleting every
// seventh node, printing each step; the parent kills it at line n.
// race <db> <startAt> <tag> <onceKey> <manyKey>: at startAt, try the single-use
// key once, then register 20 nodes with the reusable one.
const CHILD = `
import { SqliteStore } from 'STORE_URL';
const [mode, path, ...rest] = process.argv.slice(2);
const store = SqliteStore.open(path);
const audit = (action, target = '') => ({ at: Date.now(), actor: 'admin', action, target, detail: {} });
const reg = (nodeKey, authKeyId) => ({ nodeKey, requestedHostname: 'web', endpoints: [], authKeyId, now: Date.now(), keyExpiry: null });
const tag = process.pid + '-' + Date.now();
if (mode === 'churn') {
  const stopAt = Number(rest[0]);
  for (let i = 0; i < stopAt + 10_000; i++) {
    const key = await store.createAuthKey({ prefix: tag + '-' + i, secretHash: 'h', userId: null, tags: [], reusable: false,
      ephemeral: false, preauthorized: true, expiresAt: null, createdAt: Date.now() }, audit('authkey.create'));
    const r = await store.registerNode(reg('nk-' + tag + '-' + i, key.id));
    if (!r.ok) throw new Error(r.reason);
    if (i % 7 === 3) await store.deleteNode(r.node.id, audit('node.delete', 'node:' + r.node.id));
    process.stdout.write(i + '\\n');
  }
} else {
  const [startAt, name, onceId, manyId] = rest;
  await new Promise((ok) => setTimeout(ok, Math.max(0, Number(startAt) - Date.now())));
  const out = (kind, r) => process.stdout.write(JSON.stringify({ kind, ok: r.ok, reason: r.reason }) + '\\n');
  out('once', await store.registerNode(reg(name + '-once', Number(onceId))));
  for (let i = 0; i < 20; i++) out('many', await store.registerNode(reg(name + '-' + i, Number(manyId))));
}
await store.close();
`;
