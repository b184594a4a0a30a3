// Routes as desired state: the routes a link should carry are computed
// elsewhere (netmap → config); here they are diffed against what the kernel
// has and the difference is applied. Re-applying the same set changes nothing.
import { SystemError, normaliseCidr, type LinkConfigurator, type RouteOptions } from './netlink.js';

export interface RouteDiff {
  /** Normalised CIDRs to add, in the order first desired. */
  add: string[];
  /** Normalised CIDRs to remove, in the order first listed. */
  remove: string[];
}

/** Normalised, de-duplicated CIDRs; throws SystemError EINVAL naming the first bad entry. */
function normaliseAll(cidrs: readonly string[], what: string): string[] {
  const out = new Set<string>();
  for (const text of cidrs) {
    const cidr = normaliseCidr(text);
    if (cidr === undefined) throw new SystemError('EINVAL', `cannot diff routes`, `${what} route '${text}' is not an IPv4 or IPv6 CIDR`);
    out.add(cidr);
  }
  return [...out];
}

/**
 * What turns `current` into `desired`. Both sides are normalised first
 * (`10.1.2.3/8` is `10.0.0.0/8`, `FD00:0::/8` is `fd00::/8`, a bare address
 * is a host route), so spelling differences are not changes.
 */
export function diffRoutes(current: readonly string[], desired: readonly string[]): RouteDiff {
  const have = normaliseAll(current, 'current');
  const want = normaliseAll(desired, 'desired');
  const haveSet = new Set(have);
  const wantSet = new Set(want);
  return {
    add: want.filter((c) => !haveSet.has(c)),
    remove: have.filter((c) => !wantSet.has(c)),
  };
}

/**
 * Makes the routes on `name` (in `opts.table`, at `opts.metric` when given)
 * exactly `desired`, and returns what it changed. New routes are added before
 * stale ones are removed, so a covering route never disappears first. Stops at
 * the first failure; as every step is idempotent, calling again resumes.
 */
export async function applyRoutes(cfg: LinkConfigurator, name: string, desired: readonly string[], opts: RouteOptions = {}): Promise<RouteDiff> {
  const diff = diffRoutes(await cfg.listRoutes(name, opts), desired);
  for (const cidr of diff.add) await cfg.addRoute(name, cidr, opts);
  for (const cidr of diff.remove) await cfg.removeRoute(name, cidr, opts);
  return diff;
}
