// runPolicyTests: the policy's own `tests`, evaluated against its acls at
// the level of names, so they can run before any node exists.
//
// A test's src and each destination expand to one or more principals: with
// nodes, a user or tag stands for each node it names (with that node's
// addresses and tags), a group for each of its members; an address that is a
// node's overlay address also carries that node's identity. An acl src or
// dst target matches a principal when it is `*`, names the same user or tag,
// is a group the principal is in, or is a host/CIDR holding one of the
// principal's addresses (all of it, for a CIDR principal). An `accept`
// assertion holds when every src principal reaches every dst principal;
// a `deny` assertion when none does.

import type { IpPrefix } from '../net/ipaddr.js';
import { contains, prefixOf } from './cidr.js';
import { nodeSpace, type NodeSpace } from './compile.js';
import { allowsProtoPort, protoName, PROTO_TCP } from './ports.js';
import type { Policy, PolicyAcl, PolicyAlias, PolicyNode, PolicyTestDst } from './types.js';

interface Principal {
  users: Set<string>;
  groups: Set<string>;
  tags: Set<string>;
  addrs: IpPrefix[];
  /** Which node this is, when the alias stood for several. */
  node?: string;
}

function principal(init: Partial<Principal> = {}): Principal {
  return { users: new Set(), groups: new Set(), tags: new Set(), addrs: [], ...init };
}

function ofNode(n: NodeSpace): Principal {
  return principal({
    users: new Set(n.node.user === null ? [] : [n.node.user]),
    tags: new Set(n.node.tags),
    addrs: n.addrs,
    node: n.node.name,
  });
}

function expand(p: Policy, alias: PolicyAlias, nodes: NodeSpace[] | null): Principal[] {
  switch (alias.kind) {
    case 'user': {
      const own = (nodes ?? []).filter((n) => n.node.user === alias.text);
      return own.length > 0 ? own.map(ofNode) : [principal({ users: new Set([alias.text]) })];
    }
    case 'group': {
      const members = p.groups.get(alias.text) ?? [];
      const out = members.flatMap((u) => expand(p, { kind: 'user', text: u }, nodes));
      if (out.length === 0) out.push(principal());
      for (const x of out) x.groups.add(alias.text);
      return out;
    }
    case 'tag': {
      const tagged = (nodes ?? []).filter((n) => n.node.tags.includes(alias.text));
      return tagged.length > 0 ? tagged.map(ofNode) : [principal({ tags: new Set([alias.text]) })];
    }
    case 'host':
    case 'prefix': {
      const prefix = prefixOf(alias.prefix);
      const owner = (nodes ?? []).find((n) => n.addrs.some((a) => contains(a, prefix) && contains(prefix, a)));
      if (owner === undefined) return [principal({ addrs: [prefix] })];
      return [{ ...ofNode(owner), addrs: [prefix] }];
    }
    case 'any':
      return [principal()];
  }
}

/** Whether an acl src or dst target names this principal. */
function matches(p: Policy, alias: PolicyAlias, who: Principal): boolean {
  switch (alias.kind) {
    case 'any':
      return true;
    case 'user':
      return who.users.has(alias.text);
    case 'group': {
      if (who.groups.has(alias.text)) return true;
      const members = p.groups.get(alias.text) ?? [];
      return members.some((u) => who.users.has(u));
    }
    case 'tag':
      return who.tags.has(alias.text);
    case 'host':
    case 'prefix': {
      const prefix = prefixOf(alias.prefix);
      return who.addrs.some((a) => contains(prefix, a));
    }
  }
}

/** The index of the first acl letting `src` reach `dst` on this protocol and port, or -1. */
function acceptingAcl(p: Policy, src: Principal, dst: Principal, proto: number, port: number): number {
  return p.acls.findIndex(
    (acl: PolicyAcl) =>
      acl.src.some((s) => matches(p, s, src)) && acl.dst.some((d) => allowsProtoPort(acl.protos, d.ports, proto, port) && matches(p, d.target, dst)),
  );
}

function between(src: Principal, dst: Principal, many: boolean): string {
  if (!many) return '';
  const from = src.node !== undefined ? ` from node "${src.node}"` : '';
  const to = dst.node !== undefined ? ` to node "${dst.node}"` : '';
  return from + to;
}

/**
 * Runs the policy's tests; returns one line per failing assertion, none when
 * all pass. With `nodes`, names also resolve to those nodes' addresses.
 */
export function runPolicyTests(p: Policy, nodes?: PolicyNode[]): string[] {
  const spaces = nodes === undefined ? null : nodes.map(nodeSpace);
  const failures: string[] = [];
  p.tests.forEach((t, ti) => {
    const srcs = expand(p, t.src, spaces);
    const via = t.proto === PROTO_TCP ? '' : ` (${protoName(t.proto)})`;
    const check = (d: PolicyTestDst, want: 'accepted' | 'denied'): void => {
      const dsts = expand(p, d.target, spaces);
      const many = srcs.length > 1 || dsts.length > 1;
      const head = `test ${ti + 1}: ${t.src.text} -> ${d.text}${via} should be ${want}`;
      for (const s of srcs) {
        for (const x of dsts) {
          const acl = acceptingAcl(p, s, x, t.proto, d.port);
          if (want === 'accepted' && acl < 0) {
            failures.push(`${head} but no acl accepts it${between(s, x, many)}`);
            return;
          }
          if (want === 'denied' && acl >= 0) {
            failures.push(`${head} but acls[${acl}] accepts it${between(s, x, many)}`);
            return;
          }
        }
      }
    };
    for (const d of t.accept) check(d, 'accepted');
    for (const d of t.deny) check(d, 'denied');
  });
  return failures;
}
