/**
 * The database maintenance plan (runbook §4.2): from an inspection, `maintenance.db` and the time, what
 * to rebuild, analyse, partition, archive and drop, purge, and whether to flush the query cache, each
 * with its reason, the statements for the dry run and approval, and one summary line. Pure and
 * JSON-able: it is the output of the `db.plan` step, and the task steps take their arguments from it.
 *
 * Names come only from the inspection (the live schema) and the config; a configured table, column or
 * partitioning the server does not have is an InputError naming the config field.
 */
import type { GameopsConfig } from '../../config/index.ts';
import { InputError } from '../../core/index.ts';
import type { Inspection, NamedTableInfo, PartitionInfo, TableInfo } from './inspect.ts';
import {
  addUnits,
  boundInstant,
  boundKindOf,
  boundSql,
  nextBoundary,
  partitionName,
  partitionNaming,
  periodStart,
  zonedDateTime,
  type BoundKind,
  type PartitionUnit,
} from './periods.ts';
import { formatBytes } from '../../checks/thresholds.ts';

export type DbMaintenanceConfig = GameopsConfig['maintenance']['db'];

export interface TableRef {
  database: string;
  table: string;
}

/** One table as the plan saw it, and what it decided. */
export interface TableReport extends TableRef {
  engine: string | null;
  rows: number;
  dataBytes: number;
  indexBytes: number;
  freeBytes: number;
  /** freeBytes / (data + index + free); 0 for an empty table. */
  freeFraction: number;
  optimize: boolean;
  /**
   * Partitioned tables: the partitions rebuilt (`ALTER TABLE … REBUILD PARTITION`), judged one by one from
   * their own free space; the current and future ones are never rebuilt. Absent for whole-table OPTIMIZE.
   */
  partitions?: string[];
  /** Why it is (or is not) rebuilt. */
  reason: string;
}

/** A table to rebuild: whole (`OPTIMIZE TABLE`) or only `partitions` (`REBUILD PARTITION`). */
export interface OptimizeTarget extends TableRef {
  partitions?: string[];
}

/** At most this many partitions are added to one table in one run (the `db.add-partitions` limit). */
export const MAX_NEW_PARTITIONS = 400;

export interface NewPartition {
  name: string;
  /** The bound as written in `VALUES LESS THAN (…)`. */
  lessThan: string;
  /** The UTC instant of the bound (exclusive end of the partition), ISO 8601. */
  until: string;
}

/** Future partitions of one table: `ADD PARTITION`, or `REORGANIZE PARTITION <catch-all>` when it has one. */
export interface AddPartitionsTarget extends TableRef {
  partitions: NewPartition[];
  /** The MAXVALUE partition split to make room (data kept), or null. */
  reorganize: string | null;
}

/** A partition past retention: archived, verified, then dropped. */
export interface RotateTarget extends TableRef {
  partition: string;
  /** Its bound as stored (`PARTITION_DESCRIPTION`). */
  lessThan: string;
  /** The UTC instant before which all its rows lie, ISO 8601. */
  until: string;
  /** Rows (estimate at plan time). */
  rows: number;
}

export interface PurgeTarget extends TableRef {
  column: string;
  /**
   * Rows with column < cutoff go. Fixed at plan time: `YYYY-MM-DD HH:MM:SS`, or `YYYY-MM-DD` for a DATE
   * column (the whole day must be past the retention), on the wall clock of `zone`.
   */
  cutoff: string;
  /** The zone the cutoff is written in: `UTC` for TIMESTAMP columns, else the rule's (or the server's UTC). */
  zone: string;
  batchSize: number;
  /** Tables whose rows a delete here changes (`ON DELETE CASCADE`/`SET NULL` foreign keys), for the approval. */
  cascades: string[];
}

export interface DbPlan {
  database: string;
  /** The server; `timeZone` is the zone DATETIME values written with NOW() are in (shown for the purges). */
  server: { version: string; flavour: string; timeZone: string };
  /** When the plan was made (ISO 8601). */
  at: string;
  tables: TableReport[];
  optimize: { tables: OptimizeTarget[] };
  analyze: { tables: TableRef[] };
  addPartitions: AddPartitionsTarget[];
  rotate: RotateTarget[];
  purge: PurgeTarget[];
  queryCache: { flush: boolean; reason: string };
  /** Every statement that would change something, in the order the steps run them. */
  statements: string[];
  /** A dry run: everything above is what would be done, and nothing is (every `run` flag is false). */
  dryRun: boolean;
  /** Which task steps run: each true when it has something to do and this is not a dry run. */
  run: {
    addPartitions: boolean;
    rotate: boolean;
    purge: boolean;
    optimize: boolean;
    analyze: boolean;
    queryCache: boolean;
  };
  /** True when any task step runs (the approval is asked only then). */
  work: boolean;
  summary: string;
  notes: string[];
}

/** `db`.`table`. Names were checked against the live schema (information_schema) before they get here. */
export function qualified(ref: TableRef): string {
  return `${quoteName(ref.database)}.${quoteName(ref.table)}`;
}

/** A backtick-quoted identifier (backticks doubled). */
export function quoteName(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}

const plainName = (ref: TableRef): string => `${ref.database}.${ref.table}`;

/** The named table `db.table` of the inspection. */
function named(inspection: Inspection, database: string, table: string): NamedTableInfo | undefined {
  return inspection.named.find((t) => t.database === database && t.table === table);
}

/**
 * `field: table is not a table of database`, or, when the database itself does not exist on the server,
 * says that.
 */
function notATable(inspection: Inspection, field: string, database: string, table: string): InputError {
  return inspection.missingDatabases?.includes(database)
    ? new InputError(
        `${field}: the database ${database} (of ${database}.${table}) does not exist on the server`,
      )
    : new InputError(`${field}: ${table} is not a table of ${database}`);
}

/** How a partitioned table's bounds are written, and its column; InputError naming `field` otherwise. */
export function partitioning(
  info: NamedTableInfo | undefined,
  field: string,
  database: string,
  table: string,
): { kind: BoundKind; column: string } {
  if (!info?.exists) throw new InputError(`${field}: ${table} is not a table of ${database}`);
  const first = info.partitions[0];
  const found = boundKindOf(
    first?.method ?? null,
    first?.expression ?? null,
    (column) => info.columns.find((c) => c.name.toLowerCase() === column.toLowerCase())?.type,
  );
  if ('problem' in found) throw new InputError(`${field}: ${database}.${table} ${found.problem}`);
  return found;
}

/** Partitions with their bound instants (null: MAXVALUE). */
export function boundsOf(
  info: NamedTableInfo,
  kind: BoundKind,
): Array<{ partition: PartitionInfo; until: number | null }> {
  return info.partitions.map((partition) => ({
    partition,
    until: boundInstant(
      partition.description ?? 'MAXVALUE',
      kind,
      `${info.database}.${info.table} partition ${partition.name}`,
    ),
  }));
}

/**
 * The partitions to add so that periods up to `ahead` units after the current one exist: one per unit
 * from the highest finite bound on, named after the period each covers. When the highest bound lies before
 * the current period, one catch-up partition covers the gap up to the end of the current period (rather
 * than one per missed unit). Never more than {@link MAX_NEW_PARTITIONS}. Existing names are never reused.
 */
export function futurePartitions(
  bounds: ReadonlyArray<{ partition: PartitionInfo; until: number | null }>,
  unit: PartitionUnit,
  ahead: number,
  kind: BoundKind,
  now: number,
): NewPartition[] {
  const current = periodStart(now, unit);
  const target = addUnits(current, unit, ahead + 1);
  const finite = bounds.flatMap((b) => (b.until === null ? [] : [b.until]));
  const names = new Set(bounds.map((b) => b.partition.name.toLowerCase()));
  // New partitions follow the table's existing naming (`p202612` next to `p202611`).
  const naming = partitionNaming(bounds.filter((b) => b.until !== null).map((b) => b.partition.name));
  let from = finite.length > 0 ? Math.max(...finite) : current;
  const out: NewPartition[] = [];
  while (from < target && out.length < MAX_NEW_PARTITIONS) {
    const until =
      from < current
        ? addUnits(current, unit, 1)
        : from === periodStart(from, unit)
          ? addUnits(from, unit, 1)
          : nextBoundary(from, unit);
    let name = partitionName(addUnits(until, unit, -1), unit, naming);
    for (let n = 2; names.has(name.toLowerCase()); n++)
      name = `${partitionName(addUnits(until, unit, -1), unit, naming)}_${n}`;
    names.add(name.toLowerCase());
    out.push({ name, lessThan: boundSql(until, kind), until: new Date(until).toISOString() });
    from = until;
  }
  return out;
}

export interface PlanOptions {
  /**
   * Purge rules (`db.table.column`) found to have no row older than their cutoff (`purgeCutoffs` gives the
   * cutoffs to ask about): left out of the plan, with a note.
   */
  nothingToPurge?: ReadonlySet<string>;
  /** Work everything out, run nothing (every `run` flag false). */
  dryRun?: boolean;
}

/**
 * Works out the plan. `now` is the injected clock's time; the purge cutoffs and the retention limit are
 * computed from it once.
 * @throws InputError naming the config field when a configured table, column or partitioning is not what
 *   the live schema has.
 */
export function planMaintenance(
  inspection: Inspection,
  config: DbMaintenanceConfig,
  now: Date,
  options: PlanOptions = {},
): DbPlan {
  const nowMs = now.getTime();
  const notes = [...inspection.notes];
  const statements: string[] = [];
  const db = inspection.database;
  const { optimize: opt } = config;

  // --- tables in scope for OPTIMIZE / ANALYZE
  const ofDb = inspection.tables.filter((t) => t.database === db);
  let scope: TableInfo[] = ofDb;
  if (opt.tables) {
    scope = opt.tables.map((name, i) => {
      const found = ofDb.find((t) => t.table === name);
      if (!found) throw notATable(inspection, `maintenance.db.optimize.tables[${i}]`, db, name);
      return found;
    });
  }
  const tables: TableReport[] = scope.map((t) => report(t, opt, nowMs));

  // --- partitions
  const addPartitions: AddPartitionsTarget[] = [];
  const rotate: RotateTarget[] = [];
  config.partitions.forEach((p, i) => {
    const database = p.database ?? db;
    const info = named(inspection, database, p.table);
    const field = `maintenance.db.partitions[${i}].table`;
    if (!info?.exists) throw notATable(inspection, field, database, p.table);
    const { kind, column } = partitioning(info, field, database, p.table);
    const columnType = info.columns.find((c) => c.name.toLowerCase() === column.toLowerCase())?.type;
    // TO_DAYS and RANGE COLUMNS bounds are dates of the values as written: UTC days only on a UTC server
    // (UNIX_TIMESTAMP partitions a TIMESTAMP column, which is UTC whatever the zone).
    if (
      kind !== 'unix_timestamp' &&
      columnType !== 'timestamp' &&
      !inspection.server.timeZone.utc &&
      p.zone !== 'UTC'
    )
      throw new InputError(
        `maintenance.db.partitions[${i}]: ${database}.${p.table} is partitioned by the ${columnType ?? 'DATE/DATETIME'} column ${column}, ` +
          `and the server's time_zone is ${inspection.server.timeZone.zone}, not UTC: its partition bounds (UTC days) would ` +
          `drop rows up to the zone's offset early. Set zone: UTC on the entry only if the application writes UTC into ${column}.`,
      );
    const bounds = boundsOf(info, kind);
    const ref = { database, table: p.table };
    const adds = futurePartitions(bounds, p.unit, p.ahead, kind, nowMs);
    const highestFinite = Math.max(-Infinity, ...bounds.flatMap((b) => (b.until === null ? [] : [b.until])));
    if (adds.length > 0 && highestFinite < periodStart(nowMs, p.unit))
      notes.push(
        `${plainName(ref)}: its highest partition bound (${new Date(highestFinite).toISOString()}) is before the current ${p.unit}: ` +
          `one catch-up partition ${adds[0]!.name} covers the gap`,
      );
    if (adds.length >= MAX_NEW_PARTITIONS)
      notes.push(`${plainName(ref)}: only ${MAX_NEW_PARTITIONS} new partitions in one run`);
    const catchAll = bounds.find((b) => b.until === null)?.partition.name ?? null;
    if (adds.length > 0) {
      addPartitions.push({ ...ref, partitions: adds, reorganize: catchAll });
      statements.push(addPartitionsSql({ ...ref, partitions: adds, reorganize: catchAll }));
    }
    const limit = addUnits(periodStart(nowMs, p.unit), p.unit, -p.retain);
    const old = bounds.filter((b) => b.until !== null && b.until <= limit);
    // Never every partition: MySQL refuses to drop the last one (and a table needs somewhere to put rows).
    const remaining = bounds.length + adds.length - old.length;
    if (remaining < 1) old.pop();
    for (const b of old) {
      const target: RotateTarget = {
        ...ref,
        partition: b.partition.name,
        lessThan: b.partition.description ?? '',
        until: new Date(b.until!).toISOString(),
        rows: b.partition.rows,
      };
      rotate.push(target);
      statements.push(
        `-- archive ${plainName(ref)} PARTITION (${target.partition}) (≈${target.rows} rows, all before ${target.until}) to the backup storage, read it back and compare rows and checksum; then:`,
        `ALTER TABLE ${qualified(ref)} DROP PARTITION ${quoteName(target.partition)}`,
      );
    }
  });

  // --- purge
  const purge: PurgeTarget[] = [];
  config.purge.forEach((rule, i) => {
    const database = rule.database ?? db;
    const info = named(inspection, database, rule.table);
    if (!info?.exists) throw notATable(inspection, `maintenance.db.purge[${i}].table`, database, rule.table);
    const column = info.columns.find((c) => c.name.toLowerCase() === rule.column.toLowerCase());
    if (!column)
      throw new InputError(
        `maintenance.db.purge[${i}].column: ${rule.column} is not a column of ${database}.${rule.table}`,
      );
    if (!['datetime', 'timestamp', 'date'].includes(column.type))
      throw new InputError(
        `maintenance.db.purge[${i}].column: ${database}.${rule.table}.${column.name} is ${column.type}, not DATETIME, TIMESTAMP or DATE`,
      );
    if (!info.indexedColumns.some((c) => c.toLowerCase() === column.name.toLowerCase())) {
      if (rule.allowScan !== true)
        throw new InputError(
          `maintenance.db.purge[${i}].column: ${database}.${rule.table}.${column.name} leads no index: every purge batch ` +
            'would scan (and lock) the table; add an index on it, or set allowScan: true on the rule',
        );
      notes.push(`${database}.${rule.table}.${column.name} leads no index: each purge batch scans the table`);
    }
    const zone = purgeZone(
      column.type,
      rule.zone,
      inspection.server.timeZone,
      `maintenance.db.purge[${i}]`,
      `${database}.${rule.table}.${column.name}`,
    );
    const target: PurgeTarget = {
      database,
      table: rule.table,
      column: column.name,
      cutoff: purgeCutoff(nowMs - rule.olderThan, column.type, zone),
      zone,
      batchSize: rule.batchSize,
      cascades: info.cascades,
    };
    if (info.cascades.length > 0)
      notes.push(
        `${database}.${rule.table}: purged rows also change rows of ${info.cascades.join(', ')} (foreign keys on delete)`,
      );
    if (options.nothingToPurge?.has(`${database}.${rule.table}.${rule.column}`)) {
      notes.push(
        `${database}.${rule.table}: no row with ${column.name} < ${target.cutoff} ${zone}, nothing to purge`,
      );
      return;
    }
    statements.push(purgeSqlText(target));
    purge.push(target);
  });

  // --- optimize and analyze (after the purges and drops, which free space and change statistics)
  const optimizeTables: OptimizeTarget[] = tables
    .filter((t) => t.optimize)
    .map(({ database, table, partitions }) => ({ database, table, ...(partitions ? { partitions } : {}) }));
  for (const t of optimizeTables) statements.push(optimizeSql(t));
  const analyzeKeys = new Set<string>();
  const analyzeTables: TableRef[] = [];
  const addAnalyze = (ref: TableRef): void => {
    const key = plainName(ref);
    // OPTIMIZE analyses the table it rebuilds; REBUILD PARTITION does not.
    if (analyzeKeys.has(key) || optimizeTables.some((t) => !t.partitions && plainName(t) === key)) return;
    analyzeKeys.add(key);
    analyzeTables.push({ database: ref.database, table: ref.table });
  };
  // The tables whose rows change (a rebuilt table is analysed by its rebuild); the others' statistics
  // are what InnoDB's persistent statistics keep up to date by themselves.
  for (const t of [...rotate, ...purge, ...optimizeTables.filter((o) => o.partitions)]) addAnalyze(t);
  if (analyzeTables.length > 0) statements.push(`ANALYZE TABLE ${analyzeTables.map(qualified).join(', ')}`);

  // --- query cache
  const qc = inspection.server.queryCache;
  const queryCache = queryCacheDecision(inspection.server.flavour, inspection.server.version, qc);
  if (queryCache.flush) statements.push('FLUSH QUERY CACHE');

  const go = options.dryRun !== true;
  const run = {
    addPartitions: go && addPartitions.length > 0,
    rotate: go && rotate.length > 0,
    purge: go && purge.length > 0,
    optimize: go && optimizeTables.length > 0,
    analyze: go && analyzeTables.length > 0,
    queryCache: go && queryCache.flush,
  };
  const plan: DbPlan = {
    database: db,
    server: {
      version: inspection.server.version,
      flavour: inspection.server.flavour,
      timeZone: inspection.server.timeZone.zone,
    },
    at: now.toISOString(),
    tables,
    optimize: { tables: optimizeTables },
    analyze: { tables: analyzeTables },
    addPartitions,
    rotate,
    purge,
    queryCache,
    statements,
    dryRun: !go,
    run,
    work: Object.values(run).some(Boolean),
    summary: '',
    notes,
  };
  plan.summary = summarise(plan);
  return plan;
}

/** The zone a purge cutoff is written in. @throws InputError for DATETIME/DATE on a non-UTC server without `zone`. */
function purgeZone(
  type: string,
  ruleZone: string | undefined,
  server: { zone: string; utc: boolean },
  field: string,
  where: string,
): string {
  // TIMESTAMP is stored in UTC and compared in the session's zone, which the purge sets to +00:00.
  if (type === 'timestamp') return 'UTC';
  if (ruleZone) return ruleZone;
  if (server.utc) return 'UTC';
  throw new InputError(
    `${field}.zone: ${where} is ${type.toUpperCase()} and the server's time_zone is ${server.zone}, not UTC: ` +
      'say which zone its values are written in (e.g. the server zone as an IANA name or +HH:MM; UTC if the application writes UTC)',
  );
}

/** The cutoff of a purge at the instant `ms`: a date for DATE columns (only whole past days), in `zone`. */
export function purgeCutoff(ms: number, type: string, zone: string): string {
  const wall = zonedDateTime(ms, zone);
  return type === 'date' ? wall.slice(0, 10) : wall;
}

/** `OPTIMIZE TABLE`, or `ALTER TABLE … REBUILD PARTITION …` for a partitioned table. */
export function optimizeSql(target: OptimizeTarget): string {
  return target.partitions
    ? `ALTER TABLE ${qualified(target)} REBUILD PARTITION ${target.partitions.map(quoteName).join(', ')}`
    : `OPTIMIZE TABLE ${qualified(target)}`;
}

const pct = (f: number): string => `${(f * 100).toFixed(1)} %`;

/**
 * Whether a rebuild is worth it, and why (both thresholds; free space trusted only in an own tablespace;
 * nothing larger than `maxBytes`). A partitioned table's DATA_FREE sums every partition's preallocated
 * extents: it is judged partition by partition instead, past partitions only (the current one is written to,
 * the future ones are empty).
 */
function report(
  t: TableInfo,
  opt: { minFreeFraction: number; minFreeBytes: number; maxBytes: number },
  nowMs: number,
): TableReport {
  const total = t.dataBytes + t.indexBytes + t.freeBytes;
  const freeFraction = total > 0 ? t.freeBytes / total : 0;
  const base = {
    database: t.database,
    table: t.table,
    engine: t.engine,
    rows: t.rows,
    dataBytes: t.dataBytes,
    indexBytes: t.indexBytes,
    freeBytes: t.freeBytes,
    freeFraction: Math.round(freeFraction * 10_000) / 10_000,
  };
  const skip = (reason: string): TableReport => ({ ...base, optimize: false, reason });
  if (t.engine === null) return skip('no storage engine (a view or a broken table)');
  if (t.engine.toLowerCase() === 'innodb' && t.ownTablespace === false)
    return skip(
      'in a shared tablespace: DATA_FREE is the tablespace’s free space, not the table’s, and a rebuild would not return it',
    );
  if (t.engine.toLowerCase() === 'innodb' && t.ownTablespace === null)
    return skip('whether it has its own tablespace is unknown: its DATA_FREE is not trusted');
  if (t.partitioned) return partitionReport(t, opt, nowMs, base);
  if (freeFraction < opt.minFreeFraction)
    return skip(
      `free ${pct(freeFraction)} (${formatBytes(t.freeBytes)}) is below ${pct(opt.minFreeFraction)}`,
    );
  if (t.freeBytes < opt.minFreeBytes)
    return skip(
      `free ${formatBytes(t.freeBytes)} is below ${formatBytes(opt.minFreeBytes)} (${pct(freeFraction)} free)`,
    );
  const size = t.dataBytes + t.indexBytes;
  if (size > opt.maxBytes)
    return skip(
      `free ${formatBytes(t.freeBytes)} (${pct(freeFraction)}), but ${formatBytes(size)} of data and indexes is above ` +
        `maintenance.db.optimize.maxBytes ${formatBytes(opt.maxBytes)}: too long a rebuild for one window`,
    );
  return {
    ...base,
    optimize: true,
    reason: `free ${formatBytes(t.freeBytes)} (${pct(freeFraction)}) ≥ ${pct(opt.minFreeFraction)} and ≥ ${formatBytes(opt.minFreeBytes)}`,
  };
}

/** {@link report} of a partitioned table: which past partitions pass both thresholds, within `maxBytes`. */
function partitionReport(
  t: TableInfo,
  opt: { minFreeFraction: number; minFreeBytes: number; maxBytes: number },
  nowMs: number,
  base: Omit<TableReport, 'optimize' | 'reason'>,
): TableReport {
  const skip = (reason: string): TableReport => ({ ...base, optimize: false, reason });
  const first = t.partitions[0];
  // Column types are not needed to read TO_DAYS/UNIX_TIMESTAMP bounds; RANGE COLUMNS bounds are read as dates.
  const found = boundKindOf(first?.method ?? null, first?.expression ?? null, () => 'date');
  if ('problem' in found)
    return skip(`partitioned, and ${found.problem}: which partitions are past cannot be told, not rebuilt`);
  let past: PartitionInfo[];
  try {
    past = t.partitions.filter((p) => {
      const until = boundInstant(
        p.description ?? 'MAXVALUE',
        found.kind,
        `${t.database}.${t.table} ${p.name}`,
      );
      return until !== null && until <= nowMs;
    });
  } catch {
    return skip('partitioned by bounds gameops cannot read as dates: not rebuilt');
  }
  const worth = past.filter((p) => {
    const total = p.dataBytes + p.indexBytes + p.freeBytes;
    return total > 0 && p.freeBytes / total >= opt.minFreeFraction && p.freeBytes >= opt.minFreeBytes;
  });
  if (worth.length === 0)
    return skip(
      `partitioned: no past partition has free ≥ ${pct(opt.minFreeFraction)} and ≥ ${formatBytes(opt.minFreeBytes)} ` +
        '(table DATA_FREE sums every partition’s preallocated extents; the current and future partitions are never rebuilt)',
    );
  const chosen: PartitionInfo[] = [];
  let size = 0;
  for (const p of worth) {
    if (size + p.dataBytes + p.indexBytes > opt.maxBytes) continue;
    chosen.push(p);
    size += p.dataBytes + p.indexBytes;
  }
  const left = worth.filter((p) => !chosen.includes(p)).map((p) => p.name);
  const capped =
    left.length > 0
      ? `; ${left.join(', ')} left out: above maintenance.db.optimize.maxBytes ${formatBytes(opt.maxBytes)}`
      : '';
  if (chosen.length === 0) return skip(`partitions ${left.join(', ')} are fragmented${capped}`);
  const free = chosen.reduce((n, p) => n + p.freeBytes, 0);
  return {
    ...base,
    optimize: true,
    partitions: chosen.map((p) => p.name),
    reason: `REBUILD PARTITION ${chosen.map((p) => p.name).join(', ')}: free ${formatBytes(free)} in them, each ≥ ${pct(opt.minFreeFraction)} and ≥ ${formatBytes(opt.minFreeBytes)}${capped}`,
  };
}

/**
 * FLUSH QUERY CACHE (defragments the cache; the entries stay) only where the server has a query cache
 * that is on. RESET QUERY CACHE is never planned: the server already drops the entries of every table a
 * purge or drop changed, and emptying the whole cache would make every other query miss at reopening.
 */
export function queryCacheDecision(
  flavour: string,
  version: string,
  qc: { present: boolean; type: string | null; sizeBytes: number },
): { flush: boolean; reason: string } {
  if (!qc.present)
    return {
      flush: false,
      reason:
        flavour === 'MySQL' && /^([89]|\d{2,})\./.test(version)
          ? 'MySQL 8.0 removed the query cache'
          : 'the server has no query cache (have_query_cache is not YES)',
    };
  if (qc.type === null || /^(off|0)$/i.test(qc.type))
    return { flush: false, reason: 'query_cache_type is OFF' };
  if (qc.sizeBytes <= 0) return { flush: false, reason: 'query_cache_size is 0' };
  return {
    flush: true,
    reason: `query_cache_type is ${qc.type}, ${formatBytes(qc.sizeBytes)}: defragment it`,
  };
}

/** `ALTER TABLE … ADD PARTITION (…)`, or `REORGANIZE PARTITION <catch-all> INTO (…, <catch-all>)`. */
export function addPartitionsSql(target: AddPartitionsTarget): string {
  const defs = target.partitions.map(
    (p) => `PARTITION ${quoteName(p.name)} VALUES LESS THAN (${p.lessThan})`,
  );
  if (target.reorganize === null)
    return `ALTER TABLE ${qualified(target)} ADD PARTITION (${defs.join(', ')})`;
  const catchAll = quoteName(target.reorganize);
  return (
    `ALTER TABLE ${qualified(target)} REORGANIZE PARTITION ${catchAll} INTO ` +
    `(${[...defs, `PARTITION ${catchAll} VALUES LESS THAN MAXVALUE`].join(', ')})`
  );
}

/**
 * One purge batch: ordered by the purge column, which leads an index, so each batch reads (and locks) only
 * the rows it deletes instead of range-scanning and sorting every stale row by the primary key.
 */
export function purgeBatchSql(
  target: Pick<PurgeTarget, 'database' | 'table' | 'column' | 'batchSize'>,
): string {
  const col = quoteName(target.column);
  return `DELETE FROM ${qualified(target)} WHERE ${col} < ? ORDER BY ${col} LIMIT ${target.batchSize}`;
}

/** The purge statement as shown (with the cutoff inline: it is a value computed here, not input). */
function purgeSqlText(target: PurgeTarget): string {
  return (
    `${purgeBatchSql(target).replace('?', `'${target.cutoff}'`)} -- ${target.zone}; repeated, one short transaction each, until fewer rows go` +
    (target.cascades.length > 0 ? `; also deletes or nulls rows of ${target.cascades.join(', ')}` : '')
  );
}

function summarise(plan: DbPlan): string {
  const parts: string[] = [];
  if (plan.rotate.length > 0)
    parts.push(
      `archive then drop ${plan.rotate.length} partition(s) (${plan.rotate.map((r) => `${plainName(r)}.${r.partition} ≈${r.rows} rows`).join(', ')})`,
    );
  if (plan.addPartitions.length > 0)
    parts.push(
      `add ${plan.addPartitions.map((a) => `${a.partitions.map((p) => p.name).join(', ')} to ${plainName(a)}`).join('; ')}`,
    );
  if (plan.purge.length > 0)
    parts.push(
      `purge ${plan.purge
        .map(
          (p) =>
            `${plainName(p)} rows with ${p.column} < ${p.cutoff} ${p.zone}` +
            (p.cascades.length > 0 ? ` (and, by foreign keys, rows of ${p.cascades.join(', ')})` : ''),
        )
        .join(', ')}`,
    );
  if (plan.optimize.tables.length > 0)
    parts.push(
      `OPTIMIZE ${plan.optimize.tables.map((t) => (t.partitions ? `${plainName(t)} (partitions ${t.partitions.join(', ')})` : plainName(t))).join(', ')}`,
    );
  else parts.push('no table fragmented enough to OPTIMIZE');
  if (plan.analyze.tables.length > 0) parts.push(`ANALYZE ${plan.analyze.tables.length} table(s)`);
  parts.push(
    plan.queryCache.flush ? 'FLUSH QUERY CACHE' : `no query cache flush (${plan.queryCache.reason})`,
  );
  return `${plan.dryRun ? 'Dry run (nothing is done): d' : 'D'}atabase maintenance of ${plan.database} on ${plan.server.flavour} ${plan.server.version} (time_zone ${plan.server.timeZone}): ${parts.join('; ')}.`;
}
