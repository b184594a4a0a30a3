// BLAKE2s as WireGuard uses it (paper §5.4): HASH is BLAKE2s-256, MAC is keyed
// BLAKE2s-128, HMAC is RFC 2104 over BLAKE2s-256, and KDF_n is HKDF built on it.
// node:crypto gives BLAKE2s-256 and HMAC natively; it has no keyed variant, so
// MAC comes from @noble/hashes.
import { createHash, createHmac } from 'node:crypto';
import { blake2s } from '@noble/hashes/blake2.js';

/** HASH(parts[0] || parts[1] || ...) — BLAKE2s-256. */
export function hash(...parts: Uint8Array[]): Buffer {
  const h = createHash('blake2s256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** MAC(key, input) — keyed BLAKE2s with a 16-byte output. */
export function mac(key: Uint8Array, input: Uint8Array): Uint8Array {
  return blake2s(input, { key, dkLen: 16 });
}

/** HMAC(key, input) over BLAKE2s-256. */
export function hmac(key: Uint8Array, ...input: Uint8Array[]): Buffer {
  const h = createHmac('blake2s256', key);
  for (const p of input) h.update(p);
  return h.digest();
}

const ONE = Uint8Array.of(1);
const TWO = Uint8Array.of(2);
const THREE = Uint8Array.of(3);

/**
 * KDF_n(key, input) from the paper: τ0 = HMAC(key, input), τ1 = HMAC(τ0, 0x1),
 * τi = HMAC(τ0, τ(i-1) || i). Returns τ1..τn.
 */
export function kdf1(key: Uint8Array, input: Uint8Array): Buffer {
  const t0 = hmac(key, input);
  return hmac(t0, ONE);
}

export function kdf2(key: Uint8Array, input: Uint8Array): [Buffer, Buffer] {
  const t0 = hmac(key, input);
  const t1 = hmac(t0, ONE);
  const t2 = hmac(t0, t1, TWO);
  return [t1, t2];
}

export function kdf3(key: Uint8Array, input: Uint8Array): [Buffer, Buffer, Buffer] {
  const t0 = hmac(key, input);
  const t1 = hmac(t0, ONE);
  const t2 = hmac(t0, t1, TWO);
  const t3 = hmac(t0, t2, THREE);
  return [t1, t2, t3];
}
