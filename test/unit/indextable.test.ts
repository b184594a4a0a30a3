// Receiver indices: random, non-zero, never two alike.
import { describe, expect, it } from 'vitest';
import { IndexTable } from '../../src/device/indextable.js';

/** A random source that plays back `values`, then fails the test if asked again. */
function scripted(values: number[]): { next: () => number; drawn: () => number } {
  let i = 0;
  return {
    next: () => {
      if (i >= values.length) throw new Error('scripted random source exhausted');
      return values[i++];
    },
    drawn: () => i,
  };
}

describe('IndexTable', () => {
  it('retries a drawn index that is in use', () => {
    const src = scripted([7, 7, 7, 9]);
    const t = new IndexTable<string>(src.next);
    expect(t.allocate('a')).toBe(7);
    expect(t.allocate('b')).toBe(9);
    expect(src.drawn()).toBe(4);
    expect(t.lookup(7)).toBe('a');
    expect(t.lookup(9)).toBe('b');
    expect(t.size).toBe(2);
  });

  it('never hands out 0', () => {
    const src = scripted([0, 0, 5]);
    const t = new IndexTable<string>(src.next);
    expect(t.allocate('a')).toBe(5);
    expect(t.lookup(0)).toBeUndefined();
  });

  it('reads the source as an unsigned 32-bit value', () => {
    const t = new IndexTable<string>(scripted([-1, 2 ** 32 + 3]).next);
    expect(t.allocate('a')).toBe(0xffffffff);
    expect(t.allocate('b')).toBe(3);
    expect(t.lookup(0xffffffff)).toBe('a');
  });

  it('reuses an index only after it is freed', () => {
    const src = scripted([42, 42, 43, 42]);
    const t = new IndexTable<string>(src.next);
    expect(t.allocate('a')).toBe(42);
    expect(t.allocate('b')).toBe(43);
    expect(t.free(42)).toBe(true);
    expect(t.lookup(42)).toBeUndefined();
    expect(t.free(42)).toBe(false);
    expect(t.size).toBe(1);
    expect(t.allocate('c')).toBe(42);
    expect(t.lookup(42)).toBe('c');
  });

  it('replaces the value under an index in use, and only then', () => {
    const t = new IndexTable<string>(scripted([11]).next);
    const i = t.allocate('handshake');
    expect(t.replace(i, 'keypair')).toBe(true);
    expect(t.lookup(i)).toBe('keypair');
    expect(t.size).toBe(1);
    expect(t.replace(12, 'stray')).toBe(false);
    expect(t.lookup(12)).toBeUndefined();
    expect(t.size).toBe(1);
  });

  it('gives up, rather than spinning, on a source that only repeats', () => {
    const t = new IndexTable<string>(() => 1);
    expect(t.allocate('a')).toBe(1);
    expect(() => t.allocate('b')).toThrow(/no free index/);
    expect(t.size).toBe(1);
  });

  it('looks up nothing for indices never allocated', () => {
    const t = new IndexTable<string>();
    for (const i of [0, 1, 0xffffffff, -1, 1.5, NaN]) expect(t.lookup(i)).toBeUndefined();
  });

  it('hands out unique non-zero indices from the default random source', () => {
    const t = new IndexTable<number>();
    const seen = new Set<number>();
    for (let n = 0; n < 20_000; n++) {
      const i = t.allocate(n);
      expect(Number.isInteger(i) && i > 0 && i <= 0xffffffff).toBe(true);
      seen.add(i);
    }
    expect(seen.size).toBe(20_000);
    expect(t.size).toBe(20_000);
    // Each value is under its own index.
    let n = 0;
    for (const i of seen) expect(t.lookup(i)).toBe(n++);
  });

  it('stays unique with a narrow source that collides often', () => {
    // 256 possible values and 200 live entries: most draws collide.
    let s = 1;
    const narrow = () => {
      s = (s * 1103515245 + 12345) >>> 0;
      return (s >>> 16) & 0xff;
    };
    const t = new IndexTable<number>(narrow);
    const seen = new Set<number>();
    for (let n = 0; n < 200; n++) seen.add(t.allocate(n));
    expect(seen.size).toBe(200);
    expect(seen.has(0)).toBe(false);
  });
});
