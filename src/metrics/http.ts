// The Prometheus endpoint: `--metrics 127.0.0.1:9101` serves GET /metrics
// (text exposition format) and nothing else. Off unless the flag is given.
// It is meant for localhost: the scrape names peers by public key and node
// names, so an address other than loopback is bound as given but logged as a
// warning. Metric values are read from live state at scrape time.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { formatIp, parseIpEndpoint } from '../net/ipaddr.js';

export class MetricsError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'MetricsError';
  }
}

export interface MetricsAddress {
  host: string;
  port: number;
  loopback: boolean;
}

/** "127.0.0.1:9101", "[::1]:9101" or "localhost:9101"; the host is required (no ":9101" meaning every interface). */
export function parseMetricsAddress(text: string): MetricsAddress {
  const local = /^localhost:(\d{1,5})$/.exec(text);
  if (local && Number(local[1]) <= 65535) return { host: 'localhost', port: Number(local[1]), loopback: true };
  const ep = parseIpEndpoint(text);
  if (!ep.ok) throw new MetricsError('EMETRICS', `--metrics "${text}": ${ep.reason} (use host:port or [v6]:port, e.g. 127.0.0.1:9101)`);
  const b = ep.value.bytes;
  const loopback = ep.value.family === 4 ? b[0] === 127 : b.every((x, i) => x === (i === 15 ? 1 : 0));
  return { host: formatIp(ep.value), port: ep.value.port, loopback };
}

export class MetricsServer {
  private constructor(
    private readonly http: Server,
    readonly address: MetricsAddress,
  ) {}

  /** Listens on `text` (see parseMetricsAddress); `warn` hears of a non-loopback address. */
  static async listen(text: string, registry: Registry, warn?: (msg: string) => void): Promise<MetricsServer> {
    const addr = parseMetricsAddress(text);
    if (!addr.loopback) warn?.(`metrics on ${text} are reachable from the network; they are meant for localhost (127.0.0.1 or [::1])`);
    const http = createServer((req, res) => void serve(registry, req, res));
    http.requestTimeout = 10_000;
    http.headersTimeout = 5_000;
    await new Promise<void>((resolve, reject) => {
      http.once('error', (err: NodeJS.ErrnoException) => reject(new MetricsError('EMETRICS', `cannot serve metrics on ${text}: ${err.code ?? err.message}`)));
      http.listen(addr.port, addr.host, resolve);
    });
    return new MetricsServer(http, addr);
  }

  get port(): number {
    return (this.http.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }
}

async function serve(registry: Registry, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' || path !== '/metrics') {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: GET /metrics\n');
    return;
  }
  try {
    const body = await registry.metrics();
    res.writeHead(200, { 'content-type': registry.contentType }).end(body);
  } catch (err) {
    res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`metrics collection failed: ${(err as Error).message}\n`);
  }
}
