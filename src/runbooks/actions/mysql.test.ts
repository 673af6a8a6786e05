import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { services as sharedServices, startMariaDB, type MariaDBHandle } from '../../../test/harness/index.ts';
import { testConfig } from '../../checks/test-support.ts';
import { connectMysql, withMysql, type MysqlClient } from '../../connectors/mysql.ts';
import { slowLogTop, statementDigest } from '../../connectors/mysql-ops.ts';
import type { KillOutcome, LongQuery, SlowLogTop, ZeroCardinalityIndex } from '../../connectors/mysql-ops.ts';
import type { GameopsConfig } from '../../config/index.ts';
import { catalogAction, createRunbookServices, resourcesFor, stepContext } from './test-support.ts';

/** Runs an action as the engine would: arguments through its schema first. */
async function run<T>(config: GameopsConfig, name: string, args: unknown): Promise<T> {
  const def = catalogAction(name);
  const services = createRunbookServices(resourcesFor(config));
  return (await def.run(def.args.parse(args), stepContext(services))) as T;
}

function sharedConfig(extra: { database?: string } = {}): GameopsConfig {
  const { host, port, user, password, database } = sharedServices().mariadb;
  return testConfig({ mysql: { host, port, user, password, database: extra.database ?? database } });
}

/** Starts `sql` on a connection of its own; resolves once the process list shows it running. */
async function startStatement(
  config: GameopsConfig,
  sql: string,
): Promise<{ client: MysqlClient; done: Promise<unknown> }> {
  const client = await connectMysql(config.mysql!, { queryTimeoutMs: 120_000 });
  const done = client.query(sql, [], { timeoutMs: 120_000 }).catch((err: unknown) => err);
  await withMysql(config.mysql!, undefined, async (watcher) => {
    for (let i = 0; i < 100; i++) {
      const rows = await watcher.query('SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = ?', [
        client.threadId,
      ]);
      if (String(rows[0]?.['INFO'] ?? '') === sql) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`statement never showed in the process list: ${sql}`);
  });
  return { client, done };
}

describe('mysql actions against a real MariaDB', () => {
  it('long-queries finds a real SELECT SLEEP(60) from another connection; kill-query kills exactly it', async () => {
    const config = sharedConfig();
    const marker = `gameops_long_${randomUUID().replaceAll('-', '')}`;
    const sql = `SELECT SLEEP(60) AS ${marker}`;
    const { client, done } = await startStatement(config, sql);
    try {
      // The process list counts whole seconds: wait until it has run for one.
      let long: { queries: LongQuery[]; minSeconds: number } | undefined;
      for (let i = 0; i < 40; i++) {
        long = await run<{ queries: LongQuery[]; minSeconds: number }>(config, 'mysql.long-queries', {
          minSeconds: 1,
        });
        if (long.queries.some((q) => q.id === client.threadId)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const found = long!.queries.find((q) => q.id === client.threadId);
      expect(found).toMatchObject({
        user: config.mysql!.user,
        db: 'gamedb',
        command: 'Query',
        statement: sql.slice(0, 100),
        statementDigest: statementDigest(sql),
      });
      expect(found!.time).toBeGreaterThanOrEqual(1);
      expect(found!.host).toMatch(/^127\.0\.0\.1:\d+$/);
      // Our own connection is never listed.
      expect(long!.queries.every((q) => !q.statement.includes('information_schema.PROCESSLIST'))).toBe(true);

      const process = await run<LongQuery>(config, 'mysql.process', { id: client.threadId });
      expect(process.statementDigest).toBe(statementDigest(sql));
      expect(JSON.stringify(process)).not.toContain('fullStatement');

      const killArgs = { id: client.threadId, user: process.user, statementDigest: process.statementDigest };
      const kill = catalogAction('mysql.kill-query');
      const services = createRunbookServices(resourcesFor(config));
      expect(await kill.verify!(kill.args.parse(killArgs), stepContext(services))).toBe('not-done');
      const outcome = await run<KillOutcome>(config, 'mysql.kill-query', killArgs);
      expect(outcome).toMatchObject({ outcome: 'killed', id: client.threadId, confirmed: true });
      expect(outcome.outcome === 'killed' && outcome.method).toMatch(/^KILL QUERY ID \d+$/);
      // KILL QUERY ends the statement, not the connection.
      expect(await done).toMatchObject({ details: { driverCode: 'ER_QUERY_INTERRUPTED' } });
      expect((await client.query('SELECT 1 AS one'))[0]).toEqual({ one: 1 });
      expect(await kill.verify!(kill.args.parse(killArgs), stepContext(services))).toBe('done');
      // Again: nothing runs there any more.
      expect(await run<KillOutcome>(config, 'mysql.kill-query', killArgs)).toEqual({
        outcome: 'not-running',
        id: client.threadId,
      });
    } finally {
      client.destroy();
    }
  });

  it('kill-query refuses a recycled id: the thread now runs a different statement, which keeps running', async () => {
    const config = sharedConfig();
    const first = `SELECT SLEEP(60) AS gameops_first_${randomUUID().replaceAll('-', '')}`;
    const { client, done } = await startStatement(config, first);
    try {
      const seen = await run<LongQuery>(config, 'mysql.process', { id: client.threadId });
      // The first statement ends; the same thread id then runs another one.
      await withMysql(config.mysql!, undefined, (c) => c.query('KILL QUERY ?', [client.threadId]));
      await done;
      const second = `SELECT SLEEP(60) AS gameops_second_${randomUUID().replaceAll('-', '')}`;
      const secondDone = client.query(second, [], { timeoutMs: 120_000 }).catch((err: unknown) => err);
      for (let i = 0; i < 100; i++) {
        const now = await run<LongQuery | undefined>(config, 'mysql.process', { id: client.threadId }).catch(
          () => undefined,
        );
        if (now?.statementDigest === statementDigest(second)) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const outcome = await run<KillOutcome>(config, 'mysql.kill-query', {
        id: client.threadId,
        user: seen.user,
        statementDigest: seen.statementDigest,
      });
      expect(outcome).toMatchObject({ outcome: 'different-statement', differs: ['statement'] });
      expect(outcome.outcome === 'different-statement' && outcome.statement).toBe(second.slice(0, 100));
      // The same statement under another user is refused too, as is a prefix that does not match.
      expect(
        await run<KillOutcome>(config, 'mysql.kill-query', {
          id: client.threadId,
          user: 'someone_else',
          statementPrefix: 'SELECT SLEEP(60)',
        }),
      ).toMatchObject({ outcome: 'different-statement', differs: ['user'] });
      expect(
        await run<KillOutcome>(config, 'mysql.kill-query', {
          id: client.threadId,
          user: seen.user,
          statementPrefix: 'SELECT * FROM players',
        }),
      ).toMatchObject({ outcome: 'different-statement', differs: ['statement'] });
      const still = await run<LongQuery>(config, 'mysql.process', { id: client.threadId });
      expect(still.statementDigest).toBe(statementDigest(second));
      // A matching prefix kills it.
      expect(
        await run<KillOutcome>(config, 'mysql.kill-query', {
          id: client.threadId,
          user: seen.user,
          statementPrefix: 'SELECT   SLEEP(60) AS gameops_second',
        }),
      ).toMatchObject({ outcome: 'killed' });
      await secondDone;
    } finally {
      client.destroy();
    }
  });

  it('kill-query arguments: the id must be a positive integer, and the statement must be named', () => {
    const args = catalogAction('mysql.kill-query').args;
    for (const id of ['12; DROP TABLE players', 1.5, -3, 0, '7']) {
      const parsed = args.safeParse({ id, user: 'game', statementPrefix: 'SELECT' });
      expect(parsed.success, String(id)).toBe(false);
      expect(parsed.error!.issues[0]!.path).toEqual(['id']);
    }
    const none = args.safeParse({ id: 7, user: 'game' });
    expect(none.error!.issues[0]!.path).toEqual(['statementDigest']);
    expect(none.error!.issues[0]!.message).toMatch(/exactly one of statementDigest and statementPrefix/);
    expect(args.safeParse({ id: 7, user: 'game', statementDigest: 'abc' }).error!.issues[0]!.path).toEqual([
      'statementDigest',
    ]);
    expect(args.safeParse({ id: 7, user: 'game', statementPrefix: 'SELECT' }).success).toBe(true);
  });

  it('mysql.process of a thread running nothing is not found', async () => {
    await expect(run(sharedConfig(), 'mysql.process', { id: 2_000_000_000 })).rejects.toMatchObject({
      code: 'not_found',
      message: expect.stringContaining('thread 2000000000') as unknown,
    });
  });

  it('zero-cardinality-indexes lists stale indexes of tables with rows, never those of empty tables', async () => {
    const schema = `zc_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
    const root = await connectMysql(sharedConfig().mysql!);
    try {
      await root.query(`CREATE DATABASE ${schema}`);
      // MyISAM keeps no statistics for a secondary index filled row by row until ANALYZE TABLE.
      await root.query(
        `CREATE TABLE ${schema}.players (id INT PRIMARY KEY, guild INT, name VARCHAR(40), KEY guild_idx (guild), KEY name_idx (name)) ENGINE=MyISAM`,
      );
      await root.query(
        `CREATE TABLE ${schema}.empty_table (id INT PRIMARY KEY, k INT, KEY k_idx (k)) ENGINE=MyISAM`,
      );
      for (let id = 1; id <= 20; id++)
        await root.query(`INSERT INTO ${schema}.players VALUES (?, ?, ?)`, [id, id % 5, `p${id}`]);
      const config = sharedConfig({ database: schema });
      const result = await run<{ schema: string; indexes: ZeroCardinalityIndex[] }>(
        config,
        'mysql.zero-cardinality-indexes',
        {},
      );
      expect(result.schema).toBe(schema);
      const names = result.indexes.map((i) => `${i.table}.${i.index}`).sort();
      expect(names).toContain('players.guild_idx');
      expect(names).not.toContain('players.PRIMARY');
      expect(names.some((n) => n.startsWith('empty_table.'))).toBe(false);
      expect(result.indexes.find((i) => i.index === 'guild_idx')).toMatchObject({
        columns: ['guild'],
        nonUnique: true,
        hint: `ANALYZE TABLE \`${schema}\`.\`players\``,
      });
      // After ANALYZE TABLE the statistics are real and nothing is listed for players.
      await root.query(`ANALYZE TABLE ${schema}.players`);
      const after = await run<{ indexes: ZeroCardinalityIndex[] }>(config, 'mysql.zero-cardinality-indexes', {
        schema,
      });
      expect(after.indexes.filter((i) => i.table === 'players')).toEqual([]);
    } finally {
      await root.query(`DROP DATABASE IF EXISTS ${schema}`).catch(() => undefined);
      await root.close();
    }
  });

  it('open-tables-in-use shows a table locked by another connection', async () => {
    const config = sharedConfig();
    const table = `locked_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
    const locker = await connectMysql(config.mysql!);
    try {
      await locker.query(`CREATE TABLE ${table} (id INT PRIMARY KEY)`);
      await locker.query(`LOCK TABLES ${table} WRITE`);
      const result = await run<{ tables: Array<{ database: string; table: string; inUse: number }> }>(
        config,
        'mysql.open-tables-in-use',
        {},
      );
      expect(result.tables).toContainEqual(expect.objectContaining({ database: 'gamedb', table, inUse: 1 }));
      await locker.query('UNLOCK TABLES');
      const after = await run<{ tables: Array<{ table: string }> }>(config, 'mysql.open-tables-in-use', {});
      expect(after.tables.some((t) => t.table === table)).toBe(false);
    } finally {
      await locker.query(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
      await locker.close();
    }
  });

  it('without a mysql section the actions say what to configure', async () => {
    await expect(run(testConfig({}), 'mysql.long-queries', {})).rejects.toMatchObject({
      code: 'input',
      message: expect.stringContaining('add a `mysql:` section') as unknown,
    });
  });
});

describe('mysql.slow-log-top on a MariaDB of its own (log_output FILE, then TABLE)', () => {
  let server: MariaDBHandle;
  let logFile = '';
  let config: GameopsConfig;

  beforeAll(async () => {
    logFile = join(mkdtempSync(join(tmpdir(), 'gameops-slowlog-')), 'slow.log');
    server = await startMariaDB({ extraArgs: ['--log-output=FILE', `--slow-query-log-file=${logFile}`] });
    const { host, port, user, password } = server;
    config = testConfig({ mysql: { host, port, user, password, database: 'gamedb' } });
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('reads the slow log file, folds literals, ranks by total time, and says the file was used', async () => {
    await withMysql(config.mysql!, undefined, async (c) => {
      await c.query('SET SESSION long_query_time = 0');
      for (const id of [1, 2, 3]) await c.query(`SELECT SLEEP(0.05), 'player-${id}' AS gameops_file_marker`);
      await c.query('SELECT SLEEP(0.2) AS gameops_file_slowest');
    });
    expect(readFileSync(logFile, 'utf8')).toContain('gameops_file_marker');
    const top = await run<SlowLogTop>(config, 'mysql.slow-log-top', {});
    expect(top).toMatchObject({ source: 'file', file: logFile, logOutput: 'FILE', slowQueryLog: true });
    const marker = top.top.find((s) => s.statement.includes('gameops_file_marker'));
    expect(marker).toMatchObject({ statement: 'SELECT SLEEP(?), ? AS gameops_file_marker', count: 3 });
    expect(marker!.totalSeconds).toBeGreaterThanOrEqual(0.15);
    const slowest = top.top.find((s) => s.statement.includes('gameops_file_slowest'));
    expect(slowest!.maxSeconds).toBeGreaterThanOrEqual(0.2);
    // Ranked by total time, at most 20.
    const totals = top.top.map((s) => s.totalSeconds);
    expect([...totals].sort((a, b) => b - a)).toEqual(totals);
    expect(top.top.length).toBeLessThanOrEqual(20);
  });

  it('a slow log file on another machine is not read: it says so', async () => {
    await withMysql(config.mysql!, undefined, async (c) => {
      const top = await slowLogTop(c, { local: false });
      expect(top.source).toBe('none');
      expect(top.note).toContain(`the slow log goes to the file ${logFile} on the database server`);
    });
  });

  it('reads mysql.slow_log when log_output includes TABLE, and says the table was used', async () => {
    await withMysql(config.mysql!, undefined, async (c) => {
      await c.query("SET GLOBAL log_output = 'TABLE'");
      await c.query('SET SESSION long_query_time = 0');
      for (const id of [10, 20]) await c.query(`SELECT SLEEP(0.05), ${id} AS gameops_table_marker`);
    });
    const top = await run<SlowLogTop>(config, 'mysql.slow-log-top', { limit: 5 });
    expect(top).toMatchObject({ source: 'table', logOutput: 'TABLE' });
    expect(top.file).toBeUndefined();
    expect(top.top.length).toBeLessThanOrEqual(5);
    expect(top.top.find((s) => s.statement.includes('gameops_table_marker'))).toMatchObject({
      statement: 'SELECT SLEEP(?), ? AS gameops_table_marker',
      count: 2,
    });
  });

  it('log_output NONE: nothing to read, and it says why', async () => {
    await withMysql(config.mysql!, undefined, (c) => c.query("SET GLOBAL log_output = 'NONE'"));
    const top = await run<SlowLogTop>(config, 'mysql.slow-log-top', {});
    expect(top).toMatchObject({ source: 'none', entries: 0, top: [] });
    expect(top.note).toContain('log_output is NONE');
  });
});
