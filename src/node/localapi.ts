// The daemon's local API: JSON over HTTP on a Unix socket (default
// /run/meshd/meshd.sock, mode 0600 so only root may drive it). The CLI's
// up/down/logout/status/ip are thin clients of it.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmodSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { connect } from 'node:net';
import { AgentError, type NodeAgent } from './agent.js';
import { ControlError } from '../control/client.js';
import { asObject, optBool, optNumber, optString, optStringArray, readJson, sendError, sendJson, ApiError } from '../server/http.js';
import { MAX_ROUTES } from '../control/messages.js';

export const DEFAULT_SOCKET = '/run/meshd/meshd.sock';

/** Refuses to take over a socket a live daemon is serving; removes a dead one. */
async function claimSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new AgentError('EBUSY', `another meshd daemon is serving ${path}`);
  rmSync(path, { force: true });
}

export class LocalApi {
  private constructor(
    private readonly server: Server,
    readonly path: string,
  ) {}

  static async listen(path: string, agent: NodeAgent): Promise<LocalApi> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    await claimSocket(path);
    const server = createServer((req, res) => void handle(agent, req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, resolve);
    });
    chmodSync(path, 0o600);
    return new LocalApi(server, path);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    rmSync(this.path, { force: true });
  }
}

async function handle(agent: NodeAgent, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const route = `${req.method} ${new URL(req.url ?? '/', 'http://local').pathname}`;
    switch (route) {
      case 'POST /up': {
        const b = asObject(await readJson(req, 64 * 1024));
        const r = await agent.up({
          loginServer: optString(b, 'loginServer', 2048),
          authKey: optString(b, 'authKey', 256),
          hostname: optString(b, 'hostname', 255),
          advertiseRoutes: optStringArray(b, 'advertiseRoutes', MAX_ROUTES, 64),
          acceptRoutes: optBool(b, 'acceptRoutes'),
          snatSubnetRoutes: optBool(b, 'snatSubnetRoutes'),
          advertiseTags: optStringArray(b, 'advertiseTags', 32, 64),
          timeoutMs: optNumber(b, 'timeoutMs'),
        });
        return sendJson(res, 200, r);
      }
      case 'POST /down':
        await agent.down();
        return sendJson(res, 200, { state: agent.status });
      case 'POST /logout':
        await agent.logout();
        return sendJson(res, 200, { state: agent.status });
      case 'POST /ping': {
        const b = asObject(await readJson(req, 64 * 1024));
        const peer = optString(b, 'peer', 255);
        if (!peer) throw new ApiError(400, 'bad-request', 'give the peer to ping: a name, overlay IP or public key');
        const tries = Math.min(Math.max(optNumber(b, 'tries') ?? 10, 1), 100);
        const timeoutMs = Math.min(Math.max(optNumber(b, 'timeoutMs') ?? 1000, 100), 10_000);
        return sendJson(res, 200, await agent.ping(peer, tries, timeoutMs));
      }
      case 'GET /status':
        return sendJson(res, 200, agent.snapshot());
      default:
        throw new ApiError(404, 'no-such-endpoint', `no local endpoint ${route}`);
    }
  } catch (err) {
    if (err instanceof AgentError) return void sendError(res, new ApiError(err.status, err.code, err.message));
    if (err instanceof ControlError) return void sendError(res, new ApiError(err.status || 502, err.code, err.message));
    if (err instanceof ApiError) return void sendError(res, err);
    sendError(res, new ApiError(500, 'internal', (err as Error).message));
  }
}

/** The CLI side: one request to the daemon's socket. */
export function localRequest<T>(socketPath: string, method: string, path: string, body?: unknown, timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? '' : JSON.stringify(body);
    const req = request({ socketPath, method, path, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return reject(new AgentError('EPROTO', `the daemon at ${socketPath} answered something that is not JSON`));
        }
        if ((res.statusCode ?? 500) >= 400) {
          const e = (parsed as { error?: { code?: string; message?: string } }).error;
          return reject(new AgentError(e?.code ?? 'EDAEMON', e?.message ?? `daemon answered ${res.statusCode}`, res.statusCode));
        }
        resolve(parsed as T);
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
        reject(new AgentError('ENODAEMON', `meshd daemon is not running (nothing at ${socketPath}): start it with systemctl start meshd, or meshd daemon`));
      } else if (err.code === 'EACCES') {
        reject(new AgentError('EACCES', `permission denied on ${socketPath}: run as root`));
      } else reject(new AgentError('EDAEMON', `talking to the daemon at ${socketPath}: ${err.message}`));
    });
    req.end(text);
  });
}
