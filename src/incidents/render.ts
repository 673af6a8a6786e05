import { wallClock } from '../core/index.ts';
import type { IncidentView, StatusDraft, TimelineEntry } from './model.ts';

/*
 * Text built from an incident: timeline exports (JSON, Markdown, CSV), status-update drafts, times in
 * the service's display zone.
 */

/** `2026-03-01 19:05` in `timeZone` (with the date) or `19:05` (without). */
export function zoned(iso: string, timeZone: string, withDate = true): string {
  const w = wallClock(iso, timeZone);
  const time = `${w.hour}:${w.minute}`;
  return withDate ? `${w.year}-${w.month}-${w.day} ${time}` : time;
}

/** The date part (`2026-03-01`) in `timeZone`. */
export function zonedDate(iso: string, timeZone: string): string {
  return zoned(iso, timeZone).slice(0, 10);
}

/** `45 minutes`, `2 hours 5 minutes`, `1 day 3 hours`. */
export function humanDuration(ms: number): string {
  const minutes = Math.max(0, Math.round(ms / 60_000));
  const plural = (n: number, unit: string): string => `${n} ${unit}${n === 1 ? '' : 's'}`;
  if (minutes < 60) return plural(minutes, 'minute');
  const hours = Math.floor(minutes / 60);
  if (hours < 24)
    return [plural(hours, 'hour'), ...(minutes % 60 ? [plural(minutes % 60, 'minute')] : [])].join(' ');
  const days = Math.floor(hours / 24);
  return [plural(days, 'day'), ...(hours % 24 ? [plural(hours % 24, 'hour')] : [])].join(' ');
}

/** Markdown inline text: no line breaks, and characters that would start markup are escaped. */
export function mdText(text: string): string {
  return noControl(text.replace(/[\r\n]+/g, ' ').replace(/([\\`*_[\]<>|#])/g, '\\$1'));
}

/** Text with control characters (but tab and line breaks) shown as `\uNNNN`. */
export function noControl(text: string): string {
  return text.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Control and invisible reordering characters: shown as escapes, never passed into a document. */
const CONTROL =
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

/**
 * A cell for CSV: control characters (terminal escapes) shown as `\uNNNN` (line breaks and tabs kept,
 * inside quotes), formula-starting text neutralised with a leading `'` (CSV injection), then quoted.
 */
export function csvCell(value: string): string {
  const text = noControl(value);
  const safe = /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

export function timelineJson(incident: IncidentView, entries: TimelineEntry[]): string {
  return `${JSON.stringify({ incident: incident.id, title: incident.title, entries }, null, 2)}\n`;
}

export function timelineMarkdown(incident: IncidentView, entries: TimelineEntry[], timeZone: string): string {
  const lines = [
    `# Timeline: ${incident.id} ${mdText(incident.title)}`,
    '',
    `Severity ${incident.severity}, ${incident.status}. Times in ${timeZone}.`,
    '',
    ...entries.map(
      (e) =>
        `- ${zoned(e.at, timeZone)} - **${e.kind}** ${mdText(e.message)}${e.actor ? ` (${mdText(e.actor.name)})` : ''}`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}

export function timelineCsv(entries: TimelineEntry[]): string {
  const rows = [['at', 'kind', 'actor', 'message', 'run']];
  for (const e of entries) rows.push([e.at, e.kind, e.actor?.name ?? '', e.message, e.runId ?? '']);
  return `${rows.map((r) => r.map(csvCell).join(',')).join('\r\n')}\r\n`;
}

const DRAFT_GROUPS: Array<[string, (kind: string) => boolean]> = [
  ['Status and severity', (k) => k === 'status' || k === 'severity' || k === 'declared'],
  ['Alerts', (k) => k.startsWith('alert-')],
  ['Paging', (k) => k.startsWith('page-') || k === 'call-in'],
  ['Runbooks', (k) => k === 'runbook-run'],
  ['People', (k) => k === 'role' || k === 'owner'],
  ['Notes', (k) => k === 'note' || k === 'checklist' || k === 'notice'],
];

/**
 * A status update drafted from what happened since the last one: grouped by kind, times in the
 * display zone, ready to edit and post.
 */
export function buildDraft(incident: IncidentView, entries: TimelineEntry[], timeZone: string): StatusDraft {
  const lastUpdate = entries.findLast((e) => e.kind === 'status-update');
  const since = lastUpdate?.at ?? incident.createdAt;
  const start = lastUpdate ? entries.lastIndexOf(lastUpdate) + 1 : 0;
  const recent = entries
    .slice(start)
    .filter(
      (e) =>
        e.kind !== 'status-update-due' &&
        e.kind !== 'postmortem' &&
        !(e.kind === 'notice' && e.data.ofUpdate === true),
    );
  const lines = [
    `${incident.id} (${incident.severity}) ${incident.title}: ${incident.status}.`,
    ...(incident.impact ? [`Impact: ${incident.impact}`] : []),
    '',
    `Since ${lastUpdate ? 'the last update' : 'it was declared'} at ${zoned(since, timeZone)} (${timeZone}):`,
  ];
  let any = false;
  for (const [title, matches] of DRAFT_GROUPS) {
    const group = recent.filter((e) => matches(e.kind));
    if (group.length === 0) continue;
    any = true;
    lines.push(`${title}:`);
    for (const e of group.slice(-15)) lines.push(`- ${zoned(e.at, timeZone, false)} ${e.message}`);
    if (group.length > 15) lines.push(`- (${group.length - 15} earlier entries)`);
  }
  if (!any) lines.push('- No change since then.');
  lines.push('', 'Next steps: (what the team is doing now)');
  return {
    incidentId: incident.id,
    since,
    ...(incident.nextUpdateDueAt ? { dueAt: incident.nextUpdateDueAt } : {}),
    subject: `[${incident.id} ${incident.severity}] status update: ${incident.title}`,
    text: lines.join('\n'),
    entries: recent.length,
  };
}
