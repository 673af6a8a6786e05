/**
 * Database maintenance actions (runbook §4.2) over src/maintenance/db: `db.plan` (read-only) works out
 * what to do from the live schema and `maintenance.db`; the others each do one kind of it with the plan's
 * lists as arguments (so an approval binds exact tables, partition names and cutoffs), checking every
 * name against the live schema and the config again when they run. Connections: the configured `mysql`
 * section, one per action, closed after it.
 */
import { z } from 'zod';
import { loadIdentities } from '../../backups/keys.ts';
import { openObjectStore } from '../../backups/storage/index.ts';
import type { GameopsConfig } from '../../config/index.ts';
import { ConflictError, InputError } from '../../core/index.ts';
import {
  keySegment,
  rotatePartition,
  rotationState,
  rotationVerdict,
  type ArchiveStorage,
  type RotationResult,
} from '../../maintenance/db/archive.ts';
import {
  addPartitions,
  analyzeTables,
  flushQueryCache,
  liveTable,
  optimizeTables,
  purgeRows,
  type AddPartitionsResult,
  type PurgeResult,
} from '../../maintenance/db/execute.ts';
import { inspectDatabase } from '../../maintenance/db/inspect.ts';
import { addUnits, periodStart } from '../../maintenance/db/periods.ts';
import {
  boundsOf,
  partitioning,
  planMaintenance,
  purgeCutoff,
  qualified,
  quoteName,
  type DbPlan,
} from '../../maintenance/db/plan.ts';
import { checkPrivileges, privilegeError, requiredPrivileges } from '../../maintenance/db/privileges.ts';
import { withMysql, type MysqlClient } from '../../connectors/mysql.ts';
import type { ActionDefinition, StepContext } from '../model.ts';
import { mysqlServer } from './mysql.ts';
import { maybeServices, servicesOf } from './services.ts';

const name = z
  .string()
  .regex(/^[A-Za-z0-9_$]{1,64}$/, 'a MySQL name: letters, digits, "_" and "$", at most 64');
const tableRef = z.strictObject({ database: name, table: name });
type TableRef = z.infer<typeof tableRef>;

function server(services: unknown): string {
  return mysqlServer(maybeServices(services)?.config);
}

const list = (refs: ReadonlyArray<TableRef>): string =>
  refs.map((r) => `${r.database}.${r.table}`).join(', ');
const stepOptions = (ctx: StepContext) => ({ signal: ctx.signal, log: (line: string) => ctx.log(line) });

/** The game schema (`mysql.database`). */
function gameDatabase(config: GameopsConfig): string {
  if (!config.mysql)
    throw new InputError(
      'no database is configured: add a `mysql:` section (host, user, password) to the config',
    );
  return config.mysql.database;
}

/**
 * A connection for database maintenance: as `maintenance.db.mysql` (a maintenance user) over the `mysql`
 * connection when that is set, else as `mysql.user`.
 */
async function maintenanceMysql<T>(ctx: StepContext, work: (client: MysqlClient) => Promise<T>): Promise<T> {
  const services = servicesOf(ctx);
  const as = services.config.maintenance.db.mysql;
  const mysql = services.config.mysql;
  if (!as || !mysql) return services.mysql(ctx.signal, (client) => work(client));
  return withMysql({ ...mysql, user: as.user, password: as.password }, ctx.signal, work);
}

/**
 * What `db.plan` works out, read-only, on `client`: the inspection, the purge probes, the plan and the
 * privilege check (a dry run notes missing privileges, otherwise NotAllowedError).
 * @throws InputError naming the `maintenance.db` field that does not match the live schema.
 */
async function planOn(
  client: MysqlClient,
  config: GameopsConfig,
  database: string,
  now: Date,
  { signal, dryRun }: { signal: AbortSignal; dryRun: boolean },
): Promise<DbPlan> {
  const db = config.maintenance.db;
  const inspection = await inspectDatabase(client, database, db, { signal });
  // Checked against the live schema first (InputError naming the rule); then, per rule, whether any row
  // is older than the cutoff (one index probe), so a purge with nothing to do asks no approval.
  const first = planMaintenance(inspection, db, now);
  const nothingToPurge = new Set<string>();
  // TIMESTAMP columns compare in the session's zone: their cutoffs are UTC (DATETIME ones are in their zone).
  await client.query("SET SESSION time_zone = '+00:00'", [], { signal });
  for (const rule of first.purge) {
    const found = await client.query(
      `SELECT 1 AS x FROM ${qualified(rule)} WHERE ${quoteName(rule.column)} < ? LIMIT 1`,
      [rule.cutoff],
      { signal, timeoutMs: 60_000 },
    );
    if (found.length === 0) nothingToPurge.add(`${rule.database}.${rule.table}.${rule.column}`);
  }
  const planned = planMaintenance(inspection, db, now, { nothingToPurge, dryRun });
  // Before any approval (and in a window, before the game closes): a user without the grants is told
  // now, not by a denied ALTER after the approval. A dry run notes it instead.
  const privileges = await checkPrivileges(client, requiredPrivileges(planned), { signal });
  if (privileges.note) planned.notes.push(privileges.note);
  if (privileges.missing.length > 0) {
    const error = privilegeError(privileges.user, privileges.missing);
    if (!dryRun) throw error;
    planned.notes.push(`would fail: ${error.message}`);
  }
  return planned;
}

// -----------------------------------------------------------------------------------------------------

const planArgs = z.strictObject({
  dryRun: z
    .boolean()
    .default(false)
    .describe('Work everything out, mark nothing to run (every run flag false).'),
  duringPlay: z
    .boolean()
    .optional()
    .describe(
      'false: refuse (before any approval) a plan that rebuilds, reorganises, drops or purges while the traffic gate ' +
        'is open; true: allowed during play. Unset: not checked (the maintenance runbook runs the work behind its closed gate).',
    ),
});

/** Refuses work that rebuilds, reorganises, drops or purges while players are on (the gate is open). */
async function requireClosedGate(plan: DbPlan, ctx: StepContext): Promise<void> {
  const heavy = plan.run.optimize || plan.run.addPartitions || plan.run.purge || plan.run.rotate;
  if (!heavy) return;
  let closed: boolean;
  try {
    closed = (await (await servicesOf(ctx).fleet()).gate()).closed;
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    throw new ConflictError(
      `database maintenance would rebuild, reorganise, drop or purge, and whether the traffic gate is closed cannot be told ` +
        `(${err instanceof Error ? err.message : String(err)}): run it with duringPlay: true (-p duringPlay=true) to do it anyway, or inside a maintenance window`,
      { cause: err },
    );
  }
  if (!closed)
    throw new ConflictError(
      'database maintenance would rebuild, reorganise, drop or purge while the traffic gate is open (players on): ' +
        'run it inside a maintenance window (the maintenance runbook), close the gate, or run it with duringPlay: true (-p duringPlay=true)',
    );
}

const planAction: ActionDefinition<z.infer<typeof planArgs>, DbPlan> = {
  name: 'db.plan',
  description:
    'Inspects the game schema (engine, rows, sizes, free space per table; partitions of the configured tables; the ' +
    'server and its query cache) and works out maintenance.db: tables to OPTIMIZE (both free-space thresholds) and ' +
    'ANALYZE, future partitions, partitions past retention to archive and drop, purge cutoffs, the query cache flush.',
  effect: 'read-only',
  idempotent: true,
  args: planArgs,
  target: (_args, services) => `maintenance of ${server(services)}`,
  async run(args, ctx) {
    const { config } = servicesOf(ctx);
    const database = gameDatabase(config);
    const now = ctx.clock.now();
    const plan = await maintenanceMysql(ctx, (client) =>
      planOn(client, config, database, now, { signal: ctx.signal, dryRun: args.dryRun }),
    );
    // Said before the approval rather than by a failed rotate step after the other steps ran.
    if (plan.rotate.length > 0) archiveConfig(config);
    if (args.duringPlay === false) await requireClosedGate(plan, ctx);
    for (const t of plan.tables)
      ctx.log(`${t.database}.${t.table}: ${t.optimize ? 'OPTIMIZE' : 'skip'}: ${t.reason}`);
    for (const note of plan.notes) ctx.log(`note: ${note}`);
    for (const statement of plan.statements) ctx.log(`${plan.dryRun ? 'would run' : 'to run'}: ${statement}`);
    ctx.log(plan.summary);
    return plan;
  },
};

const tablesArgs = z.strictObject({ tables: z.array(tableRef).min(1).max(1000) });
const optimizeArgs = z.strictObject({
  tables: z
    .array(tableRef.extend({ partitions: z.array(name).min(1).max(1000).optional() }))
    .min(1)
    .max(1000),
});

const optimizeAction: ActionDefinition<z.infer<typeof optimizeArgs>> = {
  name: 'db.optimize',
  description:
    'OPTIMIZE TABLE each table in turn (InnoDB rebuilds and analyses it), or ALTER TABLE … REBUILD PARTITION of the ' +
    'named partitions of a partitioned table, with its size and free space before and after.',
  effect: 'mutating',
  idempotent: true,
  args: optimizeArgs,
  target: (args, services) =>
    `tables ${args.tables.map((t) => `${t.database}.${t.table}${t.partitions ? ` (partitions ${t.partitions.join(', ')})` : ''}`).join(', ')} of ${server(services)}`,
  async run(args, ctx) {
    return maintenanceMysql(ctx, async (client) => ({
      tables: await optimizeTables(client, args.tables, stepOptions(ctx)),
    }));
  },
};

const analyzeAction: ActionDefinition<z.infer<typeof tablesArgs>> = {
  name: 'db.analyze',
  description: 'ANALYZE TABLE each table in turn (refreshes the optimizer statistics).',
  effect: 'mutating',
  idempotent: true,
  args: tablesArgs,
  target: (args, services) => `tables ${list(args.tables)} of ${server(services)}`,
  async run(args, ctx) {
    return maintenanceMysql(ctx, async (client) => ({
      tables: await analyzeTables(client, args.tables, stepOptions(ctx)),
    }));
  },
};

const newPartition = z.strictObject({
  name: z
    .string()
    .regex(
      /^p(_\d{4}_\d{2}(_\d{2})?|\d{6}(\d{2})?)(_\d+)?$/,
      'a partition name made by db.plan: p_YYYY_MM, p_YYYY_MM_DD, pYYYYMM or pYYYYMMDD',
    ),
  lessThan: z
    .string()
    .regex(/^(TO_DAYS\('\d{4}-\d{2}-\d{2}'\)|\d{1,12}|'\d{4}-\d{2}-\d{2}')$/, 'a bound made by db.plan'),
  until: z.iso.datetime(),
});
const addArgs = z.strictObject({
  tables: z
    .array(
      tableRef.extend({
        partitions: z.array(newPartition).min(1).max(400),
        reorganize: name.nullable().optional().describe('Informative: the live MAXVALUE partition is used.'),
      }),
    )
    .min(1)
    .max(100),
});

const addPartitionsAction: ActionDefinition<z.infer<typeof addArgs>, { tables: AddPartitionsResult[] }> = {
  name: 'db.add-partitions',
  description:
    'Creates future partitions (ALTER TABLE … ADD PARTITION, or REORGANIZE of the MAXVALUE partition, keeping its ' +
    'rows); partitions that exist with the same bound are skipped.',
  effect: 'mutating',
  idempotent: true,
  args: addArgs,
  target: (args, services) =>
    `partitions ${args.tables.map((t) => `${t.database}.${t.table} (${t.partitions.map((p) => p.name).join(', ')})`).join('; ')} of ${server(services)}`,
  async run(args, ctx) {
    const { config } = servicesOf(ctx);
    for (const t of args.tables) configuredPartitioning(config, t);
    return maintenanceMysql(ctx, async (client) => {
      const tables: AddPartitionsResult[] = [];
      for (const t of args.tables) tables.push(await addPartitions(client, t, stepOptions(ctx)));
      return { tables };
    });
  },
};

/** The `maintenance.db.partitions` entry of a table. @throws InputError when the table is not configured. */
function configuredPartitioning(config: GameopsConfig, ref: TableRef) {
  const database = gameDatabase(config);
  const entry = config.maintenance.db.partitions.find(
    (p) => p.table === ref.table && (p.database ?? database) === ref.database,
  );
  if (!entry)
    throw new InputError(
      `${ref.database}.${ref.table} is not in maintenance.db.partitions: gameops only partitions and rotates configured tables`,
    );
  return entry;
}

const rotateTarget = tableRef.extend({
  partition: name,
  lessThan: z.string().max(100).optional(),
  until: z.string().max(40).optional(),
  rows: z.number().int().min(0).optional(),
});
const rotateArgs = z.strictObject({ partitions: z.array(rotateTarget).min(1).max(1000) });
type RotateArgs = z.infer<typeof rotateArgs>;

/** `backups:` as rotation needs it. @throws InputError when backups or its identity are not configured. */
function archiveConfig(config: GameopsConfig): NonNullable<GameopsConfig['backups']> {
  const backups = config.backups;
  if (!backups)
    throw new InputError(
      'partition rotation needs backups: configured (storage and encryption): a partition is never dropped without an archive',
    );
  if (!backups.encryption.identity)
    throw new InputError(
      'partition rotation needs backups.encryption.identity: the archive is read back and verified before the partition is dropped',
    );
  return backups;
}

/** The archive storage of `backups:`. @throws InputError when backups or its identity are not configured. */
async function archiveStorage(config: GameopsConfig): Promise<ArchiveStorage> {
  const backups = archiveConfig(config);
  return {
    store: openObjectStore(backups.storage),
    recipients: backups.encryption.recipients,
    identities: await loadIdentities(backups.encryption.identity),
    level: backups.compressionLevel,
    prefix: `archives/${keySegment(config.service.name)}/${keySegment(config.service.environment)}`,
  };
}

const rotateAction: ActionDefinition<
  RotateArgs,
  { rotated: Array<RotationResult | { database: string; table: string; partition: string; skipped: string }> }
> = {
  name: 'db.rotate-partitions',
  description:
    'For each partition (past retention, of a table in maintenance.db.partitions, still with the approved bound and ' +
    'about the approved rows): swap its rows out to a staging table (EXCHANGE PARTITION), export them in one snapshot ' +
    'to the backup storage (NDJSON, zstd, age, SHA-256), read the archive back and compare row count and checksum with ' +
    'the server’s, write the archive’s manifest, and only then DROP PARTITION (empty by then) and the staging table. ' +
    'Never drops an unexported or unverified partition; an interrupted run goes on from where it stopped.',
  effect: 'destructive',
  idempotent: false,
  args: rotateArgs,
  target: (args, services) =>
    `partitions ${args.partitions.map((p) => `${p.database}.${p.table}.${p.partition}`).join(', ')} of ${server(services)}`,
  async run(args, ctx) {
    const { config } = servicesOf(ctx);
    const storage = await archiveStorage(config);
    const rotation = {
      storage,
      clock: ctx.clock,
      signal: ctx.signal,
      log: (line: string) => ctx.log(line),
    };
    try {
      return await maintenanceMysql(ctx, async (client) => {
        const rotated = [];
        for (const p of args.partitions) {
          const entry = configuredPartitioning(config, p);
          const info = await liveTable(client, p, ctx.signal);
          const { kind } = partitioning(info, 'table', p.database, p.table);
          const bound = boundsOf(info, kind).find((b) => b.partition.name === p.partition);
          if (!bound) {
            // Gone: archived and dropped before (a verified archive's manifest says so), or an interrupted
            // run left its rows in the staging table (rotatePartition goes on from there).
            const state = await rotationState(client, storage, info, p.partition, ctx.signal, (line) =>
              ctx.log(line),
            );
            if (state.staging !== 'rows') {
              if (state.manifests.length === 0)
                throw new InputError(
                  `${p.partition} is not a partition of ${p.database}.${p.table} (it has ${info.partitions.map((x) => x.name).join(', ') || 'none'}) ` +
                    'and has no verified archive (no manifest): not rotated',
                );
              ctx.log(
                `${p.database}.${p.table} partition ${p.partition} is gone and archived (${state.manifests.map((m) => m.key).join(', ')}): skipped`,
              );
              rotated.push({ ...p, skipped: 'already archived and dropped' });
              continue;
            }
            rotated.push(await rotatePartition(client, info, p, rotation));
            continue;
          }
          const limit = addUnits(
            periodStart(ctx.clock.now().getTime(), entry.unit),
            entry.unit,
            -entry.retain,
          );
          if (bound.until === null || bound.until > limit)
            throw new InputError(
              `${p.database}.${p.table} partition ${p.partition} holds rows up to ${bound.until === null ? 'MAXVALUE' : new Date(bound.until).toISOString()}, ` +
                `within the retention (${entry.retain} ${entry.unit}(s), before ${new Date(limit).toISOString()}): not rotated`,
            );
          rotated.push(await rotatePartition(client, info, p, rotation));
        }
        return { rotated };
      });
    } finally {
      await storage.store.close();
    }
  },
  /**
   * Done when every partition is gone, with no rows left in its staging table and a verified archive
   * (manifest); not done while any partition or staged rows remain (running again goes on from there);
   * unknown when a partition is gone without a verified archive.
   */
  async verify(args, ctx) {
    const { config } = servicesOf(ctx);
    const storage = await archiveStorage(config);
    try {
      return await maintenanceMysql(ctx, async (client) => {
        let done = 0;
        for (const p of args.partitions) {
          const info = await liveTable(client, p, ctx.signal);
          const verdict = rotationVerdict(
            await rotationState(client, storage, info, p.partition, ctx.signal),
          );
          if (verdict === 'unknown') return verdict;
          if (verdict === 'done') done += 1;
        }
        // Some done and some not: running again skips the archived ones and goes on with the rest.
        return done === args.partitions.length ? ('done' as const) : ('not-done' as const);
      });
    } finally {
      await storage.store.close();
    }
  },
};

const purgeArgs = z.strictObject({
  rules: z
    .array(
      tableRef.extend({
        column: name,
        cutoff: z
          .string()
          .regex(
            /^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2})?$/,
            'YYYY-MM-DD HH:MM:SS (YYYY-MM-DD for a DATE column)',
          ),
        zone: z
          .string()
          .min(1)
          .max(64)
          .default('UTC')
          .describe('The zone the cutoff is written in (from db.plan).'),
        batchSize: z.number().int().min(1).max(100_000),
        cascades: z.array(z.string().max(300)).max(100).optional().describe('Informative (from db.plan).'),
      }),
    )
    .min(1)
    .max(100),
});

const purgeAction: ActionDefinition<z.infer<typeof purgeArgs>, { rules: PurgeResult[] }> = {
  name: 'db.purge',
  description:
    'Deletes rows older than each rule’s cutoff (fixed by db.plan, in the zone of its values) in batches of batchSize, ' +
    'each its own short READ COMMITTED transaction ordered by the indexed purge column; a batch blocked on locks gives ' +
    'up after a few seconds. Reports rows and batches.',
  effect: 'destructive',
  idempotent: true,
  args: purgeArgs,
  target: (args, services) =>
    `rows of ${args.rules.map((r) => `${r.database}.${r.table} with ${r.column} < ${r.cutoff} ${r.zone}`).join(', ')} of ${server(services)}`,
  async run(args, ctx) {
    const { config } = servicesOf(ctx);
    const database = gameDatabase(config);
    const now = ctx.clock.now().getTime();
    const rules = args.rules.map((r) => {
      const rule = config.maintenance.db.purge.find(
        (c) =>
          c.table === r.table &&
          (c.database ?? database) === r.database &&
          c.column.toLowerCase() === r.column.toLowerCase(),
      );
      if (!rule)
        throw new InputError(
          `${r.database}.${r.table}.${r.column} is not a rule of maintenance.db.purge: not purged`,
        );
      // UTC (TIMESTAMP columns, UTC servers) or the rule's zone; which one the column needs is checked
      // against the live server by purgeRows.
      if (r.zone !== 'UTC' && r.zone !== rule.zone)
        throw new InputError(
          `${r.database}.${r.table}.${r.column}: cutoff zone ${r.zone} is neither UTC nor the rule's zone (${rule.zone ?? 'none'}): not purged`,
        );
      const latest = purgeCutoff(now - rule.olderThan, r.cutoff.length === 10 ? 'date' : 'datetime', r.zone);
      if (r.cutoff > latest)
        throw new InputError(
          `${r.database}.${r.table}: cutoff ${r.cutoff} ${r.zone} is later than the configured ${latest} (older than the rule allows): not purged`,
        );
      return { target: r, rule };
    });
    return maintenanceMysql(ctx, async (client) => {
      const results: PurgeResult[] = [];
      for (const { target, rule } of rules)
        results.push(
          await purgeRows(client, target, {
            ...stepOptions(ctx),
            zone: rule.zone,
            allowScan: rule.allowScan,
          }),
        );
      return { rules: results };
    });
  },
};

const queryCacheAction: ActionDefinition<Record<string, never>> = {
  name: 'db.query-cache',
  description:
    'FLUSH QUERY CACHE (defragments it; entries stay) where the server has a query cache turned on; otherwise ' +
    'nothing, with the reason (MySQL 8.0 removed it; query_cache_type OFF). Never RESET QUERY CACHE.',
  effect: 'mutating',
  idempotent: true,
  args: z.strictObject({}),
  target: (_args, services) => `query cache of ${server(services)}`,
  async run(_args, ctx) {
    return maintenanceMysql(ctx, (client) => flushQueryCache(client, stepOptions(ctx)));
  },
};

/** The database maintenance actions. */
export const dbActions: ActionDefinition[] = [
  planAction,
  optimizeAction,
  analyzeAction,
  addPartitionsAction,
  rotateAction,
  purgeAction,
  queryCacheAction,
] as ActionDefinition[];
