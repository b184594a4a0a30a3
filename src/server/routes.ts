// Subnet routes on the server: what a node may advertise, which router is
// primary for a prefix, and the admin's approve/reject. Only approved,
// advertised routes of active nodes count; of several routers for one
// prefix the lowest node id is primary (deterministic; failover is later
// work) and the others stand by.
import { MAX_ROUTES, type Hostinfo, type RouteState } from '../control/messages.js';
import { formatCidr, maskBytes, parseCidr, type IpPrefix } from '../net/ipaddr.js';
import { badRequest, optStringArray } from './http.js';
import type { RouteRecord } from './store.js';

const OVERLAY: IpPrefix[] = ['100.64.0.0/10', 'fd7a:115c:a1e0::/48'].map((c) => (parseCidr(c) as { ok: true; value: IpPrefix }).value);
const TAG = /^tag:[a-z0-9][a-z0-9-]{0,62}$/;

function overlaps(a: IpPrefix, b: IpPrefix): boolean {
  if (a.family !== b.family) return false;
  const bits = Math.min(a.bits, b.bits);
  const x = maskBytes(a.bytes, bits);
  const y = maskBytes(b.bytes, bits);
  return x.every((v, i) => v === y[i]);
}

/** One advertised route, canonical, or a 400 a user can act on. */
export function canonicalRoute(text: string): string {
  const p = parseCidr(text);
  if (!p.ok) throw badRequest(`advertised route "${text}" is not a CIDR: ${p.reason}`, 'bad-route');
  const canon = formatCidr({ ...p.value, bytes: maskBytes(p.value.bytes, p.value.bits) });
  if (canon !== formatCidr(p.value)) throw badRequest(`advertised route ${text} has host bits set; did you mean ${canon}?`, 'bad-route');
  if (p.value.bits === 0) throw badRequest(`advertised route ${text} would route everything (exit nodes are not supported yet)`, 'bad-route');
  if (OVERLAY.some((o) => overlaps(o, p.value))) throw badRequest(`advertised route ${text} overlaps the mesh's own addresses`, 'bad-route');
  return canon;
}

export function parseHostinfo(payload: Record<string, unknown>): Hostinfo | null {
  const h = payload.hostinfo;
  if (h === undefined || h === null) return null;
  if (typeof h !== 'object' || Array.isArray(h)) throw badRequest('hostinfo must be an object');
  const o = h as Record<string, unknown>;
  const routes = (optStringArray(o, 'advertiseRoutes', MAX_ROUTES, 64) ?? []).map(canonicalRoute);
  const tags = optStringArray(o, 'advertiseTags', 32, 64) ?? [];
  for (const t of tags) if (!TAG.test(t)) throw badRequest(`tag "${t}" must look like tag:name`, 'bad-tag');
  return { advertiseRoutes: [...new Set(routes)].sort(), advertiseTags: [...new Set(tags)].sort() };
}

export interface RouteTable {
  /** Each node's advertised routes with their state (for its own netmap and the admin). */
  byNode: Map<number, RouteState[]>;
  /** The prefixes each node is primary for: what goes into its peers' allowed IPs. */
  primaries: Map<number, string[]>;
}

export function electPrimaries(routes: readonly RouteRecord[], active: (nodeId: number) => boolean): RouteTable {
  const primaryOf = new Map<string, number>();
  for (const r of routes) {
    if (!r.advertised || !r.approved || !active(r.nodeId)) continue;
    const cur = primaryOf.get(r.prefix);
    if (cur === undefined || r.nodeId < cur) primaryOf.set(r.prefix, r.nodeId);
  }
  const byNode = new Map<number, RouteState[]>();
  const primaries = new Map<number, string[]>();
  for (const r of routes) {
    if (!r.advertised) continue;
    const primary = primaryOf.get(r.prefix) === r.nodeId && r.approved;
    const list = byNode.get(r.nodeId) ?? [];
    list.push({ prefix: r.prefix, approved: r.approved, primary });
    byNode.set(r.nodeId, list);
    if (primary) primaries.set(r.nodeId, [...(primaries.get(r.nodeId) ?? []), r.prefix]);
  }
  return { byNode, primaries };
}

/** The admin's view of one route. */
export function routeView(r: RouteRecord, table: RouteTable, nodeName: (id: number) => string) {
  const state = !r.advertised ? 'withdrawn' : !r.approved ? 'pending' : table.primaries.get(r.nodeId)?.includes(r.prefix) ? 'primary' : 'standby';
  return { id: r.id, node: nodeName(r.nodeId), nodeId: r.nodeId, prefix: r.prefix, advertised: r.advertised, approved: r.approved, state, createdAt: r.createdAt };
}
