import { formatDuration } from '../core/index.ts';
import { requirePlatform } from './fleet.ts';
import { CheckStatus, worstOf } from './statuses.ts';
import { formatBytes, levelFor } from './thresholds.ts';
import type { Check, Finding } from './types.ts';

/**
 * Runbook §1.1 step 5 (`kubectl logs --since=24h | grep -c ERROR`): error lines per game-server instance
 * over the window, counted as the logs stream past (never loaded whole), against per-instance thresholds.
 */
export const logsCheck: Check = {
  name: 'logs',
  configured: (config) => config.platform !== undefined,
  target: (config) => (config.platform ? `logs on the ${config.platform.kind} platform` : 'logs'),
  async run(ctx) {
    const platform = requirePlatform(ctx);
    const t = ctx.config.checks.thresholds.fleet;
    const counted = await platform.countLines({
      pattern: t.errorPattern,
      sinceMs: t.errorLinesWindow,
      signal: ctx.signal,
    });
    const findings: Finding[] = Object.entries(counted.perInstance)
      .filter(([, n]) => n >= t.errorLinesWarn)
      .sort(([, a], [, b]) => b - a)
      .slice(0, 20)
      .map(([name, n]) => ({
        status: levelFor(n, t.errorLinesWarn, t.errorLinesFail),
        subject: name,
        message: `${n} "${t.errorPattern}" lines in the last ${formatDuration(t.errorLinesWindow)}`,
        value: n,
        threshold: t.errorLinesWarn,
      }));
    const unreadable = Object.entries(counted.unreadable ?? {});
    // A log that could not be read is not a log without errors: say so rather than count it as 0.
    for (const [name, why] of unreadable.slice(0, 20))
      findings.push({ status: CheckStatus.warn, subject: name, message: `log not read: ${why}` });
    const instances = Object.keys(counted.perInstance).length;
    return {
      status: worstOf([CheckStatus.ok, ...findings.map((f) => f.status)]),
      summary:
        `${counted.total} "${t.errorPattern}" lines in the last ${formatDuration(t.errorLinesWindow)} ` +
        `across ${instances} instance${instances === 1 ? '' : 's'} (${formatBytes(counted.bytesScanned)} read)` +
        (unreadable.length > 0 ? `; ${unreadable.length} not read` : ''),
      values: {
        pattern: t.errorPattern,
        windowMs: t.errorLinesWindow,
        total: counted.total,
        perInstance: counted.perInstance,
        bytesScanned: counted.bytesScanned,
        unreadable: Object.fromEntries(unreadable),
      },
      findings,
    };
  },
};
