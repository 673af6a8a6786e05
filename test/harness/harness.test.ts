/**
 * Proves the harness gives real, usable servers: each one answers a real client, per-test options really
 * apply, the fake dependencies misbehave as advertised, and no password is visible in any process's
 * command line.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import {
  closedPort,
  createSilence,
  getAlerts,
  postAlerts,
  randomSecret,
  services,
  smallFilesystem,
  startMariaDB,
  startPostgres,
  startRedis,
  startSilentServer,
} from './index.ts';

const stops: Array<() => Promise<void>> = [];
afterAll(async () => {
  // Last registered first: a directory must outlive the server that uses it.
  for (const stop of stops.reverse()) await stop();
});

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Every process's command line, as `ps` would show it. */
async function allCommandLines(): Promise<Array<{ pid: number; cmdline: string }>> {
  const result: Array<{ pid: number; cmdline: string }> = [];
  for (const entry of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const raw = await fsp.readFile(`/proc/${entry}/cmdline`, 'utf8');
      result.push({ pid: Number(entry), cmdline: raw.replaceAll('\0', ' ') });
    } catch {
      // Exited while we looked.
    }
  }
  return result;
}

async function mariadbQuery(db: { host: string; port: number; user: string; password: string }, sql: string) {
  const connection = await mysql.createConnection({
    host: db.host,
    port: db.port,
    user: db.user,
    password: db.password,
  });
  try {
    const [rows] = await connection.query<mysql.RowDataPacket[]>(sql);
    return rows;
  } finally {
    await connection.end();
  }
}

describe('shared servers from the global setup', () => {
  it('MariaDB answers over TCP with the root password, with gamedb and the slow log in a table', async () => {
    const { mariadb } = services();
    const rows = await mariadbQuery(
      mariadb,
      'SELECT VERSION() AS version, @@slow_query_log AS slow, @@log_output AS output, @@long_query_time AS lqt',
    );
    expect(rows[0]!.version).toMatch(/MariaDB/);
    expect(rows[0]).toMatchObject({ slow: 1, output: 'TABLE', lqt: 1 });
    const databases = await mariadbQuery(mariadb, 'SHOW DATABASES');
    expect(databases.map((r) => r.Database as string)).toContain('gamedb');
  });

  it('MariaDB rejects a wrong password', async () => {
    const { mariadb } = services();
    await expect(mariadbQuery({ ...mariadb, password: 'wrong' }, 'SELECT 1')).rejects.toThrow(
      /Access denied/,
    );
  });

  it('Redis answers PING with its password, and refuses commands without it', async () => {
    const { redis } = services();
    const client = new Redis({
      host: redis.host,
      port: redis.port,
      password: redis.password,
      lazyConnect: true,
    });
    await client.connect();
    expect(await client.ping()).toBe('PONG');
    client.disconnect();
    // A raw connection, since ioredis fails its own handshake when unauthenticated.
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = net.connect({ host: redis.host, port: redis.port }, () => socket.write('PING\r\n'));
      socket.once('data', (chunk: Buffer) => {
        socket.destroy();
        resolve(chunk.toString());
      });
      socket.once('error', reject);
    });
    expect(reply).toMatch(/^-NOAUTH/);
  });

  it('PostgreSQL answers select 1 on database gameops, not running as root', async () => {
    const { postgres } = services();
    const client = new pg.Client({ connectionString: postgres.url });
    await client.connect();
    try {
      const result = await client.query<{ one: number; db: string }>(
        'SELECT 1 AS one, current_database() AS db',
      );
      expect(result.rows[0]).toEqual({ one: 1, db: 'gameops' });
    } finally {
      await client.end();
    }
    const status = await fsp.readFile(`/proc/${postgres.pid}/status`, 'utf8');
    expect(status).toMatch(/^Uid:\s+[1-9]\d*\s/m);
  });

  it('Alertmanager stores posted alerts and applies silences', async () => {
    const { alertmanager } = services();
    const run = randomSecret(4);
    await postAlerts(alertmanager.url, [
      {
        labels: { alertname: 'HarnessCritical', severity: 'critical', harness_run: run },
        annotations: { summary: 'critical one', runbook_url: 'https://example.invalid/runbook' },
      },
      {
        labels: { alertname: 'HarnessWarning', severity: 'warning', harness_run: run },
        endsAt: new Date(Date.now() + 600_000),
      },
    ]);
    const alerts = await getAlerts(alertmanager.url, { harness_run: run });
    expect(alerts.map((a) => a.labels.alertname).sort()).toEqual(['HarnessCritical', 'HarnessWarning']);
    expect(alerts.find((a) => a.labels.severity === 'critical')!.annotations.runbook_url).toBe(
      'https://example.invalid/runbook',
    );

    const silenceId = await createSilence(alertmanager.url, [
      { name: 'alertname', value: 'HarnessWarning' },
      { name: 'harness_run', value: run },
    ]);
    const after = await getAlerts(alertmanager.url, { harness_run: run });
    const warning = after.find((a) => a.labels.alertname === 'HarnessWarning')!;
    expect(warning.status.state).toBe('suppressed');
    // Another test's silence may match it too (the Alertmanager is shared): ours must be among them.
    expect(warning.status.silencedBy).toContain(silenceId);
    expect(after.find((a) => a.labels.alertname === 'HarnessCritical')!.status.state).toBe('active');
  });

  it('Prometheus is ready and evaluates queries', async () => {
    const { prometheus } = services();
    expect((await fetch(`${prometheus.url}/-/ready`)).status).toBe(200);
    const response = await fetch(`${prometheus.url}/api/v1/query?query=${encodeURIComponent('1+1')}`);
    const body = (await response.json()) as { status: string; data: { result: [number, string] } };
    expect(body.status).toBe('success');
    expect(body.data.result[1]).toBe('2');
  });

  it('no process shows a password on its command line', async () => {
    const { mariadb, redis, postgres, alertmanager, prometheus } = services();
    // Start per-test servers with passwords too, so the check covers them as well as the shared ones.
    const ownRedis = await startRedis({ password: randomSecret() });
    stops.push(ownRedis.stop);
    const ownMariaDB = await startMariaDB();
    stops.push(ownMariaDB.stop);
    const secrets = [
      mariadb.password,
      redis.password,
      postgres.password,
      ownRedis.password!,
      ownMariaDB.password,
    ];
    const lines = await allCommandLines();
    for (const pid of [
      mariadb.pid,
      redis.pid,
      postgres.pid,
      alertmanager.pid,
      prometheus.pid,
      ownRedis.pid,
    ]) {
      expect(lines.some((l) => l.pid === pid)).toBe(true); // the servers really are running
    }
    for (const { pid, cmdline } of lines) {
      for (const secret of secrets) {
        expect(cmdline.includes(secret), `pid ${pid} shows a password: ${cmdline}`).toBe(false);
      }
    }
  });
});

describe('per-test servers', () => {
  it('MariaDB applies maxConnections and logs slow queries to mysql.slow_log; stop() cleans up', async () => {
    const db = await startMariaDB({ maxConnections: 12 });
    stops.push(db.stop);
    expect((await mariadbQuery(db, 'SELECT @@max_connections AS max'))[0]!.max).toBe(12); // MariaDB's minimum is 10
    await mariadbQuery(db, 'SELECT SLEEP(1.1)');
    // The server writes the slow-log row after answering the query, so give it a moment.
    await expect
      .poll(
        async () =>
          (await mariadbQuery(db, "SELECT 1 FROM mysql.slow_log WHERE sql_text LIKE 'SELECT SLEEP%'")).length,
      )
      .toBeGreaterThan(0);

    await db.stop();
    expect(isRunning(db.pid)).toBe(false);
    expect(fs.existsSync(db.dir)).toBe(false);
  }, 60_000);

  it('MariaDB in a persistent dir is initialised once and reused with the same password', async () => {
    const dir = await fsp.mkdtemp(path.join(process.env.TMPDIR ?? '/tmp', 'gameops-persist-'));
    stops.push(() => fsp.rm(dir, { recursive: true, force: true }));
    const first = await startMariaDB({ dir });
    await mariadbQuery(first, 'CREATE TABLE gamedb.kept (id INT)');
    await first.stop();
    expect(fs.existsSync(path.join(dir, 'data'))).toBe(true);

    const second = await startMariaDB({ dir });
    stops.push(second.stop);
    expect(second.password).toBe(first.password);
    const tables = await mariadbQuery(second, 'SHOW TABLES FROM gamedb');
    expect(tables.map((r) => Object.values(r)[0] as string)).toEqual(['kept']);
  }, 60_000);

  it('Redis applies maxmemory: writes fail with OOM past the limit', async () => {
    const redis = await startRedis({ maxmemory: '2mb' });
    stops.push(redis.stop);
    const client = new Redis({
      host: redis.host,
      port: redis.port,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
    });
    await client.connect();
    try {
      expect(await client.config('GET', 'maxmemory')).toEqual(['maxmemory', String(2 * 1024 * 1024)]);
      const megabyte = 'x'.repeat(1024 * 1024);
      const fillUp = async () => {
        for (let i = 0; i < 10; i++) await client.set(`big:${i}`, megabyte);
      };
      await expect(fillUp()).rejects.toThrow(/OOM/);
    } finally {
      client.disconnect();
    }
  });

  it('PostgreSQL per-test instance answers and stop() cleans up', async () => {
    const postgres = await startPostgres();
    stops.push(postgres.stop);
    const client = new pg.Client({ connectionString: postgres.url });
    await client.connect();
    expect((await client.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    // stop() must not wait for this still-open client (fast shutdown).
    client.on('error', () => {});
    await postgres.stop();
    await client.end().catch(() => {});
    expect(isRunning(postgres.pid)).toBe(false);
    expect(fs.existsSync(postgres.dir)).toBe(false);
  });
});

describe('misbehaving dependencies', () => {
  it('the silent server accepts connections and never sends a byte', async () => {
    const silent = await startSilentServer();
    stops.push(silent.stop);
    const socket = net.connect({ host: silent.host, port: silent.port });
    let received = 0;
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.write('PING\r\n');
    socket.setTimeout(300);
    await new Promise<void>((resolve) => socket.once('timeout', resolve));
    socket.destroy();
    expect(received).toBe(0);
    expect(silent.connections()).toBe(1);
  });

  it('closedPort refuses connections', async () => {
    const port = await closedPort();
    const error = await new Promise<NodeJS.ErrnoException>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('error', resolve);
      socket.once('connect', () => {
        socket.destroy();
        resolve(new Error('connected'));
      });
    });
    expect(error.code).toBe('ECONNREFUSED');
  });

  it('smallFilesystem is a real mount that fills to 95% and goes away on stop()', async () => {
    const small = await smallFilesystem(8);
    stops.push(small.stop);
    expect(await fsp.readFile('/proc/mounts', 'utf8')).toContain(` ${small.path} `);
    const reached = await small.fill(95);
    const s = await fsp.statfs(small.path);
    const used = s.blocks - s.bfree;
    const percent = (used / (used + s.bavail)) * 100;
    expect(reached).toBeGreaterThanOrEqual(95);
    expect(percent).toBeGreaterThanOrEqual(95);
    expect(percent).toBeLessThan(100);
    expect(s.blocks * s.bsize).toBeLessThanOrEqual(8 * 1024 * 1024);

    await small.clear();
    expect(await small.usagePercent()).toBeLessThan(10);
    await small.stop();
    expect(await fsp.readFile('/proc/mounts', 'utf8')).not.toContain(` ${small.path} `);
    expect(fs.existsSync(small.path)).toBe(false);
  });
});
