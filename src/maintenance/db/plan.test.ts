import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InputError } from '../../core/index.ts';
import { encodeRow, rowHash, type ArchivedValue } from './archive.ts';
import type { Inspection, NamedTableInfo, PartitionInfo, TableInfo } from './inspect.ts';
import {
  addUnits,
  boundInstant,
  boundSql,
  partitionName,
  periodStart,
  type BoundKind,
  type PartitionUnit,
} from './periods.ts';
import {
  futurePartitions,
  MAX_NEW_PARTITIONS,
  planMaintenance,
  queryCacheDecision,
  type DbMaintenanceConfig,
} from './plan.ts';

const MB = 1024 * 1024;
const NOW = new Date('2026-11-26T12:00:00Z');

function table(name: string, over: Partial<TableInfo> = {}): TableInfo {
  return {
    database: 'gamedb',
    table: name,
    engine: 'InnoDB',
    rows: 1000,
    dataBytes: 100 * MB,
    indexBytes: 20 * MB,
    freeBytes: 0,
    ownTablespace: true,
    partitioned: false,
    partitions: [],
    ...over,
  };
}

function monthly(
  from: string,
  months: number,
  kind: BoundKind = 'to_days',
  maxvalue = true,
): PartitionInfo[] {
  const start = Date.parse(from);
  const parts: PartitionInfo[] = [];
  for (let i = 0; i < months; i++) {
    const until = addUnits(start, 'month', i + 1);
    const description =
      kind === 'to_days'
        ? String(719_528 + until / 86_400_000)
        : kind === 'unix_timestamp'
          ? String(until / 1000)
          : `'${new Date(until).toISOString().slice(0, 10)}'`;
    parts.push({
      name: partitionName(addUnits(start, 'month', i), 'month'),
      method: kind === 'columns' ? 'RANGE COLUMNS' : 'RANGE',
      expression:
        kind === 'to_days'
          ? 'to_days(`created_at`)'
          : kind === 'unix_timestamp'
            ? 'unix_timestamp(`created_at`)'
            : '`created_at`',
      description,
      ordinal: i + 1,
      rows: 100,
      dataBytes: MB,
      indexBytes: 0,
      freeBytes: 0,
    });
  }
  if (maxvalue)
    parts.push({
      name: 'pmax',
      method: parts[0]!.method,
      expression: parts[0]!.expression,
      description: 'MAXVALUE',
      ordinal: months + 1,
      rows: 0,
      dataBytes: 0,
      indexBytes: 0,
      freeBytes: 0,
    });
  return parts;
}

function logsTable(partitions: PartitionInfo[], type = 'datetime'): NamedTableInfo {
  return {
    database: 'gamedb',
    table: 'game_logs',
    exists: true,
    columns: [
      { name: 'id', type: 'bigint', charset: null },
      { name: 'created_at', type, charset: null },
    ],
    primaryKey: ['id', 'created_at'],
    indexedColumns: ['id'],
    partitions,
    cascades: [],
  };
}

const sessions: NamedTableInfo = {
  database: 'gamedb',
  table: 'player_sessions',
  exists: true,
  columns: [
    { name: 'id', type: 'int', charset: null },
    { name: 'last_activity', type: 'datetime', charset: null },
    { name: 'name', type: 'varchar', charset: 'utf8mb4' },
  ],
  primaryKey: ['id'],
  indexedColumns: ['id', 'last_activity'],
  partitions: [],
  cascades: [],
};

function inspection(over: Partial<Inspection> = {}): Inspection {
  return {
    database: 'gamedb',
    server: {
      version: '10.11.6-MariaDB',
      flavour: 'MariaDB',
      filePerTable: true,
      queryCache: { present: true, type: 'OFF', sizeBytes: MB },
      timeZone: { zone: 'UTC', utc: true },
    },
    tables: [
      table('players'),
      table('inventory', { freeBytes: 80 * MB }),
      table('chat', { dataBytes: MB, indexBytes: 0, freeBytes: 4 * MB }),
      table('shared', { ownTablespace: false, freeBytes: 500 * MB }),
      table('game_logs', { partitioned: true }),
    ],
    named: [logsTable(monthly('2025-10-01', 14)), sessions],
    notes: [],
    ...over,
  };
}

function config(over: Partial<DbMaintenanceConfig> = {}): DbMaintenanceConfig {
  return {
    optimize: { minFreeFraction: 0.2, minFreeBytes: 64 * MB, maxBytes: 10 * 1024 * MB },
    partitions: [{ table: 'game_logs', unit: 'month', ahead: 3, retain: 12 }],
    purge: [
      {
        table: 'player_sessions',
        column: 'last_activity',
        olderThan: 30 * 86_400_000,
        batchSize: 5000,
        allowScan: false,
      },
    ],
    ...over,
  };
}

describe('periods (pure)', () => {
  const unit = fc.constantFrom<PartitionUnit>('day', 'month');
  const instant = fc.integer({ min: Date.parse('2000-01-01'), max: Date.parse('2099-12-31') });

  it('every instant lies in exactly one period, and a period start round-trips through each bound kind', () => {
    fc.assert(
      fc.property(
        instant,
        unit,
        fc.constantFrom<BoundKind>('to_days', 'unix_timestamp', 'columns'),
        (t, u, kind) => {
          const start = periodStart(t, u);
          expect(start).toBeLessThanOrEqual(t);
          expect(addUnits(start, u, 1)).toBeGreaterThan(t);
          expect(periodStart(start, u)).toBe(start);
          const sql = boundSql(start, kind);
          // What MySQL stores for the bound: TO_DAYS evaluated, the number, the quoted date.
          const stored =
            kind === 'to_days'
              ? String(719_528 + Math.round(start / 86_400_000))
              : kind === 'columns'
                ? sql
                : sql;
          expect(boundInstant(stored, kind, 'x')).toBe(start);
        },
      ),
    );
  });

  it('names partitions after their period', () => {
    expect(partitionName(Date.parse('2026-12-01'), 'month')).toBe('p_2026_12');
    expect(partitionName(Date.parse('2026-02-09'), 'day')).toBe('p_2026_02_09');
    expect(boundInstant('MAXVALUE', 'to_days', 'x')).toBeNull();
    expect(() => boundInstant('abc', 'to_days', 'gamedb.game_logs partition p1')).toThrow(
      /gamedb.game_logs partition p1: bound "abc"/,
    );
  });
});

describe('future partitions (pure, property)', () => {
  it('are contiguous from the highest bound (one catch-up partition up to the current period), one unit each, up to `ahead` units past the current one, with fresh names', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 30 }),
        fc.integer({ min: 1, max: 24 }),
        fc.integer({ min: 1, max: 12 }),
        fc.boolean(),
        fc.constantFrom<BoundKind>('to_days', 'unix_timestamp', 'columns'),
        (startOffset, months, ahead, maxvalue, kind) => {
          const from = new Date(addUnits(Date.parse('2024-01-01'), 'month', startOffset)).toISOString();
          const info = logsTable(monthly(from, months, kind, maxvalue));
          const bounds = info.partitions.map((p) => ({
            partition: p,
            until: boundInstant(p.description!, kind, p.name),
          }));
          const now = NOW.getTime();
          const added = futurePartitions(bounds, 'month', ahead, kind, now);
          const highest = Math.max(...bounds.flatMap((b) => (b.until === null ? [] : [b.until])));
          const target = addUnits(periodStart(now, 'month'), 'month', ahead + 1);
          const current = periodStart(now, 'month');
          let previous = highest;
          for (const p of added) {
            const until = Date.parse(p.until);
            const start = previous < current ? current : previous;
            expect(until).toBe(addUnits(start, 'month', 1));
            expect(p.name).toBe(partitionName(start, 'month'));
            expect(p.lessThan).toBe(boundSql(until, kind));
            previous = until;
          }
          expect(previous).toBeGreaterThanOrEqual(target);
          if (added.length > 0) expect(addUnits(previous, 'month', -1)).toBeLessThan(target);
          const names = new Set(info.partitions.map((p) => p.name));
          for (const p of added) expect(names.has(p.name)).toBe(false);
        },
      ),
    );
  });
});

describe('planMaintenance (pure)', () => {
  it('optimises only tables past both thresholds in their own tablespace, and says why each other is skipped', () => {
    const plan = planMaintenance(inspection(), config(), NOW);
    const why = Object.fromEntries(plan.tables.map((t) => [t.table, [t.optimize, t.reason]]));
    expect(why['inventory']![0]).toBe(true);
    expect(why['players']).toEqual([false, expect.stringMatching(/^free 0\.0 % .* is below 20\.0 %/)]);
    expect(why['chat']).toEqual([
      false,
      expect.stringMatching(/^free 4\.0 MiB is below 64 MiB \(80\.0 % free\)/),
    ]);
    expect(why['shared']).toEqual([false, expect.stringMatching(/shared tablespace/)]);
    expect(plan.optimize.tables).toEqual([{ database: 'gamedb', table: 'inventory' }]);
    expect(plan.statements).toContain('OPTIMIZE TABLE `gamedb`.`inventory`');
  });

  it('rotates the months before retention, adds months ahead by reorganising pmax, purges with a fixed cutoff', () => {
    const plan = planMaintenance(inspection(), config(), NOW);
    // Now is November 2026, 12 months kept (Nov 2025 .. Oct 2026): October 2025 goes.
    expect(plan.rotate.map((r) => r.partition)).toEqual(['p_2025_10']);
    expect(plan.addPartitions[0]!.partitions.map((p) => p.name)).toEqual([
      'p_2026_12',
      'p_2027_01',
      'p_2027_02',
    ]);
    expect(plan.addPartitions[0]!.reorganize).toBe('pmax');
    expect(plan.statements).toContain(
      "ALTER TABLE `gamedb`.`game_logs` REORGANIZE PARTITION `pmax` INTO (PARTITION `p_2026_12` VALUES LESS THAN (TO_DAYS('2027-01-01')), " +
        "PARTITION `p_2027_01` VALUES LESS THAN (TO_DAYS('2027-02-01')), PARTITION `p_2027_02` VALUES LESS THAN (TO_DAYS('2027-03-01')), " +
        'PARTITION `pmax` VALUES LESS THAN MAXVALUE)',
    );
    expect(plan.purge).toEqual([
      {
        database: 'gamedb',
        table: 'player_sessions',
        column: 'last_activity',
        cutoff: '2026-10-27 12:00:00',
        zone: 'UTC',
        batchSize: 5000,
        cascades: [],
      },
    ]);
    expect(plan.analyze.tables.map((t) => t.table)).toEqual(['game_logs', 'player_sessions']);
    expect(plan.summary).toMatch(
      /^Database maintenance of gamedb on MariaDB 10\.11\.6-MariaDB \(time_zone UTC\): archive then drop 1 partition/,
    );
    expect(JSON.parse(JSON.stringify(plan))).toEqual(plan);
  });

  it('never rotates MAXVALUE, a partition within retention, or the last partition (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 30 }),
        fc.integer({ min: 1, max: 40 }),
        fc.boolean(),
        (retain, months, maxvalue) => {
          const info = logsTable(monthly('2023-06-01', months, 'to_days', maxvalue));
          const plan = planMaintenance(
            inspection({ named: [info, sessions] }),
            config({ partitions: [{ table: 'game_logs', unit: 'month', ahead: 0, retain }] }),
            NOW,
          );
          const limit = addUnits(periodStart(NOW.getTime(), 'month'), 'month', -retain);
          for (const r of plan.rotate) {
            expect(r.lessThan).not.toBe('MAXVALUE');
            expect(Date.parse(r.until)).toBeLessThanOrEqual(limit);
          }
          const added = plan.addPartitions[0]?.partitions.length ?? 0;
          expect(info.partitions.length + added - plan.rotate.length).toBeGreaterThanOrEqual(1);
        },
      ),
    );
  });

  it('UNIX_TIMESTAMP and daily partitions: numeric bounds and p_YYYY_MM_DD names', () => {
    const days: PartitionInfo[] = [0, 1, 2].map((i) => ({
      name: partitionName(Date.parse('2026-11-20') + i * 86_400_000, 'day'),
      method: 'RANGE',
      expression: 'unix_timestamp(`ts`)',
      description: String((Date.parse('2026-11-21') + i * 86_400_000) / 1000),
      ordinal: i + 1,
      rows: 5,
      dataBytes: 0,
      indexBytes: 0,
      freeBytes: 0,
    }));
    const info = {
      ...logsTable(days, 'timestamp'),
      columns: [{ name: 'ts', type: 'timestamp', charset: null }],
    };
    const plan = planMaintenance(
      inspection({ named: [info, sessions] }),
      config({ partitions: [{ table: 'game_logs', unit: 'day', ahead: 1, retain: 5 }] }),
      NOW,
    );
    // The highest bound (2026-11-23) is before today: one catch-up partition covers the gap and today.
    expect(plan.addPartitions[0]!.partitions).toEqual([
      {
        name: 'p_2026_11_26',
        lessThan: String(Date.parse('2026-11-27') / 1000),
        until: '2026-11-27T00:00:00.000Z',
      },
      {
        name: 'p_2026_11_27',
        lessThan: String(Date.parse('2026-11-28') / 1000),
        until: '2026-11-28T00:00:00.000Z',
      },
    ]);
    expect(plan.addPartitions[0]!.reorganize).toBeNull();
    expect(plan.rotate.map((r) => r.partition)).toEqual(['p_2026_11_20']);
  });

  it('names a configured table, column or partitioning that is not in the live schema (InputError)', () => {
    const missing = { ...logsTable([]), exists: false };
    expect(() => planMaintenance(inspection({ named: [missing, sessions] }), config(), NOW)).toThrow(
      new InputError('maintenance.db.partitions[0].table: game_logs is not a table of gamedb'),
    );
    const notPartitioned = logsTable([]);
    expect(() => planMaintenance(inspection({ named: [notPartitioned, sessions] }), config(), NOW)).toThrow(
      'maintenance.db.partitions[0].table: gamedb.game_logs is not partitioned',
    );
    const list = logsTable(monthly('2026-01-01', 2).map((p) => ({ ...p, method: 'LIST' })));
    expect(() => planMaintenance(inspection({ named: [list, sessions] }), config(), NOW)).toThrow(
      'maintenance.db.partitions[0].table: gamedb.game_logs is partitioned by LIST, not by RANGE',
    );
    const yearly = logsTable(
      monthly('2026-01-01', 2).map((p) => ({ ...p, expression: 'year(`created_at`)' })),
    );
    expect(() => planMaintenance(inspection({ named: [yearly, sessions] }), config(), NOW)).toThrow(
      /is partitioned by RANGE\(year\(`created_at`\)\), not RANGE\(TO_DAYS\(col\)\)/,
    );
    expect(() =>
      planMaintenance(
        inspection(),
        config({
          optimize: { minFreeFraction: 0.2, minFreeBytes: 0, maxBytes: 10 * 1024 * MB, tables: ['nope'] },
        }),
        NOW,
      ),
    ).toThrow('maintenance.db.optimize.tables[0]: nope is not a table of gamedb');
    expect(() =>
      planMaintenance(
        inspection(),
        config({
          purge: [
            {
              table: 'player_sessions',
              column: 'name',
              olderThan: 3_600_000,
              batchSize: 1,
              allowScan: false,
            },
          ],
        }),
        NOW,
      ),
    ).toThrow(
      'maintenance.db.purge[0].column: gamedb.player_sessions.name is varchar, not DATETIME, TIMESTAMP or DATE',
    );
  });

  it('a dry run works everything out and marks nothing to run', () => {
    const plan = planMaintenance(inspection(), config(), NOW, { dryRun: true });
    expect(plan.rotate).toHaveLength(1);
    expect(plan.statements.length).toBeGreaterThan(0);
    expect(plan.run).toEqual({
      addPartitions: false,
      rotate: false,
      purge: false,
      optimize: false,
      analyze: false,
      queryCache: false,
    });
    expect(plan.work).toBe(false);
    expect(planMaintenance(inspection(), config(), NOW).run).toMatchObject({
      rotate: true,
      purge: true,
      optimize: true,
    });
  });

  it('nothing to do: work is false (the runbook asks no approval)', () => {
    const plan = planMaintenance(
      inspection({ named: [], tables: [table('players')] }),
      config({ partitions: [], purge: [] }),
      NOW,
    );
    expect(plan.work).toBe(false);
    expect(plan.statements).toEqual([]);
  });
});

describe('query cache decision (pure)', () => {
  it('flushes only a query cache that exists, is on and has memory; never resets it', () => {
    expect(queryCacheDecision('MySQL', '8.0.36', { present: false, type: null, sizeBytes: 0 })).toEqual({
      flush: false,
      reason: 'MySQL 8.0 removed the query cache',
    });
    expect(
      queryCacheDecision('MariaDB', '10.11.6-MariaDB', { present: true, type: 'OFF', sizeBytes: MB }),
    ).toEqual({
      flush: false,
      reason: 'query_cache_type is OFF',
    });
    expect(queryCacheDecision('MariaDB', '10.11.6', { present: true, type: 'ON', sizeBytes: 0 }).flush).toBe(
      false,
    );
    expect(
      queryCacheDecision('MySQL', '5.7.44', { present: true, type: 'DEMAND', sizeBytes: MB }),
    ).toMatchObject({
      flush: true,
    });
    expect(
      queryCacheDecision('MariaDB', '10.11.6', { present: false, type: null, sizeBytes: 0 }).reason,
    ).toMatch(/have_query_cache/);
  });
});

describe('archive row encoding (pure)', () => {
  it('hashes a row from its archived values the same whether read back or encoded (property)', () => {
    const value = fc.oneof(
      fc.constant(null),
      fc.string({ unit: 'grapheme' }),
      fc.uint8Array({ maxLength: 40 }).map((b) => ({ base64: Buffer.from(b).toString('base64') })),
    );
    fc.assert(
      fc.property(fc.array(value, { minLength: 1, maxLength: 6 }), (values: ArchivedValue[]) => {
        const columns = values.map((v, i) => ({
          name: `c${i}`,
          type: v !== null && typeof v === 'object' ? 'varbinary' : 'varchar',
          charset: v !== null && typeof v === 'object' ? 'binary' : 'utf8mb4',
        }));
        const row = Object.fromEntries(
          values.map((v, i) => [
            `c${i}`,
            v !== null && typeof v === 'object' ? Buffer.from(v.base64, 'base64') : v,
          ]),
        );
        const parsed = JSON.parse(encodeRow(columns, row)) as Record<string, ArchivedValue>;
        expect(rowHash(columns.map((c) => parsed[c.name]!))).toBe(rowHash(values));
      }),
    );
    // NULL and the text "N" differ; so do '' and NULL.
    expect(rowHash([null])).not.toBe(rowHash(['N']));
    expect(rowHash([''])).not.toBe(rowHash([null]));
  });
});

describe('database maintenance safety (pure)', () => {
  const GB = 1024 * MB;

  it('a partitioned table is rebuilt partition by partition: past ones past both thresholds, within maxBytes', () => {
    // Preallocated extents in every partition make table-level DATA_FREE look fragmented (≈ 70 %).
    const parts = monthly('2026-07-01', 6).map((p) => ({ ...p, dataBytes: 2 * MB, freeBytes: 5 * MB }));
    parts[0] = { ...parts[0]!, dataBytes: 100 * MB, freeBytes: 200 * MB }; // p_2026_07: really fragmented
    parts[1] = { ...parts[1]!, dataBytes: 3 * GB, freeBytes: 2 * GB }; // p_2026_08: fragmented but large
    parts[4] = { ...parts[4]!, dataBytes: 10 * MB, freeBytes: 900 * MB }; // p_2026_11: current, written to
    const logs = table('game_logs', {
      partitioned: true,
      partitions: parts,
      dataBytes: 3200 * MB,
      freeBytes: 3200 * MB,
    });
    const cfg = config({
      optimize: { minFreeFraction: 0.2, minFreeBytes: 64 * MB, maxBytes: 2 * GB },
      partitions: [],
      purge: [],
    });
    const plan = planMaintenance(inspection({ tables: [logs], named: [] }), cfg, NOW);
    expect(plan.tables[0]).toMatchObject({ optimize: true, partitions: ['p_2026_07'] });
    expect(plan.tables[0]!.reason).toContain('p_2026_08 left out: above maintenance.db.optimize.maxBytes 2');
    expect(plan.optimize.tables).toEqual([
      { database: 'gamedb', table: 'game_logs', partitions: ['p_2026_07'] },
    ]);
    expect(plan.statements).toContain('ALTER TABLE `gamedb`.`game_logs` REBUILD PARTITION `p_2026_07`');
    // REBUILD PARTITION does not refresh the statistics: analysed after.
    expect(plan.analyze.tables).toEqual([{ database: 'gamedb', table: 'game_logs' }]);
    // Only preallocated extents (a few MB a partition, 70 % of a small one): below minFreeBytes, nothing rebuilt.
    const quiet = monthly('2026-07-01', 6).map((p) => ({ ...p, dataBytes: 2 * MB, freeBytes: 5 * MB }));
    const calm = planMaintenance(
      inspection({ tables: [{ ...logs, partitions: quiet }], named: [] }),
      cfg,
      NOW,
    );
    expect(calm.tables[0]).toMatchObject({ optimize: false });
    // Hash partitions: which are past cannot be told.
    const hashed = planMaintenance(
      inspection({
        tables: [{ ...logs, partitions: parts.map((p) => ({ ...p, method: 'HASH', expression: 'id' })) }],
        named: [],
      }),
      cfg,
      NOW,
    );
    expect(hashed.tables[0]!.reason).toMatch(/^partitioned, and is partitioned by HASH, not by RANGE/);
    // A plain table larger than maxBytes is not rebuilt, and says why.
    const big = planMaintenance(
      inspection({ tables: [table('huge', { dataBytes: 20 * GB, freeBytes: 10 * GB })], named: [] }),
      cfg,
      NOW,
    );
    expect(big.tables[0]).toMatchObject({ optimize: false });
    expect(big.tables[0]!.reason).toMatch(/above maintenance\.db\.optimize\.maxBytes 2(\.0)? GiB/);
  });

  it('an old highest bound gives one catch-up partition (not one per missed month), with a note; never more than the cap', () => {
    const plan = planMaintenance(
      inspection({ named: [logsTable(monthly('2019-01-01', 2)), sessions] }),
      config({ partitions: [{ table: 'game_logs', unit: 'month', ahead: 2, retain: 12 }] }),
      NOW,
    );
    expect(plan.addPartitions[0]!.partitions.map((p) => [p.name, p.until])).toEqual([
      ['p_2026_11', '2026-12-01T00:00:00.000Z'],
      ['p_2026_12', '2027-01-01T00:00:00.000Z'],
      ['p_2027_01', '2027-02-01T00:00:00.000Z'],
    ]);
    expect(plan.notes).toContain(
      'gamedb.game_logs: its highest partition bound (2019-03-01T00:00:00.000Z) is before the current month: one catch-up partition p_2026_11 covers the gap',
    );
    const daily = futurePartitions([], 'day', 366, 'to_days', NOW.getTime());
    expect(daily.length).toBeLessThanOrEqual(MAX_NEW_PARTITIONS);
  });

  it('a DATE column is purged with a date cutoff (only whole days past the retention)', () => {
    const dated: NamedTableInfo = {
      ...sessions,
      columns: [...sessions.columns, { name: 'day', type: 'date', charset: null }],
      indexedColumns: [...sessions.indexedColumns, 'day'],
    };
    const plan = planMaintenance(
      inspection({ named: [logsTable(monthly('2025-10-01', 14)), dated] }),
      config({
        purge: [
          {
            table: 'player_sessions',
            column: 'day',
            olderThan: 30 * 86_400_000,
            batchSize: 10,
            allowScan: false,
          },
        ],
      }),
      NOW,
    );
    expect(plan.purge[0]).toMatchObject({ column: 'day', cutoff: '2026-10-27', zone: 'UTC' });
    expect(plan.statements).toContain(
      "DELETE FROM `gamedb`.`player_sessions` WHERE `day` < '2026-10-27' ORDER BY `day` LIMIT 10 -- UTC; repeated, one short transaction each, until fewer rows go",
    );
  });
});
