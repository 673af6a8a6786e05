import { Command, Option } from 'commander';
import { InputError } from '../../core/index.ts';
import type { Override, PageChange, PageDetail, ScheduleOnCall, Shift, Stall } from '../../oncall/index.ts';
import type { PageTarget, PageView, Severity } from '../../ops/contracts.ts';
import { ExitCode } from '../exit.ts';
import type { OpsSession } from '../ops-session.ts';
import { getText, json, out, queryString, when, withClient } from '../output.ts';
import { printable, table } from '../render.ts';

/**
 * What `gameops oncall …` asks, the same over the API (a server holds the store, or GAMEOPS_URL) and
 * in-process (the on-call service on this process's store).
 */
interface OncallClient {
  now(at?: string, schedule?: string): Promise<ScheduleOnCall[]>;
  shifts(schedule: string, from: string, to: string, layer?: string): Promise<Shift[]>;
  ical(schedule: string, from?: string, to?: string): Promise<string>;
  overrides(schedule?: string): Promise<Override[]>;
  stalls(limit?: number): Promise<Stall[]>;
  addOverride(body: OverrideBody): Promise<Override>;
  removeOverride(id: string): Promise<Override>;
  page(body: PageBody): Promise<PageView>;
  pages(status?: string[], limit?: number): Promise<PageView[]>;
  show(id: string): Promise<PageDetail>;
  ack(id: string): Promise<PageChange>;
  resolve(id: string): Promise<PageChange>;
}

interface OverrideBody {
  schedule: string;
  layer?: string;
  person: string;
  from: string;
  to: string;
  reason?: string;
}

interface PageBody {
  targets?: PageTarget[];
  policy?: string;
  subject: string;
  body: string;
  severity: Severity;
  dedupKey: string;
  suppressible?: boolean;
}

function remoteClient(session: OpsSession): OncallClient {
  const api = session.remote!;
  const query = queryString;
  const page = (id: string, rest = ''): string => `/api/pages/${encodeURIComponent(id)}${rest}`;
  return {
    now: async (at, schedule) =>
      ((await api.send('GET', `/api/oncall${query({ at, schedule })}`)) as { schedules: ScheduleOnCall[] })
        .schedules,
    shifts: async (schedule, from, to, layer) =>
      (
        (await api.send(
          'GET',
          `/api/oncall/schedules/${encodeURIComponent(schedule)}/shifts${query({ from, to, layer })}`,
        )) as { shifts: Shift[] }
      ).shifts,
    ical: (schedule, from, to) =>
      getText(api, `/api/oncall/schedules/${encodeURIComponent(schedule)}.ics${query({ from, to })}`),
    stalls: async (limit) =>
      (
        (await api.send('GET', `/api/oncall/stalls${query({ limit: limit?.toString() })}`)) as {
          stalls: Stall[];
        }
      ).stalls,
    overrides: async (schedule) =>
      ((await api.send('GET', `/api/oncall/overrides${query({ schedule })}`)) as { overrides: Override[] })
        .overrides,
    addOverride: async (body) => (await api.send('POST', '/api/oncall/overrides', body)) as Override,
    removeOverride: async (id) =>
      (await api.send('DELETE', `/api/oncall/overrides/${encodeURIComponent(id)}`)) as Override,
    page: async (body) => (await api.send('POST', '/api/pages', body)) as PageView,
    pages: async (status, limit) =>
      (
        (await api.send(
          'GET',
          `/api/pages${query([...(status ?? []).map((s): [string, string] => ['status', s]), ['limit', limit?.toString()]])}`,
        )) as { pages: PageView[] }
      ).pages,
    show: async (id) => (await api.send('GET', page(id))) as PageDetail,
    ack: async (id) => (await api.send('POST', page(id, '/ack'), {})) as PageChange,
    resolve: async (id) => (await api.send('POST', page(id, '/resolve'), {})) as PageChange,
  };
}

async function localClient(session: OpsSession): Promise<OncallClient> {
  const s = (await session.ops()).oncall;
  const actor = session.actor;
  return {
    now: (at, schedule) =>
      s.whoIsOnCall({ ...(at ? { at: new Date(at) } : {}), ...(schedule ? { schedule } : {}) }),
    shifts: (schedule, from, to, layer) => s.shifts(schedule, new Date(from), new Date(to), layer),
    ical: (schedule, from, to) =>
      s.ical(schedule, from ? new Date(from) : undefined, to ? new Date(to) : undefined),
    overrides: (schedule) => s.overrides({ schedule }),
    stalls: (limit) => s.stalls(limit),
    addOverride: (b) => s.addOverride({ ...b, from: new Date(b.from), to: new Date(b.to) }, actor),
    removeOverride: (id) => s.removeOverride(id, actor),
    page: ({ suppressible, ...b }) => s.manualPage(b, actor, { suppressible }),
    pages: (status, limit) =>
      s.pages({
        ...(status ? { status: status as PageView['status'][] } : {}),
        ...(limit !== undefined ? { limit } : {}),
      }),
    show: (id) => s.pageDetail(id),
    ack: (id) => s.acknowledge(id, actor),
    resolve: (id) => s.resolve(id, actor),
  };
}

/** How long `gameops oncall page` (in-process) waits for the first level's deliveries to have an outcome. */
export const FIRST_LEVEL_WAIT_MS = 30_000;

/** The deliveries of the first level that fired (lowest round, then level). */
function firstLevel(detail: PageDetail): PageDetail['deliveries'] {
  const [head] = [...detail.deliveries].sort((a, b) => a.round - b.round || a.level - b.level);
  return head ? detail.deliveries.filter((d) => d.round === head.round && d.level === head.level) : [];
}

function deliveryLine(d: PageDetail['deliveries'][number]): string {
  const who = `${printable(d.person ?? d.channel)} via ${printable(d.channel)}`;
  if (d.status === 'delivered') return `delivered: ${who}`;
  if (d.status === 'pending' && d.attempts.length > 0)
    return `retrying: ${who} at ${d.nextAt ?? '?'} (${printable(d.lastError ?? 'failed')})`;
  if (d.status === 'pending' || d.status === 'sending') return `sending: ${who}`;
  return `${d.status}: ${who}${d.lastError ? ` (${printable(d.lastError)})` : ''}`;
}

/**
 * In-process: ticks until every delivery of the page's first level has been tried at least once (or the
 * page is no longer open), at most {@link FIRST_LEVEL_WAIT_MS}.
 */
async function deliverFirstLevel(session: OpsSession, pageId: string): Promise<PageDetail> {
  const { oncall } = await session.ops();
  const clock = session.resources.clock;
  const deadline = clock.now().getTime() + FIRST_LEVEL_WAIT_MS;
  for (;;) {
    await oncall.tick(clock.now());
    const detail = await oncall.pageDetail(pageId);
    const first = firstLevel(detail);
    const tried = first.length > 0 && first.every((d) => d.attempts.length > 0 || d.status !== 'pending');
    if (tried || detail.status !== 'triggered' || clock.now().getTime() >= deadline) return detail;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function withOncall<T>(
  command: Command,
  work: (client: OncallClient, session: OpsSession) => Promise<T>,
): Promise<T> {
  return withClient(command, { remote: remoteClient, local: localClient }, work);
}

/**
 * A time option: ISO-8601 with a zone (`2026-03-10T12:00:00Z`, `…+09:00`), a date (`2026-03-10`, midnight
 * UTC), `now`, or relative to now (`+2h`, `-30m`, `+7d`).
 */
export function parseTime(text: string, option: string, now: Date): string {
  const value = text.trim();
  if (value === 'now') return now.toISOString();
  const relative = /^([+-])(\d+)(m|h|d|w)$/.exec(value);
  if (relative) {
    const unit = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[
      relative[3] as 'm' | 'h' | 'd' | 'w'
    ];
    const ms = Number(relative[2]) * unit * (relative[1] === '-' ? -1 : 1);
    return new Date(now.getTime() + ms).toISOString();
  }
  const dateOnly = /^\d{4}-\d{2}-\d{2}$/.test(value);
  const zoned = /T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i.test(value);
  const parsed = new Date(dateOnly ? `${value}T00:00:00Z` : value);
  if ((!dateOnly && !zoned) || Number.isNaN(parsed.getTime()))
    throw new InputError(
      `${option}: "${printable(value)}" is not a time: give ISO-8601 with a zone (2026-03-10T12:00:00Z), a date (2026-03-10), now, or +2h / -30m / +7d`,
      { details: { field: option } },
    );
  return parsed.toISOString();
}

/**
 * A page target as typed: `alice` (a person), `team:ops` (every member), `lead:ops` (the team lead),
 * `schedule:game` or `schedule:game/backup` (whoever is on call there), `policy:default` (run a policy).
 */
export function parseTarget(text: string): { targets: PageTarget[] } | { policy: string } {
  const [kind, rest] = text.includes(':')
    ? [text.slice(0, text.indexOf(':')), text.slice(text.indexOf(':') + 1)]
    : ['person', text];
  if (rest === '') throw new InputError(`target: "${printable(text)}" names nothing after "${kind}:"`);
  switch (kind) {
    case 'person':
      return { targets: [{ person: rest }] };
    case 'team':
      return { targets: [{ team: rest }] };
    case 'lead':
      return { targets: [{ teamLead: rest }] };
    case 'schedule': {
      const [schedule, layer] = rest.split('/');
      return { targets: [{ schedule: schedule!, ...(layer ? { layer } : {}) }] };
    }
    case 'policy':
      return { policy: rest };
    default:
      throw new InputError(
        `target: "${printable(text)}": use a person id, team:<id>, lead:<team>, schedule:<name>[/<layer>] or policy:<name>`,
      );
  }
}

export function renderNow(schedules: ScheduleOnCall[]): string {
  if (schedules.length === 0) return 'No on-call schedules (oncall.schedules).\n';
  return schedules
    .map((s) => {
      const rows = s.layers.map((l) => [
        l.layer,
        l.person ? `${l.name ?? l.person} (${l.person})` : '- (rotation not started)',
        l.end ? when(l.end, s.timezone, 'short') : '-',
        l.override
          ? `override ${l.override.id}${l.override.replaces ? ` covering ${l.override.replaces}` : ''}${l.override.reason ? `: ${l.override.reason}` : ''}`
          : '',
      ]);
      return `${printable(s.schedule)} (${s.timezone}) at ${when(s.at, s.timezone, 'short')}\n${table(['LAYER', 'ON CALL', 'UNTIL', ''], rows)}\n`;
    })
    .join('\n');
}

function renderShifts(schedule: string, shifts: Shift[], zone: string): string {
  if (shifts.length === 0) return `No shifts of ${printable(schedule)} in that range.\n`;
  return `${table(
    ['LAYER', 'PERSON', 'FROM', 'TO', ''],
    shifts.map((s) => [
      s.layer,
      s.person,
      when(s.start, zone, 'short'),
      when(s.end, zone, 'short'),
      s.override
        ? `override ${s.override.id}${s.override.replaces ? ` for ${s.override.replaces}` : ''}`
        : '',
    ]),
  )}\n`;
}

function renderOverrides(list: Override[]): string {
  if (list.length === 0) return 'No current or upcoming overrides.\n';
  return `${table(
    ['ID', 'SCHEDULE', 'LAYER', 'PERSON', 'FROM', 'TO', 'REASON'],
    list.map((o) => [o.id, o.schedule, o.layer, o.person, o.from, o.to, o.reason ?? '']),
  )}\n`;
}

function renderPages(list: PageView[]): string {
  if (list.length === 0) return 'No pages.\n';
  return `${table(
    ['PAGE', 'SEV', 'STATUS', 'LEVEL', 'OPENED', 'INCIDENT', 'SUBJECT'],
    list.map((p) => [
      p.id,
      p.severity,
      p.status,
      `${p.level + 1}${p.round > 0 ? `/r${p.round + 1}` : ''}`,
      p.createdAt,
      p.incidentId ?? '-',
      p.subject,
    ]),
  )}\n`;
}

export function renderPage(p: PageDetail): string {
  const t = printable;
  const lines = [
    `${p.id}  ${p.severity}  ${p.status}  ${t(p.subject)}`,
    `  opened ${p.createdAt}${p.incidentId ? ` · incident ${t(p.incidentId)}` : ''}${p.policy ? ` · policy ${t(p.policy)}` : ''}${p.targets ? ` · targets ${t(JSON.stringify(p.targets))}` : ''}`,
    `  escalation: level ${p.level + 1}, round ${p.round + 1}${p.nextEscalationAt ? ` · next step ${p.nextEscalationAt}` : ''}`,
  ];
  if (p.acknowledgedAt) lines.push(`  acknowledged ${p.acknowledgedAt} by ${t(p.acknowledgedBy ?? '?')}`);
  if (p.resolvedAt) lines.push(`  resolved ${p.resolvedAt}${p.resolvedBy ? ` by ${t(p.resolvedBy)}` : ''}`);
  if (p.exhaustedAt)
    lines.push(`  exhausted ${p.exhaustedAt}: every level was paged without an acknowledgement`);
  if (p.suppressedBy) lines.push(`  suppressed by window ${t(p.suppressedBy)}: not sent`);
  if (p.body) lines.push('', ...p.body.split('\n').map((l) => `  ${t(l)}`));
  lines.push('', p.deliveries.length === 0 ? '  no deliveries yet' : '  deliveries:');
  for (const d of p.deliveries) {
    lines.push(
      `    level ${d.level + 1}${d.round > 0 ? ` round ${d.round + 1}` : ''}  ${t(d.person ?? '-')} via ${t(d.channel)}: ${d.status}` +
        `${d.nextAt ? ` (next attempt ${d.nextAt})` : ''}  [${t(d.deliveryId)}]`,
    );
    for (const a of d.attempts)
      lines.push(
        `      #${a.n} ${a.at} ${a.outcome}${a.destination ? ` ${t(a.destination)}` : ''}` +
          `${a.response ? ` ${t(a.response)}` : ''}${a.error ? ` ${t(a.error)}` : ''} (${a.durationMs} ms` +
          `${a.retryAfterMs !== undefined ? `, retry after ${a.retryAfterMs} ms` : ''})`,
      );
  }
  return `${lines.join('\n')}\n`;
}

const PAGE_STATUSES = ['triggered', 'acknowledged', 'resolved', 'exhausted', 'suppressed'];

export function oncallCommand(): Command {
  const oncall = new Command('oncall').description(
    'On-call (runbook §6.2): who is on call, schedules and iCal, overrides, pages, acknowledging. Uses the ' +
      'server API while gameops serve holds the store (or GAMEOPS_URL is set). Times: ISO-8601 with a zone ' +
      '(2026-03-10T12:00:00Z), a date (UTC midnight), now, or +2h / -30m / +7d.',
  );

  oncall
    .command('now')
    .description('Who is on call in every layer of every schedule, overrides applied (and saying so).')
    .option('--at <time>', 'at this time instead of now')
    .option('--schedule <name>', 'only this schedule')
    .option('--json', 'print as JSON (the API’s OncallNow list)')
    .action(async (o: { at?: string; schedule?: string; json?: boolean }, command: Command) =>
      withOncall(command, async (client, session) => {
        const now = session.resources.clock.now();
        const schedules = await client.now(
          o.at !== undefined ? parseTime(o.at, '--at', now) : undefined,
          o.schedule,
        );
        if (o.json) json(schedules);
        else out(renderNow(schedules));
      }),
    );

  oncall
    .command('schedule')
    .description('The shifts of a schedule (overrides applied), in its time zone; --ical prints iCalendar.')
    .argument('<name>', 'the schedule (oncall.schedules[].name)')
    .option('--from <time>', 'from (default: now; with --ical, a week ago)')
    .option('--to <time>', 'to (default: 28 days after --from; with --ical, 90 days ahead); at most 366 days')
    .option('--layer <name>', 'only this layer')
    .option('--ical', 'print iCalendar (text/calendar), e.g. to import into a calendar app')
    .option('--json', 'print as JSON (the API’s OncallShift list)')
    .action(
      async (
        name: string,
        o: { from?: string; to?: string; layer?: string; ical?: boolean; json?: boolean },
        command: Command,
      ) =>
        withOncall(command, async (client, session) => {
          const now = session.resources.clock.now();
          const from = o.from !== undefined ? parseTime(o.from, '--from', now) : undefined;
          const to = o.to !== undefined ? parseTime(o.to, '--to', now) : undefined;
          if (o.ical) {
            process.stdout.write(await client.ical(name, from, to));
            return;
          }
          const start = from ?? now.toISOString();
          const end = to ?? new Date(Date.parse(start) + 28 * 86_400_000).toISOString();
          const shifts = await client.shifts(name, start, end, o.layer);
          if (o.json) json(shifts);
          else {
            const zone =
              session.resources.config.oncall.schedules.find((s) => s.name === name)?.timezone ?? 'UTC';
            out(`${printable(name)} (${zone})\n${renderShifts(name, shifts, zone)}`);
          }
        }),
    );

  oncall
    .command('override')
    .description(
      'Cover a layer of a schedule with another person for a while (a swap, a sick day). Refused when it ' +
        'overlaps another override of the same layer (remove that one first: gameops oncall overrides remove <id>).',
    )
    .argument('<schedule>', 'the schedule')
    .requiredOption('--person <id>', 'who covers')
    .requiredOption('--from <time>', 'start')
    .requiredOption('--to <time>', 'end (after --from)')
    .option('--layer <name>', 'the layer (default: the first, primary)')
    .option('--reason <text>', 'why (shown with the shift)')
    .option('--json', 'print as JSON (the API’s OncallOverride)')
    .action(
      async (
        schedule: string,
        o: { person: string; from: string; to: string; layer?: string; reason?: string; json?: boolean },
        command: Command,
      ) =>
        withOncall(command, async (client, session) => {
          const now = session.resources.clock.now();
          const created = await client.addOverride({
            schedule,
            person: o.person,
            from: parseTime(o.from, '--from', now),
            to: parseTime(o.to, '--to', now),
            ...(o.layer !== undefined ? { layer: o.layer } : {}),
            ...(o.reason !== undefined ? { reason: o.reason } : {}),
          });
          if (o.json) json(created);
          else
            out(
              `override ${created.id}: ${printable(created.person)} covers ${printable(created.schedule)}/${printable(created.layer)} from ${created.from} to ${created.to}`,
            );
        }),
    );

  oncall
    .command('stalls')
    .description(
      'What the stall auditor found: escalation steps and deliveries over a minute late (the paging loop ' +
        'stalled or gameops was down), newest first.',
    )
    .option('--limit <n>', 'at most this many', '50')
    .option('--json', 'print as JSON')
    .action(async (o: { limit: string; json?: boolean }, command: Command) =>
      withOncall(command, async (client) => {
        const limit = Number(o.limit);
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
          throw new InputError(`--limit: "${o.limit}" is not a whole number from 1 to 1000`);
        const list = await client.stalls(limit);
        if (o.json) json(list);
        else if (list.length === 0) out('no stalls recorded');
        else
          out(
            table(
              ['DETECTED', 'DUE', 'LATE', 'WHAT'],
              list.map((s) => [
                s.detectedAt,
                s.dueAt,
                `${Math.round((Date.parse(s.detectedAt) - Date.parse(s.dueAt)) / 1000)}s`,
                printable(s.ref),
              ]),
            ),
          );
      }),
    );

  const overrides = oncall.command('overrides').description('Current and upcoming overrides; remove one.');
  overrides
    .command('list', { isDefault: true })
    .description('Overrides that have not ended, by start.')
    .option('--schedule <name>', 'only this schedule')
    .option('--json', 'print as JSON')
    .action(async (o: { schedule?: string; json?: boolean }, command: Command) =>
      withOncall(command, async (client) => {
        const list = await client.overrides(o.schedule);
        if (o.json) json(list);
        else out(renderOverrides(list));
      }),
    );
  overrides
    .command('remove')
    .description('Remove an override: the rotation applies again.')
    .argument('<id>', 'the override id (gameops oncall overrides)')
    .option('--json', 'print the removed override as JSON')
    .action(async (id: string, o: { json?: boolean }, command: Command) =>
      withOncall(command, async (client) => {
        const removed = await client.removeOverride(id);
        if (o.json) json(removed);
        else
          out(
            `removed override ${removed.id} (${printable(removed.person)} on ${printable(removed.schedule)}/${printable(removed.layer)})`,
          );
      }),
    );

  oncall
    .command('page')
    .description(
      'Page someone now: deliveries go out through their contact channels with retries; a policy escalates ' +
        'until acknowledged. Prints the page id (gameops oncall pages show <id> for deliveries).',
    )
    .argument('<target>', 'a person id, team:<id>, lead:<team>, schedule:<name>[/<layer>], or policy:<name>')
    .requiredOption('--subject <text>', 'one line: what is wrong')
    .option('--body <text>', 'more detail', '')
    .addOption(new Option('--severity <sev>', 'P1 … P4').choices(['P1', 'P2', 'P3', 'P4']).default('P3'))
    .option(
      '--dedup-key <key>',
      'paging twice with the same key returns the first page (incident:, gameops:, heartbeat: are reserved)',
    )
    .option('--suppressible', 'let suppression windows hold this page back (default: it goes out)')
    .option('--json', 'print as JSON (the API’s Page)')
    .action(
      async (
        target: string,
        o: {
          subject: string;
          body: string;
          severity: Severity;
          dedupKey?: string;
          suppressible?: boolean;
          json?: boolean;
        },
        command: Command,
      ) =>
        withOncall(command, async (client, session) => {
          const to = parseTarget(target);
          const page = await client.page({
            ...to,
            subject: o.subject,
            body: o.body,
            severity: o.severity,
            dedupKey: o.dedupKey ?? `manual:${globalThis.crypto.randomUUID()}`,
            ...(o.suppressible ? { suppressible: true } : {}),
          });
          if (session.remote || page.status !== 'triggered') {
            if (o.json) json(page);
            else
              out(
                page.status === 'suppressed'
                  ? `page ${page.id} suppressed by window ${printable(page.suppressedBy ?? '?')}: not sent`
                  : `paged: ${page.id} (${page.status}); deliveries: gameops oncall pages show ${page.id}`,
              );
            return;
          }
          // In-process nobody else sends it: deliver the first level now and say how it went.
          const detail = await deliverFirstLevel(session, page.id);
          const first = firstLevel(detail);
          if (o.json) json(detail);
          else {
            out(`paged: ${page.id} (${detail.status})`);
            for (const d of first) out(`  ${deliveryLine(d)}`);
            if (first.length === 0) out('  nobody could be reached at the first level');
            if (detail.status === 'triggered')
              out(
                'escalation to later levels and further retries need a running server (gameops serve); ' +
                  `deliveries: gameops oncall pages show ${page.id}`,
              );
          }
          if (!first.some((d) => d.status === 'delivered')) {
            if (!o.json) process.stderr.write('nothing could be delivered\n');
            process.exitCode = ExitCode.fail;
          }
        }),
    );

  oncall
    .command('ack')
    .description('Acknowledge a page: escalation stops.')
    .argument('<pageId>', 'the page (gameops oncall pages)')
    .option('--json', 'print as JSON (the API’s PageChange)')
    .action(async (id: string, o: { json?: boolean }, command: Command) =>
      withOncall(command, async (client) => {
        const change = await client.ack(id);
        if (o.json) json(change);
        else
          out(
            change.changed
              ? `acknowledged ${change.page.id}: escalation stopped`
              : `${change.page.id} is already ${change.page.status}${change.page.acknowledgedBy ? ` (by ${printable(change.page.acknowledgedBy)})` : ''}`,
          );
      }),
    );

  oncall
    .command('resolve')
    .description('Resolve a page: it ends (acknowledged or not).')
    .argument('<pageId>', 'the page')
    .option('--json', 'print as JSON (the API’s PageChange)')
    .action(async (id: string, o: { json?: boolean }, command: Command) =>
      withOncall(command, async (client) => {
        const change = await client.resolve(id);
        if (o.json) json(change);
        else
          out(
            change.changed
              ? `resolved ${change.page.id}`
              : `${change.page.id} is already ${change.page.status}`,
          );
      }),
    );

  const pages = oncall
    .command('pages')
    .description('Pages: list them, or show one with every delivery attempt.');
  pages
    .command('list', { isDefault: true })
    .description('Pages, newest first.')
    .option('--status <list>', `only these, comma-separated (${PAGE_STATUSES.join(', ')})`)
    .option('--limit <n>', 'at most this many (default 100)')
    .option('--json', 'print as JSON (the API’s Page list)')
    .action(async (o: { status?: string; limit?: string; json?: boolean }, command: Command) =>
      withOncall(command, async (client) => {
        const status = o.status
          ?.split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '');
        for (const s of status ?? [])
          if (!PAGE_STATUSES.includes(s))
            throw new InputError(`--status: "${printable(s)}" is not one of ${PAGE_STATUSES.join(', ')}`);
        const limit = o.limit === undefined ? undefined : Number(o.limit);
        if (limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > 1000))
          throw new InputError(`--limit: "${printable(o.limit ?? '')}" is not a whole number from 1 to 1000`);
        const list = await client.pages(status, limit);
        if (o.json) json(list);
        else out(renderPages(list));
      }),
    );
  pages
    .command('show')
    .description('One page: its escalation, every delivery (person, channel, delivery id) and attempt.')
    .argument('<pageId>', 'the page')
    .option('--json', 'print as JSON (the API’s PageDetail)')
    .action(async (id: string, o: { json?: boolean }, command: Command) =>
      withOncall(command, async (client) => {
        const detail = await client.show(id);
        if (o.json) json(detail);
        else out(renderPage(detail));
      }),
    );

  return oncall;
}
