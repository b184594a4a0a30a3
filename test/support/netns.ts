// Network-namespace harness for the interop tests (test/netns/interop.test.ts).
//
// A Lab owns everything one test creates: namespaces, veth links, processes
// (meshd, wireguard-go, iperf3, helper scripts), a temp directory for config
// and key files, and the names of WireGuard interfaces (whose UAPI sockets live
// in the one machine-wide /var/run/wireguard). cleanup() undoes all of it:
// processes are stopped by PID (SIGTERM, SIGKILL after 3 s), namespaces are
// deleted (taking their veths and TUNs with them), stale sockets and the temp
// directory are removed. A process 'exit' hook does the same synchronously for
// labs a crashed test run never cleaned.
//
// Every name is "mi" + a kind letter + 8 random hex digits (11 bytes), unique on
// the machine and within IFNAMSIZ (15). Every wait is bounded in time and in
// iterations. Commands are run with argument arrays, never through a shell.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeEach } from 'vitest';

export const MESHD = fileURLToPath(new URL('../../bin/meshd', import.meta.url));
export const UAPI_DIR = '/var/run/wireguard';
/** How long a daemon may take to answer `wg show` after it was started. */
export const READY_MS = 10_000;
/** SIGTERM grace before SIGKILL. */
export const KILL_GRACE_MS = 3_000;
const DEFAULT_EXEC_TIMEOUT_MS = 15_000;
/** Output lines kept per process (older ones are dropped). */
const MAX_LINES = 4_000;

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` every `intervalMs` until it returns true; throws after
 * `timeoutMs` (and never runs more than timeoutMs/intervalMs + 1 times).
 */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5_000, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const maxTries = Math.ceil(timeoutMs / intervalMs) + 1;
  for (let i = 0; i < maxTries; i++) {
    if (await check()) return;
    if (Date.now() >= deadline) break;
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

// ---------------------------------------------------------------------------
// Commands

export interface RunResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** Runs `cmd args` (inside `ns` when given) to completion; never throws for a non-zero exit. */
export function run(ns: string | null, cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, argv] = ns === null ? [cmd, args] : ['ip', ['netns', 'exec', ns, cmd, ...args]];
  return new Promise((resolve) => {
    execFile(
      file,
      argv,
      { encoding: 'utf8', timeout: opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 64 << 20, env: opts.env ?? process.env },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: string }) | null;
        resolve({
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          signal: e?.signal ?? null,
          stdout: String(stdout),
          stderr: String(stderr) + (e && typeof e.code !== 'number' && !e.signal ? String(e.message) : ''),
        });
      },
    );
  });
}

/** As run(), but a non-zero exit is an error that shows the command and its output. */
export async function must(ns: string | null, cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(ns, cmd, args, opts);
  if (r.code !== 0) {
    const where = ns === null ? '' : `[${ns}] `;
    throw new Error(`${where}${cmd} ${args.join(' ')} failed (code ${r.code}, signal ${r.signal}):\n${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

// ---------------------------------------------------------------------------
// Keys

export interface KeyPair {
  privateKey: string;
  publicKey: string;
}

/** A clamped X25519 key pair in base64, as `wg genkey | wg pubkey` makes. */
export function keyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const d = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url');
  d[0] &= 248;
  d[31] = (d[31] & 127) | 64;
  return { privateKey: d.toString('base64'), publicKey: Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('base64') };
}

export function presharedKey(): string {
  return randomBytes(32).toString('base64');
}

// ---------------------------------------------------------------------------
// Processes

/** A spawned process with its output collected (last MAX_LINES lines). */
export class Proc {
  readonly pid: number;
  readonly lines: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  exitCode: number | null = null;
  exitSignal: string | null = null;
  hasExited = false;
  private partial = { out: '', err: '' };

  constructor(readonly label: string, readonly child: ChildProcess) {
    if (child.pid === undefined) throw new Error(`${label}: spawn failed`);
    this.pid = child.pid;
    const collect = (key: 'out' | 'err') => (chunk: string) => {
      const parts = (this.partial[key] + chunk).split('\n');
      this.partial[key] = parts.pop()!;
      this.push(parts);
    };
    child.stdout?.setEncoding('utf8').on('data', collect('out'));
    child.stderr?.setEncoding('utf8').on('data', collect('err'));
    this.exited = new Promise((resolve) => {
      child.on('error', (err) => this.push([`spawn error: ${err.message}`]));
      child.on('close', (code, signal) => {
        this.push([this.partial.out, this.partial.err].filter((s) => s !== ''));
        this.hasExited = true;
        this.exitCode = code;
        this.exitSignal = signal;
        resolve({ code, signal });
      });
    });
  }

  private push(parts: string[]): void {
    this.lines.push(...parts);
    if (this.lines.length > MAX_LINES) this.lines.splice(0, this.lines.length - MAX_LINES);
  }

  get output(): string {
    return this.lines.join('\n');
  }

  /** True while the process exists (signal 0 reaches it) and has not been reaped. */
  get alive(): boolean {
    if (this.hasExited) return false;
    try {
      process.kill(this.pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  /** Waits up to `ms` for exit; true if it exited. */
  async waitExit(ms: number): Promise<boolean> {
    if (this.hasExited) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
    const r = await Promise.race([this.exited.then(() => true as const), timeout]);
    clearTimeout(timer);
    return r;
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone (or 2 s after SIGKILL). */
  async stop(graceMs = KILL_GRACE_MS): Promise<void> {
    if (this.hasExited) return;
    try {
      process.kill(this.pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
    if (await this.waitExit(graceMs)) return;
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    await this.waitExit(2_000);
  }
}

// ---------------------------------------------------------------------------
// WireGuard interfaces

export interface PeerSpec {
  publicKey: string;
  presharedKey?: string;
  allowedIps: string[];
  /** "1.2.3.4:51820" or "[fd00::1]:51820" */
  endpoint?: string;
  persistentKeepalive?: number;
}

export interface InterfaceSpec {
  keys: KeyPair;
  listenPort: number;
  /** CIDR addresses on the interface, e.g. "10.77.0.1/24". */
  addresses: string[];
  mtu?: number;
  peers: PeerSpec[];
}

export type WgKind = 'meshd' | 'wireguard-go';

export interface PeerDump {
  publicKey: string;
  presharedKey: string | null;
  endpoint: string | null;
  allowedIps: string[];
  latestHandshake: number;
  rx: number;
  tx: number;
  persistentKeepalive: string;
}

export interface WgDump {
  privateKey: string;
  publicKey: string;
  listenPort: number;
  peers: PeerDump[];
}

/** Parses `wg show NAME dump`. */
export function parseDump(text: string): WgDump {
  const rows = text.trim().split('\n').map((l) => l.split('\t'));
  const [head, ...peers] = rows;
  if (!head || head.length < 4) throw new Error(`unexpected wg dump: ${JSON.stringify(text)}`);
  return {
    privateKey: head[0],
    publicKey: head[1],
    listenPort: Number(head[2]),
    peers: peers.map((p) => ({
      publicKey: p[0],
      presharedKey: p[1] === '(none)' ? null : p[1],
      endpoint: p[2] === '(none)' ? null : p[2],
      allowedIps: p[3] === '(none)' ? [] : p[3].split(','),
      latestHandshake: Number(p[4]),
      rx: Number(p[5]),
      tx: Number(p[6]),
      persistentKeepalive: p[7],
    })),
  };
}

/** A running WireGuard interface, meshd or wireguard-go, in one namespace. */
export class WgNode {
  constructor(
    readonly lab: Lab,
    readonly kind: WgKind,
    readonly ns: string,
    readonly name: string,
    public spec: InterfaceSpec,
    public proc: Proc,
    readonly configFile: string | null,
  ) {}

  get publicKey(): string {
    return this.spec.keys.publicKey;
  }

  /** `wg ARGS` in this node's namespace; throws on failure. */
  wg(...args: string[]): Promise<string> {
    return must(this.ns, 'wg', args);
  }

  async dump(): Promise<WgDump> {
    return parseDump(await this.wg('show', this.name, 'dump'));
  }

  async peer(publicKey: string): Promise<PeerDump> {
    const p = (await this.dump()).peers.find((x) => x.publicKey === publicKey);
    if (!p) throw new Error(`${this.kind} ${this.name} has no peer ${publicKey}`);
    return p;
  }

  /** Handshake initiations this node logged as sent / received (meshd at debug, wireguard-go at verbose). */
  initiationsSent(): number {
    const re = this.kind === 'meshd' ? /handshake\.initiationSent/ : /Sending handshake initiation/;
    return this.proc.lines.filter((l) => re.test(l)).length;
  }

  initiationsReceived(): number {
    const re = this.kind === 'meshd' ? /handshake\.initiationConsumed/ : /Received handshake initiation/;
    return this.proc.lines.filter((l) => re.test(l)).length;
  }

  get socketPath(): string {
    return `${UAPI_DIR}/${this.name}.sock`;
  }

  /** SIGTERM (SIGKILL after the grace period); returns how long the exit took. */
  async stop(): Promise<{ ms: number; code: number | null; signal: string | null }> {
    const t0 = performance.now();
    await this.proc.stop();
    return { ms: performance.now() - t0, code: this.proc.exitCode, signal: this.proc.exitSignal };
  }
}

/** A peer entry for `node` as another node would list it. */
export function peerFor(node: WgNode, opts: { allowedIps: string[]; endpoint?: string; presharedKey?: string; persistentKeepalive?: number }): PeerSpec {
  return { publicKey: node.publicKey, ...opts };
}

export function formatEndpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** The wg(8) setconf format, plus wg-quick's Address/MTU lines when `quick`. */
export function formatConfig(spec: InterfaceSpec, quick: boolean): string {
  const out = ['[Interface]', `PrivateKey = ${spec.keys.privateKey}`, `ListenPort = ${spec.listenPort}`];
  if (quick && spec.addresses.length) out.push(`Address = ${spec.addresses.join(', ')}`);
  if (quick && spec.mtu !== undefined) out.push(`MTU = ${spec.mtu}`);
  for (const p of spec.peers) {
    out.push('', '[Peer]', `PublicKey = ${p.publicKey}`);
    if (p.presharedKey) out.push(`PresharedKey = ${p.presharedKey}`);
    if (p.allowedIps.length) out.push(`AllowedIPs = ${p.allowedIps.join(', ')}`);
    if (p.endpoint) out.push(`Endpoint = ${p.endpoint}`);
    if (p.persistentKeepalive) out.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
  }
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------
// Topology

/** One host namespace hanging off the router. */
export interface Host {
  ns: string;
  /** The host's end of its veth to the router. */
  dev: string;
  /** The router's end. */
  routerDev: string;
  v4: string;
  v6: string;
  gw4: string;
  gw6: string;
  /** 1-based: the host's underlay is 192.168.<index>.1/24 and fd00:<index>::1/64. */
  index: number;
}

export interface Topology {
  router: string;
  hosts: Host[];
}

export function hostAddresses(index: number) {
  return { v4: `192.168.${index}.1`, v6: `fd00:${index}::1`, gw4: `192.168.${index}.254`, gw6: `fd00:${index}::fe` };
}

// ---------------------------------------------------------------------------
// The lab

const liveLabs = new Set<Lab>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const lab of liveLabs) lab.cleanupSync();
  });
}

/** The --datapath every Lab.startMeshd passes; suites run once per datapath set it in beforeAll. */
let meshdDatapath: 'auto' | 'native' | 'js' = 'auto';
export function useMeshdDatapath(d: 'auto' | 'native' | 'js'): void {
  meshdDatapath = d;
}

export class Lab {
  readonly dir: string;
  private readonly namespaces = new Set<string>();
  private readonly procs = new Set<Proc>();
  private readonly wgNames = new Set<string>();
  private readonly veths = new Set<string>();
  private readonly allProcs: Proc[] = []; // kept for report() after cleanup
  private cleaned = false;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'meshd-netns-'));
    liveLabs.add(this);
    installExitHook();
  }

  /** "mi" + kind + 8 hex digits; never reused, never an existing UAPI socket. */
  name(kind: 'n' | 'w' | 'v' | 'r'): string {
    for (let i = 0; i < 16; i++) {
      const n = `mi${kind}${randomBytes(4).toString('hex')}`;
      if (!existsSync(`${UAPI_DIR}/${n}.sock`) && !existsSync(`/run/netns/${n}`)) return n;
    }
    throw new Error('could not find a free name');
  }

  /** A WireGuard interface name, tracked so its UAPI socket is removed at cleanup. */
  wgName(): string {
    const n = this.name('w');
    this.wgNames.add(n);
    return n;
  }

  async netns(): Promise<string> {
    const ns = this.name('n');
    this.namespaces.add(ns); // before creating: a half-made namespace is still deleted
    await must(null, 'ip', ['netns', 'add', ns]);
    await must(ns, 'ip', ['link', 'set', 'lo', 'up']);
    // Links made later inherit "default": without DAD their IPv6 link-local addresses are
    // usable at once (otherwise the first routed IPv6 packets wait ~2 s for DAD).
    await must(ns, 'sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
    return ns;
  }

  /** A veth pair with one end in each namespace, both up. Returns the two names. */
  async veth(nsA: string, nsB: string): Promise<[string, string]> {
    const a = this.name('v');
    const b = this.name('v');
    this.veths.add(a).add(b);
    await must(null, 'ip', ['link', 'add', a, 'netns', nsA, 'type', 'veth', 'peer', 'name', b, 'netns', nsB]);
    await must(nsA, 'ip', ['link', 'set', a, 'up']);
    await must(nsB, 'ip', ['link', 'set', b, 'up']);
    return [a, b];
  }

  /**
   * `hostCount` hosts, each joined to one router namespace by a veth, with
   * IPv4 and IPv6 underlay addresses (no DAD), default routes via the router,
   * and forwarding on in the router.
   */
  async routedHosts(hostCount = 2): Promise<Topology> {
    const router = await this.netns();
    await must(router, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    await must(router, 'sysctl', ['-q', '-w', 'net.ipv6.conf.all.forwarding=1']);
    const hosts: Host[] = [];
    for (let index = 1; index <= hostCount; index++) {
      const ns = await this.netns();
      const [dev, routerDev] = await this.veth(ns, router);
      const a = hostAddresses(index);
      await must(router, 'ip', ['addr', 'add', `${a.gw4}/24`, 'dev', routerDev]);
      await must(router, 'ip', ['-6', 'addr', 'add', `${a.gw6}/64`, 'dev', routerDev, 'nodad']);
      await must(ns, 'ip', ['addr', 'add', `${a.v4}/24`, 'dev', dev]);
      await must(ns, 'ip', ['-6', 'addr', 'add', `${a.v6}/64`, 'dev', dev, 'nodad']);
      await must(ns, 'ip', ['route', 'add', 'default', 'via', a.gw4]);
      await must(ns, 'ip', ['-6', 'route', 'add', 'default', 'via', a.gw6]);
      hosts.push({ ns, dev, routerDev, index, ...a });
    }
    return { router, hosts };
  }

  /** Spawns `cmd args` inside `ns`; tracked until cleanup. */
  spawn(ns: string, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; label?: string } = {}): Proc {
    // `ip netns exec` execs the command in place, so the PID is the command's own.
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const p = new Proc(opts.label ?? `${cmd} [${ns}]`, child);
    this.procs.add(p);
    this.allProcs.push(p);
    void p.exited.then(() => this.procs.delete(p));
    return p;
  }

  /** Writes a file in the lab's temp directory, mode 0600. */
  file(name: string, text: string): string {
    const path = join(this.dir, name);
    writeFileSync(path, text, { mode: 0o600 });
    return path;
  }

  /** Waits until `name`'s UAPI socket exists and `wg show NAME` answers, while `proc` lives. */
  private async waitReady(ns: string, name: string, proc: Proc): Promise<void> {
    await waitFor(
      `${name} to answer wg show`,
      async () => {
        if (proc.hasExited) throw new Error(`${proc.label} exited (code ${proc.exitCode}, signal ${proc.exitSignal}) before it was ready:\n${proc.output}`);
        if (!existsSync(`${UAPI_DIR}/${name}.sock`)) return false;
        return (await run(ns, 'wg', ['show', name], { timeoutMs: 2_000 })).code === 0;
      },
      READY_MS,
      50,
    );
  }

  /** Starts `meshd daemon` from a wg-quick file, on the datapath of useMeshdDatapath(); resolves once `wg show` answers. */
  async startMeshd(ns: string, spec: InterfaceSpec, opts: { name?: string; extraArgs?: string[] } = {}): Promise<WgNode> {
    const name = opts.name ?? this.wgName();
    this.wgNames.add(name);
    const configFile = this.file(`${name}.conf`, formatConfig(spec, true));
    const args = ['daemon', '--tun', name, '--config', configFile, '--log-level', 'debug', '--datapath', meshdDatapath, ...(opts.extraArgs ?? [])];
    const proc = this.spawn(ns, MESHD, args, { label: `meshd ${name} (${meshdDatapath})` });
    await this.waitReady(ns, name, proc);
    return new WgNode(this, 'meshd', ns, name, spec, proc, configFile);
  }

  /**
   * Starts wireguard-go in the foreground and configures it as wg-quick
   * would: `wg setconf`, addresses, link up, a route per allowed IP.
   */
  async startWireguardGo(ns: string, spec: InterfaceSpec, opts: { name?: string } = {}): Promise<WgNode> {
    const name = opts.name ?? this.wgName();
    this.wgNames.add(name);
    const proc = this.spawn(ns, 'wireguard-go', [name], { env: { ...process.env, WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: 'verbose' }, label: `wireguard-go ${name}` });
    await this.waitReady(ns, name, proc);
    const configFile = this.file(`${name}.wg.conf`, formatConfig(spec, false));
    await must(ns, 'wg', ['setconf', name, configFile]);
    if (spec.mtu !== undefined) await must(ns, 'ip', ['link', 'set', name, 'mtu', String(spec.mtu)]);
    for (const a of spec.addresses) await must(ns, 'ip', [a.includes(':') ? '-6' : '-4', 'addr', 'add', a, 'dev', name]);
    await must(ns, 'ip', ['link', 'set', name, 'up']);
    const node = new WgNode(this, 'wireguard-go', ns, name, spec, proc, configFile);
    for (const p of spec.peers) await this.routeAllowedIps(node, p.allowedIps);
    return node;
  }

  /** Routes prefixes into a wireguard-go interface (meshd does this itself). */
  async routeAllowedIps(node: WgNode, prefixes: string[]): Promise<void> {
    for (const prefix of prefixes) {
      if (prefix.endsWith('/0')) continue;
      await must(node.ns, 'ip', [prefix.includes(':') ? '-6' : '-4', 'route', 'replace', prefix, 'dev', node.name]);
    }
  }

  async start(kind: WgKind, ns: string, spec: InterfaceSpec, opts: { name?: string } = {}): Promise<WgNode> {
    return kind === 'meshd' ? this.startMeshd(ns, spec, opts) : this.startWireguardGo(ns, spec, opts);
  }

  /** Cleans every lab not cleaned yet (an afterAll safety net). */
  static async cleanupAll(): Promise<void> {
    for (const lab of [...liveLabs]) await lab.cleanup();
  }

  /** Output of every process this lab started, for a failed test's report. */
  report(): string {
    return this.allProcs
      .map((p) => `----- ${p.label} (pid ${p.pid}, ${p.hasExited ? `exited ${p.exitCode ?? p.exitSignal}` : 'running'}) -----\n${p.lines.slice(-80).join('\n')}`)
      .join('\n');
  }

  /** Stops every process, deletes every namespace, socket and file. Idempotent. */
  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    await Promise.all([...this.procs].map((p) => p.stop()));
    for (const ns of this.namespaces) await run(null, 'ip', ['netns', 'del', ns], { timeoutMs: 10_000 });
    this.removeLeftovers();
    liveLabs.delete(this);
  }

  /** The same, synchronously, for process exit: SIGKILL only, no waiting. */
  cleanupSync(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    for (const p of this.procs) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const ns of this.namespaces) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5_000 });
      } catch {
        /* gone */
      }
    }
    this.removeLeftovers();
  }

  private removeLeftovers(): void {
    // Veths normally die with their namespace; one left in the root namespace
    // (a failed move) is removed by name.
    for (const v of this.veths) {
      if (existsSync(`/sys/class/net/${v}`)) {
        try {
          execFileSync('ip', ['link', 'del', v], { stdio: 'ignore', timeout: 5_000 });
        } catch {
          /* gone */
        }
      }
    }
    // A SIGKILLed daemon leaves its socket behind.
    for (const n of this.wgNames) rmSync(`${UAPI_DIR}/${n}.sock`, { force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Gives each test of the enclosing describe its own Lab (handed to `use`),
 * removed after the test even when it fails, with every process's output
 * printed for a failed test.
 */
export function labPerTest(use: (lab: Lab) => void): void {
  let current: Lab | null = null;
  beforeEach(({ onTestFailed }) => {
    const lab = new Lab();
    current = lab;
    use(lab);
    onTestFailed(() => console.error(`lab ${lab.dir}:\n${lab.report()}`));
  });
  afterEach(async () => {
    await current?.cleanup();
  });
  afterAll(async () => {
    await Lab.cleanupAll();
  });
}

// ---------------------------------------------------------------------------
// Traffic tools

export interface PingResult {
  transmitted: number;
  received: number;
  code: number | null;
  output: string;
}

/** `ping` from `ns`; never throws for lost packets. */
export async function ping(ns: string, address: string, opts: { count?: number; intervalS?: number; waitS?: number; source?: string } = {}): Promise<PingResult> {
  const count = opts.count ?? 3;
  const interval = opts.intervalS ?? 0.2;
  const wait = opts.waitS ?? 2;
  // -c with -W (no -w): exactly `count` echo requests, then at most `wait` s for the last reply.
  const args = ['-n', '-c', String(count), '-i', String(interval), '-W', String(wait)];
  if (opts.source) args.push('-I', opts.source);
  args.push(address);
  const r = await run(ns, 'ping', args, { timeoutMs: (count * interval + wait + 5) * 1000 });
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(r.stdout);
  return { transmitted: m ? Number(m[1]) : 0, received: m ? Number(m[2]) : 0, code: r.code, output: r.stdout + r.stderr };
}

/** An iperf3 server for one client, bound to `address`; resolves once it listens. */
export async function iperfServer(lab: Lab, ns: string, address: string, port = 5201): Promise<Proc> {
  const p = lab.spawn(ns, 'iperf3', ['-s', '-1', '-B', address, '-p', String(port)], { label: `iperf3 -s [${ns}]` });
  await waitFor(
    `iperf3 server on ${address}:${port}`,
    async () => {
      if (p.hasExited) throw new Error(`iperf3 server exited: ${p.output}`);
      const r = await run(ns, 'ss', ['-Htln', `sport = :${port}`], { timeoutMs: 2_000 });
      return r.stdout.trim() !== '';
    },
    5_000,
    50,
  );
  return p;
}

export interface IperfResult {
  sentBytes: number;
  receivedBytes: number;
  /** Bytes per reported interval (1 s each). */
  intervals: number[];
  json: any;
}

/** `iperf3 -c address -t seconds -J [-R]` from `ns`; throws if iperf3 reports an error. */
export async function iperfClient(ns: string, address: string, opts: { seconds: number; reverse?: boolean; port?: number; streams?: number }): Promise<IperfResult> {
  const args = ['-c', address, '-p', String(opts.port ?? 5201), '-t', String(opts.seconds), '-J', '--connect-timeout', '3000'];
  if (opts.reverse) args.push('-R');
  if (opts.streams) args.push('-P', String(opts.streams));
  const r = await run(ns, 'iperf3', args, { timeoutMs: (opts.seconds + 20) * 1000 });
  let json: any;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    throw new Error(`iperf3 gave no JSON (code ${r.code}): ${r.stdout}${r.stderr}`);
  }
  if (json.error || r.code !== 0) throw new Error(`iperf3 failed (code ${r.code}): ${json.error ?? r.stderr}`);
  return {
    sentBytes: json.end.sum_sent.bytes,
    receivedBytes: json.end.sum_received.bytes,
    intervals: (json.intervals ?? []).map((i: any) => i.sum.bytes),
    json,
  };
}

/**
 * A UDP listener (node) on `ports` in `ns`: one JSON line per datagram,
 * {port, from, len, type}. Resolves once every port is bound.
 */
export async function udpSink(lab: Lab, ns: string, ports: number[], bindAddress = '0.0.0.0'): Promise<{ proc: Proc; datagrams: () => Array<{ port: number; from: string; len: number; type: number }> }> {
  const script = `
const dgram = require('node:dgram');
const [addr, ...ports] = process.argv.slice(2);
let bound = 0;
setTimeout(() => process.exit(0), 120000).unref();
for (const port of ports.map(Number)) {
  const s = dgram.createSocket(addr.includes(':') ? 'udp6' : 'udp4');
  s.on('message', (m, r) => console.log(JSON.stringify({ port, from: r.address, len: m.length, type: m.length ? m[0] : -1 })));
  s.bind(port, addr, () => { if (++bound === ports.length) console.log('ready'); });
}
`;
  const file = lab.file(`udpsink-${randomBytes(3).toString('hex')}.cjs`, script);
  const proc = lab.spawn(ns, process.execPath, [file, bindAddress, ...ports.map(String)], { label: `udp sink [${ns}]` });
  await waitFor('UDP sink to bind', () => {
    if (proc.hasExited) throw new Error(`UDP sink exited: ${proc.output}`);
    return proc.lines.includes('ready');
  });
  return {
    proc,
    datagrams: () => proc.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)),
  };
}

/** Sends `count` small UDP datagrams from `source` (bound) to address:port, from `ns`. */
export async function udpSend(ns: string, opts: { source: string; address: string; port: number; count: number; payload?: string }): Promise<void> {
  const script = `
const dgram = require('node:dgram');
const [src, dst, port, count, payload] = process.argv.slice(1);
const s = dgram.createSocket(dst.includes(':') ? 'udp6' : 'udp4');
s.bind(0, src, async () => {
  for (let i = 0; i < Number(count); i++) {
    await new Promise((res) => s.send(Buffer.from(payload + ' ' + i), Number(port), dst, () => res()));
    await new Promise((res) => setTimeout(res, 20));
  }
  s.close();
});
`;
  await must(ns, process.execPath, ['-e', script, opts.source, opts.address, String(opts.port), String(opts.count), opts.payload ?? 'meshd-test'], { timeoutMs: 10_000 });
}

/** UDP receive errors in `ns` (IPv4 + IPv6): datagrams the kernel dropped for want of socket buffer, and all input errors. */
export async function udpReceiveErrors(ns: string): Promise<{ rcvbuf: number; inErrors: number }> {
  const snmp = await must(ns, 'cat', ['/proc/net/snmp', '/proc/net/snmp6']);
  const lines = snmp.split('\n');
  const udp = lines.filter((l) => l.startsWith('Udp:'));
  const v4: Record<string, number> = {};
  if (udp.length >= 2) {
    const keys = udp[0].split(/\s+/).slice(1);
    const vals = udp[1].split(/\s+/).slice(1).map(Number);
    keys.forEach((k, i) => (v4[k] = vals[i]));
  }
  const v6 = (key: string) => Number(/^Udp6(\w+)\s+(\d+)/m.test(snmp) ? (new RegExp(`^Udp6${key}\\s+(\\d+)`, 'm').exec(snmp)?.[1] ?? 0) : 0);
  return { rcvbuf: (v4.RcvbufErrors ?? 0) + v6('RcvbufErrors'), inErrors: (v4.InErrors ?? 0) + v6('InErrors') };
}
