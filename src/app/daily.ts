import { errorMessage } from '../core/index.ts';
import { runDailyCheck, type CheckRun } from '../checks/index.ts';
import type { Resources } from './bootstrap.ts';

/**
 * Runs the daily check with deltas against the last recorded run, records the result and updates
 * metrics. A store failure never loses the measurements: the run is returned with a warning logged.
 */
export async function runAndRecordDailyCheck(
  resources: Resources,
  trigger: CheckRun['trigger'],
  options: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<{ run: CheckRun; recorded: boolean; warning?: string }> {
  const { store, log } = resources;
  let previous: CheckRun | undefined;
  let warning: string | undefined = resources.storeProblem
    ? `results not recorded and no deltas: ${resources.storeProblem}; ` +
      'a running `gameops serve` records runs itself (POST /api/checks/daily)'
    : undefined;
  if (store) {
    try {
      previous = await store.checkRuns.latest('daily');
    } catch (err) {
      warning = `could not read the previous run, deltas start afresh: ${errorMessage(err)}`;
      log.warn({ err: errorMessage(err) }, 'store read failed');
    }
  }
  const run = await runDailyCheck({
    config: resources.config,
    clock: resources.clock,
    trigger,
    ...(previous ? { previous } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  resources.metrics?.observeCheckRun(run);
  let recorded = false;
  if (store) {
    try {
      await store.checkRuns.record(run);
      recorded = true;
    } catch (err) {
      warning = `results not recorded: ${errorMessage(err)}`;
      log.error({ err: errorMessage(err), runId: run.id }, 'recording the daily check failed');
    }
  }
  log.info(
    { runId: run.id, status: run.status, durationMs: run.durationMs, trigger },
    'daily check finished',
  );
  return { run, recorded, ...(warning ? { warning } : {}) };
}
