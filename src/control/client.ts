// The node's side of the control channel: sealed requests to a coordination
// server whose public key the node has pinned, over http:// or https://.
// A reply that does not open under the pinned key is refused, so a server
// (or anyone in the path) without that key can neither read nor answer.
import { decodeKeyBase64 } from '../config/keys.js';
import type { X25519PrivateKey } from '../crypto/x25519.js';
import { sealRequest } from './envelope.js';
import { PATHS, type ErrorBody, type MapRequest, type MapResponse, type RegisterRequest, type RegisterResponse, type ServerKeyResponse } from './messages.js';

export class ControlError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** The HTTP status, or 0 when the server could not be reached. */
    readonly status = 0,
  ) {
    super(message);
    this.name = 'ControlError';
  }

  /** A refusal that retrying will not change (bad key, node removed). */
  get permanent(): boolean {
    return this.status === 401 && this.code !== 'stale' && this.code !== 'future' && this.code !== 'replayed';
  }
}

/** The server URL without a `key=` pin, and the pinned key if the URL carried one. */
export function parseLoginUrl(text: string): { url: string; serverKey: Uint8Array | null } {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new ControlError('EURL', `login server "${text}" is not a URL (e.g. https://coord.example or http://10.0.0.5:8080)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ControlError('EURL', `login server "${text}" must be http:// or https://`);
  const pin = u.searchParams.get('key');
  u.searchParams.delete('key');
  u.hash = '';
  let serverKey: Uint8Array | null = null;
  if (pin !== null) {
    try {
      serverKey = decodeKeyBase64(pin.includes('-') || pin.includes('_') || pin.length === 43 ? Buffer.from(pin, 'base64url').toString('base64') : pin);
    } catch {
      throw new ControlError('EURL', `key=${pin} in the login URL is not a server public key`);
    }
  }
  return { url: u.toString().replace(/\/+$/, ''), serverKey };
}

const REQUEST_TIMEOUT_MS = 15_000;

async function httpRequest(url: string, init: RequestInit, timeoutMs: number): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (err as Error).message;
    throw new ControlError('EUNREACHABLE', `cannot reach ${new URL(url).origin}: ${why}`);
  }
}

async function errorOf(res: Response): Promise<ControlError> {
  let body: ErrorBody | null = null;
  try {
    body = (await res.json()) as ErrorBody;
  } catch {
    /* not JSON */
  }
  return new ControlError(body?.error?.code ?? `http-${res.status}`, body?.error?.message ?? `server answered HTTP ${res.status}`, res.status);
}

/** The server's public key and how far its clock is from ours (ms to add to ours). */
export async function fetchServerKey(url: string): Promise<{ serverKey: Uint8Array; offsetMs: number }> {
  const sent = Date.now();
  const res = await httpRequest(`${url}${PATHS.key}`, { method: 'GET' }, REQUEST_TIMEOUT_MS);
  if (!res.ok) throw await errorOf(res);
  const body = (await res.json()) as ServerKeyResponse;
  const got = Date.now();
  let serverKey: Uint8Array;
  try {
    serverKey = decodeKeyBase64(body.serverKey);
  } catch {
    throw new ControlError('EPROTO', `${url} is not a meshd coordination server (no server key)`);
  }
  return { serverKey, offsetMs: body.time - (sent + got) / 2 };
}

export interface ControlClientOptions {
  url: string;
  serverKey: Uint8Array;
  nodeKey: X25519PrivateKey;
  /** Added to the local clock when stamping requests. */
  offsetMs?: number;
}

export class ControlClient {
  offsetMs: number;
  constructor(private readonly o: ControlClientOptions) {
    this.offsetMs = o.offsetMs ?? 0;
  }

  private async call<T>(path: string, payload: unknown, timeoutMs = REQUEST_TIMEOUT_MS, retriedClock = false): Promise<T> {
    const sealed = sealRequest({ node: this.o.nodeKey, serverPublicKey: this.o.serverKey, path, payload: Buffer.from(JSON.stringify(payload)), now: Date.now() + this.offsetMs });
    const res = await httpRequest(`${this.o.url}${path}`, { method: 'POST', body: sealed.bytes, headers: { 'content-type': 'application/octet-stream' } }, timeoutMs);
    if (!res.ok) {
      const err = await errorOf(res);
      // Our clock drifted from the server's: measure again and retry once.
      if (!retriedClock && (err.code === 'stale' || err.code === 'future')) {
        this.offsetMs = (await fetchServerKey(this.o.url)).offsetMs;
        return this.call(path, payload, timeoutMs, true);
      }
      throw err;
    }
    const plain = sealed.openReply(new Uint8Array(await res.arrayBuffer()));
    if (!plain) throw new ControlError('ESERVERKEY', `the reply from ${this.o.url} is not sealed by the pinned server key: wrong server, or someone in the path`);
    return JSON.parse(plain.toString('utf8')) as T;
  }

  register(req: RegisterRequest): Promise<RegisterResponse> {
    return this.call(PATHS.register, req);
  }

  /** A long poll when `wait`: allow for the server's hold time. */
  map(req: MapRequest, holdMs: number): Promise<MapResponse> {
    return this.call(PATHS.map, req, holdMs + REQUEST_TIMEOUT_MS);
  }

  logout(): Promise<{ loggedOut: true }> {
    return this.call(PATHS.logout, {});
  }
}
