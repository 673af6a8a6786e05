import type { Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import type { Clock } from '../core/index.ts';
import type { StoreCall } from './check-runs.ts';
import type { StoreDatabase } from './schema.ts';

// PLACEHOLDER (issue #5, being written): tables, migration and repo of the incidents domain.

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface IncidentTables {}

export const incidentsMigration: Migration = {
  async up(): Promise<void> {},
};

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface IncidentRepo {}

export function createIncidentRepo(
  _db: Kysely<StoreDatabase>,
  _call: StoreCall,
  _clock: Clock,
): IncidentRepo {
  return {};
}
