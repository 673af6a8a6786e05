/**
 * Sessions in MySQL and presence in Redis, written in batches off the tick loop.
 *
 * The game calls the record methods (synchronous, O(1)); every 250 ms what accumulated is written: the
 * session rows as multi-row upserts to MySQL, the presence and saved positions as one Redis pipeline. The
 * two are independent (a hung MySQL does not stop presence, and the other way round), every query and
 * pipeline has a deadline (a MySQL connection that stops answering is destroyed and a new one is made),
 * and a slow or down database never stalls a tick: writes wait in memory, bounded per queue (the oldest
 * are dropped and counted past the bound), and are retried at the next flush. Failures and flushes that
 * run too long are logged at ERROR and counted in `game_errors_total{kind="persistence"}`.
 */
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import type { Pool, PoolConnection } from 'mysql2/promise';
import type { GameServerConfig } from './config.ts';
import type { Logger } from './log.ts';
import type { GameMetrics } from './metrics.ts';

export type EndReason = 'leave' | 'disconnect' | 'drain' | 'kicked' | 'shutdown' | 'replaced';

/** Presence keys live this long unless refreshed. */
export const PRESENCE_TTL_SECONDS = 60;
/** Presence of every online player is refreshed this often. */
export const PRESENCE_REFRESH_MS = 20_000;
export const FLUSH_INTERVAL_MS = 250;
/** Writes kept per queue (session rows; Redis changes) while a database is unreachable; older ones are
 * dropped beyond this (and counted). */
export const MAX_PENDING = 100_000;
/** Default deadline of one MySQL query or Redis pipeline (`GAME_MYSQL_QUERY_TIMEOUT_MS`). */
export const DEFAULT_PERSISTENCE_TIMEOUT_MS = 5000;
/** Rows per INSERT statement. */
const ROWS_PER_STATEMENT = 1000;
const CONNECT_TIMEOUT_MS = 5000;

const CREATE_TABLE = `CREATE TABLE IF NOT EXISTS player_sessions (
  id CHAR(36) NOT NULL PRIMARY KEY,
  player VARCHAR(32) NOT NULL,
  instance VARCHAR(63) NOT NULL,
  version VARCHAR(128) NOT NULL,
  started_at DATETIME(3) NOT NULL,
  ended_at DATETIME(3) NULL,
  end_reason VARCHAR(16) NULL,
  KEY player_sessions_player (player),
  KEY player_sessions_open (instance, ended_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`;

/** Deletes a presence key only while it still names this instance (the player may have moved on). */
const DELETE_IF_OURS = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

interface SessionRow {
  id: string;
  player: string;
  startedAt: Date;
  endedAt: Date | null;
  endReason: EndReason | null;
}

type RedisOp =
  | { kind: 'present'; player: string }
  | { kind: 'absent'; player: string }
  | {
      kind: 'save';
      player: string;
      x: number;
      y: number;
      at: Date;
      /** Told true once written, false when dropped (queue full) or still unwritten at exit. */
      done: (written: boolean) => void;
    };

/** Short description of a driver error: its code in words when it is a socket error. */
export function describeDriverError(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  const words: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ETIMEDOUT: 'connection timed out',
    ENOTFOUND: 'host not found',
    ENOENT: 'socket file not found',
    ECONNRESET: 'connection reset',
    PROTOCOL_CONNECTION_LOST: 'connection lost',
  };
  if (typeof code === 'string' && words[code]) return `${words[code]} (${code})`;
  if (err instanceof AggregateError && err.errors[0] !== undefined) return describeDriverError(err.errors[0]);
  const message = err instanceof Error ? err.message : String(err);
  return message || (typeof code === 'string' ? code : 'unknown error');
}

/** A query or pipeline that got no answer within its deadline. */
export class PersistenceTimeoutError extends Error {
  override readonly name = 'PersistenceTimeoutError';
}

/** A dependency could not be reached at start. */
export class DependencyError extends Error {
  override readonly name = 'DependencyError';
}

async function within<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DependencyError(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Connects to MySQL, proves it answers and creates `player_sessions`. @throws DependencyError */
export async function connectMysql(config: GameServerConfig['mysql']): Promise<Pool> {
  const where = config.socketPath ?? `${config.host}:${config.port}`;
  const pool = mysql.createPool({
    ...(config.socketPath ? { socketPath: config.socketPath } : { host: config.host, port: config.port }),
    user: config.user,
    password: config.password,
    database: config.database,
    connectionLimit: 2,
    connectTimeout: CONNECT_TIMEOUT_MS,
    timezone: 'Z',
    enableKeepAlive: true,
  });
  try {
    // The driver's own connect timeout normally answers first; this is the backstop for a stuck query.
    await within(CONNECT_TIMEOUT_MS + 1000, `MySQL at ${where}`, pool.query(CREATE_TABLE));
    return pool;
  } catch (err) {
    await pool.end().catch(() => undefined);
    if (err instanceof DependencyError) throw err;
    throw new DependencyError(
      `cannot use MySQL at ${where} (database ${config.database}): ${describeDriverError(err)}`,
    );
  }
}

/** Connects to Redis and proves it answers. @throws DependencyError */
export async function connectRedis(config: GameServerConfig['redis']): Promise<Redis> {
  const where = `${config.host}:${config.port}`;
  const redis = new Redis({
    host: config.host,
    port: config.port,
    ...(config.password !== undefined ? { password: config.password } : {}),
    keyPrefix: config.keyPrefix,
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: 2000,
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
  });
  let lastError: unknown;
  redis.on('error', (err: unknown) => {
    lastError = err;
  });
  try {
    await within(
      CONNECT_TIMEOUT_MS,
      `Redis at ${where}`,
      redis.connect().then(() => redis.ping()),
    );
    redis.defineCommand('delIfOurs', { numberOfKeys: 1, lua: DELETE_IF_OURS });
    return redis;
  } catch (err) {
    redis.disconnect();
    const cause = lastError ?? err;
    if (err instanceof DependencyError && lastError === undefined) throw err;
    throw new DependencyError(`cannot use Redis at ${where}: ${describeDriverError(cause)}`);
  }
}

export interface PersistenceOptions {
  pool: Pool;
  redis: Redis;
  instance: string;
  version: string;
  log: Logger;
  metrics: GameMetrics;
  /** Players online now, for presence refreshes. */
  onlinePlayers: () => Iterable<string>;
  /** Deadline of one MySQL query or Redis pipeline; a flush running longer is reported. @default 5000 */
  timeoutMs?: number;
  /** Writes kept per queue. @default {@link MAX_PENDING} */
  maxPending?: number;
  now?: () => Date;
}

/** One independent writer (MySQL or Redis): at most one flush at a time. */
interface Lane {
  readonly name: 'MySQL' | 'Redis';
  running: Promise<void> | undefined;
  /** `Date.now()` when the running flush started. */
  startedAt: number;
  /** Writes in the batch being written now. */
  inFlight: number;
  /** The running flush has already been reported as slow. */
  slowReported: boolean;
}

const INSERT_SESSIONS = `INSERT INTO player_sessions (id, player, instance, version, started_at, ended_at, end_reason)
  VALUES ? ON DUPLICATE KEY UPDATE
    ended_at = COALESCE(VALUES(ended_at), ended_at),
    end_reason = COALESCE(VALUES(end_reason), end_reason)`;

export class Persistence {
  readonly #o: PersistenceOptions;
  readonly #now: () => Date;
  readonly #timeoutMs: number;
  readonly #maxPending: number;
  /** Pending session writes by id: a start and an end in the same window become one row. */
  #sessions = new Map<string, SessionRow>();
  #redisOps: RedisOp[] = [];
  readonly #mysql: Lane = {
    name: 'MySQL',
    running: undefined,
    startedAt: 0,
    inFlight: 0,
    slowReported: false,
  };
  readonly #redis: Lane = {
    name: 'Redis',
    running: undefined,
    startedAt: 0,
    inFlight: 0,
    slowReported: false,
  };
  #flushTimer: NodeJS.Timeout | undefined;
  #refreshTimer: NodeJS.Timeout | undefined;
  #lastErrorLog = new Map<string, number>();
  #suppressed = new Map<string, number>();

  constructor(options: PersistenceOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => new Date());
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_PERSISTENCE_TIMEOUT_MS;
    this.#maxPending = options.maxPending ?? MAX_PENDING;
  }

  start(): void {
    this.#flushTimer = setInterval(() => {
      void this.#flushMysql();
      void this.#flushRedis();
      this.#watch(this.#mysql);
      this.#watch(this.#redis);
    }, FLUSH_INTERVAL_MS);
    this.#refreshTimer = setInterval(() => {
      for (const player of this.#o.onlinePlayers()) this.#redisOps.push({ kind: 'present', player });
      this.#trimRedis();
      this.#updateGauge();
    }, PRESENCE_REFRESH_MS);
  }

  /** Writes waiting for their flush (not counting the batches being written now). */
  get pending(): number {
    return this.#sessions.size + this.#redisOps.length;
  }

  /**
   * Writes not yet in MySQL or Redis: waiting plus being written (`pendingWrites` in `/ops/status`). A
   * player who left is only safe once this is 0: gameops waits for it before a maintenance backup.
   */
  pendingWrites(): number {
    return this.pending + this.#mysql.inFlight + this.#redis.inFlight;
  }

  sessionStarted(id: string, player: string, startedAt: Date): void {
    this.#sessions.set(id, { id, player, startedAt, endedAt: null, endReason: null });
    this.#redisOps.push({ kind: 'present', player });
    this.#trimSessions();
    this.#trimRedis();
  }

  sessionEnded(session: { id: string; player: string; startedAt: Date }, reason: EndReason, at: Date): void {
    const pending = this.#sessions.get(session.id);
    if (pending) {
      pending.endedAt = at;
      pending.endReason = reason;
    } else {
      this.#sessions.set(session.id, { ...session, endedAt: at, endReason: reason });
    }
    this.#redisOps.push({ kind: 'absent', player: session.player });
    this.#trimSessions();
    this.#trimRedis();
  }

  /** Saves a player's position (restored at the next login). */
  savePlayer(player: string, x: number, y: number): Promise<boolean> {
    return new Promise<boolean>((done) => {
      this.#redisOps.push({ kind: 'save', player, x, y, at: this.#now(), done });
      this.#trimRedis();
    });
  }

  /** The saved position, or undefined (none saved, or Redis did not answer: the player spawns anew). */
  async loadPlayer(player: string): Promise<{ x: number; y: number } | undefined> {
    try {
      const saved = await this.#o.redis.hmget(`player:${player}`, 'x', 'y');
      const x = Number(saved[0]);
      const y = Number(saved[1]);
      if (saved[0] == null || saved[1] == null || !Number.isFinite(x) || !Number.isFinite(y))
        return undefined;
      return { x, y };
    } catch (err) {
      this.#error('load', `could not load the saved position of a player: ${describeDriverError(err)}`);
      return undefined;
    }
  }

  /** Writes what is pending now to both stores (a store already flushing is waited for, not started again). */
  async flush(): Promise<void> {
    await Promise.all([this.#flushMysql(), this.#flushRedis()]);
  }

  #flushMysql(): Promise<void> {
    this.#updateGauge();
    if (this.#mysql.running) return this.#mysql.running;
    if (this.#sessions.size === 0) return Promise.resolve();
    const rows = [...this.#sessions.values()];
    this.#sessions = new Map();
    return this.#run(this.#mysql, rows.length, () => this.#writeSessions(rows));
  }

  #flushRedis(): Promise<void> {
    this.#updateGauge();
    if (this.#redis.running) return this.#redis.running;
    if (this.#redisOps.length === 0) return Promise.resolve();
    const ops = this.#redisOps;
    this.#redisOps = [];
    return this.#run(this.#redis, ops.length, () => this.#writeRedis(ops));
  }

  #run(lane: Lane, writes: number, work: () => Promise<void>): Promise<void> {
    lane.inFlight = writes;
    lane.startedAt = Date.now();
    lane.slowReported = false;
    lane.running = work().finally(() => {
      lane.running = undefined;
      lane.inFlight = 0;
      this.#updateGauge();
    });
    this.#updateGauge();
    return lane.running;
  }

  /** Reports (once per flush) a flush that has run longer than the deadline of one query. */
  #watch(lane: Lane): void {
    if (!lane.running || lane.slowReported) return;
    const runningMs = Date.now() - lane.startedAt;
    if (runningMs <= this.#timeoutMs) return;
    lane.slowReported = true;
    this.#error(
      `${lane.name}-slow`,
      `${lane.name} flush of ${lane.inFlight} writes still running after ${runningMs} ms`,
    );
  }

  async #writeSessions(rows: SessionRow[]): Promise<void> {
    for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) {
      const chunk = rows.slice(i, i + ROWS_PER_STATEMENT);
      try {
        const values = chunk.map((r) => [
          r.id,
          r.player,
          this.#o.instance,
          this.#o.version,
          r.startedAt,
          r.endedAt,
          r.endReason,
        ]);
        await this.#query(INSERT_SESSIONS, [values]);
      } catch (err) {
        this.#error(
          'mysql',
          `could not write ${rows.length - i} session rows to MySQL (kept for retry): ${describeDriverError(err)}`,
        );
        // Put them back unless a newer write for the same session arrived meanwhile (it has the end).
        // They are older than anything that arrived meanwhile, so they go first (dropped first when full).
        const kept = new Map<string, SessionRow>();
        for (const row of rows.slice(i)) {
          const newer = this.#sessions.get(row.id);
          kept.set(row.id, newer && !(newer.endedAt === null && row.endedAt !== null) ? newer : row);
        }
        for (const [id, row] of this.#sessions) if (!kept.has(id)) kept.set(id, row);
        this.#sessions = kept;
        this.#trimSessions();
        return;
      }
    }
  }

  /**
   * One query on a connection of its own, abandoned after the deadline: the connection is destroyed (a
   * hung server would otherwise keep it, and every later query queued behind it), so the pool makes a new
   * one for the next attempt. The upsert is idempotent, so a query that did land is safe to repeat.
   */
  async #query(sql: string, values: unknown[]): Promise<void> {
    const ms = this.#timeoutMs;
    let abandoned = false;
    let connection: PoolConnection | undefined;
    let timer: NodeJS.Timeout | undefined;
    const work = (async () => {
      const got = await this.#o.pool.getConnection();
      if (abandoned) {
        // Connected after the deadline: healthy as far as anyone knows; back to the pool.
        got.release();
        return;
      }
      connection = got;
      try {
        await got.query(sql, values);
      } finally {
        if (!abandoned) got.release();
      }
    })();
    work.catch(() => undefined); // settles after the deadline, if ever: nobody waits for it then
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        abandoned = true;
        connection?.destroy();
        reject(new PersistenceTimeoutError(`no answer within ${ms} ms (connection dropped)`));
      }, ms);
    });
    try {
      await Promise.race([work, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #writeRedis(ops: RedisOp[]): Promise<void> {
    const redis = this.#o.redis;
    const pipeline = redis.pipeline();
    for (const op of ops) {
      switch (op.kind) {
        case 'present':
          pipeline.set(`presence:${op.player}`, this.#o.instance, 'EX', PRESENCE_TTL_SECONDS);
          break;
        case 'absent':
          (pipeline as unknown as { delIfOurs(key: string, value: string): void }).delIfOurs(
            `presence:${op.player}`,
            this.#o.instance,
          );
          break;
        case 'save':
          pipeline.hset(`player:${op.player}`, 'x', op.x, 'y', op.y, 'savedAt', op.at.toISOString());
          break;
      }
    }
    try {
      // ioredis times each command out itself (commandTimeout); this is the backstop for the batch.
      const results = await within(this.#timeoutMs + 1000, 'Redis pipeline', pipeline.exec()).catch(
        (err: unknown) => {
          throw err instanceof DependencyError ? new PersistenceTimeoutError(err.message) : err;
        },
      );
      const failed = (results ?? []).find(([err]) => err !== null);
      if (failed?.[0]) throw failed[0];
      for (const op of ops) if (op.kind === 'save') op.done(true);
    } catch (err) {
      this.#error(
        'redis',
        `could not write ${ops.length} presence/state changes to Redis (kept for retry): ${describeDriverError(err)}`,
      );
      this.#redisOps = [...ops, ...this.#redisOps];
      this.#trimRedis();
    }
  }

  /** Drops the oldest session rows past the bound (counted as persistence errors). */
  #trimSessions(): void {
    const over = this.#sessions.size - this.#maxPending;
    if (over <= 0) return;
    let left = over;
    for (const id of this.#sessions.keys()) {
      if (left-- <= 0) break;
      this.#sessions.delete(id);
    }
    this.#error('overflow-mysql', `session queue full: dropped the ${over} oldest session rows`, over);
  }

  /** Drops the oldest Redis changes past the bound (counted as persistence errors). */
  #trimRedis(): void {
    const over = this.#redisOps.length - this.#maxPending;
    if (over <= 0) return;
    for (const op of this.#redisOps.splice(0, over)) if (op.kind === 'save') op.done(false);
    this.#error(
      'overflow-redis',
      `Redis queue full: dropped the ${over} oldest presence/state changes`,
      over,
    );
  }

  /** Waiting writes, the batches being written included. */
  #updateGauge(): void {
    this.#o.metrics.persistenceQueue.set(this.pendingWrites());
  }

  /** Logs at ERROR and counts, at most one line per kind every 10 s (with how many were suppressed). */
  #error(kind: string, message: string, count = 1): void {
    this.#o.metrics.errors.inc({ kind: 'persistence' }, count);
    const now = this.#now().getTime();
    const last = this.#lastErrorLog.get(kind) ?? 0;
    if (now - last < 10_000) {
      this.#suppressed.set(kind, (this.#suppressed.get(kind) ?? 0) + 1);
      return;
    }
    const suppressed = this.#suppressed.get(kind) ?? 0;
    this.#suppressed.set(kind, 0);
    this.#lastErrorLog.set(kind, now);
    this.#o.log.error({ kind, suppressed }, message);
  }

  /** Stops the timers, flushes what is pending (bounded by `timeoutMs`) and closes the connections. */
  async close(timeoutMs = 5000): Promise<void> {
    clearInterval(this.#flushTimer);
    clearInterval(this.#refreshTimer);
    const deadline = Date.now() + timeoutMs;
    const unwritten = (): number => this.pendingWrites();
    // A failed flush keeps its writes; try again until the deadline.
    while (unwritten() > 0 && Date.now() < deadline) {
      await within(Math.max(1, deadline - Date.now()), 'final flush', this.flush()).catch(() => undefined);
      if (unwritten() > 0) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    for (const op of this.#redisOps) if (op.kind === 'save') op.done(false);
    if (unwritten() > 0)
      this.#o.log.error(
        { pending: unwritten() },
        `exiting with ${unwritten()} session/presence writes not flushed`,
      );
    // A database that stopped answering must not hold the exit.
    await within(1000, 'closing MySQL', this.#o.pool.end()).catch(() => undefined);
    this.#o.redis.disconnect();
  }
}
