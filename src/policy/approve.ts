// Two questions the server asks the policy outside packet filtering: may a
// node's advertised route skip manual approval, and may someone apply a tag.

import { parseCidr } from '../net/ipaddr.js';
import { contains, prefixOf } from './cidr.js';
import type { Policy, PolicyAlias, PolicyNode } from './types.js';

/** Whether `alias` (a user, group or tag) names this owner. */
function names(p: Policy, alias: PolicyAlias, owner: { user: string | null; tags: readonly string[] }): boolean {
  switch (alias.kind) {
    case 'user':
      return owner.user !== null && owner.user === alias.text;
    case 'group':
      return owner.user !== null && (p.groups.get(alias.text) ?? []).includes(owner.user);
    case 'tag':
      return owner.tags.includes(alias.text);
    default:
      return false;
  }
}

/**
 * Whether `route` (a CIDR) advertised by `node` is approved by the policy:
 * some autoApprovers.routes prefix equal to or broader than the route lists
 * the node's user, a group the user is in, or one of the node's tags.
 * A route that does not parse is never approved.
 */
export function autoApproves(p: Policy, route: string, node: PolicyNode): boolean {
  const r = parseCidr(route, { mask: true });
  if (!r.ok) return false;
  return p.autoApprovers.routes.some((entry) => contains(prefixOf(entry.route), r.value) && entry.approvers.some((a) => names(p, a, node)));
}

/**
 * Whether tagOwners lets `owner` (a user, and the tags of the node or key
 * asking) apply `tag`. Unknown tags are never allowed. Tags an auth key
 * carries on its own authority are the caller's decision, not this one's.
 */
export function mayUseTag(p: Policy, tag: string, owner: { user: string | null; tags: string[] }): boolean {
  const owners = p.tagOwners.get(tag);
  return owners !== undefined && owners.some((a) => names(p, a, owner));
}
