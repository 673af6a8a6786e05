import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliConfig, gameops, serveForCli } from '../../../test/support/cli.ts';
import { createAlertService } from '../../alerts/index.ts';
import { bootstrap, shutdown } from '../../app/index.ts';
import type { Ops } from '../../app/ops.ts';
import type { StoredAlert } from '../../alerts/index.ts';
import { renderAlerts } from './alerts.ts';

function config(): { path: string } {
  return cliConfig('gameops-alerts-cli-', (dir) =>
    [
      'service: { name: test-game, environment: test }',
      `database: { dataDir: ${join(dir, 'data')} }`,
      'alerts:',
      '  heartbeats: [{ name: nightly-backup, every: 1h }]',
      '  suppressions: [{ name: weekly, cron: "0 4 * * TUE", duration: 2h, timezone: Asia/Seoul }]',
      '',
    ].join('\n'),
  );
}

describe('gameops alerts (real process, in-process services)', () => {
  it('manages suppression windows, lists heartbeats and alerts, all with --json; bad input exits 3 naming it', async () => {
    const { path } = config();
    const created = await gameops([
      'alerts',
      'suppress',
      'create',
      '--name',
      'db upgrade',
      '--match',
      'team="db"',
      '--for',
      '90m',
      '--comment',
      'planned',
      '--json',
      '--config',
      path,
    ]);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const window = JSON.parse(created.stdout) as { id: string; active: boolean; matchers: string[] };
    expect(window).toMatchObject({ active: true, matchers: ['team="db"'] });

    const listed = await gameops(['alerts', 'suppress', 'list', '--json', '--config', path]);
    const windows = (JSON.parse(listed.stdout) as { windows: Array<{ name: string; origin: string }> })
      .windows;
    expect(windows.map((w) => [w.name, w.origin])).toEqual([
      ['weekly', 'config'],
      ['db upgrade', 'adhoc'],
    ]);
    const human = await gameops(['alerts', 'suppress', 'list', '--config', path]);
    expect(human.stdout).toContain('config (0 4 * * TUE Asia/Seoul)');

    const ended = await gameops(['alerts', 'suppress', 'end', window.id, '--config', path]);
    expect(ended.code).toBe(0);
    expect(ended.stdout).toContain('ended');

    const bad = await gameops([
      'alerts',
      'suppress',
      'create',
      '--match',
      'team=="db"',
      '--for',
      '1h',
      '--comment',
      'x',
      '--config',
      path,
    ]);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toContain('matchers[0]');

    const beats = await gameops(['alerts', 'heartbeats', '--json', '--config', path]);
    expect(JSON.parse(beats.stdout)).toMatchObject({
      heartbeats: [{ name: 'nightly-backup', status: 'waiting' }],
    });

    const alerts = await gameops(['alerts', 'list', '--json', '--config', path]);
    expect(JSON.parse(alerts.stdout)).toEqual({ alerts: [] });

    const silences = await gameops(['alerts', 'silence', 'list', '--config', path]);
    expect(silences.code).toBe(3);
    expect(silences.stderr).toContain('no Alertmanager is configured');

    const usage = await gameops(['alerts', 'silence', 'create', '--for', '1h', '--config', path]);
    expect(usage.code).toBe(3);
  });
});

describe('gameops alerts against a server (GAMEOPS_URL)', () => {
  it('lists the server’s alerts and pings heartbeats through its API', async () => {
    const { path } = config();
    const resources = await bootstrap({ configPath: path, store: 'required', logLevel: 'silent' });
    const alerts = createAlertService({
      config: resources.config,
      store: resources.store!,
      clock: resources.clock,
      log: resources.log,
      incidents: {
        openOrJoin: () => Promise.resolve({ incidentId: 'INC-1', created: true }),
        alertResolved: () => Promise.resolve(),
      },
    });
    resources.ops = { alerts, tick: (now: Date) => alerts.tick(now) } as unknown as Ops;
    const { env, close } = await serveForCli(resources, 'responder');
    try {
      await alerts.ingestGeneric({
        alerts: [{ name: 'QueueBacklog', labels: { queue: 'mm' }, summary: 'backlog \u001b[2J' }],
      });
      await alerts.processPending();
      const list = await gameops(['alerts', 'list', '--json', '--label', 'queue=mm', '--config', path], env);
      expect(list.stderr).toBe('');
      const [alert] = (JSON.parse(list.stdout) as { alerts: StoredAlert[] }).alerts;
      expect(alert).toMatchObject({ name: 'QueueBacklog', incidentId: 'INC-1' });
      const human = await gameops(['alerts', 'list', '--config', path], env);
      expect(human.stdout).toContain('backlog \\x1b[2J');
      const ping = await gameops(['alerts', 'ping', 'nightly-backup', '--json', '--config', path], env);
      expect(JSON.parse(ping.stdout)).toMatchObject({ name: 'nightly-backup', status: 'up', pings: 1 });
      const unknown = await gameops(['alerts', 'ping', 'nope', '--config', path], env);
      expect(unknown.code).toBe(3);
      expect(unknown.stderr).toContain('no heartbeat named "nope"');
    } finally {
      await close();
      await shutdown(resources);
    }
  });
});

describe('renderAlerts', () => {
  it('neutralises terminal escapes in alert text and marks unrouted alerts', () => {
    const text = renderAlerts([
      {
        id: 'abc',
        fingerprint: 'f',
        startsAt: '2026-03-01T09:00:00.000Z',
        status: 'firing',
        name: 'X\u001b]52;c;Zm9v\u0007',
        labels: {},
        annotations: { summary: 'evil\u202e' },
        source: 'generic',
        groupKey: 'g',
        firstSeenAt: '2026-03-01T09:00:00.000Z',
        lastSeenAt: '2026-03-01T09:00:00.000Z',
        pending: true,
      },
    ]);
    for (const c of ['\u001b', '\u0007', '\u202e']) expect(text).not.toContain(c);
    expect(text).toContain('firing*');
    expect(text).toContain('not yet routed');
  });
});
