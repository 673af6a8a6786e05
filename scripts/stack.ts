/**
 * `npm run stack`: runs a local example stack in the foreground — MariaDB, Redis, Alertmanager and
 * Prometheus on fixed loopback ports — for trying gameops against real servers (examples/gameops.yaml
 * points at it). Data lives under .gameops/stack/ and survives restarts; Ctrl-C (SIGINT) or SIGTERM stops
 * everything.
 *
 * Passwords are generated once and kept in .gameops/stack/secrets/ (mode 0600) so a config can reference
 * them as `file:` secrets:
 *   secrets/mysql-password  the `gameops` MariaDB user (a monitoring user, not root)
 *   secrets/redis-password  Redis `requirepass`
 *   secrets/game-mysql-password  the `game` MariaDB user of the reference game server
 *   secrets/game-ops-token  the bearer token of the game servers' /ops endpoints
 *
 * Usage: npm run stack -- [--mysql-port 13306] [--redis-port 16379] [--alertmanager-port 19093]
 *                         [--prometheus-port 19090] [--dir .gameops/stack]
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import { killPrivilegeFor } from '../src/connectors/mysql-ops.ts';
import { ensurePackages } from '../test/harness/packages.ts';
import { randomSecret } from '../test/harness/proc.ts';
import {
  postAlerts,
  startAlertmanager,
  startMariaDB,
  startPrometheus,
  startRedis,
} from '../test/harness/servers.ts';
import type { AlertInput, MariaDBHandle, ServerHandle } from '../test/harness/servers.ts';

const root = path.resolve(import.meta.dirname, '..');

const USAGE = `usage: npm run stack -- [options]
  --mysql-port <port>         MariaDB port (default 13306)
  --redis-port <port>         Redis port (default 16379)
  --alertmanager-port <port>  Alertmanager port (default 19093)
  --prometheus-port <port>    Prometheus port (default 19090)
  --dir <path>                data directory (default .gameops/stack)
`;

function parsePort(value: string | undefined, fallback: number, flag: string): number {
  if (value === undefined) return fallback;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new Error(`${flag}: not a port: ${value}`);
  return port;
}

/** Reads a secret file, creating it (0600, random hex) on first use. */
async function secret(file: string): Promise<string> {
  if (fs.existsSync(file)) {
    await fsp.chmod(file, 0o600);
    return (await fsp.readFile(file, 'utf8')).trim();
  }
  const value = randomSecret();
  await fsp.writeFile(file, value + '\n', { mode: 0o600 });
  return value;
}

/**
 * Creates (or re-syncs) the monitoring user `gameops` with the password from the secrets file and the
 * privileges a monitor needs and no more: PROCESS (every session's queries in the processlist), SELECT
 * on the game schema and on mysql.slow_log, and the privilege to KILL other users' queries (the
 * slow-queries runbook's approved kill): CONNECTION ADMIN on MariaDB 10.5+, SUPER before (it had no finer
 * one). Not SELECT on *.*: that would let it read password hashes in mysql.global_priv. No write
 * privileges on data.
 */
async function ensureMonitoringUser(db: MariaDBHandle, password: string): Promise<void> {
  const connection = await mysql.createConnection({
    socketPath: db.socketPath,
    user: 'root',
    password: db.password,
  });
  try {
    const [versionRows] = await connection.query('SELECT VERSION() AS version');
    const version = (versionRows as Array<{ version?: unknown }>)[0]?.version;
    const killPrivilege = killPrivilegeFor(typeof version === 'string' ? version : '');
    for (const host of ['127.0.0.1', 'localhost']) {
      await connection.query('CREATE USER IF NOT EXISTS ?@? IDENTIFIED BY ?', ['gameops', host, password]);
      await connection.query('ALTER USER ?@? IDENTIFIED BY ?', ['gameops', host, password]);
      // Stacks created before this change granted SELECT on *.*; take it back.
      await connection.query('REVOKE SELECT ON *.* FROM ?@?', ['gameops', host]).catch(() => undefined);
      await connection.query('GRANT PROCESS ON *.* TO ?@?', ['gameops', host]);
      await connection.query('GRANT SELECT ON gamedb.* TO ?@?', ['gameops', host]);
      await connection.query('GRANT SELECT ON mysql.slow_log TO ?@?', ['gameops', host]);
      await connection.query(`GRANT ${killPrivilege} ON *.* TO ?@?`, ['gameops', host]);
    }
  } finally {
    await connection.end();
  }
}

/**
 * The reference game server's own MariaDB user `game`: it writes `player_sessions` in the game schema and
 * nothing else (it creates that table at start, hence CREATE).
 */
async function ensureGameUser(db: MariaDBHandle, password: string): Promise<void> {
  const connection = await mysql.createConnection({
    socketPath: db.socketPath,
    user: 'root',
    password: db.password,
  });
  try {
    await connection.query('CREATE DATABASE IF NOT EXISTS gamedb');
    for (const host of ['127.0.0.1', 'localhost']) {
      await connection.query('CREATE USER IF NOT EXISTS ?@? IDENTIFIED BY ?', ['game', host, password]);
      await connection.query('ALTER USER ?@? IDENTIFIED BY ?', ['game', host, password]);
      await connection.query('GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON gamedb.* TO ?@?', [
        'game',
        host,
      ]);
    }
  } finally {
    await connection.end();
  }
}

/** Demo alerts: one critical with a runbook link, one warning without. */
function demoAlerts(startedAt: Date): AlertInput[] {
  // Re-posted every minute with endsAt ten minutes ahead, like Prometheus does, so they stay firing for as
  // long as the stack runs (without endsAt Alertmanager would resolve them after 5 minutes).
  const endsAt = new Date(Date.now() + 10 * 60_000);
  return [
    {
      labels: {
        alertname: 'GameServerDown',
        severity: 'critical',
        service: 'matchmaking',
        instance: 'mm-01',
      },
      annotations: {
        summary: 'Matchmaking server mm-01 is down',
        description: 'mm-01 has not answered health checks for 5 minutes.',
        runbook_url: 'https://runbooks.example.com/gameops/game-server-down',
      },
      startsAt: startedAt,
      endsAt,
      generatorURL: 'http://127.0.0.1/graph',
    },
    {
      labels: { alertname: 'HighLoginLatency', severity: 'warning', service: 'login' },
      annotations: { summary: 'Login p95 latency above 800 ms' },
      startsAt: startedAt,
      endsAt,
    },
  ];
}

function prometheusConfig(prometheusPort: number, alertmanagerPort: number): string {
  return `# Written by scripts/stack.ts (rewritten at every start).
global:
  scrape_interval: 15s
  evaluation_interval: 15s
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:${alertmanagerPort}']
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:${prometheusPort}']
  - job_name: alertmanager
    static_configs:
      - targets: ['127.0.0.1:${alertmanagerPort}']
`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'mysql-port': { type: 'string' },
      'redis-port': { type: 'string' },
      'alertmanager-port': { type: 'string' },
      'prometheus-port': { type: 'string' },
      dir: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(USAGE);
    return;
  }
  const ports = {
    mysql: parsePort(values['mysql-port'], 13306, '--mysql-port'),
    redis: parsePort(values['redis-port'], 16379, '--redis-port'),
    alertmanager: parsePort(values['alertmanager-port'], 19093, '--alertmanager-port'),
    prometheus: parsePort(values['prometheus-port'], 19090, '--prometheus-port'),
  };
  const dir = path.resolve(root, values.dir ?? '.gameops/stack');
  const secretsDir = path.join(dir, 'secrets');
  await fsp.mkdir(secretsDir, { recursive: true, mode: 0o700 });
  const mysqlPasswordFile = path.join(secretsDir, 'mysql-password');
  const redisPasswordFile = path.join(secretsDir, 'redis-password');
  const gameMysqlPasswordFile = path.join(secretsDir, 'game-mysql-password');
  const gameOpsTokenFile = path.join(secretsDir, 'game-ops-token');
  const mysqlPassword = await secret(mysqlPasswordFile);
  const redisPassword = await secret(redisPasswordFile);
  const gameMysqlPassword = await secret(gameMysqlPasswordFile);
  await secret(gameOpsTokenFile);

  await ensurePackages();
  const began = performance.now();
  const started = await Promise.allSettled([
    startMariaDB({ port: ports.mysql, dir: path.join(dir, 'mariadb') }),
    startRedis({
      port: ports.redis,
      dir: path.join(dir, 'redis'),
      password: redisPassword,
      appendonly: true,
    }),
    startAlertmanager({ port: ports.alertmanager, dir: path.join(dir, 'alertmanager') }),
    startPrometheus({
      port: ports.prometheus,
      dir: path.join(dir, 'prometheus'),
      configYaml: prometheusConfig(ports.prometheus, ports.alertmanager),
    }),
  ] as const);
  const handles: ServerHandle[] = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const stopAll = () => Promise.allSettled(handles.map((h) => h.stop()));
  const [mariadb, redis, alertmanager, prometheus] = started;
  if (
    mariadb.status === 'rejected' ||
    redis.status === 'rejected' ||
    alertmanager.status === 'rejected' ||
    prometheus.status === 'rejected'
  ) {
    await stopAll();
    for (const s of started) {
      if (s.status === 'rejected') process.stderr.write(`stack: ${String((s.reason as Error).message)}\n`);
    }
    process.exitCode = 1;
    return;
  }

  let reseed: NodeJS.Timeout | undefined;
  let shuttingDown = false;
  const shutdown = async (why: string, code: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    clearInterval(reseed);
    process.stderr.write(`stack: ${why}; stopping…\n`);
    await stopAll();
    process.stderr.write('stack: stopped\n');
    process.exit(code);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      // A second signal while stopping means "now": the exit hook SIGKILLs what is left.
      if (shuttingDown) process.exit(130);
      void shutdown(`got ${signal}`, 0);
    });
  }
  const names = ['mariadb', 'redis', 'alertmanager', 'prometheus'];
  handles.forEach((handle, i) => {
    void handle.exited.then(() => shutdown(`${names[i]} exited unexpectedly (see ${handle.logFile})`, 1));
  });

  try {
    await ensureMonitoringUser(mariadb.value, mysqlPassword);
    await ensureGameUser(mariadb.value, gameMysqlPassword);
    const startedAt = new Date();
    await postAlerts(alertmanager.value.url, demoAlerts(startedAt));
    reseed = setInterval(() => {
      postAlerts(alertmanager.value.url, demoAlerts(startedAt)).catch((error: unknown) => {
        process.stderr.write(`stack: could not re-post demo alerts: ${String(error)}\n`);
      });
    }, 60_000);
  } catch (error) {
    process.stderr.write(`stack: set-up failed: ${String(error)}\n`);
    await shutdown('set-up failed', 1);
    return;
  }

  const rel = (p: string) => {
    const relative = path.relative(process.cwd(), p);
    return relative.startsWith('..') ? p : relative || '.';
  };
  process.stdout.write(
    [
      `gameops example stack is up (${Math.round(performance.now() - began)} ms), data in ${rel(dir)}`,
      `  mariadb       127.0.0.1:${ports.mysql}  user gameops, password file:${rel(mysqlPasswordFile)}, database gamedb` +
        `  (root password: ${rel(path.join(mariadb.value.dir, 'root-password'))})`,
      `  redis         127.0.0.1:${ports.redis}  password file:${rel(redisPasswordFile)}`,
      `  alertmanager  ${alertmanager.value.url}  (2 demo alerts: GameServerDown critical, HighLoginLatency warning)`,
      `  prometheus    ${prometheus.value.url}`,
      `  game servers  user game, password file:${rel(gameMysqlPasswordFile)}; ops token file:${rel(gameOpsTokenFile)}`,
      `  example config: examples/gameops.yaml (its local platform runs examples/game-server on ports 17700+)`,
      'Press Ctrl-C to stop.',
      '',
    ].join('\n'),
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`stack: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
