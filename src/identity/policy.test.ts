import { describe, expect, it } from 'vitest';
import type { GameopsError } from '../core/index.ts';
import type { AccessRequest, Actor, Role } from '../runbooks/model.ts';
import { createAccessPolicy, rolesFrom } from './policy.ts';

const actor = (role: Role, name = 'alice'): Actor => ({ id: `token:${name}`, name, role, kind: 'token' });
const policy = createAccessPolicy({
  runbooks: { access: { 'high-cpu': { run: ['operator'] }, 'open-to-viewers': { run: ['viewer'] } } },
} as never);

const run = (name: string, runBy: Role[]): AccessRequest => ({ action: 'run', runbook: { name, runBy } });
const approve = (approvers: Role[]): AccessRequest => ({
  action: 'approve',
  step: { id: 'ok-scale', approvers },
});

describe('access policy', () => {
  it.each([
    // [request, role, allowed]
    [{ action: 'read' } as const, 'viewer', true],
    [{ action: 'admin' } as const, 'operator', false],
    [{ action: 'admin' } as const, 'admin', true],
    [run('daily-check', ['responder']), 'viewer', false],
    [run('daily-check', ['responder']), 'responder', true],
    [run('daily-check', ['responder']), 'operator', true],
    [run('daily-check', ['responder']), 'admin', true],
    [run('locked', []), 'operator', false],
    [run('locked', []), 'admin', true],
    // The config's runbooks.access replaces the runbook's own runBy, stricter or looser.
    [run('high-cpu', ['responder']), 'responder', false],
    [run('high-cpu', ['responder']), 'operator', true],
    [run('open-to-viewers', []), 'viewer', true],
    [approve(['operator']), 'responder', false],
    [approve(['operator']), 'operator', true],
    [approve(['operator']), 'admin', true],
    [approve(['responder', 'admin']), 'responder', true],
    [approve([]), 'operator', false],
    [approve([]), 'admin', true],
  ] as const)('%o for a %s: %s', (request, role, allowed) => {
    expect(policy.allows(actor(role), request)).toBe(allowed);
    if (allowed) expect(() => policy.check(actor(role), request)).not.toThrow();
    else expect(() => policy.check(actor(role), request)).toThrow();
  });

  it('denies an actor whose role is not a role', () => {
    expect(policy.allows(actor('root' as Role), { action: 'read' })).toBe(false);
  });

  it('says who was refused what, and which roles would do', () => {
    const err = (() => {
      try {
        policy.check(actor('responder'), run('high-cpu', ['responder']));
      } catch (e) {
        return e as GameopsError;
      }
      return undefined;
    })();
    expect(err?.code).toBe('not_allowed');
    expect(err?.message).toBe('alice (responder) may not run high-cpu: needs operator or admin');
    expect(() => policy.check(actor('viewer', 'bob'), approve(['responder']))).toThrow(
      'bob (viewer) may not approve step ok-scale: needs responder, operator or admin',
    );
    expect(() => policy.check(actor('operator'), run('locked', []))).toThrow(
      'alice (operator) may not run locked: needs admin',
    );
    expect(() => policy.check(actor('operator'), { action: 'admin' })).toThrow(
      'alice (operator) may not administer gameops (tokens, audit verification): needs admin',
    );
  });

  it('lists roles from the weakest allowed', () => {
    expect(rolesFrom('viewer')).toBe('viewer, responder, operator or admin');
    expect(rolesFrom('admin')).toBe('admin');
  });
});
