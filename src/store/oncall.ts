import { type Kysely, PostgresAdapter, type Selectable, type Transaction, sql } from 'kysely';
import type { Migration } from 'kysely/migration';
import { type Clock, ConflictError, InputError, NotFoundError } from '../core/index.ts';
import type { Actor } from '../runbooks/model.ts';
import { appendAudit } from './audit.ts';
import type { StoreCall } from './check-runs.ts';
import type { StoreDatabase } from './schema.ts';

/**
 * The durable state of on-call (src/oncall): overrides, pages with their escalation position, one
 * notification row per (page, level, round, person, channel) with a stable delivery id, every delivery
 * attempt, the auditor's stall records, and settings (the acknowledge-link key).
 *
 * Multi-instance safety: every background step is a conditional UPDATE on the row's current position
 * (`next_step` for a page, `status` + `attempts` for a notification), so of two gameops instances (or a
 * process restarted after a crash) exactly one moves a row on; notification rows are keyed by their
 * delivery id, so firing one level twice inserts nothing new.
 */
export interface OncallTables {
  oncall_settings: OncallSettingsTable;
  oncall_overrides: OncallOverridesTable;
  oncall_pages: OncallPagesTable;
  oncall_notifications: OncallNotificationsTable;
  oncall_attempts: OncallAttemptsTable;
  oncall_stalls: OncallStallsTable;
}

export interface OncallSettingsTable {
  name: string;
  value: string;
  created_at: string;
}

export interface OncallOverridesTable {
  id: string;
  /** The gameops instance (config service.name / environment) this row belongs to. */
  scope_service: string;
  scope_environment: string;
  schedule: string;
  layer: string;
  person: string;
  starts_at: string;
  ends_at: string;
  reason: string | null;
  created_at: string;
  created_by: string;
}

export interface OncallPagesTable {
  id: string;
  /** The gameops instance (config service.name / environment) this row belongs to. */
  scope_service: string;
  scope_environment: string;
  dedup_key: string;
  /** `page` (escalates) or `notify` (one-shot). */
  kind: string;
  incident_id: string | null;
  subject: string;
  body: string;
  severity: string | null;
  /** JSON object. */
  labels: string;
  policy: string | null;
  /** JSON array of page targets (a policy-less page), or null. */
  targets: string | null;
  /** JSON array of links. */
  links: string;
  status: string;
  level: number;
  round: number;
  /** round × levels + level of the next escalation step (levels × (repeat + 1): the exhaustion step); null when none. */
  next_step: number | null;
  next_at: string | null;
  created_at: string;
  created_by: string;
  updated_at: string;
  acknowledged_at: string | null;
  acknowledged_by: string | null;
  resolved_at: string | null;
  resolved_by: string | null;
  exhausted_at: string | null;
  suppressed_by: string | null;
  /** While `suppressed`: when the suppressing window ends (tick looks again then). */
  suppressed_until: string | null;
  /** When escalation started (created_at, or when a suppression ended): the base of every step's due time. */
  escalates_from: string;
}

export interface OncallNotificationsTable {
  delivery_id: string;
  /** The gameops instance (config service.name / environment) this row belongs to. */
  scope_service: string;
  scope_environment: string;
  page_id: string;
  level: number;
  round: number;
  /** Null for a message to a channel rather than a person. */
  person: string | null;
  channel: string;
  /** The position of `channel` among the person's contact channels. */
  channel_index: number;
  /** pending | sending | delivered | failed | cancelled */
  status: string;
  attempts: number;
  next_at: string;
  lease_until: string | null;
  last_error: string | null;
  created_at: string;
  updated_at: string;
}

export interface OncallAttemptsTable {
  delivery_id: string;
  n: number;
  at: string;
  /** ok | failed | interrupted */
  outcome: string;
  destination: string | null;
  response: string | null;
  error: string | null;
  duration_ms: number;
  retry_after_ms: number | null;
}

export interface OncallStallsTable {
  /** What was late: `page:<id>:step:<n>` or `delivery:<id>:attempt:<n>`. */
  ref: string;
  /** The gameops instance (config service.name / environment) this row belongs to. */
  scope_service: string;
  scope_environment: string;
  page_id: string;
  due_at: string;
  detected_at: string;
}

export const oncallMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('oncall_settings')
      .addColumn('name', 'text', (col) => col.primaryKey())
      .addColumn('value', 'text', (col) => col.notNull())
      .addColumn('created_at', 'text', (col) => col.notNull())
      .execute();
    await db.schema
      .createTable('oncall_overrides')
      .addColumn('id', 'text', (col) => col.primaryKey())
      .addColumn('scope_service', 'text', (col) => col.notNull())
      .addColumn('scope_environment', 'text', (col) => col.notNull())
      .addColumn('schedule', 'text', (col) => col.notNull())
      .addColumn('layer', 'text', (col) => col.notNull())
      .addColumn('person', 'text', (col) => col.notNull())
      .addColumn('starts_at', 'text', (col) => col.notNull())
      .addColumn('ends_at', 'text', (col) => col.notNull())
      .addColumn('reason', 'text')
      .addColumn('created_at', 'text', (col) => col.notNull())
      .addColumn('created_by', 'text', (col) => col.notNull())
      .execute();
    await db.schema
      .createIndex('oncall_overrides_layer_idx')
      .on('oncall_overrides')
      .columns(['scope_service', 'scope_environment', 'schedule', 'layer', 'ends_at'])
      .execute();
    await db.schema
      .createTable('oncall_pages')
      .addColumn('id', 'text', (col) => col.primaryKey())
      .addColumn('scope_service', 'text', (col) => col.notNull())
      .addColumn('scope_environment', 'text', (col) => col.notNull())
      .addColumn('dedup_key', 'text', (col) => col.notNull())
      .addColumn('kind', 'text', (col) => col.notNull())
      .addColumn('incident_id', 'text')
      .addColumn('subject', 'text', (col) => col.notNull())
      .addColumn('body', 'text', (col) => col.notNull())
      .addColumn('severity', 'text')
      .addColumn('labels', 'text', (col) => col.notNull())
      .addColumn('policy', 'text')
      .addColumn('targets', 'text')
      .addColumn('links', 'text', (col) => col.notNull())
      .addColumn('status', 'text', (col) => col.notNull())
      .addColumn('level', 'integer', (col) => col.notNull())
      .addColumn('round', 'integer', (col) => col.notNull())
      .addColumn('next_step', 'integer')
      .addColumn('next_at', 'text')
      .addColumn('created_at', 'text', (col) => col.notNull())
      .addColumn('created_by', 'text', (col) => col.notNull())
      .addColumn('updated_at', 'text', (col) => col.notNull())
      .addColumn('acknowledged_at', 'text')
      .addColumn('acknowledged_by', 'text')
      .addColumn('resolved_at', 'text')
      .addColumn('resolved_by', 'text')
      .addColumn('exhausted_at', 'text')
      .addColumn('suppressed_by', 'text')
      .addColumn('suppressed_until', 'text')
      .addColumn('escalates_from', 'text', (col) => col.notNull())
      .addUniqueConstraint('oncall_pages_dedup_uq', ['scope_service', 'scope_environment', 'dedup_key'])
      .execute();
    await db.schema
      .createIndex('oncall_pages_suppressed_idx')
      .on('oncall_pages')
      .columns(['scope_service', 'scope_environment', 'status', 'suppressed_until'])
      .execute();
    await db.schema
      .createIndex('oncall_pages_due_idx')
      .on('oncall_pages')
      .columns(['scope_service', 'scope_environment', 'status', 'next_at'])
      .execute();
    await db.schema
      .createIndex('oncall_pages_incident_idx')
      .on('oncall_pages')
      .column('incident_id')
      .execute();
    await db.schema.createIndex('oncall_pages_created_idx').on('oncall_pages').column('created_at').execute();
    await db.schema
      .createTable('oncall_notifications')
      .addColumn('delivery_id', 'text', (col) => col.primaryKey())
      .addColumn('scope_service', 'text', (col) => col.notNull())
      .addColumn('scope_environment', 'text', (col) => col.notNull())
      .addColumn('page_id', 'text', (col) => col.notNull())
      .addColumn('level', 'integer', (col) => col.notNull())
      .addColumn('round', 'integer', (col) => col.notNull())
      .addColumn('person', 'text')
      .addColumn('channel', 'text', (col) => col.notNull())
      .addColumn('channel_index', 'integer', (col) => col.notNull())
      .addColumn('status', 'text', (col) => col.notNull())
      .addColumn('attempts', 'integer', (col) => col.notNull())
      .addColumn('next_at', 'text', (col) => col.notNull())
      .addColumn('lease_until', 'text')
      .addColumn('last_error', 'text')
      .addColumn('created_at', 'text', (col) => col.notNull())
      .addColumn('updated_at', 'text', (col) => col.notNull())
      .execute();
    await db.schema
      .createIndex('oncall_notifications_due_idx')
      .on('oncall_notifications')
      .columns(['scope_service', 'scope_environment', 'status', 'next_at'])
      .execute();
    await db.schema
      .createIndex('oncall_notifications_page_idx')
      .on('oncall_notifications')
      .column('page_id')
      .execute();
    await db.schema
      .createTable('oncall_attempts')
      .addColumn('delivery_id', 'text', (col) => col.notNull())
      .addColumn('n', 'integer', (col) => col.notNull())
      .addColumn('at', 'text', (col) => col.notNull())
      .addColumn('outcome', 'text', (col) => col.notNull())
      .addColumn('destination', 'text')
      .addColumn('response', 'text')
      .addColumn('error', 'text')
      .addColumn('duration_ms', 'integer', (col) => col.notNull())
      .addColumn('retry_after_ms', 'integer')
      .addPrimaryKeyConstraint('oncall_attempts_pk', ['delivery_id', 'n'])
      .execute();
    await db.schema
      .createTable('oncall_stalls')
      .addColumn('ref', 'text', (col) => col.primaryKey())
      .addColumn('scope_service', 'text', (col) => col.notNull())
      .addColumn('scope_environment', 'text', (col) => col.notNull())
      .addColumn('page_id', 'text', (col) => col.notNull())
      .addColumn('due_at', 'text', (col) => col.notNull())
      .addColumn('detected_at', 'text', (col) => col.notNull())
      .execute();
  },
};

export type PageRow = Selectable<OncallPagesTable>;
export type NotificationRow = Selectable<OncallNotificationsTable>;
export type AttemptRow = Selectable<OncallAttemptsTable>;
export type OverrideRow = Selectable<OncallOverridesTable>;
export type StallRow = Selectable<OncallStallsTable>;
type ScopeColumns = 'scope_service' | 'scope_environment';
/** A page to store: the repo adds its scope. */
export type NewPage = Omit<PageRow, ScopeColumns>;
/** An override to store: the repo adds its scope. */
export type NewOverride = Omit<OverrideRow, ScopeColumns>;
/** A stall to record: the repo adds its scope. */
export type NewStall = Omit<StallRow, ScopeColumns>;

/** The gameops instance on-call rows belong to: config `service.name` and `service.environment`. */
export interface OncallScope {
  service: string;
  environment: string;
}

/** A notification to create: everything but its bookkeeping columns. */
export type NewNotification = Pick<
  NotificationRow,
  'delivery_id' | 'page_id' | 'level' | 'round' | 'person' | 'channel' | 'channel_index' | 'next_at'
>;

/** Where an escalation step moves a page (the conditional update's SET). */
export interface PageAdvance {
  level: number;
  round: number;
  nextStep: number | null;
  nextAt: string | null;
  /** `exhausted` when the last step has passed. */
  status?: 'exhausted';
}

/** How one attempt went and what the notification becomes. */
export interface AttemptRecord {
  at: string;
  outcome: 'ok' | 'failed';
  destination?: string | undefined;
  response?: string | undefined;
  error?: string | undefined;
  durationMs: number;
  retryAfterMs?: number | undefined;
  /** delivered, failed (this channel is done), or pending again at `nextAt` (a retry). */
  status: 'delivered' | 'failed' | 'pending';
  nextAt?: string | undefined;
}

/**
 * The on-call tables of every gameops instance sharing the database. Pages, notifications, overrides and
 * stalls belong to one instance (service + environment): dedup keys are unique per scope, and a scope's
 * tick never sees another's rows. Settings (the acknowledge-link key) are shared: a link names its page id,
 * which is unique across scopes.
 */
export interface OncallRepo {
  forScope(scope: OncallScope): OncallScopeRepo;
}

/** The on-call rows of one gameops instance. */
export interface OncallScopeRepo {
  /** A setting's value; on first use, stores `create()` (one value wins across instances). */
  setting(name: string, create: () => string): Promise<string>;

  /**
   * Stores an override (audited as `oncall.override.create`).
   * @throws ConflictError naming the override it overlaps in the same schedule and layer.
   */
  addOverride(row: NewOverride, actor: Actor): Promise<OverrideRow>;
  /** Overrides of a schedule (all when not given) ending after `from` and starting before `to`, by start. */
  overrides(filter?: { schedule?: string; from?: Date; to?: Date }): Promise<OverrideRow[]>;
  /** Removes an override (audited). @throws NotFoundError for an unknown id. */
  removeOverride(id: string, actor: Actor): Promise<OverrideRow>;

  /**
   * Inserts a page and its first notifications in one transaction (audited as `oncall.page` when an
   * actor is given). When its dedup key exists, nothing is written and the existing page is returned.
   */
  insertPage(
    row: NewPage,
    notifications: NewNotification[],
    actor?: Actor,
  ): Promise<{ page: PageRow; created: boolean }>;
  page(id: string): Promise<PageRow | undefined>;
  pageByDedupKey(key: string): Promise<PageRow | undefined>;
  /** Pages (not one-shot notifications), newest first. */
  pages(filter?: {
    status?: string[];
    incidentId?: string;
    kind?: 'page' | 'notify';
    /** Only dedup keys starting with this (letters, digits, `:` and `-` only). */
    dedupPrefix?: string;
    limit?: number;
  }): Promise<PageRow[]>;
  /** Pages whose next escalation step is due at `now`, oldest due first. */
  duePages(now: Date, limit: number): Promise<PageRow[]>;
  /**
   * Moves a triggered page from `fromStep` on and inserts the step's notifications (existing delivery ids
   * are left alone), in one transaction. @returns false when the page is no longer at that step or open.
   */
  advance(
    pageId: string,
    fromStep: number,
    to: PageAdvance,
    notifications: NewNotification[],
  ): Promise<boolean>;
  /** Suppressed pages whose window ended at `now` (or that have no end recorded), oldest first. */
  suppressedDue(now: Date, limit: number): Promise<PageRow[]>;
  /**
   * A suppressed page starts escalating at `now` (status triggered, step 0 due at `firstAt`); audited as
   * `oncall.page.unsuppress`. @returns false when the page is no longer suppressed.
   */
  unsuppress(pageId: string, now: Date, firstAt: Date): Promise<boolean>;
  /** A suppressed page stays so until `until` (its window was extended or another one applies). */
  extendSuppression(pageId: string, window: string, until: string): Promise<void>;
  /** Brings the next step forward to `now` when the page is still at `step` and it is due later. */
  escalateNow(pageId: string, step: number, now: Date): Promise<boolean>;
  /**
   * Moves an open (triggered, exhausted or suppressed) page to `status`, cancelling its pending notifications; audited
   * as `oncall.page.<status>`. @returns the page and whether this call changed it.
   */
  close(
    id: string,
    status: 'acknowledged' | 'resolved',
    actor: Actor,
    now: Date,
  ): Promise<{ page: PageRow; changed: boolean }>;

  /** Notifications due at `now`: pending ones due, and sending ones whose lease ran out (a crash mid-attempt). */
  dueNotifications(now: Date, limit: number): Promise<NotificationRow[]>;
  /**
   * Claims a notification for one attempt (status sending, attempts + 1, lease). A claim of a lapsed
   * `sending` row first records its unfinished attempt as `interrupted`. A notification of a page that
   * is no longer open (acknowledged, resolved) is cancelled instead.
   * @returns the attempt number, or undefined when another instance claimed it first.
   */
  claimNotification(row: NotificationRow, now: Date, leaseUntil: Date): Promise<number | undefined>;
  /**
   * Records attempt `n` and the notification's new state, and inserts `next` (the person's next contact
   * channel) when given. A retry of a page no longer open is cancelled instead.
   * @returns false when the claim was lost (another instance took it over after the lease ran out).
   */
  finishAttempt(
    deliveryId: string,
    n: number,
    attempt: AttemptRecord,
    next?: NewNotification,
  ): Promise<boolean>;
  notifications(pageId: string): Promise<NotificationRow[]>;
  attempts(pageId: string): Promise<AttemptRow[]>;

  /** Pages and notifications that were due before `before` and are still waiting (the auditor's query). */
  overdue(before: Date): Promise<{ pages: PageRow[]; notifications: NotificationRow[] }>;
  /** Records a stall once per ref. @returns true when this call recorded it. */
  recordStall(row: NewStall): Promise<boolean>;
  stalls(limit?: number): Promise<StallRow[]>;
  /**
   * Deletes resolved and exhausted pages and one-shot notifications last changed before `before`, with
   * their notifications and attempts, and stalls detected before it. @returns how many of each went.
   */
  prune(before: Date): Promise<{ pages: number; stalls: number }>;
}

const OPEN = ['triggered', 'exhausted'];
/** What acknowledge and resolve close: open pages and suppressed ones (which would otherwise page later). */
const CLOSABLE = [...OPEN, 'suppressed'];
const LIST_MAX = 1000;
const SYSTEM_ACTOR: Actor = { id: 'system', name: 'gameops', role: 'admin', kind: 'system' };

export function createOncallRepo(db: Kysely<StoreDatabase>, call: StoreCall, clock: Clock): OncallRepo {
  return { forScope: (scope) => scopedRepo(db, call, clock, scope) };
}

function scopedRepo(
  db: Kysely<StoreDatabase>,
  call: StoreCall,
  clock: Clock,
  scope: OncallScope,
): OncallScopeRepo {
  const S = scope.service;
  const E = scope.environment;
  const scoped = { scope_service: S, scope_environment: E };
  const pageById = (tx: Kysely<StoreDatabase> | Transaction<StoreDatabase>, id: string) =>
    tx
      .selectFrom('oncall_pages')
      .selectAll()
      .where('id', '=', id)
      .where('scope_service', '=', S)
      .where('scope_environment', '=', E)
      .executeTakeFirst();
  const insertNotifications = async (
    tx: Transaction<StoreDatabase>,
    rows: NewNotification[],
    now: string,
  ) => {
    for (const n of rows) {
      await tx
        .insertInto('oncall_notifications')
        .values({
          ...n,
          ...scoped,
          status: 'pending',
          attempts: 0,
          lease_until: null,
          last_error: null,
          created_at: now,
          updated_at: now,
        })
        .onConflict((oc) => oc.column('delivery_id').doNothing())
        .execute();
    }
  };
  return {
    async setting(name, create) {
      const existing = await call(`reading setting ${name}`, () =>
        db.selectFrom('oncall_settings').select('value').where('name', '=', name).executeTakeFirst(),
      );
      if (existing) return existing.value;
      await call(`storing setting ${name}`, () =>
        db
          .insertInto('oncall_settings')
          .values({ name, value: create(), created_at: clock.now().toISOString() })
          .onConflict((oc) => oc.column('name').doNothing())
          .execute(),
      );
      const row = await call(`reading setting ${name}`, () =>
        db.selectFrom('oncall_settings').select('value').where('name', '=', name).executeTakeFirstOrThrow(),
      );
      return row.value;
    },

    async addOverride(row, actor) {
      return call(`storing an override of ${row.schedule}/${row.layer}`, () =>
        db.transaction().execute(async (tx) => {
          // Check-then-insert must not interleave between instances: on PostgreSQL, one writer per layer
          // at a time (SQLite transactions already are serial).
          if (tx.getExecutor().adapter instanceof PostgresAdapter)
            await sql`select pg_advisory_xact_lock(hashtext(${`oncall_overrides:${S}/${E}/${row.schedule}/${row.layer}`}))`.execute(
              tx,
            );
          const clash = await tx
            .selectFrom('oncall_overrides')
            .selectAll()
            .where('scope_service', '=', S)
            .where('scope_environment', '=', E)
            .where('schedule', '=', row.schedule)
            .where('layer', '=', row.layer)
            .where('starts_at', '<', row.ends_at)
            .where('ends_at', '>', row.starts_at)
            .orderBy('starts_at')
            .executeTakeFirst();
          if (clash) {
            throw new ConflictError(
              `the override overlaps override ${clash.id} (${clash.person}, ${clash.starts_at} to ${clash.ends_at}) ` +
                `of ${row.schedule}/${row.layer}: remove that one first (gameops oncall overrides remove ${clash.id}) or pick another time`,
              { details: { field: 'from', id: clash.id } },
            );
          }
          await tx
            .insertInto('oncall_overrides')
            .values({ ...row, ...scoped })
            .execute();
          await appendAudit(
            tx,
            {
              actor,
              action: 'oncall.override.create',
              target: `oncall-override:${row.id}`,
              data: {
                schedule: row.schedule,
                layer: row.layer,
                person: row.person,
                from: row.starts_at,
                to: row.ends_at,
                ...(row.reason === null ? {} : { reason: row.reason }),
              },
            },
            clock.now(),
          );
          return { ...row, ...scoped };
        }),
      );
    },

    async overrides(filter = {}) {
      return call('listing overrides', () => {
        let q = db
          .selectFrom('oncall_overrides')
          .selectAll()
          .where('scope_service', '=', S)
          .where('scope_environment', '=', E);
        if (filter.schedule !== undefined) q = q.where('schedule', '=', filter.schedule);
        if (filter.from) q = q.where('ends_at', '>', filter.from.toISOString());
        if (filter.to) q = q.where('starts_at', '<', filter.to.toISOString());
        return q.orderBy('starts_at').orderBy('id').limit(LIST_MAX).execute();
      });
    },

    async removeOverride(id, actor) {
      return call(`removing override ${id}`, () =>
        db.transaction().execute(async (tx) => {
          const row = await tx
            .selectFrom('oncall_overrides')
            .selectAll()
            .where('id', '=', id)
            .where('scope_service', '=', S)
            .where('scope_environment', '=', E)
            .executeTakeFirst();
          if (!row)
            throw new NotFoundError(`no override with id ${id} (gameops oncall override list)`, {
              details: { id },
            });
          await tx.deleteFrom('oncall_overrides').where('id', '=', id).execute();
          await appendAudit(
            tx,
            {
              actor,
              action: 'oncall.override.remove',
              target: `oncall-override:${id}`,
              data: {
                schedule: row.schedule,
                layer: row.layer,
                person: row.person,
                from: row.starts_at,
                to: row.ends_at,
              },
            },
            clock.now(),
          );
          return row;
        }),
      );
    },

    async insertPage(row, notifications, actor) {
      return call(`storing page ${row.dedup_key}`, () =>
        db.transaction().execute(async (tx) => {
          const inserted = await tx
            .insertInto('oncall_pages')
            .values({ ...row, ...scoped })
            .onConflict((oc) => oc.columns(['scope_service', 'scope_environment', 'dedup_key']).doNothing())
            .returning('id')
            .execute();
          if (inserted.length === 0) {
            const existing = await tx
              .selectFrom('oncall_pages')
              .selectAll()
              .where('scope_service', '=', S)
              .where('scope_environment', '=', E)
              .where('dedup_key', '=', row.dedup_key)
              .executeTakeFirstOrThrow();
            return { page: existing, created: false };
          }
          await insertNotifications(tx, notifications, row.created_at);
          if (actor) {
            await appendAudit(
              tx,
              {
                actor,
                action: row.kind === 'notify' ? 'oncall.notify' : 'oncall.page',
                target: `page:${row.id}`,
                data: {
                  dedupKey: row.dedup_key,
                  subject: row.subject,
                  status: row.status,
                  ...(row.incident_id === null ? {} : { incidentId: row.incident_id }),
                  ...(row.policy === null ? {} : { policy: row.policy }),
                },
              },
              new Date(row.created_at),
            );
          }
          return { page: { ...row, ...scoped }, created: true };
        }),
      );
    },

    page: (id) => call(`reading page ${id}`, () => pageById(db, id)),

    pageByDedupKey: (key) =>
      call(`reading page ${key}`, () =>
        db
          .selectFrom('oncall_pages')
          .selectAll()
          .where('scope_service', '=', S)
          .where('scope_environment', '=', E)
          .where('dedup_key', '=', key)
          .executeTakeFirst(),
      ),

    async pages(filter = {}) {
      const limit = Math.min(Math.max(1, filter.limit ?? 100), LIST_MAX);
      return call('listing pages', () => {
        let q = db
          .selectFrom('oncall_pages')
          .selectAll()
          .where('scope_service', '=', S)
          .where('scope_environment', '=', E)
          .where('kind', '=', filter.kind ?? 'page');
        if (filter.status && filter.status.length > 0) q = q.where('status', 'in', filter.status);
        if (filter.incidentId !== undefined) q = q.where('incident_id', '=', filter.incidentId);
        if (filter.dedupPrefix !== undefined) {
          if (!/^[A-Za-z0-9:-]+$/.test(filter.dedupPrefix))
            throw new InputError(
              `dedupPrefix: "${filter.dedupPrefix}" may hold letters, digits, : and - only`,
            );
          q = q.where('dedup_key', 'like', `${filter.dedupPrefix}%`);
        }
        return q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
      });
    },

    async duePages(now, limit) {
      return call('reading due escalations', () =>
        db
          .selectFrom('oncall_pages')
          .selectAll()
          .where('scope_service', '=', S)
          .where('scope_environment', '=', E)
          .where('status', 'in', OPEN)
          .where('next_at', 'is not', null)
          .where('next_at', '<=', now.toISOString())
          .orderBy('next_at')
          .limit(limit)
          .execute(),
      );
    },

    async advance(pageId, fromStep, to, notifications) {
      const now = clock.now().toISOString();
      return call(`escalating page ${pageId}`, () =>
        db.transaction().execute(async (tx) => {
          const result = await tx
            .updateTable('oncall_pages')
            .set({
              level: to.level,
              round: to.round,
              next_step: to.nextStep,
              next_at: to.nextAt,
              updated_at: now,
              ...(to.status ? { status: to.status, exhausted_at: now } : {}),
            })
            .where('id', '=', pageId)
            .where('status', '=', 'triggered')
            .where('next_step', '=', fromStep)
            .executeTakeFirst();
          if (Number(result.numUpdatedRows) === 0) return false;
          await insertNotifications(tx, notifications, now);
          return true;
        }),
      );
    },

    async suppressedDue(now, limit) {
      return call('reading suppressed pages', () =>
        db
          .selectFrom('oncall_pages')
          .selectAll()
          .where('scope_service', '=', S)
          .where('scope_environment', '=', E)
          .where('status', '=', 'suppressed')
          .where((eb) =>
            eb.or([eb('suppressed_until', 'is', null), eb('suppressed_until', '<=', now.toISOString())]),
          )
          .orderBy('created_at')
          .limit(limit)
          .execute(),
      );
    },

    async unsuppress(pageId, now, firstAt) {
      const at = now.toISOString();
      return call(`unsuppressing page ${pageId}`, () =>
        db.transaction().execute(async (tx) => {
          const found = await pageById(tx, pageId);
          if (!found || found.status !== 'suppressed') return false;
          const result = await tx
            .updateTable('oncall_pages')
            .set({
              status: 'triggered',
              next_step: 0,
              next_at: firstAt.toISOString(),
              escalates_from: at,
              suppressed_until: null,
              updated_at: at,
            })
            .where('id', '=', pageId)
            .where('status', '=', 'suppressed')
            .executeTakeFirst();
          if (Number(result.numUpdatedRows) === 0) return false;
          await appendAudit(
            tx,
            {
              actor: SYSTEM_ACTOR,
              action: 'oncall.page.unsuppress',
              target: `page:${pageId}`,
              data: {
                window: found.suppressed_by,
                ...(found.incident_id === null ? {} : { incidentId: found.incident_id }),
              },
            },
            now,
          );
          return true;
        }),
      );
    },

    async extendSuppression(pageId, window, until) {
      await call(`extending the suppression of page ${pageId}`, () =>
        db
          .updateTable('oncall_pages')
          .set({ suppressed_by: window, suppressed_until: until, updated_at: clock.now().toISOString() })
          .where('id', '=', pageId)
          .where('status', '=', 'suppressed')
          .execute(),
      );
    },

    async escalateNow(pageId, step, now) {
      const at = now.toISOString();
      const result = await call(`escalating page ${pageId}`, () =>
        db
          .updateTable('oncall_pages')
          .set({ next_at: at, updated_at: at })
          .where('id', '=', pageId)
          .where('status', '=', 'triggered')
          .where('next_step', '=', step)
          .where('next_at', '>', at)
          .executeTakeFirst(),
      );
      return Number(result.numUpdatedRows) > 0;
    },

    async close(id, status, actor, now) {
      const at = now.toISOString();
      return call(`${status === 'acknowledged' ? 'acknowledging' : 'resolving'} page ${id}`, () =>
        db.transaction().execute(async (tx) => {
          const found = await pageById(tx, id);
          if (!found)
            throw new NotFoundError(`no page with id ${id} (gameops oncall pages)`, { details: { id } });
          const from = status === 'acknowledged' ? CLOSABLE : [...CLOSABLE, 'acknowledged'];
          if (!from.includes(found.status)) return { page: found, changed: false };
          const set =
            status === 'acknowledged'
              ? { status, acknowledged_at: at, acknowledged_by: actor.name, next_at: null, next_step: null }
              : { status, resolved_at: at, resolved_by: actor.name, next_at: null, next_step: null };
          const result = await tx
            .updateTable('oncall_pages')
            .set({ ...set, updated_at: at })
            .where('id', '=', id)
            .where('status', 'in', from)
            .executeTakeFirst();
          if (Number(result.numUpdatedRows) === 0)
            return { page: (await pageById(tx, id)) ?? found, changed: false };
          await tx
            .updateTable('oncall_notifications')
            .set({ status: 'cancelled', updated_at: at, last_error: `page ${status}` })
            .where('page_id', '=', id)
            .where('status', '=', 'pending')
            .execute();
          await appendAudit(
            tx,
            {
              actor,
              action: `oncall.page.${status === 'acknowledged' ? 'acknowledge' : 'resolve'}`,
              target: `page:${id}`,
              data: {
                from: found.status,
                ...(found.incident_id === null ? {} : { incidentId: found.incident_id }),
              },
            },
            now,
          );
          return { page: (await pageById(tx, id))!, changed: true };
        }),
      );
    },

    async dueNotifications(now, limit) {
      const at = now.toISOString();
      return call('reading due deliveries', () =>
        db
          .selectFrom('oncall_notifications')
          .selectAll()
          .where('scope_service', '=', S)
          .where('scope_environment', '=', E)
          .where((eb) =>
            eb.or([
              eb.and([eb('status', '=', 'pending'), eb('next_at', '<=', at)]),
              eb.and([eb('status', '=', 'sending'), eb('lease_until', '<=', at)]),
            ]),
          )
          .orderBy('next_at')
          .orderBy('delivery_id')
          .limit(limit)
          .execute(),
      );
    },

    async claimNotification(row, now, leaseUntil) {
      const at = now.toISOString();
      return call(`claiming delivery ${row.delivery_id}`, () =>
        db.transaction().execute(async (tx) => {
          const result = await tx
            .updateTable('oncall_notifications')
            .set({
              status: 'sending',
              attempts: row.attempts + 1,
              lease_until: leaseUntil.toISOString(),
              updated_at: at,
            })
            .where('delivery_id', '=', row.delivery_id)
            .where('status', '=', row.status)
            .where('attempts', '=', row.attempts)
            .executeTakeFirst();
          if (Number(result.numUpdatedRows) === 0) return undefined;
          const page = await pageById(tx, row.page_id);
          const open = page !== undefined && (page.kind === 'notify' || OPEN.includes(page.status));
          if (row.status === 'sending') {
            await tx
              .insertInto('oncall_attempts')
              .values({
                delivery_id: row.delivery_id,
                n: row.attempts,
                at: row.updated_at,
                outcome: 'interrupted',
                destination: null,
                response: null,
                error:
                  'gameops stopped during this attempt; the outcome is unknown, so it is sent again with the same delivery id',
                duration_ms: 0,
                retry_after_ms: null,
              })
              .onConflict((oc) => oc.columns(['delivery_id', 'n']).doNothing())
              .execute();
          }
          if (!open) {
            // Acknowledged or resolved meanwhile: nothing more goes out (an interrupted attempt included).
            await tx
              .updateTable('oncall_notifications')
              .set({ status: 'cancelled', lease_until: null, last_error: `page ${page?.status ?? 'gone'}` })
              .where('delivery_id', '=', row.delivery_id)
              .execute();
            return undefined;
          }
          return row.attempts + 1;
        }),
      );
    },

    async finishAttempt(deliveryId, n, attempt, next) {
      return call(`recording delivery attempt ${deliveryId}#${n}`, () =>
        db.transaction().execute(async (tx) => {
          const row = await tx
            .selectFrom('oncall_notifications')
            .select(['page_id', 'status', 'attempts'])
            .where('delivery_id', '=', deliveryId)
            .executeTakeFirst();
          if (!row || row.status !== 'sending' || row.attempts !== n) return false;
          const page = await pageById(tx, row.page_id);
          const open = page !== undefined && (page.kind === 'notify' || OPEN.includes(page.status));
          const status = attempt.status === 'pending' && !open ? 'cancelled' : attempt.status;
          await tx
            .insertInto('oncall_attempts')
            .values({
              delivery_id: deliveryId,
              n,
              at: attempt.at,
              outcome: attempt.outcome,
              destination: attempt.destination ?? null,
              response: attempt.response ?? null,
              error: attempt.error ?? null,
              duration_ms: Math.max(0, Math.round(attempt.durationMs)),
              retry_after_ms: attempt.retryAfterMs === undefined ? null : Math.round(attempt.retryAfterMs),
            })
            .onConflict((oc) => oc.columns(['delivery_id', 'n']).doNothing())
            .execute();
          await tx
            .updateTable('oncall_notifications')
            .set({
              status,
              lease_until: null,
              updated_at: attempt.at,
              last_error: attempt.outcome === 'ok' ? null : (attempt.error ?? null),
              ...(attempt.nextAt ? { next_at: attempt.nextAt } : {}),
            })
            .where('delivery_id', '=', deliveryId)
            .where('status', '=', 'sending')
            .where('attempts', '=', n)
            .execute();
          if (next && open) await insertNotifications(tx, [next], attempt.at);
          return true;
        }),
      );
    },

    notifications: (pageId) =>
      call(`reading the deliveries of page ${pageId}`, () =>
        db
          .selectFrom('oncall_notifications')
          .selectAll()
          .where('page_id', '=', pageId)
          .orderBy('round')
          .orderBy('level')
          .orderBy('created_at')
          .orderBy('channel_index')
          .orderBy('delivery_id')
          .execute(),
      ),

    attempts: (pageId) =>
      call(`reading the delivery attempts of page ${pageId}`, () =>
        db
          .selectFrom('oncall_attempts')
          .selectAll()
          .where(
            'delivery_id',
            'in',
            db.selectFrom('oncall_notifications').select('delivery_id').where('page_id', '=', pageId),
          )
          .orderBy('delivery_id')
          .orderBy('n')
          .execute(),
      ),

    async overdue(before) {
      const at = before.toISOString();
      return call('checking for stalled escalations', async () => ({
        pages: await db
          .selectFrom('oncall_pages')
          .selectAll()
          .where('scope_service', '=', S)
          .where('scope_environment', '=', E)
          .where('status', '=', 'triggered')
          .where('next_at', 'is not', null)
          .where('next_at', '<', at)
          .orderBy('next_at')
          .limit(LIST_MAX)
          .execute(),
        notifications: await db
          .selectFrom('oncall_notifications')
          .selectAll()
          .where('scope_service', '=', S)
          .where('scope_environment', '=', E)
          .where('status', '=', 'pending')
          .where('next_at', '<', at)
          .orderBy('next_at')
          .limit(LIST_MAX)
          .execute(),
      }));
    },

    async recordStall(row) {
      const inserted = await call(`recording stall ${row.ref}`, () =>
        db
          .insertInto('oncall_stalls')
          .values({ ...row, ...scoped })
          .onConflict((oc) => oc.column('ref').doNothing())
          .returning('ref')
          .execute(),
      );
      return inserted.length > 0;
    },

    async prune(before) {
      const at = before.toISOString();
      return call('pruning old pages and stalls', () =>
        db.transaction().execute(async (tx) => {
          const old = tx
            .selectFrom('oncall_pages')
            .select('id')
            .where('scope_service', '=', S)
            .where('scope_environment', '=', E)
            .where('updated_at', '<', at)
            .where((eb) => eb.or([eb('status', 'in', ['resolved', 'exhausted']), eb('kind', '=', 'notify')]));
          await tx
            .deleteFrom('oncall_attempts')
            .where(
              'delivery_id',
              'in',
              tx.selectFrom('oncall_notifications').select('delivery_id').where('page_id', 'in', old),
            )
            .execute();
          await tx.deleteFrom('oncall_notifications').where('page_id', 'in', old).execute();
          const pages = await tx
            .deleteFrom('oncall_pages')
            .where('scope_service', '=', S)
            .where('scope_environment', '=', E)
            .where('updated_at', '<', at)
            .where((eb) => eb.or([eb('status', 'in', ['resolved', 'exhausted']), eb('kind', '=', 'notify')]))
            .executeTakeFirst();
          const stalls = await tx
            .deleteFrom('oncall_stalls')
            .where('scope_service', '=', S)
            .where('scope_environment', '=', E)
            .where('detected_at', '<', at)
            .executeTakeFirst();
          return { pages: Number(pages.numDeletedRows), stalls: Number(stalls.numDeletedRows) };
        }),
      );
    },

    stalls: (limit = 100) =>
      call('listing stalls', () =>
        db
          .selectFrom('oncall_stalls')
          .selectAll()
          .where('scope_service', '=', S)
          .where('scope_environment', '=', E)
          .orderBy('detected_at', 'desc')
          .limit(Math.min(Math.max(1, limit), LIST_MAX))
          .execute(),
      ),
  };
}

/** Canonical ISO-8601 UTC of a valid date. @throws InputError naming the field otherwise. */
export function isoOf(at: Date, field: string): string {
  if (!(at instanceof Date) || Number.isNaN(at.getTime()))
    throw new InputError(`${field} is not a valid instant`);
  return at.toISOString();
}
