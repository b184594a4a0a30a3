// The node's metrics: a registry over two in-memory devices that handshake
// and exchange data (test/support/fakes.ts), with and without an agent view;
// the /metrics listener (GET /metrics only, loopback addresses, clean close);
// and the --metrics address syntax.
import { beforeEach, describe, expect, it } from 'vitest';
import { parseCidr } from '../../src/device/allowedips.js';
import { Device } from '../../src/device/device.js';
import { generatePrivateKeyBytes, X25519PrivateKey } from '../../src/crypto/x25519.js';
import { MetricsError, MetricsServer, parseMetricsAddress } from '../../src/metrics/http.js';
import { nodeRegistry, type AgentView } from '../../src/metrics/node.js';
import { PacketFilter } from '../../src/filter/index.js';
import { FakeClock, FakeNetwork, FakeTun, ipv4 } from '../support/fakes.js';

/** Samples of the text format: `name{a="x",b="y"} value` → [{ name, labels, value }]. */
function parseScrape(text: string): Array<{ name: string; labels: Record<string, string>; value: number }> {
  const out = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function value(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  return parseScrape(text).find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

let clock: FakeClock;
let net: FakeNetwork;

function device(address: string) {
  const tun = new FakeTun();
  const ep = { address, port: 51820 };
  const dev = new Device({ bind: net.bindFor(() => ep), tun, clock, jitter: () => 0 });
  const priv = generatePrivateKeyBytes();
  dev.setPrivateKey(priv);
  net.attach(ep, dev);
  return { dev, ep, priv, pub: X25519PrivateKey.fromBytes(priv).publicKey };
}

/** Two linked devices after a handshake and `n` packets from a to b and one back. */
function pair(n = 3, psk?: Uint8Array) {
  const a = device('192.0.2.1');
  const b = device('192.0.2.2');
  a.dev.upsertPeer({ publicKey: b.pub, endpoint: b.ep, allowedIps: [parseCidr('10.0.0.2/32')], presharedKey: psk ?? null });
  b.dev.upsertPeer({ publicKey: a.pub, endpoint: a.ep, allowedIps: [parseCidr('10.0.0.1/32')], presharedKey: psk ?? null });
  for (let i = 0; i < n; i++) a.dev.send(ipv4('10.0.0.1', '10.0.0.2', `hello ${i}`));
  net.run();
  b.dev.send(ipv4('10.0.0.2', '10.0.0.1', 'back'));
  net.run();
  return { a, b };
}

const b64 = (k: Uint8Array) => Buffer.from(k).toString('base64');

beforeEach(() => {
  clock = new FakeClock();
  net = new FakeNetwork();
});

describe('node registry over a Device', () => {
  it('reports per-peer bytes, packets, handshakes and session age, labelled by public key', async () => {
    const { a, b } = pair(3);
    clock.advance(7_000);
    const text = await nodeRegistry({ device: () => a.dev }).metrics();
    const peer = { public_key: b64(b.pub) };
    const p = a.dev.peer(b.pub)!;
    expect(p.txBytes).toBeGreaterThan(0);
    expect(value(text, 'meshd_peer_tx_bytes_total', peer)).toBe(p.txBytes);
    expect(value(text, 'meshd_peer_rx_bytes_total', peer)).toBe(p.rxBytes);
    expect(value(text, 'meshd_peer_tx_packets_total', peer)).toBe(3);
    expect(value(text, 'meshd_peer_rx_packets_total', peer)).toBe(1);
    expect(value(text, 'meshd_peer_handshakes_total', peer)).toBe(1);
    expect(value(text, 'meshd_peer_session_age_seconds', peer)).toBeCloseTo(7, 3);
    expect(value(text, 'meshd_peer_last_handshake_timestamp_seconds', peer)).toBeCloseTo(p.lastHandshakeWall / 1000, 3);
    expect(value(text, 'meshd_peers')).toBe(1);
    expect(value(text, 'meshd_interface_up')).toBe(1);
    expect(text).toMatch(/# TYPE meshd_peer_rx_bytes_total counter/);
    expect(text).toMatch(/# TYPE meshd_peer_session_age_seconds gauge/);
    // The responder counts its handshake too.
    const tb = await nodeRegistry({ device: () => b.dev }).metrics();
    expect(value(tb, 'meshd_peer_handshakes_total', { public_key: b64(a.pub) })).toBe(1);
  });

  it('counts drops by reason, every reason present', async () => {
    const { a, b } = pair(1);
    a.dev.send(ipv4('10.0.0.1', '10.9.9.9', 'nowhere'));
    a.dev.send(ipv4('10.0.0.1', '10.9.9.9', 'nowhere'));
    b.dev.receive(Buffer.from([9, 9, 9]), a.ep);
    const text = await nodeRegistry({ device: () => a.dev }).metrics();
    expect(value(text, 'meshd_drops_total', { reason: 'noRoute' })).toBe(2);
    expect(value(text, 'meshd_drops_total', { reason: 'decryptFailed' })).toBe(0);
    expect(value(await nodeRegistry({ device: () => b.dev }).metrics(), 'meshd_drops_total', { reason: 'truncated' })).toBe(1);
    expect(parseScrape(text).filter((s) => s.name === 'meshd_drops_total').length).toBeGreaterThanOrEqual(20);
  });

  it('a peer without a handshake has counters but no session age; a removed peer leaves the scrape', async () => {
    const a = device('192.0.2.1');
    const other = X25519PrivateKey.generate().publicKey;
    a.dev.upsertPeer({ publicKey: other, allowedIps: [parseCidr('10.0.0.9/32')] });
    const reg = nodeRegistry({ device: () => a.dev });
    let text = await reg.metrics();
    expect(value(text, 'meshd_peer_handshakes_total', { public_key: b64(other) })).toBe(0);
    expect(value(text, 'meshd_peer_session_age_seconds', { public_key: b64(other) })).toBeUndefined();
    a.dev.removePeer(other);
    text = await reg.metrics();
    expect(text).not.toContain(b64(other));
    expect(value(text, 'meshd_peers')).toBe(0);
  });

  it('without a device (node down) it still answers, with nothing per peer', async () => {
    const text = await nodeRegistry({ device: () => null }).metrics();
    expect(value(text, 'meshd_interface_up')).toBe(0);
    expect(value(text, 'meshd_peers')).toBe(0);
    expect(text).not.toMatch(/^meshd_peer_rx_bytes_total\{/m);
  });

  it('never shows a private or pre-shared key', async () => {
    const psk = new Uint8Array(32).fill(7);
    const { a, b } = pair(2, psk);
    for (const dev of [a, b]) {
      const text = await nodeRegistry({ device: () => dev.dev }).metrics();
      for (const secret of [a.priv, b.priv, psk]) {
        expect(text).not.toContain(b64(secret));
        expect(text).not.toContain(Buffer.from(secret).toString('hex'));
      }
    }
  });
});

describe('node registry with the agent view', () => {
  it('names peers, and reports the filter, the netmap version and the control state', async () => {
    const { a, b } = pair(2);
    const filter = new PacketFilter([]);
    filter.inbound(ipv4('10.0.0.2', '10.0.0.1', Buffer.alloc(16)), 0);
    const view: AgentView = {
      state: 'running',
      netmapVersion: 42,
      lastContact: 1_700_000_000_000,
      lastError: null,
      filter: filter.stats() as unknown as Record<string, unknown>,
      peers: [{ publicKey: b64(b.pub), name: 'web1', online: true }],
    };
    const reg = nodeRegistry({ device: () => a.dev, agent: () => view });
    const text = await reg.metrics();
    expect(value(text, 'meshd_peer_tx_packets_total', { public_key: b64(b.pub), name: 'web1' })).toBe(2);
    expect(value(text, 'meshd_netmap_version')).toBe(42);
    expect(value(text, 'meshd_control_state', { state: 'running' })).toBe(1);
    expect(value(text, 'meshd_control_state', { state: 'needs-login' })).toBe(0);
    expect(value(text, 'meshd_control_error')).toBe(0);
    expect(value(text, 'meshd_control_last_contact_timestamp_seconds')).toBe(1_700_000_000);
    expect(value(text, 'meshd_netmap_peer_online', { name: 'web1' })).toBe(1);
    expect(value(text, 'meshd_filter_inbound_packets_total', { verdict: 'filtered' })).toBe(1);
    expect(value(text, 'meshd_filter_inbound_packets_total', { verdict: 'accept' })).toBe(0);
    expect(value(text, 'meshd_filter_permissive')).toBe(0);
    expect(value(text, 'meshd_filter_flows_max')).toBeGreaterThan(0);
    view.state = 'needs-login';
    view.lastError = 'connection refused';
    const later = await reg.metrics();
    expect(value(later, 'meshd_control_state', { state: 'needs-login' })).toBe(1);
    expect(value(later, 'meshd_control_error')).toBe(1);
    expect(later).not.toContain('connection refused');
  });
});

describe('the /metrics listener', () => {
  it('answers GET /metrics, 404 for anything else, and closes cleanly', async () => {
    const { a } = pair(1);
    const m = await MetricsServer.listen('127.0.0.1:0', nodeRegistry({ device: () => a.dev }));
    const base = `http://127.0.0.1:${m.port}`;
    try {
      const res = await fetch(`${base}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(value(await res.text(), 'meshd_peers')).toBe(1);
      for (const [path, method] of [['/', 'GET'], ['/metrics/x', 'GET'], ['/metrics', 'POST'], ['/debug', 'GET']]) {
        const r = await fetch(`${base}${path}`, { method });
        expect(r.status, `${method} ${path}`).toBe(404);
        await r.text();
      }
      expect((await fetch(`${base}/metrics?x=1`)).status).toBe(200);
    } finally {
      await m.close();
    }
    await expect(fetch(`${base}/metrics`)).rejects.toThrow();
  });

  it('serves on [::1] and warns about a non-loopback address', async () => {
    const warnings: string[] = [];
    const reg = nodeRegistry({ device: () => null });
    const v6 = await MetricsServer.listen('[::1]:0', reg, (w) => warnings.push(w));
    expect((await fetch(`http://[::1]:${v6.port}/metrics`)).status).toBe(200);
    await v6.close();
    expect(warnings).toEqual([]);
    const any = await MetricsServer.listen('0.0.0.0:0', reg, (w) => warnings.push(w));
    await any.close();
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toMatch(/localhost/);
  });

  it('a port in use is one clear error', async () => {
    const reg = nodeRegistry({ device: () => null });
    const first = await MetricsServer.listen('127.0.0.1:0', reg);
    try {
      await expect(MetricsServer.listen(`127.0.0.1:${first.port}`, reg)).rejects.toThrow(/cannot serve metrics on 127\.0\.0\.1:\d+: EADDRINUSE/);
    } finally {
      await first.close();
    }
  });
});

describe('--metrics addresses', () => {
  it('takes host:port, [v6]:port and localhost:port', () => {
    expect(parseMetricsAddress('127.0.0.1:9101')).toEqual({ host: '127.0.0.1', port: 9101, loopback: true });
    expect(parseMetricsAddress('[::1]:9101')).toEqual({ host: '::1', port: 9101, loopback: true });
    expect(parseMetricsAddress('localhost:9101')).toEqual({ host: 'localhost', port: 9101, loopback: true });
    expect(parseMetricsAddress('127.8.0.1:1')).toMatchObject({ loopback: true });
    expect(parseMetricsAddress('10.0.0.1:9101')).toEqual({ host: '10.0.0.1', port: 9101, loopback: false });
    expect(parseMetricsAddress('[2001:db8::1]:9101')).toMatchObject({ host: '2001:db8::1', loopback: false });
  });

  it('refuses what is not host:port, including a bare :port', () => {
    for (const bad of [':9101', '9101', '127.0.0.1', '127.0.0.1:70000', '::1:9101', 'example.com:9101', '[127.0.0.1]:9101', '']) {
      expect(() => parseMetricsAddress(bad), bad).toThrow(MetricsError);
    }
  });
});
