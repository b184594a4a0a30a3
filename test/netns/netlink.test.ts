// The rtnetlink adapter against a real kernel, in a throwaway network namespace.
//
// A netlink socket acts on the namespace of the process that opens it, and
// Node cannot setns(2). So the real module runs in a child started with
// `ip netns exec NS node child.mjs`: the test transpiles src/system/netlink.ts
// and the one module it imports, src/net/ipaddr.ts, into a temp dir laid out
// as src/ is (netlink.ts loads the `netlink` package with require, found
// through NODE_PATH), and the child serves LinkConfigurator calls as
// JSON lines on stdin/stdout. `remote` below is a LinkConfigurator proxy to it,
// so applyRoutes runs here against the kernel in the namespace. Every effect is
// checked with `ip -n NS -j ...`, never with the adapter itself.
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SystemError, type LinkConfigurator, type RouteOptions } from '../../src/system/netlink.js';
import { applyRoutes } from '../../src/system/routes.js';
import { ip, tryIp } from '../support/ip.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const NS = `mnl-${process.pid}-${randomBytes(3).toString('hex')}`;
const CALL_TIMEOUT_MS = 10_000;
/** What the child needs of src/: netlink.ts and its imports. */
const CHILD_MODULES = ['system/netlink', 'net/ipaddr'];

const CHILD = `
import { createInterface } from 'node:readline';
import { createLinkConfigurator } from './system/netlink.js';
const cfg = createLinkConfigurator({ timeoutMs: 5000 });
const lines = createInterface({ input: process.stdin });
const reply = (msg) => process.stdout.write(JSON.stringify(msg) + '\\n');
lines.on('line', async (line) => {
  const { id, method, args } = JSON.parse(line);
  try {
    // JSON turns an omitted optional argument into null; give it back as undefined.
    reply({ id, result: (await cfg[method](...args.map((a) => a ?? undefined))) ?? null });
  } catch (e) {
    reply({ id, error: { name: e.name, code: e.code, operation: e.operation, message: e.message } });
  }
});
lines.on('close', () => cfg.close());
`;

function ipJson<T>(...args: string[]): T[] {
  const out = ip('-n', NS, '-j', ...args).trim();
  return out ? (JSON.parse(out) as T[]) : [];
}

/** A link to configure: a dummy where the kernel has the module, else a persistent TUN (meshd's real kind). */
function addTestLink(name: string): void {
  if (!tryIp('-n', NS, 'link', 'add', name, 'type', 'dummy')) ip('-n', NS, 'tuntap', 'add', 'dev', name, 'mode', 'tun');
}

interface IpLink { ifindex: number; ifname: string; mtu: number; flags: string[] }
interface IpAddr { addr_info: { family: string; local: string; prefixlen: number }[] }
interface IpRoute { dst: string; dev?: string; metric?: number; protocol?: string; table?: string }

const link = (name: string): IpLink => ipJson<IpLink>('link', 'show', 'dev', name)[0];
const addrs = (name: string): string[] => ipJson<IpAddr>('addr', 'show', 'dev', name).flatMap((a) => a.addr_info.map((i) => `${i.local}/${i.prefixlen}`));
/** `ip` prints host routes without /32 or /128. */
const routes = (family: '-4' | '-6', name: string, table = 'main'): IpRoute[] => ipJson<IpRoute>(family, 'route', 'show', 'table', table, 'dev', name);
/** Destinations of the routes someone added (not the kernel's own, such as fe80::/64). */
const dsts = (name: string, table = 'main'): string[] =>
  [...routes('-4', name, table), ...routes('-6', name, table)].filter((r) => r.protocol !== 'kernel').map((r) => r.dst).sort();

let child: ChildProcessWithoutNullStreams | undefined;
let tmp: string | undefined;
let nextId = 1;
const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

function call(method: keyof LinkConfigurator, ...args: unknown[]): Promise<unknown> {
  const proc = child;
  if (!proc) return Promise.reject(new Error('child not running'));
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error(`${method} got no reply in ${CALL_TIMEOUT_MS} ms`));
    }, CALL_TIMEOUT_MS);
    pending.set(id, {
      resolve: (v) => (clearTimeout(timer), resolve(v)),
      reject: (e) => (clearTimeout(timer), reject(e)),
    });
    proc.stdin.write(JSON.stringify({ id, method, args }) + '\n');
  });
}

/** LinkConfigurator whose every call runs in the child, inside the namespace. */
const remote: LinkConfigurator = {
  linkIndex: (name) => call('linkIndex', name) as Promise<number>,
  setMtu: (name, mtu) => call('setMtu', name, mtu) as Promise<void>,
  setUp: (name, up) => call('setUp', name, up) as Promise<void>,
  addAddress: (name, cidr) => call('addAddress', name, cidr) as Promise<void>,
  removeAddress: (name, cidr) => call('removeAddress', name, cidr) as Promise<void>,
  addRoute: (name, cidr, opts?: RouteOptions) => call('addRoute', name, cidr, opts) as Promise<void>,
  removeRoute: (name, cidr, opts?: RouteOptions) => call('removeRoute', name, cidr, opts) as Promise<void>,
  listRoutes: (name, opts?: RouteOptions) => call('listRoutes', name, opts) as Promise<string[]>,
  deleteLink: (name) => call('deleteLink', name) as Promise<void>,
  close: () => undefined,
};

function cleanup(): void {
  child?.stdin.end();
  child?.kill();
  child = undefined;
  for (const p of pending.values()) p.reject(new Error('test torn down'));
  pending.clear();
  tryIp('netns', 'del', NS);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  tmp = undefined;
}

describe.skipIf(process.getuid?.() !== 0)('rtnetlink adapter in a network namespace', () => {
  beforeAll(async () => {
    try {
      ip('netns', 'add', NS);
      addTestLink('d0');
      tmp = mkdtempSync(join(tmpdir(), 'meshd-netlink-'));
      for (const mod of CHILD_MODULES) {
        const source = readFileSync(join(ROOT, 'src', `${mod}.ts`), 'utf8');
        const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true } });
        mkdirSync(dirname(join(tmp, `${mod}.js`)), { recursive: true });
        writeFileSync(join(tmp, `${mod}.js`), js.outputText);
      }
      writeFileSync(join(tmp, 'child.mjs'), CHILD);
      writeFileSync(join(tmp, 'package.json'), '{"type":"module"}');
      const proc = spawn('ip', ['netns', 'exec', NS, process.execPath, join(tmp, 'child.mjs')], {
        env: { ...process.env, NODE_PATH: join(ROOT, 'node_modules') },
      });
      child = proc;
      let stderr = '';
      proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      proc.on('exit', (code) => {
        for (const p of pending.values()) p.reject(new Error(`child exited (${code}): ${stderr}`));
        pending.clear();
      });
      createInterface({ input: proc.stdout }).on('line', (line) => {
        const msg = JSON.parse(line) as { id: number; result?: unknown; error?: { name: string; code: string; operation: string; message: string } };
        const p = pending.get(msg.id);
        if (!p) return;
        pending.delete(msg.id);
        const e = msg.error;
        if (!e) p.resolve(msg.result);
        else if (e.name !== 'SystemError') p.reject(new Error(`child threw ${e.name}: ${e.message}`));
        else p.reject(new SystemError(e.code, e.operation, e.message.slice(e.operation.length + 2)));
      });
      // The child is up once it answers.
      expect(await remote.linkIndex('lo')).toBe(1);
    } catch (err) {
      cleanup();
      throw err;
    }
  }, 30_000);

  afterAll(() => {
    cleanup();
    expect(tryIp('netns', 'pids', NS)).toBe(false);
  });

  it('looks up a link index by name, and names a missing device', async () => {
    expect(await remote.linkIndex('d0')).toBe(link('d0').ifindex);
    const err = await remote.linkIndex('nope0').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SystemError);
    expect(err).toMatchObject({ code: 'ENODEV', message: 'cannot look up link nope0: No such device' });
  });

  it('sets the MTU and the up/down state, idempotently', async () => {
    await remote.setMtu('d0', 1380);
    expect(link('d0').mtu).toBe(1380);
    await remote.setUp('d0', true);
    await remote.setUp('d0', true);
    expect(link('d0').flags).toContain('UP');
    await remote.setUp('d0', false);
    expect(link('d0').flags).not.toContain('UP');
    await remote.setUp('d0', true);
    expect(link('d0').flags).toContain('UP');
    await expect(remote.setMtu('nope0', 1380)).rejects.toMatchObject({ code: 'ENODEV', message: 'cannot set mtu 1380 on nope0: No such device' });
    await expect(remote.setUp('nope0', true)).rejects.toMatchObject({ code: 'ENODEV', message: 'cannot set nope0 up: No such device' });
  });

  it('adds and removes IPv4 and IPv6 addresses; repeats are no-ops', async () => {
    await remote.addAddress('d0', '100.64.0.5/10');
    await remote.addAddress('d0', 'fd7a:115c:a1e0::5/48');
    await remote.addAddress('d0', '100.64.0.5/10');
    await remote.addAddress('d0', 'FD7A:115C:A1E0:0::5/48');
    expect(addrs('d0')).toEqual(expect.arrayContaining(['100.64.0.5/10', 'fd7a:115c:a1e0::5/48']));
    expect(addrs('d0').filter((a) => a.startsWith('100.64.'))).toHaveLength(1);

    // The kernel's prefix route for the address is not the caller's to manage.
    expect(routes('-4', 'd0').map((r) => r.dst)).toContain('100.64.0.0/10');
    expect(await remote.listRoutes('d0')).toEqual([]);

    await remote.removeAddress('d0', '100.64.0.5/10');
    await remote.removeAddress('d0', 'fd7a:115c:a1e0::5/48');
    await remote.removeAddress('d0', '100.64.0.5/10');
    await remote.removeAddress('d0', 'fd7a:115c:a1e0::5/48');
    expect(addrs('d0').filter((a) => !a.startsWith('fe80:'))).toEqual([]);

    await expect(remote.addAddress('nope0', '100.64.0.5/10')).rejects.toMatchObject({
      code: 'ENODEV',
      message: 'cannot add address 100.64.0.5/10 to nope0: No such device',
    });
    await expect(remote.addAddress('d0', '100.64.0.5/33')).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('adds, lists and removes v4 and v6 routes in main and a numbered table, with a metric', async () => {
    await remote.setUp('d0', true);
    await remote.addRoute('d0', '10.20.0.0/16');
    await remote.addRoute('d0', '10.22.0.0/16', { metric: 50 });
    await remote.addRoute('d0', 'fd10::/48');
    await remote.addRoute('d0', '10.21.0.0/16', { table: 1000 });
    await remote.addRoute('d0', 'fd11::/48', { table: 1000, metric: 7 });
    // Repeats, and other spellings of the same routes, are no-ops.
    await remote.addRoute('d0', '10.20.0.0/16');
    await remote.addRoute('d0', '10.20.1.1/16');
    await remote.addRoute('d0', 'FD10:0::/48');
    await remote.addRoute('d0', '10.21.0.0/16', { table: 1000 });

    expect(dsts('d0')).toEqual(['10.20.0.0/16', '10.22.0.0/16', 'fd10::/48']);
    expect(routes('-4', 'd0').find((r) => r.dst === '10.22.0.0/16')?.metric).toBe(50);
    expect(dsts('d0', '1000')).toEqual(['10.21.0.0/16', 'fd11::/48']);
    expect(routes('-6', 'd0', '1000')[0].metric).toBe(7);

    expect((await remote.listRoutes('d0')).sort()).toEqual(['10.20.0.0/16', '10.22.0.0/16', 'fd10::/48']);
    expect(await remote.listRoutes('d0', { metric: 50 })).toEqual(['10.22.0.0/16']);
    expect((await remote.listRoutes('d0', { table: 1000 })).sort()).toEqual(['10.21.0.0/16', 'fd11::/48']);

    await remote.removeRoute('d0', '10.20.0.0/16');
    await remote.removeRoute('d0', '10.22.0.0/16', { metric: 50 });
    await remote.removeRoute('d0', 'fd10::/48');
    await remote.removeRoute('d0', '10.21.0.0/16', { table: 1000 });
    await remote.removeRoute('d0', 'fd11::/48', { table: 1000, metric: 7 });
    expect(dsts('d0')).toEqual([]);
    expect(dsts('d0', '1000')).toEqual([]);
    // Removing what is gone is not an error.
    await remote.removeRoute('d0', '10.20.0.0/16');
    await remote.removeRoute('d0', 'fd10::/48');
    await remote.removeRoute('d0', '10.21.0.0/16', { table: 1000 });
  });

  it('fails with the operation and the reason on a missing device or a foreign route', async () => {
    await expect(remote.addRoute('nope0', '10.0.0.0/8')).rejects.toMatchObject({
      name: 'SystemError',
      code: 'ENODEV',
      operation: 'cannot add route 10.0.0.0/8 dev nope0',
      message: 'cannot add route 10.0.0.0/8 dev nope0: No such device',
    });
    await expect(remote.listRoutes('nope0', { table: 1000 })).rejects.toMatchObject({
      code: 'ENODEV',
      message: 'cannot list routes dev nope0 table 1000: No such device',
    });
    await expect(remote.addRoute('d0', 'not-a-cidr')).rejects.toMatchObject({
      code: 'EINVAL',
      message: 'cannot add route not-a-cidr dev d0: not an IPv4 or IPv6 CIDR',
    });

    // The same destination and metric already routed through another link is
    // a conflict, not "already done".
    addTestLink('d1');
    ip('-n', NS, 'link', 'set', 'd1', 'up');
    ip('-n', NS, 'route', 'add', '10.40.0.0/16', 'dev', 'd1');
    await expect(remote.addRoute('d0', '10.40.0.0/16')).rejects.toMatchObject({
      code: 'EEXIST',
      message: 'cannot add route 10.40.0.0/16 dev d0: a route to 10.40.0.0/16 with this metric already exists on another device',
    });
    expect(routes('-4', 'd1').map((r) => r.dst)).toEqual(['10.40.0.0/16']);
    // And removing "our" copy leaves the other link's route alone.
    await remote.removeRoute('d0', '10.40.0.0/16');
    expect(routes('-4', 'd1').map((r) => r.dst)).toEqual(['10.40.0.0/16']);
  });

  it('applies a desired route set idempotently (applyRoutes)', async () => {
    const opts = { table: 1001, metric: 10 };
    const first = await applyRoutes(remote, 'd0', ['10.30.0.0/16', 'fd20::/48', '10.31.0.0/16'], opts);
    expect(first).toEqual({ add: ['10.30.0.0/16', 'fd20::/48', '10.31.0.0/16'], remove: [] });
    const applied = ip('-n', NS, '-j', 'route', 'show', 'table', 'all', 'dev', 'd0');
    expect(dsts('d0', '1001')).toEqual(['10.30.0.0/16', '10.31.0.0/16', 'fd20::/48']);
    expect(routes('-4', 'd0', '1001').every((r) => r.metric === 10)).toBe(true);

    expect(await applyRoutes(remote, 'd0', ['10.31.0.0/16', 'fd20::/48', '10.30.0.0/16'], opts)).toEqual({ add: [], remove: [] });
    expect(ip('-n', NS, '-j', 'route', 'show', 'table', 'all', 'dev', 'd0')).toBe(applied);

    expect(await applyRoutes(remote, 'd0', ['10.30.0.0/16', 'fd21::/48'], opts)).toEqual({ add: ['fd21::/48'], remove: ['10.31.0.0/16', 'fd20::/48'] });
    expect(dsts('d0', '1001')).toEqual(['10.30.0.0/16', 'fd21::/48']);

    expect(await applyRoutes(remote, 'd0', [], opts)).toEqual({ add: [], remove: ['10.30.0.0/16', 'fd21::/48'] });
    expect(dsts('d0', '1001')).toEqual([]);
  });

  it('deletes a link, and deleting it again is not an error', async () => {
    if (!tryIp('-n', NS, 'link', 'show', 'd1')) addTestLink('d1');
    await remote.deleteLink('d1');
    expect(tryIp('-n', NS, 'link', 'show', 'd1')).toBe(false);
    await remote.deleteLink('d1');
    expect(link('d0').ifname).toBe('d0');
  });
});
