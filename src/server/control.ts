// Node-facing endpoints: register, map (the netmap long poll) and logout,
// each a sealed envelope in and a sealed envelope out. This file turns
// requests into calls on the server's state; it holds no state of its own.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { openRequest } from '../control/envelope.js';
import type { Freshness, FreshnessGuard } from '../control/freshness.js';
import { MAX_BODY_BYTES, MAX_ENDPOINTS, PATHS, type MapRequest, type RegisterRequest } from '../control/messages.js';
import { encodeKeyBase64 } from '../config/keys.js';
import { formatIp, formatIpEndpoint, parseIp, parseIpEndpoint, unmap } from '../net/ipaddr.js';
import type { X25519PrivateKey } from '../crypto/x25519.js';
import { ApiError, asObject, badRequest, optBool, optNumber, optString, optStringArray, parseJson, readBody, sendBytes } from './http.js';

export interface SealedCall {
  nodeKey: string;
  /**
   * Records the request as seen, refusing a replay. Handlers call it once
   * the request is authorized and before it has any effect.
   */
  admit(): void;
  payload: Record<string, unknown>;
  /** The request's source address, for the endpoint the server observes. */
  remoteAddress: string | null;
  /** Resolves when the client goes away before the reply. */
  closed: Promise<void>;
}

export type SealedHandler = (call: SealedCall) => Promise<unknown>;

const FRESHNESS_ERRORS = {
  stale: [401, 'stale', 'request timestamp is too old (replayed, or this node\'s clock is off the server\'s)'],
  future: [401, 'future', 'request timestamp is ahead of the server\'s clock'],
  replayed: [401, 'replayed', 'this request was already seen'],
  busy: [503, 'busy', 'server is tracking too many requests; retry'],
} as const;

/** Opens, checks freshness, dispatches, seals the reply. */
export async function serveSealed(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  serverKey: X25519PrivateKey,
  freshness: FreshnessGuard,
  now: () => number,
  handler: SealedHandler,
): Promise<void> {
  if (req.method !== 'POST') throw new ApiError(405, 'method', `${path} takes POST`);
  const body = await readBody(req, MAX_BODY_BYTES);
  const opened = openRequest(serverKey, path, body);
  if (!opened.ok) throw new ApiError(400, 'bad-envelope', `request is not a sealed control message for this server (${opened.reason})`);
  const refuse = (verdict: Freshness) => {
    if (verdict === 'fresh') return;
    const [status, code, message] = FRESHNESS_ERRORS[verdict];
    throw new ApiError(status, code, message);
  };
  refuse(freshness.timely(opened.timestamp, now()));
  const payload = asObject(parseJson(opened.payload), 'payload');
  const closed = new Promise<void>((resolve) => res.once('close', resolve));
  let admitted = false;
  const admit = () => {
    refuse(freshness.check(opened.ephemeralKey, opened.timestamp, now()));
    admitted = true;
  };
  const result = await handler({ nodeKey: encodeKeyBase64(opened.nodeKey), admit, payload, remoteAddress: req.socket.remoteAddress ?? null, closed });
  if (!admitted) throw new Error('a sealed handler answered without admitting the request');
  sendBytes(res, opened.sealReply(Buffer.from(JSON.stringify(result))));
}

export function isSealedPath(path: string): boolean {
  return path === PATHS.register || path === PATHS.map || path === PATHS.logout;
}

/** Validated endpoint candidates, with the address the server saw the request from first. */
export function endpointsOf(payload: Record<string, unknown>, remoteAddress: string | null): string[] {
  const reported = optStringArray(payload, 'endpoints', MAX_ENDPOINTS, 64) ?? [];
  const out: string[] = [];
  for (const text of reported) {
    const ep = parseIpEndpoint(text);
    if (!ep.ok) throw badRequest(`endpoint "${text}": ${ep.reason}`);
    const canon = formatIpEndpoint(ep.value);
    if (!out.includes(canon)) out.push(canon);
  }
  const seen = remoteAddress ? parseIp(remoteAddress) : null;
  if (seen && out.length > 0) {
    const port = parseIpEndpoint(out[0]);
    const observed = formatIpEndpoint({ ...unmap(seen), port: port.ok ? port.value.port : 0 });
    if (!out.some((e) => e.startsWith(formatIp(unmap(seen)) + ':') || e.startsWith(`[${formatIp(unmap(seen))}]:`))) out.unshift(observed);
  }
  return out.slice(0, MAX_ENDPOINTS);
}

export function parseRegister(payload: Record<string, unknown>): RegisterRequest {
  const hostname = optString(payload, 'hostname', 255) ?? '';
  const authKey = optString(payload, 'authKey', 128);
  return { hostname, authKey, endpoints: [] };
}

export function parseMap(payload: Record<string, unknown>): MapRequest {
  return { since: optNumber(payload, 'since') ?? 0, wait: optBool(payload, 'wait') ?? false, endpoints: [] };
}
