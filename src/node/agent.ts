// The node agent: what `meshd daemon` runs without --config. It logs in to
// a coordination server (`up`), keeps the interface in step with the
// netmap the server streams, survives the server going away (tunnels stay,
// the poll retries with backoff), and comes back after a restart with the
// same key and address from its state directory.
import { hostname as osHostname, networkInterfaces } from 'node:os';
import { ControlClient, ControlError, fetchServerKey, parseLoginUrl } from '../control/client.js';
import { MAP_POLL_MS, type MapResponse } from '../control/messages.js';
import { acceptedSubnets, meshConfig, NetmapView, routedSubnets } from '../control/netmap.js';
import { PacketFilter, type FilterStats } from '../filter/index.js';
import { SubnetRouter } from './router.js';
import { Pinger } from './ping.js';
import { buildStatus, type StatusJson } from './status.js';
import { decodeKeyBase64, encodeKeyBase64 } from '../config/keys.js';
import { X25519PrivateKey } from '../crypto/x25519.js';
import { Engine, type DatapathKind } from '../daemon/engine.js';
import type { Device } from '../device/device.js';
import type { DatapathStats } from '../io/datapath.js';
import type { Logger } from '../daemon/log.js';
import { formatIpEndpoint, parseIp } from '../net/ipaddr.js';
import { UapiServer, uapiSocketPath, UAPI_DIR } from '../uapi/server.js';
import { NodeState, type Prefs } from './state.js';

export const DEFAULT_PORT = 41641;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;

export type AgentState = 'stopped' | 'needs-login' | 'pending-approval' | 'running';

export interface AgentOptions {
  stateDir: string;
  tunName: string;
  port: number;
  log: Logger;
  uapiDir?: string;
  datapath?: DatapathKind;
  tunQueues?: number;
}

export interface UpRequest {
  loginServer?: string;
  authKey?: string;
  hostname?: string;
  /** Each absent one keeps its stored value (as `tailscale up` remembers them). */
  advertiseRoutes?: string[];
  acceptRoutes?: boolean;
  snatSubnetRoutes?: boolean;
  advertiseTags?: string[];
  /** How long `up` waits for an admin's approval before it returns. */
  timeoutMs?: number;
}

export class AgentError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = 'AgentError';
  }
}

export class NodeAgent {
  private readonly state: NodeState;
  private readonly key: X25519PrivateKey;
  private prefs: Prefs;
  private client: ControlClient | null = null;
  private engine: Engine | null = null;
  private uapi: UapiServer | null = null;
  private view = new NetmapView();
  private readonly appliedEndpoints = new Map<string, string>();
  private polling = false;
  private freshEngine = false;
  /** Default deny until the first netmap brings the policy's rules. */
  private readonly filter = new PacketFilter([]);
  private readonly router: SubnetRouter;
  private readonly pinger = new Pinger();
  private pollAbort = 0;
  private waiters = new Set<() => void>();
  status: AgentState = 'stopped';
  lastError: string | null = null;
  /** Why the subnet-router role could not be set up, if it could not. */
  routingError: string | null = null;
  lastContact = 0;

  constructor(private readonly o: AgentOptions) {
    this.state = new NodeState(o.stateDir);
    this.key = X25519PrivateKey.fromBytes(this.state.nodeKey());
    this.prefs = this.state.prefs();
    this.router = new SubnetRouter(o.log);
  }

  get publicKey(): string {
    return encodeKeyBase64(this.key.publicKey);
  }

  /** The interface's device while it is up, for the metrics (read only). */
  /**
   * The packet filter's figures. On the native datapath established flows are
   * decided in C: those packets are added in, so the verdict counts cover
   * every inbound packet on either datapath.
   */
  private filterStats(): FilterStats {
    const s = { ...this.filter.stats() };
    const c = this.datapathStats()?.flows;
    if (c) {
      s.accept += c.acceptedReplies + c.acceptedAdmitted + c.acceptedIcmpErrors + c.acceptedFragments;
      s.replies += c.acceptedReplies;
      s.icmpErrors += c.acceptedIcmpErrors;
      s.fragments += c.acceptedFragments;
    }
    return s;
  }

  /** The native datapath's counters while the interface is up on it. */
  datapathStats(): DatapathStats | null {
    return this.engine?.native?.stats() ?? null;
  }

  get device(): Device | null {
    return this.engine?.device ?? null;
  }

  /** At daemon start: come back up if the node was up when it stopped. */
  async resume(): Promise<void> {
    if (!this.prefs.wantRunning || !this.prefs.registered || !this.prefs.loginServer || !this.prefs.serverKey) return;
    await this.startEngine();
    const cached = this.state.netmap();
    if (cached) await this.applyMap(cached, false);
    this.connect(this.prefs.loginServer, decodeKeyBase64(this.prefs.serverKey), 0);
    this.status = cached ? 'running' : 'needs-login';
    this.startPolling();
  }

  async up(req: UpRequest): Promise<{ status: AgentState; name: string | null; addresses: string[] }> {
    const loginText = req.loginServer ?? this.prefs.loginServer;
    if (!loginText) throw new AgentError('ENOLOGIN', 'no login server yet: meshd up --login-server URL --authkey KEY');
    const { url, serverKey: urlPin } = parseLoginUrl(loginText);
    const sameServer = this.prefs.loginServer !== null && parseLoginUrl(this.prefs.loginServer).url === url;
    const stored = sameServer && this.prefs.serverKey ? decodeKeyBase64(this.prefs.serverKey) : null;
    if (!req.authKey && !(sameServer && this.prefs.registered)) {
      throw new AgentError('ENEEDKEY', `this node is not registered with ${url}: give --authkey KEY or --authkey file:PATH`);
    }
    const seen = await fetchServerKey(url).catch((err: ControlError) => {
      throw new AgentError(err.code, err.message, 502);
    });
    const pin = urlPin ?? stored ?? seen.serverKey;
    if (!Buffer.from(pin).equals(Buffer.from(seen.serverKey))) {
      throw new AgentError(
        'ESERVERKEY',
        `${url} presents server key ${encodeKeyBase64(seen.serverKey)} but ${urlPin ? 'the login URL pins' : 'this node pinned'} ${encodeKeyBase64(pin)}; ` +
          `refusing (if the server was rebuilt on purpose: meshd logout, then meshd up again)`,
        502,
      );
    }
    this.stopPolling();
    const client = this.connect(url, pin, seen.offsetMs);
    const hostname = req.hostname ?? this.prefs.hostname ?? osHostname();
    const wasUp = this.engine !== null;
    await this.startEngine(); // first, so the endpoints we report carry the real port
    const endpoints = await this.endpointsForServer();
    const settings = {
      advertiseRoutes: req.advertiseRoutes ?? this.prefs.advertiseRoutes,
      acceptRoutes: req.acceptRoutes ?? this.prefs.acceptRoutes,
      snatSubnetRoutes: req.snatSubnetRoutes ?? this.prefs.snatSubnetRoutes,
      advertiseTags: req.advertiseTags ?? this.prefs.advertiseTags,
    };
    const hostinfo = { advertiseRoutes: settings.advertiseRoutes, advertiseTags: settings.advertiseTags };
    const reg = await client.register({ authKey: req.authKey, hostname, endpoints, hostinfo }).catch(async (err: ControlError) => {
      if (!wasUp) await this.stopEngine();
      throw new AgentError(err.code, err.message, err.status || 502);
    });
    this.prefs = { loginServer: loginText, serverKey: encodeKeyBase64(pin), hostname, wantRunning: true, registered: true, ...settings };
    this.state.savePrefs(this.prefs);
    this.o.log.info({ name: reg.node.name, addresses: reg.node.addresses, server: url }, 'registered');
    const first = await client.map({ since: 0, endpoints, wait: false, hostinfo }, 0);
    await this.applyMap(first, true);
    this.lastContact = Date.now();
    this.startPolling();
    if (this.status === 'pending-approval' && req.timeoutMs) await this.waitForChange(req.timeoutMs, () => this.status !== 'pending-approval');
    return { status: this.status, name: this.view.self?.name ?? null, addresses: this.view.self?.addresses ?? [] };
  }

  async down(): Promise<void> {
    this.stopPolling();
    this.prefs = { ...this.prefs, wantRunning: false };
    this.state.savePrefs(this.prefs);
    await this.stopEngine();
    this.status = 'stopped';
  }

  /** Tells the server to remove this node, then forgets the node's identity. */
  async logout(): Promise<void> {
    const client = this.client;
    this.stopPolling();
    if (client && this.prefs.registered) {
      await client.logout().catch((err: ControlError) => {
        if (err.status !== 401) throw new AgentError(err.code, `could not log out at the server (${err.message}); nothing was changed`, 502);
      });
    }
    await this.stopEngine();
    this.state.forget();
    this.prefs = this.state.prefs();
    this.status = 'stopped';
    this.view = new NetmapView();
  }

  /**
   * Echo requests to a peer through the tunnel until one is answered or
   * `tries` went unanswered. Takes the policy's path: a peer whose filter
   * refuses ICMP from us does not answer.
   */
  async ping(ref: string, tries: number, timeoutMs: number): Promise<{ peer: string; address: string; endpoint: string | null; results: Array<number | null> }> {
    const engine = this.engine;
    const self4 = this.view.self?.addresses.find((a) => !a.includes(':'))?.split('/')[0];
    if (!engine || !self4 || this.status !== 'running') throw new AgentError('ENOTUP', 'not connected: run meshd up', 409);
    const peer = [...this.view.peers.values()].find((p) => p.name === ref || p.publicKey === ref || p.addresses.some((a) => a.split('/')[0] === ref));
    if (!peer) throw new AgentError('ENOPEER', `no peer "${ref}" in this node's netmap (meshd status lists them)`, 404);
    const address = peer.addresses.find((a) => !a.includes(':'))!.split('/')[0];
    const results: Array<number | null> = [];
    engine.interceptInbound = (p) => this.pinger.intercept(p);
    try {
      for (let i = 0; i < tries; i++) {
        const rtt = await this.pinger.once(self4, address, i, timeoutMs, (p) => engine.device.send(p));
        results.push(rtt);
        if (rtt !== null) break;
      }
    } finally {
      if (!this.pinger.active) engine.interceptInbound = null;
    }
    const live = engine.peerSnapshots().find((p) => encodeKeyBase64(p.publicKey) === peer.publicKey);
    const endpoint = live?.endpoint ? formatIpEndpoint({ ...parseIp(live.endpoint.address)!, port: live.endpoint.port }) : null;
    return { peer: peer.name, address, endpoint, results };
  }

  async close(): Promise<void> {
    this.stopPolling();
    await this.stopEngine();
  }

  snapshot(): StatusJson {
    const live = new Map((this.engine?.peerSnapshots() ?? []).map((p) => [encodeKeyBase64(p.publicKey), p]));
    return buildStatus(
      {
        state: this.status,
        loginServer: this.prefs.loginServer ? parseLoginUrl(this.prefs.loginServer).url : null,
        publicKey: this.publicKey,
        interface: this.engine?.tunName ?? null,
        listenPort: this.engine?.listenPort ?? null,
        datapath: this.engine?.datapath ?? null,
        lastError: this.lastError,
        lastContact: this.lastContact || null,
        self: this.view.self,
        netmapVersion: this.view.version,
        settings: {
          advertiseRoutes: this.prefs.advertiseRoutes,
          acceptRoutes: this.prefs.acceptRoutes,
          snatSubnetRoutes: this.prefs.snatSubnetRoutes,
          advertiseTags: this.prefs.advertiseTags,
        },
        routing: this.router.active ? routedSubnets(this.view) : [],
        routingError: this.routingError,
        acceptedRoutes: this.engine && this.prefs.acceptRoutes ? acceptedSubnets(this.view) : [],
        packetFilter: this.view.packetFilter,
        drops: this.engine?.device.drops.toJSON() ?? {},
        filter: { ...this.filterStats() },
        peers: [...this.view.peers.values()].map((p) => {
          const l = live.get(p.publicKey);
          return {
            ...p,
            endpoint: l?.endpoint ? formatIpEndpoint({ ...parseIp(l.endpoint.address)!, port: l.endpoint.port }) : null,
            direct: true,
            lastHandshake: l && l.lastHandshakeTimeSec ? l.lastHandshakeTimeSec * 1000 : null,
            rxBytes: Number(l?.rxBytes ?? 0),
            txBytes: Number(l?.txBytes ?? 0),
          };
        }),
      },
      Date.now(),
    );
  }

  // -------------------------------------------------------------------------

  private hostinfo() {
    return { advertiseRoutes: this.prefs.advertiseRoutes, advertiseTags: this.prefs.advertiseTags };
  }

  private connect(url: string, serverKey: Uint8Array, offsetMs: number): ControlClient {
    this.client = new ControlClient({ url, serverKey, nodeKey: this.key, offsetMs });
    return this.client;
  }

  private async startEngine(): Promise<void> {
    if (this.engine) return;
    const engine = await Engine.start({ tunName: this.o.tunName, listenPort: this.o.port, log: this.o.log, datapath: this.o.datapath, tunQueues: this.o.tunQueues });
    try {
      engine.device.setPrivateKey(this.key.exportBytes());
      this.uapi = await UapiServer.listen(uapiSocketPath(engine.tunName, this.o.uapiDir ?? UAPI_DIR), engine, (err) => this.o.log.error({ err: err.message }, 'UAPI request failed'));
    } catch (err) {
      await engine.close();
      throw err;
    }
    engine.device.filter = this.filter;
    this.engine = engine;
    this.freshEngine = true;
    this.appliedEndpoints.clear();
    this.o.log.info({ interface: engine.tunName, listenPort: engine.listenPort }, 'interface up');
  }

  private async stopEngine(): Promise<void> {
    await this.router.apply(null, [], false).catch((err: Error) => this.o.log.error({ err: err.message }, 'could not remove the router rules'));
    await this.uapi?.close().catch(() => {});
    this.uapi = null;
    await this.engine?.close();
    this.engine = null;
  }

  private async applyMap(m: MapResponse, persist: boolean): Promise<void> {
    this.view.apply(m);
    this.status = this.view.self?.authorized === false ? 'pending-approval' : 'running';
    const problems = this.filter.setRules(this.view.packetFilter);
    if (problems.length) this.o.log.warn({ problems }, 'packet filter rules skipped');
    if (this.engine) {
      const extraRoutes = this.prefs.acceptRoutes ? acceptedSubnets(this.view) : [];
      // A fresh interface greets the peers that are online (see MeshPeer.greet).
      await this.engine.applyMesh(meshConfig(this.view, this.appliedEndpoints, { greetOnline: this.freshEngine, extraRoutes }));
      this.freshEngine = false;
      this.routingError = null;
      await this.router.apply(this.engine.tunName, routedSubnets(this.view), this.prefs.snatSubnetRoutes).catch((err: Error) => {
        this.routingError = err.message;
        this.o.log.error({ err: err.message }, 'could not set up subnet routing');
      });
    }
    if (persist) this.state.saveNetmap(this.view.toJSON());
    for (const w of this.waiters) w();
  }

  private waitForChange(ms: number, done: () => boolean): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (!done()) return;
        finish();
      };
      const finish = () => {
        clearTimeout(t);
        this.waiters.delete(check);
        resolve();
      };
      const t = setTimeout(finish, ms);
      this.waiters.add(check);
      check();
    });
  }

  private startPolling(): void {
    if (this.polling) return;
    this.polling = true;
    const generation = ++this.pollAbort;
    void this.pollLoop(generation);
  }

  private stopPolling(): void {
    this.polling = false;
    this.pollAbort++;
  }

  private async pollLoop(generation: number): Promise<void> {
    let backoff = BACKOFF_MIN_MS;
    while (this.pollAbort === generation && this.client) {
      try {
        const m = await this.client.map({ since: this.view.version, endpoints: await this.endpointsForServer(), wait: true, hostinfo: this.hostinfo() }, MAP_POLL_MS);
        if (this.pollAbort !== generation) return;
        this.lastContact = Date.now();
        this.lastError = null;
        await this.applyMap(m, true);
        backoff = BACKOFF_MIN_MS;
      } catch (err) {
        if (this.pollAbort !== generation) return;
        const e = err as ControlError;
        this.lastError = e.message;
        if (e instanceof ControlError && e.permanent) {
          // Deleted or expired: the mesh has dropped us; so do our tunnels.
          this.o.log.warn({ code: e.code, err: e.message }, 'control server refused this node');
          this.status = 'needs-login';
          this.view = new NetmapView();
          if (this.engine) await this.engine.applyMesh({ addresses: [], peers: [], routes: [] }).catch(() => {});
          this.polling = false;
          return;
        }
        this.o.log.warn({ code: e.code, err: e.message, retryMs: backoff }, 'control poll failed; tunnels stay up, retrying');
        await new Promise((r) => setTimeout(r, backoff * (0.75 + Math.random() * 0.5)));
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
    }
  }

  /** Addresses peers may reach us at: every non-loopback interface address but the overlay's, at our port. */
  private async endpointsForServer(): Promise<string[]> {
    const port = this.engine?.listenPort || this.o.port;
    const out: string[] = [];
    for (const [name, addrs] of Object.entries(networkInterfaces())) {
      if (name === this.o.tunName) continue;
      for (const a of addrs ?? []) {
        if (a.internal || a.address.startsWith('fe80:')) continue;
        const ip = parseIp(a.address);
        if (!ip) continue;
        out.push(formatIpEndpoint({ ...ip, port }));
      }
    }
    return out.slice(0, 16);
  }
}
