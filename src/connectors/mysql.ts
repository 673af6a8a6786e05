import type { Duplex } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import type { Connection as CoreConnection, RowDataPacket } from 'mysql2';
import type { Connection as PromiseConnection } from 'mysql2/promise';
import type { MysqlConfig } from '../config/index.ts';
import { InputError, maskSecrets, UnavailableError, type GameopsError } from '../core/index.ts';
import { abortable, describeError, errorCode } from './failures.ts';

/** Driver error codes that mean the configuration is wrong, not that the server is down. */
const INPUT_CODES = new Set(['ER_ACCESS_DENIED_ERROR', 'ER_DBACCESS_DENIED_ERROR', 'ER_BAD_DB_ERROR']);

/** Threads that are not client work: idle sessions, server daemons, replication senders. */
const IDLE_COMMANDS = ['Sleep', 'Daemon', 'Binlog Dump', 'Binlog Dump GTID'] as const;

export type MysqlFlavour = 'MariaDB' | 'MySQL';

export interface MysqlServerVersion {
  /** As the server reports it, e.g. `10.11.19-MariaDB-0+deb12u1`. */
  version: string;
  flavour: MysqlFlavour;
  /** `@@version_comment`, e.g. `Debian 12` or `MySQL Community Server - GPL`. */
  comment: string;
}

/** Counters and gauges from `SHOW GLOBAL STATUS`; a value the server does not report is undefined. */
export interface MysqlGlobalStatus {
  threadsConnected: number | undefined;
  threadsRunning: number | undefined;
  slowQueries: number | undefined;
  uptimeSeconds: number | undefined;
  maxUsedConnections: number | undefined;
}

/** One row of `information_schema.PROCESSLIST`. */
export interface MysqlProcess {
  id: number;
  user: string;
  host: string;
  db: string | null;
  command: string;
  /** Seconds in the current state. */
  time: number;
  state: string | null;
  /** The statement, or null. May hold literals from the application: show it truncated, never log it whole. */
  info: string | null;
}

export interface MysqlQueryOptions {
  signal?: AbortSignal;
  /**
   * Per-query deadline. On expiry (or when `signal` aborts) the socket is destroyed and the statement is
   * stopped on the server (`KILL CONNECTION` from a side connection, waited for up to a few seconds): a
   * dropped socket alone leaves it running.
   * @default 10000
   */
  timeoutMs?: number;
}

export interface MysqlClient {
  /** `host:port` or the socket path, for messages. */
  readonly target: string;
  /** The server's id for this connection (what `CONNECTION_ID()` returns). */
  readonly threadId: number;
  /**
   * False once the connection is closed or destroyed, or the server or the network ended it (a restart,
   * `wait_timeout`, `KILL`): a connection kept between uses is not worth trying then.
   */
  readonly usable: boolean;
  query<T extends RowDataPacket = RowDataPacket>(
    sql: string,
    params?: unknown[],
    options?: MysqlQueryOptions,
  ): Promise<T[]>;
  serverVersion(options?: MysqlQueryOptions): Promise<MysqlServerVersion>;
  /** `SHOW GLOBAL VARIABLES` for the given names; unknown names are absent from the result. */
  globalVariables(names: readonly string[], options?: MysqlQueryOptions): Promise<Record<string, string>>;
  globalStatus(options?: MysqlQueryOptions): Promise<MysqlGlobalStatus>;
  /** Client threads doing work: our own connection and Sleep/Daemon/Binlog Dump threads are left out. */
  processlist(options?: MysqlQueryOptions): Promise<MysqlProcess[]>;
  /**
   * Whether the connected user holds the global PROCESS privilege, without which the process list shows
   * only its own threads. Undefined when it cannot be told (SHOW GRANTS failed).
   */
  hasProcessPrivilege(options?: MysqlQueryOptions): Promise<boolean | undefined>;
  /** Quits politely (bounded to one second), then destroys the socket. Never throws. */
  close(): Promise<void>;
  /** Drops the socket at once. */
  destroy(): void;
}

export interface MysqlConnectOptions {
  signal?: AbortSignal;
  /** Overrides `config.connectTimeout` (milliseconds). */
  connectTimeoutMs?: number;
  /** @default 10000 */
  queryTimeoutMs?: number;
  /**
   * Whether an aborted or timed-out query is killed on the server (see `MysqlQueryOptions.timeoutMs`);
   * false for the side connection that does the killing.
   * @default true
   */
  killOnAbort?: boolean;
}

/** Bounds of stopping an interrupted statement: the side connection, and the wait for its thread to go. */
const KILL_CONNECT_MS = 3000;
const KILL_WAIT_MS = 5000;
const KILL_POLL_MS = 100;

/** What became of an interrupted statement on the server. */
export interface ServerStop {
  /** True when its thread is gone (or never was): the statement no longer runs. */
  stopped: boolean;
  /** For messages: `stopped on the server (KILL CONNECTION 12)`, or why it may still run. */
  text: string;
}

/** How a MySQL config is named in messages: the socket path or `host:port`. */
export function mysqlTarget(config: Pick<MysqlConfig, 'host' | 'port' | 'socketPath'>): string {
  return config.socketPath ?? `${config.host}:${config.port}`;
}

/**
 * Converts a driver error into the gameops taxonomy: access denied / unknown database are InputError
 * (fix the config), everything else UnavailableError. The message names the server and never holds the password.
 */
export function mysqlError(err: unknown, config: MysqlConfig, doing: string): GameopsError {
  const code = errorCode(err);
  const target = `MySQL/MariaDB at ${mysqlTarget(config)}`;
  const message = maskSecrets(`${target}: ${doing} failed: ${describeError(err)}`, [config.password]);
  const details = { target: mysqlTarget(config), ...(code ? { driverCode: code } : {}) };
  if (code && INPUT_CODES.has(code)) return new InputError(message, { details });
  return new UnavailableError(message, { details });
}

/**
 * Opens one connection. The core (callback) driver is used for the handshake so that an abort can destroy a
 * socket whose server accepted TCP but never answers; queries then go through mysql2's promise wrapper.
 * @throws InputError for bad credentials or an unknown database, UnavailableError otherwise.
 */
export async function connectMysql(
  config: MysqlConfig,
  options: MysqlConnectOptions = {},
): Promise<MysqlClient> {
  const target = mysqlTarget(config);
  // The driver loads on the first connection, not with this module: a process that never connects does
  // not pay for it, and one that does loads it while its other work waits on the network.
  const { createConnection } = (await import('mysql2')).default;
  const core = createConnection({
    ...(config.socketPath ? { socketPath: config.socketPath } : { host: config.host, port: config.port }),
    user: config.user,
    password: config.password?.reveal() ?? '',
    database: config.database,
    connectTimeout: options.connectTimeoutMs ?? config.connectTimeout,
    ...(config.tls ? { ssl: {} } : {}),
    // Numbers stay numbers; DECIMAL/BIGINT as strings would break arithmetic on counters.
    supportBigNumbers: true,
    bigNumberStrings: false,
    dateStrings: true,
  });
  // An 'error' event without a listener would crash the process (e.g. the server goes away while idle).
  core.on('error', () => undefined);
  const destroy = (): void => destroyCore(core);
  const connected = new Promise<void>((resolve, reject) => {
    core.once('connect', () => resolve());
    core.once('error', reject);
  });
  try {
    await abortable(`MySQL/MariaDB at ${target}`, connected, options.signal, destroy);
  } catch (err) {
    destroy();
    if (options.signal?.aborted && err === options.signal.reason) throw err;
    throw mysqlError(err, config, 'connect');
  }
  return new Client(
    config,
    core,
    core.promise(),
    options.queryTimeoutMs ?? 10_000,
    options.killOnAbort ?? true,
  );
}

/** Runs `work` with a fresh connection and always closes it, even when `work` throws or the signal aborts. */
export async function withMysql<T>(
  config: MysqlConfig,
  signal: AbortSignal | undefined,
  work: (client: MysqlClient) => Promise<T>,
): Promise<T> {
  const client = await connectMysql(config, signal ? { signal } : {});
  try {
    return await work(client);
  } finally {
    await client.close();
  }
}

/**
 * Stops what thread `threadId` runs: `KILL CONNECTION` from a side connection (same config and user, who
 * may always kill its own threads), then waits up to {@link KILL_WAIT_MS} for the thread to leave the
 * process list (a killed ALTER rolls back first). Never throws: what happened is in the answer.
 */
export async function stopOnServer(config: MysqlConfig, threadId: number): Promise<ServerStop> {
  const method = `KILL CONNECTION ${threadId}`;
  let side: MysqlClient;
  try {
    side = await connectMysql(config, {
      connectTimeoutMs: KILL_CONNECT_MS,
      queryTimeoutMs: KILL_CONNECT_MS,
      killOnAbort: false,
    });
  } catch (err) {
    return {
      stopped: false,
      text: `could not connect to stop it on the server (${describeError(err)}): it may still run as thread ${threadId}`,
    };
  }
  try {
    try {
      await side.query('KILL CONNECTION ?', [threadId]);
    } catch (err) {
      // ER_NO_SUCH_THREAD: it ended (and its connection with it) before the kill.
      if (errorCode(err) !== 'ER_NO_SUCH_THREAD' && !/unknown thread id/i.test(describeError(err)))
        return {
          stopped: false,
          text: `${method} failed (${describeError(err)}): it may still run`,
        };
    }
    for (let waited = 0; ; waited += KILL_POLL_MS) {
      const rows = await side.query(
        'SELECT COMMAND AS command, STATE AS state FROM information_schema.PROCESSLIST WHERE ID = ?',
        [threadId],
      );
      if (rows.length === 0) return { stopped: true, text: `stopped on the server (${method})` };
      if (waited >= KILL_WAIT_MS)
        return {
          stopped: false,
          text: `thread ${threadId} is still there ${KILL_WAIT_MS} ms after ${method} (${String(rows[0]?.['command'] ?? '')} ${String(rows[0]?.['state'] ?? '')}): it may still run or roll back`,
        };
      await delay(KILL_POLL_MS);
    }
  } catch (err) {
    return { stopped: false, text: `checking ${method} failed (${describeError(err)}): it may still run` };
  } finally {
    await side.close();
  }
}

function destroyCore(core: CoreConnection): void {
  core.destroy();
  // destroy() only half-closes (stream.end()); a server that never answers would keep the socket, and the
  // Node process, alive. Destroy the stream itself.
  const stream = (core as unknown as { stream?: Duplex }).stream;
  stream?.destroy();
}

class Client implements MysqlClient {
  readonly target: string;
  readonly threadId: number;
  readonly #config: MysqlConfig;
  readonly #core: CoreConnection;
  readonly #conn: PromiseConnection;
  readonly #timeoutMs: number;
  readonly #killOnAbort: boolean;
  /** Aborted when the connection is closed or destroyed, so that no query promise is left pending. */
  readonly #lifetime = new AbortController();
  #closed = false;
  /** The server or the network ended the connection. */
  #ended = false;

  constructor(
    config: MysqlConfig,
    core: CoreConnection,
    conn: PromiseConnection,
    timeoutMs: number,
    killOnAbort: boolean,
  ) {
    this.target = mysqlTarget(config);
    this.threadId = core.threadId;
    this.#config = config;
    this.#core = core;
    this.#conn = conn;
    this.#timeoutMs = timeoutMs;
    this.#killOnAbort = killOnAbort;
    const ended = (): void => {
      this.#ended = true;
    };
    core.on('end', ended);
    core.on('error', ended);
  }

  get usable(): boolean {
    return !this.#closed && !this.#ended;
  }

  async query<T extends RowDataPacket = RowDataPacket>(
    sql: string,
    params?: unknown[],
    options: MysqlQueryOptions = {},
  ): Promise<T[]> {
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const deadline = AbortSignal.timeout(timeoutMs);
    const signals = [deadline, this.#lifetime.signal, ...(options.signal ? [options.signal] : [])];
    const what = `MySQL/MariaDB at ${this.target}`;
    try {
      const [rows] = await abortable(what, this.#conn.query<T[]>(sql, params), AbortSignal.any(signals), () =>
        this.destroy(),
      );
      return rows;
    } catch (err) {
      const callerAborted = options.signal?.aborted === true && err === options.signal.reason;
      if (callerAborted || deadline.aborted) {
        // The socket is gone, the statement is not: stop it before saying it stopped.
        const stop = this.#killOnAbort
          ? await stopOnServer(this.#config, this.threadId)
          : { stopped: false, text: 'not stopped on the server' };
        if (callerAborted) throw err;
        throw new UnavailableError(
          `${what}: query did not answer within ${timeoutMs} ms; ${stop.text}; whether it took effect is unknown`,
          {
            details: { target: this.target, timeoutMs, serverStopped: stop.stopped, outcome: 'unknown' },
          },
        );
      }
      if (this.#lifetime.signal.aborted)
        throw new UnavailableError(`${what}: connection closed while the query ran`, {
          details: { target: this.target },
        });
      throw mysqlError(err, this.#config, 'query');
    }
  }

  async serverVersion(options?: MysqlQueryOptions): Promise<MysqlServerVersion> {
    const rows = await this.query('SELECT VERSION() AS version, @@version_comment AS comment', [], options);
    const version = String(rows[0]?.['version'] ?? 'unknown');
    const comment = String(rows[0]?.['comment'] ?? '');
    return { version, comment, flavour: mysqlFlavour(version, comment) };
  }

  async globalVariables(
    names: readonly string[],
    options?: MysqlQueryOptions,
  ): Promise<Record<string, string>> {
    if (names.length === 0) return {};
    const rows = await this.query(
      `SHOW GLOBAL VARIABLES WHERE Variable_name IN (${names.map(() => '?').join(', ')})`,
      [...names],
      options,
    );
    return variableRows(rows);
  }

  async globalStatus(options?: MysqlQueryOptions): Promise<MysqlGlobalStatus> {
    const names = ['Threads_connected', 'Threads_running', 'Slow_queries', 'Uptime', 'Max_used_connections'];
    const rows = await this.query(
      `SHOW GLOBAL STATUS WHERE Variable_name IN (${names.map(() => '?').join(', ')})`,
      names,
      options,
    );
    const status = variableRows(rows);
    const num = (name: string): number | undefined => toNumber(status[name]);
    return {
      threadsConnected: num('Threads_connected'),
      threadsRunning: num('Threads_running'),
      slowQueries: num('Slow_queries'),
      uptimeSeconds: num('Uptime'),
      maxUsedConnections: num('Max_used_connections'),
    };
  }

  async processlist(options?: MysqlQueryOptions): Promise<MysqlProcess[]> {
    const rows = await this.query(
      `SELECT ID AS id, USER AS user, HOST AS host, DB AS db, COMMAND AS command, TIME AS time,
              STATE AS state, INFO AS info
         FROM information_schema.PROCESSLIST
        WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN (${IDLE_COMMANDS.map(() => '?').join(', ')})
        ORDER BY TIME DESC`,
      [...IDLE_COMMANDS],
      options,
    );
    return rows.map((row) => ({
      id: toNumber(row['id']) ?? 0,
      user: String(row['user'] ?? ''),
      host: String(row['host'] ?? ''),
      db: nullableString(row['db']),
      command: String(row['command'] ?? ''),
      time: toNumber(row['time']) ?? 0,
      state: nullableString(row['state']),
      info: nullableString(row['info']),
    }));
  }

  async hasProcessPrivilege(options?: MysqlQueryOptions): Promise<boolean | undefined> {
    let grants: string[];
    try {
      const rows = await this.query('SHOW GRANTS', [], options);
      grants = rows.flatMap((row) => Object.values(row).filter((v): v is string => typeof v === 'string'));
    } catch (err) {
      if (options?.signal?.aborted && err === options.signal.reason) throw err;
      return undefined;
    }
    if (grantsIncludeProcess(grants)) return true;
    // SHOW GRANTS does not expand roles on MySQL 8 (MariaDB lists the enabled role's grants). Ask the server
    // what it actually allows: SHOW ENGINE ... STATUS requires PROCESS on both, and is refused without it.
    try {
      await this.query('SHOW ENGINE INNODB STATUS', [], options);
      return true;
    } catch (err) {
      if (options?.signal?.aborted && err === options.signal.reason) throw err;
      return false;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.#conn.end(),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, 1000);
        }),
      ]);
    } catch {
      // Already closed or broken: destroying below is all that is left to do.
    } finally {
      clearTimeout(timer);
      this.destroy();
    }
  }

  destroy(): void {
    this.#closed = true;
    destroyCore(this.#core);
    this.#lifetime.abort();
  }
}

/**
 * Whether `SHOW GRANTS` lines grant PROCESS globally: a `GRANT … ON *.* TO …` whose privilege list holds
 * PROCESS, ALL or ALL PRIVILEGES (MariaDB and MySQL 5.7 print ALL PRIVILEGES; MySQL 8 lists every global
 * privilege). Role assignments (`GRANT role TO user`) and grants on one schema do not count. Pure.
 */
export function grantsIncludeProcess(grants: readonly string[]): boolean {
  return grants.some((line) => {
    const match = /^\s*GRANT\s+(.+?)\s+ON\s+\*\.\*\s+TO\s/i.exec(line);
    if (!match?.[1]) return false;
    return match[1]
      .split(',')
      .map((privilege) => privilege.trim().replace(/\s+/g, ' ').toUpperCase())
      .some((privilege) => privilege === 'PROCESS' || privilege === 'ALL' || privilege === 'ALL PRIVILEGES');
  });
}

/** MariaDB says so in its version string (`10.11.6-MariaDB-log`) or comment; everything else is MySQL. */
export function mysqlFlavour(version: string, comment = ''): MysqlFlavour {
  return /mariadb/i.test(version) || /mariadb/i.test(comment) ? 'MariaDB' : 'MySQL';
}

function variableRows(rows: RowDataPacket[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const row of rows) {
    const name = row['Variable_name'] as unknown;
    if (typeof name === 'string') out[name] = String(row['Value'] ?? '');
  }
  return out;
}

function toNumber(value: unknown): number | undefined {
  if (value === null || value === undefined || value === '') return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

function nullableString(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  return null;
}
