/**
 * Database maintenance on a real MariaDB (harness): a `game_logs` table RANGE-partitioned by month with rows
 * in old partitions, `player_sessions` / `temporary_data` with old and new rows, a fragmented table and a
 * compact one. Rotation is archive → verify → drop with the real object pipeline on a filesystem store.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Decrypter } from 'age-encryption';
import { zstdDecompressSync } from 'node:zlib';
import { backupKey, type BackupKey } from '../../../test/support/backups.ts';
import { closedPort, services, startSilentServer } from '../../../test/harness/index.ts';
import { parseConfigText, readEnv, type GameopsConfig } from '../../config/index.ts';
import { connectMysql, withMysql, type MysqlClient } from '../../connectors/mysql.ts';
import { ConflictError, InputError, ManualClock, UnavailableError } from '../../core/index.ts';
import { createCatalog } from '../../runbooks/actions/index.ts';
import { createRunbookServices, resourcesFor, stepContext } from '../../runbooks/actions/test-support.ts';
import { rotatePartition, type ArchiveStorage } from './archive.ts';
import { liveTable, purgeRows } from './execute.ts';
import { archiveStorageOf, countRows, filesUnder, partitionNames, sqlOn } from './test-support.ts';
import { inspectDatabase } from './inspect.ts';
import type { DbPlan } from './plan.ts';

const NOW = '2026-11-26T12:00:00Z';
const DB = `dbm_${randomBytes(4).toString('hex')}`;
const catalog = createCatalog();
let dir: string;
let key: BackupKey;
let config: GameopsConfig;

function makeConfig(mysql: Record<string, unknown>, extra: Record<string, unknown> = {}): GameopsConfig {
  const { mariadb } = services();
  const doc = {
    service: { name: 'test-game', environment: 'test' },
    mysql: {
      host: mariadb.host,
      port: mariadb.port,
      user: mariadb.user,
      password: 'env:P',
      database: DB,
      ...mysql,
    },
    backups: {
      storage: { kind: 'filesystem', path: join(dir, 'store') },
      encryption: { recipients: [key.recipient], identity: `file:${join(dir, 'backup.key')}` },
    },
    maintenance: {
      db: {
        optimize: { minFreeFraction: 0.2, minFreeBytes: 1024 * 1024 },
        partitions: [{ table: 'game_logs', unit: 'month', ahead: 2, retain: 3 }],
        purge: [
          { table: 'player_sessions', column: 'last_activity', olderThan: '30d', batchSize: 7 },
          {
            table: 'temporary_data',
            column: 'created_at',
            olderThan: '7d',
            batchSize: 1000,
            allowScan: true,
          },
        ],
      },
    },
    ...extra,
  };
  return parseConfigText(JSON.stringify(doc), 'test.yaml', readEnv({ P: mariadb.password })).config;
}

const sql = <T = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> =>
  sqlOn<T>(config, text, params);
const count = (table: string, partition?: string): Promise<number> => countRows(config, table, partition);
const partitions = (): Promise<string[]> => partitionNames(config, DB, 'game_logs');

/** Runs an action as the engine would (arguments through its schema), on a fake clock at NOW. */
async function act<T>(name: string, args: unknown, cfg: GameopsConfig = config): Promise<T> {
  const def = catalog.action(name)!;
  const clock = new ManualClock(NOW);
  const ctx = stepContext(createRunbookServices(resourcesFor(cfg, { clock })), { clock });
  return (await def.run(def.args.parse(args), ctx)) as T;
}

const storedFiles = (): string[] => filesUnder(join(dir, 'store'));
const storage = (): Promise<ArchiveStorage> => archiveStorageOf(config, 'archives/test-game/test');

const monthBound = (y: number, m: number): string => `TO_DAYS('${y}-${String(m).padStart(2, '0')}-01')`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gameops-dbm-'));
  key = await backupKey();
  writeFileSync(join(dir, 'backup.key'), `${key.identity}\n`, { mode: 0o600 });
  const { mariadb } = services();
  config = makeConfig({});
  await withMysql({ ...config.mysql!, database: 'mysql' }, undefined, async (c) => {
    await c.query(`CREATE DATABASE \`${DB}\``);
  });
  expect(mariadb.user).toBe('root');
  const parts = [];
  for (let m = 5; m <= 10; m++)
    parts.push(
      `PARTITION p_2026_${String(m).padStart(2, '0')} VALUES LESS THAN (${monthBound(2026, m + 1)})`,
    );
  await sql(
    `CREATE TABLE game_logs (
       id BIGINT NOT NULL AUTO_INCREMENT, created_at DATETIME NOT NULL, player_id INT NULL,
       message VARCHAR(200) CHARACTER SET utf8mb4 NULL, payload VARBINARY(32) NULL, amount DECIMAL(20,4) NULL,
       ratio FLOAT NULL, big BIGINT UNSIGNED NULL, note TEXT CHARACTER SET latin1 NULL,
       PRIMARY KEY (id, created_at)
     ) ENGINE=InnoDB PARTITION BY RANGE (TO_DAYS(created_at)) (${parts.join(', ')}, PARTITION pmax VALUES LESS THAN MAXVALUE)`,
  );
  // 40 rows in each month May..October, varied values (NULLs, binary, unicode, big numbers, floats).
  await sql(
    `INSERT INTO game_logs (created_at, player_id, message, payload, amount, ratio, big, note)
     SELECT '2026-05-01 00:00:00' + INTERVAL (seq DIV 40) MONTH + INTERVAL (seq % 40) * 17 HOUR,
            IF(seq % 5 = 0, NULL, seq), CONCAT('évènement ☃ ', seq, IF(seq % 7 = 0, ' | a|b', '')),
            IF(seq % 3 = 0, NULL, UNHEX(MD5(seq))), seq * 1.2345, seq / 3, 18446744073709551615 - seq, CONCAT('café ', seq)
       FROM seq_0_to_239`,
  );
  await sql(
    `CREATE TABLE player_sessions (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, player_id INT NOT NULL,
       last_activity DATETIME NOT NULL, KEY (last_activity)) ENGINE=InnoDB`,
  );
  // 30 rows older than 30 days (cutoff 2026-10-27 12:00), 10 newer, 1 exactly at the cutoff (kept).
  await sql(
    `INSERT INTO player_sessions (player_id, last_activity)
     SELECT seq, IF(seq < 30, '2026-10-01 00:00:00' + INTERVAL seq HOUR, '2026-11-20 00:00:00') FROM seq_0_to_39`,
  );
  await sql(`INSERT INTO player_sessions (player_id, last_activity) VALUES (99, '2026-10-27 12:00:00')`);
  await sql(
    `CREATE TABLE temporary_data (k VARCHAR(40) NOT NULL PRIMARY KEY, created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB`,
  );
  await sql(`SET time_zone = '+00:00'`);
  await sql(
    `INSERT INTO temporary_data (k, created_at) VALUES ('old-1', '2026-11-01 00:00:00'), ('old-2', '2026-11-18 23:59:59'), ('new-1', '2026-11-25 00:00:00')`,
  );
  await sql(`CREATE TABLE compact (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB`);
  await sql(`INSERT INTO compact SELECT seq, 'x' FROM seq_1_to_100`);
  // Fragmented: about 16 MB of rows, then most deleted (in key order, so whole extents empty).
  await sql(
    `CREATE TABLE fragmented (id INT PRIMARY KEY, pad CHAR(255) NOT NULL) ENGINE=InnoDB CHARACTER SET latin1`,
  );
  await sql(`INSERT INTO fragmented SELECT seq, REPEAT('x', 255) FROM seq_1_to_60000`);
  await sql(`DELETE FROM fragmented WHERE id > 3000`);
  // Let the purge thread free the deleted pages (MariaDB 10.5+), so DATA_FREE shows them.
  await sql('SET GLOBAL innodb_max_purge_lag_wait = 0');
  await sql(`ANALYZE TABLE fragmented`);
}, 60_000);

afterAll(async () => {
  if (config) await sql(`DROP DATABASE IF EXISTS \`${DB}\``).catch(() => undefined);
});

describe('db maintenance on a real MariaDB', () => {
  let plan: DbPlan;

  it('plans: OPTIMIZE only the fragmented table, future partitions by REORGANIZE of pmax, the three old months, purge cutoffs', async () => {
    expect((await sql<{ v: string }>('SELECT @@innodb_file_per_table AS v'))[0]!.v).toBe(1);
    plan = await act<DbPlan>('db.plan', {});
    const byName = new Map(plan.tables.map((t) => [t.table, t]));
    expect(byName.get('fragmented')).toMatchObject({ optimize: true });
    expect(byName.get('compact')).toMatchObject({ optimize: false });
    expect(byName.get('compact')!.reason).toMatch(/below/);
    expect(plan.optimize.tables).toEqual([{ database: DB, table: 'fragmented' }]);
    expect(plan.addPartitions).toEqual([
      {
        database: DB,
        table: 'game_logs',
        reorganize: 'pmax',
        partitions: [
          { name: 'p_2026_11', lessThan: "TO_DAYS('2026-12-01')", until: '2026-12-01T00:00:00.000Z' },
          { name: 'p_2026_12', lessThan: "TO_DAYS('2027-01-01')", until: '2027-01-01T00:00:00.000Z' },
          { name: 'p_2027_01', lessThan: "TO_DAYS('2027-02-01')", until: '2027-02-01T00:00:00.000Z' },
        ],
      },
    ]);
    expect(plan.rotate.map((r) => r.partition)).toEqual(['p_2026_05', 'p_2026_06', 'p_2026_07']);
    expect(plan.purge).toEqual([
      {
        database: DB,
        table: 'player_sessions',
        column: 'last_activity',
        cutoff: '2026-10-27 12:00:00',
        zone: 'UTC',
        batchSize: 7,
        cascades: [],
      },
      {
        database: DB,
        table: 'temporary_data',
        column: 'created_at',
        cutoff: '2026-11-19 12:00:00',
        zone: 'UTC',
        batchSize: 1000,
        cascades: [],
      },
    ]);
    expect(plan.analyze.tables.map((t) => t.table)).toEqual([
      'game_logs',
      'player_sessions',
      'temporary_data',
    ]);
    expect(plan.statements).toContain(`OPTIMIZE TABLE \`${DB}\`.\`fragmented\``);
    expect(plan.statements).toContain(`ALTER TABLE \`${DB}\`.\`game_logs\` DROP PARTITION \`p_2026_05\``);
    expect(plan.statements.some((s) => s.includes('REORGANIZE PARTITION `pmax` INTO'))).toBe(true);
    expect(plan.summary).toMatch(/archive then drop 3 partition/);
    expect(plan.server.flavour).toBe('MariaDB');
    // The shared server runs with the query cache off: no statement for it.
    expect(plan.queryCache).toEqual({ flush: false, reason: 'query_cache_type is OFF' });
    expect(plan.statements.some((s) => /QUERY CACHE/.test(s))).toBe(false);
    expect(plan.work).toBe(true);
  });

  it('a configured table that does not exist, or is not partitioned by RANGE, is an InputError naming it', async () => {
    await sql('CREATE TABLE hashed (id INT PRIMARY KEY) PARTITION BY HASH (id) PARTITIONS 2');
    const missing = makeConfig({}, {});
    missing.maintenance.db.partitions = [{ table: 'no_such_logs', unit: 'month', ahead: 1, retain: 1 }];
    await expect(act('db.plan', {}, missing)).rejects.toThrow(
      new InputError(`maintenance.db.partitions[0].table: no_such_logs is not a table of ${DB}`),
    );
    missing.maintenance.db.partitions = [{ table: 'hashed', unit: 'month', ahead: 1, retain: 1 }];
    await expect(act('db.plan', {}, missing)).rejects.toThrow(
      /partitions\[0\]\.table: .*hashed is partitioned by HASH, not by RANGE/,
    );
    missing.maintenance.db.partitions = [];
    missing.maintenance.db.purge = [
      { table: 'player_sessions', column: 'nope', olderThan: 3_600_000, batchSize: 5, allowScan: false },
    ];
    await expect(act('db.plan', {}, missing)).rejects.toThrow(/purge\[0\]\.column: nope is not a column of/);
    // Partitions are due for rotation but backups are not configured: said by the plan, before any approval.
    const bare = { ...makeConfig({}), backups: undefined } as GameopsConfig;
    await expect(act('db.plan', {}, bare)).rejects.toThrow(
      'partition rotation needs backups: configured (storage and encryption): a partition is never dropped without an archive',
    );
  });

  it('adds the future partitions by reorganising pmax, keeping its rows; a second run adds nothing', async () => {
    await sql(
      `INSERT INTO game_logs (created_at, message) VALUES ('2026-12-15 10:00:00', 'future row in pmax')`,
    );
    const first = await act<{ tables: Array<{ added: string[]; existing: string[] }> }>('db.add-partitions', {
      tables: plan.addPartitions,
    });
    expect(first.tables[0]!.added).toEqual(['p_2026_11', 'p_2026_12', 'p_2027_01']);
    expect(await count('game_logs', 'p_2026_12')).toBe(1);
    const again = await act<{ tables: Array<{ added: string[]; existing: string[] }> }>('db.add-partitions', {
      tables: plan.addPartitions,
    });
    expect(again.tables[0]).toMatchObject({ added: [], existing: ['p_2026_11', 'p_2026_12', 'p_2027_01'] });
    expect((await partitions()).slice(-4)).toEqual(['p_2026_11', 'p_2026_12', 'p_2027_01', 'pmax']);
  });

  it('a partition name that does not exist is an InputError naming it; nothing is archived', async () => {
    const before = storedFiles().length;
    await expect(
      act('db.rotate-partitions', {
        partitions: [{ database: DB, table: 'game_logs', partition: 'p_2020_01' }],
      }),
    ).rejects.toThrow(/p_2020_01 is not a partition of .*game_logs/);
    // A partition within retention is refused too.
    await expect(
      act('db.rotate-partitions', {
        partitions: [{ database: DB, table: 'game_logs', partition: 'p_2026_10' }],
      }),
    ).rejects.toThrow(/p_2026_10 holds rows up to .* within the retention/);
    expect(storedFiles().length).toBe(before);
  });

  it('a flipped byte in the stored archive fails verification and the partition is NOT dropped', async () => {
    const store = await storage();
    const info = await withMysql(config.mysql!, undefined, (c) =>
      liveTable(c, { database: DB, table: 'game_logs' }, AbortSignal.timeout(30_000)),
    );
    const err = await withMysql(config.mysql!, undefined, (c: MysqlClient) =>
      rotatePartition(
        c,
        info,
        { partition: 'p_2026_07' },
        {
          storage: store,
          clock: new ManualClock(NOW),
          signal: AbortSignal.timeout(30_000),
          log: () => undefined,
          onPhase: (phase, archive) => {
            if (phase !== 'exported' || !archive) return;
            const file = join(dir, 'store', archive.key);
            const bytes = readFileSync(file);
            bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
            writeFileSync(file, bytes);
          },
        },
      ),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as Error).message).toMatch(/archive .*p_2026_07-.* failed verification/);
    expect(await partitions()).toContain('p_2026_07');
    expect(await count('game_logs', 'p_2026_07')).toBe(40);
  });

  it('a row written into the old partition while it is archived: the partition is kept with it, not dropped, and the step says so', async () => {
    const store = await storage();
    const info = await withMysql(config.mysql!, undefined, (c) =>
      liveTable(c, { database: DB, table: 'game_logs' }, AbortSignal.timeout(30_000)),
    );
    const err = await withMysql(config.mysql!, undefined, (c: MysqlClient) =>
      rotatePartition(
        c,
        info,
        { partition: 'p_2026_06' },
        {
          storage: store,
          clock: new ManualClock(NOW),
          signal: AbortSignal.timeout(30_000),
          log: () => undefined,
          onPhase: async (phase) => {
            if (phase === 'verified')
              await sql(`INSERT INTO game_logs (created_at, message) VALUES ('2026-06-20 00:00:00', 'late')`);
          },
        },
      ),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    // The 40 rows were swapped out and archived before the late row came: it alone stays.
    expect((err as Error).message).toMatch(
      /game_logs partition p_2026_06: rows were written into it after its 40 rows were moved out and archived \(.*p_2026_06-.*\): the partition is kept with the new rows, not dropped/,
    );
    expect(await count('game_logs', 'p_2026_06')).toBe(1);
    await sql(`DELETE FROM game_logs WHERE message = 'late'`);
  });

  it('a long transaction holding the table: the drop gives up within the lock wait (game queries never queue long), nothing dropped', async () => {
    const holder = await connectMysql(config.mysql!);
    try {
      await holder.query('START TRANSACTION');
      await holder.query('SELECT COUNT(*) AS n FROM game_logs');
      const info = await withMysql(config.mysql!, undefined, (c) =>
        liveTable(c, { database: DB, table: 'game_logs' }, AbortSignal.timeout(30_000)),
      );
      const err = await withMysql(config.mysql!, undefined, async (c: MysqlClient) =>
        rotatePartition(
          c,
          info,
          { partition: 'p_2026_07' },
          {
            storage: await storage(),
            clock: new ManualClock(NOW),
            signal: AbortSignal.timeout(30_000),
            log: () => undefined,
            lockWaitSeconds: 1,
          },
        ),
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConflictError);
      expect((err as Error).message).toBe(
        `${DB}.game_logs: waited 1 s for the table lock (another session holds it: a long transaction?); the statement gave up and changed nothing; run it again when the table is free`,
      );
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.close();
    }
    expect(await count('game_logs', 'p_2026_07')).toBe(40);
  });

  it('rotates: archive → verify → drop; the archive decrypts with the identity and holds every row as it was', async () => {
    const rows = await sql<{ id: number; message: string | null; amount: string; payload: string | null }>(
      'SELECT id, message, CAST(amount AS CHAR) AS amount, HEX(payload) AS payload FROM game_logs PARTITION (p_2026_05) ORDER BY id',
    );
    expect(rows).toHaveLength(40);
    const out = await act<{
      rotated: Array<{
        partition: string;
        archive: { key: string; rows: number; sha256: string; storedBytes: number };
      }>;
    }>('db.rotate-partitions', { partitions: plan.rotate });
    expect(out.rotated.map((r) => [r.partition, r.archive.rows])).toEqual([
      ['p_2026_05', 40],
      ['p_2026_06', 0],
      ['p_2026_07', 40],
    ]);
    expect(await partitions()).not.toContain('p_2026_05');
    expect(await partitions()).toContain('p_2026_08');
    // Decrypt with the identity (age library) and decompress (zstd): independent of the codec's reader.
    const archive = out.rotated[0]!.archive;
    expect(archive.key).toMatch(
      new RegExp(`^archives/test-game/test/${DB}/game_logs/p_2026_05-20261126T120000Z\\.ndjson\\.zst\\.age$`),
    );
    const decrypter = new Decrypter();
    decrypter.addIdentity(key.identity);
    const plain = zstdDecompressSync(await decrypter.decrypt(readFileSync(join(dir, 'store', archive.key))));
    const lines = plain
      .toString('utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(40);
    expect(lines.map((l) => Number(l['id']))).toEqual(rows.map((r) => Number(r.id)));
    expect(lines.map((l) => l['message'])).toEqual(rows.map((r) => r.message));
    const hex = (v: unknown): string | null =>
      v === null
        ? null
        : Buffer.from((v as { base64: string }).base64, 'base64')
            .toString('hex')
            .toUpperCase();
    expect(lines.map((l) => hex(l['payload']))).toEqual(rows.map((r) => r.payload));
    expect(lines.map((l) => l['amount'])).toEqual(rows.map((r) => r.amount));
    expect(lines.filter((l) => l['payload'] === null)).toHaveLength(14);
    const first = lines[0]!;
    expect(first['note']).toBe('café 0');
    expect(first['big']).toMatch(/^1844674407370955\d{4}$/);
    // Running the approved arguments again after the drops: every partition is gone and archived.
    const again = await act<{ rotated: Array<{ skipped?: string }> }>('db.rotate-partitions', {
      partitions: plan.rotate,
    });
    expect(again.rotated.every((r) => r.skipped === 'already archived and dropped')).toBe(true);
    const clock = new ManualClock(NOW);
    const def = catalog.action('db.rotate-partitions')!;
    const ctx = stepContext(createRunbookServices(resourcesFor(config, { clock })), { clock });
    expect(await def.verify!(def.args.parse({ partitions: plan.rotate }), ctx)).toBe('done');
  });

  it('purges exactly the old rows, in batches, with the cutoff fixed by the plan', async () => {
    const out = await act<{ rules: Array<{ table: string; rows: number; batches: number }> }>('db.purge', {
      rules: plan.purge,
    });
    expect(out.rules).toEqual([
      expect.objectContaining({ table: 'player_sessions', rows: 30, batches: 5 }),
      expect.objectContaining({ table: 'temporary_data', rows: 2, batches: 1 }),
    ]);
    expect(await count('player_sessions')).toBe(11);
    expect((await sql('SELECT k FROM temporary_data ORDER BY k')).map((r) => r['k'])).toEqual(['new-1']);
    // A cutoff later than the rule allows is refused.
    await expect(
      act('db.purge', { rules: [{ ...plan.purge[0]!, cutoff: '2026-11-25 00:00:00' }] }),
    ).rejects.toThrow(/later than the configured/);
  });

  it('purge stops between batches when aborted (what was removed stays removed)', async () => {
    await sql(
      `INSERT INTO player_sessions (player_id, last_activity) SELECT seq, '2026-01-01 00:00:00' FROM seq_1_to_50`,
    );
    const controller = new AbortController();
    const result = await withMysql(config.mysql!, undefined, (c) =>
      purgeRows(
        c,
        { ...plan.purge[0]!, batchSize: 10 },
        {
          signal: controller.signal,
          log: () => undefined,
          onBatch: () => controller.abort(new Error('operator cancelled')),
        },
      ),
    );
    expect(result).toMatchObject({ rows: 10, batches: 1, stopped: true });
    expect(await count('player_sessions')).toBe(51);
    const rest = await withMysql(config.mysql!, undefined, (c) =>
      purgeRows(
        c,
        { ...plan.purge[0]!, batchSize: 10 },
        { signal: AbortSignal.timeout(30_000), log: () => undefined },
      ),
    );
    expect(rest).toMatchObject({ rows: 40, batches: 5, stopped: false });
    expect(await count('player_sessions')).toBe(11);
  });

  it('a purge batch blocked by another transaction gives up within the lock wait, naming the table; nothing half-done', async () => {
    await sql(
      `INSERT INTO player_sessions (player_id, last_activity) SELECT seq, '2026-01-01 00:00:00' FROM seq_1_to_4`,
    );
    const holder = await connectMysql(config.mysql!);
    try {
      await holder.query('START TRANSACTION');
      await holder.query(
        "SELECT id FROM player_sessions WHERE last_activity < '2026-02-01' ORDER BY id LIMIT 1 FOR UPDATE",
      );
      const err = await withMysql(config.mysql!, undefined, (c) =>
        purgeRows(c, plan.purge[0]!, {
          signal: AbortSignal.timeout(30_000),
          log: () => undefined,
          lockWaitSeconds: 1,
        }),
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConflictError);
      expect((err as Error).message).toMatch(
        new RegExp(
          `^${DB}\\.player_sessions: a purge batch waited more than 1 s for row locks .*; 0 rows removed in 0 batch`,
        ),
      );
      expect(await count('player_sessions')).toBe(15);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.close();
    }
    const rest = await withMysql(config.mysql!, undefined, (c) =>
      purgeRows(c, plan.purge[0]!, { signal: AbortSignal.timeout(30_000), log: () => undefined }),
    );
    expect(rest.rows).toBe(4);
  });

  it('OPTIMIZE rebuilds the fragmented table (the InnoDB recreate note is logged as info) and reports bytes before/after', async () => {
    const out = await act<{
      tables: Array<{
        table: string;
        freeBefore: number;
        freeAfter: number;
        messages: Array<{ type: string; text: string }>;
      }>;
    }>('db.optimize', { tables: plan.optimize.tables });
    const t = out.tables[0]!;
    expect(t.table).toBe('fragmented');
    expect(
      t.messages.some((m) => m.type === 'note' && /doing recreate \+ analyze instead/.test(m.text)),
    ).toBe(true);
    expect(t.freeAfter).toBeLessThan(t.freeBefore);
    const analyzed = await act<{ tables: unknown[] }>('db.analyze', { tables: plan.analyze.tables });
    expect(analyzed.tables).toHaveLength(3);
    const noCache = await act<{ flushed: boolean; reason: string }>('db.query-cache', {});
    expect(noCache).toEqual({ flushed: false, reason: 'query_cache_type is OFF' });
  });

  it('with the query cache turned on, the plan flushes it and db.query-cache runs FLUSH QUERY CACHE', async () => {
    // The shared server's cache is OFF; turned on for this test only (MariaDB allows it at run time).
    await sql('SET GLOBAL query_cache_type = ON');
    try {
      const withCache = await act<DbPlan>('db.plan', {});
      expect(withCache.queryCache.flush).toBe(true);
      expect(withCache.statements).toContain('FLUSH QUERY CACHE');
      expect(withCache.statements.some((s) => /RESET QUERY CACHE/.test(s))).toBe(false);
      const out = await act<{ flushed: boolean; reason: string }>('db.query-cache', {});
      expect(out.flushed).toBe(true);
      expect(out.reason).toMatch(/^query_cache_type is ON/);
    } finally {
      await sql('SET GLOBAL query_cache_type = OFF');
    }
  });

  it('an unreachable database (closed port) and one that never answers: UnavailableError within the timeout, nothing archived', async () => {
    const before = storedFiles().length;
    const closed = makeConfig({ port: await closedPort(), connectTimeout: 1000 });
    await expect(act('db.plan', {}, closed)).rejects.toBeInstanceOf(UnavailableError);
    await expect(act('db.rotate-partitions', { partitions: plan.rotate }, closed)).rejects.toBeInstanceOf(
      UnavailableError,
    );
    const silent = await startSilentServer();
    try {
      const hung = makeConfig({ port: silent.port, connectTimeout: 1000 });
      const err = await act('db.rotate-partitions', { partitions: plan.rotate }, hung).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toMatch(new RegExp(`127.0.0.1:${silent.port}`));
      await expect(act('db.purge', { rules: plan.purge }, hung)).rejects.toBeInstanceOf(UnavailableError);
    } finally {
      await silent.stop();
    }
    expect(storedFiles().length).toBe(before);
  });

  it('refuses rotation without backups configured: never a drop without an archive', async () => {
    const noBackups = makeConfig({});
    const bare = { ...noBackups, backups: undefined } as GameopsConfig;
    await expect(act('db.rotate-partitions', { partitions: plan.rotate }, bare)).rejects.toThrow(
      /partition rotation needs backups: configured/,
    );
  });

  it('inspection reads engine, sizes, own tablespace and partitions', async () => {
    const inspection = await withMysql(config.mysql!, undefined, (c) =>
      inspectDatabase(c, DB, config.maintenance.db, {}),
    );
    const logs = inspection.named.find((t) => t.table === 'game_logs')!;
    expect(logs.partitions[0]?.method).toBe('RANGE');
    expect(logs.partitions[0]?.expression).toMatch(/to_days/i);
    expect(logs.primaryKey).toEqual(['id', 'created_at']);
    expect(inspection.tables.find((t) => t.table === 'compact')).toMatchObject({
      engine: 'InnoDB',
      ownTablespace: true,
    });
    expect(inspection.server.queryCache.present).toBe(true);
  });
});
