/**
 * The MySQL/MariaDB component of a backup set: a consistent logical dump (`mariadb-dump` or `mysqldump`,
 * single transaction, routines, triggers, events) split into objects as it streams (mysql-dump.ts), with
 * per-table row counts and checksums taken in the same snapshot; restore with parallel loaders; compare and
 * drill against a scratch copy.
 *
 * Consistency: connection A takes `FLUSH TABLES WITH READ LOCK` (bounded by `lock_wait_timeout`), connection
 * B starts a consistent snapshot and reads the binlog position, then the dump starts its own snapshot; A's
 * lock is released as soon as the dump's first section appears (the dump starts its transaction before it
 * writes one). No commit can happen in between, so B's counts and checksums describe exactly the dumped rows.
 *
 * Credentials reach the tools through a 0600 defaults file in the context's temp dir, passed as the first
 * argument (`--defaults-file=`, which also keeps the system's and the user's option files out: a
 * `~/.my.cnf` naming another host, or `skip-comments` there, must not change what is dumped or loaded);
 * never on argv or in the environment.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { MysqlConfig } from '../../config/index.ts';
import { connectMysql, mysqlTarget, type MysqlClient } from '../../connectors/mysql.ts';
import {
  GameopsError,
  InputError,
  mapLimit,
  maskSecrets,
  UnavailableError,
  type Secret,
} from '../../core/index.ts';
import type {
  ComponentBackup,
  ComponentDrill,
  ComponentReadContext,
  ComponentWriteContext,
  DrillCheck,
  ManifestComponent,
} from '../types.ts';
import { findExecutable, SYSTEM_BIN_DIRS } from './executables.ts';
import {
  clientOptionFile,
  DumpSplitter,
  MAX_LINE_BYTES,
  parseObjectName,
  PREAMBLE_OBJECT,
  renameDatabases,
  useStatement,
  type DumpObjectName,
  type SplitSummary,
} from './mysql-dump.ts';

/** Relative tolerance for FLOAT (single precision) column sums: a dump keeps about 6 significant digits. */
export const FLOAT_TOLERANCE = 1e-5;

export interface MysqlBackupSource {
  /** The server and the backup user (needs SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD, PROCESS). */
  mysql: MysqlConfig;
  databases: string[];
  /** A table's data is split into objects of about this many dump bytes. */
  chunkBytes: number;
  /** How long `FLUSH TABLES WITH READ LOCK` may wait (`backups.mysql.lockWaitTimeout`). */
  lockWaitTimeoutMs: number;
  /** The dump is stopped when it writes nothing for this long. @default 10 minutes */
  stallTimeoutMs?: number | undefined;
}

export interface MysqlRestoreTarget {
  mysql: MysqlConfig;
  /** Source database → target database; every database of the backup must be mapped. */
  databases: Record<string, string>;
  /** Loader processes running at once. */
  parallel: number;
  /** Create events DISABLED (drills: a scratch copy must not run the game's scheduled jobs). */
  disableEvents?: boolean;
}

export interface MysqlFloatSum {
  sum: number;
  /** Sum of absolute values: the tolerance is relative to it. */
  absSum: number;
}

export interface MysqlTableVerification {
  rows: number;
  /**
   * Sum over rows of a 64-bit hash of the row's columns (FLOAT columns left out), decimal; the hash is
   * the verification's {@link RowHash}.
   */
  checksum: string;
  floatSums: Record<string, MysqlFloatSum>;
  /**
   * Checksum of the FLOAT columns' text form as the server prints it (the digits the dump writes, which a
   * restored copy prints back identically); absent when the table has no FLOAT column.
   */
  floatChecksum?: string | undefined;
  columnsLeftOut: string[];
}

export interface MysqlDatabaseVerification {
  tables: Record<string, MysqlTableVerification>;
  routines: number;
  triggers: number;
  events: number;
  views: number;
}

/**
 * How a row is hashed for the table checksums:
 * - `md5`: the first 64 bits of MD5 of the row's text (any MySQL or MariaDB);
 * - `crc32+crc32c`: CRC32 and CRC32C (two polynomials, so 64 independent bits) of the row's text, about
 *   half the server CPU of `md5` (MariaDB 10.8 and later, which have CRC32C).
 */
export type RowHash = 'md5' | 'crc32+crc32c';

/** `ComponentBackup.verification` of the MySQL component. */
export interface MysqlVerification {
  format: 'gameops-mysql/1';
  /** Absent in backups made before it was recorded: `md5`. */
  rowHash?: RowHash | undefined;
  databases: Record<string, MysqlDatabaseVerification>;
  objects: { total: number; data: number; dumpBytes: number };
}

const CHECKSUM_NOTE =
  'Row checksums leave FLOAT (single precision) columns out: a logical dump keeps about 6 significant ' +
  `digits. Those columns are compared by SUM with a relative tolerance of ${FLOAT_TOLERANCE}, and by a ` +
  'checksum of their printed form (the digits the dump keeps, which a restored copy prints identically); DOUBLE and ' +
  'DECIMAL round-trip exactly and are in the checksums.';

const DUMP_FLAGS = [
  '--single-transaction',
  '--routines',
  '--triggers',
  '--events',
  '--hex-blob',
  '--quick',
  '--skip-dump-date',
  '--skip-lock-tables',
  '--skip-add-locks',
  '--net-buffer-length=1048576',
];

// ---------------------------------------------------------------------------------------------------
// Tools

export interface MysqlTool {
  name: string;
  path: string;
  version: string;
  flavour: 'mariadb' | 'mysql';
}

/**
 * The first of `names` found on PATH or in the system directories, with its `--version` line.
 * @throws UnavailableError naming the tools looked for.
 */
export async function findMysqlTool(names: readonly string[]): Promise<MysqlTool> {
  for (const name of names) {
    const file = await findExecutable(name);
    if (!file) continue;
    const { code, stdout, stderr } = await run(file, ['--version']);
    if (code !== 0)
      throw new UnavailableError(`${file} --version failed: ${stderr.trim() || `exit ${code}`}`);
    const version = stdout.trim();
    const flavour = name.startsWith('mariadb') || /mariadb/i.test(version) ? 'mariadb' : 'mysql';
    return { name, path: file, version, flavour };
  }
  throw new UnavailableError(
    `none of ${names.join(', ')} is installed (looked on PATH and in ${SYSTEM_BIN_DIRS.join(', ')}); install the MariaDB or MySQL client (Debian: mariadb-client)`,
  );
}

async function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Writes a 0600 defaults file for the tools into `dir`; returns its path. */
export async function writeDefaultsFile(dir: string, config: MysqlConfig, tool: MysqlTool): Promise<string> {
  const file = path.join(dir, `mysql-${randomBytes(6).toString('hex')}.cnf`);
  const text = clientOptionFile({
    host: config.host,
    port: config.port,
    socketPath: config.socketPath,
    user: config.user,
    password: config.password?.reveal(),
    tls: config.tls,
    flavour: tool.flavour,
  });
  await fsp.writeFile(file, text, { mode: 0o600, flag: 'wx' });
  await fsp.chmod(file, 0o600);
  return file;
}

/** The dump's argv (after the executable): the defaults file first, never a password. */
export function dumpArgs(
  defaultsFile: string,
  databases: readonly string[],
  flavour: MysqlTool['flavour'] = 'mariadb',
): string[] {
  // MySQL's mysqldump would otherwise write `SET @@GLOBAL.GTID_PURGED` and `SQL_LOG_BIN = 0` into the
  // header, which every parallel loader replays.
  const mysqlOnly = flavour === 'mysql' ? ['--set-gtid-purged=OFF'] : [];
  return [`--defaults-file=${defaultsFile}`, ...DUMP_FLAGS, ...mysqlOnly, '--databases', ...databases];
}

/** The loader's argv (after the executable): the defaults file first, never a password. */
export function loadArgs(defaultsFile: string): string[] {
  return [
    `--defaults-file=${defaultsFile}`,
    '--binary-mode',
    '--batch',
    '--skip-auto-rehash',
    '--max-allowed-packet=1073741824',
  ];
}

/**
 * What a loader's stderr says without the rows: on a failing statement the client echoes the statement
 * (player data); only its `ERROR …` lines and its own `mariadb:`/`mysql:` messages are kept, each cut to
 * 300 characters.
 */
export function loaderMessage(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    // `ERROR 1153 (08S01) at line 3: …`, `ERROR: …`, and the client's own `ERROR at line 7: …`.
    .filter((l) => /^(?:ERROR(?: \d+| at line \d+)?[ :(]|mariadb: |mysql: )/.test(l))
    .map((l) => (l.length > 300 ? `${l.slice(0, 300)}…` : l));
  if (lines.length > 0) return lines.slice(0, 5).join('; ');
  const withheld = stderr.split('\n').filter((l) => l.trim() !== '').length;
  return withheld > 0 ? `${withheld} other line(s) of output, not shown (they may hold row data)` : '';
}

/** Bounded stderr: the first 16 KiB, password masked. */
function stderrCollector(child: ChildProcess, secrets: (Secret | undefined)[]): () => string {
  let text = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    if (text.length < 16 * 1024) text += d;
  });
  return () => maskSecrets(text.trim().slice(0, 16 * 1024), secrets);
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
}

function killHard(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }, 2000);
  timer.unref();
  child.once('close', () => clearTimeout(timer));
}

/** A config for our own connections: `information_schema` always exists (the game's database may not). */
function metaConfig(config: MysqlConfig): MysqlConfig {
  return { ...config, database: 'information_schema' };
}

function quoteIdent(name: string): string {
  return `\`${name.replaceAll('`', '``')}\``;
}

const LONG = 7 * 24 * 3600 * 1000;
/** The dump is stopped when it writes nothing for this long (a stopped or unreachable server). */
const DUMP_STALL_MS = 10 * 60 * 1000;

// ---------------------------------------------------------------------------------------------------
// Checksums

const HASHED_TYPES = new Set([
  'tinyblob',
  'blob',
  'mediumblob',
  'longblob',
  'tinytext',
  'text',
  'mediumtext',
  'longtext',
  'json',
  'geometry',
  'point',
  'linestring',
  'polygon',
  'multipoint',
  'multilinestring',
  'multipolygon',
  'geometrycollection',
]);

interface Column {
  name: string;
  type: string;
}

async function tableColumns(
  client: MysqlClient,
  db: string,
  signal: AbortSignal,
): Promise<Map<string, Column[]>> {
  const rows = await client.query(
    `SELECT TABLE_NAME AS t, COLUMN_NAME AS c, LOWER(DATA_TYPE) AS type
       FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, ORDINAL_POSITION`,
    [db],
    { signal, timeoutMs: LONG },
  );
  const out = new Map<string, Column[]>();
  for (const row of rows) {
    const t = String(row['t']);
    const list = out.get(t) ?? [];
    list.push({ name: String(row['c']), type: String(row['type']) });
    out.set(t, list);
  }
  return out;
}

async function baseTables(client: MysqlClient, db: string, signal: AbortSignal): Promise<string[]> {
  const rows = await client.query(
    `SELECT TABLE_NAME AS t FROM information_schema.TABLES
      WHERE TABLE_SCHEMA = ? AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY TABLE_NAME`,
    [db],
    { signal, timeoutMs: LONG },
  );
  return rows.map((r) => String(r['t']));
}

/**
 * Types whose text never is `N` and never holds `|`: written without a length prefix (`N` for NULL),
 * which spares the server a second conversion to text per column.
 */
const PLAIN_TYPES = new Set([
  'tinyint',
  'smallint',
  'mediumint',
  'int',
  'integer',
  'bigint',
  'decimal',
  'numeric',
  'double',
  'real',
  'date',
  'datetime',
  'timestamp',
  'time',
  'year',
]);

/**
 * The one statement giving a table's rows, checksum and FLOAT sums; identical on source and copy for the
 * same `rowHash`. Order-independent (a sum over rows, so duplicate rows count); NULL and `''` differ.
 */
export function checksumQuery(
  db: string,
  table: string,
  columns: readonly Column[],
  rowHash: RowHash = 'md5',
): { sql: string; floats: string[] } {
  const floats = columns.filter((c) => c.type === 'float').map((c) => c.name);
  const parts: string[] = [];
  for (const c of columns) {
    if (c.type === 'float') continue;
    const q = quoteIdent(c.name);
    if (rowHash === 'md5') {
      if (HASHED_TYPES.has(c.type)) parts.push(`IFNULL(MD5(${q}),'N')`);
      else parts.push(`IFNULL(LENGTH(${q}),'N')`, `CAST(${q} AS BINARY)`);
    } else if (HASHED_TYPES.has(c.type)) {
      // Large values are hashed on their own (a row's text must stay below max_allowed_packet).
      parts.push(`IFNULL(CONCAT(LENGTH(${q}),',',CRC32(${q}),',',CRC32C(${q})),'N')`);
    } else if (PLAIN_TYPES.has(c.type)) parts.push(`IFNULL(${q},'N')`);
    else parts.push(`IFNULL(LENGTH(${q}),'N')`, `CAST(${q} AS BINARY)`);
  }
  const row = parts.length > 0 ? `CONCAT_WS('|', ${parts.join(', ')})` : `'-'`;
  // crc32+crc32c: the row's text is built once (a session variable, assigned by the left operand, which
  // MariaDB evaluates first) and hashed twice.
  const sumOfHashes = (expr: string): string =>
    rowHash === 'md5'
      ? `CAST(IFNULL(SUM(CAST(CONV(SUBSTRING(MD5(${expr}), 1, 16), 16, 10) AS UNSIGNED)), 0) AS CHAR)`
      : `CAST(IFNULL(SUM((CRC32(@gameops_row := ${expr}) << 32) | CRC32C(@gameops_row)), 0) AS CHAR)`;
  const floatText = `CONCAT_WS('|', ${floats.map((f) => `IFNULL(CAST(${quoteIdent(f)} AS CHAR),'N')`).join(', ')})`;
  const select = [
    'COUNT(*) AS n',
    `${sumOfHashes(row)} AS h`,
    ...(floats.length > 0 ? [`${sumOfHashes(floatText)} AS fh`] : []),
    ...floats.flatMap((f, i) => [`SUM(${quoteIdent(f)}) AS fs${i}`, `SUM(ABS(${quoteIdent(f)})) AS fa${i}`]),
  ];
  return { sql: `SELECT ${select.join(', ')} FROM ${quoteIdent(db)}.${quoteIdent(table)}`, floats };
}

async function verifyTable(
  client: MysqlClient,
  db: string,
  table: string,
  columns: readonly Column[],
  rowHash: RowHash,
  signal: AbortSignal,
): Promise<MysqlTableVerification> {
  const { sql, floats } = checksumQuery(db, table, columns, rowHash);
  let rows: Record<string, unknown>[];
  try {
    rows = await client.query(sql, [], { signal, timeoutMs: LONG });
  } catch (err) {
    if (signal.aborted || !(err instanceof GameopsError)) throw err;
    throw new UnavailableError(
      `the row count and checksum of ${db}.${table} failed: ${err.message}` +
        (/definition has changed/i.test(err.message)
          ? ' (the table was truncated or altered during the backup; retry the backup)'
          : ''),
      { cause: err, details: { ...err.details, table: `${db}.${table}` } },
    );
  }
  const row: Record<string, unknown> = rows[0] ?? {};
  const floatSums: Record<string, MysqlFloatSum> = {};
  floats.forEach((f, i) => {
    floatSums[f] = { sum: Number(row[`fs${i}`] ?? 0), absSum: Number(row[`fa${i}`] ?? 0) };
  });
  return {
    rows: Number(row['n'] ?? 0),
    checksum: typeof row['h'] === 'string' ? row['h'] : String(Number(row['h'] ?? 0)),
    floatSums,
    columnsLeftOut: floats,
    ...(floats.length > 0 ? { floatChecksum: typeof row['fh'] === 'string' ? row['fh'] : '0' } : {}),
  };
}

async function objectCounts(
  client: MysqlClient,
  db: string,
  signal: AbortSignal,
): Promise<Omit<MysqlDatabaseVerification, 'tables'>> {
  const rows = await client.query(
    `SELECT
       (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?) AS routines,
       (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?) AS triggers,
       (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?) AS events,
       (SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?) AS views`,
    [db, db, db, db],
    { signal, timeoutMs: LONG },
  );
  const row: Record<string, unknown> = rows[0] ?? {};
  return {
    routines: Number(row['routines'] ?? 0),
    triggers: Number(row['triggers'] ?? 0),
    events: Number(row['events'] ?? 0),
    views: Number(row['views'] ?? 0),
  };
}

/** The cheaper row hash when the server has CRC32C (MariaDB 10.8+), else MD5. */
async function bestRowHash(client: MysqlClient, signal: AbortSignal): Promise<RowHash> {
  try {
    await client.query("SELECT CRC32C('') AS c", [], { signal });
    return 'crc32+crc32c';
  } catch (err) {
    if (signal.aborted) throw err;
    return 'md5';
  }
}

async function verifyDatabase(
  client: MysqlClient,
  db: string,
  rowHash: RowHash,
  signal: AbortSignal,
  onTable?: (table: string, v: MysqlTableVerification) => void,
): Promise<MysqlDatabaseVerification> {
  const columns = await tableColumns(client, db, signal);
  const tables: Record<string, MysqlTableVerification> = {};
  for (const table of await baseTables(client, db, signal)) {
    tables[table] = await verifyTable(client, db, table, columns.get(table) ?? [], rowHash, signal);
    onTable?.(table, tables[table]);
  }
  return { tables, ...(await objectCounts(client, db, signal)) };
}

// ---------------------------------------------------------------------------------------------------
// Backup

function isLockTimeout(err: unknown): boolean {
  if (!(err instanceof GameopsError)) return false;
  return err.details?.['driverCode'] === 'ER_LOCK_WAIT_TIMEOUT' || /did not answer within/.test(err.message);
}

async function binlogPosition(
  client: MysqlClient,
  signal: AbortSignal,
): Promise<{ file: string | null; position: number | null; note?: string }> {
  for (const sql of ['SHOW MASTER STATUS', 'SHOW BINARY LOG STATUS']) {
    try {
      const rows = await client.query(sql, [], { signal });
      const row = rows[0];
      if (!row) return { file: null, position: null };
      return { file: String(row['File']), position: Number(row['Position']) };
    } catch (err) {
      if (signal.aborted) throw err;
      if (sql === 'SHOW BINARY LOG STATUS')
        return {
          file: null,
          position: null,
          note: `the binlog position could not be read (${err instanceof Error ? err.message : String(err)}); grant BINLOG MONITOR or REPLICATION CLIENT to record it`,
        };
    }
  }
  return { file: null, position: null };
}

async function gtidPosition(client: MysqlClient, signal: AbortSignal): Promise<string | null> {
  for (const sql of ['SELECT @@GLOBAL.gtid_current_pos AS g', 'SELECT @@GLOBAL.gtid_executed AS g']) {
    try {
      const rows = await client.query(sql, [], { signal });
      const g: unknown = rows[0]?.['g'];
      if (typeof g === 'string' && g !== '') return g;
      if (g !== undefined) return null;
    } catch (err) {
      if (signal.aborted) throw err;
    }
  }
  return null;
}

/**
 * Dumps `source.databases` through `ctx.open` (objects named as in mysql-dump.ts), with per-table row
 * counts, checksums and FLOAT sums taken in the same snapshot, and the binlog position / GTID at it.
 * @throws UnavailableError when the read lock is not granted within `lockWaitTimeoutMs` (naming
 *   `backups.mysql.lockWaitTimeout`), when the server goes away or the dump fails (naming the server and
 *   the dump's stderr, password masked); every object still open is aborted first. InputError for bad
 *   credentials or an unknown database.
 */
export async function backupMysql(
  source: MysqlBackupSource,
  ctx: ComponentWriteContext,
): Promise<ComponentBackup> {
  const { mysql, databases } = source;
  if (databases.length === 0) throw new InputError('no database selected for the MySQL backup');
  const target = `MySQL/MariaDB at ${mysqlTarget(mysql)}`;
  const signal = ctx.signal;
  const tool = await findMysqlTool(['mariadb-dump', 'mysqldump']);
  const defaultsFile = await writeDefaultsFile(ctx.tempDir, mysql, tool);
  const notes: string[] = [CHECKSUM_NOTE];
  let lock: MysqlClient | undefined;
  let snap: MysqlClient | undefined;
  let child: ChildProcess | undefined;
  let splitter: DumpSplitter | undefined;
  try {
    lock = await connectMysql(metaConfig(mysql), { signal });
    snap = await connectMysql(metaConfig(mysql), { signal });
    const waitS = Math.max(1, Math.ceil(source.lockWaitTimeoutMs / 1000));
    await lock.query(`SET SESSION lock_wait_timeout = ${waitS}`, [], { signal });
    ctx.progress.phase('lock');
    let lockedAt = 0;
    let lockHeldMs = 0;
    try {
      await lock.query('FLUSH TABLES WITH READ LOCK', [], { signal, timeoutMs: waitS * 1000 + 5000 });
      lockedAt = ctx.clock.now().getTime();
    } catch (err) {
      if (isLockTimeout(err))
        throw new UnavailableError(
          `${target}: the global read lock (FLUSH TABLES WITH READ LOCK) that aligns the backup's snapshots ` +
            `was not granted within ${waitS} s: a long query, LOCK TABLES or DDL holds a table. The backup did ` +
            'not start; retry later or raise backups.mysql.lockWaitTimeout.',
          {
            cause: err,
            details: { target: mysqlTarget(mysql), lockWaitTimeoutMs: source.lockWaitTimeoutMs },
          },
        );
      throw err;
    }
    await snap.query("SET SESSION time_zone = '+00:00'", [], { signal });
    await snap.query('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ', [], { signal });
    await snap.query('START TRANSACTION WITH CONSISTENT SNAPSHOT', [], { signal });
    const binlog = await binlogPosition(snap, signal);
    if (binlog.note) notes.push(binlog.note);
    const gtid = await gtidPosition(snap, signal);
    const serverVersion = (await snap.serverVersion({ signal })).version;
    const rowHash = await bestRowHash(snap, signal);
    // A statement larger than the server's max_allowed_packet could be dumped but never loaded back.
    const packetRows = await snap.query('SELECT @@GLOBAL.max_allowed_packet AS p', [], { signal });
    const maxPacket = Number(packetRows[0]?.['p'] ?? MAX_LINE_BYTES);
    const maxLineBytes = Math.min(
      MAX_LINE_BYTES,
      Number.isFinite(maxPacket) && maxPacket > 0 ? maxPacket : MAX_LINE_BYTES,
    );

    let lockHeld = true;
    const heldLock = lock;
    let releasing: Promise<void> = Promise.resolve();
    const release = (): void => {
      if (!lockHeld) return;
      lockHeld = false;
      lockHeldMs = ctx.clock.now().getTime() - lockedAt;
      releasing = heldLock
        .query('UNLOCK TABLES', [], { timeoutMs: 10_000 })
        .then(
          () => undefined,
          () => undefined,
        )
        .finally(() => heldLock.close());
    };

    ctx.progress.phase('dump');
    child = spawn(tool.path, dumpArgs(defaultsFile, databases, tool.flavour), {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const dump = child;
    const stderr = stderrCollector(dump, [mysql.password]);
    const exit = exited(dump);
    exit.catch(() => undefined);
    const onAbort = (): void => killHard(dump);
    signal.addEventListener('abort', onAbort, { once: true });
    // The game's writes wait while the lock is held: if the dump has not started its snapshot within
    // lockWaitTimeout (normally milliseconds), stop rather than stall the game or release too early.
    let stalled = false;
    const watchdog = setTimeout(() => {
      if (!lockHeld) return;
      stalled = true;
      killHard(dump);
    }, source.lockWaitTimeoutMs);
    watchdog.unref();
    // A server that stops answering (stopped, partitioned) would otherwise hang the backup, and its lease,
    // forever: no dump output for stallTimeoutMs ends it.
    const stallMs = source.stallTimeoutMs ?? DUMP_STALL_MS;
    let lastOutput = ctx.clock.now().getTime();
    let silent = false;
    const stallTimer = setInterval(
      () => {
        if (ctx.clock.now().getTime() - lastOutput < stallMs) return;
        silent = true;
        killHard(dump);
      },
      Math.max(100, Math.min(10_000, stallMs / 4)),
    );
    stallTimer.unref();

    splitter = new DumpSplitter({
      open: (name) => ctx.open(name),
      chunkBytes: source.chunkBytes,
      maxLineBytes,
      onFirstSection: release,
    });
    const split = splitter;

    // Checksums on the snapshot connection, concurrently with the dump (the lock does not wait for them).
    const snapshot = snap;
    const verifying = (async () => {
      const out: Record<string, MysqlDatabaseVerification> = {};
      for (const db of databases) out[db] = await verifyDatabase(snapshot, db, rowHash, signal);
      return out;
    })();
    verifying.catch(() => undefined);

    let summary: SplitSummary;
    try {
      for await (const chunk of dump.stdout as Readable) {
        lastOutput = ctx.clock.now().getTime();
        ctx.progress.add((chunk as Buffer).length);
        await split.push(chunk as Buffer);
      }
      const { code, signal: killedBy } = await exit;
      clearInterval(stallTimer);
      release();
      if (signal.aborted) throw signal.reason;
      if (silent)
        throw new UnavailableError(
          `${target}: ${tool.name} wrote nothing for ${Math.round(stallMs / 1000)} s (the server stopped answering?); the dump was stopped and the backup failed`,
          { details: { target: mysqlTarget(mysql), tool: tool.name } },
        );
      if (stalled)
        throw new UnavailableError(
          `${target}: ${tool.name} did not start its snapshot within ${source.lockWaitTimeoutMs} ms while the ` +
            'global read lock was held; the lock was released and the backup stopped (backups.mysql.lockWaitTimeout)',
          { details: { target: mysqlTarget(mysql), tool: tool.name } },
        );
      if (code !== 0)
        throw new UnavailableError(
          `${target}: ${tool.name} failed (${killedBy ? `killed by ${killedBy}` : `exit ${code}`}): ${stderr() || 'no message'}`,
          { details: { target: mysqlTarget(mysql), tool: tool.name } },
        );
      summary = await split.finish();
    } catch (err) {
      clearTimeout(watchdog);
      clearInterval(stallTimer);
      signal.removeEventListener('abort', onAbort);
      killHard(dump);
      release();
      await split.abort(err instanceof Error ? err : new Error(String(err)));
      if (signal.aborted && err === signal.reason) throw err;
      if (err instanceof UnavailableError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      const more = stderr();
      throw new UnavailableError(
        maskSecrets(`${target}: the dump failed: ${message}${more ? ` (${tool.name}: ${more})` : ''}`, [
          mysql.password,
        ]),
        { cause: err, details: { target: mysqlTarget(mysql), tool: tool.name } },
      );
    }
    clearTimeout(watchdog);
    signal.removeEventListener('abort', onAbort);
    await releasing;

    let verified: Record<string, MysqlDatabaseVerification>;
    try {
      verified = await verifying;
    } catch (err) {
      if (signal.aborted && err === signal.reason) throw err;
      throw new UnavailableError(
        `${target}: the dump completed but the row counts and checksums failed: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err, details: { target: mysqlTarget(mysql) } },
      );
    }
    await snap.query('COMMIT', [], { signal }).catch(() => undefined);

    // A dump without its section headers (an option file's skip-comments or compact) splits into nothing
    // restorable: refuse it rather than record a set that restores no table.
    const dumpedDbs = new Set(summary.databases);
    const missing = databases.filter((db) => !dumpedDbs.has(db));
    const dumpedTables = new Set(summary.tables.map((t) => `${t.db}\0${t.table}`));
    const unsplit = Object.entries(verified).flatMap(([db, v]) =>
      Object.keys(v.tables)
        .filter((t) => !dumpedTables.has(`${db}\0${t}`))
        .map((t) => `${db}.${t}`),
    );
    if (missing.length > 0 || unsplit.length > 0)
      throw new UnavailableError(
        `${target}: the dump of ${tool.name} has no section for ${[...missing, ...unsplit].slice(0, 10).join(', ')} ` +
          '(were comments turned off, e.g. skip-comments or compact in an option file?); the backup is refused',
        { details: { target: mysqlTarget(mysql), tool: tool.name } },
      );
    for (const table of summary.tables)
      if (!table.view && !verified[table.db]?.tables[table.table])
        notes.push(`${table.db}.${table.table} was dumped but has no checksum (created during the backup?)`);
    const verification: MysqlVerification = {
      format: 'gameops-mysql/1',
      rowHash,
      databases: verified,
      objects: {
        total: summary.objects,
        data: summary.tables.reduce((n, t) => n + t.dataObjects, 0),
        dumpBytes: summary.bytes,
      },
    };
    const floatColumns = Object.entries(verified).flatMap(([db, v]) =>
      Object.entries(v.tables).flatMap(([t, tv]) => tv.columnsLeftOut.map((c) => `${db}.${t}.${c}`)),
    );
    if (floatColumns.length > 0) notes.push(`FLOAT columns compared by sum: ${floatColumns.join(', ')}`);
    notes.push(`the global read lock that aligned the snapshots was held for ${lockHeldMs} ms`);
    ctx.log.info(
      { server: mysqlTarget(mysql), lockHeldMs, objects: summary.objects, dumpBytes: summary.bytes },
      'mysql dump complete',
    );
    ctx.progress.note(
      `${summary.tables.length} tables, ${summary.objects} objects, ${summary.bytes} dump bytes from ${mysqlTarget(mysql)}`,
    );
    return {
      tool: { name: tool.name, version: tool.version },
      source: {
        server: mysqlTarget(mysql),
        serverVersion,
        binlogFile: binlog.file,
        binlogPosition: binlog.position,
        gtid,
      },
      verification,
      notes,
    };
  } finally {
    if (child) killHard(child);
    lock?.destroy();
    snap?.destroy();
    await fsp.rm(defaultsFile, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------------
// Restore

interface PlannedObject {
  name: string;
  parsed: DumpObjectName;
  plainSize: number;
}

/** The verification of a backup component. @throws InputError when it is not a MySQL verification. */
export function mysqlVerification(
  backup: Pick<ManifestComponent, 'verification' | 'kind'>,
): MysqlVerification {
  const v = backup.verification as Partial<MysqlVerification> | undefined;
  if (!v || v.format !== 'gameops-mysql/1' || typeof v.databases !== 'object' || v.databases === null)
    throw new InputError(
      `the ${backup.kind} component has no MySQL verification data (format gameops-mysql/1)`,
    );
  return v as MysqlVerification;
}

async function readAll(stream: Readable, limit: number, name: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > limit) {
      stream.destroy();
      throw new InputError(`object ${name} is larger than ${limit} bytes; it is not DDL`);
    }
    parts.push(b);
  }
  return Buffer.concat(parts, size);
}

const DDL_LIMIT = 256 * 1024 * 1024;

/**
 * Restores a MySQL component into `target`: databases (renamed per `target.databases`), each table's schema,
 * the data chunks with `target.parallel` loader processes, then triggers and the tail (routines, events,
 * views). @throws InputError when a database of the backup is not mapped; UnavailableError naming the
 * object and the loader's message when a load fails.
 */
export async function restoreMysql(
  backup: ManifestComponent,
  target: MysqlRestoreTarget,
  ctx: ComponentReadContext,
): Promise<{ bytes: number; tables: number }> {
  const map = new Map(Object.entries(target.databases));
  const planned: PlannedObject[] = ctx.objects.map((o) => ({
    name: o.name,
    parsed: parseObjectName(o.name),
    plainSize: o.plainSize,
  }));
  const dbsInBackup = new Set<string>();
  for (const o of planned) if ('db' in o.parsed) dbsInBackup.add(o.parsed.db);
  const unmapped = [...dbsInBackup].filter((db) => !map.has(db));
  if (unmapped.length > 0)
    throw new InputError(
      `the restore target maps no database for ${unmapped.join(', ')} (databases of the backup)`,
    );
  const verification = (() => {
    try {
      return mysqlVerification(backup);
    } catch {
      return undefined;
    }
  })();
  const where = `MySQL/MariaDB at ${mysqlTarget(target.mysql)}`;
  const tool = await findMysqlTool(['mariadb', 'mysql']);
  const defaultsFile = await writeDefaultsFile(ctx.tempDir, target.mysql, tool);
  const total = planned.reduce((n, o) => n + o.plainSize, 0);
  ctx.progress.phase('restore', total);
  let bytes = 0;
  // The first failed load stops every other loader (and its download) before the restore reports.
  const cancel = new AbortController();
  const signal = AbortSignal.any([ctx.signal, cancel.signal]);
  let started = false;
  try {
    const preambleObject = planned.find((o) => o.parsed.kind === 'preamble');
    const preamble = preambleObject
      ? await readAll(ctx.read(PREAMBLE_OBJECT), DDL_LIMIT, PREAMBLE_OBJECT)
      : Buffer.alloc(0);
    bytes += preamble.length;
    const header = (db: string | undefined): Buffer =>
      Buffer.concat([
        preamble,
        Buffer.from(
          `\nSET foreign_key_checks = 0, unique_checks = 0;\n${db === undefined ? '' : useStatement(mapDb(map, db))}`,
        ),
      ]);

    const load = async (object: PlannedObject, body: 'ddl' | 'data'): Promise<void> => {
      const db = 'db' in object.parsed ? object.parsed.db : undefined;
      const head = header(
        object.parsed.kind === 'database' || object.parsed.kind === 'tail' ? undefined : db,
      );
      let input: Buffer | Readable;
      if (body === 'ddl') {
        let text = (await readAll(ctx.read(object.name), DDL_LIMIT, object.name)).toString('utf8');
        text = renameDatabases(text, map);
        if (target.disableEvents && object.parsed.kind === 'tail') text = disableEvents(text);
        input = Buffer.from(text, 'utf8');
      } else input = ctx.read(object.name);
      await runLoader(
        tool,
        defaultsFile,
        head,
        input,
        object.name,
        where,
        target.mysql.password,
        signal,
        (n) => {
          bytes += n;
          ctx.progress.add(n);
        },
      );
    };

    const of = (kind: DumpObjectName['kind']): PlannedObject[] =>
      planned.filter((o) => o.parsed.kind === kind);
    const all = async (objects: PlannedObject[], body: 'ddl' | 'data', limit: number): Promise<void> => {
      let first: { err: unknown } | undefined;
      await mapLimit(objects, limit, async (o) => {
        if (first) return;
        try {
          started = true;
          await load(o, body);
        } catch (err) {
          first ??= { err };
          cancel.abort(err);
        }
      });
      if (first) throw first.err;
    };
    await all(of('database'), 'ddl', 1);
    await all(of('schema'), 'ddl', target.parallel);
    // Biggest first: the longest loads start early.
    const data = of('data').sort((a, b) => b.plainSize - a.plainSize);
    await all(data, 'data', target.parallel);
    await all(of('post'), 'ddl', target.parallel);
    await all(of('tail'), 'ddl', 1);

    const schemas = of('schema').filter((o) => o.parsed.kind === 'schema');
    const tables = verification
      ? schemas.filter((o) => {
          const p = o.parsed as { db: string; table: string };
          return verification.databases[p.db]?.tables[p.table] !== undefined;
        }).length
      : schemas.length;
    ctx.progress.note(`${tables} tables restored into ${where}`);
    return { bytes, tables };
  } catch (err) {
    if (ctx.signal.aborted && err === ctx.signal.reason) throw err;
    if (!started || !(err instanceof GameopsError)) throw err;
    // Every loader has stopped by now (each was awaited); the target is left as it is.
    throw new UnavailableError(
      `${err.message}; every other loader was stopped: the target database(s) ${[...new Set(map.values())].join(', ')} are partially restored (their tables were dropped and reloaded up to this point)`,
      { cause: err, details: err.details },
    );
  } finally {
    await fsp.rm(defaultsFile, { force: true });
  }
}

function mapDb(map: ReadonlyMap<string, string>, db: string): string {
  const to = map.get(db);
  if (to === undefined) throw new InputError(`no target database for ${db}`);
  return to;
}

/** Events of a scratch copy are created DISABLED so that they never run there. */
function disableEvents(text: string): string {
  return text.replace(
    /(\/\*!50106 EVENT [\s\S]*?ON COMPLETION (?:NOT )?PRESERVE )ENABLE( DO )/g,
    '$1DISABLE$2',
  );
}

async function runLoader(
  tool: MysqlTool,
  defaultsFile: string,
  head: Buffer,
  body: Buffer | Readable,
  name: string,
  where: string,
  password: Secret | undefined,
  signal: AbortSignal,
  onBytes: (n: number) => void,
): Promise<void> {
  if (signal.aborted) throw signal.reason;
  const child = spawn(tool.path, loadArgs(defaultsFile), { stdio: ['pipe', 'ignore', 'pipe'] });
  const stderr = stderrCollector(child, [password]);
  const exit = exited(child);
  exit.catch(() => undefined);
  const onAbort = (): void => killHard(child);
  signal.addEventListener('abort', onAbort, { once: true });
  const stdin = child.stdin;
  if (!stdin) throw new UnavailableError(`${tool.name} for ${name}: no stdin`);
  let feedError: unknown;
  stdin.on('error', (err) => (feedError ??= err));
  const write = (chunk: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      if (stdin.destroyed) {
        reject(new Error('loader closed its input'));
        return;
      }
      if (stdin.write(chunk)) resolve();
      else {
        const done = (): void => {
          stdin.off('drain', done);
          stdin.off('close', done);
          resolve();
        };
        stdin.once('drain', done);
        stdin.once('close', done);
      }
    });
  try {
    await write(head);
    if (Buffer.isBuffer(body)) {
      await write(body);
      onBytes(body.length);
    } else {
      for await (const chunk of body) {
        if (stdin.destroyed) break;
        await write(chunk as Buffer);
        onBytes((chunk as Buffer).length);
      }
    }
    stdin.end();
  } catch (err) {
    feedError ??= err;
    if (!Buffer.isBuffer(body)) body.destroy();
    killHard(child);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  const { code, signal: killedBy } = await exit;
  if (!Buffer.isBuffer(body) && !body.readableEnded) body.destroy();
  if (signal.aborted) throw signal.reason;
  if (code !== 0) {
    throw new UnavailableError(
      `${where}: loading ${name} failed (${tool.name} ${killedBy ? `killed by ${killedBy}` : `exit ${code}`}): ${loaderMessage(stderr()) || (feedError instanceof Error ? feedError.message : 'no message')}`,
      { details: { object: name } },
    );
  }
  if (feedError)
    throw new UnavailableError(`${where}: reading ${name} for the restore failed: ${describe(feedError)}`, {
      cause: feedError,
      details: { object: name },
    });
}

// ---------------------------------------------------------------------------------------------------
// Compare and drill

/** Whether two FLOAT column sums agree within {@link FLOAT_TOLERANCE} of the larger absolute sum. */
export function floatSumsAgree(expected: MysqlFloatSum, actual: MysqlFloatSum): boolean {
  const scale = Math.max(Math.abs(expected.absSum), Math.abs(actual.absSum), Number.MIN_VALUE);
  return Math.abs(expected.sum - actual.sum) <= FLOAT_TOLERANCE * scale;
}

/**
 * Computes the same counts, checksums and FLOAT sums on `target` (source database → target database) and
 * compares them with the backup's: one check per table's rows, checksum and FLOAT column, and per
 * database's routines, triggers, events and views. Never throws for a mismatch (the check says so).
 * @throws InputError for a backup without verification data or an unmapped database; UnavailableError
 *   when the target cannot be read.
 */
export async function compareMysql(
  backup: Pick<ManifestComponent, 'verification' | 'kind'>,
  target: { mysql: MysqlConfig; databases: Record<string, string> },
  signal: AbortSignal,
): Promise<DrillCheck[]> {
  const verification = mysqlVerification(backup);
  const checks: DrillCheck[] = [];
  const client = await connectMysql(metaConfig(target.mysql), { signal });
  try {
    await client.query("SET SESSION time_zone = '+00:00'", [], { signal });
    for (const [db, expected] of Object.entries(verification.databases)) {
      const to = target.databases[db];
      if (to === undefined) throw new InputError(`the comparison target maps no database for ${db}`);
      const columns = await tableColumns(client, to, signal);
      for (const [table, want] of Object.entries(expected.tables)) {
        const subject = `${db}.${table}`;
        const cols = columns.get(table);
        if (!cols) {
          checks.push({
            subject: `${subject} rows`,
            expected: String(want.rows),
            actual: 'table missing',
            ok: false,
          });
          continue;
        }
        const got = await verifyTable(client, to, table, cols, verification.rowHash ?? 'md5', signal);
        checks.push({
          subject: `${subject} rows`,
          expected: String(want.rows),
          actual: String(got.rows),
          ok: want.rows === got.rows,
        });
        const leftOut = want.columnsLeftOut.length > 0 ? want.columnsLeftOut : got.columnsLeftOut;
        checks.push({
          subject: `${subject} checksum`,
          expected: want.checksum,
          actual: got.checksum,
          ok: want.checksum === got.checksum,
          note:
            leftOut.length > 0
              ? `FLOAT columns ${leftOut.join(', ')} left out of the checksum (compared by sum with tolerance ${FLOAT_TOLERANCE})`
              : undefined,
        });
        if (want.floatChecksum !== undefined)
          checks.push({
            subject: `${subject} FLOAT checksum`,
            expected: want.floatChecksum,
            actual: got.floatChecksum ?? 'no FLOAT column',
            ok: want.floatChecksum === got.floatChecksum,
            note: `FLOAT columns ${want.columnsLeftOut.join(', ')} as the server prints them (the digits a dump keeps)`,
          });
        for (const [column, sum] of Object.entries(want.floatSums)) {
          const actual = got.floatSums[column];
          checks.push({
            subject: `${subject}.${column} sum (FLOAT)`,
            expected: String(sum.sum),
            actual: actual ? String(actual.sum) : 'column missing',
            ok: actual !== undefined && floatSumsAgree(sum, actual),
            note: `FLOAT keeps about 6 significant digits in a dump; relative tolerance ${FLOAT_TOLERANCE} of the sum of absolute values`,
          });
        }
      }
      const counts = await objectCounts(client, to, signal);
      for (const kind of ['routines', 'triggers', 'events', 'views'] as const)
        checks.push({
          subject: `${db} ${kind}`,
          expected: String(expected[kind]),
          actual: String(counts[kind]),
          ok: expected[kind] === counts[kind],
        });
    }
    return checks;
  } finally {
    await client.close();
  }
}

/** `gameops_drill_<6 hex>_<db>`, at most 64 characters (long names are cut and numbered). */
export function scratchDatabaseName(token: string, db: string, index: number): string {
  const name = `gameops_drill_${token}_${db}`;
  if (name.length <= 64) return name;
  const suffix = `_${index}`;
  return `gameops_drill_${token}_${db}`.slice(0, 64 - suffix.length) + suffix;
}

/**
 * Restores the backup into scratch databases (`gameops_drill_<hex>_<db>`) on `mysql`, compares counts and
 * checksums with the backup's, and always drops the scratch databases. Events are created disabled there.
 * @throws UnavailableError when the restore cannot run; mismatches are failed checks, not errors.
 */
export async function drillMysql(
  backup: ManifestComponent,
  mysql: MysqlConfig,
  ctx: ComponentReadContext,
  options: { parallel?: number } = {},
): Promise<ComponentDrill> {
  const started = ctx.clock.now().getTime();
  const verification = mysqlVerification(backup);
  const token = randomBytes(3).toString('hex');
  const dbs = Object.keys(verification.databases);
  const map: Record<string, string> = {};
  dbs.forEach((db, i) => (map[db] = scratchDatabaseName(token, db, i)));
  const notes: string[] = [
    CHECKSUM_NOTE,
    `restored into scratch databases ${Object.values(map).join(', ')} on ${mysqlTarget(mysql)}, dropped afterwards; events created disabled`,
  ];
  try {
    const restored = await restoreMysql(
      backup,
      { mysql, databases: map, parallel: options.parallel ?? 2, disableEvents: true },
      ctx,
    );
    const checks = await compareMysql(backup, { mysql, databases: map }, ctx.signal);
    return {
      component: 'mysql',
      ok: checks.every((c) => c.ok),
      checks,
      notes,
      bytes: restored.bytes,
      durationMs: ctx.clock.now().getTime() - started,
    };
  } finally {
    await dropDatabases(mysql, Object.values(map));
  }
}

async function dropDatabases(mysql: MysqlConfig, names: string[]): Promise<void> {
  // Not bound to the context's signal: the scratch copies go even when the drill was aborted.
  const client = await connectMysql(metaConfig(mysql));
  try {
    for (const name of names)
      await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)}`, [], { timeoutMs: 600_000 });
  } finally {
    await client.close();
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : typeof err === 'string' ? err : 'unknown error';
}
