// rtnetlink adapter (RFC 3549; linux/rtnetlink.h, linux/if_addr.h) that
// configures meshd's TUN link: MTU, up/down, addresses, routes, deletion.
// A thin wrapper over the `netlink` npm package (RtNetlinkSocket). The
// netlink socket lives in the network namespace of the process that opens
// it, so a configurator always acts on the daemon's own namespace.
//
// Contract: adding what exists and removing what is missing succeed
// (desired-state callers can re-apply freely); every other failure is a
// SystemError naming the operation, e.g.
//   cannot add route 10.0.0.0/8 dev meshd0: No such device
import { createRequire } from 'node:module';
import { getSystemErrorMap } from 'node:util';
import type * as Netlink from 'netlink';
import { formatCidr, parseCidr, type IpPrefix } from '../net/ipaddr.js';

// ---------------------------------------------------------------- interface

export interface RouteOptions {
  /** Routing table id; default RT_TABLE_MAIN (254). */
  table?: number;
  /** Route priority (`ip route ... metric N`); default: the kernel's (0 for IPv4, 1024 for IPv6). */
  metric?: number;
}

export interface LinkConfigurator {
  linkIndex(name: string): Promise<number>;
  setMtu(name: string, mtu: number): Promise<void>;
  setUp(name: string, up: boolean): Promise<void>;
  /** `cidr` is the interface address with its prefix, e.g. 100.64.0.5/32 or fd7a::5/128. */
  addAddress(name: string, cidr: string): Promise<void>;
  removeAddress(name: string, cidr: string): Promise<void>;
  /** A device route (no gateway). Host bits of `cidr` are ignored, as WireGuard's AllowedIPs does. */
  addRoute(name: string, cidr: string, opts?: RouteOptions): Promise<void>;
  /** Removes the route on this link only; without `metric`, one route of any metric. */
  removeRoute(name: string, cidr: string, opts?: RouteOptions): Promise<void>;
  /**
   * Normalised CIDRs of the unicast routes on this link in the table (v4 then
   * v6), filtered by metric when given. Routes the kernel made itself (proto
   * kernel: an address's prefix route, fe80::/64) are not listed: they follow
   * the addresses and are not the caller's to manage.
   */
  listRoutes(name: string, opts?: RouteOptions): Promise<string[]>;
  /** Deleting a link that does not exist succeeds. */
  deleteLink(name: string): Promise<void>;
  /** Releases the netlink socket; later calls open a new one. */
  close(): void;
}

// ------------------------------------------------------------------- errors

/** glibc strerror texts for the errnos rtnetlink returns, as `ip` prints them. */
const ERRNO_TEXT: Record<string, string> = {
  EPERM: 'Operation not permitted',
  EACCES: 'Permission denied',
  ESRCH: 'No such process',
  ENOENT: 'No such file or directory',
  EEXIST: 'File exists',
  ENODEV: 'No such device',
  EINVAL: 'Invalid argument',
  ERANGE: 'Numerical result out of range',
  EBUSY: 'Device or resource busy',
  ENOMEM: 'Cannot allocate memory',
  ENOBUFS: 'No buffer space available',
  EOPNOTSUPP: 'Operation not supported',
  ENOTSUP: 'Operation not supported',
  EAFNOSUPPORT: 'Address family not supported by protocol',
  EADDRNOTAVAIL: 'Cannot assign requested address',
  ENETUNREACH: 'Network is unreachable',
  ETIMEDOUT: 'Connection timed out',
};

function errnoText(code: string): string {
  const known = ERRNO_TEXT[code];
  if (known) return known;
  for (const [name, text] of getSystemErrorMap().values()) {
    if (name === code) return text.charAt(0).toUpperCase() + text.slice(1);
  }
  return code;
}

/** The one error type of system configuration: a stable errno-style `code` and the operation that failed. */
export class SystemError extends Error {
  override readonly name = 'SystemError';
  readonly code: string;
  readonly operation: string;

  /** `operation` reads as "cannot add route 10.0.0.0/8 dev meshd0"; `detail` defaults to the errno's text. */
  constructor(code: string, operation: string, detail: string = errnoText(code), options?: { cause?: unknown }) {
    super(`${operation}: ${detail}`, options);
    this.code = code;
    this.operation = operation;
  }
}

/** Maps what the netlink package throws to an errno name. */
function errnoOf(err: unknown): string {
  if (err instanceof Error) {
    // NetlinkSocket.request rejects an NLMSG_ERROR with `Request rejected: ENODEV`.
    const rejected = /^Request rejected: (\S+)$/.exec(err.message);
    if (rejected) return rejected[1];
    if (err.message === 'Timeout has been reached') return 'ETIMEDOUT';
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return 'EIO';
}

function fail(operation: string, err: unknown): SystemError {
  if (err instanceof SystemError) return err;
  const code = errnoOf(err);
  const detail = code === 'EIO' && err instanceof Error ? err.message : errnoText(code);
  return new SystemError(code, operation, detail, { cause: err });
}

// ------------------------------------------------------------------- CIDRs

/** `addr[/prefix]` (no prefix: a host), host bits cleared when `mask`; EINVAL naming `operation` if it is not one. */
function cidrArgument(operation: string, text: string, mask: boolean): IpPrefix {
  const p = parseCidr(text.trim(), { allowBare: true, mask });
  if (!p.ok) throw new SystemError('EINVAL', operation, 'not an IPv4 or IPv6 CIDR');
  return p.value;
}

/** A route destination in canonical form (`10.1.2.3/8` → `10.0.0.0/8`), or undefined when not a CIDR. */
export function normaliseCidr(text: string): string | undefined {
  const p = parseCidr(text.trim(), { allowBare: true, mask: true });
  return p.ok ? formatCidr(p.value) : undefined;
}

// ------------------------------------------------------------ rtnetlink

/** Kernel constants (linux/netlink.h, linux/rtnetlink.h, linux/socket.h, linux/if_addr.h). */
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const AF_INET = 2;
const AF_INET6 = 10;
const RT_TABLE_UNSPEC = 0;
const RT_TABLE_MAIN = 254;
const RTPROT_KERNEL = 2;
const RTPROT_STATIC = 4;
const RT_SCOPE_UNIVERSE = 0;
const RT_SCOPE_LINK = 253;
const RT_SCOPE_NOWHERE = 255;
const RTN_UNICAST = 1;
const IFNAMSIZ = 16;

type RtSocket = Netlink.RtNetlinkSocket;
type RouteMessage = Netlink.rt.RouteMessage;

/** The package parses known enum values to their names; this reads either form as the number. */
function enumNumber(value: unknown, names: Record<string, number>): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value === 'string') return names[value];
  return undefined;
}

function checkName(operation: string, name: string): void {
  if (name.length === 0 || name.length >= IFNAMSIZ || /[\s/:]/.test(name)) {
    throw new SystemError('EINVAL', operation, `invalid interface name (1 to ${IFNAMSIZ - 1} characters, no spaces, '/' or ':')`);
  }
}

function checkTable(operation: string, opts: RouteOptions): void {
  const { table, metric } = opts;
  if (table !== undefined && !(Number.isInteger(table) && table > 0 && table <= 0xffffffff)) {
    throw new SystemError('EINVAL', operation, `invalid table ${table} (an integer 1 to 4294967295)`);
  }
  if (metric !== undefined && !(Number.isInteger(metric) && metric >= 0 && metric <= 0xffffffff)) {
    throw new SystemError('EINVAL', operation, `invalid metric ${metric} (an integer 0 to 4294967295)`);
  }
}

function routeSuffix(name: string, opts: RouteOptions): string {
  return `dev ${name}${opts.table !== undefined ? ` table ${opts.table}` : ''}${opts.metric !== undefined ? ` metric ${opts.metric}` : ''}`;
}

interface ParsedRoute {
  cidr: string;
  table: number;
  metric: number;
  oif: number | undefined;
  kernel: boolean;
  unicast: boolean;
}

function parseRoute(msg: RouteMessage): ParsedRoute {
  const family = msg.data.family === AF_INET6 ? 6 : 4;
  const bytes = msg.attrs.dst ? new Uint8Array(msg.attrs.dst) : new Uint8Array(family === 4 ? 4 : 16);
  return {
    cidr: formatCidr({ family, bytes, bits: msg.data.dstLen ?? 0 }),
    table: msg.attrs.table ?? msg.data.table ?? RT_TABLE_UNSPEC,
    metric: msg.attrs.priority ?? 0,
    oif: msg.attrs.oif,
    kernel: enumNumber(msg.data.protocol, { KERNEL: RTPROT_KERNEL }) === RTPROT_KERNEL,
    unicast: enumNumber(msg.data.type, { UNICAST: RTN_UNICAST }) === RTN_UNICAST,
  };
}

export interface LinkConfiguratorOptions {
  /** Per-request timeout for a kernel reply, in ms (default 5000). */
  timeoutMs?: number;
}

/** LinkConfigurator over one lazily opened NETLINK_ROUTE socket. */
class NetlinkConfigurator implements LinkConfigurator {
  private socket: RtSocket | undefined;
  private readonly timeoutMs: number;

  constructor(options: LinkConfiguratorOptions) {
    this.timeoutMs = options.timeoutMs ?? 5000;
  }

  /** Opens the socket on first use, so importing this module never loads the native addon. */
  private rt(operation: string): RtSocket {
    if (this.socket) return this.socket;
    let netlink: typeof Netlink;
    try {
      netlink = createRequire(import.meta.url)('netlink') as typeof Netlink;
    } catch (err) {
      throw new SystemError('ENOTSUP', operation, `the netlink package is not available (${(err as Error).message})`, { cause: err });
    }
    try {
      this.socket = netlink.createRtNetlink();
    } catch (err) {
      throw fail(operation, err);
    }
    return this.socket;
  }

  private options(flags = 0): { flags: number; timeout: number } {
    return { flags, timeout: this.timeoutMs };
  }

  /** Runs one request; errnos in `ok` mean "already in the desired state". */
  private async request(operation: string, ok: readonly string[], run: (s: RtSocket) => Promise<unknown>): Promise<void> {
    const socket = this.rt(operation);
    try {
      await run(socket);
    } catch (err) {
      if (ok.includes(errnoOf(err))) return;
      throw fail(operation, err);
    }
  }

  private async index(operation: string, name: string): Promise<number> {
    checkName(operation, name);
    const socket = this.rt(operation);
    try {
      const [link] = await socket.getLink({}, { ifname: name }, this.options());
      if (link?.data.index === undefined) throw new SystemError('ENODEV', operation);
      return link.data.index;
    } catch (err) {
      throw fail(operation, err);
    }
  }

  private async dumpRoutes(operation: string): Promise<ParsedRoute[]> {
    const socket = this.rt(operation);
    try {
      const v4 = await socket.getRoutes({ family: AF_INET }, {}, this.options());
      // A kernel booted with ipv6.disable=1 has no IPv6 routes to list.
      const v6 = await socket.getRoutes({ family: AF_INET6 }, {}, this.options()).catch((err: unknown) => {
        if (errnoOf(err) === 'EAFNOSUPPORT') return [];
        throw err;
      });
      return [...v4, ...v6].map(parseRoute);
    } catch (err) {
      throw fail(operation, err);
    }
  }

  linkIndex(name: string): Promise<number> {
    return this.index(`cannot look up link ${name}`, name);
  }

  async setMtu(name: string, mtu: number): Promise<void> {
    const operation = `cannot set mtu ${mtu} on ${name}`;
    checkName(operation, name);
    if (!Number.isInteger(mtu) || mtu <= 0 || mtu > 0xffff) throw new SystemError('EINVAL', operation, 'mtu must be an integer 1 to 65535');
    await this.request(operation, [], (s) => s.setLink({}, { ifname: name, mtu }, this.options()));
  }

  async setUp(name: string, up: boolean): Promise<void> {
    const operation = `cannot set ${name} ${up ? 'up' : 'down'}`;
    checkName(operation, name);
    await this.request(operation, [], (s) => s.setLink({ flags: up ? { up: true } : {}, change: { up: true } }, { ifname: name }, this.options()));
  }

  async addAddress(name: string, cidr: string): Promise<void> {
    const operation = `cannot add address ${cidr} to ${name}`;
    const addr = cidrArgument(operation, cidr, false);
    const index = await this.index(operation, name);
    const bytes = Buffer.from(addr.bytes);
    // IFA_F_NODAD: the coordination server hands out unique overlay addresses.
    const flags = addr.family === 6 ? { nodad: true as const } : {};
    await this.request(operation, ['EEXIST'], (s) =>
      s.newAddress(
        { family: addr.family === 4 ? AF_INET : AF_INET6, prefixlen: addr.bits, index, flags },
        { local: bytes, address: bytes },
        this.options(NLM_F_CREATE | NLM_F_EXCL),
      ),
    );
  }

  async removeAddress(name: string, cidr: string): Promise<void> {
    const operation = `cannot remove address ${cidr} from ${name}`;
    const addr = cidrArgument(operation, cidr, false);
    const index = await this.index(operation, name);
    const bytes = Buffer.from(addr.bytes);
    await this.request(operation, ['EADDRNOTAVAIL'], (s) =>
      s.delAddress({ family: addr.family === 4 ? AF_INET : AF_INET6, prefixlen: addr.bits, index }, { local: bytes, address: bytes }, this.options()),
    );
  }

  /** The rtmsg and attributes of a device route; tables above 255 go in RTA_TABLE only, as iproute2 does. */
  private route(index: number, dst: IpPrefix, opts: RouteOptions, forDelete: boolean): [Netlink.rt.Route, Netlink.rt.RouteAttrs] {
    const table = opts.table ?? RT_TABLE_MAIN;
    const v4 = dst.family === 4;
    const data: Netlink.rt.Route = {
      family: v4 ? AF_INET : AF_INET6,
      dstLen: dst.bits,
      table: table < 256 ? table : RT_TABLE_UNSPEC,
    };
    if (forDelete) {
      // RT_SCOPE_NOWHERE is the wildcard fib_table_delete matches any scope with.
      data.scope = RT_SCOPE_NOWHERE;
    } else {
      data.protocol = RTPROT_STATIC;
      data.scope = v4 ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
      data.type = RTN_UNICAST;
    }
    const attrs: Netlink.rt.RouteAttrs = { dst: Buffer.from(dst.bytes), oif: index, table };
    if (opts.metric !== undefined) attrs.priority = opts.metric;
    return [data, attrs];
  }

  async addRoute(name: string, cidr: string, opts: RouteOptions = {}): Promise<void> {
    const operation = `cannot add route ${cidr} ${routeSuffix(name, opts)}`;
    checkTable(operation, opts);
    const dst = cidrArgument(operation, cidr, true);
    const index = await this.index(operation, name);
    const [data, attrs] = this.route(index, dst, opts, false);
    let exists = false;
    await this.request(operation, [], async (s) => {
      try {
        await s.newRoute(data, attrs, this.options(NLM_F_CREATE | NLM_F_EXCL));
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw err;
        exists = true;
      }
    });
    if (!exists) return;
    // EEXIST matches on (table, dst, metric) whatever the device: it is ours only if it is on this link.
    const want = formatCidr(dst);
    const table = opts.table ?? RT_TABLE_MAIN;
    const routes = await this.dumpRoutes(operation);
    const mine = routes.some((r) => r.cidr === want && r.table === table && r.oif === index && (opts.metric === undefined || r.metric === opts.metric));
    if (!mine) throw new SystemError('EEXIST', operation, `a route to ${want} with this metric already exists on another device`);
  }

  async removeRoute(name: string, cidr: string, opts: RouteOptions = {}): Promise<void> {
    const operation = `cannot remove route ${cidr} ${routeSuffix(name, opts)}`;
    checkTable(operation, opts);
    const dst = cidrArgument(operation, cidr, true);
    const index = await this.index(operation, name);
    const [data, attrs] = this.route(index, dst, opts, true);
    await this.request(operation, ['ESRCH', 'ENOENT'], (s) => s.delRoute(data, attrs, this.options()));
  }

  async listRoutes(name: string, opts: RouteOptions = {}): Promise<string[]> {
    const operation = `cannot list routes ${routeSuffix(name, opts)}`;
    checkTable(operation, opts);
    const index = await this.index(operation, name);
    const table = opts.table ?? RT_TABLE_MAIN;
    const seen = new Set<string>();
    for (const r of await this.dumpRoutes(operation)) {
      if (r.oif !== index || r.table !== table || r.kernel || !r.unicast) continue;
      if (opts.metric !== undefined && r.metric !== opts.metric) continue;
      seen.add(r.cidr);
    }
    return [...seen];
  }

  async deleteLink(name: string): Promise<void> {
    const operation = `cannot delete link ${name}`;
    checkName(operation, name);
    await this.request(operation, ['ENODEV'], (s) => s.delLink({}, { ifname: name }, this.options()));
  }

  close(): void {
    const socket = this.socket;
    this.socket = undefined;
    socket?.socket.close();
  }
}

/** A LinkConfigurator acting on the calling process's network namespace. */
export function createLinkConfigurator(options: LinkConfiguratorOptions = {}): LinkConfigurator {
  return new NetlinkConfigurator(options);
}
