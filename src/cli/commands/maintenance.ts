import { Command } from 'commander';
import { InputError, NotAllowedError } from '../../core/index.ts';
import { roleAtLeast } from '../../identity/policy.ts';
import type { PlannedWindow, WindowDetail } from '../../maintenance/service.ts';
import { bothZones, checkWindowId } from '../../maintenance/time.ts';
import { MAINTENANCE_TASKS, type MaintenanceTask, type MaintenanceWindow } from '../../maintenance/types.ts';
import type { Actor } from '../../runbooks/model.ts';
import { printable, table } from '../render.ts';
import { renderPlan } from '../run-render.ts';
import { writeJson } from './run.ts';

/*
 * `gameops maintenance`: maintenance windows (runbook §4.1). plan checks and records a window (or, with
 * --dry-run, shows the `maintenance` run's steps, the notices and the player-minutes estimate without
 * recording anything); list, show and cancel. In this process on the store, or through the server's API
 * while `gameops serve` runs or GAMEOPS_URL is set. The server's loop sends the notices and starts the run.
 */

interface PlanOptions {
  start: string;
  end: string;
  version?: string;
  tasks?: string;
  message?: string;
  name?: string;
  hold?: boolean;
  dryRun?: boolean;
  json?: boolean;
}

/** The API's body for a plan (also what the in-process service takes). */
export interface PlanBody {
  startsAt: string;
  endsAt: string;
  tasks?: MaintenanceTask[];
  version?: string;
  message?: string;
  name?: string;
  hold?: boolean;
  dryRun?: boolean;
}

/** `--tasks db,logs,update`, each known, none twice. @throws InputError naming the unknown one. */
export function parseTasks(text: string): MaintenanceTask[] {
  const tasks = text
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  if (tasks.length === 0)
    throw new InputError(`--tasks: give one or more of ${MAINTENANCE_TASKS.join(', ')}`);
  for (const t of tasks)
    if (!(MAINTENANCE_TASKS as readonly string[]).includes(t))
      throw new InputError(
        `--tasks: "${printable(t.slice(0, 40))}" is not one of ${MAINTENANCE_TASKS.join(', ')}`,
      );
  return [...new Set(tasks)] as MaintenanceTask[];
}

function windowIdArg(id: string): string {
  return checkWindowId(id);
}

/** Planning and cancelling need operator (the API's rule), in this process too. */
function mayChange(actor: Actor, what: string): void {
  if (!roleAtLeast(actor.role, 'operator'))
    throw new NotAllowedError(`${actor.name} (${actor.role}) may not ${what}: it needs operator or admin`);
}

/** A list of windows, and whether more exist than it holds. */
interface WindowList {
  windows: MaintenanceWindow[];
  truncated: boolean;
}

/** How many windows `gameops maintenance list` shows at most. */
const LIST_LIMIT = 1000;

interface Windows {
  plan(body: PlanBody): Promise<PlannedWindow>;
  /** Every window newest first (`all`), else from the last 7 days on oldest first; truncated: more exist. */
  list(all: boolean): Promise<WindowList>;
  show(id: string): Promise<WindowDetail>;
  cancel(id: string, reason: string): Promise<MaintenanceWindow>;
  /** The game's time zone (times are shown in it beside UTC). */
  timezone: string;
}

/** The windows in this process, or the server's. */
async function withWindows<T>(command: Command, work: (windows: Windows) => Promise<T>): Promise<T> {
  const { withOpsSession } = await import('../ops-session.ts');
  return withOpsSession(command, async (session) => {
    const remote = session.remote;
    const config = session.resources.config;
    const timezone = config.maintenance.timezone ?? config.runbooks.timezone;
    if (remote)
      return work({
        timezone,
        plan: async (body) => (await remote.send('POST', '/api/maintenance/windows', body)) as PlannedWindow,
        list: async (all) =>
          (await remote.send(
            'GET',
            `/api/maintenance/windows?limit=${LIST_LIMIT}${all ? '&all=true' : ''}`,
          )) as WindowList,
        show: async (id) =>
          (await remote.send('GET', `/api/maintenance/windows/${encodeURIComponent(id)}`)) as WindowDetail,
        cancel: async (id, reason) =>
          (
            (await remote.send('POST', `/api/maintenance/windows/${encodeURIComponent(id)}/cancel`, {
              reason,
            })) as { window: MaintenanceWindow }
          ).window,
      });
    const { openMaintenance } = await import('../../app/maintenance.ts');
    const service = await openMaintenance(session.resources);
    const { actor } = session;
    return work({
      timezone: service.timezone,
      plan: async ({ dryRun, ...input }) => {
        mayChange(actor, 'plan maintenance');
        const planned = await service.plan(input, actor, { dryRun: dryRun === true });
        // In this process with the embedded store, no server is running for it (it would hold the store).
        if (planned.stored && !config.database.url)
          process.stderr.write(
            'gameops: note: no gameops serve is running for this data directory: the notices are sent and the ' +
              'maintenance run is started while `gameops serve` runs\n',
          );
        return planned;
      },
      list: async (all) => {
        const { newestWindows, upcomingWindows } = await import('../../server/routes/maintenance.ts');
        return all ? newestWindows((o) => service.list(o), LIST_LIMIT) : upcomingWindows(service, LIST_LIMIT);
      },
      show: (id) => service.get(id),
      cancel: async (id, reason) => {
        mayChange(actor, 'cancel maintenance');
        return service.cancel(id, actor, reason);
      },
    });
  });
}

function span(w: Pick<MaintenanceWindow, 'startsAt' | 'endsAt'>, zone: string): string {
  const minutes = Math.round((Date.parse(w.endsAt) - Date.parse(w.startsAt)) / 60_000);
  return `${bothZones(w.startsAt, zone)} – ${bothZones(w.endsAt, zone)} (${minutes} min)`;
}

function windowLines(w: MaintenanceWindow, zone: string): string[] {
  return [
    `  ${span(w, zone)}`,
    `  tasks: ${w.tasks.join(', ')}${w.version ? ` (version ${printable(w.version)})` : ''}; on failure: ` +
      (w.hold ? 'hold (maintenance stays on for an operator)' : 'put the service back (compensation)'),
    ...(w.message ? [`  players' notice: ${printable(w.message)}`] : []),
  ];
}

/** `gameops maintenance plan` as text: the window, the estimate, the notices and (dry run) every step. */
export function renderPlanned(p: PlannedWindow, zone: string): string {
  const w = p.window;
  const lines = [
    p.stored
      ? `Maintenance window ${printable(w.id)} planned (${w.state})`
      : `Maintenance window (dry run: nothing was recorded)`,
    ...windowLines(w, zone),
    `  the maintenance run starts ${bothZones(p.runStartsAt, zone)} (preflight and approval; it waits for the start)`,
    '',
    `Player-minutes lost: ${p.estimate.summary}`,
    ...(p.estimate.currentPlayers !== undefined
      ? [`  players online now: ${p.estimate.currentPlayers}`]
      : []),
    ...(p.estimate.lastWeekPlayers !== undefined
      ? [`  same hours last week: ${p.estimate.lastWeekPlayers} (${p.estimate.lastWeekSource ?? ''})`]
      : []),
    ...p.estimate.notes.map((n) => `  note: ${printable(n)}`),
    '',
    p.notices.length === 0
      ? 'Notices: none before the start (too late for every configured notice)'
      : 'Notices (players in game, and maintenance.notices.channels):',
    ...p.notices.map((n) => `  ${n.key.padEnd(6)} ${bothZones(n.at, zone)}`),
    ...(p.replaces.length > 0
      ? [
          '',
          'Takes the place of (maintenance.recurring, skipped while this window stands):',
          ...p.replaces.map(
            (r) => `  ${printable(r.name)} ${bothZones(r.startsAt, zone)} – ${bothZones(r.endsAt, zone)}`,
          ),
        ]
      : []),
  ];
  if (!p.stored) lines.push('', renderPlan(p.plan));
  else
    lines.push(
      '',
      `gameops maintenance show ${w.id} follows it; gameops maintenance cancel ${w.id} --reason … cancels it`,
    );
  return lines.join('\n');
}

/** `gameops maintenance list` as text, saying when the list was cut. */
export function renderWindowList(list: WindowList, zone: string, all: boolean): string {
  const { windows, truncated } = list;
  if (windows.length === 0) return 'no maintenance windows (gameops maintenance plan creates one)';
  const cut = truncated
    ? [
        all
          ? `(only the newest ${windows.length} windows are shown; older ones exist)`
          : `(only the first ${windows.length} windows are shown; later ones exist)`,
      ]
    : [];
  return [
    table(
      ['ID', 'STATE', 'STARTS', 'ENDS', 'TASKS', 'RUN'],
      windows.map((w) => [
        w.id,
        w.state,
        bothZones(w.startsAt, zone),
        bothZones(w.endsAt, zone),
        w.tasks.join(',') + (w.version ? ` ${w.version}` : ''),
        w.runId ?? '-',
      ]),
    ),
    ...cut,
  ].join('\n');
}

/** `gameops maintenance show` as text. */
export function renderWindow(d: WindowDetail, zone: string): string {
  const w = d.window;
  const lines = [
    `${printable(w.id)}  ${w.state}  (${w.origin === 'recurring' ? `recurring ${printable(w.name)}` : printable(w.name)})`,
    ...windowLines(w, zone),
    `  planned by ${printable(w.createdBy)} at ${bothZones(w.createdAt, zone)}`,
    ...(w.runId ? [`  run: ${printable(w.runId)} (gameops runs show ${printable(w.runId)})`] : []),
    ...(w.reason ? [`  reason: ${printable(w.reason)}`] : []),
    d.notices.length === 0 ? '  notices: none sent yet' : '  notices:',
    ...d.notices.map((n) => `    ${n.key.padEnd(9)} ${n.status.padEnd(7)} ${bothZones(n.sentAt, zone)}`),
  ];
  return lines.join('\n');
}

export function maintenanceCommand(): Command {
  const command = new Command('maintenance')
    .summary('Maintenance windows: plan, list, show, cancel (runbook §4.1)')
    .description(
      'Planned maintenance windows. A window gets notices before it (players in game and the ' +
        'maintenance.notices.channels, by default 24 h, 60, 10 and 1 minute before), then the `maintenance` ' +
        'runbook starts maintenance.leadTime before the window (approval, silences, maintenance mode, drain, ' +
        'a verified backup, the tasks, health check, reopen). `gameops serve` sends the notices and starts the ' +
        'run; recurring windows (maintenance.recurring) are planned by it too. Scheduled runs of ' +
        'maintenance.holdOff (backups, db-maintenance) wait until a window ends. While `gameops serve` runs ' +
        '(or with GAMEOPS_URL) everything goes through its API.',
    )
    .addHelpText(
      'after',
      `
Times: ISO 8601 with an offset (2026-12-03T04:00:00+09:00, 2026-12-02T19:00:00Z), or a wall-clock time
read in the game's time zone (maintenance.timezone, else runbooks.timezone): "2026-12-03 04:00".
Window ids look like mw-20261202T1900Z-3f9a2c.

Examples:
  gameops maintenance plan --start "2026-12-03 04:00" --end "2026-12-03 06:00" --dry-run
  gameops maintenance plan --start "2026-12-03 04:00" --end "2026-12-03 06:00" --version 1.4.0 --tasks db,logs,update
  gameops maintenance list
  gameops maintenance show mw-20261202T1900Z-3f9a2c
  gameops maintenance cancel mw-20261202T1900Z-3f9a2c --reason "patch not ready"`,
    );

  command
    .command('plan')
    .description(
      'Check and record a window: the start not in the past (a minute ago counts as now), the end after it, ' +
        'at least 5 minutes and at most 24 hours, no overlap with a scheduled or running ' +
        "window (each counted from its run's start, maintenance.leadTime before it: a window right after another " +
        'needs leadTime between them), a version only with the update task ' +
        '(on the local platform, one of platform.versions; Kubernetes checks the image tag when it rolls). Prints the estimate of player-minutes lost and the notices; --dry-run also prints ' +
        'every step of the maintenance run (effect, approval, compensation) and records nothing.',
    )
    .requiredOption('--start <time>', 'when the game closes')
    .requiredOption('--end <time>', 'when it is back')
    .option('--version <version>', 'roll the game servers to this version (the update task)')
    .option(
      '--tasks <list>',
      `comma-separated: ${MAINTENANCE_TASKS.join(', ')} (default: db,logs; update with --version)`,
    )
    .option('--message <text>', "players' notice (default: one naming the times in the game's zone)")
    .option('--name <name>', 'a short name for the window (default: maintenance)')
    .option('--hold', 'on failure keep maintenance on for an operator instead of putting the service back')
    .option('--dry-run', 'show the plan, the notices and the estimate; record nothing')
    .option('--json', 'print the result as JSON')
    .action(async (o: PlanOptions, cmd: Command) => {
      const body: PlanBody = {
        startsAt: o.start,
        endsAt: o.end,
        ...(o.tasks !== undefined ? { tasks: parseTasks(o.tasks) } : {}),
        ...(o.version !== undefined ? { version: o.version } : {}),
        ...(o.message !== undefined ? { message: o.message } : {}),
        ...(o.name !== undefined ? { name: o.name } : {}),
        ...(o.hold ? { hold: true } : {}),
        ...(o.dryRun ? { dryRun: true } : {}),
      };
      await withWindows(cmd, async (windows) => {
        const planned = await windows.plan(body);
        if (o.json) writeJson(planned);
        else process.stdout.write(`${renderPlanned(planned, windows.timezone)}\n`);
      });
    });

  command
    .command('list')
    .description(
      'Windows ending in the last 7 days or later, by start: id, state, times (UTC and the game zone), tasks, run.',
    )
    .option('--all', 'every window, however old, newest first (at most 1000; the output says when cut)')
    .option('--json', 'print the windows as JSON')
    .action(async (o: { all?: boolean; json?: boolean }, cmd: Command) => {
      await withWindows(cmd, async (windows) => {
        const list = await windows.list(o.all === true);
        if (o.json) writeJson(list);
        else process.stdout.write(`${renderWindowList(list, windows.timezone, o.all === true)}\n`);
      });
    });

  command
    .command('show')
    .description('One window: times, tasks, state, its run, and the notices sent (with their outcome).')
    .argument('<id>', 'a window id (gameops maintenance list)', windowIdArg)
    .option('--json', 'print the window as JSON')
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      await withWindows(cmd, async (windows) => {
        const detail = await windows.show(id);
        if (o.json) writeJson(detail);
        else process.stdout.write(`${renderWindow(detail, windows.timezone)}\n`);
      });
    });

  command
    .command('cancel')
    .description(
      'Cancel a window. A scheduled one is cancelled at once; a running one only while its run has changed ' +
        "nothing yet (the engine's cancel does not compensate, so a run that has closed the game is let finish " +
        'or fail instead). Players and channels are told when a notice went out before.',
    )
    .argument('<id>', 'a window id (gameops maintenance list)', windowIdArg)
    .requiredOption('--reason <text>', 'why (kept with the window and told to the channels)')
    .option('--json', 'print the window as JSON')
    .action(async (id: string, o: { reason: string; json?: boolean }, cmd: Command) => {
      const reason = o.reason.trim();
      if (reason === '' || reason.length > 500) throw new InputError('--reason: give 1 to 500 characters');
      await withWindows(cmd, async (windows) => {
        const window = await windows.cancel(id, reason);
        if (o.json) writeJson({ window });
        else
          process.stdout.write(
            `${printable(window.id)} ${window.state}${window.reason ? `: ${printable(window.reason)}` : ''}\n`,
          );
      });
    });

  return command;
}
