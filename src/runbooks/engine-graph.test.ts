import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  coveringApprovals,
  deriveRunStatus,
  downstreamOf,
  failsRun,
  isReady,
  retryDelayMs,
  satisfiesNeeds,
  stepsUsingParams,
  type GraphStep,
} from './engine-graph.ts';
import type { RetryPolicy, Step, StepStatus } from './model.ts';

function action(id: string, needs: string[] = [], extra: Partial<Step> = {}): Step {
  return {
    id,
    kind: 'action',
    title: id,
    needs,
    onFailure: 'abort',
    action: 'x',
    args: {},
    ...extra,
  } as Step;
}

const approval = (id: string, covers: string[], needs: string[] = []): Step => ({
  id,
  kind: 'approval',
  title: id,
  needs,
  onFailure: 'abort',
  covers,
  approvers: ['operator'],
  fourEyes: true,
  expiresInMs: 1,
  message: '',
});

const states = (entries: Record<string, StepStatus | GraphStep>) =>
  new Map(Object.entries(entries).map(([id, s]) => [id, typeof s === 'string' ? { status: s } : s]));

const flags = { paused: false, compensating: false, compensationPending: false };

describe('satisfiesNeeds and failsRun', () => {
  it.each([
    ['succeeded', 'abort', true, false],
    ['warned', 'abort', true, false],
    ['skipped', 'abort', true, false],
    ['failed', 'continue', true, false],
    ['failed', 'abort', false, true],
    ['failed', 'compensate', false, true],
    ['cancelled', 'abort', false, false],
    ['needs-verification', 'abort', false, false],
    ['running', 'continue', false, false],
  ] as const)('%s with onFailure %s: satisfies %s, fails the run %s', (status, onFailure, ok, fails) => {
    const def = action('a', [], { onFailure });
    expect(satisfiesNeeds(def, { status })).toBe(ok);
    expect(failsRun(def, { status })).toBe(fails);
  });

  it('a rejected approval fails the run even with onFailure continue', () => {
    const def = { ...approval('ok', ['x']), onFailure: 'continue' } as Step;
    const state: GraphStep = { status: 'failed', error: { code: 'rejected', message: 'no' } };
    expect(satisfiesNeeds(def, state)).toBe(false);
    expect(failsRun(def, state)).toBe(true);
  });
});

describe('isReady', () => {
  const steps = [action('a'), approval('ok', ['c'], ['a']), action('b', ['a']), action('c', ['b'])];
  const defs = new Map(steps.map((s) => [s.id, s]));
  const covered = coveringApprovals(steps);

  it('needs every dependency finished', () => {
    expect(isReady(steps[2]!, states({ a: 'running' }), defs, covered)).toBe(false);
    expect(isReady(steps[2]!, states({ a: 'succeeded' }), defs, covered)).toBe(true);
  });

  it('needs the covering approval granted, whatever the dependencies say', () => {
    expect(isReady(steps[3]!, states({ a: 'succeeded', b: 'succeeded', ok: 'waiting' }), defs, covered)).toBe(
      false,
    );
    expect(
      isReady(steps[3]!, states({ a: 'succeeded', b: 'succeeded', ok: 'succeeded' }), defs, covered),
    ).toBe(true);
  });
});

describe('downstreamOf', () => {
  it('takes the step, everything needing it, and the steps an approval in the set covers', () => {
    const steps = [
      action('a'),
      action('b', ['a']),
      approval('ok', ['x'], ['b']),
      action('side'),
      action('x', ['side']),
      action('y', ['x']),
    ];
    expect([...downstreamOf(steps, 'b')].sort()).toEqual(['b', 'ok', 'x', 'y']);
    expect([...downstreamOf(steps, 'side')].sort()).toEqual(['side', 'x', 'y']);
    expect([...downstreamOf(steps, 'y')]).toEqual(['y']);
  });
});

describe('retryDelayMs', () => {
  const policy: RetryPolicy = {
    attempts: 4,
    initialDelayMs: 100,
    factor: 3,
    maxDelayMs: 500,
    nonRetryable: ['input'],
  };

  it.each([
    [2, 'unavailable', 100],
    [3, 'unavailable', 300],
    [4, 'unavailable', 500],
    [5, 'unavailable', undefined],
    [2, 'input', undefined],
  ])('attempt %i after %s waits %s ms', (next, code, expected) => {
    expect(retryDelayMs(policy, next, code)).toBe(expected);
  });

  it('never retries without a policy', () => {
    expect(retryDelayMs(undefined, 2, 'unavailable')).toBeUndefined();
  });

  it('grows and stays within the maximum', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10_000 }),
        fc.double({ min: 1, max: 10, noNaN: true }),
        fc.integer({ min: 0, max: 60_000 }),
        fc.integer({ min: 2, max: 30 }),
        (initialDelayMs, factor, maxDelayMs, attempts) => {
          const p = { attempts, initialDelayMs, factor, maxDelayMs, nonRetryable: [] };
          let previous = 0;
          for (let next = 2; next <= attempts; next++) {
            const delay = retryDelayMs(p, next, 'unavailable')!;
            expect(delay).toBeLessThanOrEqual(maxDelayMs);
            expect(delay).toBeGreaterThanOrEqual(previous);
            previous = delay;
          }
          expect(retryDelayMs(p, attempts + 1, 'unavailable')).toBeUndefined();
        },
      ),
    );
  });
});

describe('deriveRunStatus', () => {
  const steps = [action('a'), action('b', ['a']), { ...action('m', ['a']), kind: 'manual' } as Step];

  it.each([
    [{ a: 'running' }, 'running', undefined],
    [{ a: 'succeeded', b: 'succeeded', m: 'succeeded' }, 'succeeded', undefined],
    [
      { a: 'succeeded', b: 'succeeded', m: 'waiting' },
      'waiting',
      'waiting for manual step m to be completed',
    ],
    [{ a: 'succeeded', b: 'retrying', m: 'waiting' }, 'running', undefined],
    [{ a: 'failed', b: 'cancelled', m: 'cancelled' }, 'failed', 'step a failed: boom'],
    [{ a: 'succeeded', b: 'failed', m: 'running' }, 'running', undefined],
    [{ a: 'needs-verification' }, 'needs-verification', 'step a needs verification: boom'],
  ] as const)('%j → %s', (given, status, reason) => {
    const s = new Map(
      Object.entries(given).map(([id, st]) => [
        id,
        {
          status: st,
          ...(st === 'failed' || st === 'needs-verification'
            ? { error: { code: 'x', message: 'boom' } }
            : {}),
        },
      ]),
    );
    const derived = deriveRunStatus(steps, s, flags);
    expect(derived.status).toBe(status);
    if (reason) expect(derived.reason).toBe(reason);
  });

  it('stays running while compensations run, then fails', () => {
    const s = states({
      a: 'succeeded',
      b: { status: 'failed', error: { code: 'x', message: 'boom' } },
      m: 'cancelled',
    });
    expect(
      deriveRunStatus(steps, s, { ...flags, compensating: true, compensationPending: true }).status,
    ).toBe('running');
    expect(
      deriveRunStatus(steps, s, { ...flags, compensating: true, compensationPending: false }).status,
    ).toBe('failed');
  });

  it('is paused when paused and nothing failed', () => {
    expect(deriveRunStatus(steps, states({ a: 'succeeded' }), { ...flags, paused: true }).status).toBe(
      'paused',
    );
  });
});

describe('stepsUsingParams', () => {
  it('finds the steps using a changed parameter, the approvals covering them and what follows', () => {
    const steps = [
      action('lookup', [], { args: { thread: '${{ params.thread }}' } }),
      action('other', [], { args: { n: '${{ params.n }}' } }),
      { ...action('ok', ['lookup']), kind: 'approval', covers: ['kill'] } as unknown as Step,
      action('kill', ['ok'], { args: { user: '${{ steps.lookup.output.user }}' } }),
      action('audit', ['other']),
    ];
    expect([...stepsUsingParams(steps, new Set(['thread']))].sort()).toEqual(['kill', 'lookup', 'ok']);
    expect([...stepsUsingParams(steps, new Set(['n']))].sort()).toEqual(['audit', 'other']);
    expect(stepsUsingParams(steps, new Set(['none'])).size).toBe(0);
  });
});
