// Known-answer tests for every primitive WireGuard uses (paper §5.4):
// BLAKE2s (RFC 7693), keyed BLAKE2s-128, HMAC-BLAKE2s, X25519 (RFC 7748 §6.1)
// and ChaCha20-Poly1305 (RFC 8439 §2.8.2), plus our counter-nonce layout.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { hash, hmac, kdf1, kdf2, kdf3, mac } from '../../src/crypto/blake2s.js';
import { open, seal, sealNew, xopen, xseal } from '../../src/crypto/aead.js';
import { clamp, dh, generatePrivateKeyBytes, publicKeyObject, X25519PrivateKey } from '../../src/crypto/x25519.js';
import { equal, isZero } from '../../src/crypto/constantTime.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('BLAKE2s', () => {
  it('HASH is BLAKE2s-256 (RFC 7693 Appendix B)', () => {
    expect(hash(Buffer.from('abc')).toString('hex')).toBe('508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982');
    // The same digest fed in several parts.
    expect(hash(Buffer.from('a'), Buffer.from('bc')).toString('hex')).toBe('508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982');
  });
  it('MAC is keyed BLAKE2s with a 16-byte digest (values from CPython hashlib.blake2s)', () => {
    const key = Uint8Array.from({ length: 32 }, (_, i) => i);
    expect(Buffer.from(mac(key, new Uint8Array(0))).toString('hex')).toBe('9536f9b267655743dee97b8a670f9f53');
    expect(Buffer.from(mac(key, Uint8Array.from({ length: 64 }, (_, i) => i))).toString('hex')).toBe('f1efa90d2547036841ecd3627fafbc36');
  });
  it('HMAC is RFC 2104 over BLAKE2s-256 (value from CPython hmac + hashlib.blake2s)', () => {
    const key = Uint8Array.from({ length: 32 }, (_, i) => i);
    expect(hmac(key, Buffer.from('WireGuard')).toString('hex')).toBe('5415924543576b3f5ee867c94e1aab70586d33b32fae3fccd2c635b3e1d7198d');
  });
  it('KDF_n follows the paper: τ1 = HMAC(τ0, 1), τi = HMAC(τ0, τi-1 || i)', () => {
    const key = hash(Buffer.from('ck'));
    const input = Buffer.from('input');
    const t0 = hmac(key, input);
    const t1 = hmac(t0, Uint8Array.of(1));
    const t2 = hmac(t0, t1, Uint8Array.of(2));
    const t3 = hmac(t0, t2, Uint8Array.of(3));
    expect(kdf1(key, input)).toEqual(t1);
    expect(kdf2(key, input)).toEqual([t1, t2]);
    expect(kdf3(key, input)).toEqual([t1, t2, t3]);
    expect(t1.equals(t2)).toBe(false);
  });
});

describe('X25519 (RFC 7748 §6.1)', () => {
  const alicePriv = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
  const alicePub = hex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
  const bobPriv = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
  const bobPub = hex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';

  it('derives the public keys and the shared secret', () => {
    const a = X25519PrivateKey.fromBytes(alicePriv);
    const b = X25519PrivateKey.fromBytes(bobPriv);
    expect(a.publicKey.toString('hex')).toBe(alicePub.toString('hex'));
    expect(b.publicKey.toString('hex')).toBe(bobPub.toString('hex'));
    expect(dh(a, publicKeyObject(bobPub))!.toString('hex')).toBe(shared);
    expect(dh(b, publicKeyObject(alicePub))!.toString('hex')).toBe(shared);
  });

  it('returns null instead of an all-zero secret for low-order points', () => {
    const a = X25519PrivateKey.fromBytes(alicePriv);
    // Points of small order on Curve25519 (the zero point and the order-8 generator).
    const lowOrder = [
      '0000000000000000000000000000000000000000000000000000000000000000',
      '0100000000000000000000000000000000000000000000000000000000000000',
      'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
      '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
      'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    ];
    for (const p of lowOrder) expect(dh(a, publicKeyObject(hex(p)))).toBeNull();
  });

  it('clamps like wg genkey and round-trips the private key bytes', () => {
    const k = clamp(Uint8Array.from({ length: 32 }, () => 0xff));
    expect(k[0]).toBe(0xf8);
    expect(k[31]).toBe(0x7f);
    const g = generatePrivateKeyBytes();
    expect(g[0] & 7).toBe(0);
    expect(g[31] & 0xc0).toBe(0x40);
    expect(Buffer.from(X25519PrivateKey.fromBytes(alicePriv).exportBytes()).equals(alicePriv)).toBe(true);
  });
});

describe('ChaCha20-Poly1305', () => {
  it('matches RFC 8439 §2.8.2 through the same OpenSSL cipher we use', () => {
    const key = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
    const nonce = hex('070000004041424344454647');
    const aad = hex('50515253c0c1c2c3c4c5c6c7');
    const pt = Buffer.from("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.");
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    c.setAAD(aad, { plaintextLength: pt.length });
    const ct = Buffer.concat([c.update(pt), c.final()]);
    expect(ct.subarray(0, 16).toString('hex')).toBe('d31a8d34648e60db7b86afbc53ef7ec2');
    expect(c.getAuthTag().toString('hex')).toBe('1ae10b594f09e26a7e902ecbd0600691');
  });

  it('uses 32 zero bits then the 64-bit little-endian counter as the nonce (§5.4.6)', () => {
    const key = hash(Buffer.from('k'));
    const pt = Buffer.from('a transport payload');
    const ad = Buffer.from('hash');
    for (const counter of [0, 1, 255, 2 ** 32 + 5, 2 ** 52 + 3]) {
      const nonce = Buffer.alloc(12);
      nonce.writeBigUInt64LE(BigInt(counter), 4);
      const want = chacha20poly1305(key, nonce, ad).encrypt(pt);
      expect(Buffer.from(sealNew(key, counter, pt, ad)).toString('hex')).toBe(Buffer.from(want).toString('hex'));
    }
  });

  it('opens what it seals and rejects any modification', () => {
    const key = hash(Buffer.from('k2'));
    const out = Buffer.alloc(64);
    const n = seal(key, 7, Buffer.from('hello'), null, out, 3);
    expect(n).toBe(5 + 16);
    const sealed = out.subarray(3, 3 + n);
    expect(open(key, 7, sealed, null)!.toString()).toBe('hello');
    expect(open(key, 8, sealed, null)).toBeNull();
    const bad = Buffer.from(sealed);
    bad[0] ^= 1;
    expect(open(key, 7, bad, null)).toBeNull();
    expect(open(key, 7, sealed.subarray(0, 10), null)).toBeNull();
    expect(open(key, 7, Buffer.alloc(0), null)).toBeNull();
  });

  it('XChaCha20-Poly1305 round-trips and authenticates its additional data', () => {
    const key = hash(Buffer.from('cookie key'));
    const nonce = new Uint8Array(24).fill(9);
    const sealed = xseal(key, nonce, new Uint8Array(16).fill(1), Buffer.from('mac1'));
    expect(sealed.length).toBe(32);
    expect(xopen(key, nonce, sealed, Buffer.from('mac1'))).toEqual(new Uint8Array(16).fill(1));
    expect(xopen(key, nonce, sealed, Buffer.from('mac2'))).toBeNull();
  });
});

describe('constant-time helpers', () => {
  it('compares and detects zero', () => {
    expect(equal(Buffer.from('abc'), Buffer.from('abc'))).toBe(true);
    expect(equal(Buffer.from('abc'), Buffer.from('abd'))).toBe(false);
    expect(equal(Buffer.from('abc'), Buffer.from('ab'))).toBe(false);
    expect(isZero(new Uint8Array(32))).toBe(true);
    expect(isZero(Uint8Array.of(0, 0, 1))).toBe(false);
  });
});

describe('X25519PrivateKey without JWK exports', () => {
  it('reports the public key that matches its private key, from generate() and fromBytes()', () => {
    for (let i = 0; i < 50; i++) {
      const k = X25519PrivateKey.generate();
      const again = X25519PrivateKey.fromBytes(k.exportBytes());
      expect(again.publicKey.equals(k.publicKey)).toBe(true);
      expect(k.publicKey).toHaveLength(32);
    }
  });

  it('generates 30,000 keys in a row without hanging (Node 20.20 deadlocked on JWK export after generation)', () => {
    const script = `import { X25519PrivateKey } from ${JSON.stringify(new URL('../../dist/crypto/x25519.js', import.meta.url).href)};
      for (let i = 0; i < 30000; i++) X25519PrivateKey.generate().exportBytes();
      console.log('ok');`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect(r.signal, 'the child was killed at the timeout: key generation hung').toBeNull();
    expect(r.stdout.trim()).toBe('ok');
  });
});
