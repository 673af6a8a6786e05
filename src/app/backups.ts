import type { Logger } from 'pino';
import type { Gauge } from 'prom-client';
import { ConflictError, errorMessage, InputError, UnavailableError } from '../core/index.ts';
import type { BackupService, DrillReport } from '../backups/service.ts';
import { BACKUP_ID_PATTERN, type ComponentKind, type Manifest } from '../backups/types.ts';
import { formatBytes } from '../checks/thresholds.ts';
import type { BackupSetRecord } from '../store/index.ts';
import { openOnce, type Resources } from './bootstrap.ts';
import { openFleet } from './fleet.ts';

/**
 * Backups (runbook §5) of this process: one BackupService per resources bag, created on first use over
 * the process's store, with the platform's config component on the configured platform (the fleet's
 * platform, shared with the rest of the process) and a failed backup told to people (a notification to
 * `incidents.notices.stakeholders`, else `oncall.defaultContacts`), to the log and to Prometheus.
 * `shutdown` closes it (the storage's connections).
 */
const services = new WeakMap<Resources, Promise<BackupService>>();
const gauges = new WeakMap<object, { success: Gauge; failure: Gauge }>();
/** The backups' loggers (a child of the process's), for `quietBackupLogs`. */
const loggers = new WeakMap<Resources, Logger>();
/** Resources whose backup logs are for a person's terminal: only fatal ones are written. */
const quiet = new WeakSet<Resources>();
/** Failure notifications still being sent: `closeBackups` waits for them (a CLI exits right after). */
const sending = new WeakMap<Resources, Set<Promise<void>>>();

/**
 * The backup service of these resources, opened on first use and shared by the runbook actions, the API
 * and the daily check.
 * @throws InputError when `backups` is not configured; UnavailableError when there is no store.
 */
export async function openBackups(resources: Resources): Promise<BackupService> {
  return openOnce(services, resources, createFor);
}

/**
 * Closes the service of `openBackups` (its storage), if one was opened, after the failure notifications
 * still being sent (each is bounded by the channel's deadline). Never throws.
 */
export async function closeBackups(resources: Resources): Promise<void> {
  const pending = sending.get(resources);
  if (pending) await Promise.allSettled([...pending]);
  const opening = services.get(resources);
  services.delete(resources);
  if (!opening) return;
  try {
    await (await opening).close();
  } catch (err) {
    resources.log.warn({ err: errorMessage(err) }, 'closing the backup storage failed');
  }
}

/**
 * A backup id from the command line or a request, checked before anything else happens (the same rule
 * as the service's `checkBackupId`, without loading the backup modules).
 * @throws InputError naming the value when it is not a backup id.
 */
export function checkBackupIdInput(id: string): string {
  if (!BACKUP_ID_PATTERN.test(id))
    throw new InputError(
      `"${id.slice(0, 80)}" is not a backup id: ids look like bk-20261126T170500Z-3f9a2c (gameops backup list shows them)`,
      { details: { field: 'id' } },
    );
  return id;
}

/** What a verify, drill or restore is asked to do, checked before its run starts. */
export interface BackupRequest {
  /** The set. */
  id: string;
  /** The components asked for (null/absent: every one in the set). */
  components?: readonly ComponentKind[] | null | undefined;
  /** The restore target (absent: not a restore; `original` or a `backups.targets` name). */
  target?: string | undefined;
}

/**
 * Checks a verify, drill or restore request against the catalog and the config before a run is started,
 * so that a wrong id, target or component is refused at once instead of becoming a failed run: the set
 * exists (this service and environment) and is complete, the target is `original` or configured, and
 * every component asked for is in the set. The runbooks check the same again when they run.
 * @returns the set's manifest.
 * @throws InputError (malformed id, unknown target, a component not in the set); NotFoundError (no such
 *   set); ConflictError (the set is running, failed or pruned: it has nothing to verify or restore).
 */
export async function checkBackupRequest(
  service: Pick<BackupService, 'show'>,
  config: Pick<Resources['config'], 'backups'>,
  request: BackupRequest,
): Promise<Manifest> {
  checkBackupIdInput(request.id);
  if (request.target !== undefined && request.target !== 'original') {
    const targets = config.backups?.targets.map((t) => t.name) ?? [];
    if (!targets.includes(request.target))
      throw new InputError(
        `no restore target "${request.target.slice(0, 100)}": use original or one of backups.targets (${targets.join(', ') || 'none configured'})`,
        { details: { field: 'target' } },
      );
  }
  const { set, manifest } = await service.show(request.id);
  if (!manifest)
    throw new ConflictError(
      `backup ${set.id} is ${set.state}${set.error ? ` (${set.error})` : ''}: only a complete set can be verified, drilled or restored (gameops backup list)`,
    );
  const present = manifest.components.map((c) => c.kind);
  const missing = (request.components ?? []).filter((k) => !present.includes(k));
  if (missing.length > 0)
    throw new InputError(
      `backup ${set.id} has no ${missing.join(', ')} component (it has ${present.join(', ') || 'none'})`,
      { details: { field: 'components' } },
    );
  return manifest;
}

/**
 * For a CLI command printing for a person: the backups' own log lines (a failed backup, a failure that
 * could not be notified) are not written as JSON over the human output, which reports the same failure
 * from the run. Applies to a service already opened too. `--json` output and `gameops serve` keep them.
 */
export function quietBackupLogs(resources: Resources): void {
  quiet.add(resources);
  const log = loggers.get(resources);
  if (log) log.level = 'fatal';
}

/** Whether `openBackups` opened a service for these resources (shutdown closes it then). */
export function backupsOpened(resources: Resources): boolean {
  return services.has(resources);
}

/** The channels a failed backup is told to: the stakeholder notices' channels, else on-call's defaults. */
export function failureChannels(resources: Pick<Resources, 'config'>): string[] {
  const { incidents, oncall } = resources.config;
  return incidents.notices.stakeholders.length > 0 ? incidents.notices.stakeholders : oncall.defaultContacts;
}

async function createFor(resources: Resources): Promise<BackupService> {
  const { config, clock, log } = resources;
  const store = resources.store;
  if (!store)
    throw new UnavailableError(
      `backups need the store (the catalog of sets) and it is not open: ${resources.storeProblem ?? 'no config file was found (see --config)'}`,
    );
  const [{ createBackupService }, { createNotifier }] = await Promise.all([
    import('../backups/service.ts'),
    import('../runbooks/actions/notify.ts'),
  ]);
  const notifier = createNotifier(config, { clock });
  const metrics = await backupGauges(resources);
  const backupLog = log.child({ component: 'backups' });
  if (quiet.has(resources)) backupLog.level = 'fatal';
  loggers.set(resources, backupLog);
  const service = createBackupService({
    config,
    store,
    clock,
    log: backupLog,
    ...(config.platform ? { platform: async () => (await openFleet(resources)).platform } : {}),
    onFailure: (set) => {
      metrics?.failure.set(Date.parse(set.updatedAt) / 1000 || clock.now().getTime() / 1000);
      backupLog.error(
        { backup: set.id, components: set.components, storage: set.storage, err: set.error },
        `backup ${set.id} failed`,
      );
      let pending = sending.get(resources);
      if (!pending) sending.set(resources, (pending = new Set()));
      const told = tell(resources, backupLog, notifier.send.bind(notifier), set);
      pending.add(told);
      void told.finally(() => pending.delete(told));
    },
  });
  if (metrics) {
    // The gauge starts from the catalog, so a restarted server does not report "never".
    try {
      const newest = (await service.list({ limit: 50 })).find((s) => s.state === 'complete');
      if (newest?.completedAt) metrics.success.set(Date.parse(newest.completedAt) / 1000);
    } catch (err) {
      backupLog.warn({ err: errorMessage(err) }, 'could not read the backup catalog for the metrics');
    }
  }
  if (!metrics) return service;
  // A completed backup moves the success gauge.
  const create = service.create.bind(service);
  return {
    ...service,
    async create(options) {
      const set = await create(options);
      if (set.completedAt) metrics.success.set(Date.parse(set.completedAt) / 1000);
      return set;
    },
  };
}

/** The backup gauges on this process's metrics registry (the server keeps one), created once. */
async function backupGauges(resources: Resources): Promise<{ success: Gauge; failure: Gauge } | undefined> {
  const metrics = resources.metrics;
  if (!metrics) return undefined;
  let found = gauges.get(metrics.registry);
  if (!found) {
    const { Gauge } = await import('prom-client');
    found = {
      success: new Gauge({
        name: 'gameops_backup_last_success_timestamp_seconds',
        help: 'When the newest backup set completed (its manifest was stored).',
        registers: [metrics.registry],
      }),
      failure: new Gauge({
        name: 'gameops_backup_last_failure_timestamp_seconds',
        help: 'When a backup set last failed.',
        registers: [metrics.registry],
      }),
    };
    gauges.set(metrics.registry, found);
  }
  return found;
}

/** Tells the failure channels about a failed set; a channel that cannot be reached is logged. */
async function tell(
  resources: Resources,
  log: Logger,
  send: (channel: string, message: string) => Promise<unknown>,
  set: BackupSetRecord,
): Promise<void> {
  const channels = failureChannels(resources);
  const { config } = resources;
  if (channels.length === 0) {
    log.warn(
      { backup: set.id },
      'a failed backup was not notified: no incidents.notices.stakeholders or oncall.defaultContacts channel is configured',
    );
    return;
  }
  const message =
    `Backup ${set.id} of ${config.service.name} (${config.service.environment}) FAILED\n` +
    `components: ${set.components.join(', ')}; storage: ${set.storage}\n` +
    `error: ${set.error ?? 'unknown'}\n` +
    `No complete manifest was written; the set is not restorable. See: gameops backup show ${set.id}`;
  for (const channel of channels) {
    try {
      await send(channel, message);
    } catch (err) {
      log.error({ backup: set.id, channel, err: errorMessage(err) }, 'could not notify a failed backup');
    }
  }
}

/**
 * A set's size said the same way everywhere (create, verify, show): its objects and their stored bytes,
 * then the manifest's bytes, e.g. `4 object(s), 1.7 KiB (+ manifest 4.0 KiB)`. `totalBytes` is the
 * catalog's size (objects and manifest); the manifest part is left out when it is not known or zero.
 */
export function formatSetSize(objects: number, objectBytes: number, totalBytes?: number): string {
  const manifestBytes = totalBytes === undefined ? 0 : totalBytes - objectBytes;
  return (
    `${objects} object(s), ${formatBytes(objectBytes)}` +
    (manifestBytes > 0 ? ` (+ manifest ${formatBytes(manifestBytes)})` : '')
  );
}

/** The stored bytes of a manifest's objects (the manifest itself not counted). */
export function manifestObjectBytes(manifest: Manifest): number {
  return manifest.components.reduce((sum, c) => sum + c.objects.reduce((s, o) => s + o.size, 0), 0);
}

/** What `gameops backup list` and the API call a set: the catalog state, or how far it was proven. */
export type BackupStatus = 'running' | 'complete' | 'failed' | 'verified' | 'drilled' | 'pruned';

/** A set's status: `drilled` (a drill matched), `verified` (verify passed), else its catalog state. */
export function backupStatus(set: BackupSetRecord): BackupStatus {
  if (set.state !== 'complete') return set.state;
  if (set.drillOk === true) return 'drilled';
  if (set.verifyOk === true) return 'verified';
  return 'complete';
}

/** One set as listed (CLI and API): no secrets (the storage is described without credentials). */
export interface BackupSummary {
  id: string;
  status: BackupStatus;
  state: BackupSetRecord['state'];
  createdAt: string;
  completedAt: string | null;
  ageSeconds: number;
  sizeBytes: number;
  objects: number;
  components: string[];
  storage: string;
  requestedBy: string;
  error: string | null;
  verify: { at: string; ok: boolean; error: string | null } | null;
  drill: { at: string; ok: boolean } | null;
  prunedAt: string | null;
}

/** A set as listed, its age at `now`. */
export function backupSummary(set: BackupSetRecord, now: Date): BackupSummary {
  return {
    id: set.id,
    status: backupStatus(set),
    state: set.state,
    createdAt: set.createdAt,
    completedAt: set.completedAt,
    ageSeconds: Math.max(0, Math.round((now.getTime() - Date.parse(set.createdAt)) / 1000)),
    sizeBytes: set.sizeBytes,
    objects: set.objectCount,
    components: set.components,
    storage: set.storage,
    requestedBy: set.requestedBy.name,
    error: set.error,
    verify:
      set.verifiedAt !== null
        ? { at: set.verifiedAt, ok: set.verifyOk === true, error: set.verifyError }
        : null,
    drill: set.drilledAt !== null ? { at: set.drilledAt, ok: set.drillOk === true } : null,
    prunedAt: set.prunedAt,
  };
}

/** One component of a set as shown: what the manifest says, without the objects' keys one by one. */
export interface BackupComponentView {
  kind: string;
  objects: number;
  sizeBytes: number;
  plainBytes: number;
  tool: { name: string; version: string };
  source: Record<string, string | number | null>;
  notes: string[];
  startedAt: string;
  completedAt: string;
}

/** A drill's result as shown: per component the checks (values of the platform's config left out). */
export interface DrillView {
  ok: boolean;
  components: Array<{
    component: string;
    ok: boolean;
    checks: Array<{ subject: string; ok: boolean; expected?: string; actual?: string; note?: string }>;
    notes: string[];
    bytes: number;
    durationMs: number;
  }>;
  errors: Array<{ component: string; error: string }>;
}

export interface BackupDetail extends BackupSummary {
  /** The stored bytes of the objects (null until complete); `sizeBytes` adds the manifest's. */
  objectBytes: number | null;
  /** The manifest's bytes (null until complete). */
  manifestBytes: number | null;
  manifest: {
    format: string;
    gameopsVersion: string;
    encryption: { kind: string; recipients: string[] };
    compression: { kind: string; level: number };
    components: BackupComponentView[];
  } | null;
  lastDrill: DrillView | null;
}

/** A set with its manifest summary and its last drill (the platform config's compared values left out). */
export function backupDetail(set: BackupSetRecord, manifest: Manifest | undefined, now: Date): BackupDetail {
  const objectBytes = manifest ? manifestObjectBytes(manifest) : null;
  return {
    ...backupSummary(set, now),
    objectBytes,
    manifestBytes: objectBytes === null ? null : Math.max(0, set.sizeBytes - objectBytes),
    manifest: manifest
      ? {
          format: manifest.format,
          gameopsVersion: manifest.gameopsVersion,
          encryption: manifest.encryption,
          compression: manifest.compression,
          components: manifest.components.map((c) => ({
            kind: c.kind,
            objects: c.objects.length,
            sizeBytes: c.objects.reduce((s, o) => s + o.size, 0),
            plainBytes: c.objects.reduce((s, o) => s + o.plainSize, 0),
            tool: c.tool,
            source: c.source,
            notes: c.notes,
            startedAt: c.startedAt,
            completedAt: c.completedAt,
          })),
        }
      : null,
    lastDrill: drillView(set.drillReport),
  };
}

function drillView(report: unknown): DrillView | null {
  if (typeof report !== 'object' || report === null) return null;
  const r = report as Partial<DrillReport>;
  return {
    ok: r.ok === true,
    components: (r.components ?? []).map((c) => ({
      component: c.component,
      ok: c.ok,
      // The platform's config holds Secrets: its compared values are never shown.
      checks: c.checks.map((k) => ({
        subject: k.subject,
        ok: k.ok,
        ...(c.component === 'kubernetes' ? {} : { expected: k.expected, actual: k.actual }),
        ...(k.note !== undefined ? { note: k.note } : {}),
      })),
      notes: c.notes,
      bytes: c.bytes,
      durationMs: c.durationMs,
    })),
    errors: (r.errors ?? []).map((e) => ({ component: e.component, error: e.error })),
  };
}
