// meshd up | down | logout | status | ip: clients of the daemon's local socket.
import { readFileSync } from 'node:fs';
import { formatCidr, maskBytes, parseCidr } from '../net/ipaddr.js';
import { localRequest } from '../node/localapi.js';
import type { StatusJson } from '../node/status.js';
import { CliError } from './errors.js';


export interface UpArgs {
  socket: string;
  loginServer?: string;
  authKey?: string;
  hostname?: string;
  advertiseRoutes?: string;
  acceptRoutes?: boolean;
  snatSubnetRoutes?: boolean;
  advertiseTags?: string;
  timeoutS: number;
}

const TAG = /^tag:[a-z0-9][a-z0-9-]{0,62}$/;

/** "10.0.0.0/16,fd00:1::/64" -> canonical CIDRs; "" clears. Host bits set is an error, as tailscale does. */
export function parseRouteList(text: string): string[] {
  const out: string[] = [];
  for (const item of text.split(',').map((x) => x.trim()).filter(Boolean)) {
    const p = parseCidr(item);
    if (!p.ok) throw new CliError('EUSAGE', `--advertise-routes: "${item}" is not a CIDR (${p.reason})`, 2);
    const canon = formatCidr({ ...p.value, bytes: maskBytes(p.value.bytes, p.value.bits) });
    if (canon !== formatCidr(p.value)) throw new CliError('EUSAGE', `--advertise-routes: ${item} has host bits set; did you mean ${canon}?`, 2);
    if (p.value.bits === 0) throw new CliError('EUSAGE', `--advertise-routes: ${item} would route everything (exit nodes are not supported yet)`, 2);
    if (!out.includes(canon)) out.push(canon);
  }
  return out;
}

export function parseTagList(text: string): string[] {
  const tags = text.split(',').map((x) => x.trim()).filter(Boolean);
  for (const t of tags) if (!TAG.test(t)) throw new CliError('EUSAGE', `--advertise-tags: "${t}" must look like tag:name (lowercase letters, digits, '-')`, 2);
  return tags;
}

/** KEY, or file:PATH (read here, so the key never sits in a process listing or shell history). */
export function readAuthKey(spec: string | undefined): string | undefined {
  if (spec === undefined) return undefined;
  if (!spec.startsWith('file:')) return spec.trim();
  const path = spec.slice('file:'.length);
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new CliError('EAUTHKEY', `cannot read the auth key from ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

async function call<T>(socket: string, method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
  try {
    return await localRequest<T>(socket, method, path, body, timeoutMs);
  } catch (err) {
    throw new CliError((err as { code?: string }).code ?? 'EDAEMON', (err as Error).message);
  }
}

export async function up(a: UpArgs): Promise<void> {
  const r = await call<{ status: string; name: string | null; addresses: string[] }>(
    a.socket,
    'POST',
    '/up',
    {
      loginServer: a.loginServer,
      authKey: readAuthKey(a.authKey),
      hostname: a.hostname,
      advertiseRoutes: a.advertiseRoutes === undefined ? undefined : parseRouteList(a.advertiseRoutes),
      acceptRoutes: a.acceptRoutes,
      snatSubnetRoutes: a.snatSubnetRoutes,
      advertiseTags: a.advertiseTags === undefined ? undefined : parseTagList(a.advertiseTags),
      timeoutMs: a.timeoutS * 1000,
    },
    a.timeoutS * 1000 + 60_000,
  );
  if (r.status === 'pending-approval') {
    throw new CliError('EPENDING', `registered as ${r.name}, waiting for approval: an admin must run "meshd admin nodes approve ${r.name}"; the daemon connects once approved`);
  }
  process.stdout.write(`connected as ${r.name}: ${r.addresses.map((c) => c.split('/')[0]).join(' ')}\n`);
}

export async function down(socket: string): Promise<void> {
  await call(socket, 'POST', '/down');
}

export async function logout(socket: string): Promise<void> {
  await call(socket, 'POST', '/logout');
  process.stdout.write('logged out: this node was removed from the mesh and its key deleted\n');
}

function ago(ms: number | null, now = Date.now()): string {
  if (!ms) return '-';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

function bytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
}

export async function status(socket: string, json: boolean): Promise<void> {
  const s = await call<StatusJson>(socket, 'GET', '/status');
  if (json) {
    process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    return;
  }
  process.stdout.write(formatStatus(s, Date.now()));
}

const v4 = (cidrs: string[]) => cidrs.find((c) => !c.includes(':'))?.split('/')[0] ?? '-';
const owner = (x: { user: string | null; tags: string[] }) => (x.tags.length ? x.tags.join(',') : (x.user ?? '-'));

/** The table `meshd status` prints, in the manner of `tailscale status`, then the health lines. */
export function formatStatus(s: StatusJson, now: number): string {
  const lines: string[] = [];
  if (!s.self) {
    lines.push(`state: ${s.state}`);
    if (s.state === 'stopped') lines.push('not connected: run meshd up');
  } else {
    const selfRoutes = s.self.routes.map((r) => `${r.prefix}${r.primary ? '' : r.approved ? ' (standby)' : ' (pending)'}`).join(',') || '-';
    const rows: string[][] = [[v4(s.self.addresses), s.self.name, owner(s.self), '-', '-', '-', selfRoutes, s.state === 'running' ? 'self' : s.state]];
    for (const p of s.peers) {
      rows.push([
        v4(p.addresses),
        p.name,
        owner(p),
        p.endpoint ? `${p.endpoint} (${p.direct ? 'direct' : 'relay'})` : '-',
        ago(p.lastHandshake, now),
        `${bytes(p.rxBytes)}/${bytes(p.txBytes)}`,
        p.primaryRoutes.join(',') || '-',
        p.online ? 'online' : `offline, seen ${ago(p.lastSeen, now)}`,
      ]);
    }
    const all = [['IP', 'NAME', 'OWNER', 'ENDPOINT', 'HANDSHAKE', 'RX/TX', 'ROUTES', 'STATUS'], ...rows];
    const widths = all[0].map((_, i) => Math.max(...all.map((r) => r[i].length)));
    for (const r of all) lines.push(r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
  }
  for (const h of s.health) lines.push(`# ${h}`);
  return `${lines.join('\n')}\n`;
}

export async function ip(socket: string, family: 4 | 6 | null, peer: string | undefined): Promise<void> {
  const s = await call<StatusJson>(socket, 'GET', '/status');
  let addrs: string[];
  if (peer === undefined) {
    if (!s.self) throw new CliError('ENOTUP', 'not connected: run meshd up');
    addrs = s.self.addresses;
  } else {
    const p = s.peers.find((x) => x.name === peer || x.publicKey === peer || x.addresses.some((a) => a.split('/')[0] === peer));
    if (!p) throw new CliError('ENOPEER', `no peer "${peer}" in this node's netmap`);
    addrs = p.addresses;
  }
  for (const a of addrs.map((c) => c.split('/')[0])) {
    if (family === 4 && a.includes(':')) continue;
    if (family === 6 && !a.includes(':')) continue;
    process.stdout.write(`${a}\n`);
  }
}

/** `meshd ping PEER`: through the mesh, until a reply or `tries` timeouts; non-zero exit if none answered. */
export async function ping(socket: string, peer: string, tries: number, timeoutS: number): Promise<void> {
  const r = await call<{ peer: string; address: string; endpoint: string | null; results: Array<number | null> }>(
    socket,
    'POST',
    '/ping',
    { peer, tries, timeoutMs: Math.round(timeoutS * 1000) },
    (tries * timeoutS + 10) * 1000,
  );
  const via = r.endpoint ? `via ${r.endpoint} (direct)` : 'via (no endpoint yet)';
  for (const rtt of r.results) {
    if (rtt === null) process.stdout.write(`timeout waiting for ${r.peer} (${r.address})\n`);
    else process.stdout.write(`pong from ${r.peer} (${r.address}) ${via} in ${rtt.toFixed(2)} ms\n`);
  }
  if (r.results.every((x) => x === null)) throw new CliError('ENOREPLY', `no reply from ${r.peer} (${r.address}) after ${r.results.length} tries (is the policy letting ICMP through?)`);
}
