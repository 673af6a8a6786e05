import type { GameopsConfig } from '../config/index.ts';
import { formatDuration } from '../core/index.ts';
import { latestCheck } from '../backups/retention.ts';
import type { BackupRepo } from '../store/backups.ts';
import { CheckStatus, worstOf } from './statuses.ts';
import type { Check, Finding } from './types.ts';

/** The newest complete set older than this warns (a daily backup that missed one run by two hours). */
export const BACKUP_AGE_WARN_MS = 26 * 3_600_000;
/** The newest complete set older than this fails (two daily backups missed). */
export const BACKUP_AGE_FAIL_MS = 50 * 3_600_000;

/** What the backups check reads: the catalog of sets (src/store/backups.ts). */
export type BackupCatalogReader = Pick<BackupRepo, 'list' | 'restorable'>;

/** The components a set of this config holds by default (as the backup service decides). */
export function expectedComponents(config: GameopsConfig): string[] {
  const b = config.backups;
  if (!b) return [];
  const out: string[] = [];
  if (config.mysql && b.mysql.enabled) out.push('mysql');
  if (config.redis && b.redis.enabled) out.push('redis');
  if (config.platform && b.kubernetes.enabled) out.push('kubernetes');
  if (b.files.paths.length > 0) out.push('files');
  return out;
}

/**
 * The backups check (runbook §5): the newest complete set's age (warn after 26 h, fail after 50 h), a
 * newest set that failed (warn, naming it), and per component how long ago it was last proven restorable
 * by a drill, against `backups.restorable.warnAfter` / `failAfter` (never: fail). Skipped when `backups`
 * is not configured, and when the catalog (the store) is not open in this process, saying so.
 */
export const backupsCheck: Check = {
  name: 'backups',
  configured: (config) => config.backups !== undefined,
  target: () => 'the backup catalog',
  async run(ctx) {
    const catalog = ctx.backupCatalog;
    // The other store-backed parts of the daily check (deltas, recording) say the same: a running
    // `gameops serve` holds the store and checks it itself; this process has nothing to judge.
    if (!catalog)
      return {
        status: CheckStatus.skipped,
        summary:
          'the backup catalog is not open in this process (a running gameops serve holds the store and ' +
          'checks it: POST /api/checks/daily)',
        values: {},
        findings: [],
      };
    const { config, clock } = ctx;
    const backups = config.backups!;
    const now = clock.now().getTime();
    const scope = { service: config.service.name, environment: config.service.environment };
    // A set whose process died shows as failed (abandoned), not as running forever.
    await catalog.reapAbandoned(scope);
    const [sets, restorable] = await Promise.all([
      catalog.list(scope, { limit: 200 }),
      catalog.restorable(scope),
    ]);
    const findings: Finding[] = [];
    const age = (iso: string | null | undefined): number | undefined => {
      const t = iso ? Date.parse(iso) : NaN;
      return Number.isFinite(t) ? Math.max(0, now - t) : undefined;
    };

    const live = sets.filter((s) => s.state !== 'pruned');
    const newest = live[0];
    const complete = live.find((s) => s.state === 'complete');
    const completeAge = age(complete?.completedAt ?? complete?.createdAt);
    if (!complete || completeAge === undefined) {
      findings.push({ status: CheckStatus.fail, subject: 'newest set', message: 'no complete backup set' });
    } else {
      const status =
        completeAge > BACKUP_AGE_FAIL_MS
          ? CheckStatus.fail
          : completeAge > BACKUP_AGE_WARN_MS
            ? CheckStatus.warn
            : CheckStatus.ok;
      findings.push({
        status,
        subject: 'newest set',
        message: `${complete.id} completed ${formatDuration(completeAge)} ago${status === CheckStatus.ok ? '' : ` (over ${formatDuration(status === CheckStatus.fail ? BACKUP_AGE_FAIL_MS : BACKUP_AGE_WARN_MS)})`}`,
        value: Math.round(completeAge / 1000),
        threshold: (status === CheckStatus.fail ? BACKUP_AGE_FAIL_MS : BACKUP_AGE_WARN_MS) / 1000,
      });
    }
    if (complete) {
      // Its latest check decides: a verify or a drill that failed after an earlier pass.
      const latest = latestCheck(complete);
      if (latest && latest.ok === false)
        findings.push({
          status: CheckStatus.warn,
          subject: complete.id,
          message: `the newest complete set ${complete.id} failed its last ${latest.what}${latest.error ? `: ${latest.error}` : ''}`,
        });
    }
    if (newest && newest.state === 'failed')
      findings.push({
        status: CheckStatus.warn,
        subject: newest.id,
        message: `the newest backup ${newest.id} failed: ${newest.error ?? 'no error recorded'}`,
      });

    const byComponent = new Map(restorable.map((r) => [r.component, r]));
    const components = [...new Set([...expectedComponents(config), ...(complete?.components ?? [])])];
    const perComponent: Record<string, { setId: string | null; ageSeconds: number | null }> = {};
    for (const component of components) {
      const r = byComponent.get(component);
      const ms = age(r?.at);
      perComponent[component] = {
        setId: r?.setId ?? null,
        ageSeconds: ms === undefined ? null : Math.round(ms / 1000),
      };
      if (!r || ms === undefined) {
        findings.push({
          status: CheckStatus.fail,
          subject: `${component} restorable`,
          message: `${component}: never proven restorable (gameops backup drill)`,
        });
        continue;
      }
      const { warnAfter, failAfter } = backups.restorable;
      const status = ms > failAfter ? CheckStatus.fail : ms > warnAfter ? CheckStatus.warn : CheckStatus.ok;
      findings.push({
        status,
        subject: `${component} restorable`,
        message: `${component}: last proven restorable ${formatDuration(ms)} ago (drill of ${r.setId}${sets.find((s) => s.id === r.setId)?.state === 'pruned' ? ', since pruned' : ''})${status === CheckStatus.ok ? '' : `, over ${formatDuration(status === CheckStatus.fail ? failAfter : warnAfter)}`}`,
        value: Math.round(ms / 1000),
        threshold: (status === CheckStatus.fail ? failAfter : warnAfter) / 1000,
      });
    }

    const status = worstOf(findings.map((f) => f.status));
    const problems = findings.filter((f) => f.status !== CheckStatus.ok);
    const summary =
      problems.length > 0
        ? problems.map((f) => f.message).join('; ')
        : `${complete!.id} ${formatDuration(completeAge!)} old; ${components.join(', ') || 'no component'} proven restorable`;
    return {
      status,
      summary,
      values: {
        newestComplete: complete?.id ?? null,
        newestCompleteAgeSeconds: completeAge === undefined ? null : Math.round(completeAge / 1000),
        newest: newest ? { id: newest.id, state: newest.state } : null,
        restorable: perComponent,
      },
      findings,
    };
  },
};
