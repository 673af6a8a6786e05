import { VERSION, systemClock, type Clock, errorMessage } from '../core/index.ts';
import {
  loadConfig,
  readEnv,
  type GameopsEnv,
  type LoadedConfig,
  type GameopsConfig,
} from '../config/index.ts';
import { openStore, type Store } from '../store/index.ts';
import { recordConfigLoad } from '../audit/config.ts';
import { localActor } from '../identity/local.ts';
import { createLogger, type Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { Fleet } from '../platform/index.ts';
import type { CheckRun, KeptConnections } from '../checks/index.ts';
import type { Engine } from '../runbooks/engine.ts';
import type { Ops } from './ops.ts';

/**
 * The resources bag every engine and entry point receives. Wired here, once; no module-level
 * singletons, so tests build their own with a fake clock or a private store.
 */
export interface Resources {
  config: GameopsConfig;
  loaded: LoadedConfig;
  clock: Clock;
  log: Logger;
  /** gameops's own Prometheus metrics; only the server keeps them (loaded on demand). */
  metrics: Metrics | undefined;
  /** Undefined when the store could not be opened and the caller allowed running without it. */
  store: Store | undefined;
  /** Why there is no store, when there is none. */
  storeProblem: string | undefined;
  /**
   * Recent daily-check runs recorded by this process in its embedded store (newest first) and when it
   * last pruned: the store is this process's alone, so they need not be read back every cycle.
   */
  dailyHistory?: { runs: CheckRun[]; prunedAt: number | undefined } | undefined;
  /** The MySQL and Redis connections the daily check keeps between runs in the server (src/app/daily.ts). */
  dailyConnections?: KeptConnections | undefined;
  /** The game-server fleet, once opened by `openFleet` (never at bootstrap: most commands do not need it). */
  fleet?: Fleet | undefined;
  /** The fleet being opened (shared by callers that arrive together). */
  fleetOpening?: Promise<Fleet> | undefined;
  /** The runbook engine, once opened by `openRunbooks` (src/app/runbooks.ts). */
  engine?: Engine | undefined;
  /** The engine being opened (shared by callers that arrive together). */
  engineOpening?: Promise<Engine> | undefined;
  /** Incidents, on-call, alerts and channels, once opened by `openOps` (src/app/ops.ts). */
  ops?: Ops | undefined;
  /** The services being opened (shared by callers that arrive together). */
  opsOpening?: Promise<Ops> | undefined;
}

export interface BootstrapOptions {
  configPath?: string;
  env?: GameopsEnv;
  clock?: Clock;
  logLevel?: string;
  /**
   * `required`: fail when the store cannot be opened (the server). `optional`: open it when a config file
   * was found, and carry on without it if it cannot be opened (locked by `gameops serve`, not writable,
   * PostgreSQL down), saying why. `none`: do not open.
   */
  store: 'required' | 'optional' | 'none';
  /** Keep Prometheus metrics (the server does; a one-off CLI command does not). @default false */
  metrics?: boolean;
  cwd?: string;
}

export async function bootstrap(options: BootstrapOptions): Promise<Resources> {
  const env = options.env ?? readEnv();
  const loaded = loadConfig({
    ...(options.configPath ? { path: options.configPath } : {}),
    env,
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
  const log = createLogger(options.logLevel ?? env.GAMEOPS_LOG_LEVEL ?? 'info');
  for (const warning of loaded.warnings) log.warn(warning);
  const clock = options.clock ?? systemClock;
  const { config } = loaded;
  let store: Store | undefined;
  let storeProblem: string | undefined;
  // A one-off command with no config file at all records nothing (and leaves no ./.gameops behind).
  const wantStore = options.store === 'required' || (options.store === 'optional' && loaded.configured);
  if (wantStore) {
    try {
      store = await openStore({
        ...(config.database.url
          ? { url: config.database.url.reveal() }
          : { dataDir: config.database.dataDir }),
        clock,
      });
    } catch (err) {
      // The server needs its store; a one-off check still measures and reports without one.
      if (options.store === 'required') throw err;
      storeProblem = errorMessage(err);
    }
  }
  // An edited config file is audited once, as the OS user who started gameops on it.
  if (store && loaded.file) {
    await recordConfigLoad(store, loaded.file, localActor(), clock).catch((err: unknown) => {
      log.warn(`could not audit the config file ${loaded.file}: ${errorMessage(err)}`);
    });
  }
  const metrics = options.metrics
    ? (await import('./metrics.ts')).createMetrics({
        version: VERSION,
        service: config.service.name,
        environment: config.service.environment,
        store: store?.backend ?? 'none',
      })
    : undefined;
  return { config, loaded, clock, log, metrics, store, storeProblem };
}

/**
 * What `create` opens for `resources`, once: callers arriving together share the opening, and a failed
 * one is forgotten so that the next caller tries again. `cache` is the opener's own.
 */
export function openOnce<T>(
  cache: WeakMap<Resources, Promise<T>>,
  resources: Resources,
  create: (resources: Resources) => Promise<T>,
): Promise<T> {
  let opening = cache.get(resources);
  if (!opening) {
    opening = create(resources);
    cache.set(resources, opening);
    opening.catch(() => cache.delete(resources));
  }
  return opening;
}

/** Releases what bootstrap opened. Safe to call twice. */
export async function shutdown(resources: Resources): Promise<void> {
  const store = resources.store;
  // A fleet still being opened is waited for, so its platform is closed too.
  const opening = resources.fleetOpening;
  const fleet = resources.fleet ?? (opening ? await opening.catch(() => undefined) : undefined);
  // Incident response and the runbook engine (and its services) first: they work on the store.
  if (resources.ops || resources.opsOpening) await (await import('./ops.ts')).closeOps(resources);
  if (resources.engine || resources.engineOpening)
    await (await import('./runbooks.ts')).closeRunbooks(resources);
  await (await import('./backups.ts')).closeBackups(resources);
  const kept = resources.dailyConnections;
  resources.dailyConnections = undefined;
  await kept?.close();
  resources.store = undefined;
  resources.fleet = undefined;
  resources.fleetOpening = undefined;
  await fleet?.platform.close();
  await store?.close();
  resources.log.flush();
}
