import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closedPort,
  services,
  startSilentServer,
  type SilentServerHandle,
} from '../../test/harness/index.ts';
import { ManualClock, systemClock } from '../core/index.ts';
import { dailyChecks, runChecksSequentially, runDailyCheck } from './daily.ts';
import { diskCheck } from './disk.ts';
import { testConfig, type TestConfigParts } from './test-support.ts';
import { CHECK_NAMES, type Check, type CheckRun } from './types.ts';

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
      expect(result.status).not.toBe('skipped');
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
