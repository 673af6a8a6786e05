/**
 * Set-up of the maintenance end-to-end test (issue #7): a gameops.yaml around a local fleet of reference
 * game servers (versions 1.0.0, 1.1.0 and `broken`, which points its MySQL at a closed port and so exits
 * at start), gameops's own game database on the harness's MariaDB (a RANGE-partitioned `game_logs` with
 * partitions past retention, `player_sessions` with stale rows), backups to the filesystem, Alertmanager,
 * a webhook channel for the completion notice, and maintenance settings short enough for a test.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { backupKey } from '../support/backups.ts';
import { writeReferenceFleetConfig } from '../support/fleet.ts';
import { closedPort, services, startAlertmanager } from '../harness/index.ts';

export interface MaintenanceSetup {
  path: string;
  dir: string;
  dataDir: string;
  basePort: number;
  /** gameops's game database (`mysql.database`). */
  database: string;
  /** The reference game servers' own database (their player_sessions: who left how). */
  gameDatabase: string;
  /** The filesystem backup storage. */
  storage: string;
  /** Partitions of game_logs past retention (archived then dropped by task db). */
  oldPartitions: string[];
  /** Messages the webhook channel received. */
  notices: string[];
  /**
   * This run's own Alertmanager: a maintenance window silences every alert by default, which would
   * silence the alerts other test files expect active on the shared one.
   */
  alertmanagerUrl: string;
  close(): Promise<void>;
}

/** `p_2026_07` for the month `offset` months from now (UTC). */
function monthPartition(now: Date, offset: number): { name: string; below: string } {
  const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));
  const next = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1));
  const name = `p_${d.getUTCFullYear()}_${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
  return { name, below: next.toISOString().slice(0, 10) };
}

/** The game database: game_logs by month (two months past a 2-month retention hold rows), stale sessions. */
async function createGameDatabase(database: string): Promise<string[]> {
  const { mariadb } = services();
  const root = await mysql.createConnection({
    socketPath: mariadb.socketPath,
    user: 'root',
    password: mariadb.password,
    multipleStatements: false,
  });
  try {
    await root.query(`CREATE DATABASE \`${database}\``);
    await root.query(`USE \`${database}\``);
    const now = new Date();
    const months = [-5, -4, -1, 0].map((m) => monthPartition(now, m));
    const parts = months.map((p) => `PARTITION ${p.name} VALUES LESS THAN (TO_DAYS('${p.below}'))`);
    await root.query(
      `CREATE TABLE game_logs (id BIGINT NOT NULL AUTO_INCREMENT, created_at DATETIME NOT NULL,
         player_id INT NOT NULL, message VARCHAR(200) NOT NULL, PRIMARY KEY (id, created_at))
       ENGINE=InnoDB PARTITION BY RANGE (TO_DAYS(created_at)) (${parts.join(', ')},
         PARTITION pmax VALUES LESS THAN MAXVALUE)`,
    );
    // 200 rows in each of the two old months, 50 in the recent ones.
    for (const [offset, rows] of [
      [-5, 200],
      [-4, 200],
      [-1, 50],
      [0, 50],
    ] as const) {
      const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));
      await root.query(
        `INSERT INTO game_logs (created_at, player_id, message)
         SELECT ? + INTERVAL (seq % 20) DAY + INTERVAL seq MINUTE, seq, CONCAT('event ', seq) FROM seq_1_to_${rows}`,
        [first.toISOString().slice(0, 19).replace('T', ' ')],
      );
    }
    await root.query(
      `CREATE TABLE player_sessions (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, player_id INT NOT NULL,
         last_activity DATETIME NOT NULL, KEY (last_activity)) ENGINE=InnoDB`,
    );
    // 120 sessions idle for 60 days, 30 from today.
    await root.query(
      `INSERT INTO player_sessions (player_id, last_activity)
       SELECT seq, IF(seq <= 120, UTC_TIMESTAMP() - INTERVAL 60 DAY, UTC_TIMESTAMP()) FROM seq_1_to_150`,
    );
    return months.slice(0, 2).map((p) => p.name);
  } finally {
    await root.end();
  }
}

/** Everything the maintenance e2e runs against; `close` stops the webhook receiver (the fleet is the test's). */
export async function setUpMaintenance(): Promise<MaintenanceSetup> {
  const notices: string[] = [];
  const receiver: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      notices.push(body);
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const hookPort = (receiver.address() as AddressInfo).port;

  const written = await writeReferenceFleetConfig({
    prefix: 'maint',
    versions: ['1.0.0', '1.1.0', 'broken'],
    rolloutTimeout: '60s',
  });
  const { dir, path } = written;
  // `broken` cannot reach its database and exits at start: it never becomes ready.
  const deadPort = await closedPort();
  const text = readFileSync(path, 'utf8')
    .replace(
      /("broken": \{ command: .*?), cwd: (".*?") \}/,
      `$1, cwd: $2, env: { GAME_MYSQL_PORT: "${deadPort}" } }`,
    )
    .replace('readinessTimeout: 30s', 'readinessTimeout: 10s')
    // Tick lag of a game server started a second ago on a busy test machine says nothing about the
    // game: the health gate must judge what maintenance did, not this machine's load.
    .replace('requestTimeout: 5s }', 'requestTimeout: 5s, tickBudgetMs: 1000 }');
  if (!text.includes(`GAME_MYSQL_PORT: "${deadPort}"`) || !text.includes('tickBudgetMs'))
    throw new Error('the reference fleet config changed: version broken or the tick budget not set');
  writeFileSync(path, text);
  const gameDatabase = /GAME_MYSQL_DATABASE: (\S+)/.exec(text)?.[1];
  if (gameDatabase === undefined) throw new Error('the reference fleet config names no game database');

  const database = `maint_${randomBytes(4).toString('hex')}`;
  const oldPartitions = await createGameDatabase(database);
  const { mariadb } = services();
  const alertmanager = await startAlertmanager();
  const key = await backupKey();
  writeFileSync(join(dir, 'backup.key'), `${key.identity}\n`, { mode: 0o600 });
  const storage = join(dir, 'backups');
  appendFileSync(
    path,
    [
      `mysql: { host: ${mariadb.host}, port: ${mariadb.port}, user: root, password: "file:${join(dir, 'game-mysql-password')}", database: ${database} }`,
      `alertmanager: { url: "${alertmanager.url}" }`,
      `checks: { timeout: 10s, thresholds: { disk: { paths: ["${dir}"] } } }`,
      'backups:',
      `  storage: { kind: filesystem, path: ${storage} }`,
      `  encryption: { recipients: [${key.recipient}], identity: "file:${join(dir, 'backup.key')}" }`,
      '  kubernetes: { enabled: false }',
      'notifications:',
      '  allowPrivate: ["127.0.0.1"]',
      `  channels: [{ name: ops, kind: webhook, url: "http://127.0.0.1:${hookPort}/hook" }]`,
      'maintenance:',
      '  drain: { deadline: 5s, kickNotice: 2 }',
      '  silence: { after: 5m }',
      '  notices: { channels: [ops] }',
      '  db:',
      '    partitions: [{ table: game_logs, unit: month, ahead: 1, retain: 2 }]',
      '    purge: [{ table: player_sessions, column: last_activity, olderThan: 30d }]',
      '',
    ].join('\n'),
  );
  return {
    path,
    dir,
    dataDir: written.dataDir,
    basePort: written.basePort,
    database,
    gameDatabase,
    storage,
    oldPartitions,
    notices,
    alertmanagerUrl: alertmanager.url,
    close: async () => {
      await new Promise<void>((r) => receiver.close(() => r()));
      await alertmanager.stop();
    },
  };
}

/** Rows of a query on gameops's game database. */
export async function query<T>(database: string, sql: string, values: unknown[] = []): Promise<T[]> {
  const { mariadb } = services();
  const c = await mysql.createConnection({
    socketPath: mariadb.socketPath,
    user: 'root',
    password: mariadb.password,
    database,
  });
  try {
    const [rows] = await c.query(sql, values);
    return rows as T[];
  } finally {
    await c.end();
  }
}
