// `meshd ping`: an ICMP echo through the mesh made by the daemon itself, so
// no raw socket or system ping is needed. The request enters the device as
// if the TUN had sent it (so it takes the real path: allowed-IPs lookup,
// session, endpoint); the reply is taken out of the inbound path before it
// reaches the kernel. IPv4 and ICMP per RFC 791 / RFC 792.
import { randomInt } from 'node:crypto';

const ICMP_ECHO_REPLY = 0;
const ICMP_ECHO_REQUEST = 8;
const HEADER = 20;

function checksum(b: Uint8Array, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i < end; i += 2) sum += (b[i] << 8) | (i + 1 < end ? b[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function v4(text: string): number[] {
  return text.split('.').map(Number);
}

/** An IPv4 ICMP echo request from `src` to `dst` with 32 bytes of payload. */
export function echoRequest(src: string, dst: string, id: number, seq: number): Uint8Array {
  const p = new Uint8Array(HEADER + 8 + 32);
  p[0] = 0x45;
  p[2] = p.length >> 8;
  p[3] = p.length & 0xff;
  p[8] = 64; // TTL
  p[9] = 1; // ICMP
  p.set(v4(src), 12);
  p.set(v4(dst), 16);
  const c = checksum(p, 0, HEADER);
  p[10] = c >> 8;
  p[11] = c & 0xff;
  p[HEADER] = ICMP_ECHO_REQUEST;
  p[HEADER + 4] = id >> 8;
  p[HEADER + 5] = id & 0xff;
  p[HEADER + 6] = seq >> 8;
  p[HEADER + 7] = seq & 0xff;
  for (let i = 0; i < 32; i++) p[HEADER + 8 + i] = 0x61 + (i % 23);
  const ic = checksum(p, HEADER, p.length);
  p[HEADER + 2] = ic >> 8;
  p[HEADER + 3] = ic & 0xff;
  return p;
}

/** The id and sequence of an IPv4 echo reply, or null for any other packet. */
export function echoReply(p: Uint8Array): { id: number; seq: number; from: string } | null {
  if (p.length < HEADER + 8 || p[0] >> 4 !== 4 || p[9] !== 1) return null;
  const ihl = (p[0] & 0x0f) * 4;
  if (p.length < ihl + 8 || p[ihl] !== ICMP_ECHO_REPLY) return null;
  return { id: (p[ihl + 4] << 8) | p[ihl + 5], seq: (p[ihl + 6] << 8) | p[ihl + 7], from: `${p[12]}.${p[13]}.${p[14]}.${p[15]}` };
}

interface Pending {
  id: number;
  resolve: (rtt: number) => void;
  sent: number;
}

/** Outstanding pings of this daemon; `intercept` sees every inbound packet first. */
export class Pinger {
  private readonly pending = new Map<number, Pending>();

  get active(): boolean {
    return this.pending.size > 0;
  }

  /** True when `p` answered one of our pings (and must not reach the kernel). */
  intercept(p: Uint8Array): boolean {
    if (this.pending.size === 0) return false;
    const r = echoReply(p);
    if (!r) return false;
    const w = this.pending.get(r.id);
    if (!w) return false;
    this.pending.delete(r.id);
    w.resolve(performance.now() - w.sent);
    return true;
  }

  /** RTT in ms, or null after `timeoutMs`. `send` injects the request into the device. */
  once(src: string, dst: string, seq: number, timeoutMs: number, send: (p: Uint8Array) => void): Promise<number | null> {
    let id = randomInt(1, 0xffff);
    while (this.pending.has(id)) id = (id % 0xfffe) + 1;
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        resolve(null);
      }, timeoutMs);
      this.pending.set(id, {
        id,
        sent: performance.now(),
        resolve: (rtt) => {
          clearTimeout(t);
          resolve(rtt);
        },
      });
      send(echoRequest(src, dst, id, seq));
    });
  }
}
