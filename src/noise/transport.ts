// Transport data messages (paper §5.4.6): msg.packet = AEAD(T_send, counter,
// P || padding, ε), where the plaintext is zero-padded to a multiple of 16 and
// the counter is the 64-bit little-endian nonce. An empty plaintext is a
// keepalive. Pure: callers own validity, replay and routing checks.
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { MESSAGE_TRANSPORT_DATA, PADDING_MULTIPLE, TAG_LEN, TRANSPORT_HEADER_LEN } from '../wire/constants.js';
import { readCounter, TRANSPORT, writeCounter, writeHeader, writeIndex } from '../wire/messages.js';
import type { Keypair } from './keypair.js';

const ZERO_PAD = Buffer.alloc(PADDING_MULTIPLE);

export function paddedLength(len: number): number {
  return (len + PADDING_MULTIPLE - 1) & ~(PADDING_MULTIPLE - 1);
}

/**
 * Padding never takes a packet past the MTU (kernel calculate_skb_padding):
 * a 1419-byte packet on a 1420 MTU is padded by one byte, not five.
 */
export function paddingFor(len: number, mtu: number): number {
  if (!mtu) return paddedLength(len) - len;
  const last = len > mtu ? len % mtu : len;
  return Math.min(mtu, paddedLength(last)) - last;
}

/** Nonce buffer reused across calls: createCipheriv copies it. */
const nonce = Buffer.alloc(12);
function setNonce(counter: number): Buffer {
  nonce.writeUInt32LE(counter >>> 0, 4);
  nonce.writeUInt32LE(Math.floor(counter / 0x1_0000_0000), 8);
  return nonce;
}

/**
 * Encrypts one IP packet (or a keepalive) under `kp`, consuming one counter.
 * The caller has checked `kp.canSend(now)`.
 */
export function sealTransport(kp: Keypair, plaintext: Uint8Array, mtu = 0): Buffer {
  const counter = kp.sendingCounter++;
  const padded = plaintext.length + paddingFor(plaintext.length, mtu);
  const out = Buffer.allocUnsafe(TRANSPORT_HEADER_LEN + padded + TAG_LEN);
  writeHeader(out, MESSAGE_TRANSPORT_DATA);
  writeIndex(out, TRANSPORT.receiver, kp.remoteIndex);
  writeCounter(out, counter);
  const c = createCipheriv('chacha20-poly1305', kp.sendKey, setNonce(counter), { authTagLength: TAG_LEN });
  let off = TRANSPORT_HEADER_LEN;
  if (plaintext.length) off += c.update(plaintext).copy(out, off);
  if (padded > plaintext.length) off += c.update(ZERO_PAD.subarray(0, padded - plaintext.length)).copy(out, off);
  off += c.final().copy(out, off);
  c.getAuthTag().copy(out, off);
  return out;
}

/**
 * Decrypts a transport message under `kp`. Returns the padded plaintext, or
 * null when authentication fails. Replay is checked by the caller after this
 * succeeds (a forged packet must not move the window).
 */
export function openTransport(kp: Keypair, msg: Uint8Array, counter: number): Buffer | null {
  const ctEnd = msg.length - TAG_LEN;
  try {
    const d = createDecipheriv('chacha20-poly1305', kp.receiveKey, setNonce(counter), { authTagLength: TAG_LEN });
    d.setAuthTag(msg.subarray(ctEnd));
    const a = d.update(msg.subarray(TRANSPORT_HEADER_LEN, ctEnd));
    const b = d.final();
    return b.length ? Buffer.concat([a, b]) : a;
  } catch {
    return null;
  }
}

export { readCounter };
