/**
 * Sessions in MySQL and presence in Redis, written in batches off the tick loop.
 *
 * The game calls the record methods (synchronous, O(1)); a flush every 250 ms turns what accumulated into
 * one multi-row upsert and one Redis pipeline. A slow or down database therefore never stalls a tick:
 * writes wait in memory (bounded) and are retried at the next flush.
 */
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import type { Pool, ResultSetHeader } from 'mysql2/promise';
import type { GameServerConfig } from './config.ts';
import type { Logger } from './log.ts';
import type { GameMetrics } from './metrics.ts';

export type EndReason = 'leave' | 'disconnect' | 'drain' | 'kicked' | 'shutdown';

/** Presence keys live this long unless refreshed. */
export const PRESENCE_TTL_SECONDS = 60;
/** Presence of every online player is refreshed this often. */
export const PRESENCE_REFRESH_MS = 20_000;
export const FLUSH_INTERVAL_MS = 250;
/** Writes kept while the database is unreachable; older ones are dropped beyond this (and counted). */
const MAX_PENDING = 100_000;
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
  | { kind: 'save'; player: string; x: number; y: number; at: Date };

/** Short description of a driver error: its code in words when it is a socket error. */
export function describeDriverError(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  const words: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ETIMEDOUT: 'connection timed out',
    ENOTFOUND: 'host not found',
    ENOENT: 'socket file not found',
    ECONNRESET: 'connection reset',
  };
  if (typeof code === 'string' && words[code]) return `${words[code]} (${code})`;
  if (err instanceof AggregateError && err.errors[0] !== undefined) return describeDriverError(err.errors[0]);
  const message = err instanceof Error ? err.message : String(err);
  return message || (typeof code === 'string' ? code : 'unknown error');
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
  now?: () => Date;
}

export class Persistence {
  readonly #o: PersistenceOptions;
  readonly #now: () => Date;
  /** Pending session writes by id: a start and an end in the same window become one row. */
  #sessions = new Map<string, SessionRow>();
  #redisOps: RedisOp[] = [];
  #flushing: Promise<void> | undefined;
  /** Writes in the batch being written now. */
  #inFlight = 0;
  #flushTimer: NodeJS.Timeout | undefined;
  #refreshTimer: NodeJS.Timeout | undefined;
  #lastErrorLog = new Map<string, number>();
  #suppressed = new Map<string, number>();

  constructor(options: PersistenceOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => new Date());
  }

  start(): void {
    this.#flushTimer = setInterval(() => void this.flush(), FLUSH_INTERVAL_MS);
    this.#refreshTimer = setInterval(() => {
      for (const player of this.#o.onlinePlayers()) this.#redisOps.push({ kind: 'present', player });
      this.#updateGauge();
    }, PRESENCE_REFRESH_MS);
  }

  get pending(): number {
    return this.#sessions.size + this.#redisOps.length;
  }

  sessionStarted(id: string, player: string, startedAt: Date): void {
    this.#sessions.set(id, { id, player, startedAt, endedAt: null, endReason: null });
    this.#redisOps.push({ kind: 'present', player });
    this.#trim();
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
    this.#trim();
  }

  /** Saves a player's position (restored at the next login). */
  savePlayer(player: string, x: number, y: number): void {
    this.#redisOps.push({ kind: 'save', player, x, y, at: this.#now() });
    this.#trim();
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

  /** Writes what is pending now (one flush at a time; a call during a flush waits for it and flushes again). */
  async flush(): Promise<void> {
    this.#updateGauge();
    if (this.#flushing) {
      await this.#flushing;
      return;
    }
    if (this.pending === 0) return;
    this.#flushing = this.#flushOnce().finally(() => {
      this.#flushing = undefined;
      this.#updateGauge();
    });
    await this.#flushing;
  }

  async #flushOnce(): Promise<void> {
    const rows = [...this.#sessions.values()];
    this.#sessions = new Map();
    const ops = this.#redisOps;
    this.#redisOps = [];
    this.#inFlight = rows.length + ops.length;
    try {
      await Promise.all([this.#writeSessions(rows), this.#writeRedis(ops)]);
    } finally {
      this.#inFlight = 0;
    }
  }

  async #writeSessions(rows: SessionRow[]): Promise<void> {
    if (rows.length === 0) return;
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
        await this.#o.pool.query<ResultSetHeader>(
          `INSERT INTO player_sessions (id, player, instance, version, started_at, ended_at, end_reason)
           VALUES ? ON DUPLICATE KEY UPDATE
             ended_at = COALESCE(VALUES(ended_at), ended_at),
             end_reason = COALESCE(VALUES(end_reason), end_reason)`,
          [values],
        );
      } catch (err) {
        this.#error(
          'mysql',
          `could not write ${chunk.length} session rows to MySQL (kept for retry): ${describeDriverError(err)}`,
        );
        // Put them back unless a newer write for the same session arrived meanwhile (it has the end).
        for (const row of rows.slice(i)) {
          const newer = this.#sessions.get(row.id);
          if (!newer) this.#sessions.set(row.id, row);
          else if (newer.endedAt === null && row.endedAt !== null) this.#sessions.set(row.id, row);
        }
        this.#trim();
        return;
      }
    }
  }

  async #writeRedis(ops: RedisOp[]): Promise<void> {
    if (ops.length === 0) return;
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
      const results = await pipeline.exec();
      const failed = (results ?? []).find(([err]) => err !== null);
      if (failed?.[0]) throw failed[0];
    } catch (err) {
      this.#error(
        'redis',
        `could not write ${ops.length} presence/state changes to Redis (kept for retry): ${describeDriverError(err)}`,
      );
      this.#redisOps = [...ops, ...this.#redisOps];
      this.#trim();
    }
  }

  /** Drops the oldest writes past MAX_PENDING (each counted as a persistence error). */
  #trim(): void {
    const over = this.pending - MAX_PENDING;
    if (over <= 0) return;
    const fromRedis = Math.min(over, this.#redisOps.length);
    this.#redisOps.splice(0, fromRedis);
    let left = over - fromRedis;
    for (const id of this.#sessions.keys()) {
      if (left-- <= 0) break;
      this.#sessions.delete(id);
    }
    this.#error('overflow', `persistence queue full: dropped ${over} writes`, over);
  }

  /** Waiting writes, the batch being written included. */
  #updateGauge(): void {
    this.#o.metrics.persistenceQueue.set(this.pending + this.#inFlight);
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
    const unwritten = (): number => this.pending + this.#inFlight;
    // A failed flush keeps its writes; try again until the deadline.
    while (unwritten() > 0 && Date.now() < deadline) {
      await within(Math.max(1, deadline - Date.now()), 'final flush', this.flush()).catch(() => undefined);
      if (unwritten() > 0) await new Promise((resolve) => setTimeout(resolve, 100));
    }
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
