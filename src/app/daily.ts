import { errorMessage } from '../core/index.ts';
import { KeptConnections, runDailyCheck, type CheckRun } from '../checks/index.ts';
import type { Resources } from './bootstrap.ts';
import { openFleet } from './fleet.ts';

/** How many recent runs deltas may look back through to find one in which a check measured. */
const HISTORY = 20;
/** How often a long-running process prunes runs past retention. */
const PRUNE_EVERY_MS = 3_600_000;

/**
 * Runs the daily check with deltas against earlier runs of the same service and environment, records
 * the result, prunes runs past `checks.retention`, and updates metrics. A store failure never loses the
 * measurements: the run is returned with a warning.
 */
export async function runAndRecordDailyCheck(
  resources: Resources,
  trigger: CheckRun['trigger'],
  options: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<{ run: CheckRun; recorded: boolean; warning?: string }> {
  const { store, log, config, clock } = resources;
  const scope = { service: config.service.name, environment: config.service.environment };
  let warning: string | undefined = resources.storeProblem
    ? `results not recorded and no deltas: ${resources.storeProblem}; ` +
      'a running `gameops serve` records runs itself (POST /api/checks/daily)'
    : undefined;
  // The embedded store belongs to this process alone (an exclusive lock), so after the first read the
  // runs it records are all there is: keep them in memory instead of reading them back every cycle.
  // A shared PostgreSQL store may have other writers for the same service, so it is always read.
  const memo = store?.backend === 'sqlite' ? resources.dailyHistory : undefined;
  let history: CheckRun[] = memo?.runs ?? [];
  if (store && !memo) {
    try {
      // Each check compares with the newest earlier run in which it measured (not merely the last run).
      // Usually that is the last run for every check; look further back only when it is not.
      history = await store.checkRuns.list({ ...scope, limit: 1 });
      if (history[0]?.results.some((r) => r.status === 'error'))
        history = await store.checkRuns.list({ ...scope, limit: HISTORY });
    } catch (err) {
      warning = `could not read earlier runs, deltas start afresh: ${errorMessage(err)}`;
      log.warn({ err: errorMessage(err) }, 'store read failed');
    }
  }
  // The game-server checks need the fleet; when it cannot be opened they report why, the rest still run.
  let fleet: Awaited<ReturnType<typeof openFleet>> | undefined;
  let platformProblem: string | undefined;
  if (config.platform) {
    try {
      fleet = await openFleet(resources);
    } catch (err) {
      platformProblem = errorMessage(err);
    }
  }
  // A long-running process (the server: API and schedule triggers) keeps its MySQL and Redis connections
  // between runs; a one-off `gameops check daily` connects per run. shutdown() closes them.
  const kept = trigger === 'cli' ? undefined : (resources.dailyConnections ??= new KeptConnections());
  const run = await runDailyCheck({
    config,
    clock,
    trigger,
    previous: history,
    backupCatalog: store?.backups,
    ...(fleet ? { platform: fleet.platform, gameStatus: fleet.game } : {}),
    ...(platformProblem ? { platformProblem } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(kept ? { kept } : {}),
  });
  resources.metrics?.observeCheckRun(run);
  let recorded = false;
  if (store) {
    try {
      await store.checkRuns.record(run);
      recorded = true;
      if (store.backend === 'sqlite')
        resources.dailyHistory = { runs: [run, ...history].slice(0, HISTORY), prunedAt: memo?.prunedAt };
      const now = clock.now().getTime();
      // Retention is in days: pruning once an hour is as good as every cycle, and cheaper.
      const prunedAt = resources.dailyHistory?.prunedAt;
      if (prunedAt === undefined || now - prunedAt >= PRUNE_EVERY_MS || now < prunedAt) {
        const pruned = await store.checkRuns.prune(new Date(now - config.checks.retention), scope);
        if (resources.dailyHistory) resources.dailyHistory.prunedAt = now;
        if (pruned > 0) log.info({ pruned, retentionMs: config.checks.retention }, 'pruned old check runs');
      }
    } catch (err) {
      warning = `${recorded ? 'pruning old runs failed' : 'results not recorded'}: ${errorMessage(err)}`;
      log.error({ err: errorMessage(err), runId: run.id }, 'recording the daily check failed');
    }
  }
  log.info(
    { runId: run.id, status: run.status, durationMs: run.durationMs, trigger },
    'daily check finished',
  );
  return { run, recorded, ...(warning ? { warning } : {}) };
}
