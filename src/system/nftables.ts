// nftables rules for a subnet router: overlay packets that arrive decrypted
// on the TUN device are forwarded to the subnets this node advertises, replies
// come back, and (with SNAT, the default) overlay sources leaving any other
// interface are masqueraded to the router's own address.
//
// Desired state again: renderRuleset is pure and turns RouterRules into one
// `nft -f` script that replaces our table — and only our table — in a single
// transaction:
//
//   table inet meshd {}          create it if absent, so that...
//   delete table inet meshd      ...this never fails, then
//   table inet meshd { ... }     define it afresh.
//
// Applying the same rules twice leaves the same table; applying other rules
// replaces it, nothing accumulates; a failed script changes nothing. The
// ruleset is never flushed and no other table is read or written: the
// forward chain's policy is accept and it only adds accepts, so the host's
// own filtering (its drop rules live in its own base chains, which nftables
// evaluates as well) keeps the last word.
//
// Nothing from the caller reaches the script as text: interface and table
// names are checked against a conservative alphabet, and CIDRs are parsed
// and printed again in canonical form, so no input can carry nft syntax.
import { spawn } from 'node:child_process';
import { formatCidr, parseCidr, type IpPrefix } from '../net/ipaddr.js';
import { SystemError } from './netlink.js';

// ---------------------------------------------------------------- interface

export interface RouterRules {
  /** The TUN device overlay packets arrive on, e.g. `meshd0`. */
  tun: string;
  /** Approved subnet CIDRs (IPv4 and IPv6) this node routes for the overlay. */
  routes: string[];
  /** Masquerade overlay sources leaving a non-TUN interface (the VPC sees the router's address). */
  snat: boolean;
  /** Overlay prefixes; default OVERLAY_PREFIXES. */
  overlay?: string[];
}

/** The overlay's IPv4 (CGNAT) and IPv6 (ULA) prefixes. */
export const OVERLAY_PREFIXES: readonly string[] = ['100.64.0.0/10', 'fd7a:115c:a1e0::/48'];

export const DEFAULT_TABLE = 'meshd';

export interface NftOptions {
  /** The nft binary; default `nft` from PATH. */
  nft?: string;
  /** How long nft may run, in ms (default 10000); it is killed after that. */
  timeoutMs?: number;
}

// --------------------------------------------------------------- validation

const IFNAMSIZ = 16;
// Stricter than the kernel (which takes any byte but '/', ':', NUL and
// whitespace): nothing that means something inside an nft quoted string
// (`"`, `\`, a trailing `*` wildcard) or outside it.
const IFNAME = /^[A-Za-z0-9_.-]+$/;
// An nft identifier, minus the characters (`/`, `.`, `-`) that some of its
// grammar contexts read differently.
const TABLE_NAME = /^[A-Za-z][A-Za-z0-9_]*$/;
const TABLE_NAME_MAX = 64;

function checkInterface(operation: string, name: string): void {
  if (typeof name !== 'string' || name.length === 0 || name.length >= IFNAMSIZ || !IFNAME.test(name) || name === '.' || name === '..') {
    throw new SystemError('EINVAL', operation, `invalid interface name ${JSON.stringify(name)} (1 to ${IFNAMSIZ - 1} of A-Z a-z 0-9 _ . -)`);
  }
}

function checkTable(operation: string, table: string): void {
  if (typeof table !== 'string' || table.length === 0 || table.length > TABLE_NAME_MAX || !TABLE_NAME.test(table)) {
    throw new SystemError('EINVAL', operation, `invalid table name ${JSON.stringify(table)} (a letter, then letters, digits or '_'; at most ${TABLE_NAME_MAX})`);
  }
}

function comparePrefixes(a: IpPrefix, b: IpPrefix): number {
  if (a.family !== b.family) return a.family - b.family;
  for (let i = 0; i < a.bytes.length; i++) if (a.bytes[i] !== b.bytes[i]) return a.bytes[i] - b.bytes[i];
  return a.bits - b.bits;
}

/** True when `outer` contains every address of `inner` (same family). */
function covers(outer: IpPrefix, inner: IpPrefix): boolean {
  if (outer.family !== inner.family || outer.bits > inner.bits) return false;
  for (let bit = 0; bit < outer.bits; bit++) {
    const byte = bit >> 3;
    const mask = 0x80 >> (bit & 7);
    if ((outer.bytes[byte] & mask) !== (inner.bytes[byte] & mask)) return false;
  }
  return true;
}

/**
 * Canonical CIDRs of `texts` split by family: host bits cleared, a bare
 * address a host prefix, duplicates and prefixes inside another one dropped
 * (older nft refuses overlapping elements in a set), sorted, so equal route
 * sets render equal scripts. Throws SystemError EINVAL naming the first bad
 * entry. (`nft list` prints the set in its own canonical form: adjacent
 * prefixes merged, 10.0.0.0/16 + 10.1.0.0/16 as 10.0.0.0/15, hosts bare.)
 */
function prefixes(operation: string, texts: readonly string[], what: string): { v4: string[]; v6: string[] } {
  if (!Array.isArray(texts)) throw new SystemError('EINVAL', operation, `${what} must be a list of CIDRs`);
  const parsed: IpPrefix[] = [];
  for (const text of texts) {
    const p = typeof text === 'string' ? parseCidr(text.trim(), { allowBare: true, mask: true }) : { ok: false as const, reason: 'not a string' };
    if (!p.ok) throw new SystemError('EINVAL', operation, `${what} ${JSON.stringify(text)} is not an IPv4 or IPv6 CIDR (${p.reason})`);
    parsed.push(p.value);
  }
  parsed.sort(comparePrefixes);
  const kept: IpPrefix[] = [];
  for (const p of parsed) {
    // Sorted by address then length, a covering prefix comes before all it covers.
    if (!kept.some((k) => covers(k, p))) kept.push(p);
  }
  return {
    v4: kept.filter((p) => p.family === 4).map(formatCidr),
    v6: kept.filter((p) => p.family === 6).map(formatCidr),
  };
}

// ---------------------------------------------------------------- rendering

/** One prefix bare, several as an anonymous set, as `nft list` prints them. */
function match(cidrs: readonly string[]): string {
  return cidrs.length === 1 ? cidrs[0] : `{ ${cidrs.join(', ')} }`;
}

/**
 * The `nft -f` script that makes table `inet <table>` exactly the router
 * rules `r`, atomically; see the top of this file. Throws SystemError EINVAL
 * on an invalid interface name, table name or CIDR.
 */
export function renderRuleset(r: RouterRules, table: string = DEFAULT_TABLE): string {
  const operation = `cannot render nftables table inet ${typeof table === 'string' ? table : '?'}`;
  checkTable(operation, table);
  if (typeof r !== 'object' || r === null) throw new SystemError('EINVAL', operation, 'router rules must be an object');
  checkInterface(operation, r.tun);
  if (typeof r.snat !== 'boolean') throw new SystemError('EINVAL', operation, 'snat must be true or false');
  const routes = prefixes(operation, r.routes, 'route');
  const overlay = prefixes(operation, r.overlay ?? OVERLAY_PREFIXES, 'overlay prefix');
  const tun = `"${r.tun}"`;

  const forward: string[] = [];
  // Into the subnets from the overlay.
  if (routes.v4.length) forward.push(`iifname ${tun} ip daddr ${match(routes.v4)} accept`);
  if (routes.v6.length) forward.push(`iifname ${tun} ip6 daddr ${match(routes.v6)} accept`);
  // Replies, and (with SNAT off) connections the subnets open to overlay addresses.
  forward.push(`oifname ${tun} ct state established,related accept`);
  if (routes.v4.length && overlay.v4.length) forward.push(`oifname ${tun} ip saddr ${match(routes.v4)} ip daddr ${match(overlay.v4)} accept`);
  if (routes.v6.length && overlay.v6.length) forward.push(`oifname ${tun} ip6 saddr ${match(routes.v6)} ip6 daddr ${match(overlay.v6)} accept`);

  const postrouting: string[] = [];
  if (r.snat) {
    // By source, not `iifname`: the input device at POSTROUTING is whatever
    // the kernel's output path hands netfilter (recent kernels pass the
    // forwarded packet's input device, and nft accepts the rule, but iptables
    // refuses -i there); an overlay source is ours however it got here.
    if (overlay.v4.length) postrouting.push(`ip saddr ${match(overlay.v4)} oifname != ${tun} masquerade`);
    if (overlay.v6.length) postrouting.push(`ip6 saddr ${match(overlay.v6)} oifname != ${tun} masquerade`);
  }

  const lines = [
    `table inet ${table} {}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    '\tchain forward {',
    '\t\ttype filter hook forward priority filter; policy accept;',
    ...forward.map((l) => `\t\t${l}`),
    '\t}',
  ];
  if (postrouting.length) {
    lines.push('', '\tchain postrouting {', '\t\ttype nat hook postrouting priority srcnat; policy accept;', ...postrouting.map((l) => `\t\t${l}`), '\t}');
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

/** The script that deletes table `inet <table>` if it exists, atomically. */
export function renderRemoval(table: string = DEFAULT_TABLE): string {
  checkTable(`cannot remove nftables table inet ${typeof table === 'string' ? table : '?'}`, table);
  return `table inet ${table} {}\ndelete table inet ${table}\n`;
}

// ------------------------------------------------------------------ running

const DEFAULT_TIMEOUT_MS = 10_000;
/** Output kept from nft (its listing of our one table is far smaller). */
const MAX_OUTPUT = 1 << 20;
const MAX_DETAIL = 2_000;

interface NftResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs nft with `args`, `input` on stdin; rejects only when nft cannot be started. */
function runNft(operation: string, args: readonly string[], input: string | null, opts: NftOptions): Promise<NftResult> {
  const nft = opts.nft ?? 'nft';
  const timeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    let child;
    try {
      child = spawn(nft, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout, killSignal: 'SIGKILL' });
    } catch (err) {
      reject(startError(operation, nft, err));
      return;
    }
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (stdout.length < MAX_OUTPUT) stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < MAX_OUTPUT) stderr += d;
    });
    // nft may exit (a syntax error, a missing table) before reading all of stdin.
    child.stdin.on('error', () => undefined);
    child.on('error', (err) => reject(startError(operation, nft, err)));
    // Killed (the timeout): do not wait for pipes that something it started may still hold open.
    child.on('exit', (_code, signal) => {
      if (signal === null) return;
      child.stdout.destroy();
      child.stderr.destroy();
    });
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

function startError(operation: string, nft: string, err: unknown): SystemError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return new SystemError('ENOENT', operation, `${nft} not found (install the nftables package, or pass the path of nft)`, { cause: err });
  if (code === 'EACCES') return new SystemError('EACCES', operation, `${nft} is not executable`, { cause: err });
  return new SystemError(typeof code === 'string' ? code : 'EIO', operation, `cannot run ${nft}: ${(err as Error).message}`, { cause: err });
}

/** The errno an nft failure stands for, read from its message (nft prints strerror texts). */
function nftErrno(stderr: string): string {
  if (/Operation not permitted|Permission denied/i.test(stderr)) return 'EPERM';
  if (/No such file or directory/i.test(stderr)) return 'ENOENT';
  if (/not supported/i.test(stderr)) return 'EOPNOTSUPP';
  if (/syntax error|Could not resolve|conflicting|invalid/i.test(stderr)) return 'EINVAL';
  return 'EIO';
}

const HINTS: Record<string, string> = {
  EPERM: 'nftables needs root or CAP_NET_ADMIN',
  EOPNOTSUPP: 'the kernel lacks nf_tables, or nft_nat/nft_masq for SNAT (modprobe nf_tables nft_nat nft_masq)',
};

/** A SystemError for a finished nft run that failed, carrying nft's own message. */
function failure(operation: string, r: NftResult, timeoutMs: number): SystemError {
  if (r.signal === 'SIGKILL' || (r.signal !== null && r.code === null)) {
    return new SystemError('ETIMEDOUT', operation, `nft did not finish within ${timeoutMs} ms (killed by ${r.signal})`);
  }
  const message = r.stderr.trim() || r.stdout.trim() || `nft exited with code ${r.code}`;
  const code = nftErrno(message);
  const hint = HINTS[code];
  const detail = message.length > MAX_DETAIL ? `${message.slice(0, MAX_DETAIL)}…` : message;
  return new SystemError(code, operation, hint ? `${detail} (${hint})` : detail);
}

/** Feeds `script` to `nft -f -` as one transaction. */
async function load(operation: string, script: string, opts: NftOptions): Promise<void> {
  const r = await runNft(operation, ['-f', '-'], script, opts);
  if (r.code !== 0) throw failure(operation, r, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
}

/**
 * Makes table `inet meshd` (or `table`) exactly the router rules `r`, in one
 * nft transaction; idempotent. Throws SystemError: EINVAL for bad rules,
 * ENOENT when nft is missing, EPERM without CAP_NET_ADMIN, ETIMEDOUT, or
 * nft's message otherwise. On failure the previous table is untouched.
 */
export async function applyRuleset(r: RouterRules, opts: NftOptions & { table?: string } = {}): Promise<void> {
  const table = opts.table ?? DEFAULT_TABLE;
  const script = renderRuleset(r, table);
  await load(`cannot apply nftables table inet ${table}`, script, opts);
}

/** Deletes table `inet <table>` and nothing else; succeeds when it is absent. */
export async function removeRuleset(table: string = DEFAULT_TABLE, opts: NftOptions = {}): Promise<void> {
  const script = renderRemoval(table);
  await load(`cannot remove nftables table inet ${table}`, script, opts);
}

/** `nft list table inet <table>` as nft prints it, or null when there is no such table. */
export async function currentRuleset(table: string = DEFAULT_TABLE, opts: NftOptions = {}): Promise<string | null> {
  const operation = `cannot list nftables table inet ${table}`;
  checkTable(operation, table);
  const r = await runNft(operation, ['list', 'table', 'inet', table], null, opts);
  if (r.code === 0) return r.stdout;
  const err = failure(operation, r, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  if (err.code === 'ENOENT') return null;
  throw err;
}
