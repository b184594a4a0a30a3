// The UDP "bind" (wireguard-go conn/): one IPv4 and one IPv6 socket on the
// listen port, delivering datagrams to a handler and sending to endpoints.
// Separate sockets (IPV6_V6ONLY) keep IPv4 peers' addresses in plain form.
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Endpoint } from '../device/endpoint.js';
import { loadNative, nativeAvailable } from './tun.js';

const familyCache = new WeakMap<Endpoint, boolean>();

export type DatagramHandler = (packet: Buffer, from: Endpoint) => void;

/** Socket buffers we ask for; the kernel caps them at net.core.[rw]mem_max. */
const SOCKET_BUFFER = 4 << 20;

export class UdpBindError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'UdpBindError';
  }
}

export class UdpBind {
  private v4: dgram.Socket | null = null;
  private v6: dgram.Socket | null = null;
  port = 0;
  sendErrors = 0;
  /** SO_MARK of both sockets (UAPI fwmark); 0 = none. */
  private mark = 0;

  private constructor(private readonly onDatagram: DatagramHandler) {}

  /** Opens both families on `port` (0 = any free port, the same for both). */
  static async open(port: number, onDatagram: DatagramHandler, opts: { fwmark?: number } = {}): Promise<UdpBind> {
    const bind = new UdpBind(onDatagram);
    await bind.listen(port);
    if (opts.fwmark) bind.setMark(opts.fwmark);
    return bind;
  }

  /** Marks every packet the sockets send (SO_MARK), for policy routing; 0 clears it. */
  setMark(mark: number): void {
    for (const s of [this.v4, this.v6]) {
      const fd = s ? socketFd(s) : undefined;
      if (fd === undefined) continue;
      if (!nativeAvailable()) throw new UdpBindError('ENATIVE', 'setting fwmark needs the native addon (npm run build:native)');
      // The addon reads the mark back from the kernel.
      const got = loadNative().setSocketMark(fd, mark);
      if (got !== mark) throw new UdpBindError('EMARK', `fwmark ${mark} did not stick (kernel reports ${got})`);
    }
    this.mark = mark;
  }

  get fwmark(): number {
    return this.mark;
  }

  private async listen(port: number): Promise<void> {
    const v4 = dgram.createSocket({ type: 'udp4', reuseAddr: false, recvBufferSize: SOCKET_BUFFER, sendBufferSize: SOCKET_BUFFER });
    await bindSocket(v4, port, '0.0.0.0');
    this.port = v4.address().port;
    this.v4 = v4;
    const v6 = dgram.createSocket({ type: 'udp6', ipv6Only: true, recvBufferSize: SOCKET_BUFFER, sendBufferSize: SOCKET_BUFFER });
    try {
      await bindSocket(v6, this.port, '::');
      this.v6 = v6;
    } catch (err) {
      // A host without IPv6 still works over IPv4.
      v6.close();
      if ((err as NodeJS.ErrnoException).code !== 'EAFNOSUPPORT' && (err as NodeJS.ErrnoException).code !== 'EADDRNOTAVAIL') {
        this.close();
        throw err;
      }
    }
    for (const s of [this.v4, this.v6]) {
      if (!s) continue;
      raiseBuffers(s);
      s.on('message', (msg, rinfo) => this.onDatagram(msg, { address: rinfo.address, port: rinfo.port }));
      // Remote input must never kill the daemon: ICMP errors surface here.
      s.on('error', () => {
        this.sendErrors++;
      });
    }
  }

  send(packet: Uint8Array, to: Endpoint): void {
    // Endpoints are immutable objects: remember each one's family instead of
    // parsing its address on every packet.
    let v6 = familyCache.get(to);
    if (v6 === undefined) familyCache.set(to, (v6 = isIPv6(to.address)));
    const s = v6 ? this.v6 : this.v4;
    if (!s) {
      this.sendErrors++;
      return;
    }
    // No per-packet callback: send errors (e.g. ICMP unreachable) arrive as
    // 'error' events, which are counted below.
    s.send(packet, to.port, to.address);
  }

  /** Rebinds to a new port (UAPI listen_port). */
  async rebind(port: number): Promise<void> {
    this.close();
    await this.listen(port);
    if (this.mark) this.setMark(this.mark);
  }

  bufferSizes(): { rcv: number; snd: number } {
    return this.v4 ? { rcv: this.v4.getRecvBufferSize(), snd: this.v4.getSendBufferSize() } : { rcv: 0, snd: 0 };
  }

  close(): void {
    for (const s of [this.v4, this.v6]) {
      try {
        s?.close();
      } catch {
        /* already closed */
      }
    }
    this.v4 = this.v6 = null;
  }
}

/**
 * dgram's own buffer options are capped at net.core.[rw]mem_max (208 KiB by
 * default, where wireguard-go loses packets here); with the addon and
 * CAP_NET_ADMIN we get the size we ask for.
 */
function raiseBuffers(s: dgram.Socket): void {
  const fd = socketFd(s);
  if (fd === undefined || fd < 0 || !nativeAvailable()) return;
  try {
    loadNative().setSocketBuffers(fd, SOCKET_BUFFER, SOCKET_BUFFER);
  } catch {
    // Keeps the capped size that dgram already set.
  }
}

/**
 * The fd under a dgram socket. Node keeps its handle in a symbol-keyed state
 * object (the public `_handle` getter is deprecated and warns on stderr).
 */
function socketFd(s: dgram.Socket): number | undefined {
  for (const sym of Object.getOwnPropertySymbols(s)) {
    const state = (s as unknown as Record<symbol, { handle?: { fd?: number } } | undefined>)[sym];
    if (state && typeof state === 'object' && state.handle && typeof state.handle.fd === 'number') return state.handle.fd;
  }
  return undefined;
}

/** The kernel-granted receive and send buffer sizes of a bind's IPv4 socket (for tests and status). */
export function socketBufferSizes(bind: UdpBind): { rcv: number; snd: number } {
  return bind.bufferSizes();
}

function bindSocket(s: dgram.Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      s.off('listening', onListening);
      const msg = err.code === 'EADDRINUSE' ? `UDP port ${port} is already in use` : `cannot bind UDP ${address} port ${port}: ${err.message}`;
      reject(Object.assign(new UdpBindError(err.code ?? 'EBIND', msg), { cause: err }));
    };
    const onListening = () => {
      s.off('error', onError);
      resolve();
    };
    s.once('error', onError);
    s.once('listening', onListening);
    s.bind({ port, address, exclusive: true });
  });
}
