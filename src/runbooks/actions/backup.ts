/**
 * Backup actions (runbook §5) over the backup service (src/backups/service.ts): create a set, verify it,
 * drill it, restore one component, prune by retention, and find the newest set. Long actions write a
 * progress line (bytes, rate, ETA) to the step log about every 2 s, and stop on the step's signal.
 */
import { z } from 'zod';
import {
  BACKUP_ID_PATTERN,
  COMPONENT_KINDS,
  type ComponentKind,
  type Manifest,
} from '../../backups/types.ts';
import { formatSetSize, manifestObjectBytes } from '../../app/backups.ts';
import { createProgressMeter, formatProgress } from '../../backups/progress.ts';
import type { BackupService, DrillReport, PruneReport, VerifyReport } from '../../backups/service.ts';
import { formatBytes } from '../../checks/thresholds.ts';
import { ConflictError, errorMessage, formatDuration, NotFoundError } from '../../core/index.ts';
import type { BackupSetRecord } from '../../store/index.ts';
import type { ActionDefinition, Actor, StepContext } from '../model.ts';
import { maybeServices, servicesOf } from './services.ts';

/** How often a long backup action logs its progress. */
export const PROGRESS_EVERY_MS = 2000;

const backupId = z
  .string()
  .max(100)
  .regex(BACKUP_ID_PATTERN, 'a backup id such as bk-20261126T170500Z-3f9a2c (gameops backup list)');
const componentArg = z.enum(COMPONENT_KINDS);
const componentsArg = z
  .array(componentArg)
  .min(1)
  .max(COMPONENT_KINDS.length)
  .nullable()
  .optional()
  .describe('Components (mysql, redis, kubernetes, files); default: every one configured / in the set.');

/** The actor a step acts as: the run's requester (as recorded), else the system. */
export async function actorOfRun(ctx: StepContext): Promise<Actor> {
  const services = servicesOf(ctx);
  try {
    const run = await services.store?.runs.getRun(ctx.runId);
    if (run) return run.requestedBy;
  } catch (err) {
    services.log.warn(
      { err: errorMessage(err), runId: ctx.runId },
      'could not read the run; acting as system',
    );
  }
  return { id: 'system', name: 'gameops', role: 'admin', kind: 'system' };
}

/** A progress meter that logs to the step about every 2 s. */
export function stepProgress(ctx: StepContext) {
  return createProgressMeter(ctx.clock, (s) => ctx.log(formatProgress(s)), { everyMs: PROGRESS_EVERY_MS });
}

function backupsTarget(services: unknown): string {
  const config = maybeServices(services)?.config;
  const scope = config ? `${config.service.name}/${config.service.environment}` : 'this service';
  return `backups of ${scope}`;
}

const ops = async (ctx: StepContext): Promise<{ service: BackupService; by: Actor }> => ({
  service: await servicesOf(ctx).backups(),
  by: await actorOfRun(ctx),
});

/** What every long backup operation of a step is given: who, progress to the step log, the step's signal and run. */
const opOptions = (ctx: StepContext, by: Actor) => ({
  by,
  progress: stepProgress(ctx),
  signal: ctx.signal,
  runId: ctx.runId,
});

// -----------------------------------------------------------------------------------------------------

const createArgs = z.strictObject({ components: componentsArg });

export interface CreateOutput {
  id: string;
  state: string;
  /** Objects and manifest, as the catalog counts it. */
  sizeBytes: number;
  objects: number;
  /** The objects' stored bytes; `manifestBytes` is the rest of `sizeBytes`. */
  objectBytes: number;
  manifestBytes: number;
  /** `4 object(s), 1.7 KiB (+ manifest 4.0 KiB)`, as verify says it. */
  size: string;
  components: string[];
}

const createAction: ActionDefinition<z.infer<typeof createArgs>, CreateOutput> = {
  name: 'backup.create',
  description:
    'Takes one backup set across the components (default: every configured one): each dumped, zstd-compressed, ' +
    'age-encrypted and hashed in one stream to the storage, the manifest written last. One backup at a time.',
  effect: 'mutating',
  idempotent: false,
  args: createArgs,
  target: (args, services) =>
    `${backupsTarget(services)}${args.components ? ` (${args.components.join(', ')})` : ''}`,
  async run(args, ctx) {
    const { service, by } = await ops(ctx);
    const set = await service.create({
      ...opOptions(ctx, by),
      ...(args.components ? { components: args.components } : {}),
      onStarted: (id) => ctx.log(`backup ${id} started`),
    });
    const { manifest } = await service.show(set.id);
    const objectBytes = manifest ? manifestObjectBytes(manifest) : set.sizeBytes;
    const size = formatSetSize(set.objectCount, objectBytes, set.sizeBytes);
    ctx.log(`backup ${set.id} complete: ${size} (${set.components.join(', ')})`);
    return {
      id: set.id,
      state: set.state,
      sizeBytes: set.sizeBytes,
      objects: set.objectCount,
      objectBytes,
      manifestBytes: set.sizeBytes - objectBytes,
      size,
      components: set.components,
    };
  },
  /**
   * After a crash: not done, so the engine takes a new set instead of asking a person. The interrupted
   * attempt's set is abandoned by the catalog (marked failed once its lock runs out) and is never used;
   * taking another set is safe, and the steps after this one (verify) then read the new set's id.
   */
  async verify() {
    return 'not-done' as const;
  },
};

const idArgs = z.strictObject({ id: backupId });

const verifyAction: ActionDefinition<z.infer<typeof idArgs>, VerifyReport & { size: string }> = {
  name: 'backup.verify',
  description:
    'Reads every object of a set back: sizes, SHA-256, test-decrypts and test-decompresses. Fails naming the first bad object.',
  effect: 'read-only',
  idempotent: true,
  args: idArgs,
  target: (args) => `backup ${args.id}`,
  async run(args, ctx) {
    const { service, by } = await ops(ctx);
    const report = await service.verify(args.id, opOptions(ctx, by));
    if (!report.ok) {
      const bad = report.firstBad;
      throw new ConflictError(
        `backup ${args.id} failed verification: ${bad ? `${bad.key}: ${bad.problem}` : 'unknown problem'}`,
        { details: { backup: args.id, ...(bad ? { object: bad.key } : {}) } },
      );
    }
    const { set } = await service.show(args.id);
    const size = formatSetSize(report.objects, report.bytes, set.sizeBytes);
    ctx.log(`backup ${args.id} verified: ${size}`);
    return { ...report, size };
  },
  /** Reading a set back again is safe: an interrupted verify runs again. */
  async verify() {
    return 'not-done' as const;
  },
};

const drillArgs = z.strictObject({ id: backupId, components: componentsArg });

/** The failed checks and errors of a drill, one per entry. */
export function drillFailures(report: DrillReport): string[] {
  const failures: string[] = [];
  for (const c of report.components)
    for (const check of c.checks)
      if (!check.ok)
        failures.push(`${c.component} ${check.subject}: expected ${check.expected}, got ${check.actual}`);
  for (const e of report.errors) failures.push(`${e.component}: ${e.error}`);
  return failures;
}

const drillAction: ActionDefinition<z.infer<typeof drillArgs>, DrillReport> = {
  name: 'backup.drill',
  description:
    'Restores a set into scratch copies (a scratch database, a scratch Redis, a scratch directory), compares them ' +
    'with what was recorded at backup time, drops the copies and records "last verified restorable".',
  effect: 'mutating',
  idempotent: true,
  args: drillArgs,
  target: (args) => `scratch copies of backup ${args.id}`,
  async run(args, ctx) {
    const { service, by } = await ops(ctx);
    const report = await service.drill(args.id, {
      ...opOptions(ctx, by),
      ...(args.components ? { components: args.components } : {}),
    });
    for (const c of report.components) {
      const bad = c.checks.filter((k) => !k.ok).length;
      ctx.log(
        `${c.component}: ${c.ok ? 'ok' : 'MISMATCH'}: ${c.checks.length - bad}/${c.checks.length} check(s) match, ` +
          `${formatBytes(c.bytes)} restored in ${formatDuration(c.durationMs)}`,
      );
      for (const note of c.notes) ctx.log(`${c.component}: note: ${note}`);
    }
    if (!report.ok) {
      const failures = drillFailures(report);
      throw new ConflictError(
        `the drill of backup ${args.id} failed: ${failures.slice(0, 10).join('; ')}${failures.length > 10 ? `; and ${failures.length - 10} more` : ''}`,
        { details: { backup: args.id, failures: failures.length } },
      );
    }
    return report;
  },
  /** A drill only touches scratch copies it drops: an interrupted drill runs again. */
  async verify() {
    return 'not-done' as const;
  },
};

const restoreArgs = z.strictObject({
  id: backupId,
  component: componentArg,
  target: z
    .string()
    .min(1)
    .max(100)
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'original, or a backups.targets name')
    .default('original')
    .describe('original (the configured systems) or a backups.targets name.'),
});

const restoreAction: ActionDefinition<z.infer<typeof restoreArgs>> = {
  name: 'backup.restore',
  description:
    'Restores one component of a set to the original systems or to a configured target (replacing what is there).',
  effect: 'destructive',
  idempotent: false,
  args: restoreArgs,
  target: (args) => `${args.component} of ${args.target} from backup ${args.id}`,
  async run(args, ctx) {
    const { service, by } = await ops(ctx);
    const report = await service.restoreComponent(args.id, args.component, {
      ...opOptions(ctx, by),
      target: args.target,
    });
    ctx.log(
      `${args.component} restored to ${report.target} from ${args.id} in ${formatDuration(report.durationMs)}: ` +
        Object.entries(report.summary)
          .map(([k, v]) => `${k} ${v}`)
          .join(', '),
    );
    return report;
  },
  // Whether a restore took effect cannot be told from the outside (the data may have changed since).
  async verify() {
    return 'unknown';
  },
};

const pruneArgs = z.strictObject({
  dryRun: z.boolean().default(false).describe('Only list what would go and why; delete nothing.'),
});

const pruneAction: ActionDefinition<z.infer<typeof pruneArgs>, PruneReport> = {
  name: 'backup.prune',
  description:
    'Deletes the sets retention lets go (keepDays, then daily/weekly/monthly; never fewer than minVerified verified ' +
    'sets, never the newest verified one), only the objects their manifests list. dryRun lists what would go and why.',
  // Static effect: mutating, not destructive, so the scheduled `backup` runbook prunes without waiting for
  // a person; what may go is decided by the retention rules, which never touch the verified floor.
  effect: 'mutating',
  idempotent: true,
  args: pruneArgs,
  target: (args, services) => `${backupsTarget(services)}${args.dryRun ? ' (dry run)' : ''}`,
  async run(args, ctx) {
    const { service, by } = await ops(ctx);
    const report = await service.prune({ by, dryRun: args.dryRun });
    for (const d of report.decisions)
      ctx.log(
        `${d.keep ? 'keep' : args.dryRun ? 'would delete' : 'delete'} ${d.id} (${d.state}): ${d.reasons.join(', ')}`,
      );
    for (const p of report.problems) ctx.log(`could not prune ${p.id}: ${p.problem}`);
    if (!args.dryRun) ctx.log(`pruned ${report.deleted.length} set(s)`);
    return report;
  },
};

const latestArgs = z.strictObject({
  id: backupId
    .nullable()
    .optional()
    .describe('When given, this set (checked to exist and be complete) instead of the newest.'),
  verifiedOnly: z.boolean().default(false).describe('Only sets that passed verify or a drill.'),
});

export interface LatestOutput {
  id: string;
  createdAt: string;
  /** How old the set is, e.g. `3h 12m`. */
  age: string;
  ageMs: number;
  components: string[];
  sizeBytes: number;
  verified: boolean;
}

/** The set as the latest/plan actions describe it. */
function describeSet(set: BackupSetRecord, now: Date): LatestOutput {
  const ageMs = Math.max(0, now.getTime() - Date.parse(set.createdAt));
  return {
    id: set.id,
    createdAt: set.createdAt,
    age: formatDuration(ageMs),
    ageMs,
    components: set.components,
    sizeBytes: set.sizeBytes,
    verified: set.verifyOk === true || set.drillOk === true,
  };
}

const latestAction: ActionDefinition<z.infer<typeof latestArgs>, LatestOutput> = {
  name: 'backup.latest',
  description:
    'The newest complete backup set (optionally verified only), or the given one checked to be complete: for runbooks whose id defaults to "latest".',
  effect: 'read-only',
  idempotent: true,
  args: latestArgs,
  target: (args, services) => (args.id ? `backup ${args.id}` : `newest set of ${backupsTarget(services)}`),
  async run(args, ctx) {
    const service = await servicesOf(ctx).backups();
    let set: BackupSetRecord | undefined;
    if (args.id) {
      set = (await service.show(args.id)).set;
      if (set.state !== 'complete')
        throw new ConflictError(
          `backup ${set.id} is ${set.state}${set.error ? ` (${set.error})` : ''}, not complete`,
        );
    } else {
      set = (await service.list({ limit: 500 })).find(
        (s) => s.state === 'complete' && (!args.verifiedOnly || s.verifyOk === true || s.drillOk === true),
      );
      if (!set)
        throw new NotFoundError(
          `no ${args.verifiedOnly ? 'verified ' : ''}complete backup set (gameops backup create takes one)`,
        );
    }
    const out = describeSet(set, ctx.clock.now());
    ctx.log(`backup ${out.id}: ${out.age} old, ${out.components.join(', ')}`);
    return out;
  },
};

const planArgs = z.strictObject({
  id: backupId,
  components: componentsArg,
  target: restoreArgs.shape.target,
});

export interface RestorePlan extends LatestOutput {
  target: string;
  original: boolean;
  /** Whether traffic is stopped around the restore (original target with a platform configured). */
  stopTraffic: boolean;
  /** The components restored, in restore order. */
  restore: ComponentKind[];
  /** The same as text for messages: `redis, files`. */
  restoreList: string;
  mysql: boolean;
  redis: boolean;
  kubernetes: boolean;
  files: boolean;
  /** One line for the approval: the set, its age, the components and the target. */
  summary: string;
}

/** The restore order of runbook §5.2: the database, then Redis, the config, the files. */
const RESTORE_ORDER: readonly ComponentKind[] = ['mysql', 'redis', 'kubernetes', 'files'];

/** What a restore of `manifest` restores: `wanted` (default every component in the set), in order. */
export function restoreComponents(
  manifest: Manifest,
  wanted: readonly ComponentKind[] | undefined,
): ComponentKind[] {
  const present = new Set(manifest.components.map((c) => c.kind));
  for (const kind of wanted ?? [])
    if (!present.has(kind))
      throw new NotFoundError(
        `backup ${manifest.id} has no ${kind} component (it has ${[...present].join(', ') || 'none'})`,
      );
  const chosen = new Set(wanted ?? present);
  return RESTORE_ORDER.filter((k) => chosen.has(k));
}

const planAction: ActionDefinition<z.infer<typeof planArgs>, RestorePlan> = {
  name: 'backup.restore-plan',
  description:
    'Works out a restore before its approval: the set (complete, its age), the components in it to restore, the ' +
    'target, and whether traffic is stopped (the original target with a platform).',
  effect: 'read-only',
  idempotent: true,
  args: planArgs,
  target: (args) => `backup ${args.id}`,
  async run(args, ctx) {
    const services = servicesOf(ctx);
    const service = await services.backups();
    const { set, manifest } = await service.show(args.id);
    if (!manifest)
      throw new ConflictError(
        `backup ${set.id} is ${set.state}${set.error ? ` (${set.error})` : ''}: it cannot be restored`,
      );
    const backups = services.config.backups;
    if (args.target !== 'original' && !backups?.targets.some((t) => t.name === args.target))
      throw new NotFoundError(
        `no restore target "${args.target}": use original or one of backups.targets (${backups?.targets.map((t) => t.name).join(', ') || 'none configured'})`,
      );
    const restore = restoreComponents(manifest, args.components ?? undefined);
    const original = args.target === 'original';
    const stopTraffic = original && services.config.platform !== undefined;
    const described = describeSet(set, ctx.clock.now());
    const summary =
      `Restore ${restore.join(', ')} from backup ${set.id} (taken ${set.createdAt}, ${described.age} ago) ` +
      `to ${original ? 'the ORIGINAL systems' : `target ${args.target}`}: what is there now is replaced` +
      `${restore.includes('files') ? ' (files not in the backup are deleted)' : ''}` +
      `${stopTraffic ? '; players are kept out (maintenance mode) until the restore and the restart are done' : ''}`;
    ctx.log(summary);
    return {
      ...described,
      target: args.target,
      original,
      stopTraffic,
      restore,
      restoreList: restore.join(', '),
      mysql: restore.includes('mysql'),
      redis: restore.includes('redis'),
      kubernetes: restore.includes('kubernetes'),
      files: restore.includes('files'),
      summary,
    };
  },
};

/** The backup actions. */
export const backupActions: ActionDefinition[] = [
  createAction,
  verifyAction,
  drillAction,
  restoreAction,
  pruneAction,
  latestAction,
  planAction,
] as ActionDefinition[];
