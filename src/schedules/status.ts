import { errorMessage } from '../core/index.ts';
import type { RunScope, ScheduleFireRepo } from '../store/index.ts';
import type { ResolvedSchedule } from './resolve.ts';

/** What `gameops schedules list` and `GET /api/schedules` show of one schedule. Instants are ISO-8601 UTC. */
export interface ScheduleStatus {
  name: string;
  runbook: string;
  cron: string;
  timezone: string;
  enabled: boolean;
  /** `config` (runbooks.schedules) or `default` (the built-in daily check, runbooks.defaultSchedules). */
  origin: 'config' | 'default';
  graceMs: number;
  /** The next occurrences (none when disabled). */
  next: string[];
  /** The latest occurrence that fired, and its run (absent while the run was not started yet). */
  lastFired?: { occurrence: string; runId?: string; recordedAt: string };
  /** The latest occurrence recorded as missed. */
  lastMissed?: { occurrence: string; recordedAt: string };
  /** Occurrences recorded as missed after the latest that fired (all of them when none fired). */
  missedSinceLastFired: number;
}

export interface ScheduleStatusReport {
  schedules: ScheduleStatus[];
  /** Why fire and miss history is absent (no store, or it could not be read). */
  historyUnavailable?: string;
}

/**
 * Each schedule with its next `count` occurrences after `now` and, when `fires` is given, its latest
 * fire and miss. A store that cannot be read leaves the history out and says why instead of failing.
 */
export async function scheduleStatuses(
  schedules: ResolvedSchedule[],
  options: {
    fires: ScheduleFireRepo | undefined;
    scope: RunScope;
    now: Date;
    count?: number;
    storeProblem?: string;
  },
): Promise<ScheduleStatusReport> {
  const count = options.count ?? 3;
  const out: ScheduleStatus[] = schedules.map((s) => ({
    name: s.name,
    runbook: s.runbook,
    cron: s.cron.expression,
    timezone: s.cron.timezone,
    enabled: s.enabled,
    origin: s.origin,
    graceMs: s.graceMs,
    next: s.enabled ? upcoming(s, options.now, count) : [],
    missedSinceLastFired: 0,
  }));
  const { fires, scope } = options;
  if (out.length === 0) return { schedules: out };
  if (!fires) return { schedules: out, historyUnavailable: options.storeProblem ?? 'the store is not open' };
  try {
    await Promise.all(
      out.map(async (status) => {
        const [fired, missed] = await Promise.all([
          fires.latest(scope, status.name, 'fired'),
          fires.latest(scope, status.name, 'missed'),
        ]);
        if (fired)
          status.lastFired = {
            occurrence: fired.occurrence,
            ...(fired.runId === undefined ? {} : { runId: fired.runId }),
            recordedAt: fired.recordedAt,
          };
        if (missed) status.lastMissed = { occurrence: missed.occurrence, recordedAt: missed.recordedAt };
        status.missedSinceLastFired =
          missed && (!fired || missed.occurrence > fired.occurrence)
            ? await fires.count(scope, status.name, 'missed', fired ? new Date(fired.occurrence) : undefined)
            : 0;
      }),
    );
  } catch (err) {
    return {
      schedules: out.map(({ lastFired: _f, lastMissed: _m, ...rest }) => ({
        ...rest,
        missedSinceLastFired: 0,
      })),
      historyUnavailable: errorMessage(err),
    };
  }
  return { schedules: out };
}

function upcoming(s: ResolvedSchedule, now: Date, count: number): string[] {
  const out: string[] = [];
  for (let at = s.cron.next(now); at !== undefined && out.length < count; at = s.cron.next(at))
    out.push(at.toISOString());
  return out;
}
