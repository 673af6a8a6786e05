import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { gameops } from '../../../test/support/cli.ts';
import { openStore } from '../../store/index.ts';
import type { ScheduleStatusReport } from '../../schedules/index.ts';
import { localTime, renderSchedules } from './schedules.ts';

const MAIN = join(import.meta.dirname, '..', 'main.ts');
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function config(runbooks: string): { dir: string; path: string; dataDir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'gameops-schedules-cli-'));
  dirs.push(dir);
  const dataDir = join(dir, 'data');
  const path = join(dir, 'gameops.yaml');
  writeFileSync(
    path,
    `service: { name: test-game, environment: test }\ndatabase: { dataDir: ${dataDir} }\n${runbooks}`,
  );
  return { dir, path, dataDir };
}

const RUNBOOKS = `runbooks:
  timezone: Asia/Seoul
  schedules:
    - { name: weekly, runbook: weekly-report, cron: "0 6 * * MON", timezone: Europe/Berlin, grace: 30m }
    - { name: often, runbook: daily-check, cron: "*/5 * * * *", enabled: false }
`;

describe('gameops schedules list (real process)', () => {
  it('--json: every schedule with its time zone, next occurrences, and the last fire and miss from the store', async () => {
    const { path, dataDir } = config(RUNBOOKS);
    const store = await openStore({ dataDir });
    const scope = { service: 'test-game', environment: 'test' };
    const day = new Date('2026-01-05T00:00:00Z');
    await store.scheduleFires.claim(scope, 'daily-check', day, 'fired', day);
    await store.scheduleFires.setRun(scope, 'daily-check', day, 'run-1');
    await store.scheduleFires.recordMissed(
      scope,
      'daily-check',
      [new Date('2026-01-06T00:00:00Z'), new Date('2026-01-07T00:00:00Z')],
      new Date('2026-01-07T03:00:00Z'),
    );
    await store.close();

    const res = await gameops(['schedules', 'list', '--json', '--config', path]);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const report = JSON.parse(res.stdout) as ScheduleStatusReport;
    expect(report.historyUnavailable).toBeUndefined();
    expect(
      report.schedules.map((s) => [s.name, s.runbook, s.cron, s.timezone, s.enabled, s.origin, s.graceMs]),
    ).toEqual([
      ['weekly', 'weekly-report', '0 6 * * MON', 'Europe/Berlin', true, 'config', 1_800_000],
      ['often', 'daily-check', '*/5 * * * *', 'Asia/Seoul', false, 'config', 3_600_000],
      ['daily-check', 'daily-check', '0 9 * * *', 'Asia/Seoul', true, 'default', 3_600_000],
    ]);
    const [weekly, often, daily] = report.schedules;
    // 06:00 in Berlin is 05:00 UTC in winter and 04:00 UTC in summer, always on a Monday.
    expect(weekly?.next).toHaveLength(3);
    for (const at of weekly?.next ?? []) {
      expect(new Date(at).getUTCDay()).toBe(1);
      expect(at).toMatch(/T0[45]:00:00\.000Z$/);
      expect(Date.parse(at)).toBeGreaterThan(Date.now() - 60_000);
    }
    expect(often?.next).toEqual([]);
    for (const at of daily?.next ?? []) expect(at).toMatch(/T00:00:00\.000Z$/);
    expect(daily).toMatchObject({
      lastFired: { occurrence: '2026-01-05T00:00:00.000Z', runId: 'run-1' },
      lastMissed: { occurrence: '2026-01-07T00:00:00.000Z', recordedAt: '2026-01-07T03:00:00.000Z' },
      missedSinceLastFired: 2,
    });

    const text = await gameops(['schedules', 'list', '--config', path]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(
      'daily-check (default): runbook daily-check\n  cron        0 9 * * *  (Asia/Seoul; grace 1h)',
    );
    expect(text.stdout).toContain('  last fired  2026-01-05 09:00 GMT+09:00, run run-1');
    expect(text.stdout).toContain(
      '  last missed 2026-01-07 09:00 GMT+09:00 (2 missed since the last that fired)',
    );
    expect(text.stdout).toContain('often (disabled): runbook daily-check');
  });

  it('a bad cron expression or time zone: exit 3 naming the field and the value, also in config check', async () => {
    const { path } = config(`runbooks:
  schedules:
    - { name: a, runbook: daily-check, cron: "0 0 9 * * *" }
    - { name: b, runbook: daily-check, cron: "0 9 * * *", timezone: Asia/Seol }
`);
    for (const args of [
      ['schedules', 'list'],
      ['config', 'check'],
    ]) {
      const res = await gameops([...args, '--config', path]);
      expect(res.code).toBe(3);
      expect(res.stderr).toContain('gameops: 2 invalid schedules:');
      expect(res.stderr).toContain(
        'runbooks.schedules[0].cron: "0 0 9 * * *" is not a valid cron expression: has 6 fields; schedules take five',
      );
      expect(res.stderr).toContain(
        'runbooks.schedules[1].timezone: "Asia/Seol" is not a known IANA time zone',
      );
    }
  });
});

/** Runs `gameops serve` until it listens (the scheduler has started by then), then stops it. */
async function serveOnce(
  path: string,
  during: () => Promise<void> = () => Promise.resolve(),
): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [MAIN, 'serve', '--port', '0', '--config', path], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let stopping = false;
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    const address = /listening on (http:\/\/\S+)/.exec(stderr)?.[1];
    if (address === undefined || stopping) return;
    stopping = true;
    // Once it answers, its signal handlers are in place (they are installed right after it listens).
    void fetch(`${address}/healthz`)
      .catch(() => undefined)
      .then(during)
      .finally(() => child.kill('SIGTERM'));
  });
  const code = await exited;
  return { code, stderr };
}

describe('gameops serve runs the scheduler (real process)', () => {
  it('an occurrence missed while gameops was down runs at start as a run of the engine; older ones are recorded missed', async () => {
    const { path, dataDir } = config(`runbooks:
  schedules:
    - { name: minutely, runbook: daily-check, cron: "* * * * *" }
`);
    const scope = { service: 'test-game', environment: 'test' };
    let store = await openStore({ dataDir });
    // gameops last saw the schedule three and a half minutes ago.
    const seen = new Date(Date.now() - 210_000);
    await store.scheduleFires.claim(scope, 'minutely', seen, 'seen', seen);
    await store.close();

    const served = await serveOnce(path);
    expect(served.stderr).toContain('gameops: stopped');
    expect(served.code).toBe(0);

    store = await openStore({ dataDir });
    try {
      const fired = await store.scheduleFires.latest(scope, 'minutely', 'fired');
      expect(fired?.runId).toBeDefined();
      expect(await store.scheduleFires.count(scope, 'minutely', 'missed')).toBeGreaterThanOrEqual(2);
      const run = await store.runs.getRun(fired?.runId ?? '');
      expect(run).toMatchObject({
        runbook: 'daily-check',
        trigger: 'schedule',
        requestedBy: { id: 'schedule:minutely', kind: 'schedule' },
        idempotencyKey: expect.stringContaining(`schedule:minutely@${fired?.occurrence}`) as unknown,
      });
      // The default daily check was seen for the first time: recorded, nothing backfilled.
      expect(await store.scheduleFires.latest(scope, 'daily-check')).toMatchObject({ outcome: 'seen' });
    } finally {
      await store.close();
    }
  });

  it('schedules list while serve holds the store asks its API (fire history included, no warning)', async () => {
    const { path } = config('');
    let listed: { code: number | null; stdout: string; stderr: string } | undefined;
    const served = await serveOnce(path, async () => {
      listed = await gameops(['schedules', 'list', '--json', '--config', path]);
    });
    expect(served.code).toBe(0);
    expect(listed?.code, listed?.stderr).toBe(0);
    expect(listed?.stderr).not.toContain('warning');
    const report = JSON.parse(listed?.stdout ?? '') as ScheduleStatusReport;
    expect(report.historyUnavailable).toBeUndefined();
    expect(report.schedules.map((sc) => sc.name)).toEqual(['daily-check']);
  });

  it('a schedule naming an unknown runbook stops serve before it listens, naming the schedule', async () => {
    const { path } = config(`runbooks:
  schedules:
    - { name: nightly-archive, runbook: archive-logs, cron: "0 3 * * *" }
`);
    const served = await serveOnce(path);
    expect(served.code).toBe(3);
    expect(served.stderr).not.toContain('listening on');
    expect(served.stderr).toContain(
      'gameops: invalid schedule: runbooks.schedules[0]: schedule "nightly-archive" names runbook "archive-logs", which does not exist (known: ',
    );
  });
});

describe('renderSchedules', () => {
  it('says why there is nothing', () => {
    expect(renderSchedules({ schedules: [] }, false)).toContain('no config file was found');
    expect(renderSchedules({ schedules: [] }, true)).toContain('runbooks.defaultSchedules is off');
  });

  it('leaves history out when the store could not be read', () => {
    const text = renderSchedules(
      {
        schedules: [
          {
            name: 'x',
            runbook: 'y',
            cron: '0 9 * * *',
            timezone: 'UTC',
            enabled: true,
            origin: 'config',
            graceMs: 90 * 60_000,
            next: ['2026-03-29T09:00:00.000Z'],
            missedSinceLastFired: 0,
          },
        ],
        historyUnavailable: 'locked by gameops serve',
      },
      true,
    );
    expect(text).toBe(
      'x: runbook y\n  cron        0 9 * * *  (UTC; grace 90m)\n  next        2026-03-29 09:00 GMT+00:00\n',
    );
  });

  it('localTime shows the wall time and offset of the zone, DST included', () => {
    expect(localTime(new Date('2026-03-29T01:00:00Z'), 'Europe/Berlin')).toBe('2026-03-29 03:00 GMT+02:00');
    expect(localTime(new Date('2026-03-28T01:30:00Z'), 'Europe/Berlin')).toBe('2026-03-28 02:30 GMT+01:00');
    expect(localTime(new Date('2026-01-02T00:00:00Z'), 'Asia/Seoul')).toBe('2026-01-02 09:00 GMT+09:00');
  });
});
