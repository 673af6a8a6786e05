import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';
import type { StoreOptions } from '../../src/store/index.ts';
import { services } from '../harness/index.ts';

export type Row = Record<string, unknown>;

/** Cleanup functions a test file runs (in reverse) after its tests. */
export type Cleanups = (() => Promise<void> | void)[];

/** A fresh, empty place for a store, and a way to reach its tables behind the store's back. */
export interface Place {
  options: StoreOptions;
  /** Runs SQL directly; for SQLite only while no store has the directory open. */
  query(text: string): Promise<Row[]>;
}

/** A new SQLite data dir in a temp dir, removed by `cleanups`. */
export function sqlitePlace(cleanups: Cleanups): Place {
  const dir = mkdtempSync(join(tmpdir(), 'gameops-store-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const dataDir = join(dir, 'data');
  return {
    options: { dataDir },
    query: (text) => {
      const db = new DatabaseSync(join(dataDir, 'gameops.db'));
      try {
        const stmt = db.prepare(text);
        return Promise.resolve(stmt.columns().length > 0 ? (stmt.all() as Row[]) : (stmt.run(), []));
      } finally {
        db.close();
      }
    },
  };
}

export async function pgQuery(url: string, text: string): Promise<Row[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<Row>(text)).rows;
  } finally {
    await client.end();
  }
}

/** A new database on the shared server, dropped after the file's tests (via `cleanups`). */
export async function postgresPlace(cleanups: Cleanups): Promise<Place> {
  const admin = services().postgres.url;
  const name = `gameops_${randomBytes(6).toString('hex')}`;
  await pgQuery(admin, `CREATE DATABASE ${name}`);
  cleanups.push(() => pgQuery(admin, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).then(() => undefined));
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return { options: { url: url.toString() }, query: (text) => pgQuery(url.toString(), text) };
}

/** A store backend to run a test file against, for `describe.each`. */
export interface StoreBackend {
  backend: 'sqlite' | 'postgres';
  /** The options of a fresh, empty store (removed by `cleanups`). */
  place: () => Promise<StoreOptions>;
}

/** Both store backends (SQLite, then PostgreSQL), each giving fresh places removed by `cleanups`. */
export function storeBackends(cleanups: Cleanups): StoreBackend[] {
  return [
    { backend: 'sqlite', place: () => Promise.resolve(sqlitePlace(cleanups).options) },
    { backend: 'postgres', place: async () => (await postgresPlace(cleanups)).options },
  ];
}
