#!/usr/bin/env node
// Packet-filter micro-benchmark: ns per packet for 1420-byte packets with ~50
// rules and 10k tracked flows — outbound (refresh a tracked flow), inbound
// replies (flow-table hit), inbound allowed by a rule (flow the peer started),
// inbound denied (all candidate rules scanned). Alternated rounds, medians;
// also counts garbage collections during the timed loops (allocation check).
// Usage: npm run build && node bench/filter.mjs [--rounds 7] [--json]
import { PacketFilter } from '../dist/filter/index.js';
import { parseIp } from '../dist/net/ipaddr.js';
import { PerformanceObserver } from 'node:perf_hooks';
import os from 'node:os';

const args = process.argv.slice(2);
const ROUNDS = Number(args[args.indexOf('--rounds') + 1]) || 7;
const JSON_OUT = args.includes('--json');
const SIZE = 1420;
const FLOWS = 10_000;
const PER_ROUND = 200_000;

function packet(src, dst, proto, sport, dport, flags = 0x10) {
  const v6 = src.includes(':');
  const hl = v6 ? 40 : 20;
  const p = new Uint8Array(SIZE);
  if (v6) {
    p[0] = 0x60;
    p[4] = (SIZE - 40) >> 8;
    p[5] = (SIZE - 40) & 0xff;
    p[6] = proto;
    p[7] = 64;
    p.set(parseIp(src).bytes, 8);
    p.set(parseIp(dst).bytes, 24);
  } else {
    p[0] = 0x45;
    p[2] = SIZE >> 8;
    p[3] = SIZE & 0xff;
    p[8] = 64;
    p[9] = proto;
    p.set(parseIp(src).bytes, 12);
    p.set(parseIp(dst).bytes, 16);
  }
  p[hl] = sport >> 8;
  p[hl + 1] = sport & 0xff;
  p[hl + 2] = dport >> 8;
  p[hl + 3] = dport & 0xff;
  if (proto === 6) {
    p[hl + 12] = 5 << 4;
    p[hl + 13] = flags;
  } else {
    p[hl + 4] = (SIZE - hl) >> 8;
    p[hl + 5] = (SIZE - hl) & 0xff;
  }
  return p;
}

// This node and 200 peers; 50 rules of the shapes a policy compiles to.
const ME4 = '100.64.0.1';
const ME6 = 'fd7a:115c:a1e0::1';
const peer4 = (i) => `100.64.${1 + (i >> 8)}.${i & 0xff}`;
const peer6 = (i) => `fd7a:115c:a1e0::${(0x100 + i).toString(16)}`;
const rules = [];
for (let r = 0; r < 50; r++) {
  const srcs = [];
  for (let j = 0; j < 4; j++) srcs.push(`${peer4((r * 4 + j) % 200)}/32`, `${peer6((r * 4 + j) % 200)}/128`);
  const dsts = r % 10 === 9 ? [`10.${r}.0.0/16`] : [`${ME4}/32`, `${ME6}/128`];
  const base = 1000 + r * 100;
  rules.push({ srcs, dsts, ports: [[base, base + 9], [base + 50, base + 50]], protos: r % 3 === 0 ? [6] : null });
}
// A wide rule too: everyone may reach port 443.
rules.push({ srcs: ['100.64.0.0/10', 'fd7a:115c:a1e0::/48'], dsts: [`${ME4}/32`, `${ME6}/128`], ports: [[443, 443]], protos: [6] });

const filter = new PacketFilter(rules);
const out = [];
const replies = [];
for (let i = 0; i < FLOWS; i++) {
  const v6 = i % 4 === 3;
  const [me, peer] = v6 ? [ME6, peer6(i % 200)] : [ME4, peer4(i % 200)];
  const proto = i % 2 === 0 ? 6 : 17;
  const sport = 20000 + (i % 40000);
  out.push(packet(me, peer, proto, sport, 443));
  replies.push(packet(peer, me, proto, 443, sport));
}
// Peers reaching rule-allowed ports (their flows: a rule check every packet).
const allowed = [];
for (let i = 0; i < 2000; i++) {
  const r = i % 50;
  const peerIdx = (r * 4) % 200;
  const [src, dst] = i % 4 === 3 ? [peer6(peerIdx), ME6] : [peer4(peerIdx), ME4];
  const dport = r % 10 === 9 ? 443 : 1000 + r * 100 + (i % 10);
  allowed.push(packet(src, dst, 6, 30000 + i, dport));
}
// Strangers' traffic to closed ports: every candidate rule is scanned, then denied.
const denied = [];
for (let i = 0; i < 2000; i++) {
  const [src, dst] = i % 4 === 3 ? [peer6(i % 200), ME6] : [peer4(i % 200), ME4];
  denied.push(packet(src, dst, 17, 40000 + i, 999));
}

let now = 1e6;
for (const p of out) filter.outbound(p, now);
for (const p of allowed) if (filter.inbound(p, now) !== 'accept') throw new Error('rule-allowed packet filtered');
for (const p of replies) if (filter.inbound(p, now) !== 'accept') throw new Error('reply filtered');
for (const p of denied) if (filter.inbound(p, now) !== 'filtered') throw new Error('stranger accepted');

let gcs = 0;
const obs = new PerformanceObserver((list) => (gcs += list.getEntries().length));
obs.observe({ entryTypes: ['gc'] });

// The clock is passed per round: a double kept in a closure variable and bumped
// per packet would box a fresh heap number each time and blur the GC count.
function nsPer(fn, set, t) {
  const n = set.length;
  const start = performance.now();
  for (let i = 0; i < PER_ROUND; i++) fn(set[i % n], t);
  return ((performance.now() - start) * 1e6) / PER_ROUND;
}
const cases = {
  'outbound (tracked flow)': [(p, t) => filter.outbound(p, t), out],
  'inbound reply (flow hit)': [(p, t) => filter.inbound(p, t), replies],
  'inbound allowed by rule': [(p, t) => filter.inbound(p, t), allowed],
  'inbound denied': [(p, t) => filter.inbound(p, t), denied],
};
for (const [fn, set] of Object.values(cases)) nsPer(fn, set, ++now); // warm up
const results = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
gcs = 0;
for (let r = 0; r < ROUNDS; r++) for (const [k, [fn, set]] of Object.entries(cases)) results[k].push(nsPer(fn, set, ++now));
await new Promise((resolve) => setTimeout(resolve, 50)); // let the observer report
obs.disconnect();

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const summary = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, Math.round(median(v) * 10) / 10]));
const s = filter.stats();
const timed = ROUNDS * Object.keys(cases).length * PER_ROUND;
if (JSON_OUT) {
  console.log(JSON.stringify({ nsPerPacket: summary, gcsDuringTimedLoops: gcs, packets: timed, flows: s.flows, rules: s.rules }));
} else {
  console.log(`node ${process.version}, ${os.cpus()[0].model}, ${os.cpus().length} CPUs, medians of ${ROUNDS} alternated rounds`);
  console.log(`${s.rules} rules, ${s.flows} flows tracked (${s.inboundFlows} started by peers), ${SIZE}-byte packets`);
  for (const [k, v] of Object.entries(summary)) console.log(`  ${k.padEnd(28)} ${String(v).padStart(7)} ns/packet  ${Math.round(1e9 / v).toLocaleString('en-US').padStart(12)} packets/s`);
  console.log(`  garbage collections during ${timed.toLocaleString('en-US')} timed packets: ${gcs}`);
}
