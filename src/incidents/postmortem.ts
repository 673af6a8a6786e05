import { InputError } from '../core/index.ts';
import type { ActionItemRecord, Directory, IncidentView, LinkedRun, TimelineEntry } from './model.ts';
import { humanDuration, mdText, noControl, zoned, zonedDate } from './render.ts';

/*
 * Post-mortems (runbook §8.1): Markdown generated from the incident, its timeline and its action items,
 * stored in versions.
 *
 * The regeneration rule: a post-mortem is a list of `## ` sections. When a person saves an edit, every
 * section whose text differs from the version they started from is marked as edited, and so is any
 * section they added. Regenerating (on resolve, or on request) rebuilds every section from the incident
 * except the edited ones, which keep their latest text, with two exceptions that are always rebuilt:
 * Timeline (from the timeline, which only grows; an edit that changes it is refused, see
 * {@link refuseTimelineEdit}: add a note to the incident instead) and Action Items (from the action items;
 * each line carries its item's id in a hidden `<!-- item:ID -->` marker, and an edit's lines are synced
 * into the items when saved: title, owner, due date and status of existing ones, new lines become new
 * items, see {@link actionItemLines}).
 */

export const SECTIONS = [
  'Summary',
  'Timeline',
  'Root Cause Analysis',
  'Lessons Learned',
  'Action Items',
  'Supporting Data',
] as const;

/** Sections rebuilt on every regeneration, edited or not. */
export const ALWAYS_REGENERATED = new Set<string>(['Timeline', 'Action Items']);

export interface PostmortemInput {
  incident: IncidentView;
  timeline: TimelineEntry[];
  items: ActionItemRecord[];
  runs: LinkedRun[];
  timeZone: string;
  publicUrl?: string | undefined;
  directory: Directory;
}

/** Every section, generated. */
export function generateSections(input: PostmortemInput): Record<string, string> {
  const { incident, timeline, items, runs, timeZone, directory } = input;
  const end = incident.timestamps.resolved;
  // Impact starts when the first alert started (alerts fire before the incident is opened from them),
  // or when it was declared if that was earlier (or there were no alerts).
  const start = timeline
    .filter((e) => e.kind === 'alert-fired')
    .reduce((first, e) => (Date.parse(e.at) < Date.parse(first) ? e.at : first), incident.createdAt);
  const duration = end
    ? humanDuration(Date.parse(end) - Date.parse(start))
    : // No "so far" figure: the text must not change with the clock alone (edits are compared to it).
      `ongoing (since ${zoned(start, timeZone)} ${timeZone})`;
  const lead = incident.warRoom ? incident.roles.commander : incident.owner;
  const summary = [
    `- **Date**: ${zonedDate(incident.createdAt, timeZone)}`,
    `- **Duration**: ${duration}`,
    `- **Severity**: ${incident.severity} (${mdText(incident.severityDescription)})`,
    `- **Service**: ${mdText(incident.service)}`,
    `- **Impact**: ${incident.impact ? mdText(incident.impact) : '_not recorded yet: who was affected, and how_'}`,
    `- **Root Cause**: ${incident.rootCause ? mdText(firstLine(incident.rootCause)) : '_not identified yet_'}`,
    ...(lead ? [`- **${incident.warRoom ? 'Incident Commander' : 'Owner'}**: ${mdText(lead.name)}`] : []),
    ...(incident.summary ? ['', mdText(incident.summary)] : []),
  ];
  const multiDay =
    timeline.length > 0 &&
    zonedDate(timeline[0]!.at, timeZone) !== zonedDate(timeline[timeline.length - 1]!.at, timeZone);
  const shown = timeline.filter((e) => e.kind !== 'status-update-due' && e.kind !== 'postmortem');
  const timelineLines = [
    `_Times in ${timeZone}._`,
    '',
    ...shown.map(
      (e) =>
        `- ${zoned(e.at, timeZone, multiDay)} - ${mdText(e.message)}${e.actor ? ` (${mdText(e.actor.name)})` : ''}`,
    ),
  ];
  const links: string[] = [];
  const seen = new Set<string>();
  for (const e of timeline) {
    for (const [key, title] of [
      ['generatorUrl', 'Alert source'],
      ['runbookUrl', 'Alert runbook'],
    ] as const) {
      const url = e.data[key];
      if (typeof url === 'string' && /^https?:\/\//i.test(url) && !seen.has(url)) {
        seen.add(url);
        const name = typeof e.data.alertname === 'string' ? `: ${e.data.alertname}` : '';
        links.push(`- [${title}${mdText(name)}](${url.replace(/[()\s]/g, encodeURIComponent)})`);
      }
    }
  }
  for (const run of runs) {
    const where = input.publicUrl
      ? `[run ${run.runId}](${input.publicUrl.replace(/\/+$/, '')}/api/runs/${encodeURIComponent(run.runId)})`
      : `run ${run.runId} (\`gameops runs show ${run.runId}\`)`;
    links.push(`- Runbook ${mdText(run.runbook)}: ${where}, started by ${mdText(run.startedBy)}`);
  }
  links.push(`- Timeline export: \`gameops incident timeline ${incident.id} --format csv\``);
  return {
    Summary: summary.join('\n'),
    Timeline: timelineLines.join('\n'),
    'Root Cause Analysis': incident.rootCause
      ? noControl(incident.rootCause)
      : '_To be written: what failed, why, and why it was not caught sooner._',
    'Lessons Learned': '1. _To be written: what went well, what went badly, where we got lucky._',
    'Action Items': actionItemsSection(items, directory),
    'Supporting Data': links.join('\n'),
  };
}

/** Open items first (they stay listed until done), then done ones. */
function actionItemsSection(items: ActionItemRecord[], directory: Directory): string {
  if (items.length === 0) return '_None yet: add them with `gameops incident postmortem <id> --add-item`._';
  const ordered = [...items.filter((i) => i.status === 'open'), ...items.filter((i) => i.status === 'done')];
  return ordered
    .map((i) => {
      const meta = [
        `Owner: ${i.owner ? mdText(directory.ownerName(i.owner)) : 'unassigned'}`,
        `Due: ${i.dueDate ?? 'none'}`,
        `Status: ${i.status}`,
      ];
      return `- [${i.status === 'done' ? 'x' : ' '}] ${mdText(i.title)} (${meta.join(', ')}) <!-- item:${i.id} -->`;
    })
    .join('\n');
}

function firstLine(text: string): string {
  return text.split(/\r?\n/)[0] ?? '';
}

/** The Markdown of sections, in the order given. */
export function renderPostmortem(incidentId: string, sections: Record<string, string>): string {
  const body = Object.entries(sections).map(([title, text]) => `## ${title}\n${text.trim()}\n`);
  return `# Incident Post-Mortem: ${incidentId}\n\n${body.join('\n')}`;
}

/**
 * Splits an edited post-mortem into its sections (`## ` headings).
 * @throws InputError when it does not start with the `# Incident Post-Mortem` title or has no section.
 */
export function parsePostmortem(markdown: string): Record<string, string> {
  const text = markdown.replace(/\r\n/g, '\n');
  if (!/^# Incident Post-Mortem\b/.test(text.trimStart()))
    throw new InputError('markdown: a post-mortem starts with "# Incident Post-Mortem: INC-<n>"', {
      details: { field: 'markdown' },
    });
  const sections: Record<string, string> = {};
  let current: string | undefined;
  const lines: string[] = [];
  const flush = (): void => {
    if (current !== undefined) sections[current] = lines.join('\n').trim();
    lines.length = 0;
  };
  for (const line of text.split('\n')) {
    const heading = /^## +(.+?)\s*$/.exec(line);
    if (heading) {
      flush();
      current = heading[1]!;
      if (current in sections)
        throw new InputError(`markdown: the section "${current}" appears twice`, {
          details: { field: 'markdown' },
        });
      continue;
    }
    if (current !== undefined) lines.push(line);
  }
  flush();
  if (Object.keys(sections).length === 0)
    throw new InputError('markdown: no "## " sections', { details: { field: 'markdown' } });
  return sections;
}

/** Sections of `edit` that differ from `base` (or are new). */
export function editedSections(base: Record<string, string>, edit: Record<string, string>): string[] {
  return Object.keys(edit).filter((title) => (base[title] ?? '').trim() !== edit[title]!.trim());
}

/**
 * Regenerated sections: generated ones in template order, an edited section's text kept (unless it is
 * always regenerated), and sections a person added kept after the template's.
 */
export function mergeSections(
  generated: Record<string, string>,
  latest: Record<string, string> | undefined,
  edited: string[],
): Record<string, string> {
  const out: Record<string, string> = {};
  const keep = new Set(edited.filter((t) => !ALWAYS_REGENERATED.has(t)));
  for (const title of SECTIONS)
    out[title] = keep.has(title) && latest?.[title] !== undefined ? latest[title] : generated[title]!;
  if (latest)
    for (const [title, text] of Object.entries(latest))
      if (!(title in out) && keep.has(title)) out[title] = text;
  return out;
}

export interface ActionItemLine {
  /** The item's id from its `<!-- item:ID -->` marker (absent on a line a person added). */
  id?: string | undefined;
  done: boolean;
  title: string;
  /** A person or team (id or name); null: `Owner: unassigned`; absent: not stated. */
  owner?: string | null | undefined;
  /** YYYY-MM-DD; null: `Due: none`; absent: not stated. */
  due?: string | null | undefined;
}

/**
 * The `- [ ]` / `- [x]` lines of an edited Action Items section. A line with an `<!-- item:ID -->` marker
 * is that item (its title, `Owner:`, `Due:` and box are synced into it); a line without one matches an
 * item by title, else becomes a new item (its `Owner:` a person or team, its `Due:` a date).
 * @throws InputError naming the line when its `Due:` is not a date.
 */
export function actionItemLines(section: string | undefined): ActionItemLine[] {
  if (section === undefined) return [];
  const out: ActionItemLine[] = [];
  for (const line of section.split('\n')) {
    const m = /^\s*[-*] \[([ xX])\] (.+?)\s*$/.exec(line);
    if (!m) continue;
    let title = m[2]!;
    let id: string | undefined;
    const marker = /\s*<!--\s*item:([\w.:-]+)\s*-->\s*$/.exec(title);
    if (marker) {
      id = marker[1]!;
      title = title.slice(0, marker.index);
    }
    let owner: string | null | undefined;
    let due: string | null | undefined;
    const meta = /^(.*?)\s*\(([^()]*)\)$/.exec(title);
    if (meta && /\b(Owner|Due|Status):/i.test(meta[2]!)) {
      title = meta[1]!;
      for (const part of meta[2]!.split(',')) {
        const [k, ...v] = part.split(':');
        const key = k!.trim().toLowerCase();
        const value = unescapeMd(v.join(':').trim());
        if (key === 'owner') owner = value === '' || value === 'unassigned' ? null : value;
        if (key === 'due') {
          if (value === '' || value === 'none') due = null;
          else if (/^\d{4}-\d{2}-\d{2}$/.test(value) && !Number.isNaN(Date.parse(`${value}T00:00:00Z`)))
            due = value;
          else
            throw new InputError(
              `markdown: Action Items line "${line.trim().slice(0, 120)}": Due "${value}" is not a date (YYYY-MM-DD) or none`,
              { details: { field: 'markdown', section: 'Action Items' } },
            );
        }
      }
    }
    out.push({
      ...(id !== undefined ? { id } : {}),
      done: m[1] !== ' ',
      title: unescapeMd(title.trim()),
      owner,
      due,
    });
  }
  return out;
}

/**
 * Refuses an edit that changes the Timeline section: it is rebuilt from the incident's timeline on every
 * regeneration, so the change would be lost.
 * @throws InputError naming the section.
 */
export function refuseTimelineEdit(edited: string[]): void {
  if (edited.includes('Timeline'))
    throw new InputError(
      'markdown: the Timeline section is generated from the incident timeline and cannot be edited (the change would be lost on regeneration); add a note to the incident instead (gameops incident note <id> "...")',
      { details: { field: 'markdown', section: 'Timeline' } },
    );
}

function unescapeMd(text: string): string {
  return text.replace(/\\([\\`*_[\]<>|#])/g, '$1');
}
