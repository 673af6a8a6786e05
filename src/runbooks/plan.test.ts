import { describe, expect, it } from 'vitest';
import { InputError, secret } from '../core/index.ts';
import { testCatalog } from '../../test/fixtures/runbooks/catalog.ts';
import { compileRunbook } from './compile.ts';
import { approvalHash, canonicalJson, planRun, type PlanContext } from './plan.ts';
import type { PlannedStep } from './model.ts';

const catalog = testCatalog();
const services = { namespace: 'game', deployment: 'game-server' };

const runbook = compileRunbook(
  {
    name: 'scale-and-kill',
    params: {
      replicas: { type: 'integer', minimum: 1, maximum: 100, default: 4 },
      note: { type: 'string', default: 'scaling' },
      token: { type: 'string' },
      loud: { type: 'boolean', default: true },
    },
    steps: [
      { id: 'rank', check: 'fleet.cpu', args: { targetPercent: 70 } },
      { id: 'ok', approval: { covers: ['scale', 'kill'], fourEyes: true } },
      {
        id: 'scale',
        action: 'fleet.scale',
        args: { replicas: '${{ params.replicas }}' },
        onFailure: 'compensate',
        compensate: { action: 'fleet.scale', args: { replicas: '${{ steps.scale.output.previous }}' } },
      },
      {
        id: 'kill',
        action: 'mysql.kill-query',
        args: { id: '${{ steps.rank.output.values.queryId }}', statement: 'select sleep(100)' },
        compensate: { action: 'noop', args: { message: 'nothing to undo for ${{ run.id }}' } },
      },
      { id: 'say', action: 'noop', args: { message: '${{ params.note }}', token: '${{ params.token }}' } },
      {
        id: 'shout',
        when: { value: '${{ params.loud }}', op: 'truthy' },
        notify: 'done by ${{ run.requestedBy }}',
      },
      {
        id: 'quiet',
        when: { value: '${{ params.loud }}', op: 'eq', to: false },
        action: 'fleet.gate',
        args: { closed: '${{ params.token }}' },
      },
      {
        id: 'later',
        when: { value: '${{ steps.rank.output.values.hottestPercent }}', op: 'gt', to: 50 },
        action: 'fleet.status',
      },
      { id: 'child', runbook: 'other', params: { n: '${{ params.replicas }}' } },
    ],
  },
  catalog,
  { kind: 'builtin' },
);

const params = (over: Record<string, unknown> = {}) => runbook.params.parse({ token: 'hunter2', ...over });
const mask = (v: unknown): unknown => JSON.parse(JSON.stringify(v).replaceAll('hunter2', '********'));
const ctx = (over: Partial<PlanContext> = {}): PlanContext => ({ catalog, services, ...over });
const covered = (steps: PlannedStep[], ids = ['scale', 'kill']) => steps.filter((s) => ids.includes(s.id));

describe('planRun (dry run)', () => {
  it('resolves what it can, marks approvals, compensation, skips and what is pending', () => {
    const plan = planRun(runbook, params(), ctx({ mask }));
    expect(plan).toMatchObject({ runbook: 'scale-and-kill', version: '1', hash: runbook.hash });
    expect(plan.params).toEqual({ replicas: 4, note: 'scaling', token: '********', loud: true });
    const byId = Object.fromEntries(plan.steps.map((s) => [s.id, s]));
    expect(byId.rank).toEqual({
      id: 'rank',
      kind: 'check',
      title: 'fleet.cpu',
      needs: [],
      args: { targetPercent: 70 },
    });
    expect(byId.ok).toEqual({ id: 'ok', kind: 'approval', title: 'approve scale, kill', needs: ['rank'] });
    expect(byId.scale).toEqual({
      id: 'scale',
      kind: 'action',
      title: 'fleet.scale',
      needs: ['ok'],
      action: 'fleet.scale',
      effect: 'mutating',
      idempotent: true,
      target: 'deployment game/game-server',
      args: { replicas: 4 },
      approvedBy: 'ok',
      compensation: { action: 'fleet.scale' },
    });
    expect(byId.kill).toEqual({
      id: 'kill',
      kind: 'action',
      title: 'mysql.kill-query',
      needs: ['scale'],
      action: 'mysql.kill-query',
      effect: 'destructive',
      idempotent: true,
      pending: 'uses steps.rank.output',
      approvedBy: 'ok',
      compensation: { action: 'noop' },
    });
    expect(byId.say).toMatchObject({ args: { message: 'scaling', token: '********' }, target: 'nothing' });
    expect(byId.say?.approvedBy).toBeUndefined();
    expect(byId.shout).toMatchObject({ kind: 'notify', skip: false });
    // Known false: skipped, and its arguments (which would fail the schema) are not resolved.
    expect(byId.quiet).toMatchObject({ skip: true, action: 'fleet.gate' });
    expect(byId.quiet?.args).toBeUndefined();
    expect(byId.later?.skip).toBeUndefined();
    expect(byId.child).toMatchObject({ kind: 'runbook', args: { n: 4 } });
  });

  it('with known step outputs and a run: resolves the rest', () => {
    const known = {
      rank: { status: 'succeeded' as const, output: { values: { queryId: 42, hottestPercent: 30 } } },
      scale: { status: 'succeeded' as const, output: { previous: 2 } },
    };
    const plan = planRun(runbook, params(), ctx({ known, runId: 'run_7', requestedBy: 'token:alice' }));
    const byId = Object.fromEntries(plan.steps.map((s) => [s.id, s]));
    expect(byId.kill).toMatchObject({
      target: 'mysql connection 42',
      args: { id: 42, statement: 'select sleep(100)' },
      compensation: { action: 'noop', target: 'nothing', args: { message: 'nothing to undo for run_7' } },
    });
    expect(byId.scale?.compensation).toEqual({
      action: 'fleet.scale',
      target: 'deployment game/game-server',
      args: { replicas: 2 },
    });
    expect(byId.later?.skip).toBe(true);
    // Unmasked without a mask.
    expect(byId.say?.args).toEqual({ message: 'scaling', token: 'hunter2' });
  });

  it('refuses resolved arguments that fail the action schema, or refer to what does not exist, naming the step', () => {
    const known = { rank: { status: 'succeeded' as const, output: { values: { queryId: -1 } } } };
    expect(() => planRun(runbook, params(), ctx({ known }))).toThrow(InputError);
    expect(() => planRun(runbook, params(), ctx({ known }))).toThrow(
      'step kill: args.id: Too small: expected number to be >0',
    );
    const missing = { rank: { status: 'succeeded' as const, output: { values: {} } } };
    expect(() => planRun(runbook, params(), ctx({ known: missing }))).toThrow(
      "step kill: args: steps.rank.output.values.queryId: step rank's output.values has no field queryId",
    );
    const scaled = runbook.params.parse({ token: 'x', replicas: 100 });
    expect(() => planRun(runbook, { ...scaled, replicas: 101 }, ctx())).toThrow(
      'step scale: args.replicas: Too big: expected number to be <=100',
    );
    const noToken = runbook.params.parse({});
    // An optional parameter not given: the argument is absent.
    expect(planRun(runbook, noToken, ctx()).steps.find((s) => s.id === 'say')?.args).toEqual({
      message: 'scaling',
    });
  });
});

describe('approvalHash', () => {
  const known = {
    rank: { status: 'succeeded' as const, output: { values: { queryId: 42, hottestPercent: 1 } } },
  };
  const hashOf = (p: Record<string, unknown>, k: PlanContext['known'] = known) =>
    approvalHash(covered(planRun(runbook, params(p), ctx({ known: k })).steps));

  it('changes when a covered argument changes, not when an uncovered one does', () => {
    const hash = hashOf({});
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(hashOf({})).toBe(hash);
    expect(hashOf({ replicas: 5 })).not.toBe(hash);
    expect(
      hashOf({}, { rank: { status: 'succeeded', output: { values: { queryId: 43, hottestPercent: 1 } } } }),
    ).not.toBe(hash);
    expect(hashOf({ note: 'something else', token: 'other' })).toBe(hash);
  });

  it('changes with what would compensate a covered step', () => {
    const steps = covered(planRun(runbook, params(), ctx({ known })).steps);
    const undo = steps.map((s) => ({ ...s, compensation: { action: 'fleet.scale', args: { replicas: 1 } } }));
    const undoOther = steps.map((s) => ({
      ...s,
      compensation: { action: 'fleet.scale', args: { replicas: 2 } },
    }));
    expect(approvalHash(undo)).not.toBe(approvalHash(steps));
    expect(approvalHash(undoOther)).not.toBe(approvalHash(undo));
  });

  it('changes with the target', () => {
    const steps = covered(planRun(runbook, params(), ctx({ known })).steps);
    const other = covered(
      planRun(runbook, params(), ctx({ known, services: { namespace: 'prod', deployment: 'game-server' } }))
        .steps,
    );
    expect(approvalHash(other)).not.toBe(approvalHash(steps));
  });

  it('only: plans the arguments of these steps alone (an approval is not blocked by a problem elsewhere)', () => {
    const broken = { rank: { status: 'succeeded' as const, output: { values: { queryId: 42 } } } };
    expect(() => planRun(runbook, params(), ctx({ known: broken }))).toThrow('step later: when');
    const steps = planRun(runbook, params(), ctx({ known: broken, only: ['scale', 'kill'] })).steps;
    expect(approvalHash(covered(steps))).toBe(hashOf({}));
    expect(steps.find((s) => s.id === 'say')).toEqual({
      id: 'say',
      kind: 'action',
      title: 'noop',
      needs: ['kill'],
    });
  });

  it('refuses steps whose arguments are not known yet', () => {
    expect(() => approvalHash(covered(planRun(runbook, params(), ctx()).steps))).toThrow(
      'step kill: its arguments are not known yet (uses steps.rank.output), so it cannot be approved',
    );
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every level, leaves out undefined fields and honours toJSON', () => {
    expect(
      canonicalJson({ b: [{ z: 1, a: undefined, m: null }], a: 'x', s: secret('hunter2', 'env:X') }),
    ).toBe('{"a":"x","b":[{"m":null,"z":1}],"s":"********"}');
    expect(canonicalJson([undefined, 1])).toBe('[null,1]');
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    expect(() => canonicalJson(loop)).toThrow(InputError);
    expect(() => canonicalJson({ n: 1n })).toThrow(InputError);
  });
});
