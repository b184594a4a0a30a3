// Text forms of IP addresses, prefixes and endpoints, as the UAPI, config
// files, the allowed-IPs table and rtnetlink carry them: the one place meshd
// parses and prints them. Parsing is strict and printing is canonical in the form
// Go's net/netip uses, so our UAPI output matches wireguard-go byte for byte:
// RFC 5952 IPv6 (lowercase, longest run of two or more zero groups becomes
// "::", the first on a tie) with only IPv4-mapped addresses printed dotted.

export type IpFamily = 4 | 6;

/** An address as bytes: 4 for IPv4, 16 for IPv6. */
export interface IpAddress {
  family: IpFamily;
  bytes: Uint8Array;
}

/** An address and a prefix length; `bits` is 0..32 or 0..128. */
export interface IpPrefix extends IpAddress {
  bits: number;
}

/** A literal address endpoint; `zone` is an IPv6 scope such as "eth0". */
export interface IpEndpoint extends IpAddress {
  port: number;
  zone?: string;
}

/** Parsers say why they refused, so callers can put it in their messages. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(reason: string): Parsed<T> => ({ ok: false, reason });

// Leading zeros are refused, as netip and inet_pton do: some readers take them as octal.
const V4_OCTET = /^(0|[1-9][0-9]{0,2})$/;
const V6_GROUP = /^[0-9a-fA-F]{1,4}$/;
const PREFIX_LEN = /^(0|[1-9][0-9]{0,2})$/;
// Ports follow strconv.ParseUint(s, 10, 16) as wireguard-go uses it: digits
// only, leading zeros allowed.
const DECIMAL = /^[0-9]+$/;

export function parseIPv4(text: string): Uint8Array | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!V4_OCTET.test(parts[i])) return null;
    const v = Number(parts[i]);
    if (v > 255) return null;
    out[i] = v;
  }
  return out;
}

/** The 16-bit words of one side of "::"; a dotted IPv4 tail counts as two. */
function parseWords(text: string, v4TailAllowed: boolean): number[] | null {
  if (text === '') return [];
  const groups = text.split(':');
  if (groups.length > 8) return null;
  const words: number[] = [];
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i];
    if (v4TailAllowed && i === groups.length - 1 && g.includes('.')) {
      const v4 = parseIPv4(g);
      if (v4 === null) return null;
      words.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    } else {
      if (!V6_GROUP.test(g)) return null;
      words.push(parseInt(g, 16));
    }
  }
  return words;
}

export function parseIPv6(text: string): Uint8Array | null {
  const halves = text.split('::');
  if (halves.length > 2) return null;
  let words: number[];
  if (halves.length === 1) {
    const all = parseWords(text, true);
    if (all === null || all.length !== 8) return null;
    words = all;
  } else {
    const head = parseWords(halves[0], false);
    const tail = parseWords(halves[1], true);
    // "::" stands for at least one zero word.
    if (head === null || tail === null || head.length + tail.length > 7) return null;
    words = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[i * 2] = words[i] >> 8;
    out[i * 2 + 1] = words[i] & 0xff;
  }
  return out;
}

/** An IPv4 or IPv6 literal without zone or brackets; IPv6 is told by its colon. */
export function parseIp(text: string): IpAddress | null {
  if (text.includes(':')) {
    const bytes = parseIPv6(text);
    return bytes === null ? null : { family: 6, bytes };
  }
  const bytes = parseIPv4(text);
  return bytes === null ? null : { family: 4, bytes };
}

function isV4Mapped(a: Uint8Array): boolean {
  if (a.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return a[10] === 0xff && a[11] === 0xff;
}

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it carries, as netip's Addr.Unmap. */
export function unmap(addr: IpAddress): IpAddress {
  return addr.family === 6 && isV4Mapped(addr.bytes) ? { family: 4, bytes: addr.bytes.slice(12) } : addr;
}

function formatIPv6(a: Uint8Array): string {
  // netip prints IPv4-mapped addresses dotted and every other IPv6 address,
  // IPv4-compatible ones included, in hex words.
  if (isV4Mapped(a)) return `::ffff:${a[12]}.${a[13]}.${a[14]}.${a[15]}`;
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((a[i * 2] << 8) | a[i * 2 + 1]);
  let runStart = -1;
  let runLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i >= 2 && j - i > runLen) {
      runStart = i;
      runLen = j - i;
    }
    i = j;
  }
  if (runStart < 0) return words.map((w) => w.toString(16)).join(':');
  const head = words.slice(0, runStart).map((w) => w.toString(16));
  const tail = words.slice(runStart + runLen).map((w) => w.toString(16));
  return `${head.join(':')}::${tail.join(':')}`;
}

export function formatIp(addr: IpAddress): string {
  const a = addr.bytes;
  if (addr.family === 4 && a.length === 4) return `${a[0]}.${a[1]}.${a[2]}.${a[3]}`;
  if (addr.family === 6 && a.length === 16) return formatIPv6(a);
  throw new RangeError(`IPv${addr.family} address must be ${addr.family === 4 ? 4 : 16} bytes, got ${a.length}`);
}

/** A copy of `bytes` with every bit past the first `bits` cleared. */
export function maskBytes(bytes: Uint8Array, bits: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    out[i] &= (0xff00 >> keep) & 0xff;
  }
  return out;
}

export interface CidrOptions {
  /** A bare address means a host prefix (/32, /128), as wg(8) and wg-quick allow. */
  allowBare?: boolean;
  /** Clear host bits, as an allowed-IPs table stores them; an Address keeps them. */
  mask?: boolean;
}

/** "10.0.0.0/8", "fd00::/64"; zones are refused, as netip refuses them in prefixes. */
export function parseCidr(text: string, opts: CidrOptions = {}): Parsed<IpPrefix> {
  const slash = text.indexOf('/');
  if (slash < 0 && !opts.allowBare) return fail('missing "/prefix-length"');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  if (addrText.includes('%')) return fail('a prefix cannot carry an IPv6 zone');
  const addr = parseIp(addrText);
  if (addr === null) return fail(`"${addrText}" is not an IPv4 or IPv6 address`);
  const max = addr.family === 4 ? 32 : 128;
  let bits = max;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!PREFIX_LEN.test(lenText)) return fail(`prefix length "${lenText}" is not a decimal number`);
    bits = Number(lenText);
    if (bits > max) return fail(`prefix length ${bits} exceeds ${max}`);
  }
  const bytes = opts.mask ? maskBytes(addr.bytes, bits) : addr.bytes;
  return ok({ family: addr.family, bytes, bits });
}

export function formatCidr(prefix: IpPrefix): string {
  return `${formatIp(prefix)}/${prefix.bits}`;
}

/** A port in 0..65535; callers that cannot use 0 check it themselves. */
export function parsePort(text: string): Parsed<number> {
  if (!DECIMAL.test(text)) return fail(`port "${text}" is not a decimal number`);
  const port = Number(text);
  if (port > 65535) return fail(`port ${text} is out of range 0..65535`);
  return ok(port);
}

// An interface name as Linux allows (IFNAMSIZ - 1) or a numeric scope id.
const ZONE = /^[A-Za-z0-9_.:-]{1,15}$|^[0-9]{1,10}$/;

/**
 * "1.2.3.4:51820" or "[2001:db8::1]:51820", optionally "[fe80::1%eth0]:51820",
 * as netip.ParseAddrPort reads them. Host names are refused: whoever resolves
 * them does so before the address reaches us.
 */
export function parseIpEndpoint(text: string): Parsed<IpEndpoint> {
  let hostText: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return fail('missing "]"');
    if (text[close + 1] !== ':') return fail('missing ":port" after "]"');
    hostText = text.slice(1, close);
    portText = text.slice(close + 2);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return fail('missing ":port"');
    hostText = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (hostText.includes(':')) return fail('an IPv6 address must be in brackets, as in [2001:db8::1]:51820');
  }
  let zone: string | undefined;
  const pct = hostText.indexOf('%');
  if (pct >= 0) {
    zone = hostText.slice(pct + 1);
    hostText = hostText.slice(0, pct);
    if (!text.startsWith('[')) return fail('a zone is only allowed on a bracketed IPv6 address');
    if (!ZONE.test(zone)) return fail(`invalid IPv6 zone "${zone}"`);
  }
  const addr = parseIp(hostText);
  if (addr === null) return fail(`"${hostText}" is not an IP address`);
  if (text.startsWith('[') && addr.family === 4) return fail('brackets are only for IPv6 addresses');
  const port = parsePort(portText);
  if (!port.ok) return port;
  const ep: IpEndpoint = { family: addr.family, bytes: addr.bytes, port: port.value };
  if (zone !== undefined) ep.zone = zone;
  return ok(ep);
}

/** "1.2.3.4:51820" or "[2001:db8::1]:51820" (with "%zone" if one is set). */
export function formatIpEndpoint(ep: IpEndpoint): string {
  const host = formatIp(ep);
  if (ep.family === 4) return `${host}:${ep.port}`;
  return ep.zone ? `[${host}%${ep.zone}]:${ep.port}` : `[${host}]:${ep.port}`;
}
