import { PostgresDialect } from 'kysely';
import pg from 'pg';
import { InputError } from '../core/index.ts';
import type { BackendConnection } from './backend.ts';
import type { StoreTarget } from './errors.ts';

export interface PostgresTimeouts {
  /** TCP connect plus the start-up handshake. */
  connectTimeoutMs: number;
  /** One statement, enforced by the server; the client gives up a little later if the server is mute. */
  statementTimeoutMs: number;
}

/** Grace for the server to report its own statement timeout before the client-side backstop fires. */
const QUERY_TIMEOUT_GRACE_MS = 2_000;

/**
 * A pool to the PostgreSQL at `url`. Nothing connects until the first query. Every wait is bounded: a
 * dead port fails at once, a server that accepts TCP and never answers fails after `connectTimeoutMs`,
 * and one that stops answering mid-run after `statementTimeoutMs` plus a small grace.
 * @throws InputError when `url` is not a postgres:// URL (the message never repeats the URL).
 */
export function openPostgres(url: string, timeouts: PostgresTimeouts): BackendConnection {
  const parsed = parsePostgresUrl(url);
  const target: StoreTarget = {
    label: 'PostgreSQL',
    location: maskedUrl(parsed),
    mask: passwordMask([parsed.password, parsed.searchParams.get('password') ?? '']),
  };
  const pool = new pg.Pool({
    connectionString: url,
    max: 4,
    connectionTimeoutMillis: timeouts.connectTimeoutMs,
    statement_timeout: timeouts.statementTimeoutMs,
    query_timeout: timeouts.statementTimeoutMs + QUERY_TIMEOUT_GRACE_MS,
    idle_in_transaction_session_timeout: timeouts.statementTimeoutMs + QUERY_TIMEOUT_GRACE_MS,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    application_name: 'gameops',
  });
  // A connection that dies (server restart, network cut) emits 'error'; unheard, that event would crash
  // gameops. The pool hears it for idle connections and drops them; a checked-out one has no listener
  // but the pool's, so every connection gets one of its own. The query in flight still rejects, and the
  // next call reconnects or fails with UnavailableError.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  return { backend: 'postgres', target, dialect: new PostgresDialect({ pool }) };
}

function parsePostgresUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InputError(
      'the database URL is not a valid URL (expected postgres://user:password@host:port/db)',
    );
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new InputError(
      `the database URL must start with postgres:// or postgresql:// (got ${parsed.protocol}//); ` +
        'leave it unset to use the embedded store',
    );
  }
  return parsed;
}

/**
 * The URL as shown to people: `postgres://user:***@host:port/db`. The query string is left out, since
 * it may carry a password (`?password=`) or other connection secrets.
 */
function maskedUrl(url: URL): string {
  const auth = url.username ? `${url.username}${url.password ? ':***' : ''}@` : '';
  const host = url.hostname || url.searchParams.get('host') || 'localhost';
  return `${url.protocol}//${auth}${host}:${url.port || '5432'}${url.pathname}`;
}

/** Removes the passwords, as written in the URL and decoded, from driver messages. */
function passwordMask(passwords: string[]): (text: string) => string {
  const forms = new Set(passwords.flatMap((p) => [p, safeDecode(p)]).filter((form) => form.length > 0));
  return (text) => [...forms].reduce((out, form) => out.split(form).join('***'), text);
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
