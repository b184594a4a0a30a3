#!/usr/bin/env node
// Coordination-server benchmark (issue 5): N in-process simulated nodes (no
// TUN, no engine: a ControlClient and a NetmapView each) registered on one
// `meshd server` child process; how long one change takes to reach all of
// them; the server's RSS.
//
// Each simulated node does what the agent does (src/node/agent.ts): register
// with an auth key, one map at since=0 without waiting, then long polls
// (wait: true, since = the version it holds), applying every full map or
// delta to its NetmapView. Then, for R rounds, one change is made (a new node
// registers, or an admin renames a node, alternately) and we time it until
// every simulated node has applied a map that contains it.
//
// What is timed: a round starts just before the change request is sent (the
// sealed register of a new node, which then does not poll, so it is exactly
// one change; or POST /meshd/v1/admin/nodes/<id>/rename) and ends, per node,
// when that node has applied a map showing it. "server CPU" is the server's
// utime+stime over the round (/proc/<pid>/stat), which includes the nodes'
// re-polls; "bench CPU" is this process's (all N clients: sealing, fetch,
// opening replies, JSON.parse, apply). Server RSS is VmRSS/VmHWM from
// /proc/<pid>/status. Node's fetch (undici) has no per-origin connection cap
// by default (Agent with connections: null): the run checks that there are at
// least N established connections on the server port while the polls wait.
//
// Usage: npm run build && node bench/control.mjs [--nodes 1000] [--rounds 5]
//        [--concurrency 50] [--timeout 600] [--json]
//   --concurrency   registrations in flight at once (default 50)
//   --timeout       seconds for the whole run before it gives up (default 600)
//   --profile-server DIR   run the server under --cpu-prof, profiles into DIR
//   --view-sample K the first K simulated nodes (default 10) apply maps with
//                   NetmapView.apply; the others make the same changes to their
//                   NetmapView without apply()'s change detection, which
//                   stringifies the whole view twice per map (3.8 ms at 1,000
//                   peers): with 1,000 views in one process that, not the
//                   server, would be what is measured
//   --netmapview-apply   every node uses NetmapView.apply
import { spawn, execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControlClient, fetchServerKey } from '../dist/control/client.js';
import { NetmapView } from '../dist/control/netmap.js';
import { X25519PrivateKey } from '../dist/crypto/x25519.js';
import { encodeKeyBase64 } from '../dist/config/keys.js';
import { MAP_POLL_MS } from '../dist/control/messages.js';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : dflt;
};
const N = opt('nodes', 1000);
const ROUNDS = opt('rounds', 5);
const CONCURRENCY = opt('concurrency', 50);
const TIMEOUT_S = opt('timeout', 600);
const JSON_OUT = args.includes('--json');
const FULL_APPLY = args.includes('--netmapview-apply');
/** Simulated nodes 0..VIEW_SAMPLE-1 apply maps with NetmapView.apply; the rest without its diff. */
const VIEW_SAMPLE = FULL_APPLY ? Infinity : opt('view-sample', 10);
const STEP_TIMEOUT_MS = Math.max(60_000, N * 120); // one phase (registration, convergence, a round)

const root = fileURLToPath(new URL('..', import.meta.url));

// Node v20.20.2 can deadlock in X25519PrivateKey.generate(): it exports the
// fresh key as JWK (to read its public half), ExportJWK allocates while it
// holds the key's mutex, the allocation runs a GC, and the GC finalizes the
// KeyGenJob that made the key, whose destructor takes the same mutex (main
// thread stuck in ~KeyGenJob <- InvokeFirstPassWeakCallbacks <- ExportJWKEdKey).
// `generateKeyPairSync('x25519')` then `publicKey.export({format:'jwk'})` in a
// loop hangs within some 10^4 keys here. Every sealed request makes an
// ephemeral, so the bench makes ~10^5 of them, and once hung for 20 minutes.
// In this process only (the server child runs the code as it is: it makes no
// keys per request), make the same key with its public half from the key
// generation itself, as DER, so no JWK export of a generated key happens.
const generateKey = () => {
  const { privateKey, publicKey } = generateKeyPairSync('x25519', { publicKeyEncoding: { type: 'spki', format: 'der' } });
  return Object.assign(Object.create(X25519PrivateKey.prototype), { keyObject: privateKey, publicKey: publicKey.subarray(publicKey.length - 32) });
};
X25519PrivateKey.generate = generateKey;

// A watchdog on its own thread, for when the main thread hangs (as above):
// no heartbeat for 60 s, or the --timeout passed, and it kills the server
// child, removes the state directory and kills this process.
const heartbeat = new Int32Array(new SharedArrayBuffer(4));
const watchdog = new Worker(
  `const { workerData, parentPort } = require('node:worker_threads');
   const { rmSync, writeSync } = require('node:fs');
   const beat = new Int32Array(workerData.sab);
   let seen = -1, since = Date.now(), server = null, dir = null;
   parentPort.on('message', (m) => { server = m.server ?? server; dir = m.dir ?? dir; });
   setInterval(() => {
     const b = Atomics.load(beat, 0);
     if (b !== seen) { seen = b; since = Date.now(); }
     const hung = Date.now() - since > 60000, late = Date.now() > workerData.deadline;
     if (!hung && !late) return;
     writeSync(2, 'bench/control watchdog: ' + (hung ? 'main thread hung for 60 s' : 'past --timeout') + '; killing the server and this process\\n');
     try { if (server) process.kill(server, 'SIGKILL'); } catch {}
     try { if (dir) rmSync(dir, { recursive: true, force: true }); } catch {}
     process.kill(process.pid, 'SIGKILL');
   }, 1000);`,
  { eval: true, workerData: { sab: heartbeat.buffer, deadline: Date.now() + (TIMEOUT_S + 30) * 1000 } },
);
watchdog.unref();
setInterval(() => Atomics.add(heartbeat, 0, 1), 1000).unref();
const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => {
  if (!JSON_OUT) process.stderr.write(`[${((now() - T0) / 1000).toFixed(1)}s] ${a.join(' ')}\n`);
};
const T0 = now();

// --- cleanup, whatever happens ----------------------------------------------
let server = null;
let stateDir = null;
let stopping = false;
let serverTail = '';
function cleanup() {
  stopping = true;
  if (server && server.exitCode === null && server.signalCode === null) {
    try {
      server.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
  if (stateDir) {
    try {
      rmSync(stateDir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
    stateDir = null;
  }
}
function fail(err) {
  process.stderr.write(`bench/control: ${err?.stack ?? err}\n`);
  if (serverTail) process.stderr.write(`server output (tail):\n${serverTail.slice(-2000)}\n`);
  cleanup();
  process.exit(1);
}
process.on('exit', cleanup);
process.on('SIGINT', () => fail(new Error('interrupted')));
process.on('SIGTERM', () => fail(new Error('terminated')));
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);
setTimeout(() => fail(new Error(`whole run exceeded --timeout ${TIMEOUT_S}s`)), TIMEOUT_S * 1000).unref();

function withTimeout(p, ms, what) {
  let t;
  return Promise.race([p, new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`${what}: timed out after ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

/** Called after every applied map (the rounds' per-node timing). */
const appliedHooks = new Set();
/**
 * Resolves when pred() holds, checked every `everyMs` (not per applied map:
 * the predicates are O(N) or O(N^2) and would swamp the bench at N=1000).
 */
function until(pred, ms, what, everyMs = 50) {
  if (pred()) return Promise.resolve();
  let iv;
  return withTimeout(
    new Promise((resolve) => {
      iv = setInterval(() => {
        if (pred()) resolve();
      }, everyMs);
    }),
    ms,
    what,
  ).finally(() => clearInterval(iv));
}

// --- measurements -------------------------------------------------------------
function procStatus(pid) {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024 };
}
/** utime + stime of a process, in ms (clock ticks of 10 ms). */
function procCpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}
const benchCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
/** Established TCP connections on the server's port, counted from the server side. */
function serverConnections(port) {
  try {
    const out = execFileSync('ss', ['-tnH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8', timeout: 10_000 });
    return out.split('\n').filter(Boolean).length;
  } catch {
    return NaN;
  }
}
function pct(values, p) {
  const s = [...values].sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const median = (v) => pct(v, 50);
const ms = (x) => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) : '–');
const mib = (x) => x.toFixed(1);

// --- server child ---------------------------------------------------------------
async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startServer() {
  stateDir = mkdtempSync(join(tmpdir(), 'meshd-bench-control-'));
  const port = await freePort();
  const prof = args.includes('--profile-server') ? ['--cpu-prof', '--cpu-prof-dir', args[args.indexOf('--profile-server') + 1]] : [];
  server = spawn(process.execPath, [...prof, join(root, 'bin/meshd'), 'server', '--listen', `127.0.0.1:${port}`, '--state-dir', stateDir, '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  watchdog.postMessage({ server: server.pid, dir: stateDir });
  const keep = (d) => (serverTail = (serverTail + d.toString()).slice(-8000));
  server.stdout.on('data', keep);
  server.stderr.on('data', keep);
  server.once('exit', (code, sig) => {
    if (!stopping) fail(new Error(`server exited early (code ${code}, signal ${sig})`));
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
      if (r.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error('server did not answer /health within 20 s');
    await sleep(100);
  }
  const token = readFileSync(join(stateDir, 'admin.token'), 'utf8').trim();
  return { port, url, token, pid: server.pid };
}

async function admin(s, method, path, body) {
  const r = await fetch(`${s.url}/meshd/v1/admin/${path}`, {
    method,
    headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const j = await r.json();
  if (!r.ok) throw new Error(`admin ${method} ${path}: HTTP ${r.status} ${JSON.stringify(j)}`);
  return j;
}

async function stopServer() {
  stopping = true;
  if (!server || server.exitCode !== null) return;
  const exited = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  await Promise.race([exited, sleep(5000)]);
  if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
}

// --- simulated nodes --------------------------------------------------------------
const endpointsFor = (i) => [`198.51.${(i >> 8) & 255}.${i & 255}:41641`, `[2001:db8::${i.toString(16)}]:41641`];

class SimNode {
  constructor(index, ctx) {
    this.index = index;
    this.key = X25519PrivateKey.generate();
    this.publicKey = encodeKeyBase64(this.key.publicKey);
    this.client = new ControlClient({ url: ctx.url, serverKey: ctx.serverKey, nodeKey: this.key, offsetMs: ctx.offsetMs });
    this.endpoints = endpointsFor(index);
    this.view = new NetmapView();
    this.id = null;
    this.errors = 0;
    this.maps = 0;
    this.lastBytes = 0;
    this.lastKind = '';
  }

  /**
   * Retried on transport errors (fetch does not retry a POST): a keep-alive
   * socket the server closed just as it was reused, or a connect that timed
   * out while the server was busy. Counted and reported.
   */
  async register(authKey) {
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await this.client.register({ authKey, hostname: `sim-${this.index}`, endpoints: this.endpoints });
        this.id = r.node.id;
        return r;
      } catch (err) {
        if (err.status !== 0 || attempt >= 10) throw err;
        stats.registerRetries++;
        stats.lastRegisterError = err.message;
        if (stats.registerRetries <= 5) log(`  registration of sim-${this.index} failed (${err.message}); retrying${stats.registerRetries === 5 ? ' (further retries only counted)' : ''}`);
        await sleep(Math.min(5000, 250 * 2 ** attempt));
      }
    }
  }

  apply(r, measureBytes) {
    const t = now();
    if (this.index < VIEW_SAMPLE) {
      this.view.apply(r);
      const dt = now() - t;
      stats.applyMs += dt;
      if (round !== null) stats.viewApplyMs.push(dt);
    } else {
      lightApply(this.view, r);
      stats.applyMs += now() - t;
    }
    stats.applies++;
    this.maps++;
    this.lastKind = r.peers ? 'full' : 'delta';
    if (r.peers) {
      stats.fullMaps++;
      stats.fullPeers += r.peers.length;
    } else {
      stats.deltaMaps++;
      stats.deltaPeers += r.peersChanged.length + r.peersRemoved.length;
    }
    if (measureBytes) this.lastBytes = Buffer.byteLength(JSON.stringify(r));
    for (const h of appliedHooks) h(this);
  }

  async run() {
    while (!stopping) {
      let r;
      // As the agent: one map without waiting, then long polls from the version held.
      const wait = this.view.version !== 0;
      if (wait) stats.inflight++;
      try {
        r = await this.client.map({ since: this.view.version, endpoints: this.endpoints, wait }, wait ? MAP_POLL_MS : 0);
      } catch (err) {
        if (stopping) return;
        this.errors++;
        stats.errors++;
        if (round !== null) stats.roundErrors++;
        stats.lastError = err.message;
        // EUNREACHABLE: the fetch failed (its cause); a DOMException: the reply's body did not come in time.
        const code = err.code === 'EUNREACHABLE' ? err.message.replace(/^.*: /, '') : err.name === 'TimeoutError' ? 'reply body timed out' : String(err.code ?? err.name);
        stats.errorCodes[code] = (stats.errorCodes[code] ?? 0) + 1;
        await sleep(500 + Math.random() * 500);
        continue;
      } finally {
        if (wait) stats.inflight--;
      }
      if (stopping) return;
      this.apply(r, round !== null && !r.peers);
    }
  }
}

const stats = { applies: 0, applyMs: 0, inflight: 0, errors: 0, lastError: null, registerRetries: 0, lastRegisterError: null, roundErrors: 0, errorCodes: {}, viewApplyMs: [], fullMaps: 0, fullPeers: 0, deltaMaps: 0, deltaPeers: 0 };

/** NetmapView.apply without its change detection (two JSON.stringify of the whole view per map). */
function lightApply(v, r) {
  v.version = r.version;
  v.self = r.self;
  if (r.peers) {
    v.peers.clear();
    for (const p of r.peers) v.peers.set(p.publicKey, p);
  }
  for (const p of r.peersChanged ?? []) v.peers.set(p.publicKey, p);
  for (const k of r.peersRemoved ?? []) v.peers.delete(k);
}
let round = null;

// --- the run ------------------------------------------------------------------------
async function main() {
  const s = await startServer();
  log(`server pid ${s.pid} on ${s.url}, state in ${stateDir}`);
  const rssStart = procStatus(s.pid);
  const { key: authKey } = await admin(s, 'POST', 'keys', { reusable: true, preauthorized: true, expiry: '1d' });
  const { serverKey, offsetMs } = await fetchServerKey(s.url);
  const ctx = { url: s.url, serverKey, offsetMs };

  let t = now();
  const nodes = Array.from({ length: N }, (_, i) => new SimNode(i, ctx));
  const keygenMs = now() - t;
  log(`${N} node keys in ${ms(keygenMs)} ms`);

  // Registration: CONCURRENCY at a time; each node starts polling as soon as it is registered.
  const regLatency = [];
  const runs = [];
  const srvCpu0 = procCpuMs(s.pid);
  const regStart = now();
  let next = 0;
  let lastCpu = procCpuMs(s.pid);
  const ticker = setInterval(() => {
    const cpu = procCpuMs(s.pid);
    const full = nodes.filter((n) => n.view.peers.size === N - 1).length;
    log(`  join: ${regLatency.length} registered, ${full} hold the full mesh, ${stats.inflight} polls in flight, ${stats.errors} poll errors, ${stats.registerRetries} registration retries, server CPU ${(((cpu - lastCpu) / 5000) * 100).toFixed(0)}%, RSS ${mib(procStatus(s.pid).rssMiB)} MiB`);
    lastCpu = cpu;
  }, 5000);
  await withTimeout(
    Promise.all(
      Array.from({ length: Math.min(CONCURRENCY, N) }, async () => {
        while (next < N) {
          const n = nodes[next++];
          const t1 = now();
          await n.register(authKey);
          regLatency.push(now() - t1);
          runs.push(n.run().catch(fail));
        }
      }),
    ),
    STEP_TIMEOUT_MS,
    'registration',
  );
  const regMs = now() - regStart;
  log(`registered ${N} in ${ms(regMs)} ms`);

  // Convergence: every node holds N-1 peers; then all of them online; then quiet.
  await until(() => nodes.every((n) => n.view.peers.size === N - 1), STEP_TIMEOUT_MS, 'full mesh');
  const meshMs = now() - regStart;
  log(`all ${N} hold ${N - 1} peers after ${ms(meshMs)} ms`);
  const allOnline = () => nodes.every((n) => n.view.peers.size === N - 1 && [...n.view.peers.values()].every((p) => p.online));
  await until(allOnline, STEP_TIMEOUT_MS, 'all peers online', 200).catch((e) => {
    let offline = 0;
    for (const n of nodes) for (const p of n.view.peers.values()) if (!p.online) offline++;
    log(`${offline} (node, peer) pairs still show the peer offline; ${new Set(nodes.map((n) => n.view.version)).size} distinct versions held`);
    throw e;
  });
  const onlineMs = now() - regStart;
  const srvCpuJoin = procCpuMs(s.pid) - srvCpu0;
  const joinMaps = { full: stats.fullMaps, fullPeers: stats.fullPeers, delta: stats.deltaMaps, deltaPeers: stats.deltaPeers };
  log(`all ${N} see every peer online after ${ms(onlineMs)} ms`);
  clearInterval(ticker);
  await quiet(nodes, 1000, STEP_TIMEOUT_MS);
  const sameVersion = new Set(nodes.map((n) => n.view.version)).size === 1;
  const rssAfterReg = procStatus(s.pid);
  await until(() => stats.inflight >= N, 30_000, 'all long polls in flight').catch(() => {});
  const inflight = stats.inflight;
  const conns = serverConnections(s.port);
  log(`long polls in flight: ${inflight}; established connections on the server port: ${conns}`);

  // Rounds.
  const results = [];
  let renameCount = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const kind = r % 2 === 0 ? 'register' : 'rename';
    const applyMs0 = stats.applyMs;
    const applies0 = stats.applies;
    const cpuS0 = procCpuMs(s.pid);
    const cpuB0 = benchCpuMs();
    const done = new Float64Array(N).fill(NaN);
    let remaining = N;
    let pred;
    let extra = null;
    let newName = null;
    let target = null;
    if (kind === 'register') {
      extra = new SimNode(N + r, ctx);
      pred = (n) => n.view.peers.has(extra.publicKey);
    } else {
      target = nodes[(renameCount * 7919 + 13) % N];
      newName = `renamed-${++renameCount}-${Math.random().toString(36).slice(2, 8)}`;
      pred = (n) => (n === target ? n.view.self?.name === newName : n.view.peers.get(target.publicKey)?.name === newName);
    }
    let t0 = 0;
    let finish;
    const allDone = new Promise((resolve) => (finish = resolve));
    round = { kind };
    const hook = (n) => {
      if (!Number.isNaN(done[n.index]) || !pred(n)) return;
      done[n.index] = now() - t0;
      if (--remaining === 0) finish();
    };
    appliedHooks.add(hook);
    t0 = now();
    let changeMs;
    if (kind === 'register') {
      await extra.register(authKey);
      changeMs = now() - t0;
    } else {
      const res = await admin(s, 'POST', `nodes/${target.id}/rename`, { name: newName });
      changeMs = now() - t0;
      if (res.node.name !== newName) throw new Error(`rename gave "${res.node.name}", not "${newName}"`);
    }
    await withTimeout(allDone, STEP_TIMEOUT_MS, `round ${r + 1} (${kind})`);
    appliedHooks.delete(hook);
    const times = [...done];
    const res = {
      round: r + 1,
      kind,
      changeMs,
      p50: median(times),
      p99: pct(times, 99),
      max: Math.max(...times),
      serverCpuMs: procCpuMs(s.pid) - cpuS0,
      benchCpuMs: benchCpuMs() - cpuB0,
      applies: stats.applies - applies0,
      applyMs: stats.applyMs - applyMs0,
      deltaBytes: median(nodes.filter((n) => n !== target && n.lastKind === 'delta' && n.lastBytes > 0).map((n) => n.lastBytes)),
    };
    results.push(res);
    log(`round ${res.round} ${kind}: all ${N} applied it in ${ms(res.max)} ms (p50 ${ms(res.p50)}, p99 ${ms(res.p99)})`);
    round = null;
    for (const n of nodes) n.lastBytes = 0;
    await quiet(nodes, 500, STEP_TIMEOUT_MS);
  }

  // A full map's size for comparison (node 0 asks from scratch, without waiting).
  const full = await nodes[0].client.map({ since: 0, endpoints: nodes[0].endpoints, wait: false }, 0);
  const fullBytes = Buffer.byteLength(JSON.stringify(full));
  const fullPeers = full.peers.length;
  const rssEnd = procStatus(s.pid);
  const benchRss = process.memoryUsage().rss / 1048576;
  const errors = stats.errors;

  await stopServer();

  const out = {
    nodes: N,
    rounds: ROUNDS,
    concurrency: CONCURRENCY,
    keygenMs,
    registration: { totalMs: regMs, perNodeMs: regMs / N, ratePerS: (N * 1000) / regMs, latencyP50: median(regLatency), latencyP99: pct(regLatency, 99) },
    fullMeshMs: meshMs,
    allOnlineMs: onlineMs,
    serverCpuJoinMs: srvCpuJoin,
    joinMaps,
    sameVersionAfterJoin: sameVersion,
    longPollsInFlight: inflight,
    serverConnections: conns,
    roundResults: results,
    propagation: { medianOfMaxMs: median(results.map((x) => x.max)), maxOfMaxMs: Math.max(...results.map((x) => x.max)) },
    bytes: { delta: median(results.map((x) => x.deltaBytes).filter(Number.isFinite)), full: fullBytes, fullPeers },
    serverRss: { startMiB: rssStart.rssMiB, afterRegistrationMiB: rssAfterReg.rssMiB, endMiB: rssEnd.rssMiB, hwmMiB: rssEnd.hwmMiB },
    benchRssMiB: benchRss,
    viewSample: Math.min(VIEW_SAMPLE, N),
    viewApplyMsMedian: median(stats.viewApplyMs),
    registerRetries: stats.registerRetries,
    lastRegisterError: stats.lastRegisterError,
    pollErrors: errors,
    pollErrorsInRounds: stats.roundErrors,
    pollErrorCodes: stats.errorCodes,
    lastPollError: stats.lastError,
  };
  if (JSON_OUT) {
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    print(out);
  }
  cleanup();
  process.exit(0);
}

/** Waits until no map has been applied for `quietMs`. */
async function quiet(nodes, quietMs, limitMs) {
  const start = now();
  for (;;) {
    const a = stats.applies;
    await sleep(quietMs);
    if (stats.applies === a) return;
    if (now() - start > limitMs) throw new Error('the mesh never went quiet');
  }
}

function print(o) {
  const lines = [];
  const row = (...c) => lines.push(`| ${c.join(' | ')} |`);
  lines.push(`meshd coordination server, ${o.nodes} simulated nodes, ${cpus().length} CPUs, Node ${process.version}`);
  lines.push('');
  row('measure', 'value');
  row('---', '---:');
  row(`registration, ${o.nodes} nodes (${o.concurrency} in flight)`, `${ms(o.registration.totalMs)} ms (${ms(o.registration.perNodeMs)} ms/node, ${o.registration.ratePerS.toFixed(0)}/s)`);
  row('one registration, p50 / p99 latency', `${ms(o.registration.latencyP50)} / ${ms(o.registration.latencyP99)} ms`);
  row(`every node holds ${o.nodes - 1} peers (from the first registration)`, `${ms(o.fullMeshMs)} ms`);
  row('... and sees every peer online', `${ms(o.allOnlineMs)} ms`);
  row('server CPU for the whole join', `${ms(o.serverCpuJoinMs)} ms`);
  row('maps received in the join: full (peer entries) / deltas (peer entries)', `${o.joinMaps.full} (${o.joinMaps.fullPeers}) / ${o.joinMaps.delta} (${o.joinMaps.deltaPeers})`);
  row('long polls in flight / server connections', `${o.longPollsInFlight} / ${o.serverConnections}`);
  row('one change reaches all: median / max over rounds', `${ms(o.propagation.medianOfMaxMs)} / ${ms(o.propagation.maxOfMaxMs)} ms`);
  row('delta / full map (JSON bytes)', `${o.bytes.delta} / ${o.bytes.full} (${o.bytes.fullPeers} peers)`);
  row('server RSS: start / after join / end / peak (VmHWM)', `${mib(o.serverRss.startMiB)} / ${mib(o.serverRss.afterRegistrationMiB)} / ${mib(o.serverRss.endMiB)} / ${mib(o.serverRss.hwmMiB)} MiB`);
  row('bench process RSS (all simulated nodes)', `${mib(o.benchRssMiB)} MiB`);
  row(`NetmapView.apply of one round's map (${o.viewSample} nodes use it), median`, `${ms(o.viewApplyMsMedian)} ms`);
  row('poll errors, retried after 0.5-1 s (all / during rounds)', `${o.pollErrors} / ${o.pollErrorsInRounds}${o.pollErrors ? ` (${Object.entries(o.pollErrorCodes).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}`);
  row('registrations retried (transport error)', `${o.registerRetries}${o.lastRegisterError ? ` (last: ${o.lastRegisterError})` : ''}`);
  lines.push('');
  row('round', 'change', 'change call', 'p50 node', 'p99 node', 'all nodes', 'server CPU', 'bench CPU', 'of which applying maps');
  row('---', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---:');
  for (const r of o.roundResults) {
    row(r.round, r.kind === 'register' ? 'new node registers' : 'admin renames a node', `${ms(r.changeMs)} ms`, `${ms(r.p50)} ms`, `${ms(r.p99)} ms`, `${ms(r.max)} ms`, `${ms(r.serverCpuMs)} ms`, `${ms(r.benchCpuMs)} ms`, `${ms(r.applyMs)} ms`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch(fail);
