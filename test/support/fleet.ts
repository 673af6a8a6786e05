/**
 * Fleets of the reference game server (examples/game-server) on the local platform, for tests that need
 * the whole game-server contract with players: a gameops.yaml whose game servers use the shared MariaDB
 * (a database of their own) and Redis (a key prefix of their own), and a player that obeys drains.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import mysql from 'mysql2/promise';
import WebSocket from 'ws';
import { services } from '../harness/index.ts';
import { freePortBlock, MINI_SERVER } from '../../src/platform/local/test-support.ts';
import { writeTestConfig } from './config.ts';

const REPO = resolve(import.meta.dirname, '../..');

export interface ReferenceFleetConfig {
  /** The config file. */
  path: string;
  /** Its directory (secrets live there). */
  dir: string;
  /** gameops's data directory (the fleet state is under `fleet/`). */
  dataDir: string;
  /** The game servers' ops token. */
  token: string;
  /** Instance i listens on basePort + i. */
  basePort: number;
}

export interface ReferenceFleetOptions {
  /** Prefix of the game's database and Redis keys, e.g. `fleetcli`. */
  prefix: string;
  /** Versions (all the same server). @default ['1.0.0'] */
  versions?: string[];
  /** Also configure MariaDB, Redis and Alertmanager for the daily check. @default false */
  withServices?: boolean;
  /** @default '2m' */
  rolloutTimeout?: string;
}

/** Writes the config (platform `local`, replicas 0: the test scales) and creates the game's database. */
export async function writeReferenceFleetConfig(
  options: ReferenceFleetOptions,
): Promise<ReferenceFleetConfig> {
  const { mariadb, redis } = services();
  const database = `${options.prefix}_${randomBytes(4).toString('hex')}`;
  const root = await mysql.createConnection({
    socketPath: mariadb.socketPath,
    user: 'root',
    password: mariadb.password,
  });
  await root.query(`CREATE DATABASE ${database}`);
  await root.end();
  const basePort = await freePortBlock(6);
  const { dir, path } = writeTestConfig('', { withServices: options.withServices ?? false });
  const token = randomBytes(16).toString('hex');
  writeFileSync(join(dir, 'ops-token'), token, { mode: 0o600 });
  writeFileSync(join(dir, 'game-mysql-password'), mariadb.password, { mode: 0o600 });
  writeFileSync(join(dir, 'game-redis-password'), redis.password, { mode: 0o600 });
  const server = JSON.stringify([process.execPath, join(REPO, 'examples/game-server/main.ts')]);
  const versions = options.versions ?? ['1.0.0'];
  appendFileSync(
    path,
    [
      'platform:',
      '  kind: local',
      `  basePort: ${basePort}`,
      '  replicas: 0',
      `  version: "${versions[0]}"`,
      '  readinessTimeout: 30s',
      `  rolloutTimeout: ${options.rolloutTimeout ?? '2m'}`,
      '  minReady: 1s',
      '  versions:',
      ...versions.map((v) => `    "${v}": { command: ${server}, cwd: ${JSON.stringify(REPO)} }`),
      '  env:',
      `    GAME_MYSQL_HOST: "${mariadb.host}"`,
      `    GAME_MYSQL_PORT: "${mariadb.port}"`,
      '    GAME_MYSQL_USER: root',
      `    GAME_MYSQL_DATABASE: ${database}`,
      `    GAME_REDIS_HOST: "${redis.host}"`,
      `    GAME_REDIS_PORT: "${redis.port}"`,
      `    GAME_REDIS_KEY_PREFIX: "${database}:"`,
      '    GAME_SHUTDOWN_DRAIN_SECONDS: "1"',
      '  secretEnv:',
      `    GAME_MYSQL_PASSWORD: "file:${join(dir, 'game-mysql-password')}"`,
      `    GAME_REDIS_PASSWORD: "file:${join(dir, 'game-redis-password')}"`,
      `game: { opsToken: "file:${join(dir, 'ops-token')}", requestTimeout: 5s }`,
      '',
    ].join('\n'),
  );
  return { path, dir, dataDir: join(dir, 'data'), token, basePort };
}

/** A player on a reference game server who, asked to drain, saves and leaves after `leaveAfterMs`. */
export async function connectPlayer(wsUrl: string, name: string, leaveAfterMs: number): Promise<WebSocket> {
  const socket = new WebSocket(wsUrl);
  await new Promise<void>((resolvePromise, reject) => {
    socket.once('error', reject);
    socket.once('open', () => socket.send(JSON.stringify({ type: 'login', name })));
    socket.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString()) as { type: string };
      if (message.type === 'welcome') resolvePromise();
      if (message.type === 'drain')
        setTimeout(() => socket.send(JSON.stringify({ type: 'leave' })), leaveAfterMs);
    });
  });
  return socket;
}

/**
 * A gameops.yaml whose local platform runs the mini game server (test/fixtures/mini-game-server.ts): v1
 * and v2 (fine), `slow` (listens after 4 s) and `broken` (never ready). No fleet runs until a test scales.
 */
export async function writeMiniFleetConfig(): Promise<{ path: string; dataDir: string; token: string }> {
  const basePort = await freePortBlock(6);
  const { dir, path } = writeTestConfig('', { withServices: false });
  const token = randomBytes(16).toString('hex');
  writeFileSync(join(dir, 'ops-token'), token, { mode: 0o600 });
  const command = JSON.stringify([process.execPath, MINI_SERVER]);
  const version = (env: string) => `{ command: ${command}, cwd: ${JSON.stringify(REPO)}, env: ${env} }`;
  appendFileSync(
    path,
    [
      'platform:',
      '  kind: local',
      `  basePort: ${basePort}`,
      '  replicas: 0',
      '  version: v1',
      '  readinessTimeout: 5s',
      '  rolloutTimeout: 60s',
      '  minReady: 500ms',
      '  versions:',
      `    v1: ${version('{}')}`,
      `    v2: ${version('{}')}`,
      `    slow: ${version('{ MINI_START_DELAY_MS: "4000" }')}`,
      `    broken: ${version('{ MINI_NEVER_READY: "1" }')}`,
      `game: { opsToken: "file:${join(dir, 'ops-token')}", requestTimeout: 3s }`,
      '',
    ].join('\n'),
  );
  return { path, dataDir: join(dir, 'data'), token };
}
