/**
 * The reference game server: `node examples/game-server/main.ts`, configured by GAME_* environment
 * variables (docs/game-server-contract.md). It listens only once MySQL and Redis have answered and the tick
 * loop runs, so `GET /ops/status` answering means ready.
 *
 * Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when a dependency or the port is unusable or
 * on an unexpected error, 2 for an invalid environment.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Pool } from 'mysql2/promise';
import type { Redis } from 'ioredis';
import {
  ConfigError,
  loadConfig,
  maintenanceFromGameConfig,
  readGameConfig,
  scrubSecrets,
  type GameServerConfig,
} from './config.ts';
import { Diagnostics } from './diagnostics.ts';
import { Game } from './game.ts';
import { createRequestHandler } from './http.ts';
import { createLogger, type Logger } from './log.ts';
import { createMetrics } from './metrics.ts';
import { connectMysql, connectRedis, DependencyError, Persistence } from './persistence.ts';

/** One JSON line without a logger (used before the config, hence the logger, exists). */
function earlyLine(level: string, msg: string): void {
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level, msg }) + '\n');
}

async function connectDependencies(
  config: GameServerConfig,
  log: Logger,
): Promise<{ pool: Pool; redis: Redis }> {
  const [mysqlResult, redisResult] = await Promise.allSettled([
    connectMysql(config.mysql),
    connectRedis(config.redis),
  ]);
  if (mysqlResult.status === 'fulfilled' && redisResult.status === 'fulfilled')
    return { pool: mysqlResult.value, redis: redisResult.value };
  if (mysqlResult.status === 'fulfilled') await mysqlResult.value.end().catch(() => undefined);
  if (redisResult.status === 'fulfilled') redisResult.value.disconnect();
  const reasons = [mysqlResult, redisResult].flatMap((r) =>
    r.status === 'rejected' ? [r.reason instanceof Error ? r.reason.message : String(r.reason)] : [],
  );
  for (const reason of reasons) log.error(reason);
  throw new DependencyError(reasons.join('; '));
}

async function main(): Promise<void> {
  let config: GameServerConfig;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    earlyLine('ERROR', `game server: ${err.message}`);
    process.exitCode = 2;
    return;
  }
  scrubSecrets(process.env);
  const log = createLogger({ level: config.logLevel, base: { instance: config.instance } });
  process.on('uncaughtException', (err) => {
    log.error({ err }, 'uncaught exception; exiting');
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    log.error({ err }, 'unhandled rejection; exiting');
    process.exit(1);
  });

  log.info(
    { version: config.version, tickRate: config.tickRate, pid: process.pid },
    `starting game server ${config.instance} (version ${config.version})`,
  );
  let deps: { pool: Pool; redis: Redis };
  try {
    deps = await connectDependencies(config, log);
  } catch (err) {
    if (!(err instanceof DependencyError)) throw err;
    log.error('cannot start: a dependency is unreachable');
    process.exitCode = 1;
    return;
  }

  const metrics = createMetrics();
  const persistence: Persistence = new Persistence({
    pool: deps.pool,
    redis: deps.redis,
    instance: config.instance,
    version: config.version,
    log,
    metrics,
    timeoutMs: config.persistenceTimeoutMs,
    // Called from a timer, after `game` exists.
    onlinePlayers: (): Iterable<string> => game.onlinePlayers(),
  });
  const game: Game = new Game({ config, log, metrics, store: persistence });
  const diagnostics = new Diagnostics({ instance: config.instance, dir: config.diagnosticsDir });
  // Snapshot directories an earlier process left behind (killed mid-snapshot) hold secrets: remove them.
  const swept = await diagnostics.sweepStale();
  if (swept > 0)
    log.warn({ dir: diagnostics.dir, removed: swept }, `removed ${swept} stale heap snapshot directories`);
  if (config.configFile !== undefined) {
    // An instance that starts while the gate is closed comes up closed (ADR 0006).
    try {
      const gameConfig = readGameConfig(config.configFile);
      if (gameConfig) {
        const maintenance = maintenanceFromGameConfig(gameConfig);
        if (maintenance.enabled) game.setMaintenance(maintenance);
      }
    } catch (err) {
      log.warn(`game config ignored: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  persistence.start();
  game.start();

  const server = http.createServer(
    createRequestHandler({
      game,
      diagnostics,
      metrics,
      log,
      token: config.opsToken,
      idleTimeoutMs: config.diagnosticsIdleTimeoutMs,
    }),
  );
  server.headersTimeout = 10_000;
  server.requestTimeout = 120_000;
  server.on('upgrade', (req, socket: Socket, head: Buffer) => {
    const path = new URL(req.url ?? '/', 'http://game.invalid').pathname;
    if (path !== '/play') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    game.handleUpgrade(req, socket, head);
  });
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    log.error(
      { code: (err as { code?: unknown }).code },
      `cannot listen on ${config.host}:${config.port}: ${err instanceof Error ? err.message : String(err)}`,
    );
    game.shutdown(0).catch(() => undefined);
    await persistence.close(1000);
    process.exit(1);
  }
  log.info(
    { host: config.host, port: config.port },
    `listening on http://${config.host}:${config.port} (players: /play, ops: /ops/*, metrics: /metrics)`,
  );

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, players: game.playersOnline }, `${signal}: shutting down`);
    void (async () => {
      await game.shutdown(config.shutdownDrainSeconds);
      server.close();
      server.closeIdleConnections();
      await game.closeSockets(1000);
      await persistence.close(5000);
      server.closeAllConnections();
      log.info('stopped');
      process.exit(0);
    })();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err: unknown) => {
  earlyLine('ERROR', `game server failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
