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
  visible: ReadonlySet<number>;
}

// ---------------------------------------------------------------------------
// The parsed policy (policy.ts produces it from JSON with comments). Every
// reference in it has been checked: groups and tags exist, hosts are resolved
// to their prefix, CIDRs are canonical (host bits clear), ports and protocols
// are in range.

/** An inclusive port range. */
export type PortRange = [number, number];

/**
 * One name in a src, dst target, approver or owner list. `text` is what the
 * policy wrote; `prefix` is a canonical CIDR ("10.0.0.0/16", "10.0.1.10/32").
 */
export type PolicyAlias =
  | { kind: 'any'; text: string }
  | { kind: 'user'; text: string }
  | { kind: 'group'; text: string }
  | { kind: 'tag'; text: string }
  | { kind: 'host'; text: string; prefix: string }
  | { kind: 'prefix'; text: string; prefix: string };

/** A dst entry: a target and the ports it opens ([[0, 65535]] for `*`). */
export interface PolicyDst {
  text: string;
  target: PolicyAlias;
  ports: PortRange[];
}

export interface PolicyAcl {
  action: 'accept';
  src: PolicyAlias[];
  dst: PolicyDst[];
  /** A single IANA protocol number, or null for TCP, UDP, ICMP and ICMPv6. */
  protos: number[] | null;
}

/** autoApprovers.routes: routes inside `route` are approved for these users, groups and tags. */
export interface PolicyRouteApprover {
  route: string;
  approvers: PolicyAlias[];
}

/** A `target:port` in a test's accept or deny list. */
export interface PolicyTestDst {
  text: string;
  target: PolicyAlias;
  port: number;
}

export interface PolicyTest {
  src: PolicyAlias;
  /** The protocol the assertions are about: TCP (6) unless the test names one. */
  proto: number;
  accept: PolicyTestDst[];
  deny: PolicyTestDst[];
}

export interface Policy {
  /** "group:eng" -> its users (deduplicated, in the order written). */
  groups: Map<string, string[]>;
  /** "tag:router" -> who may apply it: users, groups and tags. */
  tagOwners: Map<string, PolicyAlias[]>;
  /** Host name -> its canonical CIDR. */
  hosts: Map<string, string>;
  acls: PolicyAcl[];
  autoApprovers: { routes: PolicyRouteApprover[] };
  tests: PolicyTest[];
}
