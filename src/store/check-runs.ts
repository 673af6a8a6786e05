import type { Kysely, Selectable } from 'kysely';
import { z } from 'zod';
import { ConflictError, ErrorCode, GameopsError, InputError } from '../core/index.ts';
import type { CheckResult, CheckRun } from '../checks/index.ts';
// The leaf module, not checks/index.ts: that one loads every check and its driver (~250 ms at start-up)
// into anything that opens the store.
import { CheckStatus } from '../checks/statuses.ts';
import type { CheckRunsTable, StoreDatabase } from './schema.ts';

/**
 * Recorded daily-check runs. Runs are ordered by `startedAt` (ties by id); timestamps are stored as
 * canonical ISO-8601 UTC (`2026-01-01T00:00:00.000Z`), so a run recorded with an offset reads back in
 * UTC. Every method rejects with UnavailableError naming the backend when the database cannot answer.
 */
export interface CheckRunRepo {
  /**
   * Records a finished run. Idempotent on `id`: recording the same run again changes nothing.
   * @throws InputError when the run is malformed (e.g. a timestamp without a zone).
   * @throws ConflictError when a different run with the same id is already recorded.
   */
  record(run: CheckRun): Promise<void>;
  get(id: string): Promise<CheckRun | undefined>;
  /**
   * The most recently started run, of `kind` when given, and of one service and environment when
   * `scope` is given (gameops instances sharing a database each pass their own).
   */
  latest(kind?: CheckRun['kind'], scope?: RunScope): Promise<CheckRun | undefined>;
  /** Runs started in `[since, until)`, newest first, of `service` / `environment` when given. */
  list(options?: ListCheckRunsOptions): Promise<CheckRun[]>;
  /**
   * Deletes runs started before `olderThan`, only those of one service and environment when `scope` is
   * given; returns how many were deleted.
   */
  prune(olderThan: Date, scope?: RunScope): Promise<number>;
}

/** The service and environment a run was recorded for (`CheckRun.service`, `CheckRun.environment`). */
export interface RunScope {
  service: string;
  environment: string;
}

export interface ListCheckRunsOptions {
  /** Only runs of this service. */
  service?: string;
  /** Only runs of this environment. */
  environment?: string;
  /** Only runs started at or after this instant. */
  since?: Date;
  /** Only runs started before this instant. */
  until?: Date;
  /** At most this many runs; larger values are capped at 500. @default 50 */
  limit?: number;
}

const LIST_LIMIT_DEFAULT = 50;
const LIST_LIMIT_MAX = 500;
const MIN_STORED_MS = Date.parse('0000-01-01T00:00:00.000Z');
const MAX_STORED_MS = Date.parse('9999-12-31T23:59:59.999Z');

/** Runs a store operation, turning driver failures into GameopsErrors naming the store. */
export type StoreCall = <T>(doing: string, work: () => Promise<T>) => Promise<T>;

const statusSchema = z.enum(CheckStatus);
const timestampSchema = z.iso.datetime({ offset: true, error: 'must be an ISO-8601 timestamp with a zone' });
const checkRunSchema = z.object({
  id: z.string().min(1).max(200),
  kind: z.literal('daily'),
  service: z.string(),
  environment: z.string(),
  trigger: z.enum(['cli', 'api', 'schedule']),
  status: statusSchema,
  startedAt: timestampSchema,
  finishedAt: timestampSchema,
  durationMs: z.number().nonnegative(),
  results: z.array(z.looseObject({ name: z.string(), status: statusSchema })),
});

type Row = Selectable<CheckRunsTable>;

export function createCheckRunRepo(db: Kysely<StoreDatabase>, call: StoreCall): CheckRunRepo {
  const selectRuns = () => db.selectFrom('check_runs').selectAll();
  return {
    async record(run) {
      const row = toRow(run);
      await call(`recording check run ${row.id}`, async () => {
        const inserted = await db
          .insertInto('check_runs')
          .values(row)
          .onConflict((oc) => oc.column('id').doNothing())
          .returning('id')
          .execute();
        if (inserted.length > 0) return;
        const existing = await selectRuns().where('id', '=', row.id).executeTakeFirst();
        if (existing && !sameRow(existing, row)) {
          throw new ConflictError(`check run ${row.id} is already recorded with different content`, {
            details: { id: row.id },
          });
        }
      });
    },

    async get(id) {
      const row = await call(`reading check run ${id}`, () =>
        selectRuns().where('id', '=', id).executeTakeFirst(),
      );
      return row && fromRow(row);
    },

    async latest(kind, scope) {
      const { service, environment } = scopeOf(scope);
      const row = await call('reading the latest check run', () => {
        let query = selectRuns();
        if (service !== undefined) query = query.where('service', '=', service);
        if (environment !== undefined) query = query.where('environment', '=', environment);
        if (kind) query = query.where('kind', '=', kind);
        return query.orderBy('started_at', 'desc').orderBy('id', 'desc').limit(1).executeTakeFirst();
      });
      return row && fromRow(row);
    },

    async list(options = {}) {
      const limit = listLimit(options.limit);
      const since = options.since && isoInstant(options.since, 'since');
      const until = options.until && isoInstant(options.until, 'until');
      const { service, environment } = scopeOf(options);
      const rows = await call('listing check runs', () => {
        let query = selectRuns();
        if (service !== undefined) query = query.where('service', '=', service);
        if (environment !== undefined) query = query.where('environment', '=', environment);
        if (since) query = query.where('started_at', '>=', since);
        if (until) query = query.where('started_at', '<', until);
        return query.orderBy('started_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
      });
      return rows.map(fromRow);
    },

    async prune(olderThan, scope) {
      const before = isoInstant(olderThan, 'olderThan');
      const { service, environment } = scopeOf(scope);
      const result = await call('pruning check runs', () => {
        let query = db.deleteFrom('check_runs').where('started_at', '<', before);
        if (service !== undefined) query = query.where('service', '=', service);
        if (environment !== undefined) query = query.where('environment', '=', environment);
        return query.executeTakeFirst();
      });
      return Number(result.numDeletedRows);
    },
  };
}

function toRow(run: CheckRun): Row {
  const parsed = checkRunSchema.safeParse(run);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.') || '(run)';
    const id = typeof run?.id === 'string' ? ` ${run.id}` : '';
    throw new InputError(`check run${id} cannot be recorded: ${field}: ${issue?.message ?? 'invalid'}`, {
      details: { field },
    });
  }
  let results: string;
  try {
    results = JSON.stringify(run.results);
  } catch (err) {
    throw new InputError(
      `check run ${run.id} cannot be recorded: results are not JSON: ${(err as Error).message}`,
    );
  }
  return {
    id: run.id,
    kind: run.kind,
    service: run.service,
    environment: run.environment,
    trigger: run.trigger,
    status: run.status,
    started_at: new Date(run.startedAt).toISOString(),
    finished_at: new Date(run.finishedAt).toISOString(),
    duration_ms: Math.round(run.durationMs),
    results,
  };
}

/** Reads a row back without trusting it: a row edited by hand or cut short names itself. */
function fromRow(row: Row): CheckRun {
  let results: unknown;
  try {
    results = JSON.parse(row.results);
  } catch (err) {
    throw corruptRow(row.id, `results are not valid JSON (${(err as Error).message})`);
  }
  const candidate = {
    id: row.id,
    kind: row.kind,
    service: row.service,
    environment: row.environment,
    trigger: row.trigger,
    status: row.status,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    durationMs: Number(row.duration_ms),
    results,
  };
  const parsed = checkRunSchema.safeParse(candidate);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw corruptRow(row.id, `${issue?.path.join('.') || '(row)'}: ${issue?.message ?? 'invalid'}`);
  }
  return { ...parsed.data, results: parsed.data.results as unknown as CheckResult[] };
}

function corruptRow(id: string, problem: string): GameopsError {
  return new GameopsError(ErrorCode.internal, `check run ${id} in the store is corrupt: ${problem}`, {
    details: { id },
  });
}

function sameRow(a: Row, b: Row): boolean {
  return (Object.keys(b) as (keyof Row)[]).every((key) => String(a[key]) === String(b[key]));
}

/** The filters of a scope, checked: a scope given with a non-string part is a bug of the caller. */
function scopeOf(scope: Partial<RunScope> | undefined): Partial<RunScope> {
  const out: Partial<RunScope> = {};
  for (const field of ['service', 'environment'] as const) {
    const value = scope?.[field];
    if (value === undefined) continue;
    if (typeof value !== 'string') {
      throw new InputError(`${field} must be a string (got ${typeof value})`, { details: { field } });
    }
    out[field] = value;
  }
  return out;
}

function listLimit(limit: number | undefined): number {
  if (limit === undefined) return LIST_LIMIT_DEFAULT;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new InputError(`limit must be a whole number from 1 to ${LIST_LIMIT_MAX} (got ${limit})`, {
      details: { field: 'limit' },
    });
  }
  return Math.min(limit, LIST_LIMIT_MAX);
}

/** Stored timestamps are four-digit-year ISO text; a bound outside that range is clamped so text order holds. */
function isoInstant(date: Date, field: string): string {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
    throw new InputError(`${field} must be a valid date`, { details: { field } });
  }
  return new Date(Math.min(Math.max(date.getTime(), MIN_STORED_MS), MAX_STORED_MS)).toISOString();
}
