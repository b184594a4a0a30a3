// parsePolicy: JSON with comments to a checked, typed Policy. Every error is
// a PolicyError naming the path (`acls[2].dst[0]`) and the line and column of
// the offending value, so whoever runs `policy check` knows what to fix.

import { parseAlias, parseCanonicalCidr, splitTargetPorts, GROUP_NAME, HOST_NAME, TAG_NAME, type AliasContext, type AliasKind } from './alias.js';
import { PolicyError, type PolicyErrorCode } from './errors.js';
import { parseJsonc, type JsonMember, type JsonNode } from './jsonc.js';
import { parsePort } from '../net/ipaddr.js';
import { hasPorts, isAllPorts, parsePorts, parseProto, protoName, PROTO_TCP } from './ports.js';
import type { Policy, PolicyAcl, PolicyAlias, PolicyDst, PolicyRouteApprover, PolicyTest, PolicyTestDst } from './types.js';

export { PolicyError } from './errors.js';
export type { PolicyErrorCode } from './errors.js';

const TOP_LEVEL = ['groups', 'tagOwners', 'hosts', 'acls', 'autoApprovers', 'tests'];
const ACL_FIELDS = ['action', 'src', 'dst', 'proto'];
const TEST_FIELDS = ['src', 'proto', 'accept', 'deny'];
const OWNER_KINDS: readonly AliasKind[] = ['user', 'group', 'tag'];
const SRC_KINDS: readonly AliasKind[] = ['any', 'user', 'group', 'tag', 'host', 'prefix'];
const TEST_KINDS: readonly AliasKind[] = ['user', 'group', 'tag', 'host', 'prefix'];

function fail(code: PolicyErrorCode, reason: string, node: JsonNode | undefined, path: string): never {
  throw new PolicyError(code, reason, node ? { line: node.pos.line, column: node.pos.column, path } : { path });
}

/** `groups["group:eng"]`, `acls[0]`: how paths name a member. */
function child(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) return path === '' ? key : `${path}.${key}`;
  return `${path}[${JSON.stringify(key)}]`;
}

const TYPE_NAMES: Record<JsonNode['kind'], string> = { object: 'an object', array: 'an array', string: 'a string', number: 'a number', boolean: 'a boolean', null: 'null' };

function expectObject(node: JsonNode, path: string, what = 'an object'): JsonMember[] {
  if (node.kind !== 'object') fail('type', `expected ${what} but found ${TYPE_NAMES[node.kind]}`, node, path);
  return node.members;
}

function expectArray(node: JsonNode, path: string, what = 'an array'): JsonNode[] {
  if (node.kind !== 'array') fail('type', `expected ${what} but found ${TYPE_NAMES[node.kind]}`, node, path);
  return node.items;
}

function expectString(node: JsonNode, path: string, what = 'a string'): string {
  if (node.kind !== 'string') fail('type', `expected ${what} but found ${TYPE_NAMES[node.kind]}`, node, path);
  return node.value;
}

function expectStrings(node: JsonNode, path: string, what: string): Array<{ text: string; node: JsonNode; path: string }> {
  return expectArray(node, path, `an array of ${what}`).map((item, i) => ({ text: expectString(item, child(path, i), what), node: item, path: child(path, i) }));
}

function checkFields(members: JsonMember[], allowed: readonly string[], path: string, what: string): Map<string, JsonNode> {
  const out = new Map<string, JsonNode>();
  for (const m of members) {
    if (!allowed.includes(m.key)) {
      throw new PolicyError('unknown-field', `unknown field "${m.key}" in ${what}; the fields are ${allowed.map((k) => `"${k}"`).join(', ')}`, { ...m.keyPos, path: child(path, m.key) });
    }
    out.set(m.key, m.value);
  }
  return out;
}

function alias(text: string, node: JsonNode, path: string, ctx: AliasContext, kinds: readonly AliasKind[], role: string): PolicyAlias {
  const r = parseAlias(text, ctx, kinds, role);
  if (!r.ok) fail(r.code, r.reason, node, path);
  return r.value;
}

function parseGroups(node: JsonNode, path: string, tags: ReadonlyMap<string, unknown>): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const m of expectObject(node, path)) {
    const p = child(path, m.key);
    if (!GROUP_NAME.test(m.key)) throw new PolicyError('invalid-name', `"${m.key}" is not a group name; groups are named "group:NAME"`, { ...m.keyPos, path: p });
    groups.set(m.key, []);
  }
  const ctx: AliasContext = { groups, tags, hosts: new Map() };
  for (const m of expectObject(node, path)) {
    const p = child(path, m.key);
    const users = new Set<string>();
    for (const s of expectStrings(m.value, p, 'user names')) {
      const a = alias(s.text, s.node, s.path, ctx, ['user'], 'a group member');
      users.add(a.text);
    }
    groups.set(m.key, [...users]);
  }
  return groups;
}

function parseHosts(node: JsonNode, path: string): Map<string, string> {
  const hosts = new Map<string, string>();
  for (const m of expectObject(node, path)) {
    const p = child(path, m.key);
    if (!HOST_NAME.test(m.key)) {
      throw new PolicyError('invalid-name', `"${m.key}" is not a valid host name (a letter, then letters, digits, . _ -)`, { ...m.keyPos, path: p });
    }
    const cidr = parseCanonicalCidr(expectString(m.value, p, 'an IP address or CIDR'));
    if (!cidr.ok) fail('invalid-cidr', cidr.reason, m.value, p);
    hosts.set(m.key, cidr.value);
  }
  return hosts;
}

function tagNames(node: JsonNode, path: string): Map<string, PolicyAlias[]> {
  const tags = new Map<string, PolicyAlias[]>();
  for (const m of expectObject(node, path)) {
    if (!TAG_NAME.test(m.key)) {
      throw new PolicyError('invalid-name', `"${m.key}" is not a tag name; tags are named "tag:NAME" (letters, digits, . _ -)`, { ...m.keyPos, path: child(path, m.key) });
    }
    tags.set(m.key, []);
  }
  return tags;
}

function parseTagOwners(node: JsonNode, path: string, ctx: AliasContext, tags: Map<string, PolicyAlias[]>): void {
  for (const m of expectObject(node, path)) {
    const p = child(path, m.key);
    const owners = expectStrings(m.value, p, 'owners').map((s) => alias(s.text, s.node, s.path, ctx, OWNER_KINDS, 'a tag owner'));
    tags.set(m.key, dedupeAliases(owners));
  }
}

function dedupeAliases(list: PolicyAlias[]): PolicyAlias[] {
  const seen = new Set<string>();
  return list.filter((a) => !seen.has(a.text) && (seen.add(a.text), true));
}

function parseProtoField(node: JsonNode, path: string): number {
  if (node.kind !== 'string' && node.kind !== 'number') fail('type', `expected a protocol name or number but found ${TYPE_NAMES[node.kind]}`, node, path);
  const r = parseProto(node.value);
  if (!r.ok) fail('invalid-proto', r.reason, node, path);
  return r.value;
}

function parseDst(text: string, node: JsonNode, path: string, ctx: AliasContext): PolicyDst {
  const split = splitTargetPorts(text);
  if (!split.ok) fail('invalid-dst', split.reason, node, path);
  const target = alias(split.target, node, path, ctx, SRC_KINDS, 'a destination');
  const ports = parsePorts(split.ports);
  if (!ports.ok) fail('invalid-ports', `${ports.reason} (in "${text}")`, node, path);
  return { text, target, ports: ports.value };
}

function parseAcl(node: JsonNode, path: string, ctx: AliasContext): PolicyAcl {
  const f = checkFields(expectObject(node, path, 'an acl object'), ACL_FIELDS, path, 'an acl');
  const action = f.get('action');
  if (action === undefined) fail('missing-field', 'an acl needs "action": "accept"', node, path);
  const actionText = expectString(action, child(path, 'action'));
  if (actionText !== 'accept') {
    fail('invalid-action', `unknown action "${actionText}"; the only action is "accept" (everything else is denied)`, action, child(path, 'action'));
  }
  for (const key of ['src', 'dst']) if (!f.has(key)) fail('missing-field', `an acl needs "${key}"`, node, path);
  const srcPath = child(path, 'src');
  const src = dedupeAliases(expectStrings(f.get('src')!, srcPath, 'sources').map((s) => alias(s.text, s.node, s.path, ctx, SRC_KINDS, 'a source')));
  const dstPath = child(path, 'dst');
  const dstItems = expectStrings(f.get('dst')!, dstPath, '"target:ports" destinations');
  const dst = dstItems.map((s) => parseDst(s.text, s.node, s.path, ctx));
  const protoNode = f.get('proto');
  let protos: number[] | null = null;
  if (protoNode !== undefined) {
    const proto = parseProtoField(protoNode, child(path, 'proto'));
    protos = [proto];
    if (!hasPorts(proto)) {
      dst.forEach((d, i) => {
        if (!isAllPorts(d.ports)) fail('proto-ports', `${protoName(proto)} has no ports; write "${splitTarget(d.text)}:*"`, dstItems[i].node, dstItems[i].path);
      });
    }
  }
  return { action: 'accept', src, dst, protos };
}

function splitTarget(text: string): string {
  const s = splitTargetPorts(text);
  return s.ok ? (text.startsWith('[') ? `[${s.target}]` : s.target) : text;
}

function parseAutoApprovers(node: JsonNode, path: string, ctx: AliasContext): PolicyRouteApprover[] {
  const f = checkFields(expectObject(node, path), ['routes'], path, 'autoApprovers');
  const routesNode = f.get('routes');
  if (routesNode === undefined) return [];
  const routesPath = child(path, 'routes');
  const out: PolicyRouteApprover[] = [];
  for (const m of expectObject(routesNode, routesPath, 'an object of "CIDR": [approvers]')) {
    const p = child(routesPath, m.key);
    const cidr = parseCanonicalCidr(m.key);
    if (!cidr.ok) throw new PolicyError('invalid-cidr', cidr.reason, { ...m.keyPos, path: p });
    const approvers = expectStrings(m.value, p, 'approvers').map((s) => alias(s.text, s.node, s.path, ctx, OWNER_KINDS, 'a route approver'));
    out.push({ route: cidr.value, approvers: dedupeAliases(approvers) });
  }
  return out;
}

function parseTestDst(text: string, node: JsonNode, path: string, ctx: AliasContext): PolicyTestDst {
  const split = splitTargetPorts(text);
  if (!split.ok) fail('invalid-dst', split.reason.replace('":ports"', '":port"').replace(/ \(e\.g\.[^)]*\)/, ''), node, path);
  const target = alias(split.target, node, path, ctx, TEST_KINDS, 'a test destination');
  const port = parsePort(split.ports);
  if (!port.ok) fail('invalid-ports', `a test names one port: ${port.reason} (in "${text}")`, node, path);
  return { text, target, port: port.value };
}

function parseTest(node: JsonNode, path: string, ctx: AliasContext): PolicyTest {
  const f = checkFields(expectObject(node, path, 'a test object'), TEST_FIELDS, path, 'a test');
  const srcNode = f.get('src');
  if (srcNode === undefined) fail('missing-field', 'a test needs "src"', node, path);
  const srcPath = child(path, 'src');
  const src = alias(expectString(srcNode, srcPath, 'a user, group, tag, host or address'), srcNode, srcPath, ctx, TEST_KINDS, 'a test source');
  const protoNode = f.get('proto');
  const proto = protoNode === undefined ? PROTO_TCP : parseProtoField(protoNode, child(path, 'proto'));
  const list = (key: 'accept' | 'deny'): PolicyTestDst[] => {
    const n = f.get(key);
    if (n === undefined) return [];
    return expectStrings(n, child(path, key), '"target:port" destinations').map((s) => parseTestDst(s.text, s.node, s.path, ctx));
  };
  return { src, proto, accept: list('accept'), deny: list('deny') };
}

/** Parses and checks a policy; throws a PolicyError on the first problem. */
export function parsePolicy(text: string): Policy {
  const root = parseJsonc(text);
  const top = checkFields(expectObject(root, '', 'a policy object { "acls": [...], ... }'), TOP_LEVEL, '', 'a policy');
  const get = (key: string): JsonNode | undefined => top.get(key);
  // Names first: references may come before the definitions they use.
  const tagOwners = get('tagOwners') ? tagNames(get('tagOwners')!, 'tagOwners') : new Map<string, PolicyAlias[]>();
  const groups = get('groups') ? parseGroups(get('groups')!, 'groups', tagOwners) : new Map<string, string[]>();
  const hosts = get('hosts') ? parseHosts(get('hosts')!, 'hosts') : new Map<string, string>();
  const ctx: AliasContext = { groups, tags: tagOwners, hosts };
  if (get('tagOwners')) parseTagOwners(get('tagOwners')!, 'tagOwners', ctx, tagOwners);
  const acls = get('acls') ? expectArray(get('acls')!, 'acls', 'an array of acls').map((n, i) => parseAcl(n, `acls[${i}]`, ctx)) : [];
  const routes = get('autoApprovers') ? parseAutoApprovers(get('autoApprovers')!, 'autoApprovers', ctx) : [];
  const tests = get('tests') ? expectArray(get('tests')!, 'tests', 'an array of tests').map((n, i) => parseTest(n, `tests[${i}]`, ctx)) : [];
  return { groups, tagOwners, hosts, acls, autoApprovers: { routes }, tests };
}
