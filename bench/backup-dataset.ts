/**
 * The game database the backup benchmark (bench/backup.ts) dumps and restores, generated on the server
 * (`INSERT ... SELECT` from the Sequence engine's `seq_<a>_to_<b>` tables, in chunks), never row by row
 * from Node, so a gigabyte takes minutes rather than hours. Exported so a test can build a small one.
 *
 * What is in it (MariaDB 10.3+, database `gamedb` by default):
 * - players, guilds, guild_members, inventories, purchases, sessions: FLOAT, DOUBLE, DECIMAL, BLOB, JSON
 *   text and utf8mb4 names (accents, CJK, Cyrillic, emoji), with random-ish values so compression ratios
 *   mean something;
 * - event_log, partitioned by RANGE on the day (one partition a month of 2026 and a catch-all), about 30 %
 *   of the dump;
 * - a trigger (purchases_bi), a function and a procedure (player_spent, grant_gold), an event
 *   (prune_event_log, created DISABLED so it never runs during the benchmark).
 *
 * The row counts are derived from `targetBytes`, the wanted size of the plain `mysqldump` text; the bytes
 * per row below were measured on dumps of this schema (the benchmark prints the real size).
 */
import mysql from 'mysql2/promise';

/** Where to generate: a server and a database (created when missing). */
export interface DatasetTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export interface DatasetOptions {
  /** The wanted size of the plain dump text, in bytes (the rows are scaled to it). */
  targetBytes: number;
  /** Rows per `INSERT ... SELECT` statement. @default 200_000 */
  chunkRows?: number;
  /** Connections generating tables at the same time. @default 2 */
  parallel?: number;
  /** Told about each finished chunk (table, rows so far, rows wanted). */
  onProgress?: (table: string, done: number, total: number) => void;
}

/** Rows per table, and what a drill or a test compares after a restore. */
export interface DatasetSummary {
  database: string;
  rows: Record<string, number>;
  /** Seconds the generation took. */
  seconds: number;
}

/** Table → share of the dump bytes and the dump bytes one row takes (measured on this schema). */
const SHARES: ReadonlyArray<{ table: string; share: number; rowBytes: number }> = [
  { table: 'players', share: 0.2, rowBytes: 274 },
  { table: 'guilds', share: 0.01, rowBytes: 194 },
  { table: 'guild_members', share: 0.03, rowBytes: 43 },
  { table: 'inventories', share: 0.19, rowBytes: 93 },
  { table: 'purchases', share: 0.12, rowBytes: 105 },
  { table: 'sessions', share: 0.15, rowBytes: 110 },
  { table: 'event_log', share: 0.3, rowBytes: 142 },
];

/** The row counts for a dump of about `targetBytes`. */
export function datasetRows(targetBytes: number): Record<string, number> {
  const rows: Record<string, number> = {};
  for (const { table, share, rowBytes } of SHARES)
    rows[table] = Math.max(10, Math.round((targetBytes * share) / rowBytes));
  // Every member is a player; at most one membership per player.
  rows.guild_members = Math.min(rows.guild_members!, rows.players!);
  return rows;
}

const PARTITIONS = Array.from({ length: 12 }, (_, m) => {
  const next = m === 11 ? '2027-01-01' : `2026-${String(m + 2).padStart(2, '0')}-01`;
  return `PARTITION p2026${String(m + 1).padStart(2, '0')} VALUES LESS THAN (TO_DAYS('${next}'))`;
});

const SCHEMA: readonly string[] = [
  `CREATE TABLE players (
    id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    email VARCHAR(128) NOT NULL,
    country CHAR(2) NOT NULL,
    level SMALLINT UNSIGNED NOT NULL,
    xp BIGINT UNSIGNED NOT NULL,
    gold DECIMAL(14,2) NOT NULL,
    rating FLOAT NOT NULL,
    skill DOUBLE NOT NULL,
    created_at DATETIME NOT NULL,
    last_login DATETIME NULL,
    settings TEXT CHARACTER SET utf8mb4 NOT NULL,
    avatar BLOB NULL,
    KEY players_email (email),
    KEY players_last_login (last_login)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
  `CREATE TABLE guilds (
    id INT UNSIGNED NOT NULL PRIMARY KEY,
    name VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL,
    motto VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL,
    bank DECIMAL(16,2) NOT NULL,
    created_at DATETIME NOT NULL,
    emblem BLOB NOT NULL
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
  `CREATE TABLE guild_members (
    guild_id INT UNSIGNED NOT NULL,
    player_id BIGINT UNSIGNED NOT NULL,
    role ENUM('leader','officer','member','recruit') NOT NULL,
    joined_at DATETIME NOT NULL,
    PRIMARY KEY (guild_id, player_id),
    UNIQUE KEY guild_members_player (player_id)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
  `CREATE TABLE inventories (
    id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    player_id BIGINT UNSIGNED NOT NULL,
    slot SMALLINT UNSIGNED NOT NULL,
    item_id INT UNSIGNED NOT NULL,
    qty INT UNSIGNED NOT NULL,
    durability FLOAT NOT NULL,
    attrs TEXT NOT NULL,
    KEY inventories_player (player_id)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
  `CREATE TABLE purchases (
    id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    player_id BIGINT UNSIGNED NOT NULL,
    sku VARCHAR(48) NOT NULL,
    price DECIMAL(10,2) NOT NULL,
    currency CHAR(3) NOT NULL,
    status ENUM('pending','paid','refunded','chargeback') NOT NULL,
    paid_at DATETIME NOT NULL,
    receipt VARBINARY(64) NOT NULL,
    KEY purchases_player (player_id, paid_at)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
  `CREATE TABLE sessions (
    id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    player_id BIGINT UNSIGNED NOT NULL,
    started_at DATETIME NOT NULL,
    ended_at DATETIME NULL,
    ip VARCHAR(45) NOT NULL,
    client VARCHAR(32) NOT NULL,
    avg_ping DOUBLE NOT NULL,
    frames_dropped INT UNSIGNED NOT NULL,
    KEY sessions_player (player_id)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
  `CREATE TABLE event_log (
    id BIGINT UNSIGNED NOT NULL,
    at DATETIME NOT NULL,
    player_id BIGINT UNSIGNED NOT NULL,
    kind VARCHAR(32) NOT NULL,
    payload TEXT CHARACTER SET utf8mb4 NOT NULL,
    PRIMARY KEY (id, at),
    KEY event_log_player (player_id)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
  PARTITION BY RANGE (TO_DAYS(at)) (${PARTITIONS.join(', ')}, PARTITION pmax VALUES LESS THAN MAXVALUE)`,
];

/** Created after the data (a trigger would slow the generation down). */
const OBJECTS: readonly string[] = [
  `CREATE TRIGGER purchases_bi BEFORE INSERT ON purchases FOR EACH ROW
    SET NEW.currency = UPPER(NEW.currency)`,
  `CREATE FUNCTION player_spent(p BIGINT UNSIGNED) RETURNS DECIMAL(16,2) READS SQL DATA
    RETURN (SELECT COALESCE(SUM(price), 0) FROM purchases WHERE player_id = p AND status = 'paid')`,
  `CREATE PROCEDURE grant_gold(IN p BIGINT UNSIGNED, IN amount DECIMAL(14,2))
    MODIFIES SQL DATA
    BEGIN
      UPDATE players SET gold = gold + amount WHERE id = p;
      INSERT INTO event_log (id, at, player_id, kind, payload)
        VALUES (UUID_SHORT(), NOW(), p, 'gold.grant', JSON_OBJECT('amount', amount));
    END`,
  `CREATE EVENT prune_event_log ON SCHEDULE EVERY 1 DAY DISABLE
    DO DELETE FROM event_log WHERE at < NOW() - INTERVAL 400 DAY`,
];

const pick = (expr: string, values: readonly string[]): string =>
  `ELT(1 + (${expr}) % ${values.length}, ${values.map((v) => `'${v}'`).join(', ')})`;

const FIRST = ['Shadow', 'Frost', 'Ember', 'Nova', 'Raven', 'Astra', 'Kairo', 'Lumi', 'Ægir', 'Łucja'];
const FIRST2 = ['美咲', 'Sören', 'Zoë', 'Драко', '🐉Wyrm', 'Ñandú', 'Björk', 'Hoàng', 'Çağla', 'Ἀθηνᾶ'];
const SECOND = ['Blade', 'Heart', 'Storm', 'Fang', 'Whisper', 'Bane', 'Song', 'Rider', 'の剣', '★'];
const COUNTRIES = ['US', 'DE', 'FR', 'JP', 'BR', 'KR', 'PL', 'GB', 'CA', 'SE', 'VN', 'TR', 'ES', 'MX'];
const LANGS = ['en', 'de', 'fr', 'ja', 'pt-BR', 'ko', 'pl', 'sv', 'vi', 'tr', 'es'];
const ITEMS = ['sword', 'shield', 'potion', 'arrow', 'gem', 'scroll', 'helm', 'ring', 'boots', 'cloak'];
const SKUS = [
  'gems_100',
  'gems_550',
  'gems_1200',
  'battle_pass_s7',
  'skin_dragon',
  'starter_pack',
  'xp_boost_24h',
];
const CURRENCIES = ['usd', 'eur', 'jpy', 'brl', 'krw', 'gbp', 'pln'];
const CLIENTS = ['win-1.42.3', 'win-1.42.2', 'mac-1.42.3', 'ios-1.42.1', 'android-1.42.1', 'ps5-1.41.0'];
const KINDS = [
  'match.start',
  'match.end',
  'level.up',
  'item.craft',
  'chat.report',
  'login',
  'logout',
  'trade',
];

/** `INSERT ... SELECT` of one chunk of a table; `seq` runs over [from, to]. */
function insertChunk(table: string, from: number, to: number, rows: Record<string, number>): string {
  const seq = `seq_${from}_to_${to}`;
  const players = rows.players!;
  const guilds = rows.guilds!;
  const day = (start: string, spanDays: number) =>
    `TIMESTAMP('${start}') + INTERVAL FLOOR(RAND() * ${spanDays * 86_400}) SECOND`;
  const player = `1 + FLOOR(RAND() * ${players})`;
  switch (table) {
    case 'players':
      return `INSERT INTO players SELECT seq,
        CONCAT(IF(seq % 3 = 0, ${pick('seq * 7', FIRST2)}, ${pick('seq * 7', FIRST)}), ${pick('seq * 13', SECOND)}, CONV(seq * 2654435761 % 60466176, 10, 36)),
        CONCAT(LOWER(HEX(CRC32(seq))), '.', seq % 997, '@', ${pick('seq', ['mail.example', 'game.example', 'post.example', 'inbox.example'])}),
        ${pick('seq * 11', COUNTRIES)},
        1 + FLOOR(RAND() * 99), FLOOR(RAND() * RAND() * 1000000000), ROUND(RAND() * 100000, 2),
        RAND() * 3000, RAND() * 50 - 25,
        ${day('2023-01-01', 900)},
        IF(seq % 17 = 0, NULL, ${day('2026-01-01', 330)}),
        CONCAT('{"lang":"', ${pick('seq * 3', LANGS)}, '","volume":', FLOOR(RAND() * 101), ',"sensitivity":', ROUND(RAND() * 10, 3),
          ',"keybinds":"', LEFT(MD5(RAND()), 8 + FLOOR(RAND() * 24)), '","tutorial":', IF(RAND() < 0.7, 'true', 'false'), '}'),
        IF(seq % 8 = 0, UNHEX(CONCAT(SHA2(RAND(), 256), MD5(seq))), NULL)
        FROM ${seq}`;
    case 'guilds':
      return `INSERT INTO guilds SELECT seq,
        CONCAT(${pick('seq * 5', ['Order of', 'Clan', 'House', 'ギルド', 'Братство', 'Les', 'Die'])}, ' ', ${pick('seq * 3', FIRST)}, ' ', seq),
        CONCAT(${pick('seq', ['Victory or death', 'We ride at dawn', '永遠に', 'Sans peur', 'Für immer', '🔥 no mercy 🔥'])}, ' #', LEFT(MD5(seq), 6)),
        ROUND(RAND() * 10000000, 2), ${day('2022-06-01', 1200)},
        UNHEX(CONCAT(SHA2(RAND(), 512), SHA2(RAND(), 256)))
        FROM ${seq}`;
    case 'guild_members':
      return `INSERT INTO guild_members SELECT 1 + (seq * 7919) % ${guilds}, seq,
        ${pick('seq', ['leader', 'officer', 'officer', 'member', 'member', 'member', 'member', 'recruit'])},
        ${day('2024-01-01', 700)}
        FROM ${seq}`;
    case 'inventories':
      return `INSERT INTO inventories SELECT seq, ${player}, seq % 64, 1000 + FLOOR(RAND() * 50000),
        1 + FLOOR(RAND() * RAND() * 999), RAND(),
        CONCAT('{"item":"', ${pick('seq * 7', ITEMS)}, '","rarity":', FLOOR(RAND() * 6), ',"enchant":"', LEFT(MD5(RAND()), 1 + FLOOR(RAND() * 12)), '"}')
        FROM ${seq}`;
    case 'purchases':
      return `INSERT INTO purchases SELECT seq, ${player}, ${pick('seq * 3', SKUS)},
        ROUND(0.99 + RAND() * 99, 2), ${pick('seq * 5', CURRENCIES)},
        ${pick('seq', ['paid', 'paid', 'paid', 'paid', 'paid', 'paid', 'pending', 'refunded', 'paid', 'chargeback'])},
        ${day('2024-01-01', 690)}, UNHEX(SHA2(CONCAT(seq, RAND()), 256))
        FROM ${seq}`;
    case 'sessions':
      return `INSERT INTO sessions SELECT seq, ${player}, @s := ${day('2025-06-01', 540)},
        IF(seq % 29 = 0, NULL, @s + INTERVAL FLOOR(RAND() * 14400) SECOND),
        IF(seq % 5 = 0, CONCAT('2001:db8:', HEX(FLOOR(RAND() * 65535)), '::', HEX(FLOOR(RAND() * 65535))),
          CONCAT(FLOOR(RAND() * 223) + 1, '.', FLOOR(RAND() * 256), '.', FLOOR(RAND() * 256), '.', FLOOR(RAND() * 256))),
        ${pick('seq * 11', CLIENTS)}, 5 + RAND() * RAND() * 300, FLOOR(RAND() * RAND() * 5000)
        FROM ${seq}`;
    case 'event_log':
      return `INSERT INTO event_log SELECT seq, ${day('2026-01-01', 365)}, ${player}, ${pick('seq * 13', KINDS)},
        CONCAT('{"match":"', LEFT(MD5(RAND()), 16), '","score":', FLOOR(RAND() * 100000), ',"pos":[',
          ROUND(RAND() * 4096 - 2048, 2), ',', ROUND(RAND() * 4096 - 2048, 2), '],"ping":', ROUND(RAND() * 200, 1),
          IF(seq % 4 = 0, CONCAT(',"note":"', ${pick('seq', ['gg', 'ないす', 'lag again', 'спасибо', 'ez 😎', 'rematch?'])}, '"'), ''), '}')
        FROM ${seq}`;
    default:
      throw new Error(`no generator for table ${table}`);
  }
}

/**
 * Creates `target.database` (dropped first when it exists) with the game schema and fills it to about
 * `options.targetBytes` of dump text. Needs the Sequence engine (built into MariaDB) and a user allowed to
 * create databases, triggers, routines and events.
 * @throws Error naming the table and statement that failed.
 */
export async function generateGameDatabase(
  target: DatasetTarget,
  options: DatasetOptions,
): Promise<DatasetSummary> {
  const started = performance.now();
  const rows = datasetRows(options.targetBytes);
  const chunkRows = options.chunkRows ?? 200_000;
  const parallel = Math.max(1, options.parallel ?? 2);
  const connect = () =>
    mysql.createConnection({
      host: target.host,
      port: target.port,
      user: target.user,
      password: target.password,
      multipleStatements: false,
      charset: 'utf8mb4',
    });
  const db = '`' + target.database.replace(/`/g, '``') + '`';
  const admin = await connect();
  try {
    const [engines] = await admin.query("SELECT 1 FROM information_schema.ENGINES WHERE ENGINE = 'SEQUENCE'");
    if ((engines as unknown[]).length === 0)
      throw new Error(
        'the MariaDB server has no Sequence engine (seq_1_to_N tables); it is needed to generate data',
      );
    await admin.query(`DROP DATABASE IF EXISTS ${db}`);
    await admin.query(`CREATE DATABASE ${db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
    await admin.query(`USE ${db}`);
    for (const statement of SCHEMA) await admin.query(statement);
  } finally {
    await admin.end();
  }

  // Chunks of every table, biggest tables first, shared by `parallel` connections.
  const work: Array<{ table: string; from: number; to: number }> = [];
  for (const { table } of [...SHARES].sort((a, b) => b.share - a.share)) {
    const total = rows[table]!;
    for (let from = 1; from <= total; from += chunkRows)
      work.push({ table, from, to: Math.min(total, from + chunkRows - 1) });
  }
  const done: Record<string, number> = {};
  const worker = async (): Promise<void> => {
    const connection = await connect();
    try {
      await connection.query(`USE ${db}`);
      await connection.query('SET SESSION unique_checks = 0, foreign_key_checks = 0');
      for (let item = work.shift(); item; item = work.shift()) {
        try {
          // Two connections inserting into one table (gap locks on its secondary indexes) can deadlock;
          // InnoDB rolls the losing statement back whole, so running it again is safe.
          for (let attempt = 1; ; attempt++) {
            try {
              await connection.query(insertChunk(item.table, item.from, item.to, rows));
              break;
            } catch (err) {
              if ((err as { errno?: number }).errno !== 1213 || attempt >= 5) throw err;
            }
          }
        } catch (err) {
          throw new Error(
            `generating ${target.database}.${item.table} rows ${item.from}..${item.to}: ${err instanceof Error ? err.message : String(err)}`,
            { cause: err },
          );
        }
        done[item.table] = (done[item.table] ?? 0) + item.to - item.from + 1;
        options.onProgress?.(item.table, done[item.table]!, rows[item.table]!);
      }
    } finally {
      await connection.end();
    }
  };
  const results = await Promise.allSettled(Array.from({ length: parallel }, () => worker()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;

  const finish = await connect();
  try {
    await finish.query(`USE ${db}`);
    for (const statement of OBJECTS) await finish.query(statement);
  } finally {
    await finish.end();
  }
  return { database: target.database, rows, seconds: (performance.now() - started) / 1000 };
}

/**
 * Row counts of every base table of `database`, exact (`SELECT COUNT(*)`), for comparing a restore with
 * its source.
 */
export async function countRows(
  target: Omit<DatasetTarget, 'database'>,
  database: string,
): Promise<Record<string, number>> {
  const connection = await mysql.createConnection({ ...target, charset: 'utf8mb4' });
  try {
    const [tables] = await connection.query(
      "SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
      [database],
    );
    const counts: Record<string, number> = {};
    for (const { name } of tables as Array<{ name: string }>) {
      const [result] = await connection.query(
        `SELECT COUNT(*) AS n FROM \`${database.replace(/`/g, '``')}\`.\`${name.replace(/`/g, '``')}\``,
      );
      counts[name] = Number((result as Array<{ n: number | string }>)[0]!.n);
    }
    return counts;
  } finally {
    await connection.end();
  }
}

/** What {@link tableDigests} computes for one table. */
export interface TableDigest {
  rows: number;
  /** `CHECKSUM TABLE`: exact, FLOAT bits included. */
  checksum: string;
  /**
   * BIT_XOR and SUM of CRC32 over every row's columns as text: FLOAT columns compare as the 6 significant
   * digits MariaDB prints (and mysqldump writes), every other column exactly.
   */
  content: string;
  /** The table's FLOAT columns (where `checksum` may differ after a text dump and reload). */
  floatColumns: string[];
}

/**
 * Digests of every base table of `database`, for comparing a restore with its source: exact (CHECKSUM
 * TABLE) and as text (FLOAT at the precision a logical dump keeps). Reads every row once or twice.
 * @throws the server's error, naming nothing secret.
 */
export async function tableDigests(
  target: Omit<DatasetTarget, 'database'>,
  database: string,
): Promise<Record<string, TableDigest>> {
  const q = (name: string) => '`' + name.replace(/`/g, '``') + '`';
  const connection = await mysql.createConnection({ ...target, charset: 'utf8mb4' });
  try {
    const [columns] = await connection.query(
      `SELECT c.TABLE_NAME AS tableName, c.COLUMN_NAME AS columnName, c.DATA_TYPE AS dataType
         FROM information_schema.COLUMNS c JOIN information_schema.TABLES t
           ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
        WHERE c.TABLE_SCHEMA = ? AND t.TABLE_TYPE = 'BASE TABLE'
        ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION`,
      [database],
    );
    const byTable = new Map<string, Array<{ name: string; type: string }>>();
    for (const c of columns as Array<{ tableName: string; columnName: string; dataType: string }>) {
      const list = byTable.get(c.tableName) ?? [];
      list.push({ name: c.columnName, type: c.dataType.toLowerCase() });
      byTable.set(c.tableName, list);
    }
    const digests: Record<string, TableDigest> = {};
    for (const [table, cols] of byTable) {
      const full = `${q(database)}.${q(table)}`;
      const row = `CONCAT_WS(0x1f, ${cols.map((c) => `ISNULL(${q(c.name)}), ${q(c.name)}`).join(', ')})`;
      const [[content]] = (await connection.query(
        `SELECT COUNT(*) AS n, BIT_XOR(CRC32(${row})) AS x, SUM(CRC32(${row})) AS s FROM ${full}`,
      )) as unknown as [[{ n: number | string; x: unknown; s: unknown }]];
      const [[checksum]] = (await connection.query(`CHECKSUM TABLE ${full}`)) as unknown as [
        [{ Checksum: unknown }],
      ];
      digests[table] = {
        rows: Number(content.n),
        checksum: String(checksum.Checksum),
        content: `${String(content.x)}/${String(content.s)}`,
        floatColumns: cols.filter((c) => c.type === 'float').map((c) => c.name),
      };
    }
    return digests;
  } finally {
    await connection.end();
  }
}
