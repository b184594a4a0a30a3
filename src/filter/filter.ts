// The node's inbound packet filter, stateful: replies to flows this node
// started pass; everything else passes only while a rule allows it, checked
// on every packet so that new rules take effect at once. It sees packets
// after decryption and the cryptokey-routing source check (device/receive.ts).
import type { FilterRule } from '../policy/types.js';
import { FlowTable, type FlowTableOptions } from './conntrack.js';
import { ICMP_ERROR, ICMP_OTHER, PacketTuple, PROTO_TCP, readPacket, readQuotedPacket } from './packet.js';
import { compileRules, type RuleSet } from './rules.js';

export type FilterDrop = 'filtered' | 'malformed';
export type FilterVerdict = 'accept' | FilterDrop;

export type PacketFilterOptions = FlowTableOptions;

export interface FilterStats {
  /** Inbound packets by verdict. */
  accept: number;
  filtered: number;
  malformed: number;
  /** Of the accepted: replies to flows we started, ICMP errors about tracked flows, non-first fragments. */
  replies: number;
  icmpErrors: number;
  fragments: number;
  /** Packets shown to outbound() while filtering. */
  outbound: number;
  flows: number;
  inboundFlows: number;
  maxFlows: number;
  evictions: number;
  expired: number;
  /** No rules at all: everything passes (a plain WireGuard interface). */
  permissive: boolean;
  rules: number;
}

export class PacketFilter {
  /** No filtering: for plain wg-quick interfaces. Tracks nothing, costs nothing. */
  static allowAll(): PacketFilter {
    return new PacketFilter(null);
  }

  private rules: RuleSet | null = null;
  private table: FlowTable | null = null;
  private readonly opts: PacketFilterOptions;
  // Scratch tuples for the packet and for the one an ICMP error quotes.
  private readonly t = new PacketTuple();
  private readonly quoted = new PacketTuple();
  private nAccept = 0;
  private nFiltered = 0;
  private nMalformed = 0;
  private nReplies = 0;
  private nIcmpErrors = 0;
  private nFragments = 0;
  private nOutbound = 0;
  private rulesVersion = 0;

  /** `rules === null` is the permissive mode of allowAll(). Options are checked when a flow table is first needed. */
  constructor(rules: readonly FilterRule[] | null, opts: PacketFilterOptions = {}) {
    this.opts = { ...opts };
    this.setRules(rules);
  }

  /** Counts setRules calls: a native flow cache forgets the flows it admitted when it moves. */
  get version(): number {
    return this.rulesVersion;
  }

  /** What the last rules had that could not be used (skipped, so less passes). */
  get problems(): readonly string[] {
    return this.rules?.problems ?? [];
  }

  /**
   * Replaces the rules. Tracked flows stay: replies to ours keep passing, and
   * flows the other side started pass while the new rules allow them. Going
   * from permissive to rules starts with no flows (permissive tracks none).
   */
  setRules(rules: readonly FilterRule[] | null): readonly string[] {
    this.rulesVersion++;
    if (rules === null) {
      this.rules = null;
      return [];
    }
    this.table ??= new FlowTable(this.opts);
    this.rules = compileRules(rules);
    return this.rules.problems;
  }

  /**
   * A packet this node sends into the tunnel: its flow is recorded so replies
   * pass. True when the flow is one the other side started (we are replying).
   */
  outbound(packet: Uint8Array, now: number): boolean {
    const table = this.table;
    if (this.rules === null || table === null) return false;
    this.nOutbound++;
    const t = this.t;
    // Fragments and ICMP other than echo open no flow; bad packets are the kernel's business.
    if (!readPacket(packet, t) || t.fragment || t.icmpKind === ICMP_ERROR || t.icmpKind === ICMP_OTHER) return false;
    table.load(t, false);
    let s = table.find(now);
    if (s < 0) s = table.add(now, false);
    else table.touch(s, now);
    if (t.proto === PROTO_TCP) table.tcpFlags(s, t.tcpFlags, true);
    return table.isInbound(s);
  }

  /** A decrypted packet from a peer: 'accept', or why it must be dropped. */
  inbound(packet: Uint8Array, now: number): FilterVerdict {
    const rules = this.rules;
    const table = this.table;
    if (rules === null || table === null) {
      this.nAccept++;
      return 'accept';
    }
    const t = this.t;
    if (!readPacket(packet, t)) {
      this.nMalformed++;
      return 'malformed';
    }
    if (t.fragment) {
      // Nothing to match without the transport header; the first fragment
      // was checked and no stack reassembles a datagram without it.
      this.nFragments++;
      this.nAccept++;
      return 'accept';
    }
    const trackable = t.icmpKind !== ICMP_ERROR && t.icmpKind !== ICMP_OTHER;
    let s = -1;
    if (trackable) {
      table.load(t, true);
      s = table.find(now);
      if (s >= 0 && !table.isInbound(s)) {
        table.touch(s, now);
        if (t.proto === PROTO_TCP) table.tcpFlags(s, t.tcpFlags, false);
        this.nReplies++;
        this.nAccept++;
        return 'accept';
      }
    } else if (t.icmpKind === ICMP_ERROR && this.aboutTrackedFlow(packet, now)) {
      this.nIcmpErrors++;
      this.nAccept++;
      return 'accept';
    }
    if (!rules.allows(t)) {
      this.nFiltered++;
      return 'filtered';
    }
    if (trackable) {
      // Recorded as theirs, so that our replies do not make it look like ours.
      if (s < 0) s = table.add(now, true);
      else table.touch(s, now);
      if (t.proto === PROTO_TCP) table.tcpFlags(s, t.tcpFlags, false);
    }
    this.nAccept++;
    return 'accept';
  }

  stats(): FilterStats {
    const table = this.table;
    return {
      accept: this.nAccept,
      filtered: this.nFiltered,
      malformed: this.nMalformed,
      replies: this.nReplies,
      icmpErrors: this.nIcmpErrors,
      fragments: this.nFragments,
      outbound: this.nOutbound,
      flows: table?.size ?? 0,
      inboundFlows: table?.inboundSize ?? 0,
      maxFlows: table?.capacity ?? 0,
      evictions: table?.evictions ?? 0,
      expired: table?.expired ?? 0,
      permissive: this.rules === null,
      rules: this.rules?.size ?? 0,
    };
  }

  /**
   * Whether an ICMP error (in this.t) quotes a packet of a tracked flow: the
   * invoking packet starts 8 bytes into the message (RFC 792, RFC 4443 §3),
   * was sent by us (its source is the error's destination) and is local →
   * remote as it stands. The error refreshes nothing.
   */
  private aboutTrackedFlow(packet: Uint8Array, now: number): boolean {
    const t = this.t;
    const q = this.quoted;
    if (!readQuotedPacket(packet, t.l4 + 8, t.end, q)) return false;
    if (q.version !== t.version || q.fragment || q.icmpKind === ICMP_ERROR || q.icmpKind === ICMP_OTHER) return false;
    const n = t.version === 4 ? 4 : 16;
    for (let i = 0; i < n; i++) if (q.src[i] !== t.dst[i]) return false;
    const table = this.table!;
    table.load(q, false);
    return table.find(now) >= 0;
  }
}
