import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliConfig, gameops, serveForCli } from '../../../test/support/cli.ts';
import { bootstrap, shutdown } from '../../app/index.ts';
import type { Override, PageDetail, ScheduleOnCall } from '../../oncall/index.ts';
import type { PageView } from '../../ops/contracts.ts';
import { parseTarget, parseTime } from './oncall.ts';

function config(): string {
  return cliConfig(
    'gameops-oncall-cli-',
    (dir) => `service: { name: test-game, environment: test }
database: { dataDir: ${join(dir, 'data')} }
notifications:
  channels: [{ name: hook, kind: webhook, url: "https://hooks.example.com/page" }]
people:
  - { id: alice, name: Alice, contacts: [hook] }
  - { id: bob, name: "Bob \\u001b[31mRed", contacts: [hook] }
teams: [{ id: ops, name: Ops, members: [alice, bob], lead: alice }]
oncall:
  schedules:
    - name: game
      timezone: America/New_York
      layers:
        - { name: primary, start: "2026-03-01", participants: [alice, bob] }
        - { name: backup, start: "2026-03-01", participants: [bob, alice] }
  policies: [{ name: default, levels: [{ after: 0s, targets: [{ schedule: game }] }] }]
`,
  ).path;
}

describe('gameops oncall, in-process (real process)', () => {
  it('now, schedule, iCal, override, page, pages show, ack; bad input and unknown ids exit 3', async () => {
    const path = config();
    const now = await gameops(['-c', path, 'oncall', 'now', '--at', '2026-03-10T12:00:00Z', '--json']);
    expect(now.code).toBe(0);
    const schedules = JSON.parse(now.stdout) as ScheduleOnCall[];
    expect(schedules[0]!.layers.map((l) => l.person)).toEqual(['bob', 'alice']);
    const human = await gameops(['-c', path, 'oncall', 'now', '--at', '2026-03-10T12:00:00Z']);
    expect(human.stdout).toContain('game (America/New_York)');
    // A name with a terminal escape is printed escaped.
    expect(human.stdout).toContain('Bob \\x1b[31mRed (bob)');
    expect(human.stdout).not.toContain('\u001b[31m');

    const ical = await gameops([
      '-c',
      path,
      'oncall',
      'schedule',
      'game',
      '--from',
      '2026-03-01',
      '--to',
      '2026-03-20',
      '--ical',
    ]);
    expect(ical.stdout).toContain('BEGIN:VCALENDAR');
    expect(ical.stdout).toContain('DTSTART:20260309T140000Z');
    const shifts = await gameops([
      '-c',
      path,
      'oncall',
      'schedule',
      'game',
      '--from',
      '2026-03-01',
      '--to',
      '2026-03-20',
      '--layer',
      'primary',
    ]);
    expect(shifts.stdout).toMatch(/primary\s+bob\s+2026-03-09 10:00 GMT-4/);

    const override = await gameops([
      '-c',
      path,
      'oncall',
      'override',
      'game',
      '--person',
      'alice',
      '--from',
      'now',
      '--to',
      '+2h',
      '--reason',
      'swap',
      '--json',
    ]);
    expect(override.code).toBe(0);
    const created = JSON.parse(override.stdout) as Override;
    const clash = await gameops([
      '-c',
      path,
      'oncall',
      'override',
      'game',
      '--person',
      'bob',
      '--from',
      'now',
      '--to',
      '+1h',
    ]);
    expect(clash.code).toBe(3);
    expect(clash.stderr).toContain(`overlaps override ${created.id}`);
    const stalls = await gameops(['-c', path, 'oncall', 'stalls']);
    expect(stalls.code).toBe(0);
    expect(stalls.stdout).toContain('no stalls recorded');
    const badLimit = await gameops(['-c', path, 'oncall', 'stalls', '--limit', 'x']);
    expect(badLimit.code).toBe(3);
    expect(badLimit.stderr).toContain('--limit');
    const listed = await gameops(['-c', path, 'oncall', 'overrides']);
    expect(listed.stdout).toContain(created.id);
    expect((await gameops(['-c', path, 'oncall', 'overrides', 'remove', created.id])).code).toBe(0);

    const paged = await gameops([
      '-c',
      path,
      'oncall',
      'page',
      'team:ops',
      '--subject',
      'Raid boss stuck',
      '--severity',
      'P2',
      '--json',
    ]);
    // In-process the first level is delivered before the command returns; the hook's host does not
    // exist, so nothing could be delivered: exit 2, every delivery shown with its error.
    expect(paged.code).toBe(2);
    const page = JSON.parse(paged.stdout) as PageDetail;
    expect(page).toMatchObject({ status: 'triggered', severity: 'P2' });
    expect(page.deliveries.map((d) => [d.person, d.channel])).toEqual([
      ['alice', 'hook'],
      ['bob', 'hook'],
    ]);
    expect(page.deliveries.every((d) => d.attempts.length > 0 && d.status !== 'delivered')).toBe(true);
    const humanPage = await gameops(['-c', path, 'oncall', 'page', 'alice', '--subject', 'Lag']);
    expect(humanPage.code).toBe(2);
    expect(humanPage.stdout).toMatch(/(retrying|failed): alice via hook/);
    expect(humanPage.stdout).toContain('need a running server (gameops serve)');
    expect(humanPage.stderr).toContain('nothing could be delivered');
    const shown = await gameops(['-c', path, 'oncall', 'pages', 'show', page.id, '--json']);
    expect((JSON.parse(shown.stdout) as PageDetail).targets).toEqual([{ team: 'ops' }]);
    const list = await gameops(['-c', path, 'oncall', 'pages']);
    expect(list.stdout).toContain(page.id);
    const ack = await gameops(['-c', path, 'oncall', 'ack', page.id]);
    expect(ack.stdout).toContain(`acknowledged ${page.id}`);
    const again = await gameops(['-c', path, 'oncall', 'ack', page.id]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('already acknowledged');

    const unknown = await gameops(['-c', path, 'oncall', 'ack', 'pg-nope']);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain('no page with id pg-nope');
    const badTime = await gameops(['-c', path, 'oncall', 'now', '--at', 'tuesday']);
    expect(badTime.code).toBe(3);
    expect(badTime.stderr).toContain('--at: "tuesday" is not a time');
    const badTarget = await gameops(['-c', path, 'oncall', 'page', 'zed', '--subject', 'x']);
    expect(badTarget.code).toBe(3);
    expect(badTarget.stderr).toContain('unknown person "zed"');
  }, 120_000);
});

describe('gameops oncall through a server (GAMEOPS_URL)', () => {
  it('pages and acknowledges as the token’s actor', async () => {
    const path = config();
    const resources = await bootstrap({ configPath: path, store: 'required', logLevel: 'silent' });
    const { env, close } = await serveForCli(resources, 'responder', 'carol');
    try {
      const paged = await gameops(
        ['-c', path, 'oncall', 'page', 'schedule:game/backup', '--subject', 'Lag', '--json'],
        env,
      );
      expect(paged.code).toBe(0);
      const page = JSON.parse(paged.stdout) as PageView;
      const ack = await gameops(['-c', path, 'oncall', 'ack', page.id, '--json'], env);
      expect(JSON.parse(ack.stdout)).toMatchObject({ changed: true, page: { status: 'acknowledged' } });
      const ical = await gameops(['-c', path, 'oncall', 'schedule', 'game', '--ical'], env);
      expect(ical.stdout).toContain('BEGIN:VCALENDAR');
      const missing = await gameops(['-c', path, 'oncall', 'pages', 'show', 'pg-nope'], env);
      expect(missing.code).toBe(3);
      const audit = await resources.store!.audit.list({ action: 'oncall.page.acknowledge' });
      expect(audit.map((r) => r.actor.name)).toEqual(['carol']);
    } finally {
      await close();
      await shutdown(resources);
    }
  }, 120_000);
});

describe('option parsing', () => {
  const now = new Date('2026-03-10T12:00:00Z');
  it('reads times with a zone, dates, now and relative times; refuses the rest naming the option', () => {
    expect(parseTime('2026-03-10T13:00:00+01:00', '--at', now)).toBe('2026-03-10T12:00:00.000Z');
    expect(parseTime('2026-03-11', '--at', now)).toBe('2026-03-11T00:00:00.000Z');
    expect(parseTime('now', '--at', now)).toBe(now.toISOString());
    expect(parseTime('+2h', '--to', now)).toBe('2026-03-10T14:00:00.000Z');
    expect(parseTime('-30m', '--from', now)).toBe('2026-03-10T11:30:00.000Z');
    expect(() => parseTime('2026-03-10T12:00', '--at', now)).toThrow(/--at: .* is not a time/);
  });
  it('reads page targets', () => {
    expect(parseTarget('alice')).toEqual({ targets: [{ person: 'alice' }] });
    expect(parseTarget('team:ops')).toEqual({ targets: [{ team: 'ops' }] });
    expect(parseTarget('lead:ops')).toEqual({ targets: [{ teamLead: 'ops' }] });
    expect(parseTarget('schedule:game/backup')).toEqual({ targets: [{ schedule: 'game', layer: 'backup' }] });
    expect(parseTarget('policy:default')).toEqual({ policy: 'default' });
    expect(() => parseTarget('group:x')).toThrow(/use a person id, team:<id>/);
  });
});
