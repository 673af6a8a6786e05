import type { Dialect } from 'kysely';
import type { StoreTarget } from './errors.ts';

/** An opened backend, before Kysely and the migrations are put on top of it. */
export interface BackendConnection {
  backend: 'sqlite' | 'postgres';
  target: StoreTarget;
  dialect: Dialect;
  /** Runs just before the database is closed. */
  beforeClose?(): void;
}
