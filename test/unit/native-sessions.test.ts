// The seam between the Device and the native datapath (src/daemon/datapath.ts),
// against a recording stand-in for the addon: what is handed over when sessions
// change, how native timer events are replayed into the peer's timers, and how
// the slow-path events (staging, filter verdicts, new flows) come back. The
// native side itself is tested in C (native/test) and end to end in netns.
import { beforeEach, describe, expect, it } from 'vitest';
import { Device } from '../../src/device/device.js';
import { parseCidr } from '../../src/device/allowedips.js';
import type { Endpoint } from '../../src/device/endpoint.js';
import { generatePrivateKeyBytes, X25519PrivateKey } from '../../src/crypto/x25519.js';
import { NativeSessions } from '../../src/daemon/datapath.js';
import { FLOW_ADMIT_SENT, PEER_STATS, PeerStat, type DatapathKeypair, type NativeDatapath } from '../../src/io/datapath.js';
import { sealTransport } from '../../src/noise/transport.js';
import { PacketFilter } from '../../src/filter/index.js';
import { KEEPALIVE_TIMEOUT, REKEY_AFTER_TIME, REKEY_TIMEOUT } from '../../src/wire/constants.js';
import type { Logger } from '../../src/daemon/log.js';
import { FakeClock, FakeNetwork, FakeTun, ipv4 } from '../support/fakes.js';

/** Native ms = JS ms + OFFSET, as NativeDatapath measures at open. */
const OFFSET = 5_000_000;

class FakeDatapath {
  keypairs = new Map<number, Array<DatapathKeypair | null>>();
  endpoints = new Map<number, Endpoint | null>();
  figures = new Map<number, number[]>();
  sent: Array<{ id: number; packet: Uint8Array }> = [];
  tun: Uint8Array[] = [];
  admitted: Array<{ packet: Uint8Array; flags: number }> = [];
  filterOn: boolean[] = [];
  forgets = 0;
  allowed: Array<{ peerId: number; cidr: number }> = [];
  /** How sendPlain seals: through the JS keypair, standing in for the native counter. */
  constructor(private readonly dev: () => Device, private readonly bindSend: (p: Uint8Array, to: Endpoint) => void) {}
  readonly clockOffset = OFFSET;
  toNative(ms: number) {
    return ms + OFFSET;
  }
  fromNative(ms: number) {
    return ms - OFFSET;
  }
  setPeer(id: number, ep: Endpoint | null) {
    this.endpoints.set(id, ep);
  }
  removePeer(id: number) {
    this.keypairs.delete(id);
    this.endpoints.delete(id);
  }
  setKeypairs(id: number, k: Array<DatapathKeypair | null>) {
    this.keypairs.set(id, k);
  }
  setAllowedIps(e: Array<{ peerId: number; cidr: number }>) {
    this.allowed = e;
  }
  sendPlain(id: number, packets: Uint8Array[]) {
    const peer = [...this.dev().peers.values()].find((p) => this.keypairs.get(id)?.[0]?.localIndex === p.keypairs.current?.localIndex);
    const kp = peer?.keypairs.current;
    if (!peer || !kp) return 0;
    for (const p of packets) {
      this.sent.push({ id, packet: p });
      this.bindSend(sealTransport(kp, p, 1420), peer.endpoint!);
    }
    return packets.length;
  }
  tunWrite(p: Uint8Array) {
    this.tun.push(p);
  }
  setFilter(on: boolean) {
    this.filterOn.push(on);
  }
  flowAdmit(packet: Uint8Array, flags: number) {
    this.admitted.push({ packet, flags });
  }
  flowForget() {
    this.forgets++;
  }
  drops: Record<string, number> = {};
  stats() {
    return { drops: this.drops };
  }
  peerStats(ids: Uint32Array, out: Float64Array) {
    ids.forEach((id, i) => out.set(this.figures.get(id) ?? new Array(PEER_STATS).fill(0), i * PEER_STATS));
  }
  /** Sets one native figure of a peer (times in native ms). */
  set(id: number, stat: number, v: number) {
    const s = this.figures.get(id) ?? new Array(PEER_STATS).fill(0);
    s[stat] = v;
    this.figures.set(id, s);
  }
}

/** An IPv4 UDP packet with a real UDP header (the filter reads the ports). */
function udp(src: string, dst: string, sport: number, dport: number): Buffer {
  const body = Buffer.alloc(8 + 4);
  body.writeUInt16BE(sport, 0);
  body.writeUInt16BE(dport, 2);
  body.writeUInt16BE(12, 4);
  return ipv4(src, dst, body, 17);
}

const log = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger;

let clock: FakeClock;
let net: FakeNetwork;

function makeNode(address: string, native: boolean) {
  const ep = { address, port: 51820 };
  const tun = new FakeTun();
  const bind = net.bindFor(() => ep);
  const dev = new Device({ bind, tun, clock, jitter: () => 0 });
  const priv = generatePrivateKeyBytes();
  dev.setPrivateKey(priv);
  net.attach(ep, dev);
  const fake = new FakeDatapath(() => dev, (p, to) => bind.send(p, to));
  let intercepted: Uint8Array[] = [];
  const sessions = native ? new NativeSessions(dev, fake as unknown as NativeDatapath, log, (p) => (p[9] === 1 ? (intercepted.push(p), true) : false)) : null;
  dev.offload = sessions;
  return { dev, tun, ep, pub: X25519PrivateKey.fromBytes(priv).publicKey, fake, sessions, intercepted: () => intercepted };
}

function pair() {
  const a = makeNode('192.0.2.1', false);
  const b = makeNode('192.0.2.2', true);
  a.dev.upsertPeer({ publicKey: b.pub, endpoint: b.ep, allowedIps: [parseCidr('10.0.0.2/32')] });
  b.dev.upsertPeer({ publicKey: a.pub, endpoint: a.ep, allowedIps: [parseCidr('10.0.0.1/32')] });
  b.sessions!.syncConfig();
  return { a, b, peerOfB: b.dev.peer(a.pub)! };
}

beforeEach(() => {
  clock = new FakeClock();
  net = new FakeNetwork();
});

describe('NativeSessions', () => {
  it('hands over the allowed IPs, the endpoint and each session as it is derived, confirmed and dropped', () => {
    const { a, b, peerOfB } = pair();
    expect(b.fake.allowed).toEqual([expect.objectContaining({ peerId: 0, cidr: 32 })]);
    expect(b.fake.endpoints.get(0)).toEqual(a.ep);
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2', 'x'));
    net.run();
    // B answered A's initiation: its session is `next` until A's first data confirms it.
    // (On the real datapath the native side reports that with a confirm event.)
    const next = peerOfB.keypairs.next ?? peerOfB.keypairs.current;
    expect(next).not.toBeNull();
    const handed = b.fake.keypairs.get(0)!;
    const spec = handed[0] ?? handed[2];
    expect(spec).toMatchObject({ localIndex: next!.localIndex, remoteIndex: next!.remoteIndex, isInitiator: false, created: next!.created + OFFSET });
    expect(Buffer.from(spec!.sendKey).equals(next!.sendKey)).toBe(true);
    b.dev.removePeer(a.pub);
    expect(b.fake.keypairs.has(0)).toBe(false);
  });

  it('a confirm event promotes the pending session; what waited then goes out through the native side', () => {
    const { a, b, peerOfB } = pair();
    // A initiates; its data never reaches B's JS (on the native datapath the C side takes it).
    net.filter = (d) => !(d.packet[0] === 4 && d.to.address === b.ep.address);
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2', 'x'));
    net.run();
    const next = peerOfB.keypairs.next!;
    expect(peerOfB.keypairs.current).toBeNull();
    expect(b.fake.keypairs.get(0)).toEqual([null, null, expect.objectContaining({ localIndex: next.localIndex })]);
    b.sessions!.onConfirm(0, next.localIndex + 1); // not the pending session: ignored
    expect(peerOfB.keypairs.current).toBeNull();
    b.sessions!.onConfirm(0, next.localIndex);
    expect(peerOfB.keypairs.current).toBe(next);
    expect(b.fake.keypairs.get(0)?.[0]?.localIndex).toBe(next.localIndex);
    expect(peerOfB.lastHandshakeWall).toBeGreaterThan(0);
    b.sessions!.onStage(0, ipv4('10.0.0.2', '10.0.0.1', 'queued'));
    net.run();
    expect(a.tun.received.map((p) => Buffer.from(p).subarray(20).toString())).toEqual(['queued']);
  });

  it('replays native timer events: data received and nothing sent owes a keepalive; data sent and nothing heard starts a handshake', () => {
    const { a, b, peerOfB } = pair();
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2', 'x'));
    net.run();
    b.sessions!.onConfirm(0, peerOfB.keypairs.next?.localIndex ?? -1);
    b.fake.sent.length = 0;
    // The native side received data now.
    b.fake.set(0, PeerStat.authReceived, clock.now() + OFFSET);
    b.fake.set(0, PeerStat.dataReceived, clock.now() + OFFSET);
    b.sessions!.poll();
    clock.advance(KEEPALIVE_TIMEOUT - 1);
    b.dev.tick();
    expect(b.fake.sent.length).toBe(0);
    clock.advance(2);
    b.dev.tick();
    expect(b.fake.sent.map((s) => s.packet.length)).toEqual([0]); // a keepalive, through the native side
    // Now it sends data and hears nothing: a new handshake after KEEPALIVE + REKEY_TIMEOUT.
    const initiations = () => net.log.filter((d) => d.packet[0] === 1 && d.from.address === b.ep.address).length;
    const before = initiations();
    b.fake.set(0, PeerStat.authSent, clock.now() + OFFSET);
    b.fake.set(0, PeerStat.dataSent, clock.now() + OFFSET);
    b.sessions!.poll();
    clock.advance(KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + 1);
    b.dev.tick();
    expect(initiations()).toBe(before + 1);
  });

  it('native drop counters join the device counters by reason, as deltas', () => {
    const { b } = pair();
    b.fake.drops = { decryptFailed: 3, offloadError: 1, notAReason: 9 };
    b.sessions!.poll();
    b.fake.drops = { decryptFailed: 5, offloadError: 1, notAReason: 10 };
    b.sessions!.poll();
    expect(b.dev.drops.get('decryptFailed')).toBe(5);
    expect(b.dev.drops.get('offloadError')).toBe(1);
  });

  it('an initiator that sent data on a session older than REKEY_AFTER_TIME rekeys', () => {
    const { b } = pair();
    // B initiates (it is the initiator of this session).
    b.sessions!.onStage(0, ipv4('10.0.0.2', '10.0.0.1', 'hi'));
    net.run();
    const peer = [...b.dev.peers.values()][0];
    expect(peer.keypairs.current?.isInitiator).toBe(true);
    const initiations = () => net.log.filter((d) => d.packet[0] === 1 && d.from.address === b.ep.address).length;
    const before = initiations();
    clock.advance(REKEY_AFTER_TIME + REKEY_TIMEOUT);
    b.fake.set(0, PeerStat.dataSent, clock.now() + OFFSET);
    b.sessions!.poll();
    expect(initiations()).toBe(before + 1);
  });

  it('filter: on with the device filter; a verdict the rules refuse is dropped, an accepted one is written and admitted; a rules change forgets admitted flows', () => {
    const { b } = pair();
    const filter = new PacketFilter([]);
    b.dev.filter = filter;
    b.sessions!.poll();
    expect(b.fake.filterOn).toEqual([true]);
    b.sessions!.onVerdict(0, udp('10.0.0.1', '10.0.0.2', 4000, 53));
    expect(b.fake.tun).toEqual([]);
    expect(b.dev.drops.get('filtered')).toBe(1);
    filter.setRules(null);
    b.sessions!.poll();
    expect(b.fake.forgets).toBe(1);
    const ok = udp('10.0.0.1', '10.0.0.2', 4000, 53);
    b.sessions!.onVerdict(0, ok);
    expect(b.fake.tun).toEqual([ok]);
    expect(b.fake.admitted).toEqual([{ packet: ok, flags: 0 }]);
    // An ICMP echo reply the pinger takes never reaches the TUN, nor the flow table.
    b.sessions!.onVerdict(0, ipv4('10.0.0.1', '10.0.0.2', Buffer.from([0, 0, 0, 0, 0x12, 0x34, 0, 1]), 1));
    expect(b.fake.tun.length).toBe(1);
    expect(b.intercepted().length).toBe(1);
  });

  it("a new native flow that JS's table has as theirs is admitted as theirs (ADMIT_SENT), one of ours is not", () => {
    const { b } = pair();
    const filter = new PacketFilter([{ srcs: ['10.0.0.1/32'], dsts: ['10.0.0.2/32'], ports: [[53, 53]], protos: null }]);
    b.dev.filter = filter;
    // The peer asked first (JS admitted it), then our reply starts a "new" native flow.
    expect(filter.inbound(udp('10.0.0.1', '10.0.0.2', 4000, 53), clock.now())).toBe('accept');
    b.sessions!.onFlow(udp('10.0.0.2', '10.0.0.1', 53, 4000));
    expect(b.fake.admitted.map((x) => x.flags)).toEqual([FLOW_ADMIT_SENT]);
    b.sessions!.onFlow(udp('10.0.0.2', '10.0.0.1', 5000, 80));
    expect(b.fake.admitted.length).toBe(1);
  });
});
