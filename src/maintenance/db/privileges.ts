/**
 * Whether the connected user may run what a plan would run: read before any approval (and in a window,
 * before the game is closed), so a user with SELECT only is told at plan time which privileges it lacks,
 * not by an "ALTER command denied" after the players were sent away.
 *
 * The grants are read from `information_schema.USER_PRIVILEGES`, `SCHEMA_PRIVILEGES` (a schema grant may be
 * a `LIKE` pattern) and `TABLE_PRIVILEGES`, for `CURRENT_USER()`: the user's own grants at global, schema
 * and table level. Grants that come through an active role are not in those views; with a role active the
 * check says so in a note instead of refusing.
 */
import type { MysqlClient } from '../../connectors/mysql.ts';
import { NotAllowedError } from '../../core/index.ts';
import type { DbPlan, TableRef } from './plan.ts';

/** A privilege a statement of the plan needs: on a table, on a schema (tables it creates), or global. */
export interface PrivilegeNeed {
  privilege: string;
  /** Null: a global privilege (RELOAD). */
  on: TableRef | { database: string; table?: undefined } | null;
  /** What needs it, for the message: `ALTER TABLE game.logs DROP PARTITION`. */
  statement: string;
}

const plain = (r: TableRef): string => `${r.database}.${r.table}`;

/**
 * The privileges the plan's statements need (MySQL/MariaDB manual): ALTER TABLE takes ALTER, CREATE and
 * INSERT on the table, DROP PARTITION and EXCHANGE PARTITION also DROP; a rotation creates a staging copy
 * in the schema (CREATE, DROP), locks (LOCK TABLES) and reads (SELECT) it; OPTIMIZE and ANALYZE take
 * SELECT and INSERT; a purge DELETE and SELECT; FLUSH QUERY CACHE the global RELOAD.
 */
export function requiredPrivileges(plan: DbPlan): PrivilegeNeed[] {
  const needs: PrivilegeNeed[] = [];
  const on = (ref: TableRef, statement: string, ...privileges: string[]): void => {
    for (const privilege of privileges)
      needs.push({ privilege, on: { database: ref.database, table: ref.table }, statement });
  };
  for (const t of plan.addPartitions)
    on(
      t,
      `ALTER TABLE ${plain(t)} ${t.reorganize ? 'REORGANIZE' : 'ADD'} PARTITION`,
      'ALTER',
      'CREATE',
      'INSERT',
    );
  for (const t of plan.rotate) {
    const statement = `rotation of ${plain(t)} PARTITION (${t.partition}): EXCHANGE/DROP PARTITION`;
    on(t, statement, 'ALTER', 'CREATE', 'INSERT', 'DROP', 'SELECT');
    for (const privilege of ['CREATE', 'DROP', 'LOCK TABLES'])
      needs.push({ privilege, on: { database: t.database }, statement: `${statement} (staging table)` });
  }
  for (const t of plan.purge) on(t, `DELETE FROM ${plain(t)}`, 'DELETE', 'SELECT');
  for (const t of plan.optimize.tables)
    on(
      t,
      t.partitions ? `ALTER TABLE ${plain(t)} REBUILD PARTITION` : `OPTIMIZE TABLE ${plain(t)}`,
      'SELECT',
      'INSERT',
      ...(t.partitions ? ['ALTER'] : []),
    );
  for (const t of plan.analyze.tables) on(t, `ANALYZE TABLE ${plain(t)}`, 'SELECT', 'INSERT');
  if (plan.queryCache.flush) needs.push({ privilege: 'RELOAD', on: null, statement: 'FLUSH QUERY CACHE' });
  return needs;
}

export interface PrivilegeCheck {
  /** `CURRENT_USER()` (empty when nothing was needed). */
  user: string;
  /** The needs no grant covers. */
  missing: PrivilegeNeed[];
  /** Set when the grants could not be told completely (an active role). */
  note?: string;
}

/** Reads the current user's grants and returns the needs they do not cover. Read-only. */
export async function checkPrivileges(
  client: MysqlClient,
  needs: readonly PrivilegeNeed[],
  options: { signal?: AbortSignal } = {},
): Promise<PrivilegeCheck> {
  if (needs.length === 0) return { user: '', missing: [] };
  const who = await client.query('SELECT CURRENT_USER() AS u', [], options);
  const current = String(who[0]?.['u'] ?? '');
  const at = current.lastIndexOf('@');
  const grantee = `'${current.slice(0, at)}'@'${current.slice(at + 1)}'`;
  const global = new Set(
    (
      await client.query(
        'SELECT PRIVILEGE_TYPE AS p FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?',
        [grantee],
        options,
      )
    ).map((r) => String(r['p']).toUpperCase()),
  );
  const schemaRows = await client.query(
    'SELECT TABLE_SCHEMA AS db, PRIVILEGE_TYPE AS p FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?',
    [grantee],
    options,
  );
  const tableRows = await client.query(
    'SELECT TABLE_SCHEMA AS db, TABLE_NAME AS t, PRIVILEGE_TYPE AS p FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE = ?',
    [grantee],
    options,
  );
  const onSchema = (database: string, privilege: string): boolean =>
    schemaRows.some(
      (r) => String(r['p']).toUpperCase() === privilege && likePattern(String(r['db'])).test(database),
    );
  const onTable = (ref: TableRef, privilege: string): boolean =>
    tableRows.some(
      (r) =>
        String(r['p']).toUpperCase() === privilege &&
        String(r['db']) === ref.database &&
        String(r['t']).toLowerCase() === ref.table.toLowerCase(),
    );
  const missing = needs.filter((n) => {
    if (global.has(n.privilege)) return false;
    if (n.on === null) return true;
    if (onSchema(n.on.database, n.privilege)) return false;
    return n.on.table === undefined || !onTable(n.on, n.privilege);
  });
  if (missing.length === 0) return { user: current, missing };
  const role = await activeRole(client, options);
  if (role === null) return { user: current, missing };
  return {
    user: current,
    missing: [],
    note:
      `the role ${role} is active and its grants are not in information_schema's privilege views: not checked whether it ` +
      `grants ${[...new Set(missing.map((m) => m.privilege))].join(', ')} (SHOW GRANTS tells)`,
  };
}

/** A schema grant's name as a `LIKE` pattern (`%`, `_`, `\` escapes). */
function likePattern(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) re += escapeRe(pattern[++i]!);
    else if (c === '%') re += '.*';
    else if (c === '_') re += '.';
    else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`, 'i');
}
const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The active role (MariaDB `CURRENT_ROLE()` null, MySQL `NONE` when none), or null. */
async function activeRole(client: MysqlClient, options: { signal?: AbortSignal }): Promise<string | null> {
  try {
    const rows = await client.query('SELECT CURRENT_ROLE() AS r', [], options);
    const r: unknown = rows[0]?.['r'];
    if (r === null || r === undefined) return null;
    const s = Buffer.isBuffer(r) ? r.toString('utf8') : typeof r === 'string' ? r : JSON.stringify(r);
    return s === '' || s.toUpperCase() === 'NONE' ? null : s;
  } catch (err) {
    if (options.signal?.aborted) throw err;
    return null;
  }
}

/**
 * The refusal for what `missing` lacks: each privilege with the statements needing it, and the user.
 */
export function privilegeError(user: string, missing: readonly PrivilegeNeed[]): NotAllowedError {
  const by = new Map<string, Set<string>>();
  for (const m of missing) {
    const set = by.get(m.privilege) ?? new Set<string>();
    by.set(m.privilege, set);
    set.add(m.statement);
  }
  const lines = [...by].map(([p, s]) => `${p} (for ${[...s].join('; ')})`);
  return new NotAllowedError(
    `the MySQL user ${user} lacks privileges the database maintenance needs: ${lines.join(', ')}. ` +
      'Grant them, or set maintenance.db.mysql to a user that has them',
  );
}
