/**
 * The scheduler with the real runbook engine over a real (SQLite) store: a scheduled run is a run of
 * the engine, started as the schedule, and a restart that finds an occurrence claimed but not noted as
 * started gets the same run back from the engine (idempotency key), never a second one.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../core/index.ts';
import { runbooksSchema } from '../config/schema.ts';
import { actors, journal, runbook, testCatalog, testEngine } from '../runbooks/engine.fixture.ts';
import type { Engine } from '../runbooks/engine.ts';
import { openStore, type Store } from '../store/index.ts';
import { resolveSchedules } from './resolve.ts';
import {
  createScheduler,
  occurrenceKey,
  scheduleActor,
  type Scheduler,
  type SchedulerLog,
} from './scheduler.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const silent: SchedulerLog = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };
const scope = { service: 'game', environment: 'test' };

async function openPlace(dataDir: string): Promise<Store> {
  const store = await openStore({ dataDir });
  cleanups.push(() => store.close());
  return store;
}

function start(
  store: Store,
  clock: ManualClock,
): { engine: Engine; scheduler: Scheduler; timers: Array<() => void> } {
  const j = journal();
  const engine = testEngine({
    store,
    clock,
    catalog: testCatalog(j),
    runbooks: [runbook('daily-check', [{ id: 'look', kind: 'action', action: 'test.noop' }])],
  });
  const timers: Array<() => void> = [];
  const scheduler = createScheduler({
    schedules: resolveSchedules(runbooksSchema.parse({ timezone: 'Asia/Seoul' }), { configured: true }),
    fires: store.scheduleFires,
    runs: engine,
    scope,
    clock,
    log: silent,
    setTimer: (_ms, fn) => {
      timers.push(fn);
      return () => undefined;
    },
  });
  cleanups.push(() => scheduler.stop());
  return { engine, scheduler, timers };
}

describe('scheduler with the real engine', () => {
  it('the default daily-check fires at 09:00 Seoul as a run of the engine, once across a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-sched-engine-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const dataDir = join(dir, 'data');
    const clock = new ManualClock('2026-01-01T12:00:00Z');

    let store = await openPlace(dataDir);
    const first = start(store, clock);
    await first.scheduler.start();
    await first.scheduler.stop();
    // Down over 09:00 Seoul (00:00 UTC), back 12 minutes later: the occurrence runs, late.
    clock.set('2026-01-02T00:12:00Z');
    let { engine, scheduler } = start(store, clock);
    await scheduler.start();
    const [summary] = await engine.list({}, actors.admin);
    expect(summary).toMatchObject({
      runbook: 'daily-check',
      trigger: 'schedule',
      requestedBy: { id: 'schedule:daily-check', kind: 'schedule' },
      reason: 'schedule daily-check (0 9 * * * Asia/Seoul) occurrence 2026-01-02T00:00:00.000Z, late by 12m',
    });
    const fired = await store.scheduleFires.latest(scope, 'daily-check', 'fired');
    expect(fired?.runId).toBe(summary?.id);
    expect((await engine.runUntilIdle({ runId: summary?.id ?? '' }))?.status).toBe('succeeded');
    await scheduler.stop();

    // A scheduler that died after the engine created the run, before noting it: the next start asks the
    // engine again with the same key and gets that run back.
    const occurrence = new Date('2026-01-03T00:00:00Z');
    clock.set(occurrence);
    await store.scheduleFires.claim(scope, 'daily-check', occurrence, 'fired', occurrence);
    const created = await engine.start(
      {
        runbook: 'daily-check',
        params: {},
        trigger: 'schedule',
        idempotencyKey: occurrenceKey('daily-check', occurrence),
      },
      scheduleActor('daily-check'),
    );
    await store.close();
    store = await openPlace(dataDir);
    clock.set('2026-01-03T00:03:00Z');
    ({ engine, scheduler } = start(store, clock));
    await scheduler.start();
    const runs = await engine.list({}, actors.admin);
    expect(runs.map((r) => r.id).sort()).toEqual([summary?.id, created.id].sort());
    expect((await store.scheduleFires.latest(scope, 'daily-check', 'fired'))?.runId).toBe(created.id);
    expect(await store.scheduleFires.unstarted(scope)).toEqual([]);
  });
});
