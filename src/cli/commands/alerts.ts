import { Command } from 'commander';
import type {
  AlertService,
  HeartbeatView,
  SilenceView,
  StoredAlert,
  WindowView,
} from '../../alerts/index.ts';
import { InputError } from '../../core/index.ts';
import { withOpsSession, type OpsSession } from '../ops-session.ts';
import { print, queryString as query } from '../output.ts';
import { printable, table } from '../render.ts';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Runs `work` with this command's session: the server's API (`remote`) or this process's alert service. */
function withAlerts<T>(
  command: Command,
  work: (target: {
    remote: OpsSession['remote'];
    local: () => Promise<AlertService>;
    session: OpsSession;
  }) => Promise<T>,
): Promise<T> {
  return withOpsSession(command, (session) =>
    work({ remote: session.remote, local: async () => (await session.ops()).alerts, session }),
  );
}

/** `name=value` pairs of --label into a record. */
function labelsOf(pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new InputError(`--label: "${printable(pair)}" must be name=value`);
    out[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return out;
}

/** The span options shared by silences and suppression windows. */
function spanOf(options: { for?: string; until?: string; start?: string }): {
  duration?: string;
  endsAt?: string;
  startsAt?: string;
} {
  return {
    ...(options.for !== undefined ? { duration: options.for } : {}),
    ...(options.until !== undefined ? { endsAt: options.until } : {}),
    ...(options.start !== undefined ? { startsAt: options.start } : {}),
  };
}

export function alertsCommand(): Command {
  const alerts = new Command('alerts').description(
    'Alert intake: stored alerts (from Alertmanager and POST /api/alerts), Alertmanager silences, paging ' +
      'suppression windows and heartbeats. Talks to `gameops serve` when it runs (or GAMEOPS_URL), else ' +
      'opens the store itself.',
  );

  alerts
    .command('list')
    .description('Stored alerts, most recently seen first.')
    .option('--status <status>', 'firing or resolved')
    .option('--incident <id>', 'only alerts linked to this incident')
    .option('--label <name=value>', 'only alerts with this label value (repeat: all must match)', collect, [])
    .option('--limit <n>', 'at most this many (1-1000)', '50')
    .option('--json', 'print as JSON (the same shape as GET /api/alerts)')
    .action(
      async (
        options: { status?: string; incident?: string; label: string[]; limit: string; json?: boolean },
        command: Command,
      ) => {
        const list = await withAlerts(command, async ({ remote, local }) => {
          if (remote) {
            const path = `/api/alerts${query([
              ['status', options.status],
              ['incident', options.incident],
              ['limit', options.limit],
              ...options.label.map((l): [string, string] => ['label', l]),
            ])}`;
            return ((await remote.send('GET', path)) as { alerts: StoredAlert[] }).alerts;
          }
          const limit = Number(options.limit);
          if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
            throw new InputError(
              `--limit: "${printable(options.limit)}" must be a whole number from 1 to 1000`,
            );
          return (await local()).list({
            status: options.status as StoredAlert['status'] | undefined,
            incidentId: options.incident,
            labels: labelsOf(options.label),
            limit,
          });
        });
        print(options.json, { alerts: list }, () => renderAlerts(list));
      },
    );

  alerts
    .command('show')
    .description('One stored alert with its labels and annotations.')
    .argument('<id>', 'the alert id (gameops alerts list)')
    .option('--json', 'print as JSON')
    .action(async (id: string, options: { json?: boolean }, command: Command) => {
      const alert = await withAlerts(command, async ({ remote, local }) =>
        remote
          ? ((await remote.send('GET', `/api/alerts/${encodeURIComponent(id)}`)) as StoredAlert)
          : (await local()).get(id),
      );
      print(options.json, alert, () => renderAlert(alert));
    });

  const silence = alerts
    .command('silence')
    .description('Alertmanager silences (API v2): create with matchers and an expiry, list, expire.');
  silence
    .command('create')
    .description(
      'Creates a silence in Alertmanager, created by you. Example: ' +
        `gameops alerts silence create --match 'alertname="GameServerDown"' --match 'region=~"eu-.*"' --for 2h --comment "patching eu"`,
    )
    .requiredOption(
      '--match <matcher>',
      'name="v", name!="v", name=~"re" or name!~"re" (repeat)',
      collect,
      [],
    )
    .option('--for <duration>', 'how long, e.g. 30m, 2h, 1d')
    .option('--until <time>', 'or: when it ends (ISO-8601)')
    .option('--start <time>', 'when it starts (ISO-8601; default now)')
    .requiredOption('--comment <text>', 'why')
    .option('--json', 'print as JSON')
    .action(
      async (
        options: {
          match: string[];
          for?: string;
          until?: string;
          start?: string;
          comment: string;
          json?: boolean;
        },
        command: Command,
      ) => {
        const input = { matchers: options.match, comment: options.comment, ...spanOf(options) };
        const created = await withAlerts(command, async ({ remote, local, session }) =>
          remote
            ? ((await remote.send('POST', '/api/alerts/silences', input)) as SilenceView)
            : (await local()).silences.create(input, session.actor),
        );
        print(options.json, created, () => `Silence ${created.id} created.\n${renderSilences([created])}`);
      },
    );
  silence
    .command('list')
    .description('Silences Alertmanager has.')
    .option('--state <state>', 'active, pending or expired')
    .option('--match <matcher>', 'only silences with this matcher (repeat)', collect, [])
    .option('--json', 'print as JSON')
    .action(async (options: { state?: string; match: string[]; json?: boolean }, command: Command) => {
      const list = await withAlerts(command, async ({ remote, local }) =>
        remote
          ? (
              (await remote.send(
                'GET',
                `/api/alerts/silences${query([['state', options.state], ...options.match.map((m): [string, string] => ['match', m])])}`,
              )) as { silences: SilenceView[] }
            ).silences
          : (await local()).silences.list({ state: options.state, matchers: options.match }),
      );
      print(options.json, { silences: list }, () => renderSilences(list));
    });
  silence
    .command('expire')
    .description('Expires a silence now.')
    .argument('<id>', 'the silence id')
    .option('--json', 'print as JSON')
    .action(async (id: string, options: { json?: boolean }, command: Command) => {
      await withAlerts(command, async ({ remote, local, session }) => {
        if (remote) await remote.send('DELETE', `/api/alerts/silences/${encodeURIComponent(id)}`);
        else await (await local()).silences.expire(id, session.actor);
      });
      print(options.json, { id, expired: true }, () => `Silence ${printable(id)} expired.\n`);
    });

  const suppress = alerts
    .command('suppress')
    .description(
      'Paging suppression windows: while one covers a page (its matchers match the page labels), the page ' +
        'is recorded as suppressed and not sent. Recurring windows come from the config (alerts.suppressions).',
    );
  suppress
    .command('create')
    .description(
      `Creates an ad-hoc window (audited). Example: gameops alerts suppress create --name "db upgrade" --match 'team="db"' --for 90m --comment "planned"`,
    )
    .option('--name <name>', 'what to call it (default: adhoc-<start>)')
    .option('--match <matcher>', 'only pages whose labels match (repeat; none: every page)', collect, [])
    .option('--for <duration>', 'how long, e.g. 90m')
    .option('--until <time>', 'or: when it ends (ISO-8601)')
    .option('--start <time>', 'when it starts (ISO-8601; default now)')
    .requiredOption('--comment <text>', 'why')
    .option('--json', 'print as JSON')
    .action(
      async (
        options: {
          name?: string;
          match: string[];
          for?: string;
          until?: string;
          start?: string;
          comment: string;
          json?: boolean;
        },
        command: Command,
      ) => {
        const input = {
          ...(options.name !== undefined ? { name: options.name } : {}),
          matchers: options.match,
          comment: options.comment,
          ...spanOf(options),
        };
        const created = await withAlerts(command, async ({ remote, local, session }) =>
          remote
            ? ((await remote.send('POST', '/api/alerts/suppressions', input)) as WindowView)
            : (await local()).windows.create(input, session.actor),
        );
        print(
          options.json,
          created,
          () => `Window ${created.id ?? created.name} created.\n${renderWindows([created])}`,
        );
      },
    );
  suppress
    .command('list')
    .description('Config windows (current or next occurrence) and ad-hoc windows not over yet.')
    .option('--all', 'ad-hoc windows that are over too')
    .option('--json', 'print as JSON')
    .action(async (options: { all?: boolean; json?: boolean }, command: Command) => {
      const list = await withAlerts(command, async ({ remote, local }) =>
        remote
          ? (
              (await remote.send('GET', `/api/alerts/suppressions${options.all ? '?all=true' : ''}`)) as {
                windows: WindowView[];
              }
            ).windows
          : (await local()).windows.list({ all: options.all === true }),
      );
      print(options.json, { windows: list }, () => renderWindows(list));
    });
  suppress
    .command('end')
    .description('Ends an ad-hoc window now (audited).')
    .argument('<id>', 'the window id (gameops alerts suppress list)')
    .option('--json', 'print as JSON')
    .action(async (id: string, options: { json?: boolean }, command: Command) => {
      const ended = await withAlerts(command, async ({ remote, local, session }) =>
        remote
          ? ((await remote.send(
              'DELETE',
              `/api/alerts/suppressions/${encodeURIComponent(id)}`,
            )) as WindowView)
          : (await local()).windows.end(id, session.actor),
      );
      print(options.json, ended, () => `Window ${printable(id)} ended.\n`);
    });

  alerts
    .command('heartbeats')
    .description(
      'Configured heartbeats (alerts.heartbeats) and their state. A job pings POST /api/heartbeats/<name>; ' +
        'without a ping for every + grace, a page fires; the next ping resolves it. A heartbeat never pinged ' +
        'counts from when gameops first saw it in the config; after gameops restarts, none is overdue before ' +
        'every + grace from the restart (pings sent while it was down were lost).',
    )
    .option('--json', 'print as JSON (the same shape as GET /api/heartbeats)')
    .action(async (options: { json?: boolean }, command: Command) => {
      const list = await withAlerts(command, async ({ remote, local }) =>
        remote
          ? ((await remote.send('GET', '/api/heartbeats')) as { heartbeats: HeartbeatView[] }).heartbeats
          : (await local()).heartbeats(),
      );
      print(options.json, { heartbeats: list }, () => renderHeartbeats(list));
    });

  alerts
    .command('ping')
    .description('Pings a heartbeat (what a job does with POST /api/heartbeats/<name>).')
    .argument('<name>', 'the heartbeat name')
    .option('--json', 'print as JSON')
    .action(async (name: string, options: { json?: boolean }, command: Command) => {
      const beat = await withAlerts(command, async ({ remote, local }) =>
        remote
          ? ((await remote.send('POST', `/api/heartbeats/${encodeURIComponent(name)}`)) as HeartbeatView)
          : (await local()).ping(name),
      );
      print(options.json, beat, () => renderHeartbeats([beat]));
    });

  for (const sub of [silence, suppress]) for (const leaf of sub.commands) leaf.exitOverride();
  return alerts;
}

export function renderAlerts(list: StoredAlert[]): string {
  if (list.length === 0) return 'No alerts.\n';
  return `${table(
    ['ID', 'STATUS', 'NAME', 'STARTED', 'INCIDENT', 'SUMMARY'],
    list.map((a) => [
      a.id,
      a.status + (a.pending ? '*' : ''),
      a.name,
      a.startsAt.slice(0, 19).replace('T', ' '),
      a.incidentId ?? '-',
      a.annotations['summary'] ?? '',
    ]),
  )}\n${list.some((a) => a.pending) ? '* not yet routed to an incident\n' : ''}`;
}

export function renderAlert(a: StoredAlert): string {
  const lines = [
    `${a.id}  ${a.status}  ${a.name}`,
    `  fingerprint ${a.fingerprint}  (${a.source}, group ${a.groupKey})`,
    `  started     ${a.startsAt}${a.endsAt ? `, ended ${a.endsAt}` : ''}`,
    `  seen        ${a.firstSeenAt} … ${a.lastSeenAt}`,
    ...(a.resolvedBy ? [`  resolved    ${a.resolvedAt ?? ''} (${a.resolvedBy})`] : []),
    `  incident    ${a.incidentId ?? (a.pending ? 'not yet routed' : 'none (recorded only)')}`,
    '  labels',
    ...Object.entries(a.labels).map(([k, v]) => `    ${k}=${JSON.stringify(v)}`),
    ...(Object.keys(a.annotations).length > 0 ? ['  annotations'] : []),
    ...Object.entries(a.annotations).map(([k, v]) => `    ${k}: ${v}`),
  ];
  return `${lines.map(printable).join('\n')}\n`;
}

export function renderSilences(list: SilenceView[]): string {
  if (list.length === 0) return 'No silences.\n';
  return `${table(
    ['ID', 'STATE', 'ENDS', 'BY', 'MATCHERS', 'COMMENT'],
    list.map((s) => [
      s.id,
      s.state,
      s.endsAt.slice(0, 19).replace('T', ' '),
      s.createdBy,
      s.matchers.join(' '),
      s.comment,
    ]),
  )}\n`;
}

export function renderWindows(list: WindowView[]): string {
  if (list.length === 0) return 'No suppression windows.\n';
  return `${table(
    ['ID', 'NAME', 'ORIGIN', 'ACTIVE', 'STARTS', 'ENDS', 'MATCHERS'],
    list.map((w) => [
      w.id ?? '-',
      w.name,
      w.origin === 'config' && w.cron ? `config (${w.cron} ${w.timezone ?? ''})` : w.origin,
      w.active ? 'yes' : 'no',
      w.startsAt?.slice(0, 16).replace('T', ' ') ?? '-',
      w.endsAt?.slice(0, 16).replace('T', ' ') ?? '-',
      w.matchers.join(' ') || '(all pages)',
    ]),
  )}\n`;
}

export function renderHeartbeats(list: HeartbeatView[]): string {
  if (list.length === 0) return 'No heartbeats configured (alerts.heartbeats).\n';
  return `${table(
    ['NAME', 'STATUS', 'LAST PING', 'DUE', 'INCIDENT'],
    list.map((h) => [
      h.name,
      h.status,
      h.lastPingAt?.slice(0, 19).replace('T', ' ') ?? 'never',
      h.dueAt.slice(0, 19).replace('T', ' '),
      h.incidentId ?? '-',
    ]),
  )}\n`;
}
