import { ErrorCode, GameopsError, UnavailableError } from '../core/index.ts';

/** Which store failed, for messages: `PostgreSQL store at postgres://gameops:***@db:5432/gameops`. */
export interface StoreTarget {
  /** `SQLite` or `PostgreSQL`. */
  label: string;
  /** The database file, or the URL with its password masked. */
  location: string;
  /** Removes secrets from driver messages before they reach an error. */
  mask(text: string): string;
}

// SQLite result codes (primary, low byte of the extended code) that mean our statement is wrong rather
// than the database being unreachable: SQLITE_ERROR, SQLITE_CONSTRAINT, SQLITE_MISMATCH, SQLITE_MISUSE,
// SQLITE_RANGE. https://sqlite.org/rescode.html
const SQLITE_STATEMENT_FAULTS = new Set([1, 19, 20, 21, 25]);
// PostgreSQL SQLSTATE classes with the same meaning: data exception, integrity constraint violation,
// syntax error or access rule violation (except insufficient_privilege, a deployment problem).
const PG_STATEMENT_FAULT_CLASSES = new Set(['22', '23', '42']);

/**
 * Turns anything a driver throws into a GameopsError naming the store. A database that is down, hung,
 * locked, full or refusing gives UnavailableError (a later retry may help); a statement the database
 * rejects as wrong is a bug and gives `internal`. GameopsErrors pass through unchanged. The driver's
 * error is not kept as `cause`: URL parse errors carry the full URL, password included.
 */
export function storeError(target: StoreTarget, err: unknown, doing?: string): GameopsError {
  if (err instanceof GameopsError) return err;
  const message = target.mask(describe(err));
  const code = errorCodeOf(err);
  const text = `${target.label} store at ${target.location}: ${doing ? `${doing}: ` : ''}${message}`;
  const details = { backend: target.label, location: target.location, ...(code ? { code } : {}) };
  if (isStatementFault(err)) return new GameopsError(ErrorCode.internal, text, { details });
  return new UnavailableError(text, { details });
}

function isStatementFault(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const { errcode, code } = err as { errcode?: unknown; code?: unknown };
  if (typeof errcode === 'number') return SQLITE_STATEMENT_FAULTS.has(errcode & 0xff);
  // pg's DatabaseError carries the SQLSTATE as a five-character code; socket errors carry E-codes.
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && code !== '42501') {
    return PG_STATEMENT_FAULT_CLASSES.has(code.slice(0, 2));
  }
  return false;
}

function errorCodeOf(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const { errcode, code } = err as { errcode?: unknown; code?: unknown };
  if (typeof errcode === 'number') return `SQLITE_${errcode}`;
  return typeof code === 'string' ? code : undefined;
}

/** The message of a thrown value; AggregateError (a refused dual-stack connect) has an empty one. */
function describe(err: unknown): string {
  if (err instanceof AggregateError && !err.message) {
    return [...new Set(err.errors.map((e) => describe(e)))].join('; ') || 'connection failed';
  }
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
