// The native datapath joined to the Device: the Device keeps handshakes,
// cookies, timers and policy; the native threads carry transport data. This
// file is the seam: it gives each peer a small integer id, hands sessions,
// endpoints and allowed IPs over when they change (TransportOffload), turns
// the native side's events back into Device calls, and on every tick replays
// the timer events (data sent / received, with their native timestamps) into
// each peer's timer state machine in the order they happened.
import type { Device, TransportOffload } from '../device/device.js';
import type { Endpoint } from '../device/endpoint.js';
import { sameEndpoint } from '../device/endpoint.js';
import type { Peer } from '../device/peer.js';
import { confirmSession, keepKeyFreshReceiving } from '../device/receive.js';
import { keepKeyFreshSending, sendStaged } from '../device/send.js';
import type { Keypair } from '../noise/keypair.js';
import { FLOW_ADMIT_SENT, NativeDatapath, PEER_STATS, PeerStat, type DatapathKeypair, type DatapathStats } from '../io/datapath.js';
import type { Logger } from './log.js';
import { DROP_REASONS, type DropReason } from '../wire/drops.js';

/** Last figures read from the native side for one peer. */
interface Seen {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
  dataSent: number;
  authSent: number;
  dataReceived: number;
  authReceived: number;
}

const ZERO: Seen = { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, dataSent: 0, authSent: 0, dataReceived: 0, authReceived: 0 };

export class NativeSessions implements TransportOffload {
  private readonly ids = new Map<Peer, number>();
  private readonly peersById = new Map<number, Peer>();
  private readonly freeIds: number[] = [];
  private nextId = 0;
  private readonly pushedEndpoint = new Map<Peer, Endpoint | null>();
  private readonly seen = new Map<Peer, Seen>();
  private filterVersion = -1;
  private readonly dropsSeen = new Map<string, number>();
  private statsIds = new Uint32Array(0);
  private statsOut = new Float64Array(0);

  constructor(
    private readonly dev: Device,
    readonly dp: NativeDatapath,
    private readonly log: Logger,
    /** Sees each packet JS accepts for the TUN first; true keeps it (meshd ping). */
    private readonly intercept: (packet: Uint8Array) => boolean,
  ) {}

  private idOf(peer: Peer): number {
    let id = this.ids.get(peer);
    if (id === undefined) {
      id = this.freeIds.pop() ?? this.nextId++;
      this.ids.set(peer, id);
      this.peersById.set(id, peer);
      this.dp.setPeer(id, peer.endpoint);
      this.pushedEndpoint.set(peer, peer.endpoint);
      this.seen.set(peer, { ...ZERO });
    }
    return id;
  }

  // ---- TransportOffload ----

  syncPeer(peer: Peer): void {
    if (!this.dev.peers.has(peer.publicKey.toString('base64'))) return;
    const id = this.idOf(peer);
    this.syncEndpoint(peer, id);
    const k = peer.keypairs;
    this.dp.setKeypairs(id, [this.spec(k.current), this.spec(k.previous), this.spec(k.next)]);
  }

  peerRemoved(peer: Peer): void {
    const id = this.ids.get(peer);
    if (id === undefined) return;
    this.dp.removePeer(id);
    this.ids.delete(peer);
    this.peersById.delete(id);
    this.pushedEndpoint.delete(peer);
    this.seen.delete(peer);
    this.freeIds.push(id);
  }

  sendPlain(peer: Peer, packets: Uint8Array[]): number {
    if (packets.length === 0) return 0;
    const id = this.idOf(peer);
    this.syncEndpoint(peer, id);
    return this.dp.sendPlain(id, packets);
  }

  private spec(kp: Keypair | null): DatapathKeypair | null {
    if (kp === null || !kp.valid) return null;
    return {
      localIndex: kp.localIndex,
      remoteIndex: kp.remoteIndex,
      sendKey: kp.sendKey,
      receiveKey: kp.receiveKey,
      created: this.dp.toNative(kp.created),
      isInitiator: kp.isInitiator,
      sendingValid: kp.sendingValid,
      sendingCounter: kp.sendingCounter,
    };
  }

  private syncEndpoint(peer: Peer, id: number): void {
    const was = this.pushedEndpoint.get(peer);
    if (was === peer.endpoint || (was && peer.endpoint && sameEndpoint(was, peer.endpoint))) return;
    this.dp.setPeer(id, peer.endpoint);
    this.pushedEndpoint.set(peer, peer.endpoint);
  }

  /** After any configuration change: endpoints, and the whole allowed-IPs table. */
  syncConfig(): void {
    const entries = [];
    for (const peer of this.dev.peers.values()) {
      const id = this.idOf(peer);
      this.syncEndpoint(peer, id);
      for (const { addr, cidr } of this.dev.allowedIps.entriesForPeer(peer)) entries.push({ peerId: id, addr, cidr });
    }
    this.dp.setAllowedIps(entries);
    this.syncFilter();
  }

  /** The policy filter: on when the device has one; a rules change re-decides flows they started. */
  private syncFilter(): void {
    const f = this.dev.filter;
    if (f === null) {
      if (this.filterVersion !== -1) this.dp.setFilter(false);
      this.filterVersion = -1;
      return;
    }
    const v = f.version ?? 0;
    if (this.filterVersion === -1) this.dp.setFilter(true);
    else if (v !== this.filterVersion) this.dp.flowForget();
    this.filterVersion = v;
  }

  // ---- events from the native threads ----

  onStage(peerId: number, packet: Buffer): void {
    const peer = this.peersById.get(peerId);
    if (!peer) return;
    if (!peer.stage(packet)) this.dev.drop('stagedQueueFull');
    sendStaged(this.dev, peer);
  }

  onVerdict(peerId: number, packet: Buffer): void {
    const peer = this.peersById.get(peerId);
    if (!peer) return;
    const f = this.dev.filter;
    const verdict = f ? f.inbound(packet, this.dev.clock.now()) : 'accept';
    if (verdict !== 'accept') {
      this.dev.drop(verdict === 'malformed' ? 'invalidInnerPacket' : 'filtered');
      return;
    }
    if (this.intercept(packet)) return;
    this.dp.tunWrite(packet);
    // The rest of the flow stays in C until the rules change.
    this.dp.flowAdmit(packet, 0);
  }

  onConfirm(peerId: number, localIndex: number): void {
    const peer = this.peersById.get(peerId);
    const kp = peer?.keypairs.next;
    if (!peer || !kp || kp.localIndex !== localIndex) return;
    confirmSession(this.dev, peer, kp);
  }

  /**
   * A flow the native table just recorded as ours. JS's table is the
   * authority: if it has the flow as theirs (the native entry was evicted),
   * the native side must not take it for ours, or replies would pass under
   * any policy.
   */
  onFlow(packet: Buffer): void {
    if (this.dev.filter?.outbound(packet, this.dev.clock.now())) this.dp.flowAdmit(packet, FLOW_ADMIT_SENT);
  }

  onRoam(peerId: number, to: Endpoint): void {
    const peer = this.peersById.get(peerId);
    if (!peer) return;
    peer.endpoint = to;
    this.pushedEndpoint.set(peer, to);
  }

  // ---- the tick ----

  /**
   * Reads every peer's native counters and replays what happened since the
   * last tick into its timers, oldest first, then the keep-key-fresh checks
   * that the JS datapath makes per packet (§6.2).
   */
  poll(): void {
    const dev = this.dev;
    this.syncFilter();
    this.pollDrops();
    const n = this.ids.size;
    if (this.statsIds.length < n) {
      this.statsIds = new Uint32Array(n * 2);
      this.statsOut = new Float64Array(n * 2 * PEER_STATS);
    }
    const peers = [...this.ids.keys()];
    peers.forEach((p, i) => (this.statsIds[i] = this.ids.get(p)!));
    this.dp.peerStats(this.statsIds.subarray(0, n), this.statsOut);
    peers.forEach((peer, i) => {
      const o = this.statsOut.subarray(i * PEER_STATS, (i + 1) * PEER_STATS);
      const s = this.seen.get(peer)!;
      peer.rxBytes += o[PeerStat.rxBytes] - s.rxBytes;
      peer.txBytes += o[PeerStat.txBytes] - s.txBytes;
      peer.rxPackets += o[PeerStat.rxPackets] - s.rxPackets;
      peer.txPackets += o[PeerStat.txPackets] - s.txPackets;
      const kp = peer.keypairs.current;
      if (kp && o[PeerStat.currentIndex] === kp.localIndex) kp.sendingCounter = Math.max(kp.sendingCounter, o[PeerStat.sendingCounter]);
      const events: Array<[number, number]> = [];
      const changed = (stat: number, last: number, order: number) => {
        if (o[stat] > last) events.push([this.dp.fromNative(o[stat]), order]);
      };
      // At the same millisecond a receipt comes before the reply it caused.
      changed(PeerStat.authReceived, s.authReceived, 0);
      changed(PeerStat.dataReceived, s.dataReceived, 1);
      changed(PeerStat.authSent, s.authSent, 2);
      changed(PeerStat.dataSent, s.dataSent, 3);
      events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      for (const [t, what] of events) {
        const timers = peer.timers;
        if (what === 0) {
          timers.anyAuthenticatedPacketReceived();
          timers.anyAuthenticatedPacketTraversal(t);
        } else if (what === 1) {
          timers.dataReceived(t);
        } else if (what === 2) {
          timers.anyAuthenticatedPacketSent();
          timers.anyAuthenticatedPacketTraversal(t);
        } else {
          timers.dataSent(t);
        }
      }
      const sent = o[PeerStat.dataSent] > s.dataSent;
      const received = o[PeerStat.dataReceived] > s.dataReceived;
      this.seen.set(peer, {
        rxBytes: o[PeerStat.rxBytes],
        txBytes: o[PeerStat.txBytes],
        rxPackets: o[PeerStat.rxPackets],
        txPackets: o[PeerStat.txPackets],
        dataSent: o[PeerStat.dataSent],
        authSent: o[PeerStat.authSent],
        dataReceived: o[PeerStat.dataReceived],
        authReceived: o[PeerStat.authReceived],
      });
      if (sent) keepKeyFreshSending(dev, peer);
      if (received) keepKeyFreshReceiving(dev, peer);
    });
  }

  /** Native drop counters join the device's, so status and metrics show one set. */
  private pollDrops(): void {
    const drops = this.dp.stats().drops;
    for (const [reason, n] of Object.entries(drops)) {
      const was = this.dropsSeen.get(reason) ?? 0;
      if (n > was && (DROP_REASONS as readonly string[]).includes(reason)) this.dev.drops.add(reason as DropReason, n - was);
      this.dropsSeen.set(reason, n);
    }
  }

  stats(): DatapathStats {
    return this.dp.stats();
  }

  logFatal(errno: number, what: string): void {
    this.log.error({ errno, what }, 'native datapath thread stopped');
  }
}
