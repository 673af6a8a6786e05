import { Kysely, sql } from 'kysely';
import {
  type Clock,
  ConflictError,
  InputError,
  type Secret,
  UnavailableError,
  isSecret,
  systemClock,
} from '../core/index.ts';
import { type AlertRepo, createAlertRepo } from './alerts.ts';
import { type BackupRepo, createBackupRepo } from './backups.ts';
import { type AuditRepo, createAuditRepo } from './audit.ts';
import { type IncidentRepo, createIncidentRepo } from './incidents.ts';
import { type MaintenanceRepo, createMaintenanceRepo } from './maintenance.ts';
import { type OncallRepo, createOncallRepo } from './oncall.ts';
import type { BackendConnection } from './backend.ts';
import { type CheckRunRepo, type StoreCall, createCheckRunRepo } from './check-runs.ts';
import { storeError, type StoreTarget } from './errors.ts';
import { storeMigrator } from './migrations.ts';
import { type RunRepo, createRunRepo } from './runs.ts';
import { createTokenRepo, type TokenRepo } from './tokens.ts';
import { type ScheduleFireRepo, createScheduleFireRepo } from './schedules.ts';
import type { StoreDatabase } from './schema.ts';
import { openSqlite } from './sqlite.ts';

export interface StoreOptions {
  /** Directory of the embedded SQLite store (created with mode 0700); used when `url` is not set. */
  dataDir?: string;
  /** A postgres:// URL: the store lives in that PostgreSQL database instead. */
  url?: string | Secret;
  /** For the "started at" of the data-directory lock. @default systemClock */
  clock?: Clock;
  /** PostgreSQL: how long connecting may take. @default 5000 */
  connectTimeoutMs?: number;
  /** PostgreSQL: how long one statement may take. @default 10000 */
  statementTimeoutMs?: number;
}

/** gameops's own persistent state. Open with openStore; close to release the data directory. */
export interface Store {
  backend: 'sqlite' | 'postgres';
  /** The SQLite database file, or the PostgreSQL URL with its password masked. */
  location: string;
  checkRuns: CheckRunRepo;
  /** Occurrences of runbook schedules: which fired (and their run), which were missed. */
  scheduleFires: ScheduleFireRepo;
  /** The hash-chained audit log (engine transitions, approvals, tokens, config changes). */
  audit: AuditRepo;
  /** Runbook runs, steps, attempts and events (the engine's durable state). */
  runs: RunRepo;
  /** API tokens (the server's authentication). */
  tokens: TokenRepo;
  /** Incidents: lifecycle, war-room roles and checklists, timeline, post-mortems and action items. */
  incidents: IncidentRepo;
  /** On-call: overrides, pages, escalation state and every delivery attempt. */
  oncall: OncallRepo;
  /** Alert intake: alerts by (fingerprint, startsAt), suppression windows, heartbeats. */
  alerts: AlertRepo;
  /** The backup catalog: sets, their state, verification and drills; the backup lock. */
  backups: BackupRepo;
  /** Planned maintenance: windows and the notices sent before them. */
  maintenance: MaintenanceRepo;
  /** Resolves when the database answers. @throws UnavailableError otherwise. */
  ping(): Promise<void>;
  /** Closes the database and releases the data-directory lock. Safe to call twice. */
  close(): Promise<void>;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_STATEMENT_TIMEOUT_MS = 10_000;

/**
 * Opens the store and brings its schema up to date: PostgreSQL when `url` is given, otherwise the
 * embedded SQLite in `dataDir`. Both run the same migrations and behave the same.
 * @throws ConflictError when another gameops process holds `dataDir`, or the database was migrated
 *   by a newer gameops.
 * @throws UnavailableError when the database cannot be reached or opened (never showing a password).
 * @throws InputError when neither `dataDir` nor `url` is given, or `url` is not a postgres:// URL.
 */
export async function openStore(options: StoreOptions): Promise<Store> {
  const url = isSecret(options.url) ? options.url.reveal() : options.url;
  let connection: BackendConnection;
  if (url) {
    // The PostgreSQL driver loads only for a PostgreSQL store: a one-off command on the embedded store
    // does not pay for it.
    const { openPostgres } = await import('./postgres.ts');
    connection = openPostgres(url, {
      connectTimeoutMs: positive(options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS, 'connectTimeoutMs'),
      statementTimeoutMs: positive(
        options.statementTimeoutMs,
        DEFAULT_STATEMENT_TIMEOUT_MS,
        'statementTimeoutMs',
      ),
    });
  } else if (options.dataDir) {
    connection = openSqlite(options.dataDir, options.clock ?? systemClock);
  } else {
    throw new InputError('the store needs a data directory or a PostgreSQL URL');
  }
  const { target } = connection;
  const db = new Kysely<StoreDatabase>({ dialect: connection.dialect });
  const destroy = async (): Promise<void> => {
    connection.beforeClose?.();
    await db.destroy();
  };
  try {
    await sql`select 1`.execute(db).catch((err: unknown) => {
      throw storeError(target, err, 'connecting');
    });
    await migrate(db, target);
  } catch (err) {
    await destroy().catch(() => undefined);
    throw storeError(target, err, 'opening');
  }

  let closing: Promise<void> | undefined;
  const call: StoreCall = async (doing, work) => {
    if (closing) throw new UnavailableError(`${target.label} store at ${target.location} is closed`);
    try {
      return await work();
    } catch (err) {
      throw storeError(target, err, doing);
    }
  };
  return {
    backend: connection.backend,
    location: target.location,
    checkRuns: createCheckRunRepo(db, call),
    scheduleFires: createScheduleFireRepo(db, call),
    audit: createAuditRepo(db, call, options.clock ?? systemClock),
    runs: createRunRepo(db, call),
    tokens: createTokenRepo(db, call, options.clock ?? systemClock),
    incidents: createIncidentRepo(db, call, options.clock ?? systemClock),
    oncall: createOncallRepo(db, call, options.clock ?? systemClock),
    alerts: createAlertRepo(db, call, options.clock ?? systemClock),
    backups: createBackupRepo(db, call, options.clock ?? systemClock),
    maintenance: createMaintenanceRepo(db, call, options.clock ?? systemClock),
    ping: () =>
      call('ping', async () => {
        await sql`select 1`.execute(db);
      }),
    close: () => (closing ??= destroy()),
  };
}

async function migrate(db: Kysely<StoreDatabase>, target: StoreTarget): Promise<void> {
  const { error, results } = await storeMigrator(db as Kysely<unknown>).migrateToLatest();
  if (error === undefined) return;
  const missing = /previously executed migration (\S+) is missing/.exec(String((error as Error).message));
  if (missing) {
    throw new ConflictError(
      `${target.label} store at ${target.location} has migration ${missing[1]}, which this gameops does not know: ` +
        'it was used by a newer gameops; upgrade gameops or use another database',
      { details: { backend: target.label, location: target.location, migration: missing[1] } },
    );
  }
  const failed = results?.find((result) => result.status === 'Error');
  throw storeError(
    target,
    error,
    failed ? `applying migration ${failed.migrationName}` : 'applying migrations',
  );
}

function positive(value: number | undefined, fallback: number, field: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) {
    throw new InputError(`${field} must be a positive whole number of milliseconds (got ${value})`);
  }
  return value;
}
