import { describe, expect, it } from 'vitest';
import { createCatalog } from '../actions/index.ts';
import { compileRunbook } from '../compile.ts';
import type { ApprovalStep, Runbook } from '../model.ts';
import {
  backupDrillRunbook,
  backupPruneRunbook,
  backupRestoreRunbook,
  backupRunbook,
  backupVerifyRunbook,
} from './backup.ts';

const catalog = createCatalog();
const compile = (input: ReturnType<typeof backupRunbook>): Runbook =>
  compileRunbook(input, catalog, { kind: 'builtin' });

describe('backup runbooks', () => {
  it('all compile, startable by an operator', () => {
    for (const input of [
      backupRunbook(),
      backupDrillRunbook(),
      backupRestoreRunbook(),
      backupVerifyRunbook(),
      backupPruneRunbook(),
    ])
      expect(compile(input).runBy).toEqual(['operator']);
  });

  it('backup: prune is its own step after verify, which comes after create', () => {
    const rb = compile(backupRunbook());
    const byId = new Map(rb.steps.map((s) => [s.id, s]));
    expect(byId.get('verify')?.needs).toEqual(['create']);
    expect(byId.get('prune')?.needs).toEqual(['verify']);
    expect(byId.get('prune')?.onFailure).toBe('abort');
    expect(byId.get('create')?.onFailure).toBe('abort');
  });

  it('backup-restore: one operator approval after the plan covers every step that changes anything', () => {
    const rb = compile(backupRestoreRunbook());
    const approve = rb.steps.find((s): s is ApprovalStep => s.kind === 'approval')!;
    expect(approve.id).toBe('approve');
    expect(approve.needs).toEqual(['plan']);
    expect(approve.approvers).toEqual(['operator']);
    const changing = rb.steps
      .filter((s) => s.kind === 'action')
      .filter((s) => catalog.action(s.action)!.effect !== 'read-only' && s.action !== 'notify.send')
      .map((s) => s.id);
    expect(approve.covers.sort()).toEqual(changing.sort());
    // The plan's summary names the set, its age, the components (as text) and the target, once.
    expect(approve.message).toContain('${{ steps.plan.output.summary }}');
    expect(approve.message).not.toContain('${{ steps.plan.output.restore }}');
    // The approve command works from a script.
    expect(approve.message).toContain('gameops runs approve ${{ run.id }} approve --yes');
    // No step claims a notification it did not send: only `tell` (when a channel is given) notifies.
    expect(rb.steps.filter((s) => s.kind === 'notify')).toEqual([]);
  });

  it('backup-restore refuses a malformed id, a bad component or target in its parameters', () => {
    const rb = compile(backupRestoreRunbook());
    for (const params of [
      { id: '../../etc' },
      { id: 'bk-bad' },
      { id: 'bk-20261126T170500Z-3f9a2c', components: ['postgres'] },
      { id: 'bk-20261126T170500Z-3f9a2c', target: '../prod' },
    ])
      expect(rb.params.safeParse(params).success, JSON.stringify(params)).toBe(false);
    expect(rb.params.parse({ id: 'bk-20261126T170500Z-3f9a2c' })).toEqual({
      id: 'bk-20261126T170500Z-3f9a2c',
      components: null,
      target: 'original',
      channel: null,
    });
  });
});
