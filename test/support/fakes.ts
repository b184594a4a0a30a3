// In-memory stand-ins for the UDP socket, the TUN device and the clock, so two
// (or more) devices run the whole protocol in one process, fast and without
// root — wireguard-go's device tests do the same.
import { Device, type Clock } from '../../src/device/device.js';
import type { Endpoint } from '../../src/device/endpoint.js';

export class FakeClock implements Clock {
  t = 1_000_000;
  wallBase = 1_700_000_000_000;
  now(): number {
    return this.t;
  }
  wall(): number {
    return this.wallBase + this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

export class FakeTun {
  readonly received: Uint8Array[] = [];
  refuse = false;
  write(packet: Uint8Array): boolean {
    if (this.refuse) return false;
    this.received.push(Uint8Array.prototype.slice.call(packet));
    return true;
  }
}

export interface Datagram {
  packet: Uint8Array;
  from: Endpoint;
  to: Endpoint;
}

const key = (e: Endpoint) => `${e.address}|${e.port}`;

/**
 * A lossless (unless told otherwise) datagram network. Sends are queued and
 * delivered by `run()`, which also drains each device's handshake backlog.
 */
export class FakeNetwork {
  private readonly hosts = new Map<string, Device>();
  readonly queue: Datagram[] = [];
  /** Every datagram ever sent, for tests that replay or inspect traffic. */
  readonly log: Datagram[] = [];
  /** Return false to lose a datagram in flight. */
  filter: (d: Datagram) => boolean = () => true;

  bindFor(self: () => Endpoint) {
    return {
      send: (packet: Uint8Array, to: Endpoint) => {
        const d = { packet: Uint8Array.prototype.slice.call(packet), from: self(), to };
        this.log.push(d);
        this.queue.push(d);
      },
    };
  }

  attach(ep: Endpoint, dev: Device): void {
    this.hosts.set(key(ep), dev);
  }

  detach(ep: Endpoint): void {
    this.hosts.delete(key(ep));
  }

  deliver(d: Datagram): void {
    const dev = this.hosts.get(key(d.to));
    if (dev) {
      // Each delivery is a fresh buffer, as from the kernel: the device decrypts in place.
      dev.receive(Uint8Array.prototype.slice.call(d.packet), d.from);
      dev.processHandshakes();
    }
  }

  /** Delivers until nothing is in flight; bounded so a ping-pong bug cannot hang a test. */
  run(maxDatagrams = 10_000): number {
    let n = 0;
    while (this.queue.length && n < maxDatagrams) {
      const d = this.queue.shift()!;
      n++;
      if (this.filter(d)) this.deliver(d);
    }
    if (this.queue.length) throw new Error(`network did not settle after ${maxDatagrams} datagrams`);
    return n;
  }
}

/** A minimal IPv4 packet (header + payload) from src to dst; checksums are not needed by the device. */
export function ipv4(src: string, dst: string, payload: Uint8Array | string = 'ping', proto = 17): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload);
  const p = Buffer.alloc(20 + body.length);
  p[0] = 0x45;
  p.writeUInt16BE(p.length, 2);
  p[8] = 64;
  p[9] = proto;
  Buffer.from(src.split('.').map(Number)).copy(p, 12);
  Buffer.from(dst.split('.').map(Number)).copy(p, 16);
  body.copy(p, 20);
  return p;
}

/** A minimal IPv6 packet; addresses given as full 8-group hex text. */
export function ipv6(src: string, dst: string, payload: Uint8Array | string = 'ping6', next = 17): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload);
  const p = Buffer.alloc(40 + body.length);
  p[0] = 0x60;
  p.writeUInt16BE(body.length, 4);
  p[6] = next;
  p[7] = 64;
  const put = (a: string, off: number) => a.split(':').forEach((g, i) => p.writeUInt16BE(parseInt(g, 16), off + i * 2));
  put(src, 8);
  put(dst, 24);
  body.copy(p, 40);
  return p;
}
