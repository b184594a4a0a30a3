#!/usr/bin/env node
// Protocol-core micro-benchmarks (issue 3): full handshakes per second,
// transport seal/open per second at 1420 bytes, allowed-IPs lookups per second
// with 10k prefixes. Runs each ROUNDS times, alternating, and prints medians.
// Usage: npm run build && node bench/protocol.mjs [--rounds 7] [--json]
import { X25519PrivateKey } from '../dist/crypto/x25519.js';
import { Handshake, StaticIdentity, createInitiation, consumeInitiation, createResponse, consumeResponse, beginSession } from '../dist/noise/handshake.js';
import { CookieChecker, CookieMaker } from '../dist/noise/cookie.js';
import { sealTransport, openTransport, useTransportCipher } from '../dist/noise/transport.js';
import { nodeCipher, selectTransportCipher } from '../dist/crypto/transportCipher.js';
import { nativeAvailable } from '../dist/io/tun.js';
import { readCounter } from '../dist/wire/messages.js';
import { AllowedIps } from '../dist/device/allowedips.js';
import os from 'node:os';

const args = process.argv.slice(2);
const ROUNDS = Number(args[args.indexOf('--rounds') + 1]) || 7;
const JSON_OUT = args.includes('--json');

function timeFor(ms, fn) {
  // Runs fn in batches until `ms` elapsed; returns operations per second.
  let ops = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    ops += fn();
    now = performance.now();
  }
  return (ops * 1000) / (now - start);
}

// --- handshakes ---
const idI = new StaticIdentity(X25519PrivateKey.generate());
const idR = new StaticIdentity(X25519PrivateKey.generate());
const checker = new CookieChecker();
checker.setPublicKey(idR.publicKey);
const src = Uint8Array.of(10, 0, 0, 1, 0x12, 0x34);
let wall = Date.now();
let mono = 0;
function handshake(atI, atR, makerI, makerR) {
  const init = createInitiation(atI.handshake, idI, (wall += 1000), () => 1);
  makerI.addMacs(init, 0);
  if (checker.validate(init, src, false, 0) !== 'validMac1') throw new Error('mac1');
  if (consumeInitiation(init, idR, () => atR, (mono += 1000)) !== atR) throw new Error('consume initiation');
  const resp = createResponse(atR.handshake, () => 2);
  makerR.addMacs(resp, 0);
  if (consumeResponse(resp, idI, () => atI) !== atI) throw new Error('consume response');
  beginSession(atR.handshake, 0);
  beginSession(atI.handshake, 0);
  return 1;
}
const newPeers = () => [
  { handshake: new Handshake(idR.publicKey, idI) },
  { handshake: new Handshake(idI.publicKey, idR) },
  new CookieMaker(idR.publicKey),
  new CookieMaker(idI.publicKey),
];
// A first contact includes the per-peer static-static precomputation; the
// steady state (peers reused) is what a busy responder mostly does.
const oneHandshake = () => handshake(...newPeers());
const steady = newPeers();
const steadyHandshake = () => handshake(...steady);

// --- transport ---
oneHandshake();
steadyHandshake();
const a = { handshake: new Handshake(idR.publicKey, idI) };
const b = { handshake: new Handshake(idI.publicKey, idR) };
const i1 = createInitiation(a.handshake, idI, (wall += 1000), () => 1);
consumeInitiation(i1, idR, () => b, (mono += 1000));
const r1 = createResponse(b.handshake, () => 2);
consumeResponse(r1, idI, () => a);
const sendKp = beginSession(a.handshake, 0);
const recvKp = beginSession(b.handshake, 0);
const packet = Buffer.alloc(1420, 0xab);
const sealed = [];
function sealBatch() {
  for (let i = 0; i < 256; i++) sealed[i & 255] = sealTransport(sendKp, packet, 1420);
  return 256;
}
sealBatch();
function openBatch() {
  for (let i = 0; i < 256; i++) {
    const m = sealed[i];
    if (openTransport(recvKp, m, readCounter(m)) === null) throw new Error('open');
  }
  return 256;
}

// --- allowed IPs ---
let seed = 42;
const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
const table = new AllowedIps();
const peers = Array.from({ length: 100 }, (_, i) => ({ id: i }));
for (let i = 0; i < 10_000; i++) {
  const v6 = i % 4 === 0;
  const addr = new Uint8Array(v6 ? 16 : 4);
  for (let j = 0; j < addr.length; j++) addr[j] = rnd() & 0xff;
  const cidr = v6 ? 32 + (rnd() % 97) : 8 + (rnd() % 25);
  table.insert(addr, cidr, peers[i % peers.length]);
}
const probes = Array.from({ length: 4096 }, () => Uint8Array.from({ length: 4 }, () => rnd() & 0xff));
function lookupBatch() {
  let hits = 0;
  for (let i = 0; i < probes.length; i++) if (table.lookup(probes[i]) !== undefined) hits++;
  if (hits < 0) throw new Error('unreachable');
  return probes.length;
}

const suites = {
  'handshakes/s (initiation+response+session, both sides)': () => timeFor(400, steadyHandshake),
  'handshakes/s incl. new peer precomputation': () => timeFor(400, oneHandshake),
  'seal/s 1420 B, node:crypto': () => (useTransportCipher(nodeCipher), timeFor(400, sealBatch)),
  'open/s 1420 B, node:crypto': () => (useTransportCipher(nodeCipher), timeFor(400, openBatch)),
  ...(nativeAvailable()
    ? {
        'seal/s 1420 B, native addon': () => (useTransportCipher(selectTransportCipher('native')), timeFor(400, sealBatch)),
        'open/s 1420 B, native addon': () => (useTransportCipher(selectTransportCipher('native')), timeFor(400, openBatch)),
      }
    : {}),
  'allowed-IPs lookups/s (10k prefixes)': () => timeFor(400, lookupBatch),
};
const results = Object.fromEntries(Object.keys(suites).map((k) => [k, []]));
for (let r = 0; r < ROUNDS; r++) for (const [k, fn] of Object.entries(suites)) results[k].push(fn());
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const out = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, Math.round(median(v))]));
if (JSON_OUT) console.log(JSON.stringify(out));
else {
  console.log(`node ${process.version}, ${os.cpus()[0].model}, ${os.cpus().length} CPUs, medians of ${ROUNDS} alternated rounds`);
  for (const [k, v] of Object.entries(out)) {
    const extra = k.startsWith('seal') || k.startsWith('open') ? `  (${((v * 1420 * 8) / 1e9).toFixed(2)} Gbit/s of payload)` : '';
    console.log(`${k.padEnd(58)} ${v.toLocaleString('en-US').padStart(12)}${extra}`);
  }
}
