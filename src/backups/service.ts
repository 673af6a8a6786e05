import { createHash, randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { Readable } from 'node:stream';
import { z } from 'zod';
import type { Logger } from '../app/log.ts';
import type { BackupsConfig, GameopsConfig, MysqlConfig } from '../config/index.ts';
import {
  type Clock,
  ConflictError,
  errorMessage,
  formatDuration,
  GameopsError,
  InputError,
  NotFoundError,
  UnavailableError,
  VERSION,
} from '../core/index.ts';
import type { Platform } from '../platform/index.ts';
import type { Actor } from '../runbooks/model.ts';
import type { BackupSetRecord, Store } from '../store/index.ts';
import { openObjectWriter, readObject, verifyObject } from './codec.ts';
import { backupMysql, drillMysql, mysqlVerification, restoreMysql } from './components/mysql.ts';
import { type AgeIdentities, checkIdentityFor, checkRecipients, loadIdentities } from './keys.ts';
import { lastCheckPassed, planRetention, type RetentionDecision } from './retention.ts';
import { writeWholeObject } from './object-write.ts';
import { openObjectStore } from './storage/index.ts';
import { makeOwnedTempDir, sweepStaleBackupDirs } from './temp-dirs.ts';
import {
  BACKUP_ID_PATTERN,
  COMPONENT_KINDS,
  type ComponentBackup,
  type ComponentDrill,
  type ComponentKind,
  type ComponentReadContext,
  type ComponentWriteContext,
  type Manifest,
  type ManifestComponent,
  type ObjectRecord,
  type ObjectStore,
  type ObjectWriter,
  type Progress,
  silentProgress,
} from './types.ts';

/**
 * Backups (runbook §5) on one catalog and one storage: create a set, verify it, drill it, prune by
 * retention, restore it. The CLI, the API and the backup runbooks all go through this service.
 *
 * Order of a create: take the backup lock (one backup at a time) → every component dumps concurrently,
 * each object streaming through zstd → age → SHA-256 → storage → the manifest, written last → the set is
 * complete. Any failure aborts the other components, deletes what was written (what cannot be deleted
 * stays listed on the set for prune) and marks the set failed; a set without a manifest is never complete.
 */
export interface BackupService {
  /** The components a set gets by default: enabled in `backups` and configured. */
  availableComponents(): ComponentKind[];
  /**
   * Takes a backup set. Resolves with the complete set.
   * @throws ConflictError when another backup is running; the component's error (the set marked failed).
   */
  create(options: CreateOptions): Promise<BackupSetRecord>;
  /** Reads every object back: sizes, hashes, test-decrypt and test-decompress. Names the first bad object. */
  verify(id: string, options: OperationOptions): Promise<VerifyReport>;
  /**
   * Restores components into scratch copies (a scratch database, a scratch Redis, a scratch directory),
   * compares them with the numbers recorded at backup time, removes the copies and records "last verified
   * restorable" for every component that matched.
   */
  drill(
    id: string,
    options: OperationOptions & { components?: readonly ComponentKind[] | undefined },
  ): Promise<DrillReport>;
  /** Restores one component of a set to the original systems or to a configured target. */
  restoreComponent(
    id: string,
    component: ComponentKind,
    options: OperationOptions & { target?: string | undefined },
  ): Promise<RestoreComponentReport>;
  /** Decides by retention and (unless dryRun) deletes what goes. Deletes only keys gameops recorded. */
  prune(options: { by: Actor; dryRun: boolean }): Promise<PruneReport>;
  /** Newest first. */
  list(options?: { limit?: number }): Promise<BackupSetRecord[]>;
  /** The set and its manifest (when complete). @throws InputError for a malformed id, NotFoundError for an unknown one. */
  show(id: string): Promise<{ set: BackupSetRecord; manifest: Manifest | undefined }>;
  /** Per component, the newest set proven restorable and when. */
  restorable(): Promise<Array<{ component: string; setId: string; at: string; runId: string | null }>>;
  close(): Promise<void>;
}

export interface OperationOptions {
  by: Actor;
  progress?: Progress | undefined;
  signal?: AbortSignal | undefined;
  /** The runbook run doing it, recorded with drills and restores. */
  runId?: string | undefined;
}

export interface CreateOptions extends OperationOptions {
  /** Default: availableComponents(). */
  components?: readonly ComponentKind[] | undefined;
  /** Called once the set is recorded as running (its id known). */
  onStarted?: ((id: string) => void) | undefined;
}

export interface VerifyReport {
  id: string;
  ok: boolean;
  objects: number;
  bytes: number;
  /** The first object that failed, and why. */
  firstBad?: { key: string; problem: string } | undefined;
}

export interface DrillReport {
  id: string;
  ok: boolean;
  components: ComponentDrill[];
  /** Components whose drill failed with an error (not a mismatch): why. */
  errors: Array<{ component: ComponentKind; error: string }>;
}

export interface RestoreComponentReport {
  id: string;
  component: ComponentKind;
  target: string;
  summary: Record<string, number>;
  durationMs: number;
}

export interface PruneReport {
  dryRun: boolean;
  decisions: Array<RetentionDecision & { state: string; createdAt: string; sizeBytes: number }>;
  deleted: Array<{ id: string; objects: number }>;
  /** Sets that should have gone but could not be read or deleted safely: why. */
  problems: Array<{ id: string; problem: string }>;
}

export interface BackupServiceDeps {
  config: GameopsConfig;
  store: Store;
  clock: Clock;
  log: Logger;
  /** The platform (for the platform's config component); opened on first use. */
  platform?: (() => Promise<Platform>) | undefined;
  /** Storage override (tests). Default: from `backups.storage`. */
  storage?: ObjectStore | undefined;
  /** How long the backup lock lasts without renewal. @default 60 s */
  leaseMs?: number | undefined;
  /** Told about a failed backup (the app wires notifications and metrics to it). */
  onFailure?: ((set: BackupSetRecord) => void) | undefined;
}

/*
 * The Redis, files and platform-config components load on first use: a MySQL backup has no use for
 * ioredis or tar, and every module loaded stays in the process's memory for the whole backup.
 */
const redisComponent = () => import('./components/redis.ts');
const filesComponent = () => import('./components/files.ts');
const platformConfigComponent = () => import('./components/platform-config.ts');

const MANIFEST = 'manifest.json';
const DEFAULT_LEASE_MS = 60_000;
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

/** The backups section, or an InputError saying how to configure it. */
export function backupsConfig(config: GameopsConfig): BackupsConfig {
  if (!config.backups)
    throw new InputError(
      'backups are not configured: add a `backups:` section (storage, encryption.recipients) to the config',
    );
  return config.backups;
}

/** Checks a backup id's shape before it goes anywhere near storage or the store. */
export function checkBackupId(id: string): string {
  if (!BACKUP_ID_PATTERN.test(id))
    throw new InputError(
      `"${id.slice(0, 80)}" is not a backup id: ids look like bk-20261126T170500Z-3f9a2c (gameops backup list shows them)`,
    );
  return id;
}

/** A new set id from the clock: `bk-20261126T170500Z-3f9a2c`. */
export function newBackupId(at: Date): string {
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
  return `bk-${stamp}-${randomBytes(3).toString('hex')}`;
}

export function createBackupService(deps: BackupServiceDeps): BackupService {
  const { config, store, clock, log } = deps;
  const backups = backupsConfig(config);
  const storage = deps.storage ?? openObjectStore(backups.storage, { log });
  const leaseMs = deps.leaseMs ?? DEFAULT_LEASE_MS;
  const holder = `${hostname()}:${process.pid}`;
  const scope = { service: config.service.name, environment: config.service.environment };
  let identities: AgeIdentities | undefined;

  const keys = async (manifest: Manifest): Promise<AgeIdentities> => {
    identities ??= await loadIdentities(backups.encryption.identity);
    checkIdentityFor(identities, manifest.encryption.recipients, `backup ${manifest.id}`);
    return identities;
  };

  /** MySQL as the backup user: `backups.mysql.user`/`password` over the configured connection. */
  const backupMysqlConfig = (): MysqlConfig => {
    const mysql = config.mysql;
    if (!mysql) throw new InputError('no database is configured: add a `mysql:` section to the config');
    return backups.mysql.user
      ? { ...mysql, user: backups.mysql.user, password: backups.mysql.password }
      : mysql;
  };
  const mysqlDatabases = (): string[] => backups.mysql.databases ?? [config.mysql?.database ?? 'gamedb'];

  const available = (): ComponentKind[] =>
    COMPONENT_KINDS.filter((kind) => {
      switch (kind) {
        case 'mysql':
          return config.mysql !== undefined && backups.mysql.enabled;
        case 'redis':
          return config.redis !== undefined && backups.redis.enabled;
        case 'kubernetes':
          return config.platform !== undefined && deps.platform !== undefined && backups.kubernetes.enabled;
        case 'files':
          return backups.files.paths.length > 0;
      }
    });

  const why = (kind: ComponentKind): string => {
    switch (kind) {
      case 'mysql':
        return config.mysql ? 'backups.mysql.enabled is false' : 'no `mysql:` section is configured';
      case 'redis':
        return config.redis ? 'backups.redis.enabled is false' : 'no `redis:` section is configured';
      case 'kubernetes':
        return config.platform
          ? 'backups.kubernetes.enabled is false'
          : 'no `platform:` section is configured';
      case 'files':
        return 'backups.files.paths is empty';
    }
  };

  const setRecord = async (id: string): Promise<BackupSetRecord> => {
    checkBackupId(id);
    await store.backups.reapAbandoned(scope);
    const set = await store.backups.get(id);
    if (!set || set.service !== scope.service || set.environment !== scope.environment)
      throw new NotFoundError(`no backup set ${id} (gameops backup list shows the sets)`);
    return set;
  };

  const readManifest = async (set: BackupSetRecord): Promise<Manifest> => {
    if (set.state !== 'complete' || !set.manifestKey)
      throw new ConflictError(
        `backup ${set.id} is ${set.state}${set.error ? ` (${set.error})` : ''}: it has no complete manifest`,
      );
    const body = await storage.get(set.manifestKey);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_MANIFEST_BYTES) {
        body.destroy();
        throw new GameopsError(
          'internal',
          `the manifest of ${set.id} (${set.manifestKey}) is larger than 64 MiB`,
        );
      }
      chunks.push(chunk);
    }
    const bytes = Buffer.concat(chunks);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (set.manifestSha256 && sha256 !== set.manifestSha256)
      throw new GameopsError(
        'internal',
        `the manifest of ${set.id} (${set.manifestKey}) was changed since it was written: its SHA-256 ${sha256} differs from the catalog's ${set.manifestSha256}`,
      );
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw new GameopsError(
        'internal',
        `the manifest of ${set.id} (${set.manifestKey}) is not JSON: ${errorMessage(err)}`,
      );
    }
    const result = manifestSchema.safeParse(parsed);
    if (!result.success)
      throw new GameopsError(
        'internal',
        `the manifest of ${set.id} (${set.manifestKey}) is not a gameops-backup/1 manifest: ${result.error.issues
          .slice(0, 3)
          .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
          .join('; ')}`,
      );
    const manifest = result.data;
    if (manifest.id !== set.id)
      throw new GameopsError(
        'internal',
        `the manifest at ${set.manifestKey} is of ${manifest.id}, not ${set.id}`,
      );
    return manifest;
  };

  let swept = false;
  const withTempDir = async <T>(
    what: 'backup' | 'drill' | 'restore',
    work: (dir: string) => Promise<T>,
  ): Promise<T> => {
    if (!swept) {
      swept = true;
      const removed = await sweepStaleBackupDirs().catch(() => []);
      if (removed.length > 0)
        log.warn({ removed }, 'removed working directories of a gameops that was killed');
    }
    const dir = await makeOwnedTempDir(what);
    try {
      return await work(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };

  const readContext = (
    manifest: Manifest,
    component: ManifestComponent,
    ids: AgeIdentities,
    options: OperationOptions,
    tempDir: string,
  ): ComponentReadContext => {
    const signal = options.signal ?? new AbortController().signal;
    const progress = options.progress ?? silentProgress;
    const byName = new Map(component.objects.map((o) => [o.name, o]));
    return {
      setId: manifest.id,
      objects: component.objects,
      read(name) {
        const record = byName.get(name);
        if (!record)
          throw new NotFoundError(`backup ${manifest.id} has no ${component.kind} object named ${name}`);
        return readObject(storage, record, ids, signal, progress);
      },
      signal,
      progress,
      clock,
      log,
      tempDir,
    };
  };

  const componentOf = (manifest: Manifest, kind: ComponentKind): ManifestComponent => {
    const found = manifest.components.find((c) => c.kind === kind);
    if (!found)
      throw new InputError(
        `backup ${manifest.id} has no ${kind} component (it has ${manifest.components.map((c) => c.kind).join(', ') || 'none'})`,
      );
    return found;
  };

  const create = async (options: CreateOptions): Promise<BackupSetRecord> => {
    const components = [...new Set(options.components ?? available())];
    if (components.length === 0)
      throw new InputError(
        'nothing to back up: configure mysql, redis, a platform or backups.files.paths (and keep them enabled in backups)',
      );
    const possible = new Set(available());
    for (const kind of components)
      if (!possible.has(kind)) throw new InputError(`cannot back up ${kind}: ${why(kind)}`);
    await checkRecipients(backups.encryption.recipients);
    const outer = options.progress ?? silentProgress;
    let lastActivity = clock.now().getTime();
    const touch = () => {
      lastActivity = clock.now().getTime();
    };
    // Every byte or note counts as activity: a server that stops answering stops both. Components run
    // at once, so their bytes add up in one phase and their own phases become notes.
    outer.phase('backup');
    const progress: Progress = {
      phase(name) {
        touch();
        outer.note(name);
      },
      add(bytes) {
        touch();
        outer.add(bytes);
      },
      note(text) {
        touch();
        outer.note(text);
      },
    };
    const startedAt = clock.now();
    const id = newBackupId(startedAt);
    const begin = () =>
      store.backups.begin({
        id,
        ...scope,
        components,
        storage: storage.describe(),
        by: options.by,
        holder,
        leaseMs,
      });
    let set: BackupSetRecord;
    try {
      set = await begin();
    } catch (err) {
      // A holder on this host whose process is gone (killed, e.g. Ctrl-C before a resumed run) need not
      // be waited out: its lease is ended and the lock taken over.
      const other = err instanceof ConflictError ? err.details?.['holder'] : undefined;
      if (typeof other !== 'string' || !deadLocalHolder(other)) throw err;
      await store.backups.breakLock(scope, other);
      set = await begin();
    }
    options.onStarted?.(id);
    const abort = new AbortController();
    const onOuterAbort = () => abort.abort(options.signal?.reason ?? new Error('cancelled'));
    options.signal?.addEventListener('abort', onOuterAbort, { once: true });
    if (options.signal?.aborted) onOuterAbort();
    const written: string[] = [];
    let lost = false;
    let renewedAt = clock.now().getTime();
    const stallMs = backups.stallTimeout;
    const renew = setInterval(
      () => {
        const now = clock.now().getTime();
        if (!abort.signal.aborted && now - lastActivity > stallMs)
          abort.abort(
            new UnavailableError(
              `backup ${id} made no progress for ${formatDuration(now - lastActivity)} (backups.stallTimeout ${formatDuration(stallMs)}): a source or the storage stopped answering; the backup was stopped`,
            ),
          );
        store.backups.renew(id, holder, leaseMs).then(
          (held) => {
            if (held) renewedAt = clock.now().getTime();
            else if (!lost) {
              lost = true;
              abort.abort(new ConflictError(`backup ${id} lost its lock; it was stopped`));
            }
          },
          (err: unknown) => {
            log.warn({ err: errorMessage(err), backup: id }, 'renewing the backup lock failed');
            // Past the lease another process may take the lock: stop before two backups interleave.
            if (!lost && clock.now().getTime() - renewedAt > leaseMs * 0.8) {
              lost = true;
              abort.abort(
                new UnavailableError(
                  `backup ${id} could not renew its lock for ${formatDuration(clock.now().getTime() - renewedAt)} (${errorMessage(err)}); it was stopped so that no other backup interleaves with it`,
                ),
              );
            }
          },
        );
      },
      Math.max(1000, Math.floor(leaseMs / 6)),
    );
    renew.unref();
    try {
      const entries = await withTempDir('backup', async (tempDir) => {
        const results = await Promise.allSettled(
          components.map(async (kind): Promise<ManifestComponent> => {
            const objects: ObjectRecord[] = [];
            const names = new Set<string>();
            const storageClass =
              backups.storage.kind === 's3'
                ? (backups.storage.storageClass[kind] ?? backups.storage.storageClass.default)
                : undefined;
            // Writers neither ended nor aborted: when the component fails, they are aborted and their puts
            // awaited, so that no upload of the set runs on (or waits on a writer) after it is marked failed.
            const unfinished = new Map<string, ObjectWriter>();
            const open: ComponentWriteContext['open'] = (name) => {
              if (names.has(name)) throw new ConflictError(`${kind} wrote two objects named ${name}`);
              names.add(name);
              const key = `${id}/${kind}/${name}.zst.age`;
              const writer = openObjectWriter(storage, {
                key,
                name,
                recipients: backups.encryption.recipients,
                level: backups.compressionLevel,
                storageClass,
                signal: abort.signal,
                progress,
              });
              unfinished.set(name, writer);
              return {
                write: (chunk) => writer.write(chunk),
                async abort(reason) {
                  unfinished.delete(name);
                  await writer.abort(reason);
                },
                async end() {
                  unfinished.delete(name);
                  const record = await writer.end();
                  objects.push(record);
                  written.push(record.key);
                  await store.backups.noteObjects(id, written);
                  return record;
                },
              };
            };
            // The pipeline counts the bytes (plain, as written); a component's own phases and notes
            // are shown as notes naming it, and its own byte counts only mean it is alive.
            const componentProgress: Progress = {
              phase(name) {
                progress.note(`${kind}: ${name}`);
              },
              add() {
                touch();
              },
              note(text) {
                progress.note(`${kind}: ${text}`);
              },
            };
            const ctx: ComponentWriteContext = {
              setId: id,
              open,
              write: (name, source) => writeWholeObject(open, name, source),
              signal: abort.signal,
              progress: componentProgress,
              clock,
              log,
              tempDir,
            };
            const started = clock.now().toISOString();
            let result: ComponentBackup;
            try {
              result = await backupComponent(kind, ctx);
              if (unfinished.size > 0)
                throw new GameopsError(
                  'internal',
                  `the ${kind} backup finished with objects neither ended nor aborted: ${[...unfinished.keys()].join(', ')}`,
                );
            } catch (err) {
              if (!abort.signal.aborted) abort.abort(err);
              const error = err instanceof Error ? err : new Error(String(err));
              await Promise.allSettled([...unfinished.values()].map((writer) => writer.abort(error)));
              unfinished.clear();
              throw err;
            }
            return { kind, startedAt: started, completedAt: clock.now().toISOString(), objects, ...result };
          }),
        );
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) {
          // The first component's own error, not the "aborted" of the ones stopped because of it.
          const reason: unknown = abort.signal.reason ?? failed.reason;
          throw reason instanceof Error ? reason : new Error(String(reason));
        }
        return results.map((r) => (r as PromiseFulfilledResult<ManifestComponent>).value);
      });
      const manifest: Manifest = {
        format: 'gameops-backup/1',
        id,
        service: scope.service,
        environment: scope.environment,
        createdAt: startedAt.toISOString(),
        completedAt: clock.now().toISOString(),
        gameopsVersion: VERSION,
        encryption: { kind: 'age', recipients: backups.encryption.recipients },
        compression: { kind: 'zstd', level: backups.compressionLevel },
        components: entries,
      };
      if (abort.signal.aborted)
        throw abort.signal.reason instanceof Error ? abort.signal.reason : new Error('cancelled');
      const manifestKey = `${id}/${MANIFEST}`;
      const body = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
      const stored = await storage.put(manifestKey, Readable.from([body]), { signal: abort.signal });
      written.push(manifestKey);
      const sizeBytes =
        entries.reduce((sum, c) => sum + c.objects.reduce((s, o) => s + o.size, 0), 0) + stored.size;
      const objectCount = entries.reduce((sum, c) => sum + c.objects.length, 0);
      return await store.backups.complete(id, holder, {
        sizeBytes,
        objectCount,
        manifestKey,
        manifestSha256: stored.sha256,
      });
    } catch (err) {
      const message = errorMessage(err);
      const leftovers: string[] = [];
      for (const key of written) {
        try {
          await storage.delete(key);
        } catch (deleteErr) {
          log.warn(
            { backup: id, key, err: errorMessage(deleteErr) },
            'could not delete an object of a failed backup',
          );
          leftovers.push(key);
        }
      }
      let failedSet: BackupSetRecord = set;
      try {
        failedSet = await store.backups.fail(id, { error: message, leftovers });
      } catch (recordErr) {
        log.error({ backup: id, err: errorMessage(recordErr) }, 'could not record a failed backup');
      }
      deps.onFailure?.(failedSet);
      log.error({ backup: id, err: message }, 'backup failed');
      throw err instanceof GameopsError
        ? err
        : new UnavailableError(`backup ${id} failed: ${message}`, { cause: err });
    } finally {
      clearInterval(renew);
      options.signal?.removeEventListener('abort', onOuterAbort);
    }
  };

  const backupComponent = async (
    kind: ComponentKind,
    ctx: ComponentWriteContext,
  ): Promise<ComponentBackup> => {
    switch (kind) {
      case 'mysql':
        return backupMysql(
          {
            mysql: backupMysqlConfig(),
            databases: mysqlDatabases(),
            chunkBytes: backups.mysql.chunkBytes,
            lockWaitTimeoutMs: backups.mysql.lockWaitTimeout,
          },
          ctx,
        );
      case 'redis': {
        const redis = config.redis;
        if (!redis) throw new InputError('no `redis:` section is configured');
        const { backupRedis } = await redisComponent();
        return backupRedis({ redis, samples: backups.redis.samples }, ctx);
      }
      case 'kubernetes': {
        if (!deps.platform) throw new InputError('no `platform:` section is configured');
        const { backupPlatformConfig } = await platformConfigComponent();
        return backupPlatformConfig(await deps.platform(), ctx, {
          encrypted: backups.encryption.recipients.length > 0,
        });
      }
      case 'files': {
        const { backupFiles } = await filesComponent();
        return backupFiles(backups.files.paths, ctx);
      }
    }
  };

  const verify = async (id: string, options: OperationOptions): Promise<VerifyReport> => {
    const set = await setRecord(id);
    let report: VerifyReport;
    try {
      const manifest = await readManifest(set);
      const ids = await keys(manifest);
      const objects = manifest.components.flatMap((c) => c.objects);
      const total = objects.reduce((s, o) => s + o.size, 0);
      const progress = options.progress ?? silentProgress;
      progress.phase('verify', total);
      report = { id, ok: true, objects: objects.length, bytes: total };
      for (const record of objects) {
        try {
          const head = await storage.head(record.key);
          if (!head) throw new NotFoundError(`${record.key} is missing from ${storage.describe()}`);
          if (head.size !== record.size)
            throw new GameopsError(
              'internal',
              `${record.key} is ${head.size} bytes, the manifest says ${record.size}`,
            );
          await verifyObject(storage, record, ids, options.signal ?? new AbortController().signal);
          progress.add(record.size);
        } catch (err) {
          if (err instanceof InputError) throw err; // the key, not the object
          report = { ...report, ok: false, firstBad: { key: record.key, problem: errorMessage(err) } };
          break;
        }
      }
    } catch (err) {
      if (err instanceof InputError) throw err;
      report = {
        id,
        ok: false,
        objects: 0,
        bytes: 0,
        firstBad: { key: set.manifestKey ?? `${id}/${MANIFEST}`, problem: errorMessage(err) },
      };
    }
    await store.backups.recordVerify(id, {
      ok: report.ok,
      error: report.firstBad ? `${report.firstBad.key}: ${report.firstBad.problem}` : null,
      by: options.by,
    });
    return report;
  };

  const drillComponent = async (
    component: ManifestComponent,
    ctx: ComponentReadContext,
  ): Promise<ComponentDrill> => {
    switch (component.kind) {
      case 'mysql':
        return drillMysql(component, backupMysqlConfig(), ctx, { parallel: backups.mysql.parallel });
      case 'redis':
        return (await redisComponent()).drillRedis(component, ctx);
      case 'kubernetes':
        return (await platformConfigComponent()).drillPlatformConfig(component, ctx);
      case 'files':
        return (await filesComponent()).drillFiles(component, ctx);
    }
  };

  const drill: BackupService['drill'] = async (id, options) => {
    const set = await setRecord(id);
    const manifest = await readManifest(set);
    const ids = await keys(manifest);
    const wanted = options.components ? new Set(options.components) : undefined;
    const chosen = manifest.components.filter((c) => !wanted || wanted.has(c.kind));
    if (wanted) for (const kind of wanted) componentOf(manifest, kind);
    const results: ComponentDrill[] = [];
    const errors: DrillReport['errors'] = [];
    for (const component of chosen) {
      options.progress?.phase(
        `drill ${component.kind}`,
        component.objects.reduce((s, o) => s + o.plainSize, 0),
      );
      try {
        results.push(
          await withTempDir('drill', (dir) =>
            drillComponent(component, readContext(manifest, component, ids, options, dir)),
          ),
        );
      } catch (err) {
        if (err instanceof InputError && !(err instanceof NotFoundError)) throw err;
        errors.push({ component: component.kind, error: errorMessage(err) });
      }
    }
    const report: DrillReport = {
      id,
      ok: errors.length === 0 && results.every((r) => r.ok),
      components: results,
      errors,
    };
    await store.backups.recordDrill(id, {
      ok: report.ok,
      report,
      restorable: results.filter((r) => r.ok).map((r) => r.component),
      by: options.by,
      runId: options.runId,
    });
    return report;
  };

  const restoreComponent: BackupService['restoreComponent'] = async (id, kind, options) => {
    const set = await setRecord(id);
    const manifest = await readManifest(set);
    const ids = await keys(manifest);
    const component = componentOf(manifest, kind);
    const targetName = options.target ?? 'original';
    const target = targetName === 'original' ? undefined : backups.targets.find((t) => t.name === targetName);
    if (targetName !== 'original' && !target)
      throw new InputError(
        `no restore target "${targetName}": use "original" or one of backups.targets (${backups.targets.map((t) => t.name).join(', ') || 'none configured'})`,
      );
    const started = clock.now().getTime();
    await store.backups.audit(id, options.by, 'backup.restore.start', {
      component: kind,
      target: targetName,
      ...(options.runId ? { runId: options.runId } : {}),
    });
    const summary = await withTempDir('restore', async (dir) => {
      const ctx = readContext(manifest, component, ids, options, dir);
      switch (kind) {
        case 'mysql': {
          if (target && !target.mysql)
            throw new InputError(
              `restore target "${target.name}" has no mysql: set backups.targets[].mysql (a target never falls back to production)`,
            );
          const mysql = target?.mysql ?? backupMysqlConfig();
          const databases = Object.fromEntries(
            Object.keys(mysqlVerification(component).databases).map((d) => [d, d]),
          );
          return restoreMysql(component, { mysql: mysql, databases, parallel: backups.mysql.parallel }, ctx);
        }
        case 'redis': {
          if (target && !target.redis)
            throw new InputError(
              `restore target "${target.name}" has no redis: set backups.targets[].redis (a target never falls back to production)`,
            );
          const redis = target?.redis ?? config.redis;
          if (!redis)
            throw new InputError("no Redis to restore into: configure `redis:` or the target's redis");
          const { restoreRedis } = await redisComponent();
          return restoreRedis(component, redis, ctx, { via: backups.redis.restoreVia });
        }
        case 'kubernetes': {
          if (target) throw new InputError("the platform's config is restored to the original platform only");
          if (!deps.platform) throw new InputError('no `platform:` section is configured');
          const { restorePlatformConfig } = await platformConfigComponent();
          return restorePlatformConfig(component, await deps.platform(), ctx);
        }
        case 'files':
          if (target && !target.filesRoot)
            throw new InputError(
              `restore target "${target.name}" has no filesRoot: set backups.targets[].filesRoot (a target never falls back to the production paths)`,
            );
          return (await filesComponent()).restoreFiles(
            component,
            target?.filesRoot ? { root: target.filesRoot } : {},
            ctx,
          );
      }
    });
    const report: RestoreComponentReport = {
      id,
      component: kind,
      target: targetName,
      summary: Object.fromEntries(
        Object.entries(summary).filter((e): e is [string, number] => typeof e[1] === 'number'),
      ),
      durationMs: clock.now().getTime() - started,
    };
    await store.backups.audit(id, options.by, 'backup.restore.done', { ...report });
    return report;
  };

  /** What an interrupted put of the set left (a killed process's temp file, an unfinished upload). */
  const discardLeftovers = async (id: string, report: PruneReport): Promise<void> => {
    try {
      await storage.discardIncomplete(`${id}/`);
    } catch (err) {
      report.problems.push({ id, problem: `unfinished uploads were not removed: ${errorMessage(err)}` });
    }
  };

  const prune: BackupService['prune'] = async ({ by, dryRun }) => {
    await store.backups.reapAbandoned(scope);
    const sets = await store.backups.list(scope, { limit: 100_000 });
    const decisions = planRetention(
      sets
        .filter((s) => s.state !== 'pruned')
        .map((s) => ({
          id: s.id,
          createdAt: s.createdAt,
          state: s.state,
          verified: s.state === 'complete' && lastCheckPassed(s),
        })),
      backups.retention,
      clock.now(),
    );
    const byId = new Map(sets.map((s) => [s.id, s]));
    const report: PruneReport = {
      dryRun,
      decisions: decisions.map((d) => {
        const s = byId.get(d.id);
        return {
          ...d,
          state: s?.state ?? 'unknown',
          createdAt: s?.createdAt ?? '',
          sizeBytes: s?.sizeBytes ?? 0,
        };
      }),
      deleted: [],
      problems: [],
    };
    if (dryRun) return report;
    for (const decision of decisions) {
      if (decision.keep) continue;
      const set = byId.get(decision.id);
      if (!set) continue;
      try {
        if (set.state === 'complete') {
          let objectKeys: string[];
          if (set.objects.length > 0 && set.manifestKey && !(await storage.head(set.manifestKey))) {
            // An earlier prune deleted the manifest and stopped: finish it from the keys it recorded.
            objectKeys = set.objects;
          } else {
            const manifest = await readManifest(set);
            objectKeys = manifest.components.flatMap((c) => c.objects.map((o) => o.key));
            // Recorded first, so an interrupted prune can finish without the manifest.
            await store.backups.noteObjects(set.id, objectKeys);
          }
          // The manifest goes first: from then on the set is no longer complete, whatever happens next.
          if (set.manifestKey) await storage.delete(set.manifestKey);
          for (const key of objectKeys) await storage.delete(key);
          await discardLeftovers(set.id, report);
          await store.backups.markPruned(set.id, by, objectKeys);
          report.deleted.push({ id: set.id, objects: objectKeys.length + 1 });
        } else if (set.state === 'failed') {
          const removed: string[] = [];
          for (const key of set.objects) {
            if (!key.startsWith(`${set.id}/`)) continue;
            await storage.delete(key);
            removed.push(key);
          }
          await discardLeftovers(set.id, report);
          await store.backups.markPruned(set.id, by, removed);
          report.deleted.push({ id: set.id, objects: removed.length });
        }
      } catch (err) {
        report.problems.push({ id: set.id, problem: errorMessage(err) });
      }
    }
    return report;
  };

  return {
    availableComponents: available,
    create,
    verify,
    drill,
    restoreComponent,
    prune,
    async list(options) {
      await store.backups.reapAbandoned(scope);
      return store.backups.list(scope, options);
    },
    async show(id) {
      const set = await setRecord(id);
      return { set, manifest: set.state === 'complete' ? await readManifest(set) : undefined };
    },
    restorable: () => store.backups.restorable(scope),
    async close() {
      if (!deps.storage) await storage.close();
    },
  };
}

/** `host:pid` of a process on this host that no longer runs. */
function deadLocalHolder(holder: string): boolean {
  const at = holder.lastIndexOf(':');
  const pid = Number(holder.slice(at + 1));
  if (holder.slice(0, at) !== hostname() || !Number.isInteger(pid) || pid <= 0 || pid === process.pid)
    return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

const objectSchema = z.object({
  name: z.string().min(1),
  key: z.string().min(1),
  size: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  plainSize: z.number().int().min(0),
  plainSha256: z.string().regex(/^[0-9a-f]{64}$/),
  storageClass: z.string().optional(),
});

const manifestSchema = z.object({
  format: z.literal('gameops-backup/1'),
  id: z.string().regex(BACKUP_ID_PATTERN),
  service: z.string(),
  environment: z.string(),
  createdAt: z.string(),
  completedAt: z.string(),
  gameopsVersion: z.string(),
  encryption: z.object({ kind: z.literal('age'), recipients: z.array(z.string()).min(1) }),
  compression: z.object({ kind: z.literal('zstd'), level: z.number().int() }),
  components: z.array(
    z.object({
      kind: z.enum(COMPONENT_KINDS),
      startedAt: z.string(),
      completedAt: z.string(),
      tool: z.object({ name: z.string(), version: z.string() }),
      source: z.record(z.string(), z.union([z.string(), z.number(), z.null()])),
      verification: z.unknown(),
      notes: z.array(z.string()),
      objects: z.array(objectSchema),
    }),
  ),
});
