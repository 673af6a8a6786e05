import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testCatalog } from '../../test/fixtures/runbooks/catalog.ts';
import { runbookJsonSchema, parseRunbookInput } from './input.ts';
import { loadRunbookDir } from './library.ts';
import { approvalHash, planRun } from './plan.ts';

const root = join(import.meta.dirname, '../..');

describe('runbook JSON Schema', () => {
  it('docs/runbook.schema.json is up to date', () => {
    const committed = JSON.parse(readFileSync(join(root, 'docs/runbook.schema.json'), 'utf8')) as unknown;
    expect(committed, 'run: node scripts/runbook-schema.ts').toEqual(runbookJsonSchema());
  });

  it('describes every step kind and refuses unknown keys', () => {
    const schema = runbookJsonSchema() as {
      additionalProperties: boolean;
      $defs: Record<string, { additionalProperties?: boolean; required?: string[] }>;
    };
    expect(schema.additionalProperties).toBe(false);
    for (const kind of ['action', 'check', 'approval', 'manual', 'wait', 'notify', 'runbook']) {
      expect(schema.$defs[`${kind}Step`]?.additionalProperties, kind).toBe(false);
    }
    expect(schema.$defs.actionStep?.required).toEqual(['id', 'action']);
  });
});

describe('parseRunbookInput', () => {
  it('names what is missing or not a step', () => {
    const result = parseRunbookInput({ steps: ['restart', null, { id: 'x', assert: [] }] });
    expect(result.success).toBe(false);
    expect(!result.success && result.problems).toEqual([
      { path: ['name'], message: 'Invalid input: expected string, received undefined' },
      {
        path: ['steps', 0],
        message:
          'a step must be a mapping with an id and one of action, check, approval, manual, wait, notify, runbook, parallel',
      },
      {
        path: ['steps', 1],
        message:
          'a step must be a mapping with an id and one of action, check, approval, manual, wait, notify, runbook, parallel',
      },
    ]);
    expect(parseRunbookInput(null)).toMatchObject({ success: false });
    expect(parseRunbookInput({ name: 'x', steps: [] })).toEqual({
      success: false,
      problems: [{ path: ['steps'], message: 'Too small: expected array to have >=1 items' }],
    });
  });
});

describe('examples/runbooks', () => {
  const runbooks = loadRunbookDir(join(root, 'examples/runbooks'), testCatalog());

  it('load and compile', () => {
    expect(runbooks.map((r) => r.name)).toEqual(['announce-maintenance', 'restart-game']);
  });

  it('restart-game: dry run shows the restart, its approval and what is pending', () => {
    const rb = runbooks.find((r) => r.name === 'restart-game')!;
    expect(() => rb.params.parse({})).toThrow(/reason/);
    const params = rb.params.parse({ reason: 'memory creeping up', names: ['game-0', 'game-1'] });
    const plan = planRun(rb, params, { catalog: testCatalog(), services: undefined });
    expect(plan.steps.map((s) => [s.id, s.kind, s.approvedBy ?? null])).toEqual([
      ['before', 'action', null],
      ['tell-ops', 'notify', null],
      ['approve', 'approval', null],
      ['restart', 'action', 'approve'],
      ['all-ready', 'wait', null],
      ['done', 'notify', null],
    ]);
    const restart = plan.steps.find((s) => s.id === 'restart')!;
    expect(restart).toMatchObject({
      effect: 'mutating',
      idempotent: false,
      target: 'deployment game/game-server (instances game-0, game-1)',
      args: { names: ['game-0', 'game-1'], maxUnavailable: 1 },
    });
    expect(approvalHash([restart])).toMatch(/^[0-9a-f]{64}$/);
    expect(rb.steps.find((s) => s.id === 'approve')).toMatchObject({
      fourEyes: true,
      expiresInMs: 1_800_000,
    });
    // Every instance when no names are given.
    const all = planRun(rb, rb.params.parse({ reason: 'x' }), {
      catalog: testCatalog(),
      services: undefined,
    });
    expect(all.steps.find((s) => s.id === 'restart')).toMatchObject({
      target: 'deployment game/game-server',
      args: { maxUnavailable: 1 },
    });
  });

  it('announce-maintenance: the gate closes with compensation, the window is validated', () => {
    const rb = runbooks.find((r) => r.name === 'announce-maintenance')!;
    expect(() => rb.params.parse({ startsAt: 'tomorrow' })).toThrow(/startsAt/);
    const params = rb.params.parse({ startsAt: '2025-03-01T02:00:00+09:00' });
    expect(params).toEqual({ startsAt: '2025-03-01T02:00:00+09:00', minutes: 60, notifyTeam: true });
    const plan = planRun(rb, params, { catalog: testCatalog(), services: undefined });
    expect(plan.steps.find((s) => s.id === 'close-gate')).toMatchObject({
      args: {
        closed: true,
        message: 'Maintenance from 2025-03-01T02:00:00+09:00, about 60 minutes. See you soon!',
        startsAt: '2025-03-01T02:00:00+09:00',
      },
      compensation: { action: 'fleet.gate', args: { closed: false } },
    });
    expect(plan.steps.find((s) => s.id === 'announce')?.skip).toBe(false);
    expect(
      planRun(rb, { ...params, notifyTeam: false }, { catalog: testCatalog(), services: undefined }).steps[0]
        ?.skip,
    ).toBe(true);
  });
});
