// The sealed control-channel envelope (src/control/envelope.ts), checked
// against an independent re-derivation of its documented construction
// (tweetnacl X25519, @noble BLAKE2s/HMAC/ChaCha20-Poly1305), through round
// trips, and through every refusal: wrong server, wrong path, any flipped
// byte, truncation, bad header fields, low-order keys, tampered replies.
import { describe, expect, it } from 'vitest';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { cat, DH, H, KDF, PUB } from '../support/reference.js';
import { clamp, X25519PrivateKey } from '../../src/crypto/x25519.js';
import { ENVELOPE_VERSION, HEADER_LEN, MIN_REQUEST_LEN, openRequest, sealRequest, type OpenedRequest } from '../../src/control/envelope.js';
import { PATHS } from '../../src/control/messages.js';

const hex = (s: string) => Buffer.from(s, 'hex');

// ---- an independent implementation of the construction in envelope.ts's header ----
const LABEL = Buffer.from('meshd control v1 Noise_X_25519_ChaChaPoly_BLAKE2s');
const ZERO_NONCE = Buffer.alloc(12);
const AEAD = (k: Uint8Array, p: Uint8Array, ad: Uint8Array) => Buffer.from(chacha20poly1305(k, ZERO_NONCE, ad).encrypt(p));
const UNAEAD = (k: Uint8Array, c: Uint8Array, ad: Uint8Array) => Buffer.from(chacha20poly1305(k, ZERO_NONCE, ad).decrypt(c));

/**
 * A request built straight from the documented equations, with the two DH
 * results given explicitly: what an attacker who knows (or guesses) them
 * could send.
 */
function referenceRequest(p: { nodePub: Uint8Array; ephPub: Uint8Array; es: Uint8Array; ss: Uint8Array; serverPub: Uint8Array; path: string; now: number; payload: Uint8Array }) {
  const header = Buffer.alloc(72);
  header.write('MSHC', 0, 'latin1');
  header[4] = 1;
  Buffer.from(p.nodePub).copy(header, 8);
  Buffer.from(p.ephPub).copy(header, 40);
  const c = KDF(H(LABEL), p.es, 1)[0];
  const [kReq, kResp] = KDF(c, p.ss, 2);
  const ad = H(LABEL, p.serverPub, header, Buffer.from(p.path));
  const ts = Buffer.alloc(8);
  ts.writeBigUInt64BE(BigInt(p.now));
  const bytes = cat(header, AEAD(kReq, cat(ts, p.payload), ad));
  const rad = H(ad, bytes.subarray(bytes.length - 16));
  return { bytes, sealReply: (payload: Uint8Array) => AEAD(kResp, payload, rad), openReply: (r: Uint8Array) => UNAEAD(kResp, r, rad) };
}

const fixed = (seed: number) => clamp(Uint8Array.from({ length: 32 }, (_, i) => (seed * 31 + i * 7) & 0xff));
const NODE = fixed(1);
const SERVER = fixed(2);
const EPH = fixed(3);
const node = X25519PrivateKey.fromBytes(NODE);
const server = X25519PrivateKey.fromBytes(SERVER);
const NOW = 1_750_000_000_123;
const PAYLOAD = Buffer.from(JSON.stringify({ since: 0, endpoints: ['192.0.2.1:41641'], wait: true }));

function seal(over: Partial<Parameters<typeof sealRequest>[0]> = {}) {
  return sealRequest({ node, serverPublicKey: server.publicKey, path: PATHS.map, payload: PAYLOAD, now: NOW, ...over });
}

function opened(r: OpenedRequest): Extract<OpenedRequest, { ok: true }> {
  if (!r.ok) throw new Error(`expected the request to open, got ${r.reason}`);
  return r;
}

/** The reason, or 'ok' — so a wrongly opened request shows up in the failure. */
const outcome = (r: OpenedRequest) => (r.ok ? 'ok' : r.reason);

// Points of small order on Curve25519 (the order-1/2/4/8 points and their
// non-canonical encodings: p-1, p, p+1 and high-bit-set twins).
const LOW_ORDER = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  '0000000000000000000000000000000000000000000000000000000000000080',
  '0100000000000000000000000000000000000000000000000000000000000080',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
].map(hex);

describe('control envelope: construction', () => {
  it('lays out the header as documented', () => {
    const eph = X25519PrivateKey.fromBytes(EPH);
    const { bytes } = seal({ ephemeral: eph });
    expect(HEADER_LEN).toBe(72);
    expect(MIN_REQUEST_LEN).toBe(72 + 8 + 16);
    expect(bytes.length).toBe(72 + 8 + PAYLOAD.length + 16);
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('MSHC');
    expect(bytes[4]).toBe(1);
    expect(ENVELOPE_VERSION).toBe(1);
    expect([...bytes.subarray(5, 8)]).toEqual([0, 0, 0]);
    expect(bytes.subarray(8, 40).equals(node.publicKey)).toBe(true);
    expect(bytes.subarray(40, 72).equals(eph.publicKey)).toBe(true);
    // The payload is not visible in clear.
    expect(bytes.includes(PAYLOAD.subarray(0, 12))).toBe(false);
  });

  it('is deterministic for fixed keys, ephemeral and time', () => {
    const a = seal({ ephemeral: X25519PrivateKey.fromBytes(EPH) }).bytes;
    const b = seal({ ephemeral: X25519PrivateKey.fromBytes(EPH) }).bytes;
    expect(a.equals(b)).toBe(true);
    // Any one input changes the bytes.
    expect(seal({ ephemeral: X25519PrivateKey.fromBytes(EPH), now: NOW + 1 }).bytes.equals(a)).toBe(false);
    expect(seal({ ephemeral: X25519PrivateKey.fromBytes(EPH), path: PATHS.register }).bytes.equals(a)).toBe(false);
    expect(seal({ ephemeral: X25519PrivateKey.fromBytes(fixed(4)) }).bytes.equals(a)).toBe(false);
    // Without a given ephemeral each request has a fresh one.
    const c = seal().bytes;
    const d = seal().bytes;
    expect(c.subarray(40, 72).equals(d.subarray(40, 72))).toBe(false);
  });

  it('matches an independent derivation of the documented equations, both ways', () => {
    const eph = X25519PrivateKey.fromBytes(EPH);
    const serverPub = PUB(SERVER);
    expect(serverPub.equals(server.publicKey)).toBe(true);
    const ref = referenceRequest({
      nodePub: PUB(NODE), ephPub: PUB(EPH), es: DH(EPH, serverPub), ss: DH(NODE, serverPub),
      serverPub, path: PATHS.map, now: NOW, payload: PAYLOAD,
    });
    const ours = seal({ ephemeral: eph });
    expect(ours.bytes.toString('hex')).toBe(ref.bytes.toString('hex'));
    // Our server opens the reference request; the reference opens our reply and vice versa.
    const o = opened(openRequest(server, PATHS.map, ref.bytes));
    expect(o.payload.equals(PAYLOAD)).toBe(true);
    const reply = Buffer.from('{"version":7}');
    expect(ref.openReply(o.sealReply(reply)).equals(reply)).toBe(true);
    expect(ours.openReply(ref.sealReply(reply))!.equals(reply)).toBe(true);
  });

  it('floors a fractional timestamp', () => {
    const o = opened(openRequest(server, PATHS.map, seal({ now: NOW + 0.9 }).bytes));
    expect(o.timestamp).toBe(NOW);
  });
});

describe('control envelope: round trip', () => {
  it('recovers payload and timestamp, reports the node and ephemeral keys, and carries a reply', () => {
    const eph = X25519PrivateKey.generate();
    const req = seal({ ephemeral: eph });
    const o = opened(openRequest(server, PATHS.map, req.bytes));
    expect(o.payload.equals(PAYLOAD)).toBe(true);
    expect(o.timestamp).toBe(NOW);
    expect(o.nodeKey.equals(node.publicKey)).toBe(true);
    expect(o.ephemeralKey.equals(eph.publicKey)).toBe(true);
    const reply = Buffer.from(JSON.stringify({ version: 42, peers: [] }));
    const sealed = o.sealReply(reply);
    expect(sealed.length).toBe(reply.length + 16);
    expect(sealed.includes(reply.subarray(0, 10))).toBe(false);
    expect(req.openReply(sealed)!.equals(reply)).toBe(true);
    // Opening is repeatable (a retried read) and does not consume the keys.
    expect(req.openReply(sealed)!.equals(reply)).toBe(true);
  });

  it('carries empty and large payloads', () => {
    for (const payload of [Buffer.alloc(0), Buffer.alloc(70_000, 0xab)]) {
      const req = seal({ payload });
      const o = opened(openRequest(server, PATHS.register, seal({ payload, path: PATHS.register }).bytes));
      expect(o.payload.equals(payload)).toBe(true);
      const o2 = opened(openRequest(server, PATHS.map, req.bytes));
      expect(req.openReply(o2.sealReply(payload))!.equals(payload)).toBe(true);
    }
  });

  it('binds a reply to its request', () => {
    const a = seal();
    const b = seal();
    const oa = opened(openRequest(server, PATHS.map, a.bytes));
    const ob = opened(openRequest(server, PATHS.map, b.bytes));
    const ra = oa.sealReply(Buffer.from('for a'));
    const rb = ob.sealReply(Buffer.from('for b'));
    expect(a.openReply(ra)!.toString()).toBe('for a');
    expect(b.openReply(rb)!.toString()).toBe('for b');
    expect(a.openReply(rb)).toBeNull();
    expect(b.openReply(ra)).toBeNull();
    // Even with the same ephemeral (a replayed request), a reply to a request
    // with another body or time does not open for it.
    const eph = X25519PrivateKey.fromBytes(EPH);
    const c = seal({ ephemeral: eph, now: NOW });
    const d = seal({ ephemeral: eph, now: NOW + 1 });
    const rd = opened(openRequest(server, PATHS.map, d.bytes)).sealReply(Buffer.from('for d'));
    expect(d.openReply(rd)!.toString()).toBe('for d');
    expect(c.openReply(rd)).toBeNull();
  });

  it('a reply made by anyone but the server does not open', () => {
    const req = seal();
    // Another server that received the request cannot answer it.
    const other = X25519PrivateKey.fromBytes(fixed(9));
    expect(openRequest(other, PATHS.map, req.bytes).ok).toBe(false);
    // A reply sealed under the server's keys for another node's request does not open either.
    const otherNode = X25519PrivateKey.fromBytes(fixed(10));
    const foreign = opened(openRequest(server, PATHS.map, seal({ node: otherNode }).bytes)).sealReply(Buffer.from('x'));
    expect(req.openReply(foreign)).toBeNull();
  });
});

describe('control envelope: refusals', () => {
  it('a request sealed to server key A does not open with server key B', () => {
    const b = X25519PrivateKey.fromBytes(fixed(5));
    const req = seal();
    expect(outcome(openRequest(b, PATHS.map, req.bytes))).toBe('decrypt');
    expect(outcome(openRequest(server, PATHS.map, req.bytes))).toBe('ok');
  });

  it('binds the request to its path', () => {
    const req = seal({ path: PATHS.map });
    expect(outcome(openRequest(server, PATHS.register, req.bytes))).toBe('decrypt');
    expect(outcome(openRequest(server, PATHS.logout, req.bytes))).toBe('decrypt');
    expect(outcome(openRequest(server, `${PATHS.map}/`, req.bytes))).toBe('decrypt');
    expect(outcome(openRequest(server, '', req.bytes))).toBe('decrypt');
    expect(outcome(openRequest(server, PATHS.map, req.bytes))).toBe('ok');
  });

  it('refuses every single-byte change anywhere in a request', () => {
    const req = seal({ ephemeral: X25519PrivateKey.fromBytes(EPH), payload: Buffer.from('{"since":1}') }).bytes;
    expect(outcome(openRequest(server, PATHS.map, req))).toBe('ok');
    const wrong: string[] = [];
    for (let i = 0; i < req.length; i++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const bad = Buffer.from(req);
        bad[i] ^= mask;
        const r = outcome(openRequest(server, PATHS.map, bad));
        // What each region must say: magic and reserved are malformed, the
        // version byte is a version, anything else fails to open.
        const want = i < 4 || (i >= 5 && i < 8) ? ['malformed'] : i === 4 ? ['version'] : i < HEADER_LEN ? ['decrypt', 'low-order'] : ['decrypt'];
        if (!want.includes(r)) wrong.push(`byte ${i} ^ ${mask}: ${r}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('refuses truncated and extended requests', () => {
    const req = seal().bytes;
    for (let n = 0; n < MIN_REQUEST_LEN; n++) {
      expect(outcome(openRequest(server, PATHS.map, req.subarray(0, n))), `length ${n}`).toBe('malformed');
    }
    for (let n = MIN_REQUEST_LEN; n < req.length; n++) {
      expect(outcome(openRequest(server, PATHS.map, req.subarray(0, n))), `length ${n}`).toBe('decrypt');
    }
    expect(outcome(openRequest(server, PATHS.map, cat(req, Buffer.of(0))))).toBe('decrypt');
    // The shortest request that can open: an empty payload.
    const empty = seal({ payload: Buffer.alloc(0) }).bytes;
    expect(empty.length).toBe(MIN_REQUEST_LEN);
    expect(outcome(openRequest(server, PATHS.map, empty))).toBe('ok');
  });

  it('refuses a wrong magic, version or reserved byte with the right reason', () => {
    const req = seal().bytes;
    const withByte = (i: number, v: number) => {
      const b = Buffer.from(req);
      b[i] = v;
      return b;
    };
    const magic = Buffer.from(req);
    magic.write('MSHD', 0, 'latin1');
    expect(outcome(openRequest(server, PATHS.map, magic))).toBe('malformed');
    const lower = Buffer.from(req);
    lower.write('mshc', 0, 'latin1');
    expect(outcome(openRequest(server, PATHS.map, lower))).toBe('malformed');
    for (const v of [0, 2, 0x81, 0xff]) expect(outcome(openRequest(server, PATHS.map, withByte(4, v))), `version ${v}`).toBe('version');
    for (const i of [5, 6, 7]) {
      for (const v of [1, 0x80, 0xff]) expect(outcome(openRequest(server, PATHS.map, withByte(i, v))), `byte ${i} = ${v}`).toBe('malformed');
    }
    // A future version is recognised as such before its (unknown) layout is read.
    const v2 = withByte(4, 2);
    v2[5] = 1;
    expect(outcome(openRequest(server, PATHS.map, v2))).toBe('version');
    // A short buffer is malformed whatever it starts with.
    expect(outcome(openRequest(server, PATHS.map, withByte(4, 2).subarray(0, 20)))).toBe('malformed');
  });

  it('refuses low-order ephemeral or static keys, even in a request built as an attacker would', () => {
    const serverPub = PUB(SERVER);
    const realSs = DH(NODE, serverPub);
    const realEs = DH(EPH, serverPub);
    // Control: the same forging code with the real secrets makes a request that opens.
    const control = referenceRequest({ nodePub: PUB(NODE), ephPub: PUB(EPH), es: realEs, ss: realSs, serverPub, path: PATHS.map, now: NOW, payload: PAYLOAD });
    expect(outcome(openRequest(server, PATHS.map, control.bytes))).toBe('ok');
    const zero = Buffer.alloc(32);
    for (const lo of LOW_ORDER) {
      // A low-order node key makes ss all zeros: anyone could compute it and
      // speak as that "node" if the server went on.
      const badStatic = referenceRequest({ nodePub: lo, ephPub: PUB(EPH), es: realEs, ss: zero, serverPub, path: PATHS.map, now: NOW, payload: PAYLOAD });
      expect(['low-order', 'malformed'], `static ${lo.toString('hex')}`).toContain(outcome(openRequest(server, PATHS.map, badStatic.bytes)));
      // A low-order ephemeral makes es all zeros.
      const badEph = referenceRequest({ nodePub: PUB(NODE), ephPub: lo, es: zero, ss: realSs, serverPub, path: PATHS.map, now: NOW, payload: PAYLOAD });
      expect(['low-order', 'malformed'], `ephemeral ${lo.toString('hex')}`).toContain(outcome(openRequest(server, PATHS.map, badEph.bytes)));
      // And a real request with either key overwritten.
      for (const off of [8, 40]) {
        const b = Buffer.from(control.bytes);
        lo.copy(b, off);
        expect(['low-order', 'malformed'], `offset ${off} ${lo.toString('hex')}`).toContain(outcome(openRequest(server, PATHS.map, b)));
      }
    }
    // The node refuses to seal to a low-order server key.
    for (const lo of LOW_ORDER) expect(() => seal({ serverPublicKey: lo })).toThrow(RangeError);
  });

  it('refuses a tampered, truncated or extended reply', () => {
    const req = seal();
    const o = opened(openRequest(server, PATHS.map, req.bytes));
    const plain = Buffer.from('{"version":1,"peers":[]}');
    const reply = o.sealReply(plain);
    expect(req.openReply(reply)!.equals(plain)).toBe(true);
    const wrong: number[] = [];
    for (let i = 0; i < reply.length; i++) {
      for (const mask of [0x01, 0x80]) {
        const bad = Buffer.from(reply);
        bad[i] ^= mask;
        if (req.openReply(bad) !== null) wrong.push(i);
      }
    }
    expect(wrong).toEqual([]);
    for (let n = 0; n < reply.length; n++) expect(req.openReply(reply.subarray(0, n)), `length ${n}`).toBeNull();
    expect(req.openReply(cat(reply, Buffer.of(0)))).toBeNull();
    expect(req.openReply(Buffer.alloc(0))).toBeNull();
    // The request's own bytes are not a reply.
    expect(req.openReply(req.bytes.subarray(HEADER_LEN))).toBeNull();
  });
});

describe('one reply per request', () => {
  it('refuses to seal a second reply under the same key and nonce', async () => {
    const { sealRequest, openRequest } = await import('../../src/control/envelope.js');
    const { X25519PrivateKey } = await import('../../src/crypto/x25519.js');
    const server = X25519PrivateKey.generate();
    const req = sealRequest({ node: X25519PrivateKey.generate(), serverPublicKey: server.publicKey, path: '/p', payload: Buffer.from('{}'), now: 1 });
    const opened = openRequest(server, '/p', req.bytes);
    if (!opened.ok) throw new Error(opened.reason);
    expect(req.openReply(opened.sealReply(Buffer.from('one')))?.toString()).toBe('one');
    expect(() => opened.sealReply(Buffer.from('two'))).toThrow(/answered once/);
  });
});
