// The intent of the kernel's nonce counter self-test (selftest/counter.c):
// 34 numbered cases in one sequence, then sweeps across the whole window.
import { describe, expect, it } from 'vitest';
import { ReplayWindow, REPLAY_WINDOW_SIZE } from '../../src/noise/replay.js';
import { COUNTER_BITS_TOTAL, REJECT_AFTER_MESSAGES_JS } from '../../src/wire/constants.js';

const T_LIM = REPLAY_WINDOW_SIZE + 1;

/** Runs [counter, expected] steps in order; returns the numbers (1-based) of the steps that failed. */
function run(w: ReplayWindow, steps: Array<[number, boolean]>): number[] {
  const failed: number[] = [];
  steps.forEach(([n, v], i) => {
    if (w.validate(n) !== v) failed.push(i + 1);
  });
  return failed;
}

describe('ReplayWindow', () => {
  it('has the kernel window of COUNTER_BITS_TOTAL less one word', () => {
    expect(REPLAY_WINDOW_SIZE).toBe(8160);
    expect(COUNTER_BITS_TOTAL).toBe(8192);
    expect(new ReplayWindow().rejectAfterMessages).toBe(REJECT_AFTER_MESSAGES_JS);
  });

  // The default limit, and a small one the window can actually reach.
  describe.each([
    ['default limit', REJECT_AFTER_MESSAGES_JS],
    ['small limit', T_LIM * 4 + 100],
  ])('the 34 numbered cases, %s', (_name, R) => {
    it('passes every case in order', () => {
      const w = new ReplayWindow(R);
      const steps: Array<[number, boolean]> = [
        /*  1 */ [0, true],
        /*  2 */ [1, true],
        /*  3 */ [1, false],
        /*  4 */ [9, true],
        /*  5 */ [8, true],
        /*  6 */ [7, true],
        /*  7 */ [7, false],
        /*  8 */ [T_LIM, true],
        /*  9 */ [T_LIM - 1, true],
        /* 10 */ [T_LIM - 1, false],
        /* 11 */ [T_LIM - 2, true],
        /* 12 */ [2, true],
        /* 13 */ [2, false],
        /* 14 */ [T_LIM + 16, true],
        /* 15 */ [3, false],
        /* 16 */ [T_LIM + 16, false],
        /* 17 */ [T_LIM * 4, true],
        /* 18 */ [T_LIM * 4 - (T_LIM - 1), true],
        /* 19 */ [10, false],
        /* 20 */ [T_LIM * 4 - T_LIM, false],
        /* 21 */ [T_LIM * 4 - (T_LIM + 1), false],
        /* 22 */ [T_LIM * 4 - (T_LIM - 2), true],
        /* 23 */ [T_LIM * 4 + 1 - T_LIM, false],
        /* 24 */ [0, false],
        /* 25 */ [R, false],
        /* 26 */ [R - 1, true],
        /* 27 */ [R, false],
        /* 28 */ [R - 1, false],
        /* 29 */ [R - 2, true],
        /* 30 */ [R + 1, false],
        /* 31 */ [R + 2, false],
        /* 32 */ [R - 2, false],
        /* 33 */ [R - 3, true],
        /* 34 */ [0, false],
      ];
      expect(steps).toHaveLength(34);
      expect(run(w, steps)).toEqual([]);
    });
  });

  describe('sweeps', () => {
    it('ascending 1..W, then 0 is still inside the window once', () => {
      const w = new ReplayWindow();
      for (let i = 1; i <= REPLAY_WINDOW_SIZE; i++) expect(w.validate(i)).toBe(true);
      expect(w.validate(0)).toBe(true);
      expect(w.validate(0)).toBe(false);
    });

    it('ascending 2..W+1, then 1 is inside and 0 has fallen out', () => {
      const w = new ReplayWindow();
      for (let i = 2; i <= REPLAY_WINDOW_SIZE + 1; i++) expect(w.validate(i)).toBe(true);
      expect(w.validate(1)).toBe(true);
      expect(w.validate(0)).toBe(false);
    });

    it('ascending fill, then every counter below it is a replay', () => {
      const w = new ReplayWindow();
      for (let i = 0; i <= REPLAY_WINDOW_SIZE; i++) expect(w.validate(i)).toBe(true);
      let accepted = 0;
      for (let i = 0; i <= REPLAY_WINDOW_SIZE; i++) if (w.validate(i)) accepted++;
      expect(accepted).toBe(0);
    });

    it('descending W..0 is all accepted', () => {
      const w = new ReplayWindow();
      for (let i = REPLAY_WINDOW_SIZE; i >= 0; i--) expect(w.validate(i)).toBe(true);
    });

    it('descending W+1..1 is all accepted, then 0 is outside', () => {
      const w = new ReplayWindow();
      for (let i = REPLAY_WINDOW_SIZE + 1; i >= 1; i--) expect(w.validate(i)).toBe(true);
      expect(w.validate(0)).toBe(false);
    });

    it('descending W..1, then W+1 advances and 0 falls out', () => {
      const w = new ReplayWindow();
      for (let i = REPLAY_WINDOW_SIZE; i >= 1; i--) expect(w.validate(i)).toBe(true);
      expect(w.validate(REPLAY_WINDOW_SIZE + 1)).toBe(true);
      expect(w.validate(0)).toBe(false);
    });

    it('descending W..1, then 0 and W+1 are both accepted', () => {
      const w = new ReplayWindow();
      for (let i = REPLAY_WINDOW_SIZE; i >= 1; i--) expect(w.validate(i)).toBe(true);
      expect(w.validate(0)).toBe(true);
      expect(w.validate(REPLAY_WINDOW_SIZE + 1)).toBe(true);
    });
  });

  describe('beyond the kernel cases', () => {
    it('clears the ring slots it reuses when the window jumps ahead', () => {
      const w = new ReplayWindow();
      for (let i = 0; i <= 100; i++) expect(w.validate(i)).toBe(true);
      // Each of these lands on the same ring bit as a counter seen above.
      const jump = COUNTER_BITS_TOTAL * 3;
      expect(w.validate(100 + jump)).toBe(true);
      for (let i = 99; i >= 100 - 64; i--) expect(w.validate(i + jump)).toBe(true);
      expect(w.validate(50)).toBe(false);
    });

    it('clears only what a jump skips: a jump of one word keeps the rest', () => {
      const w = new ReplayWindow();
      for (let i = 0; i < 200; i++) w.validate(i);
      expect(w.validate(231)).toBe(true);
      for (let i = 0; i < 200; i++) expect(w.validate(i)).toBe(false);
      for (let i = 200; i < 231; i++) expect(w.validate(i)).toBe(true);
    });

    it('accepts exactly the window behind the newest counter', () => {
      const w = new ReplayWindow();
      const top = 100_000;
      expect(w.validate(top)).toBe(true);
      expect(w.validate(top - REPLAY_WINDOW_SIZE)).toBe(true);
      expect(w.validate(top - REPLAY_WINDOW_SIZE - 1)).toBe(false);
    });

    it('rejects what is not a counter, without throwing', () => {
      const w = new ReplayWindow();
      for (const bad of [-1, -0.5, 0.5, 1.5, NaN, Infinity, -Infinity, 2 ** 53, Number.MAX_VALUE]) {
        expect(w.validate(bad)).toBe(false);
      }
      // None of them moved the window or marked a bit.
      expect(w.validate(0)).toBe(true);
      expect(w.validate(1)).toBe(true);
    });

    it('accepts nothing with a limit of 0, and only 0 with a limit of 1', () => {
      const none = new ReplayWindow(0);
      expect(none.validate(0)).toBe(false);
      const one = new ReplayWindow(1);
      expect(one.validate(1)).toBe(false);
      expect(one.validate(0)).toBe(true);
      expect(one.validate(0)).toBe(false);
    });

    it('refuses a limit where counters would lose precision', () => {
      expect(() => new ReplayWindow(Number.MAX_SAFE_INTEGER)).toThrow(RangeError);
      expect(() => new ReplayWindow(-1)).toThrow(RangeError);
      expect(() => new ReplayWindow(1.5)).toThrow(RangeError);
    });

    it('reset forgets every counter and the window position', () => {
      const w = new ReplayWindow();
      expect(w.validate(5)).toBe(true);
      expect(w.validate(T_LIM * 10)).toBe(true);
      expect(w.validate(5)).toBe(false);
      w.reset();
      expect(w.validate(5)).toBe(true);
      expect(w.validate(T_LIM * 10)).toBe(true);
    });
  });
});
