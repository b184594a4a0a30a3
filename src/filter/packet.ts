// Reads what the filter decides on — the 5-tuple — straight from an IP
// packet's bytes into a caller-owned PacketTuple: no allocation, no throw.
// Anything truncated or inconsistent makes the reader return false.

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;
export const PROTO_SCTP = 132;

// RFC 8200 §4: the extension headers we walk to find the upper layer.
const EH_HOP_BY_HOP = 0;
const EH_ROUTING = 43;
const EH_FRAGMENT = 44;
const EH_AH = 51; // RFC 4302: length in 4-octet units, minus 2
const EH_DEST_OPTS = 60;
const MAX_EXT_HEADERS = 8;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_ACK = 0x10;

/** What kind of ICMP / ICMPv6 message a packet is, for flow tracking. */
export const ICMP_NONE = 0; // not ICMP
export const ICMP_ECHO = 1; // echo request or reply: tracked by identifier
export const ICMP_ERROR = 2; // carries the header of the packet it is about
export const ICMP_OTHER = 3; // informational, not tracked

/**
 * ICMP echo identifiers stand in for ports: a request is (id → ECHO_SERVICE),
 * its reply (ECHO_SERVICE → id), so a reversed reply matches its request and
 * a request from the other side does not. Above any real port on purpose.
 */
export const ECHO_SERVICE = 0x10000;

export class PacketTuple {
  /** 4 or 6; 0 until a read succeeds. */
  version = 0;
  /** IANA upper-layer protocol (after IPv6 extension headers). */
  proto = 0;
  /** Addresses; IPv4 uses the first 4 bytes, exposed as src4/dst4. */
  readonly src = new Uint8Array(16);
  readonly dst = new Uint8Array(16);
  readonly src4 = this.src.subarray(0, 4);
  readonly dst4 = this.dst.subarray(0, 4);
  /** TCP/UDP/SCTP ports, or the ICMP echo stand-ins; 0 otherwise. */
  sport = 0;
  dport = 0;
  /** True when sport/dport are real transport ports (TCP, UDP, SCTP). */
  hasPorts = false;
  /** A non-first fragment: the transport header is in another packet. */
  fragment = false;
  icmpKind = ICMP_NONE;
  icmpType = -1;
  icmpCode = -1;
  tcpFlags = 0;
  /** Offset of the transport header, and where the packet ends. */
  l4 = 0;
  end = 0;

  /** The source address at its family's length (a view; never copied). */
  srcAddr(): Uint8Array {
    return this.version === 4 ? this.src4 : this.src;
  }

  dstAddr(): Uint8Array {
    return this.version === 4 ? this.dst4 : this.dst;
  }
}

/** Reads a whole packet, as the TUN or the tunnel carries it. */
export function readPacket(packet: Uint8Array, t: PacketTuple): boolean {
  return readIp(packet, 0, packet.length, t, false);
}

/**
 * Reads the packet quoted inside an ICMP error, in `buf[off..end)`: RFC 792
 * quotes only the IP header and 64 bits of data, RFC 4443 §2.4(c) as much as
 * fits, so lengths may exceed what is there and only the first 8 transport
 * bytes count.
 */
export function readQuotedPacket(buf: Uint8Array, off: number, end: number, t: PacketTuple): boolean {
  return readIp(buf, off, Math.min(end, buf.length), t, true);
}

function readIp(b: Uint8Array, off: number, limit: number, t: PacketTuple, quoted: boolean): boolean {
  t.version = 0;
  t.proto = 0;
  t.sport = 0;
  t.dport = 0;
  t.hasPorts = false;
  t.fragment = false;
  t.icmpKind = ICMP_NONE;
  t.icmpType = -1;
  t.icmpCode = -1;
  t.tcpFlags = 0;
  if (off < 0 || limit - off < 20) return false;
  const version = b[off] >> 4;
  if (version === 4) return readIPv4(b, off, limit, t, quoted);
  if (version === 6) return readIPv6(b, off, limit, t, quoted);
  return false;
}

// RFC 791 §3.1: IHL in 32-bit words, total length, flags + fragment offset
// in 8-octet units at bytes 6-7, protocol at 9, addresses at 12 and 16.
function readIPv4(b: Uint8Array, off: number, limit: number, t: PacketTuple, quoted: boolean): boolean {
  const ihl = (b[off] & 0x0f) << 2;
  const total = (b[off + 2] << 8) | b[off + 3];
  if (ihl < 20 || total < ihl || off + ihl > limit) return false;
  if (!quoted && off + total > limit) return false;
  const end = quoted ? limit : off + total;
  if (ihl > 20 && !ipv4OptionsOk(b, off + 20, off + ihl)) return false;
  const fragOffset = ((b[off + 6] << 8) | b[off + 7]) & 0x1fff;
  const proto = b[off + 9];
  for (let i = 0; i < 4; i++) {
    t.src[i] = b[off + 12 + i];
    t.dst[i] = b[off + 16 + i];
  }
  t.version = 4;
  t.proto = proto;
  t.l4 = off + ihl;
  t.end = end;
  if (fragOffset !== 0) {
    // RFC 1858 §3.2: a TCP fragment at offset 8 can only be an attempt to
    // rewrite the first fragment's header (flags) after it was checked.
    if (fragOffset === 1 && proto === PROTO_TCP) return false;
    t.fragment = true;
    return true;
  }
  return readTransport(b, off + ihl, end, t, quoted);
}

/**
 * RFC 791 options: end-of-list (0), no-op (1), else type, length, data. Loose
 * and strict source routes (131, 137) would carry the packet on past the
 * destination the rules were checked against; RFC 7126 §4.3-4.4 drops them.
 */
function ipv4OptionsOk(b: Uint8Array, p: number, end: number): boolean {
  while (p < end) {
    const type = b[p];
    if (type === 0) return true;
    if (type === 1) {
      p++;
      continue;
    }
    if (p + 1 >= end) return false;
    const len = b[p + 1];
    if (len < 2 || p + len > end || type === 131 || type === 137) return false;
    p += len;
  }
  return true;
}

// RFC 8200 §3: fixed 40-byte header, payload length at 4, next header at 6,
// addresses at 8 and 24; then the extension header chain (§4).
function readIPv6(b: Uint8Array, off: number, limit: number, t: PacketTuple, quoted: boolean): boolean {
  if (limit - off < 40) return false;
  const payload = (b[off + 4] << 8) | b[off + 5];
  // (A jumbogram's payload length is 0, RFC 2675: its hop-by-hop header then overruns.)
  if (!quoted && off + 40 + payload > limit) return false;
  const end = quoted ? limit : off + 40 + payload;
  for (let i = 0; i < 16; i++) {
    t.src[i] = b[off + 8 + i];
    t.dst[i] = b[off + 24 + i];
  }
  t.version = 6;
  let next = b[off + 6];
  let p = off + 40;
  for (let n = 0; ; n++) {
    if (next !== EH_HOP_BY_HOP && next !== EH_ROUTING && next !== EH_DEST_OPTS && next !== EH_FRAGMENT && next !== EH_AH) break;
    // §4.1: hop-by-hop options may only come first; a chain this long is an evasion attempt.
    if ((next === EH_HOP_BY_HOP && n > 0) || n >= MAX_EXT_HEADERS) return false;
    if (p + 8 > end) return false;
    if (next === EH_FRAGMENT) {
      // §4.5: offset in 8-octet units in the top 13 bits of bytes 2-3.
      const fragOffset = ((b[p + 2] << 8) | b[p + 3]) >> 3;
      next = b[p];
      p += 8;
      if (fragOffset !== 0) {
        t.proto = next;
        t.l4 = p;
        t.end = end;
        t.fragment = true;
        return true;
      }
      continue;
    }
    // §4.4: a routing header with segments left would send the packet on
    // past the destination the rules were checked against.
    if (next === EH_ROUTING && b[p + 3] !== 0) return false;
    const len = next === EH_AH ? (b[p + 1] + 2) << 2 : (b[p + 1] + 1) << 3;
    next = b[p];
    p += len;
  }
  if (p > end) return false;
  t.proto = next;
  t.l4 = p;
  t.end = end;
  return readTransport(b, p, end, t, quoted);
}

/**
 * Ports (TCP, UDP, SCTP share the first 4 bytes), TCP flags, ICMP type. A
 * first fragment must hold its whole transport header (RFC 1858 tiny
 * fragments; RFC 7112 for IPv6); a quoted one only needs the first 8 bytes.
 */
function readTransport(b: Uint8Array, p: number, end: number, t: PacketTuple, quoted: boolean): boolean {
  const left = end - p;
  switch (t.proto) {
    case PROTO_TCP: {
      if (quoted) {
        if (left < 4) return false;
        if (left >= 14) t.tcpFlags = b[p + 13];
      } else {
        const doff = (b[p + 12] >> 4) << 2; // data offset, 32-bit words (RFC 9293 §3.1)
        if (left < 20 || doff < 20 || doff > left) return false;
        t.tcpFlags = b[p + 13];
      }
      break;
    }
    case PROTO_UDP: // RFC 768: 8-byte header
      if (left < (quoted ? 4 : 8)) return false;
      break;
    case PROTO_SCTP: // RFC 9260 §3.1: 12-byte common header
      if (left < (quoted ? 4 : 12)) return false;
      break;
    case PROTO_ICMP:
    case PROTO_ICMPV6:
      return readIcmp(b, p, left, t);
    default:
      return true; // no ports to read; the protocol alone decides
  }
  t.sport = (b[p] << 8) | b[p + 1];
  t.dport = (b[p + 2] << 8) | b[p + 3];
  t.hasPorts = true;
  return true;
}

// RFC 792 / RFC 4443 §2.1: type, code, checksum, then 4 bytes (echo: id, seq).
function readIcmp(b: Uint8Array, p: number, left: number, t: PacketTuple): boolean {
  // ICMP inside IPv6 or ICMPv6 inside IPv4 is no control message of either.
  const v6 = t.version === 6;
  if ((t.proto === PROTO_ICMPV6) !== v6) return true;
  if (left < 8) return false;
  const type = b[p];
  t.icmpType = type;
  t.icmpCode = b[p + 1];
  const id = (b[p + 4] << 8) | b[p + 5];
  if (type === (v6 ? 128 : 8)) {
    t.icmpKind = ICMP_ECHO;
    t.sport = id;
    t.dport = ECHO_SERVICE;
  } else if (type === (v6 ? 129 : 0)) {
    t.icmpKind = ICMP_ECHO;
    t.sport = ECHO_SERVICE;
    t.dport = id;
  } else if (v6 ? type >= 1 && type <= 4 : type === 3 || type === 11 || type === 12) {
    // ICMPv6 1-4: unreachable, packet too big, time exceeded, parameter problem;
    // ICMP 3, 11, 12: unreachable (incl. fragmentation needed), time exceeded, parameter problem.
    t.icmpKind = ICMP_ERROR;
  } else {
    t.icmpKind = ICMP_OTHER;
  }
  return true;
}
