import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { services as sharedServices } from '../../../test/harness/index.ts';
import { runAndRecordDailyCheck } from '../../app/daily.ts';
import { CHECK_NAMES, type CheckResult } from '../../checks/index.ts';
import { testConfig } from '../../checks/test-support.ts';
import { ManualClock } from '../../core/index.ts';
import { openStore, type Store } from '../../store/index.ts';
import type { CheckOutcome } from '../model.ts';
import { createCatalog } from './index.ts';
import type { RunbookServices } from './services.ts';
import { createRunbookServices, resourcesFor, stepContext } from './test-support.ts';

const catalog = createCatalog();

describe('daily checks as check steps, recorded into the one check history', () => {
  let store: Store;
  let services: RunbookServices;
  const clock = new ManualClock('2026-03-01T09:00:00Z');

  beforeAll(async () => {
    const { mariadb, redis, alertmanager } = sharedServices();
    const config = testConfig({
      mysql: { host: mariadb.host, port: mariadb.port, user: mariadb.user, password: mariadb.password },
      redis: { host: redis.host, port: redis.port, password: redis.password },
      alertmanager: { url: alertmanager.url },
    });
    store = await openStore({ dataDir: mkdtempSync(join(tmpdir(), 'gameops-daily-rb-')), clock });
    services = createRunbookServices(resourcesFor(config, { store, clock }));
  });

  afterAll(async () => {
    await store?.close();
  });

  /** Runs every daily check as the runbook's steps would, returning each step's output (the values). */
  async function checkSteps(runId: string): Promise<Record<string, CheckOutcome>> {
    const outcomes: Record<string, CheckOutcome> = {};
    await Promise.all(
      CHECK_NAMES.map(async (name) => {
        const def = catalog.check(`daily.${name}`)!;
        outcomes[name] = await def.run(
          def.args.parse({}),
          stepContext(services, { runId, stepId: `checks.${name}` }),
        );
      }),
    );
    return outcomes;
  }

  async function record(runId: string, requestedBy: string, outcomes: Record<string, CheckOutcome>) {
    const def = catalog.action('daily.record')!;
    const args = def.args.parse({ runId, requestedBy, results: CHECK_NAMES.map((n) => outcomes[n]!.values) });
    return { def, args, out: await def.run(args, stepContext(services, { runId })) };
  }

  it('each check measures (deltas start afresh), unconfigured ones pass as skipped, and the run is recorded once', async () => {
    const outcomes = await checkSteps('run-one');
    expect(Object.keys(outcomes).sort()).toEqual([...CHECK_NAMES].sort());
    const database = outcomes['database']!;
    expect(['ok', 'warn']).toContain(database.status);
    const result = database.values['result'] as CheckResult;
    expect(result).toMatchObject({ name: 'database', values: { slowQueriesBaseline: true } });
    expect(outcomes['fleet']).toMatchObject({ status: 'ok', summary: 'skipped: not configured' });
    expect((outcomes['fleet']!.values['result'] as CheckResult).status).toBe('skipped');
    expect(outcomes['redis']!.values).toMatchObject({
      check: 'redis',
      status: expect.any(String) as unknown,
    });

    const { def, args, out } = await record('run-one', 'schedule:daily-check', outcomes);
    expect(out).toMatchObject({ id: 'run-one', recorded: true, results: CHECK_NAMES.length });
    const stored = await store.checkRuns.get('run-one');
    expect(stored).toMatchObject({ id: 'run-one', kind: 'daily', trigger: 'schedule', service: 'test-game' });
    expect(stored!.results.map((r) => r.name)).toEqual([...CHECK_NAMES]);
    expect(await def.verify!(args, stepContext(services))).toBe('done');
    // Recording again (a retry after a crash) records nothing new.
    expect(await def.run(args, stepContext(services))).toMatchObject({
      recorded: false,
      alreadyRecorded: true,
    });
    expect(await store.checkRuns.list({ service: 'test-game', environment: 'test' })).toHaveLength(1);
  });

  it('the next run compares with the recorded one, and so does `gameops check daily`', async () => {
    clock.advance(86_400_000);
    const outcomes = await checkSteps('run-two');
    const database = outcomes['database']!.values['result'] as CheckResult;
    expect(database.values['slowQueriesBaseline']).toBe(false);
    expect(typeof database.values['slowQueriesSinceLastCheck']).toBe('number');
    await record('run-two', 'token:abc', outcomes);
    expect((await store.checkRuns.get('run-two'))!.trigger).toBe('api');

    clock.advance(3_600_000);
    const cli = await runAndRecordDailyCheck(services.resources, 'cli');
    expect(cli.recorded).toBe(true);
    const fromCli = cli.run.results.find((r) => r.name === 'database')!;
    expect(fromCli.values['slowQueriesBaseline']).toBe(false);
    const history = await store.checkRuns.list({ service: 'test-game', environment: 'test' });
    expect(history.map((r) => r.id)).toEqual([cli.run.id, 'run-two', 'run-one']);
  });

  it('daily.record refuses what is not a check step output, and a check given twice', async () => {
    const def = catalog.action('daily.record')!;
    const ctx = stepContext(services);
    await expect(
      def.run(def.args.parse({ runId: 'bad', requestedBy: 'local:me', results: [{ hello: 1 }] }), ctx),
    ).rejects.toThrow(/results\[0\]: not a daily check step's output/);
    const outcomes = await checkSteps('run-three');
    const db = outcomes['database']!.values;
    await expect(
      def.run(def.args.parse({ runId: 'dup', requestedBy: 'local:me', results: [db, db] }), ctx),
    ).rejects.toThrow(/the database check is given twice/);
    expect(def.args.safeParse({ runId: 'x', requestedBy: 'y', results: [] }).error?.issues[0]?.path).toEqual([
      'results',
    ]);
  });
});

describe('generic actions', () => {
  const services = createRunbookServices(resourcesFor(testConfig({})));

  it('noop logs its message; sleep waits and stops at once when aborted', async () => {
    const noop = catalog.action('noop')!;
    const ctx = stepContext(services);
    expect(await noop.run(noop.args.parse({ message: 'hello' }), ctx)).toEqual({
      ok: true,
      message: 'hello',
    });
    expect(ctx.lines).toEqual(['hello']);
    const sleep = catalog.action('sleep')!;
    const slept = (await sleep.run(sleep.args.parse({ ms: 20 }), stepContext(services))) as {
      sleptMs: number;
    };
    expect(slept.sleptMs).toBeGreaterThanOrEqual(15);
    const cut = stepContext(services);
    const long = sleep.run(sleep.args.parse({ ms: 3_600_000 }), cut);
    cut.abort(new Error('cancelled by alice'));
    await expect(long).rejects.toThrow('cancelled by alice');
    expect(sleep.args.safeParse({ ms: -1 }).error?.issues[0]?.path).toEqual(['ms']);
  });

  it('the catalog has every action and check the built-in runbooks use, each with its effect', () => {
    const effects = Object.fromEntries(
      catalog
        .actions()
        .filter(
          (a) =>
            !a.name.startsWith('backup.') && !a.name.startsWith('maintenance.') && !a.name.startsWith('db.'),
        )
        .map((a) => [a.name, `${a.effect}${a.idempotent ? '' : ' once'}`]),
    );
    // Backups (issue #6): a restore is destructive (approval), the rest reads or writes only backups.
    expect(
      Object.fromEntries(
        catalog
          .actions()
          .filter((a) => a.name.startsWith('backup.'))
          .map((a) => [a.name, a.effect]),
      ),
    ).toEqual({
      'backup.create': 'mutating',
      'backup.verify': 'read-only',
      'backup.drill': 'mutating',
      'backup.restore': 'destructive',
      'backup.prune': 'mutating',
      'backup.latest': 'read-only',
      'backup.restore-plan': 'read-only',
    });
    // Database maintenance (issue #7): rotation and purge are destructive (approval), rotation runs once.
    expect(
      Object.fromEntries(
        catalog
          .actions()
          .filter((a) => a.name.startsWith('db.'))
          .map((a) => [a.name, `${a.effect}${a.idempotent ? '' : ' once'}`]),
      ),
    ).toEqual({
      'db.plan': 'read-only',
      'db.optimize': 'mutating',
      'db.analyze': 'mutating',
      'db.add-partitions': 'mutating',
      'db.rotate-partitions': 'destructive once',
      'db.purge': 'destructive',
      'db.query-cache': 'mutating',
    });
    // Planned maintenance (issue #7): every change can be run again (a resumed run finds what it made),
    // except the completion notice.
    expect(
      Object.fromEntries(
        catalog
          .actions()
          .filter((a) => a.name.startsWith('maintenance.'))
          .map((a) => [a.name, `${a.effect}${a.idempotent ? '' : ' once'}`]),
      ),
    ).toEqual({
      'maintenance.preflight': 'read-only',
      'maintenance.summarize': 'read-only',
      'maintenance.silence': 'mutating',
      'maintenance.unsilence': 'mutating',
      'maintenance.reopen': 'mutating',
      'maintenance.reopen-target': 'read-only',
      'maintenance.update': 'mutating',
      'maintenance.revert-version': 'mutating',
      'maintenance.announce': 'mutating once',
    });
    expect(effects).toEqual({
      noop: 'read-only',
      sleep: 'read-only',
      'fleet.status': 'read-only',
      'fleet.usage': 'read-only',
      'fleet.autoscaler': 'read-only',
      'fleet.plan-scale': 'read-only',
      'fleet.scale': 'mutating',
      'fleet.restart': 'mutating once',
      'fleet.diagnostics': 'read-only',
      'fleet.gate': 'mutating',
      'fleet.notice': 'mutating once',
      'fleet.drain-players': 'mutating',
      'fleet.restart-drained': 'mutating',
      'fleet.rotate-logs': 'mutating',
      'fleet.sample-memory': 'read-only',
      'fleet.memory-trend': 'read-only',
      'mysql.long-queries': 'read-only',
      'mysql.process': 'read-only',
      'mysql.slow-log-top': 'read-only',
      'mysql.zero-cardinality-indexes': 'read-only',
      'mysql.open-tables-in-use': 'read-only',
      'mysql.kill-query': 'destructive once',
      'prometheus.query': 'read-only',
      'prometheus.range': 'read-only',
      'daily.record': 'mutating',
      'notify.send': 'mutating once',
    });
    expect(catalog.checks().map((c) => c.name)).toEqual([
      ...CHECK_NAMES.map((n) => `daily.${n}`),
      'fleet.cpu',
      'fleet.ready',
      'maintenance.window-open',
    ]);
    expect(() => createCatalog({ actions: [catalog.action('noop')!] })).toThrow(/two actions are named noop/);
  });
});
