// An independent implementation of WireGuard's primitives (paper §5.4) on
// other libraries than the code under test (tweetnacl X25519, @noble
// BLAKE2s/HMAC), for tests that re-derive our constructions byte for byte.
import nacl from 'tweetnacl';
import { blake2s } from '@noble/hashes/blake2.js';
import { hmac as nobleHmac } from '@noble/hashes/hmac.js';

export const cat = (...a: Uint8Array[]) => Buffer.concat(a);
/** HASH: BLAKE2s-256. */
export const H = (...a: Uint8Array[]) => Buffer.from(blake2s(cat(...a)));
/** HMAC over BLAKE2s-256. */
export const HM = (k: Uint8Array, d: Uint8Array) => Buffer.from(nobleHmac(blake2s, k, d));
/** KDF_n(key, input): τ1..τn. */
export const KDF = (k: Uint8Array, x: Uint8Array, n: number) => {
  const t0 = HM(k, x);
  const out: Buffer[] = [];
  let prev = Buffer.alloc(0);
  for (let i = 1; i <= n; i++) {
    prev = HM(t0, cat(prev, Uint8Array.of(i)));
    out.push(prev);
  }
  return out;
};
export const DH = (priv: Uint8Array, pub: Uint8Array) => Buffer.from(nacl.scalarMult(priv, pub));
export const PUB = (priv: Uint8Array) => Buffer.from(nacl.scalarMult.base(priv));
