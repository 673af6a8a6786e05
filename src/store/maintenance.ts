import { type Kysely, type Selectable } from 'kysely';
import type { Migration } from 'kysely/migration';
import { type Clock, ConflictError, NotFoundError } from '../core/index.ts';
import type { MaintenanceTask, MaintenanceWindow, WindowState } from '../maintenance/types.ts';
import type { Actor } from '../runbooks/model.ts';
import { appendAudit } from './audit.ts';
import { parseJson } from './json.ts';
import type { RunScope, StoreCall } from './check-runs.ts';
import type { StoreDatabase } from './schema.ts';

/**
 * Planned maintenance (issue #7, src/maintenance): the windows and the notices sent before them.
 *
 * - `maintenance_windows`: one row per window of a service and environment (one-off or an occurrence of
 *   a recurring window). Two windows that are `scheduled` or `running` never overlap: a new one is
 *   checked against them inside its insert's transaction, under a row lock of the scope's counter, so
 *   two concurrent plans of overlapping spans (one process or two sharing PostgreSQL) end with exactly
 *   one window.
 *   Ids are unique per scope (primary key (service, environment, id)): two environments sharing one
 *   PostgreSQL with the same recurring entry each get their own occurrence.
 * - `maintenance_notices`: one row per notice of a window (`T-24h`, `T-60m`, `cancelled`...), of the same
 *   scope. A notice is claimed by inserting its row (primary key (service, environment, window_id, key))
 *   before it is sent, so each attempt is made at most once across restarts and instances; its status says
 *   what the send did (`sending` while a process is at it or died at it, then `sent`, `partial` or
 *   `failed`). A `failed` attempt, or one left `sending` by a process that died, is claimed again by a
 *   conditional update (one claimer wins) and its `attempts` counted.
 */
export interface MaintenanceTables {
  maintenance_windows: MaintenanceWindowsTable;
  maintenance_notices: MaintenanceNoticesTable;
}

export interface MaintenanceWindowsTable {
  id: string;
  service: string;
  environment: string;
  name: string;
  /** `adhoc` or `recurring`. */
  origin: string;
  starts_at: string;
  ends_at: string;
  timezone: string;
  /** JSON array of MaintenanceTask. */
  tasks: string;
  version: string | null;
  message: string | null;
  /** 1: on failure keep maintenance on. */
  hold: number;
  state: string;
  run_id: string | null;
  /** The actor's name. */
  created_by: string;
  created_at: string;
  updated_at: string;
  reason: string | null;
}

export interface MaintenanceNoticesTable {
  service: string;
  environment: string;
  window_id: string;
  key: string;
  due_at: string;
  sent_at: string;
  /** `sending`, `sent`, `partial` or `failed`. */
  status: string;
  /** JSON: what each audience got (players delivered, channels). */
  detail: string | null;
  /** How many times it was claimed (1, then one more per retry). */
  attempts: number;
}

export const maintenanceMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('maintenance_windows')
      .addColumn('id', 'text', (col) => col.notNull())
      .addColumn('service', 'text', (col) => col.notNull())
      .addColumn('environment', 'text', (col) => col.notNull())
      .addColumn('name', 'text', (col) => col.notNull())
      .addColumn('origin', 'text', (col) => col.notNull())
      .addColumn('starts_at', 'text', (col) => col.notNull())
      .addColumn('ends_at', 'text', (col) => col.notNull())
      .addColumn('timezone', 'text', (col) => col.notNull())
      .addColumn('tasks', 'text', (col) => col.notNull())
      .addColumn('version', 'text')
      .addColumn('message', 'text')
      .addColumn('hold', 'integer', (col) => col.notNull().defaultTo(0))
      .addColumn('state', 'text', (col) => col.notNull())
      .addColumn('run_id', 'text')
      .addColumn('created_by', 'text', (col) => col.notNull())
      .addColumn('created_at', 'text', (col) => col.notNull())
      .addColumn('updated_at', 'text', (col) => col.notNull())
      .addColumn('reason', 'text')
      .addPrimaryKeyConstraint('maintenance_windows_pkey', ['service', 'environment', 'id'])
      .execute();
    await db.schema
      .createIndex('maintenance_windows_scope_starts_idx')
      .on('maintenance_windows')
      .columns(['service', 'environment', 'starts_at'])
      .execute();
    await db.schema
      .createTable('maintenance_notices')
      .addColumn('service', 'text', (col) => col.notNull())
      .addColumn('environment', 'text', (col) => col.notNull())
      .addColumn('window_id', 'text', (col) => col.notNull())
      .addColumn('key', 'text', (col) => col.notNull())
      .addColumn('due_at', 'text', (col) => col.notNull())
      .addColumn('sent_at', 'text', (col) => col.notNull())
      .addColumn('status', 'text', (col) => col.notNull())
      .addColumn('detail', 'text')
      .addColumn('attempts', 'integer', (col) => col.notNull().defaultTo(1))
      .addPrimaryKeyConstraint('maintenance_notices_pkey', ['service', 'environment', 'window_id', 'key'])
      .execute();
  },
};

/** The states in which a window holds its span (a new window may not overlap it). */
export const OPEN_WINDOW_STATES: readonly WindowState[] = ['scheduled', 'running'];

export type NoticeStatus = 'sending' | 'sent' | 'partial' | 'failed';

export interface MaintenanceNotice {
  windowId: string;
  key: string;
  dueAt: string;
  sentAt: string;
  status: NoticeStatus;
  detail: unknown;
  attempts: number;
}

/** What claiming a notice got: `claimed` false when someone else holds it or it went out already. */
export interface NoticeClaim {
  claimed: boolean;
  /** A retry: the earlier attempt `failed`, or was left `sending` (a process died at it). */
  retryOf?: 'failed' | 'stale' | undefined;
  attempts: number;
}

/** A `failed` notice is tried again after this long (not every tick). */
export const NOTICE_RETRY_MS = 30_000;
/** A notice left `sending` this long was abandoned by a process that died: it is claimed again. */
export const NOTICE_STALE_MS = 2 * 60_000;

/** What may change on a window after it is planned. */
export interface WindowPatch {
  state?: WindowState;
  runId?: string | null;
  reason?: string | null;
}

export interface MaintenanceRepo {
  /**
   * Records a new window, refusing one that overlaps a `scheduled` or `running` window of the same scope
   * (checked in the insert's transaction, so of two concurrent overlapping plans exactly one is recorded).
   * Spans are compared from `leadMs` before each start (the run starts then: two runs never overlap).
   * @throws ConflictError naming the other window and its times; or when the id exists already in the
   *   scope (details.exists true).
   */
  create(
    scope: RunScope,
    window: MaintenanceWindow,
    actor: Actor,
    options?: { leadMs?: number },
  ): Promise<MaintenanceWindow>;
  get(scope: RunScope, id: string): Promise<MaintenanceWindow | undefined>;
  /**
   * Windows of the scope by start time (oldest first), those ending after `endsAfter` and starting before
   * `startsBefore` when given, in `states` when given; at most `limit` (default 200, at most 1000).
   */
  list(
    scope: RunScope,
    options?: { endsAfter?: Date; startsBefore?: Date; states?: readonly WindowState[]; limit?: number },
  ): Promise<MaintenanceWindow[]>;
  /**
   * Changes a window that is in one of `from` (a conditional update: of two concurrent transitions one
   * wins), and whose run id is `ifRunId` when given (null: none yet), audited as `action` by `actor`.
   * @returns the window after, or undefined when it was not in `from` (or had another run id).
   * @throws NotFoundError when there is no such window.
   */
  transition(
    scope: RunScope,
    id: string,
    from: readonly WindowState[],
    patch: WindowPatch,
    actor: Actor,
    action: string,
    options?: { ifRunId?: string | null },
  ): Promise<MaintenanceWindow | undefined>;
  /**
   * Claims notice `key` of a window (status `sending`): a new row, or a conditional update of one that
   * `failed` more than NOTICE_RETRY_MS ago or was left `sending` more than NOTICE_STALE_MS ago (when
   * `retry`). Of concurrent claimers exactly one wins each attempt.
   */
  claimNotice(
    scope: RunScope,
    windowId: string,
    key: string,
    dueAt: Date,
    options?: { retry?: boolean },
  ): Promise<NoticeClaim>;
  /** Records what sending a claimed notice did. */
  finishNotice(
    scope: RunScope,
    windowId: string,
    key: string,
    status: Exclude<NoticeStatus, 'sending'>,
    detail: unknown,
  ): Promise<void>;
  /** The notices of a window, by due time. */
  notices(scope: RunScope, windowId: string): Promise<MaintenanceNotice[]>;
}

type Row = Selectable<MaintenanceWindowsTable>;

const LIST_DEFAULT = 200;
const LIST_MAX = 1000;
const NOTICE_STATUSES: readonly string[] = ['sending', 'sent', 'partial', 'failed'];

function toWindow(row: Row): MaintenanceWindow {
  return {
    id: row.id,
    name: row.name,
    origin: row.origin === 'recurring' ? 'recurring' : 'adhoc',
    startsAt: row.starts_at,
    endsAt: row.ends_at,
    timezone: row.timezone,
    tasks: parseJson<MaintenanceTask[]>(row.tasks, []),
    version: row.version ?? undefined,
    message: row.message ?? undefined,
    hold: Number(row.hold) === 1,
    state: row.state as WindowState,
    runId: row.run_id ?? undefined,
    createdBy: row.created_by,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    reason: row.reason ?? undefined,
  };
}

/** The counter row whose lock serialises the overlap checks of one scope. */
const lockName = (scope: RunScope) => `maintenance:${scope.service}/${scope.environment}`;

export function createMaintenanceRepo(
  db: Kysely<StoreDatabase>,
  call: StoreCall,
  clock: Clock,
): MaintenanceRepo {
  const noticeRows = (scope: RunScope, windowId: string) =>
    db
      .selectFrom('maintenance_notices')
      .selectAll()
      .where('service', '=', scope.service)
      .where('environment', '=', scope.environment)
      .where('window_id', '=', windowId);
  /** The scope's windows, read through `on` (a transaction, or the store). */
  const inScope = (scope: RunScope, on: Kysely<StoreDatabase> = db) =>
    on
      .selectFrom('maintenance_windows')
      .selectAll()
      .where('service', '=', scope.service)
      .where('environment', '=', scope.environment);
  return {
    create(scope, window, actor, options = {}) {
      const leadMs = Math.max(0, options.leadMs ?? 0);
      return call(`planning maintenance window ${window.id}`, () =>
        db.transaction().execute(async (tx) => {
          // Taking the scope's counter row (insert if absent, then update) holds its row lock until the
          // commit on PostgreSQL: a concurrent plan waits here and then sees this window (read committed
          // reads the latest committed rows per statement). SQLite serialises writers anyway.
          const name = lockName(scope);
          await tx
            .insertInto('counters')
            .values({ name, value: 0 })
            .onConflict((oc) => oc.column('name').doNothing())
            .execute();
          await tx
            .updateTable('counters')
            .set((eb) => ({ value: eb('value', '+', 1) }))
            .where('name', '=', name)
            .execute();
          const existing = await tx
            .selectFrom('maintenance_windows')
            .select(['id', 'state', 'starts_at', 'ends_at'])
            .where('service', '=', scope.service)
            .where('environment', '=', scope.environment)
            .where('id', '=', window.id)
            .executeTakeFirst();
          if (existing)
            throw new ConflictError(
              `maintenance window ${window.id} exists already (${existing.state}, ${existing.starts_at}–${existing.ends_at})`,
              {
                details: {
                  window: window.id,
                  exists: true,
                  state: existing.state,
                  startsAt: existing.starts_at,
                  endsAt: existing.ends_at,
                },
              },
            );
          const other = await inScope(scope, tx)
            .where('state', 'in', [...OPEN_WINDOW_STATES])
            // [start − lead, end] of both: s2 − lead < e1 and s1 − lead < e2.
            .where('starts_at', '<', new Date(Date.parse(window.endsAt) + leadMs).toISOString())
            .where('ends_at', '>', new Date(Date.parse(window.startsAt) - leadMs).toISOString())
            .orderBy('starts_at')
            .executeTakeFirst();
          if (other)
            throw new ConflictError(
              `maintenance window ${window.startsAt}–${window.endsAt} overlaps window ${other.id} ` +
                `("${other.name}", ${other.state}, ${other.starts_at}–${other.ends_at}); cancel it first or pick another time`,
              {
                details: {
                  window: other.id,
                  startsAt: other.starts_at,
                  endsAt: other.ends_at,
                  state: other.state,
                },
              },
            );
          const at = clock.now();
          const iso = at.toISOString();
          await tx
            .insertInto('maintenance_windows')
            .values({
              id: window.id,
              service: scope.service,
              environment: scope.environment,
              name: window.name,
              origin: window.origin,
              starts_at: window.startsAt,
              ends_at: window.endsAt,
              timezone: window.timezone,
              tasks: JSON.stringify(window.tasks),
              version: window.version ?? null,
              message: window.message ?? null,
              hold: window.hold ? 1 : 0,
              state: window.state,
              run_id: window.runId ?? null,
              created_by: window.createdBy,
              created_at: iso,
              updated_at: iso,
              reason: window.reason ?? null,
            })
            .execute();
          await appendAudit(
            tx,
            {
              actor,
              action: 'maintenance.plan',
              target: `maintenance:${window.id}`,
              data: {
                startsAt: window.startsAt,
                endsAt: window.endsAt,
                tasks: window.tasks,
                origin: window.origin,
                ...(window.version ? { version: window.version } : {}),
                hold: window.hold,
              },
            },
            at,
          );
          return toWindow(await inScope(scope, tx).where('id', '=', window.id).executeTakeFirstOrThrow());
        }),
      );
    },

    get(scope, id) {
      return call(`reading maintenance window ${id}`, async () => {
        const row = await inScope(scope).where('id', '=', id).executeTakeFirst();
        return row ? toWindow(row) : undefined;
      });
    },

    list(scope, options = {}) {
      return call('listing maintenance windows', async () => {
        let query = inScope(scope);
        if (options.endsAfter) query = query.where('ends_at', '>', options.endsAfter.toISOString());
        if (options.startsBefore) query = query.where('starts_at', '<', options.startsBefore.toISOString());
        if (options.states) {
          if (options.states.length === 0) return [];
          query = query.where('state', 'in', [...options.states]);
        }
        const limit = Math.min(Math.max(1, Math.floor(options.limit ?? LIST_DEFAULT)), LIST_MAX);
        const rows = await query.orderBy('starts_at').orderBy('id').limit(limit).execute();
        return rows.map(toWindow);
      });
    },

    transition(scope, id, from, patch, actor, action, options = {}) {
      return call(`updating maintenance window ${id}`, () =>
        db.transaction().execute(async (tx) => {
          const row = await inScope(scope, tx).where('id', '=', id).executeTakeFirst();
          if (!row) throw new NotFoundError(`no maintenance window ${id}`);
          const at = clock.now();
          let update = tx
            .updateTable('maintenance_windows')
            .set({
              ...(patch.state !== undefined ? { state: patch.state } : {}),
              ...(patch.runId !== undefined ? { run_id: patch.runId } : {}),
              ...(patch.reason !== undefined ? { reason: patch.reason } : {}),
              updated_at: at.toISOString(),
            })
            .where('service', '=', scope.service)
            .where('environment', '=', scope.environment)
            .where('id', '=', id)
            .where('state', 'in', [...from]);
          if (options.ifRunId === null) update = update.where('run_id', 'is', null);
          else if (options.ifRunId !== undefined) update = update.where('run_id', '=', options.ifRunId);
          const updated = await update.executeTakeFirst();
          if (Number(updated.numUpdatedRows) !== 1) return undefined;
          await appendAudit(
            tx,
            {
              actor,
              action,
              target: `maintenance:${id}`,
              data: {
                from: row.state,
                ...(patch.state !== undefined ? { state: patch.state } : {}),
                ...(patch.runId ? { runId: patch.runId } : {}),
                ...(patch.reason ? { reason: patch.reason } : {}),
              },
            },
            at,
          );
          return toWindow(await inScope(scope, tx).where('id', '=', id).executeTakeFirstOrThrow());
        }),
      );
    },

    claimNotice(scope, windowId, key, dueAt, options = {}) {
      return call(`claiming notice ${key} of maintenance window ${windowId}`, async () => {
        const now = clock.now();
        const inserted = await db
          .insertInto('maintenance_notices')
          .values({
            service: scope.service,
            environment: scope.environment,
            window_id: windowId,
            key,
            due_at: dueAt.toISOString(),
            sent_at: now.toISOString(),
            status: 'sending',
            detail: null,
            attempts: 1,
          })
          .onConflict((oc) => oc.columns(['service', 'environment', 'window_id', 'key']).doNothing())
          .returning('key')
          .execute();
        if (inserted.length > 0) return { claimed: true, attempts: 1 };
        const row = await noticeRows(scope, windowId).where('key', '=', key).executeTakeFirst();
        if (!row || !options.retry) return { claimed: false, attempts: row ? Number(row.attempts) : 0 };
        const failedBefore = new Date(now.getTime() - NOTICE_RETRY_MS).toISOString();
        const staleBefore = new Date(now.getTime() - NOTICE_STALE_MS).toISOString();
        const retryOf =
          row.status === 'failed' && row.sent_at < failedBefore
            ? 'failed'
            : row.status === 'sending' && row.sent_at < staleBefore
              ? 'stale'
              : undefined;
        if (!retryOf) return { claimed: false, attempts: Number(row.attempts) };
        // Conditional on the attempt read: of two concurrent claimers of the same attempt one wins.
        const updated = await db
          .updateTable('maintenance_notices')
          .set({ status: 'sending', sent_at: now.toISOString(), attempts: Number(row.attempts) + 1 })
          .where('service', '=', scope.service)
          .where('environment', '=', scope.environment)
          .where('window_id', '=', windowId)
          .where('key', '=', key)
          .where('status', '=', row.status)
          .where('attempts', '=', Number(row.attempts))
          .executeTakeFirst();
        return Number(updated.numUpdatedRows) === 1
          ? { claimed: true, retryOf, attempts: Number(row.attempts) + 1 }
          : { claimed: false, attempts: Number(row.attempts) + 1 };
      });
    },

    finishNotice(scope, windowId, key, status, detail) {
      return call(`recording notice ${key} of maintenance window ${windowId}`, async () => {
        await db
          .updateTable('maintenance_notices')
          .set({ status, detail: JSON.stringify(detail), sent_at: clock.now().toISOString() })
          .where('service', '=', scope.service)
          .where('environment', '=', scope.environment)
          .where('window_id', '=', windowId)
          .where('key', '=', key)
          .execute();
      });
    },

    notices(scope, windowId) {
      return call(`reading the notices of maintenance window ${windowId}`, async () => {
        const rows = await noticeRows(scope, windowId).orderBy('due_at').orderBy('key').execute();
        return rows.map((r) => ({
          windowId: r.window_id,
          key: r.key,
          dueAt: r.due_at,
          sentAt: r.sent_at,
          status: (NOTICE_STATUSES.includes(r.status) ? r.status : 'failed') as NoticeStatus,
          detail: parseJson<unknown>(r.detail, null),
          attempts: Number(r.attempts),
        }));
      });
    },
  };
}
