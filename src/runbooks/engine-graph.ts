/**
 * The pure core of the runbook engine: which steps may start, which statuses count as done, what a
 * retry waits, what a run's status is given its steps. No IO and no clock: the engine passes `now`.
 */
import type { RetryPolicy, RunStatus, Step, StepStatus } from './model.ts';
import { type TemplateRef, templateRefs } from './template.ts';

/** A step's state as far as the graph rules care. */
export interface GraphStep {
  status: StepStatus;
  error?: { code: string; message: string };
  /** The state of its compensation (`{ status: 'running' }` while one runs). */
  compensation?: unknown;
}

/** Step states by id (a Map will do). */
export interface StepStates {
  get(id: string): GraphStep | undefined;
}

/** Statuses after which a step never changes again on its own. */
export const DONE_STEP_STATUSES: readonly StepStatus[] = [
  'succeeded',
  'warned',
  'failed',
  'skipped',
  'cancelled',
  'compensated',
];

/** Error code of a rejected approval: it fails the run whatever the step's onFailure says. */
export const REJECTED = 'rejected';

export function isDone(status: StepStatus): boolean {
  return DONE_STEP_STATUSES.includes(status);
}

/** Whether the step no longer holds up the steps that need it. */
export function satisfiesNeeds(def: Step, state: GraphStep | undefined): boolean {
  if (!state) return false;
  if (state.status === 'succeeded' || state.status === 'warned' || state.status === 'skipped') return true;
  return state.status === 'failed' && def.onFailure === 'continue' && state.error?.code !== REJECTED;
}

/** Whether this failed step makes the run fail (abort or compensate, or a rejected approval). */
export function failsRun(def: Step, state: GraphStep): boolean {
  if (state.status !== 'failed') return false;
  return def.onFailure !== 'continue' || state.error?.code === REJECTED;
}

/** For each step covered by an approval, the id of that approval step. */
export function coveringApprovals(steps: readonly Step[]): Map<string, string> {
  const covered = new Map<string, string>();
  for (const step of steps) {
    if (step.kind !== 'approval') continue;
    for (const id of step.covers) covered.set(id, step.id);
  }
  return covered;
}

/**
 * Whether a pending step may start: every step it needs is finished (see satisfiesNeeds) and, when an
 * approval covers it, that approval was granted (or skipped: the engine then refuses to run the step
 * unless its own condition skips it too).
 */
export function isReady(
  def: Step,
  states: StepStates,
  defs: ReadonlyMap<string, Step>,
  coveredBy: ReadonlyMap<string, string>,
): boolean {
  for (const need of def.needs) {
    const needDef = defs.get(need);
    if (!needDef || !satisfiesNeeds(needDef, states.get(need))) return false;
  }
  const approval = coveredBy.get(def.id);
  if (approval === undefined) return true;
  // A skipped approval lets a covered step be looked at (it is then skipped too, or refused).
  const status = states.get(approval)?.status;
  return status === 'succeeded' || status === 'skipped';
}

/**
 * `from` and every step that depends on it, directly or through others (by `needs`, and the steps an
 * approval in the set covers).
 */
export function downstreamOf(steps: readonly Step[], from: string): Set<string> {
  const out = new Set<string>([from]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const step of steps) {
      if (out.has(step.id)) continue;
      const viaNeeds = step.needs.some((need) => out.has(need));
      if (viaNeeds) {
        out.add(step.id);
        grew = true;
      }
    }
    for (const step of steps) {
      if (step.kind !== 'approval' || !out.has(step.id)) continue;
      for (const id of step.covers) {
        if (!out.has(id)) {
          out.add(id);
          grew = true;
        }
      }
    }
  }
  return out;
}

/** Default: one attempt; `input` and `not_allowed` errors are never retried. */
export const DEFAULT_NON_RETRYABLE = ['input', 'not_allowed'];

/**
 * The delay before attempt `nextAttempt` (2 for the first retry), or undefined when no retry is due:
 * attempts used up, or the error code is non-retryable.
 */
export function retryDelayMs(
  policy: RetryPolicy | undefined,
  nextAttempt: number,
  errorCode: string,
): number | undefined {
  if (!policy || nextAttempt > policy.attempts) return undefined;
  if ((policy.nonRetryable ?? DEFAULT_NON_RETRYABLE).includes(errorCode)) return undefined;
  const delay = policy.initialDelayMs * policy.factor ** Math.max(0, nextAttempt - 2);
  return Math.max(0, Math.min(delay, policy.maxDelayMs));
}

/** Flags of the run that the status depends on. */
export interface RunFlags {
  paused: boolean;
  compensating: boolean;
  /** A compensation is still to run or running. */
  compensationPending: boolean;
}

export interface DerivedStatus {
  status: RunStatus;
  reason?: string;
}

/**
 * The status of a run that was not cancelled, from its steps: failed once a failing step's run has
 * nothing left running (and its compensations are done); needs-verification while a step's outcome is
 * unknown; paused; succeeded when every step is finished; waiting when only a person can move it;
 * otherwise running.
 */
export function deriveRunStatus(defs: readonly Step[], states: StepStates, flags: RunFlags): DerivedStatus {
  const entries = defs.map((def) => ({ def, state: states.get(def.id) ?? { status: 'pending' as const } }));
  const running = entries.filter(
    ({ state }) =>
      state.status === 'running' ||
      (state.compensation as { status?: string } | undefined)?.status === 'running',
  );
  const unverified = entries.find(({ state }) => state.status === 'needs-verification');
  const failing = entries.filter(({ def, state }) => failsRun(def, state));
  if (unverified) {
    return {
      status: 'needs-verification',
      reason: `step ${unverified.def.id} needs verification: ${unverified.state.error?.message ?? 'its outcome is unknown'}`,
    };
  }
  if (failing.length > 0) {
    const first = failing[0]!;
    const why = `step ${first.def.id} failed: ${first.state.error?.message ?? 'unknown error'}`;
    if (running.length > 0 || (flags.compensating && flags.compensationPending)) {
      return { status: 'running', reason: `${why} (finishing running steps and compensations)` };
    }
    return { status: 'failed', reason: why };
  }
  if (flags.paused) return { status: 'paused', reason: 'paused: no new steps start' };
  const finished = entries.every(({ def, state }) => satisfiesNeeds(def, state));
  if (finished) {
    const tolerated = entries.filter(({ state }) => state.status === 'failed');
    return tolerated.length > 0
      ? {
          status: 'succeeded',
          reason: `finished; failed but continued: ${tolerated.map(({ def }) => def.id).join(', ')}`,
        }
      : { status: 'succeeded' };
  }
  const active = entries.some(
    ({ def, state }) =>
      state.status === 'running' ||
      state.status === 'retrying' ||
      (state.status === 'waiting' && (def.kind === 'wait' || def.kind === 'runbook')),
  );
  if (active) return { status: 'running' };
  const person = entries.find(
    ({ def, state }) => state.status === 'waiting' && (def.kind === 'approval' || def.kind === 'manual'),
  );
  if (person) {
    return {
      status: 'waiting',
      reason:
        person.def.kind === 'approval'
          ? `waiting for approval ${person.def.id}`
          : `waiting for manual step ${person.def.id} to be completed`,
    };
  }
  return { status: 'running' };
}

/**
 * After a retry changed the parameters `changed`: the steps whose templates (arguments, conditions,
 * assertions, messages, compensations) use one of them, the approvals covering such a step, and
 * everything downstream of those. They run again with the new values.
 */
export function stepsUsingParams(steps: readonly Step[], changed: ReadonlySet<string>): Set<string> {
  const uses = (step: Step): boolean => {
    let refs: TemplateRef[];
    try {
      refs = templateRefs(step);
    } catch {
      return true; // cannot tell (a compiled runbook never gets here): run it again to be safe
    }
    return refs.some((ref) => ref.root === 'params' && ref.path[0] !== undefined && changed.has(ref.path[0]));
  };
  const direct = new Set(steps.filter(uses).map((step) => step.id));
  for (const step of steps) {
    if (step.kind === 'approval' && step.covers.some((id) => direct.has(id))) direct.add(step.id);
  }
  const out = new Set<string>();
  for (const id of direct) for (const down of downstreamOf(steps, id)) out.add(down);
  return out;
}
