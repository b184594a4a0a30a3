// wg-quick(8) configuration files: the wg(8) setconf keys plus wg-quick's own
// Address and MTU. Keys and section names are case-insensitive and '#' starts
// a comment, as in wg-quick. wg-quick's shell-facing keys (DNS, Table, hooks,
// SaveConfig) are accepted and listed in `ignored` so the daemon can warn that
// it does not act on them. Every error is one line naming file and line.

import { encodeKeyBase64, decodeKeyBase64, KeyFormatError } from './keys.js';
import { formatCidr, formatIp, parseCidr, parseIPv4, parseIpEndpoint, type IpPrefix } from '../net/ipaddr.js';

export class ConfigError extends Error {
  readonly code = 'ECONFIG';
  constructor(
    readonly file: string,
    readonly line: number,
    readonly problem: string,
  ) {
    // One line whatever the file name or value held: control characters are masked.
    super(`${file}:${line}: ${problem}`.replace(/[\x00-\x1f\x7f]/g, '?'));
    this.name = 'ConfigError';
  }
}

/** Where to reach a peer. `family` null means `host` is a name, resolved later. */
export interface ConfigEndpoint {
  /** An IP literal in canonical form (IPv6 unbracketed, maybe with "%zone") or a DNS name. */
  host: string;
  port: number;
  family: 4 | 6 | null;
}

export interface WgQuickInterface {
  privateKey: Uint8Array;
  listenPort?: number;
  /** 0 means off. */
  fwmark?: number;
  /** Interface addresses; host bits are kept ("10.0.0.1/24"). */
  addresses: IpPrefix[];
  mtu?: number;
}

export interface WgQuickPeer {
  publicKey: Uint8Array;
  presharedKey?: Uint8Array;
  /** Host bits cleared, as the allowed-IPs table stores them. */
  allowedIps: IpPrefix[];
  endpoint?: ConfigEndpoint;
  /** Seconds; 0 means off. */
  persistentKeepalive?: number;
}

/** A wg-quick key meshd reads but does not act on. */
export interface IgnoredKey {
  key: IgnoredKeyName;
  value: string;
  line: number;
}

export interface WgQuickConfig {
  interface: WgQuickInterface;
  peers: WgQuickPeer[];
  ignored: IgnoredKey[];
}

type Section = 'Interface' | 'Peer';
type InterfaceKeyName = 'PrivateKey' | 'ListenPort' | 'FwMark' | 'Address' | 'MTU';
export type IgnoredKeyName = 'DNS' | 'Table' | 'PreUp' | 'PostUp' | 'PreDown' | 'PostDown' | 'SaveConfig';
type PeerKeyName = 'PublicKey' | 'PresharedKey' | 'AllowedIPs' | 'Endpoint' | 'PersistentKeepalive';

const INTERFACE_KEYS: readonly InterfaceKeyName[] = ['PrivateKey', 'ListenPort', 'FwMark', 'Address', 'MTU'];
const IGNORED_KEYS: readonly IgnoredKeyName[] = ['DNS', 'Table', 'PreUp', 'PostUp', 'PreDown', 'PostDown', 'SaveConfig'];
const PEER_KEYS: readonly PeerKeyName[] = ['PublicKey', 'PresharedKey', 'AllowedIPs', 'Endpoint', 'PersistentKeepalive'];
/** Keys that may appear more than once in a section; their values add up. */
const REPEATABLE = new Set<string>(['Address', 'AllowedIPs', 'DNS', 'PreUp', 'PostUp', 'PreDown', 'PostDown']);

const byLowerName = <K extends string>(names: readonly K[]) => new Map(names.map((k) => [k.toLowerCase(), k]));
const INTERFACE_BY_NAME = byLowerName<InterfaceKeyName | IgnoredKeyName>([...INTERFACE_KEYS, ...IGNORED_KEYS]);
const PEER_BY_NAME = byLowerName(PEER_KEYS);
const IGNORED = new Set<string>(IGNORED_KEYS);

const DECIMAL = /^(0|[1-9][0-9]*)$/;
const HEX32 = /^0x[0-9a-fA-F]{1,8}$/;
// RFC 1123 labels (underscores tolerated, as internal DNS often has them).
const HOST_LABEL = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

interface PeerDraft {
  line: number;
  seen: Map<string, number>;
  peer: Partial<WgQuickPeer> & { allowedIps: IpPrefix[] };
}

/** Parses a wg-quick config; `fileName` is only used in error messages. Throws ConfigError. */
export function parseWgQuickConfig(text: string, fileName: string): WgQuickConfig {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  let section: Section | null = null;
  let ifaceLine = 0;
  const ifaceSeen = new Map<string, number>();
  const iface: Partial<WgQuickInterface> & { addresses: IpPrefix[] } = { addresses: [] };
  const ignored: IgnoredKey[] = [];
  const drafts: PeerDraft[] = [];
  const peerLineByKey = new Map<string, number>();

  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const err = (problem: string) => new ConfigError(fileName, lineNo, problem);
    const hash = lines[i].indexOf('#');
    const line = (hash < 0 ? lines[i] : lines[i].slice(0, hash)).trim();
    if (line === '') continue;

    if (line.startsWith('[')) {
      if (!line.endsWith(']')) throw err(`malformed section header ${quote(line)}`);
      const name = line.slice(1, -1).trim().toLowerCase();
      if (name === 'interface') {
        if (ifaceLine !== 0) throw err(`duplicate [Interface] section (first on line ${ifaceLine})`);
        section = 'Interface';
        ifaceLine = lineNo;
      } else if (name === 'peer') {
        section = 'Peer';
        drafts.push({ line: lineNo, seen: new Map(), peer: { allowedIps: [] } });
      } else {
        throw err(`unknown section ${quote(line)}; expected [Interface] or [Peer]`);
      }
      continue;
    }

    const eq = line.indexOf('=');
    if (eq < 0) throw err(`expected "Key = Value" or a [Section], got ${quote(line)}`);
    const rawKey = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    if (rawKey === '') throw err(`missing key before "="`);
    if (section === null) throw err(`${quote(rawKey)} is outside a section; put it under [Interface] or [Peer]`);

    const lower = rawKey.toLowerCase();
    const key = section === 'Interface' ? INTERFACE_BY_NAME.get(lower) : PEER_BY_NAME.get(lower);
    if (key === undefined) {
      const other = section === 'Interface' ? PEER_BY_NAME.get(lower) : INTERFACE_BY_NAME.get(lower);
      if (other !== undefined) throw err(`${other} belongs in ${section === 'Interface' ? '[Peer]' : '[Interface]'}, not [${section}]`);
      throw err(`unknown key ${quote(rawKey)} in [${section}]`);
    }

    const seen = section === 'Interface' ? ifaceSeen : drafts[drafts.length - 1].seen;
    const first = seen.get(key);
    if (first !== undefined && !REPEATABLE.has(key)) throw err(`duplicate ${key} (first on line ${first})`);
    if (first === undefined) seen.set(key, lineNo);

    if (IGNORED.has(key)) {
      ignored.push({ key: key as IgnoredKeyName, value, line: lineNo });
      continue;
    }
    if (section === 'Interface') {
      parseInterfaceKey(iface, key as InterfaceKeyName, value, err);
    } else {
      const draft = drafts[drafts.length - 1];
      parsePeerKey(draft.peer, key as PeerKeyName, value, err);
      if (key === 'PublicKey') {
        const b64 = encodeKeyBase64(draft.peer.publicKey!);
        const other = peerLineByKey.get(b64);
        if (other !== undefined) throw err(`duplicate PublicKey: the [Peer] on line ${other} has the same key`);
        peerLineByKey.set(b64, draft.line);
      }
    }
  }

  if (ifaceLine === 0) throw new ConfigError(fileName, 1, 'missing [Interface] section');
  if (iface.privateKey === undefined) throw new ConfigError(fileName, ifaceLine, '[Interface] has no PrivateKey');
  const peers: WgQuickPeer[] = [];
  for (const d of drafts) {
    if (d.peer.publicKey === undefined) throw new ConfigError(fileName, d.line, '[Peer] has no PublicKey');
    peers.push(d.peer as WgQuickPeer);
  }
  return { interface: iface as WgQuickInterface, peers, ignored };
}

type Err = (problem: string) => ConfigError;

function parseInterfaceKey(iface: Partial<WgQuickInterface> & { addresses: IpPrefix[] }, key: InterfaceKeyName, value: string, err: Err): void {
  switch (key) {
    case 'PrivateKey':
      iface.privateKey = key64(value, key, err);
      return;
    case 'ListenPort':
      iface.listenPort = integer(value, 0, 65535, key, err);
      return;
    case 'FwMark':
      // wg(8) takes "off", decimal or 0x-hex. It also reads 0-prefixed octal; we refuse that.
      if (value.toLowerCase() === 'off') iface.fwmark = 0;
      else if (HEX32.test(value)) iface.fwmark = parseInt(value.slice(2), 16);
      else if (DECIMAL.test(value)) iface.fwmark = integer(value, 0, 0xffffffff, key, err);
      else throw err(`invalid FwMark ${quote(value)}: expected off, a decimal or a 0x-hex 32-bit number`);
      return;
    case 'Address':
      for (const item of list(value, key, err)) {
        const p = parseCidr(item, { allowBare: true });
        if (!p.ok) throw err(`invalid Address ${quote(item)}: ${p.reason}`);
        iface.addresses.push(p.value);
      }
      return;
    case 'MTU':
      // 68 is the smallest MTU Linux allows on any link (ETH_MIN_MTU).
      iface.mtu = integer(value, 68, 65535, key, err);
      return;
  }
}

function parsePeerKey(peer: Partial<WgQuickPeer> & { allowedIps: IpPrefix[] }, key: PeerKeyName, value: string, err: Err): void {
  switch (key) {
    case 'PublicKey':
      peer.publicKey = key64(value, key, err);
      return;
    case 'PresharedKey':
      peer.presharedKey = key64(value, key, err);
      return;
    case 'AllowedIPs':
      for (const item of list(value, key, err)) {
        const p = parseCidr(item, { allowBare: true, mask: true });
        if (!p.ok) throw err(`invalid AllowedIPs ${quote(item)}: ${p.reason}`);
        peer.allowedIps.push(p.value);
      }
      return;
    case 'Endpoint':
      peer.endpoint = endpoint(value, err);
      return;
    case 'PersistentKeepalive':
      peer.persistentKeepalive = value.toLowerCase() === 'off' ? 0 : integer(value, 0, 65535, key, err);
      return;
  }
}

function key64(value: string, key: string, err: Err): Uint8Array {
  try {
    return decodeKeyBase64(value);
  } catch (e) {
    // Never echo the value: it may be a private key.
    if (e instanceof KeyFormatError) throw err(`invalid ${key}: ${e.message}`);
    throw e;
  }
}

function integer(value: string, min: number, max: number, key: string, err: Err): number {
  if (!DECIMAL.test(value)) throw err(`invalid ${key} ${quote(value)}: not a decimal number`);
  const n = Number(value);
  if (n < min || n > max) throw err(`invalid ${key} ${value}: out of range ${min}..${max}`);
  return n;
}

/** Comma-separated items; an empty value is an empty list, an empty item is a typo. */
function list(value: string, key: string, err: Err): string[] {
  if (value === '') return [];
  const items = value.split(',').map((s) => s.trim());
  if (items.includes('')) throw err(`invalid ${key} ${quote(value)}: empty item in list`);
  return items;
}

/** "host:port", "1.2.3.4:port" or "[v6]:port"; names stay unresolved. */
function endpoint(value: string, err: Err): ConfigEndpoint {
  const bad = (why: string) => err(`invalid Endpoint ${quote(value)}: ${why}`);
  const colon = value.lastIndexOf(':');
  if (colon < 0 || (value.startsWith('[') && colon < value.indexOf(']'))) throw bad('missing ":port"');
  const host = value.slice(0, colon);
  const portText = value.slice(colon + 1);
  if (!DECIMAL.test(portText)) throw bad(`port ${quote(portText)} is not a decimal number`);
  const port = Number(portText);
  // Port 0 binds anywhere but reaches nothing.
  if (port < 1 || port > 65535) throw bad(`port ${portText} is out of range 1..65535`);
  if (value.startsWith('[') || host.includes(':') || parseIPv4(host) !== null) {
    const ep = parseIpEndpoint(value);
    if (!ep.ok) throw bad(ep.reason);
    const zone = ep.value.zone === undefined ? '' : `%${ep.value.zone}`;
    return { host: formatIp(ep.value) + zone, port, family: ep.value.family };
  }
  if (!isHostName(host)) throw bad(`${quote(host)} is neither an IP address nor a host name`);
  return { host, port, family: null };
}

function isHostName(host: string): boolean {
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split('.');
  // An all-numeric last label is a mistyped IPv4 address, not a name (RFC 3696 §2).
  if (/^[0-9]+$/.test(labels[labels.length - 1])) return false;
  return labels.every((l) => HOST_LABEL.test(l));
}

/** JSON quoting keeps the message on one line; long values are cut. */
function quote(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}...` : s);
}

/** Writes a config back in wg-quick syntax; parsing the result gives `cfg` again. */
export function formatWgQuickConfig(cfg: WgQuickConfig): string {
  const out: string[] = ['[Interface]'];
  const i = cfg.interface;
  out.push(`PrivateKey = ${encodeKeyBase64(i.privateKey)}`);
  if (i.listenPort !== undefined) out.push(`ListenPort = ${i.listenPort}`);
  if (i.fwmark !== undefined) out.push(`FwMark = ${i.fwmark === 0 ? 'off' : `0x${i.fwmark.toString(16)}`}`);
  if (i.addresses.length > 0) out.push(`Address = ${i.addresses.map(formatCidr).join(', ')}`);
  if (i.mtu !== undefined) out.push(`MTU = ${i.mtu}`);
  for (const ig of cfg.ignored) {
    // A value with '#' or a line break would not read back the same.
    if (/[#\r\n]/.test(ig.value)) throw new RangeError(`${ig.key} value cannot be written: it holds "#" or a line break`);
    out.push(`${ig.key} = ${ig.value}`);
  }
  for (const p of cfg.peers) {
    out.push('', '[Peer]', `PublicKey = ${encodeKeyBase64(p.publicKey)}`);
    if (p.presharedKey !== undefined) out.push(`PresharedKey = ${encodeKeyBase64(p.presharedKey)}`);
    if (p.allowedIps.length > 0) out.push(`AllowedIPs = ${p.allowedIps.map(formatCidr).join(', ')}`);
    if (p.endpoint !== undefined) {
      const e = p.endpoint;
      out.push(`Endpoint = ${e.family === 6 ? `[${e.host}]` : e.host}:${e.port}`);
    }
    if (p.persistentKeepalive !== undefined) {
      out.push(`PersistentKeepalive = ${p.persistentKeepalive === 0 ? 'off' : p.persistentKeepalive}`);
    }
  }
  return out.join('\n') + '\n';
}
