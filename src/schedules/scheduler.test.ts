/**
 * The scheduler against the real store, on SQLite and on PostgreSQL (test/harness). The run service is a
 * test double of a collaborator (the engine had not landed when this was written): an in-test object
 * implementing only what the scheduler calls (`start()`, honouring idempotency keys as the RunService
 * contract says, and recording its calls; `plan()` and `runbooks()`, which check a runbook's name and
 * parameters against a list of runbooks).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  postgresPlace as freshPostgresPlace,
  sqlitePlace as freshSqlitePlace,
  type Cleanups,
} from '../../test/support/store-places.ts';
import { InputError, ManualClock, NotFoundError, UnavailableError } from '../core/index.ts';
import { runbooksSchema } from '../config/schema.ts';
import type {
  Actor,
  Plan,
  Runbook,
  RunbookInfo,
  RunbookLibrary,
  RunView,
  StartRunInput,
} from '../runbooks/model.ts';
import { openStore, type Store, type StoreOptions } from '../store/index.ts';
import { resolveSchedules, type ResolvedSchedule } from './resolve.ts';
import { createScheduler, type Scheduler, type SchedulerLog, type SchedulerOptions } from './scheduler.ts';
import { scheduleStatuses } from './status.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

const cleanups: Cleanups = [];
const opened: Store[] = [];
const schedulers: Scheduler[] = [];
afterEach(async () => {
  await Promise.all(schedulers.splice(0).map((s) => s.stop()));
  await Promise.all(opened.splice(0).map((s) => s.close()));
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Where a store lives: each call of `open` opens it again (a restart). */
type Place = () => Promise<StoreOptions>;

const sqlitePlace: Place = () => Promise.resolve(freshSqlitePlace(cleanups).options);

let pgDatabase: Promise<StoreOptions> | undefined;
/** One database for the file; tests stay apart by their service name (the repo's scope). */
const postgresPlace: Place = () =>
  (pgDatabase ??= freshPostgresPlace(cleanups).then((place) => place.options));

async function open(options: StoreOptions): Promise<Store> {
  const store = await openStore(options);
  opened.push(store);
  return store;
}

async function close(store: Store): Promise<void> {
  opened.splice(opened.indexOf(store), 1);
  await store.close();
}

function runbook(name: string, params: z.ZodType<Record<string, unknown>> = z.object({})): Runbook {
  return {
    name,
    version: '1',
    title: name,
    description: '',
    source: { kind: 'builtin' },
    params,
    paramsJsonSchema: {},
    steps: [],
    runBy: ['operator'],
    hash: name,
    tags: [],
  };
}

const library: RunbookLibrary = (() => {
  const runbooks = [
    runbook('daily-check'),
    runbook('weekly-report', z.object({ days: z.number().int().min(1).default(7) })),
  ];
  return { get: (name) => runbooks.find((r) => r.name === name), list: () => runbooks };
})();

interface StartCall {
  input: StartRunInput;
  actor: Actor;
}

/** The run service double: `start()` with idempotency keys (shared by every "instance" given it). */
function recordingRuns(fail?: () => Error | undefined, known: RunbookLibrary = library) {
  const calls: StartCall[] = [];
  const byKey = new Map<string, string>();
  return {
    calls,
    runIds: () => [...new Set(byKey.values())],
    runbooks: (): Promise<RunbookInfo[]> => Promise.resolve(known.list().map((r) => ({ ...r, steps: [] }))),
    plan(input: { runbook: string; params: Record<string, unknown> }): Promise<Plan> {
      const found = known.get(input.runbook);
      if (!found) return Promise.reject(new NotFoundError(`runbook ${input.runbook} not found`));
      const parsed = found.params.safeParse(input.params);
      if (!parsed.success) {
        const [issue] = parsed.error.issues;
        return Promise.reject(new InputError(`params.${issue?.path.join('.')}: ${issue?.message}`));
      }
      return Promise.resolve({
        runbook: found.name,
        version: '1',
        hash: found.hash,
        params: parsed.data,
        steps: [],
      });
    },
    start(input: StartRunInput, actor: Actor): Promise<RunView> {
      calls.push({ input, actor });
      const error = fail?.();
      if (error) return Promise.reject(error);
      const key = input.idempotencyKey ?? randomUUID();
      const id = byKey.get(key) ?? randomUUID();
      byKey.set(key, id);
      return Promise.resolve({
        id,
        runbook: input.runbook,
        version: '1',
        status: 'queued',
        trigger: input.trigger,
        requestedBy: actor,
        createdAt: new Date(0).toISOString(),
        params: input.params,
        definitionHash: input.runbook,
        steps: [],
      });
    },
  };
}

function recordingLog() {
  const lines: Array<{ level: string; msg: string; obj: object }> = [];
  const at =
    (level: string) =>
    (obj: object, msg: string): void => {
      lines.push({ level, msg, obj });
    };
  const log: SchedulerLog = { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') };
  return {
    log,
    lines,
    messages: (level: string) => lines.filter((l) => l.level === level).map((l) => l.msg),
  };
}

/** Timers that fire only when the test moves the clock past them. */
function manualTimers(clock: ManualClock) {
  const pending = new Set<{ due: number; fn: () => void }>();
  return {
    pending,
    setTimer: (ms: number, fn: () => void): (() => void) => {
      const timer = { due: clock.now().getTime() + ms, fn };
      pending.add(timer);
      return () => pending.delete(timer);
    },
    /** Moves the clock to `until`, firing each timer at its due time, and waits for the ticks it starts. */
    async advanceTo(until: Date | string, schedulers: Scheduler[]): Promise<void> {
      const target = new Date(until).getTime();
      for (;;) {
        const next = [...pending].sort((a, b) => a.due - b.due)[0];
        if (!next || next.due > target) break;
        pending.delete(next);
        clock.set(Math.max(clock.now().getTime(), next.due));
        next.fn();
        for (const s of schedulers) await s.idle();
      }
      clock.set(target);
    },
  };
}

function schedulesOf(input: Record<string, unknown>, configured = true): ResolvedSchedule[] {
  return resolveSchedules(runbooksSchema.parse(input), { configured });
}

const seoul = (extra: Record<string, unknown> = {}) =>
  schedulesOf({
    defaultSchedules: false,
    schedules: [
      { name: 'morning', runbook: 'daily-check', cron: '0 9 * * *', timezone: 'Asia/Seoul', ...extra },
    ],
  });

describe.each([
  ['SQLite', sqlitePlace],
  ['PostgreSQL', postgresPlace],
] as const)('scheduler on %s', (_backend, place) => {
  /** One scheduler "process" over a store, with its own clock and timers. */
  async function setup(options: {
    schedules: ResolvedSchedule[];
    at: string;
    store?: Store;
    storeOptions?: StoreOptions;
    runs?: ReturnType<typeof recordingRuns>;
    service?: string;
    maxSleepMs?: number;
    holdOff?: SchedulerOptions['holdOff'];
  }) {
    const storeOptions = options.storeOptions ?? (await place());
    const store = options.store ?? (await open(storeOptions));
    const clock = new ManualClock(options.at);
    const timers = manualTimers(clock);
    const runs = options.runs ?? recordingRuns();
    const logged = recordingLog();
    const scope = {
      service: options.service ?? `svc-${randomBytes(4).toString('hex')}`,
      environment: 'prod',
    };
    const scheduler = createScheduler({
      schedules: options.schedules,
      fires: store.scheduleFires,
      runs,
      scope,
      clock,
      log: logged.log,
      setTimer: timers.setTimer,
      maxSleepMs: options.maxSleepMs ?? HOUR,
      ...(options.holdOff ? { holdOff: options.holdOff } : {}),
    });
    schedulers.push(scheduler);
    return { store, storeOptions, clock, timers, runs, scope, scheduler, ...logged };
  }

  it('the occurrence record: first insert wins, the first run noted stays, bad input is refused', async () => {
    const store = await open(await place());
    const fires = store.scheduleFires;
    const scope = { service: `svc-${randomBytes(4).toString('hex')}`, environment: 'prod' };
    const other = { ...scope, environment: 'staging' };
    const at = new Date('2026-01-02T00:00:00Z');
    expect(await fires.claim(scope, 'x', at, 'fired', at)).toBe(true);
    expect(await fires.claim(scope, 'x', at, 'fired', at)).toBe(false);
    expect(await fires.claim(scope, 'x', at, 'missed', at)).toBe(false);
    // Another environment of the same service is another scope.
    expect(await fires.claim(other, 'x', at, 'fired', at)).toBe(true);
    await fires.setRun(scope, 'x', at, 'run-a');
    await fires.setRun(scope, 'x', at, 'run-b');
    expect(await fires.latest(scope, 'x')).toEqual({
      schedule: 'x',
      occurrence: '2026-01-02T00:00:00.000Z',
      outcome: 'fired',
      runId: 'run-a',
      recordedAt: '2026-01-02T00:00:00.000Z',
    });
    expect(await fires.abandon(scope, 'x', at)).toBe(false);
    expect((await fires.unstarted(other)).map((r) => r.occurrence)).toEqual(['2026-01-02T00:00:00.000Z']);
    const days = Array.from({ length: 1200 }, (_, i) => new Date(Date.UTC(2020, 0, 1) + i * 86_400_000));
    expect(await fires.recordMissed(scope, 'y', days, at)).toBe(1200);
    expect(await fires.recordMissed(scope, 'y', days.slice(0, 10), at)).toBe(0);
    expect(await fires.count(scope, 'y', 'missed', days[1199 - 5])).toBe(5);
    expect(await fires.list(scope, 'y', { limit: 5000 })).toHaveLength(1000);
    await expect(fires.list(scope, 'y', { limit: 0 })).rejects.toThrow(
      'limit must be a positive whole number (got 0)',
    );
    await expect(fires.claim(scope, 'x', new Date(Number.NaN), 'fired', at)).rejects.toThrow(
      'occurrence is not a valid instant',
    );
  });

  it('fires at 09:00 Asia/Seoul, which is 00:00 UTC, once, as the schedule', async () => {
    const s = await setup({ schedules: seoul(), at: '2026-01-01T12:00:00Z' });
    await s.scheduler.start();
    expect(s.scheduler.nextWake()?.toISOString()).toBe('2026-01-01T13:00:00.000Z'); // capped sleep
    await s.timers.advanceTo('2026-01-01T23:59:59.999Z', [s.scheduler]);
    expect(s.runs.calls).toHaveLength(0);
    expect(s.scheduler.nextWake()?.toISOString()).toBe('2026-01-02T00:00:00.000Z');
    await s.timers.advanceTo('2026-01-02T00:30:00Z', [s.scheduler]);
    expect(s.runs.calls).toHaveLength(1);
    const [call] = s.runs.calls;
    expect(call?.input).toEqual({
      runbook: 'daily-check',
      params: {},
      trigger: 'schedule',
      idempotencyKey: 'schedule:morning@2026-01-02T00:00:00.000Z',
      reason: 'schedule morning (0 9 * * * Asia/Seoul) occurrence 2026-01-02T00:00:00.000Z',
    });
    expect(call?.actor).toEqual({
      id: 'schedule:morning',
      name: 'scheduler',
      role: 'admin',
      kind: 'schedule',
    });
    const fired = await s.store.scheduleFires.latest(s.scope, 'morning', 'fired');
    expect(fired).toMatchObject({ occurrence: '2026-01-02T00:00:00.000Z', runId: s.runs.runIds()[0] });
    // A day later, the next occurrence fires too, and only it.
    await s.timers.advanceTo('2026-01-03T00:00:00Z', [s.scheduler]);
    expect(s.runs.calls.map((c) => c.input.idempotencyKey)).toEqual([
      'schedule:morning@2026-01-02T00:00:00.000Z',
      'schedule:morning@2026-01-03T00:00:00.000Z',
    ]);
  });

  /** A maintenance window 08:30–10:00 UTC on 2026-01-02 holding off every schedule (as serve's answer does). */
  const windowHold: SchedulerOptions['holdOff'] = (_schedule, now) =>
    Promise.resolve(
      now >= new Date('2026-01-02T08:30:00Z') && now < new Date('2026-01-02T10:00:00Z')
        ? { until: new Date('2026-01-02T10:00:00Z'), reason: 'maintenance window mw-20260102T0830Z-weekly' }
        : undefined,
    );
  const utcNine = () =>
    schedulesOf({
      defaultSchedules: false,
      schedules: [{ name: 'nine', runbook: 'daily-check', cron: '0 9 * * *' }],
    });

  it('hold-off: an occurrence inside a maintenance window is recorded held and started once when the window ends', async () => {
    const s = await setup({ schedules: utcNine(), at: '2026-01-02T08:00:00Z', holdOff: windowHold });
    await s.scheduler.start();
    await s.timers.advanceTo('2026-01-02T09:00:00Z', [s.scheduler]);
    expect(s.runs.calls).toHaveLength(0);
    expect(await s.store.scheduleFires.latest(s.scope, 'nine')).toMatchObject({
      occurrence: '2026-01-02T09:00:00.000Z',
      outcome: 'held',
    });
    expect(s.messages('info')).toContain(
      'schedule nine: occurrence 2026-01-02T09:00:00.000Z held off by maintenance window mw-20260102T0830Z-weekly until 2026-01-02T10:00:00.000Z',
    );
    // The timer wakes at the window's end (not an hour of capped sleep later).
    expect(s.scheduler.nextWake()?.toISOString()).toBe('2026-01-02T10:00:00.000Z');
    await s.timers.advanceTo('2026-01-02T10:00:00Z', [s.scheduler]);
    expect(s.runs.calls).toHaveLength(1);
    expect(s.runs.calls[0]?.input).toMatchObject({
      idempotencyKey: 'schedule:nine@2026-01-02T09:00:00.000Z',
      reason:
        'schedule nine (0 9 * * * UTC) occurrence 2026-01-02T09:00:00.000Z, held off by maintenance window mw-20260102T0830Z-weekly until 2026-01-02T10:00:00.000Z',
    });
    // An hour late, and still started: no grace applies to a held occurrence; never a second time.
    await s.timers.advanceTo('2026-01-02T12:00:00Z', [s.scheduler]);
    expect(s.runs.calls).toHaveLength(1);
    expect(await s.store.scheduleFires.count(s.scope, 'nine', 'missed')).toBe(0);
    expect(await s.store.scheduleFires.latest(s.scope, 'nine')).toMatchObject({
      outcome: 'fired',
      runId: s.runs.runIds()[0],
    });
  });

  it('hold-off across a restart: the next scheduler starts the held occurrence once, after the window', async () => {
    const first = await setup({ schedules: utcNine(), at: '2026-01-02T08:59:00Z', holdOff: windowHold });
    await first.scheduler.start();
    await first.timers.advanceTo('2026-01-02T09:00:00Z', [first.scheduler]);
    await first.scheduler.stop();
    await close(first.store);
    expect(first.runs.calls).toHaveLength(0);

    const again = await setup({
      schedules: utcNine(),
      at: '2026-01-02T09:30:00Z',
      storeOptions: first.storeOptions,
      service: first.scope.service,
      runs: first.runs,
      holdOff: windowHold,
    });
    const other = await setup({
      schedules: utcNine(),
      at: '2026-01-02T09:30:00Z',
      store: again.store,
      service: first.scope.service,
      runs: first.runs,
      holdOff: windowHold,
    });
    await Promise.all([again.scheduler.start(), other.scheduler.start()]);
    expect(first.runs.calls).toHaveLength(0);
    await Promise.all([
      again.timers.advanceTo('2026-01-02T10:00:01Z', [again.scheduler]),
      other.timers.advanceTo('2026-01-02T10:00:01Z', [other.scheduler]),
    ]);
    // Both schedulers may ask the engine; the occurrence's key makes it one run.
    expect(new Set(first.runs.calls.map((c) => c.input.idempotencyKey))).toEqual(
      new Set(['schedule:nine@2026-01-02T09:00:00.000Z']),
    );
    expect(first.runs.runIds()).toHaveLength(1);
    // The restarted scheduler asked the hold-off again, so the run still says which window held it.
    expect(first.runs.calls[0]?.input.reason).toContain(
      'held off by maintenance window mw-20260102T0830Z-weekly until 2026-01-02T10:00:00.000Z',
    );
    expect(await again.store.scheduleFires.unstarted(again.scope, undefined, 'held')).toEqual([]);
  });

  it('hold-off that cannot answer holds nothing: the occurrence fires as usual, and why is logged', async () => {
    const s = await setup({
      schedules: utcNine(),
      at: '2026-01-02T08:59:00Z',
      holdOff: () => Promise.reject(new UnavailableError('store down')),
    });
    await s.scheduler.start();
    await s.timers.advanceTo('2026-01-02T09:00:00Z', [s.scheduler]);
    expect(s.runs.calls).toHaveLength(1);
    expect(s.messages('error')[0]).toMatch(
      /could not ask whether a maintenance window holds it off \(store down\); not held/,
    );
  });

  /** A window 08:30–10:10 UTC: off the quarter-hours, so the newest held occurrence (10:00) is not superseded at its end. */
  const longWindowHold: SchedulerOptions['holdOff'] = (_schedule, now) =>
    Promise.resolve(
      now >= new Date('2026-01-02T08:30:00Z') && now < new Date('2026-01-02T10:10:00Z')
        ? { until: new Date('2026-01-02T10:10:00Z'), reason: 'maintenance window mw-long' }
        : undefined,
    );
  const quarterly = (extra: Record<string, unknown> = {}) =>
    schedulesOf({
      defaultSchedules: false,
      schedules: [{ name: 'often', runbook: 'daily-check', cron: '*/15 * * * *', grace: '5m', ...extra }],
    });

  it('hold-off coalesces: a schedule more frequent than the window starts once at its end (the newest), once across a restart and two instances', async () => {
    const first = await setup({
      schedules: quarterly(),
      at: '2026-01-02T08:00:00Z',
      holdOff: longWindowHold,
    });
    await first.scheduler.start();
    await first.timers.advanceTo('2026-01-02T09:50:00Z', [first.scheduler]);
    expect(first.runs.calls.map((c) => c.input.idempotencyKey)).toEqual([
      'schedule:often@2026-01-02T08:15:00.000Z',
    ]);
    expect(await first.store.scheduleFires.unstarted(first.scope, 'often', 'held')).toHaveLength(6);
    await first.scheduler.stop();
    // Restarted as two instances while the window is still open.
    const a = await setup({
      schedules: quarterly(),
      at: '2026-01-02T09:55:00Z',
      store: first.store,
      service: first.scope.service,
      runs: first.runs,
      holdOff: longWindowHold,
    });
    const b = await setup({
      schedules: quarterly(),
      at: '2026-01-02T09:55:00Z',
      store: first.store,
      service: first.scope.service,
      runs: first.runs,
      holdOff: longWindowHold,
    });
    await Promise.all([a.scheduler.start(), b.scheduler.start()]);
    await Promise.all([
      a.timers.advanceTo('2026-01-02T10:20:00Z', [a.scheduler]),
      b.timers.advanceTo('2026-01-02T10:20:00Z', [b.scheduler]),
    ]);
    // 08:30 … 10:00 were held (7); only 10:00 starts, at 10:10; 10:15 fires as usual.
    expect(new Set(first.runs.calls.map((c) => c.input.idempotencyKey))).toEqual(
      new Set([
        'schedule:often@2026-01-02T08:15:00.000Z',
        'schedule:often@2026-01-02T10:00:00.000Z',
        'schedule:often@2026-01-02T10:15:00.000Z',
      ]),
    );
    expect(first.runs.runIds()).toHaveLength(3);
    const missed = await a.store.scheduleFires.list(a.scope, 'often', { outcome: 'missed' });
    expect(missed.map((m) => m.occurrence.slice(11, 16))).toEqual([
      '09:45',
      '09:30',
      '09:15',
      '09:00',
      '08:45',
      '08:30',
    ]);
    expect(await a.store.scheduleFires.unstarted(a.scope, undefined, 'held')).toEqual([]);
    const warned = [...a.messages('warn'), ...b.messages('warn')].filter((m) => m.includes('coalesced'));
    expect(warned.length).toBeGreaterThan(0);
    expect(warned[0]).toMatch(
      /^schedule often: \d older held occurrences? coalesced into 2026-01-02T10:00:00.000Z \(recorded as missed\)$/,
    );
  });

  it('hold-off: held occurrences superseded at the window end, held too long, or of a disabled schedule become missed', async () => {
    // The window ends at 10:00, an occurrence of */15: that occurrence fires, the six held ones do not.
    const s = await setup({ schedules: quarterly(), at: '2026-01-02T08:20:00Z', holdOff: windowHold });
    await s.scheduler.start();
    await s.timers.advanceTo('2026-01-02T10:05:00Z', [s.scheduler]);
    expect(s.runs.calls.map((c) => c.input.idempotencyKey)).toEqual([
      'schedule:often@2026-01-02T10:00:00.000Z',
    ]);
    expect(await s.store.scheduleFires.count(s.scope, 'often', 'missed')).toBe(6);
    expect(s.messages('warn')).toContain(
      'schedule often: 6 held occurrences recorded as missed: occurrence 2026-01-02T10:00:00.000Z has come due since',
    );

    // Held at 09:00, then gameops is down when the window ends at 10:00 and back at 12:00: beyond the grace.
    const down = await setup({ schedules: utcNine(), at: '2026-01-02T08:59:00Z', holdOff: windowHold });
    await down.scheduler.start();
    await down.timers.advanceTo('2026-01-02T09:10:00Z', [down.scheduler]);
    await down.scheduler.stop();
    const back = await setup({
      schedules: schedulesOf({
        defaultSchedules: false,
        schedules: [{ name: 'nine', runbook: 'daily-check', cron: '0 9 * * *', grace: '30m' }],
      }),
      at: '2026-01-02T12:00:00Z',
      store: down.store,
      service: down.scope.service,
      runs: down.runs,
      holdOff: windowHold,
    });
    await back.scheduler.start();
    expect(down.runs.calls).toHaveLength(0);
    expect(await back.store.scheduleFires.latest(back.scope, 'nine')).toMatchObject({
      occurrence: '2026-01-02T09:00:00.000Z',
      outcome: 'missed',
    });
    expect(back.messages('warn')).toContain(
      'schedule nine: 1 held occurrence recorded as missed: it was last seen held (gameops was not running when the hold ended) at 2026-01-02T09:00:00.000Z, more than the grace of 30m ago',
    );

    // Held, then the schedule is disabled: never started, even once enabled again weeks later.
    const held = await setup({ schedules: utcNine(), at: '2026-01-02T08:59:00Z', holdOff: windowHold });
    await held.scheduler.start();
    await held.timers.advanceTo('2026-01-02T09:10:00Z', [held.scheduler]);
    await held.scheduler.stop();
    const disabled = await setup({
      schedules: schedulesOf({
        defaultSchedules: false,
        schedules: [{ name: 'nine', runbook: 'daily-check', cron: '0 9 * * *', enabled: false }],
      }),
      at: '2026-01-02T09:20:00Z',
      store: held.store,
      service: held.scope.service,
      runs: held.runs,
      holdOff: windowHold,
    });
    await disabled.scheduler.start();
    expect(disabled.messages('warn')).toContain(
      'schedule nine: 1 held occurrence recorded as missed: the schedule is disabled',
    );
    await disabled.scheduler.stop();
    const enabled = await setup({
      schedules: utcNine(),
      at: '2026-01-20T08:00:00Z',
      store: held.store,
      service: held.scope.service,
      runs: held.runs,
      holdOff: windowHold,
    });
    await enabled.scheduler.start();
    expect(held.runs.calls).toHaveLength(0);
    expect(await enabled.store.scheduleFires.unstarted(enabled.scope, undefined, 'held')).toEqual([]);
  });

  it('hold-off: a held occurrence whose start fails at the window end (engine unavailable) is started on the next tick', async () => {
    let failure: Error | undefined;
    const runs = recordingRuns(() => failure);
    const s = await setup({ schedules: utcNine(), at: '2026-01-02T08:59:00Z', holdOff: windowHold, runs });
    await s.scheduler.start();
    await s.timers.advanceTo('2026-01-02T09:30:00Z', [s.scheduler]);
    failure = new UnavailableError('store at x is not answering');
    await s.timers.advanceTo('2026-01-02T10:00:00Z', [s.scheduler]);
    expect(runs.runIds()).toHaveLength(0);
    // It keeps its hold (the timer wakes a second later), and lateness counts from the window's end.
    expect(s.scheduler.nextWake()?.toISOString()).toBe('2026-01-02T10:00:01.000Z');
    failure = undefined;
    await s.timers.advanceTo('2026-01-02T10:00:30Z', [s.scheduler]);
    expect(runs.runIds()).toHaveLength(1);
    expect(await s.store.scheduleFires.latest(s.scope, 'nine')).toMatchObject({
      occurrence: '2026-01-02T09:00:00.000Z',
      outcome: 'fired',
      runId: runs.runIds()[0],
    });
  });

  it('hold-off: an orphaned fired occurrence found while a window is open is held, and started once when it ends', async () => {
    const s = await setup({ schedules: utcNine(), at: '2026-01-02T09:05:00Z', holdOff: windowHold });
    // A scheduler claimed 09:00 (before the window was planned) and stopped before starting its run.
    const nine = new Date('2026-01-02T09:00:00Z');
    await s.store.scheduleFires.claim(s.scope, 'nine', nine, 'fired', nine);
    await s.scheduler.start();
    expect(s.runs.calls).toHaveLength(0);
    expect(await s.store.scheduleFires.latest(s.scope, 'nine')).toMatchObject({ outcome: 'held' });
    expect(s.messages('info')).toContain(
      'schedule nine: occurrence 2026-01-02T09:00:00.000Z was claimed but its run not started; now held off by maintenance window mw-20260102T0830Z-weekly until 2026-01-02T10:00:00.000Z',
    );
    await s.timers.advanceTo('2026-01-02T11:00:00Z', [s.scheduler]);
    expect(s.runs.calls.map((c) => c.input.idempotencyKey)).toEqual([
      'schedule:nine@2026-01-02T09:00:00.000Z',
    ]);
    expect(s.runs.calls[0]?.input.reason).toContain(
      'held off by maintenance window mw-20260102T0830Z-weekly',
    );
  });

  it('a restart right after firing does not fire again', async () => {
    const first = await setup({ schedules: seoul(), at: '2026-01-01T23:00:00Z' });
    await first.scheduler.start();
    await first.timers.advanceTo('2026-01-02T00:00:00Z', [first.scheduler]);
    expect(first.runs.calls).toHaveLength(1);
    await first.scheduler.stop();
    await close(first.store);

    const again = await setup({
      schedules: seoul(),
      at: '2026-01-02T00:00:01Z',
      storeOptions: first.storeOptions,
      service: first.scope.service,
      runs: first.runs,
    });
    await again.scheduler.start();
    await again.timers.advanceTo('2026-01-02T23:59:00Z', [again.scheduler]);
    expect(first.runs.calls).toHaveLength(1);
    expect(await again.store.scheduleFires.count(again.scope, 'morning', 'missed')).toBe(0);
  });

  it('a crash between recording and starting: the next start starts it with the same key', async () => {
    const s = await setup({ schedules: seoul(), at: '2026-01-02T00:03:00Z' });
    // What a scheduler that died after its insert left behind.
    await s.store.scheduleFires.claim(
      s.scope,
      'morning',
      new Date('2026-01-01T00:00:00Z'),
      'seen',
      new Date('2026-01-01T00:00:00Z'),
    );
    const occurrence = new Date('2026-01-02T00:00:00Z');
    await s.store.scheduleFires.claim(s.scope, 'morning', occurrence, 'fired', occurrence);
    await s.scheduler.start();
    expect(s.runs.calls.map((c) => c.input.idempotencyKey)).toEqual([
      'schedule:morning@2026-01-02T00:00:00.000Z',
    ]);
    expect(s.runs.calls[0]?.input.reason).toContain('late by 3m');
    expect(await s.store.scheduleFires.unstarted(s.scope)).toEqual([]);
    expect((await s.store.scheduleFires.latest(s.scope, 'morning'))?.runId).toBe(s.runs.runIds()[0]);
  });

  it('a claimed occurrence whose run never started and is now beyond grace is recorded missed', async () => {
    const s = await setup({ schedules: seoul({ grace: '30m' }), at: '2026-01-02T02:00:00Z' });
    const occurrence = new Date('2026-01-02T00:00:00Z');
    await s.store.scheduleFires.claim(s.scope, 'morning', occurrence, 'fired', occurrence);
    await s.scheduler.start();
    expect(s.runs.calls).toHaveLength(0);
    expect(await s.store.scheduleFires.latest(s.scope, 'morning')).toMatchObject({
      occurrence: '2026-01-02T00:00:00.000Z',
      outcome: 'missed',
    });
    expect(s.messages('warn').join('\n')).toContain('now too late, recorded as missed');
  });

  it('a missed occurrence within grace runs once at start ("late by 12m")', async () => {
    const first = await setup({ schedules: seoul(), at: '2026-01-01T12:00:00Z' });
    await first.scheduler.start();
    await first.scheduler.stop();
    // gameops was down from 12:00 until 00:12 UTC (09:12 in Seoul).
    const again = await setup({
      schedules: seoul(),
      at: '2026-01-02T00:12:00Z',
      store: first.store,
      service: first.scope.service,
      runs: first.runs,
    });
    await again.scheduler.start();
    expect(first.runs.calls).toHaveLength(1);
    expect(first.runs.calls[0]?.input).toMatchObject({
      idempotencyKey: 'schedule:morning@2026-01-02T00:00:00.000Z',
      trigger: 'schedule',
      reason: 'schedule morning (0 9 * * * Asia/Seoul) occurrence 2026-01-02T00:00:00.000Z, late by 12m',
    });
    expect(again.messages('info')).toContain(
      `schedule morning: started run ${first.runs.runIds()[0]} (late by 12m)`,
    );
    // A second scheduler start (another restart) does not run it again.
    const third = await setup({
      schedules: seoul(),
      at: '2026-01-02T00:13:00Z',
      store: first.store,
      service: first.scope.service,
      runs: first.runs,
    });
    await third.scheduler.start();
    expect(first.runs.calls).toHaveLength(1);
  });

  it('a missed occurrence outside grace is recorded missed, and schedules list shows it', async () => {
    const first = await setup({ schedules: seoul({ grace: '1h' }), at: '2026-01-01T12:00:00Z' });
    await first.scheduler.start();
    await first.scheduler.stop();
    const again = await setup({
      schedules: seoul({ grace: '1h' }),
      at: '2026-01-02T02:00:00Z',
      store: first.store,
      service: first.scope.service,
      runs: first.runs,
    });
    await again.scheduler.start();
    expect(first.runs.calls).toHaveLength(0);
    expect(await again.store.scheduleFires.list(again.scope, 'morning', { outcome: 'missed' })).toEqual([
      {
        schedule: 'morning',
        occurrence: '2026-01-02T00:00:00.000Z',
        outcome: 'missed',
        recordedAt: '2026-01-02T02:00:00.000Z',
      },
    ]);
    expect(again.messages('warn')).toContain(
      'schedule morning: 1 occurrence missed while gameops was not running',
    );
    const report = await scheduleStatuses(seoul({ grace: '1h' }), {
      fires: again.store.scheduleFires,
      scope: again.scope,
      now: again.clock.now(),
    });
    expect(report).toEqual({
      schedules: [
        {
          name: 'morning',
          runbook: 'daily-check',
          cron: '0 9 * * *',
          timezone: 'Asia/Seoul',
          enabled: true,
          origin: 'config',
          graceMs: HOUR,
          next: ['2026-01-03T00:00:00.000Z', '2026-01-04T00:00:00.000Z', '2026-01-05T00:00:00.000Z'],
          lastMissed: { occurrence: '2026-01-02T00:00:00.000Z', recordedAt: '2026-01-02T02:00:00.000Z' },
          missedSinceLastFired: 1,
        },
      ],
    });
  });

  it('down for days: the latest occurrence within grace runs, each older one is recorded missed', async () => {
    const first = await setup({ schedules: seoul(), at: '2026-01-01T12:00:00Z' });
    await first.scheduler.start();
    await first.scheduler.stop();
    const again = await setup({
      schedules: seoul(),
      at: '2026-01-04T00:10:00Z',
      store: first.store,
      service: first.scope.service,
      runs: first.runs,
    });
    await again.scheduler.start();
    expect(first.runs.calls.map((c) => c.input.idempotencyKey)).toEqual([
      'schedule:morning@2026-01-04T00:00:00.000Z',
    ]);
    const missed = await again.store.scheduleFires.list(again.scope, 'morning', { outcome: 'missed' });
    expect(missed.map((m) => m.occurrence)).toEqual(['2026-01-03T00:00:00.000Z', '2026-01-02T00:00:00.000Z']);
    const [status] = (
      await scheduleStatuses(seoul(), {
        fires: again.store.scheduleFires,
        scope: again.scope,
        now: again.clock.now(),
      })
    ).schedules;
    expect(status?.lastFired).toMatchObject({
      occurrence: '2026-01-04T00:00:00.000Z',
      runId: first.runs.runIds()[0],
    });
    expect(status?.missedSinceLastFired).toBe(0);
  });

  it('a gap longer than 1,000 occurrences records the latest 1,000 as missed and says so', async () => {
    const every = (grace = '0s') =>
      schedulesOf({
        defaultSchedules: false,
        schedules: [{ name: 'often', runbook: 'daily-check', cron: '*/5 * * * *', grace }],
      });
    const first = await setup({ schedules: every(), at: '2026-01-01T00:00:00Z' });
    await first.scheduler.start();
    await first.scheduler.stop();
    // Five days of every five minutes: 1,440 occurrences, capped; the look-back is 7 days.
    const again = await setup({
      schedules: every(),
      at: '2026-01-06T00:02:00Z',
      store: first.store,
      service: first.scope.service,
    });
    await again.scheduler.start();
    // 00:00 was 2 minutes ago: within the one-minute floor? No: 2m > 1m and grace is 0, so it is missed too.
    expect(again.runs.calls).toHaveLength(0);
    expect(await again.store.scheduleFires.count(again.scope, 'often', 'missed')).toBe(1000);
    expect(again.messages('warn')).toContain(
      'schedule often: 1000 occurrences missed while gameops was not running (only the latest 1000 recorded)',
    );
  });

  it('a schedule seen for the first time does not backfill', async () => {
    const s = await setup({ schedules: seoul({ grace: '2h' }), at: '2026-01-02T00:30:00Z' });
    await s.scheduler.start();
    expect(s.runs.calls).toHaveLength(0);
    expect(await s.store.scheduleFires.count(s.scope, 'morning', 'missed')).toBe(0);
    expect(await s.store.scheduleFires.latest(s.scope, 'morning')).toMatchObject({
      outcome: 'seen',
      occurrence: '2026-01-02T00:30:00.000Z',
    });
  });

  it('a disabled schedule never fires, and enabling it later does not backfill', async () => {
    const first = await setup({ schedules: seoul({ enabled: false }), at: '2026-01-01T12:00:00Z' });
    await first.scheduler.start();
    await first.timers.advanceTo('2026-01-05T12:00:00Z', [first.scheduler]);
    expect(first.runs.calls).toHaveLength(0);
    expect(first.scheduler.nextWake()?.toISOString()).toBe('2026-01-05T13:00:00.000Z');
    await first.scheduler.stop();
    // Restarted with it still disabled, then with it enabled.
    const second = await setup({
      schedules: seoul({ enabled: false }),
      at: '2026-01-06T12:00:00Z',
      store: first.store,
      service: first.scope.service,
      runs: first.runs,
    });
    await second.scheduler.start();
    await second.scheduler.stop();
    const third = await setup({
      schedules: seoul(),
      at: '2026-01-06T12:30:00Z',
      store: first.store,
      service: first.scope.service,
      runs: first.runs,
    });
    await third.scheduler.start();
    expect(first.runs.calls).toHaveLength(0);
    expect(await third.store.scheduleFires.count(third.scope, 'morning', 'missed')).toBe(0);
    await third.timers.advanceTo('2026-01-07T00:00:00Z', [third.scheduler]);
    expect(first.runs.calls).toHaveLength(1);
  });

  it('a schedule naming an unknown runbook, or with bad parameters, fails at start naming the schedule', async () => {
    const schedules = schedulesOf({
      defaultSchedules: false,
      schedules: [
        { name: 'nightly', runbook: 'backup', cron: '0 3 * * *' },
        { name: 'weekly', runbook: 'weekly-report', cron: '0 6 * * MON', params: { days: 0 } },
        { name: 'later', runbook: 'not-written-yet', cron: '0 6 * * *', enabled: false },
      ],
    });
    const s = await setup({ schedules, at: '2026-01-01T00:00:00Z' });
    const err = await s.scheduler.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InputError);
    const message = (err as InputError).message;
    expect(message).toContain('2 invalid schedules');
    expect(message).toContain(
      'runbooks.schedules[0]: schedule "nightly" names runbook "backup", which does not exist (known: daily-check, weekly-report)',
    );
    expect(message).toMatch(
      /runbooks\.schedules\[1\]\.params: params\.days: .*>=1.* \(schedule "weekly", runbook weekly-report\)/,
    );
    expect(message).not.toContain('later');
    expect(s.scheduler.nextWake()).toBeUndefined();
    expect(await s.store.scheduleFires.latest(s.scope, 'nightly')).toBeUndefined();
  });

  it('the default daily-check names runbooks.defaultSchedules when its runbook is missing', async () => {
    const s = await setup({ schedules: schedulesOf({}), at: '2026-01-01T00:00:00Z' });
    const empty: RunbookLibrary = { get: () => undefined, list: () => [] };
    const scheduler = createScheduler({
      schedules: schedulesOf({}),
      fires: s.store.scheduleFires,
      runs: recordingRuns(undefined, empty),
      scope: s.scope,
      clock: s.clock,
      log: s.log,
      setTimer: s.timers.setTimer,
    });
    await expect(scheduler.start()).rejects.toThrow(
      'invalid schedule: runbooks.defaultSchedules (schedule daily-check): schedule "daily-check" names runbook "daily-check", which does not exist (no runbooks are loaded)',
    );
  });

  it('a run that cannot start (engine unavailable) is started later with the same key; a refused one is recorded missed', async () => {
    let failure: Error | undefined = new UnavailableError('store at x is not answering');
    const runs = recordingRuns(() => failure);
    const s = await setup({ schedules: seoul(), at: '2026-01-01T23:00:00Z', runs });
    await s.scheduler.start();
    await s.timers.advanceTo('2026-01-02T00:00:00Z', [s.scheduler]);
    expect(runs.calls).toHaveLength(1);
    expect(s.messages('error')).toEqual([
      'schedule morning: could not start runbook daily-check (tried again later while within grace): store at x is not answering',
    ]);
    expect((await s.store.scheduleFires.unstarted(s.scope)).map((r) => r.occurrence)).toEqual([
      '2026-01-02T00:00:00.000Z',
    ]);
    failure = undefined;
    // The next wake-up (the capped sleep) picks up the orphan once it is a minute old.
    await s.timers.advanceTo('2026-01-02T01:00:00Z', [s.scheduler]);
    expect(runs.calls.map((c) => c.input.idempotencyKey)).toEqual([
      'schedule:morning@2026-01-02T00:00:00.000Z',
      'schedule:morning@2026-01-02T00:00:00.000Z',
    ]);
    expect(runs.calls[1]?.input.reason).toContain('late by 1h');
    expect(await s.store.scheduleFires.unstarted(s.scope)).toEqual([]);

    failure = new NotFoundError('runbook daily-check not found');
    await s.timers.advanceTo('2026-01-03T00:00:00Z', [s.scheduler]);
    expect(await s.store.scheduleFires.latest(s.scope, 'morning')).toMatchObject({
      occurrence: '2026-01-03T00:00:00.000Z',
      outcome: 'missed',
    });
    expect(s.messages('error').at(-1)).toBe(
      'schedule morning: could not start runbook daily-check; occurrence recorded as missed: runbook daily-check not found',
    );
  });

  it('the store going away mid-way: the tick logs why and the scheduler keeps its place', async () => {
    const s = await setup({ schedules: seoul(), at: '2026-01-01T23:00:00Z' });
    await s.scheduler.start();
    await close(s.store);
    await s.timers.advanceTo('2026-01-02T00:00:00Z', [s.scheduler]);
    expect(s.runs.calls).toHaveLength(0);
    expect(s.messages('error').at(-1)).toMatch(/^scheduler: .*store .* is closed$/);
    expect(s.scheduler.nextWake()?.toISOString()).toBe('2026-01-02T01:00:00.000Z');
  });

  it('a suspend longer than the grace: the wake-up records the missed occurrences instead of firing them late', async () => {
    const s = await setup({
      schedules: seoul({ grace: '10m' }),
      at: '2026-01-01T12:00:00Z',
      maxSleepMs: MINUTE,
    });
    await s.scheduler.start();
    expect(s.scheduler.nextWake()?.toISOString()).toBe('2026-01-01T12:01:00.000Z');
    // The machine sleeps: the timer due at 12:01 fires three days later.
    const [timer] = [...s.timers.pending];
    s.clock.set('2026-01-04T00:30:00Z');
    timer?.fn();
    await s.scheduler.idle();
    expect(s.runs.calls).toHaveLength(0);
    expect(
      (await s.store.scheduleFires.list(s.scope, 'morning', { outcome: 'missed' })).map((m) => m.occurrence),
    ).toEqual(['2026-01-04T00:00:00.000Z', '2026-01-03T00:00:00.000Z', '2026-01-02T00:00:00.000Z']);
    expect(s.scheduler.nextWake()?.toISOString()).toBe('2026-01-04T00:31:00.000Z');
  });

  it('Europe/Berlin DST: 02:30 fires once on spring-forward day (at 03:00 CEST) and once on fall-back day', async () => {
    const berlin = schedulesOf({
      defaultSchedules: false,
      schedules: [{ name: 'night', runbook: 'daily-check', cron: '30 2 * * *', timezone: 'Europe/Berlin' }],
    });
    const s = await setup({ schedules: berlin, at: '2026-03-28T12:00:00Z' });
    await s.scheduler.start();
    await s.timers.advanceTo('2026-03-30T12:00:00Z', [s.scheduler]);
    expect(s.runs.calls.map((c) => c.input.idempotencyKey)).toEqual([
      'schedule:night@2026-03-29T01:00:00.000Z',
      'schedule:night@2026-03-30T00:30:00.000Z',
    ]);
    const fall = await setup({ schedules: berlin, at: '2026-10-24T12:00:00Z' });
    await fall.scheduler.start();
    await fall.timers.advanceTo('2026-10-26T12:00:00Z', [fall.scheduler]);
    expect(fall.runs.calls.map((c) => c.input.idempotencyKey)).toEqual([
      'schedule:night@2026-10-25T00:30:00.000Z',
      'schedule:night@2026-10-26T01:30:00.000Z',
    ]);
  });

  if (_backend === 'PostgreSQL')
    it('two gameops instances on one PostgreSQL fire each occurrence once', async () => {
      const storeOptions = await place();
      const service = `svc-${randomBytes(4).toString('hex')}`;
      const runs = recordingRuns();
      const a = await setup({ schedules: seoul(), at: '2026-01-01T23:00:00Z', storeOptions, service, runs });
      const b = await setup({ schedules: seoul(), at: '2026-01-01T23:00:00Z', storeOptions, service, runs });
      expect(a.store).not.toBe(b.store);
      await Promise.all([a.scheduler.start(), b.scheduler.start()]);
      // Both wake at the same instant and race for each occurrence.
      for (const day of ['2026-01-02', '2026-01-03', '2026-01-04']) {
        await Promise.all([
          a.timers.advanceTo(`${day}T00:00:00Z`, [a.scheduler]),
          b.timers.advanceTo(`${day}T00:00:00Z`, [b.scheduler]),
        ]);
      }
      expect(runs.calls.map((c) => c.input.idempotencyKey)).toEqual([
        'schedule:morning@2026-01-02T00:00:00.000Z',
        'schedule:morning@2026-01-03T00:00:00.000Z',
        'schedule:morning@2026-01-04T00:00:00.000Z',
      ]);
      const others = [...a.messages('debug'), ...b.messages('debug')];
      expect(others).toHaveLength(3);
      expect(others[0]).toBe('schedule morning: occurrence already handled by another gameops');
    });
});
