import { errorMessage, UnavailableError } from '../core/index.ts';

/** Socket-level error codes in words, so a message says "connection refused" rather than a bare code. */
const NETWORK_CODES: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by peer',
  ETIMEDOUT: 'connection timed out',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'temporary DNS failure',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOENT: 'socket file not found',
  EACCES: 'permission denied',
  EPIPE: 'connection closed while writing',
  PROTOCOL_CONNECTION_LOST: 'the server closed the connection',
};

/** The `code` property of a driver or socket error, if any. */
export function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  // fetch wraps the socket error: TypeError('fetch failed', { cause }).
  const cause = (err as { cause?: unknown }).cause;
  return cause === undefined || cause === err ? undefined : errorCode(cause);
}

/**
 * A short human description of a driver/socket error: known socket codes in words, otherwise the driver's
 * message (an AggregateError from a dual-stack connect has an empty message, so its first inner error is used).
 */
export function describeError(err: unknown): string {
  const code = errorCode(err);
  const words = code === undefined ? undefined : NETWORK_CODES[code];
  if (words) return `${words} (${code})`;
  if (err instanceof AggregateError && !err.message) return describeError(err.errors[0]);
  const message = errorMessage(err);
  const cause = (err as { cause?: unknown } | null)?.cause;
  if (message === 'fetch failed' && cause !== undefined) return describeError(cause);
  return message || code || 'unknown error';
}

/**
 * Races `work` against `signal`: when the signal aborts, `onAbort` runs (it must release the socket) and the
 * promise rejects with the signal's reason if it is an Error, else an UnavailableError naming `what`.
 */
export async function abortable<T>(
  what: string,
  work: Promise<T>,
  signal: AbortSignal | undefined,
  onAbort: () => void,
): Promise<T> {
  if (!signal) return work;
  const reasonError = (): Error =>
    signal.reason instanceof Error ? signal.reason : new UnavailableError(`${what}: aborted`);
  if (signal.aborted) {
    onAbort();
    work.catch(() => undefined);
    throw reasonError();
  }
  let listener: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    listener = () => {
      onAbort();
      reject(reasonError());
    };
    signal.addEventListener('abort', listener, { once: true });
  });
  try {
    return await Promise.race([work, aborted]);
  } finally {
    if (listener) signal.removeEventListener('abort', listener);
  }
}
