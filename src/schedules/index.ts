/**
 * Runbook schedules: cron with IANA time zones, fired exactly once per occurrence (see scheduler.ts).
 */
import type { Clock } from '../core/index.ts';
import type { GameopsConfig } from '../config/index.ts';
import type { RunService } from '../runbooks/model.ts';
import type { Store } from '../store/index.ts';
import { resolveSchedules } from './resolve.ts';
import {
  createScheduler,
  type Scheduler,
  type SchedulerLog,
  type SchedulerOptions,
  type SetTimer,
} from './scheduler.ts';

export { canonicalTimeZone, parseCron } from './cron.ts';
export type { CronSchedule } from './cron.ts';
export { DEFAULT_DAILY_CHECK, resolveSchedules } from './resolve.ts';
export type { ResolvedSchedule } from './resolve.ts';
export { createScheduler, lateness, occurrenceKey, scheduleActor } from './scheduler.ts';
export type { HoldOff, Scheduler, SchedulerLog, SchedulerOptions, SetTimer } from './scheduler.ts';
export { scheduleStatuses } from './status.ts';
export type { ScheduleStatus, ScheduleStatusReport } from './status.ts';

export interface StartSchedulerDeps {
  config: Pick<GameopsConfig, 'runbooks' | 'service'>;
  /** False when gameops runs without a config file: then the default daily-check is not scheduled. */
  configured: boolean;
  store: Pick<Store, 'scheduleFires'>;
  /**
   * The engine (`openRunbooks`): runs start there, schedules are checked against it by a dry run, and
   * `wake` (when present) lets its worker pick a new run up at once.
   */
  runs: Pick<RunService, 'start' | 'plan' | 'runbooks'> & { wake?: () => void };
  clock: Clock;
  log: SchedulerLog;
  setTimer?: SetTimer;
  /** Holds scheduled runs off during maintenance windows (src/app/maintenance.ts `maintenanceHoldOff`). */
  holdOff?: SchedulerOptions['holdOff'];
}

/**
 * Resolves the config's schedules, checks them against the runbook library, catches up on occurrences
 * missed while gameops was down, and keeps firing until `stop()`. For `gameops serve`.
 * @throws InputError naming every bad schedule (cron, time zone, unknown runbook, parameters).
 */
export async function startScheduler(deps: StartSchedulerDeps): Promise<Scheduler> {
  const schedules = resolveSchedules(deps.config.runbooks, { configured: deps.configured });
  const { runs } = deps;
  const scheduler = createScheduler({
    schedules,
    fires: deps.store.scheduleFires,
    runs,
    scope: { service: deps.config.service.name, environment: deps.config.service.environment },
    clock: deps.clock,
    log: deps.log,
    ...(deps.setTimer ? { setTimer: deps.setTimer } : {}),
    ...(deps.holdOff ? { holdOff: deps.holdOff } : {}),
    ...(runs.wake ? { onStarted: () => runs.wake?.() } : {}),
  });
  await scheduler.start();
  return scheduler;
}
