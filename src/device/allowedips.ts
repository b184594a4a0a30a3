// §2 cryptokey routing: the allowed-IPs table. Outbound, the destination of a
// packet picks the peer to encrypt for; inbound, the source of a decrypted
// packet must route back to the peer that sent it. Each family is a
// path-compressed binary trie: a node holds a whole masked prefix, a child is
// chosen by the first bit after it, and nodes with no owner exist only where
// two subtrees branch, so depth is bounded by the number of prefixes and by
// the address width.
import { formatCidr as formatPrefix, maskBytes, parseCidr as parsePrefix } from '../net/ipaddr.js';

const V4_LEN = 4;
const V6_LEN = 16;

class Node<P> {
  parent: Node<P> | null = null;
  readonly children: [Node<P> | null, Node<P> | null] = [null, null];
  constructor(
    readonly key: Uint8Array, // masked to cidr bits
    readonly cidr: number,
    public peer: P | undefined, // undefined: a branch point only
  ) {}
}

/** Bit `i` (0 = most significant) of the address starting at `off`. */
function bitAt(a: Uint8Array, off: number, i: number): number {
  return (a[off + (i >> 3)] >> (7 - (i & 7))) & 1;
}

/** How many leading bits of `a` and `b` agree, up to `limit`. */
function commonBits(a: Uint8Array, b: Uint8Array, limit: number): number {
  const bytes = (limit + 7) >> 3;
  for (let i = 0; i < bytes; i++) {
    const x = a[i] ^ b[i];
    if (x !== 0) return Math.min(i * 8 + Math.clz32(x) - 24, limit);
  }
  return limit;
}

/**
 * Whether the address at `buf[off..]` lies in `node`'s prefix, given that its
 * first `known` bits are already known to agree (they matched the parent).
 */
function inPrefix<P>(node: Node<P>, buf: Uint8Array, off: number, known: number): boolean {
  const key = node.key;
  const whole = node.cidr >> 3;
  for (let i = known >> 3; i < whole; i++) if (key[i] !== buf[off + i]) return false;
  const rest = node.cidr & 7;
  return rest === 0 || ((key[whole] ^ buf[off + whole]) & (0xff << (8 - rest)) & 0xff) === 0;
}

function checkPrefix(addr: Uint8Array, cidr: number): void {
  if (!(addr instanceof Uint8Array) || (addr.length !== V4_LEN && addr.length !== V6_LEN)) {
    throw new TypeError(`allowed IP must be 4 or 16 bytes, got ${addr?.length}`);
  }
  const bits = addr.length * 8;
  if (!Number.isInteger(cidr) || cidr < 0 || cidr > bits) {
    throw new RangeError(`prefix length must be an integer in 0..${bits}, got ${cidr}`);
  }
}

export class AllowedIps<P extends {}> {
  private root4: Node<P> | null = null;
  private root6: Node<P> | null = null;
  // The owned nodes of each peer. An owned node is never spliced out of the
  // trie, so these references stay valid until the prefix is removed.
  private readonly byPeer = new Map<P, Set<Node<P>>>();
  private count = 0;

  /** The number of prefixes in the table, both families. */
  get size(): number {
    return this.count;
  }

  /** Routes `addr/cidr` (host bits ignored) to `peer`, taking it from any previous owner. */
  insert(addr: Uint8Array, cidr: number, peer: P): void {
    checkPrefix(addr, cidr);
    if (peer === undefined || peer === null) throw new TypeError('allowed IP owner must not be null or undefined');
    const key = maskBytes(addr, cidr);
    const v4 = key.length === V4_LEN;

    let parent: Node<P> | null = null;
    let side = 0;
    let node = v4 ? this.root4 : this.root6;
    // Each step descends at least one bit, so this ends within the address width.
    while (node !== null) {
      const common = commonBits(node.key, key, Math.min(node.cidr, cidr));
      if (common === node.cidr) {
        if (node.cidr === cidr) {
          this.own(node, peer);
          return;
        }
        parent = node;
        side = bitAt(key, 0, node.cidr);
        node = node.children[side];
        continue;
      }
      // The new prefix leaves node's path at bit `common`: either it is an
      // ancestor of node, or the two need a branch point where they split.
      const fresh = new Node<P>(key, cidr, undefined);
      let top = fresh;
      if (common === cidr) {
        this.attach(fresh, bitAt(node.key, 0, cidr), node);
      } else {
        top = new Node<P>(maskBytes(key, common), common, undefined);
        this.attach(top, bitAt(key, 0, common), fresh);
        this.attach(top, bitAt(node.key, 0, common), node);
      }
      this.replace(v4, parent, node, top);
      this.own(fresh, peer);
      return;
    }
    const fresh = new Node<P>(key, cidr, undefined);
    if (parent === null) {
      if (v4) this.root4 = fresh;
      else this.root6 = fresh;
    } else {
      this.attach(parent, side, fresh);
    }
    this.own(fresh, peer);
  }

  /** Removes `addr/cidr` if `peer` owns exactly that prefix. */
  remove(addr: Uint8Array, cidr: number, peer: P): boolean {
    checkPrefix(addr, cidr);
    const key = maskBytes(addr, cidr);
    let node = key.length === V4_LEN ? this.root4 : this.root6;
    while (node !== null && node.cidr <= cidr) {
      if (!inPrefix(node, key, 0, 0)) return false;
      if (node.cidr === cidr) {
        if (node.peer !== peer) return false;
        this.disown(node);
        return true;
      }
      node = node.children[bitAt(key, 0, node.cidr)];
    }
    return false;
  }

  /** Removes every prefix of `peer`; returns how many there were. */
  removeByPeer(peer: P): number {
    const nodes = this.byPeer.get(peer);
    if (nodes === undefined) return 0;
    const list = [...nodes];
    for (const node of list) this.disown(node);
    return list.length;
  }

  /** The peer whose longest prefix contains `addr` (4 or 16 bytes). */
  lookup(addr: Uint8Array): P | undefined {
    if (addr.length === V4_LEN) return find(this.root4, addr, 0, 32);
    if (addr.length === V6_LEN) return find(this.root6, addr, 0, 128);
    return undefined;
  }

  /** Outbound routing: the peer for an IP packet's destination address. */
  lookupPacketDestination(packet: Uint8Array): P | undefined {
    return this.lookupPacket(packet, 16, 24);
  }

  /** Inbound check: the peer an IP packet's source address routes to. */
  lookupPacketSource(packet: Uint8Array): P | undefined {
    return this.lookupPacket(packet, 12, 8);
  }

  /** The prefixes of `peer`, IPv4 first, then by address, then by length. */
  entriesForPeer(peer: P): Array<{ addr: Uint8Array; cidr: number }> {
    const nodes = this.byPeer.get(peer);
    if (nodes === undefined) return [];
    const out = [...nodes].map((n) => ({ addr: n.key.slice(), cidr: n.cidr }));
    out.sort((a, b) => {
      if (a.addr.length !== b.addr.length) return a.addr.length - b.addr.length;
      for (let i = 0; i < a.addr.length; i++) if (a.addr[i] !== b.addr[i]) return a.addr[i] - b.addr[i];
      return a.cidr - b.cidr;
    });
    return out;
  }

  clear(): void {
    this.root4 = null;
    this.root6 = null;
    this.byPeer.clear();
    this.count = 0;
  }

  // IPv4 keeps src/dst at 12/16 in a 20-byte header, IPv6 at 8/24 in 40 bytes.
  private lookupPacket(packet: Uint8Array, off4: number, off6: number): P | undefined {
    if (packet.length < 20) return undefined;
    const version = packet[0] >> 4;
    if (version === 4) return find(this.root4, packet, off4, 32);
    if (version === 6 && packet.length >= 40) return find(this.root6, packet, off6, 128);
    return undefined;
  }

  private own(node: Node<P>, peer: P): void {
    const old = node.peer;
    if (old === peer) return;
    if (old === undefined) this.count++;
    else this.forget(old, node);
    node.peer = peer;
    let set = this.byPeer.get(peer);
    if (set === undefined) this.byPeer.set(peer, (set = new Set()));
    set.add(node);
  }

  private forget(peer: P, node: Node<P>): void {
    const set = this.byPeer.get(peer);
    if (set === undefined) return;
    set.delete(node);
    if (set.size === 0) this.byPeer.delete(peer);
  }

  /** Drops node's owner, then splices out whatever no longer branches. */
  private disown(node: Node<P>): void {
    if (node.peer === undefined) return;
    this.forget(node.peer, node);
    node.peer = undefined;
    this.count--;
    const v4 = node.key.length === V4_LEN;
    const [c0, c1] = node.children;
    if (c0 !== null && c1 !== null) return; // still a branch point
    const parent = node.parent;
    this.replace(v4, parent, node, c0 ?? c1);
    // An ownerless parent had two children; if it now has one it no longer
    // branches. Its own parent keeps the same number of children, so the
    // splicing stops here.
    if (c0 === null && c1 === null && parent !== null && parent.peer === undefined) {
      this.replace(v4, parent.parent, parent, parent.children[0] ?? parent.children[1]);
    }
  }

  private attach(parent: Node<P>, side: number, child: Node<P>): void {
    parent.children[side] = child;
    child.parent = parent;
  }

  /** Puts `next` where `old` hung under `parent` (or at the root). */
  private replace(v4: boolean, parent: Node<P> | null, old: Node<P>, next: Node<P> | null): void {
    if (parent === null) {
      if (v4) this.root4 = next;
      else this.root6 = next;
    } else {
      parent.children[parent.children[0] === old ? 0 : 1] = next;
    }
    if (next !== null) next.parent = parent;
  }
}

/** Longest-prefix match of the `bits`-wide address at `buf[off..]`; allocates nothing. */
function find<P>(root: Node<P> | null, buf: Uint8Array, off: number, bits: number): P | undefined {
  let best: P | undefined;
  let known = 0;
  let node = root;
  while (node !== null && inPrefix(node, buf, off, known)) {
    if (node.peer !== undefined) best = node.peer;
    if (node.cidr === bits) break;
    known = node.cidr;
    node = node.children[bitAt(buf, off, known)];
  }
  return best;
}

// ---- Text forms, for tests and callers that hold prefixes as {addr, cidr}. ----

/**
 * Parses "10.0.0.0/8", "fd00::/64", or a bare address (a host prefix).
 * Surrounding whitespace is ignored; host bits are kept as written (insert
 * masks them). Throws a TypeError naming the text if it is not a prefix.
 */
export function parseCidr(text: string): { addr: Uint8Array; cidr: number } {
  const p = parsePrefix(text.trim(), { allowBare: true });
  if (!p.ok) throw new TypeError(`invalid allowed IP "${text}": ${p.reason}`);
  return { addr: p.value.bytes, cidr: p.value.bits };
}

/** "addr/cidr" as wireguard-go prints it (host bits are printed as given). */
export function formatCidr(addr: Uint8Array, cidr: number): string {
  checkPrefix(addr, cidr);
  return formatPrefix({ family: addr.length === V4_LEN ? 4 : 6, bytes: addr, bits: cidr });
}
