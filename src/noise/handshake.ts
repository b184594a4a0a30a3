// Noise_IKpsk2 as WireGuard instantiates it (paper §5.4.2-§5.4.4; Noise rev 34
// §7.5). Pure: no sockets, no clock, no index allocation of its own — the caller
// passes the time, an index allocator and (for tests) the ephemeral key.
//
//   IKpsk2:
//     <- s
//     ...
//     -> e, es, s, ss, {t}
//     <- e, ee, se, psk, {}
//
// Each step below is annotated with the token it implements.
import { hash, kdf1, kdf2, kdf3 } from '../crypto/blake2s.js';
import { open, sealNew } from '../crypto/aead.js';
import { dh, publicKeyObject, X25519PrivateKey } from '../crypto/x25519.js';
import { CONSTRUCTION, IDENTIFIER, INITIATIONS_PER_SECOND, KEY_LEN, MESSAGE_HANDSHAKE_INITIATION, MESSAGE_HANDSHAKE_RESPONSE } from '../wire/constants.js';
import { INITIATION, newInitiation, newResponse, readIndex, RESPONSE, writeIndex } from '../wire/messages.js';
import type { DropReason } from '../wire/drops.js';
import { isAfter, tai64n } from './tai64n.js';
import type { KeyObject } from 'node:crypto';
import { Keypair } from './keypair.js';

const EMPTY = new Uint8Array(0);
const ZERO_KEY = new Uint8Array(KEY_LEN);

/** Ci = HASH(Construction); Hi = HASH(Ci || Identifier) — identical for every handshake. */
const INITIAL_CHAINING_KEY = hash(Buffer.from(CONSTRUCTION));
const INITIAL_HASH = hash(INITIAL_CHAINING_KEY, Buffer.from(IDENTIFIER));

export type HandshakeStateName = 'zeroed' | 'initiationCreated' | 'initiationConsumed' | 'responseCreated' | 'responseConsumed';

/** This device's static key pair (paper: S_priv, S_pub). */
export class StaticIdentity {
  constructor(readonly privateKey: X25519PrivateKey) {}
  get publicKey(): Buffer {
    return this.privateKey.publicKey;
  }
}

export type EphemeralSource = () => X25519PrivateKey;
export const randomEphemeral: EphemeralSource = () => X25519PrivateKey.generate();

/**
 * Per-peer handshake state (the kernel's struct noise_handshake). Lives for
 * the peer's lifetime; the fields of one handshake are reset by `zero()`.
 */
export class Handshake {
  state: HandshakeStateName = 'zeroed';
  readonly remoteStatic: Buffer;
  readonly remoteStaticKey: KeyObject;
  presharedKey: Buffer = Buffer.alloc(KEY_LEN);
  /** DH(S_priv_local, S_pub_remote), computed once per identity; null for a low-order key. */
  precomputedStaticStatic: Buffer | null = null;
  localEphemeral: X25519PrivateKey | null = null;
  remoteEphemeral: Buffer | null = null;
  hash: Buffer = Buffer.alloc(32);
  chainingKey: Buffer = Buffer.alloc(32);
  localIndex = 0;
  remoteIndex = 0;
  /** Greatest TAI64N accepted from this peer: replay protection (§5.1). */
  latestTimestamp: Buffer = Buffer.alloc(12);
  /** Monotonic ms of the last consumed initiation: flood protection. */
  lastInitiationConsumption = -Infinity;

  constructor(remoteStatic: Uint8Array, identity: StaticIdentity | null, presharedKey?: Uint8Array) {
    this.remoteStatic = Buffer.from(remoteStatic);
    this.remoteStaticKey = publicKeyObject(remoteStatic);
    if (presharedKey) this.setPresharedKey(presharedKey);
    this.setIdentity(identity);
  }

  /** Recomputes the static-static DH when our private key changes. */
  setIdentity(identity: StaticIdentity | null): void {
    this.precomputedStaticStatic?.fill(0);
    this.precomputedStaticStatic = identity ? dh(identity.privateKey, this.remoteStaticKey) : null;
    this.zero();
  }

  setPresharedKey(psk: Uint8Array | null): void {
    this.presharedKey.fill(0);
    if (psk) this.presharedKey.set(psk);
  }

  /** True when no handshake with this peer can ever succeed (low-order key or no identity). */
  get impossible(): boolean {
    return this.precomputedStaticStatic === null;
  }

  zero(): void {
    this.state = 'zeroed';
    this.localEphemeral = null;
    this.remoteEphemeral = null;
    this.hash.fill(0);
    this.chainingKey.fill(0);
    this.localIndex = 0;
    this.remoteIndex = 0;
  }
}

function mixHash(h: Buffer, data: Uint8Array): Buffer {
  return hash(h, data);
}

/**
 * Initiator, message 1 (§5.4.2). Returns the 148-byte message with mac1/mac2
 * still zero (the cookie layer adds them), or a drop reason when the peer's key
 * is low-order. `unixMs` is the wall clock for the TAI64N timestamp.
 */
export function createInitiation(
  hs: Handshake,
  identity: StaticIdentity,
  unixMs: number,
  allocateIndex: () => number,
  ephemeral: EphemeralSource = randomEphemeral,
): Buffer | DropReason {
  if (hs.precomputedStaticStatic === null) return 'lowOrderKey';
  const msg = newInitiation();
  let ck: Buffer = INITIAL_CHAINING_KEY;
  let h = mixHash(INITIAL_HASH, hs.remoteStatic); // <- s (pre-message)

  // -> e
  const e = ephemeral();
  msg.set(e.publicKey, INITIATION.ephemeral);
  h = mixHash(h, e.publicKey);
  ck = kdf1(ck, e.publicKey);

  // es
  const es = dh(e, hs.remoteStaticKey);
  if (es === null) return 'lowOrderKey';
  let k: Buffer;
  [ck, k] = kdf2(ck, es);

  // s
  const encStatic = sealNew(k, 0, identity.publicKey, h);
  msg.set(encStatic, INITIATION.encryptedStatic);
  h = mixHash(h, encStatic);

  // ss
  [ck, k] = kdf2(ck, hs.precomputedStaticStatic);

  // {t}
  const encTimestamp = sealNew(k, 0, tai64n(unixMs), h);
  msg.set(encTimestamp, INITIATION.encryptedTimestamp);
  h = mixHash(h, encTimestamp);

  hs.zero();
  hs.localEphemeral = e;
  hs.chainingKey = ck;
  hs.hash = h;
  hs.localIndex = allocateIndex();
  writeIndex(msg, INITIATION.sender, hs.localIndex);
  hs.state = 'initiationCreated';
  return msg;
}

/**
 * Responder, message 1. Decrypts the initiator's static key, finds the peer
 * with `lookupPeer`, checks timestamp replay and initiation flood, and only
 * then commits the handshake state (a rejected message changes nothing).
 * `now` is monotonic milliseconds. MACs are checked before this (cookie.ts).
 */
export function consumeInitiation<P extends { handshake: Handshake }>(
  msg: Uint8Array,
  identity: StaticIdentity,
  lookupPeer: (remoteStatic: Buffer) => P | undefined,
  now: number,
): P | DropReason {
  if (readIndex(msg, 0) !== MESSAGE_HANDSHAKE_INITIATION) return 'badType';
  let ck: Buffer = INITIAL_CHAINING_KEY;
  let h = mixHash(INITIAL_HASH, identity.publicKey); // <- s

  // -> e
  const ephemeralPub = Buffer.from(msg.subarray(INITIATION.ephemeral, INITIATION.ephemeral + KEY_LEN));
  h = mixHash(h, ephemeralPub);
  ck = kdf1(ck, ephemeralPub);

  // es
  let remoteEphemeralKey: KeyObject;
  try {
    remoteEphemeralKey = publicKeyObject(ephemeralPub);
  } catch {
    return 'decryptFailed';
  }
  const es = dh(identity.privateKey, remoteEphemeralKey);
  if (es === null) return 'lowOrderKey';
  let k: Buffer;
  [ck, k] = kdf2(ck, es);

  // s
  const encStatic = msg.subarray(INITIATION.encryptedStatic, INITIATION.encryptedTimestamp);
  const remoteStatic = open(k, 0, encStatic, h);
  if (remoteStatic === null) return 'decryptFailed';
  h = mixHash(h, encStatic);

  const peer = lookupPeer(remoteStatic);
  if (peer === undefined) return 'unknownPeer';
  const hs = peer.handshake;
  if (hs.precomputedStaticStatic === null) return 'lowOrderKey';

  // ss
  [ck, k] = kdf2(ck, hs.precomputedStaticStatic);

  // {t}
  const encTimestamp = msg.subarray(INITIATION.encryptedTimestamp, INITIATION.mac1);
  const timestamp = open(k, 0, encTimestamp, h);
  if (timestamp === null) return 'decryptFailed';
  h = mixHash(h, encTimestamp);

  if (!isAfter(timestamp, hs.latestTimestamp)) return 'replayedTimestamp';
  if (now - hs.lastInitiationConsumption < 1000 / INITIATIONS_PER_SECOND) return 'initiationFlood';

  hs.zero();
  hs.remoteEphemeral = ephemeralPub;
  hs.latestTimestamp = timestamp;
  hs.lastInitiationConsumption = now;
  hs.chainingKey = ck;
  hs.hash = h;
  hs.remoteIndex = readIndex(msg, INITIATION.sender);
  hs.state = 'initiationConsumed';
  return peer;
}

/** Responder, message 2 (§5.4.3). MACs are added by the cookie layer. */
export function createResponse(
  hs: Handshake,
  allocateIndex: () => number,
  ephemeral: EphemeralSource = randomEphemeral,
): Buffer | DropReason {
  if (hs.state !== 'initiationConsumed' || hs.remoteEphemeral === null) return 'unexpectedResponse';
  const msg = newResponse();
  let ck = hs.chainingKey;
  let h = hs.hash;

  // <- e
  const e = ephemeral();
  msg.set(e.publicKey, RESPONSE.ephemeral);
  h = mixHash(h, e.publicKey);
  ck = kdf1(ck, e.publicKey);

  // ee
  const ee = dh(e, publicKeyObject(hs.remoteEphemeral));
  if (ee === null) return 'lowOrderKey';
  ck = kdf1(ck, ee);

  // se
  const se = dh(e, hs.remoteStaticKey);
  if (se === null) return 'lowOrderKey';
  ck = kdf1(ck, se);

  // psk
  let tau: Buffer, k: Buffer;
  [ck, tau, k] = kdf3(ck, hs.presharedKey);
  h = mixHash(h, tau);

  // {}
  const encNothing = sealNew(k, 0, EMPTY, h);
  msg.set(encNothing, RESPONSE.encryptedNothing);
  h = mixHash(h, encNothing);

  hs.localEphemeral = e;
  hs.chainingKey = ck;
  hs.hash = h;
  hs.localIndex = allocateIndex();
  writeIndex(msg, RESPONSE.sender, hs.localIndex);
  writeIndex(msg, RESPONSE.receiver, hs.remoteIndex);
  hs.state = 'responseCreated';
  return msg;
}

/**
 * Initiator, message 2. `lookupByIndex` maps our receiver index to the peer
 * whose initiation it answers. Commits only after the empty payload verifies.
 */
export function consumeResponse<P extends { handshake: Handshake }>(
  msg: Uint8Array,
  identity: StaticIdentity,
  lookupByIndex: (index: number) => P | undefined,
): P | DropReason {
  if (readIndex(msg, 0) !== MESSAGE_HANDSHAKE_RESPONSE) return 'badType';
  const peer = lookupByIndex(readIndex(msg, RESPONSE.receiver));
  if (peer === undefined) return 'unknownIndex';
  const hs = peer.handshake;
  if (hs.state !== 'initiationCreated' || hs.localEphemeral === null) return 'unexpectedResponse';

  let ck = hs.chainingKey;
  let h = hs.hash;

  // <- e
  const ephemeralPub = Buffer.from(msg.subarray(RESPONSE.ephemeral, RESPONSE.ephemeral + KEY_LEN));
  h = mixHash(h, ephemeralPub);
  ck = kdf1(ck, ephemeralPub);
  let remoteEphemeralKey: KeyObject;
  try {
    remoteEphemeralKey = publicKeyObject(ephemeralPub);
  } catch {
    return 'decryptFailed';
  }

  // ee
  const ee = dh(hs.localEphemeral, remoteEphemeralKey);
  if (ee === null) return 'lowOrderKey';
  ck = kdf1(ck, ee);

  // se
  const se = dh(identity.privateKey, remoteEphemeralKey);
  if (se === null) return 'lowOrderKey';
  ck = kdf1(ck, se);

  // psk
  let tau: Buffer, k: Buffer;
  [ck, tau, k] = kdf3(ck, hs.presharedKey);
  h = mixHash(h, tau);

  // {}
  const encNothing = msg.subarray(RESPONSE.encryptedNothing, RESPONSE.mac1);
  if (open(k, 0, encNothing, h) === null) return 'decryptFailed';
  h = mixHash(h, encNothing);

  hs.remoteEphemeral = ephemeralPub;
  hs.chainingKey = ck;
  hs.hash = h;
  hs.remoteIndex = readIndex(msg, RESPONSE.sender);
  hs.state = 'responseConsumed';
  return peer;
}

/**
 * Derives the transport keys (§5.4.5): (T_send_i, T_recv_i) = KDF2(C, ε) for the
 * initiator and the mirror for the responder, then zeroes the handshake.
 * Returns null unless a handshake has just completed on this side.
 */
export function beginSession(hs: Handshake, now: number): Keypair | null {
  let isInitiator: boolean;
  if (hs.state === 'responseConsumed') isInitiator = true;
  else if (hs.state === 'responseCreated') isInitiator = false;
  else return null;
  const [t1, t2] = kdf2(hs.chainingKey, EMPTY);
  const keypair = isInitiator
    ? new Keypair(t1, t2, true, hs.localIndex, hs.remoteIndex, now)
    : new Keypair(t2, t1, false, hs.localIndex, hs.remoteIndex, now);
  hs.zero();
  return keypair;
}

export { INITIAL_CHAINING_KEY, INITIAL_HASH, ZERO_KEY };
