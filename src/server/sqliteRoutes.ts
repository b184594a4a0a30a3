// Subnet routes and the policy on SQLite: the part of the Store that issue 6
// added, kept beside sqliteStore.ts so each file stays one concern. Every
// change runs in the caller's write transaction with its audit row.
import type Database from 'better-sqlite3';
import type { AuditInput, PolicyRecord, RouteRecord } from './store.js';

interface RouteRow {
  id: number;
  node_id: number;
  prefix: string;
  advertised: number;
  approved: number;
  created_at: number;
}

const toRoute = (r: RouteRow): RouteRecord => ({
  id: r.id,
  nodeId: r.node_id,
  prefix: r.prefix,
  advertised: r.advertised === 1,
  approved: r.approved === 1,
  createdAt: r.created_at,
});

export function routeStatements(db: Database.Database) {
  const p = <R>(sql: string) => db.prepare<unknown[], R>(sql);
  return {
    routesOf: p<RouteRow>('SELECT * FROM routes WHERE node_id = ? ORDER BY id'),
    listRoutes: p<RouteRow>('SELECT * FROM routes ORDER BY id'),
    routeById: p<RouteRow>('SELECT * FROM routes WHERE id = ?'),
    insertRoute: p('INSERT INTO routes (node_id, prefix, advertised, approved, created_at) VALUES (?, ?, 1, ?, ?)'),
    setAdvertised: p('UPDATE routes SET advertised = ? WHERE id = ?'),
    setApproved: p<RouteRow>('UPDATE routes SET approved = ? WHERE id = ? RETURNING *'),
    getPolicy: p<{ text: string; updated_at: number }>('SELECT text, updated_at FROM policy WHERE id = 1'),
    setPolicy: p('INSERT INTO policy (id, text, updated_at) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET text = excluded.text, updated_at = excluded.updated_at'),
  };
}

type RouteStatements = ReturnType<typeof routeStatements>;

/** The body of setAdvertisedRoutes; run inside a write transaction. */
export function advertiseRoutes(q: RouteStatements, writeAudit: (e: AuditInput) => void, nodeId: number, prefixes: string[], autoApprove: string[], now: number): boolean {
  const have = new Map(q.routesOf.all(nodeId).map((r) => [r.prefix, r]));
  const want = new Set(prefixes);
  let changed = false;
  const audit = (action: string, prefix: string, detail: Record<string, unknown> = {}) =>
    writeAudit({ at: now, actor: `node:${nodeId}`, action, target: `node:${nodeId}`, detail: { prefix, ...detail } });
  for (const prefix of want) {
    const r = have.get(prefix);
    if (!r) {
      const approved = autoApprove.includes(prefix);
      q.insertRoute.run(nodeId, prefix, approved ? 1 : 0, now);
      audit('route.advertise', prefix, { approved, by: approved ? 'autoApprovers' : null });
      changed = true;
    } else if (r.advertised === 0) {
      q.setAdvertised.run(1, r.id);
      audit('route.advertise', prefix, { approved: r.approved === 1 });
      changed = true;
    }
  }
  for (const r of have.values()) {
    if (r.advertised === 1 && !want.has(r.prefix)) {
      q.setAdvertised.run(0, r.id);
      audit('route.withdraw', r.prefix);
      changed = true;
    }
  }
  return changed;
}

export function listRoutes(q: RouteStatements): RouteRecord[] {
  return q.listRoutes.all().map(toRoute);
}

export function approveRoute(q: RouteStatements, writeAudit: (e: AuditInput) => void, id: number, approved: boolean, audit: AuditInput): RouteRecord | null {
  if (!q.routeById.get(id)) return null;
  const r = q.setApproved.get(approved ? 1 : 0, id);
  writeAudit(audit);
  return r ? toRoute(r) : null;
}

export function getPolicy(q: RouteStatements): PolicyRecord | null {
  const r = q.getPolicy.get();
  return r ? { text: r.text, updatedAt: r.updated_at } : null;
}

export function setPolicy(q: RouteStatements, writeAudit: (e: AuditInput) => void, text: string, now: number, audit: AuditInput): void {
  q.setPolicy.run(text, now);
  writeAudit(audit);
}
