// `meshd daemon`: runs one WireGuard interface in the foreground. With
// --config it applies a wg-quick file; it always serves the WireGuard UAPI
// socket so `wg show|set|syncconf` work on it. SIGTERM/SIGINT shut it down
// cleanly, which removes the interface and everything on it.
import { readFileSync } from 'node:fs';
import { Engine } from '../daemon/engine.js';
import { createLogger, type Logger } from '../daemon/log.js';
import { DEFAULT_PORT, NodeAgent } from '../node/agent.js';
import { DEFAULT_SOCKET, LocalApi } from '../node/localapi.js';
import { DEFAULT_STATE_DIR } from '../node/state.js';
import { parseWgQuickConfig, type WgQuickConfig } from '../config/wgquick.js';
import { UapiServer, uapiSocketPath, UAPI_DIR } from '../uapi/server.js';
import { CliError } from './errors.js';
import { selectTransportCipher } from '../crypto/transportCipher.js';
import { transportCipherName, useTransportCipher } from '../noise/transport.js';
import { nativeAvailable, nativeDatapathAvailable } from '../io/tun.js';
import type { DatapathKind } from '../daemon/engine.js';
import { checkMetricsFlag } from '../metrics/flag.js';
import type { MetricsServer } from '../metrics/http.js';
import type { NodeMetricsSource } from '../metrics/node.js';

export interface DaemonArgs {
  tun: string;
  stateDir?: string;
  socket?: string;
  config?: string;
  port?: number;
  logLevel: string;
  uapiDir?: string;
  aead?: 'auto' | 'native' | 'node';
  /** host:port for Prometheus metrics (meant for localhost); off when absent. */
  metrics?: string;
  /** Where transport data is handled; auto = native when the addon has it. */
  datapath?: 'auto' | DatapathKind;
  /** Native datapath: TUN queues, one sending thread each. */
  tunQueues?: number;
}

/** --datapath auto: the native packet loop when the addon loads, else TypeScript; either way logged. */
export function chooseDatapath(want: 'auto' | DatapathKind, log: Logger): DatapathKind {
  const have = nativeDatapathAvailable();
  if (want === 'native' && !have) throw new CliError('ENATIVE', '--datapath native needs the native addon (npm run build:native)');
  const kind = want === 'auto' ? (have ? 'native' : 'js') : want;
  log.info({ datapath: kind, requested: want }, kind === 'native' ? 'datapath: native packet loop' : 'datapath: TypeScript');
  return kind;
}

/** Shutdown must finish within 2 s even if something hangs. */
const SHUTDOWN_DEADLINE_MS = 1500;

export async function runDaemon(args: DaemonArgs): Promise<void> {
  const log = createLogger(args.logLevel);
  // Parse the whole config before touching the system: a bad file changes nothing.
  let cfg: WgQuickConfig | null = null;
  if (args.config) {
    let text: string;
    try {
      text = readFileSync(args.config, 'utf8');
    } catch (err) {
      throw new CliError('ECONFIG', `cannot read ${args.config}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    cfg = parseWgQuickConfig(text, args.config);
    for (const ig of cfg.ignored) log.warn({ key: ig.key, line: ig.line }, `${args.config}:${ig.line}: ${ig.key} is a wg-quick setting; meshd daemon ignores it`);
  }
  const port = args.port ?? cfg?.interface.listenPort ?? 0;
  if (args.metrics !== undefined) checkMetricsFlag(args.metrics);
  if (args.aead === 'native' && !nativeAvailable()) throw new CliError('ENATIVE', '--aead native needs the native addon (npm run build:native)');
  useTransportCipher(selectTransportCipher(args.aead ?? 'auto'));
  log.info({ aead: transportCipherName() }, 'transport cipher');
  const datapath = chooseDatapath(args.datapath ?? 'auto', log);
  if (!cfg) return runAgent(args, log, datapath);
  const engine = await Engine.start({ tunName: args.tun, listenPort: port, mtu: cfg?.interface.mtu, log, datapath, tunQueues: args.tunQueues });
  let uapi: UapiServer | null = null;
  let metrics: MetricsServer | null = null;
  try {
    if (cfg) {
      if (args.port !== undefined) cfg.interface.listenPort = args.port;
      await engine.applyWgQuick(cfg);
    }
    uapi = await UapiServer.listen(uapiSocketPath(engine.tunName, args.uapiDir ?? UAPI_DIR), engine, (err) => log.error({ err: err.message }, 'UAPI request failed'));
    if (args.metrics !== undefined) metrics = await startMetrics(args.metrics, { device: () => engine.device, datapath: () => engine.native?.stats() ?? null }, log);
  } catch (err) {
    await uapi?.close().catch(() => {});
    await engine.close();
    throw err;
  }
  log.info({ interface: engine.tunName, listenPort: engine.listenPort, peers: engine.device.peers.size, uapi: uapi.path }, 'meshd daemon running');
  onShutdown(log, async () => {
    await metrics?.close();
    await uapi?.close().catch(() => {});
    await engine.close();
  });
}

/** Without --config: the node agent, driven by `meshd up` over the local socket. */
async function runAgent(args: DaemonArgs, log: Logger, datapath: DatapathKind): Promise<void> {
  let agent: NodeAgent;
  try {
    agent = new NodeAgent({ stateDir: args.stateDir ?? DEFAULT_STATE_DIR, tunName: args.tun, port: args.port ?? DEFAULT_PORT, log, uapiDir: args.uapiDir, datapath, tunQueues: args.tunQueues });
  } catch (err) {
    throw new CliError('ESTATE', (err as Error).message);
  }
  const api = await LocalApi.listen(args.socket ?? DEFAULT_SOCKET, agent).catch((err: Error) => {
    throw new CliError('ESOCKET', `cannot serve ${args.socket ?? DEFAULT_SOCKET}: ${err.message}`);
  });
  const metrics = args.metrics === undefined ? null : await startMetrics(args.metrics, { device: () => agent.device, agent: () => agent.snapshot(), datapath: () => agent.datapathStats() }, log).catch(async (err) => {
    await api.close().catch(() => {});
    throw err;
  });
  log.info({ socket: api.path, stateDir: args.stateDir ?? DEFAULT_STATE_DIR, publicKey: agent.publicKey }, 'meshd daemon waiting for commands');
  onShutdown(log, async () => {
    await metrics?.close();
    await api.close().catch(() => {});
    await agent.close();
  });
  await agent.resume().catch((err: Error) => log.error({ err: err.message }, 'could not resume the previous session; run meshd up'));
}

/** prom-client is loaded only when --metrics asks for it (~10 MB of a daemon's RSS otherwise). */
async function startMetrics(addr: string, src: NodeMetricsSource, log: Logger): Promise<MetricsServer> {
  const [{ serveMetrics }, { nodeRegistry }] = await Promise.all([import('../metrics/flag.js'), import('../metrics/node.js')]);
  return serveMetrics(addr, nodeRegistry(src), log);
}

/** SIGTERM/SIGINT: run `stop`, exit 0; exit 1 if it takes past the deadline. */
function onShutdown(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(1), SHUTDOWN_DEADLINE_MS);
    force.unref();
    await stop();
    clearTimeout(force);
    process.exit(0);
  };
  process.on('SIGTERM', () => void handler('SIGTERM'));
  process.on('SIGINT', () => void handler('SIGINT'));
}
