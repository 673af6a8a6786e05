/**
 * The reference game server's configuration: environment variables only, validated at start
 * (docs/game-server-contract.md, "Environment of the reference server").
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

const SECRET_VARIABLES = ['GAME_OPS_TOKEN', 'GAME_MYSQL_PASSWORD', 'GAME_REDIS_PASSWORD'] as const;

const port = z.coerce.number().int().min(1).max(65535);
const intIn = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const name = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'letters, digits, ".", "_" and "-", at most 63');

const envSchema = z
  .object({
    GAME_PORT: port,
    GAME_HOST: z.string().min(1).default('127.0.0.1'),
    GAME_INSTANCE: name,
    GAME_VERSION: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/, 'letters, digits, ".", "_", "+" and "-", at most 128'),
    GAME_OPS_TOKEN: z.string().min(16, 'at least 16 characters').max(4096),
    GAME_MYSQL_HOST: z.string().min(1).optional(),
    GAME_MYSQL_PORT: port.default(3306),
    GAME_MYSQL_SOCKET: z.string().min(1).optional(),
    GAME_MYSQL_USER: z.string().min(1),
    GAME_MYSQL_PASSWORD: z.string().default(''),
    GAME_MYSQL_DATABASE: z
      .string()
      .regex(/^[A-Za-z0-9_$]{1,64}$/, 'a database name (letters, digits, _ or $)'),
    GAME_REDIS_HOST: z.string().min(1),
    GAME_REDIS_PORT: port.default(6379),
    GAME_REDIS_PASSWORD: z.string().min(1).optional(),
    GAME_REDIS_KEY_PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9:_.-]{0,64}$/, 'letters, digits, ":", "_", "." and "-", at most 64')
      .default(''),
    GAME_TICK_RATE: intIn(1, 120).default(30),
    GAME_SNAPSHOT_RATE: intIn(1, 120).default(5),
    GAME_MAX_PLAYERS: intIn(1, 100_000).default(2000),
    GAME_MAX_INPUTS_PER_SECOND: intIn(1, 1000).default(20),
    GAME_INPUT_BUDGET_MS: intIn(1, 10_000).default(50),
    GAME_INPUT_BATCH_SIZE: intIn(1, 100_000).default(100),
    GAME_SHUTDOWN_DRAIN_SECONDS: z.coerce.number().min(0).max(600).default(5),
    GAME_STATS_WINDOW_SECONDS: intIn(1, 3600).default(60),
    GAME_LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
    GAME_CONFIG_FILE: z.string().min(1).optional(),
    GAME_MYSQL_QUERY_TIMEOUT_MS: intIn(100, 600_000).default(5000),
    GAME_PING_INTERVAL_MS: intIn(100, 600_000).default(10_000),
    GAME_DIAGNOSTICS_DIR: z
      .string()
      .refine((dir) => path.isAbsolute(dir), 'an absolute path')
      .optional(),
    GAME_DIAGNOSTICS_IDLE_TIMEOUT_MS: intIn(100, 3_600_000).default(30_000),
  })
  .superRefine((env, ctx) => {
    if (env.GAME_SNAPSHOT_RATE > env.GAME_TICK_RATE)
      ctx.addIssue({
        code: 'custom',
        path: ['GAME_SNAPSHOT_RATE'],
        message: `at most GAME_TICK_RATE (${env.GAME_TICK_RATE})`,
      });
  });

export interface GameServerConfig {
  port: number;
  host: string;
  instance: string;
  version: string;
  opsToken: string;
  mysql: {
    host: string | undefined;
    port: number;
    socketPath: string | undefined;
    user: string;
    password: string;
    database: string;
  };
  redis: { host: string; port: number; password: string | undefined; keyPrefix: string };
  tickRate: number;
  snapshotRate: number;
  maxPlayers: number;
  maxInputsPerSecond: number;
  inputBudgetMs: number;
  inputBatchSize: number;
  shutdownDrainSeconds: number;
  statsWindowSeconds: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** The game config (JSON file, or a directory with one file per key), read at start. */
  configFile: string | undefined;
  /** A MySQL query (or a Redis batch) not answered within this long is abandoned and retried. */
  persistenceTimeoutMs: number;
  /** WebSocket ping period; a player that misses two pongs in a row is disconnected. */
  pingIntervalMs: number;
  /** Where heap snapshots are written while they are taken (then streamed and removed). */
  diagnosticsDir: string;
  /** A diagnostic download whose client reads nothing for this long is cut off. */
  diagnosticsIdleTimeoutMs: number;
}

/** Invalid environment: the message names each bad variable (never a secret's value). */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Empty strings count as unset, as shells and container specs often leave them. */
function presentOnly(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (key.startsWith('GAME_') && value !== undefined && value !== '') out[key] = value;
  }
  return out;
}

/** Reads and validates the GAME_* variables. @throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv): GameServerConfig {
  const present = presentOnly(env);
  const parsed = envSchema.safeParse(present);
  const problems = parsed.success
    ? []
    : parsed.error.issues.map((issue) => {
        const variable = issue.path.join('.') || '(environment)';
        return `${variable}: ${present[variable] === undefined ? 'required' : issue.message}`;
      });
  if (present['GAME_MYSQL_HOST'] === undefined && present['GAME_MYSQL_SOCKET'] === undefined)
    problems.push('GAME_MYSQL_HOST: set GAME_MYSQL_HOST (with GAME_MYSQL_PORT) or GAME_MYSQL_SOCKET');
  if (!parsed.success || problems.length > 0)
    throw new ConfigError(`invalid environment: ${problems.join('; ')}`);
  const e = parsed.data;
  return {
    port: e.GAME_PORT,
    host: e.GAME_HOST,
    instance: e.GAME_INSTANCE,
    version: e.GAME_VERSION,
    opsToken: e.GAME_OPS_TOKEN,
    mysql: {
      host: e.GAME_MYSQL_HOST,
      port: e.GAME_MYSQL_PORT,
      socketPath: e.GAME_MYSQL_SOCKET,
      user: e.GAME_MYSQL_USER,
      password: e.GAME_MYSQL_PASSWORD,
      database: e.GAME_MYSQL_DATABASE,
    },
    redis: {
      host: e.GAME_REDIS_HOST,
      port: e.GAME_REDIS_PORT,
      password: e.GAME_REDIS_PASSWORD,
      keyPrefix: e.GAME_REDIS_KEY_PREFIX,
    },
    tickRate: e.GAME_TICK_RATE,
    snapshotRate: e.GAME_SNAPSHOT_RATE,
    maxPlayers: e.GAME_MAX_PLAYERS,
    maxInputsPerSecond: e.GAME_MAX_INPUTS_PER_SECOND,
    inputBudgetMs: e.GAME_INPUT_BUDGET_MS,
    inputBatchSize: e.GAME_INPUT_BATCH_SIZE,
    shutdownDrainSeconds: e.GAME_SHUTDOWN_DRAIN_SECONDS,
    statsWindowSeconds: e.GAME_STATS_WINDOW_SECONDS,
    logLevel: e.GAME_LOG_LEVEL,
    configFile: e.GAME_CONFIG_FILE,
    persistenceTimeoutMs: e.GAME_MYSQL_QUERY_TIMEOUT_MS,
    pingIntervalMs: e.GAME_PING_INTERVAL_MS,
    diagnosticsDir: e.GAME_DIAGNOSTICS_DIR ?? os.tmpdir(),
    diagnosticsIdleTimeoutMs: e.GAME_DIAGNOSTICS_IDLE_TIMEOUT_MS,
  };
}

/** Removes the secrets from the environment once read: reports and child processes never see them. */
export function scrubSecrets(env: NodeJS.ProcessEnv): void {
  for (const variable of SECRET_VARIABLES) delete env[variable];
}

const MAX_GAME_CONFIG_BYTES = 1024 * 1024;
const gameConfigSchema = z.record(z.string(), z.string());

/** The maintenance state recorded in the game config (ADR 0006), applied at start. */
export interface StartupMaintenance {
  enabled: boolean;
  message: string | undefined;
  startsAt: string | undefined;
}

/**
 * Reads the game config that gameops writes (`GAME_CONFIG_FILE`): a JSON object of string values (the
 * local platform's `game-config.json`), or a directory holding one file per key (a Kubernetes ConfigMap
 * mounted as a volume). Returns undefined when the path does not exist.
 * @throws ConfigError when it exists but cannot be read as either.
 */
export function readGameConfig(file: string): Record<string, string> | undefined {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    return undefined;
  }
  if (stat.isDirectory()) {
    const config: Record<string, string> = {};
    for (const entry of fs.readdirSync(file, { withFileTypes: true })) {
      // ConfigMap volumes hold `..data` links and dot files; keys are plain names.
      if (entry.name.startsWith('.') || !/^[A-Za-z0-9_.-]{1,256}$/.test(entry.name)) continue;
      const keyFile = path.join(file, entry.name);
      if (fs.statSync(keyFile).size > MAX_GAME_CONFIG_BYTES) continue;
      config[entry.name] = fs.readFileSync(keyFile, 'utf8').trim();
    }
    return config;
  }
  if (stat.size > MAX_GAME_CONFIG_BYTES)
    throw new ConfigError(`GAME_CONFIG_FILE ${file}: larger than ${MAX_GAME_CONFIG_BYTES} bytes`);
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(
      `GAME_CONFIG_FILE ${file}: not JSON (${err instanceof Error ? err.message : String(err)})`,
    );
  }
  const parsed = gameConfigSchema.safeParse(json);
  if (!parsed.success)
    throw new ConfigError(`GAME_CONFIG_FILE ${file}: must be a JSON object of string values`);
  return parsed.data;
}

/** `maintenance_mode` (true/1/yes/on), `maintenance_message` and `maintenance_starts_at` from the game config. */
export function maintenanceFromGameConfig(config: Record<string, string>): StartupMaintenance {
  const flag = (config['maintenance_mode'] ?? '').trim().toLowerCase();
  const message = config['maintenance_message']?.trim();
  const startsAt = config['maintenance_starts_at']?.trim();
  return {
    enabled: flag === 'true' || flag === '1' || flag === 'yes' || flag === 'on',
    message: message ? message.slice(0, 500) : undefined,
    startsAt:
      startsAt && Number.isFinite(Date.parse(startsAt)) ? new Date(startsAt).toISOString() : undefined,
  };
}
