// Wire formats of the four WireGuard messages (paper §5.4.2-§5.4.6). Every
// multi-byte integer is little-endian; the first 4 bytes are the type (1 byte)
// followed by 3 reserved bytes that must be zero, which together read as one
// little-endian u32 equal to the type. Decoders are strict about type, length
// and reserved bytes and return a drop reason instead of throwing: the
// receive path never fails loudly (STYLE.md).
import {
  COOKIE_NONCE_LEN, COOKIE_REPLY_LEN, HANDSHAKE_INITIATION_LEN, HANDSHAKE_RESPONSE_LEN, KEY_LEN, MAC_LEN,
  MESSAGE_COOKIE_REPLY, MESSAGE_HANDSHAKE_INITIATION, MESSAGE_HANDSHAKE_RESPONSE, MESSAGE_TRANSPORT_DATA,
  TAG_LEN, TIMESTAMP_LEN, TRANSPORT_HEADER_LEN, TRANSPORT_MIN_LEN,
} from './constants.js';
import type { DropReason } from './drops.js';

/** §5.4.2 msg = handshake_initiation { type, reserved, sender, ephemeral, static, timestamp, mac1, mac2 } */
export const INITIATION = {
  sender: 4,
  ephemeral: 8,
  encryptedStatic: 8 + KEY_LEN, // 40
  encryptedTimestamp: 40 + KEY_LEN + TAG_LEN, // 88
  mac1: 88 + TIMESTAMP_LEN + TAG_LEN, // 116
  mac2: 116 + MAC_LEN, // 132
} as const;

/** §5.4.3 msg = handshake_response { type, reserved, sender, receiver, ephemeral, empty, mac1, mac2 } */
export const RESPONSE = {
  sender: 4,
  receiver: 8,
  ephemeral: 12,
  encryptedNothing: 12 + KEY_LEN, // 44
  mac1: 44 + TAG_LEN, // 60
  mac2: 60 + MAC_LEN, // 76
} as const;

/** §5.4.7 msg = packet_cookie_reply { type, reserved, receiver, nonce, cookie } */
export const COOKIE_REPLY = {
  receiver: 4,
  nonce: 8,
  encryptedCookie: 8 + COOKIE_NONCE_LEN, // 32
} as const;

/** §5.4.6 msg = packet_data { type, reserved, receiver, counter, packet } */
export const TRANSPORT = {
  receiver: 4,
  counter: 8,
  data: TRANSPORT_HEADER_LEN,
} as const;

/** The message type of a datagram, or 0 when the first four bytes are not a valid type. */
export function messageType(packet: Uint8Array): number {
  if (packet.length < 4) return 0;
  if (packet[1] !== 0 || packet[2] !== 0 || packet[3] !== 0) return 0;
  const t = packet[0];
  return t >= MESSAGE_HANDSHAKE_INITIATION && t <= MESSAGE_TRANSPORT_DATA ? t : 0;
}

const EXPECTED_LEN: Record<number, number> = {
  [MESSAGE_HANDSHAKE_INITIATION]: HANDSHAKE_INITIATION_LEN,
  [MESSAGE_HANDSHAKE_RESPONSE]: HANDSHAKE_RESPONSE_LEN,
  [MESSAGE_COOKIE_REPLY]: COOKIE_REPLY_LEN,
};

/**
 * Classifies a datagram by type and exact length. Handshake and cookie
 * messages have one fixed size; transport data is at least a header and a tag.
 */
export function classify(packet: Uint8Array): number | DropReason {
  if (packet.length < 4) return 'truncated';
  if (packet[1] !== 0 || packet[2] !== 0 || packet[3] !== 0) {
    return packet[0] >= 1 && packet[0] <= 4 ? 'reservedNonZero' : 'badType';
  }
  const t = packet[0];
  if (t === MESSAGE_TRANSPORT_DATA) return packet.length >= TRANSPORT_MIN_LEN ? t : 'badLength';
  const want = EXPECTED_LEN[t];
  if (want === undefined) return 'badType';
  return packet.length === want ? t : 'badLength';
}

function u32(p: Uint8Array, off: number): number {
  return (p[off] | (p[off + 1] << 8) | (p[off + 2] << 16) | (p[off + 3] << 24)) >>> 0;
}

function putU32(p: Uint8Array, off: number, v: number): void {
  p[off] = v & 0xff;
  p[off + 1] = (v >>> 8) & 0xff;
  p[off + 2] = (v >>> 16) & 0xff;
  p[off + 3] = (v >>> 24) & 0xff;
}

export function writeHeader(p: Uint8Array, type: number): void {
  putU32(p, 0, type);
}

export function readIndex(p: Uint8Array, off: number): number {
  return u32(p, off);
}

export function writeIndex(p: Uint8Array, off: number, index: number): void {
  putU32(p, off, index);
}

/** The 64-bit little-endian counter of a transport message, as a number; -1 if ≥ 2^53. */
export function readCounter(p: Uint8Array): number {
  const lo = u32(p, TRANSPORT.counter);
  const hi = u32(p, TRANSPORT.counter + 4);
  if (hi >= 0x20_0000) return -1;
  return hi * 0x1_0000_0000 + lo;
}

export function writeCounter(p: Uint8Array, counter: number): void {
  putU32(p, TRANSPORT.counter, counter >>> 0);
  putU32(p, TRANSPORT.counter + 4, Math.floor(counter / 0x1_0000_0000));
}

export function newInitiation(): Buffer {
  const b = Buffer.alloc(HANDSHAKE_INITIATION_LEN);
  writeHeader(b, MESSAGE_HANDSHAKE_INITIATION);
  return b;
}

export function newResponse(): Buffer {
  const b = Buffer.alloc(HANDSHAKE_RESPONSE_LEN);
  writeHeader(b, MESSAGE_HANDSHAKE_RESPONSE);
  return b;
}

export function newCookieReply(): Buffer {
  const b = Buffer.alloc(COOKIE_REPLY_LEN);
  writeHeader(b, MESSAGE_COOKIE_REPLY);
  return b;
}

/** Offsets of mac1 and mac2 in a handshake message, by type. */
export function macOffsets(type: number): { mac1: number; mac2: number } {
  return type === MESSAGE_HANDSHAKE_INITIATION ? INITIATION : RESPONSE;
}
