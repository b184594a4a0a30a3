// IP forwarding for a subnet router: on when the node starts routing, back
// to how it was when it stops. The sysctls are per network namespace, read and
// written through /proc/sys as the calling process sees it.
//
// Only what we changed is restored, and only if nobody changed it since: a
// host that already forwarded keeps forwarding after meshd goes down, and an
// administrator who turned forwarding off by hand meanwhile is not overruled.
//
// Beware what the kernel does on these writes (Documentation/networking/
// ip-sysctl.rst): writing ip_forward resets the per-interface IPv4 settings to
// their router/host defaults, and with IPv6 forwarding on, interfaces whose
// accept_ra is 1 stop accepting Router Advertisements (set accept_ra=2 on an
// uplink that gets its IPv6 default route from RAs).
import { readFile, writeFile } from 'node:fs/promises';
import { SystemError } from './netlink.js';

export interface ForwardingPaths {
  ipv4: string;
  ipv6: string;
}

export const FORWARDING_PATHS: Readonly<ForwardingPaths> = {
  ipv4: '/proc/sys/net/ipv4/ip_forward',
  ipv6: '/proc/sys/net/ipv6/conf/all/forwarding',
};

/** What enable() did to one family: turned it on, found it on, or (IPv6 only) found no IPv6 in this kernel. */
export type ForwardingChange = 'enabled' | 'already' | 'unavailable';

export interface ForwardingResult {
  ipv4: ForwardingChange;
  ipv6: ForwardingChange;
}

type Family = keyof ForwardingPaths;

const SYSCTL: Record<Family, string> = { ipv4: 'net.ipv4.ip_forward', ipv6: 'net.ipv6.conf.all.forwarding' };

function errnoOf(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : 'EIO';
}

function fail(operation: string, family: Family, err: unknown): SystemError {
  const code = errnoOf(err);
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    // EROFS: a container's /proc/sys mounted read-only.
    return new SystemError(
      code,
      operation,
      `not permitted (${code}): run meshd as root or with CAP_NET_ADMIN in a writable network namespace, or set ${SYSCTL[family]}=1 beforehand (sysctl -w), which meshd then leaves alone`,
      { cause: err },
    );
  }
  return new SystemError(code, operation, (err as Error).message, { cause: err });
}

/**
 * IPv4 and IPv6 forwarding, with memory of what they were. `paths` replaces
 * the /proc/sys files (tests use plain files).
 */
export class Forwarding {
  private readonly paths: ForwardingPaths;
  /** The value found before we wrote '1', per family we changed. */
  private readonly previous = new Map<Family, string>();

  constructor(paths: Partial<ForwardingPaths> = {}) {
    this.paths = { ...FORWARDING_PATHS, ...paths };
  }

  private async read(family: Family, operation: string): Promise<string | undefined> {
    try {
      return (await readFile(this.paths[family], 'utf8')).trim();
    } catch (err) {
      // A kernel booted with ipv6.disable=1 has no /proc/sys/net/ipv6.
      if (family === 'ipv6' && errnoOf(err) === 'ENOENT') return undefined;
      throw fail(operation, family, err);
    }
  }

  private async write(family: Family, value: string, operation: string): Promise<void> {
    try {
      await writeFile(this.paths[family], `${value}\n`);
    } catch (err) {
      throw fail(operation, family, err);
    }
  }

  private async enableOne(family: Family): Promise<ForwardingChange> {
    const operation = `cannot enable ${family === 'ipv4' ? 'IPv4' : 'IPv6'} forwarding (${this.paths[family]})`;
    const before = await this.read(family, operation);
    if (before === undefined) return 'unavailable';
    if (before === '1') return 'already';
    await this.write(family, '1', operation);
    // Remember the first value seen: a second enable() must not make '1' the one to restore.
    if (!this.previous.has(family)) this.previous.set(family, before);
    return 'enabled';
  }

  /**
   * Turns on IPv4 and IPv6 forwarding; writes nothing that is already on (so
   * an unprivileged daemon works where forwarding was set up for it).
   * Throws SystemError (EACCES/EPERM/EROFS with what to do) when not permitted;
   * IPv4 turned on before IPv6 failed is turned back off first.
   */
  async enable(): Promise<ForwardingResult> {
    const ipv4 = await this.enableOne('ipv4');
    try {
      const ipv6 = await this.enableOne('ipv6');
      return { ipv4, ipv6 };
    } catch (err) {
      if (ipv4 === 'enabled') await this.restore().catch(() => undefined);
      throw err;
    }
  }

  /** True while enable() has changed something restore() has not put back. */
  get changed(): boolean {
    return this.previous.size > 0;
  }

  /**
   * Puts back what enable() changed, where it still reads '1'. Tries both
   * families, then throws the first failure; a failed family stays
   * remembered, so calling again retries it.
   */
  async restore(): Promise<void> {
    let first: SystemError | undefined;
    for (const [family, value] of [...this.previous]) {
      const operation = `cannot restore ${family === 'ipv4' ? 'IPv4' : 'IPv6'} forwarding to ${value} (${this.paths[family]})`;
      try {
        if ((await this.read(family, operation)) === '1') await this.write(family, value, operation);
        this.previous.delete(family);
      } catch (err) {
        first ??= err instanceof SystemError ? err : fail(operation, family, err);
      }
    }
    if (first) throw first;
  }
}

/** A Forwarding on the real sysctls, enabled; call restore() on the way down. */
export async function enableForwarding(paths: Partial<ForwardingPaths> = {}): Promise<{ forwarding: Forwarding; result: ForwardingResult }> {
  const forwarding = new Forwarding(paths);
  return { forwarding, result: await forwarding.enable() };
}
