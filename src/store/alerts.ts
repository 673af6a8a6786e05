import { createHash, randomUUID } from 'node:crypto';
import { type Kysely, type Selectable, type Transaction, sql } from 'kysely';
import type { Migration } from 'kysely/migration';
import { type Clock, NotFoundError } from '../core/index.ts';
import type { Actor } from '../runbooks/model.ts';
import { appendAudit } from './audit.ts';
import type { StoreCall } from './check-runs.ts';
import type { StoreDatabase } from './schema.ts';

/**
 * Alert intake's durable state (src/alerts):
 * - `alert_records`: one row per alert instance, keyed by (fingerprint, startsAt). `pending` is 1 while
 *   its status has not yet been told to incidents (`processed` is the status last handled).
 * - `suppression_windows`: ad-hoc paging suppression windows (config windows live in the config).
 * - `heartbeat_states`: per configured heartbeat, the last ping and the current outage.
 */
export interface AlertTables {
  alert_records: AlertRecordsTable;
  suppression_windows: SuppressionWindowsTable;
  heartbeat_states: HeartbeatStatesTable;
}

export interface AlertRecordsTable {
  /** sha256(fingerprint, startsAt), 20 hex digits: the same alert gets the same id on every instance. */
  id: string;
  fingerprint: string;
  starts_at: string;
  status: string;
  ends_at: string | null;
  name: string;
  labels: string;
  annotations: string;
  generator_url: string | null;
  /** `alertmanager` or `generic`. */
  source: string;
  /** The Alertmanager groupKey (snapshot reconciliation), or the generic endpoint's group. */
  group_key: string;
  receiver: string | null;
  first_seen_at: string;
  last_seen_at: string;
  /** When gameops learnt it resolved. */
  resolved_at: string | null;
  /** `payload`, `snapshot` (absent from its group's snapshot) or `reconcile` (Alertmanager no longer has it). */
  resolved_by: string | null;
  incident_id: string | null;
  /** The status last handled by processing (`firing`, `resolved`), null before. */
  processed: string | null;
  pending: number;
}

export interface SuppressionWindowsTable {
  id: string;
  name: string;
  matchers: string;
  starts_at: string;
  ends_at: string;
  comment: string;
  created_by: string;
  created_at: string;
  ended_at: string | null;
  ended_by: string | null;
}

export interface HeartbeatStatesTable {
  name: string;
  first_seen_at: string;
  last_ping_at: string | null;
  pings: number;
  /** The start of the current outage (when the heartbeat became overdue), null while up. */
  down_since: string | null;
  incident_id: string | null;
  /** An outage that ended with a ping but whose resolve has not been told to its incident yet. */
  recovered_since: string | null;
  recovered_incident_id: string | null;
  recovered_at: string | null;
}

export const alertsMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('alert_records')
      .addColumn('id', 'text', (col) => col.primaryKey())
      .addColumn('fingerprint', 'text', (col) => col.notNull())
      .addColumn('starts_at', 'text', (col) => col.notNull())
      .addColumn('status', 'text', (col) => col.notNull())
      .addColumn('ends_at', 'text')
      .addColumn('name', 'text', (col) => col.notNull())
      .addColumn('labels', 'text', (col) => col.notNull())
      .addColumn('annotations', 'text', (col) => col.notNull())
      .addColumn('generator_url', 'text')
      .addColumn('source', 'text', (col) => col.notNull())
      .addColumn('group_key', 'text', (col) => col.notNull())
      .addColumn('receiver', 'text')
      .addColumn('first_seen_at', 'text', (col) => col.notNull())
      .addColumn('last_seen_at', 'text', (col) => col.notNull())
      .addColumn('resolved_at', 'text')
      .addColumn('resolved_by', 'text')
      .addColumn('incident_id', 'text')
      .addColumn('processed', 'text')
      .addColumn('pending', 'integer', (col) => col.notNull().defaultTo(1))
      .addUniqueConstraint('alert_records_fingerprint_starts_at_key', ['fingerprint', 'starts_at'])
      .execute();
    await db.schema
      .createIndex('alert_records_group_status_idx')
      .on('alert_records')
      .columns(['group_key', 'status'])
      .execute();
    await db.schema.createIndex('alert_records_pending_idx').on('alert_records').column('pending').execute();
    await db.schema
      .createIndex('alert_records_incident_idx')
      .on('alert_records')
      .columns(['incident_id', 'status'])
      .execute();
    await db.schema
      .createIndex('alert_records_status_last_seen_idx')
      .on('alert_records')
      .columns(['status', 'last_seen_at'])
      .execute();
    await db.schema
      .createTable('suppression_windows')
      .addColumn('id', 'text', (col) => col.primaryKey())
      .addColumn('name', 'text', (col) => col.notNull())
      .addColumn('matchers', 'text', (col) => col.notNull())
      .addColumn('starts_at', 'text', (col) => col.notNull())
      .addColumn('ends_at', 'text', (col) => col.notNull())
      .addColumn('comment', 'text', (col) => col.notNull())
      .addColumn('created_by', 'text', (col) => col.notNull())
      .addColumn('created_at', 'text', (col) => col.notNull())
      .addColumn('ended_at', 'text')
      .addColumn('ended_by', 'text')
      .execute();
    await db.schema
      .createIndex('suppression_windows_ends_at_idx')
      .on('suppression_windows')
      .column('ends_at')
      .execute();
    await db.schema
      .createTable('heartbeat_states')
      .addColumn('name', 'text', (col) => col.primaryKey())
      .addColumn('first_seen_at', 'text', (col) => col.notNull())
      .addColumn('last_ping_at', 'text')
      .addColumn('pings', 'integer', (col) => col.notNull().defaultTo(0))
      .addColumn('down_since', 'text')
      .addColumn('incident_id', 'text')
      .addColumn('recovered_since', 'text')
      .addColumn('recovered_incident_id', 'text')
      .addColumn('recovered_at', 'text')
      .execute();
  },
};

// ---------------------------------------------------------------------------------------------------
// Repo

export type AlertStatus = 'firing' | 'resolved';

/** One alert of a delivery, already validated and normalised (ISO-8601 UTC instants). */
export interface AlertUpsert {
  fingerprint: string;
  startsAt: string;
  status: AlertStatus;
  endsAt?: string | undefined;
  name: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  generatorUrl?: string | undefined;
  /** This alert's group, when not the batch's (generic alerts group by name). */
  groupKey?: string | undefined;
  /**
   * startsAt is only a default (an undated generic alert): the firing instance of this fingerprint, when
   * there is one, is continued instead. Resolved inside the upsert's transaction.
   */
  continues?: boolean | undefined;
}

export interface AlertBatch {
  source: 'alertmanager' | 'generic';
  groupKey: string;
  receiver?: string | undefined;
  /**
   * The batch is the whole group (an Alertmanager payload that was not truncated): firing alerts of the
   * group that are absent from it resolve.
   */
  snapshot: boolean;
  /**
   * With `snapshot`: do not resolve the absent alerts, only count them (`absent`) so the caller confirms
   * their absence elsewhere (Alertmanager leaves silenced and inhibited alerts out of notifications).
   */
  confirmAbsence?: boolean | undefined;
  alerts: AlertUpsert[];
}

export interface BatchOutcome {
  /** Alerts seen for the first time. */
  created: number;
  /** Alerts whose status, end, labels or annotations changed. */
  changed: number;
  /** Alerts exactly as stored (a duplicate delivery). */
  unchanged: number;
  /** Firing alerts of the group absent from a snapshot, now resolved. */
  resolvedByAbsence: number;
  /** Firing alerts of the group absent from a snapshot, left firing until confirmed (`confirmAbsence`). */
  absent: number;
  /** Firing alerts of the delivery already handled and linked to an incident, by incident id. */
  linked: Map<string, string[]>;
}

/** An alert as stored. */
export interface StoredAlert {
  id: string;
  fingerprint: string;
  startsAt: string;
  status: AlertStatus;
  endsAt?: string;
  name: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  generatorUrl?: string;
  source: string;
  groupKey: string;
  receiver?: string;
  firstSeenAt: string;
  lastSeenAt: string;
  resolvedAt?: string;
  resolvedBy?: 'payload' | 'snapshot' | 'reconcile';
  incidentId?: string;
  /** The status processing last handled; absent before the first. */
  processed?: AlertStatus;
  /** Not yet handled by processing. */
  pending: boolean;
}

export interface ListAlertsQuery {
  status?: AlertStatus | undefined;
  incidentId?: string | undefined;
  /** Exact label values, all must match. */
  labels?: Record<string, string> | undefined;
  /** @default 100, at most 1000 */
  limit?: number | undefined;
}

export interface StoredWindow {
  id: string;
  name: string;
  matchers: string[];
  startsAt: string;
  endsAt: string;
  comment: string;
  createdBy: string;
  createdAt: string;
  endedAt?: string;
  endedBy?: string;
}

export interface HeartbeatState {
  name: string;
  firstSeenAt: string;
  lastPingAt?: string;
  pings: number;
  downSince?: string;
  incidentId?: string;
  recoveredSince?: string;
  recoveredIncidentId?: string;
  recoveredAt?: string;
}

/**
 * Alert intake's store. Every write that changes what people see is one transaction; ad-hoc suppression
 * windows are audited in the same transaction as their change.
 */
export interface AlertRepo {
  /**
   * Upserts a delivery in one transaction: each alert by (fingerprint, startsAt) (a resolve carried by a
   * payload is final; one gameops inferred, `snapshot` or `reconcile`, is reopened by a later firing),
   * and, for a snapshot, resolves the group's firing alerts it does not contain (or, with
   * `confirmAbsence`, only counts them). Alerts that are new or changed status become pending. A crash
   * leaves all of it or none.
   */
  upsertBatch(batch: AlertBatch): Promise<BatchOutcome>;
  /** Alerts whose status processing has not handled yet, oldest first. */
  pending(limit: number): Promise<StoredAlert[]>;
  /**
   * Marks an alert's status handled (and links it to its incident). Conditional on the status it had when
   * read: false when it changed meanwhile (the next pass handles the new status).
   */
  markProcessed(id: string, status: AlertStatus, incidentId: string | undefined): Promise<boolean>;
  /** {@link markProcessed} for many alerts in one statement per 500; returns how many were marked. */
  markProcessedMany(ids: string[], status: AlertStatus, incidentId: string | undefined): Promise<number>;
  /**
   * Makes these firing alerts of `incidentId` pending again (their incident is over while they still
   * fire: processing opens or joins a new one). Returns how many.
   */
  requeue(incidentId: string, ids: string[]): Promise<number>;
  /** How many alerts of the incident still fire. */
  firingCount(incidentId: string): Promise<number>;
  /**
   * Resolves firing alerts from `source` with these ids that were last seen at or before `seenBefore`
   * (`resolved_by` = reconcile). Returns how many.
   */
  resolveMissing(ids: string[], seenBefore: string): Promise<number>;
  /** The startsAt of the firing instance of each fingerprint that has one. */
  firingSince(fingerprints: string[]): Promise<Map<string, string>>;
  /** Firing alerts (id, fingerprint, group, last seen) from a source, for reconciliation. */
  firing(source: 'alertmanager' | 'generic', groupKey?: string): Promise<StoredAlert[]>;
  list(query?: ListAlertsQuery): Promise<StoredAlert[]>;
  /**
   * Deletes up to `limit` alerts resolved (and processed) before `before`, and ad-hoc windows that ended
   * before it. Returns how many alerts.
   */
  prune(before: string, limit: number): Promise<number>;
  /** @throws NotFoundError */
  get(id: string): Promise<StoredAlert>;

  createWindow(input: {
    name: string;
    matchers: string[];
    startsAt: string;
    endsAt: string;
    comment: string;
    by: Actor;
  }): Promise<StoredWindow>;
  /** Ad-hoc windows that end after `after` and were not ended early, soonest first; or every one. */
  windows(options?: {
    activeAfter?: string | undefined;
    limit?: number | undefined;
  }): Promise<StoredWindow[]>;
  /**
   * Ends a window now (ending an ended or past window changes nothing, and is not audited again).
   * @throws NotFoundError
   */
  endWindow(id: string, by: Actor): Promise<StoredWindow>;

  /** Rows for these heartbeats, created (first seen now) when missing. */
  heartbeats(names: string[]): Promise<HeartbeatState[]>;
  /**
   * Records a ping. An outage in progress ends: it moves to `recovered*` (until its incident is told).
   */
  ping(name: string): Promise<HeartbeatState>;
  /**
   * Starts an outage at `since` unless one is in progress or an earlier recovery was not told to its
   * incident yet; false when refused or another caller did.
   */
  markDown(name: string, since: string, lastPingAt: string | null): Promise<boolean>;
  /** Links the current outage to its incident. */
  linkOutage(name: string, since: string, incidentId: string): Promise<void>;
  /** Clears a recovered outage once its incident was told. */
  clearRecovered(name: string, since: string): Promise<void>;
}

/** The stable id of the alert instance (fingerprint, startsAt). */
export function alertId(fingerprint: string, startsAt: string): string {
  return createHash('sha256').update(`${fingerprint}\n${startsAt}`).digest('hex').slice(0, 20);
}

/** Rows per multi-row statement: 1,000 alerts × 19 columns stays below every backend's parameter limit. */
const CHUNK = 500;
const MAX_LIST = 1000;

type Row = Selectable<AlertRecordsTable>;
type Tx = Transaction<StoreDatabase> | Kysely<StoreDatabase>;

export function createAlertRepo(db: Kysely<StoreDatabase>, call: StoreCall, clock: Clock): AlertRepo {
  const selectAlerts = (tx: Tx = db) => tx.selectFrom('alert_records').selectAll();

  return {
    upsertBatch(batch) {
      const now = clock.now().toISOString();
      return call(`storing ${batch.alerts.length} alert(s) of group ${batch.groupKey}`, () =>
        db.transaction().execute(async (tx) => {
          // Undated alerts continue the firing instance of their fingerprint, read in this transaction.
          const continuing = [...new Set(batch.alerts.filter((a) => a.continues).map((a) => a.fingerprint))];
          const since = new Map<string, string>();
          for (const part of chunks(continuing, CHUNK)) {
            if (part.length === 0) continue;
            const rows = await tx
              .selectFrom('alert_records')
              .select(['fingerprint', 'starts_at'])
              .where('fingerprint', 'in', part)
              .where('status', '=', 'firing')
              .orderBy('starts_at')
              .execute();
            for (const row of rows) since.set(row.fingerprint, row.starts_at);
          }
          // Within one payload the last occurrence of an alert wins (Alertmanager never repeats one).
          const byId = new Map<string, AlertUpsert>();
          for (const given of batch.alerts) {
            const startsAt = (given.continues && since.get(given.fingerprint)) || given.startsAt;
            const alert = startsAt === given.startsAt ? given : { ...given, startsAt };
            byId.set(alertId(alert.fingerprint, alert.startsAt), alert);
          }
          const ids = [...byId.keys()];
          const existing = new Map<string, Row>();
          for (const part of chunks(ids, CHUNK)) {
            if (part.length === 0) continue;
            for (const row of await selectAlerts(tx).where('id', 'in', part).execute())
              existing.set(row.id, row);
          }
          const writes: Row[] = [];
          const seenOnly: string[] = [];
          const linked = new Map<string, string[]>();
          let created = 0;
          let changed = 0;
          for (const [id, alert] of byId) {
            const old = existing.get(id);
            const row = newRow(id, alert, batch, now, old);
            if (
              old?.incident_id &&
              row.status === 'firing' &&
              old.status === 'firing' &&
              Number(old.pending) === 0
            )
              linked.set(old.incident_id, [...(linked.get(old.incident_id) ?? []), id]);
            if (!old) {
              created++;
              writes.push(row);
            } else if (differs(old, row)) {
              changed++;
              writes.push(row);
            } else seenOnly.push(id);
          }
          for (const part of chunks(writes, CHUNK)) {
            if (part.length === 0) continue;
            await tx
              .insertInto('alert_records')
              .values(part)
              .onConflict((oc) =>
                oc.columns(['fingerprint', 'starts_at']).doUpdateSet({
                  // A resolve carried by a payload is final: a late or duplicate "firing" never reopens it. A
                  // resolve gameops inferred (snapshot absence, reconcile) is reopened by a later firing.
                  status: sql`case when ${FINAL} then 'resolved' else excluded.status end`,
                  ends_at: sql`case when ${FINAL} then alert_records.ends_at else excluded.ends_at end`,
                  resolved_at: sql`case when ${FINAL} then alert_records.resolved_at else excluded.resolved_at end`,
                  resolved_by: sql`case when ${FINAL} then alert_records.resolved_by else excluded.resolved_by end`,
                  pending: sql`case when ${FINAL} or alert_records.status = excluded.status then alert_records.pending else 1 end`,
                  name: sql`excluded.name`,
                  labels: sql`excluded.labels`,
                  annotations: sql`excluded.annotations`,
                  generator_url: sql`excluded.generator_url`,
                  group_key: sql`excluded.group_key`,
                  receiver: sql`excluded.receiver`,
                  last_seen_at: sql`excluded.last_seen_at`,
                }),
              )
              .execute();
          }
          for (const part of chunks(seenOnly, CHUNK)) {
            if (part.length === 0) continue;
            await tx
              .updateTable('alert_records')
              .set({ last_seen_at: now })
              .where('id', 'in', part)
              .execute();
          }
          let resolvedByAbsence = 0;
          let absentCount = 0;
          if (batch.snapshot) {
            const firing = await tx
              .selectFrom('alert_records')
              .select('id')
              .where('group_key', '=', batch.groupKey)
              .where('status', '=', 'firing')
              .execute();
            const absent = firing.map((r) => r.id).filter((id) => !byId.has(id));
            absentCount = absent.length;
            for (const part of chunks(batch.confirmAbsence ? [] : absent, CHUNK)) {
              if (part.length === 0) continue;
              const result = await tx
                .updateTable('alert_records')
                .set({
                  status: 'resolved',
                  ends_at: now,
                  resolved_at: now,
                  resolved_by: 'snapshot',
                  pending: 1,
                })
                .where('id', 'in', part)
                .where('status', '=', 'firing')
                .executeTakeFirst();
              resolvedByAbsence += Number(result.numUpdatedRows);
            }
          }
          return {
            created,
            changed,
            unchanged: seenOnly.length,
            resolvedByAbsence,
            absent: batch.confirmAbsence ? absentCount : 0,
            linked,
          };
        }),
      );
    },

    async pending(limit) {
      const rows = await call('reading pending alerts', () =>
        selectAlerts()
          .where('pending', '=', 1)
          .orderBy('first_seen_at')
          .orderBy('starts_at')
          .orderBy('fingerprint')
          .limit(Math.max(1, Math.min(limit, MAX_LIST)))
          .execute(),
      );
      return rows.map(fromRow);
    },

    async markProcessed(id, status, incidentId) {
      const result = await call(`marking alert ${id} processed`, () =>
        db
          .updateTable('alert_records')
          .set({
            processed: status,
            pending: 0,
            ...(incidentId !== undefined ? { incident_id: incidentId } : {}),
          })
          .where('id', '=', id)
          .where('status', '=', status)
          .where('pending', '=', 1)
          .executeTakeFirst(),
      );
      return Number(result.numUpdatedRows) > 0;
    },

    async markProcessedMany(ids, status, incidentId) {
      let n = 0;
      for (const part of chunks(ids, CHUNK)) {
        if (part.length === 0) continue;
        const result = await call(`marking ${part.length} alert(s) processed`, () =>
          db
            .updateTable('alert_records')
            .set({
              processed: status,
              pending: 0,
              ...(incidentId !== undefined ? { incident_id: incidentId } : {}),
            })
            .where('id', 'in', part)
            .where('status', '=', status)
            .where('pending', '=', 1)
            .executeTakeFirst(),
        );
        n += Number(result.numUpdatedRows);
      }
      return n;
    },

    async requeue(incidentId, ids) {
      let n = 0;
      for (const part of chunks(ids, CHUNK)) {
        if (part.length === 0) continue;
        const result = await call(`requeueing ${part.length} alert(s) of ${incidentId}`, () =>
          db
            .updateTable('alert_records')
            .set({ pending: 1 })
            .where('id', 'in', part)
            .where('incident_id', '=', incidentId)
            .where('status', '=', 'firing')
            .executeTakeFirst(),
        );
        n += Number(result.numUpdatedRows);
      }
      return n;
    },

    async firingCount(incidentId) {
      const row = await call(`counting firing alerts of ${incidentId}`, () =>
        db
          .selectFrom('alert_records')
          .select((eb) => eb.fn.countAll<string | number>().as('n'))
          .where('incident_id', '=', incidentId)
          .where('status', '=', 'firing')
          .executeTakeFirstOrThrow(),
      );
      return Number(row.n);
    },

    async resolveMissing(ids, seenBefore) {
      const now = clock.now().toISOString();
      return call(`resolving ${ids.length} alert(s) Alertmanager no longer has`, () =>
        db.transaction().execute(async (tx) => {
          let n = 0;
          for (const part of chunks(ids, CHUNK)) {
            if (part.length === 0) continue;
            const result = await tx
              .updateTable('alert_records')
              .set({
                status: 'resolved',
                ends_at: now,
                resolved_at: now,
                resolved_by: 'reconcile',
                pending: 1,
              })
              .where('id', 'in', part)
              .where('status', '=', 'firing')
              .where('last_seen_at', '<=', seenBefore)
              .executeTakeFirst();
            n += Number(result.numUpdatedRows);
          }
          return n;
        }),
      );
    },

    async firingSince(fingerprints) {
      const found = new Map<string, string>();
      for (const part of chunks([...new Set(fingerprints)], CHUNK)) {
        if (part.length === 0) continue;
        const rows = await call('reading firing alerts', () =>
          db
            .selectFrom('alert_records')
            .select(['fingerprint', 'starts_at'])
            .where('fingerprint', 'in', part)
            .where('status', '=', 'firing')
            .orderBy('starts_at')
            .execute(),
        );
        for (const row of rows) found.set(row.fingerprint, row.starts_at);
      }
      return found;
    },

    async firing(source, groupKey) {
      let query = selectAlerts().where('status', '=', 'firing').where('source', '=', source);
      if (groupKey !== undefined) query = query.where('group_key', '=', groupKey);
      const rows = await call('reading firing alerts', () => query.execute());
      return rows.map(fromRow);
    },

    async list(query = {}) {
      const limit = Math.max(1, Math.min(query.limit ?? 100, MAX_LIST));
      let q = selectAlerts();
      if (query.status) q = q.where('status', '=', query.status);
      if (query.incidentId !== undefined) q = q.where('incident_id', '=', query.incidentId);
      const labels = Object.entries(query.labels ?? {});
      // Labels are canonical JSON: a pair is a substring. LIKE's wildcards only widen the match (a
      // backslash, PostgreSQL's LIKE escape, becomes `_`), and the labels are checked again below.
      for (const [name, value] of labels)
        q = q.where('labels', 'like', `%${likePattern(JSON.stringify({ [name]: value }).slice(1, -1))}%`);
      // Label filters are checked in code too, so a LIKE false positive never leaks; read a margin more.
      const rows = await call('listing alerts', () =>
        q
          .orderBy('last_seen_at', 'desc')
          .orderBy('id')
          .limit(labels.length > 0 ? limit * 4 : limit)
          .execute(),
      );
      return rows
        .map(fromRow)
        .filter((a) => labels.every(([name, value]) => a.labels[name] === value))
        .slice(0, limit);
    },

    async prune(before, limit) {
      return call('pruning old alerts', () =>
        db.transaction().execute(async (tx) => {
          const old = await tx
            .selectFrom('alert_records')
            .select('id')
            .where('status', '=', 'resolved')
            .where('pending', '=', 0)
            .where('resolved_at', '<', before)
            .limit(Math.max(1, Math.min(limit, CHUNK)))
            .execute();
          const ids = old.map((r) => r.id);
          if (ids.length > 0) await tx.deleteFrom('alert_records').where('id', 'in', ids).execute();
          await tx.deleteFrom('suppression_windows').where('ends_at', '<', before).execute();
          return ids.length;
        }),
      );
    },

    async get(id) {
      const row = await call(`reading alert ${id}`, () =>
        selectAlerts().where('id', '=', id).executeTakeFirst(),
      );
      if (!row) throw new NotFoundError(`no alert with id ${id} (gameops alerts list)`, { details: { id } });
      return fromRow(row);
    },

    async createWindow(input) {
      const now = clock.now();
      const row: Selectable<SuppressionWindowsTable> = {
        id: `sw-${randomUUID().slice(0, 8)}`,
        name: input.name,
        matchers: JSON.stringify(input.matchers),
        starts_at: input.startsAt,
        ends_at: input.endsAt,
        comment: input.comment,
        created_by: input.by.name,
        created_at: now.toISOString(),
        ended_at: null,
        ended_by: null,
      };
      await call(`creating suppression window ${input.name}`, () =>
        db.transaction().execute(async (tx) => {
          await tx.insertInto('suppression_windows').values(row).execute();
          await appendAudit(
            tx,
            {
              actor: input.by,
              action: 'suppression.create',
              target: `suppression:${row.id}`,
              data: {
                name: row.name,
                matchers: input.matchers,
                startsAt: row.starts_at,
                endsAt: row.ends_at,
                comment: row.comment,
              },
            },
            now,
          );
        }),
      );
      return windowFromRow(row);
    },

    async windows(options = {}) {
      let q = db.selectFrom('suppression_windows').selectAll();
      if (options.activeAfter !== undefined)
        q = q.where('ends_at', '>', options.activeAfter).where('ended_at', 'is', null);
      const rows = await call('listing suppression windows', () =>
        q
          .orderBy('starts_at', 'desc')
          .orderBy('id')
          .limit(Math.max(1, Math.min(options.limit ?? MAX_LIST, MAX_LIST)))
          .execute(),
      );
      return rows.map(windowFromRow);
    },

    async endWindow(id, by) {
      const now = clock.now();
      const row = await call(`ending suppression window ${id}`, () =>
        db.transaction().execute(async (tx) => {
          const found = await tx
            .selectFrom('suppression_windows')
            .selectAll()
            .where('id', '=', id)
            .executeTakeFirst();
          if (!found)
            throw new NotFoundError(`no suppression window with id ${id} (gameops alerts suppress list)`, {
              details: { id },
            });
          const at = now.toISOString();
          if (found.ended_at !== null || found.ends_at <= at) return found;
          const result = await tx
            .updateTable('suppression_windows')
            .set({ ended_at: at, ended_by: by.name })
            .where('id', '=', id)
            .where('ended_at', 'is', null)
            .executeTakeFirst();
          if (Number(result.numUpdatedRows) === 0) return found;
          await appendAudit(
            tx,
            { actor: by, action: 'suppression.end', target: `suppression:${id}`, data: { name: found.name } },
            now,
          );
          return { ...found, ended_at: at, ended_by: by.name };
        }),
      );
      return windowFromRow(row);
    },

    async heartbeats(names) {
      const now = clock.now().toISOString();
      return call('reading heartbeats', async () => {
        if (names.length > 0)
          await db
            .insertInto('heartbeat_states')
            .values(names.map((name) => ({ name, first_seen_at: now, pings: 0 })))
            .onConflict((oc) => oc.column('name').doNothing())
            .execute();
        if (names.length === 0) return [];
        const rows = await db.selectFrom('heartbeat_states').selectAll().where('name', 'in', names).execute();
        return rows.map(heartbeatFromRow).sort((a, b) => names.indexOf(a.name) - names.indexOf(b.name));
      });
    },

    async ping(name) {
      const now = clock.now().toISOString();
      const row = await call(`recording a ping of heartbeat ${name}`, () =>
        db.transaction().execute(async (tx) => {
          await tx
            .insertInto('heartbeat_states')
            .values({ name, first_seen_at: now, pings: 0 })
            .onConflict((oc) => oc.column('name').doNothing())
            .execute();
          await tx
            .updateTable('heartbeat_states')
            .set({
              last_ping_at: now,
              pings: sql`pings + 1`,
              // An outage in progress ends: kept aside until its incident is told.
              recovered_since: sql`case when down_since is null then recovered_since else down_since end`,
              recovered_incident_id: sql`case when down_since is null then recovered_incident_id else incident_id end`,
              recovered_at: sql`case when down_since is null then recovered_at else ${now} end`,
              down_since: null,
              incident_id: null,
            })
            .where('name', '=', name)
            .execute();
          return tx
            .selectFrom('heartbeat_states')
            .selectAll()
            .where('name', '=', name)
            .executeTakeFirstOrThrow();
        }),
      );
      return heartbeatFromRow(row);
    },

    async markDown(name, since, lastPingAt) {
      const result = await call(`marking heartbeat ${name} down`, () =>
        db
          .updateTable('heartbeat_states')
          .set({ down_since: since, incident_id: null })
          .where('name', '=', name)
          .where('down_since', 'is', null)
          .where('recovered_since', 'is', null)
          .where((eb) =>
            lastPingAt === null ? eb('last_ping_at', 'is', null) : eb('last_ping_at', '=', lastPingAt),
          )
          .executeTakeFirst(),
      );
      return Number(result.numUpdatedRows) > 0;
    },

    async linkOutage(name, since, incidentId) {
      await call(`linking heartbeat ${name} to ${incidentId}`, () =>
        db
          .updateTable('heartbeat_states')
          .set({ incident_id: incidentId })
          .where('name', '=', name)
          .where('down_since', '=', since)
          .execute(),
      );
    },

    async clearRecovered(name, since) {
      await call(`clearing the recovered outage of heartbeat ${name}`, () =>
        db
          .updateTable('heartbeat_states')
          .set({ recovered_since: null, recovered_incident_id: null, recovered_at: null })
          .where('name', '=', name)
          .where('recovered_since', '=', since)
          .execute(),
      );
    },
  };
}

/** The stored row's resolve is final (said by a payload), in SQL for the upsert's conflict branch. */
const FINAL = sql`(alert_records.status = 'resolved' and alert_records.resolved_by = 'payload')`;

function newRow(id: string, alert: AlertUpsert, batch: AlertBatch, now: string, old: Row | undefined): Row {
  // Only a payload's resolve is final; one inferred by gameops (snapshot, reconcile) reopens on firing.
  const resolvedBefore = old?.status === 'resolved' && old.resolved_by === 'payload';
  const status = resolvedBefore ? 'resolved' : alert.status;
  return {
    id,
    fingerprint: alert.fingerprint,
    starts_at: alert.startsAt,
    status,
    ends_at: resolvedBefore ? old.ends_at : (alert.endsAt ?? null),
    name: alert.name,
    labels: sortedJson(alert.labels),
    annotations: sortedJson(alert.annotations),
    generator_url: alert.generatorUrl ?? null,
    source: batch.source,
    group_key: alert.groupKey ?? batch.groupKey,
    receiver: batch.receiver ?? null,
    first_seen_at: old?.first_seen_at ?? now,
    last_seen_at: now,
    resolved_at: resolvedBefore ? old.resolved_at : status === 'resolved' ? now : null,
    resolved_by: resolvedBefore ? old.resolved_by : status === 'resolved' ? 'payload' : null,
    incident_id: old?.incident_id ?? null,
    processed: old?.processed ?? null,
    pending: old && old.status === status ? old.pending : 1,
  };
}

function differs(old: Row, row: Row): boolean {
  return (
    old.status !== row.status ||
    old.ends_at !== row.ends_at ||
    old.labels !== row.labels ||
    old.annotations !== row.annotations ||
    old.generator_url !== row.generator_url ||
    old.group_key !== row.group_key ||
    old.name !== row.name ||
    old.receiver !== row.receiver
  );
}

/** JSON with sorted keys, so equal label sets are equal text. */
export function sortedJson(record: Record<string, string>): string {
  const keys = Object.keys(record);
  let ordered = true;
  for (let i = 1; i < keys.length && ordered; i++) ordered = (keys[i - 1] as string) < (keys[i] as string);
  if (ordered) return JSON.stringify(record);
  const sorted: Record<string, string> = {};
  for (const key of keys.sort()) sorted[key] = record[key] as string;
  return JSON.stringify(sorted);
}

function likePattern(text: string): string {
  return text.replaceAll('\\', '_');
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out.length === 0 ? [[]] : out;
}

function parseRecord(text: string): Record<string, string> {
  return JSON.parse(text) as Record<string, string>;
}

function fromRow(row: Row): StoredAlert {
  return {
    id: row.id,
    fingerprint: row.fingerprint,
    startsAt: row.starts_at,
    status: row.status as AlertStatus,
    ...(row.ends_at !== null ? { endsAt: row.ends_at } : {}),
    name: row.name,
    labels: parseRecord(row.labels),
    annotations: parseRecord(row.annotations),
    ...(row.generator_url !== null ? { generatorUrl: row.generator_url } : {}),
    source: row.source,
    groupKey: row.group_key,
    ...(row.receiver !== null ? { receiver: row.receiver } : {}),
    firstSeenAt: row.first_seen_at,
    lastSeenAt: row.last_seen_at,
    ...(row.resolved_at !== null ? { resolvedAt: row.resolved_at } : {}),
    ...(row.resolved_by !== null
      ? { resolvedBy: row.resolved_by as 'payload' | 'snapshot' | 'reconcile' }
      : {}),
    ...(row.incident_id !== null ? { incidentId: row.incident_id } : {}),
    ...(row.processed !== null ? { processed: row.processed as AlertStatus } : {}),
    pending: Number(row.pending) === 1,
  };
}

function windowFromRow(row: Selectable<SuppressionWindowsTable>): StoredWindow {
  return {
    id: row.id,
    name: row.name,
    matchers: JSON.parse(row.matchers) as string[],
    startsAt: row.starts_at,
    endsAt: row.ends_at,
    comment: row.comment,
    createdBy: row.created_by,
    createdAt: row.created_at,
    ...(row.ended_at !== null ? { endedAt: row.ended_at } : {}),
    ...(row.ended_by !== null ? { endedBy: row.ended_by } : {}),
  };
}

function heartbeatFromRow(row: Selectable<HeartbeatStatesTable>): HeartbeatState {
  return {
    name: row.name,
    firstSeenAt: row.first_seen_at,
    ...(row.last_ping_at !== null ? { lastPingAt: row.last_ping_at } : {}),
    pings: Number(row.pings),
    ...(row.down_since !== null ? { downSince: row.down_since } : {}),
    ...(row.incident_id !== null ? { incidentId: row.incident_id } : {}),
    ...(row.recovered_since !== null ? { recoveredSince: row.recovered_since } : {}),
    ...(row.recovered_incident_id !== null ? { recoveredIncidentId: row.recovered_incident_id } : {}),
    ...(row.recovered_at !== null ? { recoveredAt: row.recovered_at } : {}),
  };
}
