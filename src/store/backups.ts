import { type Kysely, type Selectable } from 'kysely';
import type { Migration } from 'kysely/migration';
import { type Clock, ConflictError, NotFoundError } from '../core/index.ts';
import type { Actor } from '../runbooks/model.ts';
import { appendAudit } from './audit.ts';
import { parseJson } from './json.ts';
import type { StoreCall } from './check-runs.ts';
import type { StoreDatabase } from './schema.ts';

/**
 * The backup catalog (src/backups): one row per backup set, its state and what was proven about it, and
 * per component the newest set a drill restored successfully ("last verified restorable").
 *
 * - `backup_sets`: a set is `running` while a process holds the backup lock for it, then `complete`
 *   (its manifest is stored), `failed` or `pruned`. For a failed set, `objects` lists the keys written
 *   and not yet removed, the only objects prune may delete for it.
 * - `backup_lock`: one row; a conditional update takes it, so two backups never interleave (on SQLite
 *   and PostgreSQL alike). A lock whose lease ran out (the process died) is taken over and its set
 *   marked failed.
 * - `backup_restorable`: per component, the set and time of the last successful drill or restore check.
 */
export interface BackupTables {
  backup_sets: BackupSetsTable;
  backup_lock: BackupLockTable;
  backup_restorable: BackupRestorableTable;
}

export interface BackupSetsTable {
  id: string;
  service: string;
  environment: string;
  /** `running`, `complete`, `failed` or `pruned`. */
  state: string;
  /** JSON array of the component kinds in the set. */
  components: string;
  /** Where it is stored (the storage's description, no credentials). */
  storage: string;
  /** JSON Actor. */
  requested_by: string;
  created_at: string;
  updated_at: string;
  completed_at: string | null;
  size_bytes: number;
  object_count: number;
  manifest_key: string | null;
  manifest_sha256: string | null;
  error: string | null;
  /** JSON array of storage keys written but not covered by a manifest (a failed set's leftovers). */
  objects: string;
  /** JSON progress snapshot while running. */
  progress: string | null;
  verified_at: string | null;
  verify_ok: number | null;
  verify_error: string | null;
  drilled_at: string | null;
  drill_ok: number | null;
  /** JSON drill report. */
  drill_report: string | null;
  pruned_at: string | null;
}

export interface BackupLockTable {
  /** `<service>/<environment>`: one backup at a time per service and environment. */
  name: string;
  set_id: string | null;
  holder: string | null;
  expires_at: string | null;
}

export interface BackupRestorableTable {
  service: string;
  environment: string;
  component: string;
  set_id: string;
  at: string;
  /** The runbook run (drill) that proved it, when there was one. */
  run_id: string | null;
}

export const backupsMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('backup_sets')
      .addColumn('id', 'text', (col) => col.primaryKey())
      .addColumn('service', 'text', (col) => col.notNull())
      .addColumn('environment', 'text', (col) => col.notNull())
      .addColumn('state', 'text', (col) => col.notNull())
      .addColumn('components', 'text', (col) => col.notNull())
      .addColumn('storage', 'text', (col) => col.notNull())
      .addColumn('requested_by', 'text', (col) => col.notNull())
      .addColumn('created_at', 'text', (col) => col.notNull())
      .addColumn('updated_at', 'text', (col) => col.notNull())
      .addColumn('completed_at', 'text')
      .addColumn('size_bytes', 'bigint', (col) => col.notNull().defaultTo(0))
      .addColumn('object_count', 'integer', (col) => col.notNull().defaultTo(0))
      .addColumn('manifest_key', 'text')
      .addColumn('manifest_sha256', 'text')
      .addColumn('error', 'text')
      .addColumn('objects', 'text', (col) => col.notNull().defaultTo('[]'))
      .addColumn('progress', 'text')
      .addColumn('verified_at', 'text')
      .addColumn('verify_ok', 'integer')
      .addColumn('verify_error', 'text')
      .addColumn('drilled_at', 'text')
      .addColumn('drill_ok', 'integer')
      .addColumn('drill_report', 'text')
      .addColumn('pruned_at', 'text')
      .execute();
    await db.schema
      .createIndex('backup_sets_scope_created_idx')
      .on('backup_sets')
      .columns(['service', 'environment', 'created_at'])
      .execute();
    await db.schema
      .createTable('backup_lock')
      .addColumn('name', 'text', (col) => col.primaryKey())
      .addColumn('set_id', 'text')
      .addColumn('holder', 'text')
      .addColumn('expires_at', 'text')
      .execute();
    await db.schema
      .createTable('backup_restorable')
      .addColumn('service', 'text', (col) => col.notNull())
      .addColumn('environment', 'text', (col) => col.notNull())
      .addColumn('component', 'text', (col) => col.notNull())
      .addColumn('set_id', 'text', (col) => col.notNull())
      .addColumn('at', 'text', (col) => col.notNull())
      .addColumn('run_id', 'text')
      .addPrimaryKeyConstraint('backup_restorable_pkey', ['service', 'environment', 'component'])
      .execute();
  },
};

export type BackupState = 'running' | 'complete' | 'failed' | 'pruned';

export interface BackupSetRecord {
  id: string;
  service: string;
  environment: string;
  state: BackupState;
  components: string[];
  storage: string;
  requestedBy: Actor;
  createdAt: string;
  updatedAt: string;
  completedAt: string | null;
  sizeBytes: number;
  objectCount: number;
  manifestKey: string | null;
  manifestSha256: string | null;
  error: string | null;
  /** Keys written and not covered by a manifest (a failed set's leftovers). */
  objects: string[];
  progress: unknown;
  verifiedAt: string | null;
  verifyOk: boolean | null;
  verifyError: string | null;
  drilledAt: string | null;
  drillOk: boolean | null;
  drillReport: unknown;
  prunedAt: string | null;
}

export interface BeginBackupInput {
  id: string;
  service: string;
  environment: string;
  components: string[];
  storage: string;
  by: Actor;
  /** Who holds the lock (process id and host), for the message another backup gets. */
  holder: string;
  leaseMs: number;
}

export interface BackupRepo {
  /**
   * Takes the backup lock and records a `running` set. A lock whose lease ran out is taken over and its
   * set marked failed ("abandoned").
   * @throws ConflictError naming the running set when another backup holds the lock.
   */
  begin(input: BeginBackupInput): Promise<BackupSetRecord>;
  /**
   * Marks failed ("abandoned") every running set of the scope that no live lock holds: its process died
   * or stopped renewing. @returns the ids marked
   */
  reapAbandoned(scope: { service: string; environment: string }): Promise<string[]>;
  /**
   * Ends the lease of `holder` on the scope's lock now (the caller knows that process is gone), so the
   * next begin takes the lock over. @returns false when `holder` no longer held it
   */
  breakLock(scope: { service: string; environment: string }, holder: string): Promise<boolean>;
  /** Extends the lease and stores progress. @returns false when the lock is no longer this holder's. */
  renew(id: string, holder: string, leaseMs: number, progress?: unknown): Promise<boolean>;
  /** Records the keys written so far (so a crash leaves a list of leftovers). */
  noteObjects(id: string, keys: readonly string[]): Promise<void>;
  /** Marks the set complete (its manifest is stored) and releases the lock. */
  complete(
    id: string,
    holder: string,
    result: { sizeBytes: number; objectCount: number; manifestKey: string; manifestSha256: string },
  ): Promise<BackupSetRecord>;
  /** Marks the set failed with the keys left behind, and releases the lock if held for it. */
  fail(id: string, result: { error: string; leftovers: readonly string[] }): Promise<BackupSetRecord>;
  recordVerify(id: string, result: { ok: boolean; error: string | null; by: Actor }): Promise<void>;
  /** Records a drill; every component in `restorable` becomes "last verified restorable" with this set. */
  recordDrill(
    id: string,
    result: {
      ok: boolean;
      report: unknown;
      restorable: readonly string[];
      by: Actor;
      runId?: string | undefined;
    },
  ): Promise<void>;
  /** Per component, the newest set of this service and environment proven restorable. */
  restorable(scope: {
    service: string;
    environment: string;
  }): Promise<Array<{ component: string; setId: string; at: string; runId: string | null }>>;
  /** Marks a set pruned (its manifest is gone) or forgets a failed set's leftovers that were deleted. */
  markPruned(id: string, by: Actor, removed: readonly string[]): Promise<void>;
  /** Writes one audit record about a set (restore started, restore done...). */
  audit(id: string, by: Actor, action: string, data: Record<string, unknown>): Promise<void>;
  get(id: string): Promise<BackupSetRecord | undefined>;
  /** Newest first, this service and environment only. */
  list(
    scope: { service: string; environment: string },
    options?: { limit?: number },
  ): Promise<BackupSetRecord[]>;
}

type Row = Selectable<BackupSetsTable>;

const SYSTEM_ACTOR: Actor = { id: 'system', name: 'gameops', role: 'admin', kind: 'system' };

function toRecord(row: Row): BackupSetRecord {
  return {
    id: row.id,
    service: row.service,
    environment: row.environment,
    state: row.state as BackupState,
    components: parseJson<string[]>(row.components, []),
    storage: row.storage,
    requestedBy: parseJson<Actor>(row.requested_by, SYSTEM_ACTOR),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    completedAt: row.completed_at,
    sizeBytes: Number(row.size_bytes),
    objectCount: Number(row.object_count),
    manifestKey: row.manifest_key,
    manifestSha256: row.manifest_sha256,
    error: row.error,
    objects: parseJson<string[]>(row.objects, []),
    progress: parseJson<unknown>(row.progress, null),
    verifiedAt: row.verified_at,
    verifyOk: row.verify_ok === null ? null : Number(row.verify_ok) === 1,
    verifyError: row.verify_error,
    drilledAt: row.drilled_at,
    drillOk: row.drill_ok === null ? null : Number(row.drill_ok) === 1,
    drillReport: parseJson<unknown>(row.drill_report, null),
    prunedAt: row.pruned_at,
  };
}

const lockName = (scope: { service: string; environment: string }) => `${scope.service}/${scope.environment}`;

export function createBackupRepo(db: Kysely<StoreDatabase>, call: StoreCall, clock: Clock): BackupRepo {
  const now = () => clock.now();
  const releaseFor = (tx: Kysely<StoreDatabase>, id: string) =>
    tx
      .updateTable('backup_lock')
      .set({ set_id: null, holder: null, expires_at: null })
      .where('set_id', '=', id)
      .execute();
  /** Runs `work` in one transaction under `call(doing)`, given the time it runs at (and as ISO text). */
  const atomically = <T>(
    doing: string,
    work: (tx: Kysely<StoreDatabase>, at: Date, iso: string) => Promise<T>,
  ): Promise<T> =>
    call(doing, () =>
      db.transaction().execute((tx) => {
        const at = now();
        return work(tx, at, at.toISOString());
      }),
    );
  /** Appends the audit entry `action` on set `id` (target `backup:<id>`). */
  const auditSet = (
    on: Kysely<StoreDatabase>,
    id: string,
    actor: Actor,
    action: string,
    data: Record<string, unknown> | undefined,
    at: Date,
  ) => appendAudit(on, { actor, action, target: `backup:${id}`, data }, at);
  /** Releases the lock `id` holds, reads the set back and audits `action` as done by whoever requested it. */
  const closeSet = async (
    tx: Kysely<StoreDatabase>,
    id: string,
    action: string,
    data: Record<string, unknown>,
    at: Date,
  ): Promise<BackupSetRecord> => {
    await releaseFor(tx, id);
    const record = toRecord(
      await tx.selectFrom('backup_sets').selectAll().where('id', '=', id).executeTakeFirstOrThrow(),
    );
    await auditSet(tx, id, record.requestedBy, action, data, at);
    return record;
  };
  return {
    breakLock(scope, holder) {
      return call(`breaking the backup lock of ${lockName(scope)}`, async () => {
        const result = await db
          .updateTable('backup_lock')
          .set({ expires_at: now().toISOString() })
          .where('name', '=', lockName(scope))
          .where('holder', '=', holder)
          .executeTakeFirst();
        return Number(result.numUpdatedRows) === 1;
      });
    },
    reapAbandoned(scope) {
      return atomically(`reaping abandoned backups of ${lockName(scope)}`, async (tx, at, iso) => {
        const lock = await tx
          .selectFrom('backup_lock')
          .selectAll()
          .where('name', '=', lockName(scope))
          .executeTakeFirst();
        const held =
          lock && lock.set_id !== null && lock.expires_at !== null && lock.expires_at > iso
            ? lock.set_id
            : null;
        const running = await tx
          .selectFrom('backup_sets')
          .select(['id', 'requested_by'])
          .where('service', '=', scope.service)
          .where('environment', '=', scope.environment)
          .where('state', '=', 'running')
          .execute();
        const reaped: string[] = [];
        for (const set of running) {
          if (set.id === held) continue;
          const holder = lock?.set_id === set.id ? (lock.holder ?? 'unknown') : 'unknown';
          const error = `abandoned: the process taking it (${holder}) stopped renewing its lock`;
          await tx
            .updateTable('backup_sets')
            .set({ state: 'failed', error, updated_at: iso, progress: null })
            .where('id', '=', set.id)
            .where('state', '=', 'running')
            .execute();
          await appendAudit(
            tx,
            {
              actor: parseJson<Actor>(set.requested_by, SYSTEM_ACTOR),
              action: 'backup.fail',
              target: `backup:${set.id}`,
              data: { error },
            },
            at,
          );
          reaped.push(set.id);
        }
        return reaped;
      });
    },
    begin(input) {
      return atomically(`starting backup ${input.id}`, async (tx, at, iso) => {
        const name = lockName(input);
        await tx
          .insertInto('backup_lock')
          .values({ name, set_id: null, holder: null, expires_at: null })
          .onConflict((oc) => oc.column('name').doNothing())
          .execute();
        const lock = await tx
          .selectFrom('backup_lock')
          .selectAll()
          .where('name', '=', name)
          .executeTakeFirstOrThrow();
        if (lock.set_id !== null && lock.expires_at !== null && lock.expires_at > iso)
          throw new ConflictError(
            `backup ${lock.set_id} is running (held by ${lock.holder ?? 'another process'}, lease until ${lock.expires_at}: a holder that died loses it then); a second backup would interleave with it, so it was not started`,
            { details: { running: lock.set_id, holder: lock.holder } },
          );
        const taken = await tx
          .updateTable('backup_lock')
          .set({
            set_id: input.id,
            holder: input.holder,
            expires_at: new Date(at.getTime() + input.leaseMs).toISOString(),
          })
          .where('name', '=', name)
          .where((eb) =>
            eb.or([
              eb('set_id', 'is', null),
              eb('expires_at', 'is', null),
              eb('expires_at', '<=', iso),
              // The row as read above: a concurrent taker changes set_id, so this update misses.
            ]),
          )
          .where('set_id', lock.set_id === null ? 'is' : '=', lock.set_id)
          .executeTakeFirst();
        if (Number(taken.numUpdatedRows) !== 1)
          throw new ConflictError('another backup started at the same moment; this one was not started');
        if (lock.set_id !== null) {
          await tx
            .updateTable('backup_sets')
            .set({
              state: 'failed',
              error: `abandoned: the process taking it (${lock.holder ?? 'unknown'}) stopped renewing its lock`,
              updated_at: iso,
            })
            .where('id', '=', lock.set_id)
            .where('state', '=', 'running')
            .execute();
        }
        await tx
          .insertInto('backup_sets')
          .values({
            id: input.id,
            service: input.service,
            environment: input.environment,
            state: 'running',
            components: JSON.stringify(input.components),
            storage: input.storage,
            requested_by: JSON.stringify(input.by),
            created_at: iso,
            updated_at: iso,
            completed_at: null,
            size_bytes: 0,
            object_count: 0,
            manifest_key: null,
            manifest_sha256: null,
            error: null,
            objects: '[]',
            progress: null,
            verified_at: null,
            verify_ok: null,
            verify_error: null,
            drilled_at: null,
            drill_ok: null,
            drill_report: null,
            pruned_at: null,
          })
          .execute();
        await auditSet(
          tx,
          input.id,
          input.by,
          'backup.start',
          { components: input.components, storage: input.storage },
          at,
        );
        const row = await tx
          .selectFrom('backup_sets')
          .selectAll()
          .where('id', '=', input.id)
          .executeTakeFirstOrThrow();
        return toRecord(row);
      });
    },
    renew(id, holder, leaseMs, progress) {
      return call(`renewing the lock of backup ${id}`, async () => {
        const at = now();
        const result = await db
          .updateTable('backup_lock')
          .set({ expires_at: new Date(at.getTime() + leaseMs).toISOString() })
          .where('set_id', '=', id)
          .where('holder', '=', holder)
          .executeTakeFirst();
        if (progress !== undefined)
          await db
            .updateTable('backup_sets')
            .set({ progress: JSON.stringify(progress), updated_at: at.toISOString() })
            .where('id', '=', id)
            .execute();
        return Number(result.numUpdatedRows) === 1;
      });
    },
    noteObjects(id, keys) {
      return call(`recording the objects of backup ${id}`, async () => {
        await db
          .updateTable('backup_sets')
          .set({ objects: JSON.stringify(keys), object_count: keys.length, updated_at: now().toISOString() })
          .where('id', '=', id)
          .execute();
      });
    },
    complete(id, holder, result) {
      return atomically(`completing backup ${id}`, async (tx, at, iso) => {
        const lock = await tx
          .selectFrom('backup_lock')
          .selectAll()
          .where('set_id', '=', id)
          .where('holder', '=', holder)
          .where('expires_at', '>', iso)
          .executeTakeFirst();
        if (!lock)
          throw new ConflictError(
            `backup ${id} lost its lock (its lease ran out, so another backup may have started); it is not marked complete`,
          );
        const updated = await tx
          .updateTable('backup_sets')
          .set({
            state: 'complete',
            completed_at: iso,
            updated_at: iso,
            size_bytes: result.sizeBytes,
            object_count: result.objectCount,
            manifest_key: result.manifestKey,
            manifest_sha256: result.manifestSha256,
            objects: '[]',
            progress: null,
          })
          .where('id', '=', id)
          .where('state', '=', 'running')
          .executeTakeFirst();
        if (Number(updated.numUpdatedRows) !== 1)
          throw new ConflictError(`backup ${id} is no longer running; it is not marked complete`);
        return closeSet(
          tx,
          id,
          'backup.complete',
          {
            sizeBytes: result.sizeBytes,
            objects: result.objectCount,
            manifestSha256: result.manifestSha256,
          },
          at,
        );
      });
    },
    fail(id, result) {
      return atomically(`marking backup ${id} failed`, async (tx, at, iso) => {
        await tx
          .updateTable('backup_sets')
          .set({
            state: 'failed',
            error: result.error,
            objects: JSON.stringify(result.leftovers),
            updated_at: iso,
            progress: null,
          })
          .where('id', '=', id)
          .where('state', 'in', ['running', 'failed'])
          .execute();
        return closeSet(
          tx,
          id,
          'backup.fail',
          { error: result.error, leftovers: result.leftovers.length },
          at,
        );
      });
    },
    recordVerify(id, result) {
      return atomically(`recording the verification of backup ${id}`, async (tx, at, iso) => {
        await tx
          .updateTable('backup_sets')
          .set({
            verified_at: iso,
            verify_ok: result.ok ? 1 : 0,
            verify_error: result.error,
            updated_at: iso,
          })
          .where('id', '=', id)
          .execute();
        await auditSet(
          tx,
          id,
          result.by,
          'backup.verify',
          { ok: result.ok, ...(result.error ? { error: result.error } : {}) },
          at,
        );
      });
    },
    recordDrill(id, result) {
      return atomically(`recording the drill of backup ${id}`, async (tx, at, iso) => {
        await tx
          .updateTable('backup_sets')
          .set({
            drilled_at: iso,
            drill_ok: result.ok ? 1 : 0,
            drill_report: JSON.stringify(result.report),
            updated_at: iso,
          })
          .where('id', '=', id)
          .execute();
        const set = await tx
          .selectFrom('backup_sets')
          .select(['service', 'environment'])
          .where('id', '=', id)
          .executeTakeFirst();
        if (!set) throw new NotFoundError(`no backup set ${id}`);
        for (const component of result.restorable) {
          await tx
            .deleteFrom('backup_restorable')
            .where('service', '=', set.service)
            .where('environment', '=', set.environment)
            .where('component', '=', component)
            .execute();
          await tx
            .insertInto('backup_restorable')
            .values({ ...set, component, set_id: id, at: iso, run_id: result.runId ?? null })
            .execute();
        }
        await auditSet(
          tx,
          id,
          result.by,
          'backup.drill',
          {
            ok: result.ok,
            restorable: result.restorable,
            ...(result.runId ? { runId: result.runId } : {}),
          },
          at,
        );
      });
    },
    restorable(scope) {
      return call('reading last verified restorable', async () => {
        const rows = await db
          .selectFrom('backup_restorable')
          .selectAll()
          .where('service', '=', scope.service)
          .where('environment', '=', scope.environment)
          .orderBy('component')
          .execute();
        return rows.map((r) => ({ component: r.component, setId: r.set_id, at: r.at, runId: r.run_id }));
      });
    },
    markPruned(id, by, removed) {
      return atomically(`marking backup ${id} pruned`, async (tx, at, iso) => {
        const row = await tx.selectFrom('backup_sets').selectAll().where('id', '=', id).executeTakeFirst();
        if (!row) throw new NotFoundError(`no backup set ${id}`);
        const record = toRecord(row);
        const left = record.objects.filter((k) => !removed.includes(k));
        await tx
          .updateTable('backup_sets')
          .set({
            ...(record.state === 'complete' ? { state: 'pruned', pruned_at: iso } : {}),
            ...(record.state === 'failed' && left.length === 0 ? { state: 'pruned', pruned_at: iso } : {}),
            objects: JSON.stringify(left),
            updated_at: iso,
          })
          .where('id', '=', id)
          .execute();
        await auditSet(tx, id, by, 'backup.prune', { objects: removed.length, was: record.state }, at);
      });
    },
    audit(id, by, action, data) {
      return call(`auditing backup ${id}`, async () => {
        await auditSet(db, id, by, action, data, now());
      });
    },
    get(id) {
      return call(`reading backup ${id}`, async () => {
        const row = await db.selectFrom('backup_sets').selectAll().where('id', '=', id).executeTakeFirst();
        return row ? toRecord(row) : undefined;
      });
    },
    list(scope, options = {}) {
      return call('listing backups', async () => {
        const rows = await db
          .selectFrom('backup_sets')
          .selectAll()
          .where('service', '=', scope.service)
          .where('environment', '=', scope.environment)
          .orderBy('created_at', 'desc')
          .orderBy('id', 'desc')
          .limit(options.limit ?? 500)
          .execute();
        return rows.map(toRecord);
      });
    },
  };
}
