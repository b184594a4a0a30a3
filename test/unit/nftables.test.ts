import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Forwarding, FORWARDING_PATHS } from '../../src/system/forwarding.js';
import { SystemError } from '../../src/system/netlink.js';
import { applyRuleset, currentRuleset, removeRuleset, renderRemoval, renderRuleset, type RouterRules } from '../../src/system/nftables.js';

/** Rendering errors are thrown synchronously; this returns one for matching. */
function renderError(r: RouterRules, table?: string): unknown {
  try {
    renderRuleset(r, table);
  } catch (err) {
    return err;
  }
  throw new Error('renderRuleset accepted it');
}

describe('renderRuleset', () => {
  it('IPv4 routes with SNAT: forward accepts, return traffic, masquerade of overlay sources', () => {
    expect(renderRuleset({ tun: 'meshd0', routes: ['10.0.0.0/16'], snat: true })).toBe(
      [
        'table inet meshd {}',
        'delete table inet meshd',
        'table inet meshd {',
        '\tchain forward {',
        '\t\ttype filter hook forward priority filter; policy accept;',
        '\t\tiifname "meshd0" ip daddr 10.0.0.0/16 accept',
        '\t\toifname "meshd0" ct state established,related accept',
        '\t\toifname "meshd0" ip saddr 10.0.0.0/16 ip daddr 100.64.0.0/10 accept',
        '\t}',
        '',
        '\tchain postrouting {',
        '\t\ttype nat hook postrouting priority srcnat; policy accept;',
        '\t\tip saddr 100.64.0.0/10 oifname != "meshd0" masquerade',
        '\t\tip6 saddr fd7a:115c:a1e0::/48 oifname != "meshd0" masquerade',
        '\t}',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('IPv4 routes without SNAT: no nat chain at all', () => {
    expect(renderRuleset({ tun: 'meshd0', routes: ['10.0.0.0/16'], snat: false })).toBe(
      [
        'table inet meshd {}',
        'delete table inet meshd',
        'table inet meshd {',
        '\tchain forward {',
        '\t\ttype filter hook forward priority filter; policy accept;',
        '\t\tiifname "meshd0" ip daddr 10.0.0.0/16 accept',
        '\t\toifname "meshd0" ct state established,related accept',
        '\t\toifname "meshd0" ip saddr 10.0.0.0/16 ip daddr 100.64.0.0/10 accept',
        '\t}',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('IPv4 and IPv6 routes with SNAT: sets for several prefixes, normalised and sorted', () => {
    const r: RouterRules = { tun: 'meshd0', routes: ['192.168.7.9/24', 'FD00:10:0::/64', '10.0.0.0/16', '2001:db8::1', '10.0.0.0/16'], snat: true };
    expect(renderRuleset(r)).toBe(
      [
        'table inet meshd {}',
        'delete table inet meshd',
        'table inet meshd {',
        '\tchain forward {',
        '\t\ttype filter hook forward priority filter; policy accept;',
        '\t\tiifname "meshd0" ip daddr { 10.0.0.0/16, 192.168.7.0/24 } accept',
        '\t\tiifname "meshd0" ip6 daddr { 2001:db8::1/128, fd00:10::/64 } accept',
        '\t\toifname "meshd0" ct state established,related accept',
        '\t\toifname "meshd0" ip saddr { 10.0.0.0/16, 192.168.7.0/24 } ip daddr 100.64.0.0/10 accept',
        '\t\toifname "meshd0" ip6 saddr { 2001:db8::1/128, fd00:10::/64 } ip6 daddr fd7a:115c:a1e0::/48 accept',
        '\t}',
        '',
        '\tchain postrouting {',
        '\t\ttype nat hook postrouting priority srcnat; policy accept;',
        '\t\tip saddr 100.64.0.0/10 oifname != "meshd0" masquerade',
        '\t\tip6 saddr fd7a:115c:a1e0::/48 oifname != "meshd0" masquerade',
        '\t}',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('IPv4 and IPv6 routes without SNAT, another table and TUN name', () => {
    expect(renderRuleset({ tun: 'wg-x.1', routes: ['fd00:10::/64', '10.1.0.0/16'], snat: false }, 'meshd_test')).toBe(
      [
        'table inet meshd_test {}',
        'delete table inet meshd_test',
        'table inet meshd_test {',
        '\tchain forward {',
        '\t\ttype filter hook forward priority filter; policy accept;',
        '\t\tiifname "wg-x.1" ip daddr 10.1.0.0/16 accept',
        '\t\tiifname "wg-x.1" ip6 daddr fd00:10::/64 accept',
        '\t\toifname "wg-x.1" ct state established,related accept',
        '\t\toifname "wg-x.1" ip saddr 10.1.0.0/16 ip daddr 100.64.0.0/10 accept',
        '\t\toifname "wg-x.1" ip6 saddr fd00:10::/64 ip6 daddr fd7a:115c:a1e0::/48 accept',
        '\t}',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('renders equal scripts for equal route sets however spelled, and drops prefixes inside others', () => {
    const a = renderRuleset({ tun: 'meshd0', routes: ['10.0.0.0/8', '10.1.2.0/24', '10.1.2.3', 'fd00::/8', 'fd00:1::/64'], snat: true });
    const b = renderRuleset({ tun: 'meshd0', routes: [' fd00::1/8', '10.9.9.9/8'], snat: true });
    expect(a).toBe(b);
    expect(a).toContain('iifname "meshd0" ip daddr 10.0.0.0/8 accept\n');
    expect(a).toContain('iifname "meshd0" ip6 daddr fd00::/8 accept\n');
  });

  it('with no routes still lets replies back and masquerades', () => {
    const s = renderRuleset({ tun: 'meshd0', routes: [], snat: true });
    expect(s).not.toContain('daddr 10.');
    expect(s).toContain('\t\toifname "meshd0" ct state established,related accept\n');
    expect(s).toContain('\t\tip saddr 100.64.0.0/10 oifname != "meshd0" masquerade\n');
  });

  it('takes other overlay prefixes, per family', () => {
    const s = renderRuleset({ tun: 'meshd0', routes: ['10.0.0.0/16', 'fd00:10::/64'], snat: true, overlay: ['100.100.0.0/16'] });
    expect(s).toContain('\t\toifname "meshd0" ip saddr 10.0.0.0/16 ip daddr 100.100.0.0/16 accept\n');
    expect(s).not.toContain('ip6 saddr fd00:10::/64 ip6 daddr');
    expect(s).toContain('\t\tip saddr 100.100.0.0/16 oifname != "meshd0" masquerade\n');
    expect(s).not.toContain('ip6 saddr fd7a');
  });

  it('never flushes anything and names only its own table', () => {
    for (const snat of [true, false]) {
      const s = renderRuleset({ tun: 'meshd0', routes: ['10.0.0.0/16', 'fd00::/64'], snat });
      expect(s).not.toMatch(/flush|ruleset/);
      const tables = [...s.matchAll(/\btable\s+(\S+)\s+(\S+)/g)].map((m) => `${m[1]} ${m[2]}`);
      expect(new Set(tables)).toEqual(new Set(['inet meshd']));
    }
    expect(renderRemoval()).toBe('table inet meshd {}\ndelete table inet meshd\n');
  });

  it.each([
    'meshd0; flush ruleset',
    'meshd0"; flush ruleset; "',
    'meshd0\nflush ruleset',
    'meshd\\0',
    'meshd*',
    'mesh d0',
    '{meshd0}',
    '',
    '.',
    '..',
    'a-very-long-name0', // 17 > IFNAMSIZ - 1
    'meshd0/x',
    'eth0:1',
  ])('refuses the interface name %j', (tun) => {
    const err = renderError({ tun, routes: ['10.0.0.0/16'], snat: true });
    expect(err).toBeInstanceOf(SystemError);
    expect(err).toMatchObject({ code: 'EINVAL', operation: 'cannot render nftables table inet meshd' });
    expect((err as Error).message).toContain('invalid interface name');
  });

  it.each([
    '10.0.0.0/16; flush ruleset',
    '10.0.0.0/16 }; flush ruleset; {',
    '"10.0.0.0/16"',
    "'10.0.0.0/16'",
    '10.0.0.0/16"',
    '10.0.0.0/16\nflush ruleset',
    '10.0.0.0/16, 10.1.0.0/16',
    '10.0.0.0-10.0.0.255',
    '10.0.0.0/33',
    'fe80::1%eth0/64',
    '@myset',
    '$var',
    '',
    'meshd',
  ])('refuses the route %j', (route) => {
    const err = renderError({ tun: 'meshd0', routes: ['10.1.0.0/16', route], snat: true });
    expect(err).toBeInstanceOf(SystemError);
    expect(err).toMatchObject({ code: 'EINVAL' });
    expect((err as Error).message).toContain(`route ${JSON.stringify(route)} is not an IPv4 or IPv6 CIDR`);
  });

  it('refuses a bad overlay prefix, a non-list, a non-string and a non-boolean snat', () => {
    expect(renderError({ tun: 'meshd0', routes: [], snat: true, overlay: ['100.64.0.0/10"'] })).toMatchObject({ code: 'EINVAL' });
    expect(renderError({ tun: 'meshd0', routes: '10.0.0.0/8' as unknown as string[], snat: true })).toMatchObject({ code: 'EINVAL' });
    expect(renderError({ tun: 'meshd0', routes: [42 as unknown as string], snat: true })).toMatchObject({ code: 'EINVAL' });
    expect(renderError({ tun: 'meshd0', routes: [], snat: 'yes' as unknown as boolean })).toMatchObject({ code: 'EINVAL' });
  });

  it.each(['meshd; flush ruleset', 'meshd }', 'ip filter', '"meshd"', '', '0meshd', 'mesh-d', 'x'.repeat(65)])('refuses the table name %j', (table) => {
    const err = renderError({ tun: 'meshd0', routes: [], snat: true }, table);
    expect(err).toBeInstanceOf(SystemError);
    expect(err).toMatchObject({ code: 'EINVAL' });
    expect((err as Error).message).toContain('invalid table name');
    expect(() => renderRemoval(table)).toThrow(SystemError);
  });
});

describe('the nft adapter, with a stand-in nft', () => {
  let dir: string;
  const rules: RouterRules = { tun: 'meshd0', routes: ['10.0.0.0/16'], snat: true };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'meshd-nft-unit-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** An executable "nft" that records its arguments and stdin, prints `stderr` and exits with `code`. */
  function fakeNft(code: number, stderr = '', stdout = '', sleepS = 0): string {
    const path = join(dir, 'nft');
    writeFileSync(
      path,
      `#!/bin/sh\nprintf '%s\\n' "$@" > "${dir}/args"\ncat > "${dir}/stdin"\n${sleepS ? `sleep ${sleepS}\n` : ''}printf '%s' '${stdout}'\nprintf '%s' '${stderr}' >&2\nexit ${code}\n`,
    );
    chmodSync(path, 0o755);
    return path;
  }

  it('feeds the rendered script to `nft -f -` on stdin', async () => {
    const nft = fakeNft(0);
    await applyRuleset(rules, { nft });
    expect(readFileSync(join(dir, 'args'), 'utf8')).toBe('-f\n-\n');
    expect(readFileSync(join(dir, 'stdin'), 'utf8')).toBe(renderRuleset(rules));
  });

  it('removes by the create-then-delete idiom, so an absent table is no error', async () => {
    const nft = fakeNft(0);
    await removeRuleset('meshd', { nft });
    expect(readFileSync(join(dir, 'stdin'), 'utf8')).toBe('table inet meshd {}\ndelete table inet meshd\n');
  });

  it("puts nft's message in the error, with an errno and a hint", async () => {
    const nft = fakeNft(1, 'netlink: Error: cache initialization failed: Operation not permitted');
    const err = await applyRuleset(rules, { nft }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SystemError);
    expect(err).toMatchObject({
      code: 'EPERM',
      message: 'cannot apply nftables table inet meshd: netlink: Error: cache initialization failed: Operation not permitted (nftables needs root or CAP_NET_ADMIN)',
    });
    const syntax = await applyRuleset(rules, { nft: fakeNft(1, 'Error: syntax error, unexpected junk') }).catch((e: unknown) => e);
    expect(syntax).toMatchObject({ code: 'EINVAL', message: 'cannot apply nftables table inet meshd: Error: syntax error, unexpected junk' });
  });

  it('does not run nft for rules it refuses', async () => {
    const nft = fakeNft(0);
    await expect(applyRuleset({ ...rules, tun: 'x; flush ruleset' }, { nft })).rejects.toMatchObject({ code: 'EINVAL' });
    expect(existsSync(join(dir, 'args'))).toBe(false);
  });

  it('names a missing nft binary', async () => {
    await expect(applyRuleset(rules, { nft: join(dir, 'no-such-nft') })).rejects.toMatchObject({
      code: 'ENOENT',
      message: expect.stringContaining('not found (install the nftables package'),
    });
  });

  it('kills nft after the timeout', async () => {
    const nft = fakeNft(0, '', '', 5);
    const t0 = Date.now();
    await expect(applyRuleset(rules, { nft, timeoutMs: 300 })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    expect(Date.now() - t0).toBeLessThan(4_000);
  });

  it('currentRuleset: the listing, or null for a missing table', async () => {
    expect(await currentRuleset('meshd', { nft: fakeNft(0, '', 'table inet meshd {\n}\n') })).toBe('table inet meshd {\n}\n');
    expect(readFileSync(join(dir, 'args'), 'utf8')).toBe('list\ntable\ninet\nmeshd\n');
    expect(await currentRuleset('meshd', { nft: fakeNft(1, 'Error: No such file or directory\nlist table inet meshd\n') })).toBeNull();
    await expect(currentRuleset('meshd', { nft: fakeNft(1, 'Operation not permitted') })).rejects.toMatchObject({ code: 'EPERM' });
  });
});

describe('Forwarding', () => {
  let dir: string;
  let paths: { ipv4: string; ipv6: string };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'meshd-fwd-unit-'));
    paths = { ipv4: join(dir, 'ip_forward'), ipv6: join(dir, 'forwarding') };
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const read = (p: string) => readFileSync(p, 'utf8');

  it('defaults to the /proc/sys files', () => {
    expect(FORWARDING_PATHS).toEqual({ ipv4: '/proc/sys/net/ipv4/ip_forward', ipv6: '/proc/sys/net/ipv6/conf/all/forwarding' });
  });

  it('turns both on and restores what they were', async () => {
    writeFileSync(paths.ipv4, '0\n');
    writeFileSync(paths.ipv6, '0\n');
    const f = new Forwarding(paths);
    expect(await f.enable()).toEqual({ ipv4: 'enabled', ipv6: 'enabled' });
    expect([read(paths.ipv4), read(paths.ipv6)]).toEqual(['1\n', '1\n']);
    expect(f.changed).toBe(true);
    // Enabling again must not make '1' the value to restore.
    expect(await f.enable()).toEqual({ ipv4: 'already', ipv6: 'already' });
    await f.restore();
    expect([read(paths.ipv4), read(paths.ipv6)]).toEqual(['0\n', '0\n']);
    expect(f.changed).toBe(false);
    await f.restore(); // nothing left to do
    expect([read(paths.ipv4), read(paths.ipv6)]).toEqual(['0\n', '0\n']);
  });

  it('leaves alone what was already on, without writing it', async () => {
    writeFileSync(paths.ipv4, '1\n');
    writeFileSync(paths.ipv6, '0\n');
    chmodSync(paths.ipv4, 0o444); // a write would fail for non-root; read-only is fine
    const f = new Forwarding(paths);
    expect(await f.enable()).toEqual({ ipv4: 'already', ipv6: 'enabled' });
    await f.restore();
    expect([read(paths.ipv4), read(paths.ipv6)]).toEqual(['1\n', '0\n']);
  });

  it('does not overrule a change made since', async () => {
    writeFileSync(paths.ipv4, '0\n');
    writeFileSync(paths.ipv6, '0\n');
    const f = new Forwarding(paths);
    await f.enable();
    writeFileSync(paths.ipv4, '0\n'); // an administrator turned it off meanwhile
    await f.restore();
    expect([read(paths.ipv4), read(paths.ipv6)]).toEqual(['0\n', '0\n']);
  });

  it('treats a missing IPv6 sysctl as IPv6 unavailable', async () => {
    writeFileSync(paths.ipv4, '0\n');
    const f = new Forwarding({ ipv4: paths.ipv4, ipv6: join(dir, 'no-ipv6') });
    expect(await f.enable()).toEqual({ ipv4: 'enabled', ipv6: 'unavailable' });
    await f.restore();
    expect(read(paths.ipv4)).toBe('0\n');
  });

  it('a missing IPv4 sysctl is an error', async () => {
    writeFileSync(paths.ipv6, '0\n');
    await expect(new Forwarding({ ipv4: join(dir, 'none'), ipv6: paths.ipv6 }).enable()).rejects.toMatchObject({ name: 'SystemError', code: 'ENOENT' });
    expect(read(paths.ipv6)).toBe('0\n');
  });

  // A 0444 /proc/sys file refuses writes even to root, so this runs as any user.
  const readOnly = '/proc/sys/kernel/ngroups_max';
  it.skipIf(!existsSync(readOnly))('says what to do when not permitted, and undoes IPv4 when IPv6 fails', async () => {
    writeFileSync(paths.ipv4, '0\n');
    const f = new Forwarding({ ipv4: paths.ipv4, ipv6: readOnly });
    const err = await f.enable().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SystemError);
    expect(err).toMatchObject({ code: 'EACCES', operation: `cannot enable IPv6 forwarding (${readOnly})` });
    expect((err as Error).message).toContain('run meshd as root or with CAP_NET_ADMIN');
    expect((err as Error).message).toContain('net.ipv6.conf.all.forwarding=1');
    expect(read(paths.ipv4)).toBe('0\n');
    expect(f.changed).toBe(false);
  });
});
