// Curve25519 keys and preshared keys in their two text forms: base64 in config
// files and wg(8) output, hex on the UAPI socket. Both are strict, as wg(8)
// is: one spelling per key, so a key that parses is the key that was meant.

import { KEY_LEN } from '../wire/constants.js';

export class KeyFormatError extends Error {
  readonly code = 'EKEYFORMAT';
  constructor(message: string) {
    super(message);
    this.name = 'KeyFormatError';
  }
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
// 32 bytes are 42 full sextets, a 43rd carrying the last 4 bits (its low 2
// bits must be zero, leaving these 16 letters) and one '=', as wg(8) demands.
const KEY_B64 = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
const KEY_HEX = /^[0-9a-fA-F]{64}$/;

/** Exactly 44 characters of standard, padded, canonical base64 for 32 bytes. */
export function decodeKeyBase64(text: string): Uint8Array {
  if (!KEY_B64.test(text)) throw new KeyFormatError('not 32 bytes of base64');
  const out = new Uint8Array(KEY_LEN);
  let acc = 0;
  let nbits = 0;
  let o = 0;
  for (let i = 0; i < 43; i++) {
    acc = ((acc << 6) | B64.indexOf(text[i])) & 0xffff;
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out[o++] = (acc >> nbits) & 0xff;
    }
  }
  return out;
}

export function encodeKeyBase64(key: Uint8Array): string {
  checkKey(key);
  let out = '';
  for (let i = 0; i < 33; i += 3) {
    const b0 = key[i];
    const b1 = i + 1 < KEY_LEN ? key[i + 1] : 0;
    const b2 = i + 2 < KEY_LEN ? key[i + 2] : 0;
    out += B64[b0 >> 2] + B64[((b0 & 3) << 4) | (b1 >> 4)];
    out += i + 1 < KEY_LEN ? B64[((b1 & 15) << 2) | (b2 >> 6)] : '=';
    out += i + 2 < KEY_LEN ? B64[b2 & 63] : '=';
  }
  return out;
}

/** 64 hex digits, either case, as wireguard-go's hex.DecodeString takes them. */
export function decodeKeyHex(text: string): Uint8Array {
  if (!KEY_HEX.test(text)) throw new KeyFormatError('not 32 bytes of hex');
  const out = new Uint8Array(KEY_LEN);
  for (let i = 0; i < KEY_LEN; i++) out[i] = parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Lowercase, as both wireguard-go and the kernel's wg(8) print it. */
export function encodeKeyHex(key: Uint8Array): string {
  checkKey(key);
  let out = '';
  for (let i = 0; i < KEY_LEN; i++) out += key[i].toString(16).padStart(2, '0');
  return out;
}

/** True if every byte is zero: the UAPI's spelling of "no key". */
export function isZeroKey(key: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < key.length; i++) acc |= key[i];
  return acc === 0;
}

function checkKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== KEY_LEN) {
    throw new KeyFormatError(`a key is ${KEY_LEN} bytes, got ${key instanceof Uint8Array ? key.length : typeof key}`);
  }
}
