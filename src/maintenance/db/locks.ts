/**
 * Bounded waits for table locks. A DDL statement (ALTER, OPTIMIZE, LOCK TABLES … WRITE) waits for an
 * exclusive metadata lock while any open transaction has used the table; MySQL and MariaDB queue every
 * later query of that table behind the waiting request, so an unbounded wait (the default
 * `lock_wait_timeout` is a year) behind one long transaction would stall the game's queries on the table.
 * Maintenance sets a short `lock_wait_timeout` instead and gives up with a ConflictError naming the table.
 */
import type { MysqlClient } from '../../connectors/mysql.ts';
import { ConflictError, GameopsError } from '../../core/index.ts';

/** Seconds a maintenance DDL statement waits for a table's metadata lock before it gives up. */
export const DDL_LOCK_WAIT_SECONDS = 10;

/** Sets the session's metadata lock wait (`lock_wait_timeout`, MySQL and MariaDB). */
export async function boundLockWait(
  client: MysqlClient,
  seconds: number,
  signal: AbortSignal,
): Promise<void> {
  await client.query('SET SESSION lock_wait_timeout = ?', [seconds], { signal });
}

/**
 * Runs `work`; a lock wait timeout becomes a ConflictError saying which table was held and that nothing
 * was changed by the statement that gave up.
 */
export async function withLockWait<T>(table: string, seconds: number, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof GameopsError && /lock wait timeout/i.test(err.message))
      throw new ConflictError(
        `${table}: waited ${seconds} s for the table lock (another session holds it: a long transaction?); ` +
          'the statement gave up and changed nothing; run it again when the table is free',
        { cause: err, details: { table, lockWaitSeconds: seconds } },
      );
    throw err;
  }
}
