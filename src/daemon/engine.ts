// The engine: one WireGuard interface made real. It owns the TUN device, the
// UDP bind and the Device, moves packets between them, runs the timers, and
// applies configuration (wg-quick files and UAPI set requests) to the device
// and the kernel (addresses, MTU, routes). Closing it restores the system:
// the TUN is not persistent, so closing its fd removes the link, its
// addresses and its routes.
import { lookup } from 'node:dns/promises';
import { formatCidr as formatAllowedIp } from '../device/allowedips.js';
import { Device, type PeerConfig } from '../device/device.js';
import type { Endpoint } from '../device/endpoint.js';
import { TunDevice } from '../io/tun.js';
import { UdpBind } from '../io/udp.js';
import { NativeDatapath } from '../io/datapath.js';
import { NativeSessions } from './datapath.js';
import { createLinkConfigurator, type LinkConfigurator } from '../system/netlink.js';
import { applyRoutes } from '../system/routes.js';
import { formatCidr, formatIp, type IpPrefix } from '../net/ipaddr.js';
import type { ConfigEndpoint, WgQuickConfig } from '../config/wgquick.js';
import type { DeviceSnapshot, SetRequest } from '../uapi/protocol.js';
import { UapiError } from '../uapi/protocol.js';
import type { Logger } from './log.js';

/** How often due timers are checked; the kernel's timers have similar slack. */
const TICK_MS = 100;
/** Handshake messages processed per event-loop turn before yielding to data. */
const HANDSHAKE_BUDGET = 64;

/** A peer as the mesh wants it; `endpoint` undefined keeps the one the peer has (it may have roamed). */
export interface MeshPeer {
  publicKey: Uint8Array;
  allowedIps: IpPrefix[];
  endpoint?: Endpoint | null;
  persistentKeepalive: number;
  /**
   * Start a handshake at once if the peer is new to this device. A peer that
   * still holds a session with our previous incarnation (we restarted) would
   * otherwise send into the void until its rekey timeout (~15 s) fires.
   */
  greet?: boolean;
}

/** The whole interface as a netmap wants it (control/netmap.ts computes it). */
export interface MeshConfig {
  addresses: IpPrefix[];
  peers: MeshPeer[];
  /** Routes into the TUN, replacing the wg-quick rule of one route per allowed IP. */
  routes: string[];
}

/** Where transport data is sealed and opened: in TypeScript, or in the addon's threads. */
export type DatapathKind = 'js' | 'native';

export interface EngineOptions {
  tunName: string;
  listenPort?: number;
  mtu?: number;
  log: Logger;
  /** Default 'js'. */
  datapath?: DatapathKind;
  /** Native datapath: TUN segmentation/coalescing offloads (IFF_VNET_HDR); default true. */
  tunOffload?: boolean;
  /** Native datapath: TUN queues (IFF_MULTI_QUEUE), one TX thread each; default 1. */
  tunQueues?: number;
}

/** The UDP side as the engine uses it: node:dgram sockets (UdpBind) or the native datapath's. */
interface EngineBind {
  readonly port: number;
  readonly fwmark: number;
  send(packet: Uint8Array, to: Endpoint): void;
  rebind(port: number): Promise<void>;
  setMark(mark: number): void;
  close(): void;
}

class NativeBind implements EngineBind {
  fwmark = 0;
  constructor(private readonly dp: NativeDatapath) {}
  get port(): number {
    return this.dp.port;
  }
  send(packet: Uint8Array, to: Endpoint): void {
    this.dp.sendRaw(packet, to);
  }
  async rebind(port: number): Promise<void> {
    this.dp.rebind(port);
    if (this.fwmark) this.dp.setMark(this.fwmark);
  }
  setMark(mark: number): void {
    this.dp.setMark(mark);
    this.fwmark = mark;
  }
  close(): void {
    this.dp.close();
  }
}

export class Engine {
  readonly device: Device;
  private tun: TunDevice | null = null;
  /** Queues 1.. of a multi-queue TUN (native datapath). */
  private extraQueues: TunDevice[] = [];
  private udp: EngineBind | null = null;
  /** The native datapath, when it carries the transport data. */
  native: NativeSessions | null = null;
  private link: LinkConfigurator | null = null;
  private ticker: NodeJS.Timeout | null = null;
  private handshakeScheduled = false;
  private addresses: IpPrefix[] = [];
  /** Set by applyMesh: the routes are these, not the peers' allowed IPs. */
  private fixedRoutes: string[] | null = null;
  private linkUp = false;
  /** Sees each decrypted inbound packet before the TUN; true keeps it from the kernel (meshd ping's replies). */
  interceptInbound: ((packet: Uint8Array) => boolean) | null = null;
  closed = false;

  private constructor(readonly name: string, private readonly log: Logger, mtu: number) {
    this.device = new Device({
      bind: { send: (p, to) => this.udp?.send(p, to) },
      tun: { write: (p) => (this.interceptInbound?.(p) ? true : this.tun ? this.tun.write(p) : false) },
      mtu,
      log: (event, fields) => log.debug({ ...fields, event }, event),
    });
  }

  /** Creates the TUN and the UDP sockets; nothing is configured yet. */
  static async start(opts: EngineOptions): Promise<Engine> {
    const e = new Engine(opts.tunName, opts.log, opts.mtu ?? 1420);
    try {
      if (opts.datapath === 'native') {
        const offload = opts.tunOffload ?? true;
        const queues = opts.tunQueues ?? 1;
        if (!Number.isInteger(queues) || queues < 1 || queues > 8) throw new EngineError('EINVAL', `TUN queues must be 1..8, got ${queues}`);
        e.tun = TunDevice.open(opts.tunName, { vnetHdr: offload, multiQueue: queues > 1 });
        for (let q = 1; q < queues; q++) e.extraQueues.push(TunDevice.open(e.tun.name, { vnetHdr: offload, multiQueue: true }));
        e.startNative(opts.listenPort ?? 0, offload);
      } else {
        e.tun = TunDevice.open(opts.tunName);
        e.udp = await UdpBind.open(opts.listenPort ?? 0, (p, from) => e.onDatagram(p, from));
      }
      e.link = createLinkConfigurator();
      await e.link.setMtu(e.tun.name, e.device.mtu);
      if (!e.native) {
        e.tun.onPackets(
          (batch) => {
            for (let i = 0; i < batch.count; i++) e.device.send(batch.packet(i));
          },
          (err) => e.log.warn({ err: err.message }, 'TUN read error'),
        );
      }
      e.ticker = setInterval(() => {
        e.native?.poll();
        e.device.tick();
      }, TICK_MS);
      return e;
    } catch (err) {
      await e.close();
      throw err;
    }
  }

  /** The addon's threads read the TUN and own the UDP port; the Device keeps the handshakes. */
  private startNative(port: number, vnetHdr: boolean): void {
    let sessions: NativeSessions | null = null;
    const dp = NativeDatapath.open(this.tun!.fd, { vnetHdr, port, mtu: this.device.mtu }, {
      handshake: (p, from) => this.onDatagram(p, from),
      stage: (id, p) => sessions?.onStage(id, p),
      verdict: (id, p) => sessions?.onVerdict(id, p),
      confirm: (id, index) => sessions?.onConfirm(id, index),
      flow: (_id, p) => sessions?.onFlow(p),
      roam: (id, to) => sessions?.onRoam(id, to),
      fatal: (errno, what) => sessions?.logFatal(errno, what),
    });
    this.udp = new NativeBind(dp);
    for (const q of this.extraQueues) dp.addQueue(q.fd);
    sessions = new NativeSessions(this.device, dp, this.log, (p) => this.interceptInbound?.(p) ?? false);
    this.native = sessions;
    this.device.offload = sessions;
    dp.start();
  }

  get listenPort(): number {
    return this.udp?.port ?? 0;
  }

  get datapath(): DatapathKind {
    return this.native ? 'native' : 'js';
  }

  get tunName(): string {
    return this.tun?.name ?? this.name;
  }

  private onDatagram(packet: Buffer, from: Endpoint): void {
    this.device.receive(packet, from);
    if (this.device.pendingHandshakes && !this.handshakeScheduled) {
      this.handshakeScheduled = true;
      setImmediate(() => this.drainHandshakes());
    }
  }

  private drainHandshakes(): void {
    this.handshakeScheduled = false;
    if (this.closed) return;
    if (this.device.processHandshakes(HANDSHAKE_BUDGET) > 0) {
      this.handshakeScheduled = true;
      setImmediate(() => this.drainHandshakes());
    }
  }

  /** Applies a parsed wg-quick file: keys, port, peers, then addresses, MTU, link up, routes. */
  async applyWgQuick(cfg: WgQuickConfig): Promise<void> {
    // Resolve every endpoint first, so a bad host name changes nothing.
    const endpoints = await Promise.all(cfg.peers.map((p) => (p.endpoint ? resolveEndpoint(p.endpoint) : Promise.resolve(null))));
    this.device.setPrivateKey(cfg.interface.privateKey);
    if (cfg.interface.listenPort !== undefined && cfg.interface.listenPort !== this.listenPort) await this.udp!.rebind(cfg.interface.listenPort);
    if (cfg.interface.fwmark !== undefined) this.udp!.setMark(cfg.interface.fwmark);
    cfg.peers.forEach((p, i) => {
      this.device.upsertPeer({
        publicKey: p.publicKey,
        presharedKey: p.presharedKey ?? null,
        endpoint: endpoints[i],
        allowedIps: p.allowedIps.map(toTrie),
        persistentKeepalive: p.persistentKeepalive ?? 0,
      });
    });
    const link = this.link!;
    if (cfg.interface.mtu !== undefined) {
      this.device.mtu = cfg.interface.mtu;
      await link.setMtu(this.tunName, cfg.interface.mtu);
    }
    for (const a of cfg.interface.addresses) await link.addAddress(this.tunName, formatCidr(a));
    this.addresses = cfg.interface.addresses;
    this.native?.syncConfig();
    await link.setUp(this.tunName, true);
    await this.syncRoutes();
  }

  /**
   * Routes every peer's allowed IPs into the TUN (what wg-quick does at
   * start), kept in step as peers change through the UAPI. Default routes are
   * left out: routing 0.0.0.0/0 into the tunnel needs wg-quick's policy
   * routing, or the tunnel's own packets would loop.
   */
  async syncRoutes(): Promise<void> {
    if (!this.link || !this.tun) return;
    if (this.fixedRoutes) {
      await applyRoutes(this.link, this.tunName, this.fixedRoutes);
      return;
    }
    const want = new Set<string>();
    for (const peer of this.device.peers.values()) {
      for (const { addr, cidr } of this.device.allowedIps.entriesForPeer(peer)) {
        if (cidr === 0) continue;
        want.add(formatAllowedIp(addr, cidr));
      }
    }
    // Prefixes of our own addresses already have kernel routes on this link.
    await applyRoutes(this.link, this.tunName, [...want]);
  }

  /**
   * Makes the device and the link what a netmap wants, touching only what
   * differs: a peer whose key and allowed IPs did not change keeps its
   * sessions; a removed peer's keys are wiped.
   */
  async applyMesh(cfg: MeshConfig): Promise<void> {
    const dev = this.device;
    const want = new Map(cfg.peers.map((p) => [Buffer.from(p.publicKey).toString('base64'), p]));
    for (const [id, peer] of [...dev.peers]) if (!want.has(id)) dev.removePeer(peer.publicKey);
    const greet = [];
    for (const p of want.values()) {
      const known = dev.peer(p.publicKey);
      const peer = known ?? dev.upsertPeer({ publicKey: p.publicKey });
      if (!known && p.greet) greet.push(peer);
      const have = dev.allowedIps.entriesForPeer(peer).map(({ addr, cidr }) => formatAllowedIp(addr, cidr)).sort();
      const next = p.allowedIps.map((a) => formatAllowedIp(a.bytes, a.bits)).sort();
      if (have.length !== next.length || have.some((x, i) => x !== next[i])) {
        dev.allowedIps.removeByPeer(peer);
        for (const a of p.allowedIps) dev.allowedIps.insert(a.bytes, a.bits, peer);
      }
      if (p.endpoint !== undefined) peer.endpoint = p.endpoint;
      if (peer.persistentKeepalive !== p.persistentKeepalive) dev.setPersistentKeepalive(peer, p.persistentKeepalive);
    }
    const link = this.link!;
    const wantAddrs = new Set(cfg.addresses.map(formatCidr));
    for (const a of this.addresses) if (!wantAddrs.has(formatCidr(a))) await link.removeAddress(this.tunName, formatCidr(a));
    const haveAddrs = new Set(this.addresses.map(formatCidr));
    for (const a of cfg.addresses) if (!haveAddrs.has(formatCidr(a))) await link.addAddress(this.tunName, formatCidr(a));
    this.addresses = cfg.addresses;
    if (!this.linkUp) {
      await link.setUp(this.tunName, true);
      this.linkUp = true;
    }
    this.fixedRoutes = cfg.routes;
    this.native?.syncConfig();
    await this.syncRoutes();
    for (const peer of greet) if (peer.endpoint) dev.sendKeepalive(peer);
  }

  /** A UAPI set: applied whole, in the order wireguard-go applies lines. */
  async applySet(req: SetRequest): Promise<void> {
    const dev = this.device;
    if (req.interface.privateKey !== undefined) dev.setPrivateKey(req.interface.privateKey);
    if (req.interface.listenPort !== undefined && req.interface.listenPort !== this.listenPort) {
      try {
        await this.udp!.rebind(req.interface.listenPort);
      } catch (err) {
        throw new UapiError('EINVAL', (err as Error).message);
      }
    }
    if (req.interface.fwmark !== undefined) this.udp!.setMark(req.interface.fwmark);
    if (req.interface.replacePeers) for (const p of [...dev.peers.values()]) dev.removePeer(p.publicKey);
    for (const ps of req.peers) {
      if (ps.remove) {
        dev.removePeer(ps.publicKey);
        continue;
      }
      let peer = dev.peer(ps.publicKey);
      if (!peer && ps.updateOnly) continue;
      if (dev.identity && Buffer.from(ps.publicKey).equals(dev.identity.publicKey)) continue; // as wireguard-go: ignored
      const cfg: PeerConfig = { publicKey: ps.publicKey };
      if (ps.presharedKey !== undefined) cfg.presharedKey = ps.presharedKey;
      if (ps.endpoint) cfg.endpoint = { address: formatIp(ps.endpoint), port: ps.endpoint.port };
      peer = dev.upsertPeer(cfg);
      if (ps.replaceAllowedIps) dev.allowedIps.removeByPeer(peer);
      for (const a of ps.allowedIps) dev.allowedIps.insert(a.bytes, a.bits, peer);
      if (ps.persistentKeepalive !== undefined) dev.setPersistentKeepalive(peer, ps.persistentKeepalive);
    }
    this.native?.syncConfig();
    await this.syncRoutes();
  }

  /** The UAPI get view of the device. */
  snapshot(): DeviceSnapshot {
    return {
      privateKey: this.device.identity?.privateKey.exportBytes(),
      listenPort: this.listenPort,
      fwmark: this.udp?.fwmark ?? 0,
      peers: this.peerSnapshots(),
    };
  }

  /** The peers' part of the snapshot, without the private key. */
  peerSnapshots(): DeviceSnapshot['peers'] {
    const dev = this.device;
    return [...dev.peers.values()].map((p) => {
        const psk = p.handshake.presharedKey;
        return {
          publicKey: p.publicKey,
          presharedKey: psk.some((b) => b !== 0) ? Buffer.from(psk) : undefined,
          endpoint: p.endpoint ? { address: p.endpoint.address, port: p.endpoint.port } : undefined,
          persistentKeepaliveInterval: p.persistentKeepalive,
          lastHandshakeTimeSec: Math.floor(p.lastHandshakeWall / 1000),
          lastHandshakeTimeNsec: (p.lastHandshakeWall % 1000) * 1e6,
          rxBytes: p.rxBytes,
          txBytes: p.txBytes,
          allowedIps: dev.allowedIps.entriesForPeer(p).map(({ addr, cidr }) => formatAllowedIp(addr, cidr)),
          protocolVersion: 1 as const,
        };
      });
  }

  get interfaceAddresses(): IpPrefix[] {
    return this.addresses;
  }

  /** Stops everything; the TUN link (and its addresses and routes) goes with its fd. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ticker) clearInterval(this.ticker);
    this.device.up = false;
    for (const p of [...this.device.peers.values()]) this.device.removePeer(p.publicKey);
    this.device.setPrivateKey(null);
    this.udp?.close();
    for (const q of this.extraQueues) q.close();
    this.tun?.close();
    this.link?.close();
  }
}

function toTrie(p: IpPrefix): { addr: Uint8Array; cidr: number } {
  return { addr: p.bytes, cidr: p.bits };
}

/** Endpoint host names are resolved once, when the configuration is applied (as wg does). */
export async function resolveEndpoint(ep: ConfigEndpoint): Promise<Endpoint> {
  if (ep.family !== null) return { address: ep.host, port: ep.port };
  try {
    const r = await lookup(ep.host);
    return { address: r.address, port: ep.port };
  } catch (err) {
    throw new EngineError('ERESOLVE', `cannot resolve endpoint host ${ep.host}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export class EngineError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'EngineError';
  }
}
