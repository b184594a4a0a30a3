// meshd against wireguard-go, and against itself, across real network namespaces.
//
// Topology (test/support/netns.ts): hosts A, B (and C) each hang off one router
// namespace by a veth; host N's underlay is 192.168.N.1/24 and fd00:N::1/64,
// the router forwards both families. A runs meshd (`bin/meshd daemon` from a
// wg-quick file); the peer runs wireguard-go configured with wg(8) and ip(8),
// or meshd again. Overlay: A 10.77.0.1 / fd77::1, B 10.77.0.2 / fd77::2,
// C 10.78.0.3 / fd78::3 (outside A's Address prefix, so only a route that
// meshd adds for the peer can reach it).
//
// Each test builds its own lab and tears it down in afterEach, also on failure;
// a failed test prints the tail of every daemon's log.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  formatEndpoint, iperfClient, iperfServer, keyPair, labPerTest, MESHD, must, ping, presharedKey, run, sleep, udpReceiveErrors, udpSend, udpSink, useMeshdDatapath,
  waitFor, type Host, type InterfaceSpec, type Lab, type PeerDump, type PingResult, type Proc, type Topology, type WgKind, type WgNode,
} from '../support/netns.js';

const KINDS: WgKind[] = ['wireguard-go', 'meshd'];
const PORT = 51820;
const A4 = '10.77.0.1';
const A6 = 'fd77::1';
const B4 = '10.77.0.2';
const B6 = 'fd77::2';
const C4 = '10.78.0.3';
const C6 = 'fd78::3';
const MiB = 1 << 20;

/** The replayer of case 8 needs python3 with AF_PACKET (Linux). */
const hasPython = spawnSync('python3', ['-c', 'import socket; socket.AF_PACKET'], { stdio: 'ignore', timeout: 10_000 }).status === 0;

let lab: Lab;

interface Pair {
  topo: Topology;
  ha: Host;
  hb: Host;
  a: WgNode;
  b: WgNode;
}

interface PairOptions {
  /** What runs on host A (default meshd) and on host B. */
  aKind?: WgKind;
  bKind: WgKind;
  underlay?: 4 | 6;
  psk?: boolean;
  hosts?: number;
}

function endpointOf(h: Host, family: 4 | 6 = 4): string {
  return formatEndpoint(family === 6 ? h.v6 : h.v4, PORT);
}

function specA(bKey: string, hb: Host, o: { family?: 4 | 6; psk?: string } = {}): InterfaceSpec {
  return {
    keys: keyPair(),
    listenPort: PORT,
    addresses: [`${A4}/24`, `${A6}/64`],
    peers: [{ publicKey: bKey, presharedKey: o.psk, allowedIps: [`${B4}/32`, `${B6}/128`], endpoint: endpointOf(hb, o.family) }],
  };
}

/** A (meshd unless told) and B, peered both ways, endpoints set on both sides. */
async function startPair(o: PairOptions): Promise<Pair> {
  const topo = await lab.routedHosts(o.hosts ?? 2);
  const [ha, hb] = topo.hosts;
  const kb = keyPair();
  const psk = o.psk ? presharedKey() : undefined;
  const aSpec = specA(kb.publicKey, hb, { family: o.underlay, psk });
  const bSpec: InterfaceSpec = {
    keys: kb,
    listenPort: PORT,
    addresses: [`${B4}/24`, `${B6}/64`],
    peers: [{ publicKey: aSpec.keys.publicKey, presharedKey: psk, allowedIps: [`${A4}/32`, `${A6}/128`], endpoint: endpointOf(ha, o.underlay) }],
  };
  const [a, b] = await Promise.all([lab.start(o.aKind ?? 'meshd', ha.ns, aSpec), lab.start(o.bKind, hb.ns, bSpec)]);
  return { topo, ha, hb, a, b };
}

function expectReplies(r: PingResult, what: string): void {
  expect(r.received, `${what}: expected replies\n${r.output}`).toBeGreaterThan(0);
}

function expectNoReplies(r: PingResult, what: string): void {
  expect(r.received, `${what}: expected no replies\n${r.output}`).toBe(0);
}

async function pingBothWays(p: Pair): Promise<void> {
  const results: Array<[string, PingResult]> = [];
  for (const [from, ns, addr] of [['A', p.ha.ns, B4], ['A', p.ha.ns, B6], ['B', p.hb.ns, A4], ['B', p.hb.ns, A6]] as const) {
    results.push([`${from} -> ${addr}`, await ping(ns, addr)]);
  }
  for (const [what, r] of results) expectReplies(r, what);
}

const relDiff = (x: number, y: number) => Math.abs(x - y) / Math.max(x, y, 1);

/** Largest WireGuard datagram at MTU 1420: the padded packet plus 16 header and 16 tag bytes. */
const MAX_DATAGRAM = 1420 + 32;
/** Slack for a keepalive or two crossing the moment the counters are read. */
const COUNTER_SLACK = 2 * MAX_DATAGRAM;

/** `tx` bytes sent by one side arrived as `rx` on the other, but for `drops` lost datagrams. */
function expectAccounted(tx: number, rx: number, drops: number, what: string): void {
  expect(tx - rx, what).toBeGreaterThanOrEqual(drops * 32 - COUNTER_SLACK);
  expect(tx - rx, what).toBeLessThanOrEqual(drops * MAX_DATAGRAM + COUNTER_SLACK);
}

// The whole suite runs once per datapath: the addon's native packet loop and the TypeScript one.
const DATAPATHS = ['native', 'js'] as const;

describe.skipIf(process.getuid?.() !== 0).each(DATAPATHS)('meshd interop over network namespaces (datapath: %s)', (datapath) => {
  beforeAll(() => useMeshdDatapath(datapath));
  labPerTest((l) => (lab = l));

  // 1 ---------------------------------------------------------------------
  describe.each(KINDS)('1. ping overlay v4+v6 both ways (peer: %s)', (kind) => {
    it.each([4, 6] as const)('over an IPv%i underlay', async (underlay) => {
      const p = await startPair({ bKind: kind, underlay });
      await pingBothWays(p);
      // Each side reached the other at the underlay address family we configured.
      expect((await p.a.peer(p.b.publicKey)).endpoint).toBe(endpointOf(p.hb, underlay));
      expect((await p.b.peer(p.a.publicKey)).endpoint).toBe(endpointOf(p.ha, underlay));
    });
  });

  // 2 ---------------------------------------------------------------------
  describe.each(KINDS)('2. handshake initiated by either side (peer: %s)', (kind) => {
    it.each([
      { initiator: 'A', psk: false },
      { initiator: 'B', psk: false },
      { initiator: 'A', psk: true },
      { initiator: 'B', psk: true },
    ] as const)('first packet from $initiator, PresharedKey: $psk', async ({ initiator, psk }) => {
      const p = await startPair({ bKind: kind, psk });
      expect((await p.a.peer(p.b.publicKey)).latestHandshake).toBe(0);
      expect((await p.b.peer(p.a.publicKey)).latestHandshake).toBe(0);
      const [first, other] = initiator === 'A' ? [p.a, p.b] : [p.b, p.a];
      const [firstHost, target] = initiator === 'A' ? [p.ha, B4] : [p.hb, A4];
      expectReplies(await ping(firstHost.ns, target), `first ping from ${initiator}`);
      expect(first.initiationsSent(), 'initiator logged an initiation').toBeGreaterThan(0);
      expect(other.initiationsReceived(), 'responder logged the initiation').toBeGreaterThan(0);
      expect(other.initiationsSent(), 'responder never had to initiate').toBe(0);
      const [pa, pb] = [await p.a.peer(p.b.publicKey), await p.b.peer(p.a.publicKey)];
      expect(pa.latestHandshake).toBeGreaterThan(0);
      expect(pb.latestHandshake).toBeGreaterThan(0);
      if (psk) expect(pa.presharedKey).toBe(pb.presharedKey);
      else expect([pa.presharedKey, pb.presharedKey]).toEqual([null, null]);
      await pingBothWays(p);
    });

    it('a PresharedKey on one side only never completes a handshake', async () => {
      const p = await startPair({ bKind: kind });
      await p.a.wg('set', p.a.name, 'peer', p.b.publicKey, 'preshared-key', lab.file('psk', presharedKey() + '\n'));
      expectNoReplies(await ping(p.ha.ns, B4, { count: 2, waitS: 1 }), 'A -> B with mismatched PSK');
      expectNoReplies(await ping(p.hb.ns, A4, { count: 2, waitS: 1 }), 'B -> A with mismatched PSK');
      expect((await p.a.peer(p.b.publicKey)).latestHandshake).toBe(0);
      expect((await p.b.peer(p.a.publicKey)).latestHandshake).toBe(0);
      expect(p.a.proc.alive).toBe(true);
    });
  });

  // 3 ---------------------------------------------------------------------
  it.each(KINDS)('3. iperf3 TCP both directions; wg transfer counters account for it (peer: %s)', async (kind) => {
    const p = await startPair({ bKind: kind });
    expectReplies(await ping(p.ha.ns, B4), 'A -> B');
    const counters = async () => ({ a: await p.a.peer(p.b.publicKey), b: await p.b.peer(p.a.publicKey) });
    for (const reverse of [false, true]) {
      const server = await iperfServer(lab, p.hb.ns, B4);
      const before = await counters();
      const dropsBefore = { a: await udpReceiveErrors(p.ha.ns), b: await udpReceiveErrors(p.hb.ns) };
      const r = await iperfClient(p.ha.ns, B4, { seconds: 3, reverse });
      await server.waitExit(5_000);
      await sleep(300); // the last ACKs and the control connection's FINs
      const after = await counters();
      const dropsAfter = { a: await udpReceiveErrors(p.ha.ns), b: await udpReceiveErrors(p.hb.ns) };
      const d = (side: 'a' | 'b', key: 'rx' | 'tx') => after[side][key] - before[side][key];
      // Datagrams the receiving kernel dropped (socket buffer full): sent and counted, never received.
      const drops = (side: 'a' | 'b') => dropsAfter[side].inErrors - dropsBefore[side].inErrors;
      // reverse: B sends the data. Data flows sender -> receiver; ACKs flow back.
      const [snd, rcv] = reverse ? (['b', 'a'] as const) : (['a', 'b'] as const);
      const what = `${reverse ? 'B -> A' : 'A -> B'}: iperf sent ${r.sentBytes} received ${r.receivedBytes}; ` +
        `${snd} tx ${d(snd, 'tx')} rx ${d(snd, 'rx')} UDP drops ${drops(snd)}; ${rcv} tx ${d(rcv, 'tx')} rx ${d(rcv, 'rx')} UDP drops ${drops(rcv)}`;
      console.log(what);
      expect(r.receivedBytes, what).toBeGreaterThan(MiB);
      expect(r.sentBytes, what).toBeGreaterThanOrEqual(r.receivedBytes);
      // WireGuard counts whole datagrams (headers, tag, padding): never less than the payload.
      expect(d(snd, 'tx'), what).toBeGreaterThanOrEqual(r.receivedBytes);
      expect(d(rcv, 'rx'), what).toBeGreaterThanOrEqual(r.receivedBytes);
      // What one side sent is what the other received, but for the datagrams the receiving
      // kernel dropped, each 32..1452 bytes (a keepalive .. a full 1420-byte packet + 32).
      expectAccounted(d(snd, 'tx'), d(rcv, 'rx'), drops(rcv), `data: ${what}`);
      expectAccounted(d(rcv, 'tx'), d(snd, 'rx'), drops(snd), `acks: ${what}`);
      // And so within a few percent.
      expect(relDiff(d(snd, 'tx') - drops(rcv) * 1452, d(rcv, 'rx')), what).toBeLessThan(0.03);
    }
  }, 90_000);

  // 4 ---------------------------------------------------------------------
  // Moving by address: A's old address disappears from its veth and A sits behind a new one.
  // wireguard-go is moved by port instead (`wg set listen-port`): its sticky source address
  // (IP_PKTINFO) makes it fail with ENETUNREACH after its address vanishes, until a new
  // handshake 15 s later, which would test wireguard-go rather than meshd following it.
  it.each([
    { roamer: 'meshd', move: 'address', peer: 'wireguard-go' },
    { roamer: 'meshd', move: 'address', peer: 'meshd' },
    { roamer: 'meshd', move: 'port', peer: 'wireguard-go' },
    { roamer: 'wireguard-go', move: 'port', peer: 'meshd' },
  ] as const)('4. roaming: $roamer on A changes its underlay $move mid-transfer, $peer follows', async ({ roamer, move, peer }) => {
    const p = await startPair({ aKind: roamer, bKind: peer });
    expectReplies(await ping(p.ha.ns, B4), 'A -> B');
    expect((await p.b.peer(p.a.publicKey)).endpoint).toBe(`${p.ha.v4}:${PORT}`);
    const server = await iperfServer(lab, p.hb.ns, B4);
    const transfer = iperfClient(p.ha.ns, B4, { seconds: 4 }); // A sends
    await sleep(1_500);
    let moved: string;
    if (move === 'address') {
      const newV4 = '192.168.101.1';
      await must(p.topo.router, 'ip', ['addr', 'add', '192.168.101.254/24', 'dev', p.ha.routerDev]);
      await must(p.ha.ns, 'ip', ['addr', 'add', `${newV4}/24`, 'dev', p.ha.dev]);
      await must(p.ha.ns, 'ip', ['route', 'replace', 'default', 'via', '192.168.101.254']);
      await must(p.ha.ns, 'ip', ['addr', 'del', `${p.ha.v4}/24`, 'dev', p.ha.dev]);
      moved = `${newV4}:${PORT}`;
    } else {
      await p.a.wg('set', p.a.name, 'listen-port', String(PORT + 1));
      moved = `${p.ha.v4}:${PORT + 1}`;
    }
    const r = await transfer;
    await server.waitExit(5_000);
    const what = `intervals ${JSON.stringify(r.intervals)}`;
    expect(r.receivedBytes, what).toBeGreaterThan(MiB);
    // Traffic kept flowing after the move (at ~1.5 s): the last second carried data.
    expect(r.intervals.length, what).toBeGreaterThanOrEqual(4);
    expect(r.intervals[r.intervals.length - 1], what).toBeGreaterThan(64 * 1024);
    await waitFor(`B to show A at ${moved}`, async () => (await p.b.peer(p.a.publicKey)).endpoint === moved, 3_000, 100);
    // B's replies now reach A where it is.
    expectReplies(await ping(p.hb.ns, A4), 'B -> A after the move');
    expectReplies(await ping(p.ha.ns, B6), 'A -> B (v6 overlay) after the move');
  }, 60_000);

  // 5 ---------------------------------------------------------------------
  it.each(KINDS)('5. restart with the same key re-handshakes; a changed key works once the peer is told (peer: %s)', async (kind) => {
    const p = await startPair({ bKind: kind });
    expectReplies(await ping(p.ha.ns, B4), 'A -> B');

    // meshd A restarts, same key and config: its first packet starts a new handshake.
    const receivedBefore = p.b.initiationsReceived();
    await p.a.stop();
    const a2 = await lab.startMeshd(p.ha.ns, p.a.spec, { name: p.a.name });
    expectReplies(await ping(p.ha.ns, B4), 'restarted A -> B');
    expect(a2.initiationsSent()).toBeGreaterThan(0);
    expect(p.b.initiationsReceived()).toBeGreaterThan(receivedBefore);
    expectReplies(await ping(p.hb.ns, A6), 'B -> restarted A');

    // The peer B restarts (same key): meshd A, which still holds the old session, accepts its new handshake.
    await p.b.stop();
    const b2 = await lab.start(kind, p.hb.ns, p.b.spec, { name: p.b.name });
    const a2ReceivedBefore = a2.initiationsReceived();
    expectReplies(await ping(p.hb.ns, A4), 'restarted B -> A');
    expect(a2.initiationsReceived()).toBeGreaterThan(a2ReceivedBefore);

    // meshd A comes back with a new key; B swaps the public key with wg set and pings at once.
    await a2.stop();
    const newSpec: InterfaceSpec = { ...p.a.spec, keys: keyPair() };
    const a3 = await lab.startMeshd(p.ha.ns, newSpec, { name: p.a.name });
    await b2.wg('set', b2.name, 'peer', p.a.publicKey, 'remove', 'peer', a3.publicKey, 'allowed-ips', `${A4}/32,${A6}/128`, 'endpoint', `${p.ha.v4}:${PORT}`);
    if (kind === 'wireguard-go') await lab.routeAllowedIps(b2, [`${A4}/32`, `${A6}/128`]);
    const t0 = performance.now();
    const r = await ping(p.hb.ns, A4, { count: 1, waitS: 3 });
    expectReplies(r, 'B -> A under its new key');
    expect(performance.now() - t0).toBeLessThan(3_000);
    expect((await b2.dump()).peers.map((x) => x.publicKey)).toEqual([a3.publicKey]);
    expect((await a3.peer(b2.publicKey)).latestHandshake).toBeGreaterThan(0);
    expectReplies(await ping(p.ha.ns, B6), 'A (new key) -> B');
  }, 60_000);

  // 6 ---------------------------------------------------------------------
  it.each(KINDS)('6. a packet whose inner source is outside the sender\'s AllowedIPs is dropped (sender: %s)', async (kind) => {
    const p = await startPair({ bKind: kind });
    expectReplies(await ping(p.hb.ns, A4), 'B -> A');
    // B gets addresses A never allowed for it; B's own AllowedIPs for A still cover A's address.
    await must(p.hb.ns, 'ip', ['addr', 'add', '10.77.0.99/32', 'dev', p.b.name]);
    await must(p.hb.ns, 'ip', ['-6', 'addr', 'add', 'fd77::99/128', 'dev', p.b.name, 'nodad']);
    const sink4 = await udpSink(lab, p.ha.ns, [7777], '0.0.0.0');
    const sink6 = await udpSink(lab, p.ha.ns, [7778], '::');

    const before = { a: await p.a.peer(p.b.publicKey), b: await p.b.peer(p.a.publicKey) };
    await udpSend(p.hb.ns, { source: '10.77.0.99', address: A4, port: 7777, count: 5 });
    await udpSend(p.hb.ns, { source: 'fd77::99', address: A6, port: 7778, count: 5 });
    const spoofPing = await ping(p.hb.ns, A4, { source: '10.77.0.99', count: 3, waitS: 1 });
    await sleep(300);
    const after = { a: await p.a.peer(p.b.publicKey), b: await p.b.peer(p.a.publicKey) };
    // The spoofed packets did cross the tunnel (B sent, A received and authenticated them)...
    expect(after.b.tx - before.b.tx).toBeGreaterThanOrEqual(13 * 32);
    expect(after.a.rx - before.a.rx).toBeGreaterThanOrEqual(13 * 32);
    // ...and A delivered none of them.
    expectNoReplies(spoofPing, 'ping -I 10.77.0.99');
    expect(sink4.datagrams()).toEqual([]);
    expect(sink6.datagrams()).toEqual([]);

    // The same traffic from B's allowed addresses is delivered.
    await udpSend(p.hb.ns, { source: B4, address: A4, port: 7777, count: 5 });
    await udpSend(p.hb.ns, { source: B6, address: A6, port: 7778, count: 5 });
    await waitFor('the allowed datagrams', () => sink4.datagrams().length === 5 && sink6.datagrams().length === 5, 3_000);
    expect(new Set(sink4.datagrams().map((d) => d.from))).toEqual(new Set([B4]));
    expect(new Set(sink6.datagrams().map((d) => d.from))).toEqual(new Set([B6]));
    expectReplies(await ping(p.hb.ns, A4), 'B -> A from its own address');
  });

  // 7 ---------------------------------------------------------------------
  it.each(KINDS)('7. wg set adds a third peer at runtime; meshd routes to it without a restart (peer C: %s)', async (kind) => {
    const p = await startPair({ bKind: 'wireguard-go', hosts: 3 });
    const hc = p.topo.hosts[2];
    const c = await lab.start(kind, hc.ns, {
      keys: keyPair(),
      listenPort: PORT,
      addresses: [`${C4}/24`, `${C6}/64`],
      peers: [{ publicKey: p.a.publicKey, allowedIps: [`${A4}/32`, `${A6}/128`], endpoint: endpointOf(p.ha) }],
    });
    const routes = async () => ({
      v4: (await must(p.ha.ns, 'ip', ['-4', 'route', 'show', `${C4}/32`, 'dev', p.a.name])).trim(),
      v6: (await must(p.ha.ns, 'ip', ['-6', 'route', 'show', `${C6}/128`, 'dev', p.a.name])).trim(),
    });
    expect(await routes()).toEqual({ v4: '', v6: '' });

    await p.a.wg('set', p.a.name, 'peer', c.publicKey, 'allowed-ips', `${C4}/32,${C6}/128`, 'endpoint', `${hc.v4}:${PORT}`);
    await waitFor('meshd to route C', async () => Object.values(await routes()).every((r) => r !== ''), 3_000, 100);
    expectReplies(await ping(p.ha.ns, C4), 'A -> C');
    expectReplies(await ping(p.ha.ns, C6), 'A -> C (v6)');
    expectReplies(await ping(hc.ns, A4), 'C -> A');
    expectReplies(await ping(p.ha.ns, B4), 'A -> B still');
    expect((await p.a.dump()).peers.map((x) => x.publicKey).sort()).toEqual([p.b.publicKey, c.publicKey].sort());

    // Removing the peer takes its routes away again.
    await p.a.wg('set', p.a.name, 'peer', c.publicKey, 'remove');
    await waitFor('meshd to drop the routes to C', async () => Object.values(await routes()).every((r) => r === ''), 3_000, 100);
  });

  // 8 ---------------------------------------------------------------------
  it('8. garbage, truncated and replayed datagrams during a transfer: meshd stays up, the transfer completes', async () => {
    const p = await startPair({ bKind: 'wireguard-go' });
    const target = { address: p.ha.v4, port: PORT };
    // Capture real datagrams to A on the router's link to A (AF_PACKET), then replay them (as they
    // were, truncated, one bit flipped) from the router while the transfer runs.
    let replayer: Proc | null = null;
    if (hasPython) {
      const script = lab.file('replay.py', REPLAYER_PY);
      replayer = lab.spawn(p.topo.router, 'python3', [script, p.ha.routerDev, target.address, String(target.port), '2.5', '4', '40000'], { label: 'replayer' });
      await waitFor('the replayer to capture', () => {
        if (replayer!.hasExited) throw new Error(`replayer exited: ${replayer!.output}`);
        return replayer!.lines.includes('ready');
      });
    } else {
      console.warn('python3 not found: case 8 runs without replayed captures');
    }
    expectReplies(await ping(p.hb.ns, A4), 'B -> A (B initiates; the replayer sees the initiation)');
    const server = await iperfServer(lab, p.ha.ns, A4);
    const transfer = iperfClient(p.hb.ns, A4, { seconds: 6 }); // B sends to A
    await sleep(1_000);
    const flooder = lab.spawn(p.topo.router, process.execPath, [lab.file('flood.cjs', FLOODER_JS), target.address, String(target.port), '5000', '60000'], { label: 'flooder' });

    // Where A sends to B, sampled through the flood: replayed copies from the router must never
    // count as authenticated packets from B (which would move B's endpoint to the router).
    const seen = new Set<string>();
    let transferDone = false;
    void transfer.finally(() => (transferDone = true)).catch(() => {});
    for (let i = 0; i < 100 && !transferDone; i++) {
      seen.add(String((await p.a.peer(p.b.publicKey)).endpoint));
      await sleep(100);
    }
    const r = await transfer;
    await server.waitExit(5_000);
    expect(await flooder.waitExit(10_000)).toBe(true);
    expect([...seen], 'A\'s endpoint for B during the flood').toEqual([`${p.hb.v4}:${PORT}`]);
    const flood = JSON.parse(flooder.lines.find((l) => l.startsWith('{')) ?? '{}');
    console.log(`flood: ${JSON.stringify(flood)}; iperf received ${r.receivedBytes} B, intervals ${JSON.stringify(r.intervals)}`);
    expect(flood.sent).toBeGreaterThan(5_000);
    if (replayer) {
      expect(await replayer.waitExit(10_000)).toBe(true);
      const replay = JSON.parse(replayer.lines.find((l) => l.startsWith('{')) ?? '{}');
      console.log(`replay: ${JSON.stringify(replay)}`);
      expect(replay.captured).toBeGreaterThan(50);
      expect(replay.initiations).toBeGreaterThan(0);
      expect(replay.sent).toBeGreaterThan(1_000);
    }

    expect(p.a.proc.alive, 'meshd survived').toBe(true);
    expect(r.receivedBytes).toBeGreaterThan(MiB);
    expectReplies(await ping(p.ha.ns, B4), 'A -> B after the flood');
    expectReplies(await ping(p.hb.ns, A6), 'B -> A after the flood');
    // Replays from the router never moved A's idea of where B is (the pings above came from B).
    expect((await p.a.peer(p.b.publicKey)).endpoint).toBe(`${p.hb.v4}:${PORT}`);
  }, 90_000);

  // 9 ---------------------------------------------------------------------
  it('9. low-order peer public keys never produce a handshake initiation', async () => {
    const topo = await lab.routedHosts(2);
    const [ha, hb] = topo.hosts;
    const low = [
      '0000000000000000000000000000000000000000000000000000000000000000', // 0 (order 4)
      '0100000000000000000000000000000000000000000000000000000000000000', // 1 (order 1)
      'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', // order 8
      '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157', // order 8
      'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p - 1 (order 2)
    ].map((h) => Buffer.from(h, 'hex').toString('base64'));
    const runtimeLow = Buffer.from('edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex').toString('base64'); // p, i.e. 0
    const control = keyPair().publicKey;
    const lowPorts = low.map((_, i) => 52000 + i);
    const sink = await udpSink(lab, hb.ns, [...lowPorts, 52010, 52099]);
    const a = await lab.startMeshd(ha.ns, {
      keys: keyPair(),
      listenPort: PORT,
      addresses: [`${A4}/24`],
      peers: [
        ...low.map((k, i) => ({ publicKey: k, allowedIps: [`10.77.9.${i + 1}/32`], endpoint: `${hb.v4}:${lowPorts[i]}` })),
        { publicKey: control, allowedIps: ['10.77.9.100/32'], endpoint: `${hb.v4}:52099` },
      ],
    });
    await a.wg('set', a.name, 'peer', runtimeLow, 'allowed-ips', '10.77.9.50/32', 'endpoint', `${hb.v4}:52010`);
    expect((await a.dump()).peers).toHaveLength(low.length + 2);

    const targets = [...low.map((_, i) => `10.77.9.${i + 1}`), '10.77.9.50'];
    const results = await Promise.all(targets.map((t) => ping(ha.ns, t, { count: 4, intervalS: 0.5, waitS: 1 })));
    for (const [i, r] of results.entries()) expectNoReplies(r, targets[i]);
    await sleep(500);
    const toLow = sink.datagrams().filter((d) => d.port !== 52099);
    expect(toLow.filter((d) => d.type === 1 && d.len === 148), 'initiations to low-order peers').toEqual([]);
    expect(toLow, 'anything at all to low-order peers').toEqual([]);
    for (const p of (await a.dump()).peers) if (p.publicKey !== control) expect(p.latestHandshake).toBe(0);

    // Control: the same path with a valid key does carry initiations, so the sink would have seen them.
    await ping(ha.ns, '10.77.9.100', { count: 1, waitS: 1 });
    await waitFor('an initiation to the valid peer', () => sink.datagrams().some((d) => d.port === 52099 && d.type === 1 && d.len === 148), 3_000);
    expect(a.proc.alive).toBe(true);
  });

  // 10 --------------------------------------------------------------------
  describe('10. shutdown and refusal', () => {
    it('SIGTERM exits within 2 s and removes the TUN link and the UAPI socket', async () => {
      const p = await startPair({ bKind: 'wireguard-go' });
      expectReplies(await ping(p.ha.ns, B4), 'A -> B');
      expect(existsSync(p.a.socketPath)).toBe(true);
      await must(p.ha.ns, 'ip', ['link', 'show', p.a.name]);
      const r = await p.a.stop();
      expect(r.ms, `exit took ${r.ms} ms`).toBeLessThan(2_000);
      expect(r.code).toBe(0);
      expect((await run(p.ha.ns, 'ip', ['link', 'show', p.a.name])).code).not.toBe(0);
      expect(existsSync(p.a.socketPath)).toBe(false);
      // The routes meshd added for its peer went with the link.
      expect((await must(p.ha.ns, 'ip', ['route', 'show', 'table', 'all'])).includes(p.a.name)).toBe(false);
    });

    it('a malformed PublicKey on line 7 exits non-zero with one line naming file and line, leaving nothing behind', async () => {
      const ns = await lab.netns();
      const name = lab.wgName();
      const file = lab.file('bad.conf', [
        '[Interface]',
        `PrivateKey = ${keyPair().privateKey}`,
        'ListenPort = 51820',
        'Address = 10.77.0.1/24',
        '',
        '[Peer]',
        'PublicKey = not+a/valid=key',
        'AllowedIPs = 10.77.0.2/32',
        '',
      ].join('\n'));
      const r = await run(ns, MESHD, ['daemon', '--tun', name, '--config', file], { timeoutMs: 15_000 });
      console.log(`meshd daemon with a bad config: exit ${r.code}, stderr ${JSON.stringify(r.stderr)}`);
      expect(r.signal, 'meshd had to be killed').toBeNull();
      expect(r.code).not.toBe(0);
      const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toContain(`${file}:7`);
      expect((await run(ns, 'ip', ['link', 'show', name])).code).not.toBe(0);
      expect(existsSync(`/var/run/wireguard/${name}.sock`)).toBe(false);
    });
  });

  // 11 --------------------------------------------------------------------
  it('11. wg showconf output is accepted back by wg syncconf; syncconf with a changed peer set takes effect', async () => {
    const p = await startPair({ bKind: 'wireguard-go', psk: true, hosts: 3 });
    const hc = p.topo.hosts[2];
    await p.a.wg('set', p.a.name, 'peer', p.b.publicKey, 'persistent-keepalive', '25');
    const c = await lab.startWireguardGo(hc.ns, {
      keys: keyPair(),
      listenPort: PORT,
      addresses: [`${C4}/24`],
      peers: [{ publicKey: p.a.publicKey, allowedIps: [`${A4}/32`], endpoint: endpointOf(p.ha) }],
    });
    expectReplies(await ping(p.ha.ns, B4), 'A -> B');

    const shown = await p.a.wg('showconf', p.a.name);
    for (const line of [`PrivateKey = ${p.a.spec.keys.privateKey}`, `ListenPort = ${PORT}`, `PublicKey = ${p.b.publicKey}`, `PresharedKey = ${p.a.spec.peers[0].presharedKey}`,
      `AllowedIPs = ${B4}/32, ${B6}/128`, `Endpoint = ${p.hb.v4}:${PORT}`, 'PersistentKeepalive = 25']) {
      expect(shown).toContain(line);
    }
    const stable = (x: PeerDump) => ({ ...x, latestHandshake: 0, rx: 0, tx: 0 });
    const before = (await p.a.dump()).peers.map(stable);
    await p.a.wg('syncconf', p.a.name, lab.file('shown.conf', shown));
    expect((await p.a.dump()).peers.map(stable)).toEqual(before);
    expectReplies(await ping(p.ha.ns, B4), 'A -> B after syncconf of its own showconf');

    // Same interface, B replaced by C.
    const iface = shown.slice(0, shown.indexOf('[Peer]'));
    const next = `${iface}[Peer]\nPublicKey = ${c.publicKey}\nAllowedIPs = ${C4}/32\nEndpoint = ${hc.v4}:${PORT}\n`;
    await p.a.wg('syncconf', p.a.name, lab.file('next.conf', next));
    expect((await p.a.dump()).peers.map((x) => [x.publicKey, x.allowedIps, x.endpoint])).toEqual([[c.publicKey, [`${C4}/32`], `${hc.v4}:${PORT}`]]);
    await waitFor('meshd to route C', async () => (await must(p.ha.ns, 'ip', ['route', 'show', `${C4}/32`, 'dev', p.a.name])).trim() !== '', 3_000, 100);
    expectReplies(await ping(p.ha.ns, C4), 'A -> C after syncconf');
    expectNoReplies(await ping(p.ha.ns, B4, { count: 2, waitS: 1 }), 'A -> B after B was synced away');
  });
});

// The native datapath only: the TypeScript one reads a single queue.
describe.skipIf(process.getuid?.() !== 0)('meshd native datapath over network namespaces', () => {
  beforeAll(() => useMeshdDatapath('native'));
  labPerTest((l) => (lab = l));

  it('a multi-queue TUN (--tun-queues 3): four TCP streams each way through three sending threads', async () => {
    const topo = await lab.routedHosts(2);
    const [ha, hb] = topo.hosts;
    const kb = keyPair();
    const aSpec = specA(kb.publicKey, hb, { family: 4 });
    const bSpec: InterfaceSpec = {
      keys: kb,
      listenPort: PORT,
      addresses: [`${B4}/24`, `${B6}/64`],
      peers: [{ publicKey: aSpec.keys.publicKey, allowedIps: [`${A4}/32`, `${A6}/128`], endpoint: endpointOf(ha, 4) }],
    };
    await lab.startMeshd(ha.ns, aSpec, { extraArgs: ['--tun-queues', '3'] });
    await lab.start('wireguard-go', hb.ns, bSpec);
    expectReplies(await ping(ha.ns, B4), 'A -> B');
    for (const reverse of [false, true]) {
      const server = await iperfServer(lab, hb.ns, B4);
      const r = await iperfClient(ha.ns, B4, { seconds: 2, reverse, streams: 4 });
      await server.waitExit(5_000);
      expect(r.receivedBytes, `${reverse ? 'B -> A' : 'A -> B'}`).toBeGreaterThan(MiB);
    }
  });
});

// ---------------------------------------------------------------------------
// Flood helpers, run inside the router namespace.

/**
 * node flood.cjs HOST PORT MS MAX: sends junk to HOST:PORT for MS ms or MAX
 * datagrams: random bytes of random length, every message type at its exact
 * size with random contents, every type truncated, non-zero reserved bytes,
 * and oversized transport messages. Prints one JSON line of counts.
 */
const FLOODER_JS = `
const dgram = require('node:dgram');
const { randomBytes, randomInt } = require('node:crypto');
const [host, port, ms, max] = process.argv.slice(2);
const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
const SIZES = [[1, 148], [2, 92], [3, 64], [4, 32]];
const stats = { sent: 0, errors: 0, random: 0, shaped: 0, truncated: 0, reserved: 0, oversized: 0 };
function junk(i) {
  const [type, size] = SIZES[randomInt(SIZES.length)];
  switch (i % 5) {
    case 0: stats.random++; return randomBytes(randomInt(0, 1500));
    case 1: { stats.shaped++; const b = randomBytes(type === 4 ? 32 + 16 * randomInt(0, 88) : size); b[0] = type; b.fill(0, 1, 4); return b; }
    case 2: { stats.truncated++; const b = randomBytes(randomInt(1, size)); b[0] = type; b.fill(0, 1, Math.min(4, b.length)); return b; }
    case 3: { stats.reserved++; const b = randomBytes(size); b[0] = type; b[1 + randomInt(3)] |= 1; return b; }
    default: { stats.oversized++; const b = randomBytes(randomInt(1500, 9000)); b[0] = 4; b.fill(0, 1, 4); return b; }
  }
}
const deadline = Date.now() + Number(ms);
(async () => {
  while (Date.now() < deadline && stats.sent < Number(max)) {
    await Promise.all(Array.from({ length: 32 }, () => new Promise((res) => s.send(junk(stats.sent++), Number(port), host, (err) => { if (err) stats.errors++; res(); }))));
    await new Promise((res) => setTimeout(res, 2));
  }
  console.log(JSON.stringify(stats));
  s.close();
})();
`;

/**
 * python3 replay.py IFACE DST PORT CAPTURE_S REPLAY_S MAX: captures UDP
 * payloads to DST:PORT on IFACE (AF_PACKET) for CAPTURE_S seconds, then sends
 * them back to DST:PORT from this namespace for REPLAY_S seconds or MAX
 * datagrams: exact copies (handshake initiations among them), truncated
 * copies and copies with one bit flipped. Prints "ready", then a JSON line.
 */
const REPLAYER_PY = `
import json, random, socket, struct, sys, time
iface, dst, port, capture_s, replay_s, max_n = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
raw.bind((iface, 0))
raw.settimeout(0.1)
want = socket.inet_aton(dst)
captured, initiations = [], []
print('ready', flush=True)
end = time.monotonic() + capture_s
# Captures for the whole CAPTURE_S but keeps only the first 4000 datagrams: by the time they are
# replayed, the session's counters are far past them, outside any replay window.
while time.monotonic() < end:
    try:
        frame = raw.recv(65535)
    except socket.timeout:
        continue
    if len(captured) >= 4000:
        continue
    if len(frame) < 42 or frame[12:14] != b'\\x08\\x00':
        continue
    ip = frame[14:]
    ihl = (ip[0] & 15) * 4
    if ip[9] != 17 or ip[16:20] != want:
        continue
    udp = ip[ihl:]
    if struct.unpack('!H', udp[2:4])[0] != port:
        continue
    payload = bytes(udp[8:struct.unpack('!H', udp[4:6])[0]])
    captured.append(payload)
    if payload[:1] == b'\\x01':
        initiations.append(payload)
raw.close()
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
stats = {'captured': len(captured), 'initiations': len(initiations), 'sent': 0, 'exact': 0, 'truncated': 0, 'flipped': 0}
end = time.monotonic() + replay_s
while captured and time.monotonic() < end and stats['sent'] < max_n:
    n = stats['sent']
    p = random.choice(initiations) if initiations and n % 50 == 0 else random.choice(captured)
    if n % 3 == 0:
        q, kind = p, 'exact'
    elif n % 3 == 1:
        q, kind = p[:random.randrange(0, len(p))], 'truncated'
    else:
        b = bytearray(p)
        b[random.randrange(len(b))] ^= 1 << random.randrange(8)
        q, kind = bytes(b), 'flipped'
    try:
        out.sendto(q, (dst, port))
    except OSError:
        pass
    stats['sent'] += 1
    stats[kind] += 1
    if n % 64 == 63:
        time.sleep(0.005)
print(json.dumps(stats), flush=True)
`;
