// The native TUN addon (src/io/tun.ts over native/src) against a real kernel.
//
// This process opens the TUN device and keeps its fd; the interface itself is then moved
// into a throwaway network namespace (`ip link set ... netns`), which a TUN allows: the fd
// stays bound to the device wherever the interface lives. All traffic is made inside the
// namespace by `ip netns exec NS ...` children, so nothing touches the host's routes.
// Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking) and are private to NS anyway.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TunDevice, TunError, nativeAddonPath, type PacketBatch } from '../../src/io/tun.js';
import { ip, tryIp } from '../support/ip.js';

const NS = `mtun-${process.pid}-${randomBytes(3).toString('hex')}`;
const TUN_ADDR = '198.18.0.1'; // the namespace's side of the TUN
const PEER_ADDR = '198.18.0.2'; // "the other end": packets to it come out of our fd
const SMALL_TUN_ADDR = '198.18.0.5'; // second device, tiny slots
const SMALL_PEER_ADDR = '198.18.0.6';
const WAIT_MS = 5_000;
const IPPROTO_ICMP = 1;
const IPPROTO_UDP = 17;

const devices = new Set<TunDevice>();
const children = new Set<ChildProcess>();
const rootLinks = new Set<string>(); // names that may exist in the root namespace


/** "mt" + 8 hex digits: 10 bytes, well under the 15-byte limit. */
function uniqueName(): string {
  return `mt${randomBytes(4).toString('hex')}`;
}

function openTracked(name: string, opts?: Parameters<typeof TunDevice.open>[1]): TunDevice {
  rootLinks.add(name);
  const dev = TunDevice.open(name, opts);
  devices.add(dev);
  return dev;
}

/** Opens a TUN here and moves its interface into NS with `addr`/30, up. */
function openInNamespace(addr: string, opts?: Parameters<typeof TunDevice.open>[1]): TunDevice {
  const dev = openTracked(uniqueName(), opts);
  ip('link', 'set', 'dev', dev.name, 'netns', NS);
  rootLinks.delete(dev.name);
  ip('-n', NS, 'addr', 'add', `${addr}/30`, 'dev', dev.name);
  ip('-n', NS, 'link', 'set', 'dev', dev.name, 'up');
  return dev;
}

async function waitFor(what: string, done: () => boolean, ms = WAIT_MS): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

interface Running {
  child: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
}

/** Starts `command` inside NS without blocking this event loop (our reader must keep
 * running); stdout lines are collected; killed after 15 s at the latest. */
function spawnInNamespace(...command: string[]): Running {
  const child = spawn('ip', ['netns', 'exec', NS, ...command], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const lines: string[] = [];
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(killer);
      if (partial !== '') lines.push(partial);
      resolve(code);
    }),
  );
  return { child, lines, exited };
}

function nodeInNamespace(script: string, ...args: string[]): Running {
  return spawnInNamespace(process.execPath, '--input-type=module', '-e', script, ...args);
}

/** Runs a node script inside NS to completion, blocking: only for traffic that may queue
 * in the TUN until we read it. */
function nodeInNamespaceSync(script: string, ...args: string[]): void {
  execFileSync('ip', ['netns', 'exec', NS, process.execPath, '--input-type=module', '-e', script, ...args], {
    stdio: 'inherit',
    timeout: 10_000,
  });
}

// UDP from the namespace: `count` datagrams "meshd-<i>" (padded to `size` bytes when given)
// to addr:port, then exit.
const UDP_SENDER = `
import dgram from 'node:dgram';
const [addr, port, count, size] = process.argv.slice(1);
const socket = dgram.createSocket('udp4');
let acked = 0;
for (let i = 0; i < Number(count); i++) {
  const label = Buffer.from('meshd-' + i);
  const payload = size === undefined ? label : Buffer.alloc(Number(size), 0x61);
  if (payload !== label) label.copy(payload, 0, 0, Math.min(label.length, payload.length));
  socket.send(payload, Number(port), addr, (err) => {
    if (err) throw err;
    if (++acked === Number(count)) socket.close();
  });
}
`;

// UDP receiver in the namespace: prints "ready", then "<from addr>:<port> <payload>" per
// datagram; exits after `count` datagrams or 8 s.
const UDP_RECEIVER = `
import dgram from 'node:dgram';
const [addr, port, count] = process.argv.slice(1);
const socket = dgram.createSocket('udp4');
let seen = 0;
setTimeout(() => process.exit(2), 8000).unref();
socket.on('message', (msg, from) => {
  console.log(from.address + ':' + from.port + ' ' + msg.toString());
  if (++seen === Number(count)) socket.close();
});
socket.bind(Number(port), addr, () => console.log('ready'));
`;

// --- IPv4 helpers (RFC 791, RFC 768, RFC 792) ---

function checksum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (bytes.length % 2 === 1) sum += bytes[bytes.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function addrBytes(addr: string): number[] {
  return addr.split('.').map(Number);
}

function addrString(bytes: Uint8Array): string {
  return Array.from(bytes).join('.');
}

function ipv4Header(src: string, dst: string, protocol: number, totalLength: number): Buffer {
  const header = Buffer.alloc(20);
  header[0] = 0x45;
  header.writeUInt16BE(totalLength, 2);
  header[8] = 64;
  header[9] = protocol;
  header.set(addrBytes(src), 12);
  header.set(addrBytes(dst), 16);
  header.writeUInt16BE(checksum(header), 10);
  return header;
}

function udpPacket(src: string, srcPort: number, dst: string, dstPort: number, payload: string): Buffer {
  const data = Buffer.from(payload);
  const udp = Buffer.alloc(8 + data.length);
  udp.writeUInt16BE(srcPort, 0);
  udp.writeUInt16BE(dstPort, 2);
  udp.writeUInt16BE(udp.length, 4);
  data.copy(udp, 8);
  const pseudo = Buffer.alloc(12);
  pseudo.set(addrBytes(src), 0);
  pseudo.set(addrBytes(dst), 4);
  pseudo[9] = IPPROTO_UDP;
  pseudo.writeUInt16BE(udp.length, 10);
  const sum = checksum(Buffer.concat([pseudo, udp]));
  udp.writeUInt16BE(sum === 0 ? 0xffff : sum, 6);
  return Buffer.concat([ipv4Header(src, dst, IPPROTO_UDP, 20 + udp.length), udp]);
}

interface Ipv4 {
  src: string;
  dst: string;
  protocol: number;
  payload: Buffer;
}

/** Parses and checks an IPv4 header; undefined for anything else (IPv6 chatter, ...). */
function parseIpv4(packet: Buffer): Ipv4 | undefined {
  if (packet.length < 20 || packet[0] >> 4 !== 4) return undefined;
  expect(packet[0] & 0x0f).toBe(5); // no options from these senders
  expect(packet.readUInt16BE(2)).toBe(packet.length); // total length = what read() returned
  expect(checksum(packet.subarray(0, 20))).toBe(0); // header checksum verifies
  return {
    src: addrString(packet.subarray(12, 16)),
    dst: addrString(packet.subarray(16, 20)),
    protocol: packet[9],
    payload: packet.subarray(20),
  };
}

describe.skipIf(process.getuid?.() !== 0)('TUN native addon (root, network namespace)', () => {
  let dev: TunDevice;

  beforeAll(() => {
    ip('netns', 'add', NS);
    ip('-n', NS, 'link', 'set', 'dev', 'lo', 'up');
    // No IPv6 chatter (router solicitations, MLD) on the TUNs: packet counts stay exact.
    const disableIpv6 =
      'for k in all default; do echo 1 > /proc/sys/net/ipv6/conf/$k/disable_ipv6; done 2>/dev/null || true';
    execFileSync('ip', ['netns', 'exec', NS, 'sh', '-c', disableIpv6], { timeout: 10_000 });
    dev = openInNamespace(TUN_ADDR, { batch: 64 });
  });

  afterAll(() => {
    for (const d of devices) {
      try {
        d.close();
      } catch {
        // already gone; keep cleaning
      }
    }
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    tryIp('netns', 'del', NS);
    for (const name of rootLinks) tryIp('link', 'del', 'dev', name);
  });

  it('opens a non-blocking, close-on-exec fd bound to the named interface', () => {
    expect(dev.fd).toBeGreaterThanOrEqual(0);
    expect(dev.name).toMatch(/^mt[0-9a-f]{8}$/);
    const fdinfo = readFileSync(`/proc/self/fdinfo/${dev.fd}`, 'utf8');
    const flags = parseInt(/^flags:\s+([0-7]+)/m.exec(fdinfo)![1], 8);
    expect(flags & 0o4000).toBe(0o4000); // O_NONBLOCK
    expect(flags & 0o2000000).toBe(0o2000000); // O_CLOEXEC
    expect(fdinfo).toMatch(new RegExp(`^iff:\\s+${dev.name}$`, 'm'));
    const [link] = JSON.parse(ip('-n', NS, '-j', 'link', 'show', 'dev', dev.name)) as { flags: string[] }[];
    expect(link.flags).toContain('UP');
  });

  it('delivers queued packets in full batches with intact IPv4/UDP headers', async () => {
    const port = 40_000 + Math.floor(Math.random() * 20_000);
    const count = 200;
    // Queue everything before reading starts, so the batch sizes are deterministic:
    // the TUN's queue (txqueuelen 500) holds the burst until the first wakeup.
    nodeInNamespaceSync(UDP_SENDER, PEER_ADDR, String(port), String(count));

    const batchSizes: number[] = [];
    const payloads = new Set<string>();
    dev.onPackets((batch: PacketBatch) => {
      batchSizes.push(batch.count);
      for (let i = 0; i < batch.count; i++) {
        const pkt = parseIpv4(batch.packet(i));
        if (pkt === undefined || pkt.protocol !== IPPROTO_UDP || pkt.payload.readUInt16BE(2) !== port) continue;
        expect(batch.length(i)).toBe(batch.packet(i).length);
        expect(batch.offset(i) % 65536).toBe(0);
        expect(pkt.src).toBe(TUN_ADDR);
        expect(pkt.dst).toBe(PEER_ADDR);
        expect(pkt.payload.readUInt16BE(4)).toBe(pkt.payload.length); // UDP length
        payloads.add(pkt.payload.subarray(8).toString());
      }
    });
    await waitFor(`${count} datagrams`, () => payloads.size >= count);
    dev.stopReading();

    expect(payloads).toEqual(new Set(Array.from({ length: count }, (_, i) => `meshd-${i}`)));
    expect(batchSizes[0]).toBe(64); // one callback per wakeup, capped at `batch`
    expect(Math.max(...batchSizes)).toBe(64);
    expect(batchSizes.length).toBeLessThan(count / 2);
    const stats = dev.stats;
    expect(stats.rxPackets).toBeGreaterThanOrEqual(count);
    expect(stats.rxFullBatches).toBeGreaterThanOrEqual(3);
    expect(stats.rxTruncated).toBe(0);
  });

  it('makes views that are unusable after the handler returns', async () => {
    let kept: PacketBatch | undefined;
    dev.onPackets((batch) => {
      kept ??= batch;
    });
    nodeInNamespaceSync(UDP_SENDER, PEER_ADDR, '9', '1');
    await waitFor('one batch', () => kept !== undefined);
    dev.stopReading();
    expect(kept!.count).toBe(0);
    expect(() => kept!.packet(0)).toThrow(/only valid during the call/);
  });

  it('answers a real ping through write()', async () => {
    let replied = 0;
    dev.onPackets((batch) => {
      for (let i = 0; i < batch.count; i++) {
        const request = batch.packet(i);
        const pkt = parseIpv4(request);
        if (pkt === undefined || pkt.protocol !== IPPROTO_ICMP || pkt.payload[0] !== 8) continue;
        // Echo reply (RFC 792): same id, sequence and data, type 0, from the pinged address.
        const icmp = Buffer.from(pkt.payload);
        icmp[0] = 0;
        icmp.writeUInt16BE(0, 2);
        icmp.writeUInt16BE(checksum(icmp), 2);
        const reply = Buffer.concat([ipv4Header(pkt.dst, pkt.src, IPPROTO_ICMP, 20 + icmp.length), icmp]);
        if (dev.write(reply)) replied++;
      }
    });
    try {
      const ping = spawnInNamespace('ping', '-n', '-c', '2', '-i', '0.2', '-W', '3', PEER_ADDR);
      expect(await ping.exited).toBe(0);
      expect(ping.lines.join('\n')).toMatch(/2 packets transmitted, 2 received/);
    } finally {
      dev.stopReading();
    }
    expect(replied).toBe(2);
  });

  it('write() and writeBatch() deliver crafted UDP datagrams to a socket in the namespace', async () => {
    const port = 40_000 + Math.floor(Math.random() * 20_000);
    const receiver = nodeInNamespace(UDP_RECEIVER, TUN_ADDR, String(port), '4');
    await waitFor('receiver ready', () => receiver.lines.includes('ready'));

    const before = dev.stats;
    expect(dev.write(udpPacket(PEER_ADDR, 5555, TUN_ADDR, port, 'single'))).toBe(true);

    const packets = ['batch-0', 'batch-1', 'batch-2'].map((p) => udpPacket(PEER_ADDR, 5555, TUN_ADDR, port, p));
    const buffer = Buffer.concat(packets);
    const offsets = new Uint32Array(packets.length);
    const lengths = new Uint32Array(packets.map((p) => p.length));
    for (let i = 1; i < packets.length; i++) offsets[i] = offsets[i - 1] + lengths[i - 1];
    expect(dev.writeBatch(buffer, offsets, lengths)).toBe(3);

    // Not an IP packet: the kernel refuses it and the device counts it, nothing throws.
    expect(dev.write(Buffer.from([0x00, 0x01, 0x02, 0x03]))).toBe(false);

    expect(await receiver.exited).toBe(0);
    expect(receiver.lines.slice(1)).toEqual([
      `${PEER_ADDR}:5555 single`,
      `${PEER_ADDR}:5555 batch-0`,
      `${PEER_ADDR}:5555 batch-1`,
      `${PEER_ADDR}:5555 batch-2`,
    ]);
    const after = dev.stats;
    expect(after.txPackets - before.txPackets).toBe(4);
    expect(after.txRejected - before.txRejected).toBe(1);
  });

  it('drops and counts packets larger than a slot instead of cutting them short', async () => {
    const small = openInNamespace(SMALL_TUN_ADDR, { slotSize: 128, batch: 8 });
    const port = 40_000 + Math.floor(Math.random() * 20_000);
    // IPv4 20 + UDP 8 + payload: 100 bytes of payload fills the 128-byte slot exactly.
    for (const size of [100, 101, 1000, 10]) {
      nodeInNamespaceSync(UDP_SENDER, SMALL_PEER_ADDR, String(port), '1', String(size));
    }
    const lengths: number[] = [];
    small.onPackets((batch) => {
      for (let i = 0; i < batch.count; i++) {
        const pkt = parseIpv4(batch.packet(i));
        if (pkt?.protocol === IPPROTO_UDP && pkt.payload.readUInt16BE(2) === port) lengths.push(batch.length(i));
      }
    });
    await waitFor('small packets and truncation count', () => lengths.length === 2 && small.stats.rxTruncated === 2);
    expect(lengths).toEqual([128, 38]);
    small.close();
  });

  it('reports a deleted interface through onError and stops reading', async () => {
    const doomed = openTracked(uniqueName());
    const errors: TunError[] = [];
    doomed.onPackets(() => {}, (error) => errors.push(error));
    ip('link', 'del', 'dev', doomed.name);
    await waitFor('the reader error', () => errors.length > 0);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(TunError);
    expect(errors[0].code).toBe('EBADFD');
    expect(errors[0].message).toMatch(/deleted/);
    expect(() => doomed.write(udpPacket(PEER_ADDR, 1, TUN_ADDR, 2, 'x'))).toThrow(/deleted/);
    doomed.close();
    rootLinks.delete(doomed.name);
  });

  it('rejects bad names and options with coded, actionable errors', () => {
    const tooLong = () => TunDevice.open('m'.repeat(16));
    expect(tooLong).toThrow(TunError);
    expect(tooLong).toThrow(/longer than 15 bytes/);
    try {
      tooLong();
    } catch (error) {
      expect((error as TunError).code).toBe('EINVAL');
    }
    expect(() => TunDevice.open('mt/slash')).toThrow(/'\/', ':' or whitespace/);
    expect(() => TunDevice.open('')).toThrow(/empty/);
    expect(() => TunDevice.open(uniqueName(), { batch: 0 })).toThrow(RangeError);
    expect(() => TunDevice.open(uniqueName(), { slotSize: 64 })).toThrow(RangeError);
  });

  it('refuses a second fd on a single-queue TUN with EBUSY, and the name is freed by close()', () => {
    const first = openTracked(uniqueName());
    let error: unknown;
    try {
      openTracked(first.name);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TunError);
    expect((error as TunError).code).toBe('EBUSY');
    expect((error as TunError).message).toMatch(/already in use/);
    first.close();
    expect(first.closed).toBe(true);
    expect(() => first.write(Buffer.alloc(20))).toThrow(/closed/);
    expect(tryIp('link', 'show', 'dev', first.name)).toBe(false); // not persistent
    rootLinks.delete(first.name);
  });

  it('opens several queues of a multi-queue TUN, and refuses a single-queue fd on it', () => {
    const q0 = openTracked(uniqueName(), { multiQueue: true });
    const q1 = openTracked(q0.name, { multiQueue: true });
    expect(q1.name).toBe(q0.name);
    expect(q1.fd).not.toBe(q0.fd);
    expect(() => openTracked(q0.name)).toThrow(/created with multiQueue/);
    q0.close();
    expect(tryIp('link', 'show', 'dev', q0.name)).toBe(true); // q1 still holds it
    q1.close();
    expect(tryIp('link', 'show', 'dev', q0.name)).toBe(false);
    rootLinks.delete(q0.name);
  });

  it('holds the event loop while reading and releases it on close', async () => {
    // Plain Node children drive the addon directly: open, start reading, then close after
    // 100 ms, or never. The first must exit on its own; the second must still be running.
    const script = `
      import { createRequire } from 'node:module';
      const [addon, name, shouldClose] = process.argv.slice(1);
      const native = createRequire(import.meta.url)(addon);
      const { fd } = native.open(name, false, false);
      native.startReading(fd, () => {}, 64, 2048);
      if (shouldClose === 'close') setTimeout(() => native.close(fd), 100);
    `;
    const run = (name: string, mode: string) => {
      rootLinks.add(name);
      const args = ['--input-type=module', '-e', script, nativeAddonPath()!, name, mode];
      const child = spawn(process.execPath, args, { stdio: 'inherit' });
      children.add(child);
      const started = Date.now();
      const exited = new Promise<{ code: number | null; ms: number }>((resolve) =>
        child.on('exit', (code) => resolve({ code, ms: Date.now() - started })),
      );
      return { child, exited };
    };
    const closing = run(uniqueName(), 'close');
    const reading = run(uniqueName(), 'keep');

    const result = await Promise.race([
      closing.exited,
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 2_000)),
    ]);
    expect(result, 'child that closed its TUN did not exit within 2 s').toBeDefined();
    expect(result!.code).toBe(0);
    expect(reading.child.exitCode).toBeNull(); // still alive: a reading TUN holds the loop
    reading.child.kill('SIGKILL');
    await reading.exited;
  });
});
