/**
 * The `maintenance` and `maintenance-reopen` runbooks: their shape against the real catalog, their
 * parameters, and how the engine runs them (a real store and engine; the fleet, backup, database and
 * alert actions replaced by fakes that record their calls and answer canned outputs, with the real
 * argument schemas, so every argument the runbook passes is checked). test/e2e/maintenance.e2e.test.ts
 * runs the whole thing on real servers.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sqlitePlace, type Cleanups } from '../../../test/support/store-places.ts';
import { ManualClock, UnavailableError } from '../../core/index.ts';
import { openStore, type Store } from '../../store/index.ts';
import { createCatalog } from '../actions/index.ts';
import { compileRunbook } from '../compile.ts';
import { actors, testEngine } from '../engine.fixture.ts';
import type { ActionDefinition, ActionStep, Catalog, CheckDefinition, RunView } from '../model.ts';
import { dbMaintenanceSteps } from './db-maintenance.ts';
import { maintenanceParams, maintenanceReopenRunbook, maintenanceRunbook } from './maintenance.ts';

const catalog = createCatalog();
const maintenance = compileRunbook(maintenanceRunbook(), catalog, { kind: 'builtin' });
const reopen = compileRunbook(maintenanceReopenRunbook(), catalog, { kind: 'builtin' });

const WINDOW = 'mw-20261203T0400Z-abc123';
const START = '2026-12-03T04:00:00.000Z';
const END = '2026-12-03T06:00:00.000Z';

function actionStep(id: string): ActionStep {
  const step = maintenance.steps.find((s) => s.id === id);
  expect(step?.kind, id).toBe('action');
  return step as ActionStep;
}

describe('maintenance runbook: shape', () => {
  it('reads first, asks the approval, waits for the start, then changes things in order; the tasks need the verified backup', () => {
    expect(maintenance.steps.filter((s) => !s.id.includes('.')).map((s) => s.id)).toEqual([
      'preflight',
      'db-plan',
      'summary',
      'approve',
      'wait-start',
      'silence',
      'close',
      'drain',
      'backup',
      'verify',
      'db-add-partitions',
      'db-rotate',
      'db-purge',
      'db-optimize',
      'db-analyze',
      'db-query-cache',
      'rotate-logs',
      'update',
      'restart-drained',
      'health',
      'record-health',
      'open',
      'unsilence',
      'done',
    ]);
    const approve = maintenance.steps.find((s) => s.id === 'approve');
    expect(approve).toMatchObject({
      kind: 'approval',
      approvers: ['operator'],
      expiresInMs: 30 * 3_600_000,
      when: { value: '${{ steps.summary.output.approval }}', op: 'truthy' },
    });
    expect([...(approve as { covers: string[] }).covers].sort()).toEqual(
      [...dbMaintenanceSteps().covers, 'update'].sort(),
    );
    for (const id of ['db-optimize', 'db-rotate', 'db-purge', 'rotate-logs', 'update'])
      expect(actionStep(id).needs, id).toContain('verify');
    expect(maintenance.steps.find((s) => s.id === 'wait-start')).toMatchObject({
      kind: 'wait',
      intervalMs: 1000,
      until: { check: 'maintenance.window-open' },
    });
    expect(maintenance.runBy).toEqual(['operator']);
  });

  it('every step that changes something compensates on failure; each undo is the one for its step', () => {
    for (const step of maintenance.steps) {
      if (step.kind !== 'action') continue;
      const effect = catalog.action(step.action)!.effect;
      if (effect === 'read-only') continue;
      const expected = ['unsilence', 'done', 'record-health'].includes(step.id) ? 'continue' : 'compensate';
      expect(step.onFailure, step.id).toBe(expected);
    }
    const undo = Object.fromEntries(
      maintenance.steps
        .filter((s): s is ActionStep => s.kind === 'action' && s.compensate !== undefined)
        .map((s) => [s.id, s.compensate!]),
    );
    expect(undo).toEqual({
      silence: {
        action: 'maintenance.unsilence',
        args: {
          window: '${{ params.window }}',
          runId: '${{ run.id }}',
          silenceId: '${{ steps.silence.output.silenceId }}',
          suppressionId: '${{ steps.silence.output.suppressionId }}',
          hold: '${{ params.hold }}',
        },
      },
      close: {
        action: 'maintenance.reopen',
        args: { window: '${{ params.window }}', hold: '${{ params.hold }}' },
      },
      drain: { action: 'fleet.restart-drained', args: {} },
      update: {
        action: 'maintenance.revert-version',
        args: {
          version: '${{ params.version }}',
          previousVersion: '${{ steps.preflight.output.previousVersion }}',
        },
      },
    });
    for (const child of maintenance.steps.filter((s) => s.id.startsWith('health.')))
      expect(child, child.id).toMatchObject({ kind: 'check', onFailure: 'compensate' });
  });

  it('parameters: exactly MaintenanceRunParams with defaults, and errors that name the field', () => {
    expect(maintenanceParams.parse({ startsAt: START, endsAt: END })).toEqual({
      window: null,
      startsAt: START,
      endsAt: END,
      tasks: [],
      version: null,
      message: null,
      hold: false,
    });
    const issue = (p: Record<string, unknown>) => {
      const r = maintenanceParams.safeParse({ startsAt: START, endsAt: END, ...p });
      return r.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };
    expect(issue({ endsAt: START })).toEqual([`endsAt: must be after startsAt (${START})`]);
    expect(issue({ tasks: ['update'] })).toEqual(['version: task update needs the version to roll to']);
    expect(issue({ version: '1.1.0' })).toEqual([
      'version: a version (1.1.0) is only used by task update, which is not in tasks',
    ]);
    expect(issue({ tasks: ['logs', 'logs'] })).toEqual(['tasks: a task is listed twice']);
    expect(issue({ window: 'next-thursday' })?.[0]).toMatch(/^window: a window id such as mw-/);
    expect(issue({ startsAt: 'tomorrow' })?.[0]).toMatch(/^startsAt: an ISO 8601 time with its offset/);
    expect(issue({ tasks: ['backup'] })?.[0]).toMatch(/^tasks\.0: /);
  });

  it('maintenance-reopen: the window or run checked first, gate open, drained instances restarted, the window or run silences ended', () => {
    expect(reopen.steps.map((s) => [s.id, (s as ActionStep).action])).toEqual([
      ['target', 'maintenance.reopen-target'],
      ['open', 'fleet.gate'],
      ['restart-drained', 'fleet.restart-drained'],
      ['unsilence', 'maintenance.unsilence'],
    ]);
    expect(reopen.params.safeParse({}).error?.issues[0]?.message).toMatch(/give the held window/);
    expect(reopen.params.parse({ run: 'run_1' })).toEqual({ window: null, run: 'run_1' });
  });
});

interface Call {
  action: string;
  stepId: string;
  args: Record<string, unknown>;
}

/** Canned outputs of the fakes, by action. */
function canned(tasks: string[]): Record<string, unknown> {
  return {
    'maintenance.preflight': {
      label: `window ${WINDOW}`,
      playersMessage: 'Maintenance 04:00–06:00 UTC: logins are closed.',
      previousVersion: '1.0.0',
      version: tasks.includes('update') ? '1.1.0' : null,
      playersOnline: 3,
      update: tasks.includes('update'),
      summary: '3 player(s) online on 2/2 ready instance(s), version 1.0.0',
    },
    'maintenance.silence': { silenceId: 'sil-1', suppressionId: 'sw-1', matchers: [], endsAt: END },
    'fleet.drain-players': { status: 'empty', kicked: true, needsRestart: ['game-1'] },
    'backup.create': { id: 'bk-20261203T040100Z-a1b2c3' },
  };
}

/**
 * The catalog with every action the runbook calls replaced by a fake that records its call (the real
 * argument schema still parses the arguments) and answers `outputs[action]`, or fails when the action is
 * in `failing`. The daily checks answer ok unless in `failing`; window-open and summarize are the real ones.
 */
function fakeCatalog(calls: Call[], outputs: Record<string, unknown>, failing: Set<string>): Catalog {
  const actions = new Map<string, ActionDefinition>(
    catalog.actions().map((real) => [
      real.name,
      // The approver's summary is pure: the real one.
      real.name === 'maintenance.summarize'
        ? real
        : {
            ...real,
            verify: undefined,
            async run(args: unknown, ctx) {
              calls.push({ action: real.name, stepId: ctx.stepId, args: args as Record<string, unknown> });
              if (failing.has(real.name)) throw new UnavailableError(`fake ${real.name} failed`);
              return Promise.resolve(outputs[real.name] ?? {});
            },
          },
    ]),
  );
  const checks = new Map<string, CheckDefinition>(
    catalog.checks().map((real) => [
      real.name,
      real.name === 'maintenance.window-open'
        ? real
        : {
            ...real,
            async run() {
              const fail = failing.has(real.name);
              return Promise.resolve({
                status: fail ? ('fail' as const) : ('ok' as const),
                summary: fail ? `fake ${real.name} failed` : 'fine',
                values: {
                  check: real.name.slice('daily.'.length),
                  status: fail ? 'fail' : 'ok',
                  result: {
                    name: real.name.slice('daily.'.length),
                    status: fail ? 'fail' : 'ok',
                    summary: 'fake',
                    durationMs: 1,
                    values: {},
                    findings: [],
                  },
                },
              });
            },
          },
    ]),
  );
  return {
    action: (name) => actions.get(name),
    check: (name) => checks.get(name),
    actions: () => [...actions.values()],
    checks: () => [...checks.values()],
  };
}

describe('maintenance runbook run by the engine (fake actions that record their calls)', () => {
  let cleanups: Cleanups;
  let store: Store;
  let clock: ManualClock;

  beforeEach(async () => {
    cleanups = [];
    store = await openStore(sqlitePlace(cleanups).options);
    clock = new ManualClock('2026-12-03T03:00:00Z');
  });

  afterEach(async () => {
    await store.close();
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  async function start(params: Record<string, unknown>, failing: string[] = []) {
    const calls: Call[] = [];
    const tasks = (params['tasks'] as string[] | undefined) ?? [];
    const engine = testEngine({
      store,
      clock,
      catalog: fakeCatalog(calls, canned(tasks), new Set(failing)),
      runbooks: [maintenance],
    });
    const run = await engine.start(
      {
        runbook: 'maintenance',
        params: { window: WINDOW, startsAt: START, endsAt: END, ...params },
        trigger: 'api',
      },
      actors.alice,
    );
    const idle = async (): Promise<RunView> => (await engine.runUntilIdle({ runId: run.id }))!;
    return { engine, run, calls, idle };
  }

  const actionsOf = (calls: Call[]) => calls.map((c) => c.action);

  it('a logs-only window runs unattended: no approval, waits for the start, then closes, drains, backs up, rotates, checks and reopens', async () => {
    const { engine, calls, idle } = await start({ tasks: ['logs'] });
    // Dry-run shows what a logs-only window leaves out (its conditions are on params.tasks).
    const plan = await engine.plan(
      { runbook: 'maintenance', params: { startsAt: START, endsAt: END, tasks: ['logs'] } },
      actors.alice,
    );
    const skipped = plan.steps.filter((s) => s.skip === true).map((s) => s.id);
    expect(skipped).toEqual(['db-plan', 'update']);
    let view = await idle();
    expect(view.status).toBe('running');
    expect(view.steps.find((s) => s.id === 'approve')?.status).toBe('skipped');
    // One message per poll, the same each time: no countdown, not said twice.
    expect(view.steps.find((s) => s.id === 'wait-start')).toMatchObject({
      status: 'waiting',
      error: { message: `the window opens at ${START}` },
    });
    expect(actionsOf(calls)).toEqual(['maintenance.preflight']);

    clock.set(START);
    view = await idle();
    expect(view.status, view.reason).toBe('succeeded');
    expect(actionsOf(calls)).toEqual([
      'maintenance.preflight',
      'maintenance.silence',
      'fleet.gate',
      'fleet.drain-players',
      'backup.create',
      'backup.verify',
      'fleet.rotate-logs',
      'fleet.restart-drained',
      'daily.record',
      'fleet.gate',
      'maintenance.unsilence',
      'maintenance.announce',
    ]);
    const byStep = Object.fromEntries(calls.map((c) => [c.stepId, c.args]));
    expect(byStep['close']).toEqual({
      closed: true,
      message: 'Maintenance 04:00–06:00 UTC: logins are closed.',
      startsAt: START,
    });
    expect(byStep['verify']).toEqual({ id: 'bk-20261203T040100Z-a1b2c3' });
    expect(byStep['open']).toEqual({ closed: false });
    expect(byStep['unsilence']).toMatchObject({ silenceId: 'sil-1', suppressionId: 'sw-1', hold: false });
    expect(byStep['done']?.['message']).toMatch(
      new RegExp(
        `^Maintenance of window ${WINDOW} is over: logins are open again and the health checks passed\\.`,
      ),
    );
    expect(view.steps.filter((s) => s.status === 'skipped').map((s) => s.id)).toEqual(
      expect.arrayContaining(['db-plan', 'approve', 'db-optimize', 'db-rotate', 'db-purge', 'update']),
    );
  });

  it('an update needs an approval; a failing daily check then undoes, newest first: version, drained instances, gate, silences', async () => {
    clock.set(START);
    const { engine, run, calls, idle } = await start({ tasks: ['update'], version: '1.1.0' }, ['daily.game']);
    let view = await idle();
    expect(view.status, `${view.reason} ${JSON.stringify(view.steps.filter((s) => s.error))}`).toBe(
      'waiting',
    );
    const approval = view.steps.find((s) => s.id === 'approve')!.approval!;
    expect(approval.message).toMatch(
      new RegExp(
        `^Maintenance ${WINDOW}: 2026-12-03 04:00–06:00 UTC; tasks: update; version 1\\.0\\.0 → 1\\.1\\.0; 3 player`,
      ),
    );
    expect(approval.covers.map((c) => c.id)).toContain('update');
    await engine.decide(
      { runId: run.id, stepId: 'approve', decision: 'approve', planHash: approval.planHash },
      actors.bob,
    );
    view = await idle();
    expect(view.status).toBe('failed');
    const at = calls.findIndex((c) => c.action === 'daily.record');
    expect(at).toBe(-1);
    const undo = calls.slice(calls.findIndex((c) => c.action === 'maintenance.update') + 2);
    expect(undo.map((c) => `${c.stepId}:${c.action}`)).toEqual([
      'update:maintenance.revert-version',
      'drain:fleet.restart-drained',
      'close:maintenance.reopen',
      'silence:maintenance.unsilence',
    ]);
    expect(undo[0]?.args).toEqual({ version: '1.1.0', previousVersion: '1.0.0' });
    expect(undo[2]?.args).toEqual({ window: WINDOW, hold: false });
    expect(undo[3]?.args).toMatchObject({ silenceId: 'sil-1', hold: false });
    expect(view.steps.find((s) => s.id === 'open')?.status).not.toBe('succeeded');
  });

  it('with hold the undo keeps maintenance on: reopen and unsilence are told to hold', async () => {
    clock.set(START);
    const { calls, idle } = await start({ tasks: ['logs'], hold: true }, ['daily.fleet']);
    const view = await idle();
    expect(view.status).toBe('failed');
    const reopenCall = calls.find((c) => c.action === 'maintenance.reopen');
    const unsilenceCall = calls.find((c) => c.action === 'maintenance.unsilence');
    expect(reopenCall?.args).toEqual({ window: WINDOW, hold: true });
    expect(unsilenceCall?.args).toMatchObject({ hold: true });
  });

  it('a failed update is not undone by the engine (it rolled itself back); the rest is, and the run names why', async () => {
    clock.set(START);
    const { engine, run, calls, idle } = await start({ tasks: ['update'], version: 'broken' }, [
      'maintenance.update',
    ]);
    const waiting = await idle();
    const approval = waiting.steps.find((s) => s.id === 'approve')!.approval!;
    await engine.decide(
      { runId: run.id, stepId: 'approve', decision: 'approve', planHash: approval.planHash },
      actors.bob,
    );
    const view = await idle();
    expect(view.status).toBe('failed');
    expect(view.reason).toMatch(/fake maintenance\.update failed/);
    expect(actionsOf(calls.slice(calls.findIndex((c) => c.action === 'maintenance.update') + 1))).toEqual([
      'fleet.restart-drained',
      'maintenance.reopen',
      'maintenance.unsilence',
    ]);
  });

  it('a backup that fails verification stops the window before any task; the drain, gate and silence are undone', async () => {
    clock.set(START);
    const { calls, idle } = await start({ tasks: ['logs'] }, ['backup.verify']);
    const view = await idle();
    expect(view.status).toBe('failed');
    expect(view.reason).toMatch(/fake backup\.verify failed/);
    expect(actionsOf(calls).slice(actionsOf(calls).indexOf('backup.verify'))).toEqual([
      'backup.verify',
      'fleet.restart-drained',
      'maintenance.reopen',
      'maintenance.unsilence',
    ]);
  });

  it('a drain that fails (players still online after the deadline) is not undone itself; the gate and silence are', async () => {
    clock.set(START);
    const { calls, idle } = await start({ tasks: ['logs'] }, ['fleet.drain-players']);
    const view = await idle();
    expect(view.status).toBe('failed');
    expect(actionsOf(calls).slice(actionsOf(calls).indexOf('fleet.drain-players'))).toEqual([
      'fleet.drain-players',
      'maintenance.reopen',
      'maintenance.unsilence',
    ]);
  });

  it('preflight failing stops the window before anything changed (no undo to run)', async () => {
    clock.set(START);
    const { calls, idle } = await start({ tasks: ['logs'] }, ['maintenance.preflight']);
    const view = await idle();
    expect(view.status).toBe('failed');
    expect(actionsOf(calls)).toEqual(['maintenance.preflight']);
  });
});
