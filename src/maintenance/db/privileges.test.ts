/**
 * db.plan checks the maintenance user's grants on a real MariaDB (harness) before any approval: a user
 * with SELECT only is refused naming ALTER, DROP, DELETE and the statements needing them; the same plan
 * as a user with the grants (schema level) passes. The users are `maintenance.db.mysql`, so this also
 * shows the plan connects as that user rather than `mysql.user`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupKey } from '../../../test/support/backups.ts';
import { services } from '../../../test/harness/index.ts';
import { parseConfigText, readEnv, type GameopsConfig } from '../../config/index.ts';
import { withMysql } from '../../connectors/mysql.ts';
import { InputError, ManualClock, NotAllowedError } from '../../core/index.ts';
import { createCatalog } from '../../runbooks/actions/index.ts';
import { createRunbookServices, resourcesFor, stepContext } from '../../runbooks/actions/test-support.ts';
import type { DbPlan } from './plan.ts';
import { partitionNames, sqlOn } from './test-support.ts';

const NOW = '2026-11-26T12:00:00Z';
const HEX = randomBytes(4).toString('hex');
const DB = `dbp_${HEX}`;
const READER = `gops_ro_${HEX}`;
const MAINTAINER = `gops_mt_${HEX}`;
const PASSWORD = `pw-${randomBytes(8).toString('hex')}`;
const catalog = createCatalog();
let dir: string;
let root: GameopsConfig;

async function configAs(
  user?: string,
  purge: Array<Record<string, unknown>> = [
    { table: 'sessions', column: 'seen', olderThan: '30d', batchSize: 100 },
  ],
): Promise<GameopsConfig> {
  const { mariadb } = services();
  const key = await backupKey();
  writeFileSync(join(dir, 'backup.key'), `${key.identity}\n`, { mode: 0o600 });
  const doc = {
    service: { name: 'test-game', environment: 'test' },
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
      db: {
        optimize: { tables: ['sessions'] },
        partitions: [
          { table: 'logs', unit: 'month', ahead: 2, retain: 3 },
          { table: 'compact_logs', unit: 'month', ahead: 2, retain: 12 },
        ],
        purge,
        ...(user ? { mysql: { user, password: 'env:MP' } } : {}),
      },
    },
  };
  return parseConfigText(JSON.stringify(doc), 'test.yaml', readEnv({ P: mariadb.password, MP: PASSWORD }))
    .config;
}

async function plan(cfg: GameopsConfig, args: Record<string, unknown> = {}): Promise<DbPlan> {
  const def = catalog.action('db.plan')!;
  const clock = new ManualClock(NOW);
  const ctx = stepContext(createRunbookServices(resourcesFor(cfg, { clock })), { clock });
  return (await def.run(def.args.parse(args), ctx)) as DbPlan;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gameops-dbpriv-'));
  root = await configAs();
  await withMysql({ ...root.mysql!, database: 'mysql' }, undefined, (c) =>
    c.query(`CREATE DATABASE \`${DB}\``),
  );
  const sql = (text: string): Promise<unknown> => sqlOn(root, text);
  await sql(
    `CREATE TABLE logs (id INT NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (id, created_at)) ENGINE=InnoDB
       PARTITION BY RANGE (TO_DAYS(created_at)) (
         PARTITION p_2026_06 VALUES LESS THAN (TO_DAYS('2026-07-01')),
         PARTITION p_2026_07 VALUES LESS THAN (TO_DAYS('2026-08-01')),
         PARTITION p_2026_12 VALUES LESS THAN (TO_DAYS('2027-01-01')))`,
  );
  await sql(
    `CREATE TABLE compact_logs (id INT NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (id, created_at)) ENGINE=InnoDB
       PARTITION BY RANGE (TO_DAYS(created_at)) (
         PARTITION p202610 VALUES LESS THAN (TO_DAYS('2026-11-01')),
         PARTITION p202611 VALUES LESS THAN (TO_DAYS('2026-12-01')),
         PARTITION pmax VALUES LESS THAN MAXVALUE)`,
  );
  await sql(`INSERT INTO logs VALUES (1, '2026-06-10'), (2, '2026-07-10'), (3, '2026-11-10')`);
  await sql(`CREATE TABLE sessions (id INT PRIMARY KEY, seen DATETIME NOT NULL, KEY (seen)) ENGINE=InnoDB`);
  await sql(`INSERT INTO sessions VALUES (1, '2026-09-01'), (2, '2026-11-25')`);
  for (const user of [READER, MAINTAINER]) {
    await sql(`CREATE USER '${user}'@'%' IDENTIFIED BY '${PASSWORD}'`);
    await sql(`GRANT SELECT ON \`${DB}\`.* TO '${user}'@'%'`);
  }
  await sql(`GRANT ALTER, CREATE, DROP, INSERT, DELETE, LOCK TABLES ON \`${DB}\`.* TO '${MAINTAINER}'@'%'`);
  await sql(`GRANT RELOAD ON *.* TO '${MAINTAINER}'@'%'`);
}, 30_000);

afterAll(async () => {
  if (!root) return;
  for (const user of [READER, MAINTAINER])
    await sqlOn(root, `DROP USER IF EXISTS '${user}'@'%'`).catch(() => undefined);
  await sqlOn(root, `DROP DATABASE IF EXISTS \`${DB}\``).catch(() => undefined);
});

describe('db.plan privilege check', () => {
  it('refuses a SELECT-only maintenance user before any approval, naming each privilege and statement', async () => {
    const cfg = await configAs(READER);
    const err = await plan(cfg).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotAllowedError);
    const message = (err as Error).message;
    expect(message).toContain(`${READER}@`);
    expect(message).toMatch(/ALTER \(for [^)]*ALTER TABLE dbp_\w+\.logs (ADD|REORGANIZE) PARTITION/);
    expect(message).toMatch(/DROP \(for [^)]*rotation of dbp_\w+\.logs PARTITION \(p_2026_06\)/);
    expect(message).toMatch(/DELETE \(for DELETE FROM dbp_\w+\.sessions\)/);
    expect(message).toContain('LOCK TABLES');
    expect(message).toContain('maintenance.db.mysql');
    expect(message).not.toContain(PASSWORD);
  });

  it('on a dry run keeps the plan and notes what would fail', async () => {
    const result = await plan(await configAs(READER), { dryRun: true });
    expect(result.work).toBe(false);
    expect(result.statements.some((s) => /DROP PARTITION `p_2026_06`/.test(s))).toBe(true);
    expect(result.notes.find((n) => n.startsWith('would fail:'))).toMatch(/lacks privileges .*ALTER/);
  });

  it('passes for a user holding the grants at schema level (and RELOAD globally)', async () => {
    const result = await plan(await configAs(MAINTAINER));
    expect(result.work).toBe(true);
    expect(result.rotate.map((r) => r.partition)).toEqual(['p_2026_06', 'p_2026_07']);
    expect(result.purge.map((p) => p.table)).toEqual(['sessions']);
    expect(result.notes.join('\n')).not.toContain('would fail');
  });
});

describe('db.plan names', () => {
  it("new partitions follow the table's pYYYYMM naming; the p_YYYY_MM table keeps its own", async () => {
    const result = await plan(await configAs(MAINTAINER));
    const added = (table: string): string[] =>
      result.addPartitions.find((a) => a.table === table)?.partitions.map((p) => p.name) ?? [];
    expect(added('compact_logs')).toEqual(['p202612', 'p202701']);
    expect(added('logs')).toEqual(['p_2027_01']);
    // The add step, as the maintenance user, takes those names and adds them.
    const def = catalog.action('db.add-partitions')!;
    const cfg = await configAs(MAINTAINER);
    const clock = new ManualClock(NOW);
    const ctx = stepContext(createRunbookServices(resourcesFor(cfg, { clock })), { clock });
    await def.run(
      def.args.parse({ tables: result.addPartitions.filter((a) => a.table === 'compact_logs') }),
      ctx,
    );
    expect(await partitionNames(root, DB, 'compact_logs')).toEqual([
      'p202610',
      'p202611',
      'p202612',
      'p202701',
      'pmax',
    ]);
  });

  it('a purge rule on a database that does not exist says so (not "not a table")', async () => {
    const cfg = await configAs(MAINTAINER, [
      { database: `nope_${HEX}`, table: 'game_logs', column: 'at', olderThan: '30d' },
    ]);
    const err = await plan(cfg).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toBe(
      `maintenance.db.purge[0].table: the database nope_${HEX} (of nope_${HEX}.game_logs) does not exist on the server`,
    );
  });
});
