/**
 * Rollout status as `kubectl rollout status` judges it, plus one stricter rule (no pod of the fleet is
 * still terminating), and the wait loop shared by scale, restart, setVersion and rollback: poll with
 * backoff (reset whenever something moved), report progress, stop on ProgressDeadlineExceeded or the
 * timeout, and always hand back the last progress.
 */
import type { V1Deployment, V1Pod } from '@kubernetes/client-node';
import { type Clock, GameopsError, InputError, sleep, UnavailableError } from '../../core/index.ts';
import type { RolloutProgress, WaitOptions } from '../port.ts';

/** What one look at the fleet says. */
export interface RolloutCheck {
  progress: RolloutProgress;
  done: boolean;
  /** Set when the rollout cannot finish on its own (ProgressDeadlineExceeded). */
  failed?: string;
}

export interface FleetCounts {
  /** Pods matching the fleet selector that are not terminal (Succeeded/Failed, e.g. evicted), terminating ones included. */
  pods: number;
  terminating: number;
}

/** Pods that count for a rollout: a terminal pod (evicted, completed) is kept by the API until garbage-collected, but runs nothing. */
export function fleetCounts(pods: readonly V1Pod[]): FleetCounts {
  const live = pods.filter((p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed');
  return {
    pods: live.length,
    terminating: live.filter(
      (p) => p.metadata?.deletionTimestamp !== undefined && p.metadata.deletionTimestamp !== null,
    ).length,
  };
}

function count(n: number | undefined): number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : 0;
}

export function progressingCondition(
  d: V1Deployment,
): { status: string; reason?: string; message?: string } | undefined {
  const c = (d.status?.conditions ?? []).find((x) => x.type === 'Progressing');
  return c
    ? {
        status: c.status,
        ...(c.reason ? { reason: c.reason } : {}),
        ...(c.message ? { message: c.message } : {}),
      }
    : undefined;
}

/**
 * `kubectl rollout status` for a Deployment (observed generation, updated = desired, no old replicas,
 * available = updated; ProgressDeadlineExceeded fails), and every pod of the fleet present and not
 * terminating.
 */
export function rolloutStatus(operation: string, d: V1Deployment, fleet: FleetCounts): RolloutCheck {
  const desired = count(d.spec?.replicas ?? 1);
  const s = d.status ?? {};
  const updated = count(s.updatedReplicas);
  const replicas = count(s.replicas);
  const ready = count(s.readyReplicas);
  const available = count(s.availableReplicas);
  const generation = d.metadata?.generation ?? 0;
  const observed = s.observedGeneration ?? 0;
  const name = d.metadata?.name ?? 'deployment';
  const base = `${updated}/${desired} updated, ${ready} ready, ${available} available`;
  const progress = (message: string): RolloutProgress => ({
    operation,
    desired,
    updated,
    ready,
    available,
    message,
  });

  if (observed < generation)
    return { progress: progress(`${base}; waiting for the change to be observed`), done: false };
  const cond = progressingCondition(d);
  if (cond?.reason === 'ProgressDeadlineExceeded') {
    const why = `deployment ${name} exceeded its progress deadline (${cond.message ?? 'ProgressDeadlineExceeded'})`;
    return { progress: progress(`${base}; ${why}`), done: false, failed: why };
  }
  if (updated < desired) {
    return {
      progress: progress(`${base}; waiting for ${desired - updated} more to be updated`),
      done: false,
    };
  }
  if (replicas > updated) {
    return {
      progress: progress(`${base}; ${replicas - updated} old replicas pending termination`),
      done: false,
    };
  }
  if (available < updated) {
    return {
      progress: progress(`${base}; waiting for ${updated - available} to become available`),
      done: false,
    };
  }
  if (fleet.terminating > 0 || fleet.pods !== desired) {
    const extra =
      fleet.terminating > 0
        ? `${fleet.terminating} pods still terminating`
        : `${fleet.pods} pods for ${desired} replicas`;
    return { progress: progress(`${base}; ${extra}`), done: false };
  }
  return { progress: progress(`${base}; rolled out`), done: true };
}

/** A rollout of another change is under way (not merely some pods unavailable). */
export function rolloutInProgress(d: V1Deployment): boolean {
  const desired = count(d.spec?.replicas ?? 1);
  const s = d.status ?? {};
  if ((s.observedGeneration ?? 0) < (d.metadata?.generation ?? 0)) return true;
  if (progressingCondition(d)?.reason === 'ProgressDeadlineExceeded') return false;
  return count(s.updatedReplicas) < desired || count(s.replicas) > count(s.updatedReplicas);
}

const MAX_TIMEOUT_MS = 6 * 60 * 60 * 1000;

/** Checks wait options before anything changes. */
export function checkWaitOptions(options: WaitOptions | undefined): void {
  if (options === undefined) return;
  if (typeof options !== 'object' || options === null)
    throw new InputError('the wait options must be an object');
  const t = options.timeoutMs;
  if (t !== undefined && (typeof t !== 'number' || !Number.isFinite(t) || t <= 0 || t > MAX_TIMEOUT_MS)) {
    throw new InputError(
      `timeoutMs must be a number of milliseconds above 0 and at most 6 h (got ${String(t)})`,
    );
  }
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw new InputError('onProgress must be a function');
  }
}

export interface WaitSettings {
  clock: Clock;
  /** First and longest pause between two looks. */
  pollMs: { initial: number; max: number };
  log?: { warn(obj: object, msg: string): void } | undefined;
}

function sameProgress(a: RolloutProgress | undefined, b: RolloutProgress): boolean {
  return (
    a !== undefined &&
    a.desired === b.desired &&
    a.updated === b.updated &&
    a.ready === b.ready &&
    a.available === b.available &&
    a.message === b.message
  );
}

/**
 * Looks at the fleet with `check` until it says done. Fails with an UnavailableError carrying the last
 * progress when the rollout fails, the time is up, or the caller aborts; the rollout itself is left
 * where it is (the Deployment keeps old pods serving within its maxUnavailable).
 */
export async function waitForRollout(
  what: string,
  check: () => Promise<RolloutCheck>,
  options: WaitOptions & { timeoutMs: number },
  settings: WaitSettings,
): Promise<RolloutProgress> {
  const { clock } = settings;
  const deadline = clock.now().getTime() + options.timeoutMs;
  let delay = settings.pollMs.initial;
  let last: RolloutProgress | undefined;
  let lastProblem: string | undefined;
  const report = (progress: RolloutProgress): void => {
    if (sameProgress(last, progress)) return;
    last = progress;
    try {
      options.onProgress?.(progress);
    } catch (err) {
      settings.log?.warn({ err }, `${what}: the progress callback failed`);
    }
  };
  const stopped = (message: string, extra: Record<string, unknown> = {}, cause?: unknown): UnavailableError =>
    new UnavailableError(message, {
      details: {
        progress: last ?? { operation: what, desired: 0, updated: 0, ready: 0, available: 0, message },
        ...extra,
      },
      ...(cause !== undefined ? { cause } : {}),
    });
  for (;;) {
    if (options.signal?.aborted) {
      throw stopped(
        `${what} stopped waiting: cancelled (${last?.message ?? 'no progress seen'}); the rollout continues in the cluster`,
        {},
        options.signal.reason,
      );
    }
    let moved = false;
    try {
      const result = await check();
      moved = !sameProgress(last, result.progress);
      report(result.progress);
      lastProblem = undefined;
      if (result.done) return result.progress;
      if (result.failed !== undefined) {
        throw stopped(
          `${what} stopped: ${result.failed}; ${result.progress.message}. The rollout is left in place: pods of the previous version keep serving within the Deployment's maxUnavailable; roll back to undo it`,
          { reason: 'ProgressDeadlineExceeded' },
        );
      }
    } catch (err) {
      if (err instanceof UnavailableError && err.details?.['progress'] !== undefined) throw err;
      if (options.signal?.aborted) continue;
      // A failed look (API briefly unreachable) is retried until the deadline; anything else stops.
      if (!(err instanceof GameopsError) || err.code !== 'unavailable') throw err;
      lastProblem = err.message;
    }
    const left = deadline - clock.now().getTime();
    if (left <= 0) {
      const latest = last?.message ?? 'no progress seen';
      throw stopped(
        `${what} did not finish within ${options.timeoutMs} ms (${latest}${lastProblem ? `; last error: ${lastProblem}` : ''}). The rollout is left in place and continues in the cluster`,
        { timeoutMs: options.timeoutMs },
      );
    }
    delay = moved ? settings.pollMs.initial : Math.min(delay * 2, settings.pollMs.max);
    await sleep(Math.min(delay, left), options.signal);
  }
}
