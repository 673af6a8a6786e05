import { join } from 'node:path';
import type { Resources } from '../../app/bootstrap.ts';
import type { BackupService } from '../../backups/service.ts';
import type { Ops } from '../../app/ops.ts';
import { openFleet } from '../../app/fleet.ts';
import type { Logger } from '../../app/log.ts';
import type { GameopsConfig, MysqlConfig } from '../../config/index.ts';
import { withMysql, type MysqlClient } from '../../connectors/mysql.ts';
import { createPrometheusClient, type PrometheusClient } from '../../connectors/prometheus.ts';
import { GameopsError, ErrorCode, InputError, UnavailableError, type Clock } from '../../core/index.ts';
import type { Fleet } from '../../platform/index.ts';
import type { Store } from '../../store/index.ts';
import type { StepContext } from '../model.ts';
import { createNotifier, type Notifier } from './notify.ts';

const BRAND = Symbol.for('gameops.runbookServices');

/**
 * What actions and checks reach through `StepContext.services`: the config, the fleet (opened on first
 * use and shared with the rest of the process), MySQL connections (one per use, always closed),
 * Prometheus, where artefacts are kept, notifications, and the store for recording check runs.
 */
export interface RunbookServices {
  readonly [BRAND]: true;
  readonly config: GameopsConfig;
  readonly clock: Clock;
  readonly log: Logger;
  /** The application resources (the daily check records through them). */
  readonly resources: Resources;
  /** gameops's own store, when open. */
  readonly store: Store | undefined;
  /** The fleet of the configured platform. @throws InputError when no platform is configured. */
  fleet(): Promise<Fleet>;
  /** Runs `work` on a fresh MySQL connection, closed afterwards. @throws InputError when no mysql is configured. */
  mysql<T>(
    signal: AbortSignal | undefined,
    work: (client: MysqlClient, config: MysqlConfig) => Promise<T>,
  ): Promise<T>;
  /** The Prometheus client, or undefined when `prometheus` is not configured. */
  prometheus(): PrometheusClient | undefined;
  /** Where a run's artefacts (profiles, heap snapshots) are kept: `<artefactDir>/runs/<runId>`. */
  artefactDir(runId: string): string;
  readonly notifier: Notifier;
  /** The backup service (src/app/backups.ts). @throws InputError when `backups` is not configured. */
  backups(): Promise<BackupService>;
  /**
   * Incident response of this process (src/app/ops.ts): alerts (silences, paging suppression windows),
   * on-call, incidents, channels. @throws UnavailableError when there is no store.
   */
  ops(): Promise<Ops>;
  /** Refuses further use; the fleet itself is released by the application's shutdown. */
  close(): Promise<void>;
}

/** Creates the services for one process. Nothing is opened until an action needs it. */
export function createRunbookServices(resources: Resources): RunbookServices {
  const { config, clock, log } = resources;
  let closed = false;
  let prometheus: PrometheusClient | undefined;
  const notifier = createNotifier(config, { clock });
  const root = config.game.artefactDir ?? join(config.database.dataDir, 'artefacts');
  const open = (what: string): void => {
    if (closed) throw new UnavailableError(`runbook services are shut down; cannot use ${what}`);
  };
  return {
    [BRAND]: true,
    config,
    clock,
    log,
    resources,
    get store() {
      return resources.store;
    },
    async fleet() {
      open('the fleet');
      return openFleet(resources);
    },
    async mysql(signal, work) {
      open('MySQL');
      const mysql = config.mysql;
      if (!mysql)
        throw new InputError(
          'no database is configured: add a `mysql:` section (host, user, password) to the config',
        );
      return withMysql(mysql, signal, (client) => work(client, mysql));
    },
    prometheus() {
      open('Prometheus');
      if (!config.prometheus) return undefined;
      prometheus ??= createPrometheusClient(config.prometheus);
      return prometheus;
    },
    artefactDir(runId) {
      if (!/^[A-Za-z0-9_-]{1,100}$/.test(runId))
        throw new InputError(`run id "${runId.slice(0, 100)}" cannot name an artefact directory`);
      return join(root, 'runs', runId);
    },
    notifier,
    async backups() {
      open('backups');
      return (await import('../../app/backups.ts')).openBackups(resources);
    },
    async ops() {
      open('incident response');
      return (await import('../../app/ops.ts')).openOps(resources);
    },
    async close() {
      closed = true;
      await Promise.resolve();
    },
  };
}

/** The services of a step. @throws GameopsError (internal) when the engine was given something else. */
export function servicesOf(ctx: Pick<StepContext, 'services'> | { services: unknown }): RunbookServices {
  return servicesFrom(ctx.services);
}

/** `services` as RunbookServices. @throws GameopsError (internal) when it is something else. */
export function servicesFrom(services: unknown): RunbookServices {
  if (
    typeof services === 'object' &&
    services !== null &&
    (services as Record<symbol, unknown>)[BRAND] === true
  )
    return services as RunbookServices;
  throw new GameopsError(
    ErrorCode.internal,
    'the runbook engine was not given the runbook services (createRunbookServices)',
  );
}

/** `services` as RunbookServices, or undefined (targets are named from the config when there is one). */
export function maybeServices(services: unknown): RunbookServices | undefined {
  try {
    return servicesFrom(services);
  } catch {
    return undefined;
  }
}
