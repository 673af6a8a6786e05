import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

/**
 * Presents Node's built-in `DatabaseSync` as the better-sqlite3-like database Kysely's SqliteDialect
 * expects. The differences bridged here: node:sqlite takes parameters as variadic arguments, has no
 * `reader` flag (a statement that yields columns is a reader, so `INSERT ... RETURNING` works), and
 * binds no booleans.
 *
 * Prepared statements are kept (the most recently used {@link STATEMENT_CACHE_SIZE}) and reused for the
 * same SQL text: preparing was 10–15 % of the server's CPU under alert-intake load. Reuse is safe because
 * Kysely runs one query at a time on its single SQLite connection.
 */
export function kyselySqliteDatabase(db: DatabaseSync): SqliteDatabase {
  const cache = new Map<string, SqliteStatement>();
  return {
    // Kysely's destroy() closes the database; the store may have closed it already on a failed open.
    close: () => {
      cache.clear();
      if (db.isOpen) db.close();
    },
    prepare: (sql) => {
      const cached = cache.get(sql);
      if (cached) {
        // Most recently used last: a Map iterates in insertion order.
        cache.delete(sql);
        cache.set(sql, cached);
        return cached;
      }
      const prepared = statement(db.prepare(sql));
      cache.set(sql, prepared);
      if (cache.size > STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value!);
      return prepared;
    },
  };
}

/** Prepared statements kept per database. */
export const STATEMENT_CACHE_SIZE = 256;

function statement(stmt: StatementSync): SqliteStatement {
  return {
    reader: stmt.columns().length > 0,
    all: (params) => stmt.all(...bind(params)),
    run: (params) => stmt.run(...bind(params)),
    iterate: (params) => stmt.iterate(...bind(params)),
  };
}

function bind(params: ReadonlyArray<unknown>): SQLInputValue[] {
  return params.map((value) => (typeof value === 'boolean' ? (value ? 1 : 0) : (value as SQLInputValue)));
}
