// Joining a mesh through the coordination server, across real network
// namespaces: `meshd server` on host 1, node agents (`meshd daemon` without
// --config) on the others, driven by the real CLI. Each test builds its own
// lab and removes it afterwards, also on failure.
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { X25519PrivateKey } from '../../src/crypto/x25519.js';
import { decodeKeyBase64, encodeKeyBase64 } from '../../src/config/keys.js';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Lab, labPerTest, run, sleep, waitFor, type Host } from '../support/netns.js';

const serverPublicKey = (priv: string) => encodeKeyBase64(X25519PrivateKey.fromBytes(decodeKeyBase64(priv)).publicKey);
import { startNode, startServer, type MeshNode, type MeshServer } from '../support/mesh.js';

let lab: Lab;

interface Mesh {
  server: MeshServer;
  nodes: MeshNode[];
  hosts: Host[];
  key: string;
}

/** A server on host 1 and `count` nodes on hosts 2.., all up with one reusable pre-authorized key. */
async function mesh(count: number, opts: { extraHosts?: number; serverArgs?: string[] } = {}): Promise<Mesh> {
  const topo = await lab.routedHosts(1 + count + (opts.extraHosts ?? 0));
  const server = await startServer(lab, topo.hosts[0], ...(opts.serverArgs ?? []));
  const key = await server.createKey('--reusable', '--preauthorized');
  const nodes: MeshNode[] = [];
  for (let i = 0; i < count; i++) {
    const n = await startNode(lab, topo.hosts[1 + i], `n${i + 1}`);
    await n.up('--login-server', server.url, '--authkey', key, '--hostname', `node${i + 1}`);
    nodes.push(n);
  }
  return { server, nodes, hosts: topo.hosts, key };
}

async function expectAllReachEachOther(nodes: MeshNode[], within = 5_000): Promise<void> {
  for (const a of nodes) {
    for (const b of nodes) {
      if (a === b) continue;
      for (const addr of [await b.ip4(), await b.ip6()]) {
        await waitFor(`${a.label} to reach ${b.label} at ${addr}`, () => a.reaches(addr), within, 100);
      }
    }
  }
}

interface AdminNode {
  id: number;
  name: string;
  publicKey: string;
  ipv4: string;
  ipv6: string;
  online: boolean;
  ephemeral: boolean;
}

describe.skipIf(process.getuid?.() !== 0)('joining a mesh through meshd server (network namespaces)', () => {
  labPerTest((l) => (lab = l));

  it('three nodes join with one key and ping each other (v4, v6); a fourth is reachable from all within 2 s, no restart', async () => {
    const m = await mesh(3, { extraHosts: 1 });
    const ips = await Promise.all(m.nodes.map((n) => n.ip4()));
    expect(ips).toEqual(['100.64.0.1', '100.64.0.2', '100.64.0.3']);
    expect(await m.nodes[0].ip6()).toBe('fd7a:115c:a1e0::6440:1');
    await expectAllReachEachOther(m.nodes);

    // Files the node keeps: private key 0600 in a 0700 directory; root-only socket.
    const n1 = m.nodes[0];
    expect(statSync(join(n1.stateDir, 'node.key')).mode & 0o777).toBe(0o600);
    expect(statSync(n1.stateDir).mode & 0o777).toBe(0o700);
    expect(statSync(n1.socket).mode & 0o777).toBe(0o600);
    expect(statSync(join(m.server.stateDir, 'admin.token')).mode & 0o777).toBe(0o600);

    // Sessions that a netmap change does not touch survive it: node1's handshake with node2 stays the same one.
    const handshakes = async () => (await run(n1.host.ns, 'wg', ['show', n1.tun, 'latest-handshakes'])).stdout;
    const n2key = (await m.nodes[1].status()).publicKey;
    const before = (await handshakes()).split('\n').find((l) => l.startsWith(n2key));
    expect(before).toMatch(/\t[1-9]\d*$/);

    const fourth = await startNode(lab, m.hosts[4], 'n4');
    const out = await fourth.up('--login-server', m.server.url, '--authkey', m.key, '--hostname', 'node4');
    const joined = Date.now();
    expect(out).toMatch(/connected as node4: 100\.64\.0\.4 fd7a:115c:a1e0::6440:4/);
    // Each old node reaches the new one within 2 s of `up` returning.
    await Promise.all(m.nodes.map((n) => waitFor(`${n.label} to reach node4`, () => n.reaches('100.64.0.4'), 2_000, 50)));
    expect(Date.now() - joined).toBeLessThan(2_000 + 1_000 /* the last ping's own wait */);
    await expectAllReachEachOther([...m.nodes, fourth]);

    expect((await handshakes()).split('\n').find((l) => l.startsWith(n2key))).toBe(before);

    const st = await n1.status();
    expect(st.state).toBe('running');
    expect(st.peers.map((p) => p.name).sort()).toEqual(['node2', 'node3', 'node4']);
    expect(st.peers.every((p) => p.online)).toBe(true);
  });

  it('meshd ping and meshd status through the mesh; no key, auth key or token in any log line', async () => {
    const m = await mesh(2);
    const [a, b] = m.nodes;
    const p = await a.cli('ping', 'node2', '--count', '3');
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toMatch(/^pong from node2 \(100\.64\.0\.2\) via 192\.168\.3\.1:41641 \(direct\) in \d+\.\d+ ms$/m);
    expect((await a.cli('ping', '100.64.0.2', '--count', '1')).code).toBe(0);
    const none = await a.cli('ping', 'nobody');
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/no peer "nobody"/);
    const table = await a.cli('status');
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')[0].split(/\s{2,}/)).toEqual(['IP', 'NAME', 'OWNER', 'ENDPOINT', 'HANDSHAKE', 'RX/TX', 'ROUTES', 'STATUS']);
    expect(table.stdout).toMatch(/100\.64\.0\.2\s+node2\s+default\s+192\.168\.3\.1:41641 \(direct\)\s+\d+s ago/);
    const json = await a.status();
    expect((json as unknown as { schema: number }).schema).toBe(1);
    // A peer that stops answering: ping gives up after the tries it was given, non-zero.
    await b.kill9();
    const dead = await a.cli('ping', 'node2', '--count', '2', '--timeout', '0.5');
    expect(dead.code).not.toBe(0);
    expect(dead.stdout.match(/^timeout waiting for node2/gm)).toHaveLength(2);
    expect(dead.stderr).toMatch(/no reply from node2 \(100\.64\.0\.2\) after 2 tries/);

    // Every secret this mesh holds, against every line every process logged (debug level).
    const secrets = [
      m.key,
      m.key.slice('mskey-'.length + 13), // the secret (base64url: it may hold '-')
      readFileSync(m.server.tokenFile, 'utf8').trim(),
      readFileSync(join(m.server.stateDir, 'server.key'), 'utf8').trim(),
      ...m.nodes.map((n) => readFileSync(join(n.stateDir, 'node.key'), 'utf8').trim()),
    ];
    const logs = [m.server.proc.output, ...m.nodes.map((n) => n.proc.output)].join('\n');
    expect(logs.length).toBeGreaterThan(1_000);
    for (const secret of secrets) expect(logs.includes(secret), `a log line holds ${secret.slice(0, 6)}...`).toBe(false);
  });

  it('deleting or expiring a node cuts it off, and it cannot reconnect without a new key', async () => {
    const m = await mesh(3);
    await expectAllReachEachOther(m.nodes);
    const [a, b, c] = m.nodes;
    const cKey = (await c.status()).publicKey;
    const del = await m.server.admin('nodes', 'delete', 'node3');
    expect(del.code, del.stderr).toBe(0);
    // Gone from the others' interfaces within a second or two, and unreachable.
    for (const n of [a, b]) await waitFor(`${n.label} to drop node3`, async () => !(await n.wgPeers()).includes(cKey), 3_000, 50);
    expect(await a.reaches('100.64.0.3')).toBe(false);
    await waitFor('node3 to learn it was removed', async () => (await c.status()).state === 'needs-login', 5_000, 100);
    const again = await c.cli('up');
    expect(again.code).not.toBe(0);
    expect(again.stderr.trim().split('\n')).toHaveLength(1);
    expect(again.stderr).toMatch(/not registered/);

    // Expiry: same effect for node2.
    const exp = await m.server.admin('nodes', 'expire', 'node2');
    expect(exp.code, exp.stderr).toBe(0);
    const bKey = (await b.status()).publicKey;
    await waitFor('node1 to drop node2', async () => !(await a.wgPeers()).includes(bKey), 3_000, 50);
    await waitFor('node2 to learn it expired', async () => (await b.status()).state === 'needs-login', 5_000, 100);
    const reup = await b.cli('up');
    expect(reup.code).not.toBe(0);
    expect(reup.stderr).toMatch(/expired/);
    // A fresh key brings the expired node back with its old address.
    await b.up('--authkey', m.key);
    expect(await b.ip4()).toBe('100.64.0.2');
    await waitFor('node1 to reach node2 again', () => a.reaches('100.64.0.2'), 5_000, 100);
  });

  it('kill -9 of the server: tunnels stay up, and after restart no node, key or address is lost', async () => {
    const m = await mesh(2, { extraHosts: 1 });
    await expectAllReachEachOther(m.nodes);
    const before = await m.server.adminJson<{ nodes: AdminNode[] }>('nodes', 'list');
    const keysBefore = await m.server.adminJson<{ keys: Array<{ id: number; prefix: string; usedCount: number }> }>('keys', 'list');
    const serverKey = (await m.server.admin('nodes', 'list')).code;
    expect(serverKey).toBe(0);

    await m.server.kill9();
    // The data plane does not need the control plane.
    for (let i = 0; i < 3; i++) {
      expect(await m.nodes[0].reaches('100.64.0.2')).toBe(true);
      await sleep(300);
    }
    // A node daemon killed and restarted meanwhile comes back from its cached netmap.
    await m.nodes[1].kill9();
    await m.nodes[1].start();
    await waitFor('restarted node2 to reach node1 with the server down', () => m.nodes[1].reaches('100.64.0.1'), 8_000, 100);
    expect(await m.nodes[1].ip4()).toBe('100.64.0.2');

    await m.server.start();
    const after = await m.server.adminJson<{ nodes: AdminNode[] }>('nodes', 'list');
    const pick = (ns: AdminNode[]) => ns.map(({ id, name, publicKey, ipv4, ipv6 }) => ({ id, name, publicKey, ipv4, ipv6 }));
    expect(pick(after.nodes)).toEqual(pick(before.nodes));
    const keysAfter = await m.server.adminJson<{ keys: Array<{ id: number; prefix: string; usedCount: number }> }>('keys', 'list');
    expect(keysAfter.keys).toEqual(keysBefore.keys);

    // The nodes reconnect on their own; a node joining now is reachable from both.
    const third = await startNode(lab, m.hosts[3], 'n3');
    await third.up('--login-server', m.server.url, '--authkey', m.key, '--hostname', 'node3');
    expect(await third.ip4()).toBe('100.64.0.3');
    for (const n of m.nodes) await waitFor(`${n.label} to reconnect and reach node3`, () => n.reaches('100.64.0.3'), 40_000, 250);
    await waitFor('both old nodes online again', async () => (await m.server.adminJson<{ nodes: AdminNode[] }>('nodes', 'list')).nodes.every((n) => n.online), 40_000, 250);
  });

  it('a node daemon restarted (also after kill -9) keeps its key and address; down/up reconnects with stored settings', async () => {
    const m = await mesh(2);
    const [a, b] = m.nodes;
    const st = await b.status();
    await b.kill9();
    await b.start();
    await waitFor('node2 back up by itself', async () => (await b.status()).state === 'running', 10_000, 100);
    const st2 = await b.status();
    expect(st2.publicKey).toBe(st.publicKey);
    expect(st2.self?.addresses).toEqual(st.self?.addresses);
    await waitFor('node1 to reach restarted node2', () => a.reaches('100.64.0.2'), 8_000, 100);

    const down = await b.cli('down');
    expect(down.code, down.stderr).toBe(0);
    expect((await b.status()).state).toBe('stopped');
    expect(await a.reaches('100.64.0.2')).toBe(false);
    // Settings persisted: `up` with no flags, no auth key.
    await b.up();
    expect(await b.ip4()).toBe('100.64.0.2');
    await waitFor('node1 to reach node2 after up', () => a.reaches('100.64.0.2'), 8_000, 100);
    const nodes = await m.server.adminJson<{ nodes: AdminNode[] }>('nodes', 'list');
    expect(nodes.nodes).toHaveLength(2);

    // logout: removed at the server, dropped by the peer, its key gone from the state dir.
    const out = await b.cli('logout');
    expect(out.code, out.stderr).toBe(0);
    expect((await m.server.adminJson<{ nodes: AdminNode[] }>('nodes', 'list')).nodes.map((n) => n.name)).toEqual(['node1']);
    await waitFor('node1 to drop the logged-out node', async () => (await a.wgPeers()).length === 0, 3_000, 50);
    expect(existsSync(join(b.stateDir, 'node.key'))).toBe(false);
    const reup = await b.cli('up');
    expect(reup.code).not.toBe(0);
    expect(reup.stderr).toMatch(/no login server yet/);
  });

  it('an ephemeral node is removed from the mesh after it goes away', async () => {
    const topo = await lab.routedHosts(3);
    const server = await startServer(lab, topo.hosts[0], '--ephemeral-timeout', '3s');
    const keep = await server.createKey('--preauthorized');
    const eph = await server.createKey('--preauthorized', '--ephemeral');
    const a = await startNode(lab, topo.hosts[1], 'stay');
    await a.up('--login-server', server.url, '--authkey', keep);
    const e = await startNode(lab, topo.hosts[2], 'eph');
    await e.up('--login-server', server.url, '--authkey', eph, '--hostname', 'ci-runner');
    await waitFor('the stable node to reach the ephemeral one', () => a.reaches('100.64.0.2'), 5_000, 100);
    const ekey = (await e.status()).publicKey;
    expect(await a.wgPeers()).toContain(ekey);

    await e.proc.stop();
    await waitFor('the ephemeral node to be deleted', async () => (await server.adminJson<{ nodes: AdminNode[] }>('nodes', 'list')).nodes.length === 1, 15_000, 250);
    await waitFor('the stable node to drop it', async () => !(await a.wgPeers()).includes(ekey), 3_000, 50);
    const audit = await server.adminJson<{ audit: Array<{ actor: string; action: string }> }>('audit');
    expect(audit.audit.some((x) => x.actor === 'server' && x.action === 'node.delete')).toBe(true);
  });

  it('bad auth keys are refused with one clear line and nothing is left behind', async () => {
    const topo = await lab.routedHosts(3);
    const server = await startServer(lab, topo.hosts[0]);
    const n = await startNode(lab, topo.hosts[1], 'bad');
    const single = await server.createKey('--preauthorized');
    const revoked = await server.createKey('--preauthorized', '--reusable');
    expect((await server.admin('keys', 'revoke', revoked.split('-')[1])).code).toBe(0);
    const shortLived = await server.createKey('--preauthorized', '--expiry', '1s');
    // Use the single-use key up on another node identity.
    const other = await startNode(lab, topo.hosts[2], 'other');
    await other.up('--login-server', server.url, '--authkey', single);
    await sleep(1_200);

    const cases: Array<[string, string, RegExp]> = [
      ['unknown', `mskey-000000000000-${'A'.repeat(43)}`, /not known/],
      ['malformed', 'tskey-nonsense', /malformed/],
      ['revoked', revoked, /revoked/],
      ['expired', shortLived, /expired/],
      ['used up', single, /single-use and was already used/],
    ];
    for (const [what, key, why] of cases) {
      const r = await n.cli('up', '--login-server', server.url, '--authkey', key);
      expect(r.code, `${what}: ${r.stdout}`).not.toBe(0);
      const lines = r.stderr.trim().split('\n');
      expect(lines, `${what}: ${r.stderr}`).toHaveLength(1);
      expect(lines[0], what).toMatch(why);
    }
    // No TUN was left up by the refused attempts, the daemon still serves, and the server kept one node.
    expect((await n.status()).interface).toBeNull();
    expect((await server.adminJson<{ nodes: AdminNode[] }>('nodes', 'list')).nodes).toHaveLength(1);
    // A key in a file works the same way as one on the command line.
    const good = lab.file('authkey', `${await server.createKey('--preauthorized')}\n`);
    await n.up('--login-server', server.url, '--authkey', `file:${good}`);
    expect(await n.ip4()).toBe('100.64.0.2');
  });

  it('a key that is not pre-authorized leaves the node pending until an admin approves it', async () => {
    const m = await mesh(1, { extraHosts: 1 });
    const key = await m.server.createKey();
    const n = await startNode(lab, m.hosts[2], 'pending');
    const r = await n.cli('up', '--login-server', m.server.url, '--authkey', key, '--hostname', 'laptop', '--timeout', '1');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/waiting for approval.*meshd admin nodes approve laptop/);
    expect((await n.status()).state).toBe('pending-approval');
    expect(await m.nodes[0].wgPeers()).toHaveLength(0);
    expect((await m.server.admin('nodes', 'approve', 'laptop')).code).toBe(0);
    await waitFor('the approved node to be running', async () => (await n.status()).state === 'running', 5_000, 100);
    await waitFor('node1 to reach the approved node', () => m.nodes[0].reaches('100.64.0.2'), 5_000, 100);
  });

  it('a server that presents a different key than the one pinned is refused', async () => {
    const m = await mesh(1, { extraHosts: 1 });
    const st = await m.nodes[0].status();
    // Pin a wrong key in the login URL: `up` must refuse before sending anything sealed.
    const wrong = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
    const n = await startNode(lab, m.hosts[2], 'pinned');
    const r = await n.cli('up', '--login-server', `${m.server.url}/?key=${encodeURIComponent(wrong)}`, '--authkey', m.key);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/presents server key .* but the login URL pins/);
    expect(st.state).toBe('running');
    // The right key in the URL works.
    const serverKey = readFileSync(join(m.server.stateDir, 'server.key'), 'utf8').trim();
    const pub = serverPublicKey(serverKey);
    await n.up('--login-server', `${m.server.url}/?key=${encodeURIComponent(pub)}`, '--authkey', m.key);

    // A server rebuilt with a new key (first-use pin, node1) is refused, and node1 keeps its tunnel.
    await m.server.kill9();
    rmSync(join(m.server.stateDir, 'server.key'));
    await m.server.start();
    const again = await m.nodes[0].cli('up');
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/but this node pinned/);
    expect(await m.nodes[0].reaches('100.64.0.2')).toBe(true);
  });
});
