/**
 * Starts REAL servers (MariaDB, Redis, PostgreSQL, Alertmanager, Prometheus) as child processes on loopback
 * ports, plus a few fake network/disk conditions (a silent TCP server, a closed port, a tiny filesystem).
 *
 * Every starter:
 * - works in its own `fs.mkdtemp` directory under os.tmpdir() (or in a given persistent `dir`, which is
 *   initialised once and reused; that is how scripts/stack.ts keeps its data between runs);
 * - takes a free port from the kernel (or a given fixed `port`);
 * - returns only once the server really answers a client request (bounded by a 60 s deadline; failures
 *   carry the tail of the server's log);
 * - returns a handle whose `stop()` kills the server by pid (SIGTERM, SIGKILL after 5 s) and removes the
 *   temporary directory. A process 'exit' hook SIGKILLs whatever is still running (see proc.ts).
 *
 * Secrets never appear on a command line (visible to anyone in `ps`): MariaDB's root password is set over
 * its unix socket, Redis reads its config from stdin, PostgreSQL's initdb reads a 0600 password file.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { serverBinaries } from './packages.ts';
import {
  freePort,
  makeTempDir,
  onExit,
  randomSecret,
  removeDirOnExit,
  run,
  runChecked,
  runSyncQuiet,
  spawnServer,
  stopServer,
  waitUntilReady,
  withPortRetry,
} from './proc.ts';
import type { ServerProcess, SpawnServerOptions } from './proc.ts';

/** What every started server handle has. */
export interface ServerHandle {
  /** pid of the server process (the postmaster for PostgreSQL). */
  readonly pid: number;
  /** Directory holding the server's data, config and log. */
  readonly dir: string;
  /** The server's log (stdout and stderr; MariaDB's error log). */
  readonly logFile: string;
  /** Resolves when the server process exits, whether through stop() or not. */
  readonly exited: Promise<void>;
  /** Stops the server and, when the directory was temporary, removes it. Safe to call twice. */
  stop(): Promise<void>;
}

/** Options common to all starters. */
export interface CommonServerOptions {
  /** Fixed port; by default a free one is picked. */
  port?: number;
  /**
   * Persistent directory (created when missing, initialised once, reused afterwards and never removed).
   * By default a fresh temporary directory is used and removed by `stop()`.
   */
  dir?: string;
}

// ---------------------------------------------------------------------------------------------------------
// Shared plumbing

interface Workspace {
  dir: string;
  /** true for a temporary directory that stop() removes. */
  ephemeral: boolean;
  /** Removes the directory when it is temporary. */
  dispose(): Promise<void>;
}

async function workspace(name: string, dir: string | undefined): Promise<Workspace> {
  if (dir !== undefined) {
    const absolute = path.resolve(dir);
    await fsp.mkdir(absolute, { recursive: true, mode: 0o700 });
    return { dir: absolute, ephemeral: false, dispose: async () => {} };
  }
  const temp = await makeTempDir(name);
  const unregister = removeDirOnExit(temp);
  return {
    dir: temp,
    ephemeral: true,
    dispose: async () => {
      await fsp.rm(temp, { recursive: true, force: true });
      unregister();
    },
  };
}

/**
 * Unix socket paths are limited to 107 bytes; a persistent directory deep in a checkout can exceed that,
 * so sockets then go to a short temporary directory instead.
 */
async function socketDir(space: Workspace, cleanups: Array<() => Promise<void>>): Promise<string> {
  if (space.dir.length <= 80) return space.dir;
  const short = await makeTempDir('sock', '/tmp');
  const unregister = removeDirOnExit(short);
  cleanups.push(async () => {
    await fsp.rm(short, { recursive: true, force: true });
    unregister();
  });
  return short;
}

/** Spawns a server and waits until `probe` succeeds; kills it again when that fails. */
async function launch(
  space: Workspace,
  options: SpawnServerOptions,
  probe: () => Promise<boolean>,
  stopSignal: NodeJS.Signals = 'SIGTERM',
): Promise<ServerProcess> {
  // If we die, a throwaway server just goes (SIGKILL); one with persistent data gets a clean shutdown.
  const parentDeathSignal = space.ephemeral ? 'SIGKILL' : 'SIGTERM';
  const server = await spawnServer({ parentDeathSignal, ...options });
  try {
    await waitUntilReady(server, probe);
    return server;
  } catch (error) {
    await stopServer(server, stopSignal);
    throw error;
  }
}

/** Builds an idempotent stop(): stop the process, then run the clean-ups (temp dirs, sockets). */
function stopper(
  server: ServerProcess,
  space: Workspace,
  cleanups: Array<() => Promise<void>>,
  signal: NodeJS.Signals = 'SIGTERM',
): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  return () => {
    stopping ??= (async () => {
      await stopServer(server, signal);
      for (const cleanup of cleanups) await cleanup();
      await space.dispose();
    })();
    return stopping;
  };
}

/** Runs `body`; on failure runs the clean-ups and disposes of the workspace before rethrowing. */
async function orCleanUp<T>(space: Workspace, cleanups: Array<() => Promise<void>>, body: () => Promise<T>) {
  try {
    return await body();
  } catch (error) {
    for (const cleanup of cleanups) await cleanup().catch(() => {});
    await space.dispose().catch(() => {});
    throw error;
  }
}

function tcpConnectable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(1_000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

async function httpOk(url: string): Promise<boolean> {
  const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
  await response.body?.cancel();
  return response.status === 200;
}

const isRoot = (): boolean => process.getuid?.() === 0;

async function writeSecretFile(file: string, secret: string): Promise<void> {
  await fsp.writeFile(file, secret, { mode: 0o600 });
  await fsp.chmod(file, 0o600); // writeFile's mode only applies when it creates the file.
}

// ---------------------------------------------------------------------------------------------------------
// MariaDB

/** Options for {@link startMariaDB}. */
export interface MariaDBOptions extends CommonServerOptions {
  /** `--max-connections` (MariaDB's default is 151; values below its minimum of 10 become 10). */
  maxConnections?: number;
  /** More mariadbd options, appended last so they override ours, e.g. `['--wait-timeout=5']`. */
  extraArgs?: string[];
}

/** A running MariaDB; connect as root over TCP (`host`/`port`) or the unix socket. */
export interface MariaDBHandle extends ServerHandle {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly user: 'root';
  readonly password: string;
  readonly socketPath: string;
  readonly dataDir: string;
  /** An empty database created at initialisation: `gamedb`. */
  readonly database: 'gamedb';
}

/**
 * Starts a MariaDB server with the slow query log going to the `mysql.slow_log` table (the product reads
 * it; `long_query_time` is 1 s), a random root password (stored in `<dir>/root-password`, mode 0600, so
 * a persistent directory can be reused) and a `gamedb` database.
 */
export async function startMariaDB(options: MariaDBOptions = {}): Promise<MariaDBHandle> {
  const bins = serverBinaries();
  const space = await workspace('mariadb', options.dir);
  const cleanups: Array<() => Promise<void>> = [];
  return orCleanUp(space, cleanups, async () => {
    const dataDir = path.join(space.dir, 'data');
    const marker = path.join(space.dir, '.initialised');
    const passwordFile = path.join(space.dir, 'root-password');
    const logFile = path.join(space.dir, 'error.log');
    const socketPath = path.join(await socketDir(space, cleanups), 'mysqld.sock');
    const userArgs = isRoot() ? ['--user=root'] : []; // mariadbd refuses to run as root without it.
    // A small redo log makes mariadb-install-db ~3x faster (it zero-fills the log file).
    const innodbArgs = ['--innodb-log-file-size=8M'];

    const initialised = fs.existsSync(marker);
    if (!initialised) {
      // An interrupted initialisation leaves a half-made data directory; start over.
      await fsp.rm(dataDir, { recursive: true, force: true });
      // --no-defaults must come first; it keeps /etc/mysql/*.cnf (the system service's config) out.
      await runChecked('mariadb-install-db', bins.mariadbInstallDb, [
        '--no-defaults',
        '--auth-root-authentication-method=normal',
        `--datadir=${dataDir}`,
        '--skip-test-db',
        ...userArgs,
        ...innodbArgs,
      ]);
      await writeSecretFile(passwordFile, randomSecret());
    }
    const password = (await fsp.readFile(passwordFile, 'utf8')).trim();
    // Until the first initialisation has set it, root has an empty password.
    const currentPassword = initialised ? password : '';

    const { server, port } = await withPortRetry(options.port, 'mariadb', async (port) => {
      const args = [
        '--no-defaults',
        `--datadir=${dataDir}`,
        `--socket=${socketPath}`,
        `--port=${port}`,
        '--bind-address=127.0.0.1',
        ...userArgs,
        `--pid-file=${path.join(space.dir, 'mysqld.pid')}`,
        `--log-error=${logFile}`,
        '--skip-name-resolve',
        '--slow-query-log=1',
        '--log-output=TABLE',
        '--long-query-time=1',
        ...innodbArgs,
        // Throwaway instances need no durability; this makes writes in tests cheaper.
        ...(space.ephemeral ? ['--innodb-flush-log-at-trx-commit=2'] : []),
        ...(options.maxConnections !== undefined ? [`--max-connections=${options.maxConnections}`] : []),
        ...(options.extraArgs ?? []),
      ];
      const server = await launch(
        space,
        { name: 'mariadb', command: bins.mariadbd, args, logFile, cwd: space.dir },
        async () => {
          if (!(await tcpConnectable(port))) return false;
          const connection = await mysql.createConnection({
            socketPath,
            user: 'root',
            password: currentPassword,
          });
          await connection.end();
          return true;
        },
      );
      return { server, port };
    });
    const stop = stopper(server, space, cleanups);

    try {
      if (!initialised) {
        // Over the unix socket, as the password-less root that mariadb-install-db created.
        const connection = await mysql.createConnection({ socketPath, user: 'root', password: '' });
        try {
          // mariadb-install-db also creates root@<hostname> and root@::1. They are useless here (we listen on
          // 127.0.0.1 only and skip name resolution, which also makes ALTER USER fail for the hostname one)
          // and would otherwise keep an empty password, so they go.
          await connection.query(
            "DELETE FROM mysql.global_priv WHERE User = 'root' AND Host NOT IN ('localhost', '127.0.0.1')",
          );
          await connection.query(
            "DELETE FROM mysql.proxies_priv WHERE User = 'root' AND Host NOT IN ('localhost', '127.0.0.1')",
          );
          await connection.query('FLUSH PRIVILEGES');
          // root@127.0.0.1 is what TCP clients match; make sure it exists whatever the MariaDB version.
          await connection.query("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'");
          await connection.query("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION");
          for (const host of ['localhost', '127.0.0.1']) {
            await connection.query('ALTER USER ?@? IDENTIFIED BY ?', ['root', host, password]);
          }
          await connection.query('CREATE DATABASE IF NOT EXISTS gamedb');
        } finally {
          await connection.end();
        }
        await fsp.writeFile(marker, new Date().toISOString() + '\n');
      }
      // Prove the path tests will use: TCP with the password.
      const check = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root', password });
      await check.query('SELECT 1');
      await check.end();
    } catch (error) {
      await stop();
      throw error;
    }

    return {
      host: '127.0.0.1',
      port,
      user: 'root',
      password,
      socketPath,
      dataDir,
      database: 'gamedb',
      pid: server.pid,
      exited: server.exit,
      dir: space.dir,
      logFile,
      stop,
    };
  });
}

// ---------------------------------------------------------------------------------------------------------
// Redis

/** Options for {@link startRedis}. */
export interface RedisOptions extends CommonServerOptions {
  /** `maxmemory`, e.g. `'2mb'` (default: no limit); the policy stays `noeviction`. */
  maxmemory?: string;
  /** `requirepass`; omitted means no password. */
  password?: string;
  /** `appendonly yes` (default no). */
  appendonly?: boolean;
  /** RDB `save` rule, e.g. `'60 1'` (default `""`: no snapshots). */
  save?: string;
  /** More config lines, e.g. `['maxmemory-policy allkeys-lru']`. */
  extraConfig?: string[];
}

/** A running Redis. */
export interface RedisHandle extends ServerHandle {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly password?: string;
}

/** Quotes a value for redis.conf (double quotes, backslash escapes). */
function redisQuote(value: string): string {
  if (/[\r\n\0]/.test(value)) throw new Error('redis config values cannot contain CR, LF or NUL');
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** Sends RESP commands over a fresh connection and resolves with the raw reply text. */
function redisRaw(port: number, commands: string[][]): Promise<string> {
  const payload = commands
    .map((args) => `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''))
    .join('');
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    socket.setTimeout(2_000);
    socket.once('connect', () => socket.write(payload));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('utf8');
      // One line per reply for AUTH/PING; stop once all have arrived.
      if (reply.split('\r\n').length > commands.length) {
        socket.destroy();
        resolve(reply);
      }
    });
    socket.once('timeout', () => {
      socket.destroy();
      reject(new Error('redis did not answer'));
    });
    socket.once('error', reject);
  });
}

/**
 * Starts `redis-server -`, which reads its whole configuration from stdin, so `requirepass` never shows on
 * a command line.
 */
export async function startRedis(options: RedisOptions = {}): Promise<RedisHandle> {
  const bins = serverBinaries();
  const space = await workspace('redis', options.dir);
  const cleanups: Array<() => Promise<void>> = [];
  return orCleanUp(space, cleanups, async () => {
    const logFile = path.join(space.dir, 'redis.log');
    const { server, port } = await withPortRetry(options.port, 'redis', async (port) => {
      const config = [
        `port ${port}`,
        'bind 127.0.0.1',
        'protected-mode no',
        'daemonize no',
        `dir ${redisQuote(space.dir)}`,
        'logfile ""',
        `save ${redisQuote(options.save ?? '')}`,
        `appendonly ${options.appendonly === true ? 'yes' : 'no'}`,
        ...(options.password !== undefined ? [`requirepass ${redisQuote(options.password)}`] : []),
        ...(options.maxmemory !== undefined ? [`maxmemory ${options.maxmemory}`] : []),
        ...(options.extraConfig ?? []),
      ];
      const auth = options.password !== undefined ? [['AUTH', options.password]] : [];
      const server = await launch(
        space,
        {
          name: 'redis',
          command: bins.redisServer,
          args: ['-'],
          stdin: config.join('\n') + '\n',
          logFile,
          cwd: space.dir,
        },
        async () => (await redisRaw(port, [...auth, ['PING']])).includes('+PONG'),
      );
      return { server, port };
    });
    return {
      host: '127.0.0.1',
      port,
      ...(options.password !== undefined ? { password: options.password } : {}),
      pid: server.pid,
      exited: server.exit,
      dir: space.dir,
      logFile,
      stop: stopper(server, space, cleanups),
    };
  });
}

// ---------------------------------------------------------------------------------------------------------
// PostgreSQL

/** Options for {@link startPostgres}. */
export interface PostgresOptions extends CommonServerOptions {
  /** More `postgres` arguments, e.g. `['-c', 'max_connections=5']`. */
  extraArgs?: string[];
}

/** A running PostgreSQL with database `gameops`, owned by superuser `gameops`. */
export interface PostgresHandle extends ServerHandle {
  /** `postgres://gameops:<password>@127.0.0.1:<port>/gameops` */
  readonly url: string;
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly user: 'gameops';
  readonly password: string;
  readonly database: 'gameops';
  /** Directory of the unix socket (`-k`). */
  readonly socketDir: string;
}

interface RunUser {
  uid: number;
  gid: number;
  name: string;
}

function lookupUser(name: string): RunUser | undefined {
  const line = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  const fields = line?.split(':');
  if (fields === undefined || fields.length < 4) return undefined;
  return { name, uid: Number(fields[2]), gid: Number(fields[3]) };
}

let postgresUser: Promise<RunUser | undefined> | undefined;

/**
 * PostgreSQL refuses to run as root. As root we run it as `nobody` (present on practically every Linux);
 * failing that we create a system user `gameops-test`. As any other user we run it as ourselves.
 */
function postgresRunUser(): Promise<RunUser | undefined> {
  postgresUser ??= (async () => {
    if (!isRoot()) return undefined;
    const existing = lookupUser('nobody') ?? lookupUser('gameops-test');
    if (existing !== undefined) return existing;
    await runChecked('useradd', 'useradd', [
      '--system',
      '--user-group',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      'gameops-test',
    ]);
    const created = lookupUser('gameops-test');
    if (created === undefined)
      throw new Error('useradd gameops-test succeeded but the user is not in /etc/passwd');
    return created;
  })();
  return postgresUser;
}

/**
 * Starts PostgreSQL: `initdb --auth=scram-sha-256 --pwfile=<0600 file> -U gameops`, then `postgres`
 * listening on 127.0.0.1 and a socket in its directory, then creates database `gameops`. As root, both run
 * as an unprivileged user (see {@link postgresRunUser}) that owns the directory.
 */
export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresHandle> {
  const bins = serverBinaries();
  const runAs = await postgresRunUser();
  const ids = runAs !== undefined ? { uid: runAs.uid, gid: runAs.gid } : {};
  const space = await workspace('postgres', options.dir);
  const cleanups: Array<() => Promise<void>> = [];
  return orCleanUp(space, cleanups, async () => {
    const dataDir = path.join(space.dir, 'data');
    const marker = path.join(space.dir, '.initialised');
    const passwordFile = path.join(space.dir, 'password');
    const logFile = path.join(space.dir, 'postgres.log');
    const sockets = await socketDir(space, cleanups);
    const chown = async (target: string) => {
      if (runAs !== undefined) await fsp.chown(target, runAs.uid, runAs.gid);
    };
    await chown(space.dir);
    if (sockets !== space.dir) await chown(sockets);

    const initialised = fs.existsSync(marker);
    if (!initialised) {
      await fsp.rm(dataDir, { recursive: true, force: true });
      // initdb reads the superuser password from this file, as the postgres user, so it owns it.
      await writeSecretFile(passwordFile, randomSecret());
      await chown(passwordFile);
      await runChecked(
        'initdb',
        path.join(bins.postgresBinDir, 'initdb'),
        [
          '-D',
          dataDir,
          '--auth=scram-sha-256',
          `--pwfile=${passwordFile}`,
          '-U',
          'gameops',
          '--encoding=UTF8',
          // The C locale always exists, whatever LANG says; no locale packages needed.
          '--locale=C',
          ...(space.ephemeral ? ['--no-sync'] : []),
        ],
        { ...ids, cwd: space.dir },
      );
    }
    const password = (await fsp.readFile(passwordFile, 'utf8')).trim();
    const connectAs = (port: number, database: string) =>
      new pg.Client({
        host: '127.0.0.1',
        port,
        user: 'gameops',
        password,
        database,
        connectionTimeoutMillis: 2_000,
      });

    const { server, port } = await withPortRetry(options.port, 'postgres', async (port) => {
      const args = [
        '-D',
        dataDir,
        '-k',
        sockets,
        '-c',
        'listen_addresses=127.0.0.1',
        '-p',
        String(port),
        // Throwaway instances need no durability.
        ...(space.ephemeral
          ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']
          : []),
        ...(options.extraArgs ?? []),
      ];
      const server = await launch(
        space,
        {
          name: 'postgres',
          command: path.join(bins.postgresBinDir, 'postgres'),
          args,
          logFile,
          cwd: space.dir,
          ...ids,
        },
        async () => {
          const client = connectAs(port, 'postgres');
          client.on('error', () => {});
          try {
            await client.connect();
            await client.query('SELECT 1');
            return true;
          } finally {
            await client.end().catch(() => {});
          }
        },
        // SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client to disconnect.
        'SIGINT',
      );
      return { server, port };
    });
    const stop = stopper(server, space, cleanups, 'SIGINT');

    if (!initialised) {
      try {
        const client = connectAs(port, 'postgres');
        await client.connect();
        try {
          await client.query('CREATE DATABASE gameops');
        } finally {
          await client.end();
        }
        await fsp.writeFile(marker, new Date().toISOString() + '\n');
      } catch (error) {
        await stop();
        throw error;
      }
    }
    return {
      url: `postgres://gameops:${encodeURIComponent(password)}@127.0.0.1:${port}/gameops`,
      host: '127.0.0.1',
      port,
      user: 'gameops',
      password,
      database: 'gameops',
      socketDir: sockets,
      pid: server.pid,
      exited: server.exit,
      dir: space.dir,
      logFile,
      stop,
    };
  });
}

// ---------------------------------------------------------------------------------------------------------
// Alertmanager and Prometheus

/** Options for {@link startAlertmanager}. */
export interface AlertmanagerOptions extends CommonServerOptions {
  /** Whole alertmanager.yml; the default routes everything to a receiver that does nothing. */
  configYaml?: string;
  extraArgs?: string[];
}

/** A running Alertmanager. */
export interface AlertmanagerHandle extends ServerHandle {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
}

const NULL_ALERTMANAGER_CONFIG = `# Written by test/harness: every alert goes to a receiver that notifies nobody.
route:
  receiver: 'null'
  group_wait: 0s
receivers:
  - name: 'null'
`;

/**
 * Starts Alertmanager (Debian's `prometheus-alertmanager`) with clustering disabled (an empty
 * `--cluster.listen-address`; otherwise it binds a gossip port on all interfaces and waits for peers).
 */
export async function startAlertmanager(options: AlertmanagerOptions = {}): Promise<AlertmanagerHandle> {
  return startPrometheusComponent('alertmanager', options, {
    configYaml: NULL_ALERTMANAGER_CONFIG,
    args: (dataDir) => [`--storage.path=${dataDir}`, '--cluster.listen-address='],
  });
}

/**
 * Alertmanager and Prometheus start the same way: a YAML config file, a data directory, an HTTP listen
 * address, and `/-/ready` once they serve.
 */
async function startPrometheusComponent(
  name: 'alertmanager' | 'prometheus',
  options: CommonServerOptions & { configYaml?: string; extraArgs?: string[] },
  defaults: { configYaml: string; args: (dataDir: string) => string[] },
): Promise<{ url: string; port: number } & ServerHandle> {
  const bins = serverBinaries();
  const space = await workspace(name, options.dir);
  const cleanups: Array<() => Promise<void>> = [];
  return orCleanUp(space, cleanups, async () => {
    const configFile = path.join(space.dir, `${name}.yml`);
    const logFile = path.join(space.dir, `${name}.log`);
    await fsp.writeFile(configFile, options.configYaml ?? defaults.configYaml);
    const { server, port } = await withPortRetry(options.port, name, async (port) => {
      const args = [
        `--config.file=${configFile}`,
        ...defaults.args(path.join(space.dir, 'data')),
        `--web.listen-address=127.0.0.1:${port}`,
        ...(options.extraArgs ?? []),
      ];
      const server = await launch(space, { name, command: bins[name], args, logFile, cwd: space.dir }, () =>
        httpOk(`http://127.0.0.1:${port}/-/ready`),
      );
      return { server, port };
    });
    return {
      url: `http://127.0.0.1:${port}`,
      port,
      pid: server.pid,
      exited: server.exit,
      dir: space.dir,
      logFile,
      stop: stopper(server, space, cleanups),
    };
  });
}

/** An alert to post to Alertmanager (v2 API `postableAlert`). */
export interface AlertInput {
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  startsAt?: string | Date;
  /** Without it Alertmanager resolves the alert after its `resolve_timeout` (5 min by default). */
  endsAt?: string | Date;
  generatorURL?: string;
}

/** An alert as `GET /api/v2/alerts` returns it (the fields tests care about). */
export interface GettableAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
  fingerprint: string;
  status: { state: 'unprocessed' | 'active' | 'suppressed'; silencedBy: string[]; inhibitedBy: string[] };
}

const isoTime = (t: string | Date | undefined) => (t instanceof Date ? t.toISOString() : t);

async function expectOk(response: Response, what: string): Promise<void> {
  if (!response.ok) throw new Error(`${what}: HTTP ${response.status}: ${await response.text()}`);
}

/** Posts alerts through Alertmanager's v2 API (`POST /api/v2/alerts`). */
export async function postAlerts(url: string, alerts: AlertInput[]): Promise<void> {
  const body = alerts.map((a) => ({
    labels: a.labels,
    annotations: a.annotations ?? {},
    ...(a.startsAt !== undefined ? { startsAt: isoTime(a.startsAt) } : {}),
    ...(a.endsAt !== undefined ? { endsAt: isoTime(a.endsAt) } : {}),
    ...(a.generatorURL !== undefined ? { generatorURL: a.generatorURL } : {}),
  }));
  const response = await fetch(`${url}/api/v2/alerts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  await expectOk(response, 'POST /api/v2/alerts');
}

/** Reads alerts back (`GET /api/v2/alerts`), optionally only those whose labels equal `filter`. */
export async function getAlerts(url: string, filter: Record<string, string> = {}): Promise<GettableAlert[]> {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(filter))
    query.append('filter', `${name}=${JSON.stringify(value)}`);
  const response = await fetch(`${url}/api/v2/alerts?${query.toString()}`, {
    signal: AbortSignal.timeout(10_000),
  });
  await expectOk(response, 'GET /api/v2/alerts');
  return (await response.json()) as GettableAlert[];
}

/** One silence matcher (v2 API). `isEqual: false` negates it. */
export interface SilenceMatcher {
  name: string;
  value: string;
  isRegex?: boolean;
  isEqual?: boolean;
}

/** Options for {@link createSilence}. */
export interface SilenceOptions {
  /** Default: now. */
  startsAt?: string | Date;
  /** Default: `startsAt` + `durationMs`. */
  endsAt?: string | Date;
  /** Default: one hour. */
  durationMs?: number;
  createdBy?: string;
  comment?: string;
}

/** Creates a silence (`POST /api/v2/silences`) and returns its id. */
export async function createSilence(
  url: string,
  matchers: SilenceMatcher[],
  options: SilenceOptions = {},
): Promise<string> {
  const startsAt = options.startsAt !== undefined ? new Date(options.startsAt) : new Date();
  const endsAt =
    options.endsAt !== undefined
      ? new Date(options.endsAt)
      : new Date(startsAt.getTime() + (options.durationMs ?? 3_600_000));
  const response = await fetch(`${url}/api/v2/silences`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      matchers: matchers.map((m) => ({
        name: m.name,
        value: m.value,
        isRegex: m.isRegex ?? false,
        isEqual: m.isEqual ?? true,
      })),
      startsAt: startsAt.toISOString(),
      endsAt: endsAt.toISOString(),
      createdBy: options.createdBy ?? 'gameops-test-harness',
      comment: options.comment ?? 'created by the gameops test harness',
    }),
    signal: AbortSignal.timeout(10_000),
  });
  await expectOk(response, 'POST /api/v2/silences');
  return ((await response.json()) as { silenceID: string }).silenceID;
}

/** Options for {@link startPrometheus}. */
export interface PrometheusOptions extends CommonServerOptions {
  /** Whole prometheus.yml; the default scrapes nothing. */
  configYaml?: string;
  extraArgs?: string[];
}

/** A running Prometheus. */
export interface PrometheusHandle extends ServerHandle {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
}

const EMPTY_PROMETHEUS_CONFIG = `# Written by test/harness: scrapes nothing.
global:
  scrape_interval: 15s
  evaluation_interval: 15s
scrape_configs: []
`;

/** Starts Prometheus with its TSDB in the server's directory. */
export async function startPrometheus(options: PrometheusOptions = {}): Promise<PrometheusHandle> {
  return startPrometheusComponent('prometheus', options, {
    configYaml: EMPTY_PROMETHEUS_CONFIG,
    args: (dataDir) => [`--storage.tsdb.path=${dataDir}`],
  });
}

// ---------------------------------------------------------------------------------------------------------
// Misbehaving dependencies

/** A TCP server that accepts connections and never sends a byte. */
export interface SilentServerHandle {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** How many connections it has accepted so far. */
  connections(): number;
  /** Closes every accepted connection and the listener. */
  stop(): Promise<void>;
}

/**
 * Starts a dependency that hangs: it completes the TCP handshake and then stays silent, which is what a
 * wedged database or a black-holed proxy looks like to a client. Use it to test timeouts.
 */
export async function startSilentServer(): Promise<SilentServerHandle> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    // Never write, never end: the client must time out by itself.
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address() as net.AddressInfo;
  let stopping: Promise<void> | undefined;
  return {
    host: '127.0.0.1',
    port: address.port,
    connections: () => accepted,
    stop: () => {
      stopping ??= new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      });
      return stopping;
    },
  };
}

/**
 * A loopback port with nothing listening (connections are refused). Like any free port it could be taken
 * by someone else later, which on a test machine is very unlikely within a test.
 */
export async function closedPort(): Promise<number> {
  return freePort();
}

// ---------------------------------------------------------------------------------------------------------
// A tiny real filesystem

/** A small mounted filesystem that tests can fill up. */
export interface SmallFilesystemHandle {
  /** The mount point; write anywhere below it. */
  readonly path: string;
  readonly sizeMiB: number;
  /** How it was made: a tmpfs mount, or an ext4 image on a loop device. */
  readonly method: 'tmpfs' | 'loop-ext4';
  /**
   * Writes filler data until usage (as `df` computes it) is at least `percent`; resolves with the usage
   * reached. Writes nothing when usage is already there; filling to 100 stops at "no space left".
   */
  fill(percent: number): Promise<number>;
  /** Current usage in percent, as `df` computes it: used / (used + available to unprivileged users). */
  usagePercent(): Promise<number>;
  /** Deletes the filler files written by fill(). */
  clear(): Promise<void>;
  /** Unmounts and removes everything. */
  stop(): Promise<void>;
}

async function statfsUsage(
  mountPoint: string,
): Promise<{ percent: number; bsize: number; used: number; total: number }> {
  const s = await fsp.statfs(mountPoint);
  const used = s.blocks - s.bfree;
  const total = used + s.bavail;
  return { percent: total === 0 ? 100 : (used / total) * 100, bsize: s.bsize, used, total };
}

/**
 * Mounts a small real filesystem. It first tries a tmpfs (`mount -t tmpfs -o size=<n>m`), which needs root
 * (CAP_SYS_ADMIN) but no block device, and falls back to an ext4 image on a loop device (`mkfs.ext4`,
 * `mount -o loop`), for kernels or sandboxes that allow loop mounts but not tmpfs. On the development VM
 * (root, Debian 12) the tmpfs mount works; the loop fallback was checked to work there too. When neither
 * works (not root, or a container without CAP_SYS_ADMIN) this throws: tests that need a full disk must not
 * silently pass without one.
 */
export async function smallFilesystem(sizeMiB: number): Promise<SmallFilesystemHandle> {
  if (!Number.isInteger(sizeMiB) || sizeMiB < 1) throw new Error(`smallFilesystem: bad size ${sizeMiB} MiB`);
  const space = await workspace('smallfs', undefined);
  const mountPoint = path.join(space.dir, 'mnt');
  await fsp.mkdir(mountPoint);
  // Registered before mounting: on exit, unmount (lazily, in case something still has files open); exit
  // clean-ups run last-registered-first, so this happens before the directory is removed. `umount` of
  // something that is not mounted is harmless.
  const unregisterUnmount = onExit(() => runSyncQuiet('umount', ['-l', mountPoint]));

  let method: SmallFilesystemHandle['method'];
  const tmpfs = await run('mount', [
    '-t',
    'tmpfs',
    '-o',
    `size=${sizeMiB}m,mode=0777`,
    'gameops-test',
    mountPoint,
  ]);
  if (tmpfs.code === 0) {
    method = 'tmpfs';
  } else {
    const image = path.join(space.dir, 'fs.img');
    await fsp.writeFile(image, '');
    await fsp.truncate(image, sizeMiB * 1024 * 1024);
    // -m 0: no blocks reserved for root, so "available" is everything that is free.
    const mkfs = await run('mkfs.ext4', ['-F', '-q', '-m', '0', image]);
    const loop = mkfs.code === 0 ? await run('mount', ['-o', 'loop', image, mountPoint]) : mkfs;
    if (loop.code !== 0) {
      unregisterUnmount();
      await space.dispose();
      throw new Error(
        `smallFilesystem: cannot mount a ${sizeMiB} MiB filesystem here. Mounting needs root with ` +
          `CAP_SYS_ADMIN (e.g. a privileged container). tmpfs mount said: ${tmpfs.output.trim()}; ` +
          `loop mount said: ${loop.output.trim()}`,
      );
    }
    await fsp.chmod(mountPoint, 0o777);
    method = 'loop-ext4';
  }

  let fillers = 0;
  let stopping: Promise<void> | undefined;
  return {
    path: mountPoint,
    sizeMiB,
    method,
    usagePercent: async () => (await statfsUsage(mountPoint)).percent,
    fill: async (percent: number) => {
      const chunk = Buffer.alloc(1024 * 1024, 0xa5);
      // Filesystem metadata can take a few blocks too, so write, re-measure, and top up.
      for (let round = 0; round < 5; round++) {
        const usage = await statfsUsage(mountPoint);
        if (usage.percent >= percent) return usage.percent;
        const targetUsed = Math.ceil((percent / 100) * usage.total);
        let remaining = Math.max(1, targetUsed - usage.used) * usage.bsize;
        fillers += 1;
        const file = await fsp.open(path.join(mountPoint, `.gameops-fill-${fillers}`), 'w');
        try {
          while (remaining > 0) {
            const n = Math.min(remaining, chunk.length);
            await file.write(chunk, 0, n);
            remaining -= n;
          }
          await file.sync();
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
          return (await statfsUsage(mountPoint)).percent; // Full: as far as it goes.
        } finally {
          await file.close();
        }
      }
      return (await statfsUsage(mountPoint)).percent;
    },
    clear: async () => {
      for (const name of await fsp.readdir(mountPoint)) {
        if (name.startsWith('.gameops-fill-')) await fsp.rm(path.join(mountPoint, name), { force: true });
      }
    },
    stop: () => {
      stopping ??= (async () => {
        const result = await run('umount', [mountPoint]);
        // Busy (a test still has a file open): detach it lazily so the directory can go.
        if (result.code !== 0) await run('umount', ['-l', mountPoint]);
        unregisterUnmount();
        await space.dispose();
      })();
      return stopping;
    },
  };
}
