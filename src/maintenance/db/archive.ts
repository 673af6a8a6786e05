/**
 * Partition rotation (runbook §4.2): archive → verify → drop, and never a drop without a verified archive.
 *
 * Export: in one consistent snapshot (`START TRANSACTION WITH CONSISTENT SNAPSHOT`) the server counts the
 * partition's rows and sums a 64-bit hash of each row, then the rows are read in primary-key pages
 * (bounded memory whatever the partition's size) and written as NDJSON through the backups' object
 * pipeline (zstd, age to `backups.encryption.recipients`, SHA-256 of plain and stored bytes) to
 * `archives/<service>/<env>/<db>/<table>/<partition>-<UTC stamp>.ndjson.zst.age`.
 *
 * Encoding, one JSON object per row, keys in column order: NULL is null; every other value is the text
 * the server gives for `CAST(col AS CHAR CHARACTER SET utf8mb4)` (numbers, decimals, big integers, dates
 * as MySQL prints them, so nothing is rounded), binary columns (BINARY, VARBINARY, BLOB, BIT, spatial)
 * `{"base64": "…"}`.
 *
 * Verify: the object is read back (stored size and SHA-256, age decrypted with `backups.encryption.identity`,
 * zstd decompressed, plain size and SHA-256), its lines are counted and each row's hash recomputed from the
 * archived values; count and sum must equal the server's. The row hash is `MD5` of the row's columns
 * (`<byte length>:<bytes>` or `N` for NULL, joined by `|`) over the same expressions the export selects,
 * so the server and the archive reader compute it from the same bytes (the backups' `checksumQuery`
 * hashes a form that cannot be rebuilt from exported values, hence this variant).
 *
 * Drop: the partition is counted and hashed again; a difference from the export (rows written into an
 * old partition since) refuses the drop. Then, under `LOCK TABLES … WRITE` (no writer between the last
 * count and the drop), counted once more and `ALTER TABLE … DROP PARTITION`. The lock is waited for at most
 * `lock_wait_timeout` seconds (see locks.ts): the game's queries never queue long behind the drop.
 */
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { openObjectWriter, readObject } from '../../backups/codec.ts';
import type { AgeIdentities } from '../../backups/keys.ts';
import { silentProgress, type ObjectRecord, type ObjectStore } from '../../backups/types.ts';
import type { MysqlClient } from '../../connectors/mysql.ts';
import { ConflictError, GameopsError, InputError, type Clock } from '../../core/index.ts';
import type { ColumnInfo, NamedTableInfo } from './inspect.ts';
import { boundLockWait, DDL_LOCK_WAIT_SECONDS, withLockWait } from './locks.ts';
import { qualified, quoteName, type RotateTarget, type TableRef } from './plan.ts';

const BINARY_TYPES = new Set([
  'binary',
  'varbinary',
  'tinyblob',
  'blob',
  'mediumblob',
  'longblob',
  'bit',
  'geometry',
  'point',
  'linestring',
  'polygon',
  'multipoint',
  'multilinestring',
  'multipolygon',
  'geometrycollection',
  'geomcollection',
]);
const INTEGER_TYPES = new Set(['tinyint', 'smallint', 'mediumint', 'int', 'integer', 'bigint']);

/** Rows per page of the export. */
export const EXPORT_PAGE_ROWS = 5000;
/** Deadline of one statement of a rotation (a page, the checksum, the drop). */
const STATEMENT_MS = 10 * 60_000;

export function isBinaryColumn(c: ColumnInfo): boolean {
  return BINARY_TYPES.has(c.type) || c.charset === 'binary';
}

/** The expression a column is exported (and hashed) as. */
export function exportExpression(c: ColumnInfo): string {
  const q = quoteName(c.name);
  return isBinaryColumn(c) ? `CAST(${q} AS BINARY)` : `CAST(${q} AS CHAR CHARACTER SET utf8mb4)`;
}

/** `SELECT COUNT(*) AS n, <sum of 64-bit row hashes> AS h FROM … PARTITION (p)`. */
export function partitionChecksumSql(
  ref: TableRef,
  partition: string,
  columns: readonly ColumnInfo[],
): string {
  const parts = columns.map((c) => {
    const e = exportExpression(c);
    return `IFNULL(CONCAT(LENGTH(${e}), ':', ${e}), 'N')`;
  });
  const row = `CONCAT_WS('|', ${parts.join(', ')})`;
  return (
    `SELECT COUNT(*) AS n, CAST(IFNULL(SUM(CAST(CONV(SUBSTRING(MD5(${row}), 1, 16), 16, 10) AS UNSIGNED)), 0) AS CHAR) AS h ` +
    `FROM ${qualified(ref)} PARTITION (${quoteName(partition)})`
  );
}

/** An exported value: text, binary, or NULL. */
export type ArchivedValue = string | { base64: string } | null;

/** The 64-bit hash of one row as the server computes it in {@link partitionChecksumSql}. */
export function rowHash(values: readonly ArchivedValue[]): bigint {
  const pieces: Buffer[] = [];
  values.forEach((v, i) => {
    if (i > 0) pieces.push(Buffer.from('|'));
    if (v === null) {
      pieces.push(Buffer.from('N'));
      return;
    }
    const bytes = typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v.base64, 'base64');
    pieces.push(Buffer.from(`${bytes.length}:`), bytes);
  });
  const hex = createHash('md5').update(Buffer.concat(pieces)).digest('hex').slice(0, 16);
  return BigInt(`0x${hex}`);
}

/** A value the driver gave as something other than a Buffer (the export selects text): its text. */
function scalarText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

/** The alias of column `i` in the export's SELECT (never a column name: ORDER BY must see the columns). */
const alias = (i: number): string => `c${i}`;

/** One row (as the export selects it: `c0`, `c1`… in column order) as an NDJSON line with its newline. */
export function encodeRow(columns: readonly ColumnInfo[], row: Record<string, unknown>): string {
  const out: Record<string, ArchivedValue> = {};
  for (const [i, c] of columns.entries()) {
    const v = row[alias(i)];
    if (v === null || v === undefined) out[c.name] = null;
    else if (Buffer.isBuffer(v))
      out[c.name] = isBinaryColumn(c) ? { base64: v.toString('base64') } : v.toString('utf8');
    else out[c.name] = scalarText(v);
  }
  return `${JSON.stringify(out)}\n`;
}

/** The values of an archived line in column order. @throws Error naming the line when it is not a row. */
function decodeRow(columns: readonly ColumnInfo[], line: string, n: number): ArchivedValue[] {
  const parsed = JSON.parse(line) as unknown;
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new Error(`line ${n} is not a JSON object`);
  const record = parsed as Record<string, unknown>;
  return columns.map((c) => {
    const v = record[c.name];
    if (v === null || typeof v === 'string') return v;
    if (typeof v === 'object' && v !== null && typeof (v as { base64?: unknown }).base64 === 'string')
      return { base64: (v as { base64: string }).base64 };
    throw new Error(`line ${n}: column ${c.name} is missing or not text, null or {base64}`);
  });
}

/** The WHERE of the page after `last` (primary key values as exported), and its parameters. */
function keysetAfter(
  key: readonly ColumnInfo[],
  last: readonly string[],
): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const value = (i: number): unknown => (INTEGER_TYPES.has(key[i]!.type) ? BigInt(last[i]!) : last[i]);
  const ors = key.map((c, i) => {
    const ands = key.slice(0, i).map((p, j) => {
      params.push(value(j));
      return `src.${quoteName(p.name)} = ?`;
    });
    params.push(value(i));
    return `(${[...ands, `src.${quoteName(c.name)} > ?`].join(' AND ')})`;
  });
  return { sql: ors.join(' OR '), params };
}

/** What the server said about a partition in one snapshot. */
export interface PartitionSummary {
  rows: number;
  /** Decimal sum of the rows' 64-bit hashes. */
  checksum: string;
}

export async function partitionSummary(
  client: MysqlClient,
  ref: TableRef,
  partition: string,
  columns: readonly ColumnInfo[],
  signal: AbortSignal,
): Promise<PartitionSummary> {
  const rows = await client.query(partitionChecksumSql(ref, partition, columns), [], {
    signal,
    timeoutMs: STATEMENT_MS,
  });
  return { rows: Number(rows[0]?.['n'] ?? 0), checksum: String(rows[0]?.['h'] ?? '0') };
}

/** Where archives go and how they are written and read back. */
export interface ArchiveStorage {
  store: ObjectStore;
  recipients: readonly string[];
  identities: AgeIdentities;
  level: number;
  /** `archives/<service>/<env>`: safe key segments. */
  prefix: string;
}

/** The key segment of a free-text name: characters other than `A-Z a-z 0-9 . _ -` become `_`. */
export function keySegment(text: string): string {
  const s = text.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_');
  return s.length > 0 ? s.slice(0, 100) : '_';
}

/** `20261126T170500Z`. */
function stamp(at: Date): string {
  return at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

export interface ArchiveRecord {
  key: string;
  rows: number;
  /** Plain NDJSON bytes and their SHA-256. */
  plainBytes: number;
  plainSha256: string;
  /** Stored (compressed, encrypted) bytes and their SHA-256. */
  storedBytes: number;
  sha256: string;
  /** The server's row-hash sum at export. */
  checksum: string;
  columns: string[];
  exportMs: number;
}

export interface RotationResult extends TableRef {
  partition: string;
  archive: ArchiveRecord;
  verifyMs: number;
  dropMs: number;
  dropped: true;
}

export interface RotateOptions {
  storage: ArchiveStorage;
  clock: Clock;
  signal: AbortSignal;
  log: (line: string) => void;
  /** Seconds the drop waits for the table's lock (default {@link DDL_LOCK_WAIT_SECONDS}). */
  lockWaitSeconds?: number;
  /** Rows per export page (default {@link EXPORT_PAGE_ROWS}). */
  pageRows?: number;
  /** Called between export, verify and drop (tests damage the archive here). */
  onPhase?: (phase: 'exported' | 'verified', archive: ArchiveRecord) => Promise<void> | void;
}

/**
 * Exports `partition` of `info` to the archive storage (one snapshot: count, checksum, rows).
 * @throws InputError when the table has no primary key (the export pages by it).
 */
export async function exportPartition(
  client: MysqlClient,
  info: NamedTableInfo,
  partition: string,
  options: RotateOptions,
): Promise<ArchiveRecord> {
  const { storage, signal } = options;
  const ref = { database: info.database, table: info.table };
  const columns = info.columns;
  const key = info.primaryKey.map((name) => columns.find((c) => c.name === name)!);
  if (key.length === 0)
    throw new InputError(
      `${info.database}.${info.table} has no primary key: the partition export pages by it`,
    );
  const keyIndex = key.map((k) => columns.indexOf(k));
  const pageRows = options.pageRows ?? EXPORT_PAGE_ROWS;
  const started = performance.now();
  const objectKey = [
    storage.prefix,
    keySegment(info.database),
    keySegment(info.table),
    `${keySegment(partition)}-${stamp(options.clock.now())}.ndjson.zst.age`,
  ].join('/');
  const writer = openObjectWriter(storage.store, {
    key: objectKey,
    name: objectKey,
    recipients: storage.recipients,
    level: storage.level,
    signal,
    progress: silentProgress,
  });
  const q = { signal, timeoutMs: STATEMENT_MS };
  let summary: PartitionSummary;
  let exported = 0;
  try {
    await client.query('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ', [], q);
    await client.query('START TRANSACTION WITH CONSISTENT SNAPSHOT', [], q);
    summary = await partitionSummary(client, ref, partition, columns, signal);
    const select = columns.map((c, i) => `${exportExpression(c)} AS ${alias(i)}`).join(', ');
    // Qualified with the table's alias: ORDER BY and WHERE name the columns, never the SELECT's aliases.
    const order = key.map((k) => `src.${quoteName(k.name)}`).join(', ');
    const from = `${qualified(ref)} PARTITION (${quoteName(partition)}) AS src`;
    let last: string[] | undefined;
    for (;;) {
      const after = last ? keysetAfter(key, last) : undefined;
      const rows = await client.query(
        `SELECT ${select} FROM ${from}${after ? ` WHERE ${after.sql}` : ''} ORDER BY ${order} LIMIT ${pageRows}`,
        after?.params ?? [],
        q,
      );
      if (rows.length > 0) {
        await writer.write(Buffer.from(rows.map((r) => encodeRow(columns, r)).join('')));
        exported += rows.length;
        const lastRow = rows[rows.length - 1]!;
        last = keyIndex.map((i) => String(lastRow[alias(i)]));
      }
      if (rows.length < pageRows) break;
    }
    await client.query('COMMIT', [], q);
    if (exported !== summary.rows)
      throw new ConflictError(
        `${info.database}.${info.table} partition ${partition}: ${exported} rows exported but the snapshot counted ${summary.rows}`,
      );
  } catch (err) {
    await client.query('ROLLBACK', [], { timeoutMs: 5000 }).catch(() => undefined);
    await writer.abort(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
  const record: ObjectRecord = await writer.end();
  return {
    key: objectKey,
    rows: exported,
    plainBytes: record.plainSize,
    plainSha256: record.plainSha256,
    storedBytes: record.size,
    sha256: record.sha256,
    checksum: summary.checksum,
    columns: columns.map((c) => c.name),
    exportMs: Math.round(performance.now() - started),
  };
}

/**
 * Reads the archive back and checks it against the export: stored and plain sizes and SHA-256 (by the
 * codec), decryption with the identity, the line count and the row-hash sum against the server's.
 * @throws ConflictError naming the archive and what differs.
 */
export async function verifyArchive(
  storage: ArchiveStorage,
  archive: ArchiveRecord,
  columns: readonly ColumnInfo[],
  signal: AbortSignal,
): Promise<void> {
  const record: ObjectRecord = {
    name: archive.key,
    key: archive.key,
    size: archive.storedBytes,
    sha256: archive.sha256,
    plainSize: archive.plainBytes,
    plainSha256: archive.plainSha256,
    storageClass: undefined,
  };
  let lines = 0;
  let sum = 0n;
  try {
    const plain = readObject(storage.store, record, storage.identities, signal);
    const reader = createInterface({ input: plain, crlfDelay: Infinity });
    for await (const line of reader) {
      if (line === '') continue;
      lines += 1;
      sum += rowHash(decodeRow(columns, line, lines));
    }
  } catch (err) {
    if (signal.aborted) throw err;
    throw new ConflictError(
      `the archive ${archive.key} failed verification: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err, details: { key: archive.key } },
    );
  }
  if (lines !== archive.rows || sum.toString() !== archive.checksum)
    throw new ConflictError(
      `the archive ${archive.key} failed verification: ${lines} rows with checksum ${sum} read back, ` +
        `${archive.rows} rows with checksum ${archive.checksum} exported`,
      { details: { key: archive.key } },
    );
}

/**
 * Drops `partition` only if it still holds exactly what was archived: counted and hashed again, then
 * counted under a write lock immediately before the drop.
 * @throws ConflictError naming the partition and both counts when it changed.
 */
export async function dropIfUnchanged(
  client: MysqlClient,
  info: NamedTableInfo,
  partition: string,
  archive: ArchiveRecord,
  signal: AbortSignal,
  lockWaitSeconds?: number,
): Promise<void> {
  const ref = { database: info.database, table: info.table };
  const q = { signal, timeoutMs: STATEMENT_MS };
  const changed = (now: number, what: string): ConflictError =>
    new ConflictError(
      `${info.database}.${info.table} partition ${partition} changed since it was archived (${archive.rows} rows ` +
        `archived, ${now} now${what}): not dropped; the archive ${archive.key} is kept`,
      { details: { table: `${info.database}.${info.table}`, partition, archived: archive.rows, now } },
    );
  const again = await partitionSummary(client, ref, partition, info.columns, signal);
  if (again.rows !== archive.rows || again.checksum !== archive.checksum)
    throw changed(again.rows, again.rows === archive.rows ? ', rows changed' : '');
  const seconds = lockWaitSeconds ?? DDL_LOCK_WAIT_SECONDS;
  await boundLockWait(client, seconds, signal);
  await withLockWait(`${info.database}.${info.table}`, seconds, () =>
    client.query(`LOCK TABLES ${qualified(ref)} WRITE`, [], q),
  );
  try {
    const rows = await client.query(
      `SELECT COUNT(*) AS n FROM ${qualified(ref)} PARTITION (${quoteName(partition)})`,
      [],
      q,
    );
    const n = Number(rows[0]?.['n'] ?? 0);
    if (n !== archive.rows) throw changed(n, '');
    await withLockWait(`${info.database}.${info.table}`, seconds, () =>
      client.query(`ALTER TABLE ${qualified(ref)} DROP PARTITION ${quoteName(partition)}`, [], q),
    );
  } finally {
    await client.query('UNLOCK TABLES', [], q).catch((err: unknown) => {
      if (!(err instanceof GameopsError)) throw err;
    });
  }
}

/** Archive → verify → drop one partition (checked against the live schema by the caller). */
export async function rotatePartition(
  client: MysqlClient,
  info: NamedTableInfo,
  target: Pick<RotateTarget, 'partition'>,
  options: RotateOptions,
): Promise<RotationResult> {
  const { partition } = target;
  const where = `${info.database}.${info.table} partition ${partition}`;
  const archive = await exportPartition(client, info, partition, options);
  options.log(
    `${where}: ${archive.rows} rows exported to ${archive.key} (${archive.plainBytes} bytes plain, ${archive.storedBytes} stored) in ${archive.exportMs} ms`,
  );
  await options.onPhase?.('exported', archive);
  const verifyStarted = performance.now();
  await verifyArchive(options.storage, archive, info.columns, options.signal);
  const verifyMs = Math.round(performance.now() - verifyStarted);
  options.log(
    `${where}: archive read back and verified (${archive.rows} rows, checksum ${archive.checksum}) in ${verifyMs} ms`,
  );
  await options.onPhase?.('verified', archive);
  const dropStarted = performance.now();
  await dropIfUnchanged(client, info, partition, archive, options.signal, options.lockWaitSeconds);
  const dropMs = Math.round(performance.now() - dropStarted);
  options.log(`${where}: dropped in ${dropMs} ms`);
  return { database: info.database, table: info.table, partition, archive, verifyMs, dropMs, dropped: true };
}
