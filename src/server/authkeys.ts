// Auth keys: "mskey-<prefix>-<secret>". The prefix (12 hex digits) names the
// key in listings and finds its row; the secret (32 random bytes, base64url)
// is shown once at creation and only its SHA-256 is stored, compared in
// constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

const KEY_RE = /^mskey-([0-9a-f]{12})-([A-Za-z0-9_-]{43})$/;

export interface AuthKeyParts {
  prefix: string;
  secret: string;
}

export function generateAuthKey(random: (n: number) => Buffer = randomBytes): { key: string; prefix: string; secretHash: string } {
  const prefix = random(6).toString('hex');
  const secret = random(32).toString('base64url');
  return { key: `mskey-${prefix}-${secret}`, prefix, secretHash: hashSecret(secret) };
}

/** The parts of a well-formed key, or null. */
export function parseAuthKey(text: string): AuthKeyParts | null {
  const m = KEY_RE.exec(text.trim());
  return m ? { prefix: m[1], secret: m[2] } : null;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function secretMatches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashSecret(secret), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** "90d", "12h", "30m", "45s" or plain seconds -> milliseconds. */
export function parseDuration(text: string): number | null {
  const m = /^(\d{1,9})([smhd]?)$/.exec(text.trim());
  if (!m) return null;
  const unit = { '': 1_000, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}
