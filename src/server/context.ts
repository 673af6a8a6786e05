import { UnavailableError } from '../core/index.ts';
import type { Resources } from '../app/index.ts';
import type { Store } from '../store/index.ts';

/** What route modules receive: the resources bag plus the server's own lifecycle hooks. */
export interface ServerContext {
  resources: Resources;
  shuttingDown(): boolean;
  /** Registers in-flight background work so a graceful shutdown waits for it. */
  track<T>(work: Promise<T>): Promise<T>;
  /** Aborts when the shutdown grace period is over: long work stops, records what it has, and ends. */
  readonly shutdownSignal: AbortSignal;
  /** The store, or an UnavailableError when the server runs without one. */
  store(): Store;
}

export function createServerContext(
  resources: Resources,
): ServerContext & { drain(): Promise<void>; beginShutdown(): void; interrupt(): void } {
  const inFlight = new Set<Promise<unknown>>();
  const shutdown = new AbortController();
  let closing = false;
  return {
    shutdownSignal: shutdown.signal,
    interrupt() {
      shutdown.abort(new UnavailableError('interrupted: gameops is shutting down'));
    },
    resources,
    shuttingDown: () => closing,
    track(work) {
      inFlight.add(work);
      void work.catch(() => undefined).finally(() => inFlight.delete(work));
      return work;
    },
    store() {
      if (!resources.store)
        throw new UnavailableError(`the store is not open: ${resources.storeProblem ?? 'shutting down'}`);
      return resources.store;
    },
    beginShutdown() {
      closing = true;
    },
    async drain() {
      await Promise.allSettled([...inFlight]);
    },
  };
}
