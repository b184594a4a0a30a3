// Overlay address and name allocation: order, skips, reuse, limits, and
// agreement with a brute-force model on random inputs.
import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/net/ipaddr.js';
import { ipv6ForIpv4, nameCandidatesPrefix, nextFreeIpv4, OVERLAY_V4, OVERLAY_V6, sanitizeHostname, uniqueName } from '../../src/server/ipam.js';
import { prng as rng } from '../support/prng.js';

const v4 = (n: number): string => `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;

/** The first `count` addresses the allocator may hand out, in order, by brute force. */
function allocatable(count: number, from = 0x64400000): string[] {
  const out: string[] = [];
  for (let n = from + 1; out.length < count; n++) {
    if ((n & 0xff) !== 0 && (n & 0xff) !== 255) out.push(v4(n));
  }
  return out;
}


describe('overlay ranges', () => {
  it('are the CGNAT /10 and the ULA /48', () => {
    expect(OVERLAY_V4).toBe('100.64.0.0/10');
    expect(OVERLAY_V6).toBe('fd7a:115c:a1e0::/48');
  });
});

describe('nextFreeIpv4', () => {
  it('starts at 100.64.0.1 and counts up', () => {
    expect(nextFreeIpv4(new Set())).toBe('100.64.0.1');
    expect(nextFreeIpv4(new Set(['100.64.0.1']))).toBe('100.64.0.2');
    expect(nextFreeIpv4(new Set(['100.64.0.1', '100.64.0.2']))).toBe('100.64.0.3');
  });

  it('fills the lowest gap first (an address freed by a delete is reused)', () => {
    expect(nextFreeIpv4(new Set(['100.64.0.1', '100.64.0.3']))).toBe('100.64.0.2');
    expect(nextFreeIpv4(new Set(['100.64.0.2', '100.64.0.3']))).toBe('100.64.0.1');
  });

  it('skips addresses ending in .255 and .0', () => {
    const first = allocatable(254);
    expect(first[253]).toBe('100.64.0.254');
    expect(nextFreeIpv4(new Set(first))).toBe('100.64.1.1');
    expect(nextFreeIpv4(new Set(allocatable(254 * 3)))).toBe('100.64.3.1');
  });

  it('ignores used entries outside the pool or not IPv4', () => {
    const noise = new Set(['10.0.0.1', '100.63.255.254', '100.128.0.1', 'fd7a:115c:a1e0::6440:1', 'not an address', '100.64.0.0']);
    expect(nextFreeIpv4(noise)).toBe('100.64.0.1');
    // Malformed spellings of 100.64.0.1 are not 100.64.0.1.
    const malformed = ['100.64.0.01', '100.64.0.1.', '.100.64.0.1', '100.64..1', ' 100.64.0.1', '100.64.0.1 ', '100.64.0', '100.64.0.1.1', '100.64.0.+1', '100.64.0.256'];
    expect(nextFreeIpv4(new Set(malformed))).toBe('100.64.0.1');
    expect(nextFreeIpv4(new Set(['100.64.0.1', '100.64.0.10', '100.64.0.2']))).toBe('100.64.0.3');
  });

  it('returns null when the pool is full', () => {
    // A /24 pool: .1 .. .254 (the network address and .255 are never given).
    const pool = '100.64.7.0/24';
    const all = allocatable(254, 0x64400700);
    expect(all.at(-1)).toBe('100.64.7.254');
    expect(nextFreeIpv4(new Set(all.slice(0, 253)), pool)).toBe('100.64.7.254');
    expect(nextFreeIpv4(new Set(all), pool)).toBeNull();
    expect(nextFreeIpv4(new Set(), '100.64.0.5/32')).toBeNull();
    // Across /24s: a /23 has 254 + 254 usable addresses.
    expect(nextFreeIpv4(new Set(allocatable(508)), '100.64.0.0/23')).toBeNull();
    expect(nextFreeIpv4(new Set(allocatable(507)), '100.64.0.0/23')).toBe('100.64.1.254');
  });

  it('refuses a pool that is not an IPv4 prefix', () => {
    expect(() => nextFreeIpv4(new Set(), 'fd00::/64')).toThrow(RangeError);
    expect(() => nextFreeIpv4(new Set(), 'nonsense')).toThrow(RangeError);
  });

  it('handles 100k used addresses in any order quickly', () => {
    const used = allocatable(100_001);
    const expected = used.pop()!;
    // Shuffle, so a sorted input is not what makes it fast.
    const r = rng(1);
    for (let i = used.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [used[i], used[j]] = [used[j], used[i]];
    }
    const set = new Set(used);
    const t0 = performance.now();
    expect(nextFreeIpv4(set)).toBe(expected);
    expect(performance.now() - t0).toBeLessThan(1000);
    set.delete('100.64.100.100');
    expect(nextFreeIpv4(set)).toBe('100.64.100.100');
  });

  it('agrees with a brute-force model on random sets', () => {
    const r = rng(7);
    const space = allocatable(1000);
    for (let round = 0; round < 200; round++) {
      const used = new Set(space.filter(() => r() < 0.9));
      const expected = space.find((a) => !used.has(a)) ?? allocatable(1001)[1000];
      expect(nextFreeIpv4(used)).toBe(expected);
    }
  });
});

describe('ipv6ForIpv4', () => {
  it('puts the IPv4 bits in the last two groups, canonically printed', () => {
    expect(ipv6ForIpv4('100.64.0.1')).toBe('fd7a:115c:a1e0::6440:1');
    expect(ipv6ForIpv4('100.64.1.0')).toBe('fd7a:115c:a1e0::6440:100');
    expect(ipv6ForIpv4('100.127.255.254')).toBe('fd7a:115c:a1e0::647f:fffe');
    expect(ipv6ForIpv4('100.100.100.100')).toBe('fd7a:115c:a1e0::6464:6464');
  });

  it('round-trips: the address parses back to the prefix and the IPv4 bytes', () => {
    for (const a of allocatable(300)) {
      const p = parseIp(ipv6ForIpv4(a))!;
      expect(p.family).toBe(6);
      expect([...p.bytes.slice(0, 6)]).toEqual([0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0]);
      expect([...p.bytes.slice(6, 12)]).toEqual([0, 0, 0, 0, 0, 0]);
      expect(p.bytes.slice(12).join('.')).toBe(a);
    }
  });

  it('refuses what is not an IPv4 address', () => {
    expect(() => ipv6ForIpv4('fd7a::1')).toThrow(RangeError);
    expect(() => ipv6ForIpv4('100.64.0.256')).toThrow(RangeError);
  });
});

describe('sanitizeHostname', () => {
  const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

  it.each([
    ['web', 'web'],
    ['Web', 'web'],
    ['MacBook-Pro', 'macbook-pro'],
    ['my_laptop.local', 'my-laptop-local'],
    ["Jörg's Mac", 'j-rg-s-mac'],
    ['--a--b--', 'a-b'],
    ['a  b', 'a-b'],
    ['', 'node'],
    ['___', 'node'],
    ['ÄÖÜ', 'node'],
    ['-', 'node'],
  ])('%j -> %j', (input, expected) => {
    expect(sanitizeHostname(input)).toBe(expected);
  });

  it('keeps at most 63 characters and never ends in "-" after cutting', () => {
    expect(sanitizeHostname('a'.repeat(100))).toBe('a'.repeat(63));
    expect(sanitizeHostname(`${'a'.repeat(62)}-b`)).toBe('a'.repeat(62));
    expect(sanitizeHostname(`${'a'.repeat(62)}.b`)).toBe('a'.repeat(62));
  });

  it('always yields a DNS label and is idempotent (random input)', () => {
    const r = rng(3);
    const alphabet = 'aZ9-_. é💻\t';
    for (let i = 0; i < 2000; i++) {
      const len = Math.floor(r() * 90);
      let s = '';
      for (let j = 0; j < len; j++) s += alphabet[Math.floor(r() * alphabet.length)];
      const out = sanitizeHostname(s);
      expect(out).toMatch(LABEL);
      expect(out).not.toContain('--');
      expect(sanitizeHostname(out)).toBe(out);
    }
  });
});

describe('uniqueName', () => {
  it('keeps a free name and numbers taken ones from 1', () => {
    expect(uniqueName('web', new Set())).toBe('web');
    expect(uniqueName('web', new Set(['db']))).toBe('web');
    expect(uniqueName('web', new Set(['web']))).toBe('web-1');
    expect(uniqueName('web', new Set(['web', 'web-1']))).toBe('web-2');
    expect(uniqueName('web', new Set(['web', 'web-2']))).toBe('web-1');
  });

  it('finds a free number past a long run', () => {
    const taken = new Set(['web']);
    for (let i = 1; i < 1000; i++) taken.add(`web-${i}`);
    expect(uniqueName('web', taken)).toBe('web-1000');
  });

  it('trims the base so the name stays within 63 characters', () => {
    const long = 'a'.repeat(63);
    expect(uniqueName(long, new Set([long]))).toBe(`${'a'.repeat(61)}-1`);
    const taken = new Set([long]);
    for (let i = 1; i <= 9; i++) taken.add(`${'a'.repeat(61)}-${i}`);
    const tenth = uniqueName(long, taken);
    expect(tenth).toBe(`${'a'.repeat(60)}-10`);
    expect(tenth.length).toBe(63);
  });

  it('only returns names that start with nameCandidatesPrefix(base)', () => {
    const r = rng(11);
    for (let round = 0; round < 300; round++) {
      const base = sanitizeHostname(Array.from({ length: 1 + Math.floor(r() * 70) }, () => 'ab-'[Math.floor(r() * 3)]).join(''));
      const prefix = nameCandidatesPrefix(base);
      const taken = new Set<string>();
      // Take the first few candidates so the answer needs a suffix (sometimes a long one).
      const depth = Math.floor(r() * 120);
      for (let i = 0; i < depth; i++) taken.add(uniqueName(base, taken));
      expect(taken.size).toBe(depth);
      for (const name of [...taken, uniqueName(base, taken)]) {
        expect(name.startsWith(prefix)).toBe(true);
        expect(name.length).toBeLessThanOrEqual(63);
      }
    }
    expect(nameCandidatesPrefix('web')).toBe('web');
    expect(nameCandidatesPrefix('a'.repeat(63))).toBe('a'.repeat(55));
  });

  it('drops a "-" the trimming leaves at the end of the base', () => {
    const base = `${'a'.repeat(60)}-bb`; // 63 chars; cut to 61 it would end in '-'
    expect(uniqueName(base, new Set([base]))).toBe(`${'a'.repeat(60)}-1`);
  });
});
