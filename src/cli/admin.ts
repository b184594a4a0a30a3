// meshd server, and meshd admin keys|nodes|audit: the admin API's client.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '../daemon/log.js';
import type { CoordinationServer } from '../server/server.js';
import { parseDuration } from '../server/authkeys.js';
import { CliError } from './errors.js';
import { checkMetricsFlag } from '../metrics/flag.js';

export const DEFAULT_SERVER_STATE_DIR = '/var/lib/meshd-server';
export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:8080';

export interface ServerArgs {
  listen: string;
  stateDir: string;
  db?: string;
  logLevel: string;
  tlsCert?: string;
  tlsKey?: string;
  policyFile?: string;
  ephemeralTimeout?: string;
  nodeKeyExpiry?: string;
  /** host:port for Prometheus metrics (meant for localhost); off when absent. */
  metrics?: string;
}

function duration(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === null) throw new CliError('EUSAGE', `${flag} "${text}" is not a duration like 180d, 12h, 30m, 45s`, 2);
  return ms;
}

export async function runServer(a: ServerArgs): Promise<void> {
  if ((a.tlsCert === undefined) !== (a.tlsKey === undefined)) throw new CliError('EUSAGE', '--tls-cert and --tls-key go together', 2);
  const log = createLogger(a.logLevel);
  const expiry = a.nodeKeyExpiry === '0' ? null : duration(a.nodeKeyExpiry, '--node-key-expiry');
  const policyText = a.policyFile === undefined ? undefined : readPolicyFile(a.policyFile);
  if (a.metrics !== undefined) checkMetricsFlag(a.metrics);
  let s: CoordinationServer;
  try {
    // Loaded here, not at the top: every other command (the node daemon above all) stays
    // without the server's SQLite, policy compiler and HTTP stack in memory.
    const { CoordinationServer, DEFAULT_EPHEMERAL_TIMEOUT_MS } = await import('../server/server.js');
    s = await CoordinationServer.start({
      stateDir: a.stateDir,
      listen: a.listen,
      db: a.db,
      log,
      tls: a.tlsCert && a.tlsKey ? { cert: a.tlsCert, key: a.tlsKey } : undefined,
      ephemeralTimeoutMs: duration(a.ephemeralTimeout, '--ephemeral-timeout') ?? DEFAULT_EPHEMERAL_TIMEOUT_MS,
      nodeKeyExpiryMs: expiry,
      policy: policyText === undefined ? undefined : { text: policyText, source: a.policyFile! },
      metrics: a.metrics,
    });
  } catch (err) {
    throw new CliError((err as { code?: string }).code ?? 'ESERVER', (err as Error).message);
  }
  log.info({ listen: a.listen, port: s.port, serverKey: s.publicKey, adminToken: s.adminTokenPath, metricsPort: s.metricsPort ?? undefined }, 'meshd server running');
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await s.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}

export interface AdminTarget {
  server: string;
  tokenFile: string;
  json: boolean;
}

function token(t: AdminTarget): string {
  const env = process.env.MESHD_ADMIN_TOKEN;
  if (env) return env.trim();
  try {
    return readFileSync(t.tokenFile, 'utf8').trim();
  } catch (err) {
    throw new CliError('ETOKEN', `cannot read the admin token from ${t.tokenFile} (${(err as NodeJS.ErrnoException).code}): give --token-file or set MESHD_ADMIN_TOKEN`);
  }
}

export async function adminCall<T>(t: AdminTarget, method: string, path: string, body?: unknown): Promise<T> {
  const url = `${t.server.replace(/\/+$/, '')}/meshd/v1/admin/${path}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${token(t)}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    throw new CliError('EUNREACHABLE', `cannot reach the server at ${t.server}: ${cause?.code ?? (err as Error).message}`);
  }
  const parsed = (await res.json().catch(() => null)) as (T & { error?: { code: string; message: string } }) | null;
  if (!res.ok) throw new CliError(parsed?.error?.code ?? 'EADMIN', parsed?.error?.message ?? `server answered HTTP ${res.status}`);
  return parsed as T;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n';
}

const when = (ms: number | null) => (ms ? new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z') : '-');

function out(t: AdminTarget, value: unknown, human: () => string): void {
  process.stdout.write(t.json ? `${JSON.stringify(value, null, 2)}\n` : human());
}

interface KeyRow {
  id: number;
  prefix: string;
  user: string | null;
  tags: string[];
  reusable: boolean;
  ephemeral: boolean;
  preauthorized: boolean;
  expiresAt: number | null;
  usedCount: number;
  state: string;
  key?: string;
}

export async function keysCreate(t: AdminTarget, o: { user?: string; tags?: string; reusable: boolean; ephemeral: boolean; preauthorized: boolean; expiry: string }): Promise<void> {
  const r = await adminCall<KeyRow>(t, 'POST', 'keys', {
    user: o.user,
    tags: o.tags ? o.tags.split(',').map((s) => s.trim()).filter(Boolean) : undefined,
    reusable: o.reusable,
    ephemeral: o.ephemeral,
    preauthorized: o.preauthorized,
    expiry: o.expiry,
  });
  out(t, r, () => `${r.key}\n`);
}

export async function keysList(t: AdminTarget): Promise<void> {
  const r = await adminCall<{ keys: KeyRow[] }>(t, 'GET', 'keys');
  out(t, r, () =>
    table([
      ['ID', 'PREFIX', 'OWNER', 'REUSABLE', 'EPHEMERAL', 'PREAUTH', 'USED', 'EXPIRES', 'STATE'],
      ...r.keys.map((k) => [String(k.id), k.prefix, k.user ?? k.tags.join(','), String(k.reusable), String(k.ephemeral), String(k.preauthorized), String(k.usedCount), when(k.expiresAt), k.state]),
    ]),
  );
}

export async function keysRevoke(t: AdminTarget, ref: string): Promise<void> {
  const r = await adminCall(t, 'POST', `keys/${encodeURIComponent(ref)}/revoke`);
  out(t, r, () => `revoked ${ref}\n`);
}

interface NodeRow {
  id: number;
  name: string;
  user: string | null;
  tags: string[];
  ipv4: string;
  ipv6: string;
  online: boolean;
  expired: boolean;
  authorized: boolean;
  ephemeral: boolean;
  lastSeen: number | null;
  keyExpiry: number | null;
}

export async function nodesList(t: AdminTarget): Promise<void> {
  const r = await adminCall<{ nodes: NodeRow[] }>(t, 'GET', 'nodes');
  out(t, r, () =>
    table([
      ['ID', 'NAME', 'OWNER', 'IPV4', 'IPV6', 'STATUS', 'LAST SEEN', 'KEY EXPIRY'],
      ...r.nodes.map((n) => [
        String(n.id),
        n.name,
        n.user ?? n.tags.join(','),
        n.ipv4,
        n.ipv6,
        n.expired ? 'expired' : !n.authorized ? 'pending approval' : n.online ? 'online' : 'offline',
        when(n.lastSeen),
        when(n.keyExpiry),
      ]),
    ]),
  );
}

export async function nodesAction(t: AdminTarget, action: 'expire' | 'delete' | 'approve' | 'rename', ref: string, name?: string): Promise<void> {
  const path = `nodes/${encodeURIComponent(ref)}`;
  const r =
    action === 'delete'
      ? await adminCall(t, 'DELETE', path)
      : await adminCall(t, 'POST', `${path}/${action}`, action === 'rename' ? { name } : undefined);
  out(t, r, () => `${action === 'delete' ? 'deleted' : action === 'expire' ? 'expired' : action === 'approve' ? 'approved' : `renamed to ${name}:`} ${ref}\n`);
}

export async function auditList(t: AdminTarget, limit: number): Promise<void> {
  const r = await adminCall<{ audit: Array<{ at: number; actor: string; action: string; target: string; detail: unknown }> }>(t, 'GET', `audit?limit=${limit}`);
  out(t, r, () => table([['AT', 'ACTOR', 'ACTION', 'TARGET', 'DETAIL'], ...r.audit.map((e) => [when(e.at), e.actor, e.action, e.target, JSON.stringify(e.detail)])]));
}

export function defaultTokenFile(stateDir = DEFAULT_SERVER_STATE_DIR): string {
  return join(stateDir, 'admin.token');
}

interface RouteRow {
  id: number;
  node: string;
  prefix: string;
  state: string;
  approved: boolean;
}

export async function routesList(t: AdminTarget): Promise<void> {
  const r = await adminCall<{ routes: RouteRow[] }>(t, 'GET', 'routes');
  out(t, r, () => table([['ID', 'NODE', 'PREFIX', 'STATE'], ...r.routes.map((x) => [String(x.id), x.node, x.prefix, x.state])]));
}

export async function routesAction(t: AdminTarget, action: 'approve' | 'reject', ref: string): Promise<void> {
  const r = await adminCall<{ routes: RouteRow[] }>(t, 'POST', `routes/${encodeURIComponent(ref)}/${action}`);
  out(t, r, () => r.routes.map((x) => `${action === 'approve' ? 'approved' : 'rejected'} ${x.prefix} via ${x.node} (${x.state})\n`).join(''));
}

function readPolicyFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError('EPOLICY', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export async function policyGet(t: AdminTarget): Promise<void> {
  const r = await adminCall<{ text: string; default: boolean }>(t, 'GET', 'policy');
  out(t, r, () => (r.text.endsWith('\n') ? r.text : `${r.text}\n`));
}

/** set and check send the file as written; the server parses, validates and runs its tests. */
export async function policyPut(t: AdminTarget, verb: 'set' | 'check', path: string): Promise<void> {
  const text = readPolicyFile(path);
  try {
    const r = await adminCall<{ ok: true; tests: number }>(t, 'POST', `policy/${verb}`, { text });
    out(t, r, () => `${path}: ${verb === 'set' ? 'in force' : 'valid'} (${r.tests} test${r.tests === 1 ? '' : 's'} passed)\n`);
  } catch (err) {
    // "policy.json:3:14: ..." so an editor can jump to it.
    const e = err as CliError;
    throw new CliError(e.code, `${path}${/^\d+:\d+: /.test(e.message) ? ':' : ': '}${e.message}`);
  }
}
