// The native datapath (native/src/dp_*.c) as TypeScript sees it: a thin,
// typed wrapper over the addon's dp* functions. The packet loop runs in two
// native threads; this side hands it sessions, endpoints and allowed IPs and
// takes its events (handshake messages, packets that need a session or a
// filter verdict). src/daemon/datapath.ts is what connects it to the Device.
import type { Endpoint } from '../device/endpoint.js';
import { loadNative, type DatapathHandle, type DatapathKeypair, type DatapathStats, type NativeBinding } from './tun.js';

export type { DatapathKeypair, DatapathStats };

/** datapath.h DP_EV_*. */
export const DatapathEvent = {
  handshake: 1,
  stage: 2,
  verdict: 3,
  confirm: 4,
  flow: 5,
  roam: 6,
  fatal: 7,
} as const;

/** dp_napi.c DP_PEER_STATS: numbers per peer in peerStats(). */
export const PEER_STATS = 10;
export const PeerStat = {
  rxBytes: 0,
  txBytes: 1,
  rxPackets: 2,
  txPackets: 3,
  dataSent: 4,
  authSent: 5,
  dataReceived: 6,
  authReceived: 7,
  sendingCounter: 8,
  currentIndex: 9,
} as const;

/** flowcache.h admit() flags. */
export const FLOW_ADMIT_SENT = 1;
export const FLOW_ADMIT_OURS = 2;

export interface DatapathEvents {
  handshake(packet: Buffer, from: Endpoint): void;
  stage(peerId: number, packet: Buffer): void;
  verdict(peerId: number, packet: Buffer): void;
  confirm(peerId: number, localIndex: number): void;
  flow(peerId: number, packet: Buffer): void;
  roam(peerId: number, to: Endpoint): void;
  fatal(errno: number, what: string): void;
}

export interface AllowedIpEntry {
  peerId: number;
  addr: Uint8Array;
  cidr: number;
}

export class NativeDatapath {
  private closed = false;

  private constructor(
    private readonly native: NativeBinding,
    private readonly h: DatapathHandle,
    /** Native monotonic ms minus performance.now(): both count CLOCK_MONOTONIC. */
    readonly clockOffset: number,
  ) {}

  /** Binds UDP `port` (0: any) on both families for the TUN `tunFd`; call start() once configured. */
  static open(tunFd: number, opts: { vnetHdr: boolean; port: number; mtu: number }, events: DatapathEvents): NativeDatapath {
    const native = loadNative();
    const onEvent = (kind: number, peerId: number, arg: number, data: Buffer | null, address: string | null, port: number) => {
      switch (kind) {
        case DatapathEvent.handshake:
          if (data && address) events.handshake(data, { address, port });
          break;
        case DatapathEvent.stage:
          if (data) events.stage(peerId, data);
          break;
        case DatapathEvent.verdict:
          if (data) events.verdict(peerId, data);
          break;
        case DatapathEvent.confirm:
          events.confirm(peerId, arg);
          break;
        case DatapathEvent.flow:
          if (data) events.flow(peerId, data);
          break;
        case DatapathEvent.roam:
          if (address) events.roam(peerId, { address, port });
          break;
        case DatapathEvent.fatal:
          events.fatal(arg, data ? data.toString() : '');
          break;
      }
    };
    const h = native.dpCreate(tunFd, opts.vnetHdr, opts.port, opts.mtu, onEvent);
    const offset = native.dpNow() - performance.now();
    return new NativeDatapath(native, h, offset);
  }

  /** Another queue fd of the same multi-queue TUN: one more TX thread (before start()). */
  addQueue(fd: number): void {
    this.native.dpAddQueue(this.h, fd);
  }

  start(): void {
    this.native.dpStart(this.h);
  }

  get port(): number {
    return this.native.dpPort(this.h);
  }

  /** A JS monotonic time (performance.now()) as the native clock's. */
  toNative(ms: number): number {
    return Math.max(0, ms + this.clockOffset);
  }

  fromNative(ms: number): number {
    return ms - this.clockOffset;
  }

  setPeer(id: number, endpoint: Endpoint | null): void {
    this.native.dpSetPeer(this.h, id, endpoint?.address ?? '', endpoint?.port ?? 0);
  }

  removePeer(id: number): void {
    this.native.dpRemovePeer(this.h, id);
  }

  /** [current, previous, next], as noise/keypair.ts rotates them. */
  setKeypairs(id: number, keypairs: [DatapathKeypair | null, DatapathKeypair | null, DatapathKeypair | null]): void {
    this.native.dpSetKeypairs(this.h, id, keypairs);
  }

  setAllowedIps(entries: AllowedIpEntry[]): void {
    const buf = Buffer.alloc(entries.length * 24);
    entries.forEach((e, i) => {
      const o = i * 24;
      buf.writeUInt32LE(e.peerId, o);
      buf[o + 4] = e.addr.length === 4 ? 4 : 6;
      buf[o + 5] = e.cidr;
      buf.set(e.addr, o + 8);
    });
    this.native.dpSetAllowedIps(this.h, buf);
  }

  sendPlain(id: number, packets: Uint8Array[]): number {
    let sent = 0;
    // The addon takes at most 256 per call.
    for (let i = 0; i < packets.length; i += 256) {
      const chunk = packets.slice(i, i + 256);
      const n = this.native.dpSendPlain(this.h, id, chunk);
      sent += n;
      if (n < chunk.length) break;
    }
    return sent;
  }

  sendRaw(packet: Uint8Array, to: Endpoint): void {
    this.native.dpSendRaw(this.h, packet, to.address, to.port);
  }

  tunWrite(packet: Uint8Array): void {
    this.native.dpTunWrite(this.h, packet);
  }

  setFilter(on: boolean): void {
    this.native.dpSetFilter(this.h, on);
  }

  flowAdmit(packet: Uint8Array, flags: number): void {
    this.native.dpFlowAdmit(this.h, packet, flags);
  }

  flowForget(): void {
    this.native.dpFlowForget(this.h);
  }

  peerStats(ids: Uint32Array, out: Float64Array): void {
    this.native.dpPeerStats(this.h, ids, out);
  }

  stats(): DatapathStats {
    return this.native.dpStats(this.h);
  }

  setMark(mark: number): void {
    this.native.dpSetMark(this.h, mark);
  }

  rebind(port: number): void {
    this.native.dpRebind(this.h, port);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.native.dpClose(this.h);
  }
}
