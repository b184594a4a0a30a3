// Handshake rate limiting per source, on a fake clock passed in as `now`.
import { describe, expect, it } from 'vitest';
import { Ratelimiter } from '../../src/device/ratelimiter.js';

const v4 = (a: number, b: number, c: number, d: number) => new Uint8Array([a, b, c, d]);
function v6(...words: number[]): Uint8Array {
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[i * 2] = w >> 8;
    out[i * 2 + 1] = w & 0xff;
  });
  return out;
}

/** How many of `n` packets sent at `now` are allowed. */
function burst(r: Ratelimiter, addr: Uint8Array, now: number, n: number): number {
  let ok = 0;
  for (let i = 0; i < n; i++) if (r.allow(addr, now)) ok++;
  return ok;
}

describe('Ratelimiter', () => {
  it('allows a burst of 5, then refuses', () => {
    const r = new Ratelimiter();
    const a = v4(192, 0, 2, 1);
    const seen: boolean[] = [];
    for (let i = 0; i < 7; i++) seen.push(r.allow(a, 1000));
    expect(seen).toEqual([true, true, true, true, true, false, false]);
  });

  it('refills one packet per 50 ms at 20 per second', () => {
    const r = new Ratelimiter();
    const a = v4(192, 0, 2, 1);
    expect(burst(r, a, 0, 5)).toBe(5);
    expect(r.allow(a, 49)).toBe(false);
    expect(r.allow(a, 50)).toBe(true);
    expect(r.allow(a, 50)).toBe(false);
    // Refused attempts cost nothing: the refill keeps counting from 50.
    expect(r.allow(a, 99)).toBe(false);
    expect(r.allow(a, 100)).toBe(true);
    // 1 s later the bucket is full again, but holds no more than the burst.
    expect(burst(r, a, 1100, 10)).toBe(5);
  });

  it('sustains 20 per second and no more over a long run', () => {
    const r = new Ratelimiter();
    const a = v4(198, 51, 100, 7);
    let ok = 0;
    // One attempt per 10 ms for 10 s: 5 from the burst plus 20/s.
    for (let t = 0; t < 10_000; t += 10) if (r.allow(a, t)) ok++;
    expect(ok).toBeGreaterThanOrEqual(5 + 20 * 10 - 1);
    expect(ok).toBeLessThanOrEqual(5 + 20 * 10);
  });

  it('keeps addresses independent', () => {
    const r = new Ratelimiter();
    const a = v4(10, 0, 0, 1);
    const b = v4(10, 0, 0, 2);
    expect(burst(r, a, 0, 5)).toBe(5);
    expect(r.allow(a, 0)).toBe(false);
    expect(burst(r, b, 0, 6)).toBe(5);
    expect(r.size).toBe(2);
  });

  it('keeps an IPv4 address apart from the IPv6 /64 with the same leading bytes', () => {
    const r = new Ratelimiter();
    const a = v4(10, 0, 0, 1);
    const b = new Uint8Array(16);
    b.set(a);
    expect(burst(r, a, 0, 5)).toBe(5);
    expect(r.allow(b, 0)).toBe(true);
    expect(r.size).toBe(2);
  });

  it('groups IPv6 sources by /64', () => {
    const r = new Ratelimiter();
    expect(burst(r, v6(0x2001, 0xdb8, 1, 2, 0, 0, 0, 1), 0, 3)).toBe(3);
    expect(burst(r, v6(0x2001, 0xdb8, 1, 2, 0xffff, 0xffff, 0xffff, 0xffff), 0, 5)).toBe(2);
    expect(r.size).toBe(1);
    // A neighbouring /64 has its own bucket.
    expect(burst(r, v6(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1), 0, 5)).toBe(5);
    expect(r.size).toBe(2);
  });

  it('takes the packet rate and burst from its options', () => {
    const r = new Ratelimiter({ packetsPerSecond: 2, burst: 1 });
    const a = v4(10, 0, 0, 1);
    expect(burst(r, a, 0, 3)).toBe(1);
    expect(r.allow(a, 499)).toBe(false);
    expect(r.allow(a, 500)).toBe(true);
  });

  it('refuses new addresses when the table is full, but serves those it has', () => {
    const r = new Ratelimiter({ maxEntries: 3 });
    expect(r.allow(v4(10, 0, 0, 1), 0)).toBe(true);
    expect(r.allow(v4(10, 0, 0, 2), 0)).toBe(true);
    expect(r.allow(v6(0xfd00, 0, 0, 0, 0, 0, 0, 1), 0)).toBe(true);
    expect(r.size).toBe(3);
    expect(r.allow(v4(10, 0, 0, 4), 0)).toBe(false);
    expect(r.allow(v6(0xfd00, 0, 0, 1, 0, 0, 0, 1), 500)).toBe(false);
    expect(r.size).toBe(3);
    expect(r.allow(v4(10, 0, 0, 1), 500)).toBe(true);
  });

  it('holds at most maxEntries under a flood of distinct sources', () => {
    const r = new Ratelimiter();
    let allowed = 0;
    for (let i = 0; i < 10_000; i++) if (r.allow(v4(10, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff), 0)) allowed++;
    expect(allowed).toBe(8192);
    expect(r.size).toBe(8192);
  });

  it('gc forgets addresses idle for more than a second, and only those', () => {
    const r = new Ratelimiter();
    const idle = v4(10, 0, 0, 1);
    const busy = v4(10, 0, 0, 2);
    expect(burst(r, idle, 0, 5)).toBe(5);
    r.allow(busy, 0);
    r.allow(busy, 600);
    r.gc(1000); // idle for exactly 1 s: kept
    expect(r.size).toBe(2);
    r.gc(1001);
    expect(r.size).toBe(1);
    r.gc(1600);
    expect(r.size).toBe(1);
    r.gc(1601);
    expect(r.size).toBe(0);
    // A forgotten address starts over with a full bucket.
    expect(burst(r, idle, 1601, 6)).toBe(5);
  });

  it('collects on its own from allow once a second, so a full table recovers', () => {
    const r = new Ratelimiter({ maxEntries: 2 });
    expect(r.allow(v4(10, 0, 0, 1), 0)).toBe(true);
    expect(r.allow(v4(10, 0, 0, 2), 0)).toBe(true);
    expect(r.allow(v4(10, 0, 0, 3), 500)).toBe(false);
    // Both are idle more than 1 s, and a sweep is due.
    expect(r.allow(v4(10, 0, 0, 3), 1001)).toBe(true);
    expect(r.size).toBe(1);
  });

  it('gains nothing from a clock that steps back', () => {
    const r = new Ratelimiter();
    const a = v4(10, 0, 0, 1);
    expect(burst(r, a, 10_000, 5)).toBe(5);
    expect(r.allow(a, 0)).toBe(false);
    expect(r.allow(a, 10_049)).toBe(false);
    expect(r.allow(a, 10_050)).toBe(true);
  });

  it('refuses what is not an address or a time', () => {
    const r = new Ratelimiter();
    expect(r.allow(new Uint8Array(5), 0)).toBe(false);
    expect(r.allow(new Uint8Array(0), 0)).toBe(false);
    expect(r.allow(v4(10, 0, 0, 1), NaN)).toBe(false);
    expect(r.size).toBe(0);
  });

  it('refuses nonsensical options', () => {
    expect(() => new Ratelimiter({ packetsPerSecond: 0 })).toThrow(RangeError);
    expect(() => new Ratelimiter({ burst: 0 })).toThrow(RangeError);
    expect(() => new Ratelimiter({ burst: 1.5 })).toThrow(RangeError);
    expect(() => new Ratelimiter({ maxEntries: -1 })).toThrow(RangeError);
  });
});
