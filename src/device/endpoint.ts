// A UDP endpoint (IP address and port) as the device sees it. The cookie of
// paper §5.4.7 is bound to the source address; `endpointBytes` is that
// address's canonical byte form (IP bytes then big-endian port).
import { isIPv4, isIPv6 } from 'node:net';

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

/** IPv4 or IPv6 text to bytes (4 or 16); IPv4-mapped IPv6 becomes 4 bytes. */
export function ipToBytes(address: string): Uint8Array {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) address = mapped[1];
  if (isIPv4(address)) return Uint8Array.from(address.split('.').map(Number));
  if (!isIPv6(address)) throw new TypeError(`not an IP address: ${address}`);
  const zone = address.indexOf('%');
  if (zone >= 0) address = address.slice(0, zone);
  let [head, tail] = address.includes('::') ? address.split('::') : [address, null];
  const parse = (s: string): number[] => {
    if (!s) return [];
    const out: number[] = [];
    for (const part of s.split(':')) {
      if (part.includes('.')) {
        const v4 = part.split('.').map(Number);
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else out.push(parseInt(part, 16));
    }
    return out;
  };
  const h = parse(head);
  const t = tail === null ? [] : parse(tail);
  const words = tail === null ? h : [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    bytes[i * 2] = words[i] >> 8;
    bytes[i * 2 + 1] = words[i] & 0xff;
  }
  return bytes;
}

export function endpointBytes(ep: Endpoint): Uint8Array {
  const ip = ipToBytes(ep.address);
  const out = new Uint8Array(ip.length + 2);
  out.set(ip);
  out[ip.length] = ep.port >> 8;
  out[ip.length + 1] = ep.port & 0xff;
  return out;
}
