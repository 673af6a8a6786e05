import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { services } from '../../test/harness/index.ts';
import { z } from 'zod';
import { type GameopsError, ManualClock, secret } from '../core/index.ts';
import { MAINTENANCE_ACTOR } from '../maintenance/service.ts';
import { openStore, type Store } from '../store/index.ts';
import { actors, gate, journal, runbook, testCatalog, testEngine } from './engine.fixture.ts';
import type { Runbook, RunView, StepState } from './model.ts';

// Regressions for the review of the runbook engine (issue #4): what must never run twice, four eyes,
// approvals used once, storable results. SQLite, and PostgreSQL for what another process may do.

const dirs: string[] = [];
const databases: string[] = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(async () => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  for (const name of databases.splice(0)) {
    await pgQuery(services().postgres.url, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  }
});

async function pgQuery(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

async function openBackend(backend: 'sqlite' | 'postgres'): Promise<Store> {
  if (backend === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-safety-'));
    dirs.push(dir);
    return openStore({ dataDir: join(dir, 'data') });
  }
  const admin = services().postgres.url;
  const name = `gameops_safety_${randomBytes(6).toString('hex')}`;
  await pgQuery(admin, `CREATE DATABASE ${name}`);
  databases.push(name);
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return openStore({ url: url.toString() });
}

async function setup(runbooks: Runbook[], workerId = 'worker-1', backend: 'sqlite' | 'postgres' = 'sqlite') {
  const store = await openBackend(backend);
  stores.push(store);
  const clock = new ManualClock('2026-03-02T09:00:00Z');
  const j = journal();
  const catalog = testCatalog(j);
  const engine = testEngine({ store, clock, catalog, runbooks, workerId });
  return { store, clock, j, catalog, engine };
}

async function rejection(promise: Promise<unknown>): Promise<GameopsError> {
  try {
    await promise;
  } catch (err) {
    return err as GameopsError;
  }
  throw new Error('expected a rejection');
}

function step(view: RunView, id: string): StepState {
  const found = view.steps.find((s) => s.id === id);
  if (!found) throw new Error(`no step ${id}`);
  return found;
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe.each(['sqlite', 'postgres'] as const)(
  'runbook engine: nothing non-idempotent runs twice unasked (%s)',
  (backend) => {
    it('a non-idempotent step cancelled mid-flight needs verification after a retry from an earlier step', async () => {
      const rb = runbook('c', [
        { id: 'first', kind: 'action', action: 'test.noop' },
        { id: 'slow', kind: 'action', action: 'test.gate-mutate', args: { gate: 'slow' }, needs: ['first'] },
      ]);
      const { engine, j } = await setup([rb], 'worker-1', backend);
      const g = gate();
      j.gates.set('slow', g);
      const run = await engine.start({ runbook: 'c', params: {}, trigger: 'cli' }, actors.alice);
      const idle = engine.runUntilIdle({ runId: run.id });
      await g.entered;
      const cancelled = await engine.cancel(run.id, actors.bob, 'oops');
      expect(step(cancelled, 'slow')).toMatchObject({
        status: 'cancelled',
        error: { code: 'unknown_outcome' },
      });
      g.open();
      await idle;
      await engine.retry({ runId: run.id, from: 'first' }, actors.bob);
      const view = (await engine.runUntilIdle({ runId: run.id }))!;
      expect(view.status).toBe('needs-verification');
      // Nothing new starts while a step needs verification.
      expect(step(view, 'first').status).toBe('pending');
      expect(step(view, 'slow')).toMatchObject({
        status: 'needs-verification',
        error: { code: 'unknown_outcome' },
      });
      expect(j.calls.filter((c) => c.stepId === 'slow')).toHaveLength(1);
      // A person says it did not happen: only then it runs again.
      await engine.verify({ runId: run.id, stepId: 'slow', outcome: 'not-done' }, actors.bob);
      const again = engine.runUntilIdle({ runId: run.id });
      while (j.calls.filter((c) => c.stepId === 'slow').length < 2) await tick();
      j.gates.get('slow')!.open();
      expect((await again)!.status).toBe('succeeded');
    });

    it('a non-idempotent step stopped by the run deadline needs verification after a retry', async () => {
      const rb = runbook(
        'd',
        [{ id: 'slow', kind: 'action', action: 'test.gate-mutate', args: { gate: 'd' } }],
        {
          timeoutMs: 60_000,
        },
      );
      const { engine, clock, j } = await setup([rb], 'worker-1', backend);
      const run = await engine.start({ runbook: 'd', params: {}, trigger: 'cli' }, actors.alice);
      const idle = engine.runUntilIdle({ runId: run.id });
      while (j.calls.length === 0) await tick();
      clock.advance(60_000);
      engine.wake();
      const failed = (await idle)!;
      expect(failed.status).toBe('failed');
      expect(step(failed, 'slow').error?.code).toBe('unknown_outcome');
      await engine.retry({ runId: run.id, from: 'slow' }, actors.bob);
      const view = (await engine.runUntilIdle({ runId: run.id }))!;
      expect(step(view, 'slow').status).toBe('needs-verification');
      expect(j.calls).toHaveLength(1);
    });

    it('a non-idempotent step that times out needs verification and is not retried, even with a retry policy', async () => {
      const rb = runbook('t', [
        {
          id: 'mut',
          kind: 'action',
          action: 'test.gate-mutate',
          args: { gate: 'g' },
          timeoutMs: 1_000,
          retry: { attempts: 3, initialDelayMs: 10, factor: 1, maxDelayMs: 10 },
        },
      ]);
      const { engine, clock, j } = await setup([rb], 'worker-1', backend);
      const run = await engine.start({ runbook: 't', params: {}, trigger: 'cli' }, actors.alice);
      const idle = engine.runUntilIdle({ runId: run.id });
      while (j.calls.length === 0) await tick();
      clock.advance(1_100);
      engine.wake();
      let view = (await idle)!;
      expect(view.status).toBe('needs-verification');
      expect(step(view, 'mut').error?.message).toMatch(/timed out after 1000 ms.*not idempotent/);
      clock.advance(60_000);
      view = (await engine.runUntilIdle({ runId: run.id }))!;
      expect(step(view, 'mut').status).toBe('needs-verification');
      expect(j.calls).toHaveLength(1);
    });

    it('a retry from an upstream step leaves a downstream step that needs verification alone', async () => {
      const rb = runbook('nv', [
        { id: 'first', kind: 'action', action: 'test.noop' },
        { id: 'slow', kind: 'action', action: 'test.gate-mutate', args: { gate: 'slow' }, needs: ['first'] },
      ]);
      const { engine, store, clock, catalog, j } = await setup([rb], 'worker-1', backend);
      const g = gate();
      j.gates.set('slow', g);
      const run = await engine.start({ runbook: 'nv', params: {}, trigger: 'cli' }, actors.alice);
      const stop = new AbortController();
      const idle = engine.runUntilIdle({ runId: run.id, signal: stop.signal });
      await g.entered;
      stop.abort();
      await idle;
      // Another worker finds the step orphaned (on PostgreSQL once the lease ran out): a
      // non-idempotent action goes to a person.
      clock.advance(8_001);
      const e2 = testEngine({ store, clock, catalog, runbooks: [rb], workerId: 'worker-2' });
      let view = (await e2.runUntilIdle({ runId: run.id }))!;
      expect(step(view, 'slow').status).toBe('needs-verification');
      await e2.retry({ runId: run.id, from: 'first' }, actors.bob);
      g.open();
      view = (await e2.runUntilIdle({ runId: run.id }))!;
      expect(step(view, 'slow').status).toBe('needs-verification');
      expect(j.calls.filter((c) => c.stepId === 'slow')).toHaveLength(1);
    });
  },
);

describe('runbook engine: approvals', () => {
  const scale = runbook(
    'scale',
    [
      { id: 'ok', kind: 'approval', covers: ['scale'], fourEyes: true },
      {
        id: 'scale',
        kind: 'action',
        action: 'test.typed',
        args: { replicas: '${{ params.n }}' },
        needs: ['ok'],
      },
    ],
    { params: z.object({ n: z.number().int() }) },
  );

  it('four eyes: whoever changed the parameters by a retry cannot approve them', async () => {
    const { engine, j } = await setup([scale]);
    const run = await engine.start({ runbook: 'scale', params: { n: 2 }, trigger: 'cli' }, actors.alice);
    await engine.runUntilIdle({ runId: run.id });
    await engine.cancel(run.id, actors.bob);
    await engine.retry({ runId: run.id, from: 'ok', params: { n: 9 } }, actors.bob);
    let view = (await engine.runUntilIdle({ runId: run.id }))!;
    const planHash = step(view, 'ok').approval!.planHash;
    const refused = await rejection(
      engine.decide({ runId: run.id, stepId: 'ok', decision: 'approve', planHash }, actors.bob),
    );
    expect(refused.code).toBe('not_allowed');
    expect(refused.message).toMatch(/bob \(token:bob\) set the parameters of run/);
    // Nor the original requester.
    const alice = await rejection(
      engine.decide({ runId: run.id, stepId: 'ok', decision: 'approve', planHash }, actors.alice),
    );
    expect(alice.message).toMatch(/alice \(token:alice\) requested run/);
    await engine.decide(
      { runId: run.id, stepId: 'ok', decision: 'approve', planHash },
      { id: 'token:carol', name: 'carol', role: 'operator', kind: 'token' },
    );
    view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('succeeded');
    expect(j.calls.map((c) => c.args)).toEqual([{ replicas: 9 }]);
  });

  it('four eyes: the same person under another token (same name) cannot approve', async () => {
    const { engine } = await setup([scale]);
    const run = await engine.start({ runbook: 'scale', params: { n: 2 }, trigger: 'cli' }, actors.alice);
    const view = (await engine.runUntilIdle({ runId: run.id }))!;
    const planHash = step(view, 'ok').approval!.planHash;
    const refused = await rejection(
      engine.decide(
        { runId: run.id, stepId: 'ok', decision: 'approve', planHash },
        { id: 'token:alice-2', name: 'Alice', role: 'operator', kind: 'token' },
      ),
    );
    expect(refused.code).toBe('not_allowed');
  });

  it('an approval is used once: re-running a covered step (verify not-done) asks for a new decision', async () => {
    const rb = runbook('kill', [
      { id: 'ok', kind: 'approval', covers: ['restart'] },
      { id: 'restart', kind: 'action', action: 'test.gate-mutate', args: { gate: 'r' }, needs: ['ok'] },
    ]);
    const { engine, store, clock, catalog, j } = await setup([rb]);
    const run = await engine.start({ runbook: 'kill', params: {}, trigger: 'cli' }, actors.alice);
    let view = (await engine.runUntilIdle({ runId: run.id }))!;
    await engine.decide(
      { runId: run.id, stepId: 'ok', decision: 'approve', planHash: step(view, 'ok').approval!.planHash },
      actors.bob,
    );
    const stop = new AbortController();
    const idle = engine.runUntilIdle({ runId: run.id, signal: stop.signal });
    while (j.calls.length === 0) await tick();
    stop.abort();
    await idle;
    const e2 = testEngine({ store, clock, catalog, runbooks: [rb], workerId: 'worker-2' });
    view = (await e2.runUntilIdle({ runId: run.id }))!;
    expect(step(view, 'restart').status).toBe('needs-verification');
    await e2.verify({ runId: run.id, stepId: 'restart', outcome: 'not-done' }, actors.bob);
    view = (await e2.runUntilIdle({ runId: run.id }))!;
    expect(step(view, 'ok').status).toBe('waiting');
    expect(step(view, 'ok').approval?.decision).toBeUndefined();
    expect(step(view, 'restart').status).toBe('pending');
    expect(j.calls).toHaveLength(1);
    j.gates.get('r')!.open();
    await e2.decide(
      { runId: run.id, stepId: 'ok', decision: 'approve', planHash: step(view, 'ok').approval!.planHash },
      actors.bob,
    );
    view = (await e2.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('succeeded');
    expect(j.calls).toHaveLength(2);
  });
});

describe('runbook engine: results that JSON cannot hold', () => {
  it('stores BigInt, cyclic and NUL-laden outputs and log lines once, instead of re-running the step', async () => {
    const rb = runbook('bn', [{ id: 'a', kind: 'action', action: 'x.odd' }]);
    const { store, clock, catalog } = await setup([rb]);
    let calls = 0;
    const odd = {
      name: 'x.odd',
      description: 'returns what JSON cannot hold',
      effect: 'mutating' as const,
      idempotent: true,
      args: z.object({}).default({}),
      target: () => 'x',
      run: async (_args: unknown, ctx: { log(line: string): void }) => {
        calls++;
        ctx.log('nul\u0000byte');
        const cyclic: Record<string, unknown> = {
          n: 10n,
          text: 'a\u0000b',
          secret: secret('hunter2', 'test'),
          broken: {
            toJSON: () => {
              throw new Error('no');
            },
          },
        };
        cyclic.self = cyclic;
        return cyclic;
      },
    };
    const withOdd = { ...catalog, action: (n: string) => (n === 'x.odd' ? odd : catalog.action(n)) };
    const engine = testEngine({
      store,
      clock,
      catalog: withOdd,
      runbooks: [rb],
      workerId: 'w9',
    });
    const run = await engine.start({ runbook: 'bn', params: {}, trigger: 'cli' }, actors.alice);
    const view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('succeeded');
    expect(step(view, 'a').output).toEqual({
      n: '10',
      text: 'ab',
      secret: '********',
      broken: '[unserialisable]',
      self: '[circular]',
    });
    expect(calls).toBe(1);
    const events = await engine.events(run.id, 0, actors.viewer);
    expect(events.some((e) => e.message === 'nulbyte')).toBe(true);
  });
});

describe('runbook engine: start, pause and resume', () => {
  const rb = runbook(
    'one',
    [{ id: 'a', kind: 'action', action: 'test.noop', args: { n: '${{ params.n }}' } }],
    {
      params: z.object({ n: z.number().int() }),
      timeoutMs: 60_000,
    },
  );

  it('idempotency keys: maintenance: keys are the maintenance window service’s (its actor), refused to anyone else', async () => {
    const { engine } = await setup([rb]);
    const key = 'maintenance:mw-20991202T1900Z-abcdef';
    for (const actor of [actors.alice, { ...actors.alice, kind: 'local' as const }]) {
      const squat = await rejection(
        engine.start({ runbook: 'one', params: { n: 1 }, trigger: 'cli', idempotencyKey: key }, actor),
      );
      expect(squat.code).toBe('input');
      expect(squat.message).toBe(
        `idempotencyKey "${key}": keys starting with maintenance: are reserved for the maintenance window service`,
      );
    }
    const first = await engine.start(
      { runbook: 'one', params: { n: 1 }, trigger: 'schedule', idempotencyKey: key },
      MAINTENANCE_ACTOR,
    );
    const again = await engine.start(
      { runbook: 'one', params: { n: 1 }, trigger: 'schedule', idempotencyKey: key },
      MAINTENANCE_ACTOR,
    );
    expect(again.id).toBe(first.id);
  });

  it('idempotency keys: schedule: keys are the scheduler’s; a key reused with other parameters is a conflict', async () => {
    const { engine } = await setup([rb]);
    const squat = await rejection(
      engine.start(
        { runbook: 'one', params: { n: 1 }, trigger: 'cli', idempotencyKey: 'schedule:daily:2026-03-02' },
        actors.alice,
      ),
    );
    expect(squat.code).toBe('input');
    expect(squat.message).toMatch(/schedule: are reserved for the scheduler/);
    const scheduler = { id: 'schedule:daily', name: 'scheduler', role: 'admin', kind: 'schedule' } as const;
    const first = await engine.start(
      { runbook: 'one', params: { n: 1 }, trigger: 'schedule', idempotencyKey: 'schedule:daily:2026-03-02' },
      scheduler,
    );
    const again = await engine.start(
      { runbook: 'one', params: { n: 1 }, trigger: 'schedule', idempotencyKey: 'schedule:daily:2026-03-02' },
      scheduler,
    );
    expect(again.id).toBe(first.id);
    const other = await rejection(
      engine
        .start({ runbook: 'one', params: { n: 2 }, trigger: 'cli', idempotencyKey: 'k1' }, actors.alice)
        .then(() =>
          engine.start(
            { runbook: 'one', params: { n: 3 }, trigger: 'cli', idempotencyKey: 'k1' },
            actors.alice,
          ),
        ),
    );
    expect(other.code).toBe('conflict');
    expect(other.message).toMatch(/idempotencyKey "k1" was already used by run/);
  });

  it('resume and pause refuse a finished run; a run paused while queued keeps its deadline', async () => {
    const { engine, clock } = await setup([rb]);
    const done = await engine.start({ runbook: 'one', params: { n: 1 }, trigger: 'cli' }, actors.alice);
    expect((await engine.runUntilIdle({ runId: done.id }))!.status).toBe('succeeded');
    expect((await rejection(engine.resume(done.id, actors.alice))).code).toBe('conflict');
    expect((await rejection(engine.pause(done.id, actors.alice))).code).toBe('conflict');
    expect((await engine.get(done.id, actors.viewer)).status).toBe('succeeded');

    const queued = await engine.start({ runbook: 'one', params: { n: 2 }, trigger: 'cli' }, actors.alice);
    await engine.pause(queued.id, actors.alice);
    await engine.runUntilIdle({ runId: queued.id });
    clock.advance(1_000);
    await engine.resume(queued.id, actors.alice);
    const view = (await engine.runUntilIdle({ runId: queued.id }))!;
    expect(view.status).toBe('succeeded');
    expect(view.startedAt).toBe('2026-03-02T09:00:01.000Z');
  });
});

describe('runbook engine: secrets in compensation errors', () => {
  it('masks a failed compensation in the step, the run reason, the events and the attempts', async () => {
    const rb = runbook('cm', [
      {
        id: 'a',
        kind: 'action',
        action: 'test.noop',
        compensate: { action: 'test.undo', args: { of: 'secret:hunter2', fail: true } },
      },
      {
        id: 'b',
        kind: 'action',
        action: 'test.fail',
        args: { code: 'input' },
        needs: ['a'],
        onFailure: 'compensate',
      },
    ]);
    const { engine, store } = await setup([rb]);
    const run = await engine.start({ runbook: 'cm', params: {}, trigger: 'cli' }, actors.alice);
    const view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('failed');
    expect(view.reason).toMatch(/COMPENSATION FAILED for a/);
    expect(JSON.stringify(view)).not.toContain('hunter2');
    expect(step(view, 'a').compensation?.error?.message).toContain('********');
    const events = await engine.events(run.id, 0, actors.viewer);
    expect(JSON.stringify(events)).not.toContain('hunter2');
    const attempts = await store.runs.attempts(run.id);
    expect(JSON.stringify(attempts)).not.toContain('hunter2');
  });
});

describe('runbook engine: sub-runs', () => {
  it('a sub-run is refused when the parent’s requester may not run the child runbook', async () => {
    const child = runbook('admin-only', [{ id: 'x', kind: 'action', action: 'test.record' }], {
      runBy: ['admin'],
    });
    const parent = runbook('parent', [{ id: 'sub', kind: 'runbook', runbook: 'admin-only' }], {
      runBy: ['operator'],
    });
    const { engine, j } = await setup([child, parent]);
    const run = await engine.start({ runbook: 'parent', params: {}, trigger: 'cli' }, actors.alice);
    const view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('failed');
    expect(step(view, 'sub')).toMatchObject({ status: 'failed', error: { code: 'not_allowed' } });
    expect(step(view, 'sub').error?.message).toMatch(/alice/);
    expect(step(view, 'sub').childRunId).toBeUndefined();
    expect(j.calls).toHaveLength(0);
  });
});

describe('runbook engine: graceful stop', () => {
  const rb = runbook('sd', [{ id: 'm', kind: 'action', action: 'test.gate-mutate', args: { gate: 'm' } }]);

  it('a step that finishes within the grace period is recorded as it ended', async () => {
    const { engine, store, clock, catalog, j } = await setup([rb]);
    const g = gate();
    j.gates.set('m', g);
    const run = await engine.start({ runbook: 'sd', params: {}, trigger: 'cli' }, actors.alice);
    const stop = new AbortController();
    const working = engine.work(stop.signal);
    await g.entered;
    stop.abort();
    g.open();
    await working;
    const e2 = testEngine({ store, clock, catalog, runbooks: [rb], workerId: 'worker-2' });
    const view = (await e2.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('succeeded');
    expect(step(view, 'm').status).toBe('succeeded');
    expect(j.calls).toHaveLength(1);
  });

  it('a step still running after the grace period is left to recovery', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-safety-'));
    dirs.push(dir);
    const store = await openStore({ dataDir: join(dir, 'data') });
    stores.push(store);
    const clock = new ManualClock('2026-03-02T09:00:00Z');
    const j = journal();
    const catalog = testCatalog(j);
    const engine = testEngine({
      store,
      clock,
      catalog,
      runbooks: [rb],
      workerId: 'worker-1',
      shutdownGraceMs: 20,
    });
    const g = gate();
    j.gates.set('m', g);
    const run = await engine.start({ runbook: 'sd', params: {}, trigger: 'cli' }, actors.alice);
    const stop = new AbortController();
    const working = engine.work(stop.signal);
    await g.entered;
    stop.abort();
    await working;
    const e2 = testEngine({ store, clock, catalog, runbooks: [rb], workerId: 'worker-2' });
    const view = (await e2.runUntilIdle({ runId: run.id }))!;
    expect(step(view, 'm').status).toBe('needs-verification');
    g.open();
  });
});

describe('runbook engine: what people are shown', () => {
  it('an approval message has its templates resolved when the approval is requested', async () => {
    const rb = runbook(
      'msg',
      [
        { id: 'first', kind: 'action', action: 'test.noop', args: { who: 'w' } },
        {
          id: 'ok',
          kind: 'approval',
          covers: ['kill'],
          needs: ['first'],
          message:
            'kill thread ${{ params.thread }} of ${{ steps.first.output.who }}, password ${{ params.secret }}',
        },
        {
          id: 'kill',
          kind: 'action',
          action: 'test.record',
          args: { thread: '${{ params.thread }}' },
          needs: ['ok'],
        },
      ],
      { params: z.object({ thread: z.number().int(), secret: z.string() }) },
    );
    const { engine } = await setup([rb]);
    const run = await engine.start(
      { runbook: 'msg', params: { thread: 12, secret: 'secret:pw' }, trigger: 'cli' },
      actors.alice,
    );
    const view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(step(view, 'ok')).toMatchObject({
      status: 'waiting',
      approval: { message: 'kill thread 12 of w, password ********' },
    });
    const events = await engine.events(run.id, 0, actors.viewer);
    expect(
      events.some((e) => e.stepId === 'ok' && e.message === 'kill thread 12 of w, password ********'),
    ).toBe(true);
  });

  it('a succeeded run has an outcome: fail when a check failed and the run went on, warn when one warned', async () => {
    const check = (status: 'warn' | 'fail') => ({
      kind: 'check' as const,
      check: 'test.metric',
      assert: [{ value: '${{ steps.c.output.cpu }}', op: 'lt', to: 80, status, message: 'hot' }],
      onFailure: 'continue',
    });
    const warns = runbook('warns', [{ id: 'c', ...check('warn') }]);
    const fails = runbook('fails', [{ id: 'c', ...check('fail') }]);
    const { engine, j } = await setup([warns, fails]);
    j.metrics.cpu = 10;
    const ok = await engine.start({ runbook: 'warns', params: {}, trigger: 'cli' }, actors.alice);
    expect((await engine.runUntilIdle({ runId: ok.id }))!.outcome).toBe('ok');
    j.metrics.cpu = 90;
    const warned = await engine.start({ runbook: 'warns', params: {}, trigger: 'cli' }, actors.alice);
    expect((await engine.runUntilIdle({ runId: warned.id }))!).toMatchObject({
      status: 'succeeded',
      outcome: 'warn',
    });
    const failed = await engine.start({ runbook: 'fails', params: {}, trigger: 'cli' }, actors.alice);
    expect((await engine.runUntilIdle({ runId: failed.id }))!).toMatchObject({
      status: 'succeeded',
      outcome: 'fail',
    });
  });
});

describe('runbook engine: retry with new parameters', () => {
  it('steps using a changed parameter run again, so an approval never mixes new and old values', async () => {
    const rb = runbook(
      'slowq',
      [
        {
          id: 'lookup',
          kind: 'action',
          action: 'test.noop',
          args: { thread: '${{ params.thread }}', user: 'u${{ params.thread }}' },
        },
        { id: 'other', kind: 'action', action: 'test.noop', args: { x: 1 }, needs: ['lookup'] },
        { id: 'ok', kind: 'approval', covers: ['kill'], needs: ['other'] },
        {
          id: 'kill',
          kind: 'action',
          action: 'test.record',
          args: { thread: '${{ params.thread }}', user: '${{ steps.lookup.output.user }}' },
          needs: ['ok'],
        },
      ],
      { params: z.object({ thread: z.number().int() }) },
    );
    const { engine } = await setup([rb]);
    const run = await engine.start(
      { runbook: 'slowq', params: { thread: 12 }, trigger: 'cli' },
      actors.alice,
    );
    await engine.runUntilIdle({ runId: run.id });
    await engine.cancel(run.id, actors.alice);
    await engine.retry({ runId: run.id, from: 'ok', params: { thread: 999 } }, actors.alice);
    const view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(step(view, 'lookup').output).toEqual({ thread: 999, user: 'u999' });
    expect(step(view, 'ok').approval?.covers[0]?.args).toEqual({ thread: 999, user: 'u999' });
  });
});

describe('runbook engine: parameters checked against the actions at start', () => {
  it('refuses a start (and a retry) whose parameters make an action’s arguments invalid, naming the step and field', async () => {
    const rb = runbook(
      'scale',
      [
        { id: 'look', kind: 'action', action: 'test.noop' },
        {
          id: 'scale',
          kind: 'action',
          action: 'test.typed',
          args: { replicas: '${{ params.n }}' },
          needs: ['look'],
        },
        {
          id: 'later',
          kind: 'action',
          action: 'test.typed',
          args: { replicas: '${{ steps.look.output.n }}' },
          needs: ['scale'],
        },
      ],
      { params: z.object({ n: z.number().int() }) },
    );
    const { engine, j } = await setup([rb]);
    const refused = await rejection(
      engine.start({ runbook: 'scale', params: { n: 500 }, trigger: 'cli' }, actors.alice),
    );
    expect(refused.code).toBe('input');
    expect(refused.message).toMatch(/step scale: args\.replicas/);
    const run = await engine.start({ runbook: 'scale', params: { n: 2 }, trigger: 'cli' }, actors.alice);
    await engine.runUntilIdle({ runId: run.id });
    const retry = await rejection(
      engine.retry({ runId: run.id, from: 'scale', params: { n: 500 } }, actors.alice),
    );
    expect(retry.message).toMatch(/step scale: args\.replicas/);
    expect(j.calls.filter((c) => c.stepId === 'scale')).toHaveLength(1);
  });
});

describe('runbook engine: approvals that were not granted', () => {
  it('a covered step whose approval expired (onFailure continue) is skipped; the run does not stay running', async () => {
    const rb = runbook('ap', [
      { id: 'ok', kind: 'approval', covers: ['kill'], onFailure: 'continue', expiresInMs: 1000 },
      { id: 'kill', kind: 'action', action: 'test.record', needs: ['ok'] },
    ]);
    const { engine, clock, j } = await setup([rb]);
    const run = await engine.start({ runbook: 'ap', params: {}, trigger: 'cli' }, actors.alice);
    await engine.runUntilIdle({ runId: run.id });
    clock.advance(2000);
    const view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('succeeded');
    expect(view.reason).toMatch(/failed but continued: ok/);
    expect(step(view, 'kill').status).toBe('skipped');
    expect(j.calls).toHaveLength(0);
  });

  it('retry --from a covered step that ran asks for a new decision', async () => {
    const rb = runbook('ap2', [
      { id: 'ok', kind: 'approval', covers: ['kill'] },
      { id: 'kill', kind: 'action', action: 'test.record', needs: ['ok'] },
      { id: 'after', kind: 'action', action: 'test.fail', args: { code: 'input' }, needs: ['kill'] },
    ]);
    const { engine, j } = await setup([rb]);
    const run = await engine.start({ runbook: 'ap2', params: {}, trigger: 'cli' }, actors.alice);
    let view = (await engine.runUntilIdle({ runId: run.id }))!;
    await engine.decide(
      { runId: run.id, stepId: 'ok', decision: 'approve', planHash: step(view, 'ok').approval!.planHash },
      actors.bob,
    );
    view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('failed');
    await engine.retry({ runId: run.id, from: 'kill' }, actors.alice);
    view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(step(view, 'ok').status).toBe('waiting');
    expect(step(view, 'kill').status).toBe('pending');
    expect(j.calls.filter((c) => c.stepId === 'kill')).toHaveLength(1);
  });
});

describe.each(['sqlite', 'postgres'] as const)(
  'runbook engine: changes made by another process (%s)',
  (backend) => {
    it('a worker stops its attempt when another process cancelled and retried the run, before claiming again', async () => {
      const rb = runbook('x', [{ id: 'a', kind: 'action', action: 'test.gate', args: { gate: 'a' } }]);
      const { engine, store, clock, catalog, j } = await setup([rb], 'worker-1', backend);
      const g = gate();
      j.gates.set('a', g);
      const run = await engine.start({ runbook: 'x', params: {}, trigger: 'cli' }, actors.alice);
      const idle = engine.runUntilIdle({ runId: run.id });
      const ctx = await g.entered;
      // Another process (its own engine over the same store) cancels and retries.
      const other = testEngine({ store, clock, catalog, runbooks: [rb], workerId: 'worker-2' });
      await other.cancel(run.id, actors.bob);
      await other.retry({ runId: run.id, from: 'a' }, actors.bob);
      engine.wake();
      while (!ctx.signal.aborted) await tick();
      expect((ctx.signal.reason as Error).message).toMatch(/changed by another process|is cancelled/);
      // The first worker claims the retried step afresh (a new fence), and it finishes once.
      g.open();
      await idle;
      const view = (await engine.runUntilIdle({ runId: run.id }))!;
      expect(view.status).toBe('succeeded');
      expect(step(view, 'a').attempt).toBe(2);
    });
  },
);
