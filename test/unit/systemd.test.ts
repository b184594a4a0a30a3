// The shipped unit files pass `systemd-analyze verify` (syntax, directives,
// the hardening options this systemd knows) for a concrete instance.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const UNIT = fileURLToPath(new URL('../../systemd/meshd@.service', import.meta.url));

describe('systemd/meshd@.service', () => {
  it('verifies cleanly as meshd@wg0.service', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-unit-'));
    try {
      const inst = join(dir, 'meshd@wg0.service');
      copyFileSync(UNIT, inst);
      const r = spawnSync('systemd-analyze', ['verify', inst], { encoding: 'utf8', timeout: 30_000 });
      expect(r.error).toBeUndefined();
      expect(r.stderr.split('\n').filter((l) => l.includes('meshd@'))).toEqual([]);
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs the daemon on the instance name and keeps only the capabilities it needs', () => {
    const text = readFileSync(UNIT, 'utf8');
    expect(text).toMatch(/^ExecStart=.*meshd daemon --tun %i --config \/etc\/meshd\/%i\.conf$/m);
    expect(text).toMatch(/^CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW$/m);
    expect(text).toMatch(/^DeviceAllow=\/dev\/net\/tun rw$/m);
    expect(text).toMatch(/^NoNewPrivileges=yes$/m);
  });
});
