import { alertmanagerTarget, createAlertmanagerClient, type AlertmanagerAlert } from '../connectors/index.ts';
import { CheckStatus, worstOf } from './statuses.ts';
import type { Check, Finding } from './types.ts';

/** How many alerts are listed in `values` (all are counted). */
const MAX_LISTED = 50;
/** How many alert groups (alertname + severity) get a finding of their own; the rest share one. */
const MAX_GROUPS = 50;

/** An alert as the daily check reports it. */
export interface ActiveAlert {
  alertname: string;
  severity: string;
  summary: string | null;
  runbookUrl: string | null;
  startsAt: string;
  fingerprint: string;
  status: CheckStatus;
}

/**
 * Runbook §1.1 step 6: alerts firing in Alertmanager (API v2; neither silenced nor inhibited), counted by
 * severity. `failSeverities` fail the check, `warnSeverities` warn (compared without case: a `Critical`
 * label is `critical`; the label is shown as written). An alert without a `runbook_url`
 * annotation is a warning of its own: whoever is paged has nothing to follow.
 */
export const alertsCheck: Check = {
  name: 'alerts',
  configured: (config) => config.alertmanager !== undefined,
  target: (config) =>
    config.alertmanager ? `Alertmanager at ${alertmanagerTarget(config.alertmanager)}` : 'Alertmanager',
  async run(ctx) {
    const am = ctx.config.alertmanager;
    if (!am) return { status: CheckStatus.skipped, summary: 'not configured', values: {}, findings: [] };
    const t = ctx.config.checks.thresholds.alerts;
    const client = createAlertmanagerClient(am);
    const request = { signal: ctx.signal, timeoutMs: ctx.config.checks.timeout };
    const [raw, status] = await Promise.all([
      client.alerts({}, request),
      // The version is nice to show, not worth failing the check over.
      client.status(request).catch(() => undefined),
    ]);
    const failSeverities = new Set(t.failSeverities.map(foldSeverity));
    const warnSeverities = new Set(t.warnSeverities.map(foldSeverity));
    // Worst first, then oldest first. Each status's alerts are sorted by start on their own and put one
    // after the other: the same order as one stable sort of all by (status, start), with a cheaper comparison.
    const failing: ActiveAlert[] = [];
    const warning: ActiveAlert[] = [];
    const other: ActiveAlert[] = [];
    for (const a of raw) {
      const alert = toActiveAlert(a, failSeverities, warnSeverities);
      (alert.status === CheckStatus.fail
        ? failing
        : alert.status === CheckStatus.warn
          ? warning
          : other
      ).push(alert);
    }
    const alerts = [...failing.sort(byStart), ...warning.sort(byStart), ...other.sort(byStart)];

    const bySeverity: Record<string, number> = {};
    for (const a of alerts) bySeverity[a.severity] = (bySeverity[a.severity] ?? 0) + 1;
    const findings = groupFindings(alerts);
    const missing = alerts.filter((a) => a.runbookUrl === null);
    if (missing.length > 0) {
      const names = [...new Set(missing.map((a) => a.alertname))];
      findings.push({
        status: CheckStatus.warn,
        subject: 'runbook_url',
        message: `${missing.length} firing ${missing.length === 1 ? 'alert has' : 'alerts have'} no runbook_url annotation: ${names.slice(0, 10).join(', ')}${names.length > 10 ? ', …' : ''}`,
        value: missing.length,
      });
    }

    const version = status?.version;
    const counts = Object.entries(bySeverity)
      .sort(([, a], [, b]) => b - a)
      .map(([severity, n]) => `${n} ${severity}`)
      .join(', ');
    const summary =
      alerts.length === 0
        ? 'no active alerts'
        : `${alerts.length} active alert${alerts.length === 1 ? '' : 's'} (${counts})${missing.length > 0 ? `, ${missing.length} without runbook_url` : ''}`;
    return {
      status: worstOf([CheckStatus.ok, ...findings.map((f) => f.status)]),
      summary: `${summary}${version ? ` (Alertmanager ${version})` : ''}`,
      values: {
        target: client.target,
        version: version ?? null,
        total: alerts.length,
        bySeverity,
        withoutRunbook: missing.length,
        alerts: alerts.slice(0, MAX_LISTED),
        listedTruncated: alerts.length > MAX_LISTED,
      },
      findings,
    };
  },
};

/**
 * Severities compare without case (and surrounding blanks): `Critical`, `CRITICAL` and `critical` are the
 * same severity, in labels as in the configured lists. The label is still shown as written.
 */
function foldSeverity(severity: string): string {
  return severity.trim().toLowerCase();
}

function toActiveAlert(
  alert: AlertmanagerAlert,
  failSeverities: ReadonlySet<string>,
  warnSeverities: ReadonlySet<string>,
): ActiveAlert {
  const severity = alert.labels['severity'] ?? 'none';
  const folded = foldSeverity(severity);
  const runbook = alert.annotations['runbook_url'] ?? alert.annotations['runbook'];
  return {
    alertname: alert.labels['alertname'] ?? '(unnamed)',
    severity,
    summary: alert.annotations['summary'] ?? alert.annotations['description'] ?? null,
    runbookUrl: runbook?.trim() ? runbook.trim() : null,
    startsAt: alert.startsAt,
    fingerprint: alert.fingerprint,
    status: failSeverities.has(folded)
      ? CheckStatus.fail
      : warnSeverities.has(folded)
        ? CheckStatus.warn
        : CheckStatus.ok,
  };
}

/**
 * ISO-8601 instants order as plain strings; localeCompare would load ICU's collator (~6 ms the first time
 * in a process) for nothing.
 */
function byStart(a: ActiveAlert, b: ActiveAlert): number {
  return a.startsAt < b.startsAt ? -1 : a.startsAt > b.startsAt ? 1 : 0;
}

/**
 * One finding per alertname and severity (a fleet-wide outage fires the same alert on hundreds of
 * instances; a person needs one line for it, with the count), worst first, at most MAX_GROUPS.
 */
function groupFindings(alerts: readonly ActiveAlert[]): Finding[] {
  const groups = new Map<string, { first: ActiveAlert; count: number }>();
  for (const a of alerts) {
    if (a.status === CheckStatus.ok) continue;
    const key = `${a.alertname}\u0000${foldSeverity(a.severity)}`;
    const group = groups.get(key);
    if (group) group.count++;
    else groups.set(key, { first: a, count: 1 });
  }
  const ordered = [...groups.values()];
  const findings: Finding[] = ordered.slice(0, MAX_GROUPS).map(({ first: a, count }) => ({
    status: a.status,
    subject: a.alertname,
    message: `${a.severity}${count > 1 ? ` ×${count}` : ''}: ${a.summary ?? '(no summary)'}${a.runbookUrl ? ` — runbook ${a.runbookUrl}` : ''}`,
    value: a.severity,
  }));
  const rest = ordered.slice(MAX_GROUPS);
  if (rest.length > 0) {
    findings.push({
      status: worstOf(rest.map((g) => g.first.status)),
      subject: 'more alerts',
      message: `${rest.length} more alert groups (${rest.reduce((n, g) => n + g.count, 0)} alerts) not listed`,
      value: rest.length,
    });
  }
  return findings;
}
