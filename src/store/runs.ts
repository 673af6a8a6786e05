import { type Kysely, PostgresAdapter, type Selectable, type Transaction } from 'kysely';
import { ErrorCode, GameopsError, InputError } from '../core/index.ts';
import type { Actor, RunStatus, StepKind, StepStatus, Trigger } from '../runbooks/model.ts';
import { type AuditEntry, type AuditRecord, appendAudit } from './audit.ts';
import type { StoreCall } from './check-runs.ts';
import type { RunStepsTable, RunsTable, StoreDatabase } from './schema.ts';

/**
 * The runbook engine's durable state: runs, their steps and step attempts, event streams and the
 * fencing-token counter. The repository only reads and writes rows; every rule about what may change
 * when lives in the engine (src/runbooks/engine.ts), which makes each change inside `transaction`, so a
 * transition, its events and its audit record commit together or not at all.
 *
 * Timestamps are ISO-8601 UTC text; JSON columns are parsed on read and a row that cannot be parsed
 * names itself (a `GameopsError` with code `internal`).
 */
export interface RunRepo {
  /**
   * Runs `work` in one database transaction. On PostgreSQL `lockRun` takes the run's row lock, so
   * transitions of one run queue up across processes; SQLite has one writer anyway.
   * @throws UnavailableError naming the store when the database cannot answer.
   */
  transaction<T>(doing: string, work: (tx: RunTx) => Promise<T>): Promise<T>;
  getRun(id: string): Promise<StoredRun | undefined>;
  /** The compiled definition a run runs (a Runbook without its zod schema), parsed. */
  definition(runId: string): Promise<unknown>;
  steps(runId: string): Promise<StoredStep[]>;
  /** Runs of a scope, newest first. */
  listRuns(filter: ListRunsFilter): Promise<StoredRun[]>;
  /** Runs of a scope that are not finished, with what a worker needs to decide whether to claim them. */
  activeRuns(scope: Scope): Promise<ActiveRun[]>;
  /** Events of a run with `seq > afterSeq`, oldest first. */
  events(runId: string, afterSeq: number, limit: number): Promise<StoredEvent[]>;
  attempts(runId: string, stepId?: string): Promise<StoredAttempt[]>;
  /**
   * Voids every run lease not held by `workerId`: on the embedded store the data-directory lock proves
   * that any other holder is gone. Returns how many leases were voided.
   */
  voidLeasesExcept(workerId: string, scope: Scope): Promise<number>;
}

/** What a transition may read and write; valid only inside `RunRepo.transaction`. */
export interface RunTx {
  /** The run, locked for the rest of the transaction on PostgreSQL. */
  lockRun(id: string): Promise<StoredRun | undefined>;
  getRun(id: string): Promise<StoredRun | undefined>;
  definition(runId: string): Promise<unknown>;
  findByIdempotencyKey(key: string): Promise<StoredRun | undefined>;
  steps(runId: string): Promise<StoredStep[]>;
  /** Inserts a run and its definition; false (nothing inserted) when its idempotency key is taken. */
  insertRun(run: StoredRun, definition: unknown): Promise<boolean>;
  updateRun(id: string, patch: RunPatch): Promise<void>;
  insertSteps(steps: StoredStep[]): Promise<void>;
  /**
   * Updates a step. With `guard`, only while the stored step still has that fence and status: the
   * fencing check that refuses a late write from a worker whose attempt was superseded. Returns whether
   * a row was updated.
   */
  updateStep(
    runId: string,
    stepId: string,
    patch: StepPatch,
    guard?: { fence: number; status: StepStatus },
  ): Promise<boolean>;
  insertAttempt(attempt: StoredAttempt): Promise<void>;
  updateAttempt(
    runId: string,
    stepId: string,
    attempt: number,
    patch: { status: string; finishedAt?: string; error?: { code: string; message: string } | null },
  ): Promise<void>;
  insertEvents(events: StoredEvent[]): Promise<void>;
  /** The next fencing token: larger than every token handed out before, across all processes. */
  nextFence(): Promise<number>;
  /** Appends an audit record inside this transaction. */
  audit(entry: AuditEntry, at: Date): Promise<AuditRecord>;
}

export interface Scope {
  service: string;
  environment: string;
}

export interface ListRunsFilter extends Scope {
  runbook?: string;
  status?: RunStatus[];
  parentRunId?: string;
  limit: number;
  /** Runs created before this run (by created_at, then id). */
  before?: { createdAt: string; id: string };
}

/**
 * A run as stored, without its (large) definition, which `definition()` reads. Optional fields are
 * absent when the column is NULL.
 */
export interface StoredRun {
  id: string;
  service: string;
  environment: string;
  runbook: string;
  version: string;
  definitionHash: string;
  params: Record<string, unknown>;
  status: RunStatus;
  trigger: Trigger;
  requestedBy: Actor;
  idempotencyKey?: string;
  parentRunId?: string;
  parentStepId?: string;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  deadlineAt?: string;
  reason?: string;
  paused: boolean;
  cancelRequested: boolean;
  /** The run failed with onFailure compensate and its compensations are running. */
  compensating: boolean;
  leaseOwner?: string;
  leaseExpiresAt?: string;
  /** The seq of the run's newest event. */
  eventSeq: number;
  /** Incremented by every transition: a worker's cached copy of the run is current while it matches. */
  revision: number;
  updatedAt: string;
}

export interface StoredStep {
  runId: string;
  stepId: string;
  kind: StepKind;
  status: StepStatus;
  attempt: number;
  fence: number;
  startedAt?: string;
  finishedAt?: string;
  /** The run's event seq when the step finished: orders completions (compensation runs in reverse). */
  finishedSeq?: number;
  notBefore?: string;
  output?: unknown;
  error?: { code: string; message: string };
  /** JSON kept by the engine for approval steps (the view plus per-step hashes). */
  approval?: unknown;
  childRunId?: string;
  /** JSON kept by the engine: the state of this step's compensation. */
  compensation?: unknown;
}

export interface StoredAttempt {
  runId: string;
  stepId: string;
  attempt: number;
  fence: number;
  worker: string;
  /** started | succeeded | failed | unknown | stale | compensating | compensated | verifying */
  status: string;
  startedAt: string;
  finishedAt?: string;
  error?: { code: string; message: string };
}

export interface StoredEvent {
  runId: string;
  seq: number;
  at: string;
  type: 'run' | 'step' | 'log';
  stepId?: string;
  status?: string;
  message?: string;
}

export interface ActiveRun {
  id: string;
  status: RunStatus;
  parentRunId?: string;
  leaseOwner?: string;
  leaseExpiresAt?: string;
}

type Nullable<T> = { [K in keyof T]?: T[K] | null };

/** Columns a transition may change. `null` clears an optional column. */
export type RunPatch = Nullable<
  Pick<
    StoredRun,
    | 'params'
    | 'status'
    | 'startedAt'
    | 'finishedAt'
    | 'deadlineAt'
    | 'reason'
    | 'paused'
    | 'cancelRequested'
    | 'compensating'
    | 'leaseOwner'
    | 'leaseExpiresAt'
    | 'eventSeq'
    | 'revision'
    | 'updatedAt'
  >
>;

export type StepPatch = Nullable<Omit<StoredStep, 'runId' | 'stepId' | 'kind'>>;

const FENCE_COUNTER = 'fence';
const TERMINAL: RunStatus[] = ['succeeded', 'failed', 'cancelled'];

type Db = Kysely<StoreDatabase> | Transaction<StoreDatabase>;

export function createRunRepo(db: Kysely<StoreDatabase>, call: StoreCall): RunRepo {
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  return {
    transaction: (doing, work) =>
      call(doing, () => db.transaction().execute((trx) => work(createTx(trx, postgres)))),

    getRun: (id) => call(`reading run ${id}`, () => readRun(db, id, false)),

    definition: (runId) => call(`reading the definition of run ${runId}`, () => readDefinition(db, runId)),

    steps: (runId) => call(`reading the steps of run ${runId}`, () => readSteps(db, runId)),

    async listRuns(filter) {
      const rows = await call('listing runs', () => {
        let query = db
          .selectFrom('runs')
          .select(RUN_SELECT)
          .where('service', '=', filter.service)
          .where('environment', '=', filter.environment);
        if (filter.runbook !== undefined) query = query.where('runbook', '=', filter.runbook);
        if (filter.status?.length) query = query.where('status', 'in', filter.status);
        if (filter.parentRunId !== undefined) query = query.where('parent_run_id', '=', filter.parentRunId);
        const before = filter.before;
        if (before) {
          query = query.where((eb) =>
            eb.or([
              eb('created_at', '<', before.createdAt),
              eb.and([eb('created_at', '=', before.createdAt), eb('id', '<', before.id)]),
            ]),
          );
        }
        return query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(filter.limit).execute();
      });
      return rows.map(runFromRow);
    },

    async activeRuns(scope) {
      const rows = await call('listing active runs', () =>
        db
          .selectFrom('runs')
          .select(['id', 'status', 'parent_run_id', 'lease_owner', 'lease_expires_at'])
          .where('service', '=', scope.service)
          .where('environment', '=', scope.environment)
          .where('status', 'not in', TERMINAL)
          .orderBy('created_at')
          .orderBy('id')
          .execute(),
      );
      return rows.map((row) => ({
        id: row.id,
        status: row.status as RunStatus,
        ...optional('parentRunId', row.parent_run_id),
        ...optional('leaseOwner', row.lease_owner),
        ...optional('leaseExpiresAt', row.lease_expires_at),
      }));
    },

    async events(runId, afterSeq, limit) {
      const rows = await call(`reading the events of run ${runId}`, () =>
        db
          .selectFrom('run_events')
          .selectAll()
          .where('run_id', '=', runId)
          .where('seq', '>', afterSeq)
          .orderBy('seq')
          .limit(limit)
          .execute(),
      );
      return rows.map((row) => ({
        runId: row.run_id,
        seq: Number(row.seq),
        at: row.at,
        type: row.type as StoredEvent['type'],
        ...optional('stepId', row.step_id),
        ...optional('status', row.status),
        ...optional('message', row.message),
      }));
    },

    async attempts(runId, stepId) {
      const rows = await call(`reading the attempts of run ${runId}`, () => {
        let query = db.selectFrom('step_attempts').selectAll().where('run_id', '=', runId);
        if (stepId !== undefined) query = query.where('step_id', '=', stepId);
        return query.orderBy('fence').execute();
      });
      return rows.map((row) => ({
        runId: row.run_id,
        stepId: row.step_id,
        attempt: Number(row.attempt),
        fence: Number(row.fence),
        worker: row.worker,
        status: row.status,
        startedAt: row.started_at,
        ...optional('finishedAt', row.finished_at),
        ...optional('error', row.error === null ? null : parseJson(row.error, `attempt of ${runId}`)),
      })) as StoredAttempt[];
    },

    async voidLeasesExcept(workerId, scope) {
      const result = await call('voiding stale run leases', () =>
        db
          .updateTable('runs')
          .set({ lease_owner: null, lease_expires_at: null })
          .where('service', '=', scope.service)
          .where('environment', '=', scope.environment)
          .where('lease_owner', 'is not', null)
          .where('lease_owner', '<>', workerId)
          .executeTakeFirst(),
      );
      return Number(result.numUpdatedRows);
    },
  };
}

function createTx(trx: Transaction<StoreDatabase>, postgres: boolean): RunTx {
  return {
    lockRun: (id) => readRun(trx, id, postgres),
    getRun: (id) => readRun(trx, id, false),
    definition: (runId) => readDefinition(trx, runId),

    async findByIdempotencyKey(key) {
      const row = await trx
        .selectFrom('runs')
        .select(RUN_SELECT)
        .where('idempotency_key', '=', key)
        .executeTakeFirst();
      return row && runFromRow(row);
    },

    steps: (runId) => readSteps(trx, runId),

    async insertRun(run, definition) {
      const inserted = await trx
        .insertInto('runs')
        .values({ ...runToRow(run), definition: toJson(definition, `run ${run.id} definition`) })
        .onConflict((oc) => oc.column('idempotency_key').doNothing())
        .returning('id')
        .execute();
      return inserted.length > 0;
    },

    async updateRun(id, patch) {
      const set = runPatchToRow(patch);
      if (Object.keys(set).length === 0) return;
      await trx.updateTable('runs').set(set).where('id', '=', id).execute();
    },

    async insertSteps(steps) {
      // Chunked: SQLite limits the number of bound parameters of one statement.
      for (let i = 0; i < steps.length; i += 50) {
        await trx
          .insertInto('run_steps')
          .values(steps.slice(i, i + 50).map(stepToRow))
          .execute();
      }
    },

    async updateStep(runId, stepId, patch, guard) {
      const set = stepPatchToRow(patch);
      if (Object.keys(set).length === 0 && !guard) return true;
      let query = trx
        .updateTable('run_steps')
        .set(Object.keys(set).length === 0 ? { fence: guard?.fence ?? 0 } : set)
        .where('run_id', '=', runId)
        .where('step_id', '=', stepId);
      if (guard) query = query.where('fence', '=', guard.fence).where('status', '=', guard.status);
      const result = await query.executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },

    async insertAttempt(attempt) {
      await trx
        .insertInto('step_attempts')
        .values({
          run_id: attempt.runId,
          step_id: attempt.stepId,
          attempt: attempt.attempt,
          fence: attempt.fence,
          worker: attempt.worker,
          status: attempt.status,
          started_at: attempt.startedAt,
          finished_at: attempt.finishedAt ?? null,
          error: attempt.error ? JSON.stringify(attempt.error) : null,
        })
        // A recovered attempt number may be claimed again (a verify, a compensation): the newest wins.
        .onConflict((oc) =>
          oc.columns(['run_id', 'step_id', 'attempt']).doUpdateSet({
            fence: attempt.fence,
            worker: attempt.worker,
            status: attempt.status,
            started_at: attempt.startedAt,
            finished_at: attempt.finishedAt ?? null,
            error: attempt.error ? JSON.stringify(attempt.error) : null,
          }),
        )
        .execute();
    },

    async updateAttempt(runId, stepId, attempt, patch) {
      await trx
        .updateTable('step_attempts')
        .set({
          status: patch.status,
          ...(patch.finishedAt === undefined ? {} : { finished_at: patch.finishedAt }),
          ...(patch.error === undefined ? {} : { error: patch.error ? JSON.stringify(patch.error) : null }),
        })
        .where('run_id', '=', runId)
        .where('step_id', '=', stepId)
        .where('attempt', '=', attempt)
        .execute();
    },

    async insertEvents(events) {
      for (let i = 0; i < events.length; i += 50) {
        await trx
          .insertInto('run_events')
          .values(
            events.slice(i, i + 50).map((event) => ({
              run_id: event.runId,
              seq: event.seq,
              at: event.at,
              type: event.type,
              step_id: event.stepId ?? null,
              status: event.status ?? null,
              message: event.message ?? null,
            })),
          )
          .execute();
      }
    },

    async nextFence() {
      const updated = await trx
        .updateTable('counters')
        .set((eb) => ({ value: eb('value', '+', 1) }))
        .where('name', '=', FENCE_COUNTER)
        .returning('value')
        .executeTakeFirst();
      if (updated) return Number(updated.value);
      // First token ever: the insert races with other processes' first token on PostgreSQL, so it
      // never overwrites, and the increment above is then retried.
      await trx
        .insertInto('counters')
        .values({ name: FENCE_COUNTER, value: 0 })
        .onConflict((oc) => oc.column('name').doNothing())
        .execute();
      const retried = await trx
        .updateTable('counters')
        .set((eb) => ({ value: eb('value', '+', 1) }))
        .where('name', '=', FENCE_COUNTER)
        .returning('value')
        .executeTakeFirstOrThrow();
      return Number(retried.value);
    },

    audit: (entry, at) => appendAudit(trx, entry, at),
  };
}

async function readDefinition(db: Db, runId: string): Promise<unknown> {
  const row = await db.selectFrom('runs').select('definition').where('id', '=', runId).executeTakeFirst();
  return row && parseJson(row.definition, `run ${runId} definition`);
}

async function readRun(db: Db, id: string, lock: boolean): Promise<StoredRun | undefined> {
  let query = db.selectFrom('runs').select(RUN_SELECT).where('id', '=', id);
  if (lock) query = query.forUpdate();
  const row = await query.executeTakeFirst();
  return row && runFromRow(row);
}

async function readSteps(db: Db, runId: string): Promise<StoredStep[]> {
  const rows = await db.selectFrom('run_steps').selectAll().where('run_id', '=', runId).execute();
  return rows.map(stepFromRow);
}

type RunRow = Omit<Selectable<RunsTable>, 'definition'>;

/** Every column but the definition. */
const RUN_SELECT = [
  'id',
  'service',
  'environment',
  'runbook',
  'version',
  'definition_hash',
  'params',
  'status',
  'trigger',
  'requested_by',
  'idempotency_key',
  'parent_run_id',
  'parent_step_id',
  'created_at',
  'started_at',
  'finished_at',
  'deadline_at',
  'reason',
  'paused',
  'cancel_requested',
  'compensating',
  'lease_owner',
  'lease_expires_at',
  'event_seq',
  'revision',
  'updated_at',
] as const satisfies readonly (keyof RunRow)[];

function runToRow(run: StoredRun): RunRow {
  return {
    id: run.id,
    service: run.service,
    environment: run.environment,
    runbook: run.runbook,
    version: run.version,
    definition_hash: run.definitionHash,
    params: toJson(run.params, `run ${run.id} params`),
    status: run.status,
    trigger: run.trigger,
    requested_by: toJson(run.requestedBy, `run ${run.id} requestedBy`),
    idempotency_key: run.idempotencyKey ?? null,
    parent_run_id: run.parentRunId ?? null,
    parent_step_id: run.parentStepId ?? null,
    created_at: run.createdAt,
    started_at: run.startedAt ?? null,
    finished_at: run.finishedAt ?? null,
    deadline_at: run.deadlineAt ?? null,
    reason: run.reason ?? null,
    paused: run.paused ? 1 : 0,
    cancel_requested: run.cancelRequested ? 1 : 0,
    compensating: run.compensating ? 1 : 0,
    lease_owner: run.leaseOwner ?? null,
    lease_expires_at: run.leaseExpiresAt ?? null,
    event_seq: run.eventSeq,
    revision: run.revision,
    updated_at: run.updatedAt,
  };
}

function runFromRow(row: RunRow): StoredRun {
  const what = `run ${row.id}`;
  return {
    id: row.id,
    service: row.service,
    environment: row.environment,
    runbook: row.runbook,
    version: row.version,
    definitionHash: row.definition_hash,
    params: parseJson(row.params, `${what} params`) as Record<string, unknown>,
    status: row.status as RunStatus,
    trigger: row.trigger as Trigger,
    requestedBy: parseJson(row.requested_by, `${what} requested_by`) as Actor,
    ...optional('idempotencyKey', row.idempotency_key),
    ...optional('parentRunId', row.parent_run_id),
    ...optional('parentStepId', row.parent_step_id),
    createdAt: row.created_at,
    ...optional('startedAt', row.started_at),
    ...optional('finishedAt', row.finished_at),
    ...optional('deadlineAt', row.deadline_at),
    ...optional('reason', row.reason),
    paused: Number(row.paused) === 1,
    cancelRequested: Number(row.cancel_requested) === 1,
    compensating: Number(row.compensating) === 1,
    ...optional('leaseOwner', row.lease_owner),
    ...optional('leaseExpiresAt', row.lease_expires_at),
    eventSeq: Number(row.event_seq),
    revision: Number(row.revision),
    updatedAt: row.updated_at,
  };
}

const RUN_COLUMNS: Record<keyof RunPatch, keyof RunsTable> = {
  params: 'params',
  status: 'status',
  startedAt: 'started_at',
  finishedAt: 'finished_at',
  deadlineAt: 'deadline_at',
  reason: 'reason',
  paused: 'paused',
  cancelRequested: 'cancel_requested',
  compensating: 'compensating',
  leaseOwner: 'lease_owner',
  leaseExpiresAt: 'lease_expires_at',
  eventSeq: 'event_seq',
  revision: 'revision',
  updatedAt: 'updated_at',
};

function runPatchToRow(patch: RunPatch): Record<string, unknown> {
  const set: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(patch) as [keyof RunPatch, unknown][]) {
    if (value === undefined) continue;
    const column = RUN_COLUMNS[key];
    if (key === 'params') set[column] = toJson(value, 'run params');
    else if (typeof value === 'boolean') set[column] = value ? 1 : 0;
    else set[column] = value;
  }
  return set;
}

function stepToRow(step: StoredStep): Selectable<RunStepsTable> {
  const what = `step ${step.stepId} of run ${step.runId}`;
  return {
    run_id: step.runId,
    step_id: step.stepId,
    kind: step.kind,
    status: step.status,
    attempt: step.attempt,
    fence: step.fence,
    started_at: step.startedAt ?? null,
    finished_at: step.finishedAt ?? null,
    finished_seq: step.finishedSeq ?? null,
    not_before: step.notBefore ?? null,
    output: step.output === undefined ? null : toJson(step.output, `${what} output`),
    error: step.error ? toJson(step.error, `${what} error`) : null,
    approval: step.approval === undefined ? null : toJson(step.approval, `${what} approval`),
    child_run_id: step.childRunId ?? null,
    compensation: step.compensation === undefined ? null : toJson(step.compensation, `${what} compensation`),
    lease_owner: null,
    lease_expires_at: null,
  };
}

function stepFromRow(row: Selectable<RunStepsTable>): StoredStep {
  const what = `step ${row.step_id} of run ${row.run_id}`;
  return {
    runId: row.run_id,
    stepId: row.step_id,
    kind: row.kind as StepKind,
    status: row.status as StepStatus,
    attempt: Number(row.attempt),
    fence: Number(row.fence),
    ...optional('startedAt', row.started_at),
    ...optional('finishedAt', row.finished_at),
    ...optional('finishedSeq', row.finished_seq === null ? null : Number(row.finished_seq)),
    ...optional('notBefore', row.not_before),
    ...optional('output', row.output === null ? null : parseJson(row.output, `${what} output`)),
    ...optional(
      'error',
      row.error === null ? null : (parseJson(row.error, `${what} error`) as StoredStep['error']),
    ),
    ...optional('approval', row.approval === null ? null : parseJson(row.approval, `${what} approval`)),
    ...optional('childRunId', row.child_run_id),
    ...optional(
      'compensation',
      row.compensation === null ? null : parseJson(row.compensation, `${what} compensation`),
    ),
  };
}

const STEP_COLUMNS: Record<keyof StepPatch, keyof RunStepsTable> = {
  status: 'status',
  attempt: 'attempt',
  fence: 'fence',
  startedAt: 'started_at',
  finishedAt: 'finished_at',
  finishedSeq: 'finished_seq',
  notBefore: 'not_before',
  output: 'output',
  error: 'error',
  approval: 'approval',
  childRunId: 'child_run_id',
  compensation: 'compensation',
};
const STEP_JSON = new Set<keyof StepPatch>(['output', 'error', 'approval', 'compensation']);

function stepPatchToRow(patch: StepPatch): Record<string, unknown> {
  const set: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(patch) as [keyof StepPatch, unknown][]) {
    if (value === undefined) continue;
    const column = STEP_COLUMNS[key];
    set[column] = value !== null && STEP_JSON.has(key) ? toJson(value, `step ${key}`) : value;
  }
  return set;
}

function optional<K extends string, V>(key: K, value: V | null | undefined): { [P in K]?: V } {
  return (value === null || value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

function toJson(value: unknown, what: string): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new InputError(`${what} is not JSON: ${(err as Error).message}`);
  }
  if (text === undefined) throw new InputError(`${what} is not JSON (got ${typeof value})`);
  return text;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new GameopsError(
      ErrorCode.internal,
      `${what} in the store is corrupt: not valid JSON (${(err as Error).message})`,
    );
  }
}
