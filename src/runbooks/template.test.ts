import { describe, expect, it } from 'vitest';
import { InputError, secret } from '../core/index.ts';
import type { CompareOp } from './model.ts';
import {
  canResolve,
  evaluateCondition,
  resolveTemplate,
  templateRefs,
  type TemplateScope,
} from './template.ts';

const scope: TemplateScope = {
  params: { replicas: 4, name: 'game-server', labels: { tier: 'hot' }, zones: ['a', 'b'], flag: false },
  steps: {
    rank: { status: 'succeeded', output: { hottest: 'pod-2', items: [{ name: 'pod-2', cpu: 93.5 }] } },
    'scale.up': { status: 'succeeded', output: { replicas: 6 } },
    skipped: { status: 'skipped' },
    running: { status: 'running' },
  },
  run: { id: 'run_1', requestedBy: 'token:alice' },
};

describe('templateRefs', () => {
  it('finds references in nested strings, with group children and whitespace', () => {
    expect(
      templateRefs({
        a: ['${{params.replicas}}', { b: 'x ${{  steps.rank.output.items.0.name  }} y ${{ run.id }}' }],
        c: 5,
        d: '${{ steps.scale.up.status }}',
      }),
    ).toEqual([
      { expr: 'params.replicas', root: 'params', path: ['replicas'] },
      {
        expr: 'steps.rank.output.items.0.name',
        root: 'steps',
        stepId: 'rank',
        path: ['output', 'items', '0', 'name'],
      },
      { expr: 'run.id', root: 'run', path: ['id'] },
      { expr: 'steps.scale.up.status', root: 'steps', stepId: 'scale.up', path: ['status'] },
    ]);
  });

  it.each([
    ['${{ params.a', /"\$\{\{ params\.a": "\$\{\{" is not closed/],
    ['${{ }}', /empty reference/],
    ['${{ env.HOME }}', /unknown root "env" in env\.HOME \(use params, steps or run\)/],
    ['${{ params }}', /params needs a parameter name/],
    ['${{ params..a }}', /empty path segment/],
    ['${{ params.a.__proto__ }}', /"__proto__" may not be referred to/],
    ['${{ params.constructor }}', /"constructor" may not be referred to/],
    ['${{ steps.rank.output.prototype }}', /"prototype" may not be referred to/],
    ['${{ params.a + 1 }}', /"a \+ 1" is not a name/],
    ['${{ run.token }}', /run has only run\.id and run\.requestedBy/],
    ['${{ steps.rank }}', /use steps\.<id>\.output/],
    ['${{ steps.rank.status.x }}', /status has no fields/],
    ['${{ params.${{ params.a }} }}', /inside a reference/],
  ])('refuses %s', (text, message) => {
    expect(() => templateRefs({ x: text })).toThrow(InputError);
    expect(() => templateRefs({ x: text })).toThrow(message);
  });
});

describe('resolveTemplate', () => {
  it('keeps the type of a whole-string reference and interpolates mixed strings', () => {
    expect(
      resolveTemplate(
        {
          replicas: '${{ params.replicas }}',
          labels: '${{ params.labels }}',
          flag: '${{ params.flag }}',
          text: 'scale ${{ params.name }} to ${{ params.replicas }} (${{ params.labels }}) by ${{ run.requestedBy }}',
          pod: '${{ steps.rank.output.items.0.name }}',
          cpu: '${{ steps.rank.output.items.0.cpu }}',
          child: '${{ steps.scale.up.output.replicas }}',
          status: '${{ steps.running.status }}',
          unknownStatus: '${{ steps.later.status }}',
          list: ['${{ params.zones.1 }}', 7, null, true],
        },
        scope,
      ),
    ).toEqual({
      replicas: 4,
      labels: { tier: 'hot' },
      flag: false,
      text: 'scale game-server to 4 ({"tier":"hot"}) by token:alice',
      pod: 'pod-2',
      cpu: 93.5,
      child: 6,
      status: 'running',
      unknownStatus: 'pending',
      list: ['b', 7, null, true],
    });
  });

  it('leaves strings without references and non-plain values alone', () => {
    const s = secret('hunter2', 'env:X');
    expect(resolveTemplate({ a: 'plain ${HOME} }}', s }, scope)).toEqual({ a: 'plain ${HOME} }}', s });
  });

  it.each([
    ['${{ steps.running.output.x }}', 'steps.running.output.x: step running has not finished'],
    ['${{ steps.later.output }}', 'steps.later.output: step later has not finished'],
    [
      '${{ steps.rank.output.coldest }}',
      "steps.rank.output.coldest: step rank's output has no field coldest",
    ],
    [
      '${{ steps.rank.output.items.3.name }}',
      "steps.rank.output.items.3.name: step rank's output.items has no element 3 (a list of 1)",
    ],
    [
      '${{ steps.rank.output.hottest.length }}',
      "steps.rank.output.hottest.length: step rank's output.hottest has no field length",
    ],
    ['${{ steps.skipped.output.x }}', 'steps.skipped.output.x: step skipped has no output (it skipped)'],
    ['x ${{ params.missing }}', 'params.missing: parameter missing is not set'],
    ['${{ params.labels.tier.x }}', 'params.labels.tier.x: parameter labels.tier has no field x'],
  ])('refuses %s', (text, message) => {
    expect(() => resolveTemplate({ a: [text] }, scope)).toThrow(InputError);
    expect(() => resolveTemplate({ a: [text] }, scope)).toThrow(message);
    expect(canResolve({ a: [text] }, scope)).toBe(false);
  });

  it('a parameter not given is undefined when referred to alone (an optional argument), an error in text', () => {
    expect(resolveTemplate({ names: '${{ params.missing }}', n: 1 }, scope)).toEqual({
      names: undefined,
      n: 1,
    });
    expect(evaluateCondition({ value: '${{ params.missing }}', op: 'eq', to: 1 }, scope)).toBe(false);
    expect(() => resolveTemplate('${{ params.missing.x }}', scope)).toThrow(
      'params.missing.x: parameter missing is not set',
    );
  });

  it('a step named status or output can be referred to', () => {
    const s = {
      ...scope,
      steps: {
        status: { status: 'succeeded' as const, output: { n: 1 } },
        output: { status: 'failed' as const },
      },
    };
    expect(resolveTemplate(['${{ steps.status.output.n }}', '${{ steps.output.status }}'], s)).toEqual([
      1,
      'failed',
    ]);
  });

  it('the step being judged: its output is readable while it runs (check assertions)', () => {
    const s = { ...scope, steps: { judged: { status: 'running' as const, output: { ready: 3 } } } };
    expect(evaluateCondition({ value: '${{ steps.judged.output.ready }}', op: 'ge', to: 3 }, s)).toBe(true);
  });

  it('a skipped step output is undefined when referred to as a whole', () => {
    expect(resolveTemplate('${{ steps.skipped.output }}', scope)).toBeUndefined();
    expect(canResolve('${{ steps.rank.output.hottest }}', scope)).toBe(true);
  });

  it('does not read inherited properties', () => {
    const withProto = { ...scope, params: { o: {} } };
    expect(() => resolveTemplate('${{ params.o.toString }}', withProto)).toThrow('has no field toString');
  });
});

describe('evaluateCondition', () => {
  const cases: Array<[unknown, CompareOp, unknown, boolean]> = [
    ['${{ params.replicas }}', 'eq', 4, true],
    ['${{ params.replicas }}', 'eq', '4', true],
    ['${{ params.replicas }}', 'ne', 5, true],
    ['${{ params.replicas }}', 'lt', 10, true],
    ['${{ params.replicas }}', 'lt', '10', true],
    ['${{ params.replicas }}', 'le', 4, true],
    ['${{ params.replicas }}', 'gt', 4, false],
    ['${{ params.replicas }}', 'ge', 4, true],
    ['${{ steps.rank.output.items.0.cpu }}', 'gt', 90, true],
    ['10', 'gt', '9', true],
    ['b', 'gt', 'a', true],
    ['2024-01-02', 'lt', '2024-01-10', true],
    ['${{ params.name }}', 'in', ['game-server', 'lobby'], true],
    ['${{ params.name }}', 'notIn', ['game-server'], false],
    ['${{ params.replicas }}', 'in', [1, 4], true],
    ['${{ params.labels }}', 'eq', { tier: 'hot' }, true],
    ['${{ params.zones }}', 'eq', ['a', 'b'], true],
    ['${{ params.zones }}', 'eq', ['b', 'a'], false],
    ['${{ params.name }}', 'exists', undefined, true],
    ['${{ params.missing }}', 'exists', undefined, false],
    ['${{ steps.rank.output.nothing }}', 'exists', undefined, false],
    ['${{ params.flag }}', 'truthy', undefined, false],
    ['${{ params.missing }}', 'truthy', undefined, false],
    ['${{ params.zones }}', 'truthy', undefined, true],
    [[], 'truthy', undefined, false],
    ['', 'truthy', undefined, false],
    ['${{ steps.rank.status }}', 'eq', 'succeeded', true],
  ];
  it.each(cases)('%j %s %j is %s', (value, op, to, expected) => {
    expect(evaluateCondition({ value, op, to }, scope)).toBe(expected);
  });

  it('refuses what cannot be compared, naming the reference', () => {
    expect(() => evaluateCondition({ value: '${{ params.labels }}', op: 'gt', to: 3 }, scope)).toThrow(
      /condition on "\$\{\{ params\.labels }}": cannot order an object/,
    );
    expect(() =>
      evaluateCondition({ value: '${{ params.name }}', op: 'in', to: 'game-server' }, scope),
    ).toThrow(/"in" needs a list to compare with, got a string/);
    expect(() =>
      evaluateCondition({ value: '${{ params.labels.missing }}', op: 'eq', to: 1 }, scope),
    ).toThrow('params.labels.missing: parameter labels has no field missing');
    // exists is lenient about missing values, not about steps that have not finished.
    expect(() => evaluateCondition({ value: '${{ steps.running.output.x }}', op: 'exists' }, scope)).toThrow(
      'step running has not finished',
    );
  });
});
