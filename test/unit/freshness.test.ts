// The control channel's replay guard (src/control/freshness.ts): the time
// window, the process's notBefore, one acceptance per ephemeral key, expiry
// that gives memory back, and the bound on what it tracks.
import { describe, expect, it } from 'vitest';
import { FRESHNESS_WINDOW_MS, FreshnessGuard, MAX_TRACKED_REQUESTS } from '../../src/control/freshness.js';
import { prng } from '../support/prng.js';

const W = 60_000;
const START = 1_750_000_000_000;

/** A distinct 32-byte ephemeral key per number. */
function eph(n: number): Uint8Array {
  const k = new Uint8Array(32);
  new DataView(k.buffer).setUint32(0, n);
  k[31] = 0x5a;
  return k;
}


describe('FreshnessGuard', () => {
  it('has the documented defaults', () => {
    expect(FRESHNESS_WINDOW_MS).toBe(60_000);
    expect(MAX_TRACKED_REQUESTS).toBe(100_000);
    const g = new FreshnessGuard(START);
    expect(g.check(eph(1), START + W, START)).toBe('fresh');
    expect(g.check(eph(2), START + W + 1, START)).toBe('future');
  });

  it('timely() judges the timestamp alone and remembers nothing', () => {
    const g = new FreshnessGuard(START, W);
    expect(g.timely(START + 5, START + 10)).toBe('fresh');
    expect(g.timely(START + 5, START + 10)).toBe('fresh');
    expect(g.size).toBe(0);
    expect(g.timely(START - 1, START)).toBe('stale');
    expect(g.timely(START + 10 + W + 1, START + 10)).toBe('future');
    expect(g.timely(START + 10, START + 10 + W + 1)).toBe('stale');
  });

  it('accepts a request once and refuses its replay', () => {
    const g = new FreshnessGuard(START, W);
    expect(g.size).toBe(0);
    expect(g.check(eph(1), START + 5, START + 10)).toBe('fresh');
    expect(g.size).toBe(1);
    expect(g.check(eph(1), START + 5, START + 10)).toBe('replayed');
    expect(g.check(eph(1), START + 5, START + 30_000)).toBe('replayed');
    // The ephemeral is what is tracked: another timestamp does not make it new.
    expect(g.check(eph(1), START + 20_000, START + 20_000)).toBe('replayed');
    // Another ephemeral at the same time is a new request.
    expect(g.check(eph(2), START + 5, START + 10)).toBe('fresh');
    expect(g.size).toBe(2);
    // Refusals do not add entries.
    expect(g.check(eph(2), START + 5, START + 11)).toBe('replayed');
    expect(g.size).toBe(2);
  });

  it('refuses stale, future and pre-start timestamps, and does not track them', () => {
    const now = START + 10 * W;
    const g = new FreshnessGuard(START, W);
    expect(g.check(eph(1), now - W - 1, now)).toBe('stale');
    expect(g.check(eph(2), now - 10 * W, now)).toBe('stale');
    expect(g.check(eph(3), 0, now)).toBe('stale');
    expect(g.check(eph(4), now + W + 1, now)).toBe('future');
    expect(g.check(eph(5), Number.MAX_SAFE_INTEGER, now)).toBe('future');
    expect(g.size).toBe(0);
    // Refused ones were not remembered: the same keys with good times are fresh.
    expect(g.check(eph(1), now, now)).toBe('fresh');
    expect(g.check(eph(4), now, now)).toBe('fresh');

    // notBefore: inside the window but from before this process started is stale.
    const h = new FreshnessGuard(START, W);
    expect(h.check(eph(1), START - 1, START + 100)).toBe('stale');
    expect(h.check(eph(2), START - W / 2, START)).toBe('stale');
    expect(h.check(eph(3), START, START + 100)).toBe('fresh');
    expect(h.size).toBe(1);
  });

  it('takes exactly the window on either side of now', () => {
    const now = START + 10 * W;
    const g = new FreshnessGuard(START, W);
    expect(g.check(eph(1), now - W, now)).toBe('fresh');
    expect(g.check(eph(2), now + W, now)).toBe('fresh');
    expect(g.check(eph(3), now - W - 1, now)).toBe('stale');
    expect(g.check(eph(4), now + W + 1, now)).toBe('future');
    expect(g.check(eph(5), now, now)).toBe('fresh');
    // A small window behaves the same.
    const s = new FreshnessGuard(0, 10);
    expect(s.check(eph(1), 90, 100)).toBe('fresh');
    expect(s.check(eph(2), 89, 100)).toBe('stale');
    expect(s.check(eph(3), 110, 100)).toBe('fresh');
    expect(s.check(eph(4), 111, 100)).toBe('future');
  });

  it('keeps an entry while its timestamp is in the window, then expires it and still refuses its replay', () => {
    const g = new FreshnessGuard(START, W);
    const t = START + 1000;
    expect(g.check(eph(1), t, t)).toBe('fresh');
    // Still tracked at the last moment the timestamp is in the window.
    expect(g.check(eph(1), t, t + W)).toBe('replayed');
    // One millisecond later the entry may go, and the replay is stale instead.
    expect(g.check(eph(1), t, t + W + 1)).toBe('stale');
    expect(g.check(eph(2), t + W + 1, t + W + 1)).toBe('fresh');
    expect(g.size).toBe(1);
    expect(g.check(eph(1), t, t + 10 * W)).toBe('stale');
  });

  it('reclaims memory as entries expire', () => {
    const g = new FreshnessGuard(START, W);
    for (let i = 0; i < 1000; i++) expect(g.check(eph(i), START + i, START + i)).toBe('fresh');
    expect(g.size).toBe(1000);
    // Half of them have left the window at START + 499 + W + 1.
    const half = START + 499 + W + 1;
    expect(g.check(eph(5000), half, half)).toBe('fresh');
    expect(g.size).toBe(501);
    for (let i = 0; i < 500; i++) expect(g.check(eph(i), START + i, half)).toBe('stale');
    for (let i = 500; i < 1000; i++) expect(g.check(eph(i), START + i, half)).toBe('replayed');
    const later = START + 2000 + 2 * W;
    expect(g.check(eph(6000), later, later)).toBe('fresh');
    expect(g.size).toBe(1);
  });

  it('is bounded: the request past the limit is busy until older ones expire', () => {
    const N = 5;
    const g = new FreshnessGuard(START, W, N);
    const t = START + 100;
    for (let i = 0; i < N; i++) expect(g.check(eph(i), t + i, t + i)).toBe('fresh');
    expect(g.size).toBe(N);
    expect(g.check(eph(N), t + N, t + N)).toBe('busy');
    expect(g.size).toBe(N);
    // Busy is not remembered as seen, and replays are still told apart from it.
    expect(g.check(eph(0), t, t + N)).toBe('replayed');
    expect(g.check(eph(N), t + N, t + N + 1)).toBe('busy');
    // When the oldest has expired there is room for exactly one more.
    const t1 = t + W + 1;
    expect(g.check(eph(N), t1, t1)).toBe('fresh');
    expect(g.check(eph(N + 1), t1, t1)).toBe('busy');
    expect(g.size).toBe(N);
    // When all have expired there is room for N again.
    const t2 = t1 + W + 1;
    for (let i = 0; i < N; i++) expect(g.check(eph(100 + i), t2, t2)).toBe('fresh');
    expect(g.check(eph(200), t2, t2)).toBe('busy');
  });

  it('still refuses a replay whose entry outlived its window behind a longer-lived one, and reclaims both', () => {
    const g = new FreshnessGuard(START, W);
    const t = START + 10 * W;
    // A request stamped at the future edge first (kept to t + 2W), then one at the past edge (kept to t).
    expect(g.check(eph(1), t + W, t)).toBe('fresh');
    expect(g.check(eph(2), t - W, t)).toBe('fresh');
    expect(g.check(eph(2), t - W, t)).toBe('replayed');
    // Past its window the second is refused as stale, tracked or not.
    expect(g.check(eph(2), t - W, t + 1)).toBe('stale');
    expect(g.check(eph(1), t + W, t + 1)).toBe('replayed');
    expect(g.check(eph(1), t + W, t + 2 * W)).toBe('replayed');
    expect(g.check(eph(1), t + W, t + 2 * W + 1)).toBe('stale');
    // Once the first has expired too, the table is down to the newcomer.
    expect(g.check(eph(3), t + 2 * W + 1, t + 2 * W + 1)).toBe('fresh');
    expect(g.size).toBe(1);
  });

  it('never accepts the same captured request twice (randomised)', () => {
    const rnd = prng(0xf5e5);
    const w = 1000;
    const g = new FreshnessGuard(0, w, 64);
    const captured: Array<{ key: Uint8Array; ts: number }> = [];
    const accepted = new Set<string>();
    let now = 10_000;
    let next = 0;
    let fresh = 0;
    for (let step = 0; step < 5000; step++) {
      now += Math.floor(rnd() * 40);
      let req: { key: Uint8Array; ts: number };
      if (captured.length && rnd() < 0.4) {
        req = captured[Math.floor(rnd() * captured.length)];
      } else {
        // Node clocks are off by up to a bit more than the window, either way.
        req = { key: eph(next++), ts: now + Math.floor((rnd() * 2 - 1) * w * 1.2) };
        captured.push(req);
        if (captured.length > 500) captured.shift();
      }
      const r = g.check(req.key, req.ts, now);
      const id = `${Buffer.from(req.key).toString('hex')}@${req.ts}`;
      if (r === 'fresh') {
        expect(accepted.has(id), `accepted twice at step ${step}`).toBe(false);
        accepted.add(id);
        fresh++;
      }
      // The verdict agrees with the time checks.
      if (req.ts > now + w) expect(r).toBe('future');
      else if (req.ts < now - w) expect(r).toBe('stale');
      else expect(['fresh', 'replayed', 'busy']).toContain(r);
      expect(g.size).toBeLessThanOrEqual(64);
    }
    // The run exercised acceptance, not only refusals.
    expect(fresh).toBeGreaterThan(1000);
  });
});
