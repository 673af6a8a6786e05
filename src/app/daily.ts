import { errorMessage } from '../core/index.ts';
import { runDailyCheck, type CheckRun } from '../checks/index.ts';
import type { Resources } from './bootstrap.ts';

/** How many recent runs deltas may look back through to find one in which a check measured. */
const HISTORY = 20;

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
  let history: CheckRun[] = [];
  let warning: string | undefined = resources.storeProblem
    ? `results not recorded and no deltas: ${resources.storeProblem}; ` +
      'a running `gameops serve` records runs itself (POST /api/checks/daily)'
    : undefined;
  if (store) {
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
  const run = await runDailyCheck({
    config,
    clock,
    trigger,
    previous: history,
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  resources.metrics?.observeCheckRun(run);
  let recorded = false;
  if (store) {
    try {
      await store.checkRuns.record(run);
      recorded = true;
      const pruned = await store.checkRuns.prune(
        new Date(clock.now().getTime() - config.checks.retention),
        scope,
      );
      if (pruned > 0) log.info({ pruned, retentionMs: config.checks.retention }, 'pruned old check runs');
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
