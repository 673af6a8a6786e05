/**
 * Partition rotation's guards on a real MariaDB (harness), with the real object pipeline on a filesystem
 * store: binary primary keys, rows changed while a partition is archived, manifests as the only proof of
 * an archive, the approval's bound and size, UTC export of TIMESTAMP values, pages bounded by bytes, and
 * the database connection dying at each point of a rotation (killed from a root connection) with the
 * re-run and `verify()` that follow.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { zstdDecompressSync } from 'node:zlib';
import { Decrypter } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupKey, type BackupKey } from '../../../test/support/backups.ts';
import { services } from '../../../test/harness/index.ts';
import { parseConfigText, readEnv, type GameopsConfig } from '../../config/index.ts';
import { connectMysql, withMysql, type MysqlClient } from '../../connectors/mysql.ts';
import { ConflictError, InputError, ManualClock, UnavailableError } from '../../core/index.ts';
import { createCatalog } from '../../runbooks/actions/index.ts';
import { createRunbookServices, resourcesFor, stepContext } from '../../runbooks/actions/test-support.ts';
import {
  rotatePartition,
  stagingTable,
  type ArchiveStorage,
  type RotateOptions,
  type RotationPhase,
  type RotationResult,
} from './archive.ts';
import { liveTable } from './execute.ts';
import { archiveStorageOf, countRows, filesUnder, partitionNames, sqlOn } from './test-support.ts';

const NOW = '2026-11-26T12:00:00Z';
const DB = `arc_${randomBytes(4).toString('hex')}`;
const catalog = createCatalog();
let dir: string;
let key: BackupKey;
let config: GameopsConfig;

const TABLES = ['bin_logs', 'bin2_logs', 'ev_logs', 'ts_logs', 'big_logs'];

function makeConfig(): GameopsConfig {
  const { mariadb } = services();
  const doc = {
    service: { name: 'test-game', environment: 'arc' },
    mysql: {
      host: mariadb.host,
      port: mariadb.port,
      user: mariadb.user,
      password: 'env:P',
      database: DB,
    },
    backups: {
      storage: { kind: 'filesystem', path: join(dir, 'store') },
      encryption: { recipients: [key.recipient], identity: `file:${join(dir, 'backup.key')}` },
    },
    maintenance: {
      db: { partitions: TABLES.map((table) => ({ table, unit: 'month', ahead: 1, retain: 3 })) },
    },
  };
  return parseConfigText(JSON.stringify(doc), 'test.yaml', readEnv({ P: mariadb.password })).config;
}

const sql = <T = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> =>
  sqlOn<T>(config, text, params);
const count = (table: string, partition?: string): Promise<number> => countRows(config, table, partition);
const partitionsOf = (table: string): Promise<string[]> => partitionNames(config, DB, table);

/** Rows of the partition's staging table, or null when it does not exist. */
async function staged(table: string, partition: string): Promise<number | null> {
  const s = stagingTable({ database: DB, table }, partition);
  const found = await sql(
    'SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?',
    [DB, s.table],
  );
  return found.length === 0 ? null : count(s.table);
}

/** Stored objects of a table's partition, relative to the store. */
function stored(table: string, partition: string): string[] {
  return filesUnder(join(dir, 'store', 'archives', 'test-game', 'arc', DB, table))
    .map((p) => relative(join(dir, 'store'), p))
    .filter((k) => k.split('/').pop()!.startsWith(`${partition}-`))
    .sort();
}

/** The archive's rows, decrypted (age library) and decompressed (zstd): independent of the codec's reader. */
async function archivedRows(archiveKey: string): Promise<Array<Record<string, unknown>>> {
  const decrypter = new Decrypter();
  decrypter.addIdentity(key.identity);
  const plain = zstdDecompressSync(await decrypter.decrypt(readFileSync(join(dir, 'store', archiveKey))));
  return plain
    .toString('utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const storage = (): Promise<ArchiveStorage> => archiveStorageOf(config, 'archives/test-game/arc');

/** rotatePartition on `client` (a fresh connection when none is given). */
async function rotate(
  table: string,
  partition: string,
  options: Partial<RotateOptions> = {},
  client?: MysqlClient,
): Promise<RotationResult> {
  const work = async (c: MysqlClient): Promise<RotationResult> => {
    const info = await liveTable(c, { database: DB, table }, AbortSignal.timeout(30_000));
    return rotatePartition(
      c,
      info,
      { partition },
      {
        storage: await storage(),
        clock: new ManualClock(NOW),
        signal: AbortSignal.timeout(30_000),
        log: () => undefined,
        ...options,
      },
    );
  };
  return client ? work(client) : withMysql(config.mysql!, undefined, work);
}

function step() {
  const clock = new ManualClock(NOW);
  return stepContext(createRunbookServices(resourcesFor(config, { clock })), { clock });
}

/** The rotate action's run and verify, as the engine calls them (arguments through its schema). */
async function act<T>(args: unknown): Promise<T> {
  const def = catalog.action('db.rotate-partitions')!;
  return (await def.run(def.args.parse(args), step())) as T;
}
async function verify(args: unknown): Promise<string> {
  const def = catalog.action('db.rotate-partitions')!;
  return def.verify!(def.args.parse(args), step());
}
const one = (table: string, partition: string, extra: Record<string, unknown> = {}) => ({
  partitions: [{ database: DB, table, partition, ...extra }],
});

/** A monthly RANGE partitioning of `created_at` from 2026-03 to 2026-11, and a MAXVALUE partition. */
function months(): string {
  const parts = [];
  for (let m = 3; m <= 11; m++)
    parts.push(
      `PARTITION p_2026_${String(m).padStart(2, '0')} VALUES LESS THAN (TO_DAYS('2026-${String(m + 1).padStart(2, '0')}-01'))`,
    );
  return `PARTITION BY RANGE (TO_DAYS(created_at)) (${parts.join(', ')}, PARTITION pmax VALUES LESS THAN MAXVALUE)`;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gameops-arc-'));
  key = await backupKey();
  writeFileSync(join(dir, 'backup.key'), `${key.identity}\n`, { mode: 0o600 });
  config = makeConfig();
  await withMysql({ ...config.mysql!, database: 'mysql' }, undefined, async (c) => {
    await c.query(`CREATE DATABASE \`${DB}\``);
  });
  // UUID-style keys: bytes that are not UTF-8 (0x80-0xff) in most of them.
  await sql(
    `CREATE TABLE bin_logs (id BINARY(16) NOT NULL, created_at DATETIME NOT NULL, msg VARCHAR(40) NULL,
       PRIMARY KEY (id, created_at)) ENGINE=InnoDB ${months()}`,
  );
  await sql(
    `INSERT INTO bin_logs SELECT UNHEX(MD5(seq)), '2026-03-01' + INTERVAL seq HOUR, CONCAT('m', seq) FROM seq_1_to_50`,
  );
  // A composite binary key whose first column repeats: paging must compare the second one byte by byte.
  await sql(
    `CREATE TABLE bin2_logs (a VARBINARY(8) NOT NULL, b BINARY(4) NOT NULL, created_at DATETIME NOT NULL,
       v INT NOT NULL, PRIMARY KEY (a, b, created_at)) ENGINE=InnoDB ${months()}`,
  );
  await sql(
    `INSERT INTO bin2_logs SELECT UNHEX(CONCAT('FF', LPAD(HEX(seq % 3), 2, '0'), '80')), UNHEX(SUBSTRING(MD5(seq), 1, 8)),
            '2026-04-01' + INTERVAL seq HOUR, seq FROM seq_1_to_60`,
  );
  await sql(
    `CREATE TABLE ev_logs (id BIGINT NOT NULL AUTO_INCREMENT, created_at DATETIME NOT NULL, msg VARCHAR(40) NOT NULL,
       PRIMARY KEY (id, created_at)) ENGINE=InnoDB ${months()}`,
  );
  // 30 rows in each of March..July.
  await sql(
    `INSERT INTO ev_logs (created_at, msg) SELECT '2026-03-01' + INTERVAL (seq DIV 30) MONTH + INTERVAL (seq % 30) HOUR,
            CONCAT('e', seq) FROM seq_0_to_149`,
  );
  await sql(
    `CREATE TABLE ts_logs (id INT NOT NULL, created_at DATETIME NOT NULL, seen TIMESTAMP NULL,
       PRIMARY KEY (id, created_at)) ENGINE=InnoDB ${months()}`,
  );
  await sql(`SET time_zone = '+00:00'`);
  await withMysql(config.mysql!, undefined, async (c) => {
    await c.query(`SET time_zone = '+00:00'`);
    await c.query(
      `INSERT INTO ts_logs VALUES (1, '2026-03-02 00:00:00', '2026-03-02 23:30:00'), (2, '2026-03-03 00:00:00', NULL)`,
    );
  });
  // Rows of about 20 KB (binary payload): 40 of them, 800 KB in all.
  await sql(
    `CREATE TABLE big_logs (id INT NOT NULL, created_at DATETIME NOT NULL, payload MEDIUMBLOB NOT NULL,
       PRIMARY KEY (id, created_at)) ENGINE=InnoDB ${months()}`,
  );
  await sql(
    `INSERT INTO big_logs SELECT seq, '2026-03-01' + INTERVAL seq HOUR, RANDOM_BYTES(1024) FROM seq_1_to_40`,
  );
  await sql(`UPDATE big_logs SET payload = CONCAT(payload, REPEAT(payload, 19))`);
}, 60_000);

afterAll(async () => {
  if (config) await sql(`DROP DATABASE IF EXISTS \`${DB}\``).catch(() => undefined);
});

describe('partition rotation guards on a real MariaDB', () => {
  it('a BINARY(16) key (UUID-style) pages by its bytes: all 50 rows archived in pages of 10, keys intact', async () => {
    const ids = (await sql<{ h: string }>('SELECT HEX(id) AS h FROM bin_logs ORDER BY id')).map((r) => r.h);
    const out = await rotate('bin_logs', 'p_2026_03', { pageRows: 10 });
    expect(out.archive.rows).toBe(50);
    expect(out.archive.pages).toBe(5);
    const rows = await archivedRows(out.archive.key);
    expect(
      rows.map((r) =>
        Buffer.from((r['id'] as { base64: string }).base64, 'base64')
          .toString('hex')
          .toUpperCase(),
      ),
    ).toEqual(ids);
    expect(await partitionsOf('bin_logs')).not.toContain('p_2026_03');
    expect(await staged('bin_logs', 'p_2026_03')).toBeNull();
  });

  it('a composite binary key whose first column repeats: every row once, in key order', async () => {
    const keys = (
      await sql<{ k: string }>(
        'SELECT CONCAT(HEX(a), ":", HEX(b)) AS k FROM bin2_logs ORDER BY a, b, created_at',
      )
    ).map((r) => r.k);
    const out = await rotate('bin2_logs', 'p_2026_04', { pageRows: 7 });
    expect(out.archive.rows).toBe(60);
    const hex = (v: unknown) =>
      Buffer.from((v as { base64: string }).base64, 'base64')
        .toString('hex')
        .toUpperCase();
    expect((await archivedRows(out.archive.key)).map((r) => `${hex(r['a'])}:${hex(r['b'])}`)).toEqual(keys);
  });

  it('a row updated while its partition is archived: the update finds nothing (the rows are out of the table first), the archive holds the last version', async () => {
    let updated = -1;
    const out = await rotate('ev_logs', 'p_2026_03', {
      onPhase: async (phase: RotationPhase) => {
        if (phase !== 'verified') return;
        const res = (await sql(`UPDATE ev_logs SET msg = 'changed' WHERE msg = 'e5'`)) as unknown as {
          affectedRows: number;
        };
        updated = res.affectedRows;
      },
    });
    expect(out.archive.rows).toBe(30);
    const e5 = (await archivedRows(out.archive.key)).find((r) => r['msg'] === 'e5' || r['msg'] === 'changed');
    // Whatever the game did, the archive holds the row as it was last in the table before it went.
    expect(e5?.['msg']).toBe(updated === 1 ? 'changed' : 'e5');
    expect(updated).toBe(0);
    expect(await partitionsOf('ev_logs')).not.toContain('p_2026_03');
  });

  it('an archive that fails verification is deleted and the rows swapped back; a partition later gone without a manifest is not "archived": run refuses, verify() unknown', async () => {
    const err = await rotate('ev_logs', 'p_2026_04', {
      onPhase: (phase, archive) => {
        if (phase !== 'exported' || !archive) return;
        const file = join(dir, 'store', archive.key);
        const bytes = readFileSync(file);
        bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
        writeFileSync(file, bytes);
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as Error).message).toMatch(
      /archive .*p_2026_04-.* failed verification.*; the archive .* is deleted; the rows are back in .*ev_logs partition p_2026_04, nothing was dropped/,
    );
    expect(stored('ev_logs', 'p_2026_04')).toEqual([]);
    expect(await count('ev_logs', 'p_2026_04')).toBe(30);
    expect(await staged('ev_logs', 'p_2026_04')).toBeNull();
    expect(await verify(one('ev_logs', 'p_2026_04'))).toBe('not-done');
    // Dropped by someone else: no verified archive of it exists.
    await sql('ALTER TABLE ev_logs DROP PARTITION p_2026_04');
    await expect(act(one('ev_logs', 'p_2026_04'))).rejects.toThrow(
      new InputError(
        `p_2026_04 is not a partition of ${DB}.ev_logs (it has ${(await partitionsOf('ev_logs')).join(', ')}) and has no verified archive (no manifest): not rotated`,
      ),
    );
    expect(await verify(one('ev_logs', 'p_2026_04'))).toBe('unknown');
    // The partition rotated in the test before: gone, with its manifest.
    expect(await verify(one('ev_logs', 'p_2026_03'))).toBe('done');
    expect(stored('ev_logs', 'p_2026_03')).toEqual([
      'archives/test-game/arc/' + `${DB}/ev_logs/p_2026_03-20261126T120000Z.manifest.json`,
      'archives/test-game/arc/' + `${DB}/ev_logs/p_2026_03-20261126T120000Z.ndjson.zst.age`,
    ]);
  });

  it('the approval binds the bound and the size: a partition whose bound or rows differ is not rotated, naming both', async () => {
    const bound = (
      await sql<{ d: string }>(
        "SELECT PARTITION_DESCRIPTION AS d FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'ev_logs' AND PARTITION_NAME = 'p_2026_05'",
        [DB],
      )
    )[0]!.d;
    await expect(act(one('ev_logs', 'p_2026_05', { lessThan: '739999', rows: 30 }))).rejects.toThrow(
      `${DB}.ev_logs partition p_2026_05 is now VALUES LESS THAN (${bound}), the approval was for (739999): not rotated; plan again`,
    );
    await sql(
      `INSERT INTO ev_logs (created_at, msg) SELECT '2026-05-10' + INTERVAL seq MINUTE, 'burst' FROM seq_1_to_1100`,
    );
    const err = await act(one('ev_logs', 'p_2026_05', { lessThan: bound, rows: 30 })).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as Error).message).toBe(
      `${DB}.ev_logs partition p_2026_05 holds 1130 rows, far more than the ≈30 approved (at most 1060 accepted): not rotated; plan again`,
    );
    expect(await count('ev_logs', 'p_2026_05')).toBe(1130);
    expect(stored('ev_logs', 'p_2026_05')).toEqual([]);
    expect(await staged('ev_logs', 'p_2026_05')).toBeNull();
    await sql(`DELETE FROM ev_logs WHERE msg = 'burst'`);
  });

  it('TIMESTAMP values are archived in UTC whatever the session zone, and the manifest says so', async () => {
    const out = await withMysql(config.mysql!, undefined, async (c) => {
      await c.query(`SET time_zone = '+05:00'`);
      return rotate('ts_logs', 'p_2026_03', {}, c);
    });
    const rows = await archivedRows(out.archive.key);
    expect(rows.map((r) => r['seen'])).toEqual(['2026-03-02 23:30:00', null]);
    const manifest = JSON.parse(
      readFileSync(
        join(dir, 'store', out.archive.key.replace(/\.ndjson\.zst\.age$/, '.manifest.json')),
        'utf8',
      ),
    ) as Record<string, unknown>;
    expect(manifest).toMatchObject({
      format: 'gameops-partition-archive/1',
      database: DB,
      table: 'ts_logs',
      partition: 'p_2026_03',
      rows: 2,
      timeZone: '+00:00',
      key: out.archive.key,
      sha256: out.archive.sha256,
      checksum: out.archive.checksum,
    });
  });

  it('pages are bounded by bytes: 20 KB rows in 64 KiB pages (figures printed)', async () => {
    const out = await rotate('big_logs', 'p_2026_03', { pageBytes: 64 * 1024 });
    console.log(
      `big_logs: ${out.archive.rows} rows, ${out.archive.plainBytes} bytes plain, ${out.archive.pages} pages, largest ${out.archive.largestPageBytes} bytes`,
    );
    expect(out.archive.rows).toBe(40);
    expect(out.archive.largestPageBytes).toBeLessThanOrEqual(64 * 1024);
    expect(out.archive.pages).toBeGreaterThanOrEqual(Math.ceil(out.archive.plainBytes / (64 * 1024)));
  });

  it('a staging table left by CREATE TABLE … LIKE alone (stopped before its next statement) is dropped and the rotation goes on; a table of that name holding other rows is never touched', async () => {
    const s = stagingTable({ database: DB, table: 'bin2_logs' }, 'p_2026_05');
    await sql(`CREATE TABLE \`${s.table}\` LIKE bin2_logs`);
    await sql(`INSERT INTO bin2_logs VALUES (x'01', x'02030405', '2026-05-02 00:00:00', 7)`);
    const out = await rotate('bin2_logs', 'p_2026_05');
    expect(out.archive.rows).toBe(1);
    expect(await staged('bin2_logs', 'p_2026_05')).toBeNull();
    const t = stagingTable({ database: DB, table: 'bin2_logs' }, 'p_2026_06');
    await sql(`CREATE TABLE \`${t.table}\` (id INT PRIMARY KEY)`);
    await sql(`INSERT INTO \`${t.table}\` VALUES (1)`);
    await expect(rotate('bin2_logs', 'p_2026_06')).rejects.toThrow(
      `${DB}.${t.table} exists but is not gameops's staging table for ${DB}.bin2_logs partition p_2026_06 (its comment differs): rename it; the partition is not rotated`,
    );
    expect(await count(t.table)).toBe(1);
    expect(await partitionsOf('bin2_logs')).toContain('p_2026_06');
  });

  describe('the database connection dies in the middle of a rotation (KILL from a root connection)', () => {
    /** Rotates ev_logs `partition` on its own connection, killed after `phase`; the error. */
    async function killedAt(partition: string, phase: RotationPhase): Promise<unknown> {
      const client = await connectMysql(config.mysql!);
      try {
        return await rotate(
          'ev_logs',
          partition,
          {
            onPhase: async (p) => {
              if (p === phase) await sql('KILL CONNECTION ?', [client.threadId]);
            },
          },
          client,
        ).then(
          () => undefined,
          (e: unknown) => e,
        );
      } finally {
        await client.close();
      }
    }
    const ids = async (partition: string) =>
      (await sql<{ msg: string }>(`SELECT msg FROM ev_logs PARTITION (${partition}) ORDER BY id`)).map(
        (r) => r.msg,
      );

    it('after the rows were swapped out: the step fails, the rows wait in the staging table, verify() not-done, a re-run archives and drops', async () => {
      const before = await ids('p_2026_05');
      expect(before).toHaveLength(30);
      const err = await killedAt('p_2026_05', 'exchanged');
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toMatch(
        /the rows wait in the staging table .*gameops_rot_p_2026_05_.*: run the step again/,
      );
      expect(await staged('ev_logs', 'p_2026_05')).toBe(30);
      expect(await count('ev_logs', 'p_2026_05')).toBe(0);
      expect(stored('ev_logs', 'p_2026_05')).toEqual([]);
      expect(await verify(one('ev_logs', 'p_2026_05'))).toBe('not-done');
      const out = await act<{ rotated: RotationResult[] }>(one('ev_logs', 'p_2026_05'));
      expect(out.rotated[0]).toMatchObject({ partition: 'p_2026_05', resumed: false, archive: { rows: 30 } });
      expect((await archivedRows(out.rotated[0]!.archive.key)).map((r) => r['msg'])).toEqual(before);
      expect(await staged('ev_logs', 'p_2026_05')).toBeNull();
      expect(await verify(one('ev_logs', 'p_2026_05'))).toBe('done');
    });

    it('after the archive was verified, before the drop: the re-run uses the manifest (no second export) and drops', async () => {
      const err = await killedAt('p_2026_06', 'verified');
      expect(err).toBeInstanceOf(UnavailableError);
      expect(await partitionsOf('ev_logs')).toContain('p_2026_06');
      expect(await staged('ev_logs', 'p_2026_06')).toBe(30);
      expect(await verify(one('ev_logs', 'p_2026_06'))).toBe('not-done');
      const out = await act<{ rotated: RotationResult[] }>(one('ev_logs', 'p_2026_06'));
      expect(out.rotated[0]).toMatchObject({ resumed: true, archive: { rows: 30 } });
      expect(stored('ev_logs', 'p_2026_06')).toHaveLength(2);
      expect(await partitionsOf('ev_logs')).not.toContain('p_2026_06');
      expect(await verify(one('ev_logs', 'p_2026_06'))).toBe('done');
    });

    it('after the partition was dropped, before the staging table: verify() not-done, the re-run drops the staging table', async () => {
      const err = await killedAt('p_2026_07', 'partition-dropped');
      expect(err).toBeInstanceOf(UnavailableError);
      expect(await partitionsOf('ev_logs')).not.toContain('p_2026_07');
      expect(await staged('ev_logs', 'p_2026_07')).toBe(30);
      expect(await verify(one('ev_logs', 'p_2026_07'))).toBe('not-done');
      const out = await act<{ rotated: RotationResult[] }>(one('ev_logs', 'p_2026_07'));
      expect(out.rotated[0]).toMatchObject({ resumed: true, archive: { rows: 30 } });
      expect(await staged('ev_logs', 'p_2026_07')).toBeNull();
      expect(await verify(one('ev_logs', 'p_2026_07'))).toBe('done');
      // Run again: nothing left to do.
      const again = await act<{ rotated: Array<{ skipped?: string }> }>(one('ev_logs', 'p_2026_07'));
      expect(again.rotated[0]!.skipped).toBe('already archived and dropped');
    });
  });
});
