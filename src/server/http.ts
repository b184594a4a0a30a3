// The HTTP edge of the coordination server: bounded body reads, JSON and
// binary replies, one error type that becomes a 4xx/5xx with a JSON body.
// A malformed request never throws past here: the server keeps serving.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorBody } from '../control/messages.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** More fields for the error body (a policy error's line and column). */
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const badRequest = (message: string, code = 'bad-request') => new ApiError(400, code, message);

/** The whole body, refused with 413 past `limit` bytes (without buffering the excess). */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new ApiError(413, 'too-large', `request body over ${limit} bytes`));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= limit) return void chunks.push(c);
      if (!refused) {
        refused = true;
        chunks.length = 0;
        reject(new ApiError(413, 'too-large', `request body over ${limit} bytes`));
      }
      // The excess is read and dropped so the 413 reaches the client (destroying
      // at once loses it); a body that goes on past twice the limit is cut off.
      if (size > 2 * limit) req.destroy();
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const body = await readBody(req, limit);
  if (body.length === 0) return {};
  return parseJson(body);
}

export function parseJson(body: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(body).toString('utf8'));
  } catch (err) {
    throw badRequest(`body is not JSON: ${(err as Error).message}`, 'bad-json');
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

export function sendBytes(res: ServerResponse, body: Uint8Array): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'cache-control': 'no-store' });
  res.end(body);
}

export function sendError(res: ServerResponse, err: unknown): ApiError {
  const e = err instanceof ApiError ? err : new ApiError(500, 'internal', 'internal server error');
  const body: ErrorBody = { error: { ...e.extra, code: e.code, message: e.message } };
  sendJson(res, e.status, body);
  return e;
}

// --- validation of untrusted JSON -------------------------------------------

export function asObject(v: unknown, what = 'body'): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badRequest(`${what} must be a JSON object`);
  return v as Record<string, unknown>;
}

export function optString(o: Record<string, unknown>, key: string, max = 256): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw badRequest(`${key} must be a string`);
  if (v.length > max) throw badRequest(`${key} is longer than ${max} characters`);
  return v;
}

export function optBool(o: Record<string, unknown>, key: string): boolean | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw badRequest(`${key} must be true or false`);
  return v;
}

export function optNumber(o: Record<string, unknown>, key: string): number | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw badRequest(`${key} must be a non-negative integer`);
  return v;
}

export function optStringArray(o: Record<string, unknown>, key: string, maxItems: number, maxLen = 256): string[] | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.length > maxItems || v.some((x) => typeof x !== 'string' || x.length > maxLen)) {
    throw badRequest(`${key} must be an array of at most ${maxItems} strings`);
  }
  return v as string[];
}
