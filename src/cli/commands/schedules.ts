import { Command } from 'commander';
import type { ScheduleStatus, ScheduleStatusReport } from '../../schedules/index.ts';
import { withResources } from '../context.ts';
import { when } from '../output.ts';

export function schedulesCommand(): Command {
  const schedules = new Command('schedules').description(
    'Runbook schedules (runbooks.schedules, and the daily check at 09:00 by default).',
  );
  schedules
    .command('list')
    .description(
      'Each schedule with its time zone, next occurrences, and the last occurrence that fired or was missed ' +
        '(from the store). Validates every cron expression and time zone.',
    )
    .option('--json', 'print as JSON (the same shape as GET /api/schedules)')
    .action(async (options: { json?: boolean }, command: Command) => {
      // While `gameops serve` holds the embedded store (or GAMEOPS_URL names a server), its
      // GET /api/schedules answers, fire history included.
      const remote = await withResources(command, 'none', async (resources) => {
        const { readEnv } = await import('../../config/index.ts');
        const env = readEnv();
        if (env.GAMEOPS_URL !== undefined) return { url: env.GAMEOPS_URL, token: env.GAMEOPS_TOKEN };
        if (resources.config.database.url) return undefined;
        const { readServeDiscovery } = await import('../../identity/index.ts');
        return readServeDiscovery(resources.config.database.dataDir, env);
      });
      if (remote) {
        const { createApiClient } = await import('../api-client.ts');
        const api = createApiClient({ url: remote.url, ...(remote.token ? { token: remote.token } : {}) });
        const report = (await api.schedules()) as ScheduleStatusReport & { configured?: boolean };
        if (report.historyUnavailable)
          process.stderr.write(`gameops: warning: no fire history: ${report.historyUnavailable}\n`);
        if (options.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else process.stdout.write(renderSchedules(report, true));
        return;
      }
      await withResources(command, 'optional', async (resources) => {
        const { resolveSchedules, scheduleStatuses } = await import('../../schedules/index.ts');
        const { config, loaded, store, clock } = resources;
        const report = await scheduleStatuses(
          resolveSchedules(config.runbooks, { configured: loaded.configured }),
          {
            fires: store?.scheduleFires,
            scope: { service: config.service.name, environment: config.service.environment },
            now: clock.now(),
            ...(resources.storeProblem ? { storeProblem: resources.storeProblem } : {}),
          },
        );
        if (report.historyUnavailable)
          process.stderr.write(`gameops: warning: no fire history: ${report.historyUnavailable}\n`);
        if (options.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else process.stdout.write(renderSchedules(report, loaded.configured));
      });
    });
  return schedules;
}

/** The human form of `gameops schedules list`: one block per schedule, times in its own time zone. */
export function renderSchedules(report: ScheduleStatusReport, configured: boolean): string {
  if (report.schedules.length === 0)
    return configured
      ? 'No schedules (runbooks.schedules is empty and runbooks.defaultSchedules is off).\n'
      : 'No schedules: no config file was found, so the daily check is not scheduled (see --config).\n';
  return report.schedules.map((s) => renderOne(s, report.historyUnavailable === undefined)).join('\n');
}

function renderOne(s: ScheduleStatus, withHistory: boolean): string {
  const at = (iso: string): string => localTime(new Date(iso), s.timezone);
  const lines = [
    `${s.name}${s.origin === 'default' ? ' (default)' : ''}${s.enabled ? '' : ' (disabled)'}: runbook ${s.runbook}`,
    `  cron        ${s.cron}  (${s.timezone}; grace ${graceText(s.graceMs)})`,
    `  next        ${s.enabled ? s.next.map(at).join(', ') || 'never' : '-'}`,
  ];
  if (withHistory) {
    lines.push(
      `  last fired  ${
        s.lastFired
          ? `${at(s.lastFired.occurrence)}, ${s.lastFired.runId ? `run ${s.lastFired.runId}` : 'run not started yet'}`
          : 'never'
      }`,
      `  last missed ${s.lastMissed ? at(s.lastMissed.occurrence) : 'never'}` +
        (s.missedSinceLastFired > 0
          ? ` (${s.missedSinceLastFired} missed since ${s.lastFired ? 'the last that fired' : 'it was added'})`
          : ''),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** `2026-01-02 09:00 GMT+09:00` in `timeZone`. */
export function localTime(at: Date, timeZone: string): string {
  return when(at.toISOString(), timeZone, 'long');
}

function graceText(ms: number): string {
  if (ms === 0) return '0s';
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const)
    if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}
