// The policy's allow rules, compiled for per-packet evaluation. Destinations
// go into one longest-prefix trie (the allowed-IPs trie, both families);
// each destination prefix holds every rule whose destination contains it, so
// one lookup yields all candidate rules. Those are indexed by protocol and,
// for TCP/UDP/SCTP, by destination port: the port range is cut into segments
// at every range boundary, each listing the rules that cover it, so a packet
// costs one binary search, then a source check per candidate (a trie per rule).
import { AllowedIps } from '../device/allowedips.js';
import { formatCidr, parseCidr, type IpPrefix } from '../net/ipaddr.js';
import type { FilterRule } from '../policy/types.js';
import { PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP, type PacketTuple } from './packet.js';

/** What `protos: null` means (policy/types.ts). */
export const DEFAULT_PROTOS: readonly number[] = [PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6];

/** Protocols whose rules are matched on the destination port. */
const PORT_PROTOS: readonly number[] = [PROTO_TCP, PROTO_UDP, PROTO_SCTP];

/** Past this many (segment, rule) entries one index stops cutting and lists every rule once. */
const SEGMENT_BUDGET = 1 << 18;

class CompiledRule {
  constructor(
    /** Its position in the rule list. */
    readonly index: number,
    /** The protocols it allows, distinct. */
    readonly protos: readonly number[],
    /** Inclusive [lo, hi] destination-port pairs; only TCP, UDP, SCTP consult them. */
    readonly ports: Int32Array,
    readonly anyPort: boolean,
    /** Sources other than the /0 prefixes, which the flags below stand for. */
    readonly srcs: AllowedIps<true>,
    readonly anySrc4: boolean,
    readonly anySrc6: boolean,
  ) {}
}

/** Candidate rules by port: segment i starts at starts[i] and ends before starts[i + 1]. */
class PortIndex {
  constructor(
    readonly starts: Int32Array,
    readonly lists: CompiledRule[][],
  ) {}
}

const NOTHING = new PortIndex(Int32Array.of(0), [[]]);

/** The rules under one destination prefix, by protocol (an object: the trie keys owners by identity). */
class Bucket {
  constructor(
    readonly rules: CompiledRule[],
    readonly byProto: PortIndex[],
  ) {}
}

export class RuleSet {
  /** @internal Built by compileRules. */
  constructor(
    private readonly dsts: AllowedIps<Bucket>,
    /** How many rules compiled (rules with no usable destination still count). */
    readonly size: number,
    /** What was skipped and why; skipping only ever narrows what passes. */
    readonly problems: readonly string[],
  ) {}

  /** Whether some rule allows this successfully read packet (never a non-first fragment: no ports). */
  allows(t: PacketTuple): boolean {
    if (t.fragment) return false;
    const bucket = this.dsts.lookup(t.dstAddr());
    if (bucket === undefined) return false;
    const index = bucket.byProto[t.proto];
    const port = t.dport;
    const list = index.lists[t.hasPorts ? segmentOf(index.starts, port) : 0];
    const v4 = t.version === 4;
    for (let i = 0; i < list.length; i++) {
      const r = list[i];
      // Redundant where the index cut segments, needed where it did not.
      if (t.hasPorts && !r.anyPort && !inRanges(r.ports, port)) continue;
      if (!(v4 ? r.anySrc4 : r.anySrc6) && r.srcs.lookup(t.srcAddr()) === undefined) continue;
      return true;
    }
    return false;
  }
}

function inRanges(ranges: Int32Array, port: number): boolean {
  for (let i = 0; i < ranges.length; i += 2) {
    if (port >= ranges[i] && port <= ranges[i + 1]) return true;
  }
  return false;
}

/** The segment holding `port`: the last start at or below it. */
function segmentOf(starts: Int32Array, port: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid] <= port) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function portIndex(rules: CompiledRule[], byPort: boolean): PortIndex {
  const whole = new PortIndex(Int32Array.of(0), [rules]);
  if (!byPort) return whole;
  const cuts = new Set([0]);
  for (const r of rules) {
    if (r.anyPort) continue;
    for (let i = 0; i < r.ports.length; i += 2) {
      cuts.add(r.ports[i]);
      if (r.ports[i + 1] < 65535) cuts.add(r.ports[i + 1] + 1);
    }
  }
  const starts = Int32Array.from([...cuts].sort((a, b) => a - b));
  const lists: CompiledRule[][] = Array.from(starts, () => []);
  let entries = 0;
  for (const r of rules) {
    const ranges = r.anyPort ? [0, 65535] : r.ports;
    for (let i = 0; i < ranges.length; i += 2) {
      for (let s = segmentOf(starts, ranges[i]); s < starts.length && starts[s] <= ranges[i + 1]; s++) {
        const list = lists[s];
        if (list[list.length - 1] !== r) list.push(r);
        if (++entries > SEGMENT_BUDGET) return whole;
      }
    }
  }
  return new PortIndex(starts, lists);
}

function bucket(rules: CompiledRule[], cache: Map<string, PortIndex>): Bucket {
  const byProto = new Array<PortIndex>(256).fill(NOTHING);
  const perProto = new Map<number, CompiledRule[]>();
  for (const r of rules) {
    for (const proto of r.protos) {
      const list = perProto.get(proto);
      if (list === undefined) perProto.set(proto, [r]);
      else list.push(r);
    }
  }
  for (const [proto, here] of perProto) {
    const byPort = PORT_PROTOS.includes(proto);
    // Protocols with the same rules share one index (TCP and UDP, usually).
    const key = `${byPort ? 'p' : 'n'}${here.map((r) => r.index).join(',')}`;
    let index = cache.get(key);
    if (index === undefined) cache.set(key, (index = portIndex(here, byPort)));
    byProto[proto] = index;
  }
  return new Bucket(rules, byProto);
}

const isPort = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 65535;

function prefixes(list: unknown, what: string, i: number, problems: string[]): IpPrefix[] {
  if (!Array.isArray(list)) {
    problems.push(`rule ${i}: ${what} is not a list`);
    return [];
  }
  const out: IpPrefix[] = [];
  for (const text of list) {
    const p = typeof text === 'string' ? parseCidr(text.trim(), { allowBare: true, mask: true }) : null;
    if (p !== null && p.ok) out.push(p.value);
    else problems.push(`rule ${i}: ${what} entry ${JSON.stringify(text)} skipped: ${p === null ? 'not a string' : p.reason}`);
  }
  return out;
}

function compileRule(rule: FilterRule, i: number, problems: string[]): CompiledRule {
  const protos = new Set<number>();
  const protoList: unknown = rule?.protos ?? DEFAULT_PROTOS;
  if (Array.isArray(protoList)) {
    for (const p of protoList) {
      if (Number.isInteger(p) && p >= 0 && p <= 255) protos.add(p);
      else problems.push(`rule ${i}: protocol ${JSON.stringify(p)} skipped`);
    }
  } else {
    problems.push(`rule ${i}: protos is neither a list nor null`);
  }
  const ranges: number[] = [];
  let anyPort = false;
  const portList: unknown = rule?.ports;
  for (const r of Array.isArray(portList) ? portList : []) {
    if (Array.isArray(r) && r.length === 2 && isPort(r[0]) && isPort(r[1]) && r[0] <= r[1]) {
      ranges.push(r[0], r[1]);
      if (r[0] === 0 && r[1] === 65535) anyPort = true;
    } else {
      problems.push(`rule ${i}: port range ${JSON.stringify(r)} skipped`);
    }
  }
  if (!Array.isArray(portList)) problems.push(`rule ${i}: ports is not a list`);
  const srcs = new AllowedIps<true>();
  let anySrc4 = false;
  let anySrc6 = false;
  for (const p of prefixes(rule?.srcs, 'source', i, problems)) {
    if (p.bits === 0 && p.family === 4) anySrc4 = true;
    else if (p.bits === 0) anySrc6 = true;
    else srcs.insert(p.bytes, p.bits, true);
  }
  return new CompiledRule(i, [...protos], Int32Array.from(ranges), anyPort, srcs, anySrc4, anySrc6);
}

/** Compiles the rules; bad entries are skipped (so allow less) and reported, never thrown. */
export function compileRules(rules: readonly FilterRule[]): RuleSet {
  const problems: string[] = [];
  const list = Array.isArray(rules) ? rules : [];
  if (!Array.isArray(rules)) problems.push('rules is not a list');
  // Every distinct destination prefix, with the rules that name it.
  const byDst = new Map<string, { prefix: IpPrefix; rules: Set<number> }>();
  const compiled: CompiledRule[] = [];
  for (let i = 0; i < list.length; i++) {
    compiled.push(compileRule(list[i], i, problems));
    for (const prefix of prefixes(list[i]?.dsts, 'destination', i, problems)) {
      const key = formatCidr(prefix);
      let entry = byDst.get(key);
      if (entry === undefined) byDst.set(key, (entry = { prefix, rules: new Set() }));
      entry.rules.add(i);
    }
  }
  // Shortest prefixes first: when a prefix goes in, the trie's longest match
  // for it is its nearest enclosing prefix, whose bucket already holds the
  // rules of all the prefixes enclosing that one.
  const dsts = new AllowedIps<Bucket>();
  const cache = new Map<string, PortIndex>();
  const entries = [...byDst.values()].sort((a, b) => a.prefix.bits - b.prefix.bits);
  for (const { prefix, rules: own } of entries) {
    const ids = new Set(own);
    const enclosing = dsts.lookup(prefix.bytes);
    if (enclosing !== undefined) for (const r of enclosing.rules) ids.add(r.index);
    const rulesHere = [...ids].sort((a, b) => a - b).map((id) => compiled[id]);
    dsts.insert(prefix.bytes, prefix.bits, bucket(rulesHere, cache));
  }
  return new RuleSet(dsts, list.length, problems);
}
