// The Noise_IKpsk2 handshake (paper §5.4) checked three ways: byte-for-byte
// against an independent re-derivation of the paper's equations built on other
// libraries (tweetnacl X25519, @noble BLAKE2s/HMAC/ChaCha20-Poly1305); against a
// real initiation captured from wireguard-go; and through its state machine's
// refusals (replay, flood, unknown peer, tampering, low-order keys).
import { describe, expect, it } from 'vitest';
import { blake2s } from '@noble/hashes/blake2.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { DH, H, KDF, PUB } from '../support/reference.js';
import { X25519PrivateKey } from '../../src/crypto/x25519.js';
import {
  beginSession, consumeInitiation, consumeResponse, createInitiation, createResponse, Handshake, StaticIdentity,
} from '../../src/noise/handshake.js';
import { CookieChecker, CookieMaker } from '../../src/noise/cookie.js';
import { tai64n } from '../../src/noise/tai64n.js';
import { HANDSHAKE_INITIATION_LEN, HANDSHAKE_RESPONSE_LEN } from '../../src/wire/constants.js';

const hex = (s: string) => Buffer.from(s, 'hex');
const b64 = (s: string) => Buffer.from(s, 'base64');

// ---- an independent implementation of the paper's equations, for reference ----
const AEAD = (k: Uint8Array, ctr: number, p: Uint8Array, ad: Uint8Array) => {
  const n = Buffer.alloc(12);
  n.writeUInt32LE(ctr, 4);
  return Buffer.from(chacha20poly1305(k, n, ad).encrypt(p));
};
const MAC = (k: Uint8Array, d: Uint8Array) => Buffer.from(blake2s(d, { key: k, dkLen: 16 }));

function referenceHandshake(p: {
  si: Buffer; sr: Buffer; ei: Buffer; er: Buffer; psk: Buffer; ts: Buffer; idxI: number; idxR: number;
}) {
  const Spub_i = PUB(p.si), Spub_r = PUB(p.sr), Epub_i = PUB(p.ei), Epub_r = PUB(p.er);
  let C = H(Buffer.from('Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s'));
  let Hh = H(C, Buffer.from('WireGuard v1 zx2c4 Jason@zx2c4.com'));
  Hh = H(Hh, Spub_r);
  C = KDF(C, Epub_i, 1)[0];
  Hh = H(Hh, Epub_i);
  let k: Buffer;
  [C, k] = KDF(C, DH(p.ei, Spub_r), 2);
  const encStatic = AEAD(k, 0, Spub_i, Hh);
  Hh = H(Hh, encStatic);
  [C, k] = KDF(C, DH(p.si, Spub_r), 2);
  const encTs = AEAD(k, 0, p.ts, Hh);
  Hh = H(Hh, encTs);
  const init = Buffer.alloc(148);
  init.writeUInt32LE(1, 0);
  init.writeUInt32LE(p.idxI, 4);
  Epub_i.copy(init, 8);
  encStatic.copy(init, 40);
  encTs.copy(init, 88);
  MAC(H(Buffer.from('mac1----'), Spub_r), init.subarray(0, 116)).copy(init, 116);

  C = KDF(C, Epub_r, 1)[0];
  Hh = H(Hh, Epub_r);
  C = KDF(C, DH(p.er, Epub_i), 1)[0];
  C = KDF(C, DH(p.er, Spub_i), 1)[0];
  let tau: Buffer;
  [C, tau, k] = KDF(C, p.psk, 3);
  Hh = H(Hh, tau);
  const encEmpty = AEAD(k, 0, new Uint8Array(0), Hh);
  const resp = Buffer.alloc(92);
  resp.writeUInt32LE(2, 0);
  resp.writeUInt32LE(p.idxR, 4);
  resp.writeUInt32LE(p.idxI, 8);
  Epub_r.copy(resp, 12);
  encEmpty.copy(resp, 44);
  MAC(H(Buffer.from('mac1----'), Spub_i), resp.subarray(0, 60)).copy(resp, 60);
  const [t1, t2] = KDF(C, new Uint8Array(0), 2);
  return { init, resp, sendI: t1, recvI: t2 };
}

function fixed(seed: number): Buffer {
  const b = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) b[i] = (seed * 31 + i * 7) & 0xff;
  b[0] &= 248;
  b[31] = (b[31] & 127) | 64;
  return b;
}

interface TestPeer { handshake: Handshake }

function setup(psk?: Buffer) {
  const si = fixed(1), sr = fixed(2), ei = fixed(3), er = fixed(4);
  const idI = new StaticIdentity(X25519PrivateKey.fromBytes(si));
  const idR = new StaticIdentity(X25519PrivateKey.fromBytes(sr));
  const atI: TestPeer = { handshake: new Handshake(idR.publicKey, idI, psk) };
  const atR: TestPeer = { handshake: new Handshake(idI.publicKey, idR, psk) };
  return { si, sr, ei, er, idI, idR, atI, atR };
}

describe('handshake against an independent derivation of the paper', () => {
  for (const withPsk of [false, true]) {
    it(`produces identical messages and transport keys ${withPsk ? 'with' : 'without'} a pre-shared key`, () => {
      const psk = withPsk ? H(Buffer.from('psk')) : Buffer.alloc(32);
      const s = setup(withPsk ? psk : undefined);
      const wall = 1_700_000_000_123;
      const ref = referenceHandshake({ si: s.si, sr: s.sr, ei: s.ei, er: s.er, psk, ts: tai64n(wall), idxI: 0x11223344, idxR: 0x55667788 });

      const init = createInitiation(s.atI.handshake, s.idI, wall, () => 0x11223344, () => X25519PrivateKey.fromBytes(s.ei));
      expect(typeof init).not.toBe('string');
      const initMsg = init as Buffer;
      new CookieMaker(s.idR.publicKey).addMacs(initMsg, 0);
      expect(initMsg.length).toBe(HANDSHAKE_INITIATION_LEN);
      expect(initMsg.toString('hex')).toBe(ref.init.toString('hex'));

      const checker = new CookieChecker();
      checker.setPublicKey(s.idR.publicKey);
      expect(checker.validate(initMsg, Uint8Array.of(1, 2, 3, 4, 0, 80), false, 0)).toBe('validMac1');
      const found = consumeInitiation(initMsg, s.idR, (k) => (k.equals(s.idI.publicKey) ? s.atR : undefined), 0);
      expect(found).toBe(s.atR);

      const resp = createResponse(s.atR.handshake, () => 0x55667788, () => X25519PrivateKey.fromBytes(s.er)) as Buffer;
      new CookieMaker(s.idI.publicKey).addMacs(resp, 0);
      expect(resp.length).toBe(HANDSHAKE_RESPONSE_LEN);
      expect(resp.toString('hex')).toBe(ref.resp.toString('hex'));

      const kR = beginSession(s.atR.handshake, 0)!;
      expect(consumeResponse(resp, s.idI, (i) => (i === 0x11223344 ? s.atI : undefined))).toBe(s.atI);
      const kI = beginSession(s.atI.handshake, 0)!;
      expect(kI.sendKey.toString('hex')).toBe(ref.sendI.toString('hex'));
      expect(kI.receiveKey.toString('hex')).toBe(ref.recvI.toString('hex'));
      expect(kR.sendKey.equals(kI.receiveKey) && kR.receiveKey.equals(kI.sendKey)).toBe(true);
      expect(kI.isInitiator && !kR.isInitiator).toBe(true);
      expect([kI.localIndex, kI.remoteIndex, kR.localIndex, kR.remoteIndex]).toEqual([0x11223344, 0x55667788, 0x55667788, 0x11223344]);
      // Handshake state is wiped once the session exists.
      expect(s.atI.handshake.state).toBe('zeroed');
      expect(s.atI.handshake.chainingKey.every((b) => b === 0)).toBe(true);
    });
  }

  it('a mismatched pre-shared key fails at the response', () => {
    const s = setup();
    s.atI.handshake.setPresharedKey(H(Buffer.from('one')));
    s.atR.handshake.setPresharedKey(H(Buffer.from('two')));
    const init = createInitiation(s.atI.handshake, s.idI, Date.now(), () => 1) as Buffer;
    expect(consumeInitiation(init, s.idR, () => s.atR, 0)).toBe(s.atR);
    const resp = createResponse(s.atR.handshake, () => 2) as Buffer;
    expect(consumeResponse(resp, s.idI, () => s.atI)).toBe('decryptFailed');
    expect(s.atI.handshake.state).toBe('initiationCreated');
  });
});

describe('a real initiation captured from wireguard-go 0.0.20220316', () => {
  // Captured on this machine: wireguard-go with private key IPRIV and a peer
  // RPUB at 127.0.0.1:51999; the first UDP datagram it sent there.
  const IPUB = 'C/wrMtqWnNSqioknW+H7puM4budM0Tnx9KjtOm38pDs=';
  const RPRIV = 'CCiwmoNuzquwT1L6fu7vZSwHxseB6lhdi626JiZ4TF0=';
  const CAPTURED = hex(
    '01000000d11553ba9f8858bd9f4f5aac338d97fd81aea56bab659379877c12b08d470112a0a5cc2b476c78ce80b0ce848429088477123a5a479c91878de5c3da39b178b420d8174cba4b4b32585d45aef6de5657c8757c75f6fa40c2086da796d3b56e5ac66a5ddb3fcee71ec415dd0a17895da041924e4b44be8cf4024d4e93c436772d00000000000000000000000000000000',
  );
  const CAPTURED_AT = 1795385745; // unix seconds, from `date +%s` right after

  it('verifies its MAC1 and decrypts its static key and timestamp', () => {
    const idR = new StaticIdentity(X25519PrivateKey.fromBytes(b64(RPRIV)));
    const checker = new CookieChecker();
    checker.setPublicKey(idR.publicKey);
    expect(checker.validate(CAPTURED, Uint8Array.of(127, 0, 0, 1, 0, 1), false, 0)).toBe('validMac1');
    const peer = { handshake: new Handshake(b64(IPUB), idR) };
    let seen: Buffer | null = null;
    const r = consumeInitiation(CAPTURED, idR, (k) => ((seen = k), k.equals(b64(IPUB)) ? peer : undefined), 0);
    expect(seen!.toString('base64')).toBe(IPUB);
    expect(r).toBe(peer);
    const ts = peer.handshake.latestTimestamp;
    const secs = Number(ts.readBigUInt64BE(0) - (2n ** 62n + 10n));
    expect(Math.abs(secs - CAPTURED_AT)).toBeLessThan(5);
    expect(peer.handshake.remoteIndex).toBe(CAPTURED.readUInt32LE(4));
    // Replaying the same capture is refused (§5.1: timestamp must increase).
    expect(consumeInitiation(CAPTURED, idR, () => peer, 10_000)).toBe('replayedTimestamp');
  });

  it('is refused under the wrong responder key (MAC1 and decryption)', () => {
    const other = new StaticIdentity(X25519PrivateKey.fromBytes(fixed(9)));
    const checker = new CookieChecker();
    checker.setPublicKey(other.publicKey);
    expect(checker.validate(CAPTURED, Uint8Array.of(127, 0, 0, 1, 0, 1), false, 0)).toBe('invalidMac1');
    expect(consumeInitiation(CAPTURED, other, () => undefined, 0)).toBe('decryptFailed');
  });
});

describe('handshake refusals', () => {
  it('rejects a replayed or older timestamp and an initiation flood', () => {
    const s = setup();
    const t0 = 1_700_000_000_000;
    const first = createInitiation(s.atI.handshake, s.idI, t0, () => 1) as Buffer;
    expect(consumeInitiation(first, s.idR, () => s.atR, 1000)).toBe(s.atR);
    expect(consumeInitiation(first, s.idR, () => s.atR, 5000)).toBe('replayedTimestamp');
    const older = createInitiation(s.atI.handshake, s.idI, t0 - 1000, () => 1) as Buffer;
    expect(consumeInitiation(older, s.idR, () => s.atR, 5000)).toBe('replayedTimestamp');
    // Newer timestamp but within 1/50 s of the last consumption: a flood.
    const newer = createInitiation(s.atI.handshake, s.idI, t0 + 1000, () => 1) as Buffer;
    expect(consumeInitiation(newer, s.idR, () => s.atR, 1010)).toBe('initiationFlood');
    expect(consumeInitiation(newer, s.idR, () => s.atR, 1021)).toBe(s.atR);
  });

  it('a rejected initiation leaves the responder state untouched', () => {
    const s = setup();
    const good = createInitiation(s.atI.handshake, s.idI, 1_700_000_000_000, () => 1) as Buffer;
    expect(consumeInitiation(good, s.idR, () => s.atR, 0)).toBe(s.atR);
    const before = Buffer.from(s.atR.handshake.hash);
    const replay = consumeInitiation(good, s.idR, () => s.atR, 100);
    expect(replay).toBe('replayedTimestamp');
    expect(s.atR.handshake.hash.equals(before)).toBe(true);
    expect(s.atR.handshake.state).toBe('initiationConsumed');
  });

  it('reports an unknown initiator and any flipped bit', () => {
    const s = setup();
    const msg = createInitiation(s.atI.handshake, s.idI, 1_700_000_000_000, () => 1) as Buffer;
    expect(consumeInitiation(msg, s.idR, () => undefined, 0)).toBe('unknownPeer');
    for (const off of [8, 40, 70, 88, 110]) {
      const bad = Buffer.from(msg);
      bad[off] ^= 0x40;
      const r = consumeInitiation(bad, s.idR, () => s.atR, 0);
      expect(['decryptFailed', 'lowOrderKey']).toContain(r);
    }
  });

  it('never handshakes with a low-order public key', () => {
    const id = new StaticIdentity(X25519PrivateKey.fromBytes(fixed(5)));
    const hs = new Handshake(Buffer.alloc(32), id);
    expect(hs.impossible).toBe(true);
    expect(createInitiation(hs, id, Date.now(), () => 1)).toBe('lowOrderKey');
    // And a response from a zero ephemeral is refused.
    const s = setup();
    createInitiation(s.atI.handshake, s.idI, Date.now(), () => 7);
    const resp = Buffer.alloc(92);
    resp.writeUInt32LE(2, 0);
    resp.writeUInt32LE(7, 8);
    expect(consumeResponse(resp, s.idI, () => s.atI)).toBe('lowOrderKey');
  });

  it('refuses a response without an initiation in flight', () => {
    const s = setup();
    const resp = Buffer.alloc(92);
    resp.writeUInt32LE(2, 0);
    expect(consumeResponse(resp, s.idI, () => s.atI)).toBe('unexpectedResponse');
    expect(consumeResponse(resp, s.idI, () => undefined)).toBe('unknownIndex');
    expect(createResponse(s.atR.handshake, () => 1)).toBe('unexpectedResponse');
    expect(beginSession(s.atR.handshake, 0)).toBeNull();
  });
});
