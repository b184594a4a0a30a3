// What the policy compiler consumes and produces. The server compiles a
// policy against the nodes it knows into, for each node, the packet-filter
// rules it must enforce on its inbound traffic and the set of peers it may
// see; the rules travel to the node inside its netmap (control/messages.ts).

/** A node as the policy sees it. */
export interface PolicyNode {
  id: number;
  name: string;
  /** The owning user, null for tagged nodes. */
  user: string | null;
  tags: string[];
  /** Overlay addresses, bare ("100.64.0.1", "fd7a:115c:a1e0::6440:1"). */
  addresses: string[];
  /** Approved subnet routes this node is the primary router for (CIDRs). */
  routes: string[];
}

/**
 * One inbound allow rule, already resolved to addresses: a packet passes
 * when its source is in `srcs`, its destination in `dsts`, its protocol in
 * `protos` and (for TCP, UDP, SCTP) its destination port in one of `ports`.
 */
export interface FilterRule {
  /** CIDRs; "0.0.0.0/0" and "::/0" for `*`. */
  srcs: string[];
  /** CIDRs: the destination node's own addresses and/or the subnets it routes. */
  dsts: string[];
  /** Inclusive ranges; [[0, 65535]] for `*`. */
  ports: Array<[number, number]>;
  /** IANA protocol numbers; null means TCP, UDP, ICMP and ICMPv6 (the default when a rule names none). */
  protos: number[] | null;
}

export interface CompiledNode {
  /** What this node accepts inbound (for its addresses and the subnets it routes). */
  filter: FilterRule[];
  /** Ids of nodes this one may reach or that may reach it: its netmap's peers. */
  visible: Set<number>;
}
