// The native ChaCha20-Poly1305 (addon, Node's OpenSSL) and node:crypto agree
// byte for byte, with WireGuard's counter nonce and zero padding, and both
// refuse anything that does not authenticate.
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { nodeCipher, selectTransportCipher, type TransportCipher } from '../../src/crypto/transportCipher.js';
import { nativeAvailable } from '../../src/io/tun.js';

const ciphers: TransportCipher[] = [nodeCipher, ...(nativeAvailable() ? [selectTransportCipher('native')] : [])];

function reference(key: Uint8Array, counter: number, plaintext: Uint8Array): Uint8Array {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64LE(BigInt(counter), 4);
  return chacha20poly1305(key, nonce).encrypt(plaintext);
}

describe.each(ciphers.map((c) => [c.name, c] as const))('%s transport cipher', (_name, cipher) => {
  it('matches an independent ChaCha20-Poly1305 for sizes, paddings and large counters', () => {
    for (const size of [0, 1, 15, 16, 17, 100, 1400, 1420]) {
      for (const counter of [0, 1, 0xffffffff, 2 ** 32 + 1, 2 ** 53 - 1]) {
        const key = randomBytes(32);
        const pt = randomBytes(size);
        const pad = (16 - (size % 16)) % 16;
        const dst = Buffer.alloc(8 + size + pad + 16, 0xee);
        const n = cipher.seal(key, counter, pt, pad, dst, 8);
        expect(n).toBe(size + pad + 16);
        expect(dst.subarray(0, 8).every((b) => b === 0xee)).toBe(true);
        const want = reference(key, counter, Buffer.concat([pt, Buffer.alloc(pad)]));
        expect(Buffer.from(dst.subarray(8, 8 + n)).equals(Buffer.from(want))).toBe(true);
        const back = Buffer.alloc(size + pad);
        expect(cipher.open(key, counter, dst.subarray(8, 8 + n), back)).toBe(size + pad);
        expect(back.subarray(0, size).equals(pt)).toBe(true);
      }
    }
  });

  it('refuses a wrong key, counter, flipped bit or short input', () => {
    const key = randomBytes(32);
    const sealed = Buffer.alloc(100 + 16);
    cipher.seal(key, 7, randomBytes(100), 0, sealed, 0);
    const out = Buffer.alloc(100);
    expect(cipher.open(key, 7, sealed, out)).toBe(100);
    expect(cipher.open(randomBytes(32), 7, sealed, out)).toBe(-1);
    expect(cipher.open(key, 8, sealed, out)).toBe(-1);
    for (const i of [0, 50, 99, 100, 115]) {
      const bad = Buffer.from(sealed);
      bad[i] ^= 0x01;
      expect(cipher.open(key, 7, bad, out)).toBe(-1);
    }
    expect(cipher.open(key, 7, sealed.subarray(0, 15), out)).toBe(-1);
  });
});

describe.skipIf(!nativeAvailable())('native cipher argument checks', () => {
  it('throws on a bad key length, counter or span instead of touching memory', () => {
    const c = selectTransportCipher('native');
    expect(() => c.seal(Buffer.alloc(31), 0, Buffer.alloc(4), 0, Buffer.alloc(64), 0)).toThrow(/key/);
    expect(() => c.seal(Buffer.alloc(32), -1, Buffer.alloc(4), 0, Buffer.alloc(64), 0)).toThrow(/counter/);
    expect(() => c.seal(Buffer.alloc(32), 2 ** 53, Buffer.alloc(4), 0, Buffer.alloc(64), 0)).toThrow(/counter/);
    expect(() => c.seal(Buffer.alloc(32), 0, Buffer.alloc(40), 0, Buffer.alloc(40), 0)).toThrow(/span/);
    expect(() => c.seal(Buffer.alloc(32), 0, Buffer.alloc(4), 16, Buffer.alloc(64), 0)).toThrow(/padLen/);
    expect(() => c.open(Buffer.alloc(32), 0, Buffer.alloc(40), Buffer.alloc(10))).toThrow(/span/);
  });
});
