// scripts/install.sh into throwaway roots (--root: no packages, no systemctl),
// and scripts/ec2-user-data.sh with every outside command stubbed.
//
// The install uses --prebuilt (this tree's dist/ and node_modules/, built by
// the suite's global setup and `npm ci`) instead of running npm ci, which
// needs the registry and minutes; everything else is the real install, and
// the wrapper it writes really runs meshd.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const INSTALL = join(REPO, 'scripts/install.sh');
const USER_DATA = join(REPO, 'scripts/ec2-user-data.sh');

function sh(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}): SpawnSyncReturns<string> {
  const r = spawnSync('bash', args, { encoding: 'utf8', timeout: 120_000, env: opts.env ?? process.env, cwd: opts.cwd, input: opts.input });
  expect(r.error).toBeUndefined();
  return r;
}

const install = (args: string[], env?: NodeJS.ProcessEnv, script = INSTALL) => sh([script, ...args], { env });

/** Every entry under dir: type, mode, size, mtime, link target. Equal snapshots: nothing was rewritten. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const s = lstatSync(p);
      out.push(`${p.slice(dir.length)} ${s.mode.toString(8)} ${s.size} ${s.mtimeMs}${s.isSymbolicLink() ? ' -> ' + readlinkSync(p) : ''}`);
      if (s.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

const mode = (p: string) => (statSync(p).mode & 0o7777).toString(8);

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'meshd-install-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('scripts/install.sh --root', () => {
  let root: string;

  beforeAll(() => {
    root = join(tmp, 'root1');
    const r = install(['--root', root, '--prebuilt', '--router']);
    expect(r.stderr).not.toMatch(/install\.sh: (failed|warning)/);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/meshd installed in \/opt\/meshd/);
  });

  it('lays out /opt/meshd, the /usr/bin/meshd wrapper, the units, /etc/meshd and the sysctl drop-in', () => {
    const opt = join(root, 'opt/meshd');
    for (const f of ['bin/meshd', 'dist/cli/main.js', 'native/build/Release/meshd_native.node', 'package.json', 'package-lock.json', 'scripts/install.sh', 'src/cli/main.ts']) {
      expect(existsSync(join(opt, f)), f).toBe(true);
    }
    expect(existsSync(join(opt, 'node_modules/better-sqlite3'))).toBe(true);
    // Only what meshd runs with: the devDependencies were pruned.
    expect(existsSync(join(opt, 'node_modules/typescript'))).toBe(false);
    expect(existsSync(join(opt, 'node_modules/vitest'))).toBe(false);
    expect(mode(opt)).toBe('755');

    const wrapper = join(root, 'usr/bin/meshd');
    expect(mode(wrapper)).toBe('755');
    // The Node that passed the version check, by absolute path; the tree in this root.
    expect(readFileSync(wrapper, 'utf8')).toMatch(new RegExp(`^exec /\\S*node ${join(opt, 'bin/meshd').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} "\\$@"$`, 'm'));

    for (const unit of ['meshd.service', 'meshd-server.service', 'meshd@.service']) {
      const p = join(root, 'etc/systemd/system', unit);
      expect(readFileSync(p, 'utf8')).toBe(readFileSync(join(REPO, 'systemd', unit), 'utf8'));
      expect(mode(p)).toBe('644');
    }
    expect(mode(join(root, 'etc/meshd'))).toBe('700');
    const dropin = join(root, 'etc/sysctl.d/99-meshd-router.conf');
    expect(readFileSync(dropin, 'utf8')).toBe(readFileSync(join(REPO, 'systemd/99-meshd-router.conf'), 'utf8'));
  });

  it('installs a /usr/bin/meshd that runs: genkey | pubkey, --help', () => {
    const meshd = join(root, 'usr/bin/meshd');
    const key = spawnSync(meshd, ['genkey'], { encoding: 'utf8', timeout: 30_000 });
    expect(key.status, key.stderr).toBe(0);
    expect(key.stdout).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    const pub = spawnSync(meshd, ['pubkey'], { encoding: 'utf8', input: key.stdout, timeout: 30_000 });
    expect(pub.status, pub.stderr).toBe(0);
    expect(pub.stdout).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    const help = spawnSync(meshd, ['--help'], { encoding: 'utf8', timeout: 30_000 });
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/daemon/);
    expect(help.stdout).toMatch(/server/);
  });

  it('is idempotent: a second run changes nothing and says so (installing from the installed tree)', () => {
    // The installed tree is a source tree of its own, and one nobody edits
    // while the test runs.
    const script = join(root, 'opt/meshd/scripts/install.sh');
    const root2 = join(tmp, 'root2');
    const first = install(['--root', root2, '--prebuilt', '--router'], undefined, script);
    expect(first.status, first.stderr).toBe(0);
    const before = snapshot(root2);
    const second = install(['--root', root2, '--prebuilt', '--router'], undefined, script);
    expect(second.status, second.stderr).toBe(0);
    expect(second.stdout).toBe('install.sh: nothing to change: meshd in /opt/meshd is up to date\n');
    expect(snapshot(root2)).toEqual(before);
    const key = spawnSync(join(root2, 'usr/bin/meshd'), ['genkey'], { encoding: 'utf8', timeout: 30_000 });
    expect(key.status, key.stderr).toBe(0);
  });

  it('puts back what was changed by hand, and only that', () => {
    const root3 = join(tmp, 'root3');
    const script = join(root, 'opt/meshd/scripts/install.sh');
    expect(install(['--root', root3, '--prebuilt'], undefined, script).status).toBe(0);
    writeFileSync(join(root3, 'etc/systemd/system/meshd.service'), '# edited\n');
    chmodSync(join(root3, 'etc/meshd'), 0o755);
    writeFileSync(join(root3, 'opt/meshd/src/stale.ts'), '// from an older meshd\n');
    const r = install(['--root', root3, '--prebuilt'], undefined, script);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.split('\n').filter((l) => l && !l.includes('meshd installed'))).toEqual([
      'install.sh: remove 1 file(s) from /opt/meshd that meshd no longer has',
      'install.sh: install /etc/systemd/system/meshd.service',
      'install.sh: chmod 0700 /etc/meshd',
    ]);
    expect(readFileSync(join(root3, 'etc/systemd/system/meshd.service'), 'utf8')).toBe(readFileSync(join(REPO, 'systemd/meshd.service'), 'utf8'));
    expect(mode(join(root3, 'etc/meshd'))).toBe('700');
    expect(existsSync(join(root3, 'opt/meshd/src/stale.ts'))).toBe(false);
    // Without --router there is no sysctl drop-in.
    expect(existsSync(join(root3, 'etc/sysctl.d'))).toBe(false);
  });
});

describe('scripts/install.sh refusals and --dry-run', () => {
  it('--dry-run prints what it would do and creates nothing', () => {
    const root = join(tmp, 'dry');
    const r = install(['--root', root, '--dry-run', '--router']);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.every((l) => l.startsWith('install.sh: would ') || l.startsWith('install.sh: dry run: '))).toBe(true);
    expect(lines).toContain('install.sh: would build in /opt/meshd: npm ci, npm prune --omit=dev');
    expect(lines).toContain('install.sh: would install /usr/bin/meshd');
    expect(lines).toContain('install.sh: would install /etc/systemd/system/meshd.service');
    expect(lines).toContain('install.sh: would install /etc/sysctl.d/99-meshd-router.conf');
    expect(existsSync(root)).toBe(false);
  });

  it('refuses a Node older than 20.19 with one line that says how to get a newer one, before changing anything', () => {
    const shims = join(tmp, 'old-node');
    mkdirSync(shims, { recursive: true });
    writeFileSync(join(shims, 'node'), '#!/bin/sh\necho v18.19.0\n', { mode: 0o755 });
    const root = join(tmp, 'old');
    const r = install(['--root', root, '--prebuilt'], { ...process.env, PATH: `${shims}:${process.env.PATH}` });
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^install\.sh: Node\.js >= 20\.19 is required, found v18\.19\.0 at .*old-node\/node; upgrade it: /);
    expect(lines[0]).toMatch(/NodeSource/);
    expect(lines[0]).toMatch(/dnf install nodejs22/);
    expect(r.stdout).toBe('');
    expect(existsSync(root)).toBe(false);
  });

  it('accepts 20.19 and later majors, refuses 20.18', () => {
    const shims = join(tmp, 'versions');
    mkdirSync(shims, { recursive: true });
    for (const [v, ok] of [['v20.18.3', false], ['v20.19.0', true], ['v22.0.0', true], ['v24.1.0', true]] as const) {
      writeFileSync(join(shims, 'node'), `#!/bin/sh\necho ${v}\n`, { mode: 0o755 });
      const r = install(['--root', join(tmp, 'v'), '--dry-run'], { ...process.env, PATH: `${shims}:${process.env.PATH}` });
      expect(r.status, `${v}: ${r.stderr}`).toBe(ok ? 0 : 1);
    }
  });

  it('rejects bad options with one line and exit 2', () => {
    for (const args of [['--bogus'], ['--prefix', 'relative/dir'], ['--root']]) {
      const r = install(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).toMatch(/^install\.sh: /);
    }
  });
});

describe('scripts/ec2-user-data.sh', () => {
  const text = readFileSync(USER_DATA, 'utf8');
  const KEY = 'mk-secret-0123456789abcdefSECRET';

  it('is valid bash', () => {
    const r = sh(['-n', USER_DATA]);
    expect(r.status, r.stderr).toBe(0);
  });

  it('has its settings at the top, and never traces, echoes or passes the key as an argument', () => {
    for (const v of ['MESHD_GIT_URL', 'LOGIN_SERVER', 'AUTHKEY', 'AUTHKEY_SSM_PARAMETER', 'VPC_CIDR']) expect(text).toMatch(new RegExp(`^${v}="`, 'm'));
    expect(text).not.toMatch(/set -[a-z]*x|xtrace/);
    const uses = text.split('\n').filter((l) => /\$\{?AUTHKEY\b(?!_)/.test(l) && !l.trim().startsWith('#'));
    // Only a test for emptiness and the write into the key file.
    expect(uses.map((l) => l.trim()).sort()).toEqual([
      '[[ -n $AUTHKEY || -n $AUTHKEY_SSM_PARAMETER ]] || die "set AUTHKEY or AUTHKEY_SSM_PARAMETER at the top of the user data"',
      `printf '%s\\n' "$AUTHKEY" >"$tmp"`,
    ]);
    expect(text).toMatch(/meshd up --login-server "\$LOGIN_SERVER" --authkey file:"\$AUTHKEY_FILE" \\\n\s+--advertise-routes "\$VPC_CIDR"/);
    expect(text).toMatch(/install\.sh" --router/);
    expect(text).toMatch(/systemctl enable --now meshd\.service/);
  });

  // Stubs for every outside command main() runs; each logs its argv.
  function stubs(dir: string, log: string) {
    mkdirSync(dir, { recursive: true });
    const stub = (name: string, body: string) => writeFileSync(join(dir, name), `#!/bin/bash\nprintf '%s\\n' "${name} $*" >>${log}\n${body}\n`, { mode: 0o755 });
    // Node is "installed" by dnf: older before, 22 after.
    stub('node', `[[ -f ${dir}/.node22 ]] && echo v22.11.0 || echo v18.19.0`);
    stub('npm', 'true');
    stub('dnf', `[[ "$*" == *nodejs22* ]] && touch ${dir}/.node22; true`);
    stub('alternatives', 'true');
    // install.sh, as the clone brings it: logs its arguments.
    writeFileSync(join(dir, '.install.sh'), `#!/bin/bash\nprintf '%s\\n' "install.sh $*" >>${log}\n`, { mode: 0o755 });
    stub('git', `case $1 in clone) d=\${@: -1}; mkdir -p "$d/scripts"; cp ${dir}/.install.sh "$d/scripts/install.sh";; -C) echo 0123abc;; esac`);
    stub('systemctl', 'true');
    stub('meshd', '[[ $1 == ip ]] && echo 100.64.0.7; true');
    stub('curl', `case "$*" in *api/token*) echo tok;; *vpc-ipv4-cidr-blocks*) printf '10.0.0.0/16\\n10.1.0.0/16\\n';; */mac*) echo 0a:00:00:00:00:01;; *placement/region*) echo eu-west-1;; *) exit 22;; esac`);
    stub('aws', `printf '%s\\n' '${KEY}'`);
  }

  async function runMain(settings: string): Promise<{ r: SpawnSyncReturns<string>; dir: string; log: string }> {
    const dir = mkdtempSync(join(tmp, 'ud-'));
    const log = join(dir, 'argv.log');
    stubs(join(dir, 'bin'), log);
    const sock = join(dir, 'meshd.sock');
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      const script = `source ${USER_DATA}
${settings}
SRC_DIR=${dir}/src
AUTHKEY_FILE=${dir}/etc/meshd/authkey
MESHD_SOCKET=${sock}
main`;
      const r = spawnSync('bash', ['-c', script], {
        encoding: 'utf8',
        timeout: 60_000,
        env: { PATH: `${dir}/bin:/usr/bin:/bin`, HOME: dir },
      });
      return { r, dir, log };
    } finally {
      server.close();
    }
  }

  it('installs Node, meshd and the key, starts the daemon and joins, advertising the VPC; the key appears in no output and no argv', async () => {
    const { r, dir, log } = await runMain(`AUTHKEY='${KEY}'; LOGIN_SERVER=https://coord.test`);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(KEY);
    const argv = readFileSync(log, 'utf8');
    expect(argv).not.toContain(KEY);
    expect(argv).toMatch(/^dnf install -y -q nodejs22 nodejs22-npm$/m);
    expect(argv).toMatch(/^install\.sh --router$/m);
    expect(argv).toMatch(/^systemctl enable --now meshd\.service$/m);
    expect(argv).toMatch(
      new RegExp(`^meshd up --login-server https://coord.test --authkey file:${dir}/etc/meshd/authkey --advertise-routes 10\\.0\\.0\\.0/16,10\\.1\\.0\\.0/16 --snat-subnet-routes=true$`, 'm'),
    );
    const keyFile = join(dir, 'etc/meshd/authkey');
    expect(readFileSync(keyFile, 'utf8')).toBe(`${KEY}\n`);
    expect(mode(keyFile)).toBe('600');
    expect(mode(join(dir, 'etc/meshd'))).toBe('700');
    expect(readdirSync(join(dir, 'etc/meshd'))).toEqual(['authkey']);
  });

  it('reads the key from an SSM parameter (region from instance metadata) without printing it', async () => {
    const { r, dir, log } = await runMain(`AUTHKEY_SSM_PARAMETER=/meshd/router-authkey; VPC_CIDR=10.9.0.0/16`);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(KEY);
    const argv = readFileSync(log, 'utf8');
    expect(argv).toMatch(/^aws ssm get-parameter --region eu-west-1 --name \/meshd\/router-authkey --with-decryption --query Parameter.Value --output text$/m);
    expect(argv).toMatch(/--advertise-routes 10\.9\.0\.0\/16 /);
    expect(readFileSync(join(dir, 'etc/meshd/authkey'), 'utf8')).toBe(`${KEY}\n`);
    expect(mode(join(dir, 'etc/meshd/authkey'))).toBe('600');
  });

  it('stops with one line when no key is set, before installing anything', async () => {
    const { r, log } = await runMain('');
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe('meshd user-data: set AUTHKEY or AUTHKEY_SSM_PARAMETER at the top of the user data');
    expect(existsSync(log) ? readFileSync(log, 'utf8') : '').toBe('');
  });
});
