// A coordination server and meshd nodes in a Lab's namespaces: the server
// (`meshd server`) on one host, node agents (`meshd daemon` without
// --config) on others, driven by the real CLI (`meshd up`, `meshd admin`).
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Lab, MESHD, must, ping, run, waitFor, type Host, type Proc, type RunResult } from './netns.js';

export const SERVER_PORT = 8080;

export interface NodeStatus {
  state: string;
  publicKey: string;
  interface: string | null;
  lastError: string | null;
  self: { id: number; name: string; addresses: string[]; authorized: boolean } | null;
  peers: Array<{ name: string; publicKey: string; addresses: string[]; online: boolean; endpoint: string | null; lastHandshake: number | null }>;
}

export class MeshServer {
  proc!: Proc;
  constructor(
    readonly lab: Lab,
    readonly host: Host,
    readonly stateDir: string,
    private readonly args: string[],
  ) {}

  get url(): string {
    return `http://${this.host.v4}:${SERVER_PORT}`;
  }

  get tokenFile(): string {
    return join(this.stateDir, 'admin.token');
  }

  async start(): Promise<void> {
    this.proc = this.lab.spawn(this.host.ns, MESHD, ['server', '--listen', `${this.host.v4}:${SERVER_PORT}`, '--state-dir', this.stateDir, '--log-level', 'debug', ...this.args], { label: 'meshd server' });
    await waitFor(
      'meshd server to answer',
      () => {
        if (this.proc.hasExited) throw new Error(`meshd server exited early:\n${this.proc.output}`);
        return this.proc.output.includes('meshd server running');
      },
      10_000,
      100,
    );
  }

  /** SIGKILL: no chance to flush or close anything. */
  async kill9(): Promise<void> {
    process.kill(this.proc.pid, 'SIGKILL');
    await this.proc.waitExit(5_000);
  }

  admin(...args: string[]): Promise<RunResult> {
    return run(this.host.ns, MESHD, ['admin', '--server', this.url, '--token-file', this.tokenFile, ...args]);
  }

  async adminJson<T>(...args: string[]): Promise<T> {
    const r = await this.admin(...args, '--json');
    if (r.code !== 0) throw new Error(`meshd admin ${args.join(' ')} failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  async createKey(...flags: string[]): Promise<string> {
    const r = await this.adminJson<{ key: string }>('keys', 'create', ...flags);
    return r.key;
  }
}

export class MeshNode {
  proc!: Proc;
  readonly tun: string;
  readonly socket: string;
  readonly stateDir: string;

  constructor(
    readonly lab: Lab,
    readonly host: Host,
    readonly label: string,
    private readonly extraArgs: string[] = [],
  ) {
    this.tun = lab.wgName();
    this.stateDir = join(lab.dir, `node-${label}`);
    this.socket = join(lab.dir, `node-${label}.sock`);
  }

  async start(): Promise<void> {
    mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
    this.proc = this.lab.spawn(this.host.ns, MESHD, ['daemon', '--tun', this.tun, '--state-dir', this.stateDir, '--socket', this.socket, '--log-level', 'debug', ...this.extraArgs], { label: `meshd node ${this.label}` });
    await waitFor(
      `node ${this.label}'s control socket`,
      () => {
        if (this.proc.hasExited) throw new Error(`node ${this.label} exited early:\n${this.proc.output}`);
        return existsSync(this.socket) && this.proc.output.includes('waiting for commands');
      },
      10_000,
      50,
    );
  }

  async kill9(): Promise<void> {
    process.kill(this.proc.pid, 'SIGKILL');
    await this.proc.waitExit(5_000);
  }

  cli(...args: string[]): Promise<RunResult> {
    return run(this.host.ns, MESHD, [...args, '--socket', this.socket], { timeoutMs: 60_000 });
  }

  /** `meshd up`; throws with its output unless it exits 0. */
  async up(...args: string[]): Promise<string> {
    const r = await this.cli('up', ...args);
    if (r.code !== 0) throw new Error(`meshd up on ${this.label} failed (code ${r.code}): ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  async status(): Promise<NodeStatus> {
    const r = await this.cli('status', '--json');
    if (r.code !== 0) throw new Error(`meshd status on ${this.label} failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as NodeStatus;
  }

  async ip4(): Promise<string> {
    return (await must(this.host.ns, MESHD, ['ip', '-4', '--socket', this.socket])).trim();
  }

  async ip6(): Promise<string> {
    return (await must(this.host.ns, MESHD, ['ip', '-6', '--socket', this.socket])).trim();
  }

  /** True once one ping to `address` is answered. */
  async reaches(address: string): Promise<boolean> {
    return (await ping(this.host.ns, address, { count: 1, waitS: 1 })).received > 0;
  }

  /** Peer public keys on the WireGuard interface, as `wg show` reports them. */
  async wgPeers(): Promise<string[]> {
    const r = await run(this.host.ns, 'wg', ['show', this.tun, 'peers']);
    return r.code === 0 ? r.stdout.split('\n').filter(Boolean) : [];
  }
}

export async function startServer(lab: Lab, host: Host, ...args: string[]): Promise<MeshServer> {
  const s = new MeshServer(lab, host, join(lab.dir, 'server'), args);
  await s.start();
  return s;
}

export async function startNode(lab: Lab, host: Host, label: string, extraArgs: string[] = []): Promise<MeshNode> {
  const n = new MeshNode(lab, host, label, extraArgs);
  await n.start();
  return n;
}

// ---------------------------------------------------------------------------
// A TCP service that tells each client the address it sees them from.

const PEER_SERVER = `
import socket, sys, threading
def serve(conn, addr):
    with conn:
        f = conn.makefile('rwb', buffering=0)
        first = f.readline()
        if first.startswith(b'GET '):
            # Read the whole request first: closing with unread bytes would send a RST.
            while f.readline() not in (b'\\r\\n', b'\\n', b''):
                pass
            conn.sendall(b'HTTP/1.0 200 OK\\r\\ncontent-type: text/plain\\r\\n\\r\\npeer=' + addr[0].encode() + b'\\n')
            return
        line = first
        while line:
            conn.sendall(b'peer=' + addr[0].encode() + b' ' + line)
            line = f.readline()
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print('listening', flush=True)
while True:
    c, a = s.accept()
    threading.Thread(target=serve, args=(c, a), daemon=True).start()
`;

/** Starts the peer-address service on `address:port` in `ns`. */
export async function peerService(lab: Lab, ns: string, address: string, port: number): Promise<Proc> {
  const p = lab.spawn(ns, 'python3', ['-c', PEER_SERVER, address, String(port)], { label: `peer service ${address}:${port}` });
  await waitFor(`peer service on ${address}:${port}`, () => {
    if (p.hasExited) throw new Error(`peer service exited:\n${p.output}`);
    return p.output.includes('listening');
  }, 5_000, 50);
  return p;
}

/** An HTTP GET to the peer service: the address it saw us from, or null when the connection failed. */
export async function httpPeer(ns: string, address: string, port = 80, timeoutS = 2): Promise<string | null> {
  const script = `
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=${timeoutS})
    c.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')
    data = b''
    while True:
        d = c.recv(4096)
        if not d: break
        data += d
    print(data.decode().split('peer=')[1].strip())
except Exception as e:
    print('FAILED', e)
    sys.exit(1)
`;
  const r = await run(ns, 'python3', ['-c', script, address, String(port)], { timeoutMs: (timeoutS + 3) * 1000 });
  return r.code === 0 ? r.stdout.trim() : null;
}
