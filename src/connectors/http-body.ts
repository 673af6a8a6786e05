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

/** What {@link fetchCapped} needs besides the URL. */
export interface CappedFetchOptions {
  headers: Record<string, string>;
  maxBytes: number;
  timeoutMs: number;
  /** The caller's signal: its abort is thrown as it is, not mapped by `fail`. */
  signal?: AbortSignal | undefined;
  /** The request as named in messages, e.g. `GET /api/v2/alerts`. */
  request: string;
  /** Builds the error thrown for a failed request. */
  fail: (message: string, details?: Record<string, unknown>) => Error;
}

/**
 * GETs `url` (redirects refused) within `timeoutMs`, reading at most `maxBytes` of the body. A body too
 * large, a timeout or a network failure is thrown as `fail(...)`; the caller's own abort as it is.
 * @returns the response and its body, whatever the HTTP status.
 */
export async function fetchCapped(
  url: URL,
  options: CappedFetchOptions,
): Promise<{ response: Response; body: string }> {
  const { request, fail, timeoutMs, maxBytes } = options;
  const deadline = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline;
  try {
    const response = await fetch(url, { headers: options.headers, signal, redirect: 'error' });
    const body = await readCapped(response, maxBytes);
    return { response, body };
  } catch (err) {
    if (err instanceof BodyTooLargeError)
      throw fail(`${request} answered more than ${maxBytes / 1024 / 1024} MiB; refusing to read it`);
    if (options.signal?.aborted && err === options.signal.reason) throw err;
    if (deadline.aborted) throw fail(`${request} did not answer within ${timeoutMs} ms`, { timeoutMs });
    throw fail(`${request} failed: ${describeError(err)}`);
  }
}
