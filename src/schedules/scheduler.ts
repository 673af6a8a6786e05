/**
 * The scheduler: starts runbook runs on their cron schedules, exactly once per occurrence across
 * restarts and across gameops instances sharing one PostgreSQL store.
 *
 * An occurrence fires by recording it (`schedule_fires`, whose primary key lets one insert win), then
 * starting the run with the idempotency key `schedule:<name>@<occurrence>` and noting the run's id. A
 * process that stops in between leaves a `fired` row without a run; any scheduler of the same service
 * starts it later with the same key (the engine returns the run if it was created after all).
 *
 * Occurrences that passed while gameops was down (or the machine was suspended) are found from the
 * last recorded one, looking back at most max(grace, 7 days) and 1,000 occurrences: the most recent
 * runs once if it is at most `grace` late (or a minute, whichever is more), and the others are recorded
 * as `missed`, one row each. A schedule seen for the first time does not backfill.
 *
 * With `holdOff` (serve passes the maintenance windows' answer), an occurrence that comes due while its
 * runbook is held off is recorded as `held` (not missed: no grace applies) and started when the hold ends,
 * with the same idempotency key, by whichever scheduler of the service sees the end first, also after a
 * restart; the timer wakes at the hold's end. Only the newest held occurrence of a schedule starts (the
 * older ones are coalesced into it and recorded missed), and none when the hold ended more than the grace
 * ago or the schedule is disabled. An orphaned `fired` occurrence asks the hold-off too before it starts.
 *
 * Time is injected (a Clock and a timer function). Sleeps are at most `maxSleepMs` and are re-computed
 * from the clock on waking, so a suspend or a clock step never skips an occurrence silently.
 */
import { ErrorCode, errorMessage, toGameopsError, type Clock } from '../core/index.ts';
import type { Actor, RunService } from '../runbooks/model.ts';
import type { RunScope, ScheduleFire, ScheduleFireRepo } from '../store/index.ts';
import { schedulesError, type ResolvedSchedule } from './resolve.ts';

/** Calls `fn` after `ms` milliseconds; returns a function that cancels it. */
export type SetTimer = (ms: number, fn: () => void) => () => void;

/** The log lines the scheduler writes (pino's shape). */
export interface SchedulerLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface SchedulerOptions {
  schedules: ResolvedSchedule[];
  fires: ScheduleFireRepo;
  /**
   * Where runs start (the engine). `plan` (a dry run) checks at start that each enabled schedule's
   * runbook exists and takes its parameters; `runbooks` names the known ones when one does not.
   */
  runs: Pick<RunService, 'start' | 'plan' | 'runbooks'>;
  /** The service and environment whose schedules these are (instances sharing a database each pass theirs). */
  scope: RunScope;
  clock: Clock;
  log: SchedulerLog;
  /** @default setTimeout, unref'd (a pending wake-up never keeps the process alive) */
  setTimer?: SetTimer;
  /** Longest single sleep before the clock is read again. @default 60000 */
  maxSleepMs?: number;
  /** Called after a run was started (the engine's `wake`, so its worker picks the run up at once). */
  onStarted?: (runId: string) => void;
  /**
   * Whether a schedule's due occurrence must wait (a maintenance window is open and its runbook is held
   * off): until when, and why (named in the run's reason). Asked again for held occurrences on each tick;
   * undefined releases them. A hold-off that fails is logged and the occurrence fires as usual.
   */
  holdOff?: (schedule: ResolvedSchedule, now: Date) => Promise<HoldOff | undefined>;
}

/** Why and until when a schedule's occurrences wait. */
export interface HoldOff {
  until: Date;
  /** e.g. `maintenance window mw-20261203T0400Z-weekly`. */
  reason: string;
}

export interface Scheduler {
  /**
   * Checks the schedules' runbooks, records first sightings, settles occurrences missed while gameops
   * was down, and arms the timer.
   * @throws InputError naming each schedule whose runbook does not exist or whose parameters are wrong.
   */
  start(): Promise<void>;
  /** Fires (or records as missed) every occurrence that is due now, then re-arms. Serialised. */
  tick(): Promise<void>;
  /** Resolves when no tick is in progress (one a timer just began included). */
  idle(): Promise<void>;
  /** When the scheduler next wakes up, while started. */
  nextWake(): Date | undefined;
  /** Cancels the timer and waits for a tick in progress. Safe to call twice. */
  stop(): Promise<void>;
}

const DAY_MS = 86_400_000;
/** How far back missed occurrences are looked for (grace may be larger, up to 7 days). */
const LOOKBACK_MS = 7 * DAY_MS;
/** At most this many missed occurrences are recorded per schedule and gap. */
const MAX_MISSED = 1000;
/** An occurrence this late still counts as on time, whatever the grace (a busy event loop, a slow store). */
const ON_TIME_MS = 60_000;
/** A `fired` row without a run is picked up by another tick once it is this old (its writer is gone). */
const ORPHAN_AFTER_MS = 60_000;
const DEFAULT_MAX_SLEEP_MS = 60_000;
/** Errors that starting the same run again cannot fix. */
const NON_RETRYABLE: readonly string[] = [
  ErrorCode.input,
  ErrorCode.notFound,
  ErrorCode.notAllowed,
  ErrorCode.conflict,
];

/** The identity scheduled runs are started as: the schedule, with the role of the config's author. */
export function scheduleActor(schedule: string): Actor {
  return { id: `schedule:${schedule}`, name: 'scheduler', role: 'admin', kind: 'schedule' };
}

/** The idempotency key of an occurrence's run. */
export function occurrenceKey(schedule: string, occurrence: Date): string {
  return `schedule:${schedule}@${occurrence.toISOString()}`;
}

const realTimer: SetTimer = (ms, fn) => {
  const timer = setTimeout(fn, ms);
  timer.unref();
  return () => clearTimeout(timer);
};

interface State {
  schedule: ResolvedSchedule;
  /** The last occurrence handled (fired, missed, or the instant the schedule was first seen). */
  cursor: Date;
}

export function createScheduler(options: SchedulerOptions): Scheduler {
  const { fires, runs, scope, clock, log } = options;
  const setTimer = options.setTimer ?? realTimer;
  const maxSleepMs = options.maxSleepMs ?? DEFAULT_MAX_SLEEP_MS;
  const states = new Map<string, State>();
  /** Held occurrences (`<schedule>@<occurrence>`) and their hold, for the reason and the wake-up. */
  const holds = new Map<string, HoldOff>();
  let cancelTimer: (() => void) | undefined;
  let wakeAt: Date | undefined;
  let running: Promise<void> = Promise.resolve();
  let started = false;
  let stopped = false;

  const lateLimit = (s: ResolvedSchedule): number => Math.max(s.graceMs, ON_TIME_MS);

  /**
   * Starts (or re-starts, with the same key) the run of a claimed occurrence.
   * @returns false when it could not start for a reason that may pass (it stays to be tried again).
   */
  async function startRun(
    s: ResolvedSchedule,
    occurrence: Date,
    lateMs: number,
    heldBy?: string,
  ): Promise<boolean> {
    const key = occurrenceKey(s.name, occurrence);
    const late = lateMs >= 1000 ? `late by ${lateness(lateMs)}` : undefined;
    const reason =
      `schedule ${s.name} (${s.cron.expression} ${s.cron.timezone}) occurrence ${occurrence.toISOString()}` +
      (heldBy ? `, ${heldBy}` : late ? `, ${late}` : '');
    const fields = { schedule: s.name, runbook: s.runbook, occurrence: occurrence.toISOString() };
    try {
      const run = await runs.start(
        { runbook: s.runbook, params: s.params, trigger: 'schedule', idempotencyKey: key, reason },
        scheduleActor(s.name),
      );
      await fires.setRun(scope, s.name, occurrence, run.id);
      log.info(
        { ...fields, runId: run.id, ...(late ? { late } : {}) },
        `schedule ${s.name}: started run ${run.id}${late ? ` (${late})` : ''}`,
      );
      options.onStarted?.(run.id);
      return true;
    } catch (err) {
      const error = toGameopsError(err);
      if (NON_RETRYABLE.includes(error.code)) {
        // Starting it again would fail the same way: the occurrence is recorded as missed, and why is logged.
        await fires.abandon(scope, s.name, occurrence).catch(() => false);
        log.error(
          { ...fields, err: error.message },
          `schedule ${s.name}: could not start runbook ${s.runbook}; occurrence recorded as missed: ${error.message}`,
        );
        return true;
      } else {
        log.error(
          { ...fields, err: error.message },
          `schedule ${s.name}: could not start runbook ${s.runbook} (tried again later while within grace): ${error.message}`,
        );
        return false;
      }
    }
  }

  /** Fires or records as missed everything of one schedule in (cursor, now]. */
  async function settle(state: State, now: Date): Promise<void> {
    const s = state.schedule;
    const from = new Date(Math.max(state.cursor.getTime(), now.getTime() - Math.max(LOOKBACK_MS, s.graceMs)));
    const { occurrences, truncated } = s.cron.recent(from, now, MAX_MISSED);
    const latest = occurrences.at(-1);
    if (latest === undefined) return;
    const lateMs = now.getTime() - latest.getTime();
    const missed = lateMs <= lateLimit(s) ? occurrences.slice(0, -1) : occurrences;
    if (missed.length > 0) {
      const added = await fires.recordMissed(scope, s.name, missed, now);
      if (added > 0)
        log.warn(
          {
            schedule: s.name,
            missed: added,
            first: missed[0]?.toISOString(),
            last: missed.at(-1)?.toISOString(),
            truncated,
          },
          `schedule ${s.name}: ${added} occurrence${added === 1 ? '' : 's'} missed while gameops was not running` +
            (truncated ? ` (only the latest ${MAX_MISSED} recorded)` : ''),
        );
    }
    if (missed.length < occurrences.length) {
      const hold = await askHoldOff(s, now);
      if (hold) {
        if (await fires.claim(scope, s.name, latest, 'held', now)) {
          holds.set(heldKey(s.name, latest), hold);
          log.info(
            { schedule: s.name, occurrence: latest.toISOString(), until: hold.until.toISOString() },
            `schedule ${s.name}: occurrence ${latest.toISOString()} held off by ${hold.reason} until ${hold.until.toISOString()}`,
          );
        }
      } else if (await fires.claim(scope, s.name, latest, 'fired', now)) await startRun(s, latest, lateMs);
      else
        log.debug(
          { schedule: s.name, occurrence: latest.toISOString() },
          `schedule ${s.name}: occurrence already handled by another gameops`,
        );
    }
    state.cursor = latest;
  }

  /** The hold-off of a schedule at `now`; one that fails to answer holds nothing (logged). */
  async function askHoldOff(s: ResolvedSchedule, now: Date): Promise<HoldOff | undefined> {
    if (!options.holdOff) return undefined;
    try {
      return await options.holdOff(s, now);
    } catch (err) {
      log.error(
        { schedule: s.name, err: errorMessage(err) },
        `schedule ${s.name}: could not ask whether a maintenance window holds it off (${errorMessage(err)}); not held`,
      );
      return undefined;
    }
  }

  /**
   * Settles held occurrences whose hold has ended (this scheduler's or an earlier one's). Per schedule,
   * only the newest starts: the older ones are coalesced into it (recorded missed, so a `*\/15` backup
   * held by a two-hour window runs once, not nine times). None starts when a later occurrence has come due
   * since (the normal firing handles it), when the hold ended more than the grace ago (gameops was not
   * running then), or when the schedule is disabled or no longer configured. Older rows are recorded
   * missed before the newest starts, so a crash in between never leaves an older one to start later; each
   * row changes once (`abandon` is conditional), whichever scheduler of the service gets there first.
   */
  async function releaseHeld(now: Date): Promise<void> {
    // Also without a hold-off (no longer configured): rows held earlier are settled, not left held.
    const rows: ScheduleFire[] = await fires.unstarted(scope, undefined, 'held');
    const bySchedule = new Map<string, ScheduleFire[]>();
    for (const row of rows) bySchedule.set(row.schedule, [...(bySchedule.get(row.schedule) ?? []), row]);
    const seen = new Set<string>();
    for (const [name, held] of bySchedule) {
      const keys = held.map((row) => heldKey(name, new Date(row.occurrence)));
      const state = states.get(name);
      if (!state?.schedule.enabled) {
        for (const key of keys) holds.delete(key);
        const missed = await abandonAll(name, held);
        if (missed > 0)
          log.warn(
            { schedule: name, missed },
            `schedule ${name}: ${countOf(missed, 'held occurrence')} recorded as missed: the schedule is ${state ? 'disabled' : 'no longer configured'}`,
          );
        continue;
      }
      const s = state.schedule;
      const hold = await askHoldOff(s, now);
      if (hold) {
        for (const key of keys) {
          seen.add(key);
          holds.set(key, hold);
        }
        continue;
      }
      // held is oldest first (unstarted's order), and not empty.
      const newest = held[held.length - 1] as ScheduleFire;
      const occurrence = new Date(newest.occurrence);
      const was = keys.map((key) => holds.get(key)).findLast((h) => h !== undefined);
      for (const key of keys.slice(0, -1)) holds.delete(key);
      // The newest keeps its hold while it is held: a start that fails (engine unavailable) is tried
      // again on the next tick, late counted from the hold's end, not from when it was held.
      const newestKey = keys[keys.length - 1] as string;
      if (was) holds.set(newestKey, was);
      seen.add(newestKey);
      // When the hold ended: as this process last heard it (a window may end early); when it did not hear
      // it (gameops was down at the end), the last time an occurrence was recorded held, the latest known.
      const endedAt = was
        ? Math.min(was.until.getTime(), now.getTime())
        : Math.max(...held.map((row) => Date.parse(row.recordedAt)));
      const next = s.cron.next(occurrence);
      const why =
        next !== undefined && next <= now
          ? `occurrence ${next.toISOString()} has come due since`
          : now.getTime() - endedAt > lateLimit(s)
            ? `${was ? 'its hold ended at' : 'it was last seen held (gameops was not running when the hold ended) at'} ` +
              `${new Date(endedAt).toISOString()}, more than the grace of ${lateness(lateLimit(s))} ago`
            : undefined;
      const older = why === undefined ? held.slice(0, -1) : held;
      const coalesced = await abandonAll(name, older);
      if (coalesced > 0)
        log.warn(
          {
            schedule: name,
            missed: coalesced,
            first: older[0]?.occurrence,
            last: older.at(-1)?.occurrence,
          },
          why === undefined
            ? `schedule ${name}: ${countOf(coalesced, 'older held occurrence')} coalesced into ${newest.occurrence} (recorded as missed)`
            : `schedule ${name}: ${countOf(coalesced, 'held occurrence')} recorded as missed: ${why}`,
        );
      if (why !== undefined) {
        holds.delete(newestKey);
        continue;
      }
      const heldBy = was
        ? `held off by ${was.reason} until ${was.until.toISOString()}`
        : 'held off by a maintenance window until it ended';
      log.info(
        { schedule: name, occurrence: newest.occurrence },
        `schedule ${name}: occurrence ${newest.occurrence} ${heldBy}; starting it`,
      );
      if (await startRun(s, occurrence, now.getTime() - occurrence.getTime(), heldBy))
        holds.delete(newestKey);
    }
    for (const key of holds.keys()) if (!seen.has(key)) holds.delete(key);
  }

  /** Records unstarted rows of one schedule as missed; returns how many this call changed. */
  async function abandonAll(schedule: string, rows: ScheduleFire[]): Promise<number> {
    let changed = 0;
    for (const row of rows) if (await fires.abandon(scope, schedule, new Date(row.occurrence))) changed++;
    return changed;
  }

  /**
   * Starts the runs of occurrences claimed by a scheduler that stopped before starting them, unless the
   * runbook is held off now: then the occurrence is recorded held and waits like one held when it came due.
   */
  async function recoverOrphans(now: Date, atStart: boolean): Promise<void> {
    const orphans: ScheduleFire[] = await fires.unstarted(scope);
    for (const row of orphans) {
      const state = states.get(row.schedule);
      if (!state?.schedule.enabled) continue;
      // Another live scheduler may be starting it right now; both would be safe (same key) but noisy.
      if (!atStart && now.getTime() - Date.parse(row.recordedAt) < ORPHAN_AFTER_MS) continue;
      const occurrence = new Date(row.occurrence);
      const lateMs = now.getTime() - occurrence.getTime();
      if (lateMs <= lateLimit(state.schedule)) {
        const hold = await askHoldOff(state.schedule, now);
        if (hold) {
          if (await fires.hold(scope, row.schedule, occurrence, now)) {
            holds.set(heldKey(row.schedule, occurrence), hold);
            log.info(
              { schedule: row.schedule, occurrence: row.occurrence, until: hold.until.toISOString() },
              `schedule ${row.schedule}: occurrence ${row.occurrence} was claimed but its run not started; now held off by ${hold.reason} until ${hold.until.toISOString()}`,
            );
          }
          continue;
        }
        log.warn(
          { schedule: row.schedule, occurrence: row.occurrence },
          `schedule ${row.schedule}: occurrence ${row.occurrence} was claimed but its run not started; starting it`,
        );
        await startRun(state.schedule, occurrence, lateMs);
      } else if (await fires.abandon(scope, row.schedule, occurrence)) {
        log.warn(
          { schedule: row.schedule, occurrence: row.occurrence },
          `schedule ${row.schedule}: occurrence ${row.occurrence} was claimed but its run never started; now too late, recorded as missed`,
        );
      }
    }
  }

  function arm(now: Date): void {
    cancelTimer?.();
    cancelTimer = undefined;
    if (stopped) return;
    let next: Date | undefined;
    for (const { schedule } of states.values()) {
      if (!schedule.enabled) continue;
      const at = schedule.cron.next(now);
      if (at && (!next || at < next)) next = at;
    }
    for (const { until } of holds.values()) {
      const at = new Date(Math.max(until.getTime(), now.getTime() + 1000));
      if (!next || at < next) next = at;
    }
    const delay = Math.min(maxSleepMs, Math.max(0, (next?.getTime() ?? Infinity) - now.getTime()));
    wakeAt = new Date(now.getTime() + delay);
    cancelTimer = setTimer(delay, () => {
      cancelTimer = undefined;
      void tick();
    });
  }

  async function runTick(atStart: boolean): Promise<void> {
    const now = clock.now();
    try {
      await recoverOrphans(now, atStart);
      await releaseHeld(now);
      for (const state of states.values()) if (state.schedule.enabled) await settle(state, now);
    } catch (err) {
      // The store is down, most likely: nothing was lost (cursors only move after a success); the next
      // wake-up tries again, and occurrences that have become too late by then are recorded as missed.
      log.error({ err: errorMessage(err) }, `scheduler: ${errorMessage(err)}`);
    }
    arm(clock.now());
  }

  function tick(): Promise<void> {
    if (!started || stopped) return running;
    running = running.then(() => (stopped ? undefined : runTick(false)));
    return running;
  }

  return {
    async start() {
      if (started) return;
      await checkRunbooks(options.schedules, runs);
      started = true;
      const now = clock.now();
      for (const schedule of options.schedules) {
        const last = await fires.latest(scope, schedule.name);
        let cursor: Date;
        if (last === undefined || !schedule.enabled) {
          // First sight, or disabled: nothing before now is backfilled once it is enabled.
          await fires.claim(scope, schedule.name, now, 'seen', now);
          cursor = last === undefined ? now : new Date(Math.max(now.getTime(), Date.parse(last.occurrence)));
        } else {
          cursor = new Date(last.occurrence);
        }
        states.set(schedule.name, { schedule, cursor });
        log.info(
          {
            schedule: schedule.name,
            runbook: schedule.runbook,
            cron: schedule.cron.expression,
            timezone: schedule.cron.timezone,
            enabled: schedule.enabled,
          },
          `schedule ${schedule.name}: ${schedule.enabled ? `next at ${schedule.cron.next(now)?.toISOString() ?? 'never'}` : 'disabled'}`,
        );
      }
      running = runTick(true);
      await running;
    },
    tick,
    idle: () => running,
    nextWake: () => (started && !stopped ? wakeAt : undefined),
    async stop() {
      stopped = true;
      cancelTimer?.();
      cancelTimer = undefined;
      wakeAt = undefined;
      await running;
    },
  };
}

/** `1 held occurrence`, `3 held occurrences`. */
function countOf(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function heldKey(schedule: string, occurrence: Date): string {
  return `${schedule}@${occurrence.toISOString()}`;
}

/** A lateness for people: `45s`, `12m`, `1h05m`, `2d3h` (whole units, at most two). */
export function lateness(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 === 0 || m >= 10 ? `${m}m` : `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 === 0 ? `${h}h` : `${h}h${String(m % 60).padStart(2, '0')}m`;
  const d = Math.floor(h / 24);
  return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
}

/**
 * Checks that each enabled schedule names a runbook the engine knows and that its parameters pass the
 * runbook's schema, by a dry run (disabled schedules are not checked: they may wait for a runbook not
 * written yet).
 * @throws InputError naming every schedule whose runbook is unknown or whose parameters are wrong.
 */
async function checkRunbooks(
  schedules: ResolvedSchedule[],
  runs: Pick<RunService, 'plan' | 'runbooks'>,
): Promise<void> {
  const problems: string[] = [];
  let known: string[] | undefined;
  for (const s of schedules) {
    if (!s.enabled) continue;
    const where = s.origin === 'default' ? `${s.field} (schedule ${s.name})` : s.field;
    try {
      await runs.plan({ runbook: s.runbook, params: s.params }, scheduleActor(s.name));
    } catch (err) {
      const error = toGameopsError(err);
      if (error.code === ErrorCode.notFound) {
        known ??= (await runs.runbooks(scheduleActor(s.name))).map((r) => r.name).sort();
        problems.push(
          `${where}: schedule "${s.name}" names runbook "${s.runbook}", which does not exist` +
            (known.length > 0 ? ` (known: ${known.join(', ')})` : ' (no runbooks are loaded)'),
        );
      } else if (error.code === ErrorCode.input) {
        problems.push(`${where}.params: ${error.message} (schedule "${s.name}", runbook ${s.runbook})`);
      } else {
        throw error;
      }
    }
  }
  if (problems.length > 0) throw schedulesError(problems);
}
