// A UDP endpoint (IP address and port) as the device sees it. The cookie of
// paper §5.4.7 is bound to the source address; `endpointBytes` is that
// address's canonical byte form (IP bytes then big-endian port).
import { isIPv6 } from 'node:net';
import { parseIp, unmap } from '../net/ipaddr.js';

export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

export function endpointKey(ep: Endpoint): string {
  return isIPv6(ep.address) ? `[${ep.address}]:${ep.port}` : `${ep.address}:${ep.port}`;
}

export function sameEndpoint(a: Endpoint | null, b: Endpoint | null): boolean {
  return a !== null && b !== null && a.port === b.port && a.address === b.address;
}

/** An IPv6 zone ("%eth0") is dropped; an IPv4-mapped address counts as its IPv4 address. */
export function endpointBytes(ep: Endpoint): Uint8Array {
  const zone = ep.address.indexOf('%');
  const addr = parseIp(zone < 0 ? ep.address : ep.address.slice(0, zone));
  if (addr === null) throw new TypeError(`not an IP address: ${ep.address}`);
  const ip = unmap(addr).bytes;
  const out = new Uint8Array(ip.length + 2);
  out.set(ip);
  out[ip.length] = ep.port >> 8;
  out[ip.length + 1] = ep.port & 0xff;
  return out;
}
