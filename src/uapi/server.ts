// The WireGuard userspace API socket (/var/run/wireguard/NAME.sock) that the
// `wg` tool talks to. Thin: frames requests with UapiReader, parses them, and
// hands them to whatever implements UapiHandler (the engine).
import net from 'node:net';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { formatErrno, formatGetResponse, parseRequest, UapiError, UapiReader, type DeviceSnapshot, type SetRequest } from './protocol.js';

export const UAPI_DIR = '/var/run/wireguard';

export interface UapiHandler {
  snapshot(): DeviceSnapshot;
  applySet(req: SetRequest): Promise<void>;
}

export function uapiSocketPath(name: string, dir = UAPI_DIR): string {
  return `${dir}/${name}.sock`;
}

/** At most this many clients at once; `wg` opens one connection per command. */
const MAX_CLIENTS = 32;

export class UapiServer {
  private constructor(private readonly server: net.Server, readonly path: string) {}

  static async listen(path: string, handler: UapiHandler, onError: (err: Error) => void = () => {}): Promise<UapiServer> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    // A stale socket from a crashed daemon would make listen fail with EADDRINUSE.
    await removeStaleSocket(path);
    const server = net.createServer((sock) => serve(sock, handler, onError));
    server.maxConnections = MAX_CLIENTS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(path, 0o600); // root only: the socket can read the private key
    return new UapiServer(server, path);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }
}

function serve(sock: net.Socket, handler: UapiHandler, onError: (err: Error) => void): void {
  const reader = new UapiReader();
  let chain = Promise.resolve();
  sock.on('error', () => {});
  sock.on('data', (chunk) => {
    let requests: string[];
    try {
      requests = reader.push(chunk);
    } catch (err) {
      sock.end(formatErrno(err instanceof UapiError ? err.errno : 22));
      return;
    }
    for (const text of requests) {
      // Requests on one connection are answered in order.
      chain = chain.then(() => answer(text, handler, onError)).then(
        (reply) => void (sock.writable && sock.write(reply)),
        () => {},
      );
    }
  });
}

async function answer(text: string, handler: UapiHandler, onError: (err: Error) => void): Promise<string> {
  try {
    const req = parseRequest(text);
    if (req.op === 'get') return formatGetResponse(handler.snapshot());
    await handler.applySet(req.set);
    return formatErrno(0);
  } catch (err) {
    if (err instanceof UapiError) return formatErrno(err.errno);
    onError(err as Error);
    return formatErrno(5); // EIO: something on our side failed
  }
}

async function removeStaleSocket(path: string): Promise<void> {
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new UapiError('EINVAL', `${path} is in use by another running daemon`);
  rmSync(path, { force: true });
}
