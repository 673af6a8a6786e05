import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDB, startRedis, type MariaDBHandle, type RedisHandle } from '../../test/harness/index.ts';
import { connectMysql, connectRedis, type MysqlClient, type RedisClient } from '../connectors/index.ts';
import { systemClock } from '../core/index.ts';
import { runDailyCheck } from './daily.ts';
import { KeptConnections } from './kept-connections.ts';
import { databaseCheck } from './database.ts';
import { redisCheck } from './redis.ts';
import { testConfig } from './test-support.ts';
import type { CheckRun } from './types.ts';

// Private servers: the MariaDB in a directory of its own so that it can be restarted with its data and
// password; connection counters are then ours alone.
const REDIS_PASSWORD = 'kept-redis-pw';
let dir: string;
let db: MariaDBHandle;
let redis: RedisHandle;
const observers: Array<{ close(): Promise<unknown> }> = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gameops-kept-'));
  [db, redis] = await Promise.all([
    startMariaDB({ dir: join(dir, 'mariadb') }),
    startRedis({ password: REDIS_PASSWORD }),
  ]);
});
afterEach(async () => {
  await Promise.all(observers.splice(0).map((o) => o.close()));
});
afterAll(async () => {
  await Promise.allSettled([db?.stop(), redis?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

function config() {
  return testConfig({
    mysql: { host: db.host, port: db.port, user: db.user, password: db.password, database: db.database },
    redis: { host: redis.host, port: redis.port, password: REDIS_PASSWORD },
    timeout: 5_000,
    // Latency limits far out of reach: these tests make no timing assertions.
    thresholds: { redis: { latencyWarnMs: 1_000, latencyFailMs: 2_000 } },
  });
}

function run(cfg: ReturnType<typeof config>, kept: KeptConnections, previous?: CheckRun): Promise<CheckRun> {
  return runDailyCheck({
    config: cfg,
    clock: systemClock,
    trigger: 'api',
    checks: [databaseCheck, redisCheck],
    kept,
    ...(previous ? { previous } : {}),
  });
}

function result(r: CheckRun, name: 'database' | 'redis') {
  const found = r.results.find((x) => x.name === name);
  expect(found, name).toBeDefined();
  return found!;
}

/** Connections the servers accepted so far (MariaDB `Connections`, Redis `total_connections_received`). */
async function accepted(cfg: ReturnType<typeof config>): Promise<{ mysql: number; redis: number }> {
  const root = await connectMysql(cfg.mysql!);
  const [row] = await root.query("SHOW GLOBAL STATUS LIKE 'Connections'");
  await root.close();
  const client = await observer();
  const info = await client.info('stats');
  return {
    mysql: Number(row?.['Value']),
    redis: Number(/total_connections_received:(\d+)/.exec(info)?.[1]),
  };
}

/** What `accepted` says after another `accepted`, when the checks opened no connection in between. */
function noneOpenedSince(before: { mysql: number; redis: number }): { mysql: number; redis: number } {
  // Each `accepted` opens one MySQL and one Redis connection of its own.
  return { mysql: before.mysql + 1, redis: before.redis + 1 };
}

async function observer(): Promise<Redis> {
  const client = new Redis({
    host: redis.host,
    port: redis.port,
    password: REDIS_PASSWORD,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
  });
  await client.connect();
  observers.push({ close: () => client.quit() });
  return client;
}

/** Pretends `client` is still fine although it is closed: a connection that died unnoticed while idle. */
function stillLooksUsable<T extends MysqlClient | RedisClient>(client: T): T {
  return new Proxy(client, {
    get(target, property) {
      if (property === 'usable') return true;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describe('connections kept between daily checks (the server)', () => {
  it('reuses one MySQL and one Redis connection from one run to the next, and closes them on close()', async () => {
    const cfg = config();
    const kept = new KeptConnections();
    const first = await run(cfg, kept);
    expect(result(first, 'database').status).toBe('ok');
    expect(result(first, 'redis').status).toBe('ok');
    const before = await accepted(cfg);
    const second = await run(cfg, kept, first);
    const third = await run(cfg, kept, second);
    expect(await accepted(cfg)).toEqual(noneOpenedSince(before));
    for (const r of [second, third]) {
      expect(result(r, 'database').status).toBe('ok');
      expect(result(r, 'redis').status).toBe('ok');
      // Our kept connection is the only one, and it is not counted as a long or active query.
      expect(result(r, 'database').values).toMatchObject({ threadsConnected: 1, activeSessions: 0 });
    }

    const mysql = kept.take('mysql', cfg.mysql!, cfg.checks.timeout)!;
    const redisClient = kept.take('redis', cfg.redis!, cfg.checks.timeout)!;
    expect(mysql.usable && redisClient.usable).toBe(true);
    await kept.keep('mysql', cfg.mysql!, cfg.checks.timeout, mysql);
    await kept.keep('redis', cfg.redis!, cfg.checks.timeout, redisClient);
    await kept.close();
    expect(mysql.usable).toBe(false);
    expect(redisClient.usable).toBe(false);
    // A connection put back after close() is closed, not kept.
    const late = await connectRedis(cfg.redis!);
    await kept.keep('redis', cfg.redis!, cfg.checks.timeout, late);
    expect(late.usable).toBe(false);
  });

  it('a config or deadline other than the kept connection was opened for opens a new one', async () => {
    const cfg = config();
    const kept = new KeptConnections();
    await run(cfg, kept);
    expect(kept.take('mysql', config().mysql!, cfg.checks.timeout)).toBeUndefined();
    await run(cfg, kept);
    expect(kept.take('redis', cfg.redis!, cfg.checks.timeout + 1)).toBeUndefined();
    await kept.close();
  });

  it('Redis CLIENT KILL of the kept connection between runs: a new connection, the check still measures', async () => {
    const cfg = config();
    const kept = new KeptConnections();
    const first = await run(cfg, kept);
    const admin = await observer();
    const list = String(await admin.call('CLIENT', 'LIST'));
    const ours = /id=(\d+) [^\n]* name=gameops /.exec(list)?.[1];
    expect(ours).toBeDefined();
    await admin.call('CLIENT', 'KILL', 'ID', ours!);
    const second = await run(cfg, kept, first);
    expect(result(second, 'redis').status).toBe('ok');
    expect(result(second, 'redis').values['restartedSinceLastCheck']).toBe(false);
    const after = String(await admin.call('CLIENT', 'LIST'));
    expect(after).toMatch(/name=gameops /);
    expect(after).not.toContain(`id=${ours} `);
    await kept.close();
  });

  it('connections that died unnoticed while idle are replaced within the same check (one retry)', async () => {
    const cfg = config();
    const kept = new KeptConnections();
    const first = await run(cfg, kept);
    for (const kind of ['mysql', 'redis'] as const) {
      const client = kept.take(kind, cfg[kind]!, cfg.checks.timeout)!;
      // The socket is gone, but nothing says so until it is used.
      if (kind === 'mysql') (client as MysqlClient).destroy();
      else await client.close();
      await kept.keep(kind, cfg[kind]!, cfg.checks.timeout, stillLooksUsable(client));
    }
    const second = await run(cfg, kept, first);
    expect(result(second, 'database').status).toBe('ok');
    expect(result(second, 'redis').status).toBe('ok');
    // The new connections are kept in their place.
    const mysql = kept.take('mysql', cfg.mysql!, cfg.checks.timeout);
    expect(mysql?.usable).toBe(true);
    await mysql?.close();
    await kept.close();
  });

  it('MariaDB restarted between runs: the check reconnects and reports the restart', async () => {
    const cfg = config();
    const kept = new KeptConnections();
    const first = await run(cfg, kept);
    expect(result(first, 'database').status).toBe('ok');
    // A restart shows as uptime going down by more than a 5 s tolerance; this server is only seconds old,
    // so the previous reading is made an hour's uptime.
    const database0 = result(first, 'database');
    database0.values = { ...database0.values, uptimeSeconds: 3600 };
    const port = db.port;
    await db.stop();
    db = await startMariaDB({ dir: join(dir, 'mariadb'), port });
    const second = await run(cfg, kept, first);
    const database = result(second, 'database');
    expect(database.status).toBe('warn');
    expect(database.values['restartedSinceLastCheck']).toBe(true);
    expect(database.findings).toContainEqual(expect.objectContaining({ subject: 'server', status: 'warn' }));
    // And the new connection is kept for the next run.
    const before = await accepted(cfg);
    expect(result(await run(cfg, kept, second), 'database').status).toBe('ok');
    expect((await accepted(cfg)).mysql).toBe(noneOpenedSince(before).mysql);
    await kept.close();
  });
});
