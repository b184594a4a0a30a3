// runPolicyTests: a policy's own accept/deny assertions, with and without nodes.
import { describe, expect, it } from 'vitest';
import { parsePolicy, runPolicyTests, type PolicyNode } from '../../src/policy/index.js';

const HEAD = `
  "groups": { "group:eng": ["alice", "bob"] },
  "tagOwners": { "tag:router": ["alice"], "tag:ci": [] },
  "hosts": { "vpc": "10.0.0.0/16", "db": "10.0.1.10" },`;

const run = (body: string, nodes?: PolicyNode[]): string[] => runPolicyTests(parsePolicy(`{${HEAD} ${body}}`), nodes);

const NODES: PolicyNode[] = [
  { id: 1, name: 'router', user: null, tags: ['tag:router'], addresses: ['100.64.0.1', 'fd7a::1'], routes: ['10.0.0.0/16'] },
  { id: 2, name: 'laptop', user: 'alice', tags: [], addresses: ['100.64.0.2', 'fd7a::2'], routes: [] },
  { id: 3, name: 'phone', user: 'alice', tags: [], addresses: ['100.100.0.3'], routes: [] },
  { id: 4, name: 'bob-desk', user: 'bob', tags: [], addresses: ['100.64.0.4'], routes: [] },
];

describe('runPolicyTests', () => {
  it('passes when every assertion holds', () => {
    expect(
      run(`"acls": [{ "action": "accept", "src": ["alice"], "dst": ["10.0.1.10:80", "tag:router:22"] }],
           "tests": [{ "src": "alice", "accept": ["10.0.1.10:80", "tag:router:22", "db:80"], "deny": ["10.0.1.10:22", "bob:80"] },
                     { "src": "bob", "deny": ["10.0.1.10:80"] }]`),
    ).toEqual([]);
  });

  it('reports each failing assertion with the acl that accepts it', () => {
    expect(
      run(`"acls": [{ "action": "accept", "src": ["group:eng"], "dst": ["vpc:*"] }],
           "tests": [{ "src": "alice", "accept": ["10.0.1.10:80", "tag:router:22"], "deny": ["10.0.1.10:22"] },
                     { "src": "tag:ci", "accept": ["db:443"] }]`),
    ).toEqual([
      'test 1: alice -> tag:router:22 should be accepted but no acl accepts it',
      'test 1: alice -> 10.0.1.10:22 should be denied but acls[0] accepts it',
      'test 2: tag:ci -> db:443 should be accepted but no acl accepts it',
    ]);
  });

  it('matches group members, tags, hosts, CIDRs and *', () => {
    const acls = `"acls": [
      { "action": "accept", "src": ["group:eng"], "dst": ["db:22"] },
      { "action": "accept", "src": ["tag:router"], "dst": ["group:eng:80"] },
      { "action": "accept", "src": ["10.0.0.0/8"], "dst": ["alice:443"] },
      { "action": "accept", "src": ["*"], "dst": ["vpc:8000-8999"] }]`;
    expect(
      run(`${acls}, "tests": [
        { "src": "bob", "accept": ["db:22", "10.0.1.10:22", "10.0.5.5:8080"], "deny": ["db:23", "alice:80"] },
        { "src": "group:eng", "accept": ["db:22"] },
        { "src": "tag:router", "accept": ["alice:80", "bob:80", "group:eng:80"], "deny": ["alice:443"] },
        { "src": "db", "accept": ["alice:443", "vpc:8000"], "deny": ["db:22"] },
        { "src": "10.0.1.0/24", "accept": ["alice:443"] },
        { "src": "192.168.0.1", "accept": ["10.0.0.1:8999"], "deny": ["alice:443", "10.0.0.1:9000"] }]`),
    ).toEqual([]);
  });

  it('checks the protocol and ignores ports for ICMP', () => {
    const acls = `"acls": [
      { "action": "accept", "src": ["alice"], "dst": ["db:53"], "proto": "udp" },
      { "action": "accept", "src": ["bob"], "dst": ["db:*"], "proto": "icmp" },
      { "action": "accept", "src": ["bob"], "dst": ["db:80"] }]`;
    expect(
      run(`${acls}, "tests": [
        { "src": "alice", "proto": "udp", "accept": ["db:53"] },
        { "src": "alice", "deny": ["db:53"] },
        { "src": "bob", "proto": "icmp", "accept": ["db:0"] },
        { "src": "bob", "proto": "icmpv6", "accept": ["db:0"] },
        { "src": "bob", "proto": "udp", "accept": ["db:80"], "deny": ["db:81"] },
        { "src": "bob", "proto": 47, "deny": ["db:0"] }]`),
    ).toEqual([]);
    expect(run(`${acls}, "tests": [{ "src": "alice", "proto": "udp", "deny": ["db:53"] }]`)).toEqual(['test 1: alice -> db:53 (udp) should be denied but acls[0] accepts it']);
  });

  it('resolves names to node addresses when given nodes', () => {
    const body = `"acls": [{ "action": "accept", "src": ["100.64.0.0/16"], "dst": ["100.64.0.0/10:22", "tag:router:80"] }],
      "tests": [{ "src": "bob", "accept": ["tag:router:22", "tag:router:80", "100.64.0.2:22"], "deny": ["100.64.0.2:80"] }, { "src": "100.64.0.4", "accept": ["alice:22"] }]`;
    // Without nodes nothing ties bob or the router to addresses.
    expect(run(body)).toEqual([
      'test 1: bob -> tag:router:22 should be accepted but no acl accepts it',
      'test 1: bob -> tag:router:80 should be accepted but no acl accepts it',
      'test 1: bob -> 100.64.0.2:22 should be accepted but no acl accepts it',
      'test 2: 100.64.0.4 -> alice:22 should be accepted but no acl accepts it',
    ]);
    expect(run(body, NODES)).toEqual([]);
  });

  it('needs every node of a user for accept, and none for deny', () => {
    const body = `"acls": [{ "action": "accept", "src": ["100.64.0.0/16"], "dst": ["db:80"] }],
      "tests": [{ "src": "alice", "accept": ["db:80"] }, { "src": "alice", "deny": ["db:80"] }]`;
    expect(run(body, NODES)).toEqual([
      'test 1: alice -> db:80 should be accepted but no acl accepts it from node "phone"',
      'test 2: alice -> db:80 should be denied but acls[0] accepts it from node "laptop"',
    ]);
  });

  it('knows an address as the node that holds it', () => {
    const body = `"acls": [{ "action": "accept", "src": ["bob"], "dst": ["alice:22"] }],
      "tests": [{ "src": "100.64.0.4", "accept": ["100.100.0.3:22", "fd7a::2:22"], "deny": ["100.64.0.1:22"] }]`;
    expect(run(body, NODES)).toEqual([]);
  });

  it('runs no assertions for a policy without tests', () => {
    expect(run(`"acls": []`)).toEqual([]);
  });
});
