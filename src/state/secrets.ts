// Files that hold secrets or state: written whole or not at all (temp file,
// fsync, rename), mode 0600 from the moment they exist, so a crash leaves
// the old contents or the new, never half of one, and no other user can read
// them at any point.
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, statSync, writeSync, chmodSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import { decodeKeyBase64, encodeKeyBase64, KeyFormatError } from '../config/keys.js';
import { generatePrivateKeyBytes } from '../crypto/x25519.js';

export class StateError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'StateError';
  }
}

export function writeSecretFile(path: string, text: string): void {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  // The directory entry too, so the rename survives a power cut.
  const dfd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/** A file's text, refusing one that others may read (it would have leaked already). */
export function readSecretFile(path: string): string {
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) {
    chmodSync(path, 0o600);
  }
  return readFileSync(path, 'utf8');
}

/** A base64 X25519 private key from `path`, generated (0600) if the file does not exist. */
export function loadOrCreateKey(path: string): Uint8Array {
  if (existsSync(path)) {
    try {
      return decodeKeyBase64(readSecretFile(path).trim());
    } catch (err) {
      if (err instanceof KeyFormatError) throw new StateError('ESTATE', `${path} does not hold a base64 private key`);
      throw err;
    }
  }
  const key = generatePrivateKeyBytes();
  writeSecretFile(path, `${encodeKeyBase64(key)}\n`);
  return key;
}
