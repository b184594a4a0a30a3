// The device (kernel device.c, wireguard-go device/): our identity, the
// peers, cryptokey routing, the index table, and the counters. It performs no
// I/O of its own: it sends through an injected Bind and writes to an injected
// TunSink, takes time from an injected Clock, and is driven by the adapter
// calling receiveDatagram / sendPacket / tick. send.ts and receive.ts hold the
// two packet paths.
import { randomBytes, randomInt } from 'node:crypto';
import { X25519PrivateKey } from '../crypto/x25519.js';
import { constantTimeEqual } from '../crypto/index.js';
import { StaticIdentity } from '../noise/handshake.js';
import { CookieChecker } from '../noise/cookie.js';
import type { Keypair } from '../noise/keypair.js';
import { DropCounters, type DropReason } from '../wire/drops.js';
import { REKEY_TIMEOUT_JITTER_MAX } from '../wire/constants.js';
import { AllowedIps } from './allowedips.js';
import { IndexTable } from './indextable.js';
import { Ratelimiter } from './ratelimiter.js';
import { Peer } from './peer.js';
import type { Endpoint } from './endpoint.js';
import { sendKeepalive, sendPacket } from './send.js';
import { processHandshakeQueue, receiveDatagram, tick } from './receive.js';

/** Sends one UDP datagram (the adapter's socket, or an in-memory fake). */
export interface Bind {
  send(packet: Uint8Array, to: Endpoint): void;
}

/** Delivers one decrypted IP packet to the TUN device; false if it was refused. */
export interface TunSink {
  write(packet: Uint8Array): boolean;
}

export interface Clock {
  /** Monotonic milliseconds (timers, sessions). */
  now(): number;
  /** Wall-clock milliseconds since the epoch (TAI64N, last-handshake time). */
  wall(): number;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wall: () => Date.now(),
};

export interface DeviceOptions {
  bind: Bind;
  tun: TunSink;
  clock?: Clock;
  /** TUN MTU: transport padding never exceeds it. */
  mtu?: number;
  /** Randomness (cookie secrets and nonces); tests inject a seeded source. */
  random?: (n: number) => Uint8Array;
  /** Ephemeral keys for handshakes; tests inject fixed ones. */
  ephemeral?: () => X25519PrivateKey;
  /** Jitter for handshake retries, 0..REKEY_TIMEOUT_JITTER_MAX ms. */
  jitter?: () => number;
  /** Log hook for events an operator cares about; never given key material. */
  log?: (event: string, fields?: Record<string, unknown>) => void;
}

/**
 * The policy's packet filter as the device sees it (src/filter/): every
 * packet sent into the tunnel is shown to `outbound` (so replies to it pass),
 * every decrypted inbound packet must pass `inbound` before the TUN sees it.
 * Times are the device clock's.
 */
export interface PacketFilterHook {
  /** True when the packet belongs to a flow the other side started (a reply of ours). */
  outbound(packet: Uint8Array, now: number): boolean;
  /** 'accept', or why not. */
  inbound(packet: Uint8Array, now: number): string;
  /** Changes whenever the rules do: a datapath caching verdicts re-decides then. */
  readonly version?: number;
}

/**
 * A datapath that carries transport data outside this object (the native
 * packet loop, src/daemon/datapath.ts). It owns the sessions' send counters,
 * so every transport message goes out through it; the device tells it when a
 * peer's sessions or endpoint change.
 */
export interface TransportOffload {
  syncPeer(peer: Peer): void;
  peerRemoved(peer: Peer): void;
  /** Seals and sends these under the peer's current session; returns how many went (in order). */
  sendPlain(peer: Peer, packets: Uint8Array[]): number;
}

export interface PeerConfig {
  publicKey: Uint8Array;
  presharedKey?: Uint8Array | null;
  endpoint?: Endpoint | null;
  /** [address bytes, prefix length] pairs. */
  allowedIps?: Array<{ addr: Uint8Array; cidr: number }>;
  persistentKeepalive?: number;
}

/** What an index points at: a handshake in flight, or a session. */
export interface IndexEntry {
  peer: Peer;
  keypair: Keypair | null;
}

export class DeviceError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'DeviceError';
  }
}

export class Device {
  identity: StaticIdentity | null = null;
  readonly peers = new Map<string, Peer>();
  readonly allowedIps = new AllowedIps<Peer>();
  readonly indexTable = new IndexTable<IndexEntry>();
  readonly cookieChecker: CookieChecker;
  readonly ratelimiter = new Ratelimiter();
  readonly drops = new DropCounters();
  /** Handshake messages waiting for processHandshakeQueue (bounded). */
  readonly handshakeQueue: Array<{ packet: Uint8Array; from: Endpoint }> = [];
  /** Monotonic ms until which we still count as under load (wireguard-go: 1 s hysteresis). */
  underLoadUntil = -Infinity;
  mtu: number;
  up = true;
  /** Null: no filtering (a plain WireGuard interface); the mesh always sets one. */
  filter: PacketFilterHook | null = null;
  /** Null: this object seals and opens transport data itself (the JS datapath). */
  offload: TransportOffload | null = null;

  readonly bind: Bind;
  readonly tun: TunSink;
  readonly clock: Clock;
  readonly random: (n: number) => Uint8Array;
  readonly ephemeral: (() => X25519PrivateKey) | undefined;
  readonly jitter: () => number;
  readonly log: (event: string, fields?: Record<string, unknown>) => void;

  constructor(opts: DeviceOptions) {
    this.bind = opts.bind;
    this.tun = opts.tun;
    this.clock = opts.clock ?? systemClock;
    this.mtu = opts.mtu ?? 1420;
    this.random = opts.random ?? randomBytes;
    this.ephemeral = opts.ephemeral;
    this.jitter = opts.jitter ?? (() => randomInt(REKEY_TIMEOUT_JITTER_MAX + 1));
    this.log = opts.log ?? (() => {});
    this.cookieChecker = new CookieChecker(this.random);
  }

  drop(reason: DropReason): void {
    this.drops.add(reason);
  }

  /** Sets or clears our static private key; sessions under the old key end. */
  setPrivateKey(raw: Uint8Array | null): void {
    const next = raw ? new StaticIdentity(X25519PrivateKey.fromBytes(raw)) : null;
    if (next && this.identity && constantTimeEqual(next.publicKey, this.identity.publicKey)) return;
    this.identity = next;
    this.cookieChecker.setPublicKey(next ? next.publicKey : null);
    for (const peer of this.peers.values()) {
      // A peer with our own public key would be a handshake with ourselves.
      if (next && constantTimeEqual(peer.publicKey, next.publicKey)) {
        this.removePeer(peer.publicKey);
        continue;
      }
      this.freeHandshakeIndex(peer);
      peer.handshake.setIdentity(next);
      this.clearKeypairs(peer);
    }
  }

  get publicKey(): Buffer | null {
    return this.identity ? this.identity.publicKey : null;
  }

  peer(publicKey: Uint8Array): Peer | undefined {
    return this.peers.get(Buffer.from(publicKey).toString('base64'));
  }

  /** Adds a peer or returns the existing one; applies the given settings. */
  upsertPeer(cfg: PeerConfig): Peer {
    if (cfg.publicKey.length !== 32) throw new DeviceError('EINVAL', 'peer public key must be 32 bytes');
    if (this.identity && constantTimeEqual(cfg.publicKey, this.identity.publicKey)) {
      throw new DeviceError('ESELF', "peer public key is this device's own public key");
    }
    const id = Buffer.from(cfg.publicKey).toString('base64');
    let peer = this.peers.get(id);
    if (!peer) {
      peer = new Peer(cfg.publicKey, this.identity, this.jitter);
      this.peers.set(id, peer);
      if (peer.handshake.impossible && this.identity) this.log('peer.lowOrderKey', { peer: id });
    }
    if (cfg.presharedKey !== undefined) peer.handshake.setPresharedKey(cfg.presharedKey);
    if (cfg.endpoint !== undefined) peer.endpoint = cfg.endpoint;
    if (cfg.allowedIps) for (const a of cfg.allowedIps) this.allowedIps.insert(a.addr, a.cidr, peer);
    if (cfg.persistentKeepalive !== undefined) this.setPersistentKeepalive(peer, cfg.persistentKeepalive);
    return peer;
  }

  setPersistentKeepalive(peer: Peer, seconds: number): void {
    const was = peer.timers.persistentKeepaliveInterval;
    peer.timers.persistentKeepaliveInterval = seconds;
    // Turning it on sends one at once, so a NATed peer becomes reachable now.
    if (seconds && !was && this.up && peer.endpoint) this.sendKeepalive(peer);
  }

  removePeer(publicKey: Uint8Array): boolean {
    const id = Buffer.from(publicKey).toString('base64');
    const peer = this.peers.get(id);
    if (!peer) return false;
    peer.timers.stopAll();
    peer.timers.enabled = false;
    this.allowedIps.removeByPeer(peer);
    this.freeHandshakeIndex(peer);
    this.clearKeypairs(peer);
    peer.handshake.zero();
    peer.staged.length = 0;
    this.offload?.peerRemoved(peer);
    this.peers.delete(id);
    return true;
  }

  freeHandshakeIndex(peer: Peer): void {
    if (peer.handshakeIndex) {
      const e = this.indexTable.lookup(peer.handshakeIndex);
      if (e && e.peer === peer && e.keypair === null) this.indexTable.free(peer.handshakeIndex);
      peer.handshakeIndex = 0;
    }
  }

  /** Allocates the index of a new handshake for `peer`, freeing the previous one. */
  allocateHandshakeIndex(peer: Peer): number {
    this.freeHandshakeIndex(peer);
    peer.handshakeIndex = this.indexTable.allocate({ peer, keypair: null });
    return peer.handshakeIndex;
  }

  releaseKeypairs(dropped: Keypair[]): void {
    for (const kp of dropped) {
      const e = this.indexTable.lookup(kp.localIndex);
      if (e && e.keypair === kp) this.indexTable.free(kp.localIndex);
    }
  }

  clearKeypairs(peer: Peer): void {
    this.releaseKeypairs(peer.keypairs.clear());
    this.offload?.syncPeer(peer);
  }

  /** A UDP datagram from `from` (transport handled now, handshakes queued). */
  receive(packet: Uint8Array, from: Endpoint): void {
    if (this.up) receiveDatagram(this, packet, from);
  }

  /** An IP packet from the TUN. */
  send(packet: Uint8Array): boolean {
    return this.up ? sendPacket(this, packet) : false;
  }

  /** Works through queued handshake messages; returns how many remain. */
  processHandshakes(budget?: number): number {
    return processHandshakeQueue(this, budget);
  }

  /** Runs due timers. The adapter calls this periodically. */
  tick(): void {
    if (this.up) tick(this);
  }

  sendKeepalive(peer: Peer): void {
    sendKeepalive(this, peer);
  }

  /** Earliest timer deadline of any peer (monotonic ms), or null. */
  nextDeadline(): number | null {
    let min: number | null = null;
    for (const p of this.peers.values()) {
      const d = p.timers.nextDeadline();
      if (d !== null && (min === null || d < min)) min = d;
    }
    return min;
  }

  /** Handshakes in the backlog at the moment; the adapter schedules processing while > 0. */
  get pendingHandshakes(): number {
    return this.handshakeQueue.length;
  }
}
