// Subnet routes and the policy in the SQLite store: advertise, withdraw,
// auto-approve, approve/reject, cascade on node delete, policy text kept
// exactly, all surviving a reopen.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/server/sqliteStore.js';
import type { Store } from '../../src/server/store.js';

const NOW = 1_800_000_000_000;
const audit = (action: string) => ({ at: NOW, actor: 'admin', action, target: 't', detail: {} });
let dir: string;
let store: Store | null = null;

async function withNode(s: Store, key = 'k'): Promise<number> {
  const u = await s.ensureUser('alice', NOW, 'admin');
  const k = await s.createAuthKey({ prefix: `p${key}`, secretHash: 'h', userId: u.id, tags: [], reusable: true, ephemeral: false, preauthorized: true, expiresAt: null, createdAt: NOW }, audit('authkey.create'));
  const r = await s.registerNode({ nodeKey: `node-${key}`, requestedHostname: 'router', endpoints: [], authKeyId: k.id, now: NOW, keyExpiry: null });
  if (!r.ok) throw new Error(r.reason);
  return r.node.id;
}

afterEach(async () => {
  await store?.close();
  store = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('SqliteStore routes and policy', () => {
  it('advertises, auto-approves, withdraws and re-advertises, keeping approval', async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshd-routes-'));
    const s = (store = SqliteStore.open(join(dir, 'db')));
    const id = await withNode(s);
    expect(await s.setAdvertisedRoutes(id, ['10.0.0.0/16', '10.1.0.0/16'], ['10.1.0.0/16'], NOW)).toBe(true);
    expect(await s.setAdvertisedRoutes(id, ['10.0.0.0/16', '10.1.0.0/16'], [], NOW)).toBe(false);
    let routes = await s.listRoutes();
    expect(routes.map((r) => [r.prefix, r.advertised, r.approved])).toEqual([['10.0.0.0/16', true, false], ['10.1.0.0/16', true, true]]);
    const approved = await s.setRouteApproval(routes[0].id, true, audit('route.approve'));
    expect(approved?.approved).toBe(true);
    expect(await s.setRouteApproval(9999, true, audit('route.approve'))).toBeNull();
    expect(await s.setAdvertisedRoutes(id, ['10.1.0.0/16'], [], NOW)).toBe(true);
    routes = await s.listRoutes();
    expect(routes.map((r) => [r.prefix, r.advertised, r.approved])).toEqual([['10.0.0.0/16', false, true], ['10.1.0.0/16', true, true]]);
    expect(await s.setAdvertisedRoutes(id, ['10.0.0.0/16', '10.1.0.0/16'], [], NOW)).toBe(true);
    expect((await s.listRoutes())[0]).toMatchObject({ advertised: true, approved: true });
    const actions = (await s.listAudit(100)).map((a) => a.action);
    expect(actions.filter((a) => a === 'route.advertise')).toHaveLength(3);
    expect(actions).toContain('route.withdraw');
    expect(actions).toContain('route.approve');
  });

  it('drops a node\'s routes with the node, and keeps routes and policy across a reopen', async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshd-routes-'));
    let s = (store = SqliteStore.open(join(dir, 'db')));
    const a = await withNode(s, 'a');
    const b = await withNode(s, 'b');
    await s.setAdvertisedRoutes(a, ['10.0.0.0/16'], [], NOW);
    await s.setAdvertisedRoutes(b, ['10.0.0.0/16'], ['10.0.0.0/16'], NOW);
    const text = '// keep this comment\n{ "acls": [] }\n';
    expect(await s.getPolicy()).toBeNull();
    await s.setPolicy(text, NOW + 1, audit('policy.set'));
    await s.close();
    s = store = SqliteStore.open(join(dir, 'db'));
    expect(await s.getPolicy()).toEqual({ text, updatedAt: NOW + 1 });
    expect((await s.listRoutes()).map((r) => r.nodeId)).toEqual([a, b]);
    expect(await s.deleteNode(a, audit('node.delete'))).toBe(true);
    expect((await s.listRoutes()).map((r) => [r.nodeId, r.approved])).toEqual([[b, true]]);
  });
});
