import { describe, expect, it } from 'vitest';
import { SystemError, normaliseCidr, type LinkConfigurator, type RouteOptions } from '../../src/system/netlink.js';
import { applyRoutes, diffRoutes } from '../../src/system/routes.js';

describe('normaliseCidr', () => {
  it.each([
    ['10.1.2.3/8', '10.0.0.0/8'],
    ['10.0.0.1', '10.0.0.1/32'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    [' 192.168.7.9/24 ', '192.168.7.0/24'],
    ['::/0', '::/0'],
    ['::', '::/128'],
    ['fd00::1/64', 'fd00::/64'],
    ['FD00:0:0:0:0:0:0:1/128', 'fd00::1/128'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1/128'], // first of two equal zero runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1/128'], // a single zero group stays
    ['2001:0:0:1:0:0:0:1/128', '2001:0:0:1::1/128'], // the longest run
    ['1:0::/16', '1::/16'],
    ['::ffff:1.2.3.4/128', '::ffff:1.2.3.4/128'], // IPv4-mapped stays dotted, as netip and ip(8) print it
    ['::1.2.3.4/128', '::102:304/128'], // IPv4-compatible does not
    ['fd7a:115c:a1e0:ab12:4843:cd96:6258:b240/10', 'fd40::/10'],
  ])('%s → %s', (input, want) => {
    expect(normaliseCidr(input)).toBe(want);
  });

  it.each(['', 'x', '10.0.0.0/33', '2001:db8::/129', '1.2.3.4/', '1.2.3.4/08', '1.2.3.4/-1', 'fe80::1%eth0', '10.0.0/8', '10.0.0.0/8/8'])(
    'rejects %j',
    (input) => {
      expect(normaliseCidr(input)).toBeUndefined();
    },
  );
});

describe('diffRoutes', () => {
  it('is empty when both sides hold the same routes, however spelled or ordered', () => {
    expect(diffRoutes(['10.0.0.0/8', 'fd00::/8'], ['FD00::/8', '10.9.9.9/8'])).toEqual({ add: [], remove: [] });
    expect(diffRoutes([], [])).toEqual({ add: [], remove: [] });
  });

  it('adds what is only desired and removes what is only current', () => {
    expect(diffRoutes(['10.0.0.0/8', 'fd00::/8', '192.168.1.0/24'], ['10.0.0.0/8', '100.64.0.0/10', 'fd7a:115c:a1e0::/48'])).toEqual({
      add: ['100.64.0.0/10', 'fd7a:115c:a1e0::/48'],
      remove: ['fd00::/8', '192.168.1.0/24'],
    });
  });

  it('returns normalised, de-duplicated CIDRs in first-seen order', () => {
    expect(diffRoutes(['10.1.0.0/16', '10.1.9.9/16'], ['100.64.0.1', '100.64.0.1/32', 'FD00::1'])).toEqual({
      add: ['100.64.0.1/32', 'fd00::1/128'],
      remove: ['10.1.0.0/16'],
    });
  });

  it('keeps the same prefix of different lengths apart, and v4 apart from v6', () => {
    expect(diffRoutes(['10.0.0.0/8', '::/0'], ['10.0.0.0/16', '0.0.0.0/0'])).toEqual({
      add: ['10.0.0.0/16', '0.0.0.0/0'],
      remove: ['10.0.0.0/8', '::/0'],
    });
  });

  it('names a bad entry in a typed error', () => {
    const err = (() => {
      try {
        diffRoutes(['10.0.0.0/8'], ['10.0.0.0/8', 'nonsense']);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(SystemError);
    expect(err).toMatchObject({ code: 'EINVAL', message: "cannot diff routes: desired route 'nonsense' is not an IPv4 or IPv6 CIDR" });
  });
});

/** The kernel's routing table as a LinkConfigurator would see it: link → table:metric → CIDRs. */
class FakeLinks implements LinkConfigurator {
  readonly calls: string[] = [];
  private readonly routes = new Map<string, Set<string>>();

  private key(name: string, opts: RouteOptions = {}): string {
    return `${name} ${opts.table ?? 254} ${opts.metric ?? 0}`;
  }
  async listRoutes(name: string, opts?: RouteOptions): Promise<string[]> {
    return [...(this.routes.get(this.key(name, opts)) ?? [])];
  }
  async addRoute(name: string, cidr: string, opts?: RouteOptions): Promise<void> {
    this.calls.push(`add ${cidr}`);
    const k = this.key(name, opts);
    this.routes.set(k, (this.routes.get(k) ?? new Set()).add(normaliseCidr(cidr)!));
  }
  async removeRoute(name: string, cidr: string, opts?: RouteOptions): Promise<void> {
    this.calls.push(`remove ${cidr}`);
    this.routes.get(this.key(name, opts))?.delete(normaliseCidr(cidr)!);
  }
  async linkIndex(): Promise<number> {
    return 7;
  }
  async setMtu(): Promise<void> {}
  async setUp(): Promise<void> {}
  async addAddress(): Promise<void> {}
  async removeAddress(): Promise<void> {}
  async deleteLink(): Promise<void> {}
  close(): void {}
}

describe('applyRoutes', () => {
  it('converges on the desired set, adding before removing, and re-applying does nothing', async () => {
    const links = new FakeLinks();
    const opts = { table: 51820, metric: 5 };
    expect(await applyRoutes(links, 'meshd0', ['100.64.0.0/10', 'fd7a:115c:a1e0::/48'], opts)).toEqual({
      add: ['100.64.0.0/10', 'fd7a:115c:a1e0::/48'],
      remove: [],
    });
    expect(await applyRoutes(links, 'meshd0', ['fd7a:115c:a1e0::/48', '100.64.0.0/10'], opts)).toEqual({ add: [], remove: [] });
    expect(links.calls).toEqual(['add 100.64.0.0/10', 'add fd7a:115c:a1e0::/48']);

    links.calls.length = 0;
    expect(await applyRoutes(links, 'meshd0', ['10.0.0.0/8'], opts)).toEqual({ add: ['10.0.0.0/8'], remove: ['100.64.0.0/10', 'fd7a:115c:a1e0::/48'] });
    expect(links.calls).toEqual(['add 10.0.0.0/8', 'remove 100.64.0.0/10', 'remove fd7a:115c:a1e0::/48']);
    expect(await links.listRoutes('meshd0', opts)).toEqual(['10.0.0.0/8']);
  });

  it('leaves other tables and metrics alone', async () => {
    const links = new FakeLinks();
    await links.addRoute('meshd0', '192.168.0.0/16');
    await links.addRoute('meshd0', '172.16.0.0/12', { table: 100 });
    await applyRoutes(links, 'meshd0', [], { table: 100, metric: 9 });
    expect(await links.listRoutes('meshd0')).toEqual(['192.168.0.0/16']);
    expect(await links.listRoutes('meshd0', { table: 100 })).toEqual(['172.16.0.0/12']);
  });

  it('stops at the first failure, and a retry resumes', async () => {
    const links = new FakeLinks();
    let failOnce = true;
    const flaky: LinkConfigurator = Object.assign(Object.create(links) as FakeLinks, {
      addRoute: async (name: string, cidr: string, opts?: RouteOptions) => {
        if (cidr === '10.2.0.0/16' && failOnce) {
          failOnce = false;
          throw new SystemError('ENOBUFS', `cannot add route ${cidr} dev ${name}`);
        }
        return links.addRoute(name, cidr, opts);
      },
    });
    await expect(applyRoutes(flaky, 'meshd0', ['10.1.0.0/16', '10.2.0.0/16', '10.3.0.0/16'])).rejects.toMatchObject({
      code: 'ENOBUFS',
      message: 'cannot add route 10.2.0.0/16 dev meshd0: No buffer space available',
    });
    expect(await applyRoutes(flaky, 'meshd0', ['10.1.0.0/16', '10.2.0.0/16', '10.3.0.0/16'])).toEqual({ add: ['10.2.0.0/16', '10.3.0.0/16'], remove: [] });
    expect(await links.listRoutes('meshd0')).toEqual(['10.1.0.0/16', '10.2.0.0/16', '10.3.0.0/16']);
  });
});
