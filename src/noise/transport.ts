// Transport data messages (paper §5.4.6): msg.packet = AEAD(T_send, counter,
// P || padding, ε), where the plaintext is zero-padded to a multiple of 16 and
// the counter is the 64-bit little-endian nonce. An empty plaintext is a
// keepalive. Pure: callers own validity, replay and routing checks.
import { selectTransportCipher, type TransportCipher } from '../crypto/transportCipher.js';
import { MESSAGE_TRANSPORT_DATA, PADDING_MULTIPLE, TAG_LEN, TRANSPORT_HEADER_LEN } from '../wire/constants.js';
import { readCounter, TRANSPORT, writeCounter, writeHeader, writeIndex } from '../wire/messages.js';
import type { Keypair } from './keypair.js';

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

let cipher: TransportCipher = selectTransportCipher();

/** Chooses the AEAD implementation of the datapath (tests and benchmarks compare both). */
export function useTransportCipher(c: TransportCipher): void {
  cipher = c;
}

export function transportCipherName(): string {
  return cipher.name;
}

/**
 * Encrypts one IP packet (or a keepalive) under `kp`, consuming one counter.
 * The caller has checked `kp.canSend(now)`.
 */
export function sealTransport(kp: Keypair, plaintext: Uint8Array, mtu = 0): Buffer {
  const counter = kp.sendingCounter++;
  const pad = paddingFor(plaintext.length, mtu);
  const out = Buffer.allocUnsafe(TRANSPORT_HEADER_LEN + plaintext.length + pad + TAG_LEN);
  writeHeader(out, MESSAGE_TRANSPORT_DATA);
  writeIndex(out, TRANSPORT.receiver, kp.remoteIndex);
  writeCounter(out, counter);
  cipher.seal(kp.sendKey, counter, plaintext, pad, out, TRANSPORT_HEADER_LEN);
  return out;
}

/**
 * Decrypts a transport message under `kp`, in place: the plaintext overwrites
 * the ciphertext inside `msg` and a view of it is returned, so the receive
 * path allocates nothing per packet. Returns null when authentication fails
 * (`msg` is then garbage). Replay is checked by the caller after this
 * succeeds (a forged packet must not move the window).
 */
export function openTransport(kp: Keypair, msg: Uint8Array, counter: number): Buffer | null {
  const sealed = msg.subarray(TRANSPORT_HEADER_LEN);
  const n = cipher.open(kp.receiveKey, counter, sealed, sealed);
  return n < 0 ? null : Buffer.from(sealed.buffer, sealed.byteOffset, n);
}

export { readCounter };
