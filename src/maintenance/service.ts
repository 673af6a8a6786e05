/**
 * Maintenance windows (issue #7, runbook §4.1): planning (checked against the clock, the other windows and
 * the platform's versions), the notices before a window, starting the `maintenance` run, following it to
 * the window's end state, and the answer to the scheduler's "is a window open now?".
 *
 * Everything happens on the injected clock, in `tick(now)` (serve's background loop calls it about every
 * second) and in the calls people make. What must happen once is claimed in the store first: a notice by
 * its row (exactly once across restarts and instances; a process that dies while sending leaves it
 * `sending`, never sent twice), a run by its idempotency key `maintenance:<window id>`, a state change by
 * a conditional update.
 */
import { z } from 'zod';
import {
  type Clock,
  ConflictError,
  ErrorCode,
  errorMessage,
  InputError,
  NotFoundError,
  toGameopsError,
} from '../core/index.ts';
import type { GameopsConfig } from '../config/index.ts';
import type { PrometheusClient } from '../connectors/prometheus.ts';
import type { Actor, Plan, RunService, RunView } from '../runbooks/model.ts';
import { TERMINAL_RUN_STATUSES } from '../runbooks/model.ts';
import { parseCron, type CronSchedule } from '../schedules/cron.ts';
import type { MaintenanceNotice, RunScope, Store } from '../store/index.ts';
import { OPEN_WINDOW_STATES } from '../store/index.ts';
import { estimatePlayerMinutes } from './estimate.ts';
import { dueNotice, upcomingNotices } from './notices.ts';
import {
  adhocWindowId,
  bothZones,
  checkWindowId,
  parseWindowTime,
  recurringWindowId,
  zonedTime,
} from './time.ts';
import {
  MAINTENANCE_TASKS,
  type DueNotice,
  type MaintenanceRunParams,
  type MaintenanceTask,
  type MaintenanceWindow,
  type PlayerMinutesEstimate,
  type WindowState,
} from './types.ts';

/** The runbook a window runs (src/runbooks/builtin/maintenance.ts). */
export const MAINTENANCE_RUNBOOK = 'maintenance';
/** A start this far in the past still counts as "now" (the time it took to type the command). */
export const PAST_TOLERANCE_MS = 60_000;
/** The longest window. */
export const MAX_WINDOW_MS = 24 * 3_600_000;
/** Recurring windows are materialised this far ahead (a week of notices, and a day more). */
export const RECURRING_HORIZON_MS = 8 * 86_400_000;
/** The longest in-game notice (POST /ops/notice, docs/game-server-contract.md). */
const MAX_NOTICE_CHARS = 500;
/** A recurring occurrence that overlapped another window is tried again this often. */
const RETRY_SKIPPED_MS = 10 * 60_000;
/** The window listing's default look-back. */
const LIST_SINCE_MS = 7 * 86_400_000;
/** Errors that trying again cannot fix: the window is marked failed instead of retried every tick. */
const NON_RETRYABLE: readonly string[] = [
  ErrorCode.input,
  ErrorCode.notFound,
  ErrorCode.notAllowed,
  ErrorCode.conflict,
];

/** What the service needs of the fleet: players online, and telling players (the game-server contract). */
export interface MaintenanceFleet {
  status(filter?: { signal?: AbortSignal }): Promise<{ totals: { playersOnline: number } }>;
  notice(
    input: { message: string; startsAt?: string; endsAt?: string },
    signal?: AbortSignal,
  ): Promise<{
    status: 'ok' | 'partial';
    delivered: number;
    instances: Array<{ instance: string; ok: boolean; error?: string }>;
  }>;
}

export interface MaintenanceLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface MaintenanceDeps {
  config: Pick<GameopsConfig, 'maintenance' | 'runbooks' | 'service' | 'platform'>;
  store: Pick<Store, 'maintenance' | 'checkRuns'>;
  clock: Clock;
  runs: Pick<RunService, 'plan' | 'start' | 'get' | 'cancel'>;
  /** The fleet, when a platform is configured. */
  fleet?: (() => Promise<MaintenanceFleet>) | undefined;
  /** Stakeholders' channels (`maintenance.notices.channels`). */
  notifier: { send(channel: string, message: string, signal?: AbortSignal): Promise<unknown> };
  prometheus?: Pick<PrometheusClient, 'range' | 'target'> | undefined;
  log: MaintenanceLog;
}

/** What `plan` is asked: times as ISO instants with offsets or wall-clock times in the game's zone. */
export interface PlanInput {
  startsAt: string;
  endsAt: string;
  /** Default: db and logs, and update when a version is given. */
  tasks?: MaintenanceTask[] | undefined;
  version?: string | undefined;
  message?: string | undefined;
  name?: string | undefined;
  hold?: boolean | undefined;
}

export interface PlannedWindow {
  window: MaintenanceWindow;
  /** False: nothing was stored (a dry run). */
  stored: boolean;
  /** When the `maintenance` run starts (leadTime before the window, or at once). */
  runStartsAt: string;
  estimate: PlayerMinutesEstimate;
  /** The `maintenance` runbook's steps with these parameters. */
  plan: Plan;
  /** The notices that will be sent, earliest first. */
  notices: DueNotice[];
}

export interface WindowDetail {
  window: MaintenanceWindow;
  notices: MaintenanceNotice[];
}

export interface MaintenanceService {
  /** The game's time zone (`maintenance.timezone`, else `runbooks.timezone`). */
  readonly timezone: string;
  /**
   * Checks and (unless `dryRun`) records a window.
   * @throws InputError naming the field (a start in the past, an end not after the start, longer than
   *   24 h, an update without a version or a version without the update task, an unknown version);
   *   ConflictError naming the scheduled or running window it overlaps and its times.
   */
  plan(input: PlanInput, actor: Actor, options?: { dryRun?: boolean }): Promise<PlannedWindow>;
  /** Windows ending after `since` (default: a week ago), by start. */
  list(options?: { since?: Date; limit?: number }): Promise<MaintenanceWindow[]>;
  /** @throws InputError (malformed id), NotFoundError. */
  get(id: string): Promise<WindowDetail>;
  /**
   * Cancels a window. A scheduled one is cancelled at once; a running one by cancelling its run, only while
   * the run has changed nothing yet (the engine's cancel does not compensate: cancelling later would leave
   * maintenance mode on without a run). Players and channels hear of it when a notice went out before.
   * @throws ConflictError when the window has ended or its run has already changed the service.
   */
  cancel(id: string, actor: Actor, reason: string): Promise<MaintenanceWindow>;
  /**
   * One round at `now`: materialise recurring windows, send due notices, start runs that are due, follow
   * running ones to their end state. Each window is isolated (one failing is logged). Never throws.
   */
  tick(now: Date): Promise<void>;
  /** The window in progress at `now` (scheduled or running, start ≤ now < end), for the scheduler's hold-off. */
  activeWindow(now: Date): Promise<MaintenanceWindow | undefined>;
}

/** The identity the service starts runs as. */
export const MAINTENANCE_ACTOR: Actor = {
  id: 'schedule:maintenance',
  name: 'maintenance',
  role: 'admin',
  kind: 'schedule',
};

const nameSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'lower-case letters, digits, ".", "_" and "-", at most 64');
const planInputSchema = z.strictObject({
  startsAt: z.string().min(1).max(60),
  endsAt: z.string().min(1).max(60),
  tasks: z.array(z.enum(MAINTENANCE_TASKS)).min(1).max(MAINTENANCE_TASKS.length).optional(),
  version: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/, 'letters, digits, ".", "_", "+" and "-", at most 128')
    .optional(),
  message: z.string().min(1).max(500).optional(),
  name: nameSchema.optional(),
  hold: z.boolean().optional(),
});

/** The `maintenance` runbook's parameters for a window. */
export function runParams(window: MaintenanceWindow): MaintenanceRunParams {
  return {
    window: window.id,
    startsAt: window.startsAt,
    endsAt: window.endsAt,
    tasks: window.tasks,
    version: window.version ?? null,
    message: window.message ?? null,
    hold: window.hold,
  };
}

/** The run's idempotency key: one run per window, whoever starts it. */
export function windowRunKey(id: string): string {
  return `maintenance:${id}`;
}

/**
 * Checks every enabled `maintenance.recurring` entry's cron and time zone, for `gameops serve` to refuse a
 * config it cannot use at start (as it does for runbook schedules) instead of logging it every tick.
 * @throws InputError naming each bad entry's field and value.
 */
export function checkRecurringWindows(config: Pick<GameopsConfig, 'maintenance' | 'runbooks'>): void {
  const timezone = config.maintenance.timezone ?? config.runbooks.timezone;
  const problems: string[] = [];
  config.maintenance.recurring.forEach((entry, i) => {
    if (!entry.enabled) return;
    try {
      parseCron(entry.cron, entry.timezone ?? timezone, `maintenance.recurring[${i}]`);
    } catch (err) {
      problems.push(errorMessage(err));
    }
  });
  if (problems.length > 0)
    throw new InputError(`maintenance.recurring: ${problems.join('; ')}`, { details: { problems } });
}

interface RecurringEntry {
  name: string;
  cron: CronSchedule;
  durationMs: number;
  entry: GameopsConfig['maintenance']['recurring'][number];
}

export function createMaintenanceService(deps: MaintenanceDeps): MaintenanceService {
  const { config, store, clock, runs, log } = deps;
  const settings = config.maintenance;
  const timezone = settings.timezone ?? config.runbooks.timezone;
  const scope: RunScope = { service: config.service.name, environment: config.service.environment };
  const repo = store.maintenance;
  /**
   * Recurring occurrences skipped because they overlap another window, and when: tried again every
   * RETRY_SKIPPED_MS (the other window may be cancelled), logged once.
   */
  const skipped = new Map<string, number>();
  let recurring: RecurringEntry[] | undefined;

  function recurringWindows(): RecurringEntry[] {
    if (recurring) return recurring;
    const parsed: RecurringEntry[] = [];
    settings.recurring.forEach((entry, i) => {
      if (!entry.enabled) return;
      try {
        parsed.push({
          name: entry.name,
          cron: parseCron(entry.cron, entry.timezone ?? timezone, `maintenance.recurring[${i}]`),
          durationMs: entry.duration,
          entry,
        });
      } catch (err) {
        log.error(
          { recurring: entry.name, err: errorMessage(err) },
          `maintenance.recurring[${i}] is not used: ${errorMessage(err)}`,
        );
      }
    });
    recurring = parsed;
    return parsed;
  }

  async function checkVersion(version: string): Promise<void> {
    const platform = config.platform;
    if (platform?.kind === 'local' && !Object.hasOwn(platform.versions, version))
      throw new InputError(
        `version: "${version}" is not one of platform.versions (${Object.keys(platform.versions).join(', ')})`,
        { details: { field: 'version', value: version } },
      );
    // Kubernetes: the image tag is checked by the rollout itself (platform.verifyImageTag), not here.
  }

  async function overlapping(startsAt: string, endsAt: string): Promise<MaintenanceWindow | undefined> {
    const open = await repo.list(scope, {
      states: OPEN_WINDOW_STATES,
      endsAfter: new Date(startsAt),
      startsBefore: new Date(endsAt),
      limit: 1,
    });
    return open[0];
  }

  function estimate(startsAt: Date, endsAt: Date): Promise<PlayerMinutesEstimate> {
    const fleet = deps.fleet;
    return estimatePlayerMinutes(
      {
        scope,
        currentPlayers: fleet
          ? async () =>
              (await (await fleet()).status({ signal: AbortSignal.timeout(5000) })).totals.playersOnline
          : undefined,
        prometheus: deps.prometheus,
        checkRuns: store.checkRuns,
      },
      { startsAt, endsAt },
    );
  }

  /** Players' text: the window's message, or a standard one naming the times in the game's zone. */
  function playersMessage(w: MaintenanceWindow, lead: string): string {
    const text =
      w.message ??
      `The game is closed for maintenance from ${zonedTime(w.startsAt, w.timezone)} to ${zonedTime(w.endsAt, w.timezone)}.`;
    const full = `${lead}${text}`;
    // The game-server contract takes at most 500 characters.
    return full.length > MAX_NOTICE_CHARS ? `${full.slice(0, MAX_NOTICE_CHARS - 1)}…` : full;
  }

  function noticeLead(key: string): string {
    const m = /^T-(\d+)([hms])$/.exec(key);
    if (!m) return '';
    const unit = { h: 'hour', m: 'minute', s: 'second' }[m[2] as 'h' | 'm' | 's'];
    return `Maintenance in ${m[1]} ${unit}${m[1] === '1' ? '' : 's'}: `;
  }

  /** Sends one claimed notice to players and stakeholders, and records what happened. */
  async function send(
    w: MaintenanceWindow,
    key: string,
    players: string,
    stakeholders: string,
  ): Promise<void> {
    const detail: Record<string, unknown> = {};
    let ok = 0;
    let failed = 0;
    if (deps.fleet) {
      try {
        const fleet = await deps.fleet();
        const result = await fleet.notice(
          { message: players, startsAt: w.startsAt, endsAt: w.endsAt },
          AbortSignal.timeout(30_000),
        );
        detail.players = {
          status: result.status,
          delivered: result.delivered,
          failed: result.instances.filter((i) => !i.ok).map((i) => `${i.instance}: ${i.error ?? 'failed'}`),
        };
        if (result.status === 'ok') ok++;
        else failed++;
      } catch (err) {
        detail.players = { error: errorMessage(err) };
        failed++;
      }
    } else {
      detail.players = { skipped: 'no platform is configured' };
    }
    const channels: Record<string, string> = {};
    for (const channel of settings.notices.channels) {
      try {
        await deps.notifier.send(channel, stakeholders, AbortSignal.timeout(30_000));
        channels[channel] = 'sent';
        ok++;
      } catch (err) {
        channels[channel] = errorMessage(err);
        failed++;
      }
    }
    detail.channels = channels;
    const status = failed === 0 ? 'sent' : ok === 0 ? 'failed' : 'partial';
    await repo.finishNotice(w.id, key, status, detail);
    const fields = { window: w.id, notice: key, status, ...detail };
    if (status === 'sent') log.info(fields, `maintenance window ${w.id}: notice ${key} sent`);
    else
      log.warn(
        fields,
        `maintenance window ${w.id}: notice ${key} ${status === 'failed' ? 'could not be sent' : 'sent in part'}`,
      );
  }

  async function sendDueNotice(w: MaintenanceWindow, now: Date): Promise<void> {
    const claimed = new Set((await repo.notices(w.id)).map((n) => n.key));
    const due = dueNotice(new Date(w.startsAt), settings.notices.before, claimed, now);
    if (!due) return;
    if (!(await repo.claimNotice(w.id, due.key, new Date(due.at)))) return;
    const lead = noticeLead(due.key);
    await send(
      w,
      due.key,
      playersMessage(w, lead),
      `${lead}${config.service.name} (${config.service.environment}) maintenance window ${w.id}: ` +
        `${bothZones(w.startsAt, w.timezone)} – ${bothZones(w.endsAt, w.timezone)}; tasks ${w.tasks.join(', ')}` +
        (w.version ? `; version ${w.version}` : '') +
        '.',
    );
  }

  async function sendCancelledNotice(w: MaintenanceWindow, reason: string): Promise<void> {
    const before = (await repo.notices(w.id)).filter((n) => n.key.startsWith('T-'));
    if (before.length === 0) return;
    if (!(await repo.claimNotice(w.id, 'cancelled', clock.now()))) return;
    await send(
      w,
      'cancelled',
      `The maintenance planned for ${zonedTime(w.startsAt, w.timezone)} is cancelled.`,
      `${config.service.name} (${config.service.environment}) maintenance window ${w.id} ` +
        `(${bothZones(w.startsAt, w.timezone)}) is CANCELLED: ${reason}`,
    );
  }

  /** Records the end state of a window whose run has finished. */
  async function follow(w: MaintenanceWindow): Promise<void> {
    if (!w.runId) return;
    const run = await runs.get(w.runId, MAINTENANCE_ACTOR);
    if (!TERMINAL_RUN_STATUSES.includes(run.status)) return;
    const state: WindowState =
      run.status === 'succeeded'
        ? 'completed'
        : run.status === 'cancelled'
          ? 'cancelled'
          : w.hold
            ? 'held'
            : 'failed';
    const reason = run.status === 'succeeded' ? null : (run.reason ?? `run ${run.id} ${run.status}`);
    const done = await repo.transition(
      scope,
      w.id,
      ['running'],
      { state, reason },
      MAINTENANCE_ACTOR,
      `maintenance.${state}`,
    );
    if (done) {
      const fields = { window: w.id, runId: run.id, state, ...(reason ? { reason } : {}) };
      if (state === 'completed') log.info(fields, `maintenance window ${w.id} completed (run ${run.id})`);
      else
        log.warn(fields, `maintenance window ${w.id} ${state} (run ${run.id}${reason ? `: ${reason}` : ''})`);
    }
  }

  async function startRun(w: MaintenanceWindow, now: Date): Promise<void> {
    let run: RunView;
    try {
      run = await runs.start(
        {
          runbook: MAINTENANCE_RUNBOOK,
          params: { ...runParams(w) },
          trigger: 'schedule',
          idempotencyKey: windowRunKey(w.id),
          reason: `maintenance window ${w.id} (${w.startsAt}–${w.endsAt})`,
        },
        MAINTENANCE_ACTOR,
      );
    } catch (err) {
      const error = toGameopsError(err);
      if (!NON_RETRYABLE.includes(error.code)) throw error;
      const reason = `the maintenance run could not be started: ${error.message}`;
      await repo.transition(
        scope,
        w.id,
        ['scheduled'],
        { state: 'failed', reason },
        MAINTENANCE_ACTOR,
        'maintenance.failed',
      );
      log.error({ window: w.id, err: error.message }, `maintenance window ${w.id} failed: ${reason}`);
      return;
    }
    const moved = await repo.transition(
      scope,
      w.id,
      ['scheduled'],
      { state: 'running', runId: run.id },
      MAINTENANCE_ACTOR,
      'maintenance.start',
    );
    if (moved)
      log.info(
        { window: w.id, runId: run.id, late: now.getTime() > Date.parse(w.startsAt) },
        `maintenance window ${w.id}: run ${run.id} started`,
      );
  }

  async function materialise(now: Date): Promise<void> {
    const entries = recurringWindows();
    if (entries.length === 0) return;
    const horizon = new Date(now.getTime() + RECURRING_HORIZON_MS);
    const known = new Set(
      (await repo.list(scope, { endsAfter: now, startsBefore: horizon, limit: 1000 })).map((w) => w.id),
    );
    for (const { name, cron, durationMs, entry } of entries) {
      for (let at = cron.next(now); at && at < horizon; at = cron.next(at)) {
        const id = recurringWindowId(at, name);
        const skippedAt = skipped.get(id);
        if (known.has(id) || (skippedAt !== undefined && now.getTime() - skippedAt < RETRY_SKIPPED_MS))
          continue;
        const startsAt = at.toISOString();
        const endsAt = new Date(at.getTime() + durationMs).toISOString();
        try {
          await repo.create(
            scope,
            {
              id,
              name,
              origin: 'recurring',
              startsAt,
              endsAt,
              timezone: cron.timezone,
              tasks: entry.tasks,
              message: entry.message,
              hold: false,
              state: 'scheduled',
              createdBy: `maintenance.recurring ${name}`,
              createdAt: startsAt,
              updatedAt: startsAt,
            },
            MAINTENANCE_ACTOR,
          );
          known.add(id);
          skipped.delete(id);
          log.info(
            { window: id, startsAt, endsAt },
            `maintenance window ${id} scheduled (recurring ${name})`,
          );
        } catch (err) {
          if (!(err instanceof ConflictError)) throw err;
          const logged = skipped.has(id);
          skipped.set(id, now.getTime());
          if (logged || /exists already/.test(err.message)) continue;
          log.warn(
            { window: id, recurring: name, err: err.message },
            `recurring maintenance ${name} at ${startsAt} skipped: ${err.message}`,
          );
        }
      }
    }
  }

  async function detail(id: string): Promise<WindowDetail> {
    checkWindowId(id);
    const window = await repo.get(scope, id);
    if (!window) throw new NotFoundError(`no maintenance window ${id} (gameops maintenance list shows them)`);
    return { window, notices: await repo.notices(id) };
  }

  async function tickWindow(w: MaintenanceWindow, now: Date): Promise<void> {
    const start = Date.parse(w.startsAt);
    if (w.state === 'scheduled' && now.getTime() >= Date.parse(w.endsAt)) {
      const reason = 'missed: gameops was not running during the window; nothing was done';
      await repo.transition(
        scope,
        w.id,
        ['scheduled'],
        { state: 'cancelled', reason },
        MAINTENANCE_ACTOR,
        'maintenance.missed',
      );
      log.warn({ window: w.id }, `maintenance window ${w.id} ${reason}`);
      return;
    }
    if (now.getTime() < start) await sendDueNotice(w, now);
    if (w.state === 'scheduled' && now.getTime() >= start - settings.leadTime) await startRun(w, now);
    else if (w.state === 'running') await follow(w);
  }

  return {
    timezone,

    async plan(input, actor, options = {}) {
      const parsed = planInputSchema.safeParse(input);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const field = issue?.path.join('.') || 'input';
        throw new InputError(`${field}: ${issue?.message ?? 'invalid'}`, { details: { field } });
      }
      const p = parsed.data;
      const now = clock.now();
      let startsAt = parseWindowTime(p.startsAt, timezone, 'start');
      const endsAt = parseWindowTime(p.endsAt, timezone, 'end');
      if (startsAt.getTime() < now.getTime() - PAST_TOLERANCE_MS)
        throw new InputError(
          `start: ${bothZones(startsAt, timezone)} is in the past (now ${bothZones(now, timezone)})`,
          { details: { field: 'start' } },
        );
      if (startsAt < now) startsAt = now;
      if (endsAt <= startsAt)
        throw new InputError(
          `end: ${bothZones(endsAt, timezone)} is not after the start ${bothZones(startsAt, timezone)}`,
          {
            details: { field: 'end' },
          },
        );
      if (endsAt.getTime() - startsAt.getTime() > MAX_WINDOW_MS)
        throw new InputError(
          `end: the window lasts ${Math.round((endsAt.getTime() - startsAt.getTime()) / 60_000)} minutes; a window is at most 24 hours`,
          { details: { field: 'end' } },
        );
      const tasks: MaintenanceTask[] = p.tasks ?? (p.version ? ['db', 'logs', 'update'] : ['db', 'logs']);
      if (tasks.includes('update') && !p.version)
        throw new InputError('version: the update task needs a version (--version)', {
          details: { field: 'version' },
        });
      if (p.version && !tasks.includes('update'))
        throw new InputError(
          `tasks: a version is given but the tasks (${tasks.join(', ')}) do not include update`,
          {
            details: { field: 'tasks' },
          },
        );
      if (p.version) await checkVersion(p.version);
      const window: MaintenanceWindow = {
        id: adhocWindowId(startsAt),
        name: p.name ?? 'maintenance',
        origin: 'adhoc',
        startsAt: startsAt.toISOString(),
        endsAt: endsAt.toISOString(),
        timezone,
        tasks: [...new Set(tasks)],
        version: p.version,
        message: p.message,
        hold: p.hold ?? false,
        state: 'scheduled',
        createdBy: actor.name,
        createdAt: now.toISOString(),
        updatedAt: now.toISOString(),
      };
      const other = await overlapping(window.startsAt, window.endsAt);
      if (other)
        throw new ConflictError(
          `the window ${bothZones(window.startsAt, timezone)} – ${bothZones(window.endsAt, timezone)} overlaps ` +
            `maintenance window ${other.id} ("${other.name}", ${other.state}, ${bothZones(other.startsAt, timezone)} – ` +
            `${bothZones(other.endsAt, timezone)}); cancel it first (gameops maintenance cancel ${other.id}) or pick another time`,
          { details: { window: other.id, startsAt: other.startsAt, endsAt: other.endsAt } },
        );
      const [plan, estimated] = await Promise.all([
        runs.plan({ runbook: MAINTENANCE_RUNBOOK, params: { ...runParams(window) } }, actor),
        estimate(startsAt, endsAt),
      ]);
      const stored = options.dryRun ? window : await repo.create(scope, window, actor);
      return {
        window: stored,
        stored: !options.dryRun,
        runStartsAt: new Date(Math.max(now.getTime(), startsAt.getTime() - settings.leadTime)).toISOString(),
        estimate: estimated,
        plan,
        notices: upcomingNotices(startsAt, settings.notices.before, now),
      };
    },

    async list(options = {}) {
      const since = options.since ?? new Date(clock.now().getTime() - LIST_SINCE_MS);
      return repo.list(scope, { endsAfter: since, limit: options.limit ?? 200 });
    },

    get: detail,

    async cancel(id, actor, reason) {
      const { window } = await detail(id);
      if (window.state === 'scheduled') {
        const done = await repo.transition(
          scope,
          id,
          ['scheduled'],
          { state: 'cancelled', reason: `cancelled by ${actor.name}: ${reason}` },
          actor,
          'maintenance.cancel',
        );
        if (done) {
          await sendCancelledNotice(done, reason);
          return done;
        }
        // Its run started meanwhile: cancelled as a running one below.
      }
      const current = (await repo.get(scope, id)) ?? window;
      if (current.state !== 'running' || !current.runId)
        throw new ConflictError(
          `maintenance window ${id} is ${current.state}; only a scheduled or running window can be cancelled`,
        );
      const run = await runs.get(current.runId, actor);
      if (TERMINAL_RUN_STATUSES.includes(run.status)) {
        await follow(current);
        throw new ConflictError(
          `maintenance window ${id}'s run ${run.id} has already ${run.status}; nothing to cancel`,
        );
      }
      const plan = await runs
        .plan({ runbook: run.runbook, params: { ...runParams(current) } }, actor)
        .catch(() => undefined);
      const changing = new Set(
        plan?.steps.filter((s) => s.effect !== undefined && s.effect !== 'read-only').map((s) => s.id),
      );
      const changed = run.steps.filter(
        (s) =>
          (s.status === 'succeeded' || s.status === 'running' || s.status === 'needs-verification') &&
          (plan ? changing.has(s.id) : s.kind === 'action'),
      );
      if (changed.length > 0)
        throw new ConflictError(
          `maintenance window ${id}'s run ${run.id} has already changed the service (${changed.map((s) => `${s.id} ${s.status}`).join(', ')}); ` +
            "the engine's cancel does not compensate, so cancelling now would leave maintenance on without a run. " +
            'Let the run finish (a failure compensates), or cancel the run itself (gameops runs cancel) and put the service back by hand',
          { details: { window: id, runId: run.id, changed: changed.map((s) => s.id) } },
        );
      await runs.cancel(run.id, actor, `maintenance window ${id} cancelled: ${reason}`);
      const done = await repo.transition(
        scope,
        id,
        ['running'],
        { state: 'cancelled', reason: `cancelled by ${actor.name}: ${reason}` },
        actor,
        'maintenance.cancel',
      );
      const result = done ?? (await repo.get(scope, id)) ?? current;
      await sendCancelledNotice(result, reason);
      return result;
    },

    async tick(now) {
      try {
        await materialise(now);
      } catch (err) {
        log.error(
          { err: errorMessage(err) },
          `recurring maintenance windows not materialised: ${errorMessage(err)}`,
        );
      }
      let open: MaintenanceWindow[];
      try {
        open = await repo.list(scope, { states: OPEN_WINDOW_STATES, limit: 1000 });
      } catch (err) {
        log.error({ err: errorMessage(err) }, `maintenance windows could not be read: ${errorMessage(err)}`);
        return;
      }
      for (const w of open) {
        try {
          await tickWindow(w, now);
        } catch (err) {
          log.error(
            { window: w.id, err: errorMessage(err) },
            `maintenance window ${w.id}: ${errorMessage(err)} (tried again next tick)`,
          );
        }
      }
    },

    async activeWindow(now) {
      const iso = now.toISOString();
      const open = await repo.list(scope, {
        states: OPEN_WINDOW_STATES,
        endsAfter: now,
        startsBefore: new Date(now.getTime() + 1),
        limit: 5,
      });
      return open.find((w) => w.startsAt <= iso && iso < w.endsAt);
    },
  };
}
