// The policy language's parser: JSON with comments (errors with line and
// column), and the checks that turn it into a typed Policy (errors with the
// path and position of the offending value).
import { describe, expect, it } from 'vitest';
import { parseJsonc } from '../../src/policy/jsonc.js';
import { parsePolicy, PolicyError, DEFAULT_POLICY_TEXT } from '../../src/policy/index.js';

function errorOf(f: () => unknown): PolicyError {
  try {
    f();
  } catch (e) {
    if (e instanceof PolicyError) return e;
    throw e;
  }
  throw new Error('expected a PolicyError');
}

const policyError = (text: string): PolicyError => errorOf(() => parsePolicy(text));
const jsonError = (text: string): PolicyError => errorOf(() => parseJsonc(text));

describe('parseJsonc', () => {
  it('reads comments, trailing commas and escapes', () => {
    const node = parseJsonc('// head\n{ /* a */ "a": [1, -2.5e3, true, false, null,], "b": "x\\n\\u0041\\"", }\n// tail');
    expect(node.kind).toBe('object');
    if (node.kind !== 'object') return;
    expect(node.members.map((m) => m.key)).toEqual(['a', 'b']);
    const [a, b] = node.members;
    expect(a.value.kind === 'array' && a.value.items.map((i) => ('value' in i ? i.value : null))).toEqual([1, -2500, true, false, null]);
    expect(b.value).toMatchObject({ kind: 'string', value: 'x\nA"' });
    expect(a.value.pos).toEqual({ line: 2, column: 16 });
  });

  it('reports a missing comma at the next member', () => {
    const e = jsonError('{\n  "a": 1\n  "b": 2\n}');
    expect(e).toMatchObject({ code: 'syntax', line: 3, column: 3 });
    expect(e.message).toBe(`line 3, column 3: expected ',' or '}' after the value of "a" but found a string`);
  });

  it('reports an unterminated string where it starts', () => {
    expect(jsonError('{\n  "acls": [\n    "abc\n  ]\n}')).toMatchObject({ code: 'syntax', line: 3, column: 5 });
    expect(jsonError('{"a": "abc')).toMatchObject({ line: 1, column: 7, reason: 'unterminated string (it starts here)' });
  });

  it.each([
    ['', 1, 1, 'expected a value but found end of input'],
    ['{"a": }', 1, 7, `expected a value for "a" but found '}'`],
    ['{"a" 1}', 1, 6, `expected ':' after the key "a" but found a number`],
    ["{'a': 1}", 1, 2, `expected a "key" or '}' but found "'" (strings and keys take double quotes)`],
    ['[1, 2', 1, 6, "expected ',' or ']' after an array element but found end of input"],
    ['[1,,]', 1, 4, "expected a value or ']' after ',' but found ','"],
    ['{} x', 1, 4, 'expected end of input after the top-level value but found "x"'],
    ['[01]', 1, 3, 'malformed number: unexpected a number'],
    ['[tru]', 1, 2, `expected a value or ']' but found "tru"`],
    ['/* open\n\n', 1, 1, 'unterminated /* comment (it starts here)'],
    ['["\\x"]', 1, 3, expect.stringContaining('invalid escape "\\x"')],
    ['["a\tb"]', 1, 4, expect.stringContaining('control character U+0009')],
  ])('refuses %j at %i:%i', (text, line, column, reason) => {
    expect(jsonError(text)).toMatchObject({ code: 'syntax', line, column, reason });
  });

  it('refuses duplicate keys and too deep nesting', () => {
    expect(jsonError('{"a": 1,\n "a": 2}')).toMatchObject({ code: 'duplicate-key', line: 2, column: 2 });
    expect(jsonError('['.repeat(100) + ']'.repeat(100))).toMatchObject({ code: 'syntax', reason: expect.stringContaining('nesting') });
  });

  it('counts columns after comments and CRLF line ends', () => {
    expect(jsonError('{\r\n  /* x\r\n y */ "a": 1 2\r\n}')).toMatchObject({ line: 3, column: 14 });
  });
});

const EXAMPLE = `{
  "groups": { "group:eng": ["alice", "bob@example.com"] },        // users; groups may not nest
  "tagOwners": { "tag:router": ["group:eng", "alice"], "tag:ci": [] },
  "hosts": { "vpc": "10.0.0.0/16", "db": "10.0.1.10" },
  "acls": [
    { "action": "accept", "src": ["group:eng", "tag:ci", "100.64.0.0/10", "db", "*", "alice"],
      "dst": ["tag:router:*", "vpc:80,443", "10.0.1.10:8000-8999", "[fd00::/8]:22", "alice:22", "*:*"],
      "proto": "tcp" },
  ],
  "autoApprovers": { "routes": { "10.0.0.0/16": ["tag:router", "group:eng"] } },
  "tests": [ { "src": "alice", "accept": ["10.0.1.10:80", "tag:router:22"], "deny": ["10.0.1.10:22"] } ],
}`;

describe('parsePolicy', () => {
  it('reads the example policy with every alias kind', () => {
    const p = parsePolicy(EXAMPLE);
    expect(p.groups.get('group:eng')).toEqual(['alice', 'bob@example.com']);
    expect(p.tagOwners.get('tag:ci')).toEqual([]);
    expect(p.tagOwners.get('tag:router')!.map((a) => a.kind)).toEqual(['group', 'user']);
    expect([...p.hosts]).toEqual([
      ['vpc', '10.0.0.0/16'],
      ['db', '10.0.1.10/32'],
    ]);
    const acl = p.acls[0];
    expect(acl.src.map((a) => a.kind)).toEqual(['group', 'tag', 'prefix', 'host', 'any', 'user']);
    expect(acl.src[3]).toEqual({ kind: 'host', text: 'db', prefix: '10.0.1.10/32' });
    expect(acl.dst.map((d) => [d.target.kind, d.target.text, d.ports])).toEqual([
      ['tag', 'tag:router', [[0, 65535]]],
      ['host', 'vpc', [[80, 80], [443, 443]]],
      ['prefix', '10.0.1.10', [[8000, 8999]]],
      ['prefix', 'fd00::/8', [[22, 22]]],
      ['user', 'alice', [[22, 22]]],
      ['any', '*', [[0, 65535]]],
    ]);
    expect(acl.protos).toEqual([6]);
    expect(p.autoApprovers.routes).toEqual([{ route: '10.0.0.0/16', approvers: [expect.objectContaining({ kind: 'tag' }), expect.objectContaining({ kind: 'group' })] }]);
    expect(p.tests[0]).toMatchObject({ src: { kind: 'user', text: 'alice' }, proto: 6, accept: [{ port: 80 }, { port: 22, target: { kind: 'tag' } }], deny: [{ port: 22 }] });
  });

  it('accepts the default policy and an empty one', () => {
    expect(parsePolicy(DEFAULT_POLICY_TEXT).acls).toHaveLength(1);
    expect(parsePolicy('{}')).toMatchObject({ acls: [], tests: [], autoApprovers: { routes: [] } });
  });

  it('reads port lists and ranges, merged', () => {
    const p = parsePolicy('{"acls":[{"action":"accept","src":["*"],"dst":["*:443,80,79-81,1000-2000,1500-2500"]}]}');
    expect(p.acls[0].dst[0].ports).toEqual([[79, 81], [443, 443], [1000, 2500]]);
  });

  it('reads IPv6 targets bracketed or not, and v4/v6 hosts', () => {
    const p = parsePolicy('{"hosts":{"v6":"fd00:1::/64"},"acls":[{"action":"accept","src":["fd7a::1","[fd00::/8]"],"dst":["[fd00::1]:22","fd00::2:80","fd00::/8:*","[::]:1","v6:53"]}]}');
    expect(p.acls[0].src.map((a) => ('prefix' in a ? a.prefix : ''))).toEqual(['fd7a::1/128', 'fd00::/8']);
    expect(p.acls[0].dst.map((d) => ('prefix' in d.target ? d.target.prefix : '') + ' ' + JSON.stringify(d.ports))).toEqual([
      'fd00::1/128 [[22,22]]',
      'fd00::2/128 [[80,80]]',
      'fd00::/8 [[0,65535]]',
      '::/128 [[1,1]]',
      'fd00:1::/64 [[53,53]]',
    ]);
  });

  it.each([
    ['"tcp"', [6]],
    ['"UDP"', [17]],
    ['"icmp"', [1]],
    ['"icmpv6"', [58]],
    ['"sctp"', [132]],
    ['47', [47]],
    ['"0"', [0]],
  ])('reads proto %s', (proto, want) => {
    const p = parsePolicy(`{"acls":[{"action":"accept","src":["*"],"dst":["*:*"],"proto":${proto}}]}`);
    expect(p.acls[0].protos).toEqual(want);
  });

  it('leaves proto null (tcp, udp, icmp, icmpv6) when omitted', () => {
    expect(parsePolicy('{"acls":[{"action":"accept","src":["*"],"dst":["*:22"]}]}').acls[0].protos).toBeNull();
  });

  const acl = (src: string, dst: string, extra = ''): string => `{\n  "acls": [\n    {"action": "accept", "src": [${src}], "dst": [${dst}]${extra}}\n  ]\n}`;

  it.each([
    // [policy, code, path, line, column]
    [acl('"10.0.1.300"', '"*:*"'), 'invalid-cidr', 'acls[0].src[0]', 3, 34],
    [acl('"*"', '"*:*", "10.0.0.0/33:80"'), 'invalid-cidr', 'acls[0].dst[1]', 3, 55],
    [acl('"10.0.1.10/16"', '"*:*"'), 'invalid-cidr', 'acls[0].src[0]', 3, 34],
    [acl('"group:ops"', '"*:*"'), 'unknown-group', 'acls[0].src[0]', 3, 34],
    [acl('"*"', '"tag:nope:22"'), 'unknown-tag', 'acls[0].dst[0]', 3, 48],
    [acl('"*"', '"tag:nope"'), 'invalid-dst', 'acls[0].dst[0]', 3, 48],
    [acl('"*"', '"10.0.0.1"'), 'invalid-dst', 'acls[0].dst[0]', 3, 48],
    [acl('"*"', '"*:70000"'), 'invalid-ports', 'acls[0].dst[0]', 3, 48],
    [acl('"*"', '"*:90-80"'), 'invalid-ports', 'acls[0].dst[0]', 3, 48],
    [acl('"*"', '"*:80,"'), 'invalid-ports', 'acls[0].dst[0]', 3, 48],
    [acl('"*"', '"*:*,80"'), 'invalid-ports', 'acls[0].dst[0]', 3, 48],
    [acl('"*"', '"*:http"'), 'invalid-ports', 'acls[0].dst[0]', 3, 48],
    [acl('"*"', '"*:*"', ', "proto": "gre"'), 'invalid-proto', 'acls[0].proto', 3, 65],
    [acl('"*"', '"*:*"', ', "proto": 256'), 'invalid-proto', 'acls[0].proto', 3, 65],
    [acl('"*"', '"*:*", "db:22"', ', "proto": "icmp"'), 'proto-ports', 'acls[0].dst[1]', 3, 55],
    [acl('"*"', '"*:*"', ', "ports": "22"'), 'unknown-field', 'acls[0].ports', 3, 56],
    [acl('"a b"', '"*:*"'), 'invalid-name', 'acls[0].src[0]', 3, 34],
    [acl('"autogroup:member"', '"*:*"'), 'invalid-cidr', 'acls[0].src[0]', 3, 34],
    [acl('5', '"*:*"'), 'type', 'acls[0].src[0]', 3, 34],
    ['{"acls": [{"action": "drop", "src": ["*"], "dst": ["*:*"]}]}', 'invalid-action', 'acls[0].action', 1, 22],
    ['{"acls": [{"action": "accept", "dst": ["*:*"]}]}', 'missing-field', 'acls[0]', 1, 11],
    ['{"acls": {}}', 'type', 'acls', 1, 10],
    ['{"acl": []}', 'unknown-field', 'acl', 1, 2],
    ['[]', 'type', '', 1, 1],
    ['{"groups": {"eng": []}}', 'invalid-name', 'groups.eng', 1, 13],
    ['{"groups": {"group:a": ["x"], "group:b": ["group:a"]}}', 'invalid-alias', 'groups["group:b"][0]', 1, 43],
    ['{"groups": {"group:a": ["tag:x"]}, "tagOwners": {"tag:x": []}}', 'invalid-alias', 'groups["group:a"][0]', 1, 25],
    ['{"groups": {"group:a": ["*"]}}', 'invalid-alias', 'groups["group:a"][0]', 1, 25],
    ['{"tagOwners": {"tag:a": ["group:none"]}}', 'unknown-group', 'tagOwners["tag:a"][0]', 1, 26],
    ['{"tagOwners": {"tag:a": ["tag:b"]}}', 'unknown-tag', 'tagOwners["tag:a"][0]', 1, 26],
    ['{"tagOwners": {"router": []}}', 'invalid-name', 'tagOwners.router', 1, 16],
    ['{"tagOwners": {"tag:a": ["*"]}}', 'invalid-alias', 'tagOwners["tag:a"][0]', 1, 26],
    ['{"hosts": {"db": "10.0.1"}}', 'invalid-cidr', 'hosts.db', 1, 18],
    ['{"hosts": {"1db": "10.0.1.1"}}', 'invalid-name', 'hosts["1db"]', 1, 12],
    ['{"autoApprovers": {"routes": {"10.0.0.0/33": ["alice"]}}}', 'invalid-cidr', 'autoApprovers.routes["10.0.0.0/33"]', 1, 31],
    ['{"autoApprovers": {"routes": {"10.0.0.0/8": ["tag:gone"]}}}', 'unknown-tag', 'autoApprovers.routes["10.0.0.0/8"][0]', 1, 46],
    ['{"autoApprovers": {"routes": {"10.0.0.0/8": ["10.0.0.1"]}}}', 'invalid-alias', 'autoApprovers.routes["10.0.0.0/8"][0]', 1, 46],
    ['{"autoApprovers": {"exitNode": []}}', 'unknown-field', 'autoApprovers.exitNode', 1, 20],
    ['{"tests": [{"src": "group:x", "accept": []}]}', 'unknown-group', 'tests[0].src', 1, 20],
    ['{"tests": [{"src": "*"}]}', 'invalid-alias', 'tests[0].src', 1, 20],
    ['{"tests": [{"src": "alice", "deny": ["db:1-2"]}]}', 'invalid-ports', 'tests[0].deny[0]', 1, 38],
    ['{"tests": [{"src": "alice", "accept": ["tag:x:22"]}]}', 'unknown-tag', 'tests[0].accept[0]', 1, 40],
    ['{"tests": [{"src": "alice", "accept": ["db"]}]}', 'invalid-dst', 'tests[0].accept[0]', 1, 40],
    ['{"tests": [{"accept": []}]}', 'missing-field', 'tests[0]', 1, 12],
  ])('refuses %j', (text, code, path, line, column) => {
    const e = policyError(text);
    expect({ code: e.code, path: e.path, line: e.line, column: e.column }).toEqual({ code, path, line, column });
    expect(e.message).toContain(`line ${line}, column ${column}`);
  });

  it('says what to write instead', () => {
    expect(policyError(acl('"10.0.1.10/16"', '"*:*"')).message).toBe('line 3, column 34: acls[0].src[0]: "10.0.1.10/16" has bits set past its prefix length; did you mean 10.0.0.0/16?');
    expect(policyError(acl('"group:ops"', '"*:*"')).reason).toBe('unknown group "group:ops"; define it under "groups"');
    expect(policyError(acl('"*"', '"tag:nope"')).reason).toBe('"tag:nope" needs ":ports" (e.g. "tag:nope:*" for all ports)');
    expect(policyError(acl('"*"', '"*:*", "db:22"', ', "proto": "icmp"')).reason).toBe('icmp has no ports; write "db:*"');
    expect(policyError('{"groups": {"group:a": ["x"], "group:b": ["group:a"]}}').reason).toBe('groups may not contain groups ("group:a"); list its users instead');
  });

  it('takes references to names defined later in the file', () => {
    const p = parsePolicy('{"acls":[{"action":"accept","src":["group:a","tag:t"],"dst":["h:1"]}],"tagOwners":{"tag:t":["group:a"]},"groups":{"group:a":["u"]},"hosts":{"h":"::1"}}');
    expect(p.acls[0].dst[0].target).toEqual({ kind: 'host', text: 'h', prefix: '::1/128' });
  });

  it('treats a bare name that is not a host as a user, and "@" names as users', () => {
    const p = parsePolicy('{"hosts":{"db":"10.0.0.1"},"acls":[{"action":"accept","src":["db","dbb","carol@example.com"],"dst":["dbb:22"]}]}');
    expect(p.acls[0].src.map((a) => a.kind)).toEqual(['host', 'user', 'user']);
    expect(p.acls[0].dst[0].target.kind).toBe('user');
  });

  it('deduplicates group members and sources', () => {
    const p = parsePolicy('{"groups":{"group:a":["u","u","v"]},"acls":[{"action":"accept","src":["u","u"],"dst":["*:*"]}]}');
    expect(p.groups.get('group:a')).toEqual(['u', 'v']);
    expect(p.acls[0].src).toHaveLength(1);
  });

  it('is safe with names like constructor and __proto__', () => {
    const p = parsePolicy('{"hosts":{"constructor":"10.0.0.1"},"acls":[{"action":"accept","src":["constructor","__proto__"],"dst":["*:*"]}]}');
    expect(p.hosts.get("constructor")).toBe('10.0.0.1/32');
    expect(p.acls[0].src.map((a) => a.kind)).toEqual(["host", "user"]);
  });
});
