import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

/**
 * Presents Node's built-in `DatabaseSync` as the better-sqlite3-like database Kysely's SqliteDialect
 * expects. The differences bridged here: node:sqlite takes parameters as variadic arguments, has no
 * `reader` flag (a statement that yields columns is a reader, so `INSERT ... RETURNING` works), and
 * binds no booleans.
 */
export function kyselySqliteDatabase(db: DatabaseSync): SqliteDatabase {
  return {
    // Kysely's destroy() closes the database; the store may have closed it already on a failed open.
    close: () => {
      if (db.isOpen) db.close();
    },
    prepare: (sql) => statement(db.prepare(sql)),
  };
}

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
