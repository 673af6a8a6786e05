import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closedPort,
  services,
  startRedis,
  startSilentServer,
  type SilentServerHandle,
} from '../../test/harness/index.ts';
import { withMysql } from '../connectors/index.ts';
import { ManualClock, systemClock } from '../core/index.ts';
import { dailyChecks, runChecksSequentially, runDailyCheck } from './daily.ts';
import { databaseCheck } from './database.ts';
import { diskCheck } from './disk.ts';
import { redisCheck } from './redis.ts';
import { CheckStatus } from './statuses.ts';
import { testConfig, type TestConfigParts } from './test-support.ts';
import { CHECK_NAMES, type Check, type CheckContext, type CheckResult, type CheckRun } from './types.ts';

const TIMEOUT_MS = 1_500;

function sharedParts(): TestConfigParts {
  const { mariadb, redis, alertmanager } = services();
  return {
    mysql: {
      host: mariadb.host,
      port: mariadb.port,
      user: mariadb.user,
      password: mariadb.password,
      database: mariadb.database,
    },
    redis: { host: redis.host, port: redis.port, password: redis.password },
    alertmanager: { url: alertmanager.url },
    // Far-out latency limits: no timing assertions in tests.
    thresholds: { redis: { latencyWarnMs: 1_000, latencyFailMs: 2_000 }, disk: { paths: ['/'] } },
  };
}

describe('runDailyCheck', () => {
  it('runs every check against the shared servers and records the run', async () => {
    const clock = new ManualClock('2026-11-26T09:00:00Z');
    const run = await runDailyCheck({ config: testConfig(sharedParts()), clock, trigger: 'schedule' });
    expect(run).toMatchObject({
      kind: 'daily',
      service: 'test-game',
      environment: 'test',
      trigger: 'schedule',
      startedAt: '2026-11-26T09:00:00.000Z',
      finishedAt: '2026-11-26T09:00:00.000Z',
    });
    expect(run.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(run.results.map((r) => r.name)).toEqual([...CHECK_NAMES]);
    for (const result of run.results) {
      expect(result.status, `${result.name}: ${result.summary}`).not.toBe('error');
      // No platform and no backups in this config: those checks are skipped (they have tests of their own).
      if (['fleet', 'logs', 'game', 'backups'].includes(result.name)) expect(result.status).toBe('skipped');
      else expect(result.status).not.toBe('skipped');
      expect(result.summary).not.toContain('\n');
      expect(result.durationMs).toBeGreaterThanOrEqual(0);
    }
    expect(JSON.parse(JSON.stringify(run))).toEqual(run);
    const text = JSON.stringify(run);
    expect(text).not.toContain(services().mariadb.password);
    expect(text).not.toContain(services().redis.password);
  });

  it('reports checks that are not configured as skipped', async () => {
    const run = await runDailyCheck({
      config: testConfig({ thresholds: { disk: { paths: ['/'] } } }),
      clock: systemClock,
      trigger: 'cli',
    });
    const byName = Object.fromEntries(run.results.map((r) => [r.name, r]));
    for (const name of ['database', 'redis', 'alerts'] as const)
      expect(byName[name]).toMatchObject({ status: 'skipped', summary: 'not configured', durationMs: 0 });
    expect(byName['disk']?.status).not.toBe('skipped');
    expect(run.status).toBe(byName['disk']?.status);
  });

  it('uses the previous run for deltas', async () => {
    const config = testConfig(sharedParts());
    const first = await runDailyCheck({
      config,
      clock: systemClock,
      trigger: 'cli',
      checks: dailyChecks.slice(0, 2),
    });
    const second = await runDailyCheck({
      config,
      clock: systemClock,
      trigger: 'cli',
      checks: dailyChecks.slice(0, 2),
      previous: first,
    });
    const [database, redis] = second.results;
    expect(database?.values['slowQueriesBaseline']).toBe(false);
    expect(database?.values['slowQueriesSinceLastCheck']).toBeGreaterThanOrEqual(0);
    expect(redis?.values['restartedSinceLastCheck']).toBe(false);
  });

  it('compares each check with the newest run in which that check measured (error and skipped are passed over)', async () => {
    const seen = new Map<string, Pick<CheckContext, 'previous' | 'previousAt'>>();
    const recording = (name: 'database' | 'redis'): Check => ({
      name,
      configured: () => true,
      run: (ctx) => {
        seen.set(name, { previous: ctx.previous, previousAt: ctx.previousAt });
        return Promise.resolve({ status: CheckStatus.ok, summary: 'ok', values: {}, findings: [] });
      },
    });
    const result = (name: 'database' | 'redis', status: CheckStatus, marker: string): CheckResult => ({
      name,
      status,
      summary: marker,
      durationMs: 1,
      values: { marker },
      findings: [],
    });
    const run = (startedAt: string, results: CheckResult[]): CheckRun => ({
      id: randomUUID(),
      kind: 'daily',
      service: 'test-game',
      environment: 'test',
      trigger: 'schedule',
      status: CheckStatus.ok,
      startedAt,
      finishedAt: startedAt,
      durationMs: 1,
      results,
    });
    const oldest = run('2026-11-24T09:00:00.000Z', [
      result('database', CheckStatus.warn, 'db-24'),
      result('redis', CheckStatus.ok, 'redis-24'),
    ]);
    const middle = run('2026-11-25T09:00:00.000Z', [
      result('database', CheckStatus.error, 'db-25'),
      result('redis', CheckStatus.ok, 'redis-25'),
    ]);
    const newest = run('2026-11-26T09:00:00.000Z', [
      result('database', CheckStatus.skipped, 'db-26'),
      result('redis', CheckStatus.error, 'redis-26'),
    ]);
    const checks = [recording('database'), recording('redis')];
    const options = { config: testConfig(), clock: systemClock, trigger: 'cli' as const, checks };

    await runDailyCheck({ ...options, previous: [newest, middle, oldest] });
    expect(seen.get('database')?.previous?.summary).toBe('db-24');
    expect(seen.get('database')?.previousAt?.toISOString()).toBe('2026-11-24T09:00:00.000Z');
    expect(seen.get('redis')?.previous?.summary).toBe('redis-25');
    expect(seen.get('redis')?.previousAt?.toISOString()).toBe('2026-11-25T09:00:00.000Z');

    // The single-run form: a check whose result there is an error has nothing to compare with.
    seen.clear();
    await runDailyCheck({ ...options, previous: middle });
    expect(seen.get('database')).toEqual({ previous: undefined, previousAt: undefined });
    expect(seen.get('redis')?.previous?.summary).toBe('redis-25');
    expect(seen.get('redis')?.previousAt?.toISOString()).toBe('2026-11-25T09:00:00.000Z');

    // Nothing usable at all: a baseline.
    seen.clear();
    await runDailyCheck({ ...options, previous: [newest] });
    expect(seen.get('database')).toEqual({ previous: undefined, previousAt: undefined });
    expect(seen.get('redis')).toEqual({ previous: undefined, previousAt: undefined });
  });

  it('ok, then down (error), then ok: the third run compares with the first, so slow queries and a Redis restart in between are seen', async () => {
    const redis = await startRedis();
    let replacement: Awaited<ReturnType<typeof startRedis>> | undefined;
    try {
      const parts = sharedParts();
      const up = testConfig({ ...parts, redis: { host: redis.host, port: redis.port } });
      const checks = [databaseCheck, redisCheck];
      const first = await runDailyCheck({ config: up, clock: systemClock, trigger: 'schedule', checks });
      expect(first.results.map((r) => r.status)).not.toContain('error');

      // Both dependencies down for the next run: MariaDB unreachable, Redis stopped.
      await redis.stop();
      const down = testConfig({
        ...parts,
        mysql: { ...parts.mysql!, port: await closedPort() },
        redis: { host: redis.host, port: redis.port },
      });
      const second = await runDailyCheck({
        config: down,
        clock: systemClock,
        trigger: 'schedule',
        checks,
        previous: [first],
      });
      expect(second.results.map((r) => r.status)).toEqual(['error', 'error']);

      // Meanwhile: a slow query (long_query_time is 1 s on the harness MariaDB), and Redis comes back as a
      // new process on the same port.
      await withMysql(up.mysql!, undefined, (c) => c.query('SELECT SLEEP(1.1)'));
      replacement = await startRedis({ port: redis.port });
      const third = await runDailyCheck({
        config: up,
        clock: systemClock,
        trigger: 'schedule',
        checks,
        previous: [second, first],
      });
      const [database, redisResult] = third.results;
      expect(database?.values['slowQueriesBaseline']).toBe(false);
      expect(database?.values['slowQueriesSinceLastCheck']).toBeGreaterThanOrEqual(1);
      expect(redisResult?.values['restartedSinceLastCheck']).toBe(true);
      expect(redisResult?.findings).toContainEqual(
        expect.objectContaining({
          subject: 'server',
          message: 'restarted since last check (run_id changed)',
        }),
      );
    } finally {
      await replacement?.stop();
      await redis.stop();
    }
  });

  it('runs one check at a time with runChecksSequentially, with the same results', async () => {
    const run = await runChecksSequentially({
      config: testConfig(sharedParts()),
      clock: systemClock,
      trigger: 'cli',
    });
    expect(run.results.map((r) => r.name)).toEqual([...CHECK_NAMES]);
    expect(run.results.every((r) => r.status !== 'error')).toBe(true);
  });

  it('a bad password gives an error for that check only, and the password shows nowhere', async () => {
    const parts = sharedParts();
    const password = `wrong-${randomUUID()}`;
    const run = await runDailyCheck({
      config: testConfig({ ...parts, mysql: { ...parts.mysql!, password } }),
      clock: systemClock,
      trigger: 'api',
    });
    const database = run.results.find((r) => r.name === 'database');
    expect(database?.status).toBe('error');
    expect(database?.error?.code).toBe('input');
    expect(database?.summary).toMatch(/^MySQL\/MariaDB at 127\.0\.0\.1:\d+: connect failed: Access denied/);
    expect(JSON.stringify(run)).not.toContain(password);
    expect(run.status).toBe('error');
    expect(run.results.find((r) => r.name === 'redis')?.status).not.toBe('error');
  });

  it('masks the HTTP credentials of Alertmanager and Prometheus, raw and as the Authorization header, in every result', async () => {
    const amPassword = `am-pw-${randomUUID()}`;
    const promPassword = `prom-pw-${randomUUID()}`;
    const promToken = `prom-tok-${randomUUID()}`;
    const amBasic = Buffer.from(`am-user:${amPassword}`).toString('base64');
    const promBasic = Buffer.from(`prom-user:${promPassword}`).toString('base64');
    const url = 'http://127.0.0.1:9';
    const alertmanager = { url, username: 'am-user', password: amPassword };
    const leaky = `echo: ${amPassword} Basic ${amBasic} ${promPassword} Basic ${promBasic} Bearer ${promToken}`;
    const throwing: Check = {
      name: 'disk',
      configured: () => true,
      run: () => Promise.reject(new Error(leaky)),
    };
    const reporting: Check = {
      name: 'alerts',
      configured: () => true,
      run: () =>
        Promise.resolve({
          status: CheckStatus.ok,
          summary: leaky,
          values: { echoed: leaky },
          findings: [{ status: CheckStatus.ok, subject: 'x', message: leaky }],
        }),
    };
    // Prometheus with Basic auth, then with a bearer token (the config takes one or the other).
    const cases: Array<[TestConfigParts['prometheus'], string[]]> = [
      [
        { url, username: 'prom-user', password: promPassword },
        [amPassword, amBasic, promPassword, promBasic],
      ],
      [{ url, bearerToken: promToken }, [amPassword, amBasic, promToken]],
    ];
    for (const [prometheus, secrets] of cases) {
      const run = await runDailyCheck({
        config: testConfig({ alertmanager, ...(prometheus ? { prometheus } : {}) }),
        clock: systemClock,
        trigger: 'cli',
        checks: [throwing, reporting],
      });
      const text = JSON.stringify(run);
      for (const leaked of secrets) expect(text).not.toContain(leaked);
      expect(run.results[0]?.summary).toMatch(/^echo: /);
      expect(run.results[1]?.summary).toMatch(/^echo: /);
    }
  });

  it('a check that throws unexpectedly becomes an error result, not a failed run', async () => {
    const broken: Check = {
      name: 'disk',
      configured: () => true,
      run: () => Promise.reject(new Error('boom')),
    };
    const run = await runDailyCheck({
      config: testConfig(),
      clock: systemClock,
      trigger: 'cli',
      checks: [broken],
    });
    expect(run.results[0]).toMatchObject({
      status: 'error',
      summary: 'boom',
      error: { code: 'internal', message: 'boom' },
    });
  });
});

describe('runDailyCheck with dependencies that are down or hang', () => {
  let silent: SilentServerHandle;
  beforeAll(async () => {
    silent = await startSilentServer();
  });
  afterAll(async () => {
    await silent.stop();
  });

  async function runAgainst(parts: TestConfigParts): Promise<{ run: CheckRun; ms: number }> {
    const started = performance.now();
    const run = await runDailyCheck({
      config: testConfig({ ...parts, thresholds: { disk: { paths: ['/'] } } }),
      clock: systemClock,
      trigger: 'cli',
      timeoutMs: TIMEOUT_MS,
    });
    return { run, ms: performance.now() - started };
  }

  it('closed ports: each check reports error naming what it could not reach', async () => {
    const [mysqlPort, redisPort, amPort] = [await closedPort(), await closedPort(), await closedPort()];
    const { run, ms } = await runAgainst({
      mysql: { host: '127.0.0.1', port: mysqlPort, user: 'monitor', password: 'some-password' },
      redis: { host: '127.0.0.1', port: redisPort },
      alertmanager: { url: `http://127.0.0.1:${amPort}` },
    });
    const byName = Object.fromEntries(run.results.map((r) => [r.name, r]));
    expect(byName['database']).toMatchObject({
      status: 'error',
      summary: `MySQL/MariaDB at 127.0.0.1:${mysqlPort}: connect failed: connection refused (ECONNREFUSED)`,
      error: { code: 'unavailable' },
    });
    expect(byName['redis']).toMatchObject({
      status: 'error',
      summary: `Redis at 127.0.0.1:${redisPort}: connect failed: connection refused (ECONNREFUSED)`,
    });
    expect(byName['alerts']).toMatchObject({
      status: 'error',
      summary: `Alertmanager at http://127.0.0.1:${amPort}: GET /api/v2/alerts failed: connection refused (ECONNREFUSED)`,
    });
    expect(byName['disk']?.status).not.toBe('error');
    expect(run.status).toBe('error');
    expect(ms).toBeLessThan(10_000);
  });

  it('servers that accept TCP and never answer: error within the timeout, naming each', async () => {
    const target = `${silent.host}:${silent.port}`;
    const { run, ms } = await runAgainst({
      mysql: { host: silent.host, port: silent.port, user: 'monitor', password: 'some-password' },
      redis: { host: silent.host, port: silent.port },
      alertmanager: { url: `http://${target}` },
    });
    const byName = Object.fromEntries(run.results.map((r) => [r.name, r]));
    expect(byName['database']?.summary).toBe(
      `MySQL/MariaDB at ${target} did not answer within ${TIMEOUT_MS} ms`,
    );
    expect(byName['redis']?.summary).toBe(`Redis at ${target} did not answer within ${TIMEOUT_MS} ms`);
    expect(byName['alerts']?.summary).toMatch(
      new RegExp(`^Alertmanager at http://${target}(:| did not answer within ${TIMEOUT_MS} ms)`),
    );
    for (const name of ['database', 'redis', 'alerts']) {
      expect(byName[name]?.status).toBe('error');
      expect(byName[name]?.error?.code).toBe('unavailable');
    }
    expect(ms).toBeLessThan(10_000);
    expect(silent.connections()).toBeGreaterThanOrEqual(3);
  });

  it('leaves nothing behind: a process that ran against hung servers exits by itself', async () => {
    const parts: TestConfigParts = {
      mysql: { host: silent.host, port: silent.port, user: 'monitor', password: 'some-password' },
      redis: { host: silent.host, port: silent.port },
      alertmanager: { url: `http://${silent.host}:${silent.port}` },
      timeout: TIMEOUT_MS,
      thresholds: { disk: { paths: ['/'] } },
    };
    const fixture = fileURLToPath(new URL('./daily-exit.fixture.ts', import.meta.url));
    const child = spawn(process.execPath, [fixture, JSON.stringify(parts)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    const exitedAt = Date.now();
    clearTimeout(killer);
    expect(code, stderr).toBe(0);
    const { run, returnedAt } = JSON.parse(stdout) as { run: CheckRun; returnedAt: number };
    expect(run.results.filter((r) => r.status === 'error').map((r) => r.name)).toEqual([
      'database',
      'redis',
      'alerts',
    ]);
    // Generous: the point is that nothing keeps the event loop alive, not how fast it shuts down.
    expect(exitedAt - returnedAt).toBeLessThan(3_000);
  });

  it('a caller abort ends every check still running', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('shutting down')), 200);
    const run = await runDailyCheck({
      config: testConfig({
        redis: { host: silent.host, port: silent.port },
        thresholds: { disk: { paths: ['/'] } },
      }),
      clock: systemClock,
      trigger: 'cli',
      timeoutMs: 20_000,
      signal: controller.signal,
      checks: [diskCheck, ...dailyChecks.filter((c) => c.name === 'redis')],
    });
    expect(run.results.find((r) => r.name === 'redis')).toMatchObject({
      status: 'error',
      summary: 'shutting down',
    });
  });
});
