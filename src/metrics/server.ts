// The coordination server's metrics (`meshd server --metrics ADDR`): nodes
// (all, online, pending approval, expired), auth keys by state, netmap
// rebuilds and pushes, and the latency of every API request by route and
// status. Routes are path patterns with ids replaced, so the label set stays
// bounded whatever paths clients send; auth keys and tokens never appear.
import { Histogram, Registry } from 'prom-client';
import { PATHS } from '../control/messages.js';
import { ADMIN, keyView } from '../server/admin.js';
import type { AuthKeyRecord, NodeRecord } from '../server/store.js';
import { liveCounter, liveGauge, memo } from './collect.js';

export interface ServerMetricsSource {
  listNodes(): Promise<NodeRecord[]>;
  listAuthKeys(): Promise<AuthKeyRecord[]>;
  isOnline(nodeKey: string): boolean;
  stats: { pushes: number; rebuilds: number };
  now(): number;
}

const KEY_STATES = ['valid', 'used', 'expired', 'revoked'] as const;
const ADMIN_RESOURCES = new Set(['keys', 'nodes', 'routes', 'policy', 'users', 'audit']);
const ADMIN_ACTIONS = new Set(['revoke', 'expire', 'approve', 'rename', 'reject', 'check', 'set']);
const FIXED = new Set<string>([PATHS.key, PATHS.register, PATHS.map, PATHS.logout, '/health']);
const METHODS = new Set(['GET', 'POST', 'PUT', 'DELETE', 'HEAD']);

/** The route label of a request path: fixed paths as they are, admin paths with ":ref" for ids, anything else "other". */
export function apiRoute(path: string): string {
  if (FIXED.has(path)) return path;
  if (path !== ADMIN && !path.startsWith(`${ADMIN}/`)) return 'other';
  const parts = path.slice(ADMIN.length).split('/').filter(Boolean);
  if (parts.length === 0) return ADMIN;
  if (!ADMIN_RESOURCES.has(parts[0]) || parts.length > 3) return `${ADMIN}/other`;
  let route = `${ADMIN}/${parts[0]}`;
  if (parts.length >= 2) route += parts[0] === 'policy' ? `/${ADMIN_ACTIONS.has(parts[1]) ? parts[1] : 'other'}` : '/:ref';
  if (parts.length === 3) route += `/${ADMIN_ACTIONS.has(parts[2]) ? parts[2] : 'other'}`;
  return route;
}

export interface ServerMetrics {
  registry: Registry;
  /** One finished API request: its path, method, HTTP status and duration. */
  observe(path: string, method: string | undefined, status: number, seconds: number): void;
}

export function serverMetrics(src: ServerMetricsSource): ServerMetrics {
  const reg = new Registry();
  const nodeCounts = memo(async () => {
    const nodes = await src.listNodes();
    const now = src.now();
    return {
      total: nodes.length,
      online: nodes.filter((n) => src.isOnline(n.nodeKey)).length,
      pending: nodes.filter((n) => !n.authorized).length,
      expired: nodes.filter((n) => n.keyExpiry !== null && n.keyExpiry <= now).length,
    };
  });
  liveGauge(reg, 'meshd_server_nodes', 'Registered nodes', [], async (emit) => emit({}, (await nodeCounts()).total));
  liveGauge(reg, 'meshd_server_nodes_online', 'Nodes with a live control connection (long poll)', [], async (emit) => emit({}, (await nodeCounts()).online));
  liveGauge(reg, 'meshd_server_nodes_pending', 'Nodes waiting for an admin\'s approval', [], async (emit) => emit({}, (await nodeCounts()).pending));
  liveGauge(reg, 'meshd_server_nodes_expired', 'Nodes whose key has expired', [], async (emit) => emit({}, (await nodeCounts()).expired));
  liveGauge(reg, 'meshd_server_auth_keys', 'Auth keys by state', ['state'], async (emit) => {
    const keys = await src.listAuthKeys();
    const now = src.now();
    const counts = new Map<string, number>(KEY_STATES.map((s) => [s, 0]));
    for (const k of keys) {
      const s = keyView(k, new Map(), now).state;
      counts.set(s, (counts.get(s) ?? 0) + 1);
    }
    for (const [state, n] of counts) emit({ state }, n);
  });
  liveCounter(reg, 'meshd_server_netmap_pushes_total', 'Netmaps sent to waiting long polls after a change', [], (emit) => emit({}, src.stats.pushes));
  liveCounter(reg, 'meshd_server_netmap_rebuilds_total', 'Rebuilds of every node\'s netmap view', [], (emit) => emit({}, src.stats.rebuilds));
  const latency = new Histogram({
    name: 'meshd_server_api_request_duration_seconds',
    help: 'API request latency by route, method and status (map long polls wait up to 25 s)',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [reg],
  });
  return {
    registry: reg,
    observe(path, method, status, seconds) {
      const m = method && METHODS.has(method) ? method : 'other';
      latency.observe({ route: apiRoute(path), method: m, status: String(status) }, seconds);
    },
  };
}
