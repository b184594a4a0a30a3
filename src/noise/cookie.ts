// MAC1, MAC2 and cookies (paper §5.3, §5.4.4, §5.4.7). Every handshake message
// carries mac1 = MAC(HASH("mac1----" || S_pub_receiver), msg[0:mac1]), so a
// responder can drop traffic not aimed at its key before any DH. Under load it
// also demands mac2 = MAC(cookie, msg[0:mac2]), where the cookie is
// MAC(R_secret, source IP || port) with R_secret rotated every 2 minutes, sent
// to the initiator encrypted with XChaCha20-Poly1305 in a cookie reply.
import { randomBytes } from 'node:crypto';
import { hash, mac } from '../crypto/blake2s.js';
import { xopen, xseal } from '../crypto/aead.js';
import { equal, isZero } from '../crypto/constantTime.js';
import { COOKIE_LEN, COOKIE_NONCE_LEN, COOKIE_SECRET_LATENCY, COOKIE_SECRET_MAX_AGE, LABEL_COOKIE, LABEL_MAC1, MAC_LEN } from '../wire/constants.js';
import { COOKIE_REPLY, macOffsets, newCookieReply, readIndex, writeIndex } from '../wire/messages.js';

const LABEL_MAC1_BYTES = Buffer.from(LABEL_MAC1);
const LABEL_COOKIE_BYTES = Buffer.from(LABEL_COOKIE);

export function mac1Key(publicKey: Uint8Array): Buffer {
  return hash(LABEL_MAC1_BYTES, publicKey);
}

export function cookieKey(publicKey: Uint8Array): Buffer {
  return hash(LABEL_COOKIE_BYTES, publicKey);
}

export type MacVerdict = 'invalidMac1' | 'validMac1' | 'validMac2' | 'invalidMac2';

/**
 * The responder side, one per device (kernel: cookie_checker). Keys follow our
 * static public key; the secret is rotated lazily every COOKIE_SECRET_MAX_AGE.
 */
export class CookieChecker {
  private mac1Key: Buffer = Buffer.alloc(32);
  private encryptionKey: Buffer = Buffer.alloc(32);
  private secret: Buffer = Buffer.alloc(32);
  private secretBirth = -Infinity;

  constructor(private readonly random: (n: number) => Uint8Array = randomBytes) {}

  setPublicKey(publicKey: Uint8Array | null): void {
    if (publicKey) {
      this.mac1Key = mac1Key(publicKey);
      this.encryptionKey = cookieKey(publicKey);
    } else {
      this.mac1Key.fill(0);
      this.encryptionKey.fill(0);
    }
  }

  private currentSecret(now: number): Buffer {
    if (now - this.secretBirth >= COOKIE_SECRET_MAX_AGE) {
      this.secret = Buffer.from(this.random(32));
      this.secretBirth = now;
    }
    return this.secret;
  }

  /** τ = MAC(R_secret, A_m): the cookie for a source address (its IP and port bytes). */
  cookieFor(source: Uint8Array, now: number): Uint8Array {
    return mac(this.currentSecret(now), source);
  }

  /**
   * Checks mac1 always, and mac2 when `checkCookie` (we are under load).
   * A message with a good mac1 but no valid mac2 gets 'invalidMac2': the
   * caller answers it with a cookie reply instead of processing it.
   */
  validate(msg: Uint8Array, source: Uint8Array, checkCookie: boolean, now: number): MacVerdict {
    const off = macOffsets(msg[0]);
    const want1 = mac(this.mac1Key, msg.subarray(0, off.mac1));
    if (!equal(want1, msg.subarray(off.mac1, off.mac1 + MAC_LEN))) return 'invalidMac1';
    if (!checkCookie) return 'validMac1';
    const got2 = msg.subarray(off.mac2, off.mac2 + MAC_LEN);
    if (isZero(got2)) return 'invalidMac2';
    const want2 = mac(this.cookieFor(source, now), msg.subarray(0, off.mac2));
    return equal(want2, got2) ? 'validMac2' : 'invalidMac2';
  }

  /**
   * §5.4.7 msg.cookie = XAEAD(HASH("cookie--" || S_pub_m), nonce, τ, M) where M
   * is the mac1 of the message being answered; `receiverIndex` is its sender.
   */
  createReply(msg: Uint8Array, source: Uint8Array, now: number): Buffer {
    const off = macOffsets(msg[0]);
    const reply = newCookieReply();
    writeIndex(reply, COOKIE_REPLY.receiver, readIndex(msg, 4));
    const nonce = this.random(COOKIE_NONCE_LEN);
    reply.set(nonce, COOKIE_REPLY.nonce);
    const sealed = xseal(this.encryptionKey, nonce, this.cookieFor(source, now), msg.subarray(off.mac1, off.mac1 + MAC_LEN));
    reply.set(sealed, COOKIE_REPLY.encryptedCookie);
    return reply;
  }
}

/**
 * The initiator side, one per peer (kernel: cookie in struct wg_peer): adds
 * mac1/mac2 to what we send and remembers the cookie the peer gave us.
 */
export class CookieMaker {
  private readonly mac1Key: Buffer;
  private readonly encryptionKey: Buffer;
  private cookie: Uint8Array | null = null;
  private cookieBirth = -Infinity;
  private lastMac1: Uint8Array | null = null;

  constructor(remotePublicKey: Uint8Array) {
    this.mac1Key = mac1Key(remotePublicKey);
    this.encryptionKey = cookieKey(remotePublicKey);
  }

  /** Fills mac1 and, with a fresh cookie, mac2 of a handshake message in place. */
  addMacs(msg: Uint8Array, now: number): void {
    const off = macOffsets(msg[0]);
    const m1 = mac(this.mac1Key, msg.subarray(0, off.mac1));
    msg.set(m1, off.mac1);
    this.lastMac1 = m1;
    // A cookie is used only while the responder will still accept it.
    if (this.cookie && now - this.cookieBirth < COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY) {
      msg.set(mac(this.cookie, msg.subarray(0, off.mac2)), off.mac2);
    } else {
      msg.fill(0, off.mac2, off.mac2 + MAC_LEN);
    }
  }

  /** Decrypts a cookie reply; false if we sent nothing it can answer or it fails to verify. */
  consumeReply(reply: Uint8Array, now: number): boolean {
    if (this.lastMac1 === null) return false;
    const nonce = reply.subarray(COOKIE_REPLY.nonce, COOKIE_REPLY.encryptedCookie);
    const cookie = xopen(this.encryptionKey, nonce, reply.subarray(COOKIE_REPLY.encryptedCookie), this.lastMac1);
    if (cookie === null || cookie.length !== COOKIE_LEN) return false;
    this.cookie = cookie;
    this.cookieBirth = now;
    // One reply per message sent (kernel: have_sent_mac1 is cleared).
    this.lastMac1 = null;
    return true;
  }

  get hasCookie(): boolean {
    return this.cookie !== null;
  }
}
