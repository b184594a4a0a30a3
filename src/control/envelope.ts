// The control channel's sealed envelope: every node -> server request and its
// reply are encrypted and authenticated even over plain HTTP (a VPC is not a
// trusted network). The construction is the Noise X pattern's single message
// (Noise spec rev 34, §7.4: "-> e, es, s, ss"), with the node's static key
// sent in clear beside the ephemeral, and a reply under a second key from
// the same chain:
//
//   request  = header || AEAD(k_req, 0, timestamp_ms:u64be || payload, AD)
//   header   = "MSHC" || version:u8 || 0:u24 || S_node_pub(32) || E_pub(32)
//   AD       = HASH(LABEL || S_server_pub || header || path)
//   C        = KDF1(HASH(LABEL), DH(E, S_server))                       -- es
//   k_req, k_resp = KDF2(C, DH(S_node, S_server))                      -- ss
//   reply    = AEAD(k_resp, 0, payload, HASH(AD || request tag))
//
// What that gives: only the holder of the node's private key can make a
// request that opens (ss); only the holder of the server's private key can
// open it or make a reply that opens (es and ss both need it), so a node
// that pins the server's public key talks to that server and no other; the
// reply is bound to one request (a fresh E each time). Replay of a captured
// request is stopped by the server's freshness guard (freshness.ts) on the
// timestamp and E. HASH/KDF are WireGuard's BLAKE2s constructions.
import { aead, blake2s } from '../crypto/index.js';
import { dh, publicKeyObject, X25519PrivateKey, KEY_LEN } from '../crypto/x25519.js';

const LABEL = Buffer.from('meshd control v1 Noise_X_25519_ChaChaPoly_BLAKE2s');
const MAGIC = Buffer.from('MSHC');
export const ENVELOPE_VERSION = 1;
export const HEADER_LEN = 4 + 4 + KEY_LEN + KEY_LEN;
const TIMESTAMP_LEN = 8;
/** The smallest request that can open: header, timestamp, tag. */
export const MIN_REQUEST_LEN = HEADER_LEN + TIMESTAMP_LEN + aead.TAG_LEN;

const C0 = blake2s.hash(LABEL);

export type EnvelopeRefusal = 'malformed' | 'version' | 'low-order' | 'decrypt';

export interface SealedRequest {
  bytes: Buffer;
  /** The reply's plaintext, or null if it is not this server's reply to this request. */
  openReply(reply: Uint8Array): Buffer | null;
}

export type OpenedRequest =
  | {
      ok: true;
      nodeKey: Buffer;
      ephemeralKey: Buffer;
      timestamp: number;
      payload: Buffer;
      sealReply(payload: Uint8Array): Buffer;
    }
  | { ok: false; reason: EnvelopeRefusal };

interface Keys {
  kReq: Buffer;
  kResp: Buffer;
  ad: Buffer;
}

function deriveKeys(es: Buffer, ss: Buffer, serverPublicKey: Uint8Array, header: Uint8Array, path: string): Keys {
  const c = blake2s.kdf1(C0, es);
  const [kReq, kResp] = blake2s.kdf2(c, ss);
  const ad = blake2s.hash(LABEL, serverPublicKey, header, Buffer.from(path));
  es.fill(0);
  ss.fill(0);
  return { kReq, kResp, ad };
}

function replyAd(ad: Buffer, request: Uint8Array): Buffer {
  return blake2s.hash(ad, request.subarray(request.length - aead.TAG_LEN));
}

export interface SealOptions {
  node: X25519PrivateKey;
  serverPublicKey: Uint8Array;
  /** The HTTP path: a request cannot be replayed against another endpoint. */
  path: string;
  payload: Uint8Array;
  /** Milliseconds since the epoch, in the server's clock as best the node knows it. */
  now: number;
  ephemeral?: X25519PrivateKey;
}

export function sealRequest(o: SealOptions): SealedRequest {
  const e = o.ephemeral ?? X25519PrivateKey.generate();
  const serverKey = publicKeyObject(o.serverPublicKey);
  const es = dh(e, serverKey);
  const ss = dh(o.node, serverKey);
  if (!es || !ss) throw new RangeError('the server public key is a low-order point');
  const header = Buffer.alloc(HEADER_LEN);
  MAGIC.copy(header, 0);
  header[4] = ENVELOPE_VERSION;
  o.node.publicKey.copy(header, 8);
  e.publicKey.copy(header, 8 + KEY_LEN);
  const { kReq, kResp, ad } = deriveKeys(es, ss, o.serverPublicKey, header, o.path);
  const plain = Buffer.alloc(TIMESTAMP_LEN + o.payload.length);
  plain.writeBigUInt64BE(BigInt(Math.floor(o.now)), 0);
  plain.set(o.payload, TIMESTAMP_LEN);
  const bytes = Buffer.concat([header, aead.sealNew(kReq, 0, plain, ad)]);
  kReq.fill(0);
  plain.fill(0);
  const rad = replyAd(ad, bytes);
  return {
    bytes,
    openReply: (reply) => aead.open(kResp, 0, reply, rad),
  };
}

export function openRequest(server: X25519PrivateKey, path: string, bytes: Uint8Array): OpenedRequest {
  if (bytes.length < MIN_REQUEST_LEN || !MAGIC.equals(bytes.subarray(0, 4))) return { ok: false, reason: 'malformed' };
  if (bytes[4] !== ENVELOPE_VERSION) return { ok: false, reason: 'version' };
  if (bytes[5] | bytes[6] | bytes[7]) return { ok: false, reason: 'malformed' };
  const header = bytes.subarray(0, HEADER_LEN);
  const nodeKey = Buffer.from(bytes.subarray(8, 8 + KEY_LEN));
  const ephemeralKey = Buffer.from(bytes.subarray(8 + KEY_LEN, HEADER_LEN));
  let es: Buffer | null;
  let ss: Buffer | null;
  try {
    es = dh(server, publicKeyObject(ephemeralKey));
    ss = dh(server, publicKeyObject(nodeKey));
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  if (!es || !ss) return { ok: false, reason: 'low-order' };
  const { kReq, kResp, ad } = deriveKeys(es, ss, server.publicKey, header, path);
  const plain = aead.open(kReq, 0, bytes.subarray(HEADER_LEN), ad);
  kReq.fill(0);
  if (!plain) return { ok: false, reason: 'decrypt' };
  const rad = replyAd(ad, bytes);
  let replied = false;
  return {
    ok: true,
    nodeKey,
    ephemeralKey,
    timestamp: Number(plain.readBigUInt64BE(0)),
    payload: plain.subarray(TIMESTAMP_LEN),
    sealReply: (payload) => {
      // One reply per request: k_resp with nonce 0 must never seal twice.
      if (replied) throw new Error('a control request is answered once');
      replied = true;
      const out = aead.sealNew(kResp, 0, payload, rad);
      kResp.fill(0);
      return out;
    },
  };
}
