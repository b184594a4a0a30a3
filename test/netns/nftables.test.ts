// The subnet router's nftables table and forwarding sysctls against a real
// kernel, in throwaway network namespaces.
//
// nft acts on the network namespace it runs in, so the adapter is pointed at a
// wrapper (`ip netns exec NS nft "$@"`) through its `nft` option; the
// forwarding sysctls are per namespace too and are read by whoever opens
// /proc/sys, so src/system/forwarding.ts (as built into dist/ by the global
// setup) runs in a child started inside the router namespace. Effects are
// checked with nft, sysctl and real traffic, never with the adapter alone.
//
//   client (100.64.0.5, fd7a:115c:a1e0::5)
//     │ veth, standing in for the router's TUN: only its name matters to the rules
//   router (100.64.0.1 | 10.0.1.1, fd00:1::1)
//     │ veth, the "VPC" interface
//   vpc (10.0.1.10, fd00:1::10): a TCP listener that reports each peer's address
import { chmodSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyRuleset, currentRuleset, removeRuleset, renderRuleset, type RouterRules } from '../../src/system/nftables.js';
import { Lab, must, ping, run, waitFor, type Proc } from '../support/netns.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FORWARDING_JS = pathToFileURL(join(ROOT, 'dist', 'system', 'forwarding.js')).href;

const USER_TABLES = `
table inet userfw {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 2222 drop
	}
	chain forward {
		type filter hook forward priority 0; policy accept;
		tcp dport 2222 drop
	}
}
table ip usernat {
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		ip saddr 192.168.50.0/24 oifname "eth9" masquerade
	}
}
table ip meshd {
	chain keep {
		ip daddr 192.0.2.1 counter
	}
}
`;

/** A TCP listener on `ports` (IPv4 and IPv6) printing `peer <port> <address>` per connection; 'ready' once bound. */
const LISTENER = `
import selectors, signal, socket, sys
signal.alarm(120)
sel = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    for fam, addr in ((socket.AF_INET, '0.0.0.0'), (socket.AF_INET6, '::')):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port))
        s.listen(16)
        sel.register(s, selectors.EVENT_READ, port)
print('ready', flush=True)
while True:
    for key, _ in sel.select():
        conn, peer = key.fileobj.accept()
        print('peer', key.data, peer[0], flush=True)
        conn.settimeout(2)
        try:
            conn.sendall((peer[0] + '\\n').encode())
        finally:
            conn.close()
`;

/** Connects to argv[1]:argv[2] and prints what the listener says it saw as our address. */
const CONNECT = `
import socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
with socket.create_connection((addr, port), timeout=float(sys.argv[3])) as s:
    print(s.makefile().readline().strip())
`;

/** Enables forwarding in its namespace, prints the result; restores on SIGTERM. */
const FORWARDING_CHILD = `
const { Forwarding } = await import(process.argv[2]);
const f = new Forwarding();
const deadline = setTimeout(() => process.exit(2), 120000);
process.on('SIGTERM', () => {
  f.restore().then(
    () => { console.log('restored'); process.exit(0); },
    (e) => { console.log('restore failed: ' + e.message); process.exit(1); },
  );
});
try {
  console.log('enabled ' + JSON.stringify(await f.enable()));
} catch (e) {
  console.log('error ' + e.code + ' ' + e.message);
  clearTimeout(deadline);
  process.exit(1);
}
`;

/** The rule lines (not the chain headers) of a rendered script or a listing. */
function ruleLines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => / (accept|masquerade)$/.test(l));
}

describe.skipIf(process.getuid?.() !== 0)('nftables router rules in network namespaces', () => {
  let lab: Lab;

  beforeAll(() => {
    lab = new Lab();
  });

  afterAll(async () => {
    await lab?.cleanup();
  });

  /** An nft that runs inside `ns`, for the adapter's `nft` option. */
  function nftIn(ns: string): string {
    const path = lab.file(`nft-${ns}`, `#!/bin/sh\nexec ip netns exec ${ns} nft "$@"\n`);
    chmodSync(path, 0o700);
    return path;
  }

  const list = (ns: string, ...what: string[]) => must(ns, 'nft', ['list', ...what]);

  it("replaces only its own table, idempotently, and leaves the user's tables byte-identical", async () => {
    const ns = await lab.netns();
    const nft = nftIn(ns);
    await must(ns, 'nft', ['-f', lab.file(`user-${ns}.nft`, USER_TABLES)]);
    const before = {
      ruleset: await list(ns, 'ruleset'),
      userfw: await list(ns, 'table', 'inet', 'userfw'),
      usernat: await list(ns, 'table', 'ip', 'usernat'),
      ipMeshd: await list(ns, 'table', 'ip', 'meshd'),
    };
    const userUnchanged = async () => {
      expect(await list(ns, 'table', 'inet', 'userfw')).toBe(before.userfw);
      expect(await list(ns, 'table', 'ip', 'usernat')).toBe(before.usernat);
      // Same name, other family: not ours.
      expect(await list(ns, 'table', 'ip', 'meshd')).toBe(before.ipMeshd);
    };
    expect(await currentRuleset('meshd', { nft })).toBeNull();

    const first: RouterRules = { tun: 'meshd0', routes: ['10.0.0.0/16', 'fd00:10::/64'], snat: true };
    await applyRuleset(first, { nft });
    const listing = await currentRuleset('meshd', { nft });
    expect(listing).toBe(await list(ns, 'table', 'inet', 'meshd'));
    expect(listing).toContain('chain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n');
    expect(listing).toContain('chain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n');
    expect(ruleLines(listing!)).toEqual(ruleLines(renderRuleset(first)));
    expect(ruleLines(listing!)).toEqual([
      'iifname "meshd0" ip daddr 10.0.0.0/16 accept',
      'iifname "meshd0" ip6 daddr fd00:10::/64 accept',
      'oifname "meshd0" ct state established,related accept',
      'oifname "meshd0" ip saddr 10.0.0.0/16 ip daddr 100.64.0.0/10 accept',
      'oifname "meshd0" ip6 saddr fd00:10::/64 ip6 daddr fd7a:115c:a1e0::/48 accept',
      'ip saddr 100.64.0.0/10 oifname != "meshd0" masquerade',
      'ip6 saddr fd7a:115c:a1e0::/48 oifname != "meshd0" masquerade',
    ]);
    await userUnchanged();

    // Again: the same table, no duplicate rules.
    await applyRuleset(first, { nft });
    await applyRuleset(first, { nft });
    expect(await currentRuleset('meshd', { nft })).toBe(listing);
    expect((await list(ns, 'tables')).split('\n').filter((l) => l === 'table inet meshd')).toHaveLength(1);
    await userUnchanged();

    // Other rules replace ours, nothing accumulates; SNAT off drops the nat chain.
    const second: RouterRules = { tun: 'meshd1', routes: ['10.2.0.0/16'], snat: false };
    await applyRuleset(second, { nft });
    const replaced = (await currentRuleset('meshd', { nft }))!;
    expect(ruleLines(replaced)).toEqual([
      'iifname "meshd1" ip daddr 10.2.0.0/16 accept',
      'oifname "meshd1" ct state established,related accept',
      'oifname "meshd1" ip saddr 10.2.0.0/16 ip daddr 100.64.0.0/10 accept',
    ]);
    expect(replaced).not.toContain('postrouting');
    expect(replaced).not.toContain('meshd0');
    await userUnchanged();

    // Gone, and everything else exactly as it was; removing again is no error.
    await removeRuleset('meshd', { nft });
    expect(await currentRuleset('meshd', { nft })).toBeNull();
    expect(await list(ns, 'ruleset')).toBe(before.ruleset);
    await removeRuleset('meshd', { nft });
    expect(await list(ns, 'ruleset')).toBe(before.ruleset);
    await userUnchanged();
  });

  it('a rejected script changes nothing (one transaction)', async () => {
    const ns = await lab.netns();
    const nft = nftIn(ns);
    await applyRuleset({ tun: 'meshd0', routes: ['10.0.0.0/16'], snat: true }, { nft });
    const listing = await currentRuleset('meshd', { nft });
    // Our script with a bad last line, as a failing nft transaction would be.
    const script = renderRuleset({ tun: 'meshd0', routes: ['10.9.0.0/16'], snat: false }) + 'add rule inet meshd nosuchchain accept\n';
    const r = await run(ns, 'nft', ['-f', lab.file(`bad-${ns}.nft`, script)]);
    expect(r.code).not.toBe(0);
    expect(await currentRuleset('meshd', { nft })).toBe(listing);

    // Without CAP_NET_ADMIN the kernel refuses; the adapter says so, with nft's message, and nothing changes.
    const unprivileged = lab.file(`nft-nobody-${ns}`, `#!/bin/sh\nexec ip netns exec ${ns} setpriv --reuid=65534 --regid=65534 --clear-groups nft "$@"\n`);
    chmodSync(unprivileged, 0o700);
    const err = await applyRuleset({ tun: 'meshd0', routes: ['10.9.0.0/16'], snat: false }, { nft: unprivileged }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'SystemError', code: 'EPERM', operation: 'cannot apply nftables table inet meshd' });
    expect((err as Error).message).toMatch(/Operation not permitted.*\(nftables needs root or CAP_NET_ADMIN\)$/s);
    expect(await currentRuleset('meshd', { nft })).toBe(listing);
    await removeRuleset('meshd', { nft });
  });

  it('forwards client → vpc: masqueraded with SNAT, the overlay source without; user drops still apply', async () => {
    const client = await lab.netns();
    const router = await lab.netns();
    const vpc = await lab.netns();
    const [clientDev, tun] = await lab.veth(client, router);
    const [routerVpc, vpcDev] = await lab.veth(router, vpc);
    const nft = nftIn(router);

    await must(client, 'ip', ['addr', 'add', '100.64.0.5/10', 'dev', clientDev]);
    await must(client, 'ip', ['-6', 'addr', 'add', 'fd7a:115c:a1e0::5/48', 'dev', clientDev, 'nodad']);
    await must(router, 'ip', ['addr', 'add', '100.64.0.1/10', 'dev', tun]);
    await must(router, 'ip', ['-6', 'addr', 'add', 'fd7a:115c:a1e0::1/48', 'dev', tun, 'nodad']);
    await must(client, 'ip', ['route', 'add', '10.0.1.0/24', 'via', '100.64.0.1']);
    await must(client, 'ip', ['-6', 'route', 'add', 'fd00:1::/64', 'via', 'fd7a:115c:a1e0::1']);
    await must(router, 'ip', ['addr', 'add', '10.0.1.1/24', 'dev', routerVpc]);
    await must(router, 'ip', ['-6', 'addr', 'add', 'fd00:1::1/64', 'dev', routerVpc, 'nodad']);
    await must(vpc, 'ip', ['addr', 'add', '10.0.1.10/24', 'dev', vpcDev]);
    await must(vpc, 'ip', ['-6', 'addr', 'add', 'fd00:1::10/64', 'dev', vpcDev, 'nodad']);
    // The user's own firewall on the router drops forwarded TCP to port 2222.
    await must(router, 'nft', ['-f', lab.file(`user-${router}.nft`, USER_TABLES)]);

    // Forwarding through the module, in the router's namespace.
    const sysctl = async (key: string) => (await must(router, 'sysctl', ['-n', key])).trim();
    expect([await sysctl('net.ipv4.ip_forward'), await sysctl('net.ipv6.conf.all.forwarding')]).toEqual(['0', '0']);
    const fwd: Proc = lab.spawn(router, process.execPath, [lab.file('forwarding-child.mjs', FORWARDING_CHILD), FORWARDING_JS], { label: 'forwarding child' });
    await waitFor('forwarding to be enabled', () => {
      if (fwd.hasExited) throw new Error(`forwarding child exited: ${fwd.output}`);
      return fwd.lines.some((l) => l.startsWith('enabled '));
    });
    expect(fwd.lines).toContain('enabled {"ipv4":"enabled","ipv6":"enabled"}');
    expect([await sysctl('net.ipv4.ip_forward'), await sysctl('net.ipv6.conf.all.forwarding')]).toEqual(['1', '1']);

    const listener = lab.spawn(vpc, 'python3', ['-u', '-c', LISTENER, '8080', '2222'], { label: 'listener [vpc]' });
    await waitFor('the vpc listener', () => {
      if (listener.hasExited) throw new Error(`listener exited: ${listener.output}`);
      return listener.lines.includes('ready');
    });
    /** The source address the vpc host saw for a TCP connection from the client, or null if it failed. */
    const connect = async (address: string, port: number, timeoutS = 5): Promise<string | null> => {
      const r = await run(client, 'python3', ['-c', CONNECT, address, String(port), String(timeoutS)], { timeoutMs: (timeoutS + 5) * 1000 });
      return r.code === 0 ? r.stdout.trim() : null;
    };
    const peersSeen = (port: number) => listener.lines.filter((l) => l.startsWith(`peer ${port} `)).map((l) => l.split(' ')[2]);

    try {
      // SNAT on, and the vpc has no route to the overlay: replies only come back de-NATed.
      await applyRuleset({ tun, routes: ['10.0.1.0/24', 'fd00:1::/64'], snat: true }, { nft });
      expect(await connect('10.0.1.10', 8080)).toBe('10.0.1.1');
      expect(await connect('fd00:1::10', 8080)).toBe('fd00:1::1');
      expect(peersSeen(8080)).toEqual(['10.0.1.1', 'fd00:1::1']);
      const p = await ping(client, '10.0.1.10', { count: 2, waitS: 2 });
      expect(p.received, p.output).toBe(2);
      // Our accepts do not override the user's drop in their own table.
      expect(await connect('10.0.1.10', 2222, 1)).toBeNull();
      expect(peersSeen(2222)).toEqual([]);

      // SNAT off: the vpc sees the overlay source and routes replies back via the router.
      await applyRuleset({ tun, routes: ['10.0.1.0/24', 'fd00:1::/64'], snat: false }, { nft });
      await must(vpc, 'ip', ['route', 'add', '100.64.0.0/10', 'via', '10.0.1.1']);
      await must(vpc, 'ip', ['-6', 'route', 'add', 'fd7a:115c:a1e0::/48', 'via', 'fd00:1::1']);
      expect(await connect('10.0.1.10', 8080)).toBe('100.64.0.5');
      expect(await connect('fd00:1::10', 8080)).toBe('fd7a:115c:a1e0::5');
      expect(peersSeen(8080)).toEqual(['10.0.1.1', 'fd00:1::1', '100.64.0.5', 'fd7a:115c:a1e0::5']);

      await removeRuleset('meshd', { nft });
      expect(await currentRuleset('meshd', { nft })).toBeNull();
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${lab.report()}\n${await run(router, 'nft', ['list', 'ruleset']).then((r) => r.stdout)}`, { cause: err });
    }

    // Down: forwarding back to what it was.
    await fwd.stop();
    expect(fwd.lines).toContain('restored');
    expect([await sysctl('net.ipv4.ip_forward'), await sysctl('net.ipv6.conf.all.forwarding')]).toEqual(['0', '0']);
  });
});
