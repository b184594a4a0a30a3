// §5.4.2: every handshake and every session is named on the wire by a
// 32-bit receiver index the receiver chose at random. This table maps those
// indices back to local state. Indices are random rather than sequential so
// they reveal nothing about how many sessions exist, and they are unique so
// a message can never reach the wrong state.
import { randomBytes } from 'node:crypto';

/**
 * How many draws allocate makes before giving up. With any real random
 * source a collision is rare; this bound only stops a broken source (or a
 * table of billions of entries) from spinning forever.
 */
const MAX_ATTEMPTS = 1024;

function cryptoRandom32(): number {
  return randomBytes(4).readUInt32LE(0);
}

export class IndexTable<T> {
  private readonly entries = new Map<number, T>();

  constructor(private readonly random32: () => number = cryptoRandom32) {}

  get size(): number {
    return this.entries.size;
  }

  /**
   * Stores `value` under a fresh random index, never 0 (which reads as
   * "none" in our state) and never one in use.
   */
  allocate(value: T): number {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const index = this.random32() >>> 0;
      if (index === 0 || this.entries.has(index)) continue;
      this.entries.set(index, value);
      return index;
    }
    throw new Error(`index table: no free index after ${MAX_ATTEMPTS} random draws`);
  }

  lookup(index: number): T | undefined {
    return this.entries.get(index);
  }

  /**
   * Hands an index in use to a new value, as when a completed handshake
   * becomes a keypair under the same index. False if the index is not in use.
   */
  replace(index: number, value: T): boolean {
    if (!this.entries.has(index)) return false;
    this.entries.set(index, value);
    return true;
  }

  /** Releases `index` for reuse; false if it was not in use. */
  free(index: number): boolean {
    return this.entries.delete(index);
  }
}
