// Synchronous `ip` (iproute2) for test setup and assertions; argument arrays
// only, never a shell string, and a timeout on every call.
import { execFileSync } from 'node:child_process';

export function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
}

/** Like ip(), but reports failure instead of throwing (cleanup, probes). */
export function tryIp(...args: string[]): boolean {
  try {
    ip(...args);
    return true;
  } catch {
    return false;
  }
}
