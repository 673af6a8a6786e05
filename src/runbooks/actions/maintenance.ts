/**
 * Planned maintenance actions (runbook §4.1, issue #7), the parts of the `maintenance` runbook that are
 * not a fleet, backup or database action of their own: the preflight (what the window needs, read before
 * anything changes), the approval's summary, the wait for the window's start, the alert silence and
 * paging suppression for the window, the version update that puts the old version back itself when the
 * new one fails, and the compensations that honour `hold` (maintenance stays on for a person to fix).
 *
 * Silences and suppression windows are found again by their comment (`gameops maintenance … (run <id>)`),
 * so creating them is idempotent (a resumed run reuses its own) and `maintenance-reopen` can expire a held
 * window's silences knowing only the window or the run.
 */
import { z } from 'zod';
import type { GameopsConfig } from '../../config/index.ts';
import {
  ConflictError,
  errorMessage,
  formatDuration,
  InputError,
  NotFoundError,
  UnavailableError,
} from '../../core/index.ts';
import { MAINTENANCE_TASKS, WINDOW_ID_PATTERN } from '../../maintenance/types.ts';
import type { Fleet } from '../../platform/index.ts';
import type { ActionDefinition, CheckDefinition, CheckOutcome, StepContext } from '../model.ts';
import { TERMINAL_RUN_STATUSES } from '../model.ts';
import { actorOfRun } from './backup.ts';
import { failures, fleetTargetOf, progressLogger, rolloutTimeoutArg } from './fleet.ts';
import { maybeServices, servicesOf, type RunbookServices } from './services.ts';

/** Matchers silenced when `maintenance.silence.matchers` is empty: every alert. */
export const DEFAULT_SILENCE_MATCHERS = ['alertname=~".+"'];

const windowArg = z
  .string()
  .max(100)
  .regex(WINDOW_ID_PATTERN, 'a window id such as mw-20261126T0400Z-3f9a2c (gameops maintenance list)')
  .nullable()
  .default(null);
const runIdArg = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z0-9_-]+$/, 'a run id (gameops runs list)');
const isoTime = z.iso.datetime({ offset: true });
const versionArg = z.string().min(1).max(128);
const tasksArg = z.array(z.enum(MAINTENANCE_TASKS)).max(MAINTENANCE_TASKS.length);

/** The label a window's silences and suppression carry: `window mw-…` or `run <id>` for a run started by hand. */
function label(window: string | null, runId: string): string {
  return window === null ? `run ${runId}` : `window ${window}`;
}

/** The comment of a run's silence and suppression window; `(run <id>)` finds them again. */
export function silenceComment(window: string | null, runId: string, endsAt: string): string {
  return `gameops maintenance ${label(window, runId)} until ${endsAt} (run ${runId})`;
}

/** Whether a silence or suppression `comment` belongs to the window or run asked about. */
export function isMaintenanceComment(
  comment: string | undefined,
  by: { window: string | null; runId: string | null },
): boolean {
  if (comment === undefined || !comment.startsWith('gameops maintenance ')) return false;
  if (by.runId !== null && comment.includes(`(run ${by.runId})`)) return true;
  return by.window !== null && comment.startsWith(`gameops maintenance window ${by.window} `);
}

/** The command that reopens after a hold. */
export function reopenCommand(window: string | null, runId: string): string {
  return window === null
    ? `gameops run maintenance-reopen -p run=${runId}`
    : `gameops run maintenance-reopen -p window=${window}`;
}

// -----------------------------------------------------------------------------------------------------
// Preflight

const preflightArgs = z.strictObject({
  window: windowArg,
  startsAt: isoTime,
  endsAt: isoTime,
  tasks: tasksArg,
  version: versionArg.nullable().default(null),
  message: z
    .string()
    .min(1)
    .max(500)
    .nullable()
    .default(null)
    .describe("The players' notice (default: one naming the times)."),
});

export interface PreflightOutput {
  /** `window mw-…`, or `run <id>` for a run started by hand. */
  label: string;
  /** What players are told when logins close and at the drain deadline. */
  playersMessage: string;
  /** The one version the fleet runs now (what a failed update goes back to); null with no instance. */
  previousVersion: string | null;
  version: string | null;
  instances: number;
  readyInstances: number;
  playersOnline: number;
  /** Whether the gate was closed already (an earlier window held, an incident). */
  gateClosed: boolean;
  /** `update` asked for and the fleet not already on the version. */
  update: boolean;
  alertmanager: boolean;
  notes: string[];
  summary: string;
}

/** The game's time zone (maintenance.timezone, else runbooks.timezone). */
function zoneOf(config: GameopsConfig): string {
  return config.maintenance.timezone ?? config.runbooks.timezone;
}

/** `04:00 (Europe/Berlin)` style local times of a span, when the game's zone is not UTC. */
function localSpan(startsAt: string, endsAt: string, timeZone: string): string {
  const f = new Intl.DateTimeFormat('en-GB', {
    timeZone,
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  });
  return `${f.format(new Date(startsAt))}–${f.format(new Date(endsAt))} ${timeZone}`;
}

/** The standard players' notice: the span in UTC, and in the game's zone when that is another. */
export function playersMessage(startsAt: string, endsAt: string, timeZone: string): string {
  const local = timeZone === 'UTC' ? '' : ` (${localSpan(startsAt, endsAt, timeZone)})`;
  return `Maintenance ${formatSpan(startsAt, endsAt)}${local}: logins are closed; please save your game and log out.`;
}

/** Whether the platform knows `version`: the local adapter's `versions`; Kubernetes asks its registry at rollout. */
function versionKnown(config: GameopsConfig, version: string): { known: boolean; note?: string } {
  const platform = config.platform;
  if (platform?.kind === 'local')
    return Object.hasOwn(platform.versions, version)
      ? { known: true }
      : { known: false, note: `platform.versions lists ${Object.keys(platform.versions).join(', ')}` };
  return {
    known: true,
    note: `version ${version}: the image tag is checked against its registry when the update starts, before anything is rolled`,
  };
}

const preflightAction: ActionDefinition<z.infer<typeof preflightArgs>, PreflightOutput> = {
  name: 'maintenance.preflight',
  description:
    'Before a maintenance window changes anything: the fleet (its version, players online, ready instances), ' +
    'the version to roll to, backups and the database configured for the tasks. Fails naming what is missing.',
  effect: 'read-only',
  idempotent: true,
  args: preflightArgs,
  target: (_args, services) => fleetTargetOf(services),
  async run(args, ctx) {
    const services = servicesOf(ctx);
    const { config } = services;
    const tasks = new Set(args.tasks);
    const missing: string[] = [];
    const notes: string[] = [];
    if (tasks.size > 0 && !config.backups)
      missing.push(
        `backups: not configured (a verified backup is taken before any task changes anything; add a \`backups:\` section)`,
      );
    if (tasks.has('db') && !config.mysql)
      missing.push('mysql: not configured (task db maintains the game database; add a `mysql:` section)');
    if (tasks.has('update') && args.version === null)
      missing.push('version: task update needs the version to roll to');
    if (!tasks.has('update') && args.version !== null)
      missing.push(`version ${args.version}: given, but tasks do not include update`);
    if (args.window !== null) {
      // The window service starts this run for a window it has claimed; a window cancelled (or ended,
      // or serving another run) since then must not get a maintenance run. One the store does not know
      // (started by hand naming a window) is only noted.
      const scope = { service: config.service.name, environment: config.service.environment };
      const window = await services.store?.maintenance.get(scope, args.window);
      if (!window) notes.push(`window ${args.window}: not a planned window of this store`);
      else if (window.state !== 'scheduled' && window.state !== 'running')
        missing.push(
          `window ${args.window}: it is ${window.state}${window.reason ? ` (${window.reason})` : ''}`,
        );
      else if (window.runId !== undefined && window.runId !== ctx.runId)
        missing.push(`window ${args.window}: it is served by run ${window.runId}`);
    }
    let fleet: Fleet | undefined;
    try {
      fleet = await services.fleet();
    } catch (err) {
      missing.push(`platform: ${errorMessage(err)}`);
    }
    let previousVersion: string | null = null;
    let instances = 0;
    let readyInstances = 0;
    let playersOnline = 0;
    let gateClosed = false;
    if (fleet) {
      const status = await fleet.status({ signal: ctx.signal });
      instances = status.totals.instances;
      readyInstances = status.totals.ready;
      playersOnline = status.totals.playersOnline;
      gateClosed = status.gate.closed;
      if (status.versions.length === 1) previousVersion = status.versions[0]!;
      if (status.totals.notAnswering > 0)
        notes.push(
          `${status.totals.notAnswering} game server(s) did not answer; their players are not counted`,
        );
      if (readyInstances < instances)
        notes.push(`${instances - readyInstances} of ${instances} instance(s) not ready before the window`);
      if (gateClosed) notes.push('the traffic gate is closed already');
      if (tasks.has('update') && args.version !== null) {
        const { known, note } = versionKnown(config, args.version);
        if (!known) missing.push(`version ${args.version}: unknown to the platform (${note ?? ''})`);
        else if (note) notes.push(note);
        if (status.versions.length > 1)
          missing.push(
            `the fleet runs several versions (${status.versions.join(', ')}): finish or undo that rollout before the window`,
          );
        else if (status.versions.length === 0)
          missing.push(
            `no instance runs, so the current version is unknown and a failed update to ${args.version} could not be undone`,
          );
      }
    }
    if (missing.length > 0)
      throw new InputError(`maintenance cannot start (nothing was changed): ${missing.join('; ')}`, {
        details: { missing },
      });
    const update = tasks.has('update') && args.version !== null && args.version !== previousVersion;
    if (tasks.has('update') && !update) notes.push(`the fleet runs ${args.version ?? ''} already: no update`);
    for (const note of notes) ctx.log(note);
    const summary =
      `${playersOnline} player(s) online on ${readyInstances}/${instances} ready instance(s), version ` +
      `${previousVersion ?? '(none running)'}${update ? ` → ${args.version ?? ''}` : ''}`;
    ctx.log(summary);
    return {
      label: label(args.window, ctx.runId),
      playersMessage: args.message ?? playersMessage(args.startsAt, args.endsAt, zoneOf(config)),
      previousVersion,
      version: args.version,
      instances,
      readyInstances,
      playersOnline,
      gateClosed,
      update,
      alertmanager: config.alertmanager !== undefined,
      notes,
      summary,
    };
  },
};

// -----------------------------------------------------------------------------------------------------
// The approval's summary

const dbPlanShape = z
  .looseObject({ work: z.boolean().optional(), summary: z.string().optional() })
  .nullable()
  .optional();

const summarizeArgs = z.strictObject({
  window: windowArg,
  startsAt: isoTime,
  endsAt: isoTime,
  tasks: tasksArg,
  preflight: z.looseObject({
    previousVersion: z.string().nullable(),
    version: z.string().nullable(),
    playersOnline: z.number(),
    update: z.boolean(),
  }),
  dbPlan: dbPlanShape.describe("The db plan step's output (absent when task db is not planned)."),
});

export interface SummaryOutput {
  /** True when something destructive (database work) or a version change is planned. */
  approval: boolean;
  summary: string;
}

/** `2026-11-26 04:00–06:00 UTC` (the end's date too when it is another day). */
export function formatSpan(startsAt: string, endsAt: string): string {
  const s = new Date(startsAt).toISOString();
  const e = new Date(endsAt).toISOString();
  const end = s.slice(0, 10) === e.slice(0, 10) ? e.slice(11, 16) : `${e.slice(0, 10)} ${e.slice(11, 16)}`;
  return `${s.slice(0, 10)} ${s.slice(11, 16)}–${end} UTC`;
}

/** The one sentence an approver reads. Pure. */
export function summarize(args: z.infer<typeof summarizeArgs>): SummaryOutput {
  const { preflight } = args;
  const tasks = args.tasks.length > 0 ? args.tasks.join(', ') : 'none (close, drain and reopen only)';
  const parts = [
    `Maintenance ${args.window ?? '(started by hand)'}: ${formatSpan(args.startsAt, args.endsAt)}; tasks: ${tasks}`,
  ];
  if (preflight.update)
    parts.push(`version ${preflight.previousVersion ?? '?'} → ${preflight.version ?? '?'}`);
  else if (args.tasks.includes('update'))
    parts.push(`version ${preflight.version ?? '?'} (the fleet runs it already: no rollout)`);
  parts.push(
    `${preflight.playersOnline} player(s) online now (they are asked to leave, then saved and disconnected)`,
  );
  const db = args.dbPlan ?? undefined;
  if (db?.summary) parts.push(`database: ${db.summary}`);
  return { approval: args.tasks.includes('update') || db?.work === true, summary: `${parts.join('; ')}.` };
}

const summarizeAction: ActionDefinition<z.infer<typeof summarizeArgs>, SummaryOutput> = {
  name: 'maintenance.summarize',
  description:
    'What a maintenance window will do, in one sentence for the approver (times, tasks, version, players online, the database plan), and whether it needs an approval (database work or a version change).',
  effect: 'read-only',
  idempotent: true,
  args: summarizeArgs,
  target: (args) => `maintenance ${args.window ?? 'run'}`,
  async run(args, ctx) {
    const out = summarize(args);
    ctx.log(out.summary);
    ctx.log(out.approval ? 'an operator approves the database work and the update' : 'no approval needed');
    return Promise.resolve(out);
  },
};

// -----------------------------------------------------------------------------------------------------
// The window's start

const windowOpenArgs = z.strictObject({ startsAt: isoTime });

const windowOpenCheck: CheckDefinition<z.infer<typeof windowOpenArgs>> = {
  name: 'maintenance.window-open',
  description:
    "Measures whether the window's start time has come (values.open, inMs); the wait's assertion on open " +
    'judges, so a poll logs its message once, not the summary too (the run starts maintenance.leadTime early).',
  args: windowOpenArgs,
  async run(args, ctx): Promise<CheckOutcome> {
    const now = ctx.clock.now().getTime();
    const start = Date.parse(args.startsAt);
    const open = now >= start;
    const values = { open, startsAt: new Date(start).toISOString(), inMs: Math.max(0, start - now) };
    return Promise.resolve({
      status: 'ok',
      summary: open ? `the window opened at ${values.startsAt}` : `the window opens at ${values.startsAt}`,
      values,
    });
  },
};

// -----------------------------------------------------------------------------------------------------
// Silence and paging suppression

const silenceArgs = z.strictObject({ window: windowArg, endsAt: isoTime });

export interface SilenceOutput {
  /** The Alertmanager silence; null when no Alertmanager is configured. */
  silenceId: string | null;
  /** The paging suppression window. */
  suppressionId: string;
  matchers: string[];
  endsAt: string;
}

const silenceAction: ActionDefinition<z.infer<typeof silenceArgs>, SilenceOutput> = {
  name: 'maintenance.silence',
  description:
    'Silences alerts in Alertmanager (maintenance.silence.matchers, default every alert) and suppresses paging, ' +
    'from now until the window ends plus maintenance.silence.after. Without an Alertmanager: paging suppression only.',
  effect: 'mutating',
  idempotent: true,
  args: silenceArgs,
  target: (args) => `alert silence and paging suppression for maintenance ${args.window ?? 'run'}`,
  async run(args, ctx) {
    const services = servicesOf(ctx);
    const { config } = services;
    const { alerts } = await services.ops();
    const actor = await actorOfRun(ctx);
    const now = ctx.clock.now();
    const end = new Date(Math.max(Date.parse(args.endsAt), now.getTime()) + config.maintenance.silence.after);
    const endsAt = end.toISOString();
    const comment = silenceComment(args.window, ctx.runId, new Date(args.endsAt).toISOString());
    const matchers =
      config.maintenance.silence.matchers.length > 0
        ? config.maintenance.silence.matchers
        : DEFAULT_SILENCE_MATCHERS;
    const mine = { window: null, runId: ctx.runId };

    // A resumed step finds what its first attempt made, instead of making a second one.
    const windows = await alerts.windows.list();
    let suppression = windows.find((w) => w.origin === 'adhoc' && isMaintenanceComment(w.comment, mine));
    const created = suppression === undefined;
    suppression ??= await alerts.windows.create(
      { name: `maintenance ${args.window ?? ctx.runId}`, startsAt: now.toISOString(), endsAt, comment },
      actor,
    );
    const suppressionId = suppression.id!;
    ctx.log(
      `${created ? 'paging suppressed' : 'paging suppression found'} until ${endsAt} (${suppressionId})`,
    );

    if (!config.alertmanager) {
      ctx.log('no Alertmanager is configured: paging suppression only, no silence');
      return { silenceId: null, suppressionId, matchers: [], endsAt };
    }
    try {
      const existing = (await alerts.silences.list()).find(
        (s) => (s.state === 'active' || s.state === 'pending') && isMaintenanceComment(s.comment, mine),
      );
      const silence =
        existing ??
        (await alerts.silences.create({ matchers, startsAt: now.toISOString(), endsAt, comment }, actor));
      ctx.log(
        `${existing ? 'silence found' : 'alerts silenced'} (${silence.matchers.join(', ')}) until ${silence.endsAt} (${silence.id})`,
      );
      return { silenceId: silence.id, suppressionId, matchers: silence.matchers, endsAt: silence.endsAt };
    } catch (err) {
      // A failed step is never compensated: take back the suppression this attempt made.
      if (created)
        await alerts.windows.end(suppressionId, actor).then(
          () => ctx.log(`paging suppression ${suppressionId} ended again: the silence failed`),
          (endErr: unknown) =>
            ctx.log(`paging suppression ${suppressionId} could not be ended: ${errorMessage(endErr)}`),
        );
      throw err;
    }
  },
  async verify(args, ctx) {
    const services = servicesOf(ctx);
    const { alerts } = await services.ops();
    const mine = { window: null, runId: ctx.runId };
    const suppression = (await alerts.windows.list()).some(
      (w) => w.origin === 'adhoc' && isMaintenanceComment(w.comment, mine),
    );
    if (!suppression) return 'not-done';
    if (!services.config.alertmanager) return 'done';
    const silence = (await alerts.silences.list()).some(
      (s) => (s.state === 'active' || s.state === 'pending') && isMaintenanceComment(s.comment, mine),
    );
    return silence ? 'done' : 'not-done';
  },
};

const unsilenceArgs = z
  .strictObject({
    window: windowArg,
    runId: runIdArg.nullable().default(null).describe('The run whose silences go (default: only by window).'),
    silenceId: z.string().min(1).max(64).nullable().default(null),
    suppressionId: z.string().min(1).max(100).nullable().default(null),
    hold: z.boolean().default(false).describe('Keep everything (maintenance held) and log how to reopen.'),
  })
  .refine((a) => a.window !== null || a.runId !== null, {
    message: 'give the window or the run whose silences end',
    path: ['window'],
  });

export interface UnsilenceOutput {
  held: boolean;
  expired: string[];
  ended: string[];
}

const unsilenceAction: ActionDefinition<z.infer<typeof unsilenceArgs>, UnsilenceOutput> = {
  name: 'maintenance.unsilence',
  description:
    "Expires a maintenance window's Alertmanager silences and ends its paging suppression (those of the run, or " +
    'every one naming the window); one already expired or ended is fine. With hold: keeps them and says how to reopen.',
  effect: 'mutating',
  idempotent: true,
  args: unsilenceArgs,
  target: (args) =>
    `alert silences and paging suppression of maintenance ${args.window ?? `run ${args.runId ?? ''}`}`,
  async run(args, ctx) {
    const runId = args.runId ?? ctx.runId;
    if (args.hold) {
      ctx.log(
        `hold: alerts stay silenced and paging suppressed while maintenance stays on; when fixed: ${reopenCommand(args.window, runId)}`,
      );
      return { held: true, expired: [], ended: [] };
    }
    const services = servicesOf(ctx);
    const { alerts } = await services.ops();
    const actor = await actorOfRun(ctx);
    const by = { window: args.window, runId: args.runId };
    const ended: string[] = [];
    const windows = await alerts.windows.list();
    const suppressionIds = new Set(
      windows.filter((w) => w.origin === 'adhoc' && isMaintenanceComment(w.comment, by)).map((w) => w.id!),
    );
    if (args.suppressionId !== null && windows.some((w) => w.id === args.suppressionId))
      suppressionIds.add(args.suppressionId);
    for (const id of suppressionIds) {
      try {
        await alerts.windows.end(id, actor);
        ended.push(id);
        ctx.log(`paging suppression ${id} ended`);
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
        ctx.log(`paging suppression ${id} is gone already`);
      }
    }
    const expired: string[] = [];
    if (services.config.alertmanager) {
      const silences = await alerts.silences.list();
      const live = silences.filter(
        (s) =>
          (s.state === 'active' || s.state === 'pending') &&
          (s.id === args.silenceId || isMaintenanceComment(s.comment, by)),
      );
      for (const s of live) {
        try {
          await alerts.silences.expire(s.id, actor);
          expired.push(s.id);
          ctx.log(`silence ${s.id} expired`);
        } catch (err) {
          if (!(err instanceof NotFoundError)) throw err;
          ctx.log(`silence ${s.id} is gone already`);
        }
      }
      if (args.silenceId !== null && !live.some((s) => s.id === args.silenceId))
        ctx.log(`silence ${args.silenceId} had expired already`);
    } else if (args.silenceId !== null) {
      throw new UnavailableError(
        `silence ${args.silenceId} cannot be expired: no Alertmanager is configured (set alertmanager.url)`,
      );
    }
    if (expired.length === 0 && ended.length === 0) ctx.log('nothing was silenced any more');
    return { held: false, expired, ended };
  },
  async verify(args, ctx) {
    if (args.hold) return 'done';
    const services = servicesOf(ctx);
    const { alerts } = await services.ops();
    const by = { window: args.window, runId: args.runId };
    if (
      (await alerts.windows.list()).some((w) => w.origin === 'adhoc' && isMaintenanceComment(w.comment, by))
    )
      return 'not-done';
    if (!services.config.alertmanager) return 'done';
    const live = (await alerts.silences.list()).some(
      (s) => (s.state === 'active' || s.state === 'pending') && isMaintenanceComment(s.comment, by),
    );
    return live ? 'not-done' : 'done';
  },
};

// -----------------------------------------------------------------------------------------------------
// Reopening (the compensation of closing the gate)

const reopenArgs = z.strictObject({
  window: windowArg,
  hold: z.boolean().default(false),
});

const reopenAction: ActionDefinition<z.infer<typeof reopenArgs>> = {
  name: 'maintenance.reopen',
  description:
    'Opens the traffic gate after a failed maintenance window (maintenance mode off) and restarts the instances ' +
    'a drain left refusing logins, unless hold: then maintenance stays on and the step log says how to reopen.',
  effect: 'mutating',
  idempotent: true,
  args: reopenArgs,
  target: (_args, services) => `traffic gate of ${fleetTargetOf(services)}`,
  async run(args, ctx) {
    const fleet = await servicesOf(ctx).fleet();
    if (args.hold) {
      const gate = await fleet.gate();
      ctx.log(
        `hold: maintenance stays on (gate ${gate.closed ? 'closed' : 'open'}) for a person to fix; when fixed: ${reopenCommand(args.window, ctx.runId)}`,
      );
      return { held: true, gate };
    }
    const result = await fleet.setGate({ closed: false }, ctx.signal);
    if (result.status === 'partial')
      ctx.log(
        `gate open in the game config, but not every instance confirmed: ${failures(result.instances)}`,
      );
    else ctx.log('gate open: maintenance mode off, logins accepted');
    // A drain that failed (players left after the deadline, an instance silent) is never compensated, yet
    // the instances it reached refuse logins until restarted: opening the gate alone would not reopen them.
    // Every live instance is asked, ready or not (a drained one may be momentarily failing its probe).
    const found = await fleet.drainedInstances(ctx.signal);
    const draining = found.draining;
    if (found.notAnswering.length > 0)
      ctx.log(
        `not answering, so not known to be drained: ${found.notAnswering
          .map((i) => `${i.instance} (${i.error ?? 'no answer'})`)
          .join(', ')}`,
      );
    if (draining.length > 0) {
      ctx.log(`restarting ${draining.length} instance(s) still draining: ${draining.join(', ')}`);
      await fleet.platform.restart({
        maxUnavailable: 1,
        filter: { names: draining },
        signal: ctx.signal,
        onProgress: progressLogger(ctx),
      });
    }
    return { held: false, ...result, restarted: draining };
  },
  async verify(args, ctx) {
    if (args.hold) return 'done';
    const fleet = await servicesOf(ctx).fleet();
    if ((await fleet.gate()).closed) return 'not-done';
    const found = await fleet.drainedInstances(ctx.signal);
    return found.draining.length > 0 || found.notAnswering.length > 0 ? 'not-done' : 'done';
  },
};

// -----------------------------------------------------------------------------------------------------
// What maintenance-reopen may reopen

const reopenTargetArgs = z
  .strictObject({ window: windowArg, runId: runIdArg.nullable().default(null) })
  .refine((a) => a.window !== null || a.runId !== null, {
    message: 'give the held window or run to reopen',
    path: ['window'],
  });

/** The maintenance runbook (src/runbooks/builtin/maintenance.ts). */
const MAINTENANCE_RUNBOOK_NAME = 'maintenance';

/** A maintenance run that has ended: `<id> (<status>)`, or why it is not one to reopen after. */
async function endedMaintenanceRun(services: RunbookServices, runId: string, what: string): Promise<string> {
  const run = await services.store!.runs.getRun(runId);
  const { name: service, environment } = services.config.service;
  if (!run || run.service !== service || run.environment !== environment)
    throw new NotFoundError(`${what}: no run ${runId} in ${service}/${environment} (gameops runs list)`);
  if (run.runbook !== MAINTENANCE_RUNBOOK_NAME)
    throw new ConflictError(
      `${what}: run ${runId} is a ${run.runbook} run, not a maintenance run; nothing to reopen after it`,
    );
  if (!TERMINAL_RUN_STATUSES.includes(run.status))
    throw new ConflictError(
      `${what}: run ${runId} is still ${run.status}; it reopens itself when it ends (or cancel it: gameops runs cancel ${runId})`,
    );
  return `${runId} (${run.status})`;
}

const reopenTargetAction: ActionDefinition<z.infer<typeof reopenTargetArgs>> = {
  name: 'maintenance.reopen-target',
  description:
    'Before maintenance-reopen changes anything: the window must be held, failed, or running with a maintenance ' +
    'run that has ended (the game possibly left closed); the run must be a maintenance run that has ended. ' +
    'Fails naming why otherwise: reopening is not a way to open logins by hand.',
  effect: 'read-only',
  idempotent: true,
  args: reopenTargetArgs,
  target: (args) => `maintenance ${args.window ?? `run ${args.runId ?? ''}`}`,
  async run(args, ctx) {
    const services = servicesOf(ctx);
    if (!services.store)
      throw new UnavailableError('the store is not open: the window or run to reopen cannot be checked');
    const { name: service, environment } = services.config.service;
    let window: { id: string; state: string } | undefined;
    let run: string | undefined;
    if (args.window !== null) {
      const w = await services.store.maintenance.get({ service, environment }, args.window);
      if (!w)
        throw new NotFoundError(
          `window ${args.window}: no such maintenance window in ${service}/${environment} (gameops maintenance list)`,
        );
      const why = `window ${w.id}`;
      if (w.state === 'running') {
        if (!w.runId) throw new ConflictError(`${why}: it is running and its run has not started yet`);
        run = await endedMaintenanceRun(services, w.runId, why);
      } else if (w.state !== 'held' && w.state !== 'failed')
        throw new ConflictError(
          `${why}: it is ${w.state}${w.reason ? ` (${w.reason})` : ''}; only a held or failed window (or a running one ` +
            'whose run has ended) is reopened',
        );
      window = { id: w.id, state: w.state };
    }
    if (args.runId !== null) run = await endedMaintenanceRun(services, args.runId, `run ${args.runId}`);
    ctx.log(
      `reopening ${[window ? `window ${window.id} (${window.state})` : '', run ? `after run ${run}` : '']
        .filter(Boolean)
        .join(' ')}`,
    );
    return { window: window ?? null, run: run ?? null };
  },
};

// -----------------------------------------------------------------------------------------------------
// Version update

const updateArgs = z.strictObject({
  version: versionArg,
  previousVersion: versionArg.describe('What the fleet runs now, and goes back to when the update fails.'),
  timeoutMs: rolloutTimeoutArg,
});

/** Versions and readiness of every instance, for verify. */
async function onVersion(fleet: Fleet, version: string): Promise<boolean> {
  const instances = await fleet.platform.instances();
  return instances.length > 0 && instances.every((i) => i.version === version && i.ready);
}

/** Rolls the fleet to `version` and tells new instances about a closed gate (ADR 0006). */
async function rollTo(
  fleet: Fleet,
  version: string,
  ctx: StepContext,
  options: { timeoutMs?: number | undefined; signal?: AbortSignal },
) {
  const result = await fleet.platform.setVersion(version, {
    ...(options.signal ? { signal: options.signal } : {}),
    onProgress: progressLogger(ctx),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
  });
  const gate = await fleet.gateAfterRollout(options.signal);
  if (gate.gateProblem) ctx.log(`the gate could not be re-applied: ${gate.gateProblem}`);
  return { ...result, ...gate };
}

const updateAction: ActionDefinition<z.infer<typeof updateArgs>> = {
  name: 'maintenance.update',
  description:
    'Rolls the fleet to a version (rolling, readiness-gated, within the rollout timeout). When the new version ' +
    'fails, the fleet is rolled back to the previous version before the step fails, naming the version and why.',
  effect: 'mutating',
  idempotent: true,
  args: updateArgs,
  target: (args, services) => `${fleetTargetOf(services)}: version ${args.previousVersion} → ${args.version}`,
  async run(args, ctx) {
    const fleet = await servicesOf(ctx).fleet();
    if (await onVersion(fleet, args.version)) {
      ctx.log(`the fleet runs ${args.version} already: nothing to roll`);
      return { version: args.version, changed: false };
    }
    try {
      const result = await rollTo(fleet, args.version, ctx, {
        timeoutMs: args.timeoutMs,
        signal: ctx.signal,
      });
      ctx.log(
        `the fleet runs ${args.version} (${result.replicas} instance(s) in ${formatDuration(result.durationMs)})`,
      );
      return { ...result, changed: true };
    } catch (err) {
      // Stopped from outside (cancel, shutdown): whoever drives the run next decides (verify, recovery).
      if (ctx.signal.aborted) throw err;
      const why = errorMessage(err);
      ctx.log(`version ${args.version} failed: ${why}; rolling back to ${args.previousVersion}`);
      try {
        // Not the step's signal: the step failed, the rollback must still finish (within its own timeout).
        await rollTo(fleet, args.previousVersion, ctx, { timeoutMs: args.timeoutMs });
      } catch (backErr) {
        throw new UnavailableError(
          `update to version ${args.version} failed (${why}), and rolling back to ${args.previousVersion} failed too ` +
            `(${errorMessage(backErr)}): check the fleet (gameops fleet status)`,
          { cause: err },
        );
      }
      ctx.log(`the fleet is back on ${args.previousVersion}`);
      throw new UnavailableError(
        `update to version ${args.version} failed: ${why}; the fleet is back on ${args.previousVersion}`,
        { cause: err, details: { version: args.version, previousVersion: args.previousVersion } },
      );
    }
  },
  async verify(args, ctx) {
    return (await onVersion(await servicesOf(ctx).fleet(), args.version)) ? 'done' : 'not-done';
  },
};

const revertArgs = z.strictObject({
  version: versionArg.describe('The version the update rolled to.'),
  previousVersion: versionArg.describe('The version to put back.'),
  timeoutMs: rolloutTimeoutArg,
});

const revertAction: ActionDefinition<z.infer<typeof revertArgs>> = {
  name: 'maintenance.revert-version',
  description:
    'Puts the previous version back after a maintenance step later than the update failed (nothing when the ' +
    'fleet runs it already).',
  effect: 'mutating',
  idempotent: true,
  args: revertArgs,
  target: (args, services) => `${fleetTargetOf(services)}: version ${args.version} → ${args.previousVersion}`,
  async run(args, ctx) {
    const fleet = await servicesOf(ctx).fleet();
    if (await onVersion(fleet, args.previousVersion)) {
      ctx.log(`the fleet runs ${args.previousVersion} already`);
      return { version: args.previousVersion, changed: false };
    }
    const result = await rollTo(fleet, args.previousVersion, ctx, {
      timeoutMs: args.timeoutMs,
      signal: ctx.signal,
    });
    ctx.log(`the fleet is back on ${args.previousVersion}`);
    return { ...result, changed: true };
  },
  async verify(args, ctx) {
    return (await onVersion(await servicesOf(ctx).fleet(), args.previousVersion)) ? 'done' : 'not-done';
  },
};

// -----------------------------------------------------------------------------------------------------
// Completion notice

const announceArgs = z.strictObject({ message: z.string().min(1).max(5000) });

/** The channels told of a window (maintenance.notices.channels). */
function noticeChannels(services: RunbookServices): string[] {
  return services.config.maintenance.notices.channels;
}

const announceAction: ActionDefinition<z.infer<typeof announceArgs>> = {
  name: 'maintenance.announce',
  description:
    'Tells the stakeholders (maintenance.notices.channels) and the run log a maintenance message; a channel ' +
    'that cannot be reached is logged, the others are still told.',
  effect: 'mutating',
  idempotent: false,
  args: announceArgs,
  target: (_args, services) => {
    const channels = maybeServices(services)?.config.maintenance.notices.channels ?? [];
    return channels.length > 0 ? `notification channels ${channels.join(', ')}` : 'the run log';
  },
  async run(args, ctx) {
    const services = servicesOf(ctx);
    ctx.log(args.message);
    const sent: string[] = [];
    const failed: Array<{ channel: string; error: string }> = [];
    for (const channel of noticeChannels(services)) {
      try {
        const delivery = await services.notifier.send(channel, args.message, ctx.signal, {
          runId: ctx.runId,
          stepId: `${ctx.stepId}.${channel}`,
        });
        sent.push(channel);
        ctx.log(`told ${channel} (${delivery.destination}: ${delivery.response})`);
      } catch (err) {
        failed.push({ channel, error: errorMessage(err) });
        ctx.log(`could not tell ${channel}: ${errorMessage(err)}`);
      }
    }
    return { message: args.message, sent, failed };
  },
};

/** The maintenance actions. */
export const maintenanceActions: ActionDefinition[] = [
  preflightAction,
  summarizeAction,
  silenceAction,
  unsilenceAction,
  reopenAction,
  reopenTargetAction,
  updateAction,
  revertAction,
  announceAction,
];

/** The maintenance checks. */
export const maintenanceChecks: CheckDefinition[] = [windowOpenCheck];
