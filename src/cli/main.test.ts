import { describe, expect, it } from 'vitest';
import { buildProgram, commandNamed } from './main.ts';

describe('commandNamed: which command module a command line loads', () => {
  it.each<[string[], string | undefined]>([
    [['check', 'daily', '--json'], 'check'],
    [['--config', 'check', 'config', 'check'], 'config'],
    [['-c', 'run', 'backup', 'list'], 'backup'],
    [['--config=./g.yaml', '--log-level', 'debug', 'serve'], 'serve'],
    [['--log-level', 'info', 'maintenance', 'plan', '--version=1.2.0'], 'maintenance'],
    // These need every command: to list them, to show one's help, or to suggest the closest.
    [['--help'], undefined],
    [['help', 'check'], undefined],
    [['chekc', 'daily'], undefined],
    [[], undefined],
    [['--', 'check'], undefined],
  ])('%j → %s', (argv, expected) => {
    expect(commandNamed(argv)).toBe(expected);
  });

  it('builds only the named command, or all of them', async () => {
    expect((await buildProgram('check')).commands.map((c) => c.name())).toEqual(['check']);
    const all = (await buildProgram()).commands.map((c) => c.name());
    expect(all).toEqual([
      'check',
      'config',
      'fleet',
      'runbooks',
      'run',
      'runs',
      'schedules',
      'serve',
      'tokens',
      'audit',
      'incident',
      'oncall',
      'alerts',
      'backup',
      'maintenance',
    ]);
  });
});
