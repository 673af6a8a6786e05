/**
 * Runs the reference game server (examples/game-server/main.ts) as a child process for tests and the
 * benchmark: its own MySQL database and Redis key prefix, secrets in the environment only, stdout
 * collected as parsed JSON lines, SIGKILLed if the test process dies.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import { freePort, randomSecret } from '../harness/proc.ts';
import { onExit } from '../harness/proc.ts';

export const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
export const SERVER_ENTRY = path.join(REPO_ROOT, 'examples/game-server/main.ts');

export interface MariaDBAccess {
  host: string;
  port: number;
  user: string;
  password: string;
}

export interface RedisAccess {
  host: string;
  port: number;
  password?: string | undefined;
}

export interface GameServerOptions {
  mariadb: MariaDBAccess;
  redis: RedisAccess;
  instance?: string;
  version?: string;
  /** More GAME_* variables (override the defaults). */
  env?: Record<string, string>;
  /** Runs the server through this prefix, e.g. `['taskset', '-c', '0']`. */
  wrap?: string[];
  /** Keep the database and keys after stop (the caller inspects them). @default false */
  keepData?: boolean;
  /** How long the server may take to listen. @default 30 s */
  readyTimeoutMs?: number;
}

export interface LogLine {
  time?: string;
  level?: string;
  msg?: string;
  [key: string]: unknown;
}

export interface GameServerProcess {
  readonly pid: number;
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly opsUrl: string;
  /** `ws://127.0.0.1:<port>/play` */
  readonly wsUrl: string;
  readonly token: string;
  readonly instance: string;
  readonly version: string;
  readonly database: string;
  readonly keyPrefix: string;
  /** Raw stdout lines so far. */
  lines(): string[];
  /** stdout lines parsed as JSON (lines that are not JSON are kept as `{ msg: <line>, notJson: true }`). */
  logs(): LogLine[];
  /** stderr so far. */
  stderr(): string;
  /**
   * Resolves with the first log line matching `predicate`, among lines from index `since` on (default 0:
   * past lines count too; pass `logs().length` for new lines only).
   */
  waitForLog(
    predicate: (line: LogLine) => boolean,
    options?: { timeoutMs?: number; since?: number },
  ): Promise<LogLine>;
  /** `fetch` against the server with the bearer token (unless `headers.authorization` is given). */
  ops(pathname: string, init?: RequestInit): Promise<Response>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` and waits for the exit (SIGKILL after 20 s); then drops the test data. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** A connection to the server's database (closed by the caller). */
  sql(): Promise<mysql.Connection>;
  /** A Redis client with the server's key prefix (closed by the caller). */
  redis(): Redis;
}

let setpriv: boolean | undefined;
function hasSetpriv(): boolean {
  setpriv ??= (() => {
    const probe = spawnSync('setpriv', ['--help'], { encoding: 'utf8', timeout: 5000 });
    return probe.status === 0 && probe.stdout.includes('--pdeathsig');
  })();
  return setpriv;
}

/** Only the connection fields (the harness hands over more, which mysql2 warns about). */
function access(m: MariaDBAccess): MariaDBAccess {
  return { host: m.host, port: m.port, user: m.user, password: m.password };
}

/** Creates a database with a random name; returns its name and a function that drops it. */
export async function createTestDatabase(
  mariadb: MariaDBAccess,
): Promise<{ name: string; drop: () => Promise<void> }> {
  const name = `gs_${randomBytes(6).toString('hex')}`;
  const root = await mysql.createConnection(access(mariadb));
  try {
    await root.query(`CREATE DATABASE \`${name}\``);
  } finally {
    await root.end();
  }
  return {
    name,
    drop: async () => {
      const c = await mysql.createConnection(access(mariadb));
      try {
        await c.query(`DROP DATABASE IF EXISTS \`${name}\``);
      } finally {
        await c.end();
      }
    },
  };
}

/** Deletes every key under `prefix`. */
export async function deleteKeys(redis: RedisAccess, prefix: string): Promise<void> {
  const client = new Redis({
    host: redis.host,
    port: redis.port,
    password: redis.password,
    lazyConnect: true,
  });
  try {
    await client.connect();
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await client.del(...keys);
    } while (cursor !== '0');
  } finally {
    client.disconnect();
  }
}

/** The environment the server gets: nothing from ours but PATH/HOME/TMPDIR, plus its GAME_* variables. */
export function serverEnv(options: {
  port: number;
  instance: string;
  version: string;
  token: string;
  database: string;
  keyPrefix: string;
  mariadb: MariaDBAccess;
  redis: RedisAccess;
  env?: Record<string, string>;
}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TMPDIR: process.env.TMPDIR,
    GAME_PORT: String(options.port),
    GAME_HOST: '127.0.0.1',
    GAME_INSTANCE: options.instance,
    GAME_VERSION: options.version,
    GAME_OPS_TOKEN: options.token,
    GAME_MYSQL_HOST: options.mariadb.host,
    GAME_MYSQL_PORT: String(options.mariadb.port),
    GAME_MYSQL_USER: options.mariadb.user,
    GAME_MYSQL_PASSWORD: options.mariadb.password,
    GAME_MYSQL_DATABASE: options.database,
    GAME_REDIS_HOST: options.redis.host,
    GAME_REDIS_PORT: String(options.redis.port),
    ...(options.redis.password !== undefined ? { GAME_REDIS_PASSWORD: options.redis.password } : {}),
    GAME_REDIS_KEY_PREFIX: options.keyPrefix,
    ...options.env,
  };
}

/** Spawns `node examples/game-server/main.ts` with an argument array (never a shell). */
export function spawnGameServer(env: NodeJS.ProcessEnv, wrap: string[] = []): ChildProcess {
  const command = [...wrap, process.execPath, SERVER_ENTRY];
  const [program, ...args] = hasSetpriv() ? ['setpriv', '--pdeathsig', 'SIGKILL', '--', ...command] : command;
  return spawn(program!, args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
}

export async function startGameServer(options: GameServerOptions): Promise<GameServerProcess> {
  const database = await createTestDatabase(options.mariadb);
  const keyPrefix = `gs${randomBytes(4).toString('hex')}:`;
  const token = randomSecret();
  const instance = options.instance ?? `game-${randomBytes(2).toString('hex')}`;
  const version = options.version ?? '1.0.0';
  const port = await freePort();
  const env = serverEnv({
    port,
    instance,
    version,
    token,
    database: database.name,
    keyPrefix,
    mariadb: options.mariadb,
    redis: options.redis,
    ...(options.env ? { env: options.env } : {}),
  });
  const child = spawnGameServer(env, options.wrap);
  const unregister = onExit(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const rawLines: string[] = [];
  const parsed: LogLine[] = [];
  const waiters = new Set<{
    predicate: (line: LogLine) => boolean;
    resolve: (line: LogLine) => void;
  }>();
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    rawLines.push(line);
    let entry: LogLine;
    try {
      entry = JSON.parse(line) as LogLine;
    } catch {
      entry = { msg: line, notJson: true };
    }
    parsed.push(entry);
    for (const waiter of [...waiters]) {
      if (waiter.predicate(entry)) {
        waiters.delete(waiter);
        waiter.resolve(entry);
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      unregister();
      resolve({ code, signal });
    });
  });

  function waitForLog(
    predicate: (line: LogLine) => boolean,
    { timeoutMs = 15_000, since = 0 }: { timeoutMs?: number; since?: number } = {},
  ): Promise<LogLine> {
    const found = parsed.slice(since).find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise<LogLine>((resolve, reject) => {
      const waiter = {
        predicate,
        resolve: (line: LogLine) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(
          new Error(
            `no matching log line within ${timeoutMs} ms; output:\n${rawLines.slice(-20).join('\n')}`,
          ),
        );
      }, timeoutMs);
      waiters.add(waiter);
      void exited.then(({ code, signal }) => {
        if (!waiters.has(waiter)) return;
        waiters.delete(waiter);
        clearTimeout(timer);
        reject(
          new Error(
            `the game server exited (code ${code}, signal ${signal}) before the expected log line; output:\n` +
              `${rawLines.slice(-20).join('\n')}\n${stderr.slice(-2000)}`,
          ),
        );
      });
    });
  }

  const cleanData = async (): Promise<void> => {
    if (options.keepData) return;
    await Promise.allSettled([database.drop(), deleteKeys(options.redis, keyPrefix)]);
  };

  try {
    await waitForLog((line) => line.msg?.startsWith('listening on') === true, {
      timeoutMs: options.readyTimeoutMs ?? 30_000,
    });
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    await cleanData();
    throw err;
  }

  let stopping: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  const opsUrl = `http://127.0.0.1:${port}`;
  return {
    pid: child.pid!,
    port,
    opsUrl,
    wsUrl: `ws://127.0.0.1:${port}/play`,
    token,
    instance,
    version,
    database: database.name,
    keyPrefix,
    lines: () => [...rawLines],
    logs: () => [...parsed],
    stderr: () => stderr,
    waitForLog,
    ops: (pathname, init = {}) => {
      const headers = new Headers(init.headers);
      if (!headers.has('authorization')) headers.set('authorization', `Bearer ${token}`);
      return fetch(new URL(pathname, opsUrl), { ...init, headers });
    },
    exited,
    stop: (signal = 'SIGTERM') => {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
        const result = await exited;
        clearTimeout(timer);
        await cleanData();
        return result;
      })();
      return stopping;
    },
    sql: () => mysql.createConnection({ ...access(options.mariadb), database: database.name, timezone: 'Z' }),
    redis: () =>
      new Redis({
        host: options.redis.host,
        port: options.redis.port,
        password: options.redis.password,
        keyPrefix,
      }),
  };
}
