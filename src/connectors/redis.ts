import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import type { RedisConfig } from '../config/index.ts';
import { InputError, maskSecrets, UnavailableError, type GameopsError } from '../core/index.ts';
import { abortable, describeError } from './failures.ts';

/** `INFO` as sections of raw `key:value` fields, e.g. `raw.memory.used_memory`. */
export type RedisInfoSections = Record<string, Record<string, string>>;

/** The INFO fields gameops uses, typed. A field the server does not report is undefined. */
export interface RedisInfo {
  server: {
    redisVersion: string;
    uptimeSeconds: number | undefined;
    /** Changes on every server start: the reliable restart signal. */
    runId: string | undefined;
    mode: string | undefined;
  };
  memory: {
    usedMemory: number | undefined;
    /** 0 means no limit. */
    maxmemory: number | undefined;
    maxmemoryPolicy: string | undefined;
    memFragmentationRatio: number | undefined;
    usedMemoryRss: number | undefined;
  };
  persistence: {
    loading: boolean | undefined;
    rdbLastBgsaveStatus: string | undefined;
    /** Unix seconds of the last successful RDB save. */
    rdbLastSaveTime: number | undefined;
    rdbChangesSinceLastSave: number | undefined;
    aofEnabled: boolean | undefined;
    aofLastWriteStatus: string | undefined;
    aofLastBgrewriteStatus: string | undefined;
  };
  clients: { connectedClients: number | undefined };
  raw: RedisInfoSections;
}

/** Parses the text of `INFO` (`# Section` headers, `key:value` lines, CRLF or LF). Pure. */
export function parseRedisInfoSections(text: string): RedisInfoSections {
  const sections: RedisInfoSections = {};
  let current: Record<string, string> = {};
  sections['default'] = current;
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (!line) continue;
    if (line.startsWith('#')) {
      const name = line.slice(1).trim().toLowerCase();
      current = sections[name] ??= {};
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    current[line.slice(0, colon)] = line.slice(colon + 1);
  }
  if (Object.keys(sections['default'] ?? {}).length === 0) delete sections['default'];
  return sections;
}

/** Parses `INFO` text into the typed fields gameops uses (the raw sections are kept too). Pure. */
export function parseRedisInfo(text: string): RedisInfo {
  const raw = parseRedisInfoSections(text);
  // Fields are looked up in their usual section, then anywhere, so a server that files them differently still works.
  const field = (section: string, key: string): string | undefined => {
    const own = raw[section]?.[key];
    if (own !== undefined) return own;
    for (const fields of Object.values(raw)) if (fields[key] !== undefined) return fields[key];
    return undefined;
  };
  const num = (section: string, key: string): number | undefined => {
    const value = field(section, key);
    if (value === undefined || value === '') return undefined;
    const n = Number(value);
    return Number.isFinite(n) ? n : undefined;
  };
  const flag = (section: string, key: string): boolean | undefined => {
    const value = field(section, key);
    return value === undefined ? undefined : value === '1';
  };
  return {
    server: {
      redisVersion: field('server', 'redis_version') ?? 'unknown',
      uptimeSeconds: num('server', 'uptime_in_seconds'),
      runId: field('server', 'run_id'),
      mode: field('server', 'redis_mode'),
    },
    memory: {
      usedMemory: num('memory', 'used_memory'),
      maxmemory: num('memory', 'maxmemory'),
      maxmemoryPolicy: field('memory', 'maxmemory_policy'),
      memFragmentationRatio: num('memory', 'mem_fragmentation_ratio'),
      usedMemoryRss: num('memory', 'used_memory_rss'),
    },
    persistence: {
      loading: flag('persistence', 'loading'),
      rdbLastBgsaveStatus: field('persistence', 'rdb_last_bgsave_status'),
      rdbLastSaveTime: num('persistence', 'rdb_last_save_time'),
      rdbChangesSinceLastSave: num('persistence', 'rdb_changes_since_last_save'),
      aofEnabled: flag('persistence', 'aof_enabled'),
      aofLastWriteStatus: field('persistence', 'aof_last_write_status'),
      aofLastBgrewriteStatus: field('persistence', 'aof_last_bgrewrite_status'),
    },
    clients: { connectedClients: num('clients', 'connected_clients') },
    raw,
  };
}

export interface RedisLatencySample {
  /** Round-trip times of the PINGs that completed, in milliseconds, in the order sent. */
  samplesMs: number[];
  /** How many PINGs were asked for; fewer complete when the time budget runs out. */
  requested: number;
  /** True when the budget ran out before `requested` PINGs completed. */
  truncated: boolean;
}

export interface RedisClient {
  /** `host:port`, for messages. */
  readonly target: string;
  /**
   * False once the connection is closed, or the server or the network ended it (a restart, `timeout`,
   * `CLIENT KILL`): a connection kept between uses is not worth trying then.
   */
  readonly usable: boolean;
  info(options?: { signal?: AbortSignal }): Promise<RedisInfo>;
  ping(options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * Sends up to `count` PINGs one after the other and stops early when `budgetMs` is spent: a bounded
   * sample, never the endless `redis-cli --latency`.
   */
  latency(options: { count: number; budgetMs: number; signal?: AbortSignal }): Promise<RedisLatencySample>;
  /** QUIT (bounded), then drop the socket. Never throws. */
  close(): Promise<void>;
}

export interface RedisConnectOptions {
  signal?: AbortSignal;
  /** @default 5000 */
  connectTimeoutMs?: number;
  /**
   * Deadline of each command; a server that accepted the connection but does not answer fails here.
   * @default 5000
   */
  commandTimeoutMs?: number;
}

export function redisTarget(config: Pick<RedisConfig, 'host' | 'port'>): string {
  return `${config.host}:${config.port}`;
}

/** Converts an ioredis error into the gameops taxonomy, naming the server and masking the password. */
export function redisError(err: unknown, config: RedisConfig, doing: string): GameopsError {
  const description = describeError(err);
  const message = maskSecrets(`Redis at ${redisTarget(config)}: ${doing} failed: ${description}`, [
    config.password,
  ]);
  const details = { target: redisTarget(config) };
  if (/^(WRONGPASS|NOAUTH|NOPERM)/.test(description)) return new InputError(message, { details });
  return new UnavailableError(message, { details });
}

/**
 * Connects to Redis so that a dead server fails fast: no retries, no offline queue, a connect and a
 * command deadline; an abort drops the socket at once.
 */
export async function connectRedis(
  config: RedisConfig,
  options: RedisConnectOptions = {},
): Promise<RedisClient> {
  // Loaded on the first connection (see connectMysql).
  const { Redis } = (await import('ioredis')).default;
  const redis = new Redis({
    host: config.host,
    port: config.port,
    ...(config.username ? { username: config.username } : {}),
    ...(config.password ? { password: config.password.reveal() } : {}),
    db: config.db,
    ...(config.tls ? { tls: {} } : {}),
    lazyConnect: true,
    connectTimeout: options.connectTimeoutMs ?? 5000,
    commandTimeout: options.commandTimeoutMs ?? 5000,
    maxRetriesPerRequest: 0,
    retryStrategy: null,
    reconnectOnError: null,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    // No INFO on connect to wait for a dataset still loading: callers ask INFO themselves (the check reports
    // `loading`), and a command that needs the data gets Redis's own LOADING error instead of a wait.
    enableReadyCheck: false,
    // After stream.end(), how long to wait for the server to close before destroying the socket.
    disconnectTimeout: 200,
    connectionName: 'gameops',
  });
  let lastError: unknown;
  // Without a listener ioredis logs "Unhandled error event"; the error is reported through connect() instead.
  redis.on('error', (err: unknown) => {
    lastError = err;
  });
  try {
    await abortable(`Redis at ${redisTarget(config)}`, redis.connect(), options.signal, () =>
      redis.disconnect(),
    );
  } catch (err) {
    redis.disconnect();
    if (options.signal?.aborted && err === options.signal.reason) throw err;
    // "Connection is closed." hides the cause; the socket error seen just before says more.
    throw redisError(lastError ?? err, config, 'connect');
  }
  return new Client(config, redis);
}

/** Runs `work` with a fresh connection and always closes it. */
export async function withRedis<T>(
  config: RedisConfig,
  options: RedisConnectOptions,
  work: (client: RedisClient) => Promise<T>,
): Promise<T> {
  const client = await connectRedis(config, options);
  try {
    return await work(client);
  } finally {
    await client.close();
  }
}

class Client implements RedisClient {
  readonly target: string;
  readonly #config: RedisConfig;
  readonly #redis: Redis;
  #closed = false;

  constructor(config: RedisConfig, redis: Redis) {
    this.target = redisTarget(config);
    this.#config = config;
    this.#redis = redis;
  }

  get usable(): boolean {
    return !this.#closed && this.#redis.status === 'ready';
  }

  async #call<T>(doing: string, work: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    try {
      return await abortable(`Redis at ${this.target}`, work(), signal, () => this.#redis.disconnect());
    } catch (err) {
      if (signal?.aborted && err === signal.reason) throw err;
      throw redisError(err, this.#config, doing);
    }
  }

  async info(options: { signal?: AbortSignal } = {}): Promise<RedisInfo> {
    const text = await this.#call('INFO', () => this.#redis.info(), options.signal);
    return parseRedisInfo(String(text));
  }

  async ping(options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.#call('PING', () => this.#redis.ping(), options.signal);
  }

  async latency(options: {
    count: number;
    budgetMs: number;
    signal?: AbortSignal;
  }): Promise<RedisLatencySample> {
    const samplesMs: number[] = [];
    const start = performance.now();
    const budget = AbortSignal.timeout(Math.max(1, options.budgetMs));
    const signal = options.signal ? AbortSignal.any([options.signal, budget]) : budget;
    // One PING that is not measured: the first round trip also pays for warming up this code path.
    for (let i = -1; i < options.count; i++) {
      if (performance.now() - start >= options.budgetMs) break;
      const sent = performance.now();
      try {
        await abortable(`Redis at ${this.target}`, this.#redis.ping(), signal, () => undefined);
      } catch (err) {
        // The budget running out mid-PING ends the sample; a caller's abort or a real failure is an error.
        if (budget.aborted && !options.signal?.aborted) break;
        if (options.signal?.aborted && err === options.signal.reason) {
          this.#redis.disconnect();
          throw err;
        }
        throw redisError(err, this.#config, 'PING');
      }
      if (i >= 0) samplesMs.push(performance.now() - sent);
    }
    return { samplesMs, requested: options.count, truncated: samplesMs.length < options.count };
  }

  async close(): Promise<void> {
    this.#closed = true;
    const redis = this.#redis;
    if (redis.status === 'ready') {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          redis.quit(),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, 500);
          }),
        ]);
      } catch {
        // Fall through to disconnect.
      } finally {
        clearTimeout(timer);
      }
    }
    redis.disconnect();
  }
}
