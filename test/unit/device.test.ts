// Two (or three) devices in one process over in-memory UDP and TUN fakes: the
// whole protocol — handshakes either way, data both ways, PSK, rekey, expiry,
// the cookie path under load, replay and reordering, cryptokey routing, roaming
// and timers — driven by a fake clock.
import { beforeEach, describe, expect, it } from 'vitest';
import { Device } from '../../src/device/device.js';
import { parseCidr } from '../../src/device/allowedips.js';
import { generatePrivateKeyBytes, X25519PrivateKey } from '../../src/crypto/x25519.js';
import {
  KEEPALIVE_TIMEOUT, MAX_STAGED_PACKETS, REJECT_AFTER_TIME, REKEY_AFTER_TIME, REKEY_ATTEMPT_TIME, REKEY_TIMEOUT,
  UNDER_LOAD_QUEUE_THRESHOLD,
} from '../../src/wire/constants.js';
import { FakeClock, FakeNetwork, FakeTun, ipv4, ipv6 } from '../support/fakes.js';
import type { Endpoint } from '../../src/device/endpoint.js';

interface Node {
  dev: Device;
  tun: FakeTun;
  ep: Endpoint;
  priv: Uint8Array;
  pub: Buffer;
}

let clock: FakeClock;
let net: FakeNetwork;

function node(address: string, port: number): Node {
  const tun = new FakeTun();
  const holder: { ep: Endpoint } = { ep: { address, port } };
  const dev = new Device({ bind: net.bindFor(() => holder.ep), tun, clock, jitter: () => 0 });
  const priv = generatePrivateKeyBytes();
  dev.setPrivateKey(priv);
  net.attach(holder.ep, dev);
  const n: Node = {
    dev, tun, priv, pub: X25519PrivateKey.fromBytes(priv).publicKey,
    get ep() { return holder.ep; },
    set ep(v: Endpoint) { net.detach(holder.ep); holder.ep = v; net.attach(v, dev); },
  } as Node;
  return n;
}

function link(a: Node, b: Node, bIps: string[], opts: { psk?: Uint8Array; endpoint?: boolean } = {}) {
  a.dev.upsertPeer({
    publicKey: b.pub,
    presharedKey: opts.psk ?? null,
    endpoint: opts.endpoint === false ? null : b.ep,
    allowedIps: bIps.map(parseCidr),
  });
}

function pair(psk?: Uint8Array) {
  const a = node('192.0.2.1', 51820);
  const b = node('192.0.2.2', 51820);
  link(a, b, ['10.0.0.2/32', 'fd00::2/128'], { psk });
  link(b, a, ['10.0.0.1/32', 'fd00::1/128'], { psk });
  return { a, b };
}

const peerOf = (x: Node, y: Node) => x.dev.peer(y.pub)!;

beforeEach(() => {
  clock = new FakeClock();
  net = new FakeNetwork();
});

describe('two devices', () => {
  it('handshake on first packet, then data both ways (IPv4 and IPv6)', () => {
    const { a, b } = pair();
    expect(a.dev.send(ipv4('10.0.0.1', '10.0.0.2', 'hello'))).toBe(true);
    net.run();
    expect(b.tun.received.length).toBe(1);
    expect(Buffer.from(b.tun.received[0]).subarray(20).toString()).toBe('hello');
    b.dev.send(ipv4('10.0.0.2', '10.0.0.1', 'world'));
    b.dev.send(ipv6('fd00:0:0:0:0:0:0:2', 'fd00:0:0:0:0:0:0:1', 'v6 world'));
    net.run();
    expect(a.tun.received.map((p) => Buffer.from(p).subarray(p[0] >> 4 === 4 ? 20 : 40).toString())).toEqual(['world', 'v6 world']);
    // Exactly one handshake: initiation, response, then A's confirming packets.
    expect(net.log.filter((d) => d.packet[0] === 1).length).toBe(1);
    expect(net.log.filter((d) => d.packet[0] === 2).length).toBe(1);
    expect(peerOf(a, b).lastHandshakeWall).toBeGreaterThan(0);
    expect(peerOf(b, a).lastHandshakeWall).toBeGreaterThan(0);
    expect(a.dev.drops.total() + b.dev.drops.total()).toBe(0);
  });

  it('handshake initiated by the other side works the same', () => {
    const { a, b } = pair();
    b.dev.send(ipv4('10.0.0.2', '10.0.0.1', 'from b'));
    net.run();
    expect(a.tun.received.length).toBe(1);
    expect(peerOf(b, a).keypairs.current!.isInitiator).toBe(true);
    expect(peerOf(a, b).keypairs.current!.isInitiator).toBe(false);
  });

  it('pads transport payloads to 16 bytes but not past the MTU, and strips the padding', () => {
    const { a, b } = pair();
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2', 'x'));
    net.run();
    const data = net.log.filter((d) => d.packet[0] === 4 && d.from === a.ep);
    const sizes = net.log.filter((d) => d.packet[0] === 4).map((d) => d.packet.length);
    expect(sizes).toContain(16 + 32 + 16); // 21-byte packet padded to 32
    expect(b.tun.received[0].length).toBe(21);
    expect(data.length).toBeGreaterThan(0);
    const big = ipv4('10.0.0.1', '10.0.0.2', Buffer.alloc(1419 - 20));
    a.dev.send(big);
    net.run();
    expect(net.log.at(-1)!.packet.length).toBe(16 + 1420 + 16);
    expect(b.tun.received.at(-1)!.length).toBe(1419);
  });

  it('with a pre-shared key on both sides; a mismatched key never completes', () => {
    const psk = Buffer.alloc(32, 7);
    const { a, b } = pair(psk);
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2'));
    net.run();
    expect(b.tun.received.length).toBe(1);

    clock = new FakeClock();
    net = new FakeNetwork();
    const c = node('192.0.2.3', 1);
    const d = node('192.0.2.4', 1);
    link(c, d, ['10.0.0.4/32'], { psk: Buffer.alloc(32, 1) });
    link(d, c, ['10.0.0.3/32'], { psk: Buffer.alloc(32, 2) });
    c.dev.send(ipv4('10.0.0.3', '10.0.0.4'));
    net.run();
    expect(d.tun.received.length).toBe(0);
    expect(c.dev.drops.get('decryptFailed')).toBe(1);
    expect(peerOf(c, d).keypairs.current).toBeNull();
  });

  it('rekeys after REKEY_AFTER_TIME and keeps the previous session for late packets', () => {
    const { a, b } = pair();
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2', 'one'));
    net.run();
    const first = peerOf(a, b).keypairs.current!;
    // A packet sealed under the first session but delivered after the rekey.
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2', 'late'));
    const late = net.queue.splice(0);
    clock.advance(REKEY_AFTER_TIME + 1);
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2', 'two'));
    net.run();
    const second = peerOf(a, b).keypairs.current!;
    expect(second).not.toBe(first);
    expect(peerOf(a, b).keypairs.previous).toBe(first);
    expect(net.log.filter((d) => d.packet[0] === 1).length).toBe(2);
    for (const d of late) net.deliver(d);
    const texts = b.tun.received.map((p) => Buffer.from(p).subarray(20).toString());
    expect(texts).toEqual(['one', 'two', 'late']);
  });

  it('a session expires after REJECT_AFTER_TIME; traffic then starts a new handshake; keys are zeroed after 3× that', () => {
    const { a, b } = pair();
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2'));
    net.run();
    const kpA = peerOf(a, b).keypairs.current!;
    // B cannot use A's session once it is older than REJECT_AFTER_TIME.
    b.dev.send(ipv4('10.0.0.2', '10.0.0.1', 'before'));
    const captured = net.queue.splice(0);
    clock.advance(REJECT_AFTER_TIME + 1);
    for (const d of captured) net.deliver(d);
    expect(a.dev.drops.get('keypairExpired')).toBe(1);
    expect(kpA.canSend(clock.now())).toBe(false);
    b.dev.send(ipv4('10.0.0.2', '10.0.0.1', 'after'));
    net.run();
    expect(Buffer.from(a.tun.received.at(-1)!).subarray(20).toString()).toBe('after');

    // With no traffic at all, the zero-key-material timer wipes everything.
    const kp = peerOf(a, b).keypairs.current!;
    let seconds = 0;
    for (; seconds < 4 * REJECT_AFTER_TIME / 1000 && peerOf(a, b).keypairs.current; seconds++) {
      clock.advance(1000);
      a.dev.tick();
      b.dev.tick();
      net.run();
    }
    expect(peerOf(a, b).keypairs.current).toBeNull();
    expect(seconds).toBe(3 * REJECT_AFTER_TIME / 1000);
    expect(kp.sendKey.every((x) => x === 0)).toBe(true);
    expect(a.dev.indexTable.size).toBe(0);
  });

  it('drops replayed transport packets and accepts reordered ones', () => {
    const { a, b } = pair();
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2', 'p0'));
    net.run();
    for (let i = 1; i <= 5; i++) a.dev.send(ipv4('10.0.0.1', '10.0.0.2', `p${i}`));
    const inFlight = net.queue.splice(0);
    for (const d of [...inFlight].reverse()) net.deliver(d);
    expect(b.tun.received.length).toBe(6);
    for (const d of inFlight) net.deliver(d);
    expect(b.tun.received.length).toBe(6);
    expect(b.dev.drops.get('replayedCounter')).toBe(5);
  });

  it('drops a decrypted packet whose inner source is not the sender’s allowed IP (cryptokey routing)', () => {
    const { a, b } = pair();
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2'));
    net.run();
    // A claims a source address that belongs to nobody / to another peer.
    a.dev.send(ipv4('10.9.9.9', '10.0.0.2', 'spoof'));
    net.run();
    expect(b.tun.received.length).toBe(1);
    expect(b.dev.drops.get('allowedIpsMismatch')).toBe(1);
  });

  it('routes to the longest matching prefix among several peers', () => {
    const a = node('192.0.2.1', 1);
    const b = node('192.0.2.2', 1);
    const c = node('192.0.2.3', 1);
    link(a, b, ['10.0.0.0/8']);
    link(a, c, ['10.1.0.0/16']);
    link(b, a, ['10.255.0.1/32']);
    link(c, a, ['10.255.0.1/32']);
    a.dev.send(ipv4('10.255.0.1', '10.1.2.3'));
    a.dev.send(ipv4('10.255.0.1', '10.2.2.3'));
    net.run();
    expect(c.tun.received.length).toBe(1);
    expect(b.tun.received.length).toBe(1);
    expect(a.dev.send(ipv4('10.255.0.1', '192.168.1.1'))).toBe(false);
    expect(a.dev.drops.get('noRoute')).toBe(1);
  });

  it('follows a peer that roams to a new address', () => {
    const { a, b } = pair();
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2'));
    net.run();
    a.ep = { address: '198.51.100.7', port: 40000 };
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2', 'moved'));
    net.run();
    expect(peerOf(b, a).endpoint).toEqual({ address: '198.51.100.7', port: 40000 });
    b.dev.send(ipv4('10.0.0.2', '10.0.0.1', 'reply'));
    net.run();
    expect(Buffer.from(a.tun.received.at(-1)!).subarray(20).toString()).toBe('reply');
  });

  it('answers with cookies under load, and the initiator gets through with MAC2', () => {
    const { a, b } = pair();
    // Fill B's backlog past the under-load threshold with A's initiation copies.
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2', 'under load'));
    const init = net.queue.shift()!;
    expect(init.packet[0]).toBe(1);
    for (let i = 0; i < UNDER_LOAD_QUEUE_THRESHOLD + 10; i++) b.dev.receive(init.packet, init.from);
    b.dev.processHandshakes();
    const cookies = net.queue.filter((d) => d.packet[0] === 3);
    expect(cookies.length).toBe(UNDER_LOAD_QUEUE_THRESHOLD + 10);
    expect(b.dev.drops.get('cookieSent')).toBe(UNDER_LOAD_QUEUE_THRESHOLD + 10);
    expect(net.queue.filter((d) => d.packet[0] === 2).length).toBe(0);
    net.run(); // A consumes the first cookie; the others are unexpected
    expect(peerOf(a, b).cookie.hasCookie).toBe(true);
    // A retries after REKEY_TIMEOUT; B is still under load (1 s hysteresis is
    // renewed by pushing the backlog again) and now sees a valid MAC2.
    clock.advance(REKEY_TIMEOUT + 1);
    for (let i = 0; i < UNDER_LOAD_QUEUE_THRESHOLD; i++) b.dev.receive(Buffer.alloc(148, 0xee), a.ep);
    a.dev.tick();
    const retry = net.queue.find((d) => d.packet[0] === 1)!;
    expect(Buffer.from(retry.packet.subarray(132)).some((x) => x !== 0)).toBe(true);
    net.run();
    expect(b.tun.received.length).toBe(1);
  });

  it('retransmits every REKEY_TIMEOUT to an unreachable peer, then gives up and drops what was staged', () => {
    const { a, b } = pair();
    net.filter = () => false;
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2'));
    for (let t = 0; t <= REKEY_ATTEMPT_TIME + 2 * REKEY_TIMEOUT; t += 500) {
      clock.advance(500);
      a.dev.tick();
      net.run();
    }
    const inits = net.log.filter((d) => d.packet[0] === 1).length;
    expect(inits).toBe(Math.floor(REKEY_ATTEMPT_TIME / REKEY_TIMEOUT) + 2);
    expect(peerOf(a, b).staged.length).toBe(0);
  });

  it('bounds the packets staged while waiting for a handshake', () => {
    const { a, b } = pair();
    net.filter = () => false;
    for (let i = 0; i < MAX_STAGED_PACKETS + 20; i++) a.dev.send(ipv4('10.0.0.1', '10.0.0.2', `${i}`));
    expect(peerOf(a, b).staged.length).toBe(MAX_STAGED_PACKETS);
    expect(a.dev.drops.get('stagedQueueFull')).toBe(20);
    net.run(); // the first initiation is lost
    net.filter = () => true;
    clock.advance(REKEY_TIMEOUT + 1);
    a.dev.tick();
    net.run();
    // The newest MAX_STAGED_PACKETS arrive, in order.
    expect(b.tun.received.length).toBe(MAX_STAGED_PACKETS);
    expect(Buffer.from(b.tun.received[0]).subarray(20).toString()).toBe('20');
  });

  it('sends a keepalive when data arrived and nothing went back for KEEPALIVE_TIMEOUT', () => {
    const { a, b } = pair();
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2'));
    net.run();
    const before = net.log.length;
    clock.advance(KEEPALIVE_TIMEOUT + 1);
    b.dev.tick();
    net.run();
    const sent = net.log.slice(before);
    expect(sent.length).toBe(1);
    expect(sent[0].from).toEqual(b.ep);
    expect(sent[0].packet.length).toBe(32); // header + empty payload + tag
    expect(a.tun.received.length).toBe(0); // keepalives never reach the TUN
  });

  it('sends persistent keepalives at the configured interval', () => {
    const { a, b } = pair();
    a.dev.setPersistentKeepalive(peerOf(a, b), 25);
    net.run();
    expect(peerOf(b, a).keypairs.current).not.toBeNull();
    const count = () => net.log.filter((d) => d.from === a.ep && d.packet[0] === 4 && d.packet.length === 32).length;
    const c0 = count();
    for (let i = 0; i < 100; i++) {
      clock.advance(1_000);
      a.dev.tick();
      b.dev.tick();
      net.run();
    }
    // 100 s at one per 25 s.
    expect(count() - c0).toBe(4);
  });

  it('a restarted peer with the same key re-handshakes; a removed peer is cut off', () => {
    const { a, b } = pair();
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2'));
    net.run();
    // B restarts: same key, no state.
    const b2 = new Device({ bind: net.bindFor(() => b.ep), tun: b.tun, clock, jitter: () => 0 });
    b2.setPrivateKey(b.priv);
    b2.upsertPeer({ publicKey: a.pub, endpoint: a.ep, allowedIps: [parseCidr('10.0.0.1/32')] });
    net.attach(b.ep, b2);
    clock.advance(1000);
    b2.send(ipv4('10.0.0.2', '10.0.0.1', 'back'));
    net.run();
    expect(Buffer.from(a.tun.received.at(-1)!).subarray(20).toString()).toBe('back');

    a.dev.removePeer(b.pub);
    expect(a.dev.indexTable.size).toBe(0);
    b2.send(ipv4('10.0.0.2', '10.0.0.1', 'gone'));
    net.run();
    expect(Buffer.from(a.tun.received.at(-1)!).subarray(20).toString()).toBe('back');
  });
});

describe('hostile input', () => {
  it('every malformed datagram is a counted drop and nothing throws', () => {
    const { a, b } = pair();
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2'));
    net.run();
    const from = { address: '203.0.113.9', port: 9 };
    const cases: Array<[Uint8Array, string]> = [
      [new Uint8Array(0), 'truncated'],
      [Uint8Array.of(1, 0, 0), 'truncated'],
      [Uint8Array.of(9, 0, 0, 0), 'badType'],
      [Uint8Array.of(1, 0, 1, 0, ...new Array(144).fill(0)), 'reservedNonZero'],
      [Buffer.alloc(147, 0).fill(1, 0, 1), 'badLength'],
      [Buffer.concat([Uint8Array.of(2, 0, 0, 0), Buffer.alloc(100)]), 'badLength'],
      [Buffer.concat([Uint8Array.of(4, 0, 0, 0), Buffer.alloc(20)]), 'badLength'],
      [Buffer.concat([Uint8Array.of(4, 0, 0, 0), Buffer.alloc(40)]), 'unknownIndex'],
    ];
    for (const [p, reason] of cases) {
      const before = b.dev.drops.get(reason as never);
      b.dev.receive(p, from);
      b.dev.processHandshakes();
      expect(b.dev.drops.get(reason as never), reason).toBe(before + 1);
    }
    // A forged initiation (random body) fails MAC1.
    const forged = Buffer.alloc(148, 0x5a);
    forged.writeUInt32LE(1, 0);
    b.dev.receive(forged, from);
    b.dev.processHandshakes();
    expect(b.dev.drops.get('badMac1')).toBe(1);
    // A transport packet with a real index but a bad tag fails decryption.
    const idx = peerOf(b, a).keypairs.current!.localIndex;
    const bad = Buffer.alloc(64);
    bad.writeUInt32LE(4, 0);
    bad.writeUInt32LE(idx, 4);
    b.dev.receive(bad, from);
    expect(b.dev.drops.get('decryptFailed')).toBe(1);
    // The endpoint did not move to the forger.
    expect(peerOf(b, a).endpoint).toEqual(a.ep);
  });

  it('survives random and mutated packets, and the session still works afterwards', () => {
    const { a, b } = pair();
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2'));
    net.run();
    const samples = net.log.map((d) => d.packet);
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const from = { address: '203.0.113.10', port: 10 };
    for (let i = 0; i < 5000; i++) {
      let p: Uint8Array;
      if (i % 2) {
        p = Uint8Array.prototype.slice.call(samples[i % samples.length]);
        const flips = 1 + Math.floor(rnd() * 4);
        for (let f = 0; f < flips; f++) p[Math.floor(rnd() * p.length)] ^= 1 << Math.floor(rnd() * 8);
        if (rnd() < 0.2) p = p.subarray(0, Math.floor(rnd() * p.length));
      } else {
        p = Uint8Array.from({ length: Math.floor(rnd() * 200) }, () => Math.floor(rnd() * 256));
        if (p.length >= 4 && rnd() < 0.7) p.set([1 + Math.floor(rnd() * 4), 0, 0, 0]);
      }
      expect(() => {
        b.dev.receive(p, from);
        b.dev.processHandshakes();
      }).not.toThrow();
    }
    expect(b.dev.drops.total()).toBeGreaterThan(4000);
    a.dev.send(ipv4('10.0.0.1', '10.0.0.2', 'still fine'));
    net.run();
    expect(Buffer.from(b.tun.received.at(-1)!).subarray(20).toString()).toBe('still fine');
  });

  it('the handshake backlog is bounded', () => {
    const { b } = pair();
    const junk = Buffer.alloc(148);
    junk.writeUInt32LE(1, 0);
    for (let i = 0; i < 5000; i++) b.dev.receive(junk, { address: '203.0.113.1', port: i });
    expect(b.dev.pendingHandshakes).toBe(4096);
    expect(b.dev.drops.get('handshakeQueueFull')).toBe(5000 - 4096);
    b.dev.processHandshakes();
    expect(b.dev.pendingHandshakes).toBe(0);
  });

  it('refuses our own public key as a peer and never handshakes with a low-order key', () => {
    const { a } = pair();
    expect(() => a.dev.upsertPeer({ publicKey: a.pub })).toThrow(/own public key/);
    const p = a.dev.upsertPeer({ publicKey: Buffer.alloc(32), endpoint: { address: '192.0.2.99', port: 1 }, allowedIps: [parseCidr('10.7.0.0/16')] });
    expect(p.handshake.impossible).toBe(true);
    a.dev.send(ipv4('10.0.0.1', '10.7.0.1'));
    expect(net.queue.length).toBe(0);
    expect(a.dev.drops.get('lowOrderKey')).toBe(1);
  });
});
