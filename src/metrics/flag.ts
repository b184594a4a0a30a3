// `--metrics ADDR` for the CLI: checked before anything starts (a bad address
// is a usage error, exit 2), then served; failures are one CliError line.
import type { Registry } from 'prom-client';
import { CliError } from '../cli/errors.js';
import type { Logger } from '../daemon/log.js';
import { MetricsError, MetricsServer, parseMetricsAddress } from './http.js';

export function checkMetricsFlag(text: string): void {
  try {
    parseMetricsAddress(text);
  } catch (err) {
    if (err instanceof MetricsError) throw new CliError('EUSAGE', err.message, 2);
    throw err;
  }
}

/** Serves `registry` on `text`, logging where; a listen failure is a CliError. */
export async function serveMetrics(text: string, registry: Registry, log: Logger): Promise<MetricsServer> {
  const server = await MetricsServer.listen(text, registry, (msg) => log.warn(msg)).catch((err: Error) => {
    throw new CliError('EMETRICS', err.message);
  });
  log.info({ metrics: `${text.replace(/:\d+$/, '')}:${server.port}` }, 'serving Prometheus metrics on /metrics');
  return server;
}
