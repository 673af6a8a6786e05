import type { IncomingMessage } from 'node:http';
import { describeError } from './failures.ts';

/** A response body was larger than the caller allows; the stream has been cancelled. */
export class BodyTooLargeError extends Error {}

/**
 * Reads a fetch response body as UTF-8, giving up (and cancelling the stream) past `maxBytes`, so a broken
 * or hostile server cannot exhaust memory.
 * @throws BodyTooLargeError past `maxBytes`.
 */
export async function readCapped(response: Response, maxBytes: number): Promise<string> {
  if (!response.body) return '';
  // fetch bodies are byte streams; the DOM typings leave the chunk type open.
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const parts: string[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw new BodyTooLargeError();
      }
      parts.push(decoder.decode(value, { stream: true }));
    }
  } finally {
    reader.releaseLock();
  }
  parts.push(decoder.decode());
  return parts.join('');
}

/** What {@link requestCapped} needs besides the URL. */
export interface CappedRequestOptions {
  /** @default 'GET' */
  method?: 'GET' | 'POST' | 'DELETE';
  headers: Record<string, string>;
  /** A request body, sent as it is (the caller sets its content-type). */
  body?: string;
  maxBytes: number;
  timeoutMs: number;
  /** The caller's signal: its abort is thrown as it is, not mapped by `fail`. */
  signal?: AbortSignal | undefined;
  /** The request as named in messages, e.g. `GET /api/v2/alerts`. */
  request: string;
  /** Builds the error thrown for a failed request. */
  fail: (message: string, details?: Record<string, unknown>) => Error;
}

/** An HTTP answer read to its end (redirects are answers too: they are never followed). */
export interface CappedAnswer {
  status: number;
  statusText: string;
  /** 2xx. */
  ok: boolean;
  body: string;
}

/**
 * Sends one request to `url` (a service from the config: Alertmanager, Prometheus) within `timeoutMs`,
 * reading at most `maxBytes` of the answer. A body too large, a timeout or a network failure is thrown as
 * `fail(...)`; the caller's own abort as it is. Node's `http` module rather than `fetch`: `fetch` loads and
 * compiles its own HTTP stack (undici) on first use, about 25 ms of a one-off `gameops check daily`.
 * Connections are kept alive between requests (Node's global agent), and do not keep a process running.
 * @returns the answer, whatever its HTTP status.
 */
export async function requestCapped(url: URL, options: CappedRequestOptions): Promise<CappedAnswer> {
  const { request, fail, timeoutMs, maxBytes } = options;
  const deadline = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline;
  try {
    // The modules themselves rather than an ESM import: importing 'node:http' from ESM reads every export,
    // and in Node 24 some of them (WebSocket and friends) load undici, the cost this function avoids. TLS
    // loads only for an https:// service.
    const send = process.getBuiltinModule(url.protocol === 'https:' ? 'node:https' : 'node:http').request;
    const payload = options.body === undefined ? undefined : Buffer.from(options.body, 'utf8');
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = send(url, {
        method: options.method ?? 'GET',
        headers: payload ? { ...options.headers, 'content-length': String(payload.length) } : options.headers,
        signal,
      });
      req.once('response', resolve);
      req.once('error', reject);
      req.end(payload);
    });
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > maxBytes) throw new BodyTooLargeError();
        chunks.push(chunk);
      }
    } finally {
      if (!res.complete) res.destroy();
    }
    const status = res.statusCode ?? 0;
    return {
      status,
      statusText: res.statusMessage ?? '',
      ok: status >= 200 && status < 300,
      body: Buffer.concat(chunks).toString('utf8'),
    };
  } catch (err) {
    if (err instanceof BodyTooLargeError)
      throw fail(`${request} answered more than ${maxBytes / 1024 / 1024} MiB; refusing to read it`);
    if (options.signal?.aborted) {
      if (err === options.signal.reason) throw err;
      throw options.signal.reason instanceof Error ? options.signal.reason : err;
    }
    if (deadline.aborted) throw fail(`${request} did not answer within ${timeoutMs} ms`, { timeoutMs });
    throw fail(`${request} failed: ${describeError(err)}`);
  }
}
