// `meshd genkey | pubkey | genpsk` against the real wg tool: the same key
// format, the same public keys byte for byte, the same refusal of bad input.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const MESHD = fileURLToPath(new URL('../../bin/meshd', import.meta.url));
const WG = '/usr/bin/wg';
const hasWg = existsSync(WG);

const meshd = (args: string[], input?: string) => spawnSync(MESHD, args, { input, encoding: 'utf8', timeout: 20_000 });
const wg = (args: string[], input?: string) => spawnSync(WG, args, { input, encoding: 'utf8', timeout: 20_000 });

describe('meshd genkey / pubkey / genpsk', () => {
  it('genkey prints a clamped 32-byte key in base64 and a newline', () => {
    const r = meshd(['genkey']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    const k = Buffer.from(r.stdout.trim(), 'base64');
    expect(k.length).toBe(32);
    expect(k[0] & 7).toBe(0);
    expect(k[31] & 0xc0).toBe(0x40);
    expect(meshd(['genkey']).stdout).not.toBe(r.stdout);
  });

  it('genpsk prints 32 random bytes', () => {
    const r = meshd(['genpsk']);
    expect(r.status).toBe(0);
    expect(Buffer.from(r.stdout.trim(), 'base64').length).toBe(32);
  });

  it('rejects malformed private keys with one line and exit 1', () => {
    for (const bad of ['', 'garbage\n', 'AAAA', Buffer.alloc(31).toString('base64'), Buffer.alloc(33).toString('base64')]) {
      const r = meshd(['pubkey'], bad);
      expect(r.status).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/not the correct length or format/);
    }
  });

  it('an unknown command is a usage error', () => {
    const r = meshd(['no-such-command']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Unknown argument|no-such-command/);
  });
});

describe.skipIf(!hasWg)('byte-identical to the wg tool', () => {
  it('meshd pubkey equals wg pubkey for wg-generated keys', () => {
    for (let i = 0; i < 8; i++) {
      const priv = execFileSync(WG, ['genkey'], { encoding: 'utf8' });
      expect(meshd(['pubkey'], priv).stdout).toBe(wg(['pubkey'], priv).stdout);
    }
  });

  it('wg pubkey equals meshd pubkey for meshd-generated keys', () => {
    for (let i = 0; i < 8; i++) {
      const priv = meshd(['genkey']).stdout;
      expect(wg(['pubkey'], priv).stdout).toBe(meshd(['pubkey'], priv).stdout);
    }
  });

  it('both clamp an unclamped private key the same way', () => {
    for (let i = 0; i < 8; i++) {
      const raw = randomBytes(32);
      raw[0] |= 7;
      raw[31] |= 0x80;
      const text = raw.toString('base64') + '\n';
      const ours = meshd(['pubkey'], text);
      expect(ours.status).toBe(0);
      expect(ours.stdout).toBe(wg(['pubkey'], text).stdout);
    }
  });

  it('both refuse the same malformed input', () => {
    for (const bad of ['nope\n', Buffer.alloc(16).toString('base64') + '\n']) {
      expect(wg(['pubkey'], bad).status).not.toBe(0);
      expect(meshd(['pubkey'], bad).status).not.toBe(0);
    }
  });
});
