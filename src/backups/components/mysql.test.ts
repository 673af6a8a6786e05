import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDB, type MariaDBHandle } from '../../../test/harness/index.ts';
import { testConfig } from '../../checks/test-support.ts';
import type { MysqlConfig } from '../../config/index.ts';
import { connectMysql, withMysql, type MysqlClient } from '../../connectors/mysql.ts';
import { sleep, UnavailableError } from '../../core/index.ts';
import type { ComponentBackup, ManifestComponent } from '../types.ts';
import {
  backupMysql,
  checksumQuery,
  compareMysql,
  drillMysql,
  dumpArgs,
  floatSumsAgree,
  loadArgs,
  loaderMessage,
  restoreMysql,
  scratchDatabaseName,
  type MysqlVerification,
} from './mysql.ts';
import { TestObjectStore } from './test-support.ts';

const PLAYERS = 120_000;
const LOGS = 200_000;
const SPECIAL_PASSWORD = `p a"s's#w\\d;--x`;

let server: MariaDBHandle;
let root: MysqlConfig;

function config(user: string, password: string): MysqlConfig {
  const mysql = testConfig({
    mysql: { host: server.host, port: server.port, user, password, database: 'gamedb' },
  }).mysql;
  if (!mysql) throw new Error('no mysql config');
  return mysql;
}

async function exec(client: MysqlClient, statements: string[]): Promise<void> {
  for (const sql of statements) await client.query(sql, [], { timeoutMs: 300_000 });
}

/** A game database: FLOAT/DOUBLE/DECIMAL, BLOB/BINARY, emoji, NULLs, quotes and newlines, a partitioned log. */
async function createGameDb(client: MysqlClient, db: string, players: number, logs: number): Promise<void> {
  const q = `\`${db}\``;
  await exec(client, [
    `DROP DATABASE IF EXISTS ${q}`,
    `CREATE DATABASE ${q} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`,
    `USE ${q}`,
    `CREATE TABLE ${q}.guilds (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL) ENGINE=InnoDB`,
    `CREATE TABLE ${q}.players (
       id INT PRIMARY KEY AUTO_INCREMENT, guild_id INT NULL, name VARCHAR(100) NOT NULL, bio TEXT,
       score DOUBLE, rating FLOAT, balance DECIMAL(14,4), avatar BLOB, token BINARY(16),
       created DATETIME(3), seen TIMESTAMP NULL DEFAULT NULL, flags BIT(8), state ENUM('on','off'),
       FOREIGN KEY (guild_id) REFERENCES guilds (id)) ENGINE=InnoDB`,
    `CREATE TABLE ${q}.inventory (player_id INT NOT NULL, item INT NOT NULL, qty INT NOT NULL,
       PRIMARY KEY (player_id, item), FOREIGN KEY (player_id) REFERENCES players (id) ON DELETE CASCADE) ENGINE=InnoDB`,
    `CREATE TABLE ${q}.game_logs (id BIGINT NOT NULL AUTO_INCREMENT, at DATETIME NOT NULL, player_id INT,
       event VARCHAR(32) NOT NULL, payload JSON, PRIMARY KEY (id, at)) ENGINE=InnoDB
       PARTITION BY RANGE (YEAR(at)) (PARTITION p2025 VALUES LESS THAN (2026),
       PARTITION p2026 VALUES LESS THAN (2027), PARTITION pmax VALUES LESS THAN MAXVALUE)`,
    `CREATE TABLE ${q}.\`odd%name-1\` (x INT) ENGINE=InnoDB`,
    `INSERT INTO ${q}.guilds SELECT seq, CONCAT('guild ', seq) FROM seq_1_to_50`,
    // Special values first, so they are easy to find.
    `INSERT INTO ${q}.players (guild_id, name, bio, score, rating, balance, avatar, token, created, seen, flags, state) VALUES
       (1, 'émoji 🎮🐉', 'line1\nline2 "dq" ''sq'' \\\\ back; -- not a comment\r\n\ttab', 0.1, 0.1, 12345678.1234,
        X'00FF0A0D5C27223B', X'000102030405060708090A0B0C0D0E0F', '2026-01-02 03:04:05.678', '2026-06-01 12:00:00', b'10100101', 'on'),
       (NULL, 'nulls', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
       (2, 'float changes', '', 1.0000000000000002, 123456.789, -0.0001, '', X'FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF', '1970-01-01 00:00:01', NULL, b'0', 'off')`,
    `INSERT INTO ${q}.players (guild_id, name, bio, score, rating, balance, avatar, token, created, seen, flags, state)
       SELECT IF(seq % 7 = 0, NULL, seq % 50 + 1), CONCAT('player_', seq, IF(seq % 11 = 0, ' 🎮', '')),
              IF(seq % 5 = 0, NULL, REPEAT(CONCAT('bio ', seq, ' line\n "quoted" ''single'' \\\\ back;'), 3)),
              seq * 1.000000001 / 7, seq / 3.3, seq * 0.0001, IF(seq % 3 = 0, NULL, UNHEX(SHA2(seq, 256))),
              UNHEX(MD5(seq)), '2026-01-01' + INTERVAL seq SECOND,
              IF(seq % 4 = 0, NULL, '2026-03-01' + INTERVAL seq MINUTE), seq % 256, IF(seq % 2, 'on', 'off')
         FROM seq_1_to_${players}`,
    `INSERT INTO ${q}.inventory SELECT p.id, s.seq, s.seq * 3 FROM ${q}.players p JOIN seq_1_to_3 s WHERE p.id % 10 = 0`,
    `INSERT INTO ${q}.game_logs (at, player_id, event, payload)
       SELECT '2025-06-01' + INTERVAL (seq * 7) MINUTE, seq % ${players} + 1, ELT(seq % 3 + 1, 'login', 'match', 'purchase'),
              JSON_OBJECT('n', seq, 'tag', CONCAT('t', seq % 13))
         FROM seq_1_to_${logs}`,
    `CREATE TRIGGER ${q}.players_joined AFTER INSERT ON ${q}.players FOR EACH ROW
       INSERT INTO game_logs (at, player_id, event) VALUES (NOW(), NEW.id, 'joined')`,
    `CREATE PROCEDURE ${q}.player_count() SELECT COUNT(*) FROM ${q}.\`players\``,
    `CREATE FUNCTION ${q}.guild_size(g INT) RETURNS INT READS SQL DATA RETURN (SELECT COUNT(*) FROM ${q}.players WHERE guild_id = g)`,
    `CREATE EVENT ${q}.prune_logs ON SCHEDULE EVERY 1 DAY DO DELETE FROM game_logs WHERE at < NOW() - INTERVAL 90 DAY`,
    `CREATE VIEW ${q}.top_players AS SELECT id, name, score FROM ${q}.players ORDER BY score DESC LIMIT 10`,
  ]);
}

async function backup(
  store: TestObjectStore,
  source: Partial<Parameters<typeof backupMysql>[0]> = {},
  extra: { signal?: AbortSignal } = {},
): Promise<ManifestComponent> {
  const startedAt = new Date().toISOString();
  const tmp = await store.tempDir();
  const result: ComponentBackup = await backupMysql(
    { mysql: root, databases: ['gamedb'], chunkBytes: 1024 * 1024, lockWaitTimeoutMs: 10_000, ...source },
    store.writeContext(tmp, extra),
  );
  return {
    kind: 'mysql',
    startedAt,
    completedAt: new Date().toISOString(),
    objects: [...store.records],
    ...result,
  };
}

async function databases(client: MysqlClient, like: string): Promise<string[]> {
  const rows = await client.query(
    'SELECT SCHEMA_NAME AS s FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?',
    [like],
  );
  return rows.map((r) => String(r['s']));
}

/** Every process whose argv holds `needle`, polled until `until` settles. */
function watchArgv(needle: string, until: Promise<unknown>): Promise<{ hits: string[]; seen: string[][] }> {
  const hits: string[] = [];
  const seen: string[][] = [];
  let done = false;
  until.finally(() => (done = true)).catch(() => undefined);
  return (async () => {
    while (!done) {
      for (const pid of await fsp.readdir('/proc').catch(() => [])) {
        if (!/^\d+$/.test(pid)) continue;
        const raw = await fsp.readFile(`/proc/${pid}/cmdline`).catch(() => undefined);
        if (!raw || raw.length === 0) continue;
        const argv = raw.toString('utf8').split('\0').filter(Boolean);
        if (argv.join(' ').includes(needle)) hits.push(argv.join(' '));
        const exe = path.basename(argv[0] ?? '');
        if (['mariadb-dump', 'mysqldump', 'mariadb', 'mysql'].includes(exe)) seen.push(argv);
      }
      await sleep(5);
    }
    return { hits, seen };
  })();
}

beforeAll(async () => {
  server = await startMariaDB({
    extraArgs: ['--log-bin=binlog', '--server-id=1', '--max-allowed-packet=64M'],
  });
  root = config('root', server.password);
  await withMysql(root, undefined, async (client) => {
    await createGameDb(client, 'gamedb', PLAYERS, LOGS);
    const user = `'gameops_backup'@'%'`;
    await exec(client, [
      `CREATE USER ${user} IDENTIFIED BY '${SPECIAL_PASSWORD.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`,
      `GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD, PROCESS, BINLOG MONITOR ON *.* TO ${user}`,
      // Restoring triggers and routines with their DEFINER, with binary logging on, needs these.
      `GRANT SUPER, SET USER ON *.* TO ${user}`,
      `GRANT ALL ON \`gameops\\_drill\\_%\`.* TO ${user}`,
    ]);
  });
}, 600_000);

afterAll(async () => {
  await server?.stop();
});

describe('MySQL backup component (own MariaDB with binlog)', () => {
  let store: TestObjectStore;
  let component: ManifestComponent;
  let backupMs = 0;

  beforeAll(async () => {
    store = await TestObjectStore.create();
    const started = Date.now();
    component = await backup(store);
    backupMs = Date.now() - started;
  }, 300_000);

  afterAll(async () => {
    await store?.cleanup();
  });

  it('splits the dump into objects and records counts, checksums, tool and binlog position', async () => {
    expect(component.tool.name).toMatch(/^(mariadb-dump|mysqldump)$/);
    expect(component.tool.version).toMatch(/Distrib 10\.11/);
    expect(component.source['binlogFile']).toMatch(/^binlog\.\d+$/);
    expect(component.source['binlogPosition']).toBeGreaterThan(0);
    const names = component.objects.map((o) => o.name);
    expect(names).toContain('00-preamble.sql');
    expect(names).toContain('databases/gamedb.sql');
    expect(names).toContain('tables/gamedb/odd-25name-2d1/schema.sql');
    expect(names).toContain('tables/gamedb/players/post.sql');
    expect(names).toContain('zz-tail.sql');
    expect(names.filter((n) => n.startsWith('tables/gamedb/players/data-')).length).toBeGreaterThan(10);
    expect(names.filter((n) => n.startsWith('tables/gamedb/game_logs/data-')).length).toBeGreaterThan(3);
    // Cut at the first statement end past chunkBytes; one statement is at most --net-buffer-length (1 MiB).
    for (const record of component.objects) expect(record.plainSize).toBeLessThan(2.1 * 1024 * 1024);
    const v = component.verification as MysqlVerification;
    const gamedb = v.databases['gamedb'];
    expect(gamedb?.tables['players']?.rows).toBe(PLAYERS + 3);
    expect(gamedb?.tables['game_logs']?.rows).toBe(LOGS);
    expect(gamedb?.tables['players']?.columnsLeftOut).toEqual(['rating']);
    expect(gamedb?.tables['players']?.checksum).toMatch(/^\d{10,}$/);
    // MariaDB 10.8+ has CRC32C: the cheaper row hash.
    expect(v.rowHash).toBe('crc32+crc32c');
    expect(gamedb?.tables['top_players']).toBeUndefined();
    expect(gamedb).toMatchObject({ routines: 2, triggers: 1, events: 1, views: 1 });
    expect(v.objects.total).toBe(component.objects.length);
    expect(component.notes.join('\n')).toMatch(/FLOAT[\s\S]*tolerance[\s\S]*gamedb\.players\.rating/);
    expect(component.notes.join('\n')).toMatch(/global read lock .* held for \d+ ms/);
    const post = (await store.bytes('tables/gamedb/players/post.sql')).toString();
    expect(post).toContain('TRIGGER');
    expect(store.open.size).toBe(0);
  });

  it('drills: restores into scratch databases, every check ok, scratch databases dropped', async () => {
    const tmp = await store.tempDir();
    const drill = await drillMysql(component, root, store.readContext(tmp), { parallel: 2 });
    const failed = drill.checks.filter((c) => !c.ok);
    expect(failed).toEqual([]);
    expect(drill.ok).toBe(true);
    expect(drill.component).toBe('mysql');
    expect(drill.bytes).toBeGreaterThan(45 * 1024 * 1024);
    const subjects = drill.checks.map((c) => c.subject);
    expect(subjects).toEqual(
      expect.arrayContaining([
        'gamedb.players rows',
        'gamedb.players checksum',
        'gamedb.players.rating sum (FLOAT)',
        'gamedb.game_logs checksum',
        'gamedb routines',
        'gamedb triggers',
        'gamedb events',
        'gamedb views',
      ]),
    );
    expect(drill.checks.find((c) => c.subject === 'gamedb.players checksum')?.note).toMatch(/rating/);
    expect(drill.notes.join('\n')).toMatch(/FLOAT/);
    await withMysql(root, undefined, async (client) => {
      expect(await databases(client, 'gameops\\_drill\\_%')).toEqual([]);
    });
  }, 300_000);

  it('restores into another database name, compares, and tells a FLOAT rounding from a real change', async () => {
    const tmp = await store.tempDir();
    const started = Date.now();
    const restored = await restoreMysql(
      component,
      { mysql: root, databases: { gamedb: 'gamedb_copy' }, parallel: 2 },
      store.readContext(tmp),
    );
    const restoreMs = Date.now() - started;
    const mb = component.objects.reduce((n, o) => n + o.plainSize, 0) / 1024 / 1024;
    console.log(
      `[figure] ${mb.toFixed(1)} MB dump (${PLAYERS + 3} players, ${LOGS} logs): backup ${backupMs} ms, restore ${restoreMs} ms (parallel 2); ${component.notes.find((n) => n.includes('read lock')) ?? ''}`,
    );
    expect(restored.tables).toBe(5);
    const target = { mysql: root, databases: { gamedb: 'gamedb_copy' } };
    const checks = await compareMysql(component, target, new AbortController().signal);
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    await withMysql(root, undefined, async (client) => {
      // The FLOAT did change in the dump (6 significant digits), yet the comparison passed.
      const stored = "SELECT CAST(rating AS DOUBLE) AS r FROM %s.players WHERE name = 'float changes'";
      const [copy] = await client.query(stored.replace('%s', 'gamedb_copy'));
      const [source] = await client.query(stored.replace('%s', 'gamedb'));
      expect(Number(copy?.['r'])).toBe(123457);
      expect(Number(source?.['r'])).toBe(123456.7890625);
      // Routines, triggers and views point at the copy; the copy's data is byte-identical.
      const [body] = await client.query(
        "SELECT ROUTINE_DEFINITION AS d FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'gamedb_copy' AND ROUTINE_NAME = 'player_count'",
      );
      expect(String(body?.['d'])).toContain('`gamedb_copy`.`players`');
      const [special] = await client.query(
        'SELECT HEX(bio) AS bio, HEX(avatar) AS avatar, name FROM gamedb_copy.players WHERE id = 1',
      );
      const [original] = await client.query(
        'SELECT HEX(bio) AS bio, HEX(avatar) AS avatar, name FROM gamedb.players WHERE id = 1',
      );
      expect(special).toEqual(original);
      expect(special?.['name']).toBe('émoji 🎮🐉');

      // A real change of a FLOAT beyond the tolerance fails its sum; a DOUBLE change fails the checksum.
      await client.query(
        "UPDATE gamedb_copy.players SET rating = rating + 1000 WHERE name = 'float changes'",
      );
      await client.query('UPDATE gamedb_copy.players SET score = score + 1e-9 WHERE id = 2000');
      // +1000 on one of 120k ratings hides inside the sum's tolerance; the printed-form checksum sees it.
      const after = await compareMysql(component, target, new AbortController().signal);
      const bad = after.filter((c) => !c.ok).map((c) => c.subject);
      expect(bad.sort()).toEqual(['gamedb.players FLOAT checksum', 'gamedb.players checksum']);
      await client.query("UPDATE gamedb_copy.players SET rating = rating + 1e7 WHERE name = 'float changes'");
      const worse = await compareMysql(component, target, new AbortController().signal);
      expect(
        worse
          .filter((c) => !c.ok)
          .map((c) => c.subject)
          .sort(),
      ).toEqual([
        'gamedb.players FLOAT checksum',
        'gamedb.players checksum',
        'gamedb.players.rating sum (FLOAT)',
      ]);
      await client.query('DROP DATABASE gamedb_copy');
    });
    expect(floatSumsAgree({ sum: 100, absSum: 100 }, { sum: 100.0009, absSum: 100.0009 })).toBe(true);
    expect(floatSumsAgree({ sum: 100, absSum: 100 }, { sum: 100.01, absSum: 100.01 })).toBe(false);
  }, 300_000);

  it('a restore names the object whose bytes are corrupt, and refuses an unmapped database', async () => {
    const name = 'tables/gamedb/players/data-0003.sql';
    const file = store.file(name);
    const tmp = await store.tempDir();
    const original = await fsp.readFile(file);
    const corrupt = Buffer.from(original);
    const at = corrupt.indexOf("'player_");
    corrupt[at + 1] = 'P'.charCodeAt(0); // still valid SQL: only the hash can tell
    await fsp.writeFile(file, corrupt);
    try {
      const err = await restoreMysql(
        component,
        { mysql: root, databases: { gamedb: 'gamedb_corrupt' }, parallel: 2 },
        store.readContext(tmp),
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toContain(name);
      expect((err as Error).message).toMatch(/SHA-256/);
      expect((err as Error).message).toMatch(/gamedb_corrupt are partially restored/);
      // Every other loader was stopped before the restore reported.
      const loaders: string[] = [];
      for (const pid of await fsp.readdir('/proc')) {
        if (!/^\d+$/.test(pid)) continue;
        const raw = await fsp.readFile(`/proc/${pid}/cmdline`).catch(() => undefined);
        if (raw?.toString('utf8').includes(tmp)) loaders.push(raw.toString('utf8'));
      }
      expect(loaders).toEqual([]);
    } finally {
      await fsp.writeFile(file, original);
      await withMysql(root, undefined, (client) => client.query('DROP DATABASE IF EXISTS gamedb_corrupt'));
    }
    await expect(
      restoreMysql(
        component,
        { mysql: root, databases: {}, parallel: 1 },
        store.readContext(await store.tempDir()),
      ),
    ).rejects.toThrow(/maps no database for gamedb/);
  }, 300_000);
});

describe('MySQL backup consistency and failures', () => {
  it('writes committed while the backup runs do not make counts and the dump disagree', async () => {
    const store = await TestObjectStore.create();
    const writer = await connectMysql(root);
    let inserted = 0;
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        await writer.query(
          'INSERT INTO gamedb.inventory (player_id, item, qty) VALUES (?, ?, 1) ON DUPLICATE KEY UPDATE qty = qty + 1',
          [1 + (inserted % 1000), 1000 + inserted],
        );
        await writer.query('INSERT INTO gamedb.players (name, rating) VALUES (?, 0.5)', [`live ${inserted}`]);
        inserted += 1;
      }
    })();
    try {
      await sleep(200);
      const before = inserted;
      const component = await backup(store);
      const during = inserted - before;
      expect(during).toBeGreaterThan(5);
      stop = true;
      await loop;
      const drill = await drillMysql(component, root, store.readContext(await store.tempDir()));
      expect(drill.checks.filter((c) => !c.ok)).toEqual([]);
      const rows =
        (component.verification as MysqlVerification).databases['gamedb']?.tables['players']?.rows ?? 0;
      expect(rows).toBeGreaterThan(PLAYERS + 3);
    } finally {
      stop = true;
      await loop.catch(() => undefined);
      await writer.close();
      await store.cleanup();
    }
  }, 300_000);

  it('a password with spaces, quotes, # and backslashes works and never reaches argv or errors', async () => {
    const store = await TestObjectStore.create();
    const mysql = config('gameops_backup', SPECIAL_PASSWORD);
    try {
      const tmp = await store.tempDir();
      const running = backupMysql(
        { mysql, databases: ['gamedb'], chunkBytes: 4 * 1024 * 1024, lockWaitTimeoutMs: 10_000 },
        store.writeContext(tmp),
      );
      const watching = watchArgv('s#w', running);
      const result = await running;
      const { hits, seen } = await watching;
      expect(hits).toEqual([]);
      const dumps = seen.filter((argv) => /dump$/.test(argv[0] ?? ''));
      expect(dumps.length).toBeGreaterThan(0);
      for (const argv of dumps) expect(argv[1]).toMatch(/^--defaults-file=.*\.cnf$/);
      expect(result.tool.name).toMatch(/dump/);
      // The defaults file is gone afterwards.
      expect(fs.readdirSync(tmp)).toEqual([]);

      const component: ManifestComponent = {
        kind: 'mysql',
        startedAt: '',
        completedAt: '',
        objects: [...store.records],
        ...result,
      };
      const drilling = drillMysql(component, mysql, store.readContext(await store.tempDir()), {
        parallel: 3,
      });
      const loaders = watchArgv('s#w', drilling);
      const drill = await drilling;
      expect(drill.ok).toBe(true);
      expect((await loaders).hits).toEqual([]);
      expect((await loaders).seen.filter((a) => /mariadb$|mysql$/.test(a[0] ?? '')).length).toBeGreaterThan(
        0,
      );

      // A failing dump (unknown database) names the server and the tool, never the password.
      const err = await backupMysql(
        { mysql, databases: ['no_such_db'], chunkBytes: 1024 * 1024, lockWaitTimeoutMs: 10_000 },
        store.writeContext(await store.tempDir()),
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toMatch(new RegExp(`127\\.0\\.0\\.1:${server.port}.*no_such_db`, 's'));
      expect((err as Error).message).not.toContain(SPECIAL_PASSWORD);
    } finally {
      await store.cleanup();
    }
    expect(dumpArgs('/t/x.cnf', ['a'])[0]).toBe('--defaults-file=/t/x.cnf');
    expect(loadArgs('/t/x.cnf')[0]).toBe('--defaults-file=/t/x.cnf');
  }, 300_000);

  it("ignores the user's ~/.my.cnf (another host, skip-comments): the dump is still of the configured server", async () => {
    const home = await fsp.mkdtemp(path.join(os.tmpdir(), 'gameops-home-'));
    await fsp.writeFile(
      path.join(home, '.my.cnf'),
      '[client]\nhost=203.0.113.1\nuser=nobody\npassword=wrong\n[mysqldump]\nskip-comments\ncompact\n',
    );
    const saved = process.env['HOME'];
    process.env['HOME'] = home;
    const store = await TestObjectStore.create();
    try {
      const result = await backup(store);
      const names = result.objects.map((o) => o.name);
      expect(names).toContain('databases/gamedb.sql');
      expect(names).toContain('tables/gamedb/players/schema.sql');
      expect(names.filter((n) => n.startsWith('tables/gamedb/players/data-')).length).toBeGreaterThan(0);
    } finally {
      process.env['HOME'] = saved;
      await store.cleanup();
      await fsp.rm(home, { recursive: true, force: true });
    }
  }, 300_000);

  it('refuses a row the server could not load back (larger than max_allowed_packet), naming the table', async () => {
    await withMysql(root, undefined, (client) =>
      exec(client, [
        'DROP DATABASE IF EXISTS bigrow',
        'CREATE DATABASE bigrow',
        'CREATE TABLE bigrow.saves (id INT PRIMARY KEY, data LONGBLOB)',
        "INSERT INTO bigrow.saves VALUES (1, REPEAT('x', 700000))",
        'SET GLOBAL max_allowed_packet = 1048576',
      ]),
    );
    const store = await TestObjectStore.create();
    try {
      const err = await backup(store, { databases: ['bigrow'] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toMatch(/bigrow\.saves exceeds 1048576 bytes.*max_allowed_packet/);
      expect(store.open.size).toBe(0);
      expect(store.records.map((r) => r.name)).not.toContain('tables/bigrow/saves/data-0001.sql');
    } finally {
      await withMysql(root, undefined, (client) =>
        exec(client, ['SET GLOBAL max_allowed_packet = 67108864', 'DROP DATABASE IF EXISTS bigrow']),
      );
      await store.cleanup();
    }
  }, 300_000);

  it('stops a dump that writes nothing for stallTimeoutMs (the server stopped answering)', async () => {
    const store = await TestObjectStore.create();
    let stopped = false;
    try {
      const running = backup(store, { chunkBytes: 1024 * 1024, stallTimeoutMs: 3000 });
      running.catch(() => undefined);
      while (store.records.length < 2) await sleep(5);
      process.kill(server.pid, 'SIGSTOP');
      stopped = true;
      const err = await running.catch((e: unknown) => e);
      process.kill(server.pid, 'SIGCONT');
      stopped = false;
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toMatch(/wrote nothing for 3 s/);
      expect(store.open.size).toBe(0);
    } finally {
      if (stopped) process.kill(server.pid, 'SIGCONT');
      await store.cleanup();
    }
  }, 300_000);

  it('backs up and restores tables whose names hold a newline', async () => {
    await withMysql(root, undefined, (client) =>
      exec(client, [
        'DROP DATABASE IF EXISTS nl',
        'CREATE DATABASE nl',
        'CREATE TABLE nl.`a\nb` (x INT PRIMARY KEY)',
        'CREATE TABLE nl.`a\nc` (y VARCHAR(10))',
        'INSERT INTO nl.`a\nb` VALUES (1), (2)',
        "INSERT INTO nl.`a\nc` VALUES ('one')",
      ]),
    );
    const store = await TestObjectStore.create();
    try {
      const component = await backup(store, { databases: ['nl'] });
      const names = component.objects.map((o) => o.name);
      expect(names).toContain('tables/nl/a-0ab/data-0001.sql');
      expect(names).toContain('tables/nl/a-0ac/data-0001.sql');
      const v = component.verification as MysqlVerification;
      expect(v.databases['nl']?.tables['a\nb']?.rows).toBe(2);
      expect(v.databases['nl']?.tables['a\nc']?.rows).toBe(1);
      await restoreMysql(
        component,
        { mysql: root, databases: { nl: 'nl_copy' }, parallel: 2 },
        store.readContext(await store.tempDir()),
      );
      const checks = await compareMysql(
        component,
        { mysql: root, databases: { nl: 'nl_copy' } },
        new AbortController().signal,
      );
      expect(checks.filter((c) => !c.ok)).toEqual([]);
    } finally {
      await withMysql(root, undefined, (client) =>
        exec(client, ['DROP DATABASE IF EXISTS nl', 'DROP DATABASE IF EXISTS nl_copy']),
      );
      await store.cleanup();
    }
  }, 300_000);

  it("keeps only the error lines of a loader's stderr (the echoed statement holds player data)", () => {
    const stderr =
      "--------------\nINSERT INTO `saves` VALUES\n(1,0x7878,'alice@example.com')\n--------------\n\n" +
      "ERROR 1153 (08S01) at line 3: Got a packet bigger than 'max_allowed_packet' bytes\n";
    expect(loaderMessage(stderr)).toBe(
      "ERROR 1153 (08S01) at line 3: Got a packet bigger than 'max_allowed_packet' bytes",
    );
    expect(loaderMessage('mariadb: unknown option --x\n')).toBe('mariadb: unknown option --x');
    expect(loaderMessage("ERROR at line 7: Unknown command '\\q'.\n")).toBe(
      "ERROR at line 7: Unknown command '\\q'.",
    );
    // Nothing recognisable: said, not shown, and never mistaken for no output at all.
    expect(loaderMessage("(1,'alice@example.com')\nsomething else\n")).toBe(
      '2 other line(s) of output, not shown (they may hold row data)',
    );
    expect(loaderMessage('')).toBe('');
  });

  it('hashes rows with MD5 unless CRC32+CRC32C is asked for (older backups compare as they were made)', () => {
    const cols = [
      { name: 'id', type: 'int' },
      { name: 'bio', type: 'text' },
      { name: 'name', type: 'varchar' },
    ];
    const md5 = checksumQuery('db', 't', cols).sql;
    expect(md5).toContain('MD5(');
    expect(md5).not.toContain('CRC32');
    const crc = checksumQuery('db', 't', cols, 'crc32+crc32c').sql;
    expect(crc).toContain('CRC32C(@gameops_row)');
    expect(crc).not.toContain('MD5(');
    // Strings keep their length prefix (NULL and '' differ); numbers need none.
    expect(crc).toContain("IFNULL(LENGTH(`name`),'N'), CAST(`name` AS BINARY)");
    expect(crc).toContain("IFNULL(`id`,'N')");
  });

  it('killing the dump connection mid-dump rejects, aborts the open objects and reports no success', async () => {
    const store = await TestObjectStore.create();
    const killer = await connectMysql(root);
    try {
      const running = backup(store, { chunkBytes: 1024 * 1024 });
      running.catch(() => undefined);
      let killed = false;
      for (let i = 0; i < 2000 && !killed; i++) {
        const rows = await killer.query(
          "SELECT ID AS id FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT /*!40001 SQL_NO_CACHE */%players%'",
        );
        const id: unknown = rows[0]?.['id'];
        if (
          typeof id === 'number' &&
          store.records.some((r) => r.name.startsWith('tables/gamedb/players/data-'))
        ) {
          await killer.query(`KILL ${id}`);
          killed = true;
        } else await sleep(5);
      }
      expect(killed).toBe(true);
      const err = await running.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toMatch(
        new RegExp(`MySQL/MariaDB at 127\\.0\\.0\\.1:${server.port}: mariadb-dump failed`),
      );
      expect((err as Error).message).not.toContain(server.password);
      expect(store.open.size).toBe(0);
      expect(store.aborted.length).toBeGreaterThan(0);
      for (const name of store.aborted) expect(await store.files()).not.toContain(name);
      expect(store.records.some((r) => r.name === 'zz-tail.sql')).toBe(false);
    } finally {
      await killer.close();
      await store.cleanup();
    }
  }, 300_000);

  it('fails after lockWaitTimeout when the read lock cannot be taken, naming the setting', async () => {
    const store = await TestObjectStore.create();
    const holder = await connectMysql(root);
    try {
      await holder.query('LOCK TABLES gamedb.guilds WRITE');
      const started = Date.now();
      const err = await backup(store, { lockWaitTimeoutMs: 1000 }).catch((e: unknown) => e);
      const waited = Date.now() - started;
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toMatch(/not granted within 1 s/);
      expect((err as Error).message).toMatch(/backups\.mysql\.lockWaitTimeout/);
      expect(waited).toBeGreaterThanOrEqual(900);
      expect(waited).toBeLessThan(8000);
      expect(store.records).toEqual([]);
      expect(store.open.size).toBe(0);
    } finally {
      await holder.query('UNLOCK TABLES').catch(() => undefined);
      await holder.close();
      await store.cleanup();
    }
    // With the lock gone, the server is not left locked by the failed attempt.
    await withMysql(root, undefined, async (client) => {
      await client.query("INSERT INTO gamedb.guilds VALUES (999, 'after lock')", [], { timeoutMs: 3000 });
      await client.query('DELETE FROM gamedb.guilds WHERE id = 999');
    });
  }, 120_000);

  it('an aborted signal stops the dump and rejects with the reason', async () => {
    const store = await TestObjectStore.create();
    const controller = new AbortController();
    try {
      const running = backup(store, {}, { signal: controller.signal });
      running.catch(() => undefined);
      for (let i = 0; i < 2000 && store.records.length < 5; i++) await sleep(5);
      controller.abort(new Error('operator cancelled'));
      await expect(running).rejects.toThrow('operator cancelled');
      expect(store.open.size).toBe(0);
    } finally {
      await store.cleanup();
    }
  }, 120_000);

  it('names scratch databases within 64 characters', () => {
    expect(scratchDatabaseName('abc123', 'gamedb', 0)).toBe('gameops_drill_abc123_gamedb');
    const long = scratchDatabaseName('abc123', 'x'.repeat(64), 3);
    expect(long.length).toBe(64);
    expect(long.endsWith('_3')).toBe(true);
  });
});
