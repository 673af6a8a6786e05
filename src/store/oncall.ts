import type { Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import type { Clock } from '../core/index.ts';
import type { StoreCall } from './check-runs.ts';
import type { StoreDatabase } from './schema.ts';

// PLACEHOLDER (issue #5, being written): tables, migration and repo of the oncall domain.

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface OncallTables {}

export const oncallMigration: Migration = {
  async up(): Promise<void> {},
};

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface OncallRepo {}

export function createOncallRepo(_db: Kysely<StoreDatabase>, _call: StoreCall, _clock: Clock): OncallRepo {
  return {};
}
