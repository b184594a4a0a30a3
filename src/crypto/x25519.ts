// Curve25519 Diffie-Hellman (RFC 7748) through node:crypto KeyObjects, which
// measured ~15x faster than a pure-JS implementation here. Private keys are
// imported once as PKCS#8 (the only raw form Node accepts without the public
// half); peer public keys are imported as JWK, which is much cheaper than DER.
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';

export const KEY_LEN = 32;

// ASN.1 prefix of a PKCS#8 X25519 private key (RFC 8410 §7) before the 32 key bytes.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** RFC 7748 §5 clamping, applied in place as `wg genkey` does to the stored key. */
export function clamp(key: Uint8Array): Uint8Array {
  key[0] &= 248;
  key[31] = (key[31] & 127) | 64;
  return key;
}

// Keys leave OpenSSL as DER, never as JWK: on Node 20.20 a JWK export right
// after key generation can deadlock the process (a GC inside the export
// takes a lock the export holds; seen in gdb under a key-per-request load).
// An X25519 SPKI or PKCS#8 DER encoding ends with the 32 raw key bytes.
const lastKeyBytes = (der: Buffer) => Buffer.from(der.subarray(der.length - KEY_LEN));

export class X25519PrivateKey {
  readonly keyObject: KeyObject;
  readonly publicKey: Buffer;
  private constructor(keyObject: KeyObject, publicKey?: Buffer) {
    this.keyObject = keyObject;
    this.publicKey = publicKey ?? lastKeyBytes(createPublicKey(keyObject).export({ format: 'der', type: 'spki' }));
  }

  static fromBytes(raw: Uint8Array): X25519PrivateKey {
    if (raw.length !== KEY_LEN) throw new RangeError(`private key must be ${KEY_LEN} bytes, got ${raw.length}`);
    const der = Buffer.concat([PKCS8_PREFIX, raw]);
    const ko = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    der.fill(0);
    return new X25519PrivateKey(ko);
  }

  /** A fresh key pair, e.g. an ephemeral for one handshake. */
  static generate(): X25519PrivateKey {
    const { privateKey, publicKey } = generateKeyPairSync('x25519', { publicKeyEncoding: { format: 'der', type: 'spki' } });
    // With only a public encoding, Node returns the public key as a DER Buffer and the private one as a KeyObject.
    return new X25519PrivateKey(privateKey as unknown as KeyObject, lastKeyBytes(publicKey as unknown as Buffer));
  }

  /** The raw 32 bytes. Only key-file and UAPI code needs these; never log them. */
  exportBytes(): Buffer {
    const der = this.keyObject.export({ format: 'der', type: 'pkcs8' });
    const raw = lastKeyBytes(der);
    der.fill(0);
    return raw;
  }
}

/** Random 32 bytes, clamped: the same distribution as `wg genkey`. */
export function generatePrivateKeyBytes(random: (n: number) => Uint8Array = randomBytes): Uint8Array {
  return clamp(Uint8Array.from(random(KEY_LEN)));
}

export function publicKeyObject(pub: Uint8Array): KeyObject {
  if (pub.length !== KEY_LEN) throw new RangeError(`public key must be ${KEY_LEN} bytes, got ${pub.length}`);
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(pub).toString('base64url') }, format: 'jwk' });
}

/**
 * DH(private, public). Returns null when the result is all zeros (a low-order
 * public key, paper §5.4: such a handshake must not proceed); OpenSSL itself
 * refuses to return that result, which we map to the same null.
 */
export function dh(priv: X25519PrivateKey, pub: KeyObject): Buffer | null {
  let out: Buffer;
  try {
    out = diffieHellman({ privateKey: priv.keyObject, publicKey: pub });
  } catch {
    return null;
  }
  let acc = 0;
  for (let i = 0; i < out.length; i++) acc |= out[i];
  return acc === 0 ? null : out;
}
