import { UnavailableError } from './errors.ts';

/**
 * Runs `work` with a deadline. The signal passed to `work` aborts when the deadline passes, so the work
 * can release sockets; the returned promise rejects with an UnavailableError naming `what` either way,
 * even if `work` ignores the signal and never settles.
 */
export async function withTimeout<T>(
  what: string,
  ms: number,
  work: (signal: AbortSignal) => Promise<T>,
  parent?: AbortSignal,
): Promise<T> {
  const controller = new AbortController();
  const onParentAbort = (): void => controller.abort(parent?.reason);
  parent?.addEventListener('abort', onParentAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new UnavailableError(`${what} did not answer within ${ms} ms`, {
        details: { timeoutMs: ms },
      });
      controller.abort(err);
      reject(err);
    }, ms);
  });
  try {
    return await Promise.race([work(controller.signal), deadline]);
  } finally {
    clearTimeout(timer);
    parent?.removeEventListener('abort', onParentAbort);
  }
}
