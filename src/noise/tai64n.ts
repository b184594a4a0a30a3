// TAI64N timestamps (paper §5.1, cr.yp.to/libtai/tai64.html): 8 bytes of
// big-endian seconds offset by 2^62 (+10 s, the TAI-UTC offset WireGuard's
// implementations use) and 4 bytes of big-endian nanoseconds. Responders
// reject an initiation whose timestamp is not greater than the last one they
// accepted from that peer, which stops replay of captured initiations.
import { TIMESTAMP_LEN } from '../wire/constants.js';

const TAI64_BASE = 2n ** 62n + 10n;
/**
 * Nanoseconds are rounded down to a multiple of 2^24 ns (~16.8 ms), as the
 * kernel does, so the timestamp does not leak a precise clock reading.
 */
const WHITENER_MASK = 0x1_000000 - 1;

/** TAI64N of `unixMs` (wall-clock milliseconds since the epoch) plus extra nanoseconds. */
export function tai64n(unixMs: number, extraNanos = 0): Buffer {
  const out = Buffer.alloc(TIMESTAMP_LEN);
  const secs = Math.floor(unixMs / 1000);
  const nanos = Math.floor((unixMs - secs * 1000) * 1e6) + extraNanos;
  out.writeBigUInt64BE(TAI64_BASE + BigInt(secs), 0);
  out.writeUInt32BE((nanos & ~WHITENER_MASK) >>> 0, 8);
  return out;
}

/** True when `a` is strictly after `b` (both 12-byte TAI64N values); a byte-wise big-endian compare. */
export function isAfter(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < TIMESTAMP_LEN; i++) {
    if (a[i] !== b[i]) return a[i] > b[i];
  }
  return false;
}
