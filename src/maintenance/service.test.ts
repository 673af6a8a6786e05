import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseConfigText, readEnv } from '../config/index.ts';
import { createPrometheusClient, type PrometheusClient } from '../connectors/prometheus.ts';
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

/**
 * A stand-in for Prometheus answering its HTTP API's shape with one series of `values`: the harness
 * Prometheus only scrapes (remote write is off), so it cannot be given last week's samples. `use` gets a
 * client of it and the query parameters it was last asked.
 */
async function withPrometheusStandIn(
  values: Array<[number, string]>,
  use: (prometheus: PrometheusClient, asked: () => URLSearchParams | undefined) => Promise<void>,
): Promise<void> {
  let asked: URLSearchParams | undefined;
  const server: Server = createServer((req, res) => {
    asked = new URL(req.url ?? '/', 'http://x').searchParams;
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({
        status: 'success',
        data: { resultType: 'matrix', result: [{ metric: {}, values }] },
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as { port: number }).port;
    await use(createPrometheusClient({ url: `http://127.0.0.1:${port}` }), () => asked);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

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
    // Players' text is one line: no control or text-direction characters reach their screens.
    await refused(
      {
        startsAt: '2026-12-02T04:00:00Z',
        endsAt: '2026-12-02T05:00:00Z',
        message: 'Back soon\n[ADMIN] send your password',
      },
      /^message: control and text-direction characters are not allowed \(found U\+000A\)/,
    );
    await refused(
      { startsAt: '2026-12-02T04:00:00Z', endsAt: '2026-12-02T05:00:00Z', message: 'Back \u202Enoos' },
      /^message: .*found U\+202E/,
    );
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
      { startsAt: '2026-12-02T04:00:00Z', endsAt: '2026-12-02T04:04:00Z' },
      /^end: the window lasts 240 seconds; a window is at least 5 minutes/,
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
    const adhoc = await service.plan({ startsAt: '2026-12-03 05:00', endsAt: '2026-12-03 07:00' }, alice);
    // The plan says which occurrence it takes the place of.
    expect(adhoc.replaces).toEqual([
      { name: 'weekly', startsAt: '2026-12-02T19:00:00.000Z', endsAt: '2026-12-02T21:00:00.000Z' },
    ]);
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
    const control = await rejection(service.cancel(window.id, alice, 'bad\u001b[2Jreason'));
    expect(control).toBeInstanceOf(InputError);
    expect(control?.message).toMatch(/^reason: control .* not allowed \(found U\+001B\)/);
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

  it("uses Prometheus's average over the same span last week; a Prometheus that fails is a note", async () => {
    await withPrometheusStandIn(
      [
        [1, '100'],
        [2, '120'],
        [3, 'NaN'],
      ],
      async (prometheus, asked) => {
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
        expect(asked()?.get('query')).toBe('sum(game_players_connected)');
        expect(asked()?.get('start')).toBe(String(Date.parse('2026-11-26T04:00:00Z') / 1000));
      },
    );
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

describe('maintenance windows under review (issue #7 defects)', () => {
  it('a cancel while the tick sends a notice wins: no run starts; a cancel while the run starts cancels that run', async () => {
    const { service, clock, runs, fleet } = await setup();
    const { window } = await service.plan(
      { startsAt: '2026-12-01T00:30:00Z', endsAt: '2026-12-01T01:30:00Z' },
      alice,
    );
    // The tick read the window scheduled, then sends T-60m (due: the window is 30 minutes ahead); it is
    // cancelled meanwhile.
    const notice = fleet.fleet.notice.bind(fleet.fleet);
    fleet.fleet.notice = async (input, signal) => {
      if (fleet.notices.length === 0) await service.cancel(window.id, alice, 'not today');
      return notice(input, signal);
    };
    await service.tick(clock.now());
    expect(runs.started).toHaveLength(0);
    expect((await service.get(window.id)).window).toMatchObject({ state: 'cancelled', runId: undefined });

    // Cancelled between the claim and recording the run: the run started is cancelled.
    const b = await service.plan({ startsAt: '2026-12-01T02:00:00Z', endsAt: '2026-12-01T03:00:00Z' }, alice);
    const start = runs.runs.start.bind(runs.runs);
    runs.runs.start = async (input, actor) => {
      expect((await service.get(b.window.id)).window).toMatchObject({ state: 'running', runId: undefined });
      await service.cancel(b.window.id, alice, 'changed our mind');
      return start(input, actor);
    };
    clock.set('2026-12-01T01:00:00Z');
    await service.tick(clock.now());
    expect(runs.started).toHaveLength(1);
    expect(runs.cancelled).toEqual(['run-1']);
    expect((await service.get(b.window.id)).window).toMatchObject({
      state: 'cancelled',
      reason: 'cancelled by alice: changed our mind',
      runId: undefined,
    });
  });

  it('tells the time left in a late notice, plans only future notices and one at once, shows UTC', async () => {
    const { service, clock, fleet, sent } = await setup({ maintenance: { timezone: 'UTC' } });
    const planned = await service.plan(
      { startsAt: '2026-12-01T05:00:00Z', endsAt: '2026-12-01T06:00:00Z' },
      alice,
    );
    expect(planned.notices).toEqual([
      { key: 'T-24h', at: '2026-12-01T00:00:00.000Z', atOnce: true },
      { key: 'T-60m', at: '2026-12-01T04:00:00.000Z' },
      { key: 'T-10m', at: '2026-12-01T04:50:00.000Z' },
      { key: 'T-1m', at: '2026-12-01T04:59:00.000Z' },
    ]);
    await service.tick(clock.now());
    expect(fleet.notices[0]?.message).toBe(
      'Maintenance in 5 hours: The game is closed for maintenance from 2026-12-01 05:00 UTC to 2026-12-01 06:00 UTC.',
    );
    expect(sent[0]?.message).toMatch(/^Maintenance in 5 hours: game \(production\) maintenance window /);
    // A restart 12 minutes before the start sends the latest offset due (T-60m), saying 12 minutes.
    clock.set('2026-12-01T04:48:00Z');
    await service.tick(clock.now());
    expect(fleet.notices[1]?.message).toMatch(/^Maintenance in 12 minutes: /);
    expect(fleet.notices).toHaveLength(2);
  });

  it('a window restarted too late is missed and players told; a run still waiting for approval at the end is cancelled', async () => {
    const { service, clock, runs, fleet, sent } = await setup({ maintenance: { leadTime: '5m' } });
    const a = await service.plan({ startsAt: '2026-12-01T01:00:00Z', endsAt: '2026-12-01T02:00:00Z' }, alice);
    await service.tick(clock.now()); // T-60m
    clock.set('2026-12-01T01:45:00Z'); // gameops was down: 15 of 60 minutes remain, 30 are needed
    await service.tick(clock.now());
    expect(runs.started).toHaveLength(0);
    expect((await service.get(a.window.id)).window).toMatchObject({
      state: 'cancelled',
      reason: expect.stringMatching(
        /^missed: only 15 of the window's minutes remained .* needs 30/,
      ) as string,
    });
    expect(fleet.notices.map((n) => n.message)).toEqual([
      expect.stringMatching(/^Maintenance in 60 minutes: /),
      'The maintenance planned for 2026-12-01 10:00 GMT+9 is cancelled.',
    ]);
    expect(sent[1]?.message).toMatch(/is CANCELLED: missed: only 15/);

    const b = await service.plan({ startsAt: '2026-12-01T03:00:00Z', endsAt: '2026-12-01T04:00:00Z' }, alice);
    clock.set('2026-12-01T02:56:00Z');
    await service.tick(clock.now());
    runs.set('run-1', 'waiting', { preflight: 'succeeded' }, 'waiting for approval (approve)');
    clock.set('2026-12-01T03:59:59Z');
    await service.tick(clock.now());
    expect(runs.cancelled).toEqual([]);
    clock.set('2026-12-01T04:00:00Z');
    await service.tick(clock.now());
    expect(runs.cancelled).toEqual(['run-1']);
    expect((await service.get(b.window.id)).window).toMatchObject({
      state: 'cancelled',
      reason: expect.stringMatching(
        /^the window ended before its run run-1 changed anything \(waiting for approval/,
      ) as string,
    });
    expect(fleet.notices.at(-1)?.message).toBe(
      'The maintenance planned for 2026-12-01 12:00 GMT+9 is cancelled.',
    );
  });

  it('a window claimed by a process that died before starting its run: started on restart, or missed when too late', async () => {
    const { service, store, clock, runs } = await setup({ maintenance: { leadTime: '5m' } });
    const a = await service.plan({ startsAt: '2026-12-01T01:00:00Z', endsAt: '2026-12-01T02:00:00Z' }, alice);
    const b = await service.plan({ startsAt: '2026-12-01T03:00:00Z', endsAt: '2026-12-01T04:00:00Z' }, alice);
    const claim = (id: string) =>
      store.maintenance.transition(
        scope,
        id,
        ['scheduled'],
        { state: 'running' },
        alice,
        'maintenance.start',
      );
    await claim(a.window.id);
    await claim(b.window.id);
    clock.set('2026-12-01T00:56:00Z');
    await service.tick(clock.now());
    expect((await service.get(a.window.id)).window).toMatchObject({ state: 'running', runId: 'run-1' });
    runs.set('run-1', 'succeeded');
    clock.set('2026-12-01T03:50:00Z');
    await service.tick(clock.now());
    expect(runs.started).toHaveLength(1);
    expect((await service.get(b.window.id)).window).toMatchObject({
      state: 'cancelled',
      reason: expect.stringMatching(/^missed: only 10 of the window's minutes remained/) as string,
    });
  });

  it('back-to-back windows: spans compared from the lead time; a run waits while another window runs', async () => {
    const { service, clock, runs, logs } = await setup({ maintenance: { leadTime: '5m' } });
    const a = await service.plan({ startsAt: '2026-12-01T01:00:00Z', endsAt: '2026-12-01T02:00:00Z' }, alice);
    const overlap = await rejection(
      service.plan({ startsAt: '2026-12-01T02:04:00Z', endsAt: '2026-12-01T03:00:00Z' }, alice),
    );
    expect(overlap).toBeInstanceOf(ConflictError);
    // It says why a window starting after the other ends still overlaps: its run starts leadTime before.
    expect(overlap?.message).toContain(
      "a window's run starts maintenance.leadTime (5m) before it, so its run starts at 2026-12-01 01:59 UTC",
    );
    const b = await service.plan({ startsAt: '2026-12-01T02:05:00Z', endsAt: '2026-12-01T03:00:00Z' }, alice);
    clock.set('2026-12-01T00:55:00Z');
    await service.tick(clock.now());
    runs.set('run-1', 'running', { preflight: 'succeeded', close: 'succeeded' });
    clock.set('2026-12-01T02:01:00Z');
    await service.tick(clock.now());
    expect(runs.started).toHaveLength(1);
    expect(logs).toContain(
      `maintenance window ${b.window.id}: its run waits for window ${a.window.id}, still running`,
    );
    runs.set('run-1', 'succeeded');
    clock.set('2026-12-01T02:03:00Z');
    await service.tick(clock.now());
    expect((await service.get(a.window.id)).window.state).toBe('completed');
    expect((await service.get(b.window.id)).window).toMatchObject({ state: 'running', runId: 'run-2' });
  });

  it("window states from the run's steps: failed before close, compensation failed, cancelled after close, held then reopened", async () => {
    const { service, clock, runs, fleet } = await setup();
    const plan = (h: number, hold = false) =>
      service.plan(
        {
          startsAt: `2026-12-0${1 + Math.floor(h / 24)}T${String(h % 24).padStart(2, '0')}:00:00Z`,
          endsAt: `2026-12-0${1 + Math.floor(h / 24)}T${String(h % 24).padStart(2, '0')}:50:00Z`,
          hold,
        },
        alice,
      );
    const settle = async (
      iso: string,
      status: RunStatus,
      steps: Record<string, StepState['status']>,
      reason?: string,
    ) => {
      clock.set(iso);
      await service.tick(clock.now());
      runs.set(`run-${runs.started.length}`, status, steps, reason);
      await service.tick(clock.now());
    };
    const a = await plan(2, true);
    await settle(
      '2026-12-01T01:10:00Z',
      'failed',
      { preflight: 'failed' },
      'preflight: backups not configured',
    );
    expect((await service.get(a.window.id)).window).toMatchObject({ state: 'failed' });
    expect(fleet.notices.at(-1)?.message).toMatch(/is cancelled\.$/);

    const b = await plan(4);
    await settle(
      '2026-12-01T03:10:00Z',
      'failed',
      { preflight: 'succeeded', close: 'succeeded' },
      'drain failed; COMPENSATION FAILED: close: gate did not open',
    );
    expect((await service.get(b.window.id)).window).toMatchObject({
      state: 'held',
      reason: expect.stringMatching(
        /^putting the service back failed, it is not known to be back .* gameops run maintenance-reopen -p window=/,
      ) as string,
    });

    const c = await plan(6);
    await settle(
      '2026-12-01T05:10:00Z',
      'cancelled',
      { preflight: 'succeeded', close: 'succeeded' },
      'cancelled by bob',
    );
    const held = (await service.get(c.window.id)).window;
    expect(held).toMatchObject({
      state: 'held',
      reason: expect.stringContaining(
        `maintenance mode is still on; put the service back with gameops run maintenance-reopen -p window=${c.window.id}`,
      ) as string,
    });
    expect(await service.activeWindow(new Date('2026-12-02T00:00:00Z'))).toMatchObject({ id: b.window.id });

    // A reopen of another window, and one that failed, do not end it; a succeeded one for it does.
    runs.add('maintenance-reopen', { window: b.window.id, run: null }, 'failed', '2026-12-01T06:00:00.000Z');
    clock.set('2026-12-01T06:00:00Z');
    await service.tick(clock.now());
    expect((await service.get(c.window.id)).window.state).toBe('held');
    runs.add(
      'maintenance-reopen',
      { window: c.window.id, run: null },
      'succeeded',
      '2026-12-01T06:00:10.000Z',
    );
    clock.set('2026-12-01T06:00:10Z');
    await service.tick(clock.now());
    expect((await service.get(c.window.id)).window.state).toBe('held'); // checked every 30 s
    clock.set('2026-12-01T06:00:30Z');
    await service.tick(clock.now());
    expect((await service.get(c.window.id)).window).toMatchObject({
      state: 'completed',
      reason: expect.stringMatching(
        /^held \(run run-3 was cancelled after logins were closed.*\), then reopened by run run-5$/,
      ) as string,
    });
  });

  it('tries a failed notice again until the next offset is due, and one left sending by a dead process', async () => {
    const { service, clock, fleet, store, logs } = await setup({
      maintenance: { notices: { before: ['60m', '10m'], channels: [] } },
    });
    const { window } = await service.plan(
      { startsAt: '2026-12-01T03:00:00Z', endsAt: '2026-12-01T04:00:00Z' },
      alice,
    );
    let down = 2;
    const notice = fleet.fleet.notice.bind(fleet.fleet);
    fleet.fleet.notice = (input, signal) =>
      down-- > 0 ? Promise.reject(new Error('fleet down')) : notice(input, signal);
    const at = async (iso: string) => {
      clock.set(iso);
      await service.tick(clock.now());
    };
    await at('2026-12-01T02:00:00Z');
    await at('2026-12-01T02:00:10Z'); // failed 10 s ago: not yet
    expect(
      (await store.maintenance.notices(scope, window.id)).map((n) => [n.key, n.status, n.attempts]),
    ).toEqual([['T-60m', 'failed', 1]]);
    await at('2026-12-01T02:00:31Z');
    await at('2026-12-01T02:01:02Z');
    expect(
      (await store.maintenance.notices(scope, window.id)).map((n) => [n.key, n.status, n.attempts]),
    ).toEqual([['T-60m', 'sent', 3]]);
    expect(fleet.notices).toHaveLength(1);
    expect(logs).toContain(
      `maintenance window ${window.id}: notice T-60m failed before; trying again (attempt 2)`,
    );

    // T-10m: a process claimed it and died. Two minutes on it is sent again, said in the log.
    clock.set('2026-12-01T02:50:00Z');
    expect(
      (await store.maintenance.claimNotice(scope, window.id, 'T-10m', new Date('2026-12-01T02:50:00Z')))
        .claimed,
    ).toBe(true);
    await at('2026-12-01T02:51:00Z');
    expect(fleet.notices).toHaveLength(1);
    await at('2026-12-01T02:52:01Z');
    expect(fleet.notices).toHaveLength(2);
    expect(fleet.notices[1]?.message).toMatch(/^Maintenance in 8 minutes: /);
    expect(logs.some((l) => l.includes('notice T-10m was left sending'))).toBe(true);
  });

  it('cancels scheduled recurring occurrences the config no longer plans, telling whoever heard of them', async () => {
    const weekly = { name: 'weekly', cron: '0 4 * * 4', duration: '2h' };
    const first = await setup({
      maintenance: { leadTime: '5m', recurring: [weekly] },
      at: '2026-12-02T18:30:00Z',
    });
    await first.service.tick(first.clock.now()); // materialises; T-60m of 12-02T19:00Z goes out
    expect(first.fleet.notices).toHaveLength(1);
    const deps = (maintenance: Record<string, unknown>): MaintenanceDeps => ({
      config: config({ leadTime: '5m', ...maintenance }),
      store: first.store,
      clock: first.clock,
      runs: first.runs.runs,
      fleet: () => Promise.resolve(first.fleet.fleet),
      notifier: { send: () => Promise.resolve() },
      log: { info: () => undefined, warn: () => undefined, error: () => undefined },
    });
    // The cron moved to Friday: Thursday's occurrences are cancelled, Friday's planned.
    const moved = createMaintenanceService(deps({ recurring: [{ ...weekly, cron: '0 4 * * 5' }] }));
    await moved.tick(first.clock.now());
    const states = async () =>
      (await first.store.maintenance.list(scope)).map((w) => [w.id, w.state, w.reason ?? '']);
    expect(await states()).toEqual([
      [
        'mw-20261202T1900Z-weekly',
        'cancelled',
        'maintenance.recurring weekly no longer plans 2026-12-02T19:00:00.000Z (its cron changed)',
      ],
      ['mw-20261203T1900Z-weekly', 'scheduled', ''],
      ['mw-20261209T1900Z-weekly', 'cancelled', expect.stringContaining('its cron changed')],
    ]);
    expect(first.fleet.notices.at(-1)?.message).toBe(
      'The maintenance planned for 2026-12-03 04:00 GMT+9 is cancelled.',
    );
    // A row of an occurrence's id with other times (planned by hand under that id) is not this window: said once.
    const logs: string[] = [];
    await first.store.maintenance.create(
      scope,
      {
        id: 'mw-20261210T1900Z-weekly',
        name: 'weekly',
        origin: 'recurring',
        startsAt: '2026-12-10T19:00:00.000Z',
        endsAt: '2026-12-10T19:30:00.000Z',
        timezone: 'Asia/Seoul',
        tasks: ['logs'],
        hold: false,
        state: 'cancelled',
        createdBy: 'alice',
        createdAt: '',
        updatedAt: '',
      },
      alice,
    );
    const logged = createMaintenanceService({
      ...deps({ recurring: [{ ...weekly, cron: '0 4 * * 5' }] }),
      log: { info: () => undefined, warn: (_, m) => logs.push(m), error: (_, m) => logs.push(m) },
    });
    first.clock.set('2026-12-03T00:00:00Z');
    await logged.tick(first.clock.now());
    await logged.tick(first.clock.now());
    expect(logs).toEqual([
      'recurring maintenance weekly at 2026-12-10T19:00:00.000Z skipped: maintenance window mw-20261210T1900Z-weekly exists already (cancelled, 2026-12-10T19:00:00.000Z–2026-12-10T19:30:00.000Z), not 2026-12-10T19:00:00.000Z–2026-12-10T21:00:00.000Z',
    ]);
    // Disabled: the rest go too.
    await createMaintenanceService(deps({ recurring: [{ ...weekly, enabled: false }] })).tick(
      first.clock.now(),
    );
    expect((await first.store.maintenance.list(scope, { states: ['scheduled'] })).map((w) => w.id)).toEqual(
      [],
    );
  });

  it('the estimate: nobody answering is unknown, not 0; partial answers noted; a window 10 days ahead looks 2 weeks back; the selector is summed', async () => {
    const span = { startsAt: new Date('2026-12-11T04:00:00Z'), endsAt: new Date('2026-12-11T05:00:00Z') };
    const now = new Date('2026-12-01T00:00:00Z');
    const none = await estimatePlayerMinutes(
      { scope, now, currentPlayers: () => Promise.resolve({ players: 0, notAnswering: 3, instances: 3 }) },
      span,
    );
    expect(none.currentPlayers).toBeUndefined();
    expect(none.notes).toContain('players online now unknown: none of the 3 game server(s) answered');
    expect(none.summary).toMatch(/no player count could be read/);
    const partial = await estimatePlayerMinutes(
      { scope, now, currentPlayers: () => Promise.resolve({ players: 8, notAnswering: 1, instances: 3 }) },
      span,
    );
    expect(partial).toMatchObject({ currentPlayers: 8, players: 8 });
    expect(partial.notes).toContain(
      'players online now: 1 of 3 game server(s) did not answer; their players are not counted',
    );

    await withPrometheusStandIn([[1, '40']], async (prometheus, asked) => {
      const result = await estimatePlayerMinutes(
        { scope, now, prometheus, playersSelector: 'env="production"' },
        span,
      );
      expect(asked()?.get('query')).toBe('sum(game_players_connected{env="production"})');
      expect(asked()?.get('start')).toBe(String(Date.parse('2026-11-27T04:00:00Z') / 1000));
      expect(result).toMatchObject({ lastWeekPlayers: 40, players: 40 });
      expect(result.summary).toContain('same hours 2 weeks earlier, Prometheus');
      expect(result.notes).toContain(
        'players 2 weeks earlier: sum(game_players_connected{env="production"})',
      );
    });
    expect(() => config({ playersSelector: 'env="x"}) or vector(1' })).toThrow(/playersSelector/);
  });
});
