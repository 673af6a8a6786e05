import { randomBytes } from 'node:crypto';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { services } from '../../test/harness/index.ts';
import { pgQuery, postgresPlace, sqlitePlace, type Cleanups } from '../../test/support/store-places.ts';
import { type GameopsError, ManualClock } from '../core/index.ts';
import { openStore, type Store } from '../store/index.ts';
import { MAX_LOG_LINES_PER_STEP } from './engine.ts';
import {
  actors,
  gate,
  journal,
  type Journal,
  runbook,
  testCatalog,
  testEngine,
  type TestEngineOptions,
} from './engine.fixture.ts';
import type { Runbook, RunView, StepState } from './model.ts';

const cleanups: Cleanups = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A fresh, empty store of this backend. */
async function freshStore(backend: 'sqlite' | 'postgres'): Promise<Store> {
  const place = backend === 'sqlite' ? sqlitePlace(cleanups) : await postgresPlace(cleanups);
  const store = await openStore(place.options);
  stores.push(store);
  return store;
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

function statuses(view: RunView): Record<string, string> {
  return Object.fromEntries(view.steps.map((s) => [s.id, s.status]));
}

interface Setup {
  store: Store;
  clock: ManualClock;
  j: Journal;
  engine: ReturnType<typeof testEngine>;
  /** Another engine (another worker) over the same store. */
  other(options?: Partial<TestEngineOptions>): ReturnType<typeof testEngine>;
}

describe.each(['sqlite', 'postgres'] as const)('runbook engine on %s', (backend) => {
  async function setup(runbooks: Runbook[], options: Partial<TestEngineOptions> = {}): Promise<Setup> {
    const store = await freshStore(backend);
    const clock = new ManualClock('2026-03-02T09:00:00Z');
    const j = journal();
    const catalog = testCatalog(j);
    const make = (extra: Partial<TestEngineOptions> = {}) =>
      testEngine({ store, clock, catalog, runbooks, workerId: 'worker-1', ...options, ...extra });
    return { store, clock, j, engine: make(), other: (extra) => make({ workerId: 'worker-2', ...extra }) };
  }

  it('runs steps in dependency order, passes outputs through templates and audits every transition', async () => {
    const rb = runbook(
      'linear',
      [
        { id: 'a', kind: 'action', action: 'test.noop', args: { n: '${{ params.n }}' } },
        {
          id: 'b',
          kind: 'action',
          action: 'test.record',
          needs: ['a'],
          args: { from: '${{ steps.a.output.n }}' },
        },
        {
          id: 'c',
          kind: 'notify',
          needs: ['b'],
          message: 'done by ${{ run.requestedBy }}: ${{ steps.b.status }}',
        },
      ],
      { params: z.object({ n: z.number().int() }) },
    );
    const { engine, store, j } = await setup([rb]);
    const started = await engine.start({ runbook: 'linear', params: { n: 7 }, trigger: 'cli' }, actors.alice);
    expect(started.status).toBe('queued');
    const view = await engine.runUntilIdle({ runId: started.id });
    expect(view?.status).toBe('succeeded');
    expect(statuses(view!)).toEqual({ a: 'succeeded', b: 'succeeded', c: 'succeeded' });
    expect(j.calls.map((c) => [c.action, c.args])).toEqual([
      ['test.noop', { n: 7 }],
      ['test.record', { from: 7 }],
    ]);
    const events = await engine.events(started.id, 0, actors.viewer);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.find((e) => e.type === 'log' && e.stepId === 'c')?.message).toBe(
      'done by alice: succeeded',
    );
    const audit = await store.audit.list({ target: `run:${started.id}*`, limit: 100 });
    expect(audit.map((r) => r.action)).toEqual([
      'run.start',
      'run.running',
      'step.running',
      'step.succeeded',
      'step.running',
      'step.succeeded',
      'step.running',
      'step.succeeded',
      'run.succeeded',
    ]);
    expect(audit[0]!.actor.id).toBe('token:alice');
    expect((await store.audit.verify()).ok).toBe(true);
  });

  it('refuses parameters that fail the schema naming the field, unknown runbooks, and actors without the role', async () => {
    const rb = runbook('typed', [{ id: 'a', kind: 'action', action: 'test.noop' }], {
      params: z.object({ replicas: z.number().int().min(1) }),
    });
    const { engine } = await setup([rb]);
    const bad = await rejection(
      engine.start({ runbook: 'typed', params: { replicas: 0 }, trigger: 'api' }, actors.alice),
    );
    expect(bad.code).toBe('input');
    expect(bad.message).toContain('params.replicas');
    const unknown = await rejection(
      engine.start({ runbook: 'nope', params: {}, trigger: 'api' }, actors.alice),
    );
    expect(unknown.code).toBe('not_found');
    expect(unknown.message).toContain('typed');
    const denied = await rejection(
      engine.start({ runbook: 'typed', params: { replicas: 1 }, trigger: 'api' }, actors.viewer),
    );
    expect(denied.code).toBe('not_allowed');
    expect(await engine.list({}, actors.viewer)).toEqual([]);
  });

  it('returns the first run for a repeated idempotency key', async () => {
    const { engine } = await setup([runbook('once', [{ id: 'a', kind: 'action', action: 'test.noop' }])]);
    const first = await engine.start(
      { runbook: 'once', params: {}, trigger: 'schedule', idempotencyKey: 'daily@1' },
      actors.admin,
    );
    const again = await engine.start(
      { runbook: 'once', params: {}, trigger: 'schedule', idempotencyKey: 'daily@1' },
      actors.admin,
    );
    expect(again.id).toBe(first.id);
    expect(await engine.list({ runbook: 'once' }, actors.viewer)).toHaveLength(1);
  });

  it('fails a step whose arguments fail the action schema without retrying it, and cancels what follows', async () => {
    // Arguments from another step's output (parameters alone are checked at start).
    const rb = runbook('badargs', [
      { id: 'look', kind: 'action', action: 'test.noop', args: { replicas: '${{ params.replicas }}' } },
      {
        id: 'scale',
        kind: 'action',
        action: 'test.typed',
        needs: ['look'],
        args: { replicas: '${{ steps.look.output.replicas }}' },
        retry: { attempts: 5, initialDelayMs: 10, factor: 2, maxDelayMs: 100, nonRetryable: ['input'] },
      },
      { id: 'after', kind: 'action', action: 'test.noop', needs: ['scale'] },
    ]);
    const { engine, j } = await setup([rb]);
    const run = await engine.start(
      { runbook: 'badargs', params: { replicas: 'many' }, trigger: 'cli' },
      actors.alice,
    );
    const view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('failed');
    expect(step(view, 'scale').error).toMatchObject({ code: 'input' });
    expect(step(view, 'scale').error?.message).toContain('args.replicas');
    expect(step(view, 'after').status).toBe('cancelled');
    expect(j.calls.map((c) => c.stepId)).toEqual(['look']);
    expect(view.reason).toContain('step scale failed');
  });

  it('retries with backoff from the injected clock and honours non-retryable codes', async () => {
    const retry = {
      attempts: 3,
      initialDelayMs: 1_000,
      factor: 2,
      maxDelayMs: 10_000,
      nonRetryable: ['conflict'],
    };
    const rb = runbook('retrying', [
      { id: 'flaky', kind: 'action', action: 'test.flaky', args: { succeedOn: 3 }, retry },
      {
        id: 'stubborn',
        kind: 'action',
        action: 'test.fail',
        needs: ['flaky'],
        args: { code: 'conflict' },
        retry,
      },
    ]);
    const { engine, clock, j } = await setup([rb]);
    const run = await engine.start({ runbook: 'retrying', params: {}, trigger: 'cli' }, actors.alice);
    let view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(step(view, 'flaky')).toMatchObject({
      status: 'retrying',
      attempt: 1,
      notBefore: '2026-03-02T09:00:01.000Z',
    });
    clock.advance(999);
    view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(step(view, 'flaky').attempt).toBe(1);
    clock.advance(1);
    view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(step(view, 'flaky')).toMatchObject({
      status: 'retrying',
      attempt: 2,
      notBefore: '2026-03-02T09:00:03.000Z',
    });
    clock.advance(2_000);
    view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(step(view, 'flaky')).toMatchObject({ status: 'succeeded', attempt: 3, output: { attempt: 3 } });
    expect(step(view, 'stubborn')).toMatchObject({
      status: 'failed',
      attempt: 1,
      error: { code: 'conflict' },
    });
    expect(view.status).toBe('failed');
    expect(j.calls.filter((c) => c.action === 'test.fail')).toHaveLength(1);
  });

  it('times out a hung action, naming the step and the action', async () => {
    const rb = runbook('hang', [{ id: 'stuck', kind: 'action', action: 'test.hang', timeoutMs: 5_000 }]);
    const { engine, clock, j } = await setup([rb]);
    const run = await engine.start({ runbook: 'hang', params: {}, trigger: 'cli' }, actors.alice);
    const idle = engine.runUntilIdle({ runId: run.id });
    while (j.calls.length === 0) await new Promise((r) => setTimeout(r, 5));
    clock.advance(5_000);
    engine.wake();
    const view = (await idle)!;
    expect(view.status).toBe('failed');
    expect(step(view, 'stuck').error).toEqual({
      code: 'unavailable',
      message: 'step stuck (action test.hang) timed out after 5000 ms',
    });
  });

  it('fails a run that runs past its timeout, with the reason', async () => {
    const rb = runbook('slow', [{ id: 'stuck', kind: 'action', action: 'test.hang' }], { timeoutMs: 60_000 });
    const { engine, clock, j } = await setup([rb]);
    const run = await engine.start({ runbook: 'slow', params: {}, trigger: 'cli' }, actors.alice);
    const idle = engine.runUntilIdle({ runId: run.id });
    while (j.calls.length === 0) await new Promise((r) => setTimeout(r, 5));
    clock.advance(60_000);
    engine.wake();
    const view = (await idle)!;
    expect(view.status).toBe('failed');
    expect(view.reason).toMatch(/timed out after 60000 ms/);
    expect(step(view, 'stuck').status).toBe('failed');
  });

  it('judges check steps by the check status and assertions over its values', async () => {
    const rb = runbook('checks', [
      {
        id: 'cpu',
        kind: 'check',
        check: 'test.metric',
        assert: [
          {
            value: '${{ steps.cpu.output.cpu }}',
            op: 'lt',
            to: 80,
            status: 'warn',
            message: 'cpu ${{ steps.cpu.output.cpu }}% >= 80',
          },
          { value: '${{ steps.cpu.output.cpu }}', op: 'lt', to: 95, status: 'fail', message: 'cpu critical' },
        ],
        onFailure: 'continue',
      },
      {
        id: 'plain',
        kind: 'check',
        needs: ['cpu'],
        assert: [{ value: '${{ params.ok }}', op: 'truthy', status: 'fail', message: 'not ok' }],
      },
    ]);
    const { engine, j } = await setup([rb]);
    j.metrics.cpu = 85;
    let run = await engine.start({ runbook: 'checks', params: { ok: true }, trigger: 'cli' }, actors.alice);
    let view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(step(view, 'cpu')).toMatchObject({
      status: 'warned',
      output: { cpu: 85 },
      error: { message: 'cpu 85% >= 80' },
    });
    expect(step(view, 'plain').status).toBe('succeeded');
    expect(view.status).toBe('succeeded');
    j.metrics.cpu = 99;
    run = await engine.start({ runbook: 'checks', params: { ok: false }, trigger: 'cli' }, actors.alice);
    view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(step(view, 'cpu')).toMatchObject({ status: 'failed', error: { code: 'check_failed' } });
    expect(step(view, 'plain')).toMatchObject({ status: 'failed', error: { message: 'not ok' } });
    expect(view.status).toBe('failed');
  });

  describe('approvals', () => {
    const approvalRunbook = (fourEyes = true) =>
      runbook(
        'scale-up',
        [
          { id: 'look', kind: 'action', action: 'test.noop' },
          {
            id: 'approve',
            kind: 'approval',
            needs: ['look'],
            covers: ['scale'],
            approvers: ['operator'],
            fourEyes,
            expiresInMs: 600_000,
          },
          {
            id: 'gatekeeper',
            kind: 'action',
            action: 'test.flaky',
            needs: ['approve'],
            args: { succeedOn: 2 },
          },
          {
            id: 'scale',
            kind: 'action',
            action: 'test.typed',
            needs: ['gatekeeper'],
            args: { replicas: '${{ params.replicas }}', secret: '${{ params.password }}' },
          },
        ],
        { params: z.object({ replicas: z.number().int(), password: z.string().default('secret:hunter2') }) },
      );

    it('waits with a plan hash; refuses the requester under four-eyes and a viewer; runs covered steps after approval', async () => {
      const { engine, j } = await setup([approvalRunbook()]);
      const run = await engine.start(
        { runbook: 'scale-up', params: { replicas: 4 }, trigger: 'cli' },
        actors.alice,
      );
      let view = (await engine.runUntilIdle({ runId: run.id }))!;
      expect(view.status).toBe('waiting');
      expect(view.reason).toBe('waiting for approval approve');
      const approval = step(view, 'approve').approval!;
      expect(approval.planHash).toMatch(/^[0-9a-f]{64}$/);
      expect(approval.expiresAt).toBe('2026-03-02T09:10:00.000Z');
      expect(approval.covers).toMatchObject([
        {
          id: 'scale',
          action: 'test.typed',
          target: 'deployment game/server x4',
          args: { replicas: 4, secret: '********' },
        },
      ]);
      expect(JSON.stringify(view)).not.toContain('hunter2');
      const own = await rejection(
        engine.decide(
          { runId: run.id, stepId: 'approve', decision: 'approve', planHash: approval.planHash },
          actors.alice,
        ),
      );
      expect(own.code).toBe('not_allowed');
      expect(own.message).toContain('four eyes');
      const viewer = await rejection(
        engine.decide(
          { runId: run.id, stepId: 'approve', decision: 'approve', planHash: approval.planHash },
          actors.viewer,
        ),
      );
      expect(viewer.code).toBe('not_allowed');
      view = await engine.decide(
        { runId: run.id, stepId: 'approve', decision: 'approve', planHash: approval.planHash, comment: 'go' },
        actors.bob,
      );
      expect(step(view, 'approve')).toMatchObject({
        status: 'succeeded',
        approval: { decision: 'approved', decidedBy: { id: 'token:bob' }, comment: 'go' },
      });
      view = (await engine.runUntilIdle({ runId: run.id }))!;
      // gatekeeper fails once (no retry policy): the run fails before scale.
      expect(view.status).toBe('failed');
      expect(j.calls.some((c) => c.action === 'test.typed')).toBe(false);
    });

    it('refuses an approval decided on the hash from before the parameters changed, and re-asks when covered args changed after approval', async () => {
      const { engine, j } = await setup([approvalRunbook(false)]);
      const run = await engine.start(
        { runbook: 'scale-up', params: { replicas: 2 }, trigger: 'cli' },
        actors.alice,
      );
      let view = (await engine.runUntilIdle({ runId: run.id }))!;
      const first = step(view, 'approve').approval!.planHash;
      await engine.decide(
        { runId: run.id, stepId: 'approve', decision: 'approve', planHash: first },
        actors.bob,
      );
      view = (await engine.runUntilIdle({ runId: run.id }))!;
      expect(view.status).toBe('failed'); // gatekeeper's first attempt fails
      // Retry from gatekeeper with other parameters: scale uses them, so its approval is asked again
      // (scale does not run on the old grant).
      await engine.retry({ runId: run.id, from: 'gatekeeper', params: { replicas: 5 } }, actors.alice);
      view = (await engine.runUntilIdle({ runId: run.id }))!;
      expect(step(view, 'gatekeeper').status).toBe('pending'); // it follows the approval
      expect(step(view, 'scale').status).toBe('pending');
      expect(view.status).toBe('waiting');
      const second = step(view, 'approve').approval!;
      expect(second.planHash).not.toBe(first);
      expect(second.decision).toBeUndefined();
      expect(second.covers[0]).toMatchObject({ target: 'deployment game/server x5' });
      expect(j.calls.some((c) => c.action === 'test.typed')).toBe(false);
      const stale = await rejection(
        engine.decide({ runId: run.id, stepId: 'approve', decision: 'approve', planHash: first }, actors.bob),
      );
      expect(stale.code).toBe('conflict');
      expect(stale.message).toContain(
        'parameters changed since the approval was requested: re-read the plan',
      );
      await engine.decide(
        { runId: run.id, stepId: 'approve', decision: 'approve', planHash: second.planHash },
        actors.bob,
      );
      view = (await engine.runUntilIdle({ runId: run.id }))!;
      expect(view.status).toBe('succeeded');
      expect(j.calls.filter((c) => c.action === 'test.typed').map((c) => c.args)).toEqual([
        { replicas: 5, secret: 'secret:hunter2' },
      ]);
    });

    it('refuses a decision on an expired request and fails the step; a rejection fails the run', async () => {
      const { engine, clock } = await setup([approvalRunbook()]);
      const run = await engine.start(
        { runbook: 'scale-up', params: { replicas: 2 }, trigger: 'cli' },
        actors.alice,
      );
      let view = (await engine.runUntilIdle({ runId: run.id }))!;
      const { planHash } = step(view, 'approve').approval!;
      clock.advance(600_000);
      const expired = await rejection(
        engine.decide({ runId: run.id, stepId: 'approve', decision: 'approve', planHash }, actors.bob),
      );
      expect(expired.code).toBe('conflict');
      expect(expired.message).toContain('expired');
      view = (await engine.runUntilIdle({ runId: run.id }))!;
      expect(step(view, 'approve').status).toBe('failed');
      expect(view.status).toBe('failed');
      expect(step(view, 'scale').status).toBe('cancelled');

      const second = await engine.start(
        { runbook: 'scale-up', params: { replicas: 2 }, trigger: 'cli' },
        actors.alice,
      );
      view = (await engine.runUntilIdle({ runId: second.id }))!;
      await engine.decide(
        {
          runId: second.id,
          stepId: 'approve',
          decision: 'reject',
          planHash: step(view, 'approve').approval!.planHash,
          comment: 'not now',
        },
        actors.bob,
      );
      view = (await engine.runUntilIdle({ runId: second.id }))!;
      expect(view.status).toBe('failed');
      expect(step(view, 'approve').error).toEqual({ code: 'rejected', message: 'rejected by bob: not now' });
    });
  });

  it('skips an approval and the step it covers together; refuses to run a covered step whose approval was skipped', async () => {
    const skip = { value: '${{ params.scale }}', op: 'truthy' };
    const rb = runbook('maybe-scale', [
      { id: 'approve', kind: 'approval', covers: ['scale'], when: skip },
      { id: 'scale', kind: 'action', action: 'test.record', needs: ['approve'], when: skip },
      { id: 'rogue', kind: 'action', action: 'test.record', needs: ['scale'] },
      { id: 'approve2', kind: 'approval', covers: ['rogue'], when: skip },
    ]);
    const { engine, j } = await setup([rb]);
    const run = await engine.start(
      { runbook: 'maybe-scale', params: { scale: false }, trigger: 'cli' },
      actors.alice,
    );
    const view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(statuses(view)).toEqual({
      approve: 'skipped',
      scale: 'skipped',
      rogue: 'failed',
      approve2: 'skipped',
    });
    expect(step(view, 'rogue').error?.message).toContain('approval approve2 was skipped');
    expect(view.status).toBe('failed');
    expect(j.calls).toEqual([]);
  });

  it('waits on a manual step until it is completed, with evidence when required', async () => {
    const rb = runbook('manual', [
      { id: 'tick', kind: 'manual', instructions: 'drain the node', evidence: 'required' },
      { id: 'after', kind: 'action', action: 'test.noop', needs: ['tick'] },
    ]);
    const { engine } = await setup([rb]);
    const run = await engine.start({ runbook: 'manual', params: {}, trigger: 'cli' }, actors.alice);
    let view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('waiting');
    expect(view.reason).toBe('waiting for manual step tick to be completed');
    const missing = await rejection(
      engine.complete({ runId: run.id, stepId: 'tick', note: 'done' }, actors.bob),
    );
    expect(missing.code).toBe('input');
    expect(missing.message).toContain('evidence');
    await engine.complete(
      { runId: run.id, stepId: 'tick', note: 'drained', evidence: 'https://tickets/42' },
      actors.bob,
    );
    view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('succeeded');
    expect(step(view, 'tick').output).toEqual({ by: 'bob', note: 'drained', evidence: 'https://tickets/42' });
    const again = await rejection(
      engine.complete({ runId: run.id, stepId: 'tick', evidence: 'x' }, actors.bob),
    );
    expect(again.code).toBe('conflict');
  });

  it('waits for a delay and until a check holds, failing at the wait timeout', async () => {
    const until = {
      check: 'test.metric',
      args: {},
      assert: [
        { value: '${{ steps.cool.output.cpu }}', op: 'lt', to: 50, status: 'fail', message: 'still hot' },
      ],
    };
    const rb = runbook('waits', [
      { id: 'pause', kind: 'wait', forMs: 30_000 },
      { id: 'cool', kind: 'wait', needs: ['pause'], until, intervalMs: 10_000, timeoutMs: 60_000 },
    ]);
    const { engine, clock, j } = await setup([rb]);
    j.metrics.cpu = 90;
    const run = await engine.start({ runbook: 'waits', params: {}, trigger: 'cli' }, actors.alice);
    let view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(step(view, 'pause')).toMatchObject({ status: 'waiting', notBefore: '2026-03-02T09:00:30.000Z' });
    expect(view.status).toBe('running');
    clock.advance(30_000);
    view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(step(view, 'cool')).toMatchObject({
      status: 'waiting',
      notBefore: '2026-03-02T09:00:40.000Z',
      error: { message: 'still hot' },
    });
    clock.advance(10_000);
    j.metrics.cpu = 30;
    view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(step(view, 'cool')).toMatchObject({ status: 'succeeded', output: { cpu: 30 } });
    expect(view.status).toBe('succeeded');

    j.metrics.cpu = 90;
    const hot = await engine.start({ runbook: 'waits', params: {}, trigger: 'cli' }, actors.alice);
    await engine.runUntilIdle({ runId: hot.id });
    for (let i = 0; i < 10; i++) {
      clock.advance(10_000);
      view = (await engine.runUntilIdle({ runId: hot.id }))!;
    }
    expect(step(view, 'cool').status).toBe('failed');
    expect(step(view, 'cool').error?.message).toContain('did not hold within 60000 ms');
    // Six polls with the same reason are told once (the first claim, its "not yet"), then the failure:
    // a long wait does not flood `runs follow` nor the audit log.
    const told = (await engine.events(hot.id, 0, actors.viewer)).filter((e) => e.stepId === 'cool');
    expect(told.map((e) => e.status)).toEqual(['running', 'waiting', 'failed']);
  });

  it('sends notify messages through the notifier', async () => {
    const sent: Array<[string | undefined, string]> = [];
    const rb = runbook('notify', [
      { id: 'tell', kind: 'notify', channel: 'ops', message: 'scaled to ${{ params.n }}' },
    ]);
    const { engine } = await setup([rb], {
      notify: async (channel, message) => {
        sent.push([channel, message]);
      },
    });
    const run = await engine.start({ runbook: 'notify', params: { n: 3 }, trigger: 'cli' }, actors.alice);
    expect((await engine.runUntilIdle({ runId: run.id }))!.status).toBe('succeeded');
    expect(sent).toEqual([['ops', 'scaled to 3']]);
  });

  it('runs a sub-runbook as a child run and waits for it', async () => {
    const child = runbook(
      'child',
      [{ id: 'work', kind: 'action', action: 'test.record', args: { n: '${{ params.n }}' } }],
      {
        params: z.object({ n: z.number() }),
      },
    );
    const parent = runbook('parent', [
      { id: 'sub', kind: 'runbook', runbook: 'child', params: { n: '${{ params.n }}' } },
      { id: 'after', kind: 'action', action: 'test.noop', needs: ['sub'] },
    ]);
    const failing = runbook('parent-bad', [
      { id: 'sub', kind: 'runbook', runbook: 'child', params: { n: 'x' } },
    ]);
    const { engine, j } = await setup([child, parent, failing]);
    const run = await engine.start({ runbook: 'parent', params: { n: 9 }, trigger: 'cli' }, actors.alice);
    const view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('succeeded');
    const childId = step(view, 'sub').childRunId!;
    const childView = await engine.get(childId, actors.viewer);
    expect(childView).toMatchObject({
      status: 'succeeded',
      parentRunId: run.id,
      trigger: 'runbook',
      requestedBy: { id: 'token:alice' },
    });
    expect(step(view, 'sub').output).toEqual({ runId: childId, status: 'succeeded' });
    expect(j.calls.map((c) => [c.runId, c.args])).toEqual([
      [childId, { n: 9 }],
      [run.id, {}],
    ]);
    const bad = await engine.start({ runbook: 'parent-bad', params: {}, trigger: 'cli' }, actors.alice);
    const badView = (await engine.runUntilIdle({ runId: bad.id }))!;
    expect(badView.status).toBe('failed');
    expect(step(badView, 'sub').error?.message).toContain('params.n');
  });

  it('runs a parallel group at once and joins it', async () => {
    const rb = runbook('parallel', [
      { id: 'fan.a', kind: 'action', action: 'test.gate', args: { gate: 'a' } },
      { id: 'fan.b', kind: 'action', action: 'test.gate', args: { gate: 'b' } },
      { id: 'fan', kind: 'group', needs: ['fan.a', 'fan.b'], children: ['fan.a', 'fan.b'] },
      { id: 'after', kind: 'action', action: 'test.noop', needs: ['fan'] },
    ]);
    const { engine, j } = await setup([rb]);
    const a = gate();
    const b = gate();
    j.gates.set('a', a);
    j.gates.set('b', b);
    const run = await engine.start({ runbook: 'parallel', params: {}, trigger: 'cli' }, actors.alice);
    const idle = engine.runUntilIdle({ runId: run.id });
    await Promise.all([a.entered, b.entered]);
    const mid = await engine.get(run.id, actors.viewer);
    expect(statuses(mid)).toMatchObject({
      'fan.a': 'running',
      'fan.b': 'running',
      fan: 'pending',
      after: 'pending',
    });
    b.open();
    a.open();
    const view = (await idle)!;
    expect(view.status).toBe('succeeded');
    expect(statuses(view)).toEqual({
      'fan.a': 'succeeded',
      'fan.b': 'succeeded',
      fan: 'succeeded',
      after: 'succeeded',
    });
  });

  it('compensates completed steps in reverse completion order and reports a failed compensation', async () => {
    const rb = runbook('compensate', [
      {
        id: 'one',
        kind: 'action',
        action: 'test.record',
        compensate: { action: 'test.undo', args: { of: 'one' } },
      },
      {
        id: 'two',
        kind: 'action',
        action: 'test.record',
        needs: ['one'],
        compensate: { action: 'test.undo', args: { of: 'two', fail: true } },
      },
      {
        id: 'three',
        kind: 'action',
        action: 'test.record',
        needs: ['two'],
        compensate: { action: 'test.undo', args: { of: '${{ steps.three.output.recorded }}' } },
      },
      { id: 'boom', kind: 'action', action: 'test.fail', needs: ['three'], onFailure: 'compensate' },
      { id: 'never', kind: 'action', action: 'test.noop', needs: ['boom'] },
    ]);
    const { engine, j } = await setup([rb]);
    const run = await engine.start({ runbook: 'compensate', params: {}, trigger: 'cli' }, actors.alice);
    const view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('failed');
    expect(j.calls.filter((c) => c.action === 'test.undo').map((c) => (c.args as { of: string }).of)).toEqual(
      ['three', 'two', 'one'],
    );
    expect(statuses(view)).toEqual({
      one: 'compensated',
      two: 'succeeded',
      three: 'compensated',
      boom: 'failed',
      never: 'cancelled',
    });
    expect(step(view, 'two').compensation).toEqual({
      status: 'failed',
      error: { code: 'unavailable', message: 'undo of two failed' },
    });
    expect(view.reason).toContain('compensated: three, one');
    expect(view.reason).toContain('COMPENSATION FAILED for two');
  });

  it('keeps going after a step with onFailure continue and names it', async () => {
    const rb = runbook('tolerant', [
      {
        id: 'optional',
        kind: 'action',
        action: 'test.fail',
        onFailure: 'continue',
        args: { why: 'secret:pw1' },
      },
      { id: 'after', kind: 'action', action: 'test.noop', needs: ['optional'] },
    ]);
    const { engine } = await setup([rb]);
    const run = await engine.start({ runbook: 'tolerant', params: {}, trigger: 'cli' }, actors.alice);
    const view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('succeeded');
    expect(view.reason).toContain('optional');
    expect(step(view, 'after').status).toBe('succeeded');
    // The action's error quoted a secret: stored and shown masked.
    expect(step(view, 'optional').error?.message).toContain('********');
    expect(JSON.stringify([view, await collectEvents(engine, run.id)])).not.toContain('pw1');
  });

  it('cancels a run with a step in flight: outcome unknown, its late result refused', async () => {
    const rb = runbook('cancel', [
      { id: 'slow', kind: 'action', action: 'test.gate-mutate', args: { gate: 'slow' } },
      { id: 'after', kind: 'action', action: 'test.noop', needs: ['slow'] },
    ]);
    const { engine, j, store } = await setup([rb]);
    const g = gate();
    j.gates.set('slow', g);
    const run = await engine.start({ runbook: 'cancel', params: {}, trigger: 'cli' }, actors.alice);
    const idle = engine.runUntilIdle({ runId: run.id });
    await g.entered;
    const denied = await rejection(engine.cancel(run.id, actors.viewer));
    expect(denied.code).toBe('not_allowed');
    const cancelled = await engine.cancel(run.id, actors.bob, 'wrong server');
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.reason).toBe('cancelled by bob: wrong server');
    expect(step(cancelled, 'slow')).toMatchObject({
      status: 'cancelled',
      error: { code: 'unknown_outcome' },
    });
    expect(step(cancelled, 'slow').error?.message).toContain('outcome unknown');
    g.open();
    await idle;
    const view = await engine.get(run.id, actors.viewer);
    expect(statuses(view)).toEqual({ slow: 'cancelled', after: 'cancelled' });
    expect(j.calls.map((c) => c.stepId)).toEqual(['slow']);
    const attempts = await store.runs.attempts(run.id, 'slow');
    expect(attempts.map((a) => a.status)).toEqual(['unknown']);
    expect((await rejection(engine.cancel(run.id, actors.bob))).code).toBe('conflict');
  });

  it('pauses (running steps finish, no new ones start) and resumes', async () => {
    const rb = runbook('pausable', [
      { id: 'a', kind: 'action', action: 'test.gate', args: { gate: 'a' } },
      { id: 'b', kind: 'action', action: 'test.noop', needs: ['a'] },
    ]);
    const { engine, j } = await setup([rb]);
    const g = gate();
    j.gates.set('a', g);
    const run = await engine.start({ runbook: 'pausable', params: {}, trigger: 'cli' }, actors.alice);
    const idle = engine.runUntilIdle({ runId: run.id });
    await g.entered;
    expect((await engine.pause(run.id, actors.alice)).status).toBe('paused');
    g.open();
    let view = (await idle)!;
    expect(view.status).toBe('paused');
    expect(statuses(view)).toEqual({ a: 'succeeded', b: 'pending' });
    expect((await rejection(engine.pause(run.id, actors.alice))).code).toBe('conflict');
    await engine.resume(run.id, actors.alice);
    view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('succeeded');
  });

  it('retries a failed run from a step: that step and what follows run again, earlier ones do not', async () => {
    const rb = runbook('retry-from', [
      { id: 'a', kind: 'action', action: 'test.record' },
      { id: 'b', kind: 'action', action: 'test.noop', needs: ['a'] },
      { id: 'c', kind: 'action', action: 'test.flaky', needs: ['b'], args: { succeedOn: 2 } },
    ]);
    const { engine, j, store } = await setup([rb]);
    const run = await engine.start({ runbook: 'retry-from', params: {}, trigger: 'cli' }, actors.alice);
    let view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('failed');
    const running = await rejection(engine.retry({ runId: run.id, from: 'zzz' }, actors.alice));
    expect(running.code).toBe('not_found');
    view = await engine.retry({ runId: run.id, from: 'b' }, actors.bob);
    expect(statuses(view)).toEqual({ a: 'succeeded', b: 'pending', c: 'pending' });
    view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('succeeded');
    expect(j.calls.map((c) => c.stepId)).toEqual(['a', 'b', 'c', 'b', 'c']);
    const audit = await store.audit.list({ action: 'run.retry', limit: 10 });
    expect(audit).toMatchObject([{ actor: { id: 'token:bob' }, data: { fromStep: 'b' } }]);
    expect((await rejection(engine.retry({ runId: run.id, from: 'a' }, actors.alice))).code).toBe('conflict');
  });

  describe('crash recovery and fencing', () => {
    /** Starts a run on engine 1 and leaves it with `slow` running, as if its process died. */
    /**
     * Starts a run on worker 1 and stops driving it while `slow` runs, as if its process hung or died.
     * `zombie()` lets the hung attempt return and worker 1 try to record it, late.
     */
    async function interrupted(
      s: Setup,
      action: string,
    ): Promise<{ runId: string; zombie: () => Promise<void> }> {
      const g = gate();
      s.j.gates.set('slow', g);
      const run = await s.engine.start({ runbook: 'crash', params: {}, trigger: 'cli' }, actors.alice);
      const stop = new AbortController();
      const idle = s.engine.runUntilIdle({ runId: run.id, signal: stop.signal });
      await g.entered;
      stop.abort();
      await idle;
      expect(s.j.calls.map((c) => c.action)).toEqual([action]);
      // PostgreSQL: the dead worker's lease must expire; SQLite: the new worker voids it at start.
      if (backend === 'postgres') s.clock.advance(8_001);
      return {
        runId: run.id,
        zombie: async () => {
          g.open();
          await s.engine.runUntilIdle({ runId: run.id });
        },
      };
    }

    const crashRunbook = (action: string) =>
      runbook('crash', [
        { id: 'slow', kind: 'action', action, args: { gate: 'slow' } },
        { id: 'after', kind: 'action', action: 'test.noop', needs: ['slow'] },
      ]);

    it('sends an interrupted non-idempotent step to needs-verification; nothing after it runs until a person verifies', async () => {
      const s = await setup([crashRunbook('test.gate-mutate')]);
      const { runId, zombie: lateWrite } = await interrupted(s, 'test.gate-mutate');
      const second = s.other();
      let view = (await second.runUntilIdle({ runId }))!;
      expect(view.status).toBe('needs-verification');
      expect(step(view, 'slow').status).toBe('needs-verification');
      expect(view.reason).toContain('step slow needs verification');
      expect(step(view, 'after').status).toBe('pending');
      expect(s.j.calls).toHaveLength(1);
      // The first worker's attempt comes back late: refused by its stale fence.
      await lateWrite();
      view = await second.get(runId, actors.viewer);
      expect(step(view, 'slow').status).toBe('needs-verification');
      const attempts = await s.store.runs.attempts(runId, 'slow');
      expect(attempts.map((a) => [a.worker, a.status])).toEqual([['worker-1', 'stale']]);
      // A person says it did not happen: it runs once more, by that decision.
      s.j.gates.set('slow', Object.assign(gate(), {}));
      s.j.gates.get('slow')!.open();
      await second.verify(
        { runId, stepId: 'slow', outcome: 'not-done', note: 'checked the fleet' },
        actors.bob,
      );
      view = (await second.runUntilIdle({ runId }))!;
      expect(view.status).toBe('succeeded');
      expect(s.j.calls.map((c) => c.stepId)).toEqual(['slow', 'slow', 'after']);
    });

    it('settles needs-verification as done without running the step again', async () => {
      const s = await setup([crashRunbook('test.gate-mutate')]);
      const { runId } = await interrupted(s, 'test.gate-mutate');
      const second = s.other();
      await second.runUntilIdle({ runId });
      const wrong = await rejection(second.verify({ runId, stepId: 'after', outcome: 'done' }, actors.bob));
      expect(wrong.code).toBe('conflict');
      await second.verify({ runId, stepId: 'slow', outcome: 'done' }, actors.bob);
      const view = (await second.runUntilIdle({ runId }))!;
      expect(view.status).toBe('succeeded');
      expect(s.j.calls.map((c) => c.stepId)).toEqual(['slow', 'after']);
    });

    it('re-runs an interrupted idempotent step, and the zombie attempt cannot overwrite the new one', async () => {
      const s = await setup([crashRunbook('test.gate')]);
      const { runId, zombie: lateWrite } = await interrupted(s, 'test.gate');
      const second = s.other();
      const fresh = gate();
      s.j.gates.set('slow', fresh);
      fresh.open();
      const view = (await second.runUntilIdle({ runId }))!;
      expect(view.status).toBe('succeeded');
      expect(step(view, 'slow')).toMatchObject({ status: 'succeeded', attempt: 2 });
      const fenceAfter = step(view, 'slow').fence;
      await lateWrite();
      const attempts = await s.store.runs.attempts(runId, 'slow');
      expect(attempts.map((a) => [a.attempt, a.worker, a.status])).toEqual([
        [1, 'worker-1', 'stale'],
        [2, 'worker-2', 'succeeded'],
      ]);
      expect(attempts[1]!.fence).toBeGreaterThan(attempts[0]!.fence);
      expect(step(await second.get(runId, actors.viewer), 'slow').fence).toBe(fenceAfter);
    });

    it("asks the action's verify() after a crash: done counts, not-done runs again", async () => {
      const s = await setup([crashRunbook('test.mutate')]);
      const { runId } = await interrupted(s, 'test.mutate');
      s.j.verifyAnswers.set('slow', 'done');
      const second = s.other();
      const view = (await second.runUntilIdle({ runId }))!;
      expect(view.status).toBe('succeeded');
      expect(step(view, 'slow').output).toEqual({ verified: 'done' });
      expect(s.j.calls.map((c) => c.stepId)).toEqual(['slow', 'after']);

      const s2 = await setup([crashRunbook('test.mutate')]);
      const again = await interrupted(s2, 'test.mutate');
      s2.j.verifyAnswers.set('slow', 'not-done');
      const retryGate = gate();
      retryGate.open();
      s2.j.gates.set('slow', retryGate);
      const view2 = (await s2.other().runUntilIdle({ runId: again.runId }))!;
      expect(view2.status).toBe('succeeded');
      expect(s2.j.calls.map((c) => c.stepId)).toEqual(['slow', 'slow', 'after']);
    });
  });

  it('streams events by long poll and stores masked, capped log lines', async () => {
    const rb = runbook('chatty', [
      { id: 'talk', kind: 'action', action: 'test.chatty', args: { lines: MAX_LOG_LINES_PER_STEP + 5 } },
    ]);
    const { engine, j } = await setup([rb]);
    j.logLines.push('password is secret:swordfish', 'x'.repeat(5_000), 'ok');
    const run = await engine.start({ runbook: 'chatty', params: {}, trigger: 'cli' }, actors.alice);
    const polled = engine.events(run.id, 1, actors.viewer, { waitMs: 20_000 });
    await new Promise((r) => setTimeout(r, 20));
    await engine.runUntilIdle({ runId: run.id });
    const first = await polled;
    expect(first[0]).toMatchObject({ seq: 2, type: 'run', status: 'running' });
    const all = await collectEvents(engine, run.id);
    const logs = all.filter((e) => e.type === 'log');
    expect(logs[0]!.message).toBe('password is ********');
    expect(Buffer.byteLength(logs[1]!.message!)).toBeLessThanOrEqual(4_096 + 16);
    expect(logs[1]!.message!.endsWith('… (cut)')).toBe(true);
    expect(logs).toHaveLength(MAX_LOG_LINES_PER_STEP + 1);
    expect(logs.at(-1)!.message).toBe('... 5 lines dropped');
    expect(JSON.stringify(all)).not.toContain('swordfish');
    const nothing = await engine.events(run.id, all.at(-1)!.seq, actors.viewer, { waitMs: 0 });
    expect(nothing).toEqual([]);
  });

  it('work() drives runs as they are started and gives up its leases when stopped', async () => {
    const rb = runbook('worked', [
      { id: 'a', kind: 'action', action: 'test.noop' },
      { id: 'tick', kind: 'manual', needs: ['a'] },
    ]);
    const { engine, store } = await setup([rb]);
    const stop = new AbortController();
    const working = engine.work(stop.signal);
    const run = await engine.start({ runbook: 'worked', params: {}, trigger: 'api' }, actors.alice);
    let seq = 0;
    let waiting = false;
    while (!waiting) {
      const events = await engine.events(run.id, seq, actors.viewer, { waitMs: 5_000 });
      seq = events.at(-1)?.seq ?? seq;
      waiting = events.some((e) => e.type === 'run' && e.status === 'waiting');
    }
    expect((await store.runs.getRun(run.id))?.leaseOwner).toBe('worker-1');
    stop.abort();
    await working;
    expect((await store.runs.getRun(run.id))?.leaseOwner).toBeUndefined();
    const view = await engine.get(run.id, actors.viewer);
    expect(statuses(view)).toEqual({ a: 'succeeded', tick: 'waiting' });
  });

  it('keeps running the definition a run started with when the runbook changes', async () => {
    const v1 = runbook('changing', [{ id: 'a', kind: 'action', action: 'test.record' }]);
    const v2 = runbook('changing', [{ id: 'z', kind: 'action', action: 'test.noop' }]);
    const s = await setup([v1]);
    const run = await s.engine.start({ runbook: 'changing', params: {}, trigger: 'cli' }, actors.alice);
    const view = (await s.other({ runbooks: [v2] }).runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('succeeded');
    expect(view.steps.map((x) => x.id)).toEqual(['a']);
    expect(view.definitionHash).toBe(v1.hash);
  });
});

async function collectEvents(engine: ReturnType<typeof testEngine>, runId: string) {
  const out: Awaited<ReturnType<typeof engine.events>> = [];
  for (;;) {
    const page = await engine.events(runId, out.at(-1)?.seq ?? 0, actors.viewer);
    if (page.length === 0) return out;
    out.push(...page);
  }
}

/** A TCP proxy to PostgreSQL that can cut every connection and refuse new ones, then come back. */
async function cuttableProxy(
  target: URL,
): Promise<{ url: string; cut(): void; restore(): void; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let cut = false;
  const server = createServer((client) => {
    if (cut) {
      client.destroy();
      return;
    }
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    cut: () => {
      cut = true;
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    restore: () => {
      cut = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('runbook engine with its PostgreSQL store going away mid-run', () => {
  it('stops cleanly while the store is unreachable and finishes the run, without running a step twice, once it is back', async () => {
    const admin = services().postgres.url;
    const name = `gameops_engine_${randomBytes(6).toString('hex')}`;
    await pgQuery(admin, `CREATE DATABASE ${name}`);
    cleanups.push(() => pgQuery(admin, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).then(() => undefined));
    const target = new URL(admin);
    target.pathname = `/${name}`;
    const proxy = await cuttableProxy(target);
    cleanups.push(() => proxy.close());
    const store = await openStore({ url: proxy.url, connectTimeoutMs: 1_000, statementTimeoutMs: 2_000 });
    stores.push(store);
    const j = journal();
    const rb = runbook('outage', [
      { id: 'a', kind: 'action', action: 'test.gate-mutate', args: { gate: 'a' } },
      { id: 'b', kind: 'action', action: 'test.record', needs: ['a'] },
    ]);
    const engine = testEngine({ store, clock: new ManualClock(), catalog: testCatalog(j), runbooks: [rb] });
    const g = gate();
    j.gates.set('a', g);
    const run = await engine.start({ runbook: 'outage', params: {}, trigger: 'cli' }, actors.alice);
    const idle = engine.runUntilIdle({ runId: run.id });
    await g.entered;
    proxy.cut();
    g.open();
    // The outcome of `a` cannot be recorded: the drive stops with the store's error, nothing half-done.
    const stopped = await rejection(idle);
    expect(stopped.code).toBe('unavailable');
    expect(stopped.message).toContain('PostgreSQL store');
    expect(stopped.message).not.toContain(target.password);
    const unreadable = await rejection(engine.get(run.id, actors.viewer));
    expect(unreadable.code).toBe('unavailable');
    proxy.restore();
    const view = (await engine.runUntilIdle({ runId: run.id }))!;
    expect(view.status).toBe('succeeded');
    expect(j.calls.map((c) => c.stepId)).toEqual(['a', 'b']);
    expect((await store.runs.attempts(run.id, 'a')).map((a) => a.status)).toEqual(['succeeded']);
    expect((await store.audit.verify()).ok).toBe(true);
  });
});
