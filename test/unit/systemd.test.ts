// The shipped unit files pass `systemd-analyze verify` (syntax, directives,
// the hardening options this systemd knows) and carry the hardening we rely on.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const unitPath = (name: string) => fileURLToPath(new URL(`../../systemd/${name}`, import.meta.url));
const UNIT = unitPath('meshd@.service');
const NODE_UNIT = unitPath('meshd.service');
const SERVER_UNIT = unitPath('meshd-server.service');
const SYSCTL_DROPIN = unitPath('99-meshd-router.conf');
// An executable that exists here: verify refuses an ExecStart binary that is
// missing, and /usr/bin/meshd exists only where scripts/install.sh ran.
const REPO_BIN = fileURLToPath(new URL('../../bin/meshd', import.meta.url));

/** Runs `systemd-analyze verify` on `text` saved as `name`; returns the lines about this unit. */
function verify(name: string, text: string): { status: number | null; lines: string[]; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-unit-'));
  try {
    const file = join(dir, name);
    writeFileSync(file, text);
    const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', timeout: 30_000 });
    expect(r.error).toBeUndefined();
    return { status: r.status, lines: r.stderr.split('\n').filter((l) => l.includes(name)), stderr: r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every value a directive has in the unit, in order (a directive may repeat). */
function values(text: string, key: string): string[] {
  return [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]);
}

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

// Hardening both new units share.
const COMMON: Record<string, string> = {
  Restart: 'on-failure',
  NoNewPrivileges: 'yes',
  ProtectSystem: 'strict',
  ProtectHome: 'yes',
  PrivateTmp: 'yes',
  ProtectKernelTunables: 'yes',
  ProtectKernelModules: 'yes',
  ProtectControlGroups: 'yes',
  RestrictAddressFamilies: 'AF_UNIX AF_INET AF_INET6 AF_NETLINK',
  RestrictNamespaces: 'yes',
  RestrictSUIDSGID: 'yes',
  LockPersonality: 'yes',
  SystemCallArchitectures: 'native',
  SystemCallErrorNumber: 'EPERM',
  DevicePolicy: 'closed',
  UMask: '0077',
};

for (const [name, path] of [
  ['meshd.service', NODE_UNIT],
  ['meshd-server.service', SERVER_UNIT],
] as const) {
  describe(`systemd/${name}`, () => {
    const text = readFileSync(path, 'utf8');

    it('verifies cleanly (with ExecStart pointed at an executable that exists here)', () => {
      expect(values(text, 'ExecStart')[0]).toMatch(/^\/usr\/bin\/meshd /);
      const r = verify(name, text.replace(/^ExecStart=\/usr\/bin\/meshd /m, `ExecStart=${REPO_BIN} `));
      expect(r.lines).toEqual([]);
      expect(r.status, r.stderr).toBe(0);
    });

    it('carries the shared hardening', () => {
      for (const [key, value] of Object.entries(COMMON)) expect(values(text, key), key).toEqual([value]);
      // An allow list that Node survives: @system-service lacks @pkey, which V8 calls at start-up.
      expect(values(text, 'SystemCallFilter')).toEqual(['@system-service @pkey', '~@privileged @resources']);
      // V8's JIT needs W+X pages.
      expect(values(text, 'MemoryDenyWriteExecute')).toEqual([]);
      expect(values(text, 'User')).toEqual([]);
    });
  });
}

describe('systemd/meshd.service (node)', () => {
  const text = readFileSync(NODE_UNIT, 'utf8');

  it('runs the daemon with its state, sockets and TUN device, and only CAP_NET_ADMIN CAP_NET_RAW', () => {
    expect(values(text, 'ExecStart')).toEqual(['/usr/bin/meshd daemon']);
    expect(values(text, 'StateDirectory')).toEqual(['meshd']);
    expect(values(text, 'StateDirectoryMode')).toEqual(['0700']);
    expect(values(text, 'RuntimeDirectory')).toEqual(['meshd wireguard']);
    // /run/wireguard is shared with meshd@ and wireguard-go: never removed on stop.
    expect(values(text, 'RuntimeDirectoryPreserve')).toEqual(['yes']);
    expect(values(text, 'CapabilityBoundingSet')).toEqual(['CAP_NET_ADMIN CAP_NET_RAW']);
    expect(values(text, 'AmbientCapabilities')).toEqual(['CAP_NET_ADMIN CAP_NET_RAW']);
    expect(values(text, 'DeviceAllow')).toEqual(['/dev/net/tun rw']);
    // PrivateDevices= would hide /dev/net/tun.
    expect(values(text, 'PrivateDevices')).toEqual([]);
    expect(values(text, 'DynamicUser')).toEqual([]);
  });

  it('keeps kernel tunables read-only and says why: forwarding comes from the sysctl drop-in', () => {
    expect(text).toMatch(/^#.*ProtectKernelTunables=yes[^\n]*\n(#[^\n]*\n)*ProtectKernelTunables=yes$/m);
    expect(text).toContain('99-meshd-router.conf');
    const dropin = readFileSync(SYSCTL_DROPIN, 'utf8');
    const settings = dropin.split('\n').filter((l) => l.trim() && !l.startsWith('#'));
    expect(settings).toEqual(['net.ipv4.ip_forward = 1', 'net.ipv6.conf.all.forwarding = 1']);
  });
});

describe('systemd/meshd-server.service (coordination server)', () => {
  const text = readFileSync(SERVER_UNIT, 'utf8');

  it('runs the server as a dynamic user with no capabilities and no devices', () => {
    expect(values(text, 'ExecStart')).toEqual(['/usr/bin/meshd server --listen :8080 --state-dir /var/lib/meshd-server']);
    expect(values(text, 'DynamicUser')).toEqual(['yes']);
    expect(values(text, 'StateDirectory')).toEqual(['meshd-server']);
    expect(values(text, 'StateDirectoryMode')).toEqual(['0700']);
    expect(values(text, 'CapabilityBoundingSet')).toEqual(['']);
    expect(values(text, 'AmbientCapabilities')).toEqual(['']);
    expect(values(text, 'PrivateDevices')).toEqual(['yes']);
    expect(values(text, 'DeviceAllow')).toEqual([]);
  });
});
