/**
 * Maintenance windows (issue #7, runbook §4.1): planning (checked against the clock, the other windows and
 * the platform's versions), the notices before a window, starting the `maintenance` run, following it to
 * the window's end state, and the answer to the scheduler's "is a window open now?".
 *
 * Everything happens on the injected clock, in `tick(now)` (serve's background loop calls it about every
 * second) and in the calls people make. What must happen once is claimed in the store first: a notice by
 * its row (each attempt once across restarts and instances; a `failed` one is tried again, and one a dead
 * process left `sending` for 2 minutes, until the next offset is due), a window's run by moving the window
 * `scheduled → running` with no run id yet (a conditional update: a cancel in between wins, and a run
 * started for a window cancelled meanwhile is cancelled), then the run by its idempotency key
 * `maintenance:<window id>`.
 *
 * A run starts only while enough of the window remains (REQUIRED_REMAINING: half the window, at least the
 * drain deadline and 10 minutes, at most the whole window); a window restarted later is missed. Two
 * windows' runs never overlap: spans are compared from `leadTime` before each start, and a run does not
 * start while another window of the scope is running. Players who were told of a window hear when it
 * ends without having started (cancelled, missed, failed before logins closed).
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
  playerTextSchema,
  unsafeCharacter,
} from '../core/index.ts';
import type { GameopsConfig } from '../config/index.ts';
import type { PrometheusClient } from '../connectors/prometheus.ts';
import type { Actor, Plan, RunService, RunView } from '../runbooks/model.ts';
import { TERMINAL_RUN_STATUSES } from '../runbooks/model.ts';
import { parseCron, type CronSchedule } from '../schedules/cron.ts';
import type { MaintenanceNotice, RunScope, Store } from '../store/index.ts';
import { OPEN_WINDOW_STATES } from '../store/index.ts';
import { estimatePlayerMinutes, type CurrentPlayers } from './estimate.ts';
import { dueNotice, leadText, upcomingNotices } from './notices.ts';
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
/** The shortest window (as for recurring ones, `maintenance.recurring[].duration`): a drain alone takes longer. */
export const MIN_WINDOW_MS = 5 * 60_000;
/** Recurring windows are materialised this far ahead (a week of notices, and a day more). */
export const RECURRING_HORIZON_MS = 8 * 86_400_000;
/** The longest in-game notice (POST /ops/notice, docs/game-server-contract.md). */
const MAX_NOTICE_CHARS = 500;
/** A recurring occurrence that overlapped another window is tried again this often. */
const RETRY_SKIPPED_MS = 10 * 60_000;
/** The window listing's default look-back. */
const LIST_SINCE_MS = 7 * 86_400_000;
/** A run needs at least this much of its window left beyond the drain deadline (see requiredRemainingMs). */
const AFTER_DRAIN_MS = 10 * 60_000;
/** A held window is checked for a succeeded `maintenance-reopen` run this often. */
const HELD_CHECK_MS = 30_000;
/** The runbook that ends a held window (src/runbooks/builtin/maintenance.ts). */
export const REOPEN_RUNBOOK = 'maintenance-reopen';
/** The `maintenance` runbook's step that closes logins: before it, a run has changed nothing players see. */
const CLOSE_STEP = 'close';
/** Step states of a step that has not been tried (nothing changed by it). */
const UNTRIED: readonly string[] = ['pending', 'skipped', 'cancelled', 'waiting'];
/** States of the windows a tick follows. */
const FOLLOWED_STATES: readonly WindowState[] = ['scheduled', 'running', 'held'];
/** Errors that trying again cannot fix: the window is marked failed instead of retried every tick. */
const NON_RETRYABLE: readonly string[] = [
  ErrorCode.input,
  ErrorCode.notFound,
  ErrorCode.notAllowed,
  ErrorCode.conflict,
];

/** What the service needs of the fleet: players online, and telling players (the game-server contract). */
export interface MaintenanceFleet {
  status(filter?: { signal?: AbortSignal }): Promise<{
    totals: { playersOnline: number; notAnswering?: number; instances?: number; ready?: number };
  }>;
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
  runs: Pick<RunService, 'plan' | 'start' | 'get' | 'cancel' | 'list'>;
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
  /**
   * The notices that will be sent, earliest first: those still to come at their times, and first the
   * latest one whose time has passed already, sent at once (`atOnce`, `at` now), telling the time left.
   */
  notices: Array<DueNotice & { atOnce?: boolean }>;
  /**
   * Occurrences of `maintenance.recurring` this window takes the place of: not planned yet, their runs'
   * spans meet this one's, so serve skips them (and plans them if this window is cancelled).
   */
  replaces: Array<{ name: string; startsAt: string; endsAt: string }>;
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
  /**
   * The window in progress at `now`, for the scheduler's hold-off: one whose run is going (`running`,
   * whatever its planned end), one `held` (maintenance mode stays on until reopened), or a scheduled one
   * from `leadTime` before its start (its run starts then) until its end.
   */
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
  message: playerTextSchema.optional(),
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

/**
 * How much of a window must remain for its run to start: half the window, and at least the drain
 * deadline plus 10 minutes (players drain, then the tasks need some time), but never more than the whole
 * window (a short window still starts on time). A run started later would close logins past the
 * announced end: the window is missed instead.
 */
export function requiredRemainingMs(window: MaintenanceWindow, drainDeadlineMs: number): number {
  const length = Date.parse(window.endsAt) - Date.parse(window.startsAt);
  return Math.min(length, Math.max(length / 2, drainDeadlineMs + AFTER_DRAIN_MS));
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
  /** Windows whose run waits for another running window (logged once). */
  const waiting = new Set<string>();
  /** Recurring occurrence ids taken by a window with other times (logged once). */
  const mismatched = new Set<string>();
  /** Runs still going past their window's end after changing the service (followed, not cancelled). */
  const overran = new Set<string>();
  /** When each held window was last checked for a reopen run. */
  const heldChecked = new Map<string, number>();
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

  /** Recurring occurrences not recorded yet whose [start − leadTime, end] meets this one's: serve skips them. */
  async function replacedOccurrences(startsAt: Date, endsAt: Date): Promise<PlannedWindow['replaces']> {
    const out: PlannedWindow['replaces'] = [];
    const from = startsAt.getTime() - settings.leadTime;
    const until = endsAt.getTime() + settings.leadTime;
    for (const { name, cron, durationMs } of recurringWindows()) {
      for (let at = cron.next(new Date(from - durationMs)); at && at.getTime() < until; at = cron.next(at)) {
        if (at.getTime() + durationMs <= from) continue;
        if (await repo.get(scope, recurringWindowId(at, name))) continue;
        out.push({
          name,
          startsAt: at.toISOString(),
          endsAt: new Date(at.getTime() + durationMs).toISOString(),
        });
      }
    }
    return out;
  }

  /** A scheduled or running window whose [start − leadTime, end] meets this one's. */
  async function overlapping(startsAt: string, endsAt: string): Promise<MaintenanceWindow | undefined> {
    const open = await repo.list(scope, {
      states: OPEN_WINDOW_STATES,
      endsAfter: new Date(Date.parse(startsAt) - settings.leadTime),
      startsBefore: new Date(Date.parse(endsAt) + settings.leadTime),
      limit: 1,
    });
    return open[0];
  }

  function estimate(startsAt: Date, endsAt: Date, now: Date): Promise<PlayerMinutesEstimate> {
    const fleet = deps.fleet;
    return estimatePlayerMinutes(
      {
        scope,
        now,
        playersSelector: settings.playersSelector,
        currentPlayers: fleet
          ? async (): Promise<CurrentPlayers> => {
              const { totals } = await (await fleet()).status({ signal: AbortSignal.timeout(5000) });
              return {
                players: totals.playersOnline,
                notAnswering: totals.notAnswering,
                instances: totals.instances,
              };
            }
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
    await repo.finishNotice(scope, w.id, key, status, detail);
    const fields = { window: w.id, notice: key, status, ...detail };
    if (status === 'sent') log.info(fields, `maintenance window ${w.id}: notice ${key} sent`);
    else
      log.warn(
        fields,
        `maintenance window ${w.id}: notice ${key} ${status === 'failed' ? 'could not be sent' : 'sent in part'}`,
      );
  }

  async function sendDueNotice(w: MaintenanceWindow, now: Date): Promise<void> {
    // Only a notice that went out (or in part) blocks: a failed or abandoned one is tried again while it
    // is the latest due (claimNotice decides when, one claimer per attempt).
    const done = new Set(
      (await repo.notices(scope, w.id))
        .filter((n) => n.status === 'sent' || n.status === 'partial')
        .map((n) => n.key),
    );
    const due = dueNotice(new Date(w.startsAt), settings.notices.before, done, now);
    if (!due) return;
    const claim = await repo.claimNotice(scope, w.id, due.key, new Date(due.at), { retry: true });
    if (!claim.claimed) return;
    if (claim.retryOf === 'stale')
      log.warn(
        { window: w.id, notice: due.key, attempt: claim.attempts },
        `maintenance window ${w.id}: notice ${due.key} was left sending (a process stopped while sending it); sending it again`,
      );
    else if (claim.retryOf === 'failed')
      log.info(
        { window: w.id, notice: due.key, attempt: claim.attempts },
        `maintenance window ${w.id}: notice ${due.key} failed before; trying again (attempt ${claim.attempts})`,
      );
    // The time left, not the offset's name: a notice sent late says the truth.
    const lead = leadText(new Date(w.startsAt), now);
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

  /**
   * Tells players and channels that a window will not happen, when a notice before it went out (or may
   * have: one left sending). Every path that ends a window before its run closed logins calls it.
   */
  async function sendCancelledNotice(w: MaintenanceWindow, reason: string): Promise<void> {
    const before = (await repo.notices(scope, w.id)).filter(
      (n) => n.key.startsWith('T-') && n.status !== 'failed',
    );
    if (before.length === 0) return;
    if (!(await repo.claimNotice(scope, w.id, 'cancelled', clock.now())).claimed) return;
    await send(
      w,
      'cancelled',
      `The maintenance planned for ${zonedTime(w.startsAt, w.timezone)} is cancelled.`,
      `${config.service.name} (${config.service.environment}) maintenance window ${w.id} ` +
        `(${bothZones(w.startsAt, w.timezone)}) is CANCELLED: ${reason}`,
    );
  }

  /** Ends a window that has not started (`from`), telling whoever heard of it. */
  async function endUnstarted(
    w: MaintenanceWindow,
    from: readonly WindowState[],
    state: 'cancelled' | 'failed',
    reason: string,
    action: string,
    options: { ifRunId?: string | null } = {},
  ): Promise<MaintenanceWindow | undefined> {
    const done = await repo.transition(
      scope,
      w.id,
      from,
      { state, reason },
      MAINTENANCE_ACTOR,
      action,
      options,
    );
    if (!done) return undefined;
    log.warn({ window: w.id, state, reason }, `maintenance window ${w.id} ${state}: ${reason}`);
    await sendCancelledNotice(done, reason);
    return done;
  }

  /** The run's steps that changed (or may have changed) the service: what a cancel cannot undo. */
  async function changedSteps(run: RunView, w: MaintenanceWindow, actor: Actor) {
    const plan = await runs
      .plan({ runbook: run.runbook, params: { ...runParams(w) } }, actor)
      .catch(() => undefined);
    const changing = new Set(
      plan?.steps.filter((s) => s.effect !== undefined && s.effect !== 'read-only').map((s) => s.id),
    );
    return run.steps.filter(
      (s) =>
        (s.status === 'succeeded' || s.status === 'running' || s.status === 'needs-verification') &&
        (plan ? changing.has(s.id) : s.kind === 'action'),
    );
  }

  /**
   * The window's state after its run ended, from the run's steps: whether logins were closed (the
   * `close` step was tried) and whether putting the service back failed.
   */
  function endState(w: MaintenanceWindow, run: RunView): { state: WindowState; reason: string | null } {
    const reopen = `gameops run ${REOPEN_RUNBOOK} -p window=${w.id}`;
    if (run.status === 'succeeded') return { state: 'completed', reason: null };
    const close = run.steps.find((s) => s.id === CLOSE_STEP);
    // Without a close step (an unexpected runbook) assume the worst: it may have changed something.
    const closed = close === undefined || !UNTRIED.includes(close.status);
    const why = run.reason ?? `run ${run.id} ${run.status}`;
    if (run.status === 'cancelled')
      return closed
        ? {
            state: 'held',
            reason:
              `run ${run.id} was cancelled after logins were closed (${why}): maintenance mode is still on; ` +
              `put the service back with ${reopen}`,
          }
        : { state: 'cancelled', reason: why };
    if (!closed) return { state: 'failed', reason: why };
    const compensationFailed =
      /COMPENSATION FAILED/.test(why) ||
      run.steps.some(
        (s) => s.compensation?.status === 'failed' || s.compensation?.status === 'needs-verification',
      );
    if (compensationFailed)
      return {
        state: 'held',
        reason: `putting the service back failed, it is not known to be back (${why}); check it and run ${reopen}`,
      };
    return { state: w.hold ? 'held' : 'failed', reason: why };
  }

  /** Follows a running window's run: records its end state; cancels one that changed nothing by the end. */
  async function follow(w: MaintenanceWindow, now: Date): Promise<void> {
    if (!w.runId) return;
    const run = await runs.get(w.runId, MAINTENANCE_ACTOR);
    if (!TERMINAL_RUN_STATUSES.includes(run.status)) {
      if (now.getTime() < Date.parse(w.endsAt) || overran.has(run.id)) return;
      // The window is over and the run has changed nothing yet (an approval nobody gave, a preflight
      // still retrying): starting now would close logins after the announced end.
      if ((await changedSteps(run, w, MAINTENANCE_ACTOR)).length > 0) {
        overran.add(run.id); // it runs on past the end; asked once
        return;
      }
      const reason =
        `the window ended before its run ${run.id} changed anything (${run.reason ?? run.status}); ` +
        'the run was cancelled, nothing was done';
      await runs.cancel(run.id, MAINTENANCE_ACTOR, `maintenance window ${w.id} ended: ${reason}`);
      await endUnstarted(w, ['running'], 'cancelled', reason, 'maintenance.missed', { ifRunId: run.id });
      return;
    }
    const { state, reason } = endState(w, run);
    const done = await repo.transition(
      scope,
      w.id,
      ['running'],
      { state, reason },
      MAINTENANCE_ACTOR,
      `maintenance.${state}`,
      { ifRunId: run.id },
    );
    if (!done) return;
    const fields = { window: w.id, runId: run.id, state, ...(reason ? { reason } : {}) };
    if (state === 'completed') log.info(fields, `maintenance window ${w.id} completed (run ${run.id})`);
    else
      log.warn(fields, `maintenance window ${w.id} ${state} (run ${run.id}${reason ? `: ${reason}` : ''})`);
    const close = run.steps.find((s) => s.id === CLOSE_STEP);
    if ((state === 'failed' || state === 'cancelled') && close && UNTRIED.includes(close.status))
      await sendCancelledNotice(done, reason ?? `run ${run.id} ${run.status}`);
  }

  /** A held window ends (completed) once a `maintenance-reopen` run for it (or its run) has succeeded. */
  async function followHeld(w: MaintenanceWindow, now: Date): Promise<void> {
    const last = heldChecked.get(w.id);
    if (last !== undefined && now.getTime() - last < HELD_CHECK_MS) return;
    heldChecked.set(w.id, now.getTime());
    const reopens = await runs.list(
      { runbook: REOPEN_RUNBOOK, status: ['succeeded'], limit: 20 },
      MAINTENANCE_ACTOR,
    );
    for (const summary of reopens) {
      if (summary.createdAt < w.updatedAt) continue;
      const run = await runs.get(summary.id, MAINTENANCE_ACTOR);
      const params = run.params as { window?: unknown; run?: unknown };
      if (params.window !== w.id && (w.runId === undefined || params.run !== w.runId)) continue;
      const reason = `held (${w.reason ?? 'maintenance stayed on'}), then reopened by run ${run.id}`;
      const done = await repo.transition(
        scope,
        w.id,
        ['held'],
        { state: 'completed', reason },
        MAINTENANCE_ACTOR,
        'maintenance.reopened',
      );
      if (done) {
        heldChecked.delete(w.id);
        log.info({ window: w.id, runId: run.id }, `maintenance window ${w.id} completed: ${reason}`);
      }
      return;
    }
  }

  /**
   * Starts a window's run: checks enough of it remains and no other window runs, claims the window
   * (`scheduled → running` with no run id), starts the run (its idempotency key makes a retry, or another
   * instance, get the same run), then records the run id. A window cancelled meanwhile gets its run
   * cancelled (it has only read so far: it waits for the start).
   */
  async function startRun(w: MaintenanceWindow, now: Date): Promise<void> {
    let claimed = w;
    const remaining = Date.parse(w.endsAt) - Math.max(now.getTime(), Date.parse(w.startsAt));
    const required = requiredRemainingMs(w, settings.drain.deadline);
    if (remaining < required) {
      // Also a window claimed before a crash whose run was never started: too late now.
      const reason =
        remaining <= 0
          ? 'missed: gameops was not running during the window; nothing was done'
          : `missed: only ${Math.round(remaining / 60_000)} of the window's minutes remained when gameops could ` +
            `start it (it needs ${Math.round(required / 60_000)}: the drain deadline and the tasks would close ` +
            'logins past the announced end); nothing was done';
      await endUnstarted(w, [w.state], 'cancelled', reason, 'maintenance.missed', { ifRunId: null });
      return;
    }
    if (w.state === 'scheduled') {
      const running = (await repo.list(scope, { states: ['running'], limit: 5 })).find((o) => o.id !== w.id);
      if (running) {
        if (!waiting.has(w.id))
          log.warn(
            { window: w.id, other: running.id },
            `maintenance window ${w.id}: its run waits for window ${running.id}, still running`,
          );
        waiting.add(w.id);
        return;
      }
      waiting.delete(w.id);
      const moved = await repo.transition(
        scope,
        w.id,
        ['scheduled'],
        { state: 'running', runId: null },
        MAINTENANCE_ACTOR,
        'maintenance.start',
        { ifRunId: null },
      );
      // Cancelled (or claimed by another instance) since this tick read it.
      if (!moved) return;
      claimed = moved;
    }
    let run: RunView;
    try {
      run = await runs.start(
        {
          runbook: MAINTENANCE_RUNBOOK,
          params: { ...runParams(claimed) },
          trigger: 'schedule',
          idempotencyKey: windowRunKey(claimed.id),
          reason: `maintenance window ${claimed.id} (${claimed.startsAt}–${claimed.endsAt})`,
        },
        MAINTENANCE_ACTOR,
      );
    } catch (err) {
      const error = toGameopsError(err);
      // Left running with no run id: the next tick tries again (same idempotency key).
      if (!NON_RETRYABLE.includes(error.code)) throw error;
      await endUnstarted(
        claimed,
        ['running'],
        'failed',
        `the maintenance run could not be started: ${error.message}`,
        'maintenance.failed',
        { ifRunId: null },
      );
      return;
    }
    const recorded = await repo.transition(
      scope,
      claimed.id,
      ['running'],
      { runId: run.id },
      MAINTENANCE_ACTOR,
      'maintenance.run',
      { ifRunId: null },
    );
    if (recorded) {
      log.info(
        { window: w.id, runId: run.id, late: now.getTime() > Date.parse(w.startsAt) },
        `maintenance window ${w.id}: run ${run.id} started`,
      );
      return;
    }
    const current = await repo.get(scope, w.id);
    if (current?.runId === run.id) return; // another instance recorded the same run
    if (!TERMINAL_RUN_STATUSES.includes(run.status))
      await runs.cancel(
        run.id,
        MAINTENANCE_ACTOR,
        `maintenance window ${w.id} is ${current?.state ?? 'gone'}: its run is not wanted`,
      );
    log.warn(
      { window: w.id, runId: run.id, state: current?.state },
      `maintenance window ${w.id} was ${current?.state ?? 'removed'} while its run ${run.id} started: the run is cancelled`,
    );
  }

  /**
   * Cancels the scheduled occurrences of recurring windows that the config no longer plans: the entry is
   * gone, disabled (or its cron unusable), or its cron does not give that start any more.
   */
  async function dropUnplanned(entries: readonly RecurringEntry[], now: Date): Promise<void> {
    const planned = await repo.list(scope, { states: ['scheduled'], endsAfter: now, limit: 1000 });
    for (const w of planned) {
      if (w.origin !== 'recurring') continue;
      const start = Date.parse(w.startsAt);
      const entry = entries.find((e) => e.name === w.name);
      if (entry && entry.cron.next(new Date(start - 1))?.getTime() === start) continue;
      const reason = entry
        ? `maintenance.recurring ${w.name} no longer plans ${w.startsAt} (its cron changed)`
        : `maintenance.recurring ${w.name} is no longer configured (removed or disabled)`;
      await endUnstarted(w, ['scheduled'], 'cancelled', reason, 'maintenance.unplanned');
    }
  }

  async function materialise(now: Date): Promise<void> {
    const entries = recurringWindows();
    await dropUnplanned(entries, now);
    if (entries.length === 0) return;
    const horizon = new Date(now.getTime() + RECURRING_HORIZON_MS);
    const known = new Map(
      (await repo.list(scope, { endsAfter: now, startsBefore: horizon, limit: 1000 })).map((w) => [w.id, w]),
    );
    for (const { name, cron, durationMs, entry } of entries) {
      for (let at = cron.next(now); at && at < horizon; at = cron.next(at)) {
        const id = recurringWindowId(at, name);
        const startsAt = at.toISOString();
        const endsAt = new Date(at.getTime() + durationMs).toISOString();
        const existing = known.get(id);
        if (existing) {
          // The same occurrence: fine. A window of that id with other times is not this one: said once.
          if ((existing.startsAt !== startsAt || existing.endsAt !== endsAt) && !mismatched.has(id)) {
            mismatched.add(id);
            log.warn(
              { window: id, recurring: name, state: existing.state },
              `recurring maintenance ${name} at ${startsAt} skipped: maintenance window ${id} exists already ` +
                `(${existing.state}, ${existing.startsAt}–${existing.endsAt}), not ${startsAt}–${endsAt}`,
            );
          }
          continue;
        }
        const skippedAt = skipped.get(id);
        if (skippedAt !== undefined && now.getTime() - skippedAt < RETRY_SKIPPED_MS) continue;
        try {
          const created = await repo.create(
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
            { leadMs: settings.leadTime },
          );
          known.set(id, created);
          skipped.delete(id);
          log.info(
            { window: id, startsAt, endsAt },
            `maintenance window ${id} scheduled (recurring ${name})`,
          );
        } catch (err) {
          if (!(err instanceof ConflictError)) throw err;
          const logged = skipped.has(id);
          skipped.set(id, now.getTime());
          const details = (err.details ?? {}) as { exists?: boolean; startsAt?: string; endsAt?: string };
          // The same occurrence (read before the horizon moved, or planned by another instance) is fine;
          // a row of that id with other times is not this window and is said once.
          if (logged || (details.exists && details.startsAt === startsAt && details.endsAt === endsAt))
            continue;
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
    return { window, notices: await repo.notices(scope, id) };
  }

  async function tickWindow(w: MaintenanceWindow, now: Date): Promise<void> {
    if (w.state === 'held') return followHeld(w, now);
    const start = Date.parse(w.startsAt);
    if (now.getTime() < start && now.getTime() < Date.parse(w.endsAt)) await sendDueNotice(w, now);
    const due = now.getTime() >= start - settings.leadTime;
    if (w.state === 'scheduled' && due) await startRun(w, now);
    else if (w.state === 'running' && w.runId) await follow(w, now);
    // Claimed (by a process that stopped before starting the run): start it, or mark it missed.
    else if (w.state === 'running' && due) await startRun(w, now);
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
      if (endsAt.getTime() - startsAt.getTime() < MIN_WINDOW_MS)
        throw new InputError(
          `end: the window lasts ${Math.round((endsAt.getTime() - startsAt.getTime()) / 1000)} seconds; a window is at least 5 minutes`,
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
            `${bothZones(other.endsAt, timezone)}): a window's run starts maintenance.leadTime ` +
            `(${Math.round(settings.leadTime / 60_000)}m) before it, so its run starts at ` +
            `${bothZones(new Date(Date.parse(window.startsAt) - settings.leadTime), timezone)} and the other's at ` +
            `${bothZones(new Date(Date.parse(other.startsAt) - settings.leadTime), timezone)}, and runs never overlap; ` +
            `cancel it first (gameops maintenance cancel ${other.id}) or pick another time`,
          { details: { window: other.id, startsAt: other.startsAt, endsAt: other.endsAt } },
        );
      const [plan, estimated, replaces] = await Promise.all([
        runs.plan({ runbook: MAINTENANCE_RUNBOOK, params: { ...runParams(window) } }, actor),
        estimate(startsAt, endsAt, now),
        replacedOccurrences(startsAt, endsAt),
      ]);
      const stored = options.dryRun
        ? window
        : await repo.create(scope, window, actor, { leadMs: settings.leadTime });
      return {
        window: stored,
        stored: !options.dryRun,
        runStartsAt: new Date(Math.max(now.getTime(), startsAt.getTime() - settings.leadTime)).toISOString(),
        estimate: estimated,
        plan,
        notices: upcomingNotices(startsAt, settings.notices.before, now),
        replaces,
      };
    },

    async list(options = {}) {
      const since = options.since ?? new Date(clock.now().getTime() - LIST_SINCE_MS);
      return repo.list(scope, { endsAfter: since, limit: options.limit ?? 200 });
    },

    get: detail,

    async cancel(id, actor, reason) {
      // Kept with the window, shown and sent to the channels: one line, as the players' message.
      const bad = unsafeCharacter(reason);
      if (bad !== undefined)
        throw new InputError(
          `reason: control and text-direction characters are not allowed (found ${bad}); one line of text`,
          { details: { field: 'reason' } },
        );
      const { window } = await detail(id);
      /** The window cancelled if it is still in `from` (and, given `ifRunId`, still has that run). */
      const cancelFrom = (from: readonly WindowState[], ifRunId?: string | null) =>
        repo.transition(
          scope,
          id,
          from,
          { state: 'cancelled', reason: `cancelled by ${actor.name}: ${reason}` },
          actor,
          'maintenance.cancel',
          ifRunId === undefined ? {} : { ifRunId },
        );
      if (window.state === 'scheduled') {
        const done = await cancelFrom(['scheduled']);
        if (done) {
          await sendCancelledNotice(done, reason);
          return done;
        }
        // Its run started meanwhile: cancelled as a running one below.
      }
      let current = (await repo.get(scope, id)) ?? window;
      if (current.state === 'running' && !current.runId) {
        // Claimed, its run being started: cancelling the window wins; the starter cancels its run.
        const done = await cancelFrom(['running'], null);
        if (done) {
          await sendCancelledNotice(done, reason);
          return done;
        }
        current = (await repo.get(scope, id)) ?? current;
      }
      if (current.state !== 'running' || !current.runId)
        throw new ConflictError(
          `maintenance window ${id} is ${current.state}; only a scheduled or running window can be cancelled`,
        );
      const run = await runs.get(current.runId, actor);
      if (TERMINAL_RUN_STATUSES.includes(run.status)) {
        await follow(current, clock.now());
        throw new ConflictError(
          `maintenance window ${id}'s run ${run.id} has already ${run.status}; nothing to cancel`,
        );
      }
      const changed = await changedSteps(run, current, actor);
      if (changed.length > 0)
        throw new ConflictError(
          `maintenance window ${id}'s run ${run.id} has already changed the service (${changed.map((s) => `${s.id} ${s.status}`).join(', ')}); ` +
            "the engine's cancel does not compensate, so cancelling now would leave maintenance on without a run. " +
            'Let the run finish (a failure compensates), or cancel the run itself (gameops runs cancel) and put the service back by hand',
          { details: { window: id, runId: run.id, changed: changed.map((s) => s.id) } },
        );
      await runs.cancel(run.id, actor, `maintenance window ${id} cancelled: ${reason}`);
      const done = await cancelFrom(['running'], run.id);
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
        open = await repo.list(scope, { states: FOLLOWED_STATES, limit: 1000 });
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
      const at = now.getTime();
      const open = await repo.list(scope, {
        states: FOLLOWED_STATES,
        startsBefore: new Date(at + settings.leadTime + 1),
        limit: 100,
      });
      return open.find(
        (w) =>
          w.state === 'running' ||
          w.state === 'held' ||
          (Date.parse(w.startsAt) - settings.leadTime <= at && at < Date.parse(w.endsAt)),
      );
    },
  };
}
