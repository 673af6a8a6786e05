/**
 * The readiness probe of a local instance: `GET <opsUrl>/ops/status` with the bearer token answers 2xx
 * within the timeout (docs/game-server-contract.md). The token goes in a header only; no message here
 * ever contains it.
 */
import type { Secret } from '../../core/index.ts';

export interface ProbeResult {
  ready: boolean;
  /** Why not, for people: "connection refused", "answered 503", "no answer within 2000 ms". */
  reason?: string;
}

/** Bytes of a status answer read at most (the body is not needed, only drained). */
const MAX_BODY_BYTES = 64 * 1024;

export async function probeReady(
  opsUrl: string,
  token: Secret | undefined,
  timeoutMs: number,
): Promise<ProbeResult> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token.reveal()}`;
  try {
    const response = await fetch(`${opsUrl}/ops/status`, {
      headers,
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'manual',
    });
    await drain(response);
    if (response.status >= 200 && response.status < 300) return { ready: true };
    return { ready: false, reason: `GET /ops/status answered ${response.status}` };
  } catch (err) {
    return { ready: false, reason: `GET /ops/status: ${failure(err, timeoutMs)}` };
  }
}

async function drain(response: Response): Promise<void> {
  const reader: ReadableStreamDefaultReader<Uint8Array> | undefined = response.body?.getReader();
  if (!reader) return;
  let read = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      read += value.length;
      if (read > MAX_BODY_BYTES) {
        await reader.cancel();
        return;
      }
    }
  } catch {
    // A body cut short does not change the status we already have.
  }
}

function failure(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  const code = e.cause?.code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ECONNRESET') return 'connection reset';
  return e.cause?.message ?? code ?? (err instanceof Error ? err.message : String(err));
}

/** Runs `fn` over `items` with at most `limit` at once; results in input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
