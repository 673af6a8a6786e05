/**
 * The db-maintenance runbook: its shape (one approval covering every task step, each task skipped when the
 * plan found nothing), and a run through the engine on a real MariaDB: plan → approval naming what will
 * happen → partitions added, old ones archived and dropped, sessions purged.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { services } from '../../../test/harness/index.ts';
import { backupKey, backupsSection, bootstrapIn } from '../../../test/support/backups.ts';
import { shutdown, type Resources } from '../../app/index.ts';
import { openRunbooks } from '../../app/runbooks.ts';
import { withMysql } from '../../connectors/mysql.ts';
import { ManualClock } from '../../core/index.ts';
import { createCatalog } from '../actions/index.ts';
import { compileRunbook } from '../compile.ts';
import type { Engine } from '../engine.ts';
import type { ActionStep, ApprovalStep, Actor, RunView } from '../model.ts';
import { dbMaintenanceRunbook, dbMaintenanceSteps } from './db-maintenance.ts';

const admin: Actor = { id: 'local:tester', name: 'tester', role: 'admin', kind: 'local' };
const TASKS = ['db-add-partitions', 'db-rotate', 'db-purge', 'db-optimize', 'db-analyze', 'db-query-cache'];

describe('db-maintenance runbook (shape)', () => {
  const runbook = compileRunbook(dbMaintenanceRunbook(), createCatalog(), { kind: 'builtin' });

  it('plan, one approval covering every task step (asked only when there is work), then the tasks in order', () => {
    expect(runbook.steps.map((s) => s.id)).toEqual(['db-plan', 'approve', ...TASKS]);
    const approve = runbook.steps.find((s) => s.id === 'approve') as ApprovalStep;
    expect(approve.covers).toEqual(TASKS);
    expect(approve.when).toEqual({ value: '${{ steps.db-plan.output.work }}', op: 'truthy' });
    expect(approve.message).toMatch(
      /^\$\{\{ steps\.db-plan\.output\.summary \}\} Approve: gameops runs approve/,
    );
    const rotate = runbook.steps.find((s) => s.id === 'db-rotate') as ActionStep;
    expect(rotate.args).toEqual({ partitions: '${{ steps.db-plan.output.rotate }}' });
    expect(rotate.when).toEqual({ value: '${{ steps.db-plan.output.run.rotate }}', op: 'truthy' });
    expect((runbook.steps[0] as ActionStep).args).toEqual({
      dryRun: '${{ params.dryRun }}',
      duringPlay: '${{ params.duringPlay }}',
    });
    expect(runbook.runBy).toEqual(['operator']);
    const catalog = createCatalog();
    expect(catalog.action('db.rotate-partitions')).toMatchObject({
      effect: 'destructive',
      idempotent: false,
    });
    expect(catalog.action('db.purge')).toMatchObject({ effect: 'destructive', idempotent: true });
    expect(catalog.action('db.plan')).toMatchObject({ effect: 'read-only' });
  });

  it('dbMaintenanceSteps: another prefix and what the plan step needs, for the maintenance runbook', () => {
    const steps = dbMaintenanceSteps({ prefix: 'tasks-db', needs: ['backup-verify'] });
    expect(steps.planId).toBe('tasks-db-plan');
    expect(steps.planStep).toMatchObject({
      id: 'tasks-db-plan',
      needs: ['backup-verify'],
      action: 'db.plan',
    });
    expect(steps.covers).toEqual(TASKS.map((t) => t.replace(/^db-/, 'tasks-db-')));
    expect(steps.taskSteps[0]).toMatchObject({
      args: { tables: '${{ steps.tasks-db-plan.output.addPartitions }}' },
    });
    expect(dbMaintenanceSteps('x').planId).toBe('x-plan');
  });
});

describe('db-maintenance runbook on a real MariaDB', () => {
  const db = `dbr_${randomBytes(4).toString('hex')}`;
  let dir: string;
  let resources: Resources;
  let engine: Engine;
  const sql = (text: string) => withMysql(resources.config.mysql!, undefined, (c) => c.query(text));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gameops-dbm-runbook-'));
    const { mariadb } = services();
    process.env['DBM_TEST_PASSWORD'] = mariadb.password;
    resources = await bootstrapIn(
      dir,
      [
        `mysql: { host: ${mariadb.host}, port: ${mariadb.port}, user: ${mariadb.user}, password: "env:DBM_TEST_PASSWORD", database: ${db} }`,
        ...backupsSection(dir, await backupKey(), { storage: join(dir, 'store'), files: [dir] }),
        'maintenance:',
        '  db:',
        '    partitions: [{ table: game_logs, unit: month, ahead: 1, retain: 2 }]',
        '    purge: [{ table: player_sessions, column: last_activity, olderThan: 30d, batchSize: 3 }]',
      ],
      { clock: new ManualClock('2026-11-26T12:00:00Z') },
    );
    await withMysql({ ...resources.config.mysql!, database: 'mysql' }, undefined, (c) =>
      c.query(`CREATE DATABASE \`${db}\``),
    );
    await sql(
      `CREATE TABLE game_logs (id INT NOT NULL AUTO_INCREMENT, created_at DATETIME NOT NULL, msg VARCHAR(50),
         PRIMARY KEY (id, created_at)) PARTITION BY RANGE (TO_DAYS(created_at)) (
         PARTITION p_2026_07 VALUES LESS THAN (TO_DAYS('2026-08-01')),
         PARTITION p_2026_08 VALUES LESS THAN (TO_DAYS('2026-09-01')),
         PARTITION p_2026_09 VALUES LESS THAN (TO_DAYS('2026-10-01')),
         PARTITION p_2026_10 VALUES LESS THAN (TO_DAYS('2026-11-01')),
         PARTITION p_2026_11 VALUES LESS THAN (TO_DAYS('2026-12-01')))`,
    );
    await sql(
      `INSERT INTO game_logs (created_at, msg) SELECT '2026-07-01' + INTERVAL seq DAY, CONCAT('m', seq) FROM seq_0_to_149`,
    );
    await sql(
      `CREATE TABLE player_sessions (id INT AUTO_INCREMENT PRIMARY KEY, last_activity DATETIME NOT NULL, KEY (last_activity))`,
    );
    await sql(
      `INSERT INTO player_sessions (last_activity) SELECT '2026-09-01' + INTERVAL seq DAY FROM seq_0_to_86`,
    );
    engine = await openRunbooks(resources);
  }, 30_000);

  afterAll(async () => {
    if (resources) {
      await sql(`DROP DATABASE IF EXISTS \`${db}\``).catch(() => undefined);
      await shutdown(resources);
    }
    delete process.env['DBM_TEST_PASSWORD'];
    rmSync(dir, { recursive: true, force: true });
  });

  const step = (view: RunView, id: string) => view.steps.find((s) => s.id === id)!;

  it('dryRun: the plan step logs every statement that would run; no approval, every task skipped, nothing changed', async () => {
    const started = await engine.start(
      { runbook: 'db-maintenance', params: { dryRun: true }, trigger: 'cli' },
      admin,
    );
    const view = (await engine.runUntilIdle({ runId: started.id }))!;
    expect(view.status).toBe('succeeded');
    expect(step(view, 'approve').status).toBe('skipped');
    for (const id of TASKS) expect(step(view, id).status, id).toBe('skipped');
    const events = await engine.events(view.id, 0, admin, { waitMs: 0 });
    const lines = events.filter((e) => e.type === 'log').map((e) => e.message ?? '');
    expect(lines).toContain(`would run: ALTER TABLE \`${db}\`.\`game_logs\` DROP PARTITION \`p_2026_07\``);
    expect(
      lines.some((l) => l.startsWith(`would run: DELETE FROM \`${db}\`.\`player_sessions\` WHERE`)),
    ).toBe(true);
    expect((step(view, 'db-plan').output as { summary: string }).summary).toMatch(
      /^Dry run \(nothing is done\): database maintenance of/,
    );
    expect(Number((await sql('SELECT COUNT(*) AS n FROM game_logs'))[0]!['n'])).toBe(150);
  });

  it('stops at the approval naming the partitions and cutoffs; after approval adds, archives and drops, purges', async () => {
    const started = await engine.start(
      { runbook: 'db-maintenance', params: { duringPlay: true }, trigger: 'cli' },
      admin,
    );
    const waiting = (await engine.runUntilIdle({ runId: started.id }))!;
    expect(waiting.status, JSON.stringify(waiting.steps.map((s) => [s.id, s.status, s.error]))).toBe(
      'waiting',
    );
    const approve = step(waiting, 'approve');
    expect(approve.approval?.message).toMatch(
      new RegExp(
        `^Database maintenance of ${db} on MariaDB .*: archive then drop 2 partition\\(s\\) \\(${db}.game_logs.p_2026_07 ≈\\d+ rows, ${db}.game_logs.p_2026_08 ≈\\d+ rows\\); ` +
          `add p_2026_12 to ${db}.game_logs; purge ${db}.player_sessions rows with last_activity < 2026-10-27 12:00:00 UTC`,
      ),
    );
    // The approval binds the exact partition names.
    const covered = approve.approval!.covers.find((c) => c.id === 'db-rotate')!;
    expect(covered.target).toBe(
      `partitions ${db}.game_logs.p_2026_07, ${db}.game_logs.p_2026_08 of MySQL/MariaDB at ${resources.config.mysql!.host}:${resources.config.mysql!.port}`,
    );
    expect(step(waiting, 'db-rotate').status).toBe('pending');
    expect(Number((await sql('SELECT COUNT(*) AS n FROM game_logs'))[0]!['n'])).toBe(150);

    await engine.decide(
      { runId: waiting.id, stepId: 'approve', decision: 'approve', planHash: approve.approval!.planHash },
      admin,
    );
    const done = (await engine.runUntilIdle({ runId: waiting.id }))!;
    expect(done.status, JSON.stringify(done.steps.map((s) => [s.id, s.status, s.error]))).toBe('succeeded');
    expect(done.steps.map((s) => [s.id, s.status])).toEqual([
      ['db-plan', 'succeeded'],
      ['approve', 'succeeded'],
      ['db-add-partitions', 'succeeded'],
      ['db-rotate', 'succeeded'],
      ['db-purge', 'succeeded'],
      ['db-optimize', 'skipped'],
      ['db-analyze', 'succeeded'],
      ['db-query-cache', 'skipped'],
    ]);
    const rotated = (
      step(done, 'db-rotate').output as { rotated: Array<{ partition: string; archive: { rows: number } }> }
    ).rotated;
    expect(rotated.map((r) => [r.partition, r.archive.rows])).toEqual([
      ['p_2026_07', 31],
      ['p_2026_08', 31],
    ]);
    const parts = await sql(
      `SELECT PARTITION_NAME AS p FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = '${db}' AND TABLE_NAME = 'game_logs' ORDER BY PARTITION_ORDINAL_POSITION`,
    );
    expect(parts.map((r) => String(r['p']))).toEqual(['p_2026_09', 'p_2026_10', 'p_2026_11', 'p_2026_12']);
    expect(step(done, 'db-purge').output).toMatchObject({ rules: [{ rows: 57, batches: 20 }] });
    expect(Number((await sql('SELECT COUNT(*) AS n FROM player_sessions'))[0]!['n'])).toBe(30);

    // Run again: nothing left to do, no approval asked, every task skipped.
    const again = await engine.start(
      { runbook: 'db-maintenance', params: { duringPlay: true }, trigger: 'cli' },
      admin,
    );
    const idle = (await engine.runUntilIdle({ runId: again.id }))!;
    expect(idle.status, JSON.stringify(step(idle, 'db-plan').output)).toBe('succeeded');
    expect(step(idle, 'approve').status).toBe('skipped');
    for (const id of TASKS) expect(step(idle, id).status, id).toBe('skipped');
  });
});
