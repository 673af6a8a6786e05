import { describe, expect, it } from 'vitest';
import { createCatalog } from '../actions/index.ts';
import { compileRunbook } from '../compile.ts';
import type { ApprovalStep, Runbook, Step } from '../model.ts';
import { builtinRunbooks } from './index.ts';

const catalog = createCatalog();
const compiled = new Map<string, Runbook>(
  builtinRunbooks().map((input) => {
    const runbook = compileRunbook(input, catalog, { kind: 'builtin' });
    return [runbook.name, runbook];
  }),
);

function step<K extends Step['kind']>(runbook: string, id: string, kind: K): Extract<Step, { kind: K }> {
  const found = compiled.get(runbook)?.steps.find((s) => s.id === id);
  expect(found?.kind, `${runbook} ${id}`).toBe(kind);
  return found as Extract<Step, { kind: K }>;
}

describe('built-in runbooks', () => {
  it('all compile against the catalog; troubleshooting ones are startable by a responder, backups by an operator', () => {
    expect([...compiled.keys()].sort()).toEqual([
      'backup',
      'backup-drill',
      'backup-prune',
      'backup-restore',
      'backup-verify',
      'daily-check',
      'db-maintenance',
      'high-cpu',
      'maintenance',
      'maintenance-reopen',
      'memory-leak',
      'slow-queries',
    ]);
    for (const [name, runbook] of compiled)
      expect(runbook.runBy, name).toEqual(
        name.startsWith('backup') || name.startsWith('maintenance') || name === 'db-maintenance'
          ? ['operator']
          : ['responder'],
      );
  });

  it('daily-check: the eight daily checks in one parallel group, then the record of all their outputs', () => {
    const group = step('daily-check', 'checks', 'group');
    expect(group.children).toEqual([
      'checks.database',
      'checks.redis',
      'checks.disk',
      'checks.alerts',
      'checks.fleet',
      'checks.logs',
      'checks.game',
      'checks.backups',
    ]);
    for (const child of group.children) {
      const check = step('daily-check', child, 'check');
      expect(check.check).toBe(`daily.${child.slice('checks.'.length)}`);
      expect(check.onFailure).toBe('continue');
    }
    const record = step('daily-check', 'record', 'action');
    expect(record.action).toBe('daily.record');
    expect(record.needs).toEqual(['checks']);
  });

  it('high-cpu: the approval (operator, 30 min) covers exactly the scale step, whose count is worked out before it', () => {
    const approve = step('high-cpu', 'approve', 'approval');
    expect(approve).toMatchObject<Partial<ApprovalStep>>({
      covers: ['scale'],
      approvers: ['operator'],
      expiresInMs: 30 * 60_000,
    });
    expect(approve.needs).toEqual(['plan']);
    expect(step('high-cpu', 'scale', 'action').args).toEqual({
      replicas: '${{ steps.plan.output.replicas }}',
    });
    const wait = step('high-cpu', 'cpu-down', 'wait');
    expect(wait.timeoutMs).toBe(600_000);
    expect(wait.until?.check).toBe('fleet.cpu');
    expect(catalog.action('fleet.scale')).toMatchObject({ effect: 'mutating', idempotent: true });
  });

  it('memory-leak: heap snapshot before an approval-gated rolling restart, readiness checked after', () => {
    expect(step('memory-leak', 'heap', 'action').args).toMatchObject({ kind: 'heap-snapshot' });
    expect(step('memory-leak', 'approve', 'approval').covers).toEqual(['restart']);
    expect(step('memory-leak', 'restart', 'action').args).toEqual({ maxUnavailable: 1 });
    expect(step('memory-leak', 'ready', 'check').check).toBe('fleet.ready');
    expect(catalog.action('fleet.restart')).toMatchObject({ effect: 'mutating', idempotent: false });
  });

  it('slow-queries: the destructive kill is covered by a four-eyes operator approval, all skipped without killId', () => {
    const approve = step('slow-queries', 'approve-kill', 'approval');
    expect(approve).toMatchObject({ covers: ['kill'], approvers: ['operator'], fourEyes: true });
    for (const id of ['inspect', 'approve-kill', 'kill'])
      expect(compiled.get('slow-queries')!.steps.find((s) => s.id === id)!.when).toEqual({
        value: '${{ params.killId }}',
        op: 'exists',
      });
    expect(catalog.action('mysql.kill-query')).toMatchObject({ effect: 'destructive', idempotent: false });
    const params = compiled.get('slow-queries')!.params;
    expect(params.safeParse({}).success).toBe(true);
    const bad = params.safeParse({ killId: 'DROP TABLE x' });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(['killId']);
  });
});
