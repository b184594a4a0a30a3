// `meshd status`: the versioned JSON shape, the health lines, and the table.
import { describe, expect, it } from 'vitest';
import { formatStatus } from '../../src/cli/node.js';
import { buildStatus, STATUS_SCHEMA, type PeerStatus, type StatusInput } from '../../src/node/status.js';

const NOW = 1_800_000_000_000;
const DAY = 86_400_000;

function peer(over: Partial<PeerStatus> = {}): PeerStatus {
  return {
    id: 2, name: 'db', publicKey: 'k2', addresses: ['100.64.0.2/32', 'fd7a:115c:a1e0::6440:2/128'], allowedIps: [], primaryRoutes: [],
    endpoints: ['192.0.2.2:41641'], online: true, lastSeen: NOW - 1_000, user: 'alice', tags: [], keyExpiry: null,
    endpoint: '192.0.2.2:41641', direct: true, lastHandshake: NOW - 30_000, rxBytes: 2048, txBytes: 4096, ...over,
  };
}

function input(over: Partial<StatusInput> = {}): StatusInput {
  return {
    state: 'running', loginServer: 'http://coord:8080', publicKey: 'k1', interface: 'meshd0', listenPort: 41641, datapath: 'native', lastError: null, lastContact: NOW,
    self: { id: 1, name: 'router', addresses: ['100.64.0.1/32', 'fd7a:115c:a1e0::6440:1/128'], user: null, tags: ['tag:router'], keyExpiry: NOW + 100 * DAY, authorized: true, routes: [] },
    netmapVersion: 7, settings: { advertiseRoutes: [], acceptRoutes: false, snatSubnetRoutes: true, advertiseTags: [] },
    routing: [], routingError: null, acceptedRoutes: [], packetFilter: [], drops: {}, filter: {}, peers: [peer()], ...over,
  };
}

describe('meshd status', () => {
  it('is versioned and healthy when all is well', () => {
    const s = buildStatus(input(), NOW);
    expect(s.schema).toBe(STATUS_SCHEMA);
    expect(s.health).toEqual([]);
  });

  it('says what needs attention', () => {
    const s = buildStatus(
      input({
        lastError: 'cannot reach http://coord:8080: ECONNREFUSED',
        routingError: 'cannot write /proc/sys/net/ipv4/ip_forward: EACCES',
        self: { ...input().self!, keyExpiry: NOW + 3 * DAY, routes: [{ prefix: '10.0.0.0/16', approved: false, primary: false }, { prefix: '10.1.0.0/16', approved: true, primary: false }] },
        peers: [peer(), peer({ name: 'web', lastHandshake: null }), peer({ name: 'old', lastHandshake: NOW - 10 * 60_000, online: false }), peer({ name: 'idle', lastHandshake: null, txBytes: 0 })],
      }),
      NOW,
    );
    expect(s.health).toEqual([
      'control server: cannot reach http://coord:8080: ECONNREFUSED',
      'subnet routing failed: cannot write /proc/sys/net/ipv4/ip_forward: EACCES',
      'node key expires in 3 days',
      'route 10.0.0.0/16 is pending approval: meshd admin routes approve 10.0.0.0/16',
      'route 10.1.0.0/16 is approved but another router is primary (standby)',
      'no handshake with web (never) though we send to it',
      'no handshake with old (not for 10 minutes) though we send to it; it is offline',
    ]);
    expect(buildStatus(input({ state: 'pending-approval' }), NOW).health).toEqual(['waiting for an admin: meshd admin nodes approve router']);
    expect(buildStatus(input({ self: { ...input().self!, keyExpiry: NOW - 1 } }), NOW).health).toEqual(['node key has expired: meshd up --authkey KEY']);
  });

  it('prints a table like tailscale status, then the health lines', () => {
    const text = formatStatus(
      buildStatus(input({ self: { ...input().self!, routes: [{ prefix: '10.0.0.0/16', approved: true, primary: true }] }, peers: [peer({ primaryRoutes: ['10.9.0.0/16'] }), peer({ name: 'gone', online: false, endpoint: null, lastSeen: NOW - 300_000, lastHandshake: null, rxBytes: 0, txBytes: 10 })] }), NOW),
      NOW,
    );
    const lines = text.trimEnd().split('\n');
    expect(lines[0].split(/\s{2,}/)).toEqual(['IP', 'NAME', 'OWNER', 'ENDPOINT', 'HANDSHAKE', 'RX/TX', 'ROUTES', 'STATUS']);
    expect(lines[1].split(/\s{2,}/)).toEqual(['100.64.0.1', 'router', 'tag:router', '-', '-', '-', '10.0.0.0/16', 'self']);
    expect(lines[2].split(/\s{2,}/)).toEqual(['100.64.0.2', 'db', 'alice', '192.0.2.2:41641 (direct)', '30s ago', '2.0 KiB/4.0 KiB', '10.9.0.0/16', 'online']);
    expect(lines[3].split(/\s{2,}/)).toEqual(['100.64.0.2', 'gone', 'alice', '-', '-', '0 B/10 B', '-', 'offline, seen 5m ago']);
    expect(lines[4]).toBe('# no handshake with gone (never) though we send to it; it is offline');
    expect(formatStatus(buildStatus(input({ state: 'stopped', self: null, peers: [] }), NOW), NOW)).toBe('state: stopped\nnot connected: run meshd up\n');
  });
});
