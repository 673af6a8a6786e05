/**
 * MySQL/MariaDB troubleshooting (runbook §3.3) over an open {@link MysqlClient}: long-running queries, the
 * slow log's top statements (from the `mysql.slow_log` table or the slow log file), indexes whose
 * cardinality is zero, tables in use, and a `KILL QUERY` that only ever kills the statement it was asked to.
 *
 * Statements may hold literals from the application (player names, tokens): outputs carry only the first
 * 100 characters and a sha256 digest of the full text, never the whole statement.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, open, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type { RowDataPacket } from 'mysql2';
import { GameopsError, NotAllowedError, sleep } from '../core/index.ts';
import type { MysqlClient, MysqlProcess, MysqlQueryOptions } from './mysql.ts';
import { isLoopbackHost } from './outbound.ts';

/** Characters of a statement shown in outputs. */
export const STATEMENT_PREVIEW = 100;
/** Users of server threads that are not client work. */
const SYSTEM_USERS = new Set(['system user', 'event_scheduler', 'system', 'unauthenticated user']);
/** Commands of threads that are not running a client statement. */
const NOT_QUERIES = new Set(['Sleep', 'Daemon', 'Binlog Dump', 'Binlog Dump GTID', 'Killed', 'Connect']);
/** The slow log file is read from its end, at most this much. */
const MAX_SLOW_LOG_BYTES = 64 * 1024 * 1024;
/** Rows of `mysql.slow_log` aggregated (the newest). */
const MAX_SLOW_LOG_ROWS = 50_000;

/** A statement as outputs show it: first 100 characters, whitespace collapsed. */
export function statementPreview(text: string): string {
  return text.replace(/\s+/g, ' ').trim().slice(0, STATEMENT_PREVIEW);
}

/** sha256 (hex) of the full statement text exactly as the server reports it. */
export function statementDigest(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** One statement running for a while. */
export interface LongQuery extends Omit<MysqlProcess, 'info'> {
  /** The first 100 characters. */
  statement: string;
  /** sha256 of the full statement: what `mysql.kill-query` compares before it kills. */
  statementDigest: string;
}

interface ProcessRow extends RowDataPacket {
  id: number;
  user: string | null;
  host: string | null;
  db: string | null;
  command: string | null;
  time: number | null;
  state: string | null;
  info: string | Buffer | null;
}

function text(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  return null;
}

function num(value: unknown): number {
  const n = Number(value);
  return Number.isFinite(n) ? n : 0;
}

function toLongQuery(row: ProcessRow): LongQuery {
  const info = text(row.info) ?? '';
  return {
    id: num(row.id),
    user: text(row.user) ?? '',
    host: text(row.host) ?? '',
    db: text(row.db),
    command: text(row.command) ?? '',
    time: num(row.time),
    state: text(row.state),
    statement: statementPreview(info),
    statementDigest: statementDigest(info),
  };
}

function isClientStatement(row: ProcessRow): boolean {
  const user = text(row.user) ?? '';
  const command = text(row.command) ?? '';
  return text(row.info) !== null && !SYSTEM_USERS.has(user) && !NOT_QUERIES.has(command);
}

const PROCESS_COLUMNS = `ID AS id, USER AS user, HOST AS host, DB AS db, COMMAND AS command, TIME AS time,
  STATE AS state, INFO AS info`;

/**
 * Client statements running for at least `minSeconds`, longest first: our own connection, idle sessions and
 * server threads (replication, event scheduler, InnoDB) are left out. Without the PROCESS privilege the
 * server shows only the connected user's own threads.
 */
export async function longQueries(
  client: MysqlClient,
  minSeconds: number,
  options: MysqlQueryOptions = {},
): Promise<LongQuery[]> {
  const rows = await client.query<ProcessRow>(
    `SELECT ${PROCESS_COLUMNS}
       FROM information_schema.PROCESSLIST
      WHERE ID <> CONNECTION_ID() AND TIME >= ?
      ORDER BY TIME DESC`,
    [minSeconds],
    options,
  );
  return rows.filter(isClientStatement).map(toLongQuery);
}

/** The statement thread `id` is running now, or undefined when it runs none (or does not exist). */
export async function processById(
  client: MysqlClient,
  id: number,
  options: MysqlQueryOptions = {},
): Promise<(LongQuery & { queryId: number | undefined; fullStatement: string }) | undefined> {
  const flavour = await flavourOf(client, options);
  const rows = await client.query<ProcessRow & { query_id?: number | null }>(
    `SELECT ${PROCESS_COLUMNS}${flavour === 'MariaDB' ? ', QUERY_ID AS query_id' : ''}
       FROM information_schema.PROCESSLIST
      WHERE ID = ?`,
    [id],
    options,
  );
  const row = rows[0];
  if (!row || !isClientStatement(row)) return undefined;
  const queryId = row.query_id === undefined || row.query_id === null ? undefined : num(row.query_id);
  return { ...toLongQuery(row), queryId, fullStatement: text(row.info) ?? '' };
}

const flavours = new WeakMap<MysqlClient, Promise<'MariaDB' | 'MySQL'>>();

function flavourOf(client: MysqlClient, options: MysqlQueryOptions): Promise<'MariaDB' | 'MySQL'> {
  let known = flavours.get(client);
  if (!known) {
    known = client.serverVersion(options).then((v) => v.flavour);
    flavours.set(client, known);
  }
  return known;
}

/** What the kill is allowed to kill: the statement seen when it was approved. */
export interface KillExpectation {
  id: number;
  user: string;
  /** sha256 of the full statement text ({@link statementDigest}). */
  statementDigest?: string | undefined;
  /** Or: the beginning of the statement (compared after collapsing whitespace). */
  statementPrefix?: string | undefined;
}

export type KillOutcome =
  | { outcome: 'killed'; id: number; user: string; statement: string; confirmed: boolean; method: string }
  | { outcome: 'not-running'; id: number }
  | {
      outcome: 'different-statement';
      id: number;
      /** What differs: `user`, `statement`. */
      differs: string[];
      /** What runs there now (first 100 characters). */
      statement: string;
      user: string;
    };

/** Whether `running` is the statement `expected` names. */
export function sameStatement(
  running: { user: string; fullStatement: string },
  expected: KillExpectation,
): string[] {
  const differs: string[] = [];
  if (running.user !== expected.user) differs.push('user');
  if (expected.statementDigest !== undefined) {
    if (statementDigest(running.fullStatement) !== expected.statementDigest.toLowerCase())
      differs.push('statement');
  } else if (expected.statementPrefix !== undefined) {
    const collapse = (s: string): string => s.replace(/\s+/g, ' ').trim();
    if (!collapse(running.fullStatement).startsWith(collapse(expected.statementPrefix)))
      differs.push('statement');
  } else {
    differs.push('statement');
  }
  return differs;
}

/**
 * `KILL QUERY` of thread `id`, only when it is still running the statement `expected` names (same user, same
 * full text or prefix): thread ids are recycled, and a thread moves on to its next statement. The id is
 * always a bound integer. On MariaDB the kill names the statement itself (`KILL QUERY ID <query_id>`), so
 * a statement that ended between the check and the kill is never replaced by its successor; on MySQL the
 * window is the round trip between the check and `KILL QUERY <id>`. Waits up to `confirmMs` for the statement
 * to be gone.
 */
export async function killQuery(
  client: MysqlClient,
  expected: KillExpectation,
  options: MysqlQueryOptions & { confirmMs?: number } = {},
): Promise<KillOutcome> {
  const running = await processById(client, expected.id, options);
  if (!running) return { outcome: 'not-running', id: expected.id };
  const differs = sameStatement(running, expected);
  if (differs.length > 0)
    return {
      outcome: 'different-statement',
      id: expected.id,
      differs,
      statement: running.statement,
      user: running.user,
    };
  let method: string;
  try {
    if (running.queryId !== undefined) {
      method = `KILL QUERY ID ${running.queryId}`;
      await client.query('KILL QUERY ID ?', [running.queryId], options);
    } else {
      method = `KILL QUERY ${expected.id}`;
      await client.query('KILL QUERY ?', [expected.id], options);
    }
  } catch (err) {
    throw killDenied(err, client.target, expected.id, running.user) ?? err;
  }
  const confirmed = await waitGone(client, expected, running.queryId, options);
  return {
    outcome: 'killed',
    id: expected.id,
    user: running.user,
    statement: running.statement,
    confirmed,
    method,
  };
}

/**
 * ER_KILL_DENIED_ERROR (1095, "You are not owner of thread") or MariaDB's ER_KILL_QUERY_DENIED_ERROR (4088,
 * "You are not owner of query", which mysql2 has no code name for and the connector's error keeps only as
 * text): the monitoring user may not kill other users' statements. A NotAllowedError naming the privilege
 * that allows it; undefined for other errors.
 */
export function killDenied(
  err: unknown,
  target: string,
  id: number,
  owner: string,
): NotAllowedError | undefined {
  const details = err instanceof GameopsError ? err.details : undefined;
  const code = details?.['driverCode'] ?? (err as { code?: unknown } | null)?.code;
  const errno = (err as { errno?: unknown } | null)?.errno;
  const message = err instanceof Error ? err.message : '';
  const denied =
    code === 'ER_KILL_DENIED_ERROR' ||
    code === 'ER_KILL_QUERY_DENIED_ERROR' ||
    errno === 1095 ||
    errno === 4088 ||
    /You are not owner of (thread|query)/.test(message);
  if (!denied) return undefined;
  return new NotAllowedError(
    `MySQL/MariaDB at ${target}: not allowed to kill query ${id} of user ${owner}: the gameops MySQL user ` +
      "needs CONNECTION ADMIN (MariaDB 10.5+, MySQL 8) or SUPER (older versions) to kill other users' queries " +
      '(e.g. GRANT CONNECTION ADMIN ON *.* TO gameops@...)',
    { cause: err, details: { target, id, driverCode: 'ER_KILL_DENIED_ERROR' } },
  );
}

/**
 * What lets a MariaDB user KILL other users' queries: CONNECTION ADMIN since 10.5.2, SUPER before (and for
 * a version it cannot read). scripts/stack.ts grants it to the example stack's `gameops` user.
 */
export function killPrivilegeFor(version: string): 'CONNECTION ADMIN' | 'SUPER' {
  const match = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!match) return 'SUPER';
  const [major, minor, patch] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const atLeast = major > 10 || (major === 10 && (minor > 5 || (minor === 5 && patch >= 2)));
  return atLeast ? 'CONNECTION ADMIN' : 'SUPER';
}

/** Whether the statement `expected` names is still running on thread `expected.id`. */
export async function stillRunning(
  client: MysqlClient,
  expected: KillExpectation,
  options: MysqlQueryOptions = {},
): Promise<boolean> {
  const running = await processById(client, expected.id, options);
  return running !== undefined && sameStatement(running, expected).length === 0;
}

async function waitGone(
  client: MysqlClient,
  expected: KillExpectation,
  queryId: number | undefined,
  options: MysqlQueryOptions & { confirmMs?: number },
): Promise<boolean> {
  const until = performance.now() + (options.confirmMs ?? 3000);
  for (;;) {
    const now = await processById(client, expected.id, options);
    const same =
      now !== undefined &&
      sameStatement(now, expected).length === 0 &&
      (queryId === undefined || now.queryId === queryId);
    if (!same) return true;
    if (performance.now() >= until || options.signal?.aborted) return false;
    await sleep(100, options.signal);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Slow log

/** One statement shape of the slow log, aggregated. */
export interface SlowStatement {
  /** The statement with literals replaced by `?`, first 200 characters. */
  statement: string;
  digest: string;
  count: number;
  totalSeconds: number;
  maxSeconds: number;
  avgSeconds: number;
  lockSeconds: number;
  rowsExamined: number;
  rowsSent: number;
  lastSeen: string | undefined;
}

export interface SlowLogTop {
  /** Where the entries came from. `none`: the slow log is off, or goes nowhere gameops can read. */
  source: 'table' | 'file' | 'none';
  /** Why `none`, or what was partial (a file read from its last 64 MiB). */
  note?: string;
  file?: string;
  logOutput: string;
  slowQueryLog: boolean;
  longQueryTime: number | undefined;
  /** Entries read. */
  entries: number;
  top: SlowStatement[];
}

interface SlowEntry {
  sql: string;
  queryTime: number;
  lockTime: number;
  rowsSent: number;
  rowsExamined: number;
  at: string | undefined;
}

/**
 * A statement's shape: string and number literals replaced by `?`, `IN (?, ?, …)` collapsed, whitespace
 * collapsed, so that the same query with other values counts as one.
 */
export function normaliseStatement(sql: string): string {
  return sql
    .replace(/'(?:[^'\\]|\\.|'')*'/g, '?')
    .replace(/"(?:[^"\\]|\\.|"")*"/g, '?')
    .replace(/\b0x[0-9a-f]+\b/gi, '?')
    .replace(/(?<![\w$`])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?\b/gi, '?')
    .replace(/\(\s*\?(?:\s*,\s*\?)+\s*\)/g, '(?+)')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/;$/, '');
}

function aggregate(entries: SlowEntry[], limit: number): SlowStatement[] {
  const groups = new Map<string, SlowStatement>();
  for (const e of entries) {
    const shape = normaliseStatement(e.sql);
    if (shape === '') continue;
    let g = groups.get(shape);
    if (!g) {
      g = {
        statement: shape.slice(0, 200),
        digest: statementDigest(shape),
        count: 0,
        totalSeconds: 0,
        maxSeconds: 0,
        avgSeconds: 0,
        lockSeconds: 0,
        rowsExamined: 0,
        rowsSent: 0,
        lastSeen: undefined,
      };
      groups.set(shape, g);
    }
    g.count += 1;
    g.totalSeconds += e.queryTime;
    g.maxSeconds = Math.max(g.maxSeconds, e.queryTime);
    g.lockSeconds += e.lockTime;
    g.rowsExamined += e.rowsExamined;
    g.rowsSent += e.rowsSent;
    if (e.at !== undefined && (g.lastSeen === undefined || e.at > g.lastSeen)) g.lastSeen = e.at;
  }
  const round = (n: number): number => Math.round(n * 1e6) / 1e6;
  return [...groups.values()]
    .map((g) => ({
      ...g,
      totalSeconds: round(g.totalSeconds),
      maxSeconds: round(g.maxSeconds),
      lockSeconds: round(g.lockSeconds),
      avgSeconds: round(g.totalSeconds / g.count),
    }))
    .sort((a, b) => b.totalSeconds - a.totalSeconds || b.count - a.count)
    .slice(0, limit);
}

/** `HH:MM:SS[.ffffff]` (a TIME value, possibly over 24 h) → seconds. */
export function timeToSeconds(value: unknown): number {
  if (typeof value === 'number') return value;
  const m = /^(-)?(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$/.exec((text(value) ?? '').trim());
  if (!m) return 0;
  const seconds = Number(m[2]) * 3600 + Number(m[3]) * 60 + Number(m[4]);
  return m[1] ? -seconds : seconds;
}

/**
 * The top `limit` statement shapes of the slow log by total time, from wherever the server writes it:
 * the `mysql.slow_log` table when `log_output` includes TABLE, otherwise the file `slow_query_log_file`
 * when gameops runs on the database's machine and may read it. The result says which.
 */
export async function slowLogTop(
  client: MysqlClient,
  options: MysqlQueryOptions & { limit?: number; local?: boolean } = {},
): Promise<SlowLogTop> {
  const limit = options.limit ?? 20;
  const vars = await client.globalVariables(
    ['log_output', 'slow_query_log', 'slow_query_log_file', 'long_query_time', 'datadir'],
    options,
  );
  const logOutput = (vars['log_output'] ?? '').toUpperCase();
  const slowQueryLog = ['ON', '1'].includes((vars['slow_query_log'] ?? '').toUpperCase());
  const longQueryTime = vars['long_query_time'] === undefined ? undefined : Number(vars['long_query_time']);
  const base = { logOutput, slowQueryLog, longQueryTime };
  const outputs = logOutput.split(',').map((o) => o.trim());
  const off = slowQueryLog ? '' : 'the slow query log is off (slow_query_log = OFF); ';
  if (outputs.includes('TABLE')) {
    const rows = await client.query(
      `SELECT start_time, query_time, lock_time, rows_sent, rows_examined, LEFT(sql_text, 4096) AS sql_text
         FROM mysql.slow_log
        ORDER BY start_time DESC
        LIMIT ${MAX_SLOW_LOG_ROWS}`,
      [],
      { ...options, timeoutMs: options.timeoutMs ?? 30_000 },
    );
    const entries = rows.map((r): SlowEntry => ({
      sql: text(r['sql_text']) ?? '',
      queryTime: timeToSeconds(r['query_time']),
      lockTime: timeToSeconds(r['lock_time']),
      rowsSent: num(r['rows_sent']),
      rowsExamined: num(r['rows_examined']),
      at: text(r['start_time']) ?? undefined,
    }));
    return {
      source: 'table',
      ...base,
      ...(off || entries.length >= MAX_SLOW_LOG_ROWS
        ? {
            note: `${off}${entries.length >= MAX_SLOW_LOG_ROWS ? `only the newest ${MAX_SLOW_LOG_ROWS} entries were read` : ''}`.replace(
              /; $/,
              '',
            ),
          }
        : {}),
      entries: entries.length,
      top: aggregate(entries, limit),
    };
  }
  if (outputs.includes('FILE')) {
    const name = vars['slow_query_log_file'] ?? '';
    const file = isAbsolute(name) ? name : join(vars['datadir'] ?? '', name);
    if (options.local === false)
      return {
        source: 'none',
        ...base,
        file,
        note: `${off}the slow log goes to the file ${file} on the database server (log_output = ${logOutput}), which gameops does not run on; read it there or set log_output to TABLE`,
        entries: 0,
        top: [],
      };
    try {
      await access(file, constants.R_OK);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      return {
        source: 'none',
        ...base,
        file,
        note: `${off}the slow log goes to the file ${file}, which is not readable here (${typeof code === 'string' ? code : 'unreadable'}); read it on the database server or set log_output to TABLE`,
        entries: 0,
        top: [],
      };
    }
    const { entries, truncated } = await readSlowLogFile(file);
    const note = `${off}${truncated ? `only the last ${MAX_SLOW_LOG_BYTES / 1024 / 1024} MiB of the file were read` : ''}`;
    return {
      source: 'file',
      ...base,
      file,
      ...(note ? { note: note.replace(/; $/, '') } : {}),
      entries: entries.length,
      top: aggregate(entries, limit),
    };
  }
  return {
    source: 'none',
    ...base,
    note: `${off}log_output is ${logOutput || 'empty'}: the slow log is written nowhere gameops can read`,
    entries: 0,
    top: [],
  };
}

/** Reads (the end of) a slow log file and parses it. */
export async function readSlowLogFile(path: string): Promise<{ entries: SlowEntry[]; truncated: boolean }> {
  const size = (await stat(path)).size;
  const start = Math.max(0, size - MAX_SLOW_LOG_BYTES);
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(size - start);
    let read = 0;
    while (read < buffer.length) {
      const { bytesRead } = await handle.read(buffer, read, buffer.length - read, start + read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    let content = buffer.subarray(0, read).toString('utf8');
    // Cut at the first whole entry when the read began in the middle of the file.
    if (start > 0) {
      const first = content.search(/^# (Time|User@Host):/m);
      content = first < 0 ? '' : content.slice(first);
    }
    return { entries: parseSlowLog(content), truncated: start > 0 };
  } finally {
    await handle.close();
  }
}

/**
 * Parses a slow log file (MariaDB's and MySQL's format): entries of `# Time:` / `# User@Host:` /
 * `# Query_time: … Lock_time: … Rows_sent: … Rows_examined: …` comment lines followed by the statement;
 * `SET timestamp=…;` and `use db;` lines and the server's start-up banner are skipped. Pure.
 */
export function parseSlowLog(content: string): SlowEntry[] {
  const entries: SlowEntry[] = [];
  let current: (Omit<SlowEntry, 'sql'> & { lines: string[] }) | undefined;
  let at: string | undefined;
  const finish = (): void => {
    if (current && current.lines.length > 0) {
      const { lines, ...entry } = current;
      entries.push({ ...entry, sql: lines.join('\n') });
    }
    current = undefined;
  };
  for (const line of content.split('\n')) {
    if (line.startsWith('# Time:')) {
      finish();
      at = line.slice('# Time:'.length).trim();
      continue;
    }
    if (line.startsWith('# User@Host:')) {
      finish();
      continue;
    }
    if (line.startsWith('# Query_time:')) {
      finish();
      const field = (name: string): number => {
        const m = new RegExp(`${name}:\\s*([0-9.]+)`).exec(line);
        return m ? Number(m[1]) : 0;
      };
      current = {
        queryTime: field('Query_time'),
        lockTime: field('Lock_time'),
        rowsSent: field('Rows_sent'),
        rowsExamined: field('Rows_examined'),
        at,
        lines: [],
      };
      continue;
    }
    if (line.startsWith('#')) continue;
    if (!current) continue; // the start-up banner, or a statement whose header was cut off
    if (/^SET timestamp=\d+;$/i.test(line.trim()) || /^use [^;]+;$/i.test(line.trim())) continue;
    if (/^\S+, Version: .* started with:$/.test(line)) {
      finish();
      continue;
    }
    if (line.trim() !== '') current.lines.push(line);
  }
  finish();
  return entries;
}

/** Whether a MySQL config points at this machine (a socket, or a loopback address or name). */
export function isLocalDatabase(config: { host: string; socketPath?: string | undefined }): boolean {
  return config.socketPath !== undefined || isLoopbackHost(config.host);
}

// ---------------------------------------------------------------------------------------------------------
// Indexes and tables

export interface ZeroCardinalityIndex {
  table: string;
  index: string;
  columns: string[];
  cardinality: number | null;
  nonUnique: boolean;
  /** What to do about it. */
  hint: string;
}

/** Backtick-quotes an identifier (a doubled backtick inside). */
export function quoteIdentifier(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}

/**
 * Indexes of `schema` whose cardinality is 0 or unknown (NULL) although the table has rows: their
 * statistics are stale or missing, so the optimizer may ignore them. Empty tables are left out (checked
 * with a one-row read, not the TABLE_ROWS estimate, which is itself a statistic).
 */
export async function zeroCardinalityIndexes(
  client: MysqlClient,
  schema: string,
  options: MysqlQueryOptions = {},
): Promise<ZeroCardinalityIndex[]> {
  const rows = await client.query(
    `SELECT s.TABLE_NAME AS table_name, s.INDEX_NAME AS index_name, s.COLUMN_NAME AS column_name,
            s.SEQ_IN_INDEX AS seq, s.CARDINALITY AS cardinality, s.NON_UNIQUE AS non_unique
       FROM information_schema.STATISTICS s
       JOIN information_schema.TABLES t
         ON t.TABLE_SCHEMA = s.TABLE_SCHEMA AND t.TABLE_NAME = s.TABLE_NAME
      WHERE s.TABLE_SCHEMA = ? AND t.TABLE_TYPE = 'BASE TABLE'
      ORDER BY s.TABLE_NAME, s.INDEX_NAME, s.SEQ_IN_INDEX`,
    [schema],
    { ...options, timeoutMs: options.timeoutMs ?? 30_000 },
  );
  const indexes = new Map<string, ZeroCardinalityIndex & { zero: boolean }>();
  for (const r of rows) {
    const table = text(r['table_name']) ?? '';
    const index = text(r['index_name']) ?? '';
    const key = `${table}\u0000${index}`;
    const cardinality =
      r['cardinality'] === null || r['cardinality'] === undefined ? null : num(r['cardinality']);
    let entry = indexes.get(key);
    if (!entry) {
      entry = {
        table,
        index,
        columns: [],
        cardinality,
        nonUnique: num(r['non_unique']) === 1,
        hint: `ANALYZE TABLE ${quoteIdentifier(schema)}.${quoteIdentifier(table)}`,
        zero: false,
      };
      indexes.set(key, entry);
    }
    entry.columns.push(text(r['column_name']) ?? '');
    // The first column's cardinality is the index's selectivity; a zero or NULL anywhere is stale too.
    if (cardinality === null || cardinality === 0) entry.zero = true;
    if (num(r['seq']) === 1) entry.cardinality = cardinality;
  }
  const candidates = [...indexes.values()].filter((i) => i.zero);
  const tables = [...new Set(candidates.map((i) => i.table))];
  const nonEmpty = new Set<string>();
  for (const table of tables) {
    const found = await client.query(
      `SELECT 1 AS one FROM ${quoteIdentifier(schema)}.${quoteIdentifier(table)} LIMIT 1`,
      [],
      options,
    );
    if (found.length > 0) nonEmpty.add(table);
  }
  return candidates.filter((i) => nonEmpty.has(i.table)).map(({ zero: _zero, ...i }) => i);
}

export interface OpenTableInUse {
  database: string;
  table: string;
  inUse: number;
  nameLocked: number;
}

/** `SHOW OPEN TABLES WHERE In_use > 0`: tables locked or used by a statement right now. */
export async function openTablesInUse(
  client: MysqlClient,
  options: MysqlQueryOptions = {},
): Promise<OpenTableInUse[]> {
  const rows = await client.query('SHOW OPEN TABLES WHERE In_use > 0', [], options);
  return rows.map((r) => ({
    database: text(r['Database']) ?? '',
    table: text(r['Table']) ?? '',
    inUse: num(r['In_use']),
    nameLocked: num(r['Name_locked']),
  }));
}
