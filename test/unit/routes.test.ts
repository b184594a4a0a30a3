// Server-side subnet routes: what may be advertised, and which router is
// primary when several advertise one prefix.
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../src/server/http.js';
import { canonicalRoute, electPrimaries, parseHostinfo, routeView } from '../../src/server/routes.js';
import type { RouteRecord } from '../../src/server/store.js';

const route = (id: number, nodeId: number, prefix: string, approved = true, advertised = true): RouteRecord => ({ id, nodeId, prefix, approved, advertised, createdAt: 0 });

describe('canonicalRoute', () => {
  it('accepts canonical v4 and v6 prefixes', () => {
    expect(canonicalRoute('10.0.0.0/16')).toBe('10.0.0.0/16');
    expect(canonicalRoute('fd00:1::/64')).toBe('fd00:1::/64');
    expect(canonicalRoute('192.0.2.7/32')).toBe('192.0.2.7/32');
  });
  it.each([
    ['10.0.0.1/16', /host bits set; did you mean 10\.0\.0\.0\/16/],
    ['10.0.0.0', /not a CIDR/],
    ['10.0.0.0/40', /not a CIDR/],
    ['0.0.0.0/0', /exit nodes/],
    ['::/0', /exit nodes/],
    ['100.64.0.0/10', /overlaps the mesh/],
    ['100.100.0.0/16', /overlaps the mesh/],
    ['100.0.0.0/8', /overlaps the mesh/],
    ['fd7a:115c:a1e0::/64', /overlaps the mesh/],
  ])('refuses %s', (text, why) => {
    expect(() => canonicalRoute(text)).toThrow(ApiError);
    expect(() => canonicalRoute(text)).toThrow(why);
  });
});

describe('parseHostinfo', () => {
  it('is optional, sorts and de-duplicates', () => {
    expect(parseHostinfo({})).toBeNull();
    expect(parseHostinfo({ hostinfo: { advertiseRoutes: ['10.1.0.0/16', '10.0.0.0/16', '10.1.0.0/16'], advertiseTags: ['tag:b', 'tag:a'] } })).toEqual({
      advertiseRoutes: ['10.0.0.0/16', '10.1.0.0/16'],
      advertiseTags: ['tag:a', 'tag:b'],
    });
  });
  it('refuses bad shapes, tags and too many routes', () => {
    expect(() => parseHostinfo({ hostinfo: 'x' })).toThrow(/object/);
    expect(() => parseHostinfo({ hostinfo: { advertiseTags: ['router'] } })).toThrow(/tag:name/);
    expect(() => parseHostinfo({ hostinfo: { advertiseRoutes: Array.from({ length: 65 }, (_, i) => `10.${i}.0.0/16`) } })).toThrow(/at most 64/);
  });
});

describe('electPrimaries', () => {
  it('makes the lowest active node id primary and the others standby', () => {
    const routes = [route(1, 7, '10.0.0.0/16'), route(2, 3, '10.0.0.0/16'), route(3, 5, '10.0.0.0/16'), route(4, 5, '10.9.0.0/16')];
    const t = electPrimaries(routes, () => true);
    expect(t.primaries).toEqual(new Map([[3, ['10.0.0.0/16']], [5, ['10.9.0.0/16']]]));
    expect(t.byNode.get(7)).toEqual([{ prefix: '10.0.0.0/16', approved: true, primary: false }]);
    const names = (id: number) => `n${id}`;
    expect(routes.map((r) => routeView(r, t, names).state)).toEqual(['standby', 'primary', 'standby', 'primary']);
    // The same input in another order elects the same routers.
    expect(electPrimaries([...routes].reverse(), () => true).primaries).toEqual(t.primaries);
  });
  it('skips unapproved, withdrawn and inactive routers', () => {
    const routes = [route(1, 1, '10.0.0.0/16', false), route(2, 2, '10.0.0.0/16', true, false), route(3, 3, '10.0.0.0/16'), route(4, 4, '10.0.0.0/16')];
    const t = electPrimaries(routes, (id) => id !== 3);
    expect(t.primaries).toEqual(new Map([[4, ['10.0.0.0/16']]]));
    expect(routes.map((r) => routeView(r, t, String).state)).toEqual(['pending', 'withdrawn', 'standby', 'primary']);
    expect(t.byNode.has(2)).toBe(false);
  });
});
