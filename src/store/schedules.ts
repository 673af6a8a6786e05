import type { Kysely, Selectable } from 'kysely';
import { InputError } from '../core/index.ts';
import type { RunScope, StoreCall } from './check-runs.ts';
import type { ScheduleFiresTable, StoreDatabase } from './schema.ts';

/**
 * What happened to one occurrence of a schedule:
 * - `fired`: this occurrence was claimed to start a run (`runId` once the run exists);
 * - `missed`: it passed while gameops was down (or suspended) and was too old to run;
 * - `seen`: not an occurrence but an instant the scheduler saw the schedule without firing it (the first
 *   time, or while disabled): occurrences up to it are never backfilled, and those after it that pass
 *   while gameops is down count as missed;
 * - `held`: it came while a maintenance window was open and its runbook is held off (maintenance.holdOff):
 *   when the window ends the newest of a schedule's held occurrences is started (and is `fired`, with its
 *   run, from then on) and the older ones become `missed` (coalesced into it); all become `missed` when the
 *   window ended more than the schedule's grace ago or the schedule is disabled or gone.
 */
export type ScheduleOutcome = 'fired' | 'missed' | 'seen' | 'held';

/** One row of `schedule_fires`. Instants are canonical ISO-8601 UTC. */
export interface ScheduleFire {
  schedule: string;
  occurrence: string;
  outcome: ScheduleOutcome;
  runId?: string;
  recordedAt: string;
}

/**
 * The record of schedule occurrences, per service and environment. Exactly-once firing rests on
 * {@link ScheduleFireRepo.claim}: the primary key (service, environment, schedule, occurrence) lets one
 * insert win, in one process or across gameops instances sharing PostgreSQL. Every method rejects with
 * UnavailableError naming the backend when the database cannot answer.
 */
export interface ScheduleFireRepo {
  /**
   * Records an occurrence's outcome unless one is already recorded.
   * @returns true when this call recorded it; false when it was recorded before (by anyone).
   */
  claim(
    scope: RunScope,
    schedule: string,
    occurrence: Date,
    outcome: ScheduleOutcome,
    at: Date,
  ): Promise<boolean>;
  /** Records many `missed` occurrences of one schedule, skipping those already recorded; returns how many were new. */
  recordMissed(scope: RunScope, schedule: string, occurrences: Date[], at: Date): Promise<number>;
  /**
   * Notes the run a `fired` or `held` occurrence started (first writer wins; the idempotency key makes them
   * equal); a held one becomes `fired`.
   */
  setRun(scope: RunScope, schedule: string, occurrence: Date, runId: string): Promise<void>;
  /**
   * Turns a `fired` (or `held`) occurrence whose run was never started (gameops stopped in between, or its
   * run cannot be started) into `missed`. Returns false when it has a run by now.
   */
  abandon(scope: RunScope, schedule: string, occurrence: Date): Promise<boolean>;
  /**
   * Turns a `fired` occurrence whose run was never started into `held` (a maintenance window opened before
   * its run started), recorded at `at`. Returns false when it has a run by now or is not `fired`.
   */
  hold(scope: RunScope, schedule: string, occurrence: Date, at: Date): Promise<boolean>;
  /** The newest recorded row of a schedule (of `outcome` when given). */
  latest(scope: RunScope, schedule: string, outcome?: ScheduleOutcome): Promise<ScheduleFire | undefined>;
  /** `fired` (or `outcome`) occurrences with no run yet, oldest first, of `schedule` when given. */
  unstarted(scope: RunScope, schedule?: string, outcome?: 'fired' | 'held'): Promise<ScheduleFire[]>;
  /** A schedule's rows, newest first, at most `limit` (capped at 1000). @default limit 50 */
  list(
    scope: RunScope,
    schedule: string,
    options?: { outcome?: ScheduleOutcome; limit?: number },
  ): Promise<ScheduleFire[]>;
  /** How many rows of a schedule have `outcome` and an occurrence after `after` (all when not given). */
  count(scope: RunScope, schedule: string, outcome: ScheduleOutcome, after?: Date): Promise<number>;
}

const LIST_LIMIT_DEFAULT = 50;
const LIST_LIMIT_MAX = 1000;
/** Rows per INSERT when recording many misses (SQLite allows 32766 bound values; 7 columns each). */
const INSERT_CHUNK = 500;
const OUTCOMES: readonly string[] = ['fired', 'missed', 'seen', 'held'];

type Row = Selectable<ScheduleFiresTable>;

export function createScheduleFireRepo(db: Kysely<StoreDatabase>, call: StoreCall): ScheduleFireRepo {
  const rowsOf = (scope: RunScope, schedule: string) =>
    db
      .selectFrom('schedule_fires')
      .selectAll()
      .where('service', '=', scope.service)
      .where('environment', '=', scope.environment)
      .where('schedule', '=', schedule);
  return {
    async claim(scope, schedule, occurrence, outcome, at) {
      const row = {
        ...scope,
        schedule,
        occurrence: iso(occurrence, 'occurrence'),
        outcome,
        run_id: null,
        recorded_at: iso(at, 'at'),
      };
      const inserted = await call(`recording occurrence ${row.occurrence} of schedule ${schedule}`, () =>
        db
          .insertInto('schedule_fires')
          .values(row)
          .onConflict((oc) => oc.columns(['service', 'environment', 'schedule', 'occurrence']).doNothing())
          .returning('occurrence')
          .execute(),
      );
      return inserted.length > 0;
    },

    async recordMissed(scope, schedule, occurrences, at) {
      const recordedAt = iso(at, 'at');
      const rows = occurrences.map((occurrence) => ({
        ...scope,
        schedule,
        occurrence: iso(occurrence, 'occurrence'),
        outcome: 'missed',
        run_id: null,
        recorded_at: recordedAt,
      }));
      let added = 0;
      for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
        const chunk = rows.slice(i, i + INSERT_CHUNK);
        const inserted = await call(`recording missed occurrences of schedule ${schedule}`, () =>
          db
            .insertInto('schedule_fires')
            .values(chunk)
            .onConflict((oc) => oc.columns(['service', 'environment', 'schedule', 'occurrence']).doNothing())
            .returning('occurrence')
            .execute(),
        );
        added += inserted.length;
      }
      return added;
    },

    async setRun(scope, schedule, occurrence, runId) {
      const at = iso(occurrence, 'occurrence');
      await call(`noting the run of occurrence ${at} of schedule ${schedule}`, () =>
        db
          .updateTable('schedule_fires')
          // A held occurrence whose run starts counts as fired from then on (schedules list shows it).
          .set({ run_id: runId, outcome: 'fired' })
          .where('service', '=', scope.service)
          .where('environment', '=', scope.environment)
          .where('schedule', '=', schedule)
          .where('occurrence', '=', at)
          .where('outcome', 'in', ['fired', 'held'])
          .where('run_id', 'is', null)
          .execute(),
      );
    },

    async abandon(scope, schedule, occurrence) {
      const at = iso(occurrence, 'occurrence');
      const result = await call(`recording occurrence ${at} of schedule ${schedule} as missed`, () =>
        db
          .updateTable('schedule_fires')
          .set({ outcome: 'missed' })
          .where('service', '=', scope.service)
          .where('environment', '=', scope.environment)
          .where('schedule', '=', schedule)
          .where('occurrence', '=', at)
          .where('outcome', 'in', ['fired', 'held'])
          .where('run_id', 'is', null)
          .executeTakeFirst(),
      );
      return Number(result.numUpdatedRows) > 0;
    },

    async hold(scope, schedule, occurrence, at) {
      const when = iso(occurrence, 'occurrence');
      const recordedAt = iso(at, 'at');
      const result = await call(`recording occurrence ${when} of schedule ${schedule} as held`, () =>
        db
          .updateTable('schedule_fires')
          .set({ outcome: 'held', recorded_at: recordedAt })
          .where('service', '=', scope.service)
          .where('environment', '=', scope.environment)
          .where('schedule', '=', schedule)
          .where('occurrence', '=', when)
          .where('outcome', '=', 'fired')
          .where('run_id', 'is', null)
          .executeTakeFirst(),
      );
      return Number(result.numUpdatedRows) > 0;
    },

    async latest(scope, schedule, outcome) {
      const row = await call(`reading the latest occurrence of schedule ${schedule}`, () => {
        let query = rowsOf(scope, schedule);
        if (outcome) query = query.where('outcome', '=', outcome);
        return query.orderBy('occurrence', 'desc').limit(1).executeTakeFirst();
      });
      return row && fromRow(row);
    },

    async unstarted(scope, schedule, outcome = 'fired') {
      const rows = await call('reading occurrences whose run was not started', () => {
        let query = db
          .selectFrom('schedule_fires')
          .selectAll()
          .where('service', '=', scope.service)
          .where('environment', '=', scope.environment)
          .where('outcome', '=', outcome)
          .where('run_id', 'is', null);
        if (schedule !== undefined) query = query.where('schedule', '=', schedule);
        return query.orderBy('occurrence', 'asc').limit(LIST_LIMIT_MAX).execute();
      });
      return rows.map(fromRow);
    },

    async list(scope, schedule, options = {}) {
      const limit = listLimit(options.limit);
      const rows = await call(`listing occurrences of schedule ${schedule}`, () => {
        let query = rowsOf(scope, schedule);
        if (options.outcome) query = query.where('outcome', '=', options.outcome);
        return query.orderBy('occurrence', 'desc').limit(limit).execute();
      });
      return rows.map(fromRow);
    },

    async count(scope, schedule, outcome, after) {
      const since = after && iso(after, 'after');
      const row = await call(`counting ${outcome} occurrences of schedule ${schedule}`, () => {
        let query = db
          .selectFrom('schedule_fires')
          .select((eb) => eb.fn.countAll<number | string | bigint>().as('n'))
          .where('service', '=', scope.service)
          .where('environment', '=', scope.environment)
          .where('schedule', '=', schedule)
          .where('outcome', '=', outcome);
        if (since) query = query.where('occurrence', '>', since);
        return query.executeTakeFirstOrThrow();
      });
      return Number(row.n);
    },
  };
}

function fromRow(row: Row): ScheduleFire {
  // Only this repo writes the table; an unknown outcome (a newer gameops) reads as what it is closest to.
  const outcome = (OUTCOMES.includes(row.outcome) ? row.outcome : 'fired') as ScheduleOutcome;
  return {
    schedule: row.schedule,
    occurrence: row.occurrence,
    outcome,
    ...(row.run_id === null ? {} : { runId: row.run_id }),
    recordedAt: row.recorded_at,
  };
}

/** Canonical ISO-8601 UTC: rows compare as text in both backends, so the format must be fixed. */
function iso(at: Date, field: string): string {
  if (Number.isNaN(at.getTime())) throw new InputError(`${field} is not a valid instant`);
  return at.toISOString();
}

function listLimit(limit: number | undefined): number {
  if (limit === undefined) return LIST_LIMIT_DEFAULT;
  if (!Number.isInteger(limit) || limit < 1)
    throw new InputError(`limit must be a positive whole number (got ${limit})`);
  return Math.min(limit, LIST_LIMIT_MAX);
}
