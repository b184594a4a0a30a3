// Prometheus metrics of real daemons in network namespaces: a coordination
// server and two node agents with --metrics on 127.0.0.1 inside their own
// namespaces, and a wg-quick pair (meshd daemon --config). After pings, a
// small HTTP client run inside each namespace scrapes /metrics: per-peer
// bytes and handshakes are counted, the server counts its nodes and API
// requests, and no private key, auth key or admin token appears. SIGTERM
// closes the listener with the daemon.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { keyPair, labPerTest, ping, run, waitFor, type Lab } from '../support/netns.js';
import { startNode, startServer } from '../support/mesh.js';

const NODE_METRICS = '127.0.0.1:9101';
const SERVER_METRICS = '127.0.0.1:9102';

let lab: Lab;

const SCRAPER = `
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=5)
    sys.stdout.write(str(r.status) + '\\n' + r.read().decode())
except urllib.error.HTTPError as e:
    sys.stdout.write(str(e.code) + '\\n')
except Exception as e:
    sys.stdout.write('FAILED ' + str(e) + '\\n')
    sys.exit(1)
`;

/** GET http://ADDR/PATH from inside `ns`: [status, body], or null if nothing answered. */
async function httpGet(ns: string, addr: string, path = '/metrics'): Promise<[number, string] | null> {
  const r = await run(ns, 'python3', ['-c', SCRAPER, `http://${addr}${path}`], { timeoutMs: 10_000 });
  if (r.code !== 0) return null;
  const nl = r.stdout.indexOf('\n');
  return [Number(r.stdout.slice(0, nl)), r.stdout.slice(nl + 1)];
}

async function scrape(ns: string, addr: string): Promise<string> {
  const r = await httpGet(ns, addr);
  expect(r?.[0], `scrape of ${addr} in ${ns}`).toBe(200);
  return r![1];
}

function value(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe.skipIf(process.getuid?.() !== 0)('Prometheus metrics (network namespaces)', () => {
  labPerTest((l) => (lab = l));

  it('two mesh nodes and the server: per-peer bytes and handshakes, node counts, API latency, no secrets', async () => {
    const topo = await lab.routedHosts(3);
    const server = await startServer(lab, topo.hosts[0], '--metrics', SERVER_METRICS);
    const authKey = await server.createKey('--reusable', '--preauthorized');
    const a = await startNode(lab, topo.hosts[1], 'n1', ['--metrics', NODE_METRICS]);
    const b = await startNode(lab, topo.hosts[2], 'n2', ['--metrics', NODE_METRICS]);
    // Up, before `meshd up`: no interface yet, but the endpoint answers.
    const early = await scrape(a.host.ns, NODE_METRICS);
    expect(value(early, 'meshd_interface_up')).toBe(0);
    expect(value(early, 'meshd_control_state', { state: 'stopped' })).toBe(1);

    await a.up('--login-server', server.url, '--authkey', authKey, '--hostname', 'node1');
    await b.up('--login-server', server.url, '--authkey', authKey, '--hostname', 'node2');
    const bIp = await b.ip4();
    await waitFor('node1 to reach node2', () => a.reaches(bIp), 10_000, 100);
    const p = await ping(a.host.ns, bIp, { count: 5, intervalS: 0.1 });
    expect(p.received).toBeGreaterThan(0);

    const bKey = (await b.status()).publicKey;
    const aKey = (await a.status()).publicKey;
    const ta = await scrape(a.host.ns, NODE_METRICS);
    const tb = await scrape(b.host.ns, NODE_METRICS);
    const toB = { public_key: bKey, name: 'node2' };
    const toA = { public_key: aKey, name: 'node1' };
    expect(value(ta, 'meshd_peer_tx_bytes_total', toB)).toBeGreaterThan(0);
    expect(value(ta, 'meshd_peer_rx_bytes_total', toB)).toBeGreaterThan(0);
    expect(value(ta, 'meshd_peer_tx_packets_total', toB)).toBeGreaterThanOrEqual(5);
    expect(value(tb, 'meshd_peer_rx_bytes_total', toA)).toBeGreaterThan(0);
    const handshakes = (value(ta, 'meshd_peer_handshakes_total', toB) ?? 0) + (value(tb, 'meshd_peer_handshakes_total', toA) ?? 0);
    expect(handshakes).toBeGreaterThan(0);
    expect(value(ta, 'meshd_peer_session_age_seconds', toB)).toBeGreaterThanOrEqual(0);
    expect(value(ta, 'meshd_interface_up')).toBe(1);
    expect(value(ta, 'meshd_control_state', { state: 'running' })).toBe(1);
    expect(value(ta, 'meshd_netmap_version')).toBeGreaterThan(0);
    expect(value(ta, 'meshd_filter_inbound_packets_total', { verdict: 'accept' })).toBeGreaterThan(0);
    expect(value(ta, 'meshd_drops_total', { reason: 'decryptFailed' })).toBe(0);

    const ts = await scrape(server.host.ns, SERVER_METRICS);
    expect(value(ts, 'meshd_server_nodes')).toBe(2);
    expect(value(ts, 'meshd_server_nodes_online')).toBe(2);
    expect(value(ts, 'meshd_server_nodes_pending')).toBe(0);
    expect(value(ts, 'meshd_server_auth_keys', { state: 'valid' })).toBe(1);
    expect(value(ts, 'meshd_server_netmap_pushes_total')).toBeGreaterThan(0);
    expect(value(ts, 'meshd_server_api_request_duration_seconds_count', { route: '/meshd/v1/register', status: '200' })).toBe(2);
    // Only loopback inside the namespace: not reachable on the node's underlay address, and /metrics only.
    expect(await httpGet(a.host.ns, `${a.host.v4}:9101`)).toBeNull();
    expect((await httpGet(a.host.ns, NODE_METRICS, '/'))?.[0]).toBe(404);

    const secrets = [
      readFileSync(join(a.stateDir, 'node.key'), 'utf8').trim(),
      readFileSync(join(b.stateDir, 'node.key'), 'utf8').trim(),
      readFileSync(join(server.stateDir, 'server.key'), 'utf8').trim(),
      readFileSync(server.tokenFile, 'utf8').trim(),
      authKey,
      authKey.slice('mskey-'.length + 12 + 1), // the secret part (base64url: it may hold '-' itself)
    ];
    for (const text of [ta, tb, ts]) for (const s of secrets) expect(text).not.toContain(s);

    // SIGTERM: the daemon exits 0 and its listener is gone.
    process.kill(a.proc.pid, 'SIGTERM');
    expect(await a.proc.waitExit(5_000)).toBe(true);
    expect(a.proc.exitCode).toBe(0);
    expect(await httpGet(a.host.ns, NODE_METRICS)).toBeNull();
  });

  it('a wg-quick interface (meshd daemon --config) with --metrics', async () => {
    const topo = await lab.routedHosts(2);
    const [ha, hb] = topo.hosts;
    const ka = keyPair();
    const kb = keyPair();
    const spec = (self: typeof ka, peer: typeof ka, me: string, other: string, ep: string) => ({
      keys: self,
      listenPort: 51820,
      addresses: [`${me}/24`],
      peers: [{ publicKey: peer.publicKey, allowedIps: [`${other}/32`], endpoint: `${ep}:51820` }],
    });
    const a = await lab.startMeshd(ha.ns, spec(ka, kb, '10.77.0.1', '10.77.0.2', hb.v4), { extraArgs: ['--metrics', NODE_METRICS] });
    await lab.startMeshd(hb.ns, spec(kb, ka, '10.77.0.2', '10.77.0.1', ha.v4), { extraArgs: ['--metrics', NODE_METRICS] });
    const p = await ping(ha.ns, '10.77.0.2', { count: 3, intervalS: 0.2 });
    expect(p.received).toBeGreaterThan(0);
    const ta = await scrape(ha.ns, NODE_METRICS);
    const tb = await scrape(hb.ns, NODE_METRICS);
    expect(value(ta, 'meshd_peer_tx_bytes_total', { public_key: kb.publicKey })).toBeGreaterThan(0);
    expect(value(ta, 'meshd_peer_rx_bytes_total', { public_key: kb.publicKey })).toBeGreaterThan(0);
    expect(value(ta, 'meshd_peer_handshakes_total', { public_key: kb.publicKey })).toBeGreaterThan(0);
    expect(value(tb, 'meshd_peer_handshakes_total', { public_key: ka.publicKey })).toBeGreaterThan(0);
    expect(value(ta, 'meshd_netmap_version')).toBeUndefined(); // no agent in wg-quick mode
    for (const text of [ta, tb]) for (const s of [ka.privateKey, kb.privateKey]) expect(text).not.toContain(s);
    process.kill(a.proc.pid, 'SIGTERM');
    expect(await a.proc.waitExit(5_000)).toBe(true);
    expect(a.proc.exitCode).toBe(0);
    expect(await httpGet(ha.ns, NODE_METRICS)).toBeNull();
  });
});
