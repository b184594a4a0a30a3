// Names as they appear in srcs, dst targets, owners and approvers: `*`,
// "group:x", "tag:x", host names, IP addresses and CIDRs, and users. A bare
// name is a host when `hosts` defines it and a user otherwise (users are not
// declared in a policy, so an unknown host cannot be told from a user).

import { formatCidr, maskBytes, parseCidr } from '../net/ipaddr.js';
import type { PolicyErrorCode } from './errors.js';
import type { PolicyAlias } from './types.js';

export const USER_NAME = /^[A-Za-z0-9._@-]+$/;
export const GROUP_NAME = /^group:[A-Za-z0-9][A-Za-z0-9._@-]*$/;
export const TAG_NAME = /^tag:[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** Starts with a letter (so never an address) and has no "@" (so never a login). */
export const HOST_NAME = /^[A-Za-z][A-Za-z0-9._-]*$/;

export type AliasKind = PolicyAlias['kind'];

export type AliasResult = { ok: true; value: PolicyAlias } | { ok: false; code: PolicyErrorCode; reason: string };

export interface AliasContext {
  groups: ReadonlyMap<string, unknown>;
  tags: ReadonlyMap<string, unknown>;
  /** Host name -> canonical CIDR. */
  hosts: ReadonlyMap<string, string>;
}

const KIND_NAMES: Record<AliasKind, string> = {
  any: '"*"',
  user: 'a user',
  group: 'a group',
  tag: 'a tag',
  host: 'a host',
  prefix: 'an IP address or CIDR',
};

/** Text that can only be meant as an address: it has ":" or "/", or is all digits and dots. */
function looksLikeAddress(text: string): boolean {
  return text.includes('/') || text.includes(':') || /^[0-9.]+$/.test(text);
}

/** A CIDR or bare address as canonical text; host bits must be clear. */
export function parseCanonicalCidr(text: string): { ok: true; value: string } | { ok: false; reason: string } {
  const r = parseCidr(text, { allowBare: true });
  if (!r.ok) return { ok: false, reason: `"${text}" is not a valid IP address or CIDR: ${r.reason}` };
  const canonical = formatCidr({ ...r.value, bytes: maskBytes(r.value.bytes, r.value.bits) });
  if (formatCidr(r.value) !== canonical) return { ok: false, reason: `"${text}" has bits set past its prefix length; did you mean ${canonical}?` };
  return { ok: true, value: canonical };
}

function classify(text: string, ctx: AliasContext): AliasResult {
  if (text === '*') return { ok: true, value: { kind: 'any', text } };
  if (text.startsWith('group:')) {
    if (!GROUP_NAME.test(text)) return { ok: false, code: 'invalid-name', reason: `"${text}" is not a valid group name (group:NAME with letters, digits, . _ @ -)` };
    if (!ctx.groups.has(text)) return { ok: false, code: 'unknown-group', reason: `unknown group "${text}"; define it under "groups"` };
    return { ok: true, value: { kind: 'group', text } };
  }
  if (text.startsWith('tag:')) {
    if (!TAG_NAME.test(text)) return { ok: false, code: 'invalid-name', reason: `"${text}" is not a valid tag (tag:NAME with letters, digits, . _ -)` };
    if (!ctx.tags.has(text)) return { ok: false, code: 'unknown-tag', reason: `unknown tag "${text}"; define it under "tagOwners"` };
    return { ok: true, value: { kind: 'tag', text } };
  }
  const host = ctx.hosts.get(text);
  if (host !== undefined) return { ok: true, value: { kind: 'host', text, prefix: host } };
  if (looksLikeAddress(text)) {
    const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
    const cidr = parseCanonicalCidr(bare);
    if (!cidr.ok) {
      const hint = /^[a-z]+:/.test(text) ? `"${text}" is neither a group, a tag, a host, nor an IP address or CIDR` : cidr.reason;
      return { ok: false, code: 'invalid-cidr', reason: hint };
    }
    return { ok: true, value: { kind: 'prefix', text, prefix: cidr.value } };
  }
  if (!USER_NAME.test(text)) {
    return { ok: false, code: 'invalid-name', reason: `"${text}" is not a valid user, host, group, tag or address (user names have letters, digits, . _ @ -)` };
  }
  return { ok: true, value: { kind: 'user', text } };
}

/** Classifies `text` and checks it is one of the kinds `role` (e.g. "a tag owner") may name. */
export function parseAlias(text: string, ctx: AliasContext, allowed: readonly AliasKind[], role: string): AliasResult {
  const r = classify(text, ctx);
  if (!r.ok || allowed.includes(r.value.kind)) return r;
  const kinds = allowed.map((k) => KIND_NAMES[k]);
  const list = kinds.length === 1 ? kinds[0] : `${kinds.slice(0, -1).join(', ')} or ${kinds[kinds.length - 1]}`;
  const code: PolicyErrorCode = 'invalid-alias';
  if (r.value.kind === 'group' && role === 'a group member') return { ok: false, code, reason: `groups may not contain groups ("${text}"); list its users instead` };
  return { ok: false, code, reason: `"${text}" is ${KIND_NAMES[r.value.kind]}, which ${role} cannot be; use ${list}` };
}

/**
 * "target:ports" split at the last ":", or "[v6 target]:ports". Returns the
 * two texts, or why there is no ports part.
 */
export function splitTargetPorts(text: string): { ok: true; target: string; ports: string } | { ok: false; reason: string } {
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return { ok: false, reason: `"${text}" is missing the "]" closing its address` };
    if (text[close + 1] !== ':') return { ok: false, reason: `"${text}" needs ":ports" after "]" (e.g. "${text.slice(0, close + 1)}:*")` };
    return { ok: true, target: text.slice(1, close), ports: text.slice(close + 2) };
  }
  const colon = text.lastIndexOf(':');
  const missing = { ok: false as const, reason: `"${text}" needs ":ports" (e.g. "${text}:*" for all ports)` };
  if (colon < 0) return missing;
  const target = text.slice(0, colon);
  // "tag:router" and "group:eng" alone: the only colon is the kind's.
  if ((target === 'tag' || target === 'group') && !text.slice(colon + 1).includes(':')) return missing;
  return { ok: true, target, ports: text.slice(colon + 1) };
}
