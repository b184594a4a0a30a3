// Replay protection for control requests (envelope.ts). A request is fresh
// when its timestamp is within WINDOW of the server's clock, not older than
// the moment this server process started (so a restart, which forgets the
// cache, cannot be used to replay what it forgot), and its ephemeral key has
// not been seen inside the window. The table is bounded: when it is full of
// live entries new requests are refused as busy rather than let it grow.
// Pure: time is passed in.

export const FRESHNESS_WINDOW_MS = 60_000;
export const MAX_TRACKED_REQUESTS = 100_000;

export type Freshness = 'fresh' | 'stale' | 'future' | 'replayed' | 'busy';

export class FreshnessGuard {
  /** ephemeral key (hex) -> expiry, in insertion (and so expiry) order. */
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly notBefore: number,
    private readonly windowMs = FRESHNESS_WINDOW_MS,
    private readonly max = MAX_TRACKED_REQUESTS,
  ) {}

  get size(): number {
    return this.seen.size;
  }

  /** The timestamp alone: 'fresh' when inside the window. Remembers nothing. */
  timely(timestamp: number, now: number): Freshness {
    if (timestamp > now + this.windowMs) return 'future';
    if (timestamp < now - this.windowMs || timestamp < this.notBefore) return 'stale';
    return 'fresh';
  }

  /**
   * The full check, remembering the request. Callers admit a request only
   * once it is authorized (a registered node, a valid auth key), so nobody
   * can fill the table with requests from throwaway keys.
   */
  check(ephemeralKey: Uint8Array, timestamp: number, now: number): Freshness {
    const t = this.timely(timestamp, now);
    if (t !== 'fresh') return t;
    this.expire(now);
    const id = Buffer.from(ephemeralKey).toString('hex');
    if (this.seen.has(id)) return 'replayed';
    if (this.seen.size >= this.max) return 'busy';
    // Kept until its timestamp leaves the window, after which the stale check refuses it.
    this.seen.set(id, Math.max(timestamp + this.windowMs, now));
    return 'fresh';
  }

  private expire(now: number): void {
    // Expiries are not strictly ordered (timestamps vary within the window),
    // so stop at the first live one; a few late entries only delay reuse of memory.
    for (const [id, until] of this.seen) {
      if (until >= now) break;
      this.seen.delete(id);
    }
  }
}
