// Strict decoding of the wire formats (§5.4): type, reserved bytes, exact
// lengths; field offsets; TAI64N ordering; MAC1/MAC2 and the cookie reply.
import { describe, expect, it } from 'vitest';
import { classify, INITIATION, readCounter, RESPONSE, writeCounter, COOKIE_REPLY } from '../../src/wire/messages.js';
import { tai64n, isAfter } from '../../src/noise/tai64n.js';
import { CookieChecker, CookieMaker } from '../../src/noise/cookie.js';
import { X25519PrivateKey } from '../../src/crypto/x25519.js';
import { COOKIE_SECRET_LATENCY, COOKIE_SECRET_MAX_AGE } from '../../src/wire/constants.js';

describe('message layout', () => {
  it('has the paper’s sizes and offsets', () => {
    expect(INITIATION).toEqual({ sender: 4, ephemeral: 8, encryptedStatic: 40, encryptedTimestamp: 88, mac1: 116, mac2: 132 });
    expect(RESPONSE).toEqual({ sender: 4, receiver: 8, ephemeral: 12, encryptedNothing: 44, mac1: 60, mac2: 76 });
    expect(COOKIE_REPLY).toEqual({ receiver: 4, nonce: 8, encryptedCookie: 32 });
  });

  it('classifies by type and exact length and refuses non-zero reserved bytes', () => {
    const msg = (type: number, len: number, reserved = 0) => {
      const b = Buffer.alloc(len);
      if (len) b[0] = type;
      if (len > 1) b[1] = reserved;
      return b;
    };
    expect(classify(msg(1, 148))).toBe(1);
    expect(classify(msg(2, 92))).toBe(2);
    expect(classify(msg(3, 64))).toBe(3);
    expect(classify(msg(4, 32))).toBe(4);
    expect(classify(msg(4, 1500))).toBe(4);
    expect(classify(msg(1, 149))).toBe('badLength');
    expect(classify(msg(1, 147))).toBe('badLength');
    expect(classify(msg(2, 148))).toBe('badLength');
    expect(classify(msg(3, 65))).toBe('badLength');
    expect(classify(msg(4, 31))).toBe('badLength');
    expect(classify(msg(1, 148, 1))).toBe('reservedNonZero');
    expect(classify(msg(0, 148))).toBe('badType');
    expect(classify(msg(5, 148))).toBe('badType');
    expect(classify(msg(1, 3))).toBe('truncated');
    expect(classify(msg(0, 0))).toBe('truncated');
  });

  it('reads and writes the 64-bit little-endian counter', () => {
    const p = Buffer.alloc(32);
    for (const c of [0, 1, 0xffffffff, 2 ** 32, 2 ** 53 - 1]) {
      writeCounter(p, c);
      expect(p.readBigUInt64LE(8)).toBe(BigInt(c));
      expect(readCounter(p)).toBe(c);
    }
    p.writeBigUInt64LE(2n ** 60n, 8);
    expect(readCounter(p)).toBe(-1);
  });
});

describe('TAI64N', () => {
  it('encodes 2^62 + 10 + seconds, then nanoseconds, big-endian, whitened to 2^24 ns', () => {
    const t = tai64n(1_700_000_000_123);
    expect(t.length).toBe(12);
    expect(t.readBigUInt64BE(0)).toBe(2n ** 62n + 10n + 1_700_000_000n);
    expect(t.readUInt32BE(8) % 0x1000000).toBe(0);
    expect(t.readUInt32BE(8)).toBeLessThanOrEqual(123_000_000);
    expect(t.readUInt32BE(8)).toBeGreaterThan(123_000_000 - 0x1000000);
  });
  it('orders timestamps', () => {
    expect(isAfter(tai64n(2000), tai64n(1000))).toBe(true);
    expect(isAfter(tai64n(1000), tai64n(1000))).toBe(false);
    expect(isAfter(tai64n(1000), tai64n(2000))).toBe(false);
    expect(isAfter(tai64n(1_000_500), tai64n(1_000_000))).toBe(true);
  });
});

describe('MAC1, MAC2 and the cookie reply', () => {
  const responder = X25519PrivateKey.generate();
  const source = Uint8Array.of(192, 0, 2, 1, 0xca, 0x6c);
  const fresh = () => {
    const m = Buffer.alloc(148, 0x33);
    m.writeUInt32LE(1, 0);
    m.writeUInt32LE(0xabcdef01, 4);
    return m;
  };
  let seq = 0;
  const random = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i + seq++) & 0xff);

  it('verifies mac1 under the receiver’s key only', () => {
    const checker = new CookieChecker(random);
    checker.setPublicKey(responder.publicKey);
    const maker = new CookieMaker(responder.publicKey);
    const m = fresh();
    maker.addMacs(m, 0);
    expect(checker.validate(m, source, false, 0)).toBe('validMac1');
    const wrong = new CookieMaker(X25519PrivateKey.generate().publicKey);
    const m2 = fresh();
    wrong.addMacs(m2, 0);
    expect(checker.validate(m2, source, false, 0)).toBe('invalidMac1');
  });

  it('under load demands mac2 from a cookie bound to the source address', () => {
    const checker = new CookieChecker(random);
    checker.setPublicKey(responder.publicKey);
    const maker = new CookieMaker(responder.publicKey);
    const m = fresh();
    maker.addMacs(m, 0);
    expect(checker.validate(m, source, true, 0)).toBe('invalidMac2');
    const reply = checker.createReply(m, source, 0);
    expect(reply.length).toBe(64);
    expect(reply.readUInt32LE(4)).toBe(0xabcdef01); // answers the sender index
    expect(maker.consumeReply(reply, 10)).toBe(true);
    expect(maker.consumeReply(reply, 10)).toBe(false); // one reply per message sent
    const m2 = fresh();
    maker.addMacs(m2, 20);
    expect(checker.validate(m2, source, true, 20)).toBe('validMac2');
    // The cookie does not transfer to another source address or port.
    expect(checker.validate(m2, Uint8Array.of(192, 0, 2, 1, 0xca, 0x6d), true, 20)).toBe('invalidMac2');
  });

  it('a cookie reply for a different message does not decrypt', () => {
    const checker = new CookieChecker(random);
    checker.setPublicKey(responder.publicKey);
    const maker = new CookieMaker(responder.publicKey);
    const a = fresh();
    maker.addMacs(a, 0);
    const other = fresh();
    other[50] ^= 1;
    new CookieMaker(responder.publicKey).addMacs(other, 0);
    expect(maker.consumeReply(checker.createReply(other, source, 0), 0)).toBe(false);
    const tampered = checker.createReply(a, source, 0);
    tampered[40] ^= 1;
    expect(maker.consumeReply(tampered, 0)).toBe(false);
  });

  it('stops using a cookie before the responder rotates its secret, and the secret rotates every 2 minutes', () => {
    const checker = new CookieChecker(random);
    checker.setPublicKey(responder.publicKey);
    const maker = new CookieMaker(responder.publicKey);
    const m = fresh();
    maker.addMacs(m, 0);
    maker.consumeReply(checker.createReply(m, source, 0), 0);
    const late = fresh();
    maker.addMacs(late, COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY);
    expect(late.subarray(132).every((b) => b === 0)).toBe(true);
    const c1 = Buffer.from(checker.cookieFor(source, 0));
    expect(Buffer.from(checker.cookieFor(source, COOKIE_SECRET_MAX_AGE - 1)).equals(c1)).toBe(true);
    expect(Buffer.from(checker.cookieFor(source, COOKIE_SECRET_MAX_AGE)).equals(c1)).toBe(false);
  });
});
