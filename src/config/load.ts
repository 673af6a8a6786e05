import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { isMap, isScalar, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { InputError, secret, type Secret } from '../core/index.ts';
import type { GameopsEnv } from './env.ts';
import { configSchema, type ParsedConfig } from './schema.ts';

type WithSecret<T, K extends keyof T> = Omit<T, K> & { [P in K]?: Secret };
type Channel = ParsedConfig['notifications']['channels'][number];
type ResolvedChannel =
  | WithSecret<Extract<Channel, { kind: 'webhook' }>, 'token'>
  | (Omit<Extract<Channel, { kind: 'slack' }>, 'webhookUrl'> & { webhookUrl: Secret })
  | (Omit<Extract<Channel, { kind: 'email' }>, 'smtpUrl'> & { smtpUrl: Secret });
type Storage = NonNullable<ParsedConfig['storage']>;
type ResolvedStorage =
  | Extract<Storage, { kind: 'filesystem' }>
  | WithSecret<Extract<Storage, { kind: 's3' }>, 'accessKeyId' | 'secretAccessKey'>;

export type MysqlConfig = WithSecret<NonNullable<ParsedConfig['mysql']>, 'password'>;
export type RedisConfig = WithSecret<NonNullable<ParsedConfig['redis']>, 'password'>;
export type AlertmanagerConfig = WithSecret<NonNullable<ParsedConfig['alertmanager']>, 'bearerToken'>;
export type PrometheusConfig = WithSecret<NonNullable<ParsedConfig['prometheus']>, 'bearerToken'>;
export type Thresholds = ParsedConfig['checks']['thresholds'];

/** The validated config with every secret reference resolved to a masked Secret. */
export interface GameopsConfig extends Omit<
  ParsedConfig,
  'mysql' | 'redis' | 'alertmanager' | 'prometheus' | 'database' | 'storage' | 'notifications'
> {
  mysql?: MysqlConfig;
  redis?: RedisConfig;
  alertmanager?: AlertmanagerConfig;
  prometheus?: PrometheusConfig;
  storage?: ResolvedStorage;
  notifications: { channels: ResolvedChannel[] };
  /** gameops's own store: PostgreSQL when `url` is set, otherwise embedded SQLite in `dataDir`. */
  database: { dataDir: string; url?: Secret };
}

export interface LoadedConfig {
  config: GameopsConfig;
  /** The file read, or undefined when running unconfigured. */
  file: string | undefined;
  /** False when no config file was found: gameops runs, and checks say "not configured". */
  configured: boolean;
  /** Non-fatal findings, e.g. an inline password. */
  warnings: string[];
}

/** A bad config: names the file, line and field of every problem. */
export class ConfigError extends InputError {
  constructor(message: string, details: { file: string; problems: ConfigProblem[] }) {
    super(message, { details: { ...details } });
  }
}

export interface ConfigProblem {
  field: string;
  line?: number;
  column?: number;
  message: string;
}

const DEFAULT_FILE = 'gameops.yaml';

/**
 * Finds and loads the config: `--config`, else `GAMEOPS_CONFIG`, else `./gameops.yaml` if present.
 * With none of them, returns an unconfigured default so that `gameops serve` still comes up.
 * @throws ConfigError for an explicit file that is missing, unreadable, not YAML or not valid.
 */
export function loadConfig(options: { path?: string; env: GameopsEnv; cwd?: string }): LoadedConfig {
  const cwd = options.cwd ?? process.cwd();
  const explicit = options.path ?? options.env.GAMEOPS_CONFIG;
  const file = explicit
    ? resolve(cwd, explicit)
    : existsSync(resolve(cwd, DEFAULT_FILE))
      ? resolve(cwd, DEFAULT_FILE)
      : undefined;
  if (!file) {
    const parsed = configSchema.parse({ service: { name: 'unconfigured', environment: 'none' } });
    return {
      config: resolveSecrets(parsed, '(defaults)', options.env, [], cwd),
      file: undefined,
      configured: false,
      warnings: [],
    };
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const reason =
      (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (err as Error).message;
    throw new ConfigError(`${file}: ${reason}`, { file, problems: [{ field: '(file)', message: reason }] });
  }
  return parseConfigText(text, file, options.env, cwd);
}

/** Parses and validates config text; `file` is used in messages and to resolve relative paths. */
export function parseConfigText(
  text: string,
  file: string,
  env: GameopsEnv,
  cwd = process.cwd(),
): LoadedConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const fail = (problems: ConfigProblem[]): never => {
    const lines = problems.map(
      (p) => `${file}${p.line ? `:${p.line}:${p.column ?? 1}` : ''}: ${p.field}: ${p.message}`,
    );
    throw new ConfigError(
      problems.length === 1
        ? `invalid config ${lines[0]}`
        : `invalid config (${problems.length} problems):\n  ${lines.join('\n  ')}`,
      { file, problems },
    );
  };
  if (doc.errors.length > 0) {
    fail(
      doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        return {
          field: '(yaml)',
          line: pos.line,
          column: pos.col,
          message: e.message.split('\n')[0] ?? e.message,
        };
      }),
    );
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 50 }) ?? {};
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    fail(
      result.error.issues.map((issue) => {
        const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
        // An unknown key is reported on its parent; point at the key itself.
        const at =
          issue.code === 'unrecognized_keys' && issue.keys[0] !== undefined ? [...path, issue.keys[0]] : path;
        const pos = locate(doc, at, lineCounter);
        return { field: fieldName(path, issue), ...pos, message: issue.message };
      }),
    );
  }
  const warnings: string[] = [];
  const config = resolveSecrets(result.data!, file, env, warnings, cwd);
  return { config, file, configured: true, warnings };
}

function fieldName(path: Array<string | number>, issue: z.core.$ZodIssue): string {
  const keys = issue.code === 'unrecognized_keys' ? issue.keys : [];
  const base = path
    .map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`))
    .join('')
    .replace(/^\./, '');
  if (keys.length > 0) return base ? `${base}.${keys.join(',')}` : keys.join(',');
  return base || '(root)';
}

/** Line and column of the deepest YAML node that exists along `path`. */
function locate(
  doc: ReturnType<typeof parseDocument>,
  path: Array<string | number>,
  lineCounter: LineCounter,
): { line?: number; column?: number } {
  for (let depth = path.length; depth >= 0; depth--) {
    const node: unknown = depth === 0 ? doc.contents : doc.getIn(path.slice(0, depth), true);
    if (node && typeof node === 'object' && 'range' in node && Array.isArray(node.range)) {
      // For a missing key, point at the map that should hold it; for a present one, at its key.
      const at =
        depth === path.length ? keyOffset(doc, path, node.range[0] as number) : (node.range[0] as number);
      const pos = lineCounter.linePos(at);
      return { line: pos.line, column: pos.col };
    }
  }
  return {};
}

function keyOffset(
  doc: ReturnType<typeof parseDocument>,
  path: Array<string | number>,
  fallback: number,
): number {
  const parent: unknown = path.length <= 1 ? doc.contents : doc.getIn(path.slice(0, -1), true);
  if (isMap(parent)) {
    const pair = parent.items.find((item) => isScalar(item.key) && item.key.value === path[path.length - 1]);
    if (pair && isScalar(pair.key) && pair.key.range) return pair.key.range[0];
  }
  return fallback;
}

/** Resolves `env:` / `file:` references; an inline value is kept but warned about. */
export function resolveSecretRef(
  ref: string,
  field: string,
  file: string,
  env: GameopsEnv,
  warnings: string[],
  cwd: string,
): Secret {
  if (ref.startsWith('env:')) {
    const name = ref.slice(4);
    const value = env.all[name];
    if (value === undefined || value === '')
      throw new ConfigError(`${file}: ${field}: environment variable ${name} is not set`, {
        file,
        problems: [{ field, message: `environment variable ${name} is not set` }],
      });
    return secret(value, ref);
  }
  if (ref.startsWith('file:')) {
    const path = resolve(cwd, ref.slice(5));
    try {
      return secret(readFileSync(path, 'utf8').replace(/\r?\n$/, ''), ref);
    } catch (err) {
      const reason =
        (err as NodeJS.ErrnoException).code === 'ENOENT'
          ? `${path} does not exist`
          : `${path}: ${(err as Error).message}`;
      throw new ConfigError(`${file}: ${field}: cannot read secret file ${reason}`, {
        file,
        problems: [{ field, message: reason }],
      });
    }
  }
  warnings.push(
    `${file}: ${field} holds an inline secret; use env:NAME or file:/path so it stays out of the file`,
  );
  return secret(ref, 'inline');
}

function resolveSecrets(
  parsed: ParsedConfig,
  file: string,
  env: GameopsEnv,
  warnings: string[],
  cwd: string,
): GameopsConfig {
  const ref = (value: string | undefined, field: string): Secret | undefined =>
    value === undefined ? undefined : resolveSecretRef(value, field, file, env, warnings, cwd);
  const { mysql, redis, alertmanager, prometheus, storage, database, notifications, ...rest } = parsed;
  const dbUrl = database.url ?? (env.DATABASE_URL ? 'env:DATABASE_URL' : undefined);
  return {
    ...rest,
    database: {
      dataDir: resolve(cwd, database.dataDir ?? env.GAMEOPS_DATA_DIR ?? '.gameops'),
      ...(dbUrl ? { url: ref(dbUrl, 'database.url') } : {}),
    },
    ...(mysql ? { mysql: { ...mysql, password: ref(mysql.password, 'mysql.password') } } : {}),
    ...(redis ? { redis: { ...redis, password: ref(redis.password, 'redis.password') } } : {}),
    ...(alertmanager
      ? {
          alertmanager: {
            ...alertmanager,
            bearerToken: ref(alertmanager.bearerToken, 'alertmanager.bearerToken'),
          },
        }
      : {}),
    ...(prometheus
      ? { prometheus: { ...prometheus, bearerToken: ref(prometheus.bearerToken, 'prometheus.bearerToken') } }
      : {}),
    ...(storage
      ? {
          storage:
            storage.kind === 's3'
              ? {
                  ...storage,
                  accessKeyId: ref(storage.accessKeyId, 'storage.accessKeyId'),
                  secretAccessKey: ref(storage.secretAccessKey, 'storage.secretAccessKey'),
                }
              : storage,
        }
      : {}),
    notifications: {
      channels: notifications.channels.map((c, i): ResolvedChannel => {
        const field = `notifications.channels[${i}]`;
        switch (c.kind) {
          case 'webhook':
            return { ...c, token: ref(c.token, `${field}.token`) };
          case 'slack':
            return { ...c, webhookUrl: ref(c.webhookUrl, `${field}.webhookUrl`)! };
          case 'email':
            return { ...c, smtpUrl: ref(c.smtpUrl, `${field}.smtpUrl`)! };
        }
      }),
    },
  };
}
