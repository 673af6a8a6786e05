/**
 * Plans: what a run would do with these parameters, as far as it is known before (or while) it runs.
 * `--dry-run` prints a plan; an approval step binds to the hash of the plan of the steps it covers.
 */
import { createHash } from 'node:crypto';
import type { z } from 'zod';
import { InputError } from '../core/index.ts';
import type { ActionStep, Catalog, Plan, PlannedStep, Runbook, Step, StepStatus, Template } from './model.ts';
import {
  evaluateCondition,
  FINISHED_STEP_STATUSES,
  resolveTemplate,
  templateRefs,
  type TemplateScope,
} from './template.ts';

/** What planRun needs besides the runbook and its parameters. */
export interface PlanContext {
  catalog: Catalog;
  /** Passed to `ActionDefinition.target`. */
  services: unknown;
  /** Steps known so far (a running run); absent: nothing has run. */
  known?: Record<string, { status: StepStatus; output?: unknown }>;
  /** Absent: references to run.id are pending. */
  runId?: string;
  /** Absent: references to run.requestedBy are pending. */
  requestedBy?: string;
  /** Applied to arguments shown (secrets); never given when computing an approval hash. */
  mask?: (v: unknown) => unknown;
  /**
   * Plan only these steps in full (the steps an approval covers); the others are listed with their id,
   * kind, title and needs only, so a problem in an unrelated step cannot block an approval.
   */
  only?: string[];
}

/**
 * The resolved plan: every action with its exact target and validated arguments when they can be known
 * now (otherwise `pending` says which references they wait for), the approval step that must allow it,
 * its compensation, and whether it is known to be skipped. Parameters must already be validated.
 * @throws InputError naming the step and field when arguments resolve but fail the action's schema, or
 *   refer to something that does not exist; when an action is not in the catalog.
 */
export function planRun(runbook: Runbook, params: Record<string, unknown>, ctx: PlanContext): Plan {
  const scope: TemplateScope = {
    params,
    steps: ctx.known ?? {},
    run: { id: ctx.runId ?? '', requestedBy: ctx.requestedBy ?? '' },
  };
  const approvedBy = new Map<string, string>();
  for (const step of runbook.steps) {
    if (step.kind === 'approval') for (const covered of step.covers) approvedBy.set(covered, step.id);
  }
  const show = (v: unknown) => (ctx.mask ? ctx.mask(v) : v);
  const steps = runbook.steps.map((step): PlannedStep => {
    const planned: PlannedStep = { id: step.id, kind: step.kind, title: step.title, needs: [...step.needs] };
    if (ctx.only && !ctx.only.includes(step.id)) return planned;
    const skip = step.when ? whenKnown(step, scope, ctx) : undefined;
    if (skip !== undefined) planned.skip = !skip;
    const approval = approvedBy.get(step.id);
    if (approval) planned.approvedBy = approval;
    if (step.kind === 'action') {
      planAction(step, planned, scope, ctx, show, planned.skip === true);
    } else if (step.kind === 'check' && planned.skip !== true) {
      const def = step.check === undefined ? undefined : ctx.catalog.check(step.check);
      const resolved = resolveArgs(step.args, scope, ctx, `step ${step.id}: args`);
      if ('pending' in resolved) planned.pending = resolved.pending;
      else planned.args = show(def ? validate(def.args, resolved.value, step.id, 'args') : resolved.value);
    } else if (step.kind === 'runbook' && planned.skip !== true) {
      const resolved = resolveArgs(step.params, scope, ctx, `step ${step.id}: params`);
      if ('pending' in resolved) planned.pending = resolved.pending;
      else planned.args = show(resolved.value);
    }
    return planned;
  });
  return {
    runbook: runbook.name,
    version: runbook.version,
    hash: runbook.hash,
    params: show(params) as Record<string, unknown>,
    steps,
  };
}

/**
 * The hash an approval binds to: sha256 (hex) of the canonical JSON of the covered steps' id, action,
 * effect, target, UNMASKED arguments and compensation (action, target, arguments when resolvable). Planned steps must come from a planRun without `mask`.
 * @throws InputError when a covered step's arguments are not resolved yet.
 */
export function approvalHash(covered: PlannedStep[]): string {
  const entries = covered.map((s) => {
    if (s.args === undefined && s.pending !== undefined) {
      throw new InputError(
        `step ${s.id}: its arguments are not known yet (${s.pending}), so it cannot be approved`,
      );
    }
    // What would undo it is part of what is approved (its arguments when they are known).
    return {
      id: s.id,
      action: s.action,
      effect: s.effect,
      target: s.target,
      args: s.args,
      compensation: s.compensation,
    };
  });
  return createHash('sha256').update(canonicalJson(entries)).digest('hex');
}

/**
 * JSON with object keys sorted at every level, so that equal values always give the same text (and
 * hash). `toJSON` is honoured (a Secret becomes its mask); undefined object fields are left out.
 * @throws InputError for a bigint or a cycle.
 */
export function canonicalJson(value: unknown): string {
  const seen = new Set<object>();
  const write = (v: unknown): string => {
    if (typeof v === 'object' && v !== null && typeof (v as { toJSON?: unknown }).toJSON === 'function') {
      v = (v as { toJSON: () => unknown }).toJSON();
    }
    if (v === null || v === undefined || typeof v === 'function' || typeof v === 'symbol') return 'null';
    if (typeof v === 'bigint') throw new InputError('a bigint cannot be written as JSON');
    if (typeof v !== 'object') return JSON.stringify(v);
    if (seen.has(v)) throw new InputError('a value that contains itself cannot be written as JSON');
    seen.add(v);
    let text: string;
    if (Array.isArray(v)) {
      text = `[${v.map((item: unknown) => write(item)).join(',')}]`;
    } else {
      const entries = Object.entries(v as Record<string, unknown>)
        .filter(([, item]) => item !== undefined && typeof item !== 'function' && typeof item !== 'symbol')
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      text = `{${entries.map(([k, item]) => `${JSON.stringify(k)}:${write(item)}`).join(',')}}`;
    }
    seen.delete(v);
    return text;
  };
  return write(value);
}

// ---------------------------------------------------------------------------------------------------

function planAction(
  step: ActionStep,
  planned: PlannedStep,
  scope: TemplateScope,
  ctx: PlanContext,
  show: (v: unknown) => unknown,
  skipped: boolean,
): void {
  const def = ctx.catalog.action(step.action);
  if (!def) throw new InputError(`step ${step.id}: unknown action "${step.action}"`);
  planned.action = def.name;
  planned.effect = def.effect;
  planned.idempotent = def.idempotent;
  if (!skipped) {
    const resolved = resolveArgs(step.args, scope, ctx, `step ${step.id}: args`);
    if ('pending' in resolved) {
      planned.pending = resolved.pending;
    } else {
      const args = validate(def.args, resolved.value, step.id, 'args');
      planned.target = def.target(args, ctx.services);
      planned.args = show(args);
    }
  }
  if (step.compensate) {
    const comp = ctx.catalog.action(step.compensate.action);
    if (!comp)
      throw new InputError(`step ${step.id}: compensate: unknown action "${step.compensate.action}"`);
    const compensation: NonNullable<PlannedStep['compensation']> = { action: comp.name };
    const resolved = skipped
      ? undefined
      : resolveArgs(step.compensate.args, scope, ctx, `step ${step.id}: compensate.args`);
    if (resolved && 'value' in resolved) {
      const args = validate(comp.args, resolved.value, step.id, 'compensate.args');
      compensation.target = comp.target(args, ctx.services);
      compensation.args = show(args);
    }
    planned.compensation = compensation;
  }
}

/** The references of a template that are not known yet: `uses steps.rank.output, run.id`. */
function pendingOf(t: Template, scope: TemplateScope, ctx: PlanContext): string | undefined {
  const waiting = new Set<string>();
  for (const ref of templateRefs(t)) {
    if (ref.root === 'run') {
      if ((ref.path[0] === 'id' ? ctx.runId : ctx.requestedBy) === undefined)
        waiting.add(`run.${ref.path[0]}`);
    } else if (ref.root === 'steps') {
      const state = Object.hasOwn(scope.steps, ref.stepId!) ? scope.steps[ref.stepId!] : undefined;
      if (!state || !FINISHED_STEP_STATUSES.includes(state.status)) {
        waiting.add(`steps.${ref.stepId}.${ref.path[0]}`);
      }
    }
  }
  return waiting.size > 0 ? `uses ${[...waiting].join(', ')}` : undefined;
}

/** The template resolved, or which references it waits for. */
function resolveArgs(
  t: Template,
  scope: TemplateScope,
  ctx: PlanContext,
  what: string,
): { value: unknown } | { pending: string } {
  const pending = pendingOf(t, scope, ctx);
  if (pending !== undefined) return { pending };
  try {
    return { value: resolveTemplate(t, scope) };
  } catch (err) {
    if (err instanceof InputError) throw new InputError(`${what}: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Whether the step's `when` holds, or undefined when it depends on what is not known yet. */
function whenKnown(step: Step, scope: TemplateScope, ctx: PlanContext): boolean | undefined {
  const when = step.when!;
  if (pendingOf([when.value, when.to], scope, ctx) !== undefined) return undefined;
  try {
    return evaluateCondition(when, scope);
  } catch (err) {
    if (err instanceof InputError)
      throw new InputError(`step ${step.id}: when: ${err.message}`, { cause: err });
    throw err;
  }
}

function validate<T>(schema: z.ZodType<T>, value: unknown, stepId: string, field: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new InputError(
    `step ${stepId}: ${result.error.issues
      .map((issue) => `${[field, ...issue.path.map(String)].join('.')}: ${issue.message}`)
      .join('; ')}`,
  );
}
