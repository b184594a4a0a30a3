// Alongside the cookies of §5.3: under load, handshake messages are also
// limited per source address, so one sender cannot keep the responder busy
// with Curve25519 work. A token bucket per address, as the kernel's ratelimiter.c:
// the burst is part of the bucket's size rather than of its rate. IPv6
// senders are grouped by /64, since one host commonly holds a whole /64.

const PACKETS_PER_SECOND = 20;
const PACKETS_BURSTABLE = 5;
const MAX_ENTRIES = 8192;
/** An entry idle this long has refilled completely, so forgetting it loses nothing. */
const IDLE_MS = 1000;

export interface RatelimiterOptions {
  packetsPerSecond?: number;
  burst?: number;
  maxEntries?: number;
}

interface Entry {
  lastTime: number;
  tokens: number;
}

export class Ratelimiter {
  // Tokens are counted in ms x packetsPerSecond, so a packet costs exactly
  // 1000 of them and integer clocks and rates give exact arithmetic.
  private readonly packetsPerSecond: number;
  private readonly tokenMax: number;
  private readonly maxEntries: number;
  // v4 sources by their 32-bit value, v6 /64s by a string: the types keep
  // the two families from ever sharing a key.
  private readonly table = new Map<number | string, Entry>();
  private lastGc = -Infinity;

  constructor(opts: RatelimiterOptions = {}) {
    const { packetsPerSecond = PACKETS_PER_SECOND, burst = PACKETS_BURSTABLE, maxEntries = MAX_ENTRIES } = opts;
    if (!(packetsPerSecond > 0 && Number.isFinite(packetsPerSecond))) {
      throw new RangeError(`packetsPerSecond must be a positive number, got ${packetsPerSecond}`);
    }
    if (!Number.isInteger(burst) || burst < 1) throw new RangeError(`burst must be a positive integer, got ${burst}`);
    if (!Number.isInteger(maxEntries) || maxEntries < 0) {
      throw new RangeError(`maxEntries must be a non-negative integer, got ${maxEntries}`);
    }
    this.packetsPerSecond = packetsPerSecond;
    this.tokenMax = 1000 * burst;
    this.maxEntries = maxEntries;
  }

  /** Addresses (IPv6: /64s) currently tracked. */
  get size(): number {
    return this.table.size;
  }

  /**
   * Whether a handshake from `addr` (4 or 16 bytes) may be processed at
   * `now` (ms); spends a token if so. A new address is refused when the
   * table is full, so a flood of sources cannot grow it without bound.
   */
  allow(addr: Uint8Array, now: number): boolean {
    if (!Number.isFinite(now)) return false;
    // The kernel sweeps once a second from a timer; we sweep from here, so
    // a caller that never calls gc still cannot fill the table for good.
    if (now - this.lastGc >= IDLE_MS) this.gc(now);
    let key: number | string;
    if (addr.length === 4) {
      key = ((addr[0] << 24) | (addr[1] << 16) | (addr[2] << 8) | addr[3]) >>> 0;
    } else if (addr.length === 16) {
      const hi = ((addr[0] << 24) | (addr[1] << 16) | (addr[2] << 8) | addr[3]) >>> 0;
      const lo = ((addr[4] << 24) | (addr[5] << 16) | (addr[6] << 8) | addr[7]) >>> 0;
      key = `${hi}:${lo}`;
    } else {
      return false;
    }

    const entry = this.table.get(key);
    if (entry !== undefined) {
      // A clock that steps back earns nothing rather than a negative refill.
      const elapsed = Math.max(0, now - entry.lastTime);
      const tokens = Math.min(this.tokenMax, entry.tokens + elapsed * this.packetsPerSecond);
      entry.lastTime = Math.max(entry.lastTime, now);
      const ok = tokens >= 1000;
      entry.tokens = ok ? tokens - 1000 : tokens;
      return ok;
    }

    if (this.table.size >= this.maxEntries) return false;
    // The first packet is spent from a full bucket.
    this.table.set(key, { lastTime: now, tokens: this.tokenMax - 1000 });
    return true;
  }

  /** Forgets addresses idle for more than a second (allow also does this once a second). */
  gc(now: number): void {
    this.lastGc = now;
    for (const [key, entry] of this.table) {
      if (now - entry.lastTime > IDLE_MS) this.table.delete(key);
    }
  }
}
