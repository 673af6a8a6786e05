import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closedPort,
  services,
  startSilentServer,
  type SilentServerHandle,
} from '../../test/harness/index.ts';
import { testConfig } from '../checks/test-support.ts';
import { InputError, UnavailableError } from '../core/index.ts';
import { connectMysql, withMysql } from './mysql.ts';

describe('MySQL/MariaDB connector (shared MariaDB)', () => {
  const config = () => {
    const { host, port, user, password, database } = services().mariadb;
    return testConfig({ mysql: { host, port, user, password, database } }).mysql!;
  };

  it('reads version, variables, status and the process list', async () => {
    await withMysql(config(), undefined, async (client) => {
      const version = await client.serverVersion();
      expect(version.flavour).toBe('MariaDB');
      expect(version.version).toMatch(/^\d+\.\d+\.\d+/);
      const variables = await client.globalVariables(['max_connections', 'no_such_variable']);
      expect(Number(variables['max_connections'])).toBeGreaterThan(0);
      expect(variables).not.toHaveProperty('no_such_variable');
      const status = await client.globalStatus();
      expect(status.threadsConnected).toBeGreaterThanOrEqual(1);
      expect(status.threadsRunning).toBeGreaterThanOrEqual(1);
      expect(status.uptimeSeconds).toBeGreaterThanOrEqual(0);
      expect(status.slowQueries).toBeGreaterThanOrEqual(0);
      expect(status.maxUsedConnections).toBeGreaterThanOrEqual(1);
    });
  });

  it('lists other working threads, not itself nor sleeping connections', async () => {
    const marker = `gameops_${randomUUID().replaceAll('-', '')}`;
    const busy = await connectMysql(config());
    const idle = await connectMysql(config());
    const sleeping = busy.query(`SELECT SLEEP(30) AS ${marker}`).catch((err: unknown) => err);
    try {
      await withMysql(config(), undefined, async (client) => {
        let rows = await client.processlist();
        for (let i = 0; i < 50 && !rows.some((r) => r.id === busy.threadId); i++)
          rows = await client.processlist();
        const mine = rows.find((r) => r.id === busy.threadId);
        expect(mine).toMatchObject({ command: 'Query', user: 'root', db: 'gamedb' });
        expect(mine?.info).toContain(marker);
        expect(rows.some((r) => r.id === client.threadId)).toBe(false);
        expect(rows.some((r) => r.id === idle.threadId)).toBe(false);
        await client.query('KILL ?', [busy.threadId]);
      });
      expect(await sleeping).toBeInstanceOf(Error);
    } finally {
      busy.destroy();
      await idle.close();
    }
  });

  it('a bad password is an InputError that names the server and never shows the password', async () => {
    const { mariadb } = services();
    const password = `wrong-${randomUUID()}`;
    const bad = testConfig({
      mysql: { host: mariadb.host, port: mariadb.port, user: mariadb.user, password },
    }).mysql!;
    const err = await connectMysql(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    const error = err as InputError;
    expect(error.message).toContain(`${mariadb.host}:${mariadb.port}`);
    expect(error.message).toMatch(/Access denied/);
    expect(error.message).not.toContain(password);
    expect(JSON.stringify(error.details)).not.toContain(password);
  });

  it('an unknown database is an InputError', async () => {
    const err = await connectMysql({ ...config(), database: `nope_${randomUUID().slice(0, 8)}` }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(/Unknown database/);
  });

  it('a query over its deadline fails with UnavailableError and drops the connection', async () => {
    const client = await connectMysql(config());
    const started = performance.now();
    const err = await client.query('SELECT SLEEP(20)', [], { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain('did not answer within 300 ms');
    expect(performance.now() - started).toBeLessThan(5_000);
    // The server notices the dropped client and ends the statement; make sure it is gone.
    await withMysql(config(), undefined, async (admin) => {
      const rows = await admin.processlist();
      const left = rows.find((r) => r.id === client.threadId);
      if (left) await admin.query('KILL ?', [left.id]).catch(() => undefined);
    });
    await client.close();
  });

  it('closing while a query runs settles the query instead of leaving it pending', async () => {
    const client = await connectMysql(config());
    const pending = client.query('SELECT SLEEP(20)').catch((e: unknown) => e);
    client.destroy();
    expect(await pending).toBeInstanceOf(UnavailableError);
    await withMysql(config(), undefined, async (admin) => {
      await admin.query('KILL ?', [client.threadId]).catch(() => undefined);
    });
  });
});

describe('MySQL/MariaDB connector with a dependency that is down or hangs', () => {
  let silent: SilentServerHandle;
  beforeAll(async () => {
    silent = await startSilentServer();
  });
  afterAll(async () => {
    await silent.stop();
  });

  it('a closed port is an UnavailableError naming host:port', async () => {
    const port = await closedPort();
    const cfg = testConfig({
      mysql: { host: '127.0.0.1', port, user: 'monitor', password: 'not-used-secret' },
    }).mysql!;
    const err = await connectMysql(cfg).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toBe(
      `MySQL/MariaDB at 127.0.0.1:${port}: connect failed: connection refused (ECONNREFUSED)`,
    );
  });

  it('a server that never answers: the abort signal ends the handshake at once', async () => {
    const cfg = testConfig({
      mysql: { host: silent.host, port: silent.port, user: 'monitor', password: 'not-used-secret' },
    }).mysql!;
    const started = performance.now();
    const err = await connectMysql(cfg, { signal: AbortSignal.timeout(300) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('a server that never answers: connectTimeout ends the handshake without a signal', async () => {
    const cfg = testConfig({
      mysql: { host: silent.host, port: silent.port, user: 'monitor', password: 'not-used-secret' },
    }).mysql!;
    const err = await connectMysql(cfg, { connectTimeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain(`${silent.host}:${silent.port}`);
  });
});
