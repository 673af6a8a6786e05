/**
 * Safety of database maintenance on a real MariaDB (harness): interrupted statements are stopped on the
 * server, DATETIME purges respect the zone their values are in, purge batches go through the purge column's
 * index (and a column without one is refused), partitioned tables are rebuilt partition by partition,
 * cascading foreign keys are shown, the standalone runbook refuses heavy work with the gate open, and
 * inspection survives servers without `information_schema_stats_expiry`.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { services } from '../../../test/harness/index.ts';
import { parseConfigText, readEnv, type GameopsConfig } from '../../config/index.ts';
import { connectMysql, withMysql } from '../../connectors/mysql.ts';
import { ConflictError, InputError, ManualClock, UnavailableError } from '../../core/index.ts';
import { createCatalog } from '../../runbooks/actions/index.ts';
import { createRunbookServices, resourcesFor, stepContext } from '../../runbooks/actions/test-support.ts';
import { optimizeTables, purgeRows } from './execute.ts';
import { freshStatistics, inspectDatabase } from './inspect.ts';
import { planMaintenance, purgeBatchSql, type DbPlan } from './plan.ts';

const NOW = '2026-11-26T12:00:00Z';
const DB = `dbs_${randomBytes(4).toString('hex')}`;
const catalog = createCatalog();
let config: GameopsConfig;

function makeConfig(db: Record<string, unknown>): GameopsConfig {
  const { mariadb } = services();
  const doc = {
    service: { name: 'test-game', environment: 'test' },
    mysql: { host: mariadb.host, port: mariadb.port, user: mariadb.user, password: 'env:P', database: DB },
    maintenance: { db },
  };
  return parseConfigText(JSON.stringify(doc), 'test.yaml', readEnv({ P: mariadb.password })).config;
}

async function sql(text: string, params: unknown[] = []): Promise<Array<Record<string, unknown>>> {
  return withMysql(config.mysql!, undefined, (c) => c.query(text, params, { timeoutMs: 60_000 }));
}

async function act<T>(name: string, args: unknown, cfg: GameopsConfig): Promise<T> {
  const def = catalog.action(name)!;
  const clock = new ManualClock(NOW);
  const ctx = stepContext(createRunbookServices(resourcesFor(cfg, { clock })), { clock });
  return (await def.run(def.args.parse(args), ctx)) as T;
}

const sessionsRule = { table: 'sessions', column: 'last_seen', olderThan: '30d', batchSize: 50 };

beforeAll(async () => {
  config = makeConfig({});
  await withMysql({ ...config.mysql!, database: 'mysql' }, undefined, (c) =>
    c.query(`CREATE DATABASE \`${DB}\``),
  );
  await sql(
    `CREATE TABLE sessions (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, last_seen DATETIME NOT NULL,
       player INT NOT NULL, KEY by_seen (last_seen)) ENGINE=InnoDB`,
  );
  // 3000 stale rows spread over September, in an order unrelated to the primary key.
  await sql(
    `INSERT INTO sessions (last_seen, player) SELECT '2026-09-01' + INTERVAL ((seq * 7919) % 3000) * 13 MINUTE, seq FROM seq_1_to_3000`,
  );
  // And 2000 recent ones (kept); statistics current, as InnoDB's background recalculation would make them.
  await sql(
    `INSERT INTO sessions (last_seen, player) SELECT '2026-11-20' + INTERVAL seq SECOND, seq FROM seq_1_to_2000`,
  );
  await sql('ANALYZE TABLE sessions');
  await sql(`CREATE TABLE items (id INT PRIMARY KEY, session_id INT NOT NULL, KEY (session_id),
       CONSTRAINT items_session FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE CASCADE) ENGINE=InnoDB`);
  await sql(`INSERT INTO items SELECT seq, seq FROM seq_1_to_10`);
  await sql(
    `CREATE TABLE visits (id INT PRIMARY KEY, at DATETIME NOT NULL, day DATE NOT NULL, KEY (at), KEY (day)) ENGINE=InnoDB`,
  );
  // Written by an application on a UTC-05:00 server: wall-clock values. The cutoff of 30 days before NOW is
  // 2026-10-27 12:00 UTC = 07:00 at -05:00.
  await sql(
    `INSERT INTO visits VALUES (1, '2026-10-27 06:00:00', '2026-10-25'), (2, '2026-10-27 10:00:00', '2026-10-27'),
       (3, '2026-11-20 00:00:00', '2026-11-20')`,
  );
  await sql(`CREATE TABLE unindexed (id INT PRIMARY KEY, at DATETIME NOT NULL) ENGINE=InnoDB`);
  await sql(`INSERT INTO unindexed VALUES (1, '2026-01-01 00:00:00')`);
  await sql(
    `CREATE TABLE plogs (id INT NOT NULL, created_at DATETIME NOT NULL, pad CHAR(100) NOT NULL,
       PRIMARY KEY (id, created_at)) ENGINE=InnoDB PARTITION BY RANGE (TO_DAYS(created_at)) (
       PARTITION p_2026_09 VALUES LESS THAN (TO_DAYS('2026-10-01')),
       PARTITION p_2026_10 VALUES LESS THAN (TO_DAYS('2026-11-01')),
       PARTITION p_2026_11 VALUES LESS THAN (TO_DAYS('2026-12-01')),
       PARTITION pmax VALUES LESS THAN MAXVALUE)`,
  );
  await sql(`INSERT INTO plogs SELECT seq, '2026-09-01' + INTERVAL (seq % 85) DAY, 'x' FROM seq_1_to_2000`);
}, 60_000);

afterAll(async () => {
  if (config) await sql(`DROP DATABASE IF EXISTS \`${DB}\``).catch(() => undefined);
});

describe('interrupted statements are stopped on the server (H1)', () => {
  async function threadOf(id: number): Promise<unknown[]> {
    return sql('SELECT ID FROM information_schema.PROCESSLIST WHERE ID = ?', [id]);
  }

  it('a query past its deadline is killed before the error, and the error says the outcome is unknown', async () => {
    const client = await connectMysql(config.mysql!);
    const id = client.threadId;
    try {
      const err = (await client
        .query('SELECT SLEEP(6) AS slow', [], { timeoutMs: 300 })
        .catch((e: unknown) => e)) as UnavailableError;
      expect(err).toBeInstanceOf(UnavailableError);
      expect(err.message).toContain('did not answer within 300 ms');
      expect(err.message).toContain(`stopped on the server (KILL CONNECTION ${id})`);
      expect(err.details).toMatchObject({ serverStopped: true, outcome: 'unknown' });
      expect(await threadOf(id)).toEqual([]);
    } finally {
      client.destroy();
    }
  });

  it('an aborted query rejects with the abort reason, its thread already gone', async () => {
    const client = await connectMysql(config.mysql!);
    const id = client.threadId;
    const controller = new AbortController();
    const reason = new Error('step cancelled');
    const running = client
      .query('SELECT SLEEP(6) AS slow', [], { signal: controller.signal, timeoutMs: 60_000 })
      .catch((e: unknown) => e);
    let seen: unknown[] = [];
    for (let i = 0; i < 100 && seen.length === 0; i++)
      seen = await sql(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = ? AND INFO LIKE 'SELECT SLEEP%'",
        [id],
      );
    expect(seen).toHaveLength(1);
    controller.abort(reason);
    expect(await running).toBe(reason);
    expect(await threadOf(id)).toEqual([]);
  });
});

describe('zones of DATETIME and DATE purges (M1, L5)', () => {
  const visitsRule = { table: 'visits', column: 'at', olderThan: '30d', batchSize: 10 };

  it('a DATETIME purge on a server whose time_zone is not UTC is refused, naming the column and the zone', async () => {
    // The global zone is what applications' sessions start with; changed for the inspection only, restored at once.
    const before = String((await sql('SELECT @@global.time_zone AS tz'))[0]!['tz']);
    let inspection;
    try {
      await sql("SET GLOBAL time_zone = '-05:00'");
      inspection = await withMysql(config.mysql!, undefined, (c) =>
        inspectDatabase(c, DB, { partitions: [{ table: 'plogs' }], purge: [{ table: 'visits' }] }),
      );
    } finally {
      await sql('SET GLOBAL time_zone = ?', [before]);
    }
    expect(inspection.server.timeZone).toEqual({ zone: '-05:00', utc: false });
    const cfg = makeConfig({ purge: [visitsRule] }).maintenance.db;
    expect(() => planMaintenance(inspection, cfg, new Date(NOW))).toThrow(
      new InputError(
        `maintenance.db.purge[0].zone: ${DB}.visits.at is DATETIME and the server's time_zone is -05:00, not UTC: ` +
          'say which zone its values are written in (e.g. the server zone as an IANA name or +HH:MM; UTC if the application writes UTC)',
      ),
    );
    const partitioned = makeConfig({ partitions: [{ table: 'plogs', unit: 'month', ahead: 1, retain: 1 }] });
    expect(() => planMaintenance(inspection, partitioned.maintenance.db, new Date(NOW))).toThrow(
      /partitions\[0\]: .*plogs is partitioned by the datetime column created_at, and the server's time_zone is -05:00, not UTC/,
    );
    // The application writes UTC although the server is not: said explicitly, then planned.
    const utc = makeConfig({
      partitions: [{ table: 'plogs', unit: 'month', ahead: 1, retain: 1, zone: 'UTC' }],
    });
    expect(planMaintenance(inspection, utc.maintenance.db, new Date(NOW)).summary).toContain(
      'time_zone -05:00',
    );
  });

  it('with the rule’s zone, the cutoff is that wall clock: a row inside the retention stays; DATE cutoffs are dates', async () => {
    const cfg = makeConfig({
      purge: [
        { ...visitsRule, zone: '-05:00' },
        { table: 'visits', column: 'day', olderThan: '30d', batchSize: 10, zone: '-05:00' },
      ],
    });
    const plan = await act<DbPlan>('db.plan', {}, cfg);
    expect(plan.purge.map((p) => [p.column, p.cutoff, p.zone])).toEqual([
      ['at', '2026-10-27 07:00:00', '-05:00'],
      ['day', '2026-10-27', '-05:00'],
    ]);
    expect(plan.summary).toContain('rows with at < 2026-10-27 07:00:00 -05:00');
    // A cutoff in another zone than the rule's is refused by the action (the approval binds the plan's).
    await expect(
      act('db.purge', { rules: [{ ...plan.purge[0]!, zone: 'UTC', cutoff: '2026-10-27 06:00:00' }] }, cfg),
    ).rejects.toThrow(`${DB}.visits.at: the cutoff is in UTC, the rule's values are in -05:00: not purged`);
    await act('db.purge', { rules: plan.purge }, cfg);
    // Row 1 (06:00 at -05:00) was older than 30 days; row 2 (10:00 at -05:00 = 15:00 UTC) was not, and a UTC
    // cutoff ('2026-10-27 12:00:00') would have deleted it. Its DATE (the cutoff day itself) is kept too.
    expect((await sql('SELECT id FROM visits ORDER BY id')).map((r) => r['id'])).toEqual([2, 3]);
  });
});

describe('purge batches (M2) and cascades (L5)', () => {
  it('a batch is read through the purge column’s index, not sorted by the primary key', async () => {
    const rows = await sql(
      `EXPLAIN ${purgeBatchSql({ database: DB, table: 'sessions', column: 'last_seen', batchSize: 50 })}`,
      ['2026-10-27 12:00:00'],
    );
    expect(rows[0]).toMatchObject({ key: 'by_seen' });
    expect((rows[0]!['Extra'] as string | null) ?? '').not.toMatch(/filesort/i);
  });

  it('a column that leads no index is refused unless the rule allows a scan', async () => {
    const rule = { table: 'unindexed', column: 'at', olderThan: '30d', batchSize: 10 };
    await expect(act('db.plan', {}, makeConfig({ purge: [rule] }))).rejects.toThrow(
      new InputError(
        `maintenance.db.purge[0].column: ${DB}.unindexed.at leads no index: every purge batch would scan (and lock) the table; add an index on it, or set allowScan: true on the rule`,
      ),
    );
    await expect(
      withMysql(config.mysql!, undefined, (c) =>
        purgeRows(
          c,
          { database: DB, table: 'unindexed', column: 'at', cutoff: '2026-10-27 12:00:00', batchSize: 10 },
          { signal: new AbortController().signal, log: () => undefined },
        ),
      ),
    ).rejects.toThrow(`${DB}.unindexed.at leads no index`);
    const allowed = await act<DbPlan>('db.plan', {}, makeConfig({ purge: [{ ...rule, allowScan: true }] }));
    expect(allowed.purge).toHaveLength(1);
    expect(allowed.notes).toContain(`${DB}.unindexed.at leads no index: each purge batch scans the table`);
  });

  it('foreign keys that cascade from the purged table are in the plan and the approval text; the purge runs in batches', async () => {
    const cfg = makeConfig({ purge: [sessionsRule] });
    const plan = await act<DbPlan>('db.plan', {}, cfg);
    expect(plan.purge[0]!.cascades).toEqual([`${DB}.items (items_session, ON DELETE CASCADE)`]);
    expect(plan.summary).toContain(
      `(and, by foreign keys, rows of ${DB}.items (items_session, ON DELETE CASCADE))`,
    );
    const done = await act<{ rules: Array<{ rows: number; batches: number }> }>(
      'db.purge',
      { rules: plan.purge },
      cfg,
    );
    expect(done.rules[0]).toMatchObject({ rows: 3000, batches: 61 });
    expect(await sql('SELECT COUNT(*) AS n FROM items')).toEqual([{ n: 0 }]);
  });
});

describe('partitioned tables, the gate, old servers (M3, L6)', () => {
  it('a partitioned table is judged per past partition; REBUILD PARTITION runs on the live table', async () => {
    const cfg = makeConfig({ optimize: { minFreeFraction: 0.2, minFreeBytes: 0, tables: ['plogs'] } });
    const plan = await act<DbPlan>('db.plan', { dryRun: true }, cfg);
    const report = plan.tables[0]!;
    // No deletes: whatever the table-level DATA_FREE says, no past partition is fragmented.
    expect(report).toMatchObject({ table: 'plogs', optimize: false });
    expect(report.reason).toMatch(/^partitioned: no past partition has free/);
    const log: string[] = [];
    const [result] = await withMysql(config.mysql!, undefined, (c) =>
      optimizeTables(c, [{ database: DB, table: 'plogs', partitions: ['p_2026_09'] }], {
        signal: new AbortController().signal,
        log: (line) => log.push(line),
      }),
    );
    expect(result).toMatchObject({ table: 'plogs' });
    await expect(
      withMysql(config.mysql!, undefined, (c) =>
        optimizeTables(c, [{ database: DB, table: 'plogs', partitions: ['p_1999_01'] }], {
          signal: new AbortController().signal,
          log: () => undefined,
        }),
      ),
    ).rejects.toThrow(new InputError(`p_1999_01 is not a partition of ${DB}.plogs`));
  });

  it('duringPlay false: a plan that purges is refused before any approval when the gate cannot be told closed', async () => {
    await sql(`INSERT INTO sessions (last_seen, player) VALUES ('2026-09-01 00:00:00', 1)`);
    const cfg = makeConfig({ purge: [sessionsRule] });
    const err = (await act('db.plan', { duringPlay: false }, cfg).catch((e: unknown) => e)) as ConflictError;
    expect(err).toBeInstanceOf(ConflictError);
    expect(err.message).toMatch(
      /^database maintenance would rebuild, reorganise, drop or purge, and whether the traffic gate is closed cannot be told/,
    );
    // A dry run changes nothing: no gate needed.
    expect((await act<DbPlan>('db.plan', { duringPlay: false, dryRun: true }, cfg)).purge).toHaveLength(1);
  });

  it('information_schema_stats_expiry is set only on MySQL 8+, and an unknown-variable answer is no failure', async () => {
    await withMysql(config.mysql!, undefined, async (c) => {
      await expect(freshStatistics(c, { flavour: 'MySQL', version: '5.7.44-log' })).resolves.toBeUndefined();
      // MariaDB has no such variable: what a server without it answers to the SET.
      await expect(freshStatistics(c, { flavour: 'MySQL', version: '8.0.36' })).resolves.toBeUndefined();
    });
  });
});
