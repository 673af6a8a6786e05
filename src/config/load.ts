import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { InputError, secret, type Secret } from '../core/index.ts';
import type { GameopsEnv } from './env.ts';
import { configSchema, type ParsedConfig } from './schema.ts';
import { FileProblem, formatBytes, keyOffset, readRegularFile } from './yaml-file.ts';

type WithSecret<T, K extends keyof T> = Omit<T, K> & { [P in K]?: Secret };
type Channel = ParsedConfig['notifications']['channels'][number];
type ResolvedChannel =
  | WithSecret<Extract<Channel, { kind: 'webhook' }>, 'token' | 'signingSecret'>
  | (Omit<Extract<Channel, { kind: 'slack' }>, 'webhookUrl'> & { webhookUrl: Secret })
  | (Omit<Extract<Channel, { kind: 'discord' }>, 'webhookUrl'> & { webhookUrl: Secret })
  | (Omit<Extract<Channel, { kind: 'email' }>, 'smtpUrl'> & { smtpUrl: Secret });
type Backups = NonNullable<ParsedConfig['backups']>;
type Storage = Backups['storage'];
export type StorageConfig =
  | Extract<Storage, { kind: 'filesystem' }>
  | WithSecret<Extract<Storage, { kind: 's3' }>, 'accessKeyId' | 'secretAccessKey'>;
type RestoreTarget = Backups['targets'][number];
/** A restore target with its credentials resolved. */
export type RestoreTargetConfig = Omit<RestoreTarget, 'mysql' | 'redis'> & {
  mysql?: WithSecret<NonNullable<RestoreTarget['mysql']>, 'password'>;
  redis?: WithSecret<NonNullable<RestoreTarget['redis']>, 'password'>;
};
/** `backups:` with every secret resolved; storage paths and files paths made absolute. */
export type BackupsConfig = Omit<Backups, 'storage' | 'encryption' | 'mysql' | 'targets'> & {
  storage: StorageConfig;
  encryption: { recipients: string[]; identity?: Secret };
  mysql: WithSecret<Backups['mysql'], 'password'>;
  targets: RestoreTargetConfig[];
};

export type MysqlConfig = WithSecret<NonNullable<ParsedConfig['mysql']>, 'password'>;
export type RedisConfig = WithSecret<NonNullable<ParsedConfig['redis']>, 'password'>;
/** Basic auth (`username` + `password`) or `bearerToken`, never both (the schema enforces it). */
export type AlertmanagerConfig = WithSecret<
  NonNullable<ParsedConfig['alertmanager']>,
  'bearerToken' | 'password'
>;
/** Basic auth (`username` + `password`) or `bearerToken`, never both (the schema enforces it). */
export type PrometheusConfig = WithSecret<
  NonNullable<ParsedConfig['prometheus']>,
  'bearerToken' | 'password'
>;
export type Thresholds = ParsedConfig['checks']['thresholds'];
type Platform = NonNullable<ParsedConfig['platform']>;
/** The local platform with `secretEnv` resolved and every `cwd` made absolute. */
export type LocalPlatformConfig = Omit<Extract<Platform, { kind: 'local' }>, 'secretEnv'> & {
  secretEnv: Record<string, Secret>;
};
export type KubernetesPlatformConfig = Extract<Platform, { kind: 'kubernetes' }>;
export type PlatformConfig = LocalPlatformConfig | KubernetesPlatformConfig;
export type GameConfigSection = WithSecret<ParsedConfig['game'], 'opsToken'>;
type Maintenance = ParsedConfig['maintenance'];
/** `maintenance:` with the maintenance database user's password resolved. */
export type MaintenanceConfig = Omit<Maintenance, 'db'> & {
  db: Omit<Maintenance['db'], 'mysql'> & {
    mysql?: WithSecret<NonNullable<Maintenance['db']['mysql']>, 'password'>;
  };
};

/** The validated config with every secret reference resolved to a masked Secret. */
export interface GameopsConfig extends Omit<
  ParsedConfig,
  | 'mysql'
  | 'redis'
  | 'alertmanager'
  | 'prometheus'
  | 'database'
  | 'backups'
  | 'notifications'
  | 'platform'
  | 'game'
  | 'maintenance'
> {
  maintenance: MaintenanceConfig;
  platform?: PlatformConfig;
  game: GameConfigSection;
  mysql?: MysqlConfig;
  redis?: RedisConfig;
  alertmanager?: AlertmanagerConfig;
  prometheus?: PrometheusConfig;
  backups?: BackupsConfig;
  notifications: { channels: ResolvedChannel[]; allowPrivate: string[] };
  /**
   * gameops's own store: PostgreSQL when `url` is set (always a postgres:// or postgresql:// URL),
   * otherwise embedded SQLite in `dataDir`.
   */
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
/** A config file larger than this is refused before it is read. */
const MAX_CONFIG_BYTES = 1024 * 1024;
/** A `file:` secret larger than this is refused before it is read. */
const MAX_SECRET_FILE_BYTES = 64 * 1024;
/**
 * More keys than this in one mapping is refused. No config needs that many, and it bounds the work on a
 * hostile file (yaml's own duplicate-key check is quadratic: ~150 s for the 100k keys 1 MiB holds).
 */
const MAX_KEYS_PER_MAP = 10_000;
/** Alias expansions allowed when converting the document (an alias bomb is refused). */
const MAX_ALIAS_COUNT = 50;
/** Problems listed (and located) in one error; the rest are counted. */
const MAX_LISTED_PROBLEMS = 20;
/** Unknown keys named in one problem; the rest are counted. */
const MAX_LISTED_KEYS = 10;

type Path = Array<string | number>;
type Position = { line?: number; column?: number };

/**
 * Finds and loads the config: `--config`, else `GAMEOPS_CONFIG`, else `./gameops.yaml` if present.
 * With none of them, returns an unconfigured default so that `gameops serve` still comes up.
 * @throws ConfigError for an explicit file that is missing, unreadable, not a regular file, larger than
 *   1 MiB, not YAML or not valid, and for a secret that cannot be resolved.
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
      config: resolveSecrets(parsed, '(defaults)', options.env, [], cwd, () => ({})),
      file: undefined,
      configured: false,
      warnings: [],
    };
  }
  let text: string;
  try {
    text = readRegularFile(file, MAX_CONFIG_BYTES, 'a config file');
  } catch (err) {
    const reason = err instanceof FileProblem ? err.message : String(err);
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
  function fail(problems: ConfigProblem[], total = problems.length): never {
    throw configError(file, problems, total);
  }
  if (Buffer.byteLength(text, 'utf8') > MAX_CONFIG_BYTES) {
    fail([
      {
        field: '(file)',
        message: `larger than ${formatBytes(MAX_CONFIG_BYTES)}, the limit for a config file`,
      },
    ]);
  }
  const lineCounter = new LineCounter();
  const position = (offset: number | undefined): Position => {
    if (offset === undefined) return {};
    const pos = lineCounter.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
  // Duplicate keys are found by checkMappings, in linear time; yaml's uniqueKeys check is quadratic.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  if (doc.errors.length > 0) {
    fail(
      doc.errors.slice(0, MAX_LISTED_PROBLEMS).map((e) => ({
        field: '(yaml)',
        ...position(e.pos[0]),
        message: e.message.split('\n')[0] ?? e.message,
      })),
      doc.errors.length,
    );
  }
  const structural = checkMappings(doc, position);
  if (structural.length > 0) fail(structural.slice(0, MAX_LISTED_PROBLEMS), structural.length);
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) ?? {};
  } catch (err) {
    const aliases = err instanceof ReferenceError && /alias/i.test(err.message);
    fail([
      {
        field: '(yaml)',
        message: aliases
          ? `aliases expand too far (more than ${MAX_ALIAS_COUNT} expansions; an alias bomb?)`
          : `cannot be read: ${(err as Error).message}`,
      },
    ]);
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const { issues } = result.error;
    fail(
      issues.slice(0, MAX_LISTED_PROBLEMS).map((issue) => {
        const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
        // An unknown key is reported on its parent; point at the key itself.
        const at =
          issue.code === 'unrecognized_keys' && issue.keys[0] !== undefined ? [...path, issue.keys[0]] : path;
        const pos = locate(doc, at, lineCounter);
        const message = issue.code === 'unrecognized_keys' ? unknownKeysMessage(issue.keys) : issue.message;
        return { field: fieldName(path, issue), ...pos, message };
      }),
      issues.length,
    );
  }
  const warnings: string[] = [];
  const config = resolveSecrets(result.data, file, env, warnings, cwd, (path) =>
    locate(doc, path, lineCounter),
  );
  return { config, file, configured: true, warnings };
}

function configError(file: string, problems: ConfigProblem[], total = problems.length): ConfigError {
  const lines = problems.map(
    (p) => `${file}${p.line ? `:${p.line}:${p.column ?? 1}` : ''}: ${p.field}: ${p.message}`,
  );
  if (total > problems.length) lines.push(`and ${total - problems.length} more`);
  return new ConfigError(
    total === 1
      ? `invalid config ${lines[0]}`
      : `invalid config (${total} problems):\n  ${lines.join('\n  ')}`,
    { file, problems },
  );
}

/**
 * Refuses what the schema cannot see once the YAML is turned into objects: duplicate keys (the later one
 * would silently win), keys that are lists, maps or aliases, and mappings too large to be a config.
 * Iterative, so nesting depth costs no stack.
 */
function checkMappings(
  doc: Document.Parsed,
  position: (offset: number | undefined) => Position,
): ConfigProblem[] {
  interface Entry {
    node: unknown;
    parent: Entry | undefined;
    segment: string | number | undefined;
  }
  const pathOf = (entry: Entry | undefined): Path => {
    const path: Path = [];
    for (let e = entry; e?.segment !== undefined; e = e.parent) path.unshift(e.segment);
    return path;
  };
  const problems: ConfigProblem[] = [];
  const stack: Entry[] = [{ node: doc.contents, parent: undefined, segment: undefined }];
  for (let entry = stack.pop(); entry; entry = stack.pop()) {
    const { node } = entry;
    if (isSeq(node)) {
      node.items.forEach((item, i) => stack.push({ node: item, parent: entry, segment: i }));
    } else if (isMap(node)) {
      if (node.items.length > MAX_KEYS_PER_MAP) {
        problems.push({
          field: pathName(pathOf(entry)),
          ...position(node.range?.[0]),
          message: `a mapping with ${node.items.length} keys; at most ${MAX_KEYS_PER_MAP} are accepted`,
        });
        continue;
      }
      const seen = new Map<string, number | undefined>();
      for (const pair of node.items) {
        const key: unknown = pair.key;
        if (!isScalar(key)) {
          problems.push({
            field: pathName(pathOf(entry)),
            ...position((key as { range?: [number] } | null)?.range?.[0] ?? node.range?.[0]),
            message: 'keys must be plain text or numbers (not empty, a list, a mapping or an alias)',
          });
          continue;
        }
        const name = String(key.value);
        const child: Entry = { node: pair.value, parent: entry, segment: name };
        if (seen.has(name)) {
          const first = position(seen.get(name));
          problems.push({
            field: pathName(pathOf(child)),
            ...position(key.range?.[0]),
            message: `duplicate key${first.line ? ` (first at line ${first.line})` : ''}`,
          });
        } else {
          seen.set(name, key.range?.[0]);
        }
        stack.push(child);
      }
    }
  }
  // In the order of the file, not of the walk.
  return problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
}

function unknownKeysMessage(keys: string[]): string {
  const named = keys
    .slice(0, MAX_LISTED_KEYS)
    .map((key) => JSON.stringify(key))
    .join(', ');
  const more = keys.length > MAX_LISTED_KEYS ? ` and ${keys.length - MAX_LISTED_KEYS} more` : '';
  return `unknown key${keys.length === 1 ? '' : 's'} ${named}${more}`;
}

function pathName(path: Path): string {
  return (
    path
      .map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`))
      .join('')
      .replace(/^\./, '') || '(root)'
  );
}

function fieldName(path: Path, issue: z.core.$ZodIssue): string {
  const keys = issue.code === 'unrecognized_keys' ? issue.keys : [];
  const base = pathName(path);
  if (keys.length === 0) return base;
  const named = keys.slice(0, MAX_LISTED_KEYS).join(',');
  const more = keys.length > MAX_LISTED_KEYS ? ` and ${keys.length - MAX_LISTED_KEYS} more` : '';
  return `${base === '(root)' ? '' : `${base}.`}${named}${more}`;
}

/** Line and column of the deepest YAML node that exists along `path`. */
function locate(doc: Document.Parsed, path: Path, lineCounter: LineCounter): Position {
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

/**
 * Resolves an `env:` / `file:` reference; an inline value is kept but warned about. A `file:` secret
 * must be a regular file of at most 64 KiB.
 * @returns the secret, or the problem (a phrase) when it cannot be resolved.
 */
function resolveRef(
  ref: string,
  field: string,
  file: string,
  env: GameopsEnv,
  warnings: string[],
  cwd: string,
): Secret | { problem: string } {
  if (ref.startsWith('env:')) {
    const name = ref.slice(4);
    const value = env.all[name];
    if (value === undefined || value === '') return { problem: `environment variable ${name} is not set` };
    return secret(value, ref);
  }
  if (ref.startsWith('file:')) {
    const path = resolve(cwd, ref.slice(5));
    try {
      return secret(readRegularFile(path, MAX_SECRET_FILE_BYTES, 'a secret file').replace(/\r?\n$/, ''), ref);
    } catch (err) {
      const reason = err instanceof FileProblem ? err.message : String(err);
      return { problem: `cannot read secret file ${path}: ${reason}` };
    }
  }
  warnings.push(
    `${file}: ${field} holds an inline secret; use env:NAME or file:/path so it stays out of the file`,
  );
  return secret(ref, 'inline');
}

/**
 * Resolves `env:` / `file:` references; an inline value is kept but warned about.
 * @throws ConfigError naming the file, the field and (when given) its position.
 */
export function resolveSecretRef(
  ref: string,
  field: string,
  file: string,
  env: GameopsEnv,
  warnings: string[],
  cwd: string,
  at: Position = {},
): Secret {
  const resolved = resolveRef(ref, field, file, env, warnings, cwd);
  if ('problem' in resolved) throw configError(file, [{ field, ...at, message: resolved.problem }]);
  return resolved;
}

const POSTGRES_URL = /^postgres(ql)?:\/\//i;

function resolveSecrets(
  parsed: ParsedConfig,
  file: string,
  env: GameopsEnv,
  warnings: string[],
  cwd: string,
  at: (path: Path) => Position,
): GameopsConfig {
  const problems: ConfigProblem[] = [];
  const ref = (value: string | undefined, path: Path): Secret | undefined => {
    if (value === undefined) return undefined;
    const field = pathName(path);
    const resolved = resolveRef(value, field, file, env, warnings, cwd);
    if (!('problem' in resolved)) return resolved;
    problems.push({ field, ...at(path), message: resolved.problem });
    return undefined;
  };
  const httpAuth = <T extends { password?: string | undefined; bearerToken?: string | undefined }>(
    section: T,
    name: 'alertmanager' | 'prometheus',
  ) => ({
    ...section,
    password: ref(section.password, [name, 'password']),
    bearerToken: ref(section.bearerToken, [name, 'bearerToken']),
  });
  const {
    mysql,
    redis,
    alertmanager,
    prometheus,
    backups,
    database,
    notifications,
    platform,
    game,
    maintenance,
    ...rest
  } = parsed;
  const config: GameopsConfig = {
    ...rest,
    database: {
      dataDir: resolve(cwd, database.dataDir ?? env.GAMEOPS_DATA_DIR ?? '.gameops'),
      ...databaseUrl(
        database.url,
        env,
        (value) => ref(value, ['database', 'url']),
        (message) => problems.push({ field: 'database.url', ...at(['database', 'url']), message }),
      ),
    },
    ...(mysql ? { mysql: { ...mysql, password: ref(mysql.password, ['mysql', 'password']) } } : {}),
    ...(redis ? { redis: { ...redis, password: ref(redis.password, ['redis', 'password']) } } : {}),
    ...(alertmanager ? { alertmanager: httpAuth(alertmanager, 'alertmanager') } : {}),
    ...(prometheus ? { prometheus: httpAuth(prometheus, 'prometheus') } : {}),
    ...(backups ? { backups: resolveBackups(backups, cwd, ref) } : {}),
    ...(platform ? { platform: resolvePlatform(platform, cwd, ref) } : {}),
    game: { ...game, opsToken: ref(game.opsToken, ['game', 'opsToken']) },
    maintenance: {
      ...maintenance,
      db: {
        optimize: maintenance.db.optimize,
        partitions: maintenance.db.partitions,
        purge: maintenance.db.purge,
        ...(maintenance.db.mysql
          ? {
              mysql: {
                ...maintenance.db.mysql,
                password: ref(maintenance.db.mysql.password, ['maintenance', 'db', 'mysql', 'password']),
              },
            }
          : {}),
      },
    },
    notifications: {
      allowPrivate: notifications.allowPrivate,
      channels: notifications.channels.map((c, i): ResolvedChannel => {
        const path = ['notifications', 'channels', i];
        switch (c.kind) {
          case 'webhook':
            return {
              ...c,
              token: ref(c.token, [...path, 'token']),
              signingSecret: ref(c.signingSecret, [...path, 'signingSecret']),
            };
          case 'slack':
          case 'discord':
            return { ...c, webhookUrl: ref(c.webhookUrl, [...path, 'webhookUrl'])! };
          case 'email':
            return { ...c, smtpUrl: ref(c.smtpUrl, [...path, 'smtpUrl'])! };
        }
      }),
    },
  };
  if (problems.length > 0) throw configError(file, problems);
  return config;
}

/** Resolves the local platform's secret environment and makes its working directories absolute. */
function resolvePlatform(
  platform: Platform,
  cwd: string,
  ref: (value: string | undefined, path: Path) => Secret | undefined,
): PlatformConfig {
  if (platform.kind === 'kubernetes')
    return platform.kubeconfig ? { ...platform, kubeconfig: resolve(cwd, platform.kubeconfig) } : platform;
  const secretEnv: Record<string, Secret> = {};
  for (const [name, value] of Object.entries(platform.secretEnv)) {
    const resolved = ref(value, ['platform', 'secretEnv', name]);
    if (resolved) secretEnv[name] = resolved;
  }
  const versions = Object.fromEntries(
    Object.entries(platform.versions).map(([name, v]) => [name, { ...v, cwd: resolve(cwd, v.cwd ?? '.') }]),
  );
  return { ...platform, versions, secretEnv };
}

/**
 * The store URL: `database.url` from the file, else `DATABASE_URL`. Only PostgreSQL is supported, so
 * anything but a postgres:// or postgresql:// URL is refused, without repeating the URL (it may hold a
 * password).
 */
function databaseUrl(
  fromFile: string | undefined,
  env: GameopsEnv,
  resolveUrl: (value: string) => Secret | undefined,
  problem: (message: string) => void,
): { url?: Secret } {
  const notPostgres = 'only PostgreSQL is supported: the URL must start with postgres:// or postgresql://';
  const notAUrl = 'is not a valid URL (expected postgres://user:password@host:port/db)';
  if (fromFile !== undefined) {
    const url = resolveUrl(fromFile);
    if (!url) return {};
    const text = url.reveal();
    if (!POSTGRES_URL.test(text)) problem(`${notPostgres}; remove it to use the embedded store`);
    else if (!URL.canParse(text)) problem(notAUrl);
    return { url };
  }
  const text = env.DATABASE_URL;
  if (text === undefined) return {};
  const envProblem = !POSTGRES_URL.test(text)
    ? `${notPostgres}; unset it to use the embedded store`
    : !URL.canParse(text)
      ? notAUrl
      : undefined;
  if (envProblem) {
    throw new ConfigError(`environment variable DATABASE_URL: ${envProblem}`, {
      file: '(environment)',
      problems: [{ field: 'DATABASE_URL', message: envProblem }],
    });
  }
  return { url: secret(text, 'env:DATABASE_URL') };
}

function resolveBackups(
  backups: Backups,
  cwd: string,
  ref: (value: string | undefined, path: Path) => Secret | undefined,
): BackupsConfig {
  const { storage, encryption, mysql, targets, files, ...rest } = backups;
  return {
    ...rest,
    files: { paths: files.paths.map((p) => resolve(cwd, p)) },
    storage:
      storage.kind === 's3'
        ? {
            ...storage,
            accessKeyId: ref(storage.accessKeyId, ['backups', 'storage', 'accessKeyId']),
            secretAccessKey: ref(storage.secretAccessKey, ['backups', 'storage', 'secretAccessKey']),
          }
        : { ...storage, path: resolve(cwd, storage.path) },
    encryption: {
      recipients: encryption.recipients,
      ...optional('identity', ref(encryption.identity, ['backups', 'encryption', 'identity'])),
    },
    mysql: { ...mysql, password: ref(mysql.password, ['backups', 'mysql', 'password']) },
    targets: targets.map(({ mysql: tm, redis: tr, ...t }, i) => ({
      ...t,
      ...(t.filesRoot === undefined ? {} : { filesRoot: resolve(cwd, t.filesRoot) }),
      ...(tm
        ? { mysql: { ...tm, password: ref(tm.password, ['backups', 'targets', i, 'mysql', 'password']) } }
        : {}),
      ...(tr
        ? { redis: { ...tr, password: ref(tr.password, ['backups', 'targets', i, 'redis', 'password']) } }
        : {}),
    })),
  };
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
