/**
 * TUN devices (Linux, Documentation/networking/tuntap.rst) through meshd's optional native
 * addon, native/build/Release/meshd_native.node, built from native/src by node-gyp.
 *
 * A TunDevice is one queue of an L3 TUN interface (IFF_TUN | IFF_NO_PI): every read
 * yields one IPv4/IPv6 packet and every write takes one. Reading is batched: the addon
 * polls the fd on the event loop and, per wakeup, reads up to `batch` packets into a ring
 * it allocated once, then calls the handler once. No per-packet allocation happens unless
 * the handler asks for a packet view.
 *
 * Packet bytes are only valid during the handler call: the next wakeup reads over them.
 * Copy (Buffer.from(batch.packet(i))) whatever must outlive the call.
 *
 * A reading device keeps the process alive; close() (or stopReading()) releases it.
 * Errors: control calls throw TunError (a stable errno `code`) or NativeAddonError
 * ('ENATIVE'); the packet path returns false and counts drops in `stats`.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** IFNAMSIZ - 1: the longest interface name the kernel accepts, in bytes. */
export const TUN_NAME_MAX = 15;
/** Packets read per wakeup unless `batch` says otherwise. */
export const DEFAULT_READ_BATCH = 64;
/** Bytes per ring slot: any IP packet fits (the TUN MTU can be raised to 65535). */
export const DEFAULT_SLOT_SIZE = 65536;

const BATCH_RANGE = [1, 1024] as const;
const SLOT_RANGE = [128, 256 * 1024] as const;
const ADDON_PATH = join('native', 'build', 'Release', 'meshd_native.node');

/** The native addon is missing or cannot be loaded. */
export class NativeAddonError extends Error {
  readonly code = 'ENATIVE' as const;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'NativeAddonError';
  }
}

/** A TUN operation failed; `code` is the errno name ('EPERM', 'EBUSY', 'EBADFD', ...). */
export class TunError extends Error {
  readonly code: string;
  readonly errno: number | undefined;
  readonly syscall: string | undefined;

  constructor(code: string, message: string, options?: ErrorOptions & { errno?: number; syscall?: string }) {
    super(message, options);
    this.name = 'TunError';
    this.code = code;
    this.errno = options?.errno;
    this.syscall = options?.syscall;
  }
}

export interface TunOpenOptions {
  /** IFF_MULTI_QUEUE: open more queues of the same interface by opening its name again. */
  multiQueue?: boolean;
  /** IFF_VNET_HDR: every packet read and written starts with a struct virtio_net_hdr. */
  vnetHdr?: boolean;
  /** Most packets delivered per wakeup, 1..1024 (default 64). */
  batch?: number;
  /** Ring slot size in bytes, 128..262144 (default 65536). A packet larger than this is
   * dropped and counted in `stats.rxTruncated`, never delivered cut short. */
  slotSize?: number;
}

/**
 * The packets of one wakeup. Valid only during the handler call: afterwards `count` is 0
 * and the ring is reused, including under any views taken with packet().
 */
export interface PacketBatch {
  /** Packets in this batch (at least 1 inside the handler). */
  readonly count: number;
  /** The whole read ring. Packet i is data[offset(i), offset(i) + length(i)). */
  readonly data: Buffer;
  offset(i: number): number;
  length(i: number): number;
  /** A view of packet i, not a copy. */
  packet(i: number): Buffer;
}

export type PacketHandler = (batch: PacketBatch) => void;
export type TunErrorHandler = (error: TunError) => void;

export interface TunStats {
  /** Packets delivered to the handler. */
  rxPackets: number;
  /** Packets dropped because they were larger than slotSize. */
  rxTruncated: number;
  /** Reader wakeups, and those that filled a whole batch (a sign of backlog). */
  rxWakeups: number;
  rxFullBatches: number;
  /** Packets the kernel accepted. */
  txPackets: number;
  /** Packets dropped because the kernel queue was full (EAGAIN). */
  txDropped: number;
  /** Packets the kernel refused (not IPv4/IPv6, too big, interface down, ...). */
  txRejected: number;
}

interface NativeRing {
  buffer: ArrayBuffer;
  lengths: Uint32Array;
  maxBatch: number;
  slotSize: number;
}

interface NativeReaderStats {
  packets: number;
  truncated: number;
  wakeups: number;
  fullBatches: number;
}

/** The addon's exports (native/src/*.c). */
export interface NativeBinding {
  open(name: string, multiQueue: boolean, vnetHdr: boolean): { fd: number; name: string };
  close(fd: number): void;
  startReading(
    fd: number,
    onBatch: (count: number, error?: Error) => void,
    maxBatch: number,
    slotSize: number,
  ): NativeRing;
  stopReading(fd: number): boolean;
  readerStats(fd: number): NativeReaderStats | undefined;
  write(fd: number, buffer: Uint8Array, offset: number, length: number): number;
  writeBatch(fd: number, buffer: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number): number;
  setSocketBuffers(fd: number, rcvBytes: number, sndBytes: number): { rcv: number; snd: number };
  setSocketMark(fd: number, mark: number): number;
  aeadSeal(key: Uint8Array, counter: number, src: Uint8Array, srcOff: number, srcLen: number, padLen: number, dst: Uint8Array, dstOff: number): number;
  aeadOpen(key: Uint8Array, counter: number, src: Uint8Array, srcOff: number, srcLen: number, dst: Uint8Array, dstOff: number): number;
  readonly maxNameLength: number;
  // The native datapath (native/src/dp_napi.c); src/io/datapath.ts wraps these.
  dpCreate(tunFd: number, vnetHdr: boolean, port: number, mtu: number, onEvent: DatapathEventHandler): DatapathHandle;
  dpStart(h: DatapathHandle): void;
  dpAddQueue(h: DatapathHandle, fd: number): void;
  dpClose(h: DatapathHandle): void;
  dpPort(h: DatapathHandle): number;
  dpNow(): number;
  dpSetPeer(h: DatapathHandle, id: number, address: string, port: number): void;
  dpRemovePeer(h: DatapathHandle, id: number): void;
  dpSetKeypairs(h: DatapathHandle, id: number, keypairs: Array<DatapathKeypair | null>): void;
  dpSetAllowedIps(h: DatapathHandle, entries: Uint8Array): void;
  dpSendPlain(h: DatapathHandle, id: number, packets: Uint8Array[]): number;
  dpSendRaw(h: DatapathHandle, packet: Uint8Array, address: string, port: number): void;
  dpTunWrite(h: DatapathHandle, packet: Uint8Array): void;
  dpSetFilter(h: DatapathHandle, on: boolean): void;
  dpFlowAdmit(h: DatapathHandle, packet: Uint8Array, flags: number): void;
  dpFlowForget(h: DatapathHandle): void;
  dpPeerStats(h: DatapathHandle, ids: Uint32Array, out: Float64Array): void;
  dpStats(h: DatapathHandle): DatapathStats;
  dpSetMark(h: DatapathHandle, mark: number): void;
  dpRebind(h: DatapathHandle, port: number): void;
}

/** An opaque native datapath (an external). */
export type DatapathHandle = { readonly __datapath: unique symbol };
export type DatapathEventHandler = (kind: number, peerId: number, arg: number, data: Buffer | null, address: string | null, port: number) => void;
export interface DatapathKeypair {
  localIndex: number;
  remoteIndex: number;
  sendKey: Uint8Array;
  receiveKey: Uint8Array;
  /** Native monotonic ms. */
  created: number;
  isInitiator: boolean;
  sendingValid: boolean;
  sendingCounter: number;
}
export interface DatapathStats {
  drops: Record<string, number>;
  txSyscalls: number;
  rxSyscalls: number;
  tunReads: number;
  tunWrites: number;
  gsoSends: number;
  groSegments: number;
  coalesced: number;
  gso: boolean;
  gro: boolean;
  tunOffload: boolean;
  /** The flow cache (the policy filter's native half), while filtering; accepted* count packets decided in C. */
  flows?: {
    flows: number;
    inboundFlows: number;
    capacity: number;
    evictions: number;
    expired: number;
    acceptedReplies: number;
    acceptedAdmitted: number;
    acceptedIcmpErrors: number;
    acceptedFragments: number;
  };
}

let binding: NativeBinding | undefined;

/** The package root: the nearest directory above this module holding native/binding.gyp
 * (src/io/ under vitest, dist/io/ once compiled, node_modules/meshd/... when installed). */
function findPackageRoot(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'native', 'binding.gyp'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** Where the addon is expected, or undefined when the package root cannot be found. */
export function nativeAddonPath(): string | undefined {
  const root = findPackageRoot();
  return root === undefined ? undefined : join(root, ADDON_PATH);
}

export function loadNative(): NativeBinding {
  if (binding !== undefined) return binding;
  if (process.platform !== 'linux') {
    throw new NativeAddonError(`meshd native addon supports Linux only (this is ${process.platform})`);
  }
  const path = nativeAddonPath();
  if (path === undefined || !existsSync(path)) {
    throw new NativeAddonError('meshd native addon not built (run: npm run build:native)');
  }
  try {
    binding = createRequire(import.meta.url)(path) as NativeBinding;
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new NativeAddonError(
      `meshd native addon at ${path} failed to load: ${reason} (rebuild it: npm run build:native)`,
      { cause },
    );
  }
  return binding;
}

/** True when the addon is built and loads; never throws for a missing addon. */
/** The addon is built and has the native datapath (an older build may lack it). */
export function nativeDatapathAvailable(): boolean {
  try {
    return typeof loadNative().dpCreate === 'function';
  } catch {
    return false;
  }
}

export function nativeAvailable(): boolean {
  try {
    loadNative();
    return true;
  } catch (error) {
    if (error instanceof NativeAddonError) return false;
    throw error;
  }
}

/** Native errors carry an errno `code`; argument errors (TypeError, RangeError) pass through. */
function toTunError(error: unknown, prefix = ''): unknown {
  if (!(error instanceof Error) || error instanceof TypeError || error instanceof RangeError) return error;
  const { code, errno, syscall } = error as NodeJS.ErrnoException;
  if (typeof code !== 'string') return error;
  return new TunError(code, prefix + error.message, { cause: error, errno, syscall });
}

function checkRange(what: string, value: number, [min, max]: readonly [number, number]): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${what} must be an integer in ${min}..${max}, got ${value}`);
  }
  return value;
}

/** The reader's ring, seen as the current batch. One per reader; reused every wakeup. */
class RingBatch implements PacketBatch {
  count = 0;
  readonly data: Buffer;
  readonly #lengths: Uint32Array;
  readonly #slotSize: number;

  constructor(ring: NativeRing) {
    this.data = Buffer.from(ring.buffer, 0, ring.maxBatch * ring.slotSize);
    this.#lengths = ring.lengths;
    this.#slotSize = ring.slotSize;
  }

  offset(i: number): number {
    this.#check(i);
    return i * this.#slotSize;
  }

  length(i: number): number {
    this.#check(i);
    return this.#lengths[i];
  }

  packet(i: number): Buffer {
    this.#check(i);
    const start = i * this.#slotSize;
    return this.data.subarray(start, start + this.#lengths[i]);
  }

  #check(i: number): void {
    if (!(Number.isInteger(i) && i >= 0 && i < this.count)) {
      throw new RangeError(
        this.count === 0
          ? 'packet batch used outside its handler (packets are only valid during the call)'
          : `packet index ${i} out of range 0..${this.count - 1}`,
      );
    }
  }
}

export class TunDevice {
  /** The interface name the kernel assigned (a "%d" template is filled in). */
  readonly name: string;
  readonly fd: number;
  readonly multiQueue: boolean;
  readonly vnetHdr: boolean;
  readonly #native: NativeBinding;
  readonly #batch: number;
  readonly #slotSize: number;
  #ring: RingBatch | undefined;
  #handler: PacketHandler | undefined;
  #onError: TunErrorHandler | undefined;
  #closed = false;
  /** Reader counters of readers already stopped; the live reader's are added on demand. */
  readonly #rx: NativeReaderStats = { packets: 0, truncated: 0, wakeups: 0, fullBatches: 0 };
  readonly #tx = { packets: 0, dropped: 0, rejected: 0 };

  private constructor(
    native: NativeBinding,
    opened: { fd: number; name: string },
    opts: Required<Pick<TunOpenOptions, 'multiQueue' | 'vnetHdr' | 'batch' | 'slotSize'>>,
  ) {
    this.#native = native;
    this.fd = opened.fd;
    this.name = opened.name;
    this.multiQueue = opts.multiQueue;
    this.vnetHdr = opts.vnetHdr;
    this.#batch = opts.batch;
    this.#slotSize = opts.slotSize;
  }

  /**
   * Opens (creating if needed) TUN interface `name`, at most 15 bytes. The interface goes
   * away when its last queue is closed. Needs CAP_NET_ADMIN.
   * Throws TunError: EINVAL (bad name, or `name` exists as another kind of device), EBUSY
   * (a single-queue TUN already open), EPERM, ENOENT (no /dev/net/tun); NativeAddonError.
   */
  static open(name: string, opts: TunOpenOptions = {}): TunDevice {
    const resolved = {
      multiQueue: opts.multiQueue ?? false,
      vnetHdr: opts.vnetHdr ?? false,
      batch: checkRange('batch', opts.batch ?? DEFAULT_READ_BATCH, BATCH_RANGE),
      slotSize: checkRange('slotSize', opts.slotSize ?? DEFAULT_SLOT_SIZE, SLOT_RANGE),
    };
    const native = loadNative();
    let opened: { fd: number; name: string };
    try {
      opened = native.open(name, resolved.multiQueue, resolved.vnetHdr);
    } catch (error) {
      throw toTunError(error);
    }
    return new TunDevice(native, opened, resolved);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Starts reading, or swaps the handlers if already reading. `handler` gets each wakeup's
   * packets (see PacketBatch for how long they stay valid). A fatal read error (for example
   * the interface was deleted, code EBADFD) stops the reader and goes to `onError`; without
   * one it is thrown, reaching process 'uncaughtException'.
   */
  onPackets(handler: PacketHandler, onError?: TunErrorHandler): void {
    const native = this.#open();
    this.#handler = handler;
    this.#onError = onError;
    if (this.#ring !== undefined) return;
    try {
      const onBatch = (count: number, error?: Error) => this.#deliver(count, error);
      this.#ring = new RingBatch(native.startReading(this.fd, onBatch, this.#batch, this.#slotSize));
    } catch (error) {
      throw toTunError(error, `TUN "${this.name}": `);
    }
  }

  /** Stops reading; the device stays open for writing. Idempotent. */
  stopReading(): void {
    if (this.#ring === undefined || this.#closed) return;
    this.#collectReaderStats();
    this.#native.stopReading(this.fd);
    this.#ring = undefined;
  }

  /**
   * Writes one packet into the kernel. False means dropped and counted: the queue was full
   * (stats.txDropped) or the kernel refused the packet (stats.txRejected). Throws TunError
   * only when the device itself is unusable (closed, EBADFD: interface deleted).
   */
  write(packet: Uint8Array): boolean {
    const native = this.#open();
    let n: number;
    try {
      n = native.write(this.fd, packet, 0, packet.byteLength);
    } catch (error) {
      throw toTunError(error, `TUN "${this.name}": `);
    }
    if (n > 0) {
      this.#tx.packets++;
      return true;
    }
    if (n === 0) this.#tx.dropped++;
    else this.#tx.rejected++;
    return false;
  }

  /**
   * Writes packets buffer[offsets[i], offsets[i] + lengths[i]) for i < count in one native
   * call. Returns how many the kernel accepted; the rest are counted as dropped (a full queue
   * ends the batch early) or rejected. Throws like write().
   */
  writeBatch(buffer: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count = offsets.length): number {
    const native = this.#open();
    let written: number;
    try {
      written = native.writeBatch(this.fd, buffer, offsets, lengths, count);
    } catch (error) {
      throw toTunError(error, `TUN "${this.name}": `);
    }
    this.#tx.packets += written;
    // The native call does not say which of the unwritten packets were refused and which
    // were cut off by a full queue; count them all as dropped.
    this.#tx.dropped += count - written;
    return written;
  }

  get stats(): TunStats {
    const live = this.#ring !== undefined && !this.#closed ? this.#native.readerStats(this.fd) : undefined;
    return {
      rxPackets: this.#rx.packets + (live?.packets ?? 0),
      rxTruncated: this.#rx.truncated + (live?.truncated ?? 0),
      rxWakeups: this.#rx.wakeups + (live?.wakeups ?? 0),
      rxFullBatches: this.#rx.fullBatches + (live?.fullBatches ?? 0),
      txPackets: this.#tx.packets,
      txDropped: this.#tx.dropped,
      txRejected: this.#tx.rejected,
    };
  }

  /** Stops reading and closes the fd; the interface disappears with its last queue. Idempotent. */
  close(): void {
    if (this.#closed) return;
    if (this.#ring !== undefined) this.#collectReaderStats();
    this.#closed = true;
    this.#ring = undefined;
    this.#handler = undefined;
    this.#onError = undefined;
    try {
      this.#native.close(this.fd);
    } catch (error) {
      throw toTunError(error, `TUN "${this.name}": `);
    }
  }

  #open(): NativeBinding {
    if (this.#closed) throw new TunError('EBADF', `TUN "${this.name}" is closed`);
    return this.#native;
  }

  #collectReaderStats(): void {
    const live = this.#native.readerStats(this.fd);
    if (live === undefined) return;
    this.#rx.packets += live.packets;
    this.#rx.truncated += live.truncated;
    this.#rx.wakeups += live.wakeups;
    this.#rx.fullBatches += live.fullBatches;
  }

  /** Called by the addon once per wakeup, or once with an error after which it has stopped. */
  #deliver(count: number, error?: Error): void {
    const ring = this.#ring;
    if (error !== undefined) {
      this.#collectReaderStats(); // the native reader is freed right after this call
      this.#ring = undefined;
      const failure = toTunError(error, `TUN "${this.name}": `) as Error;
      const onError = this.#onError;
      if (onError === undefined || !(failure instanceof TunError)) throw failure;
      onError(failure);
      return;
    }
    if (ring === undefined || this.#handler === undefined) return;
    ring.count = count;
    try {
      this.#handler(ring);
    } finally {
      ring.count = 0;
    }
  }
}
