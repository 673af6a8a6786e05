/**
 * One HTTP POST to a checked destination, and what its answer means for a retry.
 *
 * The connection goes to the addresses that were checked (a pinned lookup), no redirect is followed, the
 * answer is read up to 64 KiB and the caller's signal (which carries the attempt's deadline) ends
 * everything, including a peer that accepts the connection and never answers.
 */
import type { LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { pinnedLookup } from '../connectors/outbound.ts';
import { discordRetryAfter, parseRetryAfter } from './retry.ts';

/** How much of an answer is read; the rest is not waited for. */
export const MAX_RESPONSE_BYTES = 64 * 1024;

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  /** Up to {@link MAX_RESPONSE_BYTES} of the body, as text. */
  body: string;
  /** The body was longer (or broke off) and was not read to its end. */
  truncated: boolean;
}

/**
 * POSTs `payload` to `url`, connecting only to `addresses`. Rejects on network errors and on `signal`;
 * resolves with any status, redirects included (they are not followed).
 */
export async function postOnce(
  url: URL,
  payload: Buffer,
  headers: Record<string, string>,
  addresses: LookupAddress[],
  signal: AbortSignal,
): Promise<HttpAnswer> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = send(url, {
      method: 'POST',
      headers: { ...headers, 'content-length': String(payload.length) },
      lookup: pinnedLookup(addresses),
      agent: false,
      signal,
    });
    req.once('response', resolve);
    req.once('error', reject);
    req.end(payload);
  });
  const { body, truncated } = await readCapped(res, MAX_RESPONSE_BYTES);
  return { status: res.statusCode ?? 0, headers: res.headers, body, truncated };
}

/**
 * The body up to `max` bytes. Once the status is known the answer counts whatever happens to the body, so
 * a body that is too long or breaks off is kept as read (`truncated`) rather than failing the attempt.
 */
async function readCapped(res: IncomingMessage, max: number): Promise<{ body: string; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      const room = max - size;
      chunks.push(chunk.length > room ? chunk.subarray(0, room) : chunk);
      size += Math.min(chunk.length, room);
      if (chunk.length > room) {
        truncated = true;
        break;
      }
    }
  } catch {
    truncated = true;
  } finally {
    if (!res.complete) res.destroy();
  }
  return { body: Buffer.concat(chunks).toString('utf8'), truncated };
}

/** What an HTTP answer means: delivered, or failed (and whether to try again, and when). */
export type HttpVerdict =
  | { ok: true; response: string }
  | { ok: false; retryable: boolean; retryAfterMs?: number | undefined; error: string };

/**
 * 2xx delivered; 408, 425, 429 and 5xx worth retrying (after Retry-After, or Discord's `retry_after`, when
 * given); redirects and other 4xx are not (the configuration is wrong or the receiver refuses the message).
 * The start of the peer's answer is quoted in the error after `mask` (applied to the whole answer before
 * it is cut, so that no prefix of a secret the peer echoed survives the cut).
 */
export function classifyAnswer(
  answer: HttpAnswer,
  nowMs: number,
  mask: (text: string) => string = (text) => text,
): HttpVerdict {
  const { status } = answer;
  if (status >= 200 && status < 300)
    return { ok: true, response: `HTTP ${status}${answer.truncated ? ' (answer not read to its end)' : ''}` };
  const said = snippet(mask(answer.body));
  if (status >= 300 && status < 400)
    return {
      ok: false,
      retryable: false,
      error: `answered a redirect (HTTP ${status}); redirects are not followed`,
    };
  const retryable = status === 408 || status === 425 || status === 429 || status >= 500 || status < 200;
  const header: string | undefined = answer.headers['retry-after'];
  const retryAfterMs = retryable
    ? (parseRetryAfter(header, nowMs) ?? discordRetryAfter(answer.body))
    : undefined;
  const wait = retryAfterMs !== undefined ? ` (retry after ${formatWait(retryAfterMs)})` : '';
  return {
    ok: false,
    retryable,
    retryAfterMs,
    error: `answered HTTP ${status}${wait}${said ? `: ${said}` : ''}`,
  };
}

/** Network error codes after which the same request may well succeed. */
const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'ERR_STREAM_PREMATURE_CLOSE',
  'HPE_INVALID_CONSTANT',
]);

/**
 * Whether a network error is worth retrying: resets, refusals, timeouts and hang-ups are; a certificate
 * the peer will still present in a minute (expired, self-signed, wrong name) is not. Unknown errors are
 * retried: at-least-once delivery prefers a duplicate (deduplicated by the delivery id) to a loss.
 */
export function isTransientNetworkError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return true;
  if (TRANSIENT_CODES.has(code)) return true;
  return !/CERT|SELF_SIGNED|ERR_TLS_CERT|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(code);
}

/**
 * An error that says the channel's configuration is wrong, so that the same request will fail the same
 * way (never worth retrying), as a message that names what to check; undefined for any other error.
 * TLS spoken to a plain-text port (`wrong version number`) or no TLS version or cipher in common; a
 * header value with a line break or control character (a token read with its trailing newline); a URL
 * Node refuses. The message is this function's own: it never quotes the header value or the URL.
 */
export function configProblem(err: unknown): string | undefined {
  const { code, originalCode, message } = (err ?? {}) as {
    code?: unknown;
    originalCode?: unknown;
    message?: unknown;
  };
  const codes = [code, originalCode].filter((c): c is string => typeof c === 'string');
  const text = typeof message === 'string' ? message : '';
  if (
    /wrong version number|ERR_SSL_WRONG_VERSION_NUMBER/i.test(text) ||
    codes.includes('ERR_SSL_WRONG_VERSION_NUMBER')
  )
    return 'TLS handshake failed (wrong version number): the server does not speak TLS on this port; check https:// against http:// (smtps:// against smtp://) and the port';
  const ssl = codes.find((c) => c.startsWith('ERR_SSL_'));
  if (ssl)
    return `TLS handshake failed (${ssl}): the server and gameops have no TLS version or cipher in common`;
  if (
    codes.includes('EPROTO') &&
    /unsupported protocol|no protocols available|alert protocol version/i.test(text)
  )
    return 'TLS handshake failed (unsupported protocol): the server and gameops have no TLS version in common';
  if (codes.includes('ERR_INVALID_CHAR')) {
    const header = /\["([A-Za-z0-9-]+)"\]/.exec(text)?.[1];
    return `the ${header ? `"${header}" header` : 'request header'} has a line break or control character: check the token or secret it comes from (a trailing newline in its file or variable?)`;
  }
  if (codes.includes('ERR_INVALID_HTTP_TOKEN')) return 'a request header name is not a valid HTTP token';
  if (codes.includes('ERR_UNESCAPED_CHARACTERS'))
    return 'the URL has characters that must be percent-encoded';
  if (codes.includes('ERR_INVALID_URL')) return 'the URL is not valid';
  return undefined;
}

/** The start of a peer's answer, as one printable line. */
export function snippet(text: string, max = 200): string {
  const line = text
    .replace(/[\r\n\t]+/g, ' ')
    .replace(/[^\x20-\x7e\u00a0-\uffff]/g, '?')
    .trim();
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

/** `30 s`, `2 min`, `1500 ms`. */
export function formatWait(ms: number): string {
  if (ms < 10_000 && ms % 1000 !== 0) return `${ms} ms`;
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  return `${Math.round(ms / 60_000)} min`;
}
