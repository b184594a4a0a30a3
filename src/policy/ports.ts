// Ports and protocols as a policy writes them: "*", "22", "8000-8999",
// "80,443"; "tcp", "udp", "icmp", "icmpv6", "sctp" or a number 0-255.

import { parsePort, type Parsed } from '../net/ipaddr.js';
import type { PortRange } from './types.js';

export const ALL_PORTS: PortRange = [0, 65535];

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;
export const PROTO_SCTP = 132;

/** What a rule without `proto` allows. */
export const DEFAULT_PROTOS: readonly number[] = [PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6];

const PROTO_NAMES: ReadonlyMap<string, number> = new Map([
  ['tcp', PROTO_TCP],
  ['udp', PROTO_UDP],
  ['icmp', PROTO_ICMP],
  ['icmpv6', PROTO_ICMPV6],
  ['sctp', PROTO_SCTP],
]);

/** Protocols whose packets carry ports; for the others a rule's ports do not apply. */
export function hasPorts(proto: number): boolean {
  return proto === PROTO_TCP || proto === PROTO_UDP || proto === PROTO_SCTP;
}

export function protoName(proto: number): string {
  for (const [name, n] of PROTO_NAMES) if (n === proto) return name;
  return `protocol ${proto}`;
}

/** "tcp", "udp", "icmp", "icmpv6", "sctp" or a decimal 0-255, as a string or a JSON number. */
export function parseProto(value: string | number): Parsed<number> {
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 0 && value <= 255) return { ok: true, value };
    return { ok: false, reason: `protocol number ${value} is not an integer 0-255` };
  }
  const named = PROTO_NAMES.get(value.toLowerCase());
  if (named !== undefined) return { ok: true, value: named };
  if (/^(0|[1-9][0-9]{0,2})$/.test(value) && Number(value) <= 255) return { ok: true, value: Number(value) };
  return { ok: false, reason: `unknown protocol "${value}"; use tcp, udp, icmp, icmpv6, sctp or a number 0-255` };
}

/** "*", "N", "N-M" and comma-separated lists of those, as sorted, merged ranges. */
export function parsePorts(text: string): Parsed<PortRange[]> {
  if (text === '*') return { ok: true, value: [ALL_PORTS] };
  if (text === '') return { ok: false, reason: 'no ports after ":"; use "*" for all ports' };
  const ranges: PortRange[] = [];
  for (const part of text.split(',')) {
    if (part === '*') return { ok: false, reason: `"*" cannot be part of a list of ports ("${text}")` };
    const dash = part.indexOf('-');
    const lo = parsePort(dash < 0 ? part : part.slice(0, dash));
    const hi = dash < 0 ? lo : parsePort(part.slice(dash + 1));
    if (!lo.ok) return { ok: false, reason: part === '' ? `empty entry in the list of ports "${text}"` : lo.reason };
    if (!hi.ok) return hi;
    if (lo.value > hi.value) return { ok: false, reason: `port range ${part} runs backwards` };
    ranges.push([lo.value, hi.value]);
  }
  return { ok: true, value: mergeRanges(ranges) };
}

/** Sorted, with overlapping and adjacent ranges joined. */
export function mergeRanges(ranges: PortRange[]): PortRange[] {
  const sorted = ranges.map((r): PortRange => [r[0], r[1]]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const out: PortRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push(r);
  }
  return out;
}

export function isAllPorts(ranges: PortRange[]): boolean {
  return ranges.length === 1 && ranges[0][0] === 0 && ranges[0][1] === 65535;
}

export function portInRanges(port: number, ranges: PortRange[]): boolean {
  return ranges.some(([lo, hi]) => port >= lo && port <= hi);
}

/** Whether a rule with these protocols (null: the default set) and ports lets `proto` to `port` through. */
export function allowsProtoPort(protos: readonly number[] | null, ports: PortRange[], proto: number, port: number): boolean {
  if (!(protos ?? DEFAULT_PROTOS).includes(proto)) return false;
  return !hasPorts(proto) || portInRanges(port, ports);
}
