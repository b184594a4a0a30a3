// AEAD constructions of the paper §5.4: ChaCha20-Poly1305 (RFC 8439) with a
// 96-bit nonce of 32 zero bits then the 64-bit little-endian counter, and
// XChaCha20-Poly1305 for the cookie reply. Transport packets use node:crypto
// (OpenSSL), measured ~3x the pure-JS cipher here.
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';

export const TAG_LEN = 16;

function nonceFor(counter: number, nonce: Buffer): Buffer {
  // counter is < 2^53 (see wire/constants.ts SAFE_COUNTER_LIMIT); split in halves.
  nonce.writeUInt32LE(0, 0);
  nonce.writeUInt32LE(counter >>> 0, 4);
  nonce.writeUInt32LE(Math.floor(counter / 0x1_0000_0000), 8);
  return nonce;
}

/**
 * AEAD(key, counter, plaintext, ad): writes ciphertext||tag into `out` at
 * `offset` and returns the number of bytes written.
 */
export function seal(key: Uint8Array, counter: number, plaintext: Uint8Array, ad: Uint8Array | null, out: Uint8Array, offset = 0): number {
  const c = createCipheriv('chacha20-poly1305', key, nonceFor(counter, Buffer.allocUnsafe(12)), { authTagLength: TAG_LEN });
  if (ad && ad.length) c.setAAD(ad, { plaintextLength: plaintext.length });
  const a = c.update(plaintext);
  const b = c.final();
  out.set(a, offset);
  out.set(b, offset + a.length);
  const tag = c.getAuthTag();
  out.set(tag, offset + a.length + b.length);
  return a.length + b.length + TAG_LEN;
}

/** Convenience form of seal that allocates its output. */
export function sealNew(key: Uint8Array, counter: number, plaintext: Uint8Array, ad: Uint8Array | null): Buffer {
  const out = Buffer.allocUnsafe(plaintext.length + TAG_LEN);
  seal(key, counter, plaintext, ad, out);
  return out;
}

/** Opens ciphertext||tag. Returns the plaintext or null when authentication fails. */
export function open(key: Uint8Array, counter: number, sealed: Uint8Array, ad: Uint8Array | null): Buffer | null {
  if (sealed.length < TAG_LEN) return null;
  const ctLen = sealed.length - TAG_LEN;
  try {
    const d = createDecipheriv('chacha20-poly1305', key, nonceFor(counter, Buffer.allocUnsafe(12)), { authTagLength: TAG_LEN });
    d.setAuthTag(sealed.subarray(ctLen));
    if (ad && ad.length) d.setAAD(ad, { plaintextLength: ctLen });
    const a = d.update(sealed.subarray(0, ctLen));
    const b = d.final();
    return b.length ? Buffer.concat([a, b]) : a;
  } catch {
    return null;
  }
}

/** XAEAD(key, 24-byte nonce, plaintext, ad). */
export function xseal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Uint8Array {
  return xchacha20poly1305(key, nonce, ad).encrypt(plaintext);
}

export function xopen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Uint8Array | null {
  try {
    return xchacha20poly1305(key, nonce, ad).decrypt(sealed);
  } catch {
    return null;
  }
}
