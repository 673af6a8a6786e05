/**
 * Partition rotation (runbook §4.2): move out → archive → verify → drop, and never a drop without a
 * verified archive.
 *
 * Move out: the partition's rows leave the live table first, by `ALTER TABLE t EXCHANGE PARTITION p WITH
 * TABLE s`, an atomic metadata swap with an empty non-partitioned copy of the table (`CREATE TABLE s LIKE
 * t`, `REMOVE PARTITIONING`). The staging table's name is fixed per partition ({@link stagingTable}) and its
 * comment says whose rows it holds, so a resumed run finds it. Nothing writes to it: what is exported is
 * exactly what is dropped, and no lock on the live table is held longer than the swap itself.
 *
 * Export: in one consistent snapshot (`START TRANSACTION WITH CONSISTENT SNAPSHOT`) the server counts the
 * staging table's rows and sums a 64-bit hash of each row, then the rows are read in primary-key pages
 * sized by bytes (the largest row, measured by the same scan, bounds how many rows one page may hold) and
 * written as NDJSON through the backups' object pipeline (zstd, age to `backups.encryption.recipients`,
 * SHA-256 of plain and stored bytes) to `archives/<service>/<env>/<db>/<table>/<partition>-<UTC stamp>.ndjson.zst.age`.
 * The session's time zone is UTC (`+00:00`) for the whole rotation: TIMESTAMP values are archived in UTC,
 * and the manifest says so.
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
 * hashes a form that cannot be rebuilt from exported values, hence this variant). A verified archive gets
 * a manifest next to it (`….manifest.json`: key, rows, checksum, SHA-256, bound, time zone); only an
 * archive with a manifest counts as archived (resume, `verify()`). An archive that fails verification is
 * deleted and the rows are swapped back into the partition; one left by a run stopped before its
 * verification has no manifest, never counts, and is left in the store (nothing is deleted by guesswork).
 *
 * Drop: under `LOCK TABLES … WRITE`, the partition (empty since the swap) is checked to still be empty
 * (one row read, whatever its size) and dropped; rows the game wrote into it since are kept and the step
 * says so. Then the staging table is summed once more against the manifest and dropped. Every lock is
 * waited for at most `lock_wait_timeout` seconds (see locks.ts): the game's queries never queue long.
 *
 * Crash and resume: every state between two statements is recognised by {@link rotationState} (partition
 * there or not, staging table absent, empty or holding rows, manifests) and a run finds its way on from
 * it; {@link rotationVerdict} is what the action's `verify()` answers for it.
 */
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { z } from 'zod';
import { openObjectWriter, readObject } from '../../backups/codec.ts';
import type { AgeIdentities } from '../../backups/keys.ts';
import { silentProgress, type ObjectRecord, type ObjectStore } from '../../backups/types.ts';
import type { MysqlClient } from '../../connectors/mysql.ts';
import {
  ConflictError,
  errorMessage,
  GameopsError,
  InputError,
  NotAllowedError,
  NotFoundError,
  UnavailableError,
  type Clock,
} from '../../core/index.ts';
import type { ColumnInfo, NamedTableInfo, PartitionInfo } from './inspect.ts';
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

/** Most rows per page of the export. */
export const EXPORT_PAGE_ROWS = 5000;
/**
 * About the most NDJSON bytes per page of the export: a page is held about three times (driver rows,
 * encoded text, buffer), so this bounds the export's memory whatever the rows' sizes (one row larger than
 * this is still read whole).
 */
export const EXPORT_PAGE_BYTES = 8 * 1024 * 1024;
/** The session time zone of a rotation: TIMESTAMP columns are exported (and hashed) in UTC. */
export const ARCHIVE_TIME_ZONE = '+00:00';
/** Deadline of one statement of a rotation (a page, the checksum, the swap, the drop). */
const STATEMENT_MS = 10 * 60_000;
/** A manifest is a few hundred bytes; anything far larger is not one. */
const MANIFEST_MAX_BYTES = 1024 * 1024;
const ARCHIVE_SUFFIX = '.ndjson.zst.age';
const MANIFEST_SUFFIX = '.manifest.json';

export function isBinaryColumn(c: ColumnInfo): boolean {
  return BINARY_TYPES.has(c.type) || c.charset === 'binary';
}

/** The expression a column is exported (and hashed) as. */
export function exportExpression(c: ColumnInfo): string {
  const q = quoteName(c.name);
  return isBinaryColumn(c) ? `CAST(${q} AS BINARY)` : `CAST(${q} AS CHAR CHARACTER SET utf8mb4)`;
}

/** `FROM` target: a partition of the live table, or the whole (staging) table. */
function source(ref: TableRef, partition?: string): string {
  return `${qualified(ref)}${partition === undefined ? '' : ` PARTITION (${quoteName(partition)})`}`;
}

/**
 * `SELECT COUNT(*) AS n, <sum of 64-bit row hashes> AS h, <longest row's bytes> AS m FROM <from>`: one scan
 * gives the count and checksum the archive is verified against and the row size the export pages by.
 */
export function checksumSql(from: string, columns: readonly ColumnInfo[]): string {
  const parts = columns.map((c) => {
    const e = exportExpression(c);
    return `IFNULL(CONCAT(LENGTH(${e}), ':', ${e}), 'N')`;
  });
  const row = `CONCAT_WS('|', ${parts.join(', ')})`;
  return (
    `SELECT COUNT(*) AS n, CAST(IFNULL(SUM(CAST(CONV(SUBSTRING(MD5(${row}), 1, 16), 16, 10) AS UNSIGNED)), 0) AS CHAR) AS h, ` +
    `IFNULL(MAX(LENGTH(${row})), 0) AS m FROM ${from}`
  );
}

/** An exported value: text, binary, or NULL. */
export type ArchivedValue = string | { base64: string } | null;

/** The 64-bit hash of one row as the server computes it in {@link checksumSql}. */
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

/**
 * The WHERE of the page after `last` (primary key values as the export selected them: Buffers for binary
 * columns, compared byte by byte; text otherwise), and its parameters.
 */
function keysetAfter(
  key: readonly ColumnInfo[],
  last: readonly unknown[],
): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const value = (i: number): unknown => {
    const v = last[i];
    return INTEGER_TYPES.has(key[i]!.type) && typeof v === 'string' ? BigInt(v) : v;
  };
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

/** What the server said about a partition or the staging table in one snapshot. */
export interface PartitionSummary {
  rows: number;
  /** Decimal sum of the rows' 64-bit hashes. */
  checksum: string;
  /** Bytes of the longest row as hashed (its values' bytes and separators). */
  maxRowBytes: number;
}

async function summarize(
  client: MysqlClient,
  from: string,
  columns: readonly ColumnInfo[],
  signal: AbortSignal,
): Promise<PartitionSummary> {
  const rows = await client.query(checksumSql(from, columns), [], { signal, timeoutMs: STATEMENT_MS });
  return {
    rows: Number(rows[0]?.['n'] ?? 0),
    checksum: String(rows[0]?.['h'] ?? '0'),
    maxRowBytes: Number(rows[0]?.['m'] ?? 0),
  };
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

/**
 * The staging table of a partition, in the table's database: `gameops_rot_<partition>_<hash>` (at most 64
 * characters; the hash is of `db.table.partition`), the same for every run so a resumed one finds it.
 */
export function stagingTable(ref: TableRef, partition: string): TableRef {
  const hash = createHash('sha256')
    .update(`${ref.database}.${ref.table}.${partition}`)
    .digest('hex')
    .slice(0, 10);
  return { database: ref.database, table: `gameops_rot_${partition.slice(0, 30)}_${hash}` };
}

/** The comment a staging table carries: whose rows it holds (a table without it is never touched). */
export function stagingComment(ref: TableRef, partition: string): string {
  return `gameops rotation of ${ref.database}.${ref.table} partition ${partition}`.slice(0, 1000);
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
  /** Pages read, and the NDJSON bytes of the largest (what the export held in memory at once). */
  pages: number;
  largestPageBytes: number;
}

const manifestSchema = z.object({
  format: z.literal('gameops-partition-archive/1'),
  database: z.string(),
  table: z.string(),
  partition: z.string(),
  /** `PARTITION_DESCRIPTION` when the rows were moved out (null: not known, a resumed staging table). */
  lessThan: z.string().nullable(),
  key: z.string(),
  rows: z.number().int().min(0),
  checksum: z.string().regex(/^\d+$/),
  storedBytes: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  plainBytes: z.number().int().min(0),
  plainSha256: z.string().regex(/^[0-9a-f]{64}$/),
  columns: z.array(z.string()),
  /** The session time zone TIMESTAMP values were exported in. */
  timeZone: z.string(),
  exportedAt: z.iso.datetime(),
  verifiedAt: z.iso.datetime(),
});
/** Written next to an archive once it is verified: what makes it count as archived. */
export type ArchiveManifest = z.infer<typeof manifestSchema>;

/** `<prefix>/<db>/<table>/<partition>-`: every archive and manifest of a partition starts so. */
function partitionPrefix(storage: ArchiveStorage, ref: TableRef, partition: string): string {
  return `${storage.prefix}/${keySegment(ref.database)}/${keySegment(ref.table)}/${keySegment(partition)}-`;
}

const manifestKeyOf = (archiveKey: string): string =>
  `${archiveKey.slice(0, -ARCHIVE_SUFFIX.length)}${MANIFEST_SUFFIX}`;

/**
 * The manifests of a partition's verified archives whose archive object is still stored with its size.
 * A manifest that cannot be read or is not one is left out (and said in `log`).
 */
export async function archiveManifests(
  storage: ArchiveStorage,
  ref: TableRef,
  partition: string,
  signal: AbortSignal,
  log: (line: string) => void = () => undefined,
): Promise<ArchiveManifest[]> {
  const found: ArchiveManifest[] = [];
  for await (const o of storage.store.list(partitionPrefix(storage, ref, partition))) {
    if (!o.key.endsWith(MANIFEST_SUFFIX)) continue;
    let manifest: ArchiveManifest;
    try {
      if (o.size > MANIFEST_MAX_BYTES) throw new Error(`${o.size} bytes`);
      const chunks: Buffer[] = [];
      for await (const chunk of await storage.store.get(o.key, { signal }))
        chunks.push(Buffer.from(chunk as Uint8Array));
      manifest = manifestSchema.parse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
    } catch (err) {
      if (signal.aborted) throw err;
      log(`${o.key} is not a readable archive manifest (${errorMessage(err)}): ignored`);
      continue;
    }
    if (
      manifest.database !== ref.database ||
      manifest.table !== ref.table ||
      manifest.partition !== partition
    )
      continue;
    const archive = await storage.store.head(manifest.key);
    if (archive?.size !== manifest.storedBytes) {
      log(
        `${o.key}: its archive ${manifest.key} is ${archive ? `${archive.size} bytes, not ${manifest.storedBytes}` : 'missing'}: not counted`,
      );
      continue;
    }
    found.push(manifest);
  }
  return found;
}

/** An archive key of the partition not used yet (`-2`, `-3`… when a run in the same second wrote one). */
async function freshArchiveKey(
  storage: ArchiveStorage,
  ref: TableRef,
  partition: string,
  at: Date,
): Promise<string> {
  const base = `${partitionPrefix(storage, ref, partition)}${stamp(at)}`;
  for (let n = 1; n <= 1000; n++) {
    const key = `${base}${n === 1 ? '' : `-${n}`}${ARCHIVE_SUFFIX}`;
    if (!(await storage.store.head(key)) && !(await storage.store.head(manifestKeyOf(key)))) return key;
  }
  throw new ConflictError(`${base}${ARCHIVE_SUFFIX}: 1000 archives of this partition in one second`);
}

export interface RotationResult extends TableRef {
  partition: string;
  archive: ArchiveRecord;
  /** True when a manifest from an interrupted run already covered the staged rows (nothing exported). */
  resumed: boolean;
  verifyMs: number;
  dropMs: number;
  dropped: true;
}

export type RotationPhase = 'exchanged' | 'exported' | 'verified' | 'partition-dropped';

export interface RotateOptions {
  storage: ArchiveStorage;
  clock: Clock;
  signal: AbortSignal;
  log: (line: string) => void;
  /** Seconds each lock of the live table is waited for (default {@link DDL_LOCK_WAIT_SECONDS}). */
  lockWaitSeconds?: number;
  /** Most rows per export page (default {@link EXPORT_PAGE_ROWS}). */
  pageRows?: number;
  /** About the most NDJSON bytes per export page (default {@link EXPORT_PAGE_BYTES}). */
  pageBytes?: number;
  /** Called after each phase (tests damage the archive or stop the connection here). */
  onPhase?: (phase: RotationPhase, archive: ArchiveRecord | undefined) => Promise<void> | void;
}

/**
 * Exports every row of `from` (the staging table) to `objectKey` in one snapshot: count, checksum, rows.
 * @throws InputError when the table has no primary key (the export pages by it), ConflictError when
 * the rows read differ in number from the snapshot's count.
 */
async function exportRows(
  client: MysqlClient,
  info: NamedTableInfo,
  from: TableRef,
  objectKey: string,
  options: RotateOptions,
): Promise<ArchiveRecord> {
  const { storage, signal } = options;
  const columns = info.columns;
  const key = info.primaryKey.map((name) => columns.find((c) => c.name === name)!);
  if (key.length === 0)
    throw new InputError(
      `${info.database}.${info.table} has no primary key: the partition export pages by it`,
    );
  const keyIndex = key.map((k) => columns.indexOf(k));
  const maxRows = options.pageRows ?? EXPORT_PAGE_ROWS;
  const pageBytes = options.pageBytes ?? EXPORT_PAGE_BYTES;
  const started = performance.now();
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
  let pages = 0;
  let largestPageBytes = 0;
  try {
    await client.query('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ', [], q);
    await client.query('START TRANSACTION WITH CONSISTENT SNAPSHOT', [], q);
    summary = await summarize(client, qualified(from), columns, signal);
    // A row's NDJSON: its bytes, base64 (4/3) for binary values, plus names and quotes.
    const rowBytes =
      Math.ceil(summary.maxRowBytes * 1.4) + columns.reduce((n, c) => n + c.name.length + 8, 2);
    const pageRows = Math.max(1, Math.min(maxRows, Math.floor(pageBytes / rowBytes)));
    const select = columns.map((c, i) => `${exportExpression(c)} AS ${alias(i)}`).join(', ');
    // Qualified with the table's alias: ORDER BY and WHERE name the columns, never the SELECT's aliases.
    const order = key.map((k) => `src.${quoteName(k.name)}`).join(', ');
    let last: unknown[] | undefined;
    for (;;) {
      const after = last ? keysetAfter(key, last) : undefined;
      const rows = await client.query(
        `SELECT ${select} FROM ${qualified(from)} AS src${after ? ` WHERE ${after.sql}` : ''} ORDER BY ${order} LIMIT ${pageRows}`,
        after?.params ?? [],
        q,
      );
      if (rows.length > 0) {
        const page = Buffer.from(rows.map((r) => encodeRow(columns, r)).join(''));
        pages += 1;
        largestPageBytes = Math.max(largestPageBytes, page.length);
        await writer.write(page);
        exported += rows.length;
        const lastRow = rows[rows.length - 1]!;
        // Binary key values stay Buffers: as text they would lose bytes that are not UTF-8.
        last = keyIndex.map((i): unknown => lastRow[alias(i)]);
      }
      if (rows.length < pageRows) break;
    }
    await client.query('COMMIT', [], q);
    if (exported !== summary.rows)
      throw new ConflictError(
        `${info.database}.${info.table}: ${exported} rows exported from ${from.table} but the snapshot counted ${summary.rows}`,
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
    pages,
    largestPageBytes,
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

/** Where a rotation of one partition stands (what a resumed run or `verify()` goes by). */
export interface RotationState {
  /** The partition in the live table, or undefined when it is gone. */
  partition: PartitionInfo | undefined;
  /** The staging table: absent, empty, or holding the partition's rows (moved out, not yet dropped). */
  staging: 'absent' | 'empty' | 'rows';
  /** Manifests of verified archives of the partition. */
  manifests: ArchiveManifest[];
}

/**
 * Reads the state of a partition's rotation from the live schema and the archive storage.
 * @throws ConflictError when a table with the staging table's name exists and is not gameops's.
 */
export async function rotationState(
  client: MysqlClient,
  storage: ArchiveStorage,
  info: NamedTableInfo,
  partition: string,
  signal: AbortSignal,
  log?: (line: string) => void,
): Promise<RotationState> {
  const ref = { database: info.database, table: info.table };
  const staging = stagingTable(ref, partition);
  const q = { signal, timeoutMs: 60_000 };
  const found = await client.query(
    'SELECT TABLE_COMMENT AS c FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?',
    [staging.database, staging.table],
    q,
  );
  let state: RotationState['staging'] = 'absent';
  if (found.length > 0) {
    const any = await client.query(`SELECT 1 AS x FROM ${qualified(staging)} LIMIT 1`, [], q);
    state = any.length > 0 ? 'rows' : 'empty';
    // Without the comment it is ours only as `CREATE TABLE … LIKE` left it (a run stopped before its next
    // statement): still partitioned, and empty.
    if (
      String(found[0]!['c'] ?? '') !== stagingComment(ref, partition) &&
      (state === 'rows' || (await liveTablePartitions(client, staging, signal)).length === 0)
    )
      throw new ConflictError(
        `${staging.database}.${staging.table} exists but is not gameops's staging table for ${info.database}.${info.table} ` +
          `partition ${partition} (its comment differs): rename it; the partition is not rotated`,
      );
  }
  return {
    partition: info.partitions.find((p) => p.name === partition),
    staging: state,
    manifests: await archiveManifests(storage, ref, partition, signal, log),
  };
}

/**
 * What `verify()` says of a partition's rotation: done when the partition is gone, no rows wait in its
 * staging table and a verified archive (manifest) exists; not done while the partition or staged rows
 * are there (running again goes on from there); unknown when the partition is gone without a verified
 * archive (dropped by something else, or the archive was removed).
 */
export function rotationVerdict(state: RotationState): 'done' | 'not-done' | 'unknown' {
  if (state.partition || state.staging === 'rows') return 'not-done';
  return state.manifests.length > 0 ? 'done' : 'unknown';
}

/** Rows the live partition may hold above the approved estimate (`TABLE_ROWS`, rough for InnoDB). */
export function approvedRowLimit(approved: number): number {
  return approved * 2 + 1000;
}

/** The error `err` with `note` added to its message (same class, code and details). */
function withNote(err: unknown, note: string): Error {
  if (!(err instanceof GameopsError)) return err instanceof Error ? err : new Error(String(err));
  const message = `${err.message}; ${note}`;
  const options = { cause: err, details: err.details };
  if (err instanceof InputError) return new InputError(message, options);
  if (err instanceof ConflictError) return new ConflictError(message, options);
  if (err instanceof UnavailableError) return new UnavailableError(message, options);
  if (err instanceof NotFoundError) return new NotFoundError(message, options);
  if (err instanceof NotAllowedError) return new NotAllowedError(message, options);
  return new GameopsError(err.code, message, options);
}

/**
 * Move out → archive → verify → drop one partition (checked against the live schema, configuration and
 * retention by the caller), going on from wherever an interrupted run stopped. With the approved bound
 * and row estimate (`lessThan`, `rows`, as db.plan gives them) the partition must still have that bound
 * and not hold far more rows ({@link approvedRowLimit}).
 * @throws InputError when the partition is neither there nor staged, ConflictError when it differs from
 * the approval, a lock is not had in time, the archive fails verification (the rows are swapped back
 * into the partition when they can be, else they wait in the staging table for a run again), or rows
 * were written into the partition while it was being archived (they stay; run again).
 */
export async function rotatePartition(
  client: MysqlClient,
  info: NamedTableInfo,
  target: Pick<RotateTarget, 'partition'> & Partial<Pick<RotateTarget, 'lessThan' | 'rows'>>,
  options: RotateOptions,
): Promise<RotationResult> {
  const { partition } = target;
  const { signal, storage, log } = options;
  const ref = { database: info.database, table: info.table };
  const table = `${info.database}.${info.table}`;
  const where = `${table} partition ${partition}`;
  const staging = stagingTable(ref, partition);
  const stagingName = `${staging.database}.${staging.table}`;
  const q = { signal, timeoutMs: STATEMENT_MS };
  const seconds = options.lockWaitSeconds ?? DDL_LOCK_WAIT_SECONDS;
  const locked = <T>(name: string, work: () => Promise<T>): Promise<T> => withLockWait(name, seconds, work);
  const unlock = () =>
    client.query('UNLOCK TABLES', [], q).catch((err: unknown) => {
      if (!(err instanceof GameopsError)) throw err;
    });

  await client.query('SET SESSION time_zone = ?', [ARCHIVE_TIME_ZONE], q);
  await boundLockWait(client, seconds, signal);
  let state = await rotationState(client, storage, info, partition, signal, log);
  if (state.staging === 'empty') {
    // Left by a run stopped before its swap, or after swapping the rows back: holds nothing.
    await client.query(`DROP TABLE ${qualified(staging)}`, [], q);
    log(`${stagingName}: empty staging table of an earlier run dropped`);
    state = { ...state, staging: 'absent' };
  }
  const live = state.partition;
  if (!live && state.staging === 'absent')
    throw new InputError(
      `${partition} is not a partition of ${table} (it has ${info.partitions.map((x) => x.name).join(', ') || 'none'})` +
        (state.manifests.length > 0
          ? ` and is archived (${state.manifests.map((m) => m.key).join(', ')})`
          : ' and has no verified archive'),
    );

  if (state.staging === 'absent') {
    // live is defined here. The approval binds the bound and the size, not only the name.
    if (target.lessThan !== undefined && (live!.description ?? '') !== target.lessThan)
      throw new ConflictError(
        `${where} is now VALUES LESS THAN (${live!.description ?? '?'}), the approval was for (${target.lessThan}): ` +
          'not rotated; plan again',
        { details: { table, partition, approved: target.lessThan, live: live!.description } },
      );
    if (target.rows !== undefined) {
      const counted = await client.query(`SELECT COUNT(*) AS n FROM ${source(ref, partition)}`, [], q);
      const n = Number(counted[0]?.['n'] ?? 0);
      if (n > approvedRowLimit(target.rows))
        throw new ConflictError(
          `${where} holds ${n} rows, far more than the ≈${target.rows} approved (at most ${approvedRowLimit(target.rows)} ` +
            'accepted): not rotated; plan again',
          { details: { table, partition, approved: target.rows, live: n } },
        );
    }
    await client.query(`CREATE TABLE ${qualified(staging)} LIKE ${qualified(ref)}`, [], q);
    try {
      await client.query(
        `ALTER TABLE ${qualified(staging)} COMMENT = ? REMOVE PARTITIONING`,
        [stagingComment(ref, partition)],
        q,
      );
      // An atomic swap: from here the rows are out of the live table, and nothing writes to them.
      await locked(table, () =>
        client.query(
          `ALTER TABLE ${qualified(ref)} EXCHANGE PARTITION ${quoteName(partition)} WITH TABLE ${qualified(staging)}`,
          [],
          q,
        ),
      );
    } catch (err) {
      // The swap did not happen (or its answer was lost): the staging table goes only if it is empty.
      await client
        .query(`SELECT 1 AS x FROM ${qualified(staging)} LIMIT 1`, [], { timeoutMs: 10_000 })
        .then((any) =>
          any.length === 0
            ? client.query(`DROP TABLE ${qualified(staging)}`, [], { timeoutMs: 10_000 })
            : undefined,
        )
        .catch(() => undefined);
      throw err;
    }
    log(`${where}: rows moved out to the staging table ${stagingName}`);
    await options.onPhase?.('exchanged', undefined);
  } else {
    log(
      `${where}: rows of an interrupted run found in the staging table ${stagingName}: going on from there`,
    );
  }

  // Archive and verify the staged rows, unless a manifest of an interrupted run covers them already.
  let archive: ArchiveRecord | undefined;
  let resumed = false;
  let verifyMs = 0;
  try {
    if (state.manifests.length > 0) {
      const now = await summarize(client, qualified(staging), info.columns, signal);
      const m = state.manifests.find((x) => x.rows === now.rows && x.checksum === now.checksum);
      if (m) {
        archive = { ...m, exportMs: 0, pages: 0, largestPageBytes: 0 };
        resumed = true;
        log(`${where}: the staged rows are already archived and verified (${m.key})`);
      }
    }
    if (!archive) {
      const key = await freshArchiveKey(storage, ref, partition, options.clock.now());
      const exportedAt = options.clock.now().toISOString();
      archive = await exportRows(client, info, staging, key, options);
      log(
        `${where}: ${archive.rows} rows exported to ${archive.key} (${archive.plainBytes} bytes plain, ${archive.storedBytes} stored, ` +
          `${archive.pages} pages, largest ${archive.largestPageBytes} bytes) in ${archive.exportMs} ms`,
      );
      await options.onPhase?.('exported', archive);
      const verifyStarted = performance.now();
      try {
        await verifyArchive(storage, archive, info.columns, signal);
      } catch (err) {
        await storage.store.delete(archive.key).catch(() => undefined);
        throw withNote(err, `the archive ${archive.key} is deleted`);
      }
      verifyMs = Math.round(performance.now() - verifyStarted);
      const manifest: ArchiveManifest = {
        format: 'gameops-partition-archive/1',
        database: info.database,
        table: info.table,
        partition,
        lessThan: live?.description ?? target.lessThan ?? null,
        key: archive.key,
        rows: archive.rows,
        checksum: archive.checksum,
        storedBytes: archive.storedBytes,
        sha256: archive.sha256,
        plainBytes: archive.plainBytes,
        plainSha256: archive.plainSha256,
        columns: archive.columns,
        timeZone: ARCHIVE_TIME_ZONE,
        exportedAt,
        verifiedAt: options.clock.now().toISOString(),
      };
      await storage.store.put(
        manifestKeyOf(archive.key),
        Readable.from([Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`)]),
        { signal },
      );
      log(
        `${where}: archive read back and verified (${archive.rows} rows, checksum ${archive.checksum}) in ${verifyMs} ms; manifest written`,
      );
      await options.onPhase?.('verified', archive);
    }
  } catch (err) {
    throw withNote(err, await putBack());
  }

  // Drop the partition (empty since the swap) under a write lock, unless rows were written into it since.
  const dropStarted = performance.now();
  let late = false;
  if ((await liveTablePartitions(client, ref, signal)).includes(partition)) {
    await locked(table, () => client.query(`LOCK TABLES ${qualified(ref)} WRITE`, [], q));
    try {
      const any = await client.query(`SELECT 1 AS x FROM ${source(ref, partition)} LIMIT 1`, [], q);
      late = any.length > 0;
      if (!late)
        await locked(table, () =>
          client.query(`ALTER TABLE ${qualified(ref)} DROP PARTITION ${quoteName(partition)}`, [], q),
        );
    } finally {
      await unlock();
    }
  }
  await options.onPhase?.('partition-dropped', archive);
  // The staged rows are the archived ones (nothing writes to the staging table; checked all the same).
  const final = await summarize(client, qualified(staging), info.columns, signal);
  if (final.rows !== archive.rows || final.checksum !== archive.checksum)
    throw new ConflictError(
      `${stagingName} changed since it was archived (${archive.rows} rows archived in ${archive.key}, ${final.rows} now): kept, not dropped`,
      { details: { staging: stagingName, archived: archive.rows, now: final.rows } },
    );
  await client.query(`DROP TABLE ${qualified(staging)}`, [], q);
  const dropMs = Math.round(performance.now() - dropStarted);
  if (late)
    throw new ConflictError(
      `${where}: rows were written into it after its ${archive.rows} rows were moved out and archived (${archive.key}): ` +
        'the partition is kept with the new rows, not dropped; run the step again to archive them',
      { details: { table, partition, archived: archive.rows, key: archive.key } },
    );
  log(`${where}: dropped (and the staging table ${stagingName}) in ${dropMs} ms`);
  return {
    database: info.database,
    table: info.table,
    partition,
    archive,
    resumed,
    verifyMs,
    dropMs,
    dropped: true,
  };

  /**
   * After a failure with the rows staged: swap them back into the partition when it is still there and
   * empty (under a write lock on both tables), and drop the then empty staging table. Says where the
   * rows are.
   */
  async function putBack(): Promise<string> {
    try {
      if (signal.aborted) throw new Error('the step was stopped');
      const current = await liveTablePartitions(client, ref, signal);
      if (!current.includes(partition))
        return `the rows wait in the staging table ${stagingName}: run the step again to archive them`;
      await locked(table, () =>
        client.query(`LOCK TABLES ${qualified(ref)} WRITE, ${qualified(staging)} WRITE`, [], q),
      );
      try {
        const any = await client.query(`SELECT 1 AS x FROM ${source(ref, partition)} LIMIT 1`, [], q);
        if (any.length > 0)
          return (
            `rows were written into ${partition} meanwhile, so the archived rows could not be swapped back: they wait in the ` +
            `staging table ${stagingName}; run the step again to archive them`
          );
        await client.query(
          `ALTER TABLE ${qualified(ref)} EXCHANGE PARTITION ${quoteName(partition)} WITH TABLE ${qualified(staging)}`,
          [],
          q,
        );
      } finally {
        await unlock();
      }
      const left = await client.query(`SELECT 1 AS x FROM ${qualified(staging)} LIMIT 1`, [], q);
      if (left.length === 0) await client.query(`DROP TABLE ${qualified(staging)}`, [], q);
      return `the rows are back in ${where}, nothing was dropped`;
    } catch (err) {
      return `the rows wait in the staging table ${stagingName} (they could not be swapped back: ${errorMessage(err)}): run the step again to archive them`;
    }
  }
}

/** The partition names of a table now (information_schema). */
async function liveTablePartitions(
  client: MysqlClient,
  ref: TableRef,
  signal: AbortSignal,
): Promise<string[]> {
  const rows = await client.query(
    'SELECT PARTITION_NAME AS p FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND PARTITION_NAME IS NOT NULL',
    [ref.database, ref.table],
    { signal, timeoutMs: 60_000 },
  );
  return rows.map((r) => String(r['p']));
}
