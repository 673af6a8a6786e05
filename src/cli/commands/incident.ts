import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { InputError } from '../../core/index.ts';
import { incidentLabel, parseIncidentId, severityOf } from '../../incidents/index.ts';
import type {
  ActionItemRecord,
  IncidentDetail,
  IncidentRole,
  IncidentStatus,
  IncidentView,
  NoticeAudience,
  PostmortemView,
  StatusDraft,
  TimelineEntry,
  TimelineFormat,
} from '../../incidents/index.ts';
import type { PageTarget, PageView, Severity } from '../../ops/contracts.ts';
import type { RunView } from '../../runbooks/model.ts';
import type { OpsSession } from '../ops-session.ts';
import { getText, json, out, when, withClient } from '../output.ts';
import { printable, table } from '../render.ts';

/**
 * What `gameops incident …` asks, the same over the API (a server holds the store, or GAMEOPS_URL) and
 * in-process (the incident service on this process's store).
 */
interface IncidentClient {
  declare(body: DeclareBody): Promise<IncidentView>;
  list(query: {
    status?: string;
    severity?: string;
    open?: boolean;
    limit?: number;
  }): Promise<IncidentView[]>;
  show(id: string): Promise<IncidentDetail>;
  ack(id: string): Promise<IncidentView>;
  status(id: string, status: IncidentStatus, note?: string): Promise<IncidentView>;
  severity(id: string, severity: string, reason?: string): Promise<IncidentView>;
  role(id: string, role: IncidentRole | 'owner', person: string | null): Promise<IncidentView>;
  check(id: string, item: string, done: boolean): Promise<IncidentView>;
  update(id: string, text: string, notify: NoticeAudience[]): Promise<IncidentView>;
  draft(id: string): Promise<StatusDraft>;
  note(id: string, text: string): Promise<TimelineEntry>;
  callIn(id: string, targets: PageTarget[], message?: string): Promise<PageView>;
  notice(id: string, audience: NoticeAudience, text: string): Promise<void>;
  run(
    id: string,
    runbook: string,
    params: Record<string, unknown>,
    idempotencyKey?: string,
  ): Promise<RunView>;
  timeline(id: string): Promise<TimelineEntry[]>;
  exportText(id: string, format: Exclude<TimelineFormat, 'json'>): Promise<string>;
  postmortem(id: string, regenerate: boolean): Promise<PostmortemView>;
  editPostmortem(id: string, baseVersion: number, markdown: string): Promise<PostmortemView>;
  addItem(
    id: string,
    item: { title: string; owner?: { person: string } | { team: string }; dueDate?: string },
  ): Promise<ActionItemRecord>;
  setItem(id: string, item: string, status: 'open' | 'done'): Promise<ActionItemRecord>;
}

interface DeclareBody {
  title: string;
  severity: Severity;
  service?: string;
  summary?: string;
  impact?: string;
  policy?: string;
  page: boolean;
  commander?: string;
  owner?: string;
}

function remoteClient(session: OpsSession): IncidentClient {
  const api = session.remote!;
  const path = (id: string, rest = ''): string => `/api/incidents/${encodeURIComponent(id)}${rest}`;
  const post = <T>(p: string, body?: unknown): Promise<T> => api.send('POST', p, body ?? {}) as Promise<T>;
  return {
    declare: (body) => post('/api/incidents', body),
    async list(q) {
      const params = new URLSearchParams();
      if (q.status) params.set('status', q.status);
      if (q.severity) params.set('severity', q.severity);
      if (q.open) params.set('open', 'true');
      if (q.limit !== undefined) params.set('limit', String(q.limit));
      const query = params.toString();
      return (
        (await api.send('GET', `/api/incidents${query ? `?${query}` : ''}`)) as { incidents: IncidentView[] }
      ).incidents;
    },
    show: async (id) => (await api.send('GET', path(id))) as IncidentDetail,
    ack: (id) => post(path(id, '/ack')),
    status: (id, status, note) =>
      post(path(id, '/status'), { status, ...(note !== undefined ? { note } : {}) }),
    severity: (id, severity, reason) =>
      post(path(id, '/severity'), { severity, ...(reason !== undefined ? { reason } : {}) }),
    role: (id, role, person) => post(path(id, '/roles'), { role, person }),
    check: (id, item, done) => post(path(id, `/checklist/${encodeURIComponent(item)}`), { done }),
    update: (id, text, notify) => post(path(id, '/updates'), { text, notify }),
    draft: async (id) => (await api.send('GET', path(id, '/updates/draft'))) as StatusDraft,
    note: (id, text) => post(path(id, '/notes'), { text }),
    callIn: (id, targets, message) =>
      post(path(id, '/call-in'), { targets, ...(message !== undefined ? { message } : {}) }),
    notice: async (id, audience, text) => {
      await post(path(id, '/notices'), { audience, text });
    },
    run: (id, runbook, params, idempotencyKey) =>
      post(path(id, '/runs'), {
        runbook,
        params,
        trigger: 'cli',
        ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
      }),
    timeline: async (id) =>
      ((await api.send('GET', path(id, '/timeline'))) as { entries: TimelineEntry[] }).entries,
    exportText: (id, format) => getText(api, path(id, `/timeline?format=${format}`)),
    postmortem: (id, regenerate) =>
      regenerate
        ? post(path(id, '/postmortem/regenerate'))
        : (api.send('GET', path(id, '/postmortem')) as Promise<PostmortemView>),
    editPostmortem: (id, baseVersion, markdown) =>
      api.send('PUT', path(id, '/postmortem'), { baseVersion, markdown }) as Promise<PostmortemView>,
    addItem: (id, item) => post(path(id, '/action-items'), item),
    setItem: (id, item, status) =>
      api.send('PATCH', path(id, `/action-items/${encodeURIComponent(item)}`), {
        status,
      }) as Promise<ActionItemRecord>,
  };
}

async function localClient(session: OpsSession): Promise<IncidentClient> {
  const s = (await session.ops()).incidents;
  const actor = session.actor;
  return {
    declare: (body) => s.declare(body, actor),
    list: (q) =>
      s.list({
        ...(q.status ? { status: listOf(q.status, '--status') as IncidentStatus[] } : {}),
        ...(q.severity ? { severity: listOf(q.severity, '--severity') } : {}),
        ...(q.open ? { open: true } : {}),
        ...(q.limit !== undefined ? { limit: q.limit } : {}),
      }),
    show: (id) => s.get(id),
    ack: (id) => s.acknowledge(id, actor),
    status: (id, status, note) => s.transition(id, status, actor, note),
    severity: (id, severity, reason) => s.setSeverity(id, severity, actor, reason),
    role: (id, role, person) => s.assignRole(id, role, person, actor),
    check: (id, item, done) => s.checklist(id, item, done, actor),
    update: (id, text, notify) => s.statusUpdate(id, { text, notify }, actor),
    draft: (id) => s.draft(id, actor),
    note: (id, text) => s.note(id, text, actor),
    callIn: (id, targets, message) => s.callIn(id, { targets, message }, actor),
    notice: (id, audience, text) => s.notice(id, { audience, text }, actor),
    run: (id, runbook, params, idempotencyKey) =>
      s.runRunbook(id, runbook, params, actor, { trigger: 'cli', idempotencyKey }),
    timeline: (id) => s.timeline(id, actor),
    exportText: (id, format) => s.export(id, format, actor),
    postmortem: (id, regenerate) => s.postmortem(id, { regenerate }, actor),
    editPostmortem: (id, baseVersion, markdown) => s.edit(id, { baseVersion, markdown }, actor),
    addItem: (id, item) => s.actionItems.add(id, item, actor),
    setItem: (id, item, status) => s.actionItems.update(id, item, { status }, actor),
  };
}

function listOf(text: string, option: string): string[] {
  const out = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (out.length === 0) throw new InputError(`${option}: give at least one value`);
  return out;
}

/** Runs `work` with the incident client of this command's session. */
function withIncidents<T>(
  command: Command,
  work: (client: IncidentClient, session: OpsSession) => Promise<T>,
): Promise<T> {
  return withClient(command, { remote: remoteClient, local: localClient }, work);
}

const ROLE_ALIASES: Record<string, IncidentRole | 'owner'> = {
  commander: 'commander',
  ic: 'commander',
  'incident-commander': 'commander',
  'technical-lead': 'technicalLead',
  'tech-lead': 'technicalLead',
  technicallead: 'technicalLead',
  tl: 'technicalLead',
  communications: 'communications',
  comms: 'communications',
  scribe: 'scribe',
  owner: 'owner',
};

const ROLE_NAMES: Record<IncidentRole, string> = {
  commander: 'Incident Commander',
  technicalLead: 'Technical Lead',
  communications: 'Communications',
  scribe: 'Scribe',
};

/** The human form of one incident (`incident show`), user text made printable. */
export function renderIncident(i: IncidentDetail, zone: string): string {
  const t = printable;
  const lines = [
    `${i.id}  ${i.severity}  ${i.status}  ${t(i.title)}`,
    `  service ${t(i.service)} · ${i.source}${i.groupKey ? ` (group ${t(i.groupKey)})` : ''} · declared ${when(i.createdAt, zone)} (${zone}) by ${t(i.createdBy.name)}`,
  ];
  if (i.responseTarget.dueAt)
    lines.push(
      `  response target: acknowledge by ${when(i.responseTarget.dueAt, zone)}` +
        (i.acknowledgedAt
          ? ` · acknowledged ${when(i.acknowledgedAt, zone)} by ${t(i.acknowledgedBy ?? '?')} (${i.responseTarget.met ? 'met' : 'missed'})`
          : ' · not acknowledged'),
    );
  else if (i.acknowledgedAt)
    lines.push(`  acknowledged ${when(i.acknowledgedAt, zone)} by ${t(i.acknowledgedBy ?? '?')}`);
  if (i.summary) lines.push(`  summary: ${t(i.summary)}`);
  if (i.impact) lines.push(`  impact: ${t(i.impact)}`);
  if (i.rootCause) lines.push(`  root cause: ${t(i.rootCause)}`);
  if (i.warRoom) {
    lines.push(
      '  war room: ' +
        (Object.keys(ROLE_NAMES) as IncidentRole[])
          .map((r) => `${ROLE_NAMES[r]} ${i.roles[r] ? t(i.roles[r].name) : '-'}`)
          .join(' · '),
    );
  } else
    lines.push(`  owner: ${i.owner ? t(i.owner.name) : '- (gameops incident role <id> owner <person>)'}`);
  if (i.nextUpdateDueAt)
    lines.push(
      `  next status update due ${when(i.nextUpdateDueAt, zone)}${i.lastUpdateAt ? ` (last ${when(i.lastUpdateAt, zone)})` : ''}`,
    );
  lines.push(`  lifecycle: ${i.transitions.map((tr) => `${tr.to} ${when(tr.at, zone)}`).join(' → ')}`);
  if (i.checklist.length > 0) {
    lines.push('  checklist:');
    for (const item of i.checklist)
      lines.push(
        `    [${item.done ? 'x' : ' '}] ${item.id}  ${t(item.text)}${item.done ? ` (${t(item.done.by)}, ${when(item.done.at, zone)})` : ''}`,
      );
  }
  if (i.suggestedRunbooks.length > 0)
    lines.push(
      `  run this runbook: ${i.suggestedRunbooks.map((r) => `gameops incident run ${i.id} ${t(r)}`).join(' | ')}`,
    );
  for (const run of i.runs) lines.push(`  run ${t(run.runId)} (${t(run.runbook)}) by ${t(run.startedBy)}`);
  if (i.pages && i.pages.length > 0) {
    lines.push('  pages:');
    lines.push(
      table(
        ['    PAGE', 'STATUS', 'LEVEL', 'SUBJECT'],
        // Human output counts levels from 1 ("level 1" = the first), as `gameops oncall pages` does; JSON keeps 0-based.
        i.pages.map((p) => [`    ${p.id}`, p.status, String(p.level + 1), p.subject]),
      ),
    );
  }
  if (i.pagesUnavailable) lines.push(`  pages: unavailable (${t(i.pagesUnavailable)})`);
  return `${lines.join('\n')}\n`;
}

function renderList(list: IncidentView[], zone: string): string {
  if (list.length === 0) return 'No incidents.\n';
  return `${table(
    ['ID', 'SEV', 'STATUS', 'DECLARED', 'LEAD', 'TITLE'],
    list.map((i) => [
      i.id,
      i.severity,
      i.status,
      when(i.createdAt, zone),
      (i.warRoom ? i.roles.commander?.name : i.owner?.name) ?? '-',
      i.title,
    ]),
  )}\n`;
}

function renderTimeline(entries: TimelineEntry[], zone: string): string {
  return `${entries
    .map(
      (e) =>
        `${when(e.at, zone)}  ${e.kind.padEnd(20)} ${printable(e.message)}${e.actor ? ` (${printable(e.actor.name)})` : ''}`,
    )
    .join('\n')}\n`;
}

const POSTMORTEM_MARKER = /<!-- gameops:postmortem (INC-\d+) version (\d+) -->/;

/** The post-mortem as printed: its Markdown with a version marker `--edit-file` reads back. */
function printablePostmortem(pm: PostmortemView): string {
  const [title, ...rest] = pm.markdown.split('\n');
  return `${[title, '', `<!-- gameops:postmortem ${pm.incidentId} version ${pm.version} -->`, ...rest].join('\n')}`;
}

function parseParams(pairs: string[]): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new InputError(`--param: "${pair}" is not name=value`);
    const raw = pair.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // A plain string.
    }
    params[pair.slice(0, eq)] = value;
  }
  return params;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

function zoneOf(session: OpsSession): string {
  return session.resources.config.runbooks.timezone;
}

export function incidentCommand(): Command {
  const incident = new Command('incident').description(
    'Incidents (runbook §2, §8.1): declare, acknowledge, war room, status updates, timeline, post-mortem. ' +
      'Ids: INC-7, inc-7 or 7. Uses the server API while gameops serve holds the store (or GAMEOPS_URL is set).',
  );

  incident
    .command('declare')
    .description('Declare an incident; it pages the on-call through the severity’s escalation policy.')
    .argument('<title>', 'what is wrong, in one line')
    .addOption(
      new Option('-s, --severity <sev>', 'P1 (whole service down) … P4 (minor); any case (p2 = P2)')
        .argParser((value: string) => severityOf(value))
        .makeOptionMandatory(),
    )
    .option('--service <name>', 'the affected service (default: service.name)')
    .option('--summary <text>')
    .option('--impact <text>', 'who is affected, and how')
    .option('--policy <name>', 'escalation policy to page instead of the severity’s')
    .option('--commander <person>', 'Incident Commander (a person id)')
    .option('--owner <person>', 'owner (P3/P4; a person id)')
    .option('--no-page', 'do not page anyone')
    .option('--json', 'print as JSON (the API’s Incident)')
    .action(
      async (
        title: string,
        o: {
          severity: Severity;
          service?: string;
          summary?: string;
          impact?: string;
          policy?: string;
          commander?: string;
          owner?: string;
          page: boolean;
          json?: boolean;
        },
        command: Command,
      ) =>
        withIncidents(command, async (client, session) => {
          const view = await client.declare({
            title,
            severity: o.severity,
            page: o.page,
            ...(o.service !== undefined ? { service: o.service } : {}),
            ...(o.summary !== undefined ? { summary: o.summary } : {}),
            ...(o.impact !== undefined ? { impact: o.impact } : {}),
            ...(o.policy !== undefined ? { policy: o.policy } : {}),
            ...(o.commander !== undefined ? { commander: o.commander } : {}),
            ...(o.owner !== undefined ? { owner: o.owner } : {}),
          });
          if (o.json) json(view);
          else
            out(
              `declared ${view.id} (${view.severity}) ${printable(view.title)}\n${renderIncident(view, zoneOf(session))}`,
            );
        }),
    );

  incident
    .command('list')
    .description('Open incidents, newest first (--all: every incident).')
    .option('--all', 'resolved, post-mortem and closed ones too')
    .option('--status <list>', 'only these statuses, comma-separated')
    .option('--severity <list>', 'only these severities, comma-separated')
    .option('--limit <n>', 'at most this many', (v) => Number(v), 100)
    .option('--json', 'print as JSON')
    .action(
      async (
        o: { all?: boolean; status?: string; severity?: string; limit: number; json?: boolean },
        command: Command,
      ) =>
        withIncidents(command, async (client, session) => {
          if (!Number.isInteger(o.limit) || o.limit < 1 || o.limit > 1000)
            throw new InputError('--limit: a whole number from 1 to 1000');
          const list = await client.list({
            limit: o.limit,
            ...(o.status ? { status: o.status } : {}),
            ...(o.severity ? { severity: o.severity } : {}),
            ...(!o.all && !o.status ? { open: true } : {}),
          });
          if (o.json) json({ incidents: list });
          else out(renderList(list, zoneOf(session)));
        }),
    );

  incident
    .command('show')
    .description('One incident: lifecycle, war room, checklist, runs, pages.')
    .argument('<id>')
    .option('--json', 'print as JSON')
    .action(async (id: string, o: { json?: boolean }, command: Command) =>
      withIncidents(command, async (client, session) => {
        const view = await client.show(id);
        if (o.json) json(view);
        else out(renderIncident(view, zoneOf(session)));
      }),
    );

  const simple = (
    name: string,
    description: string,
    args: string[],
    run: (
      client: IncidentClient,
      a: string[],
      o: Record<string, string | boolean | string[] | undefined>,
    ) => Promise<IncidentView>,
    options: (c: Command) => Command = (c) => c,
  ): void => {
    const c = incident.command(name).description(description);
    for (const a of args) c.argument(a);
    options(c).option('--json', 'print the incident as JSON');
    c.action(async (...all: unknown[]) => {
      const command = all[all.length - 1] as Command;
      const o = all[all.length - 2] as Record<string, string | boolean | string[] | undefined>;
      const a = all.slice(0, args.length) as string[];
      await withIncidents(command, async (client, session) => {
        const view = await run(client, a, o);
        if (o.json) json(view);
        else out(renderIncident(view, zoneOf(session)));
      });
    });
  };

  simple(
    'ack',
    'Acknowledge: its pages stop escalating; declared moves to investigating.',
    ['<id>'],
    (c, [id]) => c.ack(id!),
  );
  simple(
    'resolve',
    'Resolve: pages end, status-update reminders stop, the post-mortem is generated.',
    ['<id>'],
    (c, [id], o) => c.status(id!, 'resolved', o.note as string | undefined),
    (c) => c.option('--note <text>', 'why, for the timeline'),
  );
  simple(
    'status',
    'Move the lifecycle: investigating, mitigated, resolved, postmortem, closed (resolved → investigating reopens).',
    ['<id>', '<status>'],
    (c, [id, status], o) => {
      const allowed = ['declared', 'investigating', 'mitigated', 'resolved', 'postmortem', 'closed'];
      if (!allowed.includes(status!))
        throw new InputError(`status: "${status}" is not one of ${allowed.join(', ')}`);
      return c.status(id!, status as IncidentStatus, o.note as string | undefined);
    },
    (c) => c.option('--note <text>', 'why, for the timeline'),
  );
  simple(
    'severity',
    'Change the severity (P1-P4); raising it pages the new severity’s people.',
    ['<id>', '<severity>'],
    (c, [id, sev], o) => c.severity(id!, sev!.toUpperCase(), o.reason as string | undefined),
    (c) => c.option('--reason <text>'),
  );
  simple(
    'role',
    'Assign or hand over a role: commander (ic), tech-lead, comms, scribe, or owner; "none" clears it.',
    ['<id>', '<role>', '<person>'],
    (c, [id, role, person]) => {
      const r = ROLE_ALIASES[role!.toLowerCase()];
      if (!r)
        throw new InputError(`role: "${role}" is not one of commander, tech-lead, comms, scribe, owner`);
      return c.role(id!, r, person === 'none' ? null : person!);
    },
  );
  simple(
    'check',
    'Tick a checklist item (its id, e.g. first15Minutes-2; see incident show); --undo unticks it.',
    ['<id>', '<item>'],
    (c, [id, item], o) => c.check(id!, item!, o.undo !== true),
    (c) => c.option('--undo', 'untick'),
  );

  incident
    .command('update')
    .description(
      'Post a status update (resets the reminder clock). Without --text, prints the draft built from the ' +
        'timeline since the last update.',
    )
    .argument('<id>')
    .option('--text <text>', 'the update')
    .option('--text-file <file>', 'the update, from a file (e.g. an edited draft)')
    .option('--notify <list>', 'also send it as a notice: customers, stakeholders (comma-separated)')
    .option('--json', 'print as JSON')
    .action(
      async (
        id: string,
        o: { text?: string; textFile?: string; notify?: string; json?: boolean },
        command: Command,
      ) =>
        withIncidents(command, async (client, session) => {
          const body = o.textFile !== undefined ? readFileSync(o.textFile, 'utf8') : o.text;
          if (body === undefined) {
            const draft = await client.draft(id);
            if (o.json) json(draft);
            else out(`${printable(draft.subject)}\n\n${draft.text.split('\n').map(printable).join('\n')}`);
            return;
          }
          const notify = (o.notify ? listOf(o.notify, '--notify') : []).map((n) => {
            if (n !== 'customers' && n !== 'stakeholders')
              throw new InputError(`--notify: "${n}" is not customers or stakeholders`);
            return n;
          });
          const view = await client.update(id, body, notify);
          if (o.json) json(view);
          else
            out(
              `status update posted on ${view.id}; next due ${when(view.nextUpdateDueAt, zoneOf(session))}`,
            );
        }),
    );

  incident
    .command('note')
    .description('Add a note to the timeline.')
    .argument('<id>')
    .argument('<text>')
    .option('--json', 'print the entry as JSON')
    .action(async (id: string, text: string, o: { json?: boolean }, command: Command) =>
      withIncidents(command, async (client) => {
        const entry = await client.note(id, text);
        if (o.json) json(entry);
        else out(`noted on ${incidentLabel(parseIncidentId(id))}`);
      }),
    );

  incident
    .command('call-in')
    .description('Call in more people: pages persons, teams or on-call schedules into the incident.')
    .argument('<id>')
    .option('--person <id>', 'a person (repeatable)', collect)
    .option('--team <id>', 'every member of a team (repeatable)', collect)
    .option('--schedule <name>', 'whoever is on call there (repeatable)', collect)
    .option('--message <text>')
    .option('--json', 'print the page as JSON')
    .action(
      async (
        id: string,
        o: { person?: string[]; team?: string[]; schedule?: string[]; message?: string; json?: boolean },
        command: Command,
      ) =>
        withIncidents(command, async (client) => {
          const targets: PageTarget[] = [
            ...(o.person ?? []).map((person) => ({ person })),
            ...(o.team ?? []).map((team) => ({ team })),
            ...(o.schedule ?? []).map((schedule) => ({ schedule })),
          ];
          if (targets.length === 0) throw new InputError('call-in: give --person, --team or --schedule');
          const page = await client.callIn(id, targets, o.message);
          if (o.json) json(page);
          else out(`paged (page ${page.id}, ${page.status})`);
        }),
    );

  incident
    .command('notice')
    .description('Send a notice to the stakeholder or customer channels (incidents.notices).')
    .argument('<id>')
    .addOption(new Option('--audience <who>').choices(['stakeholders', 'customers']).makeOptionMandatory())
    .requiredOption('--text <text>')
    .action(async (id: string, o: { audience: NoticeAudience; text: string }, command: Command) =>
      withIncidents(command, async (client) => {
        await client.notice(id, o.audience, o.text);
        out(`${o.audience} notice sent`);
      }),
    );

  incident
    .command('run')
    .description('Run a runbook for the incident; the run is linked into its timeline.')
    .argument('<id>')
    .argument('<runbook>')
    .option('-p, --param <name=value>', 'a parameter (repeatable; JSON values parsed)', collect)
    .option('--idempotency-key <key>', 'a second start with the same key returns the first run')
    .option('--json', 'print the run as JSON')
    .action(
      async (
        id: string,
        runbook: string,
        o: { param?: string[]; idempotencyKey?: string; json?: boolean },
        command: Command,
      ) =>
        withIncidents(command, async (client) => {
          const run = await client.run(id, runbook, parseParams(o.param ?? []), o.idempotencyKey);
          if (o.json) json(run);
          else
            out(
              `started run ${run.id} (${printable(run.runbook)}, ${run.status}); follow: gameops runs show ${run.id}`,
            );
        }),
    );

  incident
    .command('timeline')
    .description('The timeline: alerts, pages, runs and their steps and approvals, roles, updates, notes.')
    .argument('<id>')
    .addOption(
      new Option('--format <format>', 'text, json, markdown or csv')
        .choices(['text', 'json', 'markdown', 'csv'])
        .default('text'),
    )
    .option('--json', 'same as --format json')
    .action(async (id: string, o: { format: string; json?: boolean }, command: Command) =>
      withIncidents(command, async (client, session) => {
        const format = o.json ? 'json' : o.format;
        if (format === 'markdown' || format === 'csv') {
          process.stdout.write(await client.exportText(id, format));
          return;
        }
        const entries = await client.timeline(id);
        if (format === 'json') json({ incident: id.toUpperCase(), entries });
        else out(renderTimeline(entries, zoneOf(session)));
      }),
    );

  incident
    .command('postmortem')
    .description(
      'Print the post-mortem (Markdown, §8.1; generated from the timeline when there is none). --edit-file ' +
        'saves an edited copy (its version marker, or --base, says which version it started from); sections ' +
        'you edit are kept when it is regenerated, Timeline and Action Items are always rebuilt.',
    )
    .argument('<id>')
    .option('--regenerate', 'build a new version from the incident now')
    .option('--edit-file <file>', 'save this edited Markdown as the next version')
    .option('--base <version>', 'the version the edit started from (default: the marker in the file)')
    .option('--add-item <title>', 'add an action item')
    .option('--owner <id>', 'with --add-item: a person or team id ("team:<id>" for a team)')
    .option('--due <date>', 'with --add-item: due date YYYY-MM-DD')
    .option('--done <item>', 'mark an action item done (its id)')
    .option('--reopen <item>', 'mark an action item open again')
    .option('--json', 'print as JSON')
    .action(
      async (
        id: string,
        o: {
          regenerate?: boolean;
          editFile?: string;
          base?: string;
          addItem?: string;
          owner?: string;
          due?: string;
          done?: string;
          reopen?: string;
          json?: boolean;
        },
        command: Command,
      ) =>
        withIncidents(command, async (client) => {
          if (o.addItem !== undefined || o.done !== undefined || o.reopen !== undefined) {
            let item: ActionItemRecord;
            if (o.addItem !== undefined) {
              const owner =
                o.owner === undefined
                  ? undefined
                  : o.owner.startsWith('team:')
                    ? { team: o.owner.slice(5) }
                    : { person: o.owner };
              item = await client.addItem(id, {
                title: o.addItem,
                ...(owner ? { owner } : {}),
                ...(o.due !== undefined ? { dueDate: o.due } : {}),
              });
            } else
              item = await client.setItem(id, (o.done ?? o.reopen)!, o.done !== undefined ? 'done' : 'open');
            if (o.json) json(item);
            else out(`action item ${item.id}: ${printable(item.title)} (${item.status})`);
            return;
          }
          let pm: PostmortemView;
          if (o.editFile !== undefined) {
            const markdown = readFileSync(o.editFile, 'utf8');
            const marker = POSTMORTEM_MARKER.exec(markdown);
            const base = o.base !== undefined ? Number(o.base) : marker ? Number(marker[2]) : NaN;
            if (!Number.isInteger(base) || base < 0)
              throw new InputError(
                `--base: ${o.editFile} has no "<!-- gameops:postmortem … version N -->" marker; give the version the edit started from`,
              );
            pm = await client.editPostmortem(id, base, markdown.replace(POSTMORTEM_MARKER, ''));
          } else pm = await client.postmortem(id, o.regenerate === true);
          if (o.json) json(pm);
          else if (o.editFile !== undefined)
            out(
              `saved the post-mortem of ${pm.incidentId} as version ${pm.version} (edited: ${pm.edited.join(', ') || 'nothing'})`,
            );
          else out(printablePostmortem(pm).split('\n').map(printable).join('\n'));
        }),
    );

  return incident;
}
