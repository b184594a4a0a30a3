// The one hot primitive of the datapath, behind a small interface (STYLE.md):
// ChaCha20-Poly1305 with WireGuard's counter nonce (paper §5.4.6), sealing a
// packet plus its zero padding and opening one, writing into caller buffers.
// Two implementations: node:crypto (always there) and the native addon, which
// calls the same OpenSSL without createCipheriv's per-call object setup.
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { loadNative, nativeAvailable } from '../io/tun.js';

export interface TransportCipher {
  readonly name: 'node' | 'native';
  /** Writes AEAD(key, counter, src || zeros(padLen), ε) at dst[dstOff]; returns bytes written. */
  seal(key: Uint8Array, counter: number, src: Uint8Array, padLen: number, dst: Uint8Array, dstOff: number): number;
  /**
   * Opens ciphertext||tag into dst[0..]; returns the plaintext length, or -1 if it does
   * not authenticate. dst may be `sealed` itself (in-place decryption).
   */
  open(key: Uint8Array, counter: number, sealed: Uint8Array, dst: Uint8Array): number;
}

const TAG_LEN = 16;
const ZERO_PAD = Buffer.alloc(16);
const nonce = Buffer.alloc(12);

function setNonce(counter: number): Buffer {
  nonce.writeUInt32LE(counter >>> 0, 4);
  nonce.writeUInt32LE(Math.floor(counter / 0x1_0000_0000), 8);
  return nonce;
}

export const nodeCipher: TransportCipher = {
  name: 'node',
  seal(key, counter, src, padLen, dst, dstOff) {
    const c = createCipheriv('chacha20-poly1305', key, setNonce(counter), { authTagLength: TAG_LEN });
    const out = Buffer.from(dst.buffer, dst.byteOffset, dst.byteLength);
    let off = dstOff;
    if (src.length) off += c.update(src).copy(out, off);
    if (padLen) off += c.update(ZERO_PAD.subarray(0, padLen)).copy(out, off);
    off += c.final().copy(out, off);
    off += c.getAuthTag().copy(out, off);
    return off - dstOff;
  },
  open(key, counter, sealed, dst) {
    if (sealed.length < TAG_LEN) return -1;
    const ctLen = sealed.length - TAG_LEN;
    try {
      const d = createDecipheriv('chacha20-poly1305', key, setNonce(counter), { authTagLength: TAG_LEN });
      d.setAuthTag(sealed.subarray(ctLen));
      const out = Buffer.from(dst.buffer, dst.byteOffset, dst.byteLength);
      const n = d.update(sealed.subarray(0, ctLen)).copy(out, 0);
      return n + d.final().copy(out, n);
    } catch {
      return -1;
    }
  },
};

function makeNativeCipher(): TransportCipher {
  const addon = loadNative();
  return {
    name: 'native',
    seal: (key, counter, src, padLen, dst, dstOff) => addon.aeadSeal(key, counter, src, 0, src.length, padLen, dst, dstOff),
    open: (key, counter, sealed, dst) => addon.aeadOpen(key, counter, sealed, 0, sealed.length, dst, 0),
  };
}

let nativeCipher: TransportCipher | null = null;

/** The native cipher when the addon is built, else node:crypto. */
export function selectTransportCipher(prefer: 'auto' | 'node' | 'native' = 'auto'): TransportCipher {
  if (prefer === 'node') return nodeCipher;
  if (prefer === 'native' || nativeAvailable()) {
    nativeCipher ??= makeNativeCipher();
    return nativeCipher;
  }
  return nodeCipher;
}
