import { randomUUID } from 'node:crypto';
import { type Kysely, PostgresAdapter, type Selectable, type Transaction, sql } from 'kysely';
import type { Migration } from 'kysely/migration';
import { type Clock, ConflictError, NotFoundError } from '../core/index.ts';
import type { Actor } from '../runbooks/model.ts';
import { appendAudit } from './audit.ts';
import type { StoreCall } from './check-runs.ts';
import type { StoreDatabase } from './schema.ts';

/*
 * Incidents (issue #5): one row per incident (its lifecycle, roles, checklist and status-update clock),
 * its timeline, the runbook runs started from it, its post-mortem versions and its action items. Every
 * change is audited in the same transaction. An open incident owns its alert group through the UNIQUE
 * `open_group_key` (NULL once resolved), so concurrent alerts for one group open one incident.
 */

export interface IncidentsTable {
  /** Internal key (uuid); people see `INC-<number>`. */
  id: string;
  /** The gameops instance (config service.name / environment) the number counts in. */
  scope_service: string;
  scope_environment: string;
  number: number;
  title: string;
  severity: string;
  /** The affected service (from the alert route or the declaration). */
  service: string;
  status: string;
  /** manual | alert | heartbeat */
  source: string;
  group_key: string | null;
  /** JSON [scope service, scope environment, group key] while open; NULL once resolved. UNIQUE. */
  open_group_key: string | null;
  policy: string | null;
  summary: string;
  impact: string;
  root_cause: string;
  /** JSON: string[] of gameops runbooks offered ("run this runbook"). */
  suggested_runbooks: string;
  /** JSON: IncidentRoles (person ids by role). */
  roles: string;
  owner: string | null;
  /** JSON: ChecklistItem[]. */
  checklist: string;
  /** JSON: Transition[]. */
  transitions: string;
  acknowledged_at: string | null;
  acknowledged_by: string | null;
  last_update_at: string | null;
  next_update_due_at: string | null;
  /** The due time a reminder went out for (once per due time). */
  reminded_for: string | null;
  /** The due time a missed update was escalated for. */
  missed_for: string | null;
  /** JSON: Actor. */
  created_by: string;
  created_at: string;
  updated_at: string;
  /** Grows by one per timeline entry; also the row lock appends take. */
  timeline_seq: number;
  revision: number;
}

export interface IncidentCountersTable {
  scope_service: string;
  scope_environment: string;
  last: number;
}

export interface IncidentTimelineTable {
  incident_id: string;
  seq: number;
  at: string;
  kind: string;
  message: string;
  /** JSON: Actor, or NULL for gameops itself. */
  actor: string | null;
  /** JSON object. */
  data: string;
  /** `<incident id>:<key>`: an entry recorded once (an alert per fingerprint and startsAt). UNIQUE. */
  dedup_key: string | null;
}

export interface IncidentRunsTable {
  incident_id: string;
  run_id: string;
  runbook: string;
  started_at: string;
  started_by: string;
}

export interface IncidentPostmortemsTable {
  incident_id: string;
  version: number;
  markdown: string;
  /** JSON: section title → text. */
  sections: string;
  /** JSON: titles of sections a person edited (kept when regenerating). */
  edited: string;
  /** generated | edited */
  kind: string;
  created_at: string;
  created_by: string;
}

export interface IncidentActionItemsTable {
  id: string;
  incident_id: string;
  title: string;
  /** JSON: {person} | {team}, or NULL. */
  owner: string | null;
  due_date: string | null;
  status: string;
  created_at: string;
  created_by: string;
  updated_at: string;
  done_at: string | null;
  done_by: string | null;
}

export interface IncidentTables {
  incidents: IncidentsTable;
  incident_counters: IncidentCountersTable;
  incident_timeline: IncidentTimelineTable;
  incident_runs: IncidentRunsTable;
  incident_postmortems: IncidentPostmortemsTable;
  incident_action_items: IncidentActionItemsTable;
}

export const incidentsMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('incidents')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('scope_service', 'text', (c) => c.notNull())
      .addColumn('scope_environment', 'text', (c) => c.notNull())
      .addColumn('number', 'integer', (c) => c.notNull())
      .addColumn('title', 'text', (c) => c.notNull())
      .addColumn('severity', 'text', (c) => c.notNull())
      .addColumn('service', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('source', 'text', (c) => c.notNull())
      .addColumn('group_key', 'text')
      .addColumn('open_group_key', 'text', (c) => c.unique())
      .addColumn('policy', 'text')
      .addColumn('summary', 'text', (c) => c.notNull())
      .addColumn('impact', 'text', (c) => c.notNull())
      .addColumn('root_cause', 'text', (c) => c.notNull())
      .addColumn('suggested_runbooks', 'text', (c) => c.notNull())
      .addColumn('roles', 'text', (c) => c.notNull())
      .addColumn('owner', 'text')
      .addColumn('checklist', 'text', (c) => c.notNull())
      .addColumn('transitions', 'text', (c) => c.notNull())
      .addColumn('acknowledged_at', 'text')
      .addColumn('acknowledged_by', 'text')
      .addColumn('last_update_at', 'text')
      .addColumn('next_update_due_at', 'text')
      .addColumn('reminded_for', 'text')
      .addColumn('missed_for', 'text')
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addColumn('timeline_seq', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('revision', 'integer', (c) => c.notNull().defaultTo(0))
      .addUniqueConstraint('incidents_scope_number_uq', ['scope_service', 'scope_environment', 'number'])
      .execute();
    await db.schema
      .createIndex('incidents_scope_due_idx')
      .on('incidents')
      .columns(['scope_service', 'scope_environment', 'next_update_due_at'])
      .execute();
    await db.schema
      .createTable('incident_counters')
      .addColumn('scope_service', 'text', (c) => c.notNull())
      .addColumn('scope_environment', 'text', (c) => c.notNull())
      .addColumn('last', 'integer', (c) => c.notNull())
      .addPrimaryKeyConstraint('incident_counters_pk', ['scope_service', 'scope_environment'])
      .execute();
    await db.schema
      .createTable('incident_timeline')
      .addColumn('incident_id', 'text', (c) => c.notNull())
      .addColumn('seq', 'integer', (c) => c.notNull())
      .addColumn('at', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('message', 'text', (c) => c.notNull())
      .addColumn('actor', 'text')
      .addColumn('data', 'text', (c) => c.notNull())
      .addColumn('dedup_key', 'text', (c) => c.unique())
      .addPrimaryKeyConstraint('incident_timeline_pk', ['incident_id', 'seq'])
      .execute();
    await db.schema
      .createTable('incident_runs')
      .addColumn('incident_id', 'text', (c) => c.notNull())
      .addColumn('run_id', 'text', (c) => c.notNull())
      .addColumn('runbook', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text', (c) => c.notNull())
      .addColumn('started_by', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('incident_runs_pk', ['incident_id', 'run_id'])
      .execute();
    await db.schema
      .createTable('incident_postmortems')
      .addColumn('incident_id', 'text', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('markdown', 'text', (c) => c.notNull())
      .addColumn('sections', 'text', (c) => c.notNull())
      .addColumn('edited', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('incident_postmortems_pk', ['incident_id', 'version'])
      .execute();
    await db.schema
      .createTable('incident_action_items')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('incident_id', 'text', (c) => c.notNull())
      .addColumn('title', 'text', (c) => c.notNull())
      .addColumn('owner', 'text')
      .addColumn('due_date', 'text')
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addColumn('done_at', 'text')
      .addColumn('done_by', 'text')
      .execute();
    await db.schema
      .createIndex('incident_action_items_incident_idx')
      .on('incident_action_items')
      .column('incident_id')
      .execute();
  },
};

// ---------------------------------------------------------------------------------------------------
// Records

export const INCIDENT_STATUSES = [
  'declared',
  'investigating',
  'mitigated',
  'resolved',
  'postmortem',
  'closed',
] as const;
export type IncidentStatus = (typeof INCIDENT_STATUSES)[number];

export const INCIDENT_ROLES = ['commander', 'technicalLead', 'communications', 'scribe'] as const;
export type IncidentRole = (typeof INCIDENT_ROLES)[number];
/** Person ids by war-room role. */
export type IncidentRoles = Partial<Record<IncidentRole, string>>;

export const CHECKLIST_PHASES = ['first15Minutes', 'inProgress', 'afterResolution'] as const;
export type ChecklistPhase = (typeof CHECKLIST_PHASES)[number];

export interface ChecklistItem {
  /** e.g. `first15Minutes-2`. */
  id: string;
  phase: ChecklistPhase;
  text: string;
  done?: { by: string; at: string } | undefined;
}

export interface Transition {
  from: IncidentStatus | null;
  to: IncidentStatus;
  at: string;
  /** Actor name. */
  by: string;
}

export type IncidentSource = 'manual' | 'alert' | 'heartbeat';

/** An incident as stored (JSON columns parsed). */
export interface IncidentRecord {
  key: string;
  number: number;
  title: string;
  severity: string;
  service: string;
  status: IncidentStatus;
  source: IncidentSource;
  groupKey?: string | undefined;
  /** Whether it owns its group key now (open). */
  ownsGroup: boolean;
  policy?: string | undefined;
  summary: string;
  impact: string;
  rootCause: string;
  suggestedRunbooks: string[];
  roles: IncidentRoles;
  owner?: string | undefined;
  checklist: ChecklistItem[];
  transitions: Transition[];
  acknowledgedAt?: string | undefined;
  acknowledgedBy?: string | undefined;
  lastUpdateAt?: string | undefined;
  nextUpdateDueAt?: string | undefined;
  remindedFor?: string | undefined;
  missedFor?: string | undefined;
  createdBy: Actor;
  createdAt: string;
  updatedAt: string;
  revision: number;
}

/** The fields a change may set (undefined leaves a field; null clears an optional one). */
export interface IncidentChanges {
  title?: string;
  severity?: string;
  status?: IncidentStatus;
  /** true: own the group key again (reopen; skipped when another open incident has it); false: let go. */
  ownsGroup?: boolean;
  policy?: string | null;
  summary?: string;
  impact?: string;
  rootCause?: string;
  suggestedRunbooks?: string[];
  roles?: IncidentRoles;
  owner?: string | null;
  checklist?: ChecklistItem[];
  transitions?: Transition[];
  acknowledgedAt?: string | null;
  acknowledgedBy?: string | null;
  lastUpdateAt?: string | null;
  nextUpdateDueAt?: string | null;
  remindedFor?: string | null;
  missedFor?: string | null;
}

export interface TimelineEntryRecord {
  seq: number;
  at: string;
  kind: string;
  message: string;
  actor?: Actor | undefined;
  data: Record<string, unknown>;
}

export interface NewTimelineEntry {
  kind: string;
  message: string;
  actor?: Actor | undefined;
  data?: Record<string, unknown> | undefined;
  at?: string | undefined;
  /** Record once: a second entry with the same key (for this incident) is skipped. */
  dedupKey?: string | undefined;
}

export interface AuditNote {
  actor: Actor;
  /** `incident.<verb>`. */
  action: string;
  data?: Record<string, unknown>;
}

/** What a change decided from the current incident: fields, entries, audit, and a result for the caller. */
export interface IncidentMutation<T> {
  changes?: IncidentChanges;
  entries?: NewTimelineEntry[];
  audit?: AuditNote;
  result: T;
}

export interface NewIncident {
  title: string;
  severity: string;
  service: string;
  source: IncidentSource;
  groupKey?: string | undefined;
  policy?: string | undefined;
  summary?: string | undefined;
  impact?: string | undefined;
  suggestedRunbooks?: string[] | undefined;
  roles?: IncidentRoles | undefined;
  owner?: string | undefined;
  checklist: ChecklistItem[];
  nextUpdateDueAt?: string | undefined;
  createdBy: Actor;
}

export interface IncidentScope {
  service: string;
  environment: string;
}

export interface ListIncidentsFilter {
  status?: IncidentStatus[] | undefined;
  severity?: string[] | undefined;
  /** Only incidents not yet resolved (declared, investigating, mitigated). */
  open?: boolean | undefined;
  limit?: number | undefined;
}

export interface LinkedRun {
  runId: string;
  runbook: string;
  startedAt: string;
  startedBy: string;
}

export interface PostmortemVersion {
  version: number;
  markdown: string;
  sections: Record<string, string>;
  edited: string[];
  kind: 'generated' | 'edited';
  createdAt: string;
  createdBy: string;
}

export type ActionItemOwner = { person: string } | { team: string };

export interface ActionItemRecord {
  id: string;
  title: string;
  owner?: ActionItemOwner | undefined;
  dueDate?: string | undefined;
  status: 'open' | 'done';
  createdAt: string;
  createdBy: string;
  updatedAt: string;
  doneAt?: string | undefined;
  doneBy?: string | undefined;
}

/**
 * The incidents' store. Every write runs in one transaction with its audit record; changes to an
 * incident run under its row lock (PostgreSQL `FOR UPDATE`; SQLite serialises writers), so concurrent
 * changes never lose one another.
 */
export interface IncidentRepo {
  /**
   * Opens an incident numbered `INC-<next>` in the scope, with its first timeline entries. With a group
   * key, when an open incident already owns it (now, or a concurrent insert won), nothing is inserted
   * and that incident comes back with `created: false`.
   */
  open(
    scope: IncidentScope,
    input: NewIncident,
    entries: NewTimelineEntry[],
  ): Promise<{ incident: IncidentRecord; created: boolean }>;
  get(scope: IncidentScope, number: number): Promise<IncidentRecord | undefined>;
  /** The open incident that owns this group key. */
  byOpenGroup(scope: IncidentScope, groupKey: string): Promise<IncidentRecord | undefined>;
  /** Newest first. */
  list(scope: IncidentScope, filter?: ListIncidentsFilter): Promise<IncidentRecord[]>;
  /** Open incidents whose status update is due at `now` or earlier. */
  dueForUpdate(scope: IncidentScope, now: Date): Promise<IncidentRecord[]>;
  /**
   * Changes an incident under its row lock: `decide` sees the current incident and returns the changes,
   * the timeline entries and the audit record (or throws, e.g. ConflictError, and nothing changes).
   * @throws NotFoundError `no incident INC-<n>`
   */
  mutate<T>(
    scope: IncidentScope,
    number: number,
    decide: (current: IncidentRecord) => IncidentMutation<T>,
  ): Promise<{ incident: IncidentRecord; result: T; entries: TimelineEntryRecord[] }>;
  /** The timeline, oldest first. */
  timeline(scope: IncidentScope, number: number): Promise<TimelineEntryRecord[]>;
  /** Links a run started from the incident (once per run). */
  linkRun(
    scope: IncidentScope,
    number: number,
    run: LinkedRun,
    entry: NewTimelineEntry,
    actor: Actor,
  ): Promise<void>;
  runs(scope: IncidentScope, number: number): Promise<LinkedRun[]>;
  /** Every version, oldest first. */
  postmortems(scope: IncidentScope, number: number): Promise<PostmortemVersion[]>;
  /**
   * Stores the next version. `baseVersion` is the version the writer started from (0: none yet).
   * @throws ConflictError when a newer version exists than `baseVersion`.
   */
  savePostmortem(
    scope: IncidentScope,
    number: number,
    baseVersion: number,
    version: Omit<PostmortemVersion, 'version' | 'createdAt' | 'createdBy'>,
    actor: Actor,
  ): Promise<PostmortemVersion>;
  actionItems(scope: IncidentScope, number: number): Promise<ActionItemRecord[]>;
  addActionItem(
    scope: IncidentScope,
    number: number,
    item: { title: string; owner?: ActionItemOwner | undefined; dueDate?: string | undefined },
    actor: Actor,
  ): Promise<ActionItemRecord>;
  /** @throws NotFoundError naming the item. */
  updateActionItem(
    scope: IncidentScope,
    number: number,
    id: string,
    change: {
      title?: string | undefined;
      owner?: ActionItemOwner | null | undefined;
      dueDate?: string | null | undefined;
      status?: 'open' | 'done' | undefined;
    },
    actor: Actor,
  ): Promise<ActionItemRecord>;
  /** @throws NotFoundError naming the item. */
  deleteActionItem(scope: IncidentScope, number: number, id: string, actor: Actor): Promise<void>;
}

type Row = Selectable<IncidentsTable>;
type Db = Kysely<StoreDatabase> | Transaction<StoreDatabase>;

/** `INC-<n>`, as people and other domains call an incident. */
export function incidentLabel(number: number): string {
  return `INC-${number}`;
}

export function createIncidentRepo(db: Kysely<StoreDatabase>, call: StoreCall, clock: Clock): IncidentRepo {
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter;

  async function rowOf(tx: Db, scope: IncidentScope, number: number, lock: boolean): Promise<Row> {
    let query = tx
      .selectFrom('incidents')
      .selectAll()
      .where('scope_service', '=', scope.service)
      .where('scope_environment', '=', scope.environment)
      .where('number', '=', number);
    if (lock && postgres) query = query.forUpdate();
    const row = await query.executeTakeFirst();
    if (!row) throw notFound(number);
    return row;
  }

  /** Appends entries under the incident's row lock (the caller holds it); skips dedup keys seen. */
  async function appendIn(
    tx: Transaction<StoreDatabase>,
    row: Row,
    entries: NewTimelineEntry[],
    now: Date,
  ): Promise<TimelineEntryRecord[]> {
    const out: TimelineEntryRecord[] = [];
    let seq = Number(row.timeline_seq);
    for (const entry of entries) {
      const dedup = entry.dedupKey !== undefined ? `${row.id}:${entry.dedupKey}` : null;
      if (dedup !== null) {
        const seen = await tx
          .selectFrom('incident_timeline')
          .select('seq')
          .where('dedup_key', '=', dedup)
          .executeTakeFirst();
        if (seen) continue;
      }
      seq += 1;
      const values = {
        incident_id: row.id,
        seq,
        at: entry.at ?? now.toISOString(),
        kind: entry.kind,
        message: entry.message,
        actor: entry.actor ? JSON.stringify(entry.actor) : null,
        data: JSON.stringify(entry.data ?? {}),
        dedup_key: dedup,
      };
      await tx.insertInto('incident_timeline').values(values).execute();
      out.push(entryOf(values));
    }
    if (seq !== Number(row.timeline_seq))
      await tx.updateTable('incidents').set({ timeline_seq: seq }).where('id', '=', row.id).execute();
    return out;
  }

  async function audit(
    tx: Transaction<StoreDatabase>,
    number: number,
    note: AuditNote,
    now: Date,
  ): Promise<void> {
    await appendAudit(
      tx,
      {
        actor: note.actor,
        action: note.action,
        target: `incident:${incidentLabel(number)}`,
        ...(note.data ? { data: note.data } : {}),
      },
      now,
    );
  }

  async function incidentKey(tx: Db, scope: IncidentScope, number: number): Promise<string> {
    const row = await tx
      .selectFrom('incidents')
      .select('id')
      .where('scope_service', '=', scope.service)
      .where('scope_environment', '=', scope.environment)
      .where('number', '=', number)
      .executeTakeFirst();
    if (!row) throw notFound(number);
    return row.id;
  }

  const repo: IncidentRepo = {
    async open(scope, input, entries) {
      const now = clock.now();
      const at = now.toISOString();
      const groupKey = input.groupKey !== undefined ? openKey(scope, input.groupKey) : null;
      const created = await call(`opening an incident (${input.title})`, () =>
        db.transaction().execute(async (tx) => {
          if (groupKey !== null) {
            const owner = await tx
              .selectFrom('incidents')
              .select('number')
              .where('open_group_key', '=', groupKey)
              .executeTakeFirst();
            if (owner) return undefined;
          }
          await tx
            .insertInto('incident_counters')
            .values({ scope_service: scope.service, scope_environment: scope.environment, last: 0 })
            .onConflict((oc) => oc.columns(['scope_service', 'scope_environment']).doNothing())
            .execute();
          const counter = await tx
            .updateTable('incident_counters')
            .set({ last: sql<number>`last + 1` })
            .where('scope_service', '=', scope.service)
            .where('scope_environment', '=', scope.environment)
            .returning('last')
            .executeTakeFirstOrThrow();
          const number = Number(counter.last);
          const row: Row = {
            id: randomUUID(),
            scope_service: scope.service,
            scope_environment: scope.environment,
            number,
            title: input.title,
            severity: input.severity,
            service: input.service,
            status: 'declared',
            source: input.source,
            group_key: input.groupKey ?? null,
            open_group_key: groupKey,
            policy: input.policy ?? null,
            summary: input.summary ?? '',
            impact: input.impact ?? '',
            root_cause: '',
            suggested_runbooks: JSON.stringify(input.suggestedRunbooks ?? []),
            roles: JSON.stringify(input.roles ?? {}),
            owner: input.owner ?? null,
            checklist: JSON.stringify(input.checklist),
            transitions: JSON.stringify([
              { from: null, to: 'declared', at, by: input.createdBy.name } satisfies Transition,
            ]),
            acknowledged_at: null,
            acknowledged_by: null,
            last_update_at: null,
            next_update_due_at: input.nextUpdateDueAt ?? null,
            reminded_for: null,
            missed_for: null,
            created_by: JSON.stringify(input.createdBy),
            created_at: at,
            updated_at: at,
            timeline_seq: 0,
            revision: 0,
          };
          // A concurrent open of the same group that committed first makes this insert a no-op (on
          // PostgreSQL it waits for that transaction); the counter step is rolled back with it.
          const inserted = await tx
            .insertInto('incidents')
            .values(row)
            .onConflict((oc) => oc.column('open_group_key').doNothing())
            .returning('id')
            .executeTakeFirst();
          if (!inserted) throw new GroupTaken();
          await appendIn(tx, row, entries, now);
          await audit(
            tx,
            number,
            {
              actor: input.createdBy,
              action: 'incident.declare',
              data: {
                title: input.title,
                severity: input.severity,
                service: input.service,
                source: input.source,
                ...(input.groupKey !== undefined ? { groupKey: input.groupKey } : {}),
              },
            },
            now,
          );
          return number;
        }),
      ).catch((err: unknown) => {
        if (err instanceof GroupTaken) return undefined;
        throw err;
      });
      if (created !== undefined) {
        const incident = await repo.get(scope, created);
        if (!incident) throw notFound(created);
        return { incident, created: true };
      }
      const owner = input.groupKey !== undefined ? await repo.byOpenGroup(scope, input.groupKey) : undefined;
      if (!owner) {
        // The owner resolved between our insert and this read: open a fresh incident for the group.
        return repo.open(scope, input, entries);
      }
      return { incident: owner, created: false };
    },

    async get(scope, number) {
      const row = await call(`reading incident ${incidentLabel(number)}`, () =>
        db
          .selectFrom('incidents')
          .selectAll()
          .where('scope_service', '=', scope.service)
          .where('scope_environment', '=', scope.environment)
          .where('number', '=', number)
          .executeTakeFirst(),
      );
      return row ? recordOf(row) : undefined;
    },

    async byOpenGroup(scope, groupKey) {
      const row = await call('reading the open incident of an alert group', () =>
        db
          .selectFrom('incidents')
          .selectAll()
          .where('open_group_key', '=', openKey(scope, groupKey))
          .executeTakeFirst(),
      );
      return row ? recordOf(row) : undefined;
    },

    async list(scope, filter = {}) {
      const rows = await call('listing incidents', () => {
        let query = db
          .selectFrom('incidents')
          .selectAll()
          .where('scope_service', '=', scope.service)
          .where('scope_environment', '=', scope.environment);
        if (filter.status && filter.status.length > 0) query = query.where('status', 'in', filter.status);
        if (filter.severity && filter.severity.length > 0)
          query = query.where('severity', 'in', filter.severity);
        if (filter.open) query = query.where('status', 'in', ['declared', 'investigating', 'mitigated']);
        return query
          .orderBy('number', 'desc')
          .limit(Math.min(Math.max(filter.limit ?? 100, 1), 1000))
          .execute();
      });
      return rows.map(recordOf);
    },

    async dueForUpdate(scope, now) {
      const rows = await call('reading incidents due for a status update', () =>
        db
          .selectFrom('incidents')
          .selectAll()
          .where('scope_service', '=', scope.service)
          .where('scope_environment', '=', scope.environment)
          .where('next_update_due_at', 'is not', null)
          .where('next_update_due_at', '<=', now.toISOString())
          .where('status', 'in', ['declared', 'investigating', 'mitigated'])
          .orderBy('next_update_due_at')
          .limit(200)
          .execute(),
      );
      return rows.map(recordOf);
    },

    async mutate(scope, number, decide) {
      const now = clock.now();
      return call(`changing incident ${incidentLabel(number)}`, () =>
        db.transaction().execute(async (tx) => {
          const row = await rowOf(tx, scope, number, true);
          const mutation = decide(recordOf(row));
          const set = await columnsOf(tx, scope, row, mutation.changes ?? {});
          const touched = Object.keys(set).length > 0;
          if (touched) {
            await tx
              .updateTable('incidents')
              .set({ ...set, updated_at: now.toISOString(), revision: Number(row.revision) + 1 })
              .where('id', '=', row.id)
              .execute();
          }
          const entries = await appendIn(tx, row, mutation.entries ?? [], now);
          if (mutation.audit && (touched || entries.length > 0)) await audit(tx, number, mutation.audit, now);
          const fresh = await rowOf(tx, scope, number, false);
          return { incident: recordOf(fresh), result: mutation.result, entries };
        }),
      );
    },

    async timeline(scope, number) {
      const rows = await call(`reading the timeline of ${incidentLabel(number)}`, async () => {
        const key = await incidentKey(db, scope, number);
        return db
          .selectFrom('incident_timeline')
          .selectAll()
          .where('incident_id', '=', key)
          .orderBy('seq')
          .execute();
      });
      return rows.map(entryOf);
    },

    async linkRun(scope, number, run, entry, actor) {
      const now = clock.now();
      await call(`linking run ${run.runId} to ${incidentLabel(number)}`, () =>
        db.transaction().execute(async (tx) => {
          const row = await rowOf(tx, scope, number, true);
          const inserted = await tx
            .insertInto('incident_runs')
            .values({
              incident_id: row.id,
              run_id: run.runId,
              runbook: run.runbook,
              started_at: run.startedAt,
              started_by: run.startedBy,
            })
            .onConflict((oc) => oc.columns(['incident_id', 'run_id']).doNothing())
            .returning('run_id')
            .executeTakeFirst();
          if (!inserted) return;
          await appendIn(tx, row, [entry], now);
          await audit(
            tx,
            number,
            { actor, action: 'incident.run', data: { runId: run.runId, runbook: run.runbook } },
            now,
          );
        }),
      );
    },

    async runs(scope, number) {
      const rows = await call(`reading the runs of ${incidentLabel(number)}`, async () => {
        const key = await incidentKey(db, scope, number);
        return db
          .selectFrom('incident_runs')
          .selectAll()
          .where('incident_id', '=', key)
          .orderBy('started_at')
          .execute();
      });
      return rows.map((r) => ({
        runId: r.run_id,
        runbook: r.runbook,
        startedAt: r.started_at,
        startedBy: r.started_by,
      }));
    },

    async postmortems(scope, number) {
      const rows = await call(`reading the post-mortem of ${incidentLabel(number)}`, async () => {
        const key = await incidentKey(db, scope, number);
        return db
          .selectFrom('incident_postmortems')
          .selectAll()
          .where('incident_id', '=', key)
          .orderBy('version')
          .execute();
      });
      return rows.map((r) => ({
        version: Number(r.version),
        markdown: r.markdown,
        sections: JSON.parse(r.sections) as Record<string, string>,
        edited: JSON.parse(r.edited) as string[],
        kind: r.kind === 'edited' ? 'edited' : 'generated',
        createdAt: r.created_at,
        createdBy: r.created_by,
      }));
    },

    async savePostmortem(scope, number, baseVersion, version, actor) {
      const now = clock.now();
      return call(`saving the post-mortem of ${incidentLabel(number)}`, () =>
        db.transaction().execute(async (tx) => {
          const row = await rowOf(tx, scope, number, true);
          const latest = await tx
            .selectFrom('incident_postmortems')
            .select((eb) => eb.fn.max('version').as('v'))
            .where('incident_id', '=', row.id)
            .executeTakeFirst();
          const current = Number(latest?.v ?? 0);
          if (current !== baseVersion) {
            throw new ConflictError(
              `the post-mortem of ${incidentLabel(number)} is at version ${current}, not ${baseVersion}: ` +
                'someone saved a newer version; load it and apply your edit again',
              { details: { field: 'baseVersion', current, base: baseVersion } },
            );
          }
          const saved: PostmortemVersion = {
            ...version,
            version: current + 1,
            createdAt: now.toISOString(),
            createdBy: actor.name,
          };
          await tx
            .insertInto('incident_postmortems')
            .values({
              incident_id: row.id,
              version: saved.version,
              markdown: saved.markdown,
              sections: JSON.stringify(saved.sections),
              edited: JSON.stringify(saved.edited),
              kind: saved.kind,
              created_at: saved.createdAt,
              created_by: saved.createdBy,
            })
            .execute();
          await appendIn(
            tx,
            row,
            [
              {
                kind: 'postmortem',
                message: `post-mortem version ${saved.version} ${saved.kind === 'edited' ? 'edited' : 'generated'}`,
                actor,
                data: { version: saved.version, kind: saved.kind },
              },
            ],
            now,
          );
          await audit(
            tx,
            number,
            {
              actor,
              action: saved.kind === 'edited' ? 'incident.postmortem.edit' : 'incident.postmortem.generate',
              data: { version: saved.version, edited: saved.edited },
            },
            now,
          );
          return saved;
        }),
      );
    },

    async actionItems(scope, number) {
      const rows = await call(`reading the action items of ${incidentLabel(number)}`, async () => {
        const key = await incidentKey(db, scope, number);
        return db
          .selectFrom('incident_action_items')
          .selectAll()
          .where('incident_id', '=', key)
          .orderBy('created_at')
          .orderBy('id')
          .execute();
      });
      return rows.map(itemOf);
    },

    async addActionItem(scope, number, item, actor) {
      const now = clock.now();
      const at = now.toISOString();
      return call(`adding an action item to ${incidentLabel(number)}`, () =>
        db.transaction().execute(async (tx) => {
          const row = await rowOf(tx, scope, number, true);
          const values: Selectable<IncidentActionItemsTable> = {
            id: randomUUID().slice(0, 8),
            incident_id: row.id,
            title: item.title,
            owner: item.owner ? JSON.stringify(item.owner) : null,
            due_date: item.dueDate ?? null,
            status: 'open',
            created_at: at,
            created_by: actor.name,
            updated_at: at,
            done_at: null,
            done_by: null,
          };
          await tx.insertInto('incident_action_items').values(values).execute();
          await audit(
            tx,
            number,
            { actor, action: 'incident.action-item.add', data: { id: values.id, title: item.title } },
            now,
          );
          return itemOf(values);
        }),
      );
    },

    async updateActionItem(scope, number, id, change, actor) {
      const now = clock.now();
      const at = now.toISOString();
      return call(`changing action item ${id} of ${incidentLabel(number)}`, () =>
        db.transaction().execute(async (tx) => {
          const row = await rowOf(tx, scope, number, true);
          const item = await tx
            .selectFrom('incident_action_items')
            .selectAll()
            .where('incident_id', '=', row.id)
            .where('id', '=', id)
            .executeTakeFirst();
          if (!item) throw new NotFoundError(`${incidentLabel(number)} has no action item ${id}`);
          const next = { ...item, updated_at: at };
          if (change.title !== undefined) next.title = change.title;
          if (change.owner !== undefined) next.owner = change.owner ? JSON.stringify(change.owner) : null;
          if (change.dueDate !== undefined) next.due_date = change.dueDate;
          if (change.status !== undefined && change.status !== item.status) {
            next.status = change.status;
            next.done_at = change.status === 'done' ? at : null;
            next.done_by = change.status === 'done' ? actor.name : null;
          }
          await tx.updateTable('incident_action_items').set(next).where('id', '=', id).execute();
          await audit(
            tx,
            number,
            {
              actor,
              action: 'incident.action-item.update',
              data: { id, ...change, ...(change.owner === null ? { owner: 'none' } : {}) },
            },
            now,
          );
          return itemOf(next);
        }),
      );
    },

    async deleteActionItem(scope, number, id, actor) {
      const now = clock.now();
      await call(`removing action item ${id} of ${incidentLabel(number)}`, () =>
        db.transaction().execute(async (tx) => {
          const row = await rowOf(tx, scope, number, true);
          const gone = await tx
            .deleteFrom('incident_action_items')
            .where('incident_id', '=', row.id)
            .where('id', '=', id)
            .returning('title')
            .executeTakeFirst();
          if (!gone) throw new NotFoundError(`${incidentLabel(number)} has no action item ${id}`);
          await audit(
            tx,
            number,
            { actor, action: 'incident.action-item.delete', data: { id, title: gone.title } },
            now,
          );
        }),
      );
    },
  };
  return repo;
}

/** A lost race for a group key: the transaction rolls back and the caller joins the winner. */
class GroupTaken extends ConflictError {
  constructor() {
    super('the alert group has an open incident');
  }
}

function notFound(number: number): NotFoundError {
  return new NotFoundError(`no incident ${incidentLabel(number)}`, {
    details: { id: incidentLabel(number) },
  });
}

function openKey(scope: IncidentScope, groupKey: string): string {
  return JSON.stringify([scope.service, scope.environment, groupKey]);
}

async function columnsOf(
  tx: Transaction<StoreDatabase>,
  scope: IncidentScope,
  row: Row,
  c: IncidentChanges,
): Promise<Partial<Row>> {
  const set: Partial<Row> = {};
  if (c.title !== undefined) set.title = c.title;
  if (c.severity !== undefined) set.severity = c.severity;
  if (c.status !== undefined) set.status = c.status;
  if (c.ownsGroup === false) set.open_group_key = null;
  if (c.ownsGroup === true && row.group_key !== null && row.open_group_key === null) {
    const key = openKey(scope, row.group_key);
    const taken = await tx
      .selectFrom('incidents')
      .select('id')
      .where('open_group_key', '=', key)
      .executeTakeFirst();
    if (!taken) set.open_group_key = key;
  }
  if (c.policy !== undefined) set.policy = c.policy;
  if (c.summary !== undefined) set.summary = c.summary;
  if (c.impact !== undefined) set.impact = c.impact;
  if (c.rootCause !== undefined) set.root_cause = c.rootCause;
  if (c.suggestedRunbooks !== undefined) set.suggested_runbooks = JSON.stringify(c.suggestedRunbooks);
  if (c.roles !== undefined) set.roles = JSON.stringify(c.roles);
  if (c.owner !== undefined) set.owner = c.owner;
  if (c.checklist !== undefined) set.checklist = JSON.stringify(c.checklist);
  if (c.transitions !== undefined) set.transitions = JSON.stringify(c.transitions);
  if (c.acknowledgedAt !== undefined) set.acknowledged_at = c.acknowledgedAt;
  if (c.acknowledgedBy !== undefined) set.acknowledged_by = c.acknowledgedBy;
  if (c.lastUpdateAt !== undefined) set.last_update_at = c.lastUpdateAt;
  if (c.nextUpdateDueAt !== undefined) set.next_update_due_at = c.nextUpdateDueAt;
  if (c.remindedFor !== undefined) set.reminded_for = c.remindedFor;
  if (c.missedFor !== undefined) set.missed_for = c.missedFor;
  return set;
}

function recordOf(row: Row): IncidentRecord {
  const opt = <T>(v: T | null): T | undefined => (v === null ? undefined : v);
  return {
    key: row.id,
    number: Number(row.number),
    title: row.title,
    severity: row.severity,
    service: row.service,
    status: row.status as IncidentStatus,
    source: row.source as IncidentSource,
    groupKey: opt(row.group_key),
    ownsGroup: row.open_group_key !== null,
    policy: opt(row.policy),
    summary: row.summary,
    impact: row.impact,
    rootCause: row.root_cause,
    suggestedRunbooks: JSON.parse(row.suggested_runbooks) as string[],
    roles: JSON.parse(row.roles) as IncidentRoles,
    owner: opt(row.owner),
    checklist: JSON.parse(row.checklist) as ChecklistItem[],
    transitions: JSON.parse(row.transitions) as Transition[],
    acknowledgedAt: opt(row.acknowledged_at),
    acknowledgedBy: opt(row.acknowledged_by),
    lastUpdateAt: opt(row.last_update_at),
    nextUpdateDueAt: opt(row.next_update_due_at),
    remindedFor: opt(row.reminded_for),
    missedFor: opt(row.missed_for),
    createdBy: JSON.parse(row.created_by) as Actor,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    revision: Number(row.revision),
  };
}

function entryOf(row: Selectable<IncidentTimelineTable>): TimelineEntryRecord {
  return {
    seq: Number(row.seq),
    at: row.at,
    kind: row.kind,
    message: row.message,
    ...(row.actor !== null ? { actor: JSON.parse(row.actor) as Actor } : {}),
    data: JSON.parse(row.data) as Record<string, unknown>,
  };
}

function itemOf(row: Selectable<IncidentActionItemsTable>): ActionItemRecord {
  return {
    id: row.id,
    title: row.title,
    ...(row.owner !== null ? { owner: JSON.parse(row.owner) as ActionItemOwner } : {}),
    ...(row.due_date !== null ? { dueDate: row.due_date } : {}),
    status: row.status === 'done' ? 'done' : 'open',
    createdAt: row.created_at,
    createdBy: row.created_by,
    updatedAt: row.updated_at,
    ...(row.done_at !== null ? { doneAt: row.done_at } : {}),
    ...(row.done_by !== null ? { doneBy: row.done_by } : {}),
  };
}
