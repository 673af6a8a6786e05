import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliConfig, gameops, serveForCli } from '../../../test/support/cli.ts';
import { bootstrap, shutdown } from '../../app/index.ts';
import { VERSION } from '../../core/index.ts';
import { buildProgram, windowVersionArgs } from '../main.ts';
import { renderWindow, renderWindowList } from './maintenance.ts';

function config() {
  return cliConfig('gameops-maintenance-cli-', (dir) =>
    [
      'service: { name: test-game, environment: test }',
      `database: { dataDir: ${join(dir, 'data')} }`,
      'maintenance: { timezone: Asia/Seoul }',
      '',
    ].join('\n'),
  );
}

describe('gameops maintenance: parsing and help', () => {
  it('--help names every subcommand and option', async () => {
    const maintenance = (await buildProgram()).commands.find((c) => c.name() === 'maintenance')!;
    expect(maintenance.commands.map((c) => c.name())).toEqual(['plan', 'list', 'show', 'cancel']);
    const plan = maintenance.commands.find((c) => c.name() === 'plan')!.helpInformation();
    for (const option of [
      '--start <time>',
      '--end <time>',
      '--version',
      '--tasks <list>',
      '--message',
      '--hold',
      '--dry-run',
      '--json',
    ])
      expect(plan).toContain(option);
    expect(maintenance.commands.find((c) => c.name() === 'cancel')!.helpInformation()).toContain(
      '--reason <text>',
    );
  });

  it("hands `--version X` after `maintenance plan` to the window, leaving gameops's own --version alone elsewhere", () => {
    expect(
      windowVersionArgs(['-c', 'g.yaml', 'maintenance', 'plan', '--version', '1.4.0', '--hold']),
    ).toEqual(['-c', 'g.yaml', 'maintenance', 'plan', '--version=1.4.0', '--hold']);
    expect(windowVersionArgs(['--version'])).toEqual(['--version']);
    expect(windowVersionArgs(['maintenance', 'plan', '--message', '--version', '--version', '2'])).toEqual([
      'maintenance',
      'plan',
      '--message',
      '--version',
      '--version=2',
    ]);
    for (const args of [
      ['maintenance', 'plan', '--start', 'x', '--version'],
      ['maintenance', 'plan', '--version', '--dry-run'],
    ])
      expect(() => windowVersionArgs(args)).toThrow('maintenance plan --version: missing value');
    expect(() => windowVersionArgs(['maintenance', 'plan', '-V', '1.4.0'])).toThrow(
      "-V is gameops's own version",
    );
    expect(windowVersionArgs(['maintenance', 'list', '--version', '2'])).toEqual([
      'maintenance',
      'list',
      '--version',
      '2',
    ]);
    expect(windowVersionArgs(['maintenance', 'plan', '--', '--version', '2'])).toEqual([
      'maintenance',
      'plan',
      '--',
      '--version',
      '2',
    ]);
  });

  it("gameops --version and -V still print gameops's version (exit 0)", async () => {
    for (const flag of ['--version', '-V']) {
      const res = await gameops([flag]);
      expect(res.code, res.stderr).toBe(0);
      expect(res.stdout.trim()).toBe(VERSION);
    }
  });

  it('list says when the list was cut (newest first with --all)', () => {
    const w = {
      id: 'mw-20991202T1900Z-abcdef',
      name: 'maintenance',
      origin: 'adhoc',
      startsAt: '2099-12-02T19:00:00.000Z',
      endsAt: '2099-12-02T21:00:00.000Z',
      timezone: 'Asia/Seoul',
      tasks: ['db'],
      hold: false,
      state: 'scheduled',
      createdBy: 'alice',
      createdAt: '2099-12-01T00:00:00.000Z',
      updatedAt: '2099-12-01T00:00:00.000Z',
    } as const;
    const windows = [{ ...w, tasks: [...w.tasks] }];
    expect(renderWindowList({ windows, truncated: true }, 'Asia/Seoul', true)).toMatch(
      /\n\(only the newest 1 windows are shown; older ones exist\)$/,
    );
    expect(renderWindowList({ windows, truncated: true }, 'Asia/Seoul', false)).toMatch(
      /\n\(only the first 1 windows are shown; later ones exist\)$/,
    );
    expect(renderWindowList({ windows, truncated: false }, 'Asia/Seoul', true)).not.toContain('only the');
  });

  it('show gives when the window was planned as it gives other times (UTC, then the game zone)', () => {
    const window = {
      id: 'mw-20991202T1900Z-abcdef',
      name: 'maintenance',
      origin: 'adhoc' as const,
      startsAt: '2099-12-02T19:00:00.000Z',
      endsAt: '2099-12-02T21:00:00.000Z',
      timezone: 'Asia/Seoul',
      tasks: ['db' as const],
      hold: false,
      state: 'scheduled' as const,
      createdBy: 'alice',
      createdAt: '2099-12-01T20:59:46.539Z',
      updatedAt: '2099-12-01T20:59:46.539Z',
    };
    expect(renderWindow({ window, notices: [] }, 'Asia/Seoul')).toContain(
      'planned by alice at 2099-12-01 20:59 UTC (2099-12-02 05:59 GMT+9)',
    );
  });

  it('refuses a bad id or task before anything runs (exit 3)', async () => {
    const cases: Array<[string[], string]> = [
      [['maintenance', 'show', '../../etc'], '"../../etc" is not a maintenance window id'],
      [['maintenance', 'cancel', 'mw-bad', '--reason', 'x'], '"mw-bad" is not a maintenance window id'],
      [
        [
          'maintenance',
          'plan',
          '--start',
          '2099-12-03 04:00',
          '--end',
          '2099-12-03 05:00',
          '--tasks',
          'db,reboot',
        ],
        '--tasks: "reboot" is not one of db, logs, update',
      ],
      // --version with no value after `maintenance plan` is an error, never gameops's version and exit 0.
      [
        ['maintenance', 'plan', '--start', '2099-12-03 04:00', '--end', '2099-12-03 05:00', '--version'],
        'maintenance plan --version: missing value',
      ],
      [
        ['maintenance', 'plan', '--start', '2099-12-03 04:00', '--version', '--dry-run'],
        'maintenance plan --version: missing value',
      ],
      [['maintenance', 'plan', '-V', '1.4.0'], "-V is gameops's own version"],
    ];
    for (const [args, message] of cases) {
      const res = await gameops(args, { GAMEOPS_CONFIG: '/nonexistent/gameops.yaml' });
      expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(3);
      expect(res.stderr).toContain(message);
    }
  });
});

describe('gameops maintenance in this process', () => {
  it('plan --dry-run prints every step, the notices in UTC and the game zone, and the player-minutes estimate; plan, list, show, cancel', async () => {
    const { path } = config();
    const env = { GAMEOPS_CONFIG: path };
    // `--version X` is the window's version here, not gameops's own --version.
    const dry = await gameops(
      [
        'maintenance',
        'plan',
        '--start',
        '2099-12-03 04:00',
        '--end',
        '2099-12-03 06:00',
        '--version',
        '1.4.0',
        '--dry-run',
      ],
      env,
    );
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('Maintenance window (dry run: nothing was recorded)');
    expect(dry.stdout).toContain('tasks: db, logs, update (version 1.4.0)');
    expect(dry.stdout).toContain(
      '2099-12-02 19:00 UTC (2099-12-03 04:00 GMT+9) – 2099-12-02 21:00 UTC (2099-12-03 06:00 GMT+9) (120 min)',
    );
    expect(dry.stdout).toContain(
      'Player-minutes lost: ≈ 0 player-minutes (0 players × 120 min; no player count could be read)',
    );
    expect(dry.stdout).toContain('  T-24h  2099-12-01 19:00 UTC (2099-12-02 04:00 GMT+9)');
    expect(dry.stdout).toContain('Plan for maintenance v');
    expect(dry.stdout).toMatch(/mutating/);
    expect(dry.stdout).toContain('Dry run: nothing was run.');

    // Players' text that would reach their screens as an escape sequence is refused, nothing recorded.
    const escaped = await gameops(
      [
        'maintenance',
        'plan',
        '--start',
        '2099-12-03T04:00:00+09:00',
        '--end',
        '2099-12-03T05:00:00+09:00',
        '--message',
        'Back at 05:00\u001b[2J',
      ],
      env,
    );
    expect(escaped.code).toBe(3);
    expect(escaped.stderr).toContain(
      'message: control and text-direction characters are not allowed (found U+001B)',
    );
    expect(escaped.stderr).not.toContain('\u001b');

    const planned = await gameops(
      [
        'maintenance',
        'plan',
        '--start',
        '2099-12-03T04:00:00+09:00',
        '--end',
        '2099-12-03T05:00:00+09:00',
        '--message',
        'Back at 05:00',
        '--json',
      ],
      env,
    );
    expect(planned.code, planned.stderr).toBe(0);
    const { window } = JSON.parse(planned.stdout) as { window: { id: string; message: string } };
    expect(planned.stderr).toContain('no gameops serve is running for this data directory');
    expect(window.message).toBe('Back at 05:00');

    const shown = await gameops(['maintenance', 'show', window.id], env);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain(`${window.id}  scheduled`);
    expect(shown.stdout).toContain("players' notice: Back at 05:00");

    const cancelled = await gameops(['maintenance', 'cancel', window.id, '--reason', 'patch not ready'], env);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stdout).toContain(`${window.id} cancelled: cancelled by`);
  });
});

describe('gameops maintenance through the server', () => {
  it('lists and plans through the API with the caller token; a viewer may read but not plan', async () => {
    const { path } = config();
    const resources = await bootstrap({ configPath: path, store: 'required', logLevel: 'silent' });
    const operator = await serveForCli(resources, 'operator', 'alice');
    try {
      const env = { GAMEOPS_CONFIG: path, ...operator.env };
      const planned = await gameops(
        ['maintenance', 'plan', '--start', '2099-12-03 04:00', '--end', '2099-12-03 06:00'],
        env,
      );
      expect(planned.code, planned.stderr).toBe(0);
      expect(planned.stdout).toMatch(
        /^Maintenance window mw-20991202T1900Z-[0-9a-f]{6} planned \(scheduled\)/,
      );
      const listed = await gameops(['maintenance', 'list'], env);
      expect(listed.stdout).toContain('2099-12-02 19:00 UTC (2099-12-03 04:00 GMT+9)');
      const windows = await resources.store!.maintenance.list({ service: 'test-game', environment: 'test' });
      expect(windows.map((w) => w.createdBy)).toEqual(['alice']);
    } finally {
      await operator.close();
    }
    const viewer = await serveForCli(resources, 'viewer', 'bob');
    try {
      const env = { GAMEOPS_CONFIG: path, ...viewer.env };
      const refused = await gameops(
        ['maintenance', 'plan', '--start', '2099-12-04 04:00', '--end', '2099-12-04 06:00'],
        env,
      );
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/operator/);
    } finally {
      await viewer.close();
      await shutdown(resources);
    }
  });
});
