import type { Kysely } from 'kysely';
import { Migrator, type Migration, type MigrationProvider } from 'kysely/migration';

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
};

const provider: MigrationProvider = { getMigrations: () => Promise.resolve(migrations) };

/** A Migrator over the store's migrations; its tables are `kysely_migration` and `kysely_migration_lock`. */
export function storeMigrator(db: Kysely<unknown>): Migrator {
  return new Migrator({ db, provider });
}
