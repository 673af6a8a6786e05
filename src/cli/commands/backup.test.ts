import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { backupKey, backupsSection } from '../../../test/support/backups.ts';
import { cliConfig, gameops, serveForCli } from '../../../test/support/cli.ts';
import { openBackups } from '../../app/backups.ts';
import { bootstrap, shutdown } from '../../app/index.ts';
import { buildProgram } from '../main.ts';

describe('gameops backup: parsing and help', () => {
  it('--help names every subcommand and the id shape', async () => {
    const backup = (await buildProgram()).commands.find((c) => c.name() === 'backup')!;
    expect(backup.commands.map((c) => c.name())).toEqual([
      'create',
      'list',
      'show',
      'verify',
      'drill',
      'prune',
      'restore',
    ]);
    const help = backup.helpInformation();
    for (const sub of ['create', 'list', 'show', 'verify', 'drill', 'prune', 'restore'])
      expect(help).toContain(sub);
    const restore = backup.commands.find((c) => c.name() === 'restore')!.helpInformation();
    for (const option of [
      '--component <kind>',
      '--target <name>',
      '--incident <id>',
      '--channel <name>',
      '--detach',
    ])
      expect(restore).toContain(option);
    expect(backup.commands.find((c) => c.name() === 'prune')!.helpInformation()).toContain('--dry-run');
    expect(backup.commands.find((c) => c.name() === 'list')!.helpInformation()).toContain('--json');
  });

  it('refuses a bad id or component with a clear message before anything runs (exit 3)', async () => {
    const cases: Array<[string[], string]> = [
      [['backup', 'show', '../../etc'], '"../../etc" is not a backup id'],
      [['backup', 'verify', 'bk-bad'], '"bk-bad" is not a backup id'],
      [['backup', 'drill', 'bk-20261126T170500Z-XYZ'], 'is not a backup id'],
      [['backup', 'restore', '/etc/passwd'], '"/etc/passwd" is not a backup id'],
      [['backup', 'create', '--component', 'postgres'], '--component: "postgres" is not one of mysql, redis'],
      [['backup', 'restore', 'bk-20261126T170500Z-3f9a2c', '--target', '../x'], '--target: "../x"'],
    ];
    for (const [args, message] of cases) {
      // No config at all: the refusal comes before any config, store or server is looked at.
      const res = await gameops(args, { GAMEOPS_CONFIG: '/nonexistent/gameops.yaml' });
      expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(3);
      expect(res.stderr).toContain(message);
    }
  });
});

/** The runs in the store of `configPath` (opened and closed here). */
async function openRunCount(configPath: string): Promise<unknown[]> {
  const resources = await bootstrap({ configPath, store: 'required', logLevel: 'silent' });
  try {
    return await resources.store!.runs.listRuns({ service: 'test-game', environment: 'test', limit: 500 });
  } finally {
    await shutdown(resources);
  }
}

describe('gameops backup: a failed backup in the terminal', () => {
  it('prints the failure as the run says it, without JSON log lines over it; --json keeps the structured logs', async () => {
    const key = await backupKey();
    const { path } = cliConfig('gameops-backup-fail-', (dir) => {
      mkdirSync(join(dir, 'game'));
      writeFileSync(join(dir, 'game', 'config.yaml'), 'motd: hi\n');
      // The storage's directory is under a regular file: every write fails (ENOTDIR), even as root.
      writeFileSync(join(dir, 'not-a-dir'), 'x');
      return [
        'service: { name: test-game, environment: test }',
        `database: { dataDir: ${join(dir, 'data')} }`,
        ...backupsSection(dir, key, { storage: join(dir, 'not-a-dir', 'store') }),
        '',
      ].join('\n');
    });
    const human = await gameops(['backup', 'create'], { GAMEOPS_CONFIG: path });
    expect(human.code, human.stderr).toBe(2);
    expect(human.stdout + human.stderr).toContain('not-a-dir');
    expect(human.stderr).not.toContain('{"level"');
    const json = await gameops(['backup', 'create', '--json'], { GAMEOPS_CONFIG: path });
    expect(json.code, json.stderr).toBe(2);
    expect(json.stderr).toContain('"msg":"backup failed"');
  });
});

describe('gameops backup in process (files-only sets)', () => {
  let env: Record<string, string>;
  let configPath = '';
  let id = '';

  beforeAll(async () => {
    const key = await backupKey();
    const { path } = cliConfig('gameops-backup-cli-', (dir) => {
      mkdirSync(join(dir, 'game'));
      writeFileSync(join(dir, 'game', 'config.yaml'), 'motd: hi\n');
      return [
        'service: { name: test-game, environment: test }',
        `database: { dataDir: ${join(dir, 'data')} }`,
        ...backupsSection(dir, key),
        '',
      ].join('\n');
    });
    env = { GAMEOPS_CONFIG: path };
    configPath = path;
  });

  it('create runs the backup runbook and follows it; list and show read the catalog', async () => {
    const created = await gameops(['backup', 'create', '--json'], env);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toContain('of backup started by');
    const run = JSON.parse(created.stdout) as {
      status: string;
      steps: Array<{ id: string; output?: { id?: string } }>;
    };
    expect(run.status).toBe('succeeded');
    id = run.steps.find((s) => s.id === 'create')!.output!.id!;
    expect(id).toMatch(/^bk-/);

    const list = await gameops(['backup', 'list'], env);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^ID\s+STATE\s+AGE\s+SIZE\s+COMPONENTS/);
    expect(list.stdout).toContain(id);
    expect(list.stdout).toContain('verified');
    expect(list.stdout).toContain('files');

    const show = await gameops(['backup', 'show', id], env);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain(`${id}  verified`);
    expect(show.stdout).toContain('manifest: gameops-backup/1');
    expect(show.stdout).toContain('files: ');
    expect(show.stdout).toMatch(/size: \d+ object\(s\), .+ \(\+ manifest .+\); components: files/);
    expect(show.stdout).toContain('last verify: ok');
    expect(show.stdout).toContain('last drill: never');

    const json = await gameops(['backup', 'show', id, '--json'], env);
    expect(JSON.parse(json.stdout)).toMatchObject({
      id,
      status: 'verified',
      manifest: { format: 'gameops-backup/1' },
    });
  });

  it('prune --dry-run lists what stays and why; restore stops at its approval (exit 4)', async () => {
    const prune = await gameops(['backup', 'prune', '--dry-run'], env);
    expect(prune.code, prune.stderr).toBe(0);
    expect(prune.stderr).toContain(`keep ${id}`);
    const restore = await gameops(['backup', 'restore', id, '--component', 'files'], env);
    expect(restore.code, restore.stderr + restore.stdout).toBe(4);
    expect(restore.stdout + restore.stderr).toContain('approve');
  });

  it('an unknown set, a target that is not configured or a component not in the set is refused before a run starts (exit 3)', async () => {
    const runsBefore = (await openRunCount(configPath)).length;
    const unknown = 'bk-20990101T000000Z-000000';
    const cases: Array<[string[], string]> = [
      [['backup', 'verify', unknown], `no backup set ${unknown}`],
      [['backup', 'drill', unknown], `no backup set ${unknown}`],
      [['backup', 'restore', unknown], `no backup set ${unknown}`],
      [
        ['backup', 'restore', id, '--target', 'staging'],
        'no restore target "staging": use original or one of backups.targets (none configured)',
      ],
      [
        ['backup', 'restore', id, '--component', 'mysql'],
        `backup ${id} has no mysql component (it has files)`,
      ],
      [['backup', 'drill', id, '--component', 'redis'], `backup ${id} has no redis component (it has files)`],
    ];
    for (const [args, message] of cases) {
      const res = await gameops(args, env);
      expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(3);
      expect(res.stderr).toContain(message);
      expect(res.stderr).not.toContain('started by');
      expect(res.stderr).not.toContain('retry');
    }
    expect((await openRunCount(configPath)).length).toBe(runsBefore);
  });

  it('show of an unknown set says so', async () => {
    const res = await gameops(['backup', 'show', 'bk-20200101T000000Z-abcdef'], env);
    expect(res.code).toBe(3);
    expect(res.stderr).toContain('no backup set bk-20200101T000000Z-abcdef');
  });

  it('list and show go through the server API while one runs', async () => {
    const resources = await bootstrap({ configPath, store: 'required', logLevel: 'silent' });
    const server = await serveForCli(resources, 'viewer');
    try {
      const sets = await (await openBackups(resources)).list();
      const remote = { ...env, ...server.env };
      const list = await gameops(['backup', 'list', '--json'], remote);
      expect(list.code, list.stderr).toBe(0);
      expect(
        (JSON.parse(list.stdout) as { backups: Array<{ id: string }> }).backups.map((b) => b.id),
      ).toEqual(sets.map((s) => s.id));
      const show = await gameops(['backup', 'show', id], remote);
      expect(show.code, show.stderr).toBe(0);
      expect(show.stdout).toContain(`${id}  verified`);
      const unknown = await gameops(['backup', 'show', 'bk-20200101T000000Z-abcdef'], remote);
      expect(unknown.code).toBe(3);
      expect(unknown.stderr).toContain('no backup set bk-20200101T000000Z-abcdef');
    } finally {
      await server.close();
      await shutdown(resources);
    }
  });

  it('through the server, a wrong id, target or component is refused by the backup routes before a run starts', async () => {
    const resources = await bootstrap({ configPath, store: 'required', logLevel: 'silent' });
    const server = await serveForCli(resources, 'operator');
    try {
      const runsBefore = (
        await resources.store!.runs.listRuns({ service: 'test-game', environment: 'test', limit: 500 })
      ).length;
      const remote = { ...env, ...server.env };
      const cases: Array<[string[], string]> = [
        [['backup', 'verify', 'bk-20990101T000000Z-000000'], 'no backup set bk-20990101T000000Z-000000'],
        [['backup', 'restore', id, '--target', 'staging'], 'no restore target "staging"'],
        [['backup', 'restore', id, '--component', 'redis'], `backup ${id} has no redis component`],
      ];
      for (const [args, message] of cases) {
        const res = await gameops(args, remote);
        expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(3);
        expect(res.stderr).toContain(message);
        expect(res.stderr).not.toContain('started by');
      }
      expect(
        (await resources.store!.runs.listRuns({ service: 'test-game', environment: 'test', limit: 500 }))
          .length,
      ).toBe(runsBefore);
      // A good request still starts the run through the route (and waits at the approval: exit 4).
      const restore = await gameops(['backup', 'restore', id, '--component', 'files', '--detach'], remote);
      expect(restore.code, restore.stderr).toBe(0);
      expect(restore.stderr).toContain('of backup-restore started by');
    } finally {
      await server.close();
      await shutdown(resources);
    }
  });
});
