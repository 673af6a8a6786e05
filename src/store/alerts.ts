import type { Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import type { Clock } from '../core/index.ts';
import type { StoreCall } from './check-runs.ts';
import type { StoreDatabase } from './schema.ts';

// PLACEHOLDER (issue #5, being written): tables, migration and repo of the alerts domain.

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface AlertTables {}

export const alertsMigration: Migration = {
  async up(): Promise<void> {},
};

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface AlertRepo {}

export function createAlertRepo(_db: Kysely<StoreDatabase>, _call: StoreCall, _clock: Clock): AlertRepo {
  return {};
}
