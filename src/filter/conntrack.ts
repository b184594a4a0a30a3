// The flow table: a fixed pool of entries in typed arrays, found through a
// chained hash over the 5-tuple and ordered by two intrusive LRU lists (flows
// this node started, flows the other side started). Nothing is allocated
// after construction; a full table recycles its least recently used entry,
// so no remote party can make it grow, and flows the other side starts are
// held to their own share so they cannot flush the flows we started.
import { PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, type PacketTuple } from './packet.js';

export const DEFAULT_MAX_FLOWS = 65_536;

/** Idle timeouts in ms, after the last packet either way. */
export interface FlowTimeouts {
  tcp: number;
  /** TCP once a RST, or a FIN each way, has been seen. */
  tcpClosing: number;
  udp: number;
  icmp: number;
  /** Any other protocol, tracked by addresses alone. */
  other: number;
}

export const DEFAULT_TIMEOUTS: Readonly<FlowTimeouts> = {
  tcp: 5 * 60_000,
  tcpClosing: 30_000,
  udp: 60_000,
  icmp: 30_000,
  other: 60_000,
};

export interface FlowTableOptions {
  /** Entries in all; default 65,536. */
  maxFlows?: number;
  /** Of which flows the other side started may hold at most; default half. */
  maxInboundFlows?: number;
  timeouts?: Partial<FlowTimeouts>;
}

// Key words: version << 8 | proto, local port, remote port, local address (4), remote address (4).
const KW = 11;
// State bits.
const INBOUND = 1; // the other side sent first
const FIN_OUT = 2;
const FIN_IN = 4;
const RST = 8;
const CLOSED = FIN_OUT | FIN_IN;

export class FlowTable {
  readonly capacity: number;
  readonly inboundCapacity: number;
  /** Live entries dropped to make room. */
  evictions = 0;
  /** Entries found idle past their timeout and reclaimed. */
  expired = 0;
  private readonly timeouts: FlowTimeouts;
  private readonly keys: Int32Array;
  private readonly lastSeen: Float64Array;
  private readonly state: Uint8Array;
  private readonly bucketOf: Int32Array;
  /** Next entry in the same bucket, or in the free list. */
  private readonly chain: Int32Array;
  private readonly heads: Int32Array;
  // LRU lists, most recent first; indices `capacity` and `capacity + 1` are their heads.
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private readonly ours: number;
  private readonly theirs: number;
  // A multiply-shift hash with random odd multipliers: which tuples share a
  // bucket cannot be worked out from outside, so chains stay short.
  private readonly mult = new Int32Array(KW);
  private readonly shift: number;
  private free = 0;
  private count = 0;
  private inboundCount = 0;
  /** The key being looked up, and its bucket. */
  private readonly k = new Int32Array(KW);
  private kb = 0;

  constructor(opts: FlowTableOptions = {}) {
    const cap = opts.maxFlows ?? DEFAULT_MAX_FLOWS;
    if (!Number.isInteger(cap) || cap < 1 || cap > 1 << 24) throw new RangeError(`maxFlows must be an integer in 1..2^24, got ${cap}`);
    const inCap = opts.maxInboundFlows ?? Math.max(1, cap >> 1);
    if (!Number.isInteger(inCap) || inCap < 1 || inCap > cap) throw new RangeError(`maxInboundFlows must be an integer in 1..${cap}, got ${inCap}`);
    this.capacity = cap;
    this.inboundCapacity = inCap;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    this.keys = new Int32Array(cap * KW);
    this.lastSeen = new Float64Array(cap);
    this.state = new Uint8Array(cap);
    this.bucketOf = new Int32Array(cap);
    this.chain = new Int32Array(cap);
    let bits = 1;
    while (1 << bits < cap) bits++;
    this.heads = new Int32Array(1 << bits).fill(-1);
    this.shift = 32 - bits;
    this.prev = new Int32Array(cap + 2);
    this.next = new Int32Array(cap + 2);
    this.ours = cap;
    this.theirs = cap + 1;
    globalThis.crypto.getRandomValues(this.mult);
    for (let i = 0; i < KW; i++) this.mult[i] |= 1;
    this.clear();
  }

  /** Entries in use (idle ones count until reclaimed). */
  get size(): number {
    return this.count;
  }

  /** Entries the other side started. */
  get inboundSize(): number {
    return this.inboundCount;
  }

  clear(): void {
    for (let i = 0; i < this.capacity; i++) this.chain[i] = i + 1 < this.capacity ? i + 1 : -1;
    this.heads.fill(-1);
    this.free = 0;
    this.count = 0;
    this.inboundCount = 0;
    for (const h of [this.ours, this.theirs]) this.prev[h] = this.next[h] = h;
  }

  /**
   * Makes `t` the key for find/add, oriented local → remote: as is for a
   * packet we send (or quote), reversed for one we receive.
   */
  load(t: PacketTuple, reversed: boolean): void {
    const k = this.k;
    const local = reversed ? t.dst : t.src;
    const remote = reversed ? t.src : t.dst;
    k[0] = (t.version << 8) | t.proto;
    k[1] = reversed ? t.dport : t.sport;
    k[2] = reversed ? t.sport : t.dport;
    if (t.version === 4) {
      k[3] = word(local, 0);
      k[7] = word(remote, 0);
      k[4] = k[5] = k[6] = k[8] = k[9] = k[10] = 0;
    } else {
      for (let i = 0; i < 4; i++) {
        k[3 + i] = word(local, i << 2);
        k[7 + i] = word(remote, i << 2);
      }
    }
    let h = 0;
    for (let i = 0; i < KW; i++) h = (h + Math.imul(k[i], this.mult[i])) | 0;
    this.kb = h >>> this.shift;
  }

  /** The live entry for the loaded key, or -1; an idle one found on the way is reclaimed. */
  find(now: number): number {
    const k = this.k;
    const keys = this.keys;
    for (let s = this.heads[this.kb]; s >= 0; s = this.chain[s]) {
      const o = s * KW;
      let j = 0;
      while (j < KW && keys[o + j] === k[j]) j++;
      if (j < KW) continue;
      if (this.idle(s, now)) {
        this.expired++;
        this.release(s);
        return -1;
      }
      return s;
    }
    return -1;
  }

  /** Adds the loaded key (not already present), recycling an entry if need be. */
  add(now: number, inbound: boolean): number {
    // Reclaim what has gone idle at the cold ends first, so it is not counted as evicted.
    this.reclaimTail(this.ours, now);
    this.reclaimTail(this.theirs, now);
    if (inbound && this.inboundCount >= this.inboundCapacity) {
      this.evict(this.prev[this.theirs], now);
    } else if (this.free < 0) {
      const a = this.prev[this.ours];
      const b = this.prev[this.theirs];
      this.evict(a === this.ours || (b !== this.theirs && this.lastSeen[b] < this.lastSeen[a]) ? b : a, now);
    }
    const s = this.free;
    this.free = this.chain[s];
    this.keys.set(this.k, s * KW);
    this.bucketOf[s] = this.kb;
    this.chain[s] = this.heads[this.kb];
    this.heads[this.kb] = s;
    this.state[s] = inbound ? INBOUND : 0;
    this.lastSeen[s] = now;
    this.pushFront(s, inbound ? this.theirs : this.ours);
    this.count++;
    if (inbound) this.inboundCount++;
    return s;
  }

  /** A packet of the flow went by: it becomes the most recently used. */
  touch(s: number, now: number): void {
    this.lastSeen[s] = now;
    this.unlink(s);
    this.pushFront(s, this.state[s] & INBOUND ? this.theirs : this.ours);
  }

  /** Whether the other side started the flow. */
  isInbound(s: number): boolean {
    return (this.state[s] & INBOUND) !== 0;
  }

  /** Notes a TCP packet's FIN / RST (a bare SYN reopens a reused tuple). */
  tcpFlags(s: number, flags: number, outbound: boolean): void {
    let st = this.state[s];
    if ((flags & (TCP_SYN | TCP_ACK)) === TCP_SYN) st &= INBOUND;
    if (flags & TCP_RST) st |= RST;
    if (flags & TCP_FIN) st |= outbound ? FIN_OUT : FIN_IN;
    this.state[s] = st;
  }

  /** Reclaims idle entries from the cold ends of both lists, at most `max`. */
  sweep(now: number, max = Infinity): number {
    let n = 0;
    while (n < max && (this.reclaimTail(this.ours, now) || this.reclaimTail(this.theirs, now))) n++;
    return n;
  }

  private timeout(s: number): number {
    const proto = this.keys[s * KW] & 0xff;
    const t = this.timeouts;
    if (proto === PROTO_TCP) {
      const st = this.state[s];
      return st & RST || (st & CLOSED) === CLOSED ? t.tcpClosing : t.tcp;
    }
    if (proto === PROTO_UDP) return t.udp;
    if (proto === PROTO_ICMP || proto === PROTO_ICMPV6) return t.icmp;
    return t.other;
  }

  private idle(s: number, now: number): boolean {
    return now - this.lastSeen[s] > this.timeout(s);
  }

  private reclaimTail(head: number, now: number): boolean {
    const s = this.prev[head];
    if (s === head || !this.idle(s, now)) return false;
    this.expired++;
    this.release(s);
    return true;
  }

  private evict(s: number, now: number): void {
    if (this.idle(s, now)) this.expired++;
    else this.evictions++;
    this.release(s);
  }

  private release(s: number): void {
    this.unlink(s);
    const b = this.bucketOf[s];
    if (this.heads[b] === s) {
      this.heads[b] = this.chain[s];
    } else {
      let p = this.heads[b];
      while (this.chain[p] !== s) p = this.chain[p];
      this.chain[p] = this.chain[s];
    }
    this.chain[s] = this.free;
    this.free = s;
    this.count--;
    if (this.state[s] & INBOUND) this.inboundCount--;
  }

  private unlink(s: number): void {
    const p = this.prev[s];
    const n = this.next[s];
    this.next[p] = n;
    this.prev[n] = p;
  }

  private pushFront(s: number, head: number): void {
    const n = this.next[head];
    this.next[head] = s;
    this.prev[s] = head;
    this.next[s] = n;
    this.prev[n] = s;
  }
}

/** Big-endian 32-bit word of an address. */
function word(b: Uint8Array, i: number): number {
  return (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3];
}
