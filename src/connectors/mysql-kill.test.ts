import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { services } from '../../test/harness/index.ts';
import { testConfig } from '../checks/test-support.ts';
import { NotAllowedError, type GameopsError } from '../core/index.ts';
import { connectMysql, withMysql } from './mysql.ts';
import { killDenied, killPrivilegeFor, killQuery } from './mysql-ops.ts';

describe('killing another user’s query (shared MariaDB)', () => {
  const rootConfig = () => {
    const { host, port, user, password, database } = services().mariadb;
    return testConfig({ mysql: { host, port, user, password, database } }).mysql!;
  };

  it('without the kill privilege is a NotAllowedError naming it; with the one stack.ts grants, it kills', async () => {
    const suffix = randomUUID().replaceAll('-', '').slice(0, 12);
    const monitor = `mon_${suffix}`;
    const password = `pw_${suffix}`;
    const marker = `gameops_${suffix}`;
    await withMysql(rootConfig(), undefined, async (admin) => {
      await admin.query('CREATE USER ?@? IDENTIFIED BY ?', [monitor, '%', password]);
      await admin.query('GRANT PROCESS ON *.* TO ?@?', [monitor, '%']);
      await admin.query('GRANT SELECT ON gamedb.* TO ?@?', [monitor, '%']);
    });
    const { host, port, database } = services().mariadb;
    const monitorConfig = testConfig({ mysql: { host, port, user: monitor, password, database } }).mysql!;
    const busy = await connectMysql(rootConfig());
    const sleeping = busy.query(`SELECT SLEEP(30) AS ${marker}`).catch((err: unknown) => err);
    try {
      await withMysql(monitorConfig, undefined, async (client) => {
        const expectation = {
          id: busy.threadId,
          user: 'root',
          statementPrefix: `SELECT SLEEP(30) AS ${marker}`,
        };
        let rows = await client.processlist();
        for (let i = 0; i < 50 && !rows.some((r) => r.id === busy.threadId); i++)
          rows = await client.processlist();
        const denied = (await killQuery(client, expectation).catch((e: unknown) => e)) as GameopsError;
        expect(denied).toBeInstanceOf(NotAllowedError);
        expect(denied.message).toContain(`not allowed to kill query ${busy.threadId} of user root`);
        expect(denied.message).toContain('CONNECTION ADMIN (MariaDB 10.5+');
        expect(denied.message).toContain('SUPER');

        const version = (await client.serverVersion()).version;
        const privilege = killPrivilegeFor(version);
        expect(privilege).toBe('CONNECTION ADMIN');
        await withMysql(rootConfig(), undefined, (admin) =>
          admin.query(`GRANT ${privilege} ON *.* TO ?@?`, [monitor, '%']),
        );
        // Global privileges apply from the next connection on.
        const killed = await withMysql(monitorConfig, undefined, (fresh) =>
          killQuery(fresh, expectation, { confirmMs: 5000 }),
        );
        expect(killed).toMatchObject({ outcome: 'killed', confirmed: true });
      });
      expect(String(await sleeping)).toContain('interrupted');
    } finally {
      busy.destroy();
      await withMysql(rootConfig(), undefined, (admin) =>
        admin.query('DROP USER IF EXISTS ?@?', [monitor, '%']),
      );
    }
  });

  it('maps only ER_KILL_DENIED_ERROR; versions before 10.5.2 (or unreadable ones) get SUPER', () => {
    expect(killDenied({ code: 'ER_KILL_DENIED_ERROR', errno: 1095 }, 'db:3306', 7, 'game')).toBeInstanceOf(
      NotAllowedError,
    );
    expect(
      killDenied(new Error('query failed: You are not owner of query 17'), 'db:3306', 7, 'game'),
    ).toBeInstanceOf(NotAllowedError);
    expect(killDenied({ code: 'ER_PARSE_ERROR', errno: 1064 }, 'db:3306', 7, 'game')).toBeUndefined();
    expect(killPrivilegeFor('10.11.19-MariaDB-0+deb12u1')).toBe('CONNECTION ADMIN');
    expect(killPrivilegeFor('10.5.2-MariaDB')).toBe('CONNECTION ADMIN');
    expect(killPrivilegeFor('10.5.1-MariaDB')).toBe('SUPER');
    expect(killPrivilegeFor('10.4.30-MariaDB')).toBe('SUPER');
    expect(killPrivilegeFor('11.4.2-MariaDB')).toBe('CONNECTION ADMIN');
    expect(killPrivilegeFor('garbage')).toBe('SUPER');
  });
});
