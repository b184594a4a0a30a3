// The coordination server in process, over real HTTP(S): its state
// directory, the admin API, registration and every refusal, netmaps and long
// polls, the sealed channel's defences (replay, staleness, wrong keys,
// malformed bodies), ephemeral clean-up, TLS, and the audit log. Nodes are
// ControlClient instances with fresh keys, as `meshd up` uses them.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpsRequestRaw } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeKeyBase64, encodeKeyBase64 } from '../../src/config/keys.js';
import { ControlClient, ControlError, fetchServerKey, parseLoginUrl } from '../../src/control/client.js';
import { sealRequest } from '../../src/control/envelope.js';
import { MAX_BODY_BYTES, PATHS, type MapResponse, type PeerNode } from '../../src/control/messages.js';
import { X25519PrivateKey } from '../../src/crypto/x25519.js';
import { createLogger } from '../../src/daemon/log.js';
import { ADMIN } from '../../src/server/admin.js';
import { MAX_POLLS_PER_NODE } from '../../src/server/mesh.js';
import { CoordinationServer, type ServerOptions } from '../../src/server/server.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const log = createLogger('silent');
const HAS_OPENSSL = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;

// --- fixtures ----------------------------------------------------------------

interface Srv {
  server: CoordinationServer;
  dir: string;
  url: string;
  token: string;
  serverKey: Uint8Array;
  /** The CA to trust for an https:// server. */
  ca?: Buffer;
}

const servers: CoordinationServer[] = [];
const dirs: string[] = [];

afterEach(async () => {
  const closing = servers.splice(0);
  const removing = dirs.splice(0);
  for (const s of closing) await s.close().catch(() => {});
  for (const d of removing) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'meshd-server-test-'));
  dirs.push(d);
  return d;
}

async function startServer(o: Partial<ServerOptions> = {}, scheme: 'http' | 'https' = 'http'): Promise<Srv> {
  const dir = o.stateDir ?? tempDir();
  const server = await CoordinationServer.start({ stateDir: dir, listen: '127.0.0.1:0', log, pollMs: 2_000, ...o });
  servers.push(server);
  const token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
  return { server, dir, url: `${scheme}://127.0.0.1:${server.port}`, token, serverKey: decodeKeyBase64(server.publicKey) };
}

/** A clock the test can move; the server reads it for every decision. */
function testClock() {
  const c = { offset: 0, now: () => Date.now() + c.offset, advance: (ms: number) => void (c.offset += ms) };
  return c;
}

interface AdminReply {
  status: number;
  type: string | null;
  body: any;
}

async function admin(s: Srv, method: string, path: string, body?: unknown, token: string | null = s.token): Promise<AdminReply> {
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const res = s.ca ? await httpsRequest(`${s.url}${ADMIN}${path}`, method, headers, payload, s.ca) : await fetch(`${s.url}${ADMIN}${path}`, { method, headers, body: payload });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${method} ${path}: HTTP ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`);
  }
  return { status: res.status, type: res.headers.get('content-type'), body: parsed };
}

/** This process's fetch cannot be told to trust a CA, so admin calls to a TLS server go through node:https. */
function httpsRequest(url: string, method: string, headers: Record<string, string>, body: string | undefined, ca: Buffer) {
  return new Promise<{ status: number; headers: { get(name: string): string | null }; text(): Promise<string> }>((resolve, reject) => {
    const req = httpsRequestRaw(url, { method, headers, ca, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: { get: (name) => (res.headers[name.toLowerCase()] as string | undefined) ?? null },
          text: async () => Buffer.concat(chunks).toString('utf8'),
        }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

async function adminOk(s: Srv, method: string, path: string, body?: unknown): Promise<any> {
  const r = await admin(s, method, path, body);
  expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBe(200);
  return r.body;
}

function expectJsonError(r: AdminReply, status: number, code: string): void {
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  expect(r.type).toMatch(/^application\/json/);
  expect(r.body).toEqual({ error: { code, message: expect.any(String) } });
  expect(r.body.error.message.length).toBeGreaterThan(10);
}

interface KeyOptions {
  reusable?: boolean;
  ephemeral?: boolean;
  preauthorized?: boolean;
  expiry?: string;
  tags?: string[];
  user?: string;
}

async function createKey(s: Srv, o: KeyOptions = { reusable: true, preauthorized: true }): Promise<{ key: string; id: number; prefix: string; [k: string]: unknown }> {
  return adminOk(s, 'POST', '/keys', o);
}

interface TestNode {
  key: X25519PrivateKey;
  pub: string;
  client: ControlClient;
}

function newNode(s: Srv, serverKey: Uint8Array = s.serverKey): TestNode {
  const key = X25519PrivateKey.generate();
  return { key, pub: encodeKeyBase64(key.publicKey), client: new ControlClient({ url: s.url, serverKey, nodeKey: key }) };
}

async function enroll(s: Srv, authKey: string, hostname = 'node', endpoints: string[] = []) {
  const n = newNode(s);
  const r = await n.client.register({ authKey, hostname, endpoints });
  return { ...n, self: r.node };
}

const map = (n: TestNode, since = 0, wait = false, holdMs = 5_000): Promise<MapResponse> => n.client.map({ since, wait, endpoints: [] }, holdMs);

/** The refusal a call ends in; fails the test if it succeeds or fails otherwise. */
async function refusal(p: Promise<unknown>, status: number, code: string): Promise<ControlError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, `expected a ${code} refusal`).toBeInstanceOf(ControlError);
  const e = err as ControlError;
  expect({ status: e.status, code: e.code }).toEqual({ status, code });
  return e;
}

/** The secret part of "mskey-<12 hex>-<secret>" (which may itself hold '-'). */
const secretOf = (key: string) => key.slice('mskey-'.length + 13);

const names = (peers: PeerNode[] | undefined) => (peers ?? []).map((p) => p.name).sort();
const keysOf = (peers: PeerNode[] | undefined) => (peers ?? []).map((p) => p.publicKey).sort();

async function until<T>(what: string, deadlineMs: number, probe: () => Promise<T | undefined | null | false>, everyMs = 50): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A promise with a flag telling whether it has settled yet. */
function tracked<T>(p: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  const promise = p.finally(() => {
    done = true;
  });
  promise.catch(() => {});
  return { promise, settled: () => done };
}

const mode = (path: string) => statSync(path).mode & 0o777;

async function post(url: string, body: Uint8Array | string, init: RequestInit = {}) {
  const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' }, ...init });
  const bytes = Buffer.from(await res.arrayBuffer());
  return { status: res.status, type: res.headers.get('content-type'), bytes };
}

function errorBody(r: { type: string | null; bytes: Buffer }) {
  expect(r.type).toMatch(/^application\/json/);
  return JSON.parse(r.bytes.toString('utf8')) as { error: { code: string; message: string } };
}

// --- tests -------------------------------------------------------------------

describe('state directory', () => {
  it('creates server.key and admin.token 0600 in a 0700 directory, and keeps both across a restart', async () => {
    const stateDir = join(tempDir(), 'state');
    const a = await startServer({ stateDir });
    expect(mode(stateDir)).toBe(0o700);
    expect(mode(join(stateDir, 'server.key'))).toBe(0o600);
    expect(mode(join(stateDir, 'admin.token'))).toBe(0o600);
    expect(mode(join(stateDir, 'meshd.db'))).toBe(0o600);
    expect(a.token).toMatch(/^msadm-[A-Za-z0-9_-]{43}$/);
    expect(a.server.adminTokenPath).toBe(join(stateDir, 'admin.token'));
    // What nodes pin: the key endpoint and the server agree.
    const seen = await fetchServerKey(a.url);
    expect(encodeKeyBase64(seen.serverKey)).toBe(a.server.publicKey);
    expect(Math.abs(seen.offsetMs)).toBeLessThan(1_000);
    const login = parseLoginUrl(`${a.url}/?key=${Buffer.from(seen.serverKey).toString('base64url')}`);
    expect(login.url).toBe(a.url);
    expect(Buffer.from(login.serverKey!).equals(Buffer.from(seen.serverKey))).toBe(true);

    const authKey = (await createKey(a)).key;
    const n = await enroll(a, authKey, 'persist');
    const before = await map(n);
    await a.server.close();
    servers.splice(servers.indexOf(a.server), 1);

    const b = await startServer({ stateDir });
    expect(b.server.publicKey).toBe(a.server.publicKey);
    expect(b.token).toBe(a.token);
    expect(mode(join(stateDir, 'server.key'))).toBe(0o600);
    expect(mode(join(stateDir, 'admin.token'))).toBe(0o600);
    // The old token still opens the admin API, and the node is still registered.
    expect((await adminOk(b, 'GET', '/nodes')).nodes.map((x: { name: string }) => x.name)).toEqual(['persist']);
    const again = new ControlClient({ url: b.url, serverKey: decodeKeyBase64(a.server.publicKey), nodeKey: n.key });
    expect((await again.register({ hostname: 'persist', endpoints: [] })).node).toEqual(n.self);
    // A version from the server's previous life is never mistaken for a current one.
    const after = await again.map({ since: before.version, wait: false, endpoints: [] }, 1_000);
    expect(after.version).toBeGreaterThan(before.version);
    expect(after.peers).toEqual([]);
  });

  it('tightens a state directory that others could read', async () => {
    const stateDir = join(tempDir(), 'loose');
    mkdirSync(stateDir, { mode: 0o755 });
    await startServer({ stateDir });
    expect(mode(stateDir)).toBe(0o700);
  });
});

describe('admin API', () => {
  it('refuses requests without the bearer token, or with a wrong one, with 401 JSON', async () => {
    const s = await startServer();
    expectJsonError(await admin(s, 'GET', '/nodes', undefined, null), 401, 'admin-token');
    expectJsonError(await admin(s, 'GET', '/keys', undefined, 'msadm-wrong'), 401, 'admin-token');
    expectJsonError(await admin(s, 'POST', '/keys', { reusable: true }, `${s.token}x`), 401, 'admin-token');
    const lower = await fetch(`${s.url}${ADMIN}/keys`, { headers: { authorization: `bearer${s.token}` } });
    expect(lower.status).toBe(401);
    const r = await admin(s, 'GET', '/nodes', undefined, null);
    expect(r.body.error.message).toContain(join(s.dir, 'admin.token'));
    // Nothing was created by the refused POST.
    expect((await adminOk(s, 'GET', '/keys')).keys).toEqual([]);
  });

  it('creates, lists and revokes auth keys; listings never carry the secret', async () => {
    const clock = testClock();
    const s = await startServer({ now: clock.now });
    const t0 = clock.now();
    const tagged = await createKey(s, { reusable: true, ephemeral: true, preauthorized: true, expiry: '2h', tags: ['tag:web', 'tag:ci-runner'] });
    expect(tagged.key).toMatch(/^mskey-[0-9a-f]{12}-[A-Za-z0-9_-]{43}$/);
    expect(tagged.key.startsWith(`mskey-${tagged.prefix}-`)).toBe(true);
    expect(tagged).toMatchObject({ user: null, tags: ['tag:web', 'tag:ci-runner'], reusable: true, ephemeral: true, preauthorized: true, revokedAt: null, usedCount: 0, state: 'valid' });
    expect(tagged.expiresAt).toBeGreaterThanOrEqual(t0 + 2 * 3_600_000);
    expect(tagged.expiresAt).toBeLessThan(t0 + 2 * 3_600_000 + 5_000);

    const owned = await createKey(s, { user: 'alice@example.com', expiry: '30m' });
    expect(owned).toMatchObject({ user: 'alice@example.com', tags: [], reusable: false, ephemeral: false, preauthorized: false, state: 'valid' });
    // Neither a user nor tags: the default user; no expiry given: 90 days.
    const plain = await createKey(s, {});
    expect(plain.user).toBe('default');
    expect(plain.expiresAt).toBeGreaterThanOrEqual(t0 + 90 * 86_400_000);

    const listing = await admin(s, 'GET', '/keys');
    expect(listing.status).toBe(200);
    const text = JSON.stringify(listing.body);
    for (const k of [tagged, owned, plain]) {
      expect(text).not.toContain(k.key);
      expect(text).not.toContain(secretOf(k.key));
    }
    expect(text).not.toMatch(/secret|hash/i);
    expect(listing.body.keys.map((k: { prefix: string }) => k.prefix)).toEqual([tagged.prefix, owned.prefix, plain.prefix]);
    for (const k of listing.body.keys) expect(Object.keys(k)).not.toContain('key');

    expect(await adminOk(s, 'POST', `/keys/${owned.id}/revoke`)).toEqual({ revoked: owned.id });
    expectJsonError(await admin(s, 'POST', `/keys/${owned.prefix}/revoke`), 409, 'already-revoked');
    expectJsonError(await admin(s, 'POST', '/keys/999/revoke'), 404, 'no-such-key');
    // By prefix, too.
    expect(await adminOk(s, 'POST', `/keys/${plain.prefix}/revoke`)).toEqual({ revoked: plain.id });
    clock.advance(3 * 3_600_000);
    const states = (await adminOk(s, 'GET', '/keys')).keys.map((k: { state: string }) => k.state);
    expect(states).toEqual(['expired', 'revoked', 'revoked']);
    const users = (await adminOk(s, 'GET', '/users')).users.map((u: { name: string }) => u.name);
    expect(users).toEqual(['alice@example.com', 'default']);
  });

  it('refuses bad key requests with 400 and a JSON error, creating nothing', async () => {
    const s = await startServer();
    expectJsonError(await admin(s, 'POST', '/keys', { tags: ['web'] }), 400, 'bad-tag');
    expectJsonError(await admin(s, 'POST', '/keys', { tags: ['tag:UPPER'] }), 400, 'bad-tag');
    expectJsonError(await admin(s, 'POST', '/keys', { expiry: 'soon' }), 400, 'bad-expiry');
    expectJsonError(await admin(s, 'POST', '/keys', { expiry: '0d' }), 400, 'bad-expiry');
    expectJsonError(await admin(s, 'POST', '/keys', { user: 'bob', tags: ['tag:web'] }), 400, 'bad-owner');
    expectJsonError(await admin(s, 'POST', '/keys', { user: 'bob smith' }), 400, 'bad-user');
    expectJsonError(await admin(s, 'POST', '/keys', { reusable: 'yes' }), 400, 'bad-request');
    expectJsonError(await admin(s, 'POST', '/keys', { tags: 'tag:web' }), 400, 'bad-request');
    expectJsonError(await admin(s, 'POST', '/keys', '{"reusable": tru'), 400, 'bad-json');
    expectJsonError(await admin(s, 'POST', '/keys', [1, 2]), 400, 'bad-request');
    expect((await adminOk(s, 'GET', '/keys')).keys).toEqual([]);
    expect((await adminOk(s, 'GET', '/users')).users).toEqual([]);
    expect((await admin(s, 'POST', '/keys', { tags: ['web'] })).body.error.message).toContain('tag:');
  });

  it('answers unknown endpoints and unknown nodes with 404 JSON', async () => {
    const s = await startServer();
    expectJsonError(await admin(s, 'GET', '/bogus'), 404, 'no-such-endpoint');
    expectJsonError(await admin(s, 'PUT', '/keys'), 404, 'no-such-endpoint');
    expectJsonError(await admin(s, 'POST', '/nodes/1/explode'), 404, 'no-such-endpoint');
    expectJsonError(await admin(s, 'DELETE', '/nodes/nope'), 404, 'no-such-node');
    expectJsonError(await admin(s, 'POST', '/nodes/100.64.9.9/approve'), 404, 'no-such-node');
    // A node or key route without the node or key.
    expectJsonError(await admin(s, 'DELETE', '/nodes'), 404, 'no-such-node');
    expectJsonError(await admin(s, 'DELETE', '/nodes/%E0%A4%A'), 400, 'bad-request');
    const outside = await fetch(`${s.url}/nope`);
    expect(outside.status).toBe(404);
    expect(await outside.json()).toEqual({ error: { code: 'no-such-endpoint', message: expect.stringContaining('/nope') } });
    expect(await (await fetch(`${s.url}/health`)).json()).toEqual({ ok: true });
  });
});

describe('registration', () => {
  it('gives nodes of one reusable key consecutive addresses and unique names', async () => {
    const s = await startServer();
    const k = await createKey(s, { reusable: true, preauthorized: true, tags: ['tag:web'] });
    const a = await enroll(s, k.key, 'web', ['192.0.2.10:41641']);
    const b = await enroll(s, k.key, 'web');
    const c = await enroll(s, k.key, 'Web');
    expect([a.self.name, b.self.name, c.self.name]).toEqual(['web', 'web-1', 'web-2']);
    expect(a.self.addresses).toEqual(['100.64.0.1/32', 'fd7a:115c:a1e0::6440:1/128']);
    expect(b.self.addresses).toEqual(['100.64.0.2/32', 'fd7a:115c:a1e0::6440:2/128']);
    expect(c.self.addresses).toEqual(['100.64.0.3/32', 'fd7a:115c:a1e0::6440:3/128']);
    expect(a.self).toMatchObject({ authorized: true, tags: ['tag:web'], user: null });
    expect(a.self.keyExpiry).toBeGreaterThan(Date.now() + 170 * 86_400_000);
    const nodes = (await adminOk(s, 'GET', '/nodes')).nodes;
    expect(nodes.map((n: { publicKey: string }) => n.publicKey)).toEqual([a.pub, b.pub, c.pub]);
    expect(nodes.map((n: { hostname: string }) => n.hostname)).toEqual(['web', 'web', 'Web']);
    // The server adds the address it saw the request come from to what the node reported.
    expect(nodes[0].endpoints).toEqual(['127.0.0.1:41641', '192.0.2.10:41641']);
    expect((await adminOk(s, 'GET', '/keys')).keys[0]).toMatchObject({ usedCount: 3, state: 'valid' });
  });

  it('takes a single-use key once', async () => {
    const s = await startServer();
    const k = await createKey(s, { preauthorized: true });
    const first = await enroll(s, k.key, 'one');
    expect(first.self.name).toBe('one');
    const e = await refusal(newNode(s).client.register({ authKey: k.key, hostname: 'two', endpoints: [] }), 401, 'authkey-used');
    expect(e.message).toMatch(/single-use.*already used/);
    expect(e.permanent).toBe(true);
    // The node that used it re-authenticates with it no more than anyone else.
    await refusal(first.client.register({ authKey: k.key, hostname: 'one', endpoints: [] }), 401, 'authkey-used');
    expect((await adminOk(s, 'GET', '/nodes')).nodes).toHaveLength(1);
    expect((await adminOk(s, 'GET', '/keys')).keys[0].state).toBe('used');
  });

  it('refuses revoked, expired, malformed and unknown keys with 401 and a clear reason', async () => {
    const clock = testClock();
    const s = await startServer({ now: clock.now });
    const revoked = await createKey(s, { reusable: true, preauthorized: true });
    await adminOk(s, 'POST', `/keys/${revoked.id}/revoke`);
    let e = await refusal(newNode(s).client.register({ authKey: revoked.key, hostname: 'x', endpoints: [] }), 401, 'authkey-revoked');
    expect(e.message).toMatch(/auth key.*revoked/);

    const shortLived = await createKey(s, { reusable: true, preauthorized: true, expiry: '1h' });
    await enroll(s, shortLived.key, 'early');
    clock.advance(61 * 60_000);
    // The client's requests are now an hour behind the server's clock: it measures the offset and retries.
    const late = newNode(s);
    e = await refusal(late.client.register({ authKey: shortLived.key, hostname: 'late', endpoints: [] }), 401, 'authkey-expired');
    expect(e.message).toMatch(/auth key.*expired/);
    expect(Math.abs(late.client.offsetMs - 61 * 60_000)).toBeLessThan(5_000);

    e = await refusal(newNode(s).client.register({ authKey: 'mskey-nothex-abc', hostname: 'x', endpoints: [] }), 401, 'authkey-malformed');
    expect(e.message).toContain('mskey-<prefix>-<secret>');
    await refusal(newNode(s).client.register({ authKey: 'tskey-auth-123', hostname: 'x', endpoints: [] }), 401, 'authkey-malformed');

    const fake = `mskey-${'0'.repeat(12)}-${'A'.repeat(43)}`;
    e = await refusal(newNode(s).client.register({ authKey: fake, hostname: 'x', endpoints: [] }), 401, 'authkey-unknown');
    expect(e.message).toMatch(/not known/);
    // A real prefix with a wrong secret is just as unknown: no oracle for prefixes.
    const good = await createKey(s, { reusable: true, preauthorized: true });
    await refusal(newNode(s).client.register({ authKey: `mskey-${good.prefix}-${'B'.repeat(43)}`, hostname: 'x', endpoints: [] }), 401, 'authkey-unknown');
    expect(e.permanent).toBe(true);
    expect((await adminOk(s, 'GET', '/nodes')).nodes.map((n: { name: string }) => n.name)).toEqual(['early']);
  });

  it('lets a registered node reconnect without a key, and refuses an unknown one', async () => {
    const s = await startServer();
    const k = await createKey(s, { preauthorized: true });
    const a = await enroll(s, k.key, 'laptop');
    const again = await a.client.register({ hostname: 'laptop', endpoints: ['198.51.100.7:1234'] });
    expect(again.node).toEqual(a.self);
    expect((await adminOk(s, 'GET', '/nodes')).nodes[0].endpoints).toEqual(['127.0.0.1:1234', '198.51.100.7:1234']);
    const e = await refusal(newNode(s).client.register({ hostname: 'stranger', endpoints: [] }), 401, 'node-unknown');
    expect(e.message).toContain('--authkey');
    await refusal(map(newNode(s)), 401, 'node-unknown');
    await refusal(newNode(s).client.logout(), 401, 'node-unknown');
  });
});

describe('netmaps', () => {
  it('sends a full map at since 0 with the other active nodes', async () => {
    const s = await startServer();
    const k = await createKey(s, { reusable: true, preauthorized: true, user: 'alice' });
    const a = await enroll(s, k.key, 'a', ['192.0.2.1:51820']);
    const b = await enroll(s, k.key, 'b', ['192.0.2.2:51820']);
    const c = await enroll(s, k.key, 'c');
    const m = await map(a);
    expect(m.self).toEqual(a.self);
    expect(m.peersChanged).toBeUndefined();
    expect(names(m.peers)).toEqual(['b', 'c']);
    const pb = m.peers!.find((p) => p.name === 'b')!;
    expect(pb).toMatchObject({
      id: b.self.id,
      publicKey: b.pub,
      addresses: ['100.64.0.2/32', 'fd7a:115c:a1e0::6440:2/128'],
      allowedIps: ['100.64.0.2/32', 'fd7a:115c:a1e0::6440:2/128'],
      endpoints: ['127.0.0.1:51820', '192.0.2.2:51820'],
      user: 'alice',
      tags: [],
    });
    expect(keysOf((await map(c)).peers)).toEqual([a.pub, b.pub].sort());
    // Nothing changed since: an empty delta, at once.
    const d = await map(a, m.version);
    expect(d).toEqual({ version: m.version, self: a.self, packetFilter: m.packetFilter, peersChanged: [], peersRemoved: [] });
  });

  it('answers a long poll within a second of a change, with a delta', async () => {
    const s = await startServer({ pollMs: 10_000 });
    const k = await createKey(s, { reusable: true, preauthorized: true });
    const a = await enroll(s, k.key, 'a');
    await enroll(s, k.key, 'b');
    let m = await map(a);
    // The first long poll brings `a` online, itself a change: take that answer first.
    m = await map(a, m.version, true, 10_000);
    const poll = tracked(map(a, m.version, true, 10_000));
    await new Promise((r) => setTimeout(r, 150));
    expect(poll.settled()).toBe(false);
    const t0 = Date.now();
    const c = await enroll(s, k.key, 'c');
    const got = await poll.promise;
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeLessThan(1_000);
    expect(got.version).toBeGreaterThan(m.version);
    expect(got.peers).toBeUndefined();
    expect(got.peersRemoved).toEqual([]);
    expect(got.peersChanged!.map((p) => [p.name, p.publicKey])).toEqual([['c', c.pub]]);
  });

  it('parks at most MAX_POLLS_PER_NODE polls of one node; more are answered at once', async () => {
    const s = await startServer({ pollMs: 10_000 });
    const k = await createKey(s, { reusable: true, preauthorized: true });
    const a = await enroll(s, k.key, 'a');
    let m = await map(a);
    m = await map(a, m.version, true, 10_000);
    const parked = Array.from({ length: MAX_POLLS_PER_NODE }, () => tracked(map(a, m.version, true, 10_000)));
    await new Promise((r) => setTimeout(r, 200));
    expect(parked.map((p) => p.settled())).toEqual(parked.map(() => false));
    const t0 = Date.now();
    const extra = await map(a, m.version, true, 10_000);
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(extra.version).toBe(m.version);
    expect(parked.every((p) => !p.settled())).toBe(true);
  });

  it('drops a deleted node from everyone else and refuses it from then on', async () => {
    const s = await startServer();
    const k = await createKey(s, { reusable: true, preauthorized: true });
    const a = await enroll(s, k.key, 'a');
    const b = await enroll(s, k.key, 'b');
    const c = await enroll(s, k.key, 'c');
    const ma = await map(a);
    expect(names(ma.peers)).toEqual(['b', 'c']);
    // b is in a long poll when it is deleted: that poll is refused too.
    let mb = await map(b);
    mb = await map(b, mb.version, true);
    const bPoll = tracked(map(b, mb.version, true));
    await new Promise((r) => setTimeout(r, 100));
    expect(await adminOk(s, 'DELETE', `/nodes/${b.self.name}`)).toEqual({ deleted: b.self.id });
    const e = await refusal(bPoll.promise, 401, 'node-unknown');
    expect(e.message).toMatch(/removed/);
    const da = await map(a, ma.version);
    expect(da.peersRemoved).toEqual([b.pub]);
    expect(da.peersChanged ?? []).toEqual([]);
    expect(names((await map(c)).peers)).toEqual(['a']);
    await refusal(map(b, 0), 401, 'node-unknown');
    await refusal(b.client.register({ hostname: 'b', endpoints: [] }), 401, 'node-unknown');
    expect((await adminOk(s, 'GET', '/nodes')).nodes.map((n: { name: string }) => n.name)).toEqual(['a', 'c']);
    // Its address is free again for the next node.
    expect((await enroll(s, k.key, 'd')).self.addresses[0]).toBe('100.64.0.2/32');
  });

  it('drops an expired node from everyone else and refuses it until it logs in again', async () => {
    const s = await startServer();
    const k = await createKey(s, { reusable: true, preauthorized: true });
    const a = await enroll(s, k.key, 'a');
    const b = await enroll(s, k.key, 'b');
    const ma = await map(a);
    const r = await adminOk(s, 'POST', `/nodes/${b.self.addresses[0].split('/')[0]}/expire`);
    expect(r.node).toMatchObject({ name: 'b', expired: true, active: false });
    const da = await map(a, ma.version);
    expect(da.peersRemoved).toEqual([b.pub]);
    const e = await refusal(map(b), 401, 'node-expired');
    expect(e.message).toContain('--authkey');
    await refusal(b.client.register({ hostname: 'b', endpoints: [] }), 401, 'node-expired');
    // A fresh login with a key brings it back with the same name and address.
    const back = await b.client.register({ authKey: k.key, hostname: 'b', endpoints: [] });
    expect({ ...back.node, keyExpiry: 0 }).toEqual({ ...b.self, keyExpiry: 0 });
    expect(back.node.keyExpiry).toBeGreaterThan(Date.now());
    const da2 = await map(a, da.version);
    expect(da2.peersChanged!.map((p) => p.publicKey)).toEqual([b.pub]);
  });

  it('keeps a node of a key that is not preauthorized pending until an admin approves it', async () => {
    const s = await startServer();
    const open = await createKey(s, { reusable: true, preauthorized: true });
    const gated = await createKey(s, { reusable: true, preauthorized: false });
    const a = await enroll(s, open.key, 'a');
    const p = await enroll(s, gated.key, 'pending');
    expect(p.self.authorized).toBe(false);
    expect(p.self.addresses[0]).toBe('100.64.0.2/32');
    let mp = await map(p);
    expect(mp.self.authorized).toBe(false);
    expect(mp.peers).toEqual([]);
    const ma = await map(a);
    expect(ma.peers).toEqual([]);
    expect((await adminOk(s, 'GET', '/nodes')).nodes[1]).toMatchObject({ name: 'pending', authorized: false, active: false });
    // Waiting for approval: the pending node's long poll is answered by it
    // (after the first, which brings the node online).
    mp = await map(p, mp.version, true);
    expect(mp.peers).toEqual([]);
    const wait = tracked(map(p, mp.version, true));
    await new Promise((r) => setTimeout(r, 100));
    expect(wait.settled()).toBe(false);
    const t0 = Date.now();
    const approved = await adminOk(s, 'POST', `/nodes/${p.self.id}/approve`);
    expect(approved.node).toMatchObject({ authorized: true, active: true });
    const mp2 = await wait.promise;
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(mp2.self.authorized).toBe(true);
    expect(names(mp2.peers)).toEqual(['a']);
    const da = await map(a, ma.version);
    expect(da.peersChanged!.map((x) => x.name)).toEqual(['pending']);
  });

  it('does not tell long-polling nodes they were removed when the server shuts down', async () => {
    const s = await startServer({ pollMs: 10_000 });
    const k = await createKey(s, { reusable: true, preauthorized: true });
    const a = await enroll(s, k.key, 'a');
    let m = await map(a);
    m = await map(a, m.version, true, 10_000);
    const poll = tracked(map(a, m.version, true, 10_000));
    await new Promise((r) => setTimeout(r, 100));
    expect(poll.settled()).toBe(false);
    await s.server.close();
    servers.splice(servers.indexOf(s.server), 1);
    const err = await poll.promise.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ControlError);
    // Not reachable (retry later), not a permanent refusal that would tear the node's tunnels down.
    expect((err as ControlError).permanent).toBe(false);
  });
});

describe('sealed channel', () => {
  async function setup() {
    const s = await startServer();
    const k = await createKey(s, { reusable: true, preauthorized: true });
    const a = await enroll(s, k.key, 'a');
    return { s, k, a };
  }
  const sealMap = (s: Srv, node: X25519PrivateKey, now = Date.now(), payload: Buffer | string = JSON.stringify({ since: 0, wait: false, endpoints: [] }), path: string = PATHS.map) =>
    sealRequest({ node, serverPublicKey: s.serverKey, path, payload: Buffer.from(payload), now });

  it('refuses a captured request replayed byte for byte', async () => {
    const { s, a } = await setup();
    const sealed = sealMap(s, a.key);
    const first = await post(`${s.url}${PATHS.map}`, sealed.bytes);
    expect(first.status).toBe(200);
    expect(first.type).toBe('application/octet-stream');
    const plain = sealed.openReply(first.bytes);
    expect(plain).not.toBeNull();
    expect(JSON.parse(plain!.toString('utf8'))).toMatchObject({ self: { name: 'a' }, peers: [] });
    // The reply itself is ciphertext: the node's name is not in it.
    expect(first.bytes.includes(Buffer.from('"name"'))).toBe(false);
    const replay = await post(`${s.url}${PATHS.map}`, sealed.bytes);
    expect(replay.status).toBe(401);
    expect(errorBody(replay).error.code).toBe('replayed');
  });

  it('refuses requests stamped 5 minutes in the past or the future', async () => {
    const { s, a } = await setup();
    const stale = await post(`${s.url}${PATHS.map}`, sealMap(s, a.key, Date.now() - 5 * 60_000).bytes);
    expect(stale.status).toBe(401);
    expect(errorBody(stale).error).toEqual({ code: 'stale', message: expect.stringMatching(/too old/) });
    const future = await post(`${s.url}${PATHS.map}`, sealMap(s, a.key, Date.now() + 5 * 60_000).bytes);
    expect(future.status).toBe(401);
    expect(errorBody(future).error.code).toBe('future');
  });

  it('binds requests to the pinned server key, the path and the request', async () => {
    const { s, k, a } = await setup();
    // A client that pinned another key: the server cannot open what it sends.
    const wrongPin = newNode(s, X25519PrivateKey.generate().publicKey);
    const e = await refusal(wrongPin.client.register({ authKey: k.key, hostname: 'mitm', endpoints: [] }), 400, 'bad-envelope');
    expect(e.message).toMatch(/not a sealed control message for this server/);
    expect((await adminOk(s, 'GET', '/nodes')).nodes).toHaveLength(1);
    // Sealed for /map, posted to /register.
    const moved = await post(`${s.url}${PATHS.register}`, sealMap(s, a.key).bytes);
    expect(moved.status).toBe(400);
    expect(errorBody(moved).error.code).toBe('bad-envelope');
    // A reply opens only for the request it answers.
    const one = sealMap(s, a.key);
    const other = sealMap(s, a.key);
    const reply = await post(`${s.url}${PATHS.map}`, one.bytes);
    expect(reply.status).toBe(200);
    expect(other.openReply(reply.bytes)).toBeNull();
    const flipped = Buffer.from(reply.bytes);
    flipped[flipped.length - 1] ^= 1;
    expect(one.openReply(flipped)).toBeNull();
    expect(one.openReply(reply.bytes)).not.toBeNull();
    // A tampered request does not open either.
    const tampered = Buffer.from(sealMap(s, a.key).bytes);
    tampered[tampered.length - 20] ^= 0x80;
    const t = await post(`${s.url}${PATHS.map}`, tampered);
    expect(t.status).toBe(400);
    expect(errorBody(t).error.code).toBe('bad-envelope');
  });

  it('answers malformed requests with 4xx JSON errors and keeps serving', async () => {
    const { s, a } = await setup();
    const cases: Array<[string, () => Promise<{ status: number; type: string | null; bytes: Buffer }>, number, string]> = [
      ['garbage', () => post(`${s.url}${PATHS.map}`, Buffer.from('hello, is this the server?')), 400, 'bad-envelope'],
      ['random bytes', () => post(`${s.url}${PATHS.register}`, Buffer.alloc(300, 7)), 400, 'bad-envelope'],
      ['empty body', () => post(`${s.url}${PATHS.map}`, Buffer.alloc(0)), 400, 'bad-envelope'],
      ['over 1 MiB', () => post(`${s.url}${PATHS.map}`, Buffer.alloc(MAX_BODY_BYTES + 1, 1)), 413, 'too-large'],
      ['GET on a POST path', async () => {
        const res = await fetch(`${s.url}${PATHS.register}`);
        return { status: res.status, type: res.headers.get('content-type'), bytes: Buffer.from(await res.arrayBuffer()) };
      }, 405, 'method'],
      ['non-JSON payload', () => post(`${s.url}${PATHS.map}`, sealMap(s, a.key, Date.now(), 'since=0').bytes), 400, 'bad-json'],
      ['JSON array payload', () => post(`${s.url}${PATHS.map}`, sealMap(s, a.key, Date.now(), '[0]').bytes), 400, 'bad-request'],
      ['since not a number', () => post(`${s.url}${PATHS.map}`, sealMap(s, a.key, Date.now(), '{"since":"x"}').bytes), 400, 'bad-request'],
      ['bad endpoint', () => post(`${s.url}${PATHS.map}`, sealMap(s, a.key, Date.now(), '{"since":0,"endpoints":["nope"]}').bytes), 400, 'bad-request'],
      ['hostname not a string', () => post(`${s.url}${PATHS.register}`, sealMap(s, a.key, Date.now(), '{"hostname":5}', PATHS.register).bytes), 400, 'bad-request'],
    ];
    for (const [what, send, status, code] of cases) {
      const r = await send();
      expect({ what, status: r.status }).toEqual({ what, status });
      const body = errorBody(r);
      expect({ what, body }).toEqual({ what, body: { error: { code, message: expect.any(String) } } });
      expect(body.error.message.length).toBeGreaterThan(5);
    }
    // A streamed (chunked) body over the limit is refused too, without the server falling over.
    const chunk = Buffer.alloc(64 * 1024, 2);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent > MAX_BODY_BYTES + chunk.length) return c.close();
        sent += chunk.length;
        c.enqueue(chunk);
      },
    });
    const streamed = await fetch(`${s.url}${PATHS.map}`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit);
    expect(streamed.status).toBe(413);
    expect(await streamed.json()).toEqual({ error: { code: 'too-large', message: expect.any(String) } });
    // A body that never ends: the 413 still arrives, and the server hangs up soon after instead of reading on.
    const endless = await new Promise<{ head: string; closedAfter: number }>((resolve, reject) => {
      const sock = connect(s.server.port, '127.0.0.1');
      let got = '';
      let stop = false;
      const t0 = Date.now();
      const timer = setTimeout(() => {
        stop = true;
        sock.destroy();
        reject(new Error(`the server kept reading an endless body for 10 s (got ${JSON.stringify(got.slice(0, 40))})`));
      }, 10_000);
      sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
      sock.on('error', () => {});
      sock.on('close', () => {
        stop = true;
        clearTimeout(timer);
        resolve({ head: got.split('\r\n')[0], closedAfter: Date.now() - t0 });
      });
      sock.on('connect', async () => {
        sock.write(`POST ${PATHS.map} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n`);
        while (!stop) {
          sock.write(`${chunk.length.toString(16)}\r\n`);
          sock.write(chunk);
          sock.write('\r\n');
          await new Promise((r) => setTimeout(r, 2));
        }
      });
    });
    expect(endless.head).toBe('HTTP/1.1 413 Payload Too Large');
    expect(endless.closedAfter).toBeLessThan(5_000);
    // Still serving.
    const m = await map(a);
    expect(m.self.name).toBe('a');
    expect((await adminOk(s, 'GET', '/nodes')).nodes).toHaveLength(1);
  });
});

describe('ephemeral nodes', () => {
  it('deletes an ephemeral node that went away, as the server, and keeps the others', async () => {
    const s = await startServer({ ephemeralTimeoutMs: 1_500, pollMs: 300 });
    const eph = await createKey(s, { reusable: true, preauthorized: true, ephemeral: true, tags: ['tag:ci'] });
    const perm = await createKey(s, { reusable: true, preauthorized: true });
    const keeper = await enroll(s, perm.key, 'keeper');
    const gone = await enroll(s, eph.key, 'runner');
    const stays = await enroll(s, eph.key, 'runner');
    expect(stays.self.name).toBe('runner-1');
    const mk = await map(keeper);
    expect(names(mk.peers)).toEqual(['runner', 'runner-1']);

    // `gone` polls once and goes away; `stays` keeps long-polling.
    const mg = await map(gone);
    await map(gone, mg.version, true, 1_000);
    const left = Date.now();
    let polling = true;
    const loop = (async () => {
      let v = 0;
      while (polling) v = (await map(stays, v, true, 1_000)).version;
    })();
    try {
      expect((await adminOk(s, 'GET', '/nodes')).nodes.map((n: { name: string }) => n.name)).toContain('runner');
      const nodes = await until('the ephemeral node to be deleted', 10_000, async () => {
        const ns = (await adminOk(s, 'GET', '/nodes')).nodes as Array<{ name: string; ephemeral: boolean }>;
        return ns.some((n) => n.name === 'runner') ? null : ns;
      });
      const after = Date.now() - left;
      expect(after).toBeGreaterThanOrEqual(1_400);
      expect(after).toBeLessThan(1_500 + 3_000);
      expect(nodes.map((n) => [n.name, n.ephemeral])).toEqual([['keeper', false], ['runner-1', true]]);
      // One more sweep later, the node that keeps polling is still there.
      await new Promise((r) => setTimeout(r, 1_200));
      expect((await adminOk(s, 'GET', '/nodes')).nodes.map((n: { name: string }) => n.name)).toEqual(['keeper', 'runner-1']);
    } finally {
      polling = false;
      await loop;
    }
    const audit = (await adminOk(s, 'GET', '/audit')).audit as Array<{ actor: string; action: string; target: string; detail: Record<string, unknown> }>;
    const del = audit.filter((e) => e.action === 'node.delete');
    expect(del).toEqual([expect.objectContaining({ actor: 'server', target: `node:${gone.self.id}`, detail: expect.objectContaining({ name: 'runner', reason: expect.stringMatching(/ephemeral/) }) })]);
    const dk = await map(keeper, mk.version);
    expect(dk.peersRemoved).toContain(gone.pub);
    expect(keysOf((await map(keeper)).peers)).toEqual([stays.pub]);
    await refusal(map(gone), 401, 'node-unknown');
  });
});

describe('https', () => {
  beforeAll(() => {
    // The child process runs the compiled client: rebuild dist/ if src/ is newer.
    const built = join(ROOT, 'dist/control/client.js');
    const newest = (dir: string): number =>
      Math.max(0, ...readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(join(dir, e.name)) : e.name.endsWith('.ts') ? statSync(join(dir, e.name)).mtimeMs : 0)));
    if (!existsSync(built) || statSync(built).mtimeMs < newest(join(ROOT, 'src'))) {
      try {
        execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'pipe' });
      } catch (err) {
        // tsc still emits when another file has type errors; only a missing build is fatal.
        if (!existsSync(built)) throw err;
      }
    }
  });

  // Skipped, with the reason in its title, where there is no openssl CLI to make the certificate.
  const tlsIt = HAS_OPENSSL ? it : it.skip;
  tlsIt(`serves nodes over https:// with the operator's certificate${HAS_OPENSSL ? '' : ' [skipped: no openssl CLI to make a certificate]'}`, async () => {
    const dir = tempDir();
    const key = join(dir, 'k.pem');
    const cert = join(dir, 'c.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'pipe' });
    const s = { ...(await startServer({ stateDir: join(dir, 'state'), tls: { cert, key } }, 'https')), ca: readFileSync(cert) };
    expect(s.url).toMatch(/^https:/);
    const k = await createKey(s, { reusable: true, preauthorized: true });
    // This process does not trust the certificate: TLS is really in the way.
    const untrusted = await fetchServerKey(s.url).then(
      () => null,
      (e: unknown) => e,
    );
    expect(untrusted).toBeInstanceOf(ControlError);
    expect((untrusted as ControlError).code).toBe('EUNREACHABLE');
    // Plain HTTP to the TLS port gets nowhere.
    const plain = await fetch(`http://127.0.0.1:${s.server.port}${PATHS.key}`).then(
      (r) => r.status,
      () => 'refused',
    );
    expect(plain).not.toBe(200);

    const script = join(dir, 'node.mjs');
    const dist = (p: string) => pathToFileURL(join(ROOT, 'dist', p)).href;
    writeFileSync(
      script,
      `import { ControlClient, fetchServerKey, parseLoginUrl } from ${JSON.stringify(dist('control/client.js'))};
import { X25519PrivateKey } from ${JSON.stringify(dist('crypto/x25519.js'))};
import { encodeKeyBase64 } from ${JSON.stringify(dist('config/keys.js'))};
const [loginUrl, authKey] = process.argv.slice(2);
const { url, serverKey } = parseLoginUrl(loginUrl);
const seen = await fetchServerKey(url);
const nodeKey = X25519PrivateKey.generate();
const client = new ControlClient({ url, serverKey, nodeKey, offsetMs: seen.offsetMs });
const reg = await client.register({ authKey, hostname: 'tls-node', endpoints: [] });
const m = await client.map({ since: 0, wait: false, endpoints: [] }, 5000);
process.stdout.write(JSON.stringify({ url, fetched: encodeKeyBase64(seen.serverKey), pinned: encodeKeyBase64(serverKey), self: reg.node, version: m.version, peers: m.peers.length }));
`,
    );
    const pin = Buffer.from(s.serverKey).toString('base64url');
    const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [script, `${s.url}/?key=${pin}`, k.key], {
        env: { ...process.env, NODE_EXTRA_CA_CERTS: cert },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d));
      child.stderr.on('data', (d: Buffer) => (stderr += d));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`the https client did not finish in 20 s: ${stderr}`));
      }, 20_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
    expect(out.code, out.stderr).toBe(0);
    const r = JSON.parse(out.stdout);
    expect(r).toMatchObject({ url: s.url, fetched: s.server.publicKey, pinned: s.server.publicKey, peers: 0 });
    expect(r.self).toMatchObject({ name: 'tls-node', addresses: ['100.64.0.1/32', 'fd7a:115c:a1e0::6440:1/128'], authorized: true });
    expect((await adminOk(s, 'GET', '/nodes')).nodes.map((n: { name: string }) => n.name)).toEqual(['tls-node']);
  });
});

describe('audit log', () => {
  it('records each admin change and registration, newest first, without secrets', async () => {
    const s = await startServer();
    const k = await createKey(s, { reusable: true, preauthorized: false, user: 'alice' });
    const single = await createKey(s, { tags: ['tag:db'], preauthorized: true });
    const a = await enroll(s, k.key, 'a');
    const b = await enroll(s, single.key, 'b');
    await a.client.register({ hostname: 'a', endpoints: [] }); // a reconnect: liveness, not audited
    await adminOk(s, 'POST', `/nodes/${a.self.id}/approve`);
    await adminOk(s, 'POST', `/nodes/${a.self.id}/rename`, { name: 'alpha' });
    await adminOk(s, 'POST', `/nodes/b/expire`);
    await adminOk(s, 'POST', `/keys/${k.id}/revoke`);
    await adminOk(s, 'DELETE', `/nodes/${encodeURIComponent(b.pub)}`);
    await a.client.logout();
    const c = await enroll(s, (await createKey(s)).key, 'c');
    await adminOk(s, 'DELETE', `/nodes/${c.self.id}`);
    // Refused requests change nothing and leave nothing.
    await admin(s, 'POST', '/keys', { tags: ['bad'] });
    await admin(s, 'DELETE', '/nodes/nope');
    await refusal(newNode(s).client.register({ authKey: single.key, hostname: 'x', endpoints: [] }), 401, 'authkey-used');

    const body = await adminOk(s, 'GET', '/audit');
    const rows = (body.audit as Array<{ id: number; at: number; actor: string; action: string; target: string; detail: Record<string, unknown> }>).slice().reverse();
    expect(rows.map((e) => [e.actor, e.action, e.target])).toEqual([
      ['admin', 'user.create', expect.stringMatching(/^user:\d+$/)],
      ['admin', 'authkey.create', `authkey:${k.id}`],
      ['admin', 'authkey.create', `authkey:${single.id}`],
      [`node:${a.self.id}`, 'node.register', `node:${a.self.id}`],
      [`node:${b.self.id}`, 'node.register', `node:${b.self.id}`],
      ['admin', 'node.approve', `node:${a.self.id}`],
      ['admin', 'node.rename', `node:${a.self.id}`],
      ['admin', 'node.expire', `node:${b.self.id}`],
      ['admin', 'authkey.revoke', `authkey:${k.id}`],
      ['admin', 'node.delete', `node:${b.self.id}`],
      [`node:${a.self.id}`, 'node.logout', `node:${a.self.id}`],
      ['admin', 'user.create', expect.stringMatching(/^user:\d+$/)],
      ['admin', 'authkey.create', expect.stringMatching(/^authkey:\d+$/)],
      [`node:${c.self.id}`, 'node.register', `node:${c.self.id}`],
      ['admin', 'node.delete', `node:${c.self.id}`],
    ]);
    expect(rows[0].detail).toMatchObject({ name: 'alice' });
    expect(rows[1].detail).toMatchObject({ prefix: k.prefix, user: 'alice', tags: [] });
    expect(rows[3].detail).toMatchObject({ authKeyId: k.id, name: 'a', ipv4: '100.64.0.1', authorized: false });
    expect(rows[6].detail).toMatchObject({ changes: { name: 'alpha' } });
    for (let i = 1; i < rows.length; i++) {
      expect(rows[i].id).toBeGreaterThan(rows[i - 1].id);
      expect(rows[i].at).toBeGreaterThanOrEqual(rows[i - 1].at);
    }
    const text = JSON.stringify(body);
    for (const key of [k.key, single.key]) expect(text).not.toContain(secretOf(key));
    expect(text).not.toContain(s.token);
    // ?limit= keeps the newest.
    const two = (await adminOk(s, 'GET', '/audit?limit=2')).audit;
    expect(two.map((e: { action: string }) => e.action)).toEqual(['node.delete', 'node.register']);
  });
});
