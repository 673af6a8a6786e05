import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSilence,
  postAlerts,
  startAlertmanager,
  type AlertmanagerHandle,
} from '../../test/harness/index.ts';
import { systemClock } from '../core/index.ts';
import type { ActiveAlert } from './alerts.ts';
import { alertsCheck } from './alerts.ts';
import { runDailyCheck } from './daily.ts';
import { testConfig } from './test-support.ts';
import type { CheckResult } from './types.ts';

// A private Alertmanager per file: alert counts must be ours alone.
let am: AlertmanagerHandle;
beforeAll(async () => {
  am = await startAlertmanager();
});
afterAll(async () => {
  await am?.stop();
});

async function check(thresholds: Record<string, unknown> = {}): Promise<CheckResult> {
  const run = await runDailyCheck({
    config: testConfig({ alertmanager: { url: am.url }, thresholds: { alerts: thresholds } }),
    clock: systemClock,
    trigger: 'cli',
    checks: [alertsCheck],
  });
  return run.results[0]!;
}

/** Alertmanager ingests posted alerts asynchronously; wait until the check sees `total` of them. */
async function checkUntil(total: number, thresholds: Record<string, unknown> = {}): Promise<CheckResult> {
  let result = await check(thresholds);
  for (let i = 0; i < 50 && result.values['total'] !== total; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    result = await check(thresholds);
  }
  expect(result.values['total']).toBe(total);
  return result;
}

describe('alerts check', () => {
  it('is ok with no active alerts and shows the Alertmanager version', async () => {
    const result = await check();
    expect(result.status).toBe('ok');
    expect(result.summary).toMatch(/^no active alerts \(Alertmanager \d+\.\d+\.\d+\)$/);
  });

  it('counts alerts by severity, shows runbook links and flags alerts without one', async () => {
    const run = randomUUID();
    await postAlerts(am.url, [
      {
        labels: { alertname: 'GameServerDown', severity: 'critical', run },
        annotations: { summary: 'game-1 is down', runbook_url: 'https://runbooks.example/game-server-down' },
      },
      {
        labels: { alertname: 'LoginLatencyHigh', severity: 'warning', run },
        annotations: { summary: 'login p99 over 2 s' },
      },
      {
        labels: { alertname: 'MatchmakingQueueLong', severity: 'warning', run },
        annotations: { summary: 'queue over 5 min', runbook: 'https://runbooks.example/matchmaking' },
      },
      { labels: { alertname: 'BackupOld', severity: 'info', run } },
      // Silenced: must not be counted.
      { labels: { alertname: 'NoisyAlert', severity: 'critical', run } },
    ]);
    await createSilence(am.url, [{ name: 'alertname', value: 'NoisyAlert' }]);
    const result = await checkUntil(4);

    expect(result.status).toBe('fail');
    expect(result.values['bySeverity']).toEqual({ critical: 1, warning: 2, info: 1 });
    expect(result.values['withoutRunbook']).toBe(2);
    const alerts = result.values['alerts'] as ActiveAlert[];
    // Worst first: the critical alert, then the warnings, then the rest.
    expect(alerts.map((a) => a.alertname).sort()).toEqual(
      ['BackupOld', 'GameServerDown', 'LoginLatencyHigh', 'MatchmakingQueueLong'].sort(),
    );
    expect(alerts.at(-1)?.alertname).toBe('BackupOld');
    expect(alerts[0]).toMatchObject({
      alertname: 'GameServerDown',
      severity: 'critical',
      summary: 'game-1 is down',
      runbookUrl: 'https://runbooks.example/game-server-down',
      status: 'fail',
    });
    expect(alerts.find((a) => a.alertname === 'MatchmakingQueueLong')?.runbookUrl).toBe(
      'https://runbooks.example/matchmaking',
    );
    expect(alerts.find((a) => a.alertname === 'BackupOld')).toMatchObject({
      status: 'ok',
      runbookUrl: null,
      summary: null,
    });

    expect(result.findings).toContainEqual({
      status: 'fail',
      subject: 'GameServerDown',
      message: 'critical: game-1 is down — runbook https://runbooks.example/game-server-down',
      value: 'critical',
    });
    expect(result.findings).toContainEqual(
      expect.objectContaining({ status: 'warn', subject: 'LoginLatencyHigh', value: 'warning' }),
    );
    const missing = result.findings.find((f) => f.subject === 'runbook_url');
    expect(missing?.status).toBe('warn');
    expect(missing?.message).toMatch(/^2 firing alerts have no runbook_url annotation: /);
    expect(missing?.message).toContain('LoginLatencyHigh');
    expect(missing?.message).toContain('BackupOld');
    expect(missing?.message).not.toContain('GameServerDown');
    expect(result.summary).toMatch(
      /^4 active alerts \(2 warning, 1 critical, 1 info\), 2 without runbook_url \(Alertmanager \d+\.\d+\.\d+\)$/,
    );

    // Severities are configurable.
    const relaxed = await checkUntil(4, { failSeverities: ['page'], warnSeverities: ['critical'] });
    expect(relaxed.findings.find((f) => f.subject === 'GameServerDown')?.status).toBe('warn');
    expect(relaxed.findings.some((f) => f.subject === 'LoginLatencyHigh')).toBe(false);
    expect(relaxed.status).toBe('warn');
  });

  it('groups a fleet-wide alert into one finding with a count, and caps the list', async () => {
    const run = randomUUID();
    const names = Array.from({ length: 60 }, (_, i) => `ShardDown${String(i).padStart(2, '0')}`);
    await postAlerts(
      am.url,
      names.flatMap((alertname) =>
        Array.from({ length: 5 }, (_, instance) => ({
          labels: { alertname, severity: 'critical', instance: `game-${instance}`, run },
          annotations: { summary: `${alertname} on a shard`, runbook_url: 'https://runbooks.example/shard' },
        })),
      ),
    );
    const result = await checkUntil(304);
    const shard = result.findings.find((f) => f.subject.startsWith('ShardDown'));
    expect(shard?.message).toMatch(
      /^critical ×5: ShardDown\d+ on a shard — runbook https:\/\/runbooks\.example\/shard$/,
    );
    const more = result.findings.find((f) => f.subject === 'more alerts');
    expect(more?.status).toBe('fail');
    expect(more?.message).toMatch(/^\d+ more alert groups \(\d+ alerts\) not listed$/);
    // 50 groups, the "more" line, and the runbook_url finding: readable, whatever the alert count.
    expect(result.findings).toHaveLength(52);
    expect(result.values['bySeverity']).toMatchObject({ critical: 301 });
  });
});

describe('alerts check severity matching', () => {
  // An Alertmanager of its own: the counts of the tests above must not mix with these.
  let own: AlertmanagerHandle;
  beforeAll(async () => {
    own = await startAlertmanager();
  });
  afterAll(async () => {
    await own?.stop();
  });

  async function checkOwn(total: number, thresholds: Record<string, unknown> = {}): Promise<CheckResult> {
    const once = async (): Promise<CheckResult> =>
      (
        await runDailyCheck({
          config: testConfig({ alertmanager: { url: own.url }, thresholds: { alerts: thresholds } }),
          clock: systemClock,
          trigger: 'cli',
          checks: [alertsCheck],
        })
      ).results[0]!;
    let result = await once();
    for (let i = 0; i < 50 && result.values['total'] !== total; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      result = await once();
    }
    expect(result.values['total']).toBe(total);
    return result;
  }

  it('ignores case in labels and in the configured lists, and shows the label as written', async () => {
    const runbook = { runbook_url: 'https://runbooks.example/x' };
    await postAlerts(own.url, [
      { labels: { alertname: 'ShardDown', severity: 'Critical' }, annotations: { summary: 's', ...runbook } },
      { labels: { alertname: 'QueueLong', severity: 'WARNING' }, annotations: { summary: 'q', ...runbook } },
      { labels: { alertname: 'Paged', severity: 'page' }, annotations: { summary: 'p', ...runbook } },
    ]);
    const result = await checkOwn(3);
    expect(result.status).toBe('fail');
    const alerts = result.values['alerts'] as ActiveAlert[];
    expect(alerts.find((a) => a.alertname === 'ShardDown')).toMatchObject({
      severity: 'Critical',
      status: 'fail',
    });
    expect(alerts.find((a) => a.alertname === 'QueueLong')).toMatchObject({
      severity: 'WARNING',
      status: 'warn',
    });
    expect(result.values['bySeverity']).toEqual({ Critical: 1, WARNING: 1, page: 1 });
    expect(result.findings).toContainEqual(
      expect.objectContaining({
        status: 'fail',
        subject: 'ShardDown',
        message: 'Critical: s — runbook https://runbooks.example/x',
      }),
    );

    // Lists written in another case match too.
    const upper = await checkOwn(3, { failSeverities: ['PAGE'], warnSeverities: ['Critical'] });
    expect(upper.findings.find((f) => f.subject === 'Paged')?.status).toBe('fail');
    expect(upper.findings.find((f) => f.subject === 'ShardDown')?.status).toBe('warn');
    expect(upper.findings.some((f) => f.subject === 'QueueLong')).toBe(false);
  });
});
