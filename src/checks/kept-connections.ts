import type { MysqlConfig, RedisConfig } from '../config/index.ts';
import type { MysqlClient, RedisClient } from '../connectors/index.ts';

/** What each kind of kept connection is, and what it was opened for. */
interface Kept {
  mysql: { client: MysqlClient; config: MysqlConfig };
  redis: { client: RedisClient; config: RedisConfig };
}

/**
 * The MySQL and Redis connections a long-running process (the server) keeps from one daily check to the
 * next, instead of connecting, authenticating and closing every time; a one-off `gameops check daily`
 * connects per run. A check takes its connection out while it runs (a check running at the same time opens
 * its own) and puts it back when it succeeded: a connection that failed, was aborted, or was ended by the
 * server is never reused. One kept from an earlier check may have died while idle without anyone noticing
 * yet; the checks then retry once on a new connection (see the database and redis checks).
 */
export class KeptConnections {
  readonly #slots: { [K in keyof Kept]?: Kept[K] & { timeoutMs: number } } = {};
  #closed = false;

  /**
   * The kept connection of `kind`, now the caller's, if it was opened for this `config` (the same object)
   * and deadline and is still usable. One that is not is closed.
   */
  take<K extends keyof Kept>(
    kind: K,
    config: Kept[K]['config'],
    timeoutMs: number,
  ): Kept[K]['client'] | undefined {
    const slot = this.#slots[kind];
    if (!slot) return undefined;
    delete this.#slots[kind];
    if (slot.config === config && slot.timeoutMs === timeoutMs && slot.client.usable) return slot.client;
    void slot.client.close();
    return undefined;
  }

  /** Keeps `client` for the next check; closes it when closed already, unusable, or another one is kept. */
  async keep<K extends keyof Kept>(
    kind: K,
    config: Kept[K]['config'],
    timeoutMs: number,
    client: Kept[K]['client'],
  ): Promise<void> {
    if (this.#closed || this.#slots[kind] || !client.usable) return client.close();
    // A mapped type over K does not narrow; the entry is of kind K by construction.
    (this.#slots as Record<K, Kept[K] & { timeoutMs: number }>)[kind] = {
      client,
      config,
      timeoutMs,
    } as Kept[K] & {
      timeoutMs: number;
    };
  }

  /** Closes what is kept; a connection put back later is closed instead of kept. Safe to call twice. */
  async close(): Promise<void> {
    this.#closed = true;
    const slots = Object.values(this.#slots);
    for (const kind of Object.keys(this.#slots)) delete this.#slots[kind as keyof Kept];
    await Promise.all(slots.map((slot) => slot.client.close()));
  }
}
