// `meshd genkey | pubkey | genpsk`: byte-for-byte what `wg genkey`, `wg pubkey`
// and `wg genpsk` print — base64 of 32 bytes and a newline. The private key is
// clamped (RFC 7748 §5) before encoding, as wg does.
import { randomBytes } from 'node:crypto';
import { generatePrivateKeyBytes, X25519PrivateKey } from '../crypto/x25519.js';
import { decodeKeyBase64, encodeKeyBase64 } from '../config/keys.js';
import { CliError } from './errors.js';

export function genkey(): string {
  const key = generatePrivateKeyBytes();
  const text = encodeKeyBase64(key);
  key.fill(0);
  return text + '\n';
}

export function genpsk(): string {
  const key = randomBytes(32);
  const text = encodeKeyBase64(key);
  key.fill(0);
  return text + '\n';
}

/** The public key of the private key in `input` (surrounding whitespace allowed, as wg allows). */
export function pubkey(input: string): string {
  let raw: Uint8Array;
  try {
    raw = decodeKeyBase64(input.trim());
  } catch {
    throw new CliError('EKEY', 'Key is not the correct length or format');
  }
  const pub = X25519PrivateKey.fromBytes(raw).publicKey;
  raw.fill(0);
  return encodeKeyBase64(pub) + '\n';
}

/** Reads all of stdin, bounded: a key is 44 characters, so a megabyte is plenty. */
export async function readStdin(limit = 1 << 20): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of process.stdin) {
    total += (chunk as Buffer).length;
    if (total > limit) throw new CliError('EINPUT', 'standard input too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
