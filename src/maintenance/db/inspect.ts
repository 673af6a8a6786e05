/**
 * The read-only inspection database maintenance plans from (runbook §4.2): per table its engine, rows,
 * sizes and free space; the partitions and columns of the tables named by `maintenance.db`; the
 * server's flavour, version and query cache. Everything comes from `information_schema` and server
 * variables: the plan only ever names tables, partitions and columns seen here.
 */
import type { MysqlClient, MysqlFlavour } from '../../connectors/mysql.ts';

/** One base table of an inspected database. */
export interface TableInfo {
  database: string;
  table: string;
  engine: string | null;
  /** `TABLE_ROWS`: an estimate for InnoDB. */
  rows: number;
  dataBytes: number;
  indexBytes: number;
  /** `DATA_FREE`. */
  freeBytes: number;
  /**
   * Whether the table (every partition of it) has a tablespace of its own, so `DATA_FREE` is its own
   * free space; false for the system or a general tablespace (there it is the shared tablespace's free
   * space, which a rebuild does not give back); null when it could not be told (not InnoDB, or the
   * InnoDB tables view is not readable).
   */
  ownTablespace: boolean | null;
  partitioned: boolean;
  /** Per partition of a partitioned table (subpartitions folded), in ordinal order; empty otherwise. */
  partitions: PartitionInfo[];
}

export interface ColumnInfo {
  name: string;
  /** `DATA_TYPE`, lower case: `int`, `datetime`, `varbinary`... */
  type: string;
  /** `CHARACTER_SET_NAME` (null for numbers and dates). */
  charset: string | null;
}

export interface PartitionInfo {
  name: string;
  /** `RANGE`, `RANGE COLUMNS`, `LIST`, `HASH`... */
  method: string;
  expression: string | null;
  /** `PARTITION_DESCRIPTION`: the `VALUES LESS THAN` bound as stored (`MAXVALUE` for the catch-all). */
  description: string | null;
  ordinal: number;
  /** `TABLE_ROWS` of the partition (an estimate for InnoDB). */
  rows: number;
  dataBytes: number;
  /** `INDEX_LENGTH` of the partition. */
  indexBytes: number;
  /** `DATA_FREE` of the partition (its own tablespace's free space with file-per-table). */
  freeBytes: number;
}

/** A table named by the config (partitions or purge): what the plan checks names against. */
export interface NamedTableInfo {
  database: string;
  table: string;
  exists: boolean;
  columns: ColumnInfo[];
  /** Primary key columns in key order (empty: none). */
  primaryKey: string[];
  /** Columns that lead some index (purges by such a column find their rows without a scan). */
  indexedColumns: string[];
  /** Partitions in ordinal order (subpartitions folded); empty when not partitioned. */
  partitions: PartitionInfo[];
  /**
   * Foreign keys of other tables that reference this one with `ON DELETE CASCADE` or `SET NULL`: a delete
   * here changes rows there. `db.table (constraint, CASCADE)`.
   */
  cascades: string[];
}

export interface QueryCacheInfo {
  /** `have_query_cache` is YES (MySQL 8.0 has no such variable: false). */
  present: boolean;
  /** `query_cache_type` (OFF, ON, DEMAND), null when absent. */
  type: string | null;
  sizeBytes: number;
}

export interface ServerInfo {
  version: string;
  flavour: MysqlFlavour;
  /** `innodb_file_per_table`. */
  filePerTable: boolean;
  queryCache: QueryCacheInfo;
  /**
   * The zone DATETIME/DATE values written with NOW() are in: `@@global.time_zone`, or `@@system_time_zone`
   * when that is SYSTEM; `utc` when it is UTC (or +00:00).
   */
  timeZone: { zone: string; utc: boolean };
}

export interface Inspection {
  /** `mysql.database`: the game schema. */
  database: string;
  server: ServerInfo;
  /** Every base table of the databases inspected (the game schema and those the config names). */
  tables: TableInfo[];
  named: NamedTableInfo[];
  /** Databases inspected (the game schema, those the config names) that do not exist on the server. */
  missingDatabases?: string[];
  notes: string[];
}

export interface InspectOptions {
  signal?: AbortSignal;
  /** Per-statement deadline (ms). */
  timeoutMs?: number;
}

const num = (v: unknown): number => {
  const n = Number(v ?? 0);
  return Number.isFinite(n) ? n : 0;
};
const str = (v: unknown): string | null => {
  if (v === null || v === undefined) return null;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint'
    ? String(v)
    : JSON.stringify(v);
};

/** The server facts: flavour, version, file-per-table, query cache. */
export async function serverInfo(client: MysqlClient, options: InspectOptions = {}): Promise<ServerInfo> {
  const { version, flavour } = await client.serverVersion(options);
  const vars = await client.globalVariables(
    ['innodb_file_per_table', 'have_query_cache', 'query_cache_type', 'query_cache_size'],
    options,
  );
  const on = (v: string | undefined): boolean => /^(on|yes|1)$/i.test(v ?? '');
  const tz = await client.query('SELECT @@global.time_zone AS tz, @@system_time_zone AS sys', [], options);
  const global = str(tz[0]?.['tz']) ?? 'SYSTEM';
  const zone = /^system$/i.test(global) ? (str(tz[0]?.['sys']) ?? 'SYSTEM') : global;
  return {
    version,
    flavour,
    timeZone: { zone, utc: isUtcZone(zone) },
    filePerTable: on(vars['innodb_file_per_table']),
    queryCache: {
      present: on(vars['have_query_cache']),
      type: vars['query_cache_type'] ?? null,
      sizeBytes: num(vars['query_cache_size']),
    },
  };
}

/** Whether a server zone name is UTC: `UTC`, `GMT`, `Etc/UTC`, `Universal`, `+00:00`... */
export function isUtcZone(zone: string): boolean {
  return /^(utc|gmt|z|zulu|universal|etc\/(utc|gmt|universal|zulu)|[+-]0?0:00)$/i.test(zone.trim());
}

/**
 * MySQL 8 caches `information_schema.TABLES` statistics for a day (`information_schema_stats_expiry`);
 * maintenance needs them current. MariaDB and MySQL/Percona 5.7 have no such cache (nor the variable):
 * set only on MySQL 8+, and an "unknown system variable" answer is taken as "no cache" too.
 */
export async function freshStatistics(
  client: MysqlClient,
  server: { flavour: MysqlFlavour; version: string },
  options: InspectOptions = {},
): Promise<void> {
  if (server.flavour !== 'MySQL' || Number(/^(\d+)\./.exec(server.version)?.[1] ?? 0) < 8) return;
  try {
    await client.query('SET SESSION information_schema_stats_expiry = 0', [], options);
  } catch (err) {
    if (options.signal?.aborted || !/unknown system variable/i.test(String(err))) throw err;
  }
}

/** Base tables of `databases` with sizes and free space (`only`: just these names in the first database). */
export async function tableInfos(
  client: MysqlClient,
  databases: readonly string[],
  options: InspectOptions = {},
): Promise<TableInfo[]> {
  if (databases.length === 0) return [];
  const rows = await client.query(
    `SELECT TABLE_SCHEMA AS db, TABLE_NAME AS t, ENGINE AS engine, TABLE_ROWS AS n, DATA_LENGTH AS data,
            INDEX_LENGTH AS idx, DATA_FREE AS free, CREATE_OPTIONS AS opts
       FROM information_schema.TABLES
      WHERE TABLE_SCHEMA IN (${databases.map(() => '?').join(', ')}) AND TABLE_TYPE = 'BASE TABLE'
      ORDER BY TABLE_SCHEMA, TABLE_NAME`,
    [...databases],
    options,
  );
  const parts = await client.query(
    `SELECT TABLE_SCHEMA AS db, TABLE_NAME AS t, PARTITION_NAME AS name, PARTITION_METHOD AS method,
            PARTITION_EXPRESSION AS expr, PARTITION_DESCRIPTION AS descr, PARTITION_ORDINAL_POSITION AS ord,
            TABLE_ROWS AS n, DATA_LENGTH AS data, INDEX_LENGTH AS idx, DATA_FREE AS free
       FROM information_schema.PARTITIONS
      WHERE TABLE_SCHEMA IN (${databases.map(() => '?').join(', ')}) AND PARTITION_NAME IS NOT NULL
      ORDER BY TABLE_SCHEMA, TABLE_NAME, PARTITION_ORDINAL_POSITION, SUBPARTITION_ORDINAL_POSITION`,
    [...databases],
    options,
  );
  const byTable = new Map<string, PartitionInfo[]>();
  for (const p of parts) {
    const key = `${String(p['db'])}.${String(p['t'])}`;
    const list = byTable.get(key) ?? [];
    byTable.set(key, list);
    foldPartition(list, p);
  }
  return rows.map((r) => ({
    database: String(r['db']),
    table: String(r['t']),
    engine: str(r['engine']),
    rows: num(r['n']),
    dataBytes: num(r['data']),
    indexBytes: num(r['idx']),
    freeBytes: num(r['free']),
    ownTablespace: null,
    partitioned: /partitioned/i.test(str(r['opts']) ?? ''),
    partitions: byTable.get(`${String(r['db'])}.${String(r['t'])}`) ?? [],
  }));
}

/** Adds one `information_schema.PARTITIONS` row to `list` (a subpartition adds to its partition). */
function foldPartition(list: PartitionInfo[], p: Record<string, unknown>): void {
  const name = String(p['name']);
  const seen = list.find((x) => x.name === name);
  if (seen) {
    seen.rows += num(p['n']);
    seen.dataBytes += num(p['data']);
    seen.indexBytes += num(p['idx']);
    seen.freeBytes += num(p['free']);
    return;
  }
  list.push({
    name,
    method: str(p['method']) ?? '',
    expression: str(p['expr']),
    description: str(p['descr']),
    ordinal: num(p['ord']),
    rows: num(p['n']),
    dataBytes: num(p['data']),
    indexBytes: num(p['idx']),
    freeBytes: num(p['free']),
  });
}

/**
 * Which InnoDB tables of `databases` live in tablespaces of their own. MariaDB lists tables in
 * `INNODB_SYS_TABLES` (space 0 is the system tablespace); MySQL 8 in `INNODB_TABLES` joined with
 * `INNODB_TABLESPACES` (`SPACE_TYPE` Single). Partitions are `db/table#P#p` (MariaDB) or `#p#` (MySQL).
 * Undefined when the view cannot be read (it needs the PROCESS privilege).
 */
async function ownTablespaces(
  client: MysqlClient,
  flavour: MysqlFlavour,
  databases: readonly string[],
  options: InspectOptions,
): Promise<Map<string, boolean> | undefined> {
  const sql =
    flavour === 'MariaDB'
      ? `SELECT NAME AS name, SPACE <> 0 AS own FROM information_schema.INNODB_SYS_TABLES`
      : `SELECT t.NAME AS name, (s.SPACE_TYPE = 'Single') AS own
           FROM information_schema.INNODB_TABLES t LEFT JOIN information_schema.INNODB_TABLESPACES s ON s.SPACE = t.SPACE`;
  let rows: Awaited<ReturnType<MysqlClient['query']>>;
  try {
    rows = await client.query(sql, [], options);
  } catch (err) {
    if (options.signal?.aborted) throw err;
    return undefined;
  }
  const wanted = new Set(databases);
  const own = new Map<string, boolean>();
  for (const r of rows) {
    const name = str(r['name']) ?? '';
    const slash = name.indexOf('/');
    if (slash < 0) continue;
    const db = name.slice(0, slash);
    if (!wanted.has(db)) continue;
    const table = name.slice(slash + 1).split(/#p#/i)[0]!;
    const key = `${db}.${table}`;
    own.set(key, (own.get(key) ?? true) && num(r['own']) === 1);
  }
  return own;
}

async function namedTable(
  client: MysqlClient,
  database: string,
  table: string,
  options: InspectOptions,
): Promise<NamedTableInfo> {
  const cols = await client.query(
    `SELECT COLUMN_NAME AS name, DATA_TYPE AS type, CHARACTER_SET_NAME AS cs
       FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`,
    [database, table],
    options,
  );
  const exists =
    (
      await client.query(
        `SELECT 1 AS x FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND TABLE_TYPE = 'BASE TABLE'`,
        [database, table],
        options,
      )
    ).length > 0;
  if (!exists)
    return {
      database,
      table,
      exists,
      columns: [],
      primaryKey: [],
      indexedColumns: [],
      partitions: [],
      cascades: [],
    };
  const keys = await client.query(
    `SELECT INDEX_NAME AS idx, COLUMN_NAME AS col, SEQ_IN_INDEX AS seq
       FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME, SEQ_IN_INDEX`,
    [database, table],
    options,
  );
  const parts = await client.query(
    `SELECT PARTITION_NAME AS name, PARTITION_METHOD AS method, PARTITION_EXPRESSION AS expr,
            PARTITION_DESCRIPTION AS descr, PARTITION_ORDINAL_POSITION AS ord, TABLE_ROWS AS n, DATA_LENGTH AS data,
            INDEX_LENGTH AS idx, DATA_FREE AS free
       FROM information_schema.PARTITIONS
      WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND PARTITION_NAME IS NOT NULL
      ORDER BY PARTITION_ORDINAL_POSITION, SUBPARTITION_ORDINAL_POSITION`,
    [database, table],
    options,
  );
  const partitions: PartitionInfo[] = [];
  for (const p of parts) foldPartition(partitions, p);
  const refs = await client.query(
    `SELECT CONSTRAINT_SCHEMA AS db, TABLE_NAME AS t, CONSTRAINT_NAME AS c, DELETE_RULE AS r
       FROM information_schema.REFERENTIAL_CONSTRAINTS
      WHERE UNIQUE_CONSTRAINT_SCHEMA = ? AND REFERENCED_TABLE_NAME = ? AND DELETE_RULE IN ('CASCADE', 'SET NULL')
      ORDER BY CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME`,
    [database, table],
    options,
  );
  return {
    database,
    table,
    exists,
    columns: cols.map((c) => ({
      name: String(c['name']),
      type: String(c['type']).toLowerCase(),
      charset: str(c['cs']),
    })),
    primaryKey: keys.filter((k) => k['idx'] === 'PRIMARY').map((k) => String(k['col'])),
    indexedColumns: [...new Set(keys.filter((k) => num(k['seq']) === 1).map((k) => String(k['col'])))],
    partitions,
    cascades: refs.map(
      (r) => `${String(r['db'])}.${String(r['t'])} (${String(r['c'])}, ON DELETE ${String(r['r'])})`,
    ),
  };
}

/** The tables `maintenance.db` names (partitioned tables, purge rules), with their database. */
export interface NamedTables {
  partitions: ReadonlyArray<{ table: string; database?: string | undefined }>;
  purge: ReadonlyArray<{ table: string; database?: string | undefined }>;
}

/**
 * Inspects the game schema `database` and the tables `named` by the config. Read-only.
 * @throws UnavailableError (from the client) when the server does not answer.
 */
export async function inspectDatabase(
  client: MysqlClient,
  database: string,
  named: NamedTables,
  options: InspectOptions = {},
): Promise<Inspection> {
  const server = await serverInfo(client, options);
  await freshStatistics(client, server, options);
  const pairs = new Map<string, { database: string; table: string }>();
  for (const t of [...named.partitions, ...named.purge]) {
    const db = t.database ?? database;
    pairs.set(`${db}.${t.table}`, { database: db, table: t.table });
  }
  const databases = [...new Set([database, ...[...pairs.values()].map((p) => p.database)])];
  const tables = await tableInfos(client, databases, options);
  const notes: string[] = [];
  const own = await ownTablespaces(client, server.flavour, databases, options);
  if (own === undefined)
    notes.push(
      'the InnoDB tables view is not readable (PROCESS privilege): free space is only trusted with innodb_file_per_table ON',
    );
  for (const t of tables) {
    if (t.engine?.toLowerCase() !== 'innodb') continue;
    t.ownTablespace =
      own?.get(`${t.database}.${t.table}`) ?? (own === undefined ? server.filePerTable : null);
  }
  const namedInfos: NamedTableInfo[] = [];
  for (const p of pairs.values()) namedInfos.push(await namedTable(client, p.database, p.table, options));
  const schemata = await client.query(
    `SELECT SCHEMA_NAME AS db FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN (${databases.map(() => '?').join(', ')})`,
    databases,
    options,
  );
  const present = new Set(schemata.map((r) => String(r['db'])));
  const missingDatabases = databases.filter((d) => !present.has(d));
  return { database, server, tables, named: namedInfos, missingDatabases, notes };
}
