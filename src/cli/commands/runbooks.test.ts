import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtinRunbooks } from '../../runbooks/builtin/index.ts';
import { runbooksCommand } from './runbooks.ts';

describe('gameops runbooks: the built-in list people read', () => {
  const names = builtinRunbooks().map((rb) => rb.name);
  const readme = readFileSync(join(import.meta.dirname, '..', '..', '..', 'README.md'), 'utf8');

  it('`gameops runbooks --help` and the README name every built-in runbook', () => {
    expect(names).toContain('db-maintenance');
    const help = runbooksCommand().description();
    for (const name of names) {
      expect(help).toMatch(new RegExp(`[( ]${name}[,)]`));
      // "What works today" and the runbooks section each list them, in backticks.
      expect(readme.split(`\`${name}\``).length - 1, name).toBeGreaterThanOrEqual(2);
    }
  });
});
