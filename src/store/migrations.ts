import type { Kysely } from 'kysely';
import { Migrator, type Migration, type MigrationProvider } from 'kysely/migration';
import { alertsMigration } from './alerts.ts';
import { backupsMigration } from './backups.ts';
import { incidentsMigration } from './incidents.ts';
import { maintenanceMigration } from './maintenance.ts';
import { oncallMigration } from './oncall.ts';

/**
 * The one migration set of the store, for SQLite and PostgreSQL alike: written only with Kysely's
 * schema builder and portable column types (`text`, `integer`). Timestamps are ISO-8601 UTC text and
 * JSON is text, so rows read back the same from either backend. Migrations are append-only: never edit
 * one that has shipped; add the next number.
 */
const migrations: Record<string, Migration> = {
  '001_check_runs': {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema
        .createTable('check_runs')
        .addColumn('id', 'text', (col) => col.primaryKey())
        .addColumn('kind', 'text', (col) => col.notNull())
        .addColumn('service', 'text', (col) => col.notNull())
        .addColumn('environment', 'text', (col) => col.notNull())
        .addColumn('trigger', 'text', (col) => col.notNull())
        .addColumn('status', 'text', (col) => col.notNull())
        .addColumn('started_at', 'text', (col) => col.notNull())
        .addColumn('finished_at', 'text', (col) => col.notNull())
        .addColumn('duration_ms', 'integer', (col) => col.notNull())
        .addColumn('results', 'text', (col) => col.notNull())
        .execute();
      await db.schema
        .createIndex('check_runs_kind_started_at_idx')
        .on('check_runs')
        .columns(['kind', 'started_at'])
        .execute();
    },
  },
  // Runs are read per gameops instance (service and environment) when several share one database.
  '002_check_runs_scope': {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema
        .createIndex('check_runs_scope_kind_started_at_idx')
        .on('check_runs')
        .columns(['service', 'environment', 'kind', 'started_at'])
        .execute();
    },
  },
  // The runbook engine (ADR 0007): runs, their steps and attempts, event streams; the audit log; API
  // tokens; schedule occurrences. Owners: store/runs.ts, store/audit.ts, store/tokens.ts, store/schedules.ts.
  '003_runbooks': {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema
        .createTable('runs')
        .addColumn('id', 'text', (col) => col.primaryKey())
        .addColumn('service', 'text', (col) => col.notNull())
        .addColumn('environment', 'text', (col) => col.notNull())
        .addColumn('runbook', 'text', (col) => col.notNull())
        .addColumn('version', 'text', (col) => col.notNull())
        .addColumn('definition_hash', 'text', (col) => col.notNull())
        // JSON: the compiled definition the run runs (a changed file never changes a run in flight).
        .addColumn('definition', 'text', (col) => col.notNull())
        .addColumn('params', 'text', (col) => col.notNull())
        .addColumn('status', 'text', (col) => col.notNull())
        .addColumn('trigger', 'text', (col) => col.notNull())
        .addColumn('requested_by', 'text', (col) => col.notNull())
        .addColumn('idempotency_key', 'text', (col) => col.unique())
        .addColumn('parent_run_id', 'text')
        .addColumn('parent_step_id', 'text')
        .addColumn('created_at', 'text', (col) => col.notNull())
        .addColumn('started_at', 'text')
        .addColumn('finished_at', 'text')
        .addColumn('deadline_at', 'text')
        .addColumn('reason', 'text')
        .addColumn('paused', 'integer', (col) => col.notNull().defaultTo(0))
        .addColumn('cancel_requested', 'integer', (col) => col.notNull().defaultTo(0))
        // 1 while the compensations of a failed run (onFailure compensate) are running.
        .addColumn('compensating', 'integer', (col) => col.notNull().defaultTo(0))
        .addColumn('lease_owner', 'text')
        .addColumn('lease_expires_at', 'text')
        .addColumn('event_seq', 'integer', (col) => col.notNull().defaultTo(0))
        // Incremented by every transition: a worker's cached copy of a run is current while it matches.
        .addColumn('revision', 'integer', (col) => col.notNull().defaultTo(0))
        .addColumn('updated_at', 'text', (col) => col.notNull())
        .execute();
      await db.schema
        .createIndex('runs_scope_created_idx')
        .on('runs')
        .columns(['service', 'environment', 'created_at'])
        .execute();
      await db.schema.createIndex('runs_status_idx').on('runs').columns(['status']).execute();
      await db.schema.createIndex('runs_parent_idx').on('runs').columns(['parent_run_id']).execute();
      await db.schema
        .createTable('run_steps')
        .addColumn('run_id', 'text', (col) => col.notNull())
        .addColumn('step_id', 'text', (col) => col.notNull())
        .addColumn('kind', 'text', (col) => col.notNull())
        .addColumn('status', 'text', (col) => col.notNull())
        .addColumn('attempt', 'integer', (col) => col.notNull().defaultTo(0))
        .addColumn('fence', 'integer', (col) => col.notNull().defaultTo(0))
        .addColumn('started_at', 'text')
        .addColumn('finished_at', 'text')
        // The run's event seq when the step finished: compensation runs in reverse completion order.
        .addColumn('finished_seq', 'integer')
        .addColumn('not_before', 'text')
        .addColumn('output', 'text')
        .addColumn('error', 'text')
        .addColumn('approval', 'text')
        .addColumn('child_run_id', 'text')
        // JSON: the state of the step's compensating action.
        .addColumn('compensation', 'text')
        .addColumn('lease_owner', 'text')
        .addColumn('lease_expires_at', 'text')
        .addPrimaryKeyConstraint('run_steps_pk', ['run_id', 'step_id'])
        .execute();
      await db.schema
        .createTable('step_attempts')
        .addColumn('run_id', 'text', (col) => col.notNull())
        .addColumn('step_id', 'text', (col) => col.notNull())
        .addColumn('attempt', 'integer', (col) => col.notNull())
        .addColumn('fence', 'integer', (col) => col.notNull())
        .addColumn('worker', 'text', (col) => col.notNull())
        .addColumn('status', 'text', (col) => col.notNull())
        .addColumn('started_at', 'text', (col) => col.notNull())
        .addColumn('finished_at', 'text')
        .addColumn('error', 'text')
        .addPrimaryKeyConstraint('step_attempts_pk', ['run_id', 'step_id', 'attempt'])
        .execute();
      await db.schema
        .createTable('run_events')
        .addColumn('run_id', 'text', (col) => col.notNull())
        .addColumn('seq', 'integer', (col) => col.notNull())
        .addColumn('at', 'text', (col) => col.notNull())
        .addColumn('type', 'text', (col) => col.notNull())
        .addColumn('step_id', 'text')
        .addColumn('status', 'text')
        .addColumn('message', 'text')
        .addPrimaryKeyConstraint('run_events_pk', ['run_id', 'seq'])
        .execute();
      // Monotonic counters (the fencing-token sequence).
      await db.schema
        .createTable('counters')
        .addColumn('name', 'text', (col) => col.primaryKey())
        .addColumn('value', 'integer', (col) => col.notNull())
        .execute();
      await db.schema
        .createTable('audit_log')
        .addColumn('seq', 'integer', (col) => col.primaryKey())
        .addColumn('at', 'text', (col) => col.notNull())
        .addColumn('actor', 'text', (col) => col.notNull())
        .addColumn('action', 'text', (col) => col.notNull())
        .addColumn('target', 'text', (col) => col.notNull())
        .addColumn('data', 'text', (col) => col.notNull())
        .addColumn('prev_hash', 'text', (col) => col.notNull())
        .addColumn('hash', 'text', (col) => col.notNull())
        .execute();
      // The chain's head, written in the same transaction as each record: deleting the newest records
      // leaves a head that no longer matches.
      await db.schema
        .createTable('audit_head')
        .addColumn('id', 'integer', (col) => col.primaryKey())
        .addColumn('seq', 'integer', (col) => col.notNull())
        .addColumn('hash', 'text', (col) => col.notNull())
        .execute();
      await db.schema
        .createTable('api_tokens')
        .addColumn('id', 'text', (col) => col.primaryKey())
        .addColumn('name', 'text', (col) => col.notNull())
        .addColumn('role', 'text', (col) => col.notNull())
        .addColumn('hash', 'text', (col) => col.notNull().unique())
        .addColumn('created_at', 'text', (col) => col.notNull())
        .addColumn('created_by', 'text', (col) => col.notNull())
        .addColumn('expires_at', 'text')
        .addColumn('revoked_at', 'text')
        .addColumn('last_used_at', 'text')
        .execute();
      await db.schema
        .createTable('schedule_fires')
        .addColumn('service', 'text', (col) => col.notNull())
        .addColumn('environment', 'text', (col) => col.notNull())
        .addColumn('schedule', 'text', (col) => col.notNull())
        .addColumn('occurrence', 'text', (col) => col.notNull())
        .addColumn('outcome', 'text', (col) => col.notNull())
        .addColumn('run_id', 'text')
        .addColumn('recorded_at', 'text', (col) => col.notNull())
        .addPrimaryKeyConstraint('schedule_fires_pk', ['service', 'environment', 'schedule', 'occurrence'])
        .execute();
    },
  },
  // Incident response (issue #5): each domain's tables are declared beside its repo.
  '004_incidents': incidentsMigration,
  '005_oncall': oncallMigration,
  '006_alerts': alertsMigration,
  '007_backups': backupsMigration,
  '008_maintenance': maintenanceMigration,
  // Listing a scope's runs newest first (every daily check reads the previous run this way) walks this
  // index and stops at the limit. Without it the database sorted every stored run of the scope, whole
  // rows included, so each check read more the longer gameops had been keeping runs.
  '009_check_runs_listing': {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema
        .createIndex('check_runs_scope_started_at_id_idx')
        .on('check_runs')
        .columns(['service', 'environment', 'started_at', 'id'])
        .execute();
    },
  },
};

const provider: MigrationProvider = { getMigrations: () => Promise.resolve(migrations) };

/** A Migrator over the store's migrations; its tables are `kysely_migration` and `kysely_migration_lock`. */
export function storeMigrator(db: Kysely<unknown>): Migrator {
  return new Migrator({ db, provider });
}
