// §5.4.6: the receiver's anti-replay window over transport counters. This is
// the sliding bitmap of RFC 6479 as the kernel's counter_validate uses it: a
// ring of words that is cleared a word at a time as the window advances, so
// no bit is ever shifted.
import { COUNTER_BITS_TOTAL, REJECT_AFTER_MESSAGES_JS } from '../wire/constants.js';

const BITS_PER_WORD = 32;
const WORDS = COUNTER_BITS_TOTAL / BITS_PER_WORD;

/**
 * How far behind the newest counter a packet may arrive and still be
 * accepted. One word of the ring is always the one being filled, so it is
 * not part of the guaranteed window (kernel: COUNTER_WINDOW_SIZE).
 */
export const REPLAY_WINDOW_SIZE = COUNTER_BITS_TOTAL - BITS_PER_WORD;

export class ReplayWindow {
  readonly rejectAfterMessages: number;
  // The ring; bit (n mod COUNTER_BITS_TOTAL) stands for counter n - 1.
  private readonly backtrack = new Uint32Array(WORDS);
  // One more than the greatest counter accepted; 0 before any. Storing it
  // plus one lets counter 0 be told apart from the empty state.
  private counter = 0;

  constructor(rejectAfterMessages: number = REJECT_AFTER_MESSAGES_JS) {
    // Above this, counter + 1 + REPLAY_WINDOW_SIZE would no longer be exact.
    if (!Number.isInteger(rejectAfterMessages) || rejectAfterMessages < 0 || rejectAfterMessages > REJECT_AFTER_MESSAGES_JS) {
      throw new RangeError(`rejectAfterMessages must be an integer in [0, ${REJECT_AFTER_MESSAGES_JS}], got ${rejectAfterMessages}`);
    }
    this.rejectAfterMessages = rejectAfterMessages;
  }

  /**
   * Accepts `theirCounter` once: true if it is new, inside the window and
   * below the reject limit, and records it; false otherwise. Call only after
   * the packet has authenticated, or a forger could advance the window.
   */
  validate(theirCounter: number): boolean {
    // Also rejects NaN, fractions and anything past 2^53.
    if (!(theirCounter >= 0 && theirCounter < this.rejectAfterMessages) || !Number.isInteger(theirCounter)) return false;
    const n = theirCounter + 1;
    if (n + REPLAY_WINDOW_SIZE < this.counter) return false;

    // Counters reach 2^53, past the reach of 32-bit shifts: divide instead.
    const index = Math.floor(n / BITS_PER_WORD);
    if (n > this.counter) {
      const indexCurrent = Math.floor(this.counter / BITS_PER_WORD);
      // Words between the old top and the new one hold counters now too old
      // to matter; a jump of more than the ring clears it all, and no more.
      const top = Math.min(index - indexCurrent, WORDS);
      for (let i = 1; i <= top; i++) this.backtrack[(indexCurrent + i) % WORDS] = 0;
      this.counter = n;
    }

    const word = index % WORDS;
    const mask = 1 << (n % BITS_PER_WORD);
    if ((this.backtrack[word] & mask) !== 0) return false;
    this.backtrack[word] |= mask;
    return true;
  }

  reset(): void {
    this.backtrack.fill(0);
    this.counter = 0;
  }
}
