// Cryptokey routing table: explicit cases in the spirit of the kernel's
// selftest/allowedips.c, then the trie against a deliberately naive list.
import { SocketAddress } from 'node:net';
import { describe, expect, it } from 'vitest';
import { AllowedIps, formatCidr, parseCidr } from '../../src/device/allowedips.js';
import { prng } from '../support/prng.js';

const ip = (text: string): Uint8Array => parseCidr(text).addr;

function table(routes: Array<[string, string]>): AllowedIps<string> {
  const t = new AllowedIps<string>();
  for (const [cidr, peer] of routes) {
    const p = parseCidr(cidr);
    t.insert(p.addr, p.cidr, peer);
  }
  return t;
}

function v4Packet(src: string, dst: string): Uint8Array {
  const p = new Uint8Array(28);
  p[0] = 0x45;
  p.set(ip(src), 12);
  p.set(ip(dst), 16);
  return p;
}

function v6Packet(src: string, dst: string): Uint8Array {
  const p = new Uint8Array(48);
  p[0] = 0x60;
  p.set(ip(src), 8);
  p.set(ip(dst), 24);
  return p;
}


/**
 * White-box check of the trie, as the kernel test reads t.root4: parent links
 * agree, each child extends its parent's prefix on the side its bit says, and
 * a node without an owner exists only where two subtrees branch. Returns the
 * number of nodes.
 */
interface ShapeNode {
  key: Uint8Array;
  cidr: number;
  peer: unknown;
  parent: ShapeNode | null;
  children: [ShapeNode | null, ShapeNode | null];
}
function checkShape(t: AllowedIps<{}>): number {
  const roots = t as unknown as { root4: ShapeNode | null; root6: ShapeNode | null };
  let nodes = 0;
  for (const root of [roots.root4, roots.root6]) {
    if (root === null) continue;
    expect(root.parent).toBeNull();
    const stack: ShapeNode[] = [root];
    while (stack.length > 0) {
      const n = stack.pop()!;
      nodes++;
      const kids = n.children.filter((c) => c !== null);
      if (n.peer === undefined) expect(kids).toHaveLength(2);
      n.children.forEach((c, side) => {
        if (c === null) return;
        expect(c.parent).toBe(n);
        expect(c.cidr).toBeGreaterThan(n.cidr);
        expect((c.key[n.cidr >> 3] >> (7 - (n.cidr & 7))) & 1).toBe(side);
        for (let i = 0; i < n.cidr; i++) {
          const bit = (x: Uint8Array) => (x[i >> 3] >> (7 - (i & 7))) & 1;
          if (bit(c.key) !== bit(n.key)) expect.fail(`child /${c.cidr} leaves its parent /${n.cidr} at bit ${i}`);
        }
        stack.push(c);
      });
    }
  }
  return nodes;
}

describe('AllowedIps: explicit cases', () => {
  // The kernel's first table, written out as text.
  const t = table([
    ['192.168.4.0/24', 'a'],
    ['192.168.4.4/32', 'b'],
    ['192.168.0.0/16', 'c'],
    ['192.95.5.64/27', 'd'],
    ['192.95.5.65/27', 'c'], // same prefix once masked: replaces d
    ['2607:5300:6000:6b00::c05f:543/128', 'd'],
    ['2607:5300:6000:6b00::/64', 'c'],
    ['0.0.0.0/0', 'e'],
    ['::/0', 'e'],
    ['::/0', 'f'], // replaces e
    ['2404:6800::/32', 'g'],
    ['2404:6800:4004:800:dead:beef:dead:beef/64', 'h'],
    ['2404:6800:4004:800:dead:beef:dead:beef/128', 'a'],
    ['2444:6800:40e4:800:deae:beef:def:beef/128', 'c'],
    ['2444:6800:f0e4:800:eeae:beef::/98', 'b'],
    ['64.15.112.0/20', 'g'],
    ['64.15.123.211/25', 'h'],
    ['10.0.0.0/25', 'a'],
    ['10.0.0.128/25', 'b'],
    ['10.1.0.0/30', 'a'],
    ['10.1.0.4/30', 'b'],
    ['10.1.0.8/29', 'c'],
    ['10.1.0.16/29', 'd'],
  ]);

  it.each([
    ['192.168.4.20', 'a'],
    ['192.168.4.0', 'a'],
    ['192.168.4.4', 'b'],
    ['192.168.200.182', 'c'],
    ['192.95.5.68', 'c'],
    ['192.95.5.96', 'e'],
    ['2607:5300:6000:6b00::c05f:543', 'd'],
    ['2607:5300:6000:6b00::c02e:1ee', 'c'],
    ['2607:5300:6000:6b01::', 'f'],
    ['2404:6800:4004:806::1006', 'g'],
    ['2404:6800:4004:806:0:1234:0:5678', 'g'],
    ['2404:67ff:4004:806:0:1234:0:5678', 'f'],
    ['2404:6801:4004:806:0:1234:0:5678', 'f'],
    ['2404:6800:4004:800:0:1234:0:5678', 'h'],
    ['2404:6800:4004:800::', 'h'],
    ['2404:6800:4004:800:1010:1010:1010:1010', 'h'],
    ['2404:6800:4004:800:dead:beef:dead:beef', 'a'],
    ['2444:6800:40e4:800:deae:beef:def:beef', 'c'],
    ['2444:6800:f0e4:800:eeae:beef:3fff:ffff', 'b'],
    ['2444:6800:f0e4:800:eeae:beef:4000:0', 'f'],
    ['64.15.116.26', 'g'],
    ['64.15.127.3', 'g'],
    ['64.15.123.1', 'g'],
    ['64.15.123.128', 'h'],
    ['64.15.123.129', 'h'],
    ['10.0.0.52', 'a'],
    ['10.0.0.220', 'b'],
    ['10.1.0.2', 'a'],
    ['10.1.0.6', 'b'],
    ['10.1.0.10', 'c'],
    ['10.1.0.20', 'd'],
    ['10.1.0.24', 'e'],
  ])('%s routes to %s', (addr, peer) => {
    expect(t.lookup(ip(addr))).toBe(peer);
  });

  it('counts each prefix once, after replacements', () => {
    expect(t.size).toBe(21);
    // At most one branch point per prefix beyond the first, per family.
    const nodes = checkShape(t);
    expect(nodes).toBeGreaterThanOrEqual(21);
    expect(nodes).toBeLessThanOrEqual(2 * 21);
  });

  it('routes nothing when empty, and nothing for a family without /0', () => {
    const u = table([['10.0.0.0/8', 'a']]);
    expect(new AllowedIps<string>().lookup(ip('10.0.0.1'))).toBeUndefined();
    expect(u.lookup(ip('11.0.0.1'))).toBeUndefined();
    expect(u.lookup(ip('::a00:1'))).toBeUndefined();
    expect(u.lookup(new Uint8Array(5))).toBeUndefined();
    expect(u.lookup(new Uint8Array(0))).toBeUndefined();
  });

  it('/32 and /128 match only their host; /0 matches everything else', () => {
    const u = table([
      ['0.0.0.0/0', 'all4'],
      ['1.2.3.4/32', 'host4'],
      ['::/0', 'all6'],
      ['fd00::1/128', 'host6'],
    ]);
    expect(u.lookup(ip('1.2.3.4'))).toBe('host4');
    expect(u.lookup(ip('1.2.3.5'))).toBe('all4');
    expect(u.lookup(ip('255.255.255.255'))).toBe('all4');
    expect(u.lookup(ip('fd00::1'))).toBe('host6');
    expect(u.lookup(ip('fd00::'))).toBe('all6');
    expect(u.lookup(ip('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'))).toBe('all6');
  });

  it('keeps the families apart: ::ffff:10.0.0.1 is not 10.0.0.1', () => {
    const u = table([['10.0.0.0/8', 'v4']]);
    expect(u.lookup(ip('::ffff:10.0.0.1'))).toBeUndefined();
    u.insert(ip('::ffff:10.0.0.0'), 104, 'mapped');
    expect(u.lookup(ip('10.0.0.1'))).toBe('v4');
    expect(u.lookup(ip('::ffff:10.0.0.1'))).toBe('mapped');
  });

  it('insert masks host bits and a re-insert moves the prefix to the new peer', () => {
    const u = table([['10.1.2.3/8', 'a']]);
    expect(u.entriesForPeer('a')).toEqual([{ addr: ip('10.0.0.0'), cidr: 8 }]);
    u.insert(ip('10.9.9.9'), 8, 'b');
    expect(u.size).toBe(1);
    expect(u.lookup(ip('10.200.0.1'))).toBe('b');
    expect(u.entriesForPeer('a')).toEqual([]);
    expect(u.entriesForPeer('b')).toEqual([{ addr: ip('10.0.0.0'), cidr: 8 }]);
  });

  it('does not keep a reference to the caller\'s address buffer', () => {
    const u = new AllowedIps<string>();
    const addr = ip('10.0.0.0');
    u.insert(addr, 8, 'a');
    addr[0] = 11;
    expect(u.lookup(ip('10.0.0.1'))).toBe('a');
    expect(u.lookup(ip('11.0.0.1'))).toBeUndefined();
  });

  it('remove takes out only an exact prefix owned by that peer', () => {
    const u = table([
      ['10.0.0.0/8', 'a'],
      ['10.1.0.0/16', 'b'],
      ['10.1.1.0/24', 'a'],
    ]);
    expect(u.remove(ip('10.1.0.0'), 16, 'a')).toBe(false); // owned by b
    expect(u.remove(ip('10.1.0.0'), 17, 'b')).toBe(false); // not a prefix in the table
    expect(u.remove(ip('10.2.0.0'), 16, 'b')).toBe(false);
    expect(u.remove(ip('192.168.0.0'), 16, 'b')).toBe(false);
    expect(u.size).toBe(3);
    expect(u.remove(ip('10.1.255.255'), 16, 'b')).toBe(true); // host bits ignored
    expect(u.remove(ip('10.1.0.0'), 16, 'b')).toBe(false); // already gone
    expect(u.size).toBe(2);
    expect(u.lookup(ip('10.1.2.3'))).toBe('a');
    expect(u.lookup(ip('10.1.1.3'))).toBe('a');
    expect(u.remove(ip('10.0.0.0'), 8, 'a')).toBe(true);
    expect(u.lookup(ip('10.1.2.3'))).toBeUndefined();
    expect(u.lookup(ip('10.1.1.3'))).toBe('a');
    expect(checkShape(u)).toBe(1);
    expect(u.remove(ip('10.1.1.0'), 24, 'a')).toBe(true);
    expect(u.size).toBe(0);
    expect(checkShape(u)).toBe(0);
    expect(u.lookup(ip('10.1.1.3'))).toBeUndefined();
  });

  it('remove of a branch point owner keeps both subtrees routable', () => {
    const u = table([
      ['10.0.0.0/8', 'p'],
      ['10.0.0.0/9', 'lo'],
      ['10.128.0.0/9', 'hi'],
    ]);
    expect(u.remove(ip('10.0.0.0'), 8, 'p')).toBe(true);
    expect(u.lookup(ip('10.1.0.0'))).toBe('lo');
    expect(u.lookup(ip('10.129.0.0'))).toBe('hi');
    u.insert(ip('10.0.0.0'), 8, 'q');
    expect(u.lookup(ip('10.1.0.0'))).toBe('lo');
    expect(u.remove(ip('10.0.0.0'), 9, 'lo')).toBe(true);
    expect(u.lookup(ip('10.1.0.0'))).toBe('q');
  });

  it('removes every prefix of a peer and nothing of others (kernel: remove_by_peer)', () => {
    const u = table([
      ['1.0.0.0/32', 'a'],
      ['64.0.0.0/32', 'a'],
      ['128.0.0.0/32', 'a'],
      ['192.0.0.0/32', 'a'],
      ['255.0.0.0/32', 'a'],
      ['192.0.0.0/8', 'b'],
      ['fd00::/8', 'a'],
    ]);
    expect(u.removeByPeer('a')).toBe(6);
    for (const a of ['1.0.0.0', '64.0.0.0', '128.0.0.0', '255.0.0.0', 'fd00::1']) {
      expect(u.lookup(ip(a))).toBeUndefined();
    }
    expect(u.lookup(ip('192.0.0.0'))).toBe('b');
    expect(u.size).toBe(1);
    expect(u.removeByPeer('a')).toBe(0);
    expect(checkShape(u)).toBe(1);
  });

  it('removes nested prefixes of one peer (kernel: /16 then /24)', () => {
    const u = table([
      ['192.168.0.0/16', 'a'],
      ['192.168.0.0/24', 'a'],
    ]);
    u.removeByPeer('a');
    expect(u.lookup(ip('192.168.0.1'))).toBeUndefined();
    expect(u.size).toBe(0);
    // And the table is usable afterwards.
    u.insert(ip('192.168.0.0'), 24, 'b');
    expect(u.lookup(ip('192.168.0.1'))).toBe('b');
  });

  it('handles 128 host routes that each differ from all-ones in one bit', () => {
    const u = new AllowedIps<number>();
    for (let i = 0; i < 128; i++) {
      const a = new Uint8Array(16).fill(0xff);
      a[i >> 3] ^= 0x80 >> (i & 7);
      u.insert(a, 128, i);
    }
    expect(u.size).toBe(128);
    for (let i = 0; i < 128; i++) {
      const a = new Uint8Array(16).fill(0xff);
      a[i >> 3] ^= 0x80 >> (i & 7);
      expect(u.lookup(a)).toBe(i);
    }
    expect(u.lookup(new Uint8Array(16).fill(0xff))).toBeUndefined();
    checkShape(u);
    for (let i = 0; i < 128; i++) u.removeByPeer(i);
    expect(u.size).toBe(0);
    expect(checkShape(u)).toBe(0);
  });

  it('lists a peer\'s prefixes masked and sorted (kernel: read_node)', () => {
    const u = table([
      ['2607:5300:6d8a:6bf8:dab1:f1df:c05f:1523/21', 'a'],
      ['192.95.5.93/27', 'a'],
      ['2607:5300:6000:6b00::c05f:543/128', 'a'],
      ['10.1.0.20/29', 'a'],
      ['2607:5300:6d8a:6bf8:dab1:f1df:c05f:1523/83', 'a'],
      ['10.1.0.0/16', 'b'],
    ]);
    expect(u.entriesForPeer('a').map((e) => formatCidr(e.addr, e.cidr))).toEqual([
      '10.1.0.16/29',
      '192.95.5.64/27',
      '2607:5000::/21',
      '2607:5300:6000:6b00::c05f:543/128',
      '2607:5300:6d8a:6bf8:dab1:e000::/83',
    ]);
    expect(u.entriesForPeer('nobody')).toEqual([]);
  });

  it('lists a /8 and a /16 on the same address by length', () => {
    const u = table([
      ['10.0.0.0/16', 'a'],
      ['10.0.0.0/8', 'a'],
    ]);
    expect(u.entriesForPeer('a')).toEqual([
      { addr: ip('10.0.0.0'), cidr: 8 },
      { addr: ip('10.0.0.0'), cidr: 16 },
    ]);
  });

  it('clear empties both families', () => {
    const u = table([
      ['0.0.0.0/0', 'a'],
      ['::/0', 'a'],
    ]);
    u.clear();
    expect(u.size).toBe(0);
    expect(checkShape(u)).toBe(0);
    expect(u.lookup(ip('1.1.1.1'))).toBeUndefined();
    expect(u.lookup(ip('::1'))).toBeUndefined();
    expect(u.entriesForPeer('a')).toEqual([]);
  });

  it('refuses bad prefixes and owners on insert', () => {
    const u = new AllowedIps<string>();
    expect(() => u.insert(new Uint8Array(5), 8, 'a')).toThrow(TypeError);
    expect(() => u.insert(new Uint8Array(4), 33, 'a')).toThrow(RangeError);
    expect(() => u.insert(new Uint8Array(16), 129, 'a')).toThrow(RangeError);
    expect(() => u.insert(new Uint8Array(4), -1, 'a')).toThrow(RangeError);
    expect(() => u.insert(new Uint8Array(4), 1.5, 'a')).toThrow(RangeError);
    expect(() => u.insert(new Uint8Array(4), 8, undefined as unknown as string)).toThrow(TypeError);
    expect(u.size).toBe(0);
  });
});

describe('AllowedIps: packet lookups', () => {
  const t = table([
    ['10.0.0.0/8', 'dst4'],
    ['192.168.1.0/24', 'src4'],
    ['fd00::/64', 'dst6'],
    ['fd01::/64', 'src6'],
  ]);

  it('reads IPv4 source and destination from the header', () => {
    const p = v4Packet('192.168.1.7', '10.2.3.4');
    expect(t.lookupPacketDestination(p)).toBe('dst4');
    expect(t.lookupPacketSource(p)).toBe('src4');
    expect(t.lookupPacketDestination(v4Packet('10.2.3.4', '192.168.1.7'))).toBe('src4');
  });

  it('reads IPv6 source and destination from the header', () => {
    const p = v6Packet('fd01::9', 'fd00::1');
    expect(t.lookupPacketDestination(p)).toBe('dst6');
    expect(t.lookupPacketSource(p)).toBe('src6');
  });

  it('reads a packet that is a view into a larger buffer', () => {
    const buf = new Uint8Array(100);
    buf.set(v4Packet('192.168.1.7', '10.2.3.4'), 32);
    const view = buf.subarray(32, 32 + 28);
    expect(t.lookupPacketDestination(view)).toBe('dst4');
    expect(t.lookupPacketSource(view)).toBe('src4');
  });

  it('returns undefined for truncated or non-IP packets', () => {
    const v4 = v4Packet('192.168.1.7', '10.2.3.4');
    const v6 = v6Packet('fd01::9', 'fd00::1');
    expect(t.lookupPacketDestination(v4.subarray(0, 20))).toBe('dst4');
    expect(t.lookupPacketDestination(v4.subarray(0, 19))).toBeUndefined();
    expect(t.lookupPacketDestination(v6.subarray(0, 40))).toBe('dst6');
    expect(t.lookupPacketDestination(v6.subarray(0, 39))).toBeUndefined();
    expect(t.lookupPacketSource(v6.subarray(0, 39))).toBeUndefined();
    expect(t.lookupPacketDestination(new Uint8Array(0))).toBeUndefined();
    for (const version of [0, 5, 7, 15]) {
      const p = v6.slice();
      p[0] = version << 4;
      expect(t.lookupPacketDestination(p)).toBeUndefined();
      expect(t.lookupPacketSource(p)).toBeUndefined();
    }
  });
});

describe('parseCidr and formatCidr', () => {
  it.each([
    ['10.0.0.0/8', [10, 0, 0, 0], 8],
    ['10.1.2.3/8', [10, 1, 2, 3], 8],
    ['192.168.1.1', [192, 168, 1, 1], 32],
    ['0.0.0.0/0', [0, 0, 0, 0], 0],
    ['255.255.255.255/32', [255, 255, 255, 255], 32],
    [' 10.0.0.0/8\n', [10, 0, 0, 0], 8],
  ])('parses %j', (text, bytes, cidr) => {
    expect(parseCidr(text)).toEqual({ addr: new Uint8Array(bytes), cidr });
  });

  it.each([
    ['fd00::/64', 'fd00::', 64],
    ['::/0', '::', 0],
    ['::1', '::1', 128],
    ['FD00:0:0:0:0:0:0:1/128', 'fd00::1', 128],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0', 128],
    ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8', 128],
    ['::ffff:1.2.3.4/96', '::ffff:1.2.3.4', 96],
    ['64:ff9b::192.0.2.1', '64:ff9b::c000:201', 128],
  ])('parses %j', (text, canonical, cidr) => {
    const p = parseCidr(text);
    expect(p.cidr).toBe(cidr);
    expect(p.addr).toHaveLength(16);
    expect(formatCidr(p.addr, p.cidr)).toBe(`${canonical}/${cidr}`);
  });

  it.each([
    ['10.0.0.0/33', /"10\.0\.0\.0\/33".*prefix length 33 exceeds 32/],
    ['fd00::/129', /"fd00::\/129".*prefix length 129 exceeds 128/],
    ['10.0.0.0/', /prefix length ""/],
    ['10.0.0.0/-1', /prefix length "-1"/],
    ['10.0.0.0/8/8', /prefix length "8\/8"/],
    ['10.0.0.0/ 8', /prefix length/],
    ['10.0.0.0/1e1', /prefix length/],
    ['10.0.0/8', /"10\.0\.0" is not an IPv4 or IPv6 address/],
    ['256.0.0.0/8', /"256\.0\.0\.0\/8"/],
    ['01.2.3.4', /"01\.2\.3\.4"/],
    ['1.2.3.4.5', /not an IPv4/],
    ['', /not an IPv4/],
    ['/8', /not an IPv4/],
    ['hello', /"hello"/],
    [':::', /":::"/],
    ['1::2::3', /"1::2::3"/],
    ['fe80::1%eth0', /"fe80::1%eth0".*cannot carry an IPv6 zone/],
    ['1:2:3:4:5:6:7', /not an IPv4/],
    ['1:2:3:4:5:6:7:8:9', /not an IPv4/],
    ['1:2:3:4:5:6:7:8::', /not an IPv4/],
    ['::1:2:3:4:5:6:7:8', /not an IPv4/],
    ['12345::', /not an IPv4/],
    ['g::', /not an IPv4/],
    [':1::', /not an IPv4/],
    ['1.2.3.4::', /not an IPv4/],
    ['::1.2.3.4:5', /not an IPv4/],
    ['::256.0.0.1', /not an IPv4/],
  ])('refuses %j with a TypeError naming it', (text, message) => {
    expect(() => parseCidr(text)).toThrow(TypeError);
    expect(() => parseCidr(text)).toThrow(message);
  });

  it.each([
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // a tie: the first run
    ['2001:db8:0:0:0:1:0:0', '2001:db8::1:0:0'],
    ['2001:db8:1:0:0:0:0:1', '2001:db8:1::1'], // the longer run, not the first
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero stays
    ['0:0:0:0:0:ffff:102:304', '::ffff:1.2.3.4'],
    // IPv4-compatible (deprecated, RFC 4291 §2.5.5.1): hex words, as Go's
    // netip prints it, where inet_ntop would print "::1.2.3.4". Our UAPI must
    // print what wireguard-go prints; only IPv4-mapped addresses are dotted.
    ['0:0:0:0:0:0:102:304', '::102:304'],
    ['::1.2.3.4', '::102:304'],
    ['0:0:0:0:0:0:0:2', '::2'],
    ['0:0:0:0:1:ffff:102:304', '::1:ffff:102:304'],
    ['fe80:0:0:0:abcd:ef01:2345:6789', 'fe80::abcd:ef01:2345:6789'],
  ])('formats %s as %s', (text, expected) => {
    expect(formatCidr(ip(text), 128)).toBe(`${expected}/128`);
  });

  it('formats IPv4 and refuses malformed input', () => {
    expect(formatCidr(ip('10.0.0.1'), 8)).toBe('10.0.0.1/8');
    expect(formatCidr(new Uint8Array(4), 0)).toBe('0.0.0.0/0');
    expect(() => formatCidr(new Uint8Array(4), 33)).toThrow(RangeError);
    expect(() => formatCidr(new Uint8Array(6), 8)).toThrow(TypeError);
  });

  it('formats as inet_ntop does (node:net) but for IPv4-compatible addresses, and parses back, on random addresses', () => {
    const rand = prng(7);
    for (let n = 0; n < 3000; n++) {
      const a = new Uint8Array(16);
      // Mostly zero groups, to exercise run selection.
      for (let g = 0; g < 8; g++) {
        if (rand() < 0.5) continue;
        a[g * 2] = rand() < 0.5 ? 0 : Math.floor(rand() * 256);
        a[g * 2 + 1] = Math.floor(rand() * 256);
      }
      if (n % 10 === 0) a.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff], 0);
      const words: string[] = [];
      for (let g = 0; g < 8; g++) words.push(((a[g * 2] << 8) | a[g * 2 + 1]).toString(16));
      // inet_ntop prints an IPv4-compatible address (::a.b.c.d) dotted; we print it
      // in hex words as Go's netip does, so that our UAPI output is wireguard-go's.
      const v4Compatible = a.subarray(0, 12).every((b) => b === 0) && (a[12] !== 0 || a[13] !== 0);
      const expected = v4Compatible ? `::${words[6]}:${words[7]}` : new SocketAddress({ address: words.join(':'), family: 'ipv6' }).address;
      const cidr = Math.floor(rand() * 129);
      const text = formatCidr(a, cidr);
      expect(text).toBe(`${expected}/${cidr}`);
      expect(parseCidr(text)).toEqual({ addr: a, cidr });
    }
  });
});

describe('AllowedIps against a naive reference', () => {
  interface Route {
    addr: Uint8Array;
    cidr: number;
    peer: number;
  }

  function inPrefix(r: Route, a: Uint8Array): boolean {
    for (let i = 0; i < r.cidr; i++) {
      const bit = (x: Uint8Array) => (x[i >> 3] >> (7 - (i & 7))) & 1;
      if (bit(r.addr) !== bit(a)) return false;
    }
    return true;
  }

  /** A list scanned in full for the longest prefix: slow and obviously right. */
  class Naive {
    routes: Route[] = [];
    insert(addr: Uint8Array, cidr: number, peer: number): void {
      const key = addr.slice();
      for (let i = cidr; i < key.length * 8; i++) key[i >> 3] &= ~(0x80 >> (i & 7));
      const same = this.routes.find((r) => r.cidr === cidr && r.addr.length === key.length && r.addr.every((b, i) => b === key[i]));
      if (same) same.peer = peer;
      else this.routes.push({ addr: key, cidr, peer });
    }
    lookup(a: Uint8Array): number | undefined {
      let best: Route | undefined;
      for (const r of this.routes) {
        if (r.addr.length === a.length && inPrefix(r, a) && (best === undefined || r.cidr > best.cidr)) best = r;
      }
      return best?.peer;
    }
  }

  const PEERS = 8;

  function randomAddr(rand: () => number, len: number): Uint8Array {
    const a = new Uint8Array(len);
    for (let i = 0; i < len; i++) a[i] = Math.floor(rand() * 256);
    return a;
  }

  /** `base` with every bit after the first `keep` replaced at random. */
  function mutate(rand: () => number, base: Uint8Array, keep: number): Uint8Array {
    const a = randomAddr(rand, base.length);
    for (let i = 0; i < keep; i++) {
      const m = 0x80 >> (i & 7);
      a[i >> 3] = (a[i >> 3] & ~m) | (base[i >> 3] & m);
    }
    return a;
  }

  describe.each([
    ['IPv4', 4, 1],
    ['IPv6', 16, 2],
  ])('%s', (_name, len, seed) => {
    it('agrees on lookups through inserts, removals and remove-by-peer', () => {
      const rand = prng(seed);
      const bits = len * 8;
      const t = new AllowedIps<number>();
      const naive = new Naive();

      // Clusters of prefixes around a few bases, as the kernel test builds
      // them, so that they overlap and nest at every depth.
      const bases: Uint8Array[] = [];
      for (let i = 0; i < 60; i++) bases.push(randomAddr(rand, len));
      for (let i = 0; i < 2000; i++) {
        const base = bases[Math.floor(rand() * bases.length)];
        const addr = mutate(rand, base, Math.floor(rand() * bits));
        // Short prefixes are rarer so that they do not cover everything.
        const cidr = rand() < 0.02 ? Math.floor(rand() * 8) : 8 + Math.floor(rand() * (bits - 7));
        const peer = Math.floor(rand() * PEERS);
        t.insert(addr, cidr, peer);
        naive.insert(addr, cidr, peer);
      }
      expect(t.size).toBe(naive.routes.length);

      let compared = 0;
      const agree = (): void => {
        const nodes = checkShape(t);
        expect(nodes).toBeGreaterThanOrEqual(naive.routes.length);
        expect(nodes).toBeLessThan(2 * naive.routes.length + 1);
        for (let i = 0; i < 1500; i++) {
          // Half near a route (likely to hit deep), half near a base, some anywhere.
          let a: Uint8Array;
          const r = naive.routes.length > 0 && rand() < 0.5 ? naive.routes[Math.floor(rand() * naive.routes.length)] : undefined;
          if (r !== undefined) a = mutate(rand, r.addr, r.cidr + Math.floor(rand() * (bits - r.cidr + 1)));
          else if (rand() < 0.8) a = mutate(rand, bases[Math.floor(rand() * bases.length)], Math.floor(rand() * bits));
          else a = randomAddr(rand, len);
          const want = naive.lookup(a);
          const got = t.lookup(a);
          if (got !== want) expect({ addr: [...a], got }).toEqual({ addr: [...a], got: want });
          // The packet path must agree with the address path.
          const packet = new Uint8Array(len === 4 ? 20 : 40);
          packet[0] = len === 4 ? 0x45 : 0x60;
          packet.set(a, len === 4 ? 16 : 24);
          packet.set(a, len === 4 ? 12 : 8);
          if (t.lookupPacketDestination(packet) !== want || t.lookupPacketSource(packet) !== want) {
            expect.fail(`packet lookup disagrees for ${[...a]}`);
          }
          compared++;
        }
      };
      agree();

      // Every peer's listing is exactly its routes in the reference.
      for (let p = 0; p < PEERS; p++) {
        const fmt = (e: { addr: Uint8Array; cidr: number }) => formatCidr(e.addr, e.cidr);
        const want = naive.routes.filter((r) => r.peer === p).map(fmt).sort();
        expect(t.entriesForPeer(p).map(fmt).sort()).toEqual(want);
      }

      // Remove a third of the routes one by one; some with the wrong owner first.
      const victims = naive.routes.filter(() => rand() < 0.33);
      for (const v of victims) {
        const wrong = (v.peer + 1) % PEERS;
        expect(t.remove(v.addr, v.cidr, wrong)).toBe(false);
        expect(t.remove(mutate(rand, v.addr, v.cidr), v.cidr, v.peer)).toBe(true);
        naive.routes.splice(naive.routes.indexOf(v), 1);
      }
      expect(t.size).toBe(naive.routes.length);
      agree();

      // Re-insert some of them, to a different peer.
      for (const v of victims.slice(0, 200)) {
        t.insert(v.addr, v.cidr, (v.peer + 3) % PEERS);
        naive.insert(v.addr, v.cidr, (v.peer + 3) % PEERS);
      }
      agree();

      // Then drop the peers one at a time, as the kernel test does.
      for (let p = 0; p < PEERS; p++) {
        const had = naive.routes.filter((r) => r.peer === p).length;
        expect(t.removeByPeer(p)).toBe(had);
        naive.routes = naive.routes.filter((r) => r.peer !== p);
        expect(t.size).toBe(naive.routes.length);
        agree();
      }
      expect(t.size).toBe(0);
      expect(checkShape(t)).toBe(0);
      expect(compared).toBe(1500 * (3 + PEERS));
    });
  });
});
