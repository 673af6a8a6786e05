/**
 * The statements of database maintenance (runbook §4.2), one kind per function (each is a runbook step):
 * OPTIMIZE and ANALYZE one table at a time, future partitions, purges in bounded batches, the query cache
 * flush. Every name in the arguments is checked against the live schema first (InputError naming it),
 * and every identifier is backtick-quoted; values are placeholders.
 */
import type { MysqlClient } from '../../connectors/mysql.ts';
import { ConflictError, GameopsError, InputError, UnavailableError } from '../../core/index.ts';
import { freshStatistics, inspectDatabase, serverInfo, tableInfos, type NamedTableInfo } from './inspect.ts';
import {
  addPartitionsSql,
  boundsOf,
  optimizeSql,
  purgeBatchSql,
  partitioning,
  qualified,
  queryCacheDecision,
  type AddPartitionsTarget,
  type NewPartition,
  type OptimizeTarget,
  type PurgeTarget,
  type TableRef,
} from './plan.ts';
import { boundSql } from './periods.ts';
import { boundLockWait, DDL_LOCK_WAIT_SECONDS, withLockWait } from './locks.ts';

export interface ExecOptions {
  signal: AbortSignal;
  log: (line: string) => void;
  /**
   * Seconds a statement waits for locks: row locks of a purge batch (default {@link PURGE_LOCK_WAIT_SECONDS}),
   * the table's metadata lock of OPTIMIZE, ANALYZE and ALTER (default {@link DDL_LOCK_WAIT_SECONDS}).
   */
  lockWaitSeconds?: number;
  /** Purges: called after each batch with the rows removed so far. */
  onBatch?: (rows: number, batches: number) => void;
}

/** What a purge checks the target against (from `maintenance.db.purge`). */
export interface PurgeRuleOptions {
  /** The rule's `zone`, if any: a DATETIME/DATE cutoff must be written in it (else the server must be UTC). */
  zone?: string | undefined;
  /** The rule's `allowScan`: a column that leads no index is refused without it. */
  allowScan?: boolean | undefined;
}

/**
 * A DDL statement whose deadline passed or whose run was stopped: the connector killed it on the server
 * (or says it could not), but it may have committed just before. An UnavailableError with outcome unknown.
 */
async function ddl(client: MysqlClient, sql: string, what: string, signal: AbortSignal): Promise<unknown[]> {
  try {
    return await client.query(sql, [], { signal, timeoutMs: DDL_MS });
  } catch (err) {
    if (err instanceof UnavailableError && err.details?.['outcome'] === 'unknown')
      throw new UnavailableError(
        `${what}: outcome unknown (check the table before running it again): ${err.message}`,
        {
          cause: err,
          details: { ...err.details, outcome: 'unknown' },
        },
      );
    throw err;
  }
}

/** A purge logs its progress every this many batches. */
const PURGE_LOG_EVERY = 100;

/** Deadline of one OPTIMIZE, ANALYZE or ALTER (a rebuild of a large table takes long). */
const DDL_MS = 6 * 60 * 60_000;

/** The live schema's view of one table. @throws InputError `<table> is not a table of <db>`. */
export async function liveTable(
  client: MysqlClient,
  ref: TableRef,
  signal: AbortSignal,
): Promise<NamedTableInfo> {
  const inspection = await inspectDatabase(
    client,
    ref.database,
    { partitions: [ref], purge: [] },
    { signal },
  );
  const info = inspection.named[0];
  if (!info?.exists) throw new InputError(`${ref.table} is not a table of ${ref.database}`);
  return info;
}

async function sizeOf(client: MysqlClient, ref: TableRef, signal: AbortSignal) {
  const found = (await tableInfos(client, [ref.database], { signal })).find((t) => t.table === ref.table);
  if (!found) throw new InputError(`${ref.table} is not a table of ${ref.database}`);
  return found;
}

export interface OptimizeResult extends TableRef {
  bytesBefore: number;
  bytesAfter: number;
  freeBefore: number;
  freeAfter: number;
  messages: Array<{ type: string; text: string }>;
}

/** Runs an admin statement (OPTIMIZE/ANALYZE) and splits its result rows; an `error` row throws. */
async function adminStatement(
  client: MysqlClient,
  sql: string,
  ref: TableRef,
  options: ExecOptions,
): Promise<Array<{ type: string; text: string }>> {
  const seconds = options.lockWaitSeconds ?? DDL_LOCK_WAIT_SECONDS;
  await boundLockWait(client, seconds, options.signal);
  const rows = (await withLockWait(`${ref.database}.${ref.table}`, seconds, () =>
    ddl(client, sql, `${sql.split(' ')[0]} of ${ref.database}.${ref.table}`, options.signal),
  )) as Array<Record<string, unknown>>;
  // ALTER TABLE … REBUILD PARTITION answers with an OK packet, not rows.
  const messages = (Array.isArray(rows) ? rows : []).map((r) => ({
    type: typeof r['Msg_type'] === 'string' ? r['Msg_type'] : '',
    text: typeof r['Msg_text'] === 'string' ? r['Msg_text'] : '',
  }));
  for (const m of messages) {
    // InnoDB answers OPTIMIZE with "Table does not support optimize, doing recreate + analyze instead" (a
    // note): that is the rebuild it does, not a failure.
    if (m.type.toLowerCase() === 'error')
      throw new ConflictError(`${sql.split(' ')[0]} of ${ref.database}.${ref.table} failed: ${m.text}`);
    options.log(`${ref.database}.${ref.table}: ${m.type}: ${m.text}`);
  }
  return messages;
}

/**
 * `OPTIMIZE TABLE`, one table at a time, or `ALTER TABLE … REBUILD PARTITION` of the named partitions
 * (checked against the live table), with the size and free space before and after.
 */
export async function optimizeTables(
  client: MysqlClient,
  tables: readonly OptimizeTarget[],
  options: ExecOptions,
): Promise<OptimizeResult[]> {
  const version = await client.serverVersion({ signal: options.signal });
  await freshStatistics(client, version, { signal: options.signal });
  const before = [];
  for (const t of tables) {
    if (t.partitions) {
      const live = await liveTable(client, t, options.signal);
      for (const p of t.partitions)
        if (!live.partitions.some((x) => x.name === p))
          throw new InputError(`${p} is not a partition of ${t.database}.${t.table}`);
    }
    before.push(await sizeOf(client, t, options.signal));
  }
  const results: OptimizeResult[] = [];
  for (const [i, t] of tables.entries()) {
    const messages = await adminStatement(client, optimizeSql(t), t, options);
    const after = await sizeOf(client, t, options.signal);
    const b = before[i]!;
    const result = {
      database: t.database,
      table: t.table,
      bytesBefore: b.dataBytes + b.indexBytes,
      bytesAfter: after.dataBytes + after.indexBytes,
      freeBefore: b.freeBytes,
      freeAfter: after.freeBytes,
      messages,
    };
    options.log(
      `${t.database}.${t.table}: ${result.bytesBefore} → ${result.bytesAfter} bytes, free ${result.freeBefore} → ${result.freeAfter}`,
    );
    results.push(result);
  }
  return results;
}

/** `ANALYZE TABLE`, one table at a time. */
export async function analyzeTables(
  client: MysqlClient,
  tables: readonly TableRef[],
  options: ExecOptions,
): Promise<Array<TableRef & { messages: Array<{ type: string; text: string }> }>> {
  for (const t of tables) await sizeOf(client, t, options.signal);
  const out = [];
  for (const t of tables)
    out.push({ ...t, messages: await adminStatement(client, `ANALYZE TABLE ${qualified(t)}`, t, options) });
  return out;
}

export interface AddPartitionsResult extends TableRef {
  added: string[];
  /** Requested partitions that exist already with the same bound. */
  existing: string[];
  statement: string | null;
}

/**
 * Adds the requested future partitions that are still missing (ADD PARTITION, or REORGANIZE of the live
 * MAXVALUE partition, which keeps its rows). Idempotent: a requested partition that exists with the same
 * bound is skipped.
 * @throws InputError when the table is not RANGE-partitioned by a date; ConflictError when a requested
 *   name exists with another bound, or a bound is not above the table's highest one.
 */
export async function addPartitions(
  client: MysqlClient,
  target: Pick<AddPartitionsTarget, 'database' | 'table' | 'partitions'>,
  options: ExecOptions,
): Promise<AddPartitionsResult> {
  const info = await liveTable(client, target, options.signal);
  const where = `${target.database}.${target.table}`;
  const { kind } = partitioning(info, 'table', target.database, target.table);
  const bounds = boundsOf(info, kind);
  const existing: string[] = [];
  const missing: NewPartition[] = [];
  for (const p of target.partitions) {
    const until = Date.parse(p.until);
    if (p.lessThan !== boundSql(until, kind))
      throw new InputError(
        `${where}: partition ${p.name} bound ${p.lessThan} does not match until ${p.until}`,
      );
    const live = bounds.find((b) => b.partition.name.toLowerCase() === p.name.toLowerCase());
    if (live) {
      if (live.until !== until)
        throw new ConflictError(
          `${where}: partition ${p.name} exists with bound ${live.partition.description ?? 'MAXVALUE'}, not ${p.lessThan}`,
        );
      existing.push(p.name);
      continue;
    }
    missing.push(p);
  }
  const highest = Math.max(-Infinity, ...bounds.flatMap((b) => (b.until === null ? [] : [b.until])));
  const wanted = missing.filter((p) => {
    if (Date.parse(p.until) > highest) return true;
    options.log(`${where}: ${p.name} (< ${p.until}) is already covered by an existing partition: skipped`);
    return false;
  });
  if (existing.length > 0) options.log(`${where}: ${existing.join(', ')} exist already`);
  if (wanted.length === 0)
    return { database: target.database, table: target.table, added: [], existing, statement: null };
  const catchAll = bounds.find((b) => b.until === null)?.partition.name ?? null;
  const statement = addPartitionsSql({
    database: target.database,
    table: target.table,
    partitions: wanted,
    reorganize: catchAll,
  });
  const seconds = options.lockWaitSeconds ?? DDL_LOCK_WAIT_SECONDS;
  await boundLockWait(client, seconds, options.signal);
  await withLockWait(where, seconds, () =>
    ddl(client, statement, `adding partitions to ${where}`, options.signal),
  );
  options.log(
    `${where}: added ${wanted.map((p) => p.name).join(', ')}${catchAll ? ` (reorganised ${catchAll})` : ''}`,
  );
  return {
    database: target.database,
    table: target.table,
    added: wanted.map((p) => p.name),
    existing,
    statement,
  };
}

export interface PurgeResult extends TableRef {
  column: string;
  cutoff: string;
  rows: number;
  batches: number;
  /** True when the signal stopped it between batches (the rows removed so far stay removed). */
  stopped: boolean;
}

/** Seconds a purge batch waits for a row lock before it gives up (`innodb_lock_wait_timeout`). */
export const PURGE_LOCK_WAIT_SECONDS = 5;

/**
 * Deletes rows older than the cutoff in batches of `batchSize`, each its own autocommitted statement
 * (ordered by the purge column, which must lead an index unless the rule allows a scan, so each batch reads
 * and locks only its own rows; READ COMMITTED, so no gap locks), until a batch removes fewer.
 * A DATETIME/DATE cutoff must be in the rule's zone (or UTC on a UTC server); a DATE column takes a date.
 * A batch that waits on locks longer than {@link PURGE_LOCK_WAIT_SECONDS} fails (ConflictError with the
 * rows removed so far; running it again continues). Stops between batches when the signal aborts.
 */
export async function purgeRows(
  client: MysqlClient,
  target: Pick<PurgeTarget, 'database' | 'table' | 'column' | 'cutoff' | 'batchSize'> & { zone?: string },
  options: ExecOptions & PurgeRuleOptions,
): Promise<PurgeResult> {
  const info = await liveTable(client, target, options.signal);
  const where = `${target.database}.${target.table}`;
  const column = info.columns.find((c) => c.name.toLowerCase() === target.column.toLowerCase());
  if (!column) throw new InputError(`${target.column} is not a column of ${where}`);
  const isDate = column.type === 'date';
  if (!(isDate ? /^\d{4}-\d{2}-\d{2}$/ : /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/).test(target.cutoff))
    throw new InputError(
      `purge cutoff ${JSON.stringify(target.cutoff)} of ${where}.${column.name} (${column.type.toUpperCase()}) is not ${isDate ? 'YYYY-MM-DD' : 'YYYY-MM-DD HH:MM:SS'}`,
    );
  if (
    !info.indexedColumns.some((c) => c.toLowerCase() === column.name.toLowerCase()) &&
    options.allowScan !== true
  )
    throw new InputError(
      `${where}.${column.name} leads no index: every purge batch would scan (and lock) the table; add an index on it, or set allowScan: true on the rule`,
    );
  const lockWait = options.lockWaitSeconds ?? PURGE_LOCK_WAIT_SECONDS;
  const q = { signal: options.signal, timeoutMs: (lockWait + 60) * 1000 };
  const zone = target.zone ?? 'UTC';
  if (column.type === 'timestamp') {
    if (zone !== 'UTC')
      throw new InputError(`${where}.${column.name} is TIMESTAMP: its cutoff is UTC, not ${zone}`);
  } else {
    const server = await serverInfo(client, { signal: options.signal });
    const expected = options.zone ?? (server.timeZone.utc ? 'UTC' : undefined);
    if (expected === undefined)
      throw new InputError(
        `${where}.${column.name} is ${column.type.toUpperCase()} and the server's time_zone is ${server.timeZone.zone}, not UTC: set zone on its purge rule`,
      );
    if (zone !== expected)
      throw new InputError(
        `${where}.${column.name}: the cutoff is in ${zone}, the rule's values are in ${expected}: not purged`,
      );
  }
  // TIMESTAMP columns compare in the session's zone: their cutoff is UTC.
  await client.query("SET SESSION time_zone = '+00:00'", [], q);
  await client.query('SET SESSION innodb_lock_wait_timeout = ?', [lockWait], q);
  await client.query('SET SESSION autocommit = 1', [], q);
  // READ COMMITTED: a batch locks the rows it deletes, not the gaps around them. InnoDB refuses writes under
  // it with statement-based binary logging: there the default isolation stays.
  const binlog = await client.query('SELECT @@log_bin AS on_, @@binlog_format AS format', [], q);
  if (!(Number(binlog[0]?.['on_']) === 1 && /^statement$/i.test(String(binlog[0]?.['format'] ?? ''))))
    await client.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED', [], q);
  else options.log(`${where}: binlog_format is STATEMENT: the purge runs in REPEATABLE READ`);
  const sql = purgeBatchSql({ ...target, column: column.name });
  let rows = 0;
  let batches = 0;
  let stopped = false;
  for (;;) {
    if (options.signal.aborted) {
      stopped = true;
      break;
    }
    let affected: number;
    try {
      const result = (await client.query(sql, [target.cutoff], q)) as unknown as { affectedRows?: number };
      affected = Number(result.affectedRows ?? 0);
    } catch (err) {
      if (options.signal.aborted) {
        stopped = true;
        break;
      }
      if (err instanceof GameopsError && /lock wait timeout/i.test(err.message))
        throw new ConflictError(
          `${where}: a purge batch waited more than ${lockWait} s for row locks (another transaction holds them); ` +
            `${rows} rows removed in ${batches} batch(es) so far; run it again to continue`,
          { cause: err, details: { table: where, rows, batches } },
        );
      throw err;
    }
    batches += 1;
    rows += affected;
    options.onBatch?.(rows, batches);
    if (batches % PURGE_LOG_EVERY === 0)
      options.log(`${where}: ${rows} rows removed in ${batches} batches so far`);
    if (affected < target.batchSize) break;
  }
  options.log(
    `${where}: ${rows} rows with ${column.name} < ${target.cutoff} ${zone} removed in ${batches} batch(es)${stopped ? ' (stopped)' : ''}`,
  );
  return {
    database: target.database,
    table: target.table,
    column: column.name,
    cutoff: target.cutoff,
    rows,
    batches,
    stopped,
  };
}

/**
 * `FLUSH QUERY CACHE` (defragment; entries stay) when the server has a query cache turned on; otherwise a
 * skip with the reason. `RESET QUERY CACHE` is never run (see `queryCacheDecision`).
 */
export async function flushQueryCache(
  client: MysqlClient,
  options: ExecOptions,
): Promise<{ flushed: boolean; reason: string }> {
  const server = await serverInfo(client, { signal: options.signal });
  const decision = queryCacheDecision(server.flavour, server.version, server.queryCache);
  if (!decision.flush) {
    options.log(`query cache not flushed: ${decision.reason}`);
    return { flushed: false, reason: decision.reason };
  }
  await client.query('FLUSH QUERY CACHE', [], { signal: options.signal });
  options.log(`FLUSH QUERY CACHE: ${decision.reason}`);
  return { flushed: true, reason: decision.reason };
}
