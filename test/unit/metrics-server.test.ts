// The coordination server's metrics: an in-process server on 127.0.0.1:0
// with --metrics on 127.0.0.1:0; nodes register with ControlClient as
// `meshd up` does; the scrape counts nodes (online, pending), auth keys by
// state, netmap pushes and rebuilds, and API latency by route and status —
// and holds no auth key, admin token or server key material.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeKeyBase64, encodeKeyBase64 } from '../../src/config/keys.js';
import { ControlClient } from '../../src/control/client.js';
import { X25519PrivateKey } from '../../src/crypto/x25519.js';
import { createLogger } from '../../src/daemon/log.js';
import { apiRoute } from '../../src/metrics/server.js';
import { ADMIN } from '../../src/server/admin.js';
import { CoordinationServer, type ServerOptions } from '../../src/server/server.js';

const log = createLogger('silent');
const servers: CoordinationServer[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) await s.close().catch(() => {});
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function start(o: Partial<ServerOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-metrics-test-'));
  dirs.push(dir);
  const server = await CoordinationServer.start({ stateDir: dir, listen: '127.0.0.1:0', log, pollMs: 2_000, metrics: '127.0.0.1:0', ...o });
  servers.push(server);
  const token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
  const url = `http://127.0.0.1:${server.port}`;
  const adminCall = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${url}${ADMIN}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as any };
  };
  const scrape = async () => {
    const res = await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`);
    expect(res.status).toBe(200);
    return res.text();
  };
  const node = () => {
    const key = X25519PrivateKey.generate();
    return { key, pub: encodeKeyBase64(key.publicKey), client: new ControlClient({ url, serverKey: decodeKeyBase64(server.publicKey), nodeKey: key }) };
  };
  return { server, dir, token, url, adminCall, scrape, node };
}

function value(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function until(what: string, probe: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('coordination server metrics', () => {
  it('counts nodes, pending nodes, online nodes, auth keys, pushes and API latency', async () => {
    const s = await start();
    let text = await s.scrape();
    expect(value(text, 'meshd_server_nodes')).toBe(0);
    expect(value(text, 'meshd_server_auth_keys', { state: 'valid' })).toBe(0);

    const open = await s.adminCall('POST', '/keys', { reusable: true, preauthorized: true });
    const pending = await s.adminCall('POST', '/keys', { reusable: false });
    expect(open.status).toBe(200);
    const a = s.node();
    const b = s.node();
    const c = s.node();
    await a.client.register({ authKey: open.body.key, hostname: 'alpha', endpoints: [] });
    // alpha goes online, then parks a long poll at the current version; the
    // next registrations change the mesh and answer it: a push.
    await a.client.map({ since: 0, wait: true, endpoints: [] }, 5_000);
    await until('alpha online', async () => value(await s.scrape(), 'meshd_server_nodes_online') === 1);
    const latest = (await a.client.map({ since: 0, wait: false, endpoints: [] }, 5_000)).version;
    const parked = a.client.map({ since: latest, wait: true, endpoints: [] }, 5_000);
    await new Promise((r) => setTimeout(r, 300));
    await b.client.register({ authKey: open.body.key, hostname: 'bravo', endpoints: [] });
    await c.client.register({ authKey: pending.body.key, hostname: 'charlie', endpoints: [] });
    expect((await parked).version).toBeGreaterThan(latest);

    text = await s.scrape();
    expect(value(text, 'meshd_server_nodes')).toBe(3);
    expect(value(text, 'meshd_server_nodes_pending')).toBe(1);
    expect(value(text, 'meshd_server_nodes_expired')).toBe(0);
    expect(value(text, 'meshd_server_nodes_online')).toBe(1);
    expect(value(text, 'meshd_server_auth_keys', { state: 'valid' })).toBe(1);
    expect(value(text, 'meshd_server_auth_keys', { state: 'used' })).toBe(1);
    expect(value(text, 'meshd_server_auth_keys', { state: 'revoked' })).toBe(0);
    expect(value(text, 'meshd_server_netmap_pushes_total')).toBeGreaterThanOrEqual(1);
    expect(value(text, 'meshd_server_netmap_rebuilds_total')).toBeGreaterThanOrEqual(1);
    expect(s.server.stats.pushes).toBe(value(text, 'meshd_server_netmap_pushes_total'));
    expect(text).toMatch(/# TYPE meshd_server_api_request_duration_seconds histogram/);
    const reg = { route: '/meshd/v1/register', method: 'POST', status: '200' };
    expect(value(text, 'meshd_server_api_request_duration_seconds_count', reg)).toBe(3);
    expect(value(text, 'meshd_server_api_request_duration_seconds_bucket', { ...reg, le: '+Inf' })).toBe(3);
    expect(value(text, 'meshd_server_api_request_duration_seconds_count', { route: `${ADMIN}/keys`, method: 'POST', status: '200' })).toBe(2);
    expect(value(text, 'meshd_server_api_request_duration_seconds_sum', reg)).toBeGreaterThan(0);

    // Refusals are counted by status; odd paths collapse into "other".
    const bad = await fetch(`${s.url}${ADMIN}/keys`, { headers: { authorization: 'Bearer wrong' } });
    expect(bad.status).toBe(401);
    await fetch(`${s.url}/no/such/${'x'.repeat(40)}`);
    await s.adminCall('POST', `/nodes/${encodeURIComponent('charlie')}/approve`);
    text = await s.scrape();
    expect(value(text, 'meshd_server_api_request_duration_seconds_count', { route: `${ADMIN}/keys`, method: 'GET', status: '401' })).toBe(1);
    expect(value(text, 'meshd_server_api_request_duration_seconds_count', { route: 'other', status: '404' })).toBe(1);
    expect(value(text, 'meshd_server_api_request_duration_seconds_count', { route: `${ADMIN}/nodes/:ref/approve`, status: '200' })).toBe(1);
    expect(text).not.toContain('charlie');
    expect(text).not.toContain('xxxxxxxx');
    expect(value(text, 'meshd_server_nodes_pending')).toBe(0);

    // No secrets: auth keys (or their secret part), the admin token, the server's private key.
    const serverKey = readFileSync(join(s.dir, 'server.key'), 'utf8').trim();
    for (const secret of [open.body.key, pending.body.key, open.body.key.slice('mskey-'.length + 13), s.token, serverKey]) {
      expect(text).not.toContain(secret);
    }
  });

  it('revoked and expired keys; the listener stops with the server', async () => {
    const s = await start();
    const k = await s.adminCall('POST', '/keys', { reusable: true });
    await s.adminCall('POST', `/keys/${k.body.id}/revoke`);
    const text = await s.scrape();
    expect(value(text, 'meshd_server_auth_keys', { state: 'revoked' })).toBe(1);
    expect(value(text, 'meshd_server_api_request_duration_seconds_count', { route: `${ADMIN}/keys/:ref/revoke`, status: '200' })).toBe(1);
    const port = s.server.metricsPort!;
    await s.server.close();
    servers.splice(servers.indexOf(s.server), 1);
    await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
  });

  it('is off unless asked for, and a bad address fails the start', async () => {
    const s = await start({ metrics: undefined });
    expect(s.server.metricsPort).toBeNull();
    const taken = await start();
    await expect(start({ metrics: `127.0.0.1:${taken.server.metricsPort}` })).rejects.toThrow(/EADDRINUSE/);
    await expect(start({ metrics: ':9101' })).rejects.toThrow(/--metrics ":9101"/);
  });
});

describe('API route labels', () => {
  it('keep fixed paths, put :ref for ids, and bound everything else', () => {
    expect(apiRoute('/meshd/v1/map')).toBe('/meshd/v1/map');
    expect(apiRoute('/health')).toBe('/health');
    expect(apiRoute(`${ADMIN}/nodes`)).toBe(`${ADMIN}/nodes`);
    expect(apiRoute(`${ADMIN}/nodes/web1`)).toBe(`${ADMIN}/nodes/:ref`);
    expect(apiRoute(`${ADMIN}/nodes/7/rename`)).toBe(`${ADMIN}/nodes/:ref/rename`);
    expect(apiRoute(`${ADMIN}/policy/check`)).toBe(`${ADMIN}/policy/check`);
    expect(apiRoute(`${ADMIN}/policy/zzz`)).toBe(`${ADMIN}/policy/other`);
    expect(apiRoute(`${ADMIN}/keys/mskey-abc-secret/whatever`)).toBe(`${ADMIN}/keys/:ref/other`);
    expect(apiRoute(`${ADMIN}/secret-thing`)).toBe(`${ADMIN}/other`);
    expect(apiRoute('/meshd/v1/mapx')).toBe('other');
    expect(apiRoute('/')).toBe('other');
  });
});
