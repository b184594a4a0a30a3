// The seeds' deployment in network namespaces: a subnet router in front of a
// "VPC" namespace (host 10.0.1.10 with an HTTP service on :80 and a second
// TCP service on :8080, reachable only through the router), a laptop with
// --accept-routes, another mesh node, and the coordination server with its
// policy. Each test builds its own lab and removes it, also on failure.
import { describe, expect, it } from 'vitest';
import { labPerTest, must, run, waitFor, type Host, type Lab } from '../support/netns.js';
import { httpPeer, peerService, startNode, startServer, type MeshNode, type MeshServer } from '../support/mesh.js';

let lab: Lab;

const VPC_HOST = '10.0.1.10';
const ROUTER_VPC = '10.0.1.1';

interface Deployment {
  server: MeshServer;
  router: MeshNode;
  laptop: MeshNode;
  other: MeshNode;
  vpc: string;
  hosts: Host[];
}

interface RouteRow {
  id: number;
  node: string;
  prefix: string;
  state: string;
}

/** The VPC: a namespace behind the router's host, with the two services. */
async function vpcBehind(router: Host): Promise<string> {
  const vpc = await lab.netns();
  const [inVpc, atRouter] = await lab.veth(vpc, router.ns);
  await must(router.ns, 'ip', ['addr', 'add', `${ROUTER_VPC}/24`, 'dev', atRouter]);
  await must(vpc, 'ip', ['addr', 'add', `${VPC_HOST}/24`, 'dev', inVpc]);
  await peerService(lab, vpc, VPC_HOST, 80);
  await peerService(lab, vpc, VPC_HOST, 8080);
  return vpc;
}

/**
 * Server, router (tag:router, advertising 10.0.0.0/16), laptop (user alice,
 * --accept-routes) and another node (user bob). `policy`, when given, is set
 * before anyone joins.
 */
async function deploy(o: { policy?: string; snat?: boolean; routerArgs?: string[] } = {}): Promise<Deployment> {
  const topo = await lab.routedHosts(4);
  const server = await startServer(lab, topo.hosts[0]);
  if (o.policy) await setPolicy(server, o.policy);
  const vpc = await vpcBehind(topo.hosts[1]);
  const routerKey = await server.createKey('--preauthorized', '--tags', 'tag:router');
  const router = await startNode(lab, topo.hosts[1], 'router');
  await router.up('--login-server', server.url, '--authkey', routerKey, '--hostname', 'router', '--advertise-routes', '10.0.0.0/16', ...(o.snat === false ? ['--snat-subnet-routes=false'] : []), ...(o.routerArgs ?? []));
  const laptop = await startNode(lab, topo.hosts[2], 'laptop');
  await laptop.up('--login-server', server.url, '--authkey', await server.createKey('--preauthorized', '--user', 'alice'), '--hostname', 'laptop', '--accept-routes');
  const other = await startNode(lab, topo.hosts[3], 'other');
  await other.up('--login-server', server.url, '--authkey', await server.createKey('--preauthorized', '--user', 'bob'), '--hostname', 'other');
  return { server, router, laptop, other, vpc, hosts: topo.hosts };
}

async function setPolicy(server: MeshServer, text: string): Promise<void> {
  const file = lab.file(`policy-${Date.now()}.json`, text);
  const r = await server.admin('policy', 'set', file);
  if (r.code !== 0) throw new Error(`policy set failed: ${r.stderr}`);
}

async function routes(server: MeshServer): Promise<RouteRow[]> {
  return (await server.adminJson<{ routes: RouteRow[] }>('routes', 'list')).routes;
}

async function kernelRoutes(n: MeshNode): Promise<string> {
  return (await run(n.host.ns, 'ip', ['route', 'show', 'dev', n.tun])).stdout;
}

const reachesVpc = (n: MeshNode, port = 80) => httpPeer(n.host.ns, VPC_HOST, port, 1);

describe.skipIf(process.getuid?.() !== 0)('subnet routers and policy (network namespaces)', () => {
  labPerTest((l) => (lab = l));

  it('an advertised route is pending until approved; then the laptop reaches the VPC host, SNATed to the router', async () => {
    const d = await deploy();
    expect((await routes(d.server)).map((r) => [r.node, r.prefix, r.state])).toEqual([['router', '10.0.0.0/16', 'pending']]);
    expect(await kernelRoutes(d.laptop)).not.toContain('10.0.0.0/16');
    expect(await reachesVpc(d.laptop)).toBeNull();

    const [route] = await routes(d.server);
    expect((await d.server.admin('routes', 'approve', String(route.id))).code).toBe(0);
    await waitFor('the laptop to get the route', async () => (await kernelRoutes(d.laptop)).includes('10.0.0.0/16'), 5_000, 100);
    await waitFor('the laptop to reach http://10.0.1.10', async () => (await reachesVpc(d.laptop)) !== null, 5_000, 200);
    expect(await reachesVpc(d.laptop)).toBe(ROUTER_VPC);
    // The node without --accept-routes has no such route.
    expect(await kernelRoutes(d.other)).not.toContain('10.0.0.0/16');
    expect(await reachesVpc(d.other)).toBeNull();
    expect((await routes(d.server))[0].state).toBe('primary');

    // Reject: the route leaves the laptop again.
    expect((await d.server.admin('routes', 'reject', '10.0.0.0/16')).code).toBe(0);
    await waitFor('the laptop to lose the route', async () => !(await kernelRoutes(d.laptop)).includes('10.0.0.0/16'), 5_000, 100);
  });

  it('autoApprovers approves a tagged router\'s route at once; a withdrawn route disappears from clients', async () => {
    const d = await deploy({
      policy: `{
        // routers may route the VPC without a manual approval
        "tagOwners": { "tag:router": [] },
        "autoApprovers": { "routes": { "10.0.0.0/8": ["tag:router"] } },
        "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:*"] } ],
      }`,
    });
    expect((await routes(d.server)).map((r) => r.state)).toEqual(['primary']);
    await waitFor('the laptop to reach the VPC host', async () => (await reachesVpc(d.laptop)) === ROUTER_VPC, 5_000, 200);
    // A second router for the same prefix (approved by hand: bob is no auto-approver) stands by.
    await d.other.up('--advertise-routes', '10.0.0.0/16');
    const second = (await routes(d.server)).find((r) => r.node === 'other')!;
    expect(second.state).toBe('pending');
    expect((await d.server.admin('routes', 'approve', String(second.id))).code).toBe(0);
    expect((await routes(d.server)).map((r) => [r.node, r.state])).toEqual([['router', 'primary'], ['other', 'standby']]);
    const allowed = async () => (await run(d.laptop.host.ns, 'wg', ['show', d.laptop.tun, 'allowed-ips'])).stdout;
    await waitFor('the laptop to know the standby', async () => (await d.laptop.status()).peers.some((p) => p.name === 'other'), 5_000, 100);
    expect((await allowed()).split('\n').filter((l) => l.includes('10.0.0.0/16'))).toHaveLength(1);
    expect(await reachesVpc(d.laptop)).toBe(ROUTER_VPC);
    await d.other.up('--advertise-routes=');
    await d.router.up('--advertise-routes=');
    await waitFor('the withdrawn route to leave the laptop', async () => !(await kernelRoutes(d.laptop)).includes('10.0.0.0/16'), 5_000, 100);
    expect((await routes(d.server)).map((r) => r.state)).toEqual(['withdrawn', 'withdrawn']);
    expect(await reachesVpc(d.laptop)).toBeNull();
  });

  it('with SNAT off the VPC host sees the laptop\'s overlay address, and replies return by a VPC-side route', async () => {
    const d = await deploy({ snat: false });
    await must(d.vpc, 'ip', ['route', 'add', '100.64.0.0/10', 'via', ROUTER_VPC]);
    const [route] = await routes(d.server);
    await d.server.admin('routes', 'approve', String(route.id));
    const laptopIp = await d.laptop.ip4();
    await waitFor('the laptop to reach the VPC host', async () => (await reachesVpc(d.laptop)) !== null, 5_000, 200);
    expect(await reachesVpc(d.laptop)).toBe(laptopIp);
  });

  it('a policy allowing laptop -> 10.0.1.10:80 only refuses the second service and other nodes; with no rules nothing passes', async () => {
    const only80 = `{
      "tagOwners": { "tag:router": [] },
      "autoApprovers": { "routes": { "10.0.0.0/16": ["tag:router"] } },
      "acls": [ { "action": "accept", "src": ["alice"], "dst": ["10.0.1.10:80"] } ],
      "tests": [ { "src": "alice", "accept": ["10.0.1.10:80"], "deny": ["10.0.1.10:8080"] } ],
    }`;
    const d = await deploy({ policy: only80 });
    await waitFor('the laptop to reach :80', async () => (await reachesVpc(d.laptop)) === ROUTER_VPC, 5_000, 200);
    expect(await reachesVpc(d.laptop, 8080)).toBeNull();
    // bob's node is neither reachable from the laptop nor a peer of it.
    expect(await d.laptop.reaches(await d.other.ip4())).toBe(false);
    expect(await d.other.reaches(await d.laptop.ip4())).toBe(false);
    expect((await d.laptop.status()).peers.map((p) => p.name)).toEqual(['router']);
    expect((await d.other.status()).peers).toEqual([]);
    // The router counted what it refused.
    const drops = (await d.router.status()) as unknown as { drops: Record<string, number> };
    expect(drops.drops.filtered ?? 0).toBeGreaterThan(0);

    await setPolicy(d.server, `{ "acls": [] }`);
    await waitFor('the laptop to be refused :80', async () => (await reachesVpc(d.laptop)) === null, 5_000, 200);
    expect((await d.laptop.status()).peers).toEqual([]);
  });

  it('a policy change keeps flows that stay permitted', async () => {
    const base = (extra: string) => `{
      "tagOwners": { "tag:router": [] },
      "autoApprovers": { "routes": { "10.0.0.0/16": ["tag:router"] } },
      "acls": [ { "action": "accept", "src": ["alice"], "dst": ["10.0.1.10:80"] } ${extra} ],
    }`;
    const d = await deploy({ policy: base('') });
    await waitFor('the laptop to reach :80', async () => (await reachesVpc(d.laptop)) === ROUTER_VPC, 5_000, 200);
    // One TCP connection held open across a policy change: line, change, line.
    const go = `${lab.dir}/go`;
    const session = lab.spawn(d.laptop.host.ns, 'python3', ['-c', `
import socket, os, time, sys
c = socket.create_connection(('${VPC_HOST}', 80), timeout=5)
c.sendall(b'one\\n'); print(c.recv(100).decode().strip(), flush=True)
for _ in range(200):
    if os.path.exists('${go}'): break
    time.sleep(0.05)
c.sendall(b'two\\n'); print(c.recv(100).decode().strip(), flush=True)
`], { label: 'held session' });
    await waitFor('the first line', () => session.output.includes('one'), 5_000, 50);
    await setPolicy(d.server, base(`, { "action": "accept", "src": ["bob"], "dst": ["alice:22"] }`));
    await waitFor('bob to see the laptop', async () => (await d.other.status()).peers.length === 1, 5_000, 100);
    lab.file('go', '');
    await session.waitExit(8_000);
    expect(session.output).toMatch(/peer=10\.0\.1\.1 one/);
    expect(session.output).toMatch(/peer=10\.0\.1\.1 two/);
    expect(session.exitCode).toBe(0);
  });

  it('a VPC-side host reaches a mesh node through the router when the policy allows it', async () => {
    const d = await deploy({
      policy: `{
        "hosts": { "vpc": "10.0.0.0/16" },
        "tagOwners": { "tag:router": [] },
        "autoApprovers": { "routes": { "10.0.0.0/16": ["tag:router"] } },
        "acls": [ { "action": "accept", "src": ["vpc"], "dst": ["alice:2222"] } ],
      }`,
    });
    await must(d.vpc, 'ip', ['route', 'add', '100.64.0.0/10', 'via', ROUTER_VPC]);
    const laptopIp = await d.laptop.ip4();
    await peerService(lab, d.laptop.host.ns, laptopIp, 2222);
    await peerService(lab, d.laptop.host.ns, laptopIp, 2223);
    await waitFor('the VPC host to reach the laptop', async () => (await httpPeer(d.vpc, laptopIp, 2222, 1)) !== null, 8_000, 200);
    expect(await httpPeer(d.vpc, laptopIp, 2222, 1)).toBe(VPC_HOST);
    expect(await httpPeer(d.vpc, laptopIp, 2223, 1)).toBeNull();
    expect(await httpPeer(d.vpc, await d.other.ip4(), 2222, 1)).toBeNull();
  });

  it('the router\'s nftables table leaves the user\'s own ruleset alone, through up and down', async () => {
    const topo = await lab.routedHosts(2);
    const server = await startServer(lab, topo.hosts[0]);
    const ns = topo.hosts[1].ns;
    await must(ns, 'nft', ['-f', lab.file('user.nft', 'table inet userfw {\n chain input { type filter hook input priority 0; policy accept; tcp dport 2222 drop; }\n}\ntable ip usernat {\n chain post { type nat hook postrouting priority 100; }\n}\n')]);
    const userRules = async () => (await run(ns, 'nft', ['list', 'table', 'inet', 'userfw'])).stdout + (await run(ns, 'nft', ['list', 'table', 'ip', 'usernat'])).stdout;
    const before = await userRules();
    await vpcBehind(topo.hosts[1]);
    const key = await server.createKey('--preauthorized', '--tags', 'tag:router');
    const router = await startNode(lab, topo.hosts[1], 'router');
    await router.up('--login-server', server.url, '--authkey', key, '--advertise-routes', '10.0.0.0/16');
    const [route] = await routes(server);
    await server.admin('routes', 'approve', String(route.id));
    await waitFor('the router table', async () => (await run(ns, 'nft', ['list', 'table', 'inet', 'meshd'])).code === 0, 5_000, 100);
    expect((await run(ns, 'nft', ['list', 'table', 'inet', 'meshd'])).stdout).toContain('10.0.0.0/16');
    expect((await run(ns, 'sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim()).toBe('1');
    expect(await userRules()).toBe(before);
    const down = await router.cli('down');
    expect(down.code, down.stderr).toBe(0);
    expect((await run(ns, 'nft', ['list', 'table', 'inet', 'meshd'])).code).not.toBe(0);
    expect((await run(ns, 'sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim()).toBe('0');
    expect(await userRules()).toBe(before);
  });

  it('bad routes, tags and policies get one clear error and change nothing', async () => {
    const topo = await lab.routedHosts(2);
    const server = await startServer(lab, topo.hosts[0]);
    const n = await startNode(lab, topo.hosts[1], 'n');
    const key = await server.createKey('--preauthorized', '--reusable', '--user', 'alice');
    for (const [routesArg, why] of [
      ['10.0.0.1/16', /host bits set; did you mean 10\.0\.0\.0\/16/],
      ['10.0.0.0/33', /not a CIDR/],
      ['banana', /not a CIDR/],
      ['0.0.0.0/0', /exit nodes/],
    ] as const) {
      const r = await n.cli('up', '--login-server', server.url, '--authkey', key, '--advertise-routes', routesArg);
      expect(r.code, routesArg).not.toBe(0);
      expect(r.stderr.trim().split('\n'), routesArg).toHaveLength(1);
      expect(r.stderr, routesArg).toMatch(why);
    }
    const tag = await n.cli('up', '--login-server', server.url, '--authkey', key, '--advertise-tags', 'tag:router');
    expect(tag.code).not.toBe(0);
    expect(tag.stderr.trim().split('\n')).toHaveLength(1);
    expect(tag.stderr).toMatch(/tag:router/);
    expect(await routes(server)).toEqual([]);
    // tagOwners lets alice use tag:web: accepted, and the node carries it.
    await setPolicy(server, `{ "tagOwners": { "tag:web": ["alice"] }, "acls": [] }`);
    await n.up('--login-server', server.url, '--authkey', key, '--advertise-tags', 'tag:web');
    const nodes = await server.adminJson<{ nodes: Array<{ tags: string[] }> }>('nodes', 'list');
    expect(nodes.nodes[0].tags).toEqual(['tag:web']);

    const good = `{ "acls": [ { "action": "accept", "src": ["alice"], "dst": ["*:22"] } ] }`;
    await setPolicy(server, good);
    for (const [text, why] of [
      ['{ "acls": [ { "action": "accept", "src": ["alice"] "dst": ["*:22"] } ] }', /:1:\d+/],
      ['{ "acls": [ { "action": "accept", "src": ["group:nope"], "dst": ["*:22"] } ] }', /group:nope/],
      ['{ "acls": [ { "action": "accept", "src": ["alice"], "dst": ["*:22"] } ], "tests": [ { "src": "alice", "deny": ["10.0.0.1:22"] } ] }', /test/i],
    ] as const) {
      const file = lab.file(`bad-${Math.random()}.json`, text);
      for (const verb of ['check', 'set']) {
        const r = await server.admin('policy', verb, file);
        expect(r.code, `${verb} ${text}`).not.toBe(0);
        expect(r.stderr.trim().split('\n').length, r.stderr).toBeLessThanOrEqual(3);
        expect(r.stderr).toMatch(why);
      }
    }
    const got = await server.admin('policy', 'get');
    expect(got.stdout.trim()).toBe(good);
  });
});
