import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDB, type MariaDBHandle } from '../../test/harness/index.ts';
import { connectMysql, withMysql, type MysqlClient } from '../connectors/index.ts';
import { systemClock } from '../core/index.ts';
import { runDailyCheck } from './daily.ts';
import { databaseCheck } from './database.ts';
import { testConfig } from './test-support.ts';
import type { CheckResult, CheckRun } from './types.ts';

// A private MariaDB with max_connections = 10, so that connection counts are ours alone.
const MAX_CONNECTIONS = 10;
let db: MariaDBHandle;
const opened: MysqlClient[] = [];

beforeAll(async () => {
  db = await startMariaDB({ maxConnections: MAX_CONNECTIONS });
});
afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close()));
});
afterAll(async () => {
  await db?.stop();
});

function config(thresholds: Record<string, unknown> = {}) {
  return testConfig({
    mysql: { host: db.host, port: db.port, user: db.user, password: db.password, database: db.database },
    timeout: 5_000,
    thresholds: { database: thresholds },
  });
}

/** A first run of the database check alone, as the baseline a later run compares with. */
function baselineRun(): Promise<CheckRun> {
  return runDailyCheck({ config: config(), clock: systemClock, trigger: 'cli', checks: [databaseCheck] });
}

async function check(cfg = config(), previous?: CheckRun): Promise<CheckResult> {
  const run = await runDailyCheck({
    config: cfg,
    clock: systemClock,
    trigger: 'cli',
    checks: [databaseCheck],
    ...(previous ? { previous } : {}),
  });
  expect(run.results).toHaveLength(1);
  return run.results[0]!;
}

async function open(count: number): Promise<void> {
  for (let i = 0; i < count; i++) opened.push(await connectMysql(config().mysql!));
}

describe('database check', () => {
  it('reports version, connections and a Slow_queries baseline on the first run', async () => {
    const result = await check();
    expect(result.status).toBe('ok');
    expect(result.values).toMatchObject({
      flavour: 'MariaDB',
      maxConnections: MAX_CONNECTIONS,
      threadsConnected: 1,
      slowQueriesSinceLastCheck: null,
      slowQueriesBaseline: true,
      longQueries: 0,
    });
    expect(result.summary).toMatch(
      /^MariaDB \d+\.\d+\.\d+: 1\/10 connections \(10 %\), \d+ running, Slow_queries \d+ \(baseline\), no query over 10 s$/,
    );
    expect(JSON.parse(JSON.stringify(result))).toEqual(result);
  });

  it('counts slow queries since the last recorded check', async () => {
    const first = await baselineRun();
    // long_query_time is 1 s on the harness's MariaDB.
    await withMysql(config().mysql!, undefined, (c) => c.query('SELECT SLEEP(1.1)'));
    const second = await check(config({ slowQueriesWarn: 1 }), first);
    expect(second.values['slowQueriesBaseline']).toBe(false);
    expect(second.values['slowQueriesSinceLastCheck']).toBe(1);
    expect(second.status).toBe('warn');
    expect(second.findings).toContainEqual(
      expect.objectContaining({
        subject: 'slow queries',
        status: 'warn',
        value: 1,
        message: '1 slow query since last check',
      }),
    );
    expect(second.summary).toContain('1 slow since last check');
  });

  it('after a restart (uptime went down) the delta is the current counter', async () => {
    const first = await baselineRun();
    const result = first.results[0]!;
    const current = result.values['slowQueries'] as number;
    // The previous run as the store would hold it, from a server that had been up far longer.
    const previous: CheckRun = {
      ...first,
      results: [
        { ...result, values: { ...result.values, slowQueries: current + 500, uptimeSeconds: 10_000_000 } },
      ],
    };
    const second = await check(config(), previous);
    expect(second.values['restartedSinceLastCheck']).toBe(true);
    expect(second.values['slowQueriesSinceLastCheck']).toBe(current);
    expect(second.findings).toContainEqual(expect.objectContaining({ subject: 'server', status: 'warn' }));
  });

  it('a restart is seen from the elapsed time even when uptime and counter went up', async () => {
    const first = await baselineRun();
    const result = first.results[0]!;
    const slowQueries = result.values['slowQueries'] as number;
    const uptime = result.values['uptimeSeconds'] as number;
    const recorded = (ago: number): CheckRun => ({
      ...first,
      startedAt: new Date(Date.now() - ago * 1000).toISOString(),
      // Up 10 s less and one slow query fewer than now.
      results: [
        { ...result, values: { ...result.values, slowQueries: slowQueries - 1, uptimeSeconds: uptime - 10 } },
      ],
    });
    // Recorded a day ago: the server would be up a day longer by now, so it started again in between and
    // every slow query it counted is new.
    const dayLater = await check(config(), recorded(86_400));
    expect(dayLater.values['restartedSinceLastCheck']).toBe(true);
    expect(dayLater.values['slowQueriesSinceLastCheck']).toBe(slowQueries);
    expect(dayLater.findings).toContainEqual(expect.objectContaining({ subject: 'server', status: 'warn' }));
    // Recorded 10 s ago: the same server.
    const tenSecondsLater = await check(config(), recorded(10));
    expect(tenSecondsLater.values['restartedSinceLastCheck']).toBe(false);
    expect(tenSecondsLater.values['slowQueriesSinceLastCheck']).toBe(1);
  });

  it('finds a query running longer than longQuerySeconds, with the worst one', async () => {
    const marker = `gameops_${randomUUID().replaceAll('-', '')}`;
    const sleeper = await connectMysql(config().mysql!);
    const sleeping = sleeper.query(`SELECT SLEEP(30) AS ${marker}`).catch((err: unknown) => err);
    try {
      let result: CheckResult | undefined;
      // The statement has to have run for a second before it counts.
      for (let i = 0; i < 60 && !(result && result.values['longQueries'] === 1); i++) {
        result = await check(config({ longQuerySeconds: 1 }));
        if (result.values['longQueries'] !== 1) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(result?.status).toBe('warn');
      expect(result?.values['longestQuery']).toMatchObject({
        id: sleeper.threadId,
        user: 'root',
        db: 'gamedb',
        statement: `SELECT SLEEP(30) AS ${marker}`,
      });
      expect(result?.findings).toContainEqual(
        expect.objectContaining({ subject: 'long queries', status: 'warn', value: 1, threshold: 1 }),
      );
      expect(result?.findings).toContainEqual(
        expect.objectContaining({ subject: `query ${sleeper.threadId}`, status: 'warn' }),
      );
      expect(result?.summary).toMatch(new RegExp(`1 over 1 s \\(longest \\d+ s, id ${sleeper.threadId}\\)`));
    } finally {
      await withMysql(config().mysql!, undefined, (c) => c.query('KILL ?', [sleeper.threadId]));
      expect(await sleeping).toBeInstanceOf(Error);
      sleeper.destroy();
    }
  });

  it('warns when connections cross 80 % of max_connections and fails from 95 %', async () => {
    await open(7); // 7 idle + the check's own = 8/10
    let result = await check();
    expect(result.values['threadsConnected']).toBe(8);
    expect(result.status).toBe('warn');
    expect(result.findings).toContainEqual(
      expect.objectContaining({ subject: 'connections', status: 'warn', value: 80, threshold: 80 }),
    );
    expect(result.summary).toContain('8/10 connections (80 %)');

    await open(2); // 10/10
    result = await check();
    expect(result.status).toBe('fail');
    expect(result.findings).toContainEqual(
      expect.objectContaining({ subject: 'connections', status: 'fail', value: 100, threshold: 95 }),
    );
  });

  it("warns when the user lacks PROCESS: other users' long queries would be invisible", async () => {
    const suffix = randomUUID().slice(0, 8);
    const readOnly = `ro_${suffix}`;
    const viaRole = `role_${suffix}`;
    const role = `monitor_${suffix}`;
    const password = `pw-${randomUUID()}`;
    const root = await connectMysql(config().mysql!);
    opened.push(root);
    for (const sql of [
      `CREATE USER '${readOnly}'@'%' IDENTIFIED BY '${password}'`,
      `GRANT SELECT ON gamedb.* TO '${readOnly}'@'%'`,
      `CREATE ROLE ${role}`,
      `GRANT PROCESS ON *.* TO ${role}`,
      `CREATE USER '${viaRole}'@'%' IDENTIFIED BY '${password}'`,
      `GRANT SELECT ON gamedb.* TO '${viaRole}'@'%'`,
      `GRANT ${role} TO '${viaRole}'@'%'`,
      `SET DEFAULT ROLE ${role} FOR '${viaRole}'@'%'`,
    ])
      await root.query(sql);
    const as = (user: string) =>
      testConfig({
        mysql: { host: db.host, port: db.port, user, password, database: db.database },
        timeout: 5_000,
        thresholds: { database: { longQuerySeconds: 1 } },
      });
    // A long query of another user (root): the restricted user cannot see it.
    const sleeper = await connectMysql(config().mysql!);
    const sleeping = sleeper.query('SELECT SLEEP(30)').catch((err: unknown) => err);
    try {
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const restricted = await check(as(readOnly));
      expect(restricted.values['processPrivilege']).toBe(false);
      expect(restricted.values['longQueries']).toBe(0);
      expect(restricted.status).toBe('warn');
      expect(restricted.findings).toContainEqual({
        status: 'warn',
        subject: 'privileges',
        message: `user ${readOnly} lacks the PROCESS privilege: only its own queries are visible, long queries of others cannot be seen`,
      });
      expect(restricted.summary).toContain('no PROCESS privilege');

      // PROCESS through a default role counts.
      const withRole = await check(as(viaRole));
      expect(withRole.values['processPrivilege']).toBe(true);
      expect(withRole.findings.some((f) => f.subject === 'privileges')).toBe(false);
      expect(withRole.values['longQueries']).toBe(1);

      // ALL PRIVILEGES (root) counts.
      const full = await check(config({ longQuerySeconds: 1 }));
      expect(full.values['processPrivilege']).toBe(true);
      expect(full.findings.some((f) => f.subject === 'privileges')).toBe(false);
    } finally {
      await root.query('KILL ?', [sleeper.threadId]);
      await sleeping;
      sleeper.destroy();
    }
  });

  it('idle connections are not long queries', async () => {
    await open(3);
    const result = await check(config({ longQuerySeconds: 0.001 }));
    expect(result.values['longQueries']).toBe(0);
    expect(result.values['activeSessions']).toBe(0);
  });
});
