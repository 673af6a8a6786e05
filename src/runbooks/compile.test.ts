import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { InputError } from '../core/index.ts';
import { testCatalog } from '../../test/fixtures/runbooks/catalog.ts';
import { compileRunbook, defineRunbook, RunbookDefinitionError } from './compile.ts';
import type { RunbookInput } from './input.ts';
import type { ActionStep, ApprovalStep, GroupStep, ManualStep, WaitStep } from './model.ts';

const catalog = testCatalog();
const builtin = { kind: 'builtin' } as const;

function compile(input: unknown) {
  return compileRunbook(input, catalog, builtin);
}

/** The problems' messages (`field (step id): message`, without the source). */
function problemsOf(input: unknown): string[] {
  try {
    compile(input);
  } catch (err) {
    expect(err).toBeInstanceOf(InputError);
    expect(err).toBeInstanceOf(RunbookDefinitionError);
    return (err as RunbookDefinitionError).problems.map(
      (p) => `${p.field}${p.stepId ? ` (step ${p.stepId})` : ''}: ${p.message}`,
    );
  }
  throw new Error('compiled, but problems were expected');
}

const base = {
  name: 'scale-up',
  params: { replicas: { type: 'integer', minimum: 1, maximum: 50, default: 4 } },
};

describe('compileRunbook: shape and defaults', () => {
  it('chains steps by list order, fills defaults, and orders topologically', () => {
    const rb = compile({
      ...base,
      runBy: ['operator', 'operator'],
      timeout: '1h',
      steps: [
        { id: 'look', action: 'fleet.status' },
        { id: 'ok', approval: { covers: ['scale'] } },
        {
          id: 'scale',
          action: 'fleet.scale',
          args: { replicas: '${{ params.replicas }}' },
          retry: { attempts: 3 },
          onFailure: 'compensate',
          compensate: { action: 'fleet.scale', args: { replicas: 2 } },
        },
        { id: 'settle', wait: '30s' },
        {
          id: 'cpu',
          wait: {
            until: {
              check: 'fleet.cpu',
              assert: [{ value: '${{ steps.cpu.output.x }}', op: 'exists', message: 'm' }],
            },
          },
        },
        { id: 'tick', manual: 'Look at the dashboard\nand more' },
      ],
    });
    expect(rb.steps.map((s) => [s.id, s.needs])).toEqual([
      ['look', []],
      ['ok', ['look']],
      ['scale', ['ok']],
      ['settle', ['scale']],
      ['cpu', ['settle']],
      ['tick', ['cpu']],
    ]);
    expect(rb).toMatchObject({
      name: 'scale-up',
      version: '1',
      title: 'scale-up',
      runBy: ['operator'],
      timeoutMs: 3_600_000,
    });
    const [, ok, scale, settle, cpu, tick] = rb.steps as [
      unknown,
      ApprovalStep,
      ActionStep,
      WaitStep,
      WaitStep,
      ManualStep,
    ];
    expect(ok).toMatchObject({
      approvers: ['operator'],
      fourEyes: false,
      expiresInMs: 1_800_000,
      onFailure: 'abort',
    });
    expect(scale.retry).toEqual({
      attempts: 3,
      initialDelayMs: 1000,
      factor: 2,
      maxDelayMs: 300_000,
      nonRetryable: ['input', 'not_allowed'],
    });
    expect(scale.compensate).toEqual({ action: 'fleet.scale', args: { replicas: 2 } });
    expect(settle).toMatchObject({ forMs: 30_000, intervalMs: 5000 });
    expect(cpu.until).toMatchObject({ check: 'fleet.cpu', args: {} });
    expect(cpu.until?.assert[0]?.status).toBe('fail');
    expect(tick).toMatchObject({ title: 'Look at the dashboard', evidence: 'optional' });
    expect(rb.params.parse({})).toEqual({ replicas: 4 });
    expect(() => rb.params.parse({ replicas: 60 })).toThrow();
    expect(() => rb.params.parse({ replica: 6 })).toThrow(/replica/);
    expect(rb.paramsJsonSchema).toMatchObject({
      type: 'object',
      properties: { replicas: { type: 'integer', default: 4, minimum: 1, maximum: 50 } },
    });
    expect(rb.steps[0]?.source).toBe('builtin scale-up steps[0]');
  });

  it('compiles a parallel group to its children and a join node', () => {
    const rb = compile({
      name: 'fan-out',
      steps: [
        { id: 'first', action: 'noop' },
        {
          id: 'both',
          when: { value: '${{ steps.first.output.ok }}', op: 'truthy' },
          parallel: [
            { id: 'a', action: 'noop', args: { message: 'a' } },
            { id: 'b', action: 'noop', args: { message: '${{ steps.both.a.output.ok }}' }, needs: ['a'] },
            { id: 'c', check: 'fleet.cpu', timeout: '5s' },
          ],
        },
        { id: 'last', notify: 'done: ${{ steps.both.b.output.ok }}' },
        { id: 'independent', needs: [], notify: { channel: 'ops', message: 'hi' } },
      ],
    });
    expect(rb.steps.map((s) => [s.id, s.needs])).toEqual([
      ['first', []],
      ['both.a', ['first']],
      ['both.b', ['both.a']],
      ['both.c', ['first']],
      ['both', ['both.a', 'both.b', 'both.c']],
      ['last', ['both']],
      ['independent', []],
    ]);
    const group = rb.steps.find((s) => s.id === 'both') as GroupStep;
    expect(group.children).toEqual(['both.a', 'both.b', 'both.c']);
    expect(rb.steps.find((s) => s.id === 'both.a')?.when).toEqual({
      value: '${{ steps.first.output.ok }}',
      op: 'truthy',
    });
    expect(rb.steps.find((s) => s.id === 'both.c')).toMatchObject({
      timeoutMs: 5000,
      when: { op: 'truthy' },
    });
    expect(
      problemsOf({
        name: 'two-whens',
        steps: [
          {
            id: 'g',
            when: { value: 1, op: 'truthy' },
            parallel: [{ id: 'a', action: 'noop', when: { value: 1, op: 'truthy' } }],
          },
        ],
      }),
    ).toEqual([
      'steps[0].parallel[0].when: the group has a when, which applies to each of its steps; a step in it cannot have its own',
    ]);
  });

  it('accepts a TypeScript built-in with zod params and makes them strict', () => {
    const input: RunbookInput = defineRunbook({
      name: 'ts-builtin',
      params: z.object({ replicas: z.number().int().default(3) }),
      steps: [{ id: 'scale', action: 'fleet.scale', args: { replicas: '${{ params.replicas }}' } }],
    });
    const rb = compile(input);
    expect(rb.params.parse({})).toEqual({ replicas: 3 });
    expect(() => rb.params.parse({ replicas: 3, extra: 1 })).toThrow(/extra/);
    expect(rb.source).toEqual({ kind: 'builtin' });
  });

  it('hash: same definition, same hash; any change, another', () => {
    const def = {
      ...base,
      steps: [
        { id: 'ok', approval: { covers: ['scale'] } },
        { id: 'scale', action: 'fleet.scale', args: { replicas: '${{ params.replicas }}' } },
      ],
    };
    const hash = compile(def).hash;
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(compile(structuredClone(def)).hash).toBe(hash);
    // Key order does not matter.
    expect(compile({ steps: def.steps, params: def.params, name: def.name }).hash).toBe(hash);
    // Where it was defined does not matter.
    expect(compileRunbook(def, catalog, { kind: 'file', path: '/x.yaml', lineOf: () => 7 }).hash).toBe(hash);
    const changes: unknown[] = [
      { ...def, version: '2' },
      { ...def, params: { replicas: { ...base.params.replicas, maximum: 51 } } },
      { ...def, steps: [def.steps[0], { ...def.steps[1], args: { replicas: 5 } }] },
      { ...def, steps: [{ id: 'ok', approval: { covers: ['scale'], fourEyes: true } }, def.steps[1]] },
      { ...def, steps: [def.steps[0], { ...def.steps[1], timeout: '5m' }] },
      { ...def, runBy: ['operator'] },
    ];
    const hashes = changes.map((c) => compile(c).hash);
    expect(new Set([hash, ...hashes]).size).toBe(changes.length + 1);
  });
});

describe('compileRunbook: rejections', () => {
  it('unknown keys, bad ids, missing kinds, two kinds, nested groups', () => {
    expect(
      problemsOf({
        name: 'Bad Name',
        colour: 'red',
        steps: [
          { id: 'a', action: 'noop', argz: {} },
          { id: 'B', action: 'noop' },
          { id: 'c' },
          { id: 'd', action: 'noop', approval: { covers: ['a'] } },
          { id: 'e', parallel: [{ id: 'f', parallel: [{ id: 'g', action: 'noop' }] }] },
          { id: 'k', parallel: [{ id: 'output', action: 'noop' }] },
          { id: 'h', wait: { for: '1s', until: { assert: [{ value: 1, op: 'eq', to: 1, message: 'x' }] } } },
          { id: 'i', wait: '10 parsecs' },
          { id: 'j', manual: 3 },
        ],
      }),
    ).toEqual([
      'name: use lower-case letters, digits and -, starting with a letter or digit',
      'colour: unknown key "colour"',
      'steps[0].argz: unknown key "argz"',
      'steps[1].id: step ids are lower-case letters, digits, _ and -, starting with a letter or digit',
      'steps[2]: a step needs one of action, check, approval, manual, wait, notify, runbook, parallel (or assert)',
      'steps[3]: a step has one kind; this one has action and approval',
      'steps[4].parallel[0].parallel: parallel groups cannot be nested',
      'steps[5].parallel[0].id: "output" cannot name a parallel group or a step in one (steps.<group>.<step>.output would be ambiguous)',
      'steps[6].wait: a wait needs exactly one of for and until',
      'steps[7].wait: "10 parsecs" is not a duration (use a number with ms, s, m, h or d, e.g. 10s)',
      'steps[8].manual: expected string or object',
    ]);
  });

  it('duplicate ids, dangling needs, cycles', () => {
    expect(
      problemsOf({
        name: 'graph',
        steps: [
          { id: 'a', action: 'noop', needs: ['c'] },
          { id: 'b', action: 'noop', needs: ['a'] },
          { id: 'c', action: 'noop', needs: ['b', 'nope'] },
          { id: 'a', action: 'noop' },
          { id: 'self', action: 'noop', needs: ['self'] },
          {
            id: 'g',
            parallel: [
              { id: 'x', action: 'noop' },
              { id: 'x', action: 'noop' },
            ],
          },
          { id: 'd', action: 'noop', needs: ['g.y', 'x'] },
        ],
      }),
    ).toEqual([
      'steps[3].id (step a): duplicate step id "a"',
      'steps[5].parallel[1].id (step g.x): duplicate step id "g.x"',
      'steps[2].needs[1] (step c): needs unknown step "nope"',
      'steps[6].needs[0] (step d): needs unknown step "g.y" (did you mean g.x or g?)',
      'steps[6].needs[1] (step d): needs unknown step "x" (did you mean g.x?)',
      'steps[0].needs (step a): steps form a cycle: a → b → c → a',
      'steps[4].needs (step self): steps form a cycle: self → self',
    ]);
  });
});

describe('compileRunbook: catalog, templates, approvals', () => {
  it('unknown actions and checks (with close names), args that fail the schema when they hold no template', () => {
    expect(
      problemsOf({
        name: 'catalog',
        steps: [
          { id: 'a', action: 'fleet.scal', args: { replicas: 3 } },
          { id: 'b', action: 'fleet.scale', args: { replicas: 300, extra: true } },
          { id: 'c', action: 'fleet.scale', args: { replicas: '${{ steps.a.output.n }}' } },
          { id: 'd', check: 'fleet.cpux' },
          { id: 'e', check: 'prometheus.query', args: {} },
          {
            id: 'f',
            wait: {
              until: { check: 'nothing.at.all', assert: [{ value: 1, op: 'eq', to: 1, message: 'm' }] },
            },
          },
          { id: 'g', action: 'noop', compensate: { action: 'fleet.gat', args: {} } },
          { id: 'h', action: 'noop', compensate: { action: 'fleet.gate', args: { closed: 'yes' } } },
        ],
      }),
    ).toEqual([
      'steps[0].action (step a): unknown action "fleet.scal" (did you mean fleet.scale?)',
      'steps[1].args.replicas (step b): Too big: expected number to be <=100',
      'steps[1].args (step b): Unrecognized key: "extra"',
      'steps[3].check (step d): unknown check "fleet.cpux" (did you mean fleet.cpu?)',
      'steps[4].args.query (step e): Invalid input: expected string, received undefined',
      'steps[5].wait.until.check (step f): unknown check "nothing.at.all"',
      'steps[6].compensate.action (step g): unknown action "fleet.gat" (did you mean fleet.gate?)',
      'steps[7].compensate.args.closed (step h): Invalid input: expected boolean, received string',
    ]);
  });

  it('templates: malformed, unknown parameters, unknown steps, steps that are not upstream, self references', () => {
    expect(
      problemsOf({
        ...base,
        steps: [
          { id: 'a', action: 'noop', args: { message: '${{ params.replica }}' } },
          { id: 'b', action: 'noop', args: { message: '${{ steps.c.output.x }}' } },
          { id: 'c', action: 'noop', args: { message: '${{ steps.nope.output }}' } },
          { id: 'd', action: 'noop', needs: [], args: { message: 'x ${{ steps.a.output }}' } },
          { id: 'e', action: 'noop', args: { message: '${{ steps.e.output }}' } },
          { id: 'f', action: 'noop', args: { message: '${{ params.a' } },
          { id: 'g', action: 'noop', when: { value: '${{ steps.g.status }}', op: 'eq', to: 'x' } },
          { id: 'h', notify: '${{ steps.zz.output }}' },
          { id: 'i', runbook: 'other', params: { n: '${{ run.nope }}' } },
          {
            id: 'j',
            check: 'fleet.cpu',
            assert: [
              {
                value: '${{ steps.j.output.hottestPercent }}',
                op: 'lt',
                to: '${{ params.replicas }}',
                message: '${{ steps.j.output.hottest }} is hot',
              },
            ],
          },
          {
            id: 'k',
            action: 'fleet.scale',
            args: { replicas: 2 },
            compensate: { action: 'fleet.scale', args: { replicas: '${{ steps.k.output.previous }}' } },
          },
        ],
      }),
    ).toEqual([
      'steps[0].args.message (step a): params.replica: unknown parameter "replica" (did you mean replicas?)',
      'steps[1].args.message (step b): steps.c.output.x: step c does not run before step b (add it to needs)',
      'steps[2].args.message (step c): steps.nope.output: unknown step "nope"',
      'steps[3].args.message (step d): steps.a.output: step a does not run before step d (add it to needs)',
      'steps[4].args.message (step e): steps.e.output: a step cannot refer to itself',
      'steps[5].args.message (step f): invalid template "${{ params.a": "${{" is not closed with "}}"',
      'steps[6].when.value (step g): steps.g.status: a step cannot refer to itself',
      'steps[7].notify (step h): steps.zz.output: unknown step "zz"',
      'steps[8].params.n (step i): invalid template "${{ run.nope }}": run.nope: run has only run.id and run.requestedBy',
    ]);
  });

  it('approvals: covers unknown, non-action, upstream, twice; covered args from after the approval; destructive without approval', () => {
    expect(
      problemsOf({
        name: 'approvals',
        steps: [
          { id: 'early', action: 'fleet.scale', args: { replicas: 2 } },
          { id: 'ok', approval: { covers: ['early', 'look', 'nope', 'scale', 'kill'] } },
          { id: 'look', action: 'fleet.status' },
          { id: 'rank', check: 'fleet.cpu' },
          { id: 'ok2', approval: { covers: ['scale'] } },
          { id: 'scale', action: 'fleet.scale', args: { replicas: '${{ steps.rank.output.n }}' } },
          { id: 'manual', manual: 'do it' },
          { id: 'kill', action: 'mysql.kill-query', args: { id: 5, statement: 'select 1' } },
          { id: 'kill2', action: 'mysql.kill-query', args: { id: 6, statement: 'select 1' } },
          { id: 'ok3', approval: { covers: ['manual'] } },
        ],
      }),
    ).toEqual([
      'steps[1].approval.covers[0] (step ok): covers step early, which does not run after the approval (make early need ok)',
      'steps[1].approval.covers[2] (step ok): covers unknown step "nope"',
      "steps[1].approval.covers[3] (step ok): step scale's arguments use steps.rank.output.n, which is not known when approval ok is reached; make ok need rank so the approver sees the exact arguments",
      'steps[4].approval.covers[0] (step ok2): step scale is already covered by approval ok',
      'steps[9].approval.covers[0] (step ok3): covers step manual, a manual step; approvals cover action steps',
      'steps[8].action (step kill2): mysql.kill-query is destructive: destructive actions need approval (cover kill2 with an approval step)',
    ]);
  });

  it('a mutating action without approval is allowed; a destructive one with approval too', () => {
    const rb = compile({
      name: 'fine',
      steps: [
        { id: 'scale', action: 'fleet.scale', args: { replicas: 2 } },
        { id: 'rank', check: 'fleet.cpu' },
        { id: 'ok', approval: { covers: ['kill'], approvers: ['admin'], fourEyes: true, expiresIn: '10m' } },
        {
          id: 'kill',
          action: 'mysql.kill-query',
          args: { id: '${{ steps.rank.output.values.id }}', statement: 'x' },
        },
      ],
    });
    expect(rb.steps.find((s) => s.id === 'ok')).toMatchObject({
      approvers: ['admin'],
      fourEyes: true,
      expiresInMs: 600_000,
    });
  });
});

describe('compileRunbook: what the engine cannot run safely', () => {
  it('refuses retry on a mutating action that is not idempotent, and approvals whose onFailure is not abort', () => {
    expect(
      problemsOf({
        name: 'unsafe',
        steps: [
          { id: 'restart', action: 'fleet.restart', args: {}, retry: { attempts: 3 } },
          { id: 'scale', action: 'fleet.scale', args: { replicas: 2 }, retry: { attempts: 3 } },
          { id: 'ok', approval: { covers: ['kill'] }, onFailure: 'continue' },
          { id: 'kill', action: 'mysql.kill-query', args: { id: 1, statement: 'x' } },
        ],
      }),
    ).toEqual([
      'steps[0].retry (step restart): fleet.restart is mutating and not idempotent: it may not be retried automatically (a failed or timed-out attempt may have taken effect); remove retry from step restart',
      'steps[2].onFailure (step ok): approval ok may only have onFailure: abort (a rejected or expired approval must stop the run, not let it go on without the steps it covers)',
    ]);
  });
});

describe('compileRunbook: parameter specs', () => {
  it('compiles every type and refuses bad specs naming the field', () => {
    const rb = compile({
      name: 'params',
      params: {
        env: { type: 'string', enum: ['staging', 'production'], required: true },
        note: { type: 'string', maxLength: 5, pattern: '[a-z]+' },
        ratio: { type: 'number', minimum: 0, maximum: 1, default: 0.5 },
        dry: { type: 'boolean', default: true },
        names: { type: 'array', items: { type: 'string', pattern: 'pod-\\d+' }, maxLength: 2 },
        sizes: { type: 'array', items: { type: 'integer', enum: [1, 2] } },
      },
      steps: [{ id: 'a', action: 'noop' }],
    });
    expect(rb.params.parse({ env: 'staging' })).toEqual({ env: 'staging', ratio: 0.5, dry: true });
    expect(rb.params.parse({ env: 'production', note: 'abc', names: ['pod-1'], sizes: [2] })).toMatchObject({
      note: 'abc',
    });
    const bad = rb.params.safeParse({
      note: 'ABC',
      ratio: 2,
      names: ['x'],
      sizes: [3],
      other: 1,
    });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues.map((i) => i.path.join('.')).sort()).toEqual(
      ['', 'env', 'names.0', 'note', 'ratio', 'sizes.0'].sort(),
    );
    expect(
      problemsOf({
        name: 'bad-params',
        params: {
          a: { type: 'integer', default: 'x' },
          b: { type: 'string', minimum: 3 },
          c: { type: 'boolean', enum: [true] },
          d: { type: 'string', pattern: '(' },
          e: { type: 'integer', enum: [1.5] },
          f: { type: 'date' },
          'g-h': { type: 'string' },
          i: { type: 'string', items: { type: 'string' } },
          j: { type: 'number', minimum: 5, maximum: 1 },
        },
        steps: [{ id: 'a', action: 'noop' }],
      }),
    ).toEqual([
      'params.c.enum[0]: expected string or number',
      'params.f.type: Invalid option: expected one of "string"|"integer"|"number"|"boolean"|"array"',
      'params.g-h: parameter names are letters, digits and _',
    ]);
    expect(
      problemsOf({
        name: 'bad-params',
        params: {
          a: { type: 'integer', default: 'x' },
          b: { type: 'string', minimum: 3 },
          c: { type: 'boolean', enum: ['yes'] },
          d: { type: 'string', pattern: '(' },
          e: { type: 'integer', enum: [1.5] },
          i: { type: 'string', items: { type: 'string' } },
          j: { type: 'number', minimum: 5, maximum: 1 },
        },
        steps: [{ id: 'a', action: 'noop' }],
      }),
    ).toEqual([
      'params.a.default: default does not fit the parameter: Invalid input: expected number, received string',
      'params.b.minimum: minimum and maximum are for integer and number, not string',
      'params.c.enum: enum is for strings and numbers, not boolean',
      'params.d.pattern: not a valid regular expression: Invalid regular expression: /^(?:()$/u: Unterminated group',
      'params.e.enum[0]: enum values must be of type integer',
      'params.i.items: items is only for arrays',
      'params.j.minimum: minimum 5 is larger than maximum 1',
    ]);
  });
});
