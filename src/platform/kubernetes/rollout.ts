/**
 * Rollout status as `kubectl rollout status` judges it, and the wait loop shared by scale, restart,
 * setVersion and rollback: poll with backoff (reset whenever something moved), report progress, stop on
 * ProgressDeadlineExceeded or the timeout, and always hand back the last progress.
 *
 * Pods still terminating are reported, never waited for: a pod can stay Terminating for a long time (a
 * game server draining its matches through a long grace period, a finalizer, a lost node) while the
 * Deployment is complete; the API already leaves them out of the Deployment's counts.
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
  /** Pods still terminating: once done, waited for a short while ({@link WaitSettings.settleMs}), never longer. */
  terminating?: string[];
}

export interface FleetCounts {
  /** Names of the fleet's pods marked for deletion and still listed (draining, held by a finalizer, on a lost node). */
  terminating: string[];
}

/** A pod marked for deletion (Terminating), whatever its phase. */
export function isTerminating(pod: V1Pod): boolean {
  return pod.metadata?.deletionTimestamp !== undefined && pod.metadata.deletionTimestamp !== null;
}

/** A terminal pod (evicted, completed) is kept by the API until garbage-collected, but runs nothing. */
export function isTerminal(pod: V1Pod): boolean {
  return pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
}

/** What the pods add to a rollout's progress: only the terminating ones, to report them. */
export function fleetCounts(pods: readonly V1Pod[]): FleetCounts {
  return {
    terminating: pods
      .filter(isTerminating)
      .map((p) => p.metadata?.name ?? '')
      .sort(),
  };
}

const NAMES_SHOWN = 3;

function terminatingNote(fleet: FleetCounts | undefined): string {
  const names = fleet?.terminating ?? [];
  if (names.length === 0) return '';
  const shown = names.slice(0, NAMES_SHOWN).join(', ');
  const more = names.length > NAMES_SHOWN ? ` and ${names.length - NAMES_SHOWN} more` : '';
  return `; ${names.length} ${names.length === 1 ? 'pod' : 'pods'} still terminating: ${shown}${more}`;
}

function count(n: number | undefined): number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : 0;
}

export interface ProgressingCondition {
  status: string;
  reason?: string;
  message?: string;
  /** ISO 8601, as the API sent them. */
  lastUpdateTime?: string;
  lastTransitionTime?: string;
}

function timeText(t: Date | string | undefined | null): string | undefined {
  if (t === undefined || t === null) return undefined;
  const d = t instanceof Date ? t : new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toISOString();
}

export function progressingCondition(d: V1Deployment): ProgressingCondition | undefined {
  const c = (d.status?.conditions ?? []).find((x) => x.type === 'Progressing');
  if (!c) return undefined;
  const updated = timeText(c.lastUpdateTime);
  const transition = timeText(c.lastTransitionTime);
  return {
    status: c.status,
    ...(c.reason ? { reason: c.reason } : {}),
    ...(c.message ? { message: c.message } : {}),
    ...(updated !== undefined ? { lastUpdateTime: updated } : {}),
    ...(transition !== undefined ? { lastTransitionTime: transition } : {}),
  };
}

/**
 * The ProgressDeadlineExceeded condition `d` shows, if any: taken from the Deployment a change was
 * decided on, it tells that condition apart from one about the change. The Deployment controller keeps
 * a timed-out condition, timestamps and all, when the template goes back to an existing ReplicaSet (a
 * rollback) until it sees progress, so right after the change it still says the deadline passed.
 */
export function deadlineExceeded(d: V1Deployment): ProgressingCondition | undefined {
  const c = progressingCondition(d);
  return c?.reason === 'ProgressDeadlineExceeded' ? c : undefined;
}

function sameCondition(a: ProgressingCondition, b: ProgressingCondition | undefined): boolean {
  return (
    b !== undefined &&
    a.reason === b.reason &&
    a.lastUpdateTime === b.lastUpdateTime &&
    a.lastTransitionTime === b.lastTransitionTime &&
    (a.lastUpdateTime !== undefined || a.lastTransitionTime !== undefined)
  );
}

export interface StatusOptions {
  /** A ProgressDeadlineExceeded from before the change waited for ({@link deadlineExceeded}): not about it. */
  staleDeadline?: ProgressingCondition | undefined;
}

/**
 * `kubectl rollout status` for a Deployment: the change observed (observedGeneration), no
 * ProgressDeadlineExceeded (other than `options.staleDeadline`), updated = desired, no old replicas, available = updated; and, for a scale
 * down, no replica beyond the desired count (the Deployment's counts leave terminating pods out, so
 * this never waits for one). Terminating pods of `fleet` are only named in the message.
 */
export function rolloutStatus(
  operation: string,
  d: V1Deployment,
  fleet?: FleetCounts,
  options: StatusOptions = {},
): RolloutCheck {
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
  const note = terminatingNote(fleet);
  const progress = (message: string): RolloutProgress => ({
    operation,
    desired,
    updated,
    ready,
    available,
    message: `${base}; ${message}${note}`,
  });
  const terminating = fleet?.terminating ?? [];

  if (observed < generation)
    return { progress: progress('waiting for the change to be observed'), done: false };
  const cond = deadlineExceeded(d);
  if (cond !== undefined && !sameCondition(cond, options.staleDeadline)) {
    const why = `deployment ${name} exceeded its progress deadline (${cond.message ?? 'ProgressDeadlineExceeded'})`;
    return { progress: progress(why), done: false, failed: why };
  }
  if (updated < desired) {
    return { progress: progress(`waiting for ${desired - updated} more to be updated`), done: false };
  }
  if (replicas > updated) {
    return { progress: progress(`${replicas - updated} old replicas pending termination`), done: false };
  }
  if (available < updated) {
    return {
      progress: progress(`waiting for ${updated - available} to become available`),
      done: false,
    };
  }
  if (replicas > desired) {
    return {
      progress: progress(`${replicas - desired} replicas beyond ${desired} to be removed`),
      done: false,
    };
  }
  return { progress: progress('rolled out'), done: true, terminating };
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
  /**
   * Once the rollout is done, how long pods still terminating are given to go (most exit within
   * moments of SIGTERM) before the wait ends anyway, naming them. Never beyond the wait's deadline. @default 0
   */
  settleMs?: number;
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
  /** Set while the rollout is done and only terminating pods are given their moment to go. */
  let settle: { until: number; progress: RolloutProgress } | undefined;
  const report = (progress: RolloutProgress): void => {
    if (sameProgress(last, progress)) return;
    last = progress;
    try {
      options.onProgress?.(progress);
    } catch (err) {
      settings.log?.warn({ err }, `${what}: the progress callback failed`);
    }
  };
  const notWaitedFor = (progress: RolloutProgress): RolloutProgress => {
    const final = { ...progress, message: `${progress.message} (not waited for)` };
    report(final);
    return final;
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
    // Cancelled while only terminating pods were given their moment: the rollout itself is done.
    if (options.signal?.aborted && settle !== undefined) return notWaitedFor(settle.progress);
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
      if (result.done) {
        const now = clock.now().getTime();
        if ((result.terminating ?? []).length === 0) return result.progress;
        settle ??= { until: Math.min(now + (settings.settleMs ?? 0), deadline), progress: result.progress };
        settle.progress = result.progress;
        if (now >= settle.until) return notWaitedFor(result.progress);
      } else {
        settle = undefined;
      }
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
    const now = clock.now().getTime();
    // Done but for terminating pods: they had their moment; the rollout itself succeeded.
    if (settle !== undefined && now >= settle.until) return notWaitedFor(settle.progress);
    const left = (settle?.until ?? deadline) - now;
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
