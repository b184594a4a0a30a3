// autoApprovers.routes and tagOwners: who may skip route approval, who may apply a tag.
import { describe, expect, it } from 'vitest';
import { autoApproves, compilePolicy, DEFAULT_POLICY_TEXT, mayUseTag, parsePolicy, type PolicyNode } from '../../src/policy/index.js';

const p = parsePolicy(`{
  "groups": { "group:eng": ["alice", "bob@example.com"] },
  "tagOwners": { "tag:router": ["group:eng", "carol"], "tag:ci": [], "tag:edge": ["tag:router"] },
  "autoApprovers": { "routes": {
    "10.0.0.0/16": ["tag:router", "group:eng"],
    "192.168.0.0/24": ["dave"],
    "fd00::/8": ["tag:edge"],
  } },
}`);

const node = (user: string | null, tags: string[] = []): PolicyNode => ({ id: 1, name: 'n', user, tags, addresses: ['100.64.0.1'], routes: [] });

describe('autoApproves', () => {
  it('approves a route equal to or inside an entry for its users, groups and tags', () => {
    expect(autoApproves(p, '10.0.0.0/16', node(null, ['tag:router']))).toBe(true);
    expect(autoApproves(p, '10.0.1.0/24', node('alice'))).toBe(true);
    expect(autoApproves(p, '10.0.1.10/32', node('bob@example.com'))).toBe(true);
    expect(autoApproves(p, '192.168.0.128/25', node('dave'))).toBe(true);
    expect(autoApproves(p, 'fd00:1::/48', node(null, ['tag:edge']))).toBe(true);
  });

  it('refuses broader routes, other nodes and other families', () => {
    expect(autoApproves(p, '10.0.0.0/8', node('alice'))).toBe(false);
    expect(autoApproves(p, '10.0.0.0/16', node('dave'))).toBe(false);
    expect(autoApproves(p, '10.0.0.0/16', node(null, ['tag:ci']))).toBe(false);
    expect(autoApproves(p, '192.168.0.0/24', node('alice'))).toBe(false);
    expect(autoApproves(p, '::/0', node(null, ['tag:edge']))).toBe(false);
    expect(autoApproves(p, '10.0.0.0/16', node(null))).toBe(false);
  });

  it('never approves a route that does not parse', () => {
    expect(autoApproves(p, '10.0.0.0/33', node('alice'))).toBe(false);
    expect(autoApproves(p, 'nonsense', node('alice'))).toBe(false);
  });

  it('approves nothing without autoApprovers', () => {
    expect(autoApproves(parsePolicy('{}'), '10.0.0.0/16', node('alice'))).toBe(false);
  });
});

describe('mayUseTag', () => {
  it('follows tagOwners by user, group and tag', () => {
    expect(mayUseTag(p, 'tag:router', { user: 'alice', tags: [] })).toBe(true);
    expect(mayUseTag(p, 'tag:router', { user: 'carol', tags: [] })).toBe(true);
    expect(mayUseTag(p, 'tag:edge', { user: null, tags: ['tag:router'] })).toBe(true);
  });

  it('refuses other owners, tags nobody owns and unknown tags', () => {
    expect(mayUseTag(p, 'tag:router', { user: 'dave', tags: [] })).toBe(false);
    expect(mayUseTag(p, 'tag:edge', { user: 'alice', tags: [] })).toBe(false);
    expect(mayUseTag(p, 'tag:ci', { user: 'alice', tags: ['tag:router'] })).toBe(false);
    expect(mayUseTag(p, 'tag:unknown', { user: 'alice', tags: [] })).toBe(false);
    expect(mayUseTag(p, 'tag:router', { user: null, tags: [] })).toBe(false);
  });
});

describe('DEFAULT_POLICY_TEXT', () => {
  it('lets every node reach every node and every routed subnet', () => {
    const nodes: PolicyNode[] = [
      { id: 1, name: 'a', user: 'alice', tags: [], addresses: ['100.64.0.1'], routes: ['10.0.0.0/16'] },
      { id: 2, name: 'b', user: null, tags: ['tag:x'], addresses: ['100.64.0.2', 'fd7a::2'], routes: [] },
    ];
    const c = compilePolicy(parsePolicy(DEFAULT_POLICY_TEXT), nodes);
    expect(c.get(1)).toEqual({ filter: [{ srcs: ['0.0.0.0/0', '::/0'], dsts: ['10.0.0.0/16', '100.64.0.1/32'], ports: [[0, 65535]], protos: null }], visible: new Set([2]) });
    expect(c.get(2)!.filter[0].dsts).toEqual(['100.64.0.2/32', 'fd7a::2/128']);
    expect(c.get(2)!.visible).toEqual(new Set([1]));
    expect(DEFAULT_POLICY_TEXT).toContain('without a policy');
  });
});
