import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { InputError } from '../core/index.ts';
import { testCatalog } from '../../test/fixtures/runbooks/catalog.ts';
import { compileRunbook, RunbookDefinitionError } from './compile.ts';
import { createLibrary, loadRunbookDir } from './library.ts';
import type { Runbook } from './model.ts';

const catalog = testCatalog();
const fixtures = join(import.meta.dirname, '../../test/fixtures/runbooks');

function builtin(name: string, steps: unknown[], params?: z.ZodObject): Runbook {
  return compileRunbook({ name, steps, ...(params ? { params } : {}) }, catalog, { kind: 'builtin' });
}

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InputError);
    return (err as Error).message;
  }
  throw new Error('expected an InputError');
}

describe('loadRunbookDir', () => {
  it('loads *.yaml and *.yml (nothing else), with file:line sources on every step', () => {
    const runbooks = loadRunbookDir(join(fixtures, 'good'), catalog);
    expect(runbooks.map((r) => r.name)).toEqual(['say-hello', 'scale']);
    const scale = runbooks.find((r) => r.name === 'scale')!;
    expect(scale.source).toEqual({ kind: 'file', path: join(fixtures, 'good', 'scale.yaml') });
    expect(scale.title).toBe('Scale the fleet');
    expect(scale.steps.map((s) => [s.id, s.source])).toEqual([
      ['status', `${join(fixtures, 'good', 'scale.yaml')}:11`],
      ['ok', `${join(fixtures, 'good', 'scale.yaml')}:13`],
      ['scale', `${join(fixtures, 'good', 'scale.yaml')}:16`],
    ]);
    expect(() => scale.params.parse({})).toThrow(/replicas/);
    // Together with each other they form a library (say-hello runs scale).
    expect(createLibrary(runbooks).get('say-hello')?.steps[1]).toMatchObject({
      kind: 'runbook',
      runbook: 'scale',
    });
  });

  it('reports every problem of every file at once, each with file:line', () => {
    const dir = join(fixtures, 'bad');
    let error: RunbookDefinitionError | undefined;
    try {
      loadRunbookDir(dir, catalog);
    } catch (err) {
      error = err as RunbookDefinitionError;
    }
    expect(error).toBeInstanceOf(RunbookDefinitionError);
    expect(error).toBeInstanceOf(InputError);
    const lines = error!.message
      .split('\n')
      .slice(1)
      .map((l) => l.trim().replace(`${dir}/`, ''));
    expect(error!.message).toMatch(/^invalid runbook \(9 problems\):/);
    expect(lines).toEqual([
      'duplicate-key.yaml:5: steps[0].action: duplicate key (first at line 4)',
      'graph.yaml:5: steps[0].needs (step a): steps form a cycle: a → b → c → a',
      'graph.yaml:13: steps[2].needs[1] (step c): needs unknown step "gone"',
      'graph.yaml:17: steps[3].args.replicas (step d): steps.e.output.n: step e does not run before step d (add it to needs)',
      'schema.yaml:6: steps[0].argz: unknown key "argz"',
      'schema.yaml:13: steps[2].wait: "10 parsecs" is not a duration (use a number with ms, s, m, h or d, e.g. 10s)',
      'syntax.yaml:5: Flow sequence in block collection must be sufficiently indented and end with a ]',
      'unknown-action.yaml:10: steps[3].action (step d): unknown action "fleet.scal" (did you mean fleet.scale?)',
      `valid.yaml:1: name: runbook "twice" is already defined in ${dir}/same-name.yaml`,
    ]);
    expect(
      error!.problems.find((p) => p.stepId === 'd' && p.message.startsWith('unknown action')),
    ).toMatchObject({
      source: join(dir, 'unknown-action.yaml'),
      line: 10,
      field: 'steps[3].action',
    });
  });

  it('refuses a file over 1 MiB, a directory named *.yaml is skipped, and a missing directory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-runbooks-'));
    writeFileSync(join(dir, 'huge.yaml'), `name: huge\n# ${'x'.repeat(1024 * 1024)}\n`);
    mkdirSync(join(dir, 'sub.yaml'));
    expect(messageOf(() => loadRunbookDir(dir, catalog))).toBe(
      `invalid runbook ${join(dir, 'huge.yaml')}: too large (1048590 bytes; the limit for a runbook file is 1 MiB)`,
    );
    expect(messageOf(() => loadRunbookDir(join(dir, 'nope'), catalog))).toBe(
      `runbooks directory ${join(dir, 'nope')}: not found`,
    );
    writeFileSync(join(dir, 'huge.yaml'), '');
    expect(messageOf(() => loadRunbookDir(dir, catalog))).toContain(
      'empty file: a runbook needs name and steps',
    );
    writeFileSync(
      join(dir, 'huge.yaml'),
      'a: &a [1, 2]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c]\n',
    );
    expect(messageOf(() => loadRunbookDir(dir, catalog))).toContain('aliases expand too far');
  });
});

describe('createLibrary', () => {
  const scale = builtin(
    'scale',
    [{ id: 'scale', action: 'fleet.scale', args: { replicas: '${{ params.replicas }}' } }],
    z.object({ replicas: z.number().int() }),
  );

  it('lists and gets runbooks by name', () => {
    const lib = createLibrary([builtin('b', [{ id: 'x', action: 'noop' }]), scale]);
    expect(lib.list().map((r) => r.name)).toEqual(['b', 'scale']);
    expect(lib.get('scale')).toBe(scale);
    expect(lib.get('nope')).toBeUndefined();
  });

  it('refuses duplicate names, naming both sources', () => {
    const file = compileRunbook({ name: 'scale', steps: [{ id: 'x', action: 'noop' }] }, catalog, {
      kind: 'file',
      path: '/etc/gameops/runbooks/scale.yaml',
    });
    expect(messageOf(() => createLibrary([scale, file]))).toBe(
      'invalid runbook /etc/gameops/runbooks/scale.yaml: name: runbook "scale" is already defined by builtin scale',
    );
  });

  it('refuses unknown sub-runbooks and parameters the sub-runbook refuses', () => {
    const caller = builtin('caller', [
      { id: 'one', runbook: 'scael' },
      { id: 'two', runbook: 'scale', params: { replicas: 'many' } },
      { id: 'three', runbook: 'scale', params: { replicas: '${{ run.id }}' } },
    ]);
    expect(messageOf(() => createLibrary([scale, caller]))).toBe(
      [
        'invalid runbook (2 problems):',
        '  builtin caller steps[0]: runbook (step one): unknown runbook "scael" (did you mean scale?)',
        '  builtin caller steps[1]: params (step two): parameters of scale: replicas: Invalid input: expected number, received string',
      ].join('\n'),
    );
  });

  it('refuses sub-runbook cycles, naming the chain', () => {
    const a = builtin('a', [{ id: 'call-b', runbook: 'b' }]);
    const b = builtin('b', [
      { id: 'x', action: 'noop' },
      { id: 'call-c', runbook: 'c' },
    ]);
    const c = builtin('c', [{ id: 'call-a', runbook: 'a' }]);
    const self = builtin('self', [{ id: 'again', runbook: 'self' }]);
    expect(messageOf(() => createLibrary([c, b, a, self]))).toBe(
      [
        'invalid runbook (2 problems):',
        '  builtin a steps[0]: runbook (step call-b): sub-runbooks call each other in a cycle: a → b → c → a',
        '  builtin self steps[0]: runbook (step again): sub-runbooks call each other in a cycle: self → self',
      ].join('\n'),
    );
  });
});
