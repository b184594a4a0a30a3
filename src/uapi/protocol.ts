// The cross-platform userspace API (https://www.wireguard.com/xplatform/):
// "get=1\n\n" and "set=1\n<key=value lines>\n\n" requests on a local socket,
// answered by key=value lines and "errno=N\n\n". This file is the protocol
// only: framing a byte stream into requests, parsing them, and printing
// replies. The socket and the device state live elsewhere.
//
// Observed behaviour of wireguard-go v0.0.20220316, which we match:
//  - errno is printed negated: "errno=-22" (EINVAL), "errno=-71" (EPROTO).
//  - a line without '=' is EPROTO; an unknown key, a device key inside a peer
//    section, or a bad value is EINVAL.
//  - get replies print listen_port and fwmark only when nonzero, and each peer
//    in the order public_key, preshared_key (zeros if none), protocol_version,
//    endpoint (if any), last_handshake_time_sec, last_handshake_time_nsec,
//    tx_bytes, rx_bytes, persistent_keepalive_interval, allowed_ip...

import {
  formatCidr,
  formatIp,
  parseCidr,
  parseIp,
  parseIpEndpoint,
  parsePort,
  type IpEndpoint,
  type IpPrefix,
} from '../net/ipaddr.js';
import { decodeKeyHex, encodeKeyHex, isZeroKey, KeyFormatError } from '../config/keys.js';

export type { IpEndpoint, IpPrefix } from '../net/ipaddr.js';

export const EINVAL = 22;
export const EPROTO = 71;
export const EMSGSIZE = 90;

/** A local client can't make us buffer more than this per request. */
export const MAX_REQUEST_BYTES = 1 << 20;
export const MAX_REQUEST_LINES = 10_000;

const ERRNO = { EINVAL, EPROTO, EMSGSIZE } as const;
export type UapiErrorCode = keyof typeof ERRNO;

/** A request the device refuses; `errno` is positive, the reply negates it. */
export class UapiError extends Error {
  readonly errno: number;
  constructor(
    readonly code: UapiErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'UapiError';
    this.errno = ERRNO[code];
  }
}

const invalid = (message: string) => new UapiError('EINVAL', message);
const protocol = (message: string) => new UapiError('EPROTO', message);

/** One line of a set request, values parsed. Keys with no payload take only "true". */
export type SetOperation =
  /** null: the all-zero key, which removes the private key. */
  | { key: 'private_key'; value: Uint8Array | null }
  /** 0 picks a random port. */
  | { key: 'listen_port'; value: number }
  /** 0 turns the mark off. */
  | { key: 'fwmark'; value: number }
  | { key: 'replace_peers' }
  | { key: 'public_key'; value: Uint8Array }
  | { key: 'remove' }
  | { key: 'update_only' }
  /** null: the all-zero key, which means no preshared key. */
  | { key: 'preshared_key'; value: Uint8Array | null }
  | { key: 'endpoint'; value: IpEndpoint }
  /** Seconds; 0 turns keepalives off. */
  | { key: 'persistent_keepalive_interval'; value: number }
  | { key: 'replace_allowed_ips' }
  /** Host bits cleared, as the allowed-IPs table stores it. */
  | { key: 'allowed_ip'; value: IpPrefix }
  | { key: 'protocol_version'; value: 1 };

/** Interface settings of a set request; absent fields are left as they are. */
export interface InterfaceSet {
  privateKey?: Uint8Array | null;
  listenPort?: number;
  fwmark?: number;
  /** Remove every peer before applying the peer sections. */
  replacePeers: boolean;
}

/** One peer section. Absent fields are left as they are. */
export interface PeerSet {
  publicKey: Uint8Array;
  /** Remove the peer if it exists; the rest of the section is then moot. */
  remove: boolean;
  /** Change the peer only if it exists; never create it. */
  updateOnly: boolean;
  presharedKey?: Uint8Array | null;
  endpoint?: IpEndpoint;
  persistentKeepalive?: number;
  /** Drop the peer's allowed IPs before adding `allowedIps`. */
  replaceAllowedIps: boolean;
  allowedIps: IpPrefix[];
}

/**
 * A whole set request, for the engine to apply in one step. wireguard-go
 * applies each line as it reads it, so a bad line leaves the lines before it
 * in force; we parse everything first, so a request that fails changes
 * nothing. Peer sections are kept in order and the same key may appear twice:
 * apply them in sequence, as wireguard-go would.
 */
export interface SetRequest {
  interface: InterfaceSet;
  peers: PeerSet[];
}

export type UapiRequest = { op: 'get' } | { op: 'set'; ops: SetOperation[]; set: SetRequest };

/**
 * Parses one request, from its operation line through the blank line that
 * ends it (as UapiReader yields it). Throws UapiError.
 */
export function parseRequest(text: string): UapiRequest {
  if (text.length > MAX_REQUEST_BYTES) throw new UapiError('EMSGSIZE', `request exceeds ${MAX_REQUEST_BYTES} bytes`);
  if (!text.endsWith('\n\n')) throw protocol('request does not end with a blank line');
  const lines = text.slice(0, -2).split('\n');
  if (lines.length > MAX_REQUEST_LINES) throw new UapiError('EMSGSIZE', `request exceeds ${MAX_REQUEST_LINES} lines`);
  const blank = lines.indexOf('');
  if (blank >= 0) throw protocol(`line ${blank + 1}: blank line inside a request`);
  switch (lines[0]) {
    case 'get=1':
      // wireguard-go wants the blank line right after get=1.
      if (lines.length > 1) throw invalid('line 2: get=1 takes no arguments');
      return { op: 'get' };
    case 'set=1': {
      const ops: SetOperation[] = [];
      let inPeer = false;
      for (let i = 1; i < lines.length; i++) {
        const op = parseSetLine(lines[i], i + 1, inPeer);
        if (op.key === 'public_key') inPeer = true;
        ops.push(op);
      }
      return { op: 'set', ops, set: buildSetRequest(ops) };
    }
    default:
      // wireguard-go hangs up without a reply here; we leave that to the caller.
      throw protocol(`line 1: unknown operation ${quote(lines[0])}`);
  }
}

const DEVICE_KEYS = new Set(['private_key', 'listen_port', 'fwmark', 'replace_peers']);
const PEER_KEYS = new Set([
  'remove',
  'update_only',
  'preshared_key',
  'endpoint',
  'persistent_keepalive_interval',
  'replace_allowed_ips',
  'allowed_ip',
  'protocol_version',
]);
const DECIMAL = /^[0-9]+$/;

function parseSetLine(line: string, lineNo: number, inPeer: boolean): SetOperation {
  const eq = line.indexOf('=');
  if (eq < 0) throw protocol(`line ${lineNo}: no "=" in ${quote(line)}`);
  const key = line.slice(0, eq);
  const value = line.slice(eq + 1);
  const at = `line ${lineNo}: `;
  if (key !== 'public_key' && !(inPeer ? PEER_KEYS : DEVICE_KEYS).has(key)) {
    throw invalid(`${at}invalid UAPI ${inPeer ? 'peer' : 'device'} key ${quote(key)}`);
  }
  switch (key) {
    case 'private_key': {
      const k = hexKey(value, `${at}private_key`);
      return { key, value: isZeroKey(k) ? null : k };
    }
    case 'listen_port':
      return { key, value: port(value, `${at}listen_port`) };
    case 'fwmark':
      return { key, value: uint(value, 0xffffffff, `${at}fwmark`) };
    case 'public_key':
      return { key, value: hexKey(value, `${at}public_key`) };
    case 'preshared_key': {
      const k = hexKey(value, `${at}preshared_key`);
      return { key, value: isZeroKey(k) ? null : k };
    }
    case 'endpoint': {
      const ep = parseIpEndpoint(value);
      if (!ep.ok) throw invalid(`${at}invalid endpoint ${quote(value)}: ${ep.reason}`);
      return { key, value: ep.value };
    }
    case 'persistent_keepalive_interval':
      return { key, value: uint(value, 65535, `${at}persistent_keepalive_interval`) };
    case 'allowed_ip': {
      const p = parseCidr(value, { mask: true });
      if (!p.ok) throw invalid(`${at}invalid allowed_ip ${quote(value)}: ${p.reason}`);
      return { key, value: p.value };
    }
    case 'protocol_version':
      if (value !== '1') throw invalid(`${at}unsupported protocol_version ${quote(value)}`);
      return { key, value: 1 };
    case 'replace_peers':
    case 'remove':
    case 'update_only':
    case 'replace_allowed_ips':
      if (value !== 'true') throw invalid(`${at}${key} takes only "true", got ${quote(value)}`);
      return { key };
    default:
      throw invalid(`${at}invalid UAPI key ${quote(key)}`);
  }
}

/** Folds line-by-line operations into one request with wireguard-go's meaning. */
export function buildSetRequest(ops: readonly SetOperation[]): SetRequest {
  const iface: InterfaceSet = { replacePeers: false };
  const peers: PeerSet[] = [];
  let peer: PeerSet | undefined;
  for (const op of ops) {
    if (op.key === 'public_key') {
      peer = { publicKey: op.value, remove: false, updateOnly: false, replaceAllowedIps: false, allowedIps: [] };
      peers.push(peer);
      continue;
    }
    if (peer === undefined) {
      switch (op.key) {
        case 'private_key':
          iface.privateKey = op.value;
          continue;
        case 'listen_port':
          iface.listenPort = op.value;
          continue;
        case 'fwmark':
          iface.fwmark = op.value;
          continue;
        case 'replace_peers':
          iface.replacePeers = true;
          continue;
        default:
          throw invalid(`${op.key} outside a peer section`);
      }
    }
    switch (op.key) {
      case 'remove':
        peer.remove = true;
        break;
      case 'update_only':
        peer.updateOnly = true;
        break;
      case 'preshared_key':
        peer.presharedKey = op.value;
        break;
      case 'endpoint':
        peer.endpoint = op.value;
        break;
      case 'persistent_keepalive_interval':
        peer.persistentKeepalive = op.value;
        break;
      case 'replace_allowed_ips':
        // Later in a section it also drops the allowed_ip lines before it.
        peer.replaceAllowedIps = true;
        peer.allowedIps = [];
        break;
      case 'allowed_ip':
        peer.allowedIps.push(op.value);
        break;
      case 'protocol_version':
        break;
      default:
        throw invalid(`${op.key} inside a peer section`);
    }
  }
  return { interface: iface, peers };
}

function hexKey(value: string, what: string): Uint8Array {
  try {
    return decodeKeyHex(value);
  } catch (e) {
    // Never echo the value: it may be a private key.
    if (e instanceof KeyFormatError) throw invalid(`${what}: ${e.message}`);
    throw e;
  }
}

function port(value: string, what: string): number {
  const p = parsePort(value);
  if (!p.ok) throw invalid(`${what}: ${p.reason}`);
  return p.value;
}

/** strconv.ParseUint(value, 10, n): digits only, leading zeros allowed. */
function uint(value: string, max: number, what: string): number {
  if (!DECIMAL.test(value)) throw invalid(`${what}: ${quote(value)} is not a decimal number`);
  const n = Number(value);
  if (n > max) throw invalid(`${what}: ${value} is out of range 0..${max}`);
  return n;
}

/** JSON quoting keeps control characters out of log lines; long values are cut. */
function quote(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}...` : s);
}

// ---- Replies ----

/** What a get request reports about one peer. */
export interface PeerSnapshot {
  publicKey: Uint8Array;
  presharedKey?: Uint8Array;
  /** `address` is an IP literal, IPv6 optionally with "%zone". */
  endpoint?: { address: string; port: number };
  persistentKeepaliveInterval: number;
  /** Wall-clock time of the last handshake; both 0 if there was none. */
  lastHandshakeTimeSec: number;
  lastHandshakeTimeNsec: number;
  rxBytes: number | bigint;
  txBytes: number | bigint;
  /** CIDR text, printed canonically and masked, in this order. */
  allowedIps: string[];
  protocolVersion: 1;
}

export interface DeviceSnapshot {
  privateKey?: Uint8Array;
  listenPort: number;
  fwmark: number;
  peers: PeerSnapshot[];
}

/** The full reply to get=1, ending "errno=0\n\n", line for line as wireguard-go prints it. */
export function formatGetResponse(snapshot: DeviceSnapshot): string {
  const out: string[] = [];
  if (snapshot.privateKey && !isZeroKey(snapshot.privateKey)) {
    out.push(`private_key=${encodeKeyHex(snapshot.privateKey)}`);
  }
  if (count(snapshot.listenPort, 65535, 'listenPort') !== '0') out.push(`listen_port=${snapshot.listenPort}`);
  if (count(snapshot.fwmark, 0xffffffff, 'fwmark') !== '0') out.push(`fwmark=${snapshot.fwmark}`);
  for (const peer of snapshot.peers) {
    out.push(`public_key=${encodeKeyHex(peer.publicKey)}`);
    out.push(`preshared_key=${encodeKeyHex(peer.presharedKey ?? ZERO_KEY)}`);
    out.push(`protocol_version=${peer.protocolVersion}`);
    if (peer.endpoint) out.push(`endpoint=${formatSnapshotEndpoint(peer.endpoint)}`);
    out.push(`last_handshake_time_sec=${count(peer.lastHandshakeTimeSec, Number.MAX_SAFE_INTEGER, 'lastHandshakeTimeSec')}`);
    out.push(`last_handshake_time_nsec=${count(peer.lastHandshakeTimeNsec, 999_999_999, 'lastHandshakeTimeNsec')}`);
    out.push(`tx_bytes=${count(peer.txBytes, U64_MAX, 'txBytes')}`);
    out.push(`rx_bytes=${count(peer.rxBytes, U64_MAX, 'rxBytes')}`);
    out.push(`persistent_keepalive_interval=${count(peer.persistentKeepaliveInterval, 65535, 'persistentKeepaliveInterval')}`);
    for (const cidr of peer.allowedIps) {
      const p = parseCidr(cidr, { mask: true });
      if (!p.ok) throw new RangeError(`snapshot allowed IP ${quote(cidr)}: ${p.reason}`);
      out.push(`allowed_ip=${formatCidr(p.value)}`);
    }
  }
  out.push('errno=0', '', '');
  return out.join('\n');
}

/** The reply that ends every request: "errno=0" on success, else the negated errno. */
export function formatErrno(errno: number): string {
  if (!Number.isSafeInteger(errno)) throw new RangeError(`errno ${errno} is not an integer`);
  return `errno=${errno === 0 ? 0 : -Math.abs(errno)}\n\n`;
}

const ZERO_KEY = new Uint8Array(32);
const U64_MAX = 2n ** 64n - 1n;

/** A counter as decimal text, refusing values the peer state can't hold. */
function count(n: number | bigint, max: number | bigint, what: string): string {
  const ok = typeof n === 'bigint' ? n >= 0n && n <= BigInt(max) : Number.isSafeInteger(n) && n >= 0 && n <= max;
  if (!ok) throw new RangeError(`snapshot ${what} ${String(n)} is out of range`);
  return String(n);
}

function formatSnapshotEndpoint(ep: { address: string; port: number }): string {
  const pct = ep.address.indexOf('%');
  const host = pct < 0 ? ep.address : ep.address.slice(0, pct);
  const addr = parseIp(host);
  if (addr === null) throw new RangeError(`snapshot endpoint ${quote(ep.address)} is not an IP address`);
  const port = count(ep.port, 65535, 'endpoint port');
  if (addr.family === 4) {
    if (pct >= 0) throw new RangeError(`snapshot endpoint ${quote(ep.address)}: IPv4 has no zone`);
    return `${formatIp(addr)}:${port}`;
  }
  // wireguard-go drops the zone here; we keep it, as the kernel's wg(8) shows it.
  return `[${formatIp(addr)}${pct < 0 ? '' : ep.address.slice(pct)}]:${port}`;
}

// ---- Framing ----

const NL = 0x0a;

/**
 * Splits a socket's byte stream into requests, each ending at its first blank
 * line, and bounds what it buffers. After an error the stream is out of step:
 * every later push throws the same error, and the caller should reply with
 * formatErrno(err.errno) and hang up.
 */
export class UapiReader {
  private parts: Uint8Array[] = [];
  private size = 0;
  private lines = 0;
  private lastWasNewline = false;
  private failure: UapiError | null = null;

  /** Bytes held for a request not yet complete. */
  get buffered(): number {
    return this.size;
  }

  /** Takes the next chunk; returns the requests it completed, in order. */
  push(chunk: Uint8Array): string[] {
    if (this.failure) throw this.failure;
    const done: string[] = [];
    let pos = 0;
    while (pos < chunk.length) {
      const nl = chunk.indexOf(NL, pos);
      const end = nl < 0 ? chunk.length : nl + 1;
      if (this.size + (end - pos) > MAX_REQUEST_BYTES) {
        return this.fail(new UapiError('EMSGSIZE', `request exceeds ${MAX_REQUEST_BYTES} bytes`));
      }
      // A copy: the socket may reuse its buffer once we return.
      this.parts.push(chunk.slice(pos, end));
      this.size += end - pos;
      if (nl < 0) {
        this.lastWasNewline = false;
        break;
      }
      if (this.lastWasNewline && nl === pos) {
        done.push(this.take());
      } else {
        this.lines++;
        this.lastWasNewline = true;
        if (this.lines > MAX_REQUEST_LINES) {
          return this.fail(new UapiError('EMSGSIZE', `request exceeds ${MAX_REQUEST_LINES} lines`));
        }
      }
      pos = end;
    }
    return done;
  }

  private take(): string {
    let text = '';
    // Latin-1 keeps one character per byte; anything not ASCII fails parsing.
    for (const part of this.parts) {
      for (let i = 0; i < part.length; i += 4096) {
        text += String.fromCharCode(...part.subarray(i, Math.min(i + 4096, part.length)));
      }
    }
    this.parts = [];
    this.size = 0;
    this.lines = 0;
    this.lastWasNewline = false;
    return text;
  }

  private fail(err: UapiError): never {
    this.failure = err;
    this.parts = [];
    this.size = 0;
    throw err;
  }
}
