import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseConfigText, readEnv } from '../config/index.ts';
import { createPrometheusClient } from '../connectors/prometheus.ts';
import { ConflictError, InputError, ManualClock, NotFoundError } from '../core/index.ts';
import type {
  Actor,
  Plan,
  RunService,
  RunStatus,
  RunView,
  StartRunInput,
  StepState,
} from '../runbooks/model.ts';
import { openStore, type Store } from '../store/index.ts';
import { estimatePlayerMinutes } from './estimate.ts';
import {
  checkRecurringWindows,
  createMaintenanceService,
  type MaintenanceDeps,
  type MaintenanceFleet,
  type MaintenanceService,
} from './service.ts';

const alice: Actor = { id: 'token:a', name: 'alice', role: 'operator', kind: 'token' };
const scope = { service: 'game', environment: 'production' };
const dirs: string[] = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function config(maintenance: Record<string, unknown> = {}) {
  const yaml = JSON.stringify({
    service: { name: 'game' },
    platform: {
      kind: 'local',
      version: '1.0.0',
      versions: { '1.0.0': { command: ['node'] }, '1.1.0': { command: ['node'] } },
    },
    notifications: { channels: [{ name: 'ops', kind: 'webhook', url: 'https://ops.example.com/hook' }] },
    maintenance: { timezone: 'Asia/Seoul', notices: { channels: ['ops'] }, ...maintenance },
  });
  return parseConfigText(yaml, 'gameops.yaml', readEnv({}), tmpdir()).config;
}

/**
 * A stand-in for the engine's RunService, enough to see what the service asks of it: plan answers the
 * steps of a tiny maintenance runbook, start honours idempotency keys, and a test sets a run's status.
 */
function fakeRuns() {
  const views = new Map<string, RunView>();
  const byKey = new Map<string, string>();
  const started: Array<{ input: StartRunInput; actor: Actor }> = [];
  const cancelled: string[] = [];
  const plan = (params: Record<string, unknown>): Plan => ({
    runbook: 'maintenance',
    version: '1',
    hash: 'h',
    params,
    steps: [
      {
        id: 'preflight',
        kind: 'action',
        title: 'Preflight',
        action: 'fleet.status',
        effect: 'read-only',
        needs: [],
      },
      {
        id: 'close',
        kind: 'action',
        title: 'Maintenance on',
        action: 'fleet.gate',
        effect: 'mutating',
        compensation: { action: 'fleet.gate' },
        needs: ['preflight'],
      },
    ],
  });
  const runs: Pick<RunService, 'plan' | 'start' | 'get' | 'cancel' | 'list'> = {
    plan: (input) => Promise.resolve(plan(input.params)),
    start(input, actor) {
      const existing = input.idempotencyKey && byKey.get(input.idempotencyKey);
      if (existing) return Promise.resolve(views.get(existing)!);
      started.push({ input, actor });
      const id = `run-${started.length}`;
      const view: RunView = {
        id,
        runbook: input.runbook,
        version: '1',
        status: 'queued',
        trigger: input.trigger,
        requestedBy: actor,
        createdAt: '2026-12-01T00:00:00.000Z',
        params: input.params,
        definitionHash: 'h',
        steps: ['preflight', 'close'].map((s) => ({
          id: s,
          kind: 'action',
          status: 'pending',
          attempt: 0,
          fence: 0,
        })),
      };
      views.set(id, view);
      if (input.idempotencyKey) byKey.set(input.idempotencyKey, id);
      return Promise.resolve(view);
    },
    get: (id) => Promise.resolve(views.get(id)!),
    list: (filter) =>
      Promise.resolve(
        [...views.values()]
          .filter(
            (v) =>
              (!filter.runbook || v.runbook === filter.runbook) &&
              (!filter.status || filter.status.includes(v.status)),
          )
          .reverse(),
      ),
    cancel(id) {
      cancelled.push(id);
      const view = views.get(id)!;
      view.status = 'cancelled';
      return Promise.resolve(view);
    },
  };
  const set = (
    id: string,
    status: RunStatus,
    steps: Partial<Record<string, StepState['status']>> = {},
    reason?: string,
  ) => {
    const view = views.get(id)!;
    view.status = status;
    if (reason) view.reason = reason;
    for (const step of view.steps) step.status = steps[step.id] ?? step.status;
  };
  /** A run started by hand (e.g. maintenance-reopen), already in `status`. */
  const add = (runbook: string, params: Record<string, unknown>, status: RunStatus, createdAt: string) => {
    const id = `run-${views.size + 1}`;
    views.set(id, {
      id,
      runbook,
      version: '1',
      status,
      trigger: 'cli',
      requestedBy: alice,
      createdAt,
      params,
      definitionHash: 'h',
      steps: [],
    });
    return id;
  };
  return { runs, started, cancelled, set, add, views };
}

/** A stand-in fleet (the notice endpoint is H2's `Fleet.notice`): records what players were told. */
function fakeFleet(players = 12) {
  const notices: Array<{ message: string; startsAt?: string; endsAt?: string }> = [];
  const fleet: MaintenanceFleet = {
    status: () => Promise.resolve({ totals: { playersOnline: players } }),
    notice: (input) => {
      notices.push(input);
      return Promise.resolve({
        status: 'ok',
        delivered: players,
        instances: [{ instance: 'game-0', ok: true }],
      });
    },
  };
  return { fleet, notices };
}

async function setup(options: { maintenance?: Record<string, unknown>; at?: string; fleet?: boolean } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'gameops-mw-'));
  dirs.push(dir);
  const clock = new ManualClock(options.at ?? '2026-12-01T00:00:00Z');
  const store = await openStore({ dataDir: join(dir, 'data'), clock });
  stores.push(store);
  const runs = fakeRuns();
  const fleet = fakeFleet();
  const sent: Array<{ channel: string; message: string }> = [];
  const logs: string[] = [];
  const log = {
    info: (_: object, m: string) => logs.push(m),
    warn: (_: object, m: string) => logs.push(m),
    error: (_: object, m: string) => logs.push(m),
  };
  const deps: MaintenanceDeps = {
    config: config(options.maintenance),
    store,
    clock,
    runs: runs.runs,
    ...(options.fleet === false ? {} : { fleet: () => Promise.resolve(fleet.fleet) }),
    notifier: {
      send: (channel, message) => {
        sent.push({ channel, message });
        return Promise.resolve();
      },
    },
    log,
  };
  const service: MaintenanceService = createMaintenanceService(deps);
  return { service, store, clock, runs, fleet, sent, logs };
}

const rejection = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e as Error,
  );

describe('maintenance plan', () => {
  it('reads wall-clock times in the game zone, plans the run, the notices and the estimate; a dry run stores nothing', async () => {
    const { service, store } = await setup();
    const dry = await service.plan(
      { startsAt: '2026-12-03 04:00', endsAt: '2026-12-03 06:00', version: '1.1.0' },
      alice,
      { dryRun: true },
    );
    expect(dry.window).toMatchObject({
      startsAt: '2026-12-02T19:00:00.000Z',
      endsAt: '2026-12-02T21:00:00.000Z',
      timezone: 'Asia/Seoul',
      tasks: ['db', 'logs', 'update'],
      version: '1.1.0',
      state: 'scheduled',
    });
    expect(dry.stored).toBe(false);
    expect(dry.runStartsAt).toBe('2026-12-02T18:00:00.000Z');
    expect(dry.plan.params).toEqual({
      window: dry.window.id,
      startsAt: '2026-12-02T19:00:00.000Z',
      endsAt: '2026-12-02T21:00:00.000Z',
      tasks: ['db', 'logs', 'update'],
      version: '1.1.0',
      message: null,
      hold: false,
    });
    expect(dry.notices.map((n) => n.key)).toEqual(['T-24h', 'T-60m', 'T-10m', 'T-1m']);
    expect(dry.estimate).toMatchObject({
      currentPlayers: 12,
      players: 12,
      durationMinutes: 120,
      playerMinutes: 1440,
    });
    expect(await store.maintenance.list(scope)).toEqual([]);

    const real = await service.plan(
      { startsAt: '2026-12-03T04:00:00+09:00', endsAt: '2026-12-03T06:00:00+09:00' },
      alice,
    );
    expect(real.stored).toBe(true);
    expect(real.window.tasks).toEqual(['db', 'logs']);
    expect((await service.get(real.window.id)).window.createdBy).toBe('alice');
  });

  it('refuses a start in the past, an end not after the start, more than 24 h, update without a version and the reverse, an unknown version, an overlap', async () => {
    const { service } = await setup();
    const refused = async (input: Parameters<MaintenanceService['plan']>[0], pattern: RegExp) => {
      const err = await rejection(service.plan(input, alice));
      expect(err).toBeInstanceOf(InputError);
      expect(err?.message).toMatch(pattern);
    };
    await refused(
      { startsAt: '2026-11-30T23:58:00Z', endsAt: '2026-12-01T01:00:00Z' },
      /^start: .* is in the past/,
    );
    // Up to a minute ago counts as now.
    const now = await service.plan(
      { startsAt: '2026-11-30T23:59:30Z', endsAt: '2026-12-01T00:30:00Z' },
      alice,
      { dryRun: true },
    );
    expect(now.window.startsAt).toBe('2026-12-01T00:00:00.000Z');
    expect(now.notices).toEqual([]);
    await refused(
      { startsAt: '2026-12-02T04:00:00Z', endsAt: '2026-12-02T04:00:00Z' },
      /^end: .* is not after the start/,
    );
    await refused({ startsAt: '2026-12-02T04:00:00Z', endsAt: '2026-12-03T04:01:00Z' }, /at most 24 hours/);
    await refused(
      { startsAt: '2026-12-02T04:00:00Z', endsAt: '2026-12-02T05:00:00Z', tasks: ['update'] },
      /^version: the update task needs a version/,
    );
    await refused(
      { startsAt: '2026-12-02T04:00:00Z', endsAt: '2026-12-02T05:00:00Z', tasks: ['db'], version: '1.1.0' },
      /^tasks: a version is given/,
    );
    await refused(
      { startsAt: '2026-12-02T04:00:00Z', endsAt: '2026-12-02T05:00:00Z', version: '9.9.9' },
      /^version: "9.9.9" is not one of platform.versions \(1.0.0, 1.1.0\)/,
    );
    await refused(
      { startsAt: 'tomorrow', endsAt: '2026-12-02T05:00:00Z' },
      /^start: "tomorrow" is not a time/,
    );
    await refused(
      { startsAt: '2026-02-30 04:00', endsAt: '2026-12-02T05:00:00Z' },
      /^start: "2026-02-30 04:00" is not a time/,
    );

    const first = await service.plan(
      { startsAt: '2026-12-02T04:00:00Z', endsAt: '2026-12-02T06:00:00Z' },
      alice,
    );
    const err = await rejection(
      service.plan({ startsAt: '2026-12-02T05:00:00Z', endsAt: '2026-12-02T07:00:00Z' }, alice, {
        dryRun: true,
      }),
    );
    expect(err).toBeInstanceOf(ConflictError);
    expect(err?.message).toContain(
      `overlaps maintenance window ${first.window.id} ("maintenance", scheduled, 2026-12-02 04:00 UTC (13:00 GMT+9) – 2026-12-02 06:00 UTC (15:00 GMT+9))`,
    );
  });
});

describe('maintenance tick', () => {
  it('sends each notice once at its time, starts the run leadTime before with its key, and follows it to completed', async () => {
    const { service, clock, runs, fleet, sent, store } = await setup();
    const { window } = await service.plan(
      { startsAt: '2026-12-03T04:00:00Z', endsAt: '2026-12-03T05:00:00Z', message: 'Back soon' },
      alice,
    );
    const at = async (iso: string) => {
      clock.set(iso);
      await service.tick(clock.now());
      await service.tick(clock.now());
    };
    await at('2026-12-02T03:59:59Z');
    expect(fleet.notices).toHaveLength(0);
    await at('2026-12-02T04:00:00Z');
    expect(fleet.notices).toEqual([
      { message: 'Maintenance in 24 hours: Back soon', startsAt: window.startsAt, endsAt: window.endsAt },
    ]);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.channel).toBe('ops');
    expect(sent[0]?.message).toContain(`maintenance window ${window.id}: 2026-12-03 04:00 UTC (13:00 GMT+9)`);
    await at('2026-12-03T03:00:00Z');
    expect(runs.started).toHaveLength(1);
    expect(runs.started[0]?.input).toMatchObject({
      runbook: 'maintenance',
      trigger: 'schedule',
      idempotencyKey: `maintenance:${window.id}`,
    });
    expect(runs.started[0]?.actor.kind).toBe('schedule');
    expect((await service.get(window.id)).window).toMatchObject({ state: 'running', runId: 'run-1' });
    await at('2026-12-03T03:50:00Z');
    await at('2026-12-03T03:59:00Z');
    await at('2026-12-03T04:00:00Z');
    expect(fleet.notices.map((n) => n.message.split(':')[0])).toEqual([
      'Maintenance in 24 hours',
      'Maintenance in 60 minutes',
      'Maintenance in 10 minutes',
      'Maintenance in 1 minute',
    ]);
    expect((await store.maintenance.notices(scope, window.id)).map((n) => [n.key, n.status])).toEqual([
      ['T-24h', 'sent'],
      ['T-60m', 'sent'],
      ['T-10m', 'sent'],
      ['T-1m', 'sent'],
    ]);
    expect(await service.activeWindow(clock.now())).toMatchObject({ id: window.id });
    runs.set('run-1', 'succeeded', { preflight: 'succeeded', close: 'succeeded' });
    await at('2026-12-03T04:40:00Z');
    expect((await service.get(window.id)).window.state).toBe('completed');
    expect(await service.activeWindow(clock.now())).toBeUndefined();
    expect(runs.started).toHaveLength(1);
  });

  it('a window planned late sends only the latest notice already due; a restarted service sends nothing twice', async () => {
    const { service, clock, fleet, store } = await setup();
    clock.set('2026-12-03T03:30:00Z');
    const { window } = await service.plan(
      { startsAt: '2026-12-03T04:00:00Z', endsAt: '2026-12-03T05:00:00Z' },
      alice,
    );
    await service.tick(clock.now());
    // T-60m is due (its time has passed), sent at once, telling the time actually left.
    expect(fleet.notices.map((n) => n.message.split(':')[0])).toEqual(['Maintenance in 30 minutes']);
    expect(fleet.notices[0]?.message).toContain('from 2026-12-03 13:00 GMT+9 to 2026-12-03 14:00 GMT+9');
    const again = createMaintenanceService({
      config: config(),
      store,
      clock,
      runs: fakeRuns().runs,
      fleet: () => Promise.resolve(fleet.fleet),
      notifier: { send: () => Promise.resolve() },
      log: { info: () => undefined, warn: () => undefined, error: () => undefined },
    });
    await again.tick(clock.now());
    clock.set('2026-12-03T03:52:00Z');
    await Promise.all([service.tick(clock.now()), again.tick(clock.now())]);
    expect(fleet.notices.map((n) => n.message.split(':')[0])).toEqual([
      'Maintenance in 30 minutes',
      'Maintenance in 8 minutes',
    ]);
    // Never a notice at or after the start.
    clock.set('2026-12-03T04:00:30Z');
    await service.tick(clock.now());
    expect(fleet.notices).toHaveLength(2);
    expect((await store.maintenance.notices(scope, window.id)).map((n) => n.key)).toEqual(['T-60m', 'T-10m']);
  });

  it('a failed run marks the window failed, or held when it holds; a run that cannot start fails the window', async () => {
    const { service, clock, runs } = await setup();
    const a = await service.plan({ startsAt: '2026-12-01T02:00:00Z', endsAt: '2026-12-01T03:00:00Z' }, alice);
    const b = await service.plan(
      { startsAt: '2026-12-01T04:00:00Z', endsAt: '2026-12-01T05:00:00Z', hold: true },
      alice,
    );
    clock.set('2026-12-01T01:30:00Z');
    await service.tick(clock.now());
    runs.set('run-1', 'failed', { preflight: 'succeeded', close: 'succeeded' }, 'drain: players remained');
    clock.set('2026-12-01T03:30:00Z');
    await service.tick(clock.now());
    runs.set('run-2', 'failed', { preflight: 'succeeded', close: 'succeeded' }, 'update: readiness failed');
    await service.tick(clock.now());
    expect((await service.get(a.window.id)).window).toMatchObject({
      state: 'failed',
      reason: 'drain: players remained',
    });
    expect((await service.get(b.window.id)).window).toMatchObject({
      state: 'held',
      reason: 'update: readiness failed',
    });

    const noRunbook = await setup();
    noRunbook.runs.runs.start = () => Promise.reject(new NotFoundError('unknown runbook "maintenance"'));
    const c = await noRunbook.service.plan(
      { startsAt: '2026-12-01T00:30:00Z', endsAt: '2026-12-01T01:00:00Z' },
      alice,
    );
    await noRunbook.service.tick(noRunbook.clock.now());
    expect((await noRunbook.service.get(c.window.id)).window).toMatchObject({
      state: 'failed',
      reason: 'the maintenance run could not be started: unknown runbook "maintenance"',
    });
  });

  it('materialises recurring windows for 8 days idempotently, skipping one that overlaps an ad-hoc window', async () => {
    const { service, clock, store, logs } = await setup({
      maintenance: { recurring: [{ name: 'weekly', cron: '0 4 * * 4', duration: '2h' }] },
      at: '2026-12-02T00:00:00Z',
    });
    // Thursday 2026-12-03 04:00 KST is taken by an ad-hoc window.
    await service.plan({ startsAt: '2026-12-03 05:00', endsAt: '2026-12-03 07:00' }, alice);
    await service.tick(clock.now());
    await service.tick(clock.now());
    const windows = await store.maintenance.list(scope);
    expect(windows.map((w) => [w.id, w.origin])).toEqual([
      [expect.stringMatching(/^mw-20261202T2000Z-[0-9a-f]{6}$/), 'adhoc'],
      ['mw-20261209T1900Z-weekly', 'recurring'],
    ]);
    expect(windows[1]).toMatchObject({
      startsAt: '2026-12-09T19:00:00.000Z',
      endsAt: '2026-12-09T21:00:00.000Z',
      tasks: ['db', 'logs'],
    });
    expect(
      logs.filter((l) => l.includes('recurring maintenance weekly at 2026-12-02T19:00:00.000Z skipped')),
    ).toHaveLength(1);
    // The ad-hoc window is cancelled: the occurrence is planned when it is tried again (10 minutes on).
    await service.cancel(windows[0]!.id, alice, 'moved to the weekly window');
    clock.advance(10 * 60_000);
    await service.tick(clock.now());
    expect((await store.maintenance.list(scope, { states: ['scheduled'] })).map((w) => w.id)).toEqual([
      'mw-20261202T1900Z-weekly',
      'mw-20261209T1900Z-weekly',
    ]);
  });
});

describe('recurring windows config', () => {
  it('a bad cron or time zone is refused naming the entry (serve checks at start)', () => {
    const bad = config({
      recurring: [
        { name: 'ok', cron: '0 4 * * 4', duration: '2h' },
        { name: 'typo', cron: '0 4 * * FUNDAY', duration: '2h' },
      ],
    });
    expect(() => checkRecurringWindows(bad)).toThrow(
      /^maintenance.recurring: maintenance.recurring\[1\].cron: "0 4 \* \* FUNDAY" is not a valid cron expression/,
    );
    expect(() => checkRecurringWindows(config())).not.toThrow();
  });
});

describe('maintenance cancel', () => {
  it('cancels a scheduled window, telling players and channels when a notice went out before', async () => {
    const { service, clock, fleet, sent } = await setup();
    const { window } = await service.plan(
      { startsAt: '2026-12-01T12:00:00Z', endsAt: '2026-12-01T13:00:00Z' },
      alice,
    );
    await service.tick(clock.now());
    expect(fleet.notices).toHaveLength(1);
    const cancelled = await service.cancel(window.id, alice, 'patch not ready');
    expect(cancelled).toMatchObject({ state: 'cancelled', reason: 'cancelled by alice: patch not ready' });
    expect(fleet.notices[1]?.message).toBe(
      'The maintenance planned for 2026-12-01 21:00 GMT+9 is cancelled.',
    );
    expect(sent[1]?.message).toContain('is CANCELLED: patch not ready');
    expect(await rejection(service.cancel(window.id, alice, 'again'))).toBeInstanceOf(ConflictError);
    expect(await rejection(service.cancel('nope', alice, 'x'))).toBeInstanceOf(InputError);
    expect(await rejection(service.cancel('mw-20261201T1200Z-ffffff', alice, 'x'))).toBeInstanceOf(
      NotFoundError,
    );
  });

  it("cancels a running window's run while it has changed nothing; refuses once it has (the engine's cancel does not compensate)", async () => {
    const { service, clock, runs } = await setup();
    const a = await service.plan({ startsAt: '2026-12-01T00:30:00Z', endsAt: '2026-12-01T01:00:00Z' }, alice);
    await service.tick(clock.now());
    runs.set('run-1', 'running', { preflight: 'succeeded' });
    expect(await service.cancel(a.window.id, alice, 'not today')).toMatchObject({ state: 'cancelled' });
    expect(runs.cancelled).toEqual(['run-1']);

    const b = await service.plan({ startsAt: '2026-12-01T01:30:00Z', endsAt: '2026-12-01T02:00:00Z' }, alice);
    clock.set('2026-12-01T01:30:00Z');
    await service.tick(clock.now());
    runs.set('run-2', 'running', { preflight: 'succeeded', close: 'succeeded' });
    const err = await rejection(service.cancel(b.window.id, alice, 'stop'));
    expect(err).toBeInstanceOf(ConflictError);
    expect(err?.message).toContain('has already changed the service (close succeeded)');
    expect(runs.cancelled).toEqual(['run-1']);
    expect((await service.get(b.window.id)).window.state).toBe('running');
  });
});

describe('player-minutes estimate', () => {
  const span = { startsAt: new Date('2026-12-03T04:00:00Z'), endsAt: new Date('2026-12-03T04:30:00Z') };

  it('uses the daily check recorded nearest the same time last week (real store), else the players online now', async () => {
    const { store } = await setup();
    const run = (id: string, startedAt: string, players: number) => ({
      id,
      kind: 'daily' as const,
      ...scope,
      trigger: 'schedule' as const,
      status: 'ok' as const,
      startedAt,
      finishedAt: startedAt,
      durationMs: 1,
      results: [
        {
          name: 'game' as const,
          status: 'ok' as const,
          summary: '',
          durationMs: 1,
          values: { playersOnline: players },
          findings: [],
        },
      ],
    });
    await store.checkRuns.record(run('far', '2026-11-26T02:30:00.000Z', 999));
    await store.checkRuns.record(run('near', '2026-11-26T04:20:00.000Z', 40));
    await store.checkRuns.record(run('nearer', '2026-11-26T03:50:00.000Z', 30));
    const withHistory = await estimatePlayerMinutes(
      {
        scope,
        now: new Date('2026-12-01T00:00:00Z'),
        checkRuns: store.checkRuns,
        currentPlayers: () => Promise.resolve(5),
      },
      span,
    );
    expect(withHistory).toMatchObject({
      currentPlayers: 5,
      lastWeekPlayers: 30,
      lastWeekSource: 'check-runs',
      players: 30,
      playerMinutes: 900,
    });
    expect(withHistory.summary).toBe(
      '≈ 900 player-minutes (30 players × 30 min; same hours last week, daily checks)',
    );

    const none = await estimatePlayerMinutes(
      {
        scope,
        now: new Date('2026-12-09T00:00:00Z'),
        checkRuns: store.checkRuns,
        currentPlayers: () => Promise.reject(new Error('fleet unreachable')),
      },
      { startsAt: new Date('2026-12-10T04:00:00Z'), endsAt: new Date('2026-12-10T04:30:00Z') },
    );
    expect(none).toMatchObject({ players: 0, playerMinutes: 0 });
    expect(none.notes).toEqual([
      'players online now unknown: fleet unreachable',
      'no daily check recorded players online within an hour of the same time last week',
    ]);
  });

  // A stand-in for Prometheus answering its HTTP API's shape: the harness Prometheus only scrapes (remote
  // write is off), so it cannot be given last week's samples.
  it("uses Prometheus's average over the same span last week; a Prometheus that fails is a note", async () => {
    let asked: URLSearchParams | undefined;
    const server: Server = createServer((req, res) => {
      asked = new URL(req.url ?? '/', 'http://x').searchParams;
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          status: 'success',
          data: {
            resultType: 'matrix',
            result: [
              {
                metric: {},
                values: [
                  [1, '100'],
                  [2, '120'],
                  [3, 'NaN'],
                ],
              },
            ],
          },
        }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as { port: number }).port;
      const prometheus = createPrometheusClient({ url: `http://127.0.0.1:${port}` });
      const result = await estimatePlayerMinutes(
        {
          scope,
          now: new Date('2026-12-01T00:00:00Z'),
          prometheus,
          currentPlayers: () => Promise.resolve(7),
        },
        span,
      );
      expect(result).toMatchObject({
        lastWeekPlayers: 110,
        lastWeekSource: 'prometheus',
        players: 110,
        playerMinutes: 3300,
      });
      expect(asked?.get('query')).toBe('sum(game_players_connected)');
      expect(asked?.get('start')).toBe(String(Date.parse('2026-11-26T04:00:00Z') / 1000));
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    const dead = createPrometheusClient({ url: 'http://127.0.0.1:1' });
    const fallback = await estimatePlayerMinutes(
      {
        scope,
        now: new Date('2026-12-01T00:00:00Z'),
        prometheus: dead,
        currentPlayers: () => Promise.resolve(7),
      },
      span,
    );
    expect(fallback).toMatchObject({ players: 7, playerMinutes: 210 });
    expect(fallback.notes[0]).toMatch(/^Prometheus could not be asked for the players last week: /);
  });
});
