// The inbound packet filter, end to end on real IPv4/IPv6 packets: rules,
// replies to our own flows, ICMP echo and errors, the flow table's bound and
// idle timeouts, rule replacement, permissive mode; then the packet reader's
// details, and fuzzing with random bytes and broken packets.
import { describe, expect, it } from 'vitest';
import {
  compileRules, ECHO_SERVICE, FlowTable, ICMP_ECHO, ICMP_ERROR, PacketFilter, PacketTuple, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP,
  PROTO_TCP, PROTO_UDP, readPacket, readQuotedPacket, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
} from '../../src/filter/index.js';
import { parseCidr, parseIp } from '../../src/net/ipaddr.js';
import type { FilterRule } from '../../src/policy/types.js';

// ---- A packet builder: real headers with real checksums. ----

interface Spec {
  src: string;
  dst: string;
  proto: number;
  sport?: number;
  dport?: number;
  flags?: number;
  /** ICMP type, code, echo identifier. */
  type?: number;
  code?: number;
  id?: number;
  payload?: Uint8Array;
  /** IPv6 extension headers, outermost first: 0, 43 (segments left 0), 44, 51, 60. */
  ext?: number[];
  /** In 8-octet units; non-zero makes a non-first fragment holding only `payload`. */
  fragOffset?: number;
  more?: boolean;
}

const addr = (text: string): Uint8Array => parseIp(text)!.bytes;
const put16 = (b: Uint8Array, o: number, v: number): void => {
  b[o] = v >> 8;
  b[o + 1] = v & 0xff;
};
const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.length) - p.length);
  return out;
};

/** RFC 1071 ones' complement sum, folded and inverted. */
function checksum(...parts: Uint8Array[]): number {
  const b = concat(...parts);
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i] << 8) | (b[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function transport(s: Spec): Uint8Array {
  let h: Uint8Array;
  if (s.proto === PROTO_TCP) {
    h = new Uint8Array(20);
    h[12] = 5 << 4;
    h[13] = s.flags ?? TCP_SYN;
    put16(h, 14, 65535);
  } else if (s.proto === PROTO_UDP) {
    h = new Uint8Array(8);
    put16(h, 4, 8 + (s.payload?.length ?? 0));
  } else if (s.proto === PROTO_SCTP) {
    h = new Uint8Array(12);
  } else if (s.proto === PROTO_ICMP || s.proto === PROTO_ICMPV6) {
    h = new Uint8Array(8);
    h[0] = s.type ?? 8;
    h[1] = s.code ?? 0;
    put16(h, 4, s.id ?? 0);
    put16(h, 6, 1);
    return concat(h, s.payload ?? new Uint8Array(0));
  } else {
    return s.payload ?? new Uint8Array(4);
  }
  put16(h, 0, s.sport ?? 0);
  put16(h, 2, s.dport ?? 0);
  return concat(h, s.payload ?? new Uint8Array(0));
}

/** Transport checksums: TCP, UDP and ICMPv6 over a pseudo-header (RFC 793, 768, 8200 §8.1); ICMP over itself (RFC 792). */
function withChecksum(s: Spec, l4: Uint8Array): Uint8Array {
  const at = { [PROTO_TCP]: 16, [PROTO_UDP]: 6, [PROTO_ICMP]: 2, [PROTO_ICMPV6]: 2 }[s.proto];
  if (at === undefined) return l4;
  const v6 = s.src.includes(':');
  const pseudo = new Uint8Array(v6 ? 40 : 12);
  pseudo.set(addr(s.src), 0);
  pseudo.set(addr(s.dst), v6 ? 16 : 4);
  if (v6) {
    put16(pseudo, 34, l4.length);
    pseudo[39] = s.proto;
  } else {
    pseudo[9] = s.proto;
    put16(pseudo, 10, l4.length);
  }
  put16(l4, at, s.proto === PROTO_ICMP ? checksum(l4) : checksum(pseudo, l4));
  return l4;
}

function build(s: Spec): Uint8Array {
  const first = !s.fragOffset;
  const l4 = first ? withChecksum(s, transport(s)) : (s.payload ?? new Uint8Array(8));
  const frag = ((s.fragOffset ?? 0) << 3) | (s.more ? 1 : 0);
  if (!s.src.includes(':')) {
    const h = new Uint8Array(20);
    h[0] = 0x45;
    put16(h, 2, 20 + l4.length);
    put16(h, 4, 0x1234);
    put16(h, 6, (s.more ? 0x2000 : 0) | (s.fragOffset ?? 0));
    h[8] = 64;
    h[9] = s.proto;
    h.set(addr(s.src), 12);
    h.set(addr(s.dst), 16);
    put16(h, 10, checksum(h));
    return concat(h, l4);
  }
  const types = s.ext ?? [];
  const exts = types.map((type, i) => {
    const next = i + 1 < types.length ? types[i + 1] : s.proto;
    const e = new Uint8Array(type === 51 ? 24 : 8);
    e[0] = next;
    if (type === 51) e[1] = 4; // AH: (24 / 4) - 2
    else if (type === 44) put16(e, 2, frag);
    else if (type === 43) e[2] = 4; // routing type 4, segments left 0
    else e.set([1, 4], 2); // PadN over the rest
    return e;
  });
  const h = new Uint8Array(40);
  h[0] = 0x60;
  const rest = concat(...exts, l4);
  put16(h, 4, rest.length);
  h[6] = types.length > 0 ? types[0] : s.proto;
  h[7] = 64;
  h.set(addr(s.src), 8);
  h.set(addr(s.dst), 24);
  return concat(h, rest);
}

/** The other side's answer on the same flow. */
function reply(s: Spec, flags?: number): Spec {
  return { ...s, src: s.dst, dst: s.src, sport: s.dport, dport: s.sport, flags: flags ?? s.flags, type: s.type === 8 ? 0 : s.type === 128 ? 129 : s.type };
}

/** An ICMP error quoting `quoted`: RFC 792 keeps its header and 64 bits, RFC 4443 §2.4(c) what fits in 1280. */
function icmpError(src: string, dst: string, type: number, code: number, quoted: Uint8Array): Uint8Array {
  const v6 = src.includes(':');
  const keep = v6 ? Math.min(quoted.length, 1280 - 48) : (quoted[0] & 0x0f) * 4 + 8;
  return build({ src, dst, proto: v6 ? PROTO_ICMPV6 : PROTO_ICMP, type, code, payload: quoted.subarray(0, keep) });
}

const ME4 = '100.64.0.1';
const PEER4 = '100.64.0.2';
const STRANGER4 = '100.64.0.3';
const ME6 = 'fd7a:115c:a1e0::1';
const PEER6 = 'fd7a:115c:a1e0::2';
const T0 = 1_000_000;

const rule = (r: Partial<FilterRule>): FilterRule => ({ srcs: ['0.0.0.0/0', '::/0'], dsts: [`${ME4}/32`, `${ME6}/128`], ports: [[0, 65535]], protos: null, ...r });
/** The peer may reach our ssh and 8000-8099, by TCP, UDP, ICMP, ICMPv6. */
const RULES: FilterRule[] = [rule({ srcs: [`${PEER4}/32`, `${PEER6}/128`], ports: [[22, 22], [8000, 8099]] })];

const tcp = (src: string, dst: string, sport: number, dport: number, flags = TCP_SYN): Spec => ({ src, dst, proto: PROTO_TCP, sport, dport, flags });
const udp = (src: string, dst: string, sport: number, dport: number): Spec => ({ src, dst, proto: PROTO_UDP, sport, dport });
const ping = (src: string, dst: string, id: number, v6 = false): Spec => ({ src, dst, proto: v6 ? PROTO_ICMPV6 : PROTO_ICMP, type: v6 ? 128 : 8, id });
const pong = (src: string, dst: string, id: number, v6 = false): Spec => ({ src, dst, proto: v6 ? PROTO_ICMPV6 : PROTO_ICMP, type: v6 ? 129 : 0, id });

function verdict(f: PacketFilter, s: Spec, now = T0): string {
  return f.inbound(build(s), now);
}

describe('rules', () => {
  it('denies by default: no rules, nothing tracked', () => {
    const f = new PacketFilter([]);
    expect(verdict(f, tcp(PEER4, ME4, 40000, 22))).toBe('filtered');
    expect(verdict(f, udp(PEER6, ME6, 40000, 53))).toBe('filtered');
    expect(verdict(f, ping(PEER4, ME4, 1))).toBe('filtered');
  });

  it('matches source and destination CIDRs and inclusive port ranges, v4 and v6', () => {
    const f = new PacketFilter(RULES);
    for (const [me, peer] of [[ME4, PEER4], [ME6, PEER6]]) {
      expect(verdict(f, tcp(peer, me, 40000, 22))).toBe('accept');
      expect(verdict(f, udp(peer, me, 40000, 8000))).toBe('accept');
      expect(verdict(f, udp(peer, me, 40000, 8099))).toBe('accept');
      expect(verdict(f, udp(peer, me, 40000, 7999))).toBe('filtered');
      expect(verdict(f, udp(peer, me, 40000, 8100))).toBe('filtered');
      expect(verdict(f, tcp(peer, me, 40000, 23))).toBe('filtered');
    }
    expect(verdict(f, tcp(STRANGER4, ME4, 40000, 22))).toBe('filtered'); // source not in srcs
    expect(verdict(f, tcp(PEER4, '100.64.0.9', 40000, 22))).toBe('filtered'); // destination not in dsts
    expect(verdict(f, tcp('fd7a:115c:a1e0::3', ME6, 40000, 22))).toBe('filtered');
  });

  it('protos null means TCP, UDP, ICMP, ICMPv6; explicit lists mean exactly those', () => {
    const dflt = new PacketFilter([rule({ ports: [[5000, 5000]] })]);
    expect(verdict(dflt, tcp(PEER4, ME4, 1, 5000))).toBe('accept');
    expect(verdict(dflt, udp(PEER4, ME4, 1, 5000))).toBe('accept');
    expect(verdict(dflt, ping(PEER4, ME4, 7))).toBe('accept'); // ports do not apply to ICMP
    expect(verdict(dflt, ping(PEER6, ME6, 7, true))).toBe('accept');
    expect(verdict(dflt, { src: PEER4, dst: ME4, proto: PROTO_SCTP, sport: 1, dport: 5000 })).toBe('filtered');
    expect(verdict(dflt, { src: PEER4, dst: ME4, proto: 47 })).toBe('filtered'); // GRE

    const explicit = new PacketFilter([rule({ ports: [[5000, 5000]], protos: [PROTO_SCTP, 47] })]);
    expect(verdict(explicit, { src: PEER4, dst: ME4, proto: PROTO_SCTP, sport: 1, dport: 5000 })).toBe('accept');
    expect(verdict(explicit, { src: PEER4, dst: ME4, proto: PROTO_SCTP, sport: 1, dport: 5001 })).toBe('filtered');
    expect(verdict(explicit, { src: PEER6, dst: ME6, proto: 47 })).toBe('accept'); // no ports to check
    expect(verdict(explicit, tcp(PEER4, ME4, 1, 5000))).toBe('filtered');
    expect(verdict(explicit, ping(PEER4, ME4, 7))).toBe('filtered');
  });

  it('applies every rule whose destination contains the address (nested prefixes)', () => {
    const f = new PacketFilter([
      rule({ dsts: ['10.0.0.0/8'], ports: [[80, 80]], protos: [PROTO_TCP] }),
      rule({ dsts: ['10.1.0.0/16'], ports: [[443, 443]], protos: [PROTO_TCP] }),
      rule({ srcs: ['192.168.0.0/16'], dsts: ['10.1.2.0/24'], ports: [[53, 53]], protos: [PROTO_UDP] }),
    ]);
    expect(verdict(f, tcp('1.2.3.4', '10.1.2.3', 1, 80))).toBe('accept');
    expect(verdict(f, tcp('1.2.3.4', '10.1.2.3', 1, 443))).toBe('accept');
    expect(verdict(f, udp('192.168.5.5', '10.1.2.3', 1, 53))).toBe('accept');
    expect(verdict(f, udp('192.169.5.5', '10.1.2.3', 1, 53))).toBe('filtered');
    expect(verdict(f, tcp('1.2.3.4', '10.2.0.1', 1, 443))).toBe('filtered');
    expect(verdict(f, udp('192.168.5.5', '10.1.3.3', 1, 53))).toBe('filtered');
  });

  it('skips what it cannot read (allowing less) and reports it, never throws', () => {
    const bad = [
      { srcs: ['not-an-ip', `${PEER4}/32`], dsts: [`${ME4}/33`, ME4], ports: [[90, 80], [22, 22], [1, 70000]], protos: [6, 300, -1] },
      { srcs: 'x', dsts: null, ports: null, protos: 'tcp' },
      null,
    ] as unknown as FilterRule[];
    const f = new PacketFilter(bad);
    expect(f.problems.length).toBeGreaterThanOrEqual(8);
    expect(verdict(f, tcp(PEER4, ME4, 1, 22))).toBe('accept'); // a bare address is a host prefix
    expect(verdict(f, tcp(PEER4, ME4, 1, 85))).toBe('filtered');
    expect(verdict(f, udp(PEER4, ME4, 1, 22))).toBe('filtered');
    expect(new PacketFilter('nope' as unknown as FilterRule[]).problems).toEqual(['rules is not a list']);
  });
});

describe('rule index against a naive reading of the rules', () => {
  /** policy/types.ts, word for word. */
  function naive(rules: FilterRule[], s: Spec): boolean {
    const inCidr = (ip: string, cidr: string): boolean => {
      const a = addr(ip);
      const p = parseCidr(cidr, { allowBare: true }).ok ? parseCidr(cidr, { allowBare: true }) : null;
      if (p === null || !p.ok || p.value.bytes.length !== a.length) return false;
      for (let i = 0; i < p.value.bits; i++) if (((a[i >> 3] ^ p.value.bytes[i >> 3]) >> (7 - (i & 7))) & 1) return false;
      return true;
    };
    return rules.some(
      (r) =>
        r.srcs.some((c) => inCidr(s.src, c)) &&
        r.dsts.some((c) => inCidr(s.dst, c)) &&
        (r.protos ?? [PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6]).includes(s.proto) &&
        (![PROTO_TCP, PROTO_UDP, PROTO_SCTP].includes(s.proto) || r.ports.some(([lo, hi]) => s.dport! >= lo && s.dport! <= hi)),
    );
  }

  it('agrees on random rules and packets, v4 and v6', () => {
    let seed = 7;
    const rnd = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
    const v4 = (): string => `10.0.${rnd(4)}.${rnd(8)}`;
    const v6 = (): string => `fd00::${rnd(4)}:${rnd(8)}`;
    const cidr = (v: boolean): string => (v ? `${v6()}/${[0, 64, 120, 125, 128][rnd(5)]}` : `${v4()}/${[0, 8, 24, 29, 32][rnd(5)]}`);
    const port = (): number => [0, 1, 22, 80, 443, 1000, 65535][rnd(7)] + rnd(3);
    const protos = [PROTO_TCP, PROTO_UDP, PROTO_SCTP, PROTO_ICMP, PROTO_ICMPV6, 47];
    const t = new PacketTuple();
    let allowed = 0;
    for (let round = 0; round < 30; round++) {
      const rules: FilterRule[] = Array.from({ length: 1 + rnd(12) }, () => ({
        srcs: Array.from({ length: 1 + rnd(3) }, () => cidr(rnd(2) === 0)),
        dsts: Array.from({ length: 1 + rnd(3) }, () => cidr(rnd(2) === 0)),
        ports: Array.from({ length: rnd(4) }, () => {
          const lo = Math.min(port(), 65535);
          return [lo, Math.min(65535, lo + [0, 5, 100, 70000][rnd(4)])] as [number, number];
        }),
        protos: rnd(3) === 0 ? null : Array.from({ length: 1 + rnd(2) }, () => protos[rnd(protos.length)]),
      }));
      const set = compileRules(rules);
      expect(set.problems).toEqual([]);
      for (let i = 0; i < 300; i++) {
        const six = rnd(2) === 0;
        const proto = protos[rnd(protos.length)];
        const s: Spec = { src: six ? v6() : v4(), dst: six ? v6() : v4(), proto, sport: 1234, dport: Math.min(port(), 65535), type: 8 };
        expect(readPacket(build(s), t)).toBe(true);
        const want = naive(rules, s);
        expect(set.allows(t)).toBe(want);
        if (want) allowed++;
      }
    }
    expect(allowed).toBeGreaterThan(900); // both answers well represented
  });
});

describe('replies to our own flows', () => {
  it('lets replies in, and nothing else from the same peer', () => {
    const f = new PacketFilter([]);
    for (const [me, peer] of [[ME4, PEER4], [ME6, PEER6]]) {
      const out = tcp(me, peer, 51000, 443);
      f.outbound(build(out), T0);
      expect(verdict(f, reply(out, TCP_SYN | TCP_ACK))).toBe('accept');
      expect(verdict(f, tcp(peer, me, 443, 51001, TCP_ACK))).toBe('filtered'); // other local port
      expect(verdict(f, tcp(peer, me, 444, 51000, TCP_ACK))).toBe('filtered'); // other remote port
      expect(verdict(f, udp(peer, me, 443, 51000))).toBe('filtered'); // other protocol
      expect(verdict(f, tcp(peer, me, 51000, 443))).toBe('filtered'); // our tuple, not reversed
      const q = udp(me, peer, 5353, 53);
      f.outbound(build(q), T0);
      expect(verdict(f, reply(q))).toBe('accept');
    }
    expect(verdict(f, tcp(STRANGER4, ME4, 443, 51000, TCP_ACK))).toBe('filtered');
    expect(f.stats()).toMatchObject({ replies: 4, filtered: 9, flows: 4, inboundFlows: 0 });
  });

  it('passes the echo reply for our request, not another id nor a request reusing it', () => {
    const f = new PacketFilter([]);
    for (const v6 of [false, true]) {
      const [me, peer] = v6 ? [ME6, PEER6] : [ME4, PEER4];
      f.outbound(build(ping(me, peer, 0x1234, v6)), T0);
      expect(verdict(f, pong(peer, me, 0x1234, v6))).toBe('accept');
      expect(verdict(f, pong(peer, me, 0x1235, v6))).toBe('filtered');
      expect(verdict(f, pong(v6 ? 'fd7a:115c:a1e0::3' : STRANGER4, me, 0x1234, v6))).toBe('filtered');
      expect(verdict(f, ping(peer, me, 0x1234, v6))).toBe('filtered');
    }
  });

  it('passes ICMP errors quoting a tracked flow, addressed to its sender', () => {
    const f = new PacketFilter([]);
    const dns = udp(ME4, PEER4, 5353, 53);
    f.outbound(build(dns), T0);
    const unreachable = icmpError(PEER4, ME4, 3, 3, build(dns)); // port unreachable, RFC 792
    expect(f.inbound(unreachable, T0)).toBe('accept');
    expect(f.inbound(icmpError('100.64.9.9', ME4, 11, 0, build(dns)), T0)).toBe('accept'); // a router on the way
    expect(f.inbound(icmpError(PEER4, ME4, 3, 3, build(udp(ME4, PEER4, 5354, 53))), T0)).toBe('filtered');
    expect(f.inbound(icmpError(PEER4, '100.64.0.7', 3, 3, build(dns)), T0)).toBe('filtered'); // not to the sender
    expect(f.inbound(icmpError(PEER4, ME4, 5, 0, build(dns)), T0)).toBe('filtered'); // a redirect is no error

    const ssh = tcp(ME6, PEER6, 52000, 22);
    f.outbound(build({ ...ssh, payload: new Uint8Array(1300) }), T0);
    const tooBig = icmpError(PEER6, ME6, 2, 0, build({ ...ssh, payload: new Uint8Array(1300) })); // RFC 4443 §3.2
    expect(f.inbound(tooBig, T0)).toBe('accept');
    const echo = ping(ME6, PEER6, 9, true);
    f.outbound(build(echo), T0);
    expect(f.inbound(icmpError(PEER6, ME6, 1, 0, build(echo)), T0)).toBe('accept');
    expect(f.inbound(icmpError(PEER6, ME6, 1, 0, build(ping(ME6, PEER6, 10, true))), T0)).toBe('filtered');
    expect(f.stats().icmpErrors).toBe(4);
  });

  it('accepts non-first fragments, which carry no ports to match', () => {
    const f = new PacketFilter([]);
    expect(verdict(f, { src: PEER4, dst: ME4, proto: PROTO_UDP, fragOffset: 185, payload: new Uint8Array(100) })).toBe('accept');
    expect(verdict(f, { src: PEER6, dst: ME6, proto: PROTO_UDP, ext: [44], fragOffset: 185, payload: new Uint8Array(100) })).toBe('accept');
    expect(verdict(f, { src: PEER4, dst: ME4, proto: PROTO_UDP, sport: 1, dport: 2, more: true, payload: new Uint8Array(100) })).toBe('filtered');
    expect(f.stats().fragments).toBe(2);
  });
});

describe('flow table', () => {
  it('stays at maxFlows, counts evictions, and forgets the least recently used', () => {
    const max = 64;
    const extra = 10;
    const f = new PacketFilter([], { maxFlows: max });
    const flows = Array.from({ length: max + extra }, (_, i) => udp(ME4, PEER4, 20000 + i, 53));
    flows.forEach((s, i) => f.outbound(build(s), T0 + i));
    expect(f.stats()).toMatchObject({ flows: max, maxFlows: max, evictions: extra });
    for (let i = 0; i < extra; i++) expect(verdict(f, reply(flows[i]), T0 + 100)).toBe('filtered');
    for (let i = extra; i < max + extra; i++) expect(verdict(f, reply(flows[i]), T0 + 100)).toBe('accept');
    // Use refreshes: the flow touched last is not the next to go.
    f.inbound(build(reply(flows[extra])), T0 + 200);
    f.outbound(build(udp(ME4, PEER4, 30000, 53)), T0 + 201);
    expect(verdict(f, reply(flows[extra]), T0 + 202)).toBe('accept');
    expect(verdict(f, reply(flows[extra + 1]), T0 + 202)).toBe('filtered');
  });

  it('holds flows the other side starts to their share, so they cannot flush ours', () => {
    const f = new PacketFilter([rule({})], { maxFlows: 8, maxInboundFlows: 4 });
    const ours = Array.from({ length: 4 }, (_, i) => tcp(ME4, PEER4, 41000 + i, 443));
    ours.forEach((s) => f.outbound(build(s), T0));
    for (let i = 0; i < 1000; i++) expect(verdict(f, udp(PEER4, ME4, 10000 + i, 9), T0 + 1 + i)).toBe('accept');
    expect(f.stats()).toMatchObject({ flows: 8, inboundFlows: 4, evictions: 996 });
    for (const s of ours) expect(verdict(f, reply(s, TCP_ACK), T0 + 2000)).toBe('accept');
  });

  it('expires idle flows by protocol, using the time it is given', () => {
    const f = new PacketFilter([]);
    const u = udp(ME4, PEER4, 5000, 53);
    const t = tcp(ME4, PEER4, 5001, 443);
    const p = ping(ME4, PEER4, 77);
    for (const s of [u, t, p]) f.outbound(build(s), T0);
    expect(verdict(f, reply(p), T0 + 30_000)).toBe('accept'); // refreshes
    expect(verdict(f, reply(p), T0 + 60_001)).toBe('filtered'); // ICMP: 30 s
    expect(verdict(f, reply(u), T0 + 60_000)).toBe('accept');
    expect(verdict(f, reply(u), T0 + 120_001)).toBe('filtered'); // UDP: 60 s
    expect(verdict(f, reply(t, TCP_ACK), T0 + 300_000)).toBe('accept');
    expect(verdict(f, reply(t, TCP_ACK), T0 + 600_001)).toBe('filtered'); // TCP: 5 min
    expect(f.stats().expired).toBe(3);

    // Once closed (FIN both ways, or RST), TCP lingers 30 s.
    const c = tcp(ME4, PEER4, 5002, 443, TCP_ACK | TCP_FIN);
    f.outbound(build(c), T0);
    expect(verdict(f, reply(c, TCP_ACK | TCP_FIN), T0 + 1)).toBe('accept');
    expect(verdict(f, reply(c, TCP_ACK), T0 + 30_002)).toBe('filtered');
    const r = tcp(ME4, PEER4, 5003, 443, TCP_ACK);
    f.outbound(build(r), T0);
    expect(verdict(f, reply(r, TCP_RST), T0 + 1)).toBe('accept');
    expect(verdict(f, reply(r, TCP_ACK), T0 + 30_002)).toBe('filtered');
    // A half-close keeps the long timeout.
    const h = tcp(ME4, PEER4, 5004, 443, TCP_ACK | TCP_FIN);
    f.outbound(build(h), T0);
    expect(verdict(f, reply(h, TCP_ACK), T0 + 200_000)).toBe('accept');
  });
});

describe('setRules', () => {
  it('keeps tracked flows; flows the other side started pass only while allowed', () => {
    const f = new PacketFilter(RULES);
    const ours = udp(ME4, PEER4, 6000, 53);
    f.outbound(build(ours), T0);
    const ssh = tcp(PEER4, ME4, 40000, 22);
    const web = tcp(PEER4, ME4, 40001, 8080);
    for (const s of [ssh, web]) {
      expect(verdict(f, s)).toBe('accept');
      f.outbound(build(reply(s, TCP_SYN | TCP_ACK)), T0); // our replies do not make it ours
    }
    expect(f.stats().inboundFlows).toBe(2);
    expect(f.setRules([rule({ srcs: [`${PEER4}/32`], ports: [[8080, 8080]] })])).toEqual([]);
    expect(verdict(f, reply(ours), T0 + 1)).toBe('accept');
    expect(verdict(f, { ...ssh, flags: TCP_ACK }, T0 + 1)).toBe('filtered');
    expect(verdict(f, { ...web, flags: TCP_ACK }, T0 + 1)).toBe('accept');
    f.setRules([]);
    expect(verdict(f, reply(ours), T0 + 2)).toBe('accept');
    expect(verdict(f, { ...web, flags: TCP_ACK }, T0 + 2)).toBe('filtered');
  });
});

describe('permissive mode', () => {
  it('accepts everything and tracks nothing', () => {
    for (const f of [PacketFilter.allowAll(), new PacketFilter(null)]) {
      f.outbound(build(udp(ME4, PEER4, 1, 2)), T0);
      expect(f.inbound(build(tcp(STRANGER4, ME4, 1, 22)), T0)).toBe('accept');
      expect(f.inbound(new Uint8Array([1, 2, 3]), T0)).toBe('accept');
      expect(f.stats()).toMatchObject({ permissive: true, accept: 2, flows: 0, outbound: 0 });
    }
    const f = PacketFilter.allowAll();
    f.setRules(RULES);
    expect(f.inbound(build(tcp(STRANGER4, ME4, 1, 22)), T0)).toBe('filtered');
    f.setRules(null);
    expect(f.inbound(build(tcp(STRANGER4, ME4, 1, 22)), T0)).toBe('accept');
  });
});

describe('packet reader', () => {
  const t = new PacketTuple();
  const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

  it('reads the 5-tuple of IPv4 and IPv6 TCP, UDP, SCTP in place', () => {
    expect(readPacket(build(tcp(PEER4, ME4, 40000, 22, TCP_SYN | TCP_ACK)), t)).toBe(true);
    expect(t).toMatchObject({ version: 4, proto: PROTO_TCP, sport: 40000, dport: 22, hasPorts: true, fragment: false, tcpFlags: TCP_SYN | TCP_ACK });
    expect(hex(t.srcAddr())).toBe(hex(addr(PEER4)));
    expect(hex(t.dstAddr())).toBe(hex(addr(ME4)));
    const src = t.src;
    expect(readPacket(build(udp(PEER6, ME6, 1, 65535)), t)).toBe(true);
    expect(t).toMatchObject({ version: 6, proto: PROTO_UDP, sport: 1, dport: 65535, hasPorts: true });
    expect(hex(t.srcAddr())).toBe(hex(addr(PEER6)));
    expect(t.src).toBe(src); // the same buffers, every time
    expect(readPacket(build({ src: PEER6, dst: ME6, proto: PROTO_SCTP, sport: 7, dport: 9 }), t)).toBe(true);
    expect(t).toMatchObject({ proto: PROTO_SCTP, sport: 7, dport: 9 });
  });

  it('maps ICMP echo ids to ports so that a reversed reply matches its request', () => {
    expect(readPacket(build(ping(ME4, PEER4, 42)), t)).toBe(true);
    expect(t).toMatchObject({ icmpKind: ICMP_ECHO, icmpType: 8, sport: 42, dport: ECHO_SERVICE, hasPorts: false });
    expect(readPacket(build(pong(PEER6, ME6, 42, true)), t)).toBe(true);
    expect(t).toMatchObject({ icmpKind: ICMP_ECHO, icmpType: 129, sport: ECHO_SERVICE, dport: 42 });
    expect(readPacket(icmpError(PEER4, ME4, 11, 0, build(ping(ME4, PEER4, 1))), t)).toBe(true);
    expect(t).toMatchObject({ icmpKind: ICMP_ERROR, icmpType: 11 });
  });

  it('walks IPv6 extension headers (RFC 8200 §4) to the transport header', () => {
    const base = udp(PEER6, ME6, 1000, 2000);
    expect(readPacket(build({ ...base, ext: [0, 60, 43, 44, 51, 60] }), t)).toBe(true);
    expect(t).toMatchObject({ proto: PROTO_UDP, sport: 1000, dport: 2000, fragment: false });
    expect(readPacket(build({ ...base, ext: [44], more: true }), t)).toBe(true); // first fragment has ports
    expect(t).toMatchObject({ sport: 1000, dport: 2000, fragment: false });
    expect(readPacket(build({ ...base, ext: [0, 44], fragOffset: 3 }), t)).toBe(true);
    expect(t).toMatchObject({ proto: PROTO_UDP, fragment: true, hasPorts: false, sport: 0 });
    expect(readPacket(build({ ...base, ext: [60, 0] }), t)).toBe(false); // hop-by-hop must come first
    expect(readPacket(build({ ...base, ext: Array(9).fill(60) }), t)).toBe(false);
    const routed = build({ ...base, ext: [43] });
    routed[43] = 1; // segments left: the packet would travel on past the checked destination
    expect(readPacket(routed, t)).toBe(false);
    const overrun = build({ ...base, ext: [60] });
    overrun[41] = 200; // header length beyond the packet
    expect(readPacket(overrun, t)).toBe(false);
  });

  it('reads IPv4 fragments (RFC 791) and refuses the RFC 1858 overlap', () => {
    expect(readPacket(build({ ...udp(PEER4, ME4, 1, 2), fragOffset: 10 }), t)).toBe(true);
    expect(t).toMatchObject({ fragment: true, hasPorts: false });
    expect(readPacket(build({ ...tcp(PEER4, ME4, 1, 2), fragOffset: 1 }), t)).toBe(false);
    expect(readPacket(build({ ...udp(PEER4, ME4, 1, 2), fragOffset: 1 }), t)).toBe(true);
  });

  it('refuses bad headers', () => {
    const good = build(tcp(PEER4, ME4, 1, 22));
    const bad = (edit: (b: Uint8Array) => void): boolean => {
      const b = good.slice();
      edit(b);
      return readPacket(b, t);
    };
    expect(bad(() => {})).toBe(true);
    expect(bad((b) => (b[0] = 0x44))).toBe(false); // IHL 4
    expect(bad((b) => (b[0] = 0x55))).toBe(false); // version 5
    expect(bad((b) => put16(b, 2, 19))).toBe(false); // total length below the header
    expect(bad((b) => put16(b, 2, 41))).toBe(false); // total length beyond the buffer
    expect(bad((b) => (b[32] = 4 << 4))).toBe(false); // TCP data offset 4
    expect(bad((b) => (b[32] = 6 << 4))).toBe(false); // TCP options beyond the packet
    expect(readPacket(concat(good, new Uint8Array(3)), t)).toBe(true); // trailing padding is not the packet's
    const withOptions = (...opts: number[]): boolean => {
      const b = concat(good.subarray(0, 20), Uint8Array.from(opts), good.subarray(20));
      b[0] = 0x40 | (5 + opts.length / 4);
      put16(b, 2, b.length);
      return readPacket(b, t) && t.dport === 22;
    };
    expect(withOptions(1, 1, 1, 0)).toBe(true); // no-ops, end of list
    expect(withOptions(148, 4, 0, 0)).toBe(true); // router alert (RFC 2113)
    expect(withOptions(131, 7, 4, 10, 0, 0, 1, 0)).toBe(false); // loose source route
    expect(withOptions(137, 7, 4, 10, 0, 0, 1, 0)).toBe(false); // strict source route
    expect(withOptions(148, 9, 0, 0)).toBe(false); // option overruns the header
    expect(withOptions(1, 1, 1, 148)).toBe(false); // no room for its length
    const v6 = build(udp(PEER6, ME6, 1, 2));
    put16(v6, 4, 9);
    expect(readPacket(v6, t)).toBe(false);
    expect(readPacket(new Uint8Array(0), t)).toBe(false);
  });

  it('reads a quoted packet whose lengths exceed what the error kept', () => {
    const q = new PacketTuple();
    const quoted = build({ ...udp(ME4, PEER4, 5, 6), payload: new Uint8Array(500) });
    const err = icmpError(PEER4, ME4, 3, 3, quoted);
    expect(readPacket(err, t)).toBe(true);
    expect(readQuotedPacket(err, t.l4 + 8, t.end, q)).toBe(true);
    expect(q).toMatchObject({ version: 4, proto: PROTO_UDP, sport: 5, dport: 6 });
    expect(readQuotedPacket(err, t.l4 + 8, t.end - 5, q)).toBe(false); // less than the ports
  });
});

describe('robustness', () => {
  /** mulberry32: seeded, so a failure can be replayed. */
  function prng(seed: number): () => number {
    let s = seed >>> 0;
    return () => {
      s = (s + 0x6d2b79f5) >>> 0;
      let x = Math.imul(s ^ (s >>> 15), s | 1);
      x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
      return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
    };
  }
  const samples = [
    build(tcp(PEER4, ME4, 40000, 22)),
    build({ ...udp(PEER6, ME6, 1000, 8000), ext: [0, 43, 44, 51, 60], payload: new Uint8Array(30) }),
    build(ping(PEER4, ME4, 3)),
    build(pong(PEER6, ME6, 3, true)),
    icmpError(PEER4, ME4, 3, 4, build(udp(ME4, PEER4, 1, 2))),
    icmpError(PEER6, ME6, 2, 0, build({ ...tcp(ME6, PEER6, 1, 2), ext: [60] })),
    build({ src: PEER4, dst: ME4, proto: PROTO_SCTP, sport: 1, dport: 2 }),
  ];
  const VERDICTS = ['accept', 'filtered', 'malformed'];

  it('calls every truncation of a valid packet malformed', () => {
    const f = new PacketFilter(RULES);
    for (const p of samples) {
      f.outbound(p, T0);
      for (let n = 0; n < p.length; n++) expect(f.inbound(p.subarray(0, n), T0)).toBe('malformed');
    }
  });

  it('never throws on random bytes or mutated packets, and never grows past its bound', () => {
    const rnd = prng(0xf117e5);
    const f = new PacketFilter([rule({})], { maxFlows: 256 });
    let malformed = 0;
    for (let i = 0; i < 20_000; i++) {
      let p: Uint8Array;
      if (i % 2 === 0) {
        p = new Uint8Array(Math.floor(rnd() * 120));
        for (let j = 0; j < p.length; j++) p[j] = rnd() * 256;
        if (p.length > 0 && i % 4 === 0) p[0] = (rnd() < 0.5 ? 0x40 : 0x60) | (p[0] & 0x0f);
      } else {
        p = samples[i % samples.length].slice();
        for (let k = 1 + Math.floor(rnd() * 4); k > 0; k--) p[Math.floor(rnd() * p.length)] = rnd() * 256;
        if (rnd() < 0.3) p = p.subarray(0, Math.floor(rnd() * p.length));
      }
      const v = f.inbound(p, T0 + i);
      expect(VERDICTS).toContain(v);
      if (v === 'malformed') malformed++;
      f.outbound(p, T0 + i);
    }
    expect(malformed).toBeGreaterThan(1000);
    expect(f.stats().flows).toBeLessThanOrEqual(256);
  });
});

describe('FlowTable', () => {
  it('sweeps idle entries from the cold end and refuses silly sizes', () => {
    const table = new FlowTable({ maxFlows: 16, timeouts: { udp: 10 } });
    const t = new PacketTuple();
    for (let i = 0; i < 10; i++) {
      readPacket(build(udp(ME4, PEER4, 100 + i, 53)), t);
      table.load(t, false);
      table.add(i, false);
    }
    expect(table.size).toBe(10);
    expect(table.sweep(15)).toBe(5); // ports 100..104 were last seen at 0..4
    expect(table.size).toBe(5);
    expect(() => new FlowTable({ maxFlows: 0 })).toThrow(RangeError);
    expect(() => new FlowTable({ maxFlows: 4, maxInboundFlows: 5 })).toThrow(RangeError);
  });
});
