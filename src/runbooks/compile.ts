/**
 * Compiles a runbook as written (input.ts) into the model's `Runbook`: flat steps with explicit
 * dependencies, in dependency order, with every default filled in, validated against the catalog.
 * Every problem found is reported at once, each with its file:line (or `builtin <name>`), field and step.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { InputError } from '../core/index.ts';
import {
  paramsFromSpec,
  pathText,
  parseRunbookInput,
  type ChildStepInput,
  type RunbookInput,
  type StepInput,
} from './input.ts';
import type { Assertion, Catalog, Condition, RetryPolicy, Runbook, Step } from './model.ts';
import { canonicalJson } from './plan.ts';
import { hasTemplate, templateRefs, type TemplateRef } from './template.ts';

/** Where a runbook comes from; `lineOf` maps a path in the input to its line in the file. */
export type RunbookOrigin =
  | { kind: 'builtin' }
  | { kind: 'file'; path: string; lineOf?: (path: Array<string | number>) => number | undefined };

/** One thing wrong with a runbook definition. */
export interface RunbookProblem {
  /** `file.yaml` or `builtin high-cpu`. */
  source: string;
  line?: number;
  /** `steps[3].action`. */
  field: string;
  stepId?: string;
  message: string;
}

/** Problems listed in one error message; the rest are counted. */
const MAX_LISTED_PROBLEMS = 50;

/** A runbook (or a directory of them) that cannot be used: names every problem with its file:line. */
export class RunbookDefinitionError extends InputError {
  readonly problems: RunbookProblem[];
  constructor(problems: RunbookProblem[]) {
    const lines = problems.slice(0, MAX_LISTED_PROBLEMS).map(formatProblem);
    if (problems.length > MAX_LISTED_PROBLEMS)
      lines.push(`and ${problems.length - MAX_LISTED_PROBLEMS} more`);
    super(
      problems.length === 1
        ? `invalid runbook ${lines[0]}`
        : `invalid runbook (${problems.length} problems):\n  ${lines.join('\n  ')}`,
      { details: { problems } },
    );
    this.problems = problems;
  }
}

/** `file.yaml:12: steps[3].action (step scale): unknown action "fleet.scal"`. */
export function formatProblem(p: RunbookProblem): string {
  const at = p.line === undefined ? p.source : `${p.source}:${p.line}`;
  const field = p.field ? `: ${p.field}${p.stepId ? ` (step ${p.stepId})` : ''}` : '';
  return `${at}${field}: ${p.message}`;
}

/** Typed identity for TypeScript built-ins (whose `params` may be a zod object). */
export function defineRunbook(input: RunbookInput): RunbookInput {
  return input;
}

const DEFAULT_APPROVAL_EXPIRY_MS = 30 * 60_000;
const DEFAULT_WAIT_INTERVAL_MS = 5000;
const DEFAULT_RETRY = {
  delayMs: 1000,
  factor: 2,
  maxDelayMs: 5 * 60_000,
  nonRetryable: ['input', 'not_allowed'],
};

type Path = Array<string | number>;

interface Flat {
  step: Step;
  /** Where the step is in the input, e.g. `['steps', 2, 'parallel', 0]`. */
  path: Path;
  /** Where each `needs` entry was written (absent for implicit ones). */
  needsPaths: Map<string, Path>;
  /** Where each `covers` entry was written. */
  coversPaths: Map<string, Path>;
}

/**
 * Validates and compiles a runbook.
 * @throws RunbookDefinitionError (an InputError) naming every problem with its file:line, field and step:
 *   schema errors, duplicate step ids, cycles, needs/covers naming unknown steps, templates referring to
 *   unknown steps or steps that are not upstream, unknown actions and checks, arguments that fail the
 *   action's schema, approvals covering what they cannot, destructive actions without an approval.
 */
export function compileRunbook(input: unknown, catalog: Catalog, origin: RunbookOrigin): Runbook {
  const name =
    typeof input === 'object' && input !== null && typeof (input as { name?: unknown }).name === 'string'
      ? (input as { name: string }).name
      : '(unnamed)';
  const source = origin.kind === 'file' ? origin.path : `builtin ${name}`;
  const problems: RunbookProblem[] = [];
  const lineOf = (path: Path) => (origin.kind === 'file' ? origin.lineOf?.(path) : undefined);
  const add = (path: Path, message: string, stepId?: string) => {
    const line = lineOf(path);
    problems.push({
      source,
      ...(line === undefined ? {} : { line }),
      field: pathText(path),
      ...(stepId === undefined ? {} : { stepId }),
      message,
    });
  };
  const fail = (): never => {
    throw new RunbookDefinitionError(sortProblems(problems));
  };

  const parsed = parseRunbookInput(input);
  if (!parsed.success) {
    for (const p of parsed.problems) add(p.path, p.message);
    return fail();
  }
  const rb = parsed.data;

  // Parameters
  let params: z.ZodObject = z.strictObject({});
  if (rb.params instanceof z.ZodObject) {
    params = rb.params.strict();
  } else if (rb.params) {
    const compiled = paramsFromSpec(rb.params);
    if ('problems' in compiled) for (const p of compiled.problems) add(['params', ...p.path], p.message);
    else params = compiled.schema;
  }
  const paramNames = Object.keys(params.shape);
  let paramsJsonSchema: Record<string, unknown> = {};
  try {
    paramsJsonSchema = z.toJSONSchema(params, { io: 'input', unrepresentable: 'any' });
    delete paramsJsonSchema.$schema;
  } catch (err) {
    add(['params'], `cannot be described as JSON Schema: ${(err as Error).message}`);
  }

  // Flatten
  const flats = flatten(rb.steps, origin, source, lineOf);
  const byId = new Map<string, Flat>();
  for (const flat of flats) {
    const first = byId.get(flat.step.id);
    if (first) {
      const line = lineOf(first.path);
      add(
        [...flat.path, 'id'],
        `duplicate step id "${flat.step.id}"${line ? ` (first at line ${line})` : ''}`,
        flat.step.id,
      );
    } else {
      byId.set(flat.step.id, flat);
    }
  }
  const ids = [...byId.keys()];

  // Dependencies
  for (const flat of flats) {
    for (const need of flat.step.needs) {
      if (!byId.has(need)) {
        add(
          flat.needsPaths.get(need) ?? [...flat.path, 'needs'],
          `needs unknown step "${need}"${didYouMean(need, ids)}`,
          flat.step.id,
        );
      }
    }
  }
  const cycles = findCycles(
    flats.filter((f) => byId.get(f.step.id) === f),
    byId,
  );
  for (const cycle of cycles) {
    const first = byId.get(cycle[0]!)!;
    add([...first.path, 'needs'], `steps form a cycle: ${cycle.join(' → ')} → ${cycle[0]}`, first.step.id);
  }
  const ancestors = ancestorSets(byId);
  const upstream = (of: string, other: string) => ancestors.get(of)?.has(other) ?? false;

  // Approvals: who covers what
  const coveredBy = new Map<string, string>();
  for (const flat of flats) {
    const { step } = flat;
    if (step.kind !== 'approval') continue;
    for (const covered of step.covers) {
      const at = flat.coversPaths.get(covered) ?? [...flat.path, 'approval', 'covers'];
      const target = byId.get(covered);
      if (!target) {
        add(at, `covers unknown step "${covered}"${didYouMean(covered, ids)}`, step.id);
        continue;
      }
      if (target.step.kind !== 'action') {
        add(at, `covers step ${covered}, a ${target.step.kind} step; approvals cover action steps`, step.id);
        continue;
      }
      if (!upstream(covered, step.id)) {
        add(
          at,
          `covers step ${covered}, which does not run after the approval (make ${covered} need ${step.id})`,
          step.id,
        );
        continue;
      }
      const other = coveredBy.get(covered);
      if (other && other !== step.id) {
        add(at, `step ${covered} is already covered by approval ${other}`, step.id);
        continue;
      }
      coveredBy.set(covered, step.id);
      for (const ref of refsOf(target.step.args, () => undefined)) {
        if (
          ref.root === 'steps' &&
          ref.stepId !== undefined &&
          byId.has(ref.stepId) &&
          !upstream(step.id, ref.stepId)
        ) {
          add(
            at,
            `step ${covered}'s arguments use ${ref.expr}, which is not known when approval ${step.id} is reached; make ${step.id} need ${ref.stepId} so the approver sees the exact arguments`,
            step.id,
          );
        }
      }
    }
  }

  // Catalog, arguments, templates, effects
  for (const flat of flats) {
    const { step, path } = flat;
    const at = (...sub: Path) => [...path, ...sub];
    const checkRefs = (value: unknown, sub: Path, allowSelf = false) => {
      forEachString(value, at(...sub), (s, spath) => {
        let refs: TemplateRef[];
        try {
          refs = templateRefs(s);
        } catch (err) {
          add(spath, (err as Error).message, step.id);
          return;
        }
        for (const ref of refs) {
          const problem = refProblem(ref, step.id, allowSelf);
          if (problem) add(spath, problem, step.id);
        }
      });
    };
    const refProblem = (ref: TemplateRef, self: string, allowSelf: boolean): string | undefined => {
      if (ref.root === 'params') {
        const param = ref.path[0]!;
        return paramNames.includes(param)
          ? undefined
          : `${ref.expr}: unknown parameter "${param}"${didYouMean(param, paramNames)}`;
      }
      if (ref.root !== 'steps') return undefined;
      const id = ref.stepId!;
      if (!byId.has(id)) return `${ref.expr}: unknown step "${id}"${didYouMean(id, ids)}`;
      if (id === self) return allowSelf ? undefined : `${ref.expr}: a step cannot refer to itself`;
      if (!upstream(self, id))
        return `${ref.expr}: step ${id} does not run before step ${self} (add it to needs)`;
      return undefined;
    };
    const checkArgs = (schema: z.ZodType | undefined, args: unknown, sub: Path) => {
      if (!schema || hasTemplate(args)) return;
      const result = schema.safeParse(args);
      if (!result.success) {
        for (const issue of result.error.issues) {
          add(at(...sub, ...issue.path.map(pathKey)), issue.message, step.id);
        }
      }
    };
    const checkCheck = (check: string | undefined, args: unknown, sub: Path) => {
      if (check === undefined) return;
      const def = catalog.check(check);
      if (!def) {
        add(
          at(...sub, 'check'),
          `unknown check "${check}"${didYouMean(
            check,
            catalog.checks().map((c) => c.name),
          )}`,
          step.id,
        );
        return;
      }
      checkArgs(def.args, args, [...sub, 'args']);
    };

    if (step.when) checkRefs(step.when, ['when']);
    switch (step.kind) {
      case 'action': {
        checkRefs(step.args, ['args']);
        const def = catalog.action(step.action);
        if (!def) {
          add(
            at('action'),
            `unknown action "${step.action}"${didYouMean(step.action, actionNames(catalog))}`,
            step.id,
          );
        } else {
          checkArgs(def.args, step.args, ['args']);
          if (step.retry && def.effect !== 'read-only' && !def.idempotent) {
            add(
              at('retry'),
              `${def.name} is ${def.effect} and not idempotent: it may not be retried automatically (a failed or timed-out attempt may have taken effect); remove retry from step ${step.id}`,
              step.id,
            );
          }
          if (def.effect === 'destructive' && !coveredBy.has(step.id)) {
            add(
              at('action'),
              `${def.name} is destructive: destructive actions need approval (cover ${step.id} with an approval step)`,
              step.id,
            );
          }
        }
        if (step.compensate) {
          checkRefs(step.compensate.args, ['compensate', 'args'], true);
          const comp = catalog.action(step.compensate.action);
          if (!comp) {
            add(
              at('compensate', 'action'),
              `unknown action "${step.compensate.action}"${didYouMean(step.compensate.action, actionNames(catalog))}`,
              step.id,
            );
          } else {
            checkArgs(comp.args, step.compensate.args, ['compensate', 'args']);
            if (comp.effect === 'destructive' && !coveredBy.has(step.id)) {
              add(
                at('compensate', 'action'),
                `${comp.name} is destructive: destructive actions need approval (cover ${step.id} with an approval step)`,
                step.id,
              );
            }
          }
        }
        break;
      }
      case 'check':
        checkRefs(step.args, ['args']);
        checkRefs(step.assert, ['assert'], true);
        checkCheck(step.check, step.args, []);
        break;
      case 'wait':
        if (step.until) {
          checkRefs(step.until.args, ['wait', 'until', 'args']);
          checkRefs(step.until.assert, ['wait', 'until', 'assert'], true);
          checkCheck(step.until.check, step.until.args, ['wait', 'until']);
        }
        break;
      case 'notify':
        checkRefs(
          step.message,
          typeof rawAt(input, at('notify')) === 'string' ? ['notify'] : ['notify', 'message'],
        );
        break;
      case 'runbook':
        checkRefs(step.params, ['params']);
        break;
      case 'approval':
        if (step.onFailure !== 'abort') {
          add(
            at('onFailure'),
            `approval ${step.id} may only have onFailure: abort (a rejected or expired approval must stop the run, not let it go on without the steps it covers)`,
            step.id,
          );
        }
        break;
      case 'manual':
      case 'group':
        break;
    }
  }
  if (problems.length > 0) fail();

  const steps = topologicalOrder(flats.map((f) => f.step));
  const definition = {
    name: rb.name,
    version: rb.version === undefined ? '1' : String(rb.version),
    title: rb.title ?? rb.name,
    description: rb.description ?? '',
    timeoutMs: rb.timeout,
    runBy: [...new Set(rb.runBy ?? [])],
    tags: rb.tags ?? [],
    paramsJsonSchema,
  };
  const hash = createHash('sha256')
    .update(canonicalJson({ ...definition, steps: steps.map(({ source: _source, ...rest }) => rest) }))
    .digest('hex');
  return {
    ...definition,
    ...(definition.timeoutMs === undefined ? {} : { timeoutMs: definition.timeoutMs }),
    source: origin.kind === 'file' ? { kind: 'file', path: origin.path } : { kind: 'builtin' },
    params: params,
    steps,
    hash,
  };
}

// ---------------------------------------------------------------------------------------------------
// Flattening and defaults

function flatten(
  steps: StepInput[],
  origin: RunbookOrigin,
  source: string,
  lineOf: (path: Path) => number | undefined,
): Flat[] {
  const flats: Flat[] = [];
  const sourceOf = (path: Path) => {
    if (origin.kind === 'builtin') return `${source} ${pathText(path)}`;
    const line = lineOf(path);
    return line === undefined ? source : `${source}:${line}`;
  };
  let previous: string | undefined;
  steps.forEach((input, i) => {
    const path: Path = ['steps', i];
    const needsPaths = new Map<string, Path>();
    (input.needs ?? []).forEach((n, k) => needsPaths.set(n, [...path, 'needs', k]));
    const needs = input.needs ?? (previous === undefined ? [] : [previous]);
    if (!('parallel' in input)) {
      flats.push(compileStep(input, input.id, needs, path, needsPaths, (n) => n, sourceOf(path)));
      previous = input.id;
      return;
    }
    const group = input.id;
    const siblings = new Set(input.parallel.map((c) => c.id));
    const resolve = (n: string) => (siblings.has(n) ? `${group}.${n}` : n);
    const children: string[] = [];
    input.parallel.forEach((child, j) => {
      const childPath: Path = [...path, 'parallel', j];
      const childNeedsPaths = new Map<string, Path>();
      (child.needs ?? []).forEach((n, k) => childNeedsPaths.set(resolve(n), [...childPath, 'needs', k]));
      const inherited: ChildStepInput = {
        ...child,
        ...(child.when === undefined && input.when !== undefined ? { when: input.when } : {}),
        ...(child.timeout === undefined && input.timeout !== undefined ? { timeout: input.timeout } : {}),
        ...(child.retry === undefined && input.retry !== undefined ? { retry: input.retry } : {}),
        ...(child.onFailure === undefined && input.onFailure !== undefined
          ? { onFailure: input.onFailure }
          : {}),
      };
      const id = `${group}.${child.id}`;
      const childNeeds = child.needs ? child.needs.map(resolve) : needs;
      flats.push(
        compileStep(inherited, id, childNeeds, childPath, childNeedsPaths, resolve, sourceOf(childPath)),
      );
      children.push(id);
    });
    flats.push({
      step: {
        kind: 'group',
        id: group,
        title: input.title ?? `${group} (parallel)`,
        needs: children,
        children,
        onFailure: input.onFailure ?? 'abort',
        source: sourceOf(path),
      },
      path,
      needsPaths: new Map(),
      coversPaths: new Map(),
    });
    previous = group;
  });
  return flats;
}

function compileStep(
  input: ChildStepInput,
  id: string,
  needs: string[],
  path: Path,
  needsPaths: Map<string, Path>,
  resolve: (id: string) => string,
  source: string,
): Flat {
  const base = {
    id,
    needs: [...new Set(needs)],
    ...(input.when ? { when: condition(input.when) } : {}),
    ...(input.timeout === undefined ? {} : { timeoutMs: input.timeout }),
    ...(input.retry ? { retry: retryPolicy(input.retry) } : {}),
    onFailure: input.onFailure ?? ('abort' as const),
    source,
  };
  const coversPaths = new Map<string, Path>();
  let step: Step;
  if ('action' in input) {
    step = {
      ...base,
      kind: 'action',
      title: input.title ?? input.action,
      action: input.action,
      args: input.args ?? {},
      ...(input.compensate
        ? { compensate: { action: input.compensate.action, args: input.compensate.args ?? {} } }
        : {}),
    };
  } else if ('approval' in input) {
    const covers = input.approval.covers.map(resolve);
    covers.forEach((c, k) => coversPaths.set(c, [...path, 'approval', 'covers', k]));
    step = {
      ...base,
      kind: 'approval',
      title: input.title ?? `approve ${covers.join(', ')}`,
      covers,
      approvers: [...new Set(input.approval.approvers ?? ['operator' as const])],
      fourEyes: input.approval.fourEyes ?? false,
      expiresInMs: input.approval.expiresIn ?? DEFAULT_APPROVAL_EXPIRY_MS,
      message: input.approval.message ?? `Approve ${covers.join(', ')}`,
    };
  } else if ('manual' in input) {
    const manual = typeof input.manual === 'string' ? { instructions: input.manual } : input.manual;
    step = {
      ...base,
      kind: 'manual',
      title: input.title ?? firstLine(manual.instructions),
      instructions: manual.instructions,
      evidence: manual.evidence ?? 'optional',
    };
  } else if ('wait' in input) {
    const wait = typeof input.wait === 'number' ? { for: input.wait } : input.wait;
    step = {
      ...base,
      kind: 'wait',
      title:
        input.title ??
        (wait.for !== undefined
          ? `wait ${wait.for} ms`
          : `wait until ${wait.until?.check ?? 'assertions hold'}`),
      ...(wait.for === undefined ? {} : { forMs: wait.for }),
      ...(wait.until
        ? {
            until: {
              ...(wait.until.check === undefined ? {} : { check: wait.until.check }),
              args: wait.until.args ?? {},
              assert: wait.until.assert.map(assertion),
            },
          }
        : {}),
      intervalMs: wait.interval ?? DEFAULT_WAIT_INTERVAL_MS,
    };
  } else if ('notify' in input) {
    const notify = typeof input.notify === 'string' ? { message: input.notify } : input.notify;
    step = {
      ...base,
      kind: 'notify',
      title: input.title ?? `notify${notify.channel ? ` ${notify.channel}` : ''}`,
      ...(notify.channel === undefined ? {} : { channel: notify.channel }),
      message: notify.message,
    };
  } else if ('runbook' in input) {
    step = {
      ...base,
      kind: 'runbook',
      title: input.title ?? `run ${input.runbook}`,
      runbook: input.runbook,
      params: input.params ?? {},
    };
  } else {
    step = {
      ...base,
      kind: 'check',
      title: input.title ?? input.check ?? id,
      ...(input.check === undefined ? {} : { check: input.check }),
      args: input.args ?? {},
      assert: (input.assert ?? []).map(assertion),
    };
  }
  return { step, path, needsPaths, coversPaths };
}

function condition(c: { value?: unknown; op: Condition['op']; to?: unknown }): Condition {
  return { value: c.value, op: c.op, ...(c.to === undefined ? {} : { to: c.to }) };
}

function assertion(a: {
  value?: unknown;
  op: Condition['op'];
  to?: unknown;
  status?: 'warn' | 'fail' | undefined;
  message: string;
}): Assertion {
  return { ...condition(a), status: a.status ?? 'fail', message: a.message };
}

function retryPolicy(r: NonNullable<StepInput['retry']>): RetryPolicy {
  return {
    attempts: r.attempts,
    initialDelayMs: r.delay ?? DEFAULT_RETRY.delayMs,
    factor: r.factor ?? DEFAULT_RETRY.factor,
    maxDelayMs: r.maxDelay ?? DEFAULT_RETRY.maxDelayMs,
    nonRetryable: r.nonRetryable ?? DEFAULT_RETRY.nonRetryable,
  };
}

function firstLine(text: string): string {
  const line = text.split('\n')[0]?.trim() ?? '';
  return line.length > 80 ? `${line.slice(0, 79)}…` : line;
}

// ---------------------------------------------------------------------------------------------------
// Graph

/** Each cycle once, as the ids along it (in the order of the input). */
function findCycles(flats: Flat[], byId: Map<string, Flat>): string[][] {
  const state = new Map<string, 'active' | 'done'>();
  const cycles: string[][] = [];
  const stack: string[] = [];
  const visit = (id: string) => {
    state.set(id, 'active');
    stack.push(id);
    for (const need of byId.get(id)?.step.needs ?? []) {
      if (!byId.has(need)) continue;
      const s = state.get(need);
      if (s === 'active') cycles.push(stack.slice(stack.indexOf(need)).reverse());
      else if (s === undefined) visit(need);
    }
    stack.pop();
    state.set(id, 'done');
  };
  for (const flat of flats) if (!state.has(flat.step.id)) visit(flat.step.id);
  // A cycle found from its last member reads backwards; start each at its earliest step in the input.
  const order = new Map(flats.map((f, i) => [f.step.id, i]));
  return cycles.map((cycle) => {
    const start = cycle.reduce(
      (best, id, i) => ((order.get(id) ?? 0) < (order.get(cycle[best]!) ?? 0) ? i : best),
      0,
    );
    return [...cycle.slice(start), ...cycle.slice(0, start)];
  });
}

/** For every step, every step it transitively needs (a step in a cycle needs itself). */
function ancestorSets(byId: Map<string, Flat>): Map<string, Set<string>> {
  const sets = new Map<string, Set<string>>();
  for (const id of byId.keys()) {
    const set = new Set<string>();
    const stack = [...(byId.get(id)?.step.needs ?? [])];
    for (let need = stack.pop(); need !== undefined; need = stack.pop()) {
      if (set.has(need) || !byId.has(need)) continue;
      set.add(need);
      stack.push(...byId.get(need)!.step.needs);
    }
    sets.set(id, set);
  }
  return sets;
}

/** Kahn's algorithm, keeping the written order among steps that are ready together. */
function topologicalOrder(steps: Step[]): Step[] {
  const index = new Map(steps.map((s, i) => [s.id, i]));
  const remaining = new Map(steps.map((s) => [s.id, new Set(s.needs)]));
  const dependents = new Map<string, string[]>();
  for (const s of steps) for (const n of s.needs) dependents.set(n, [...(dependents.get(n) ?? []), s.id]);
  const ready = steps.filter((s) => s.needs.length === 0).map((s) => s.id);
  const out: Step[] = [];
  while (ready.length > 0) {
    ready.sort((a, b) => index.get(a)! - index.get(b)!);
    const id = ready.shift()!;
    out.push(steps[index.get(id)!]!);
    for (const d of dependents.get(id) ?? []) {
      const left = remaining.get(d)!;
      left.delete(id);
      if (left.size === 0) ready.push(d);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Helpers

function refsOf(t: unknown, onError: (err: unknown) => void): TemplateRef[] {
  try {
    return templateRefs(t);
  } catch (err) {
    onError(err);
    return [];
  }
}

function forEachString(value: unknown, path: Path, visit: (s: string, path: Path) => void): void {
  if (typeof value === 'string') visit(value, path);
  else if (Array.isArray(value)) value.forEach((v: unknown, i) => forEachString(v, [...path, i], visit));
  else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) forEachString(v, [...path, k], visit);
  }
}

function pathKey(p: PropertyKey): string | number {
  return typeof p === 'number' ? p : String(p);
}

function rawAt(raw: unknown, path: Path): unknown {
  let current = raw;
  for (const p of path) {
    if (typeof current !== 'object' || current === null || !Object.hasOwn(current, p)) return undefined;
    current = (current as Record<string | number, unknown>)[p];
  }
  return current;
}

function actionNames(catalog: Catalog): string[] {
  return catalog.actions().map((a) => a.name);
}

/** ` (did you mean fleet.scale?)` for the closest names, or nothing. */
export function didYouMean(name: string, candidates: string[]): string {
  const limit = Math.max(2, Math.floor(name.length / 4));
  const close = candidates
    .map((c) => ({ c, d: editDistance(name, c) }))
    .filter(
      ({ c, d }) =>
        (d <= limit && d < name.length) || c.endsWith(`.${name}`) || (name.length >= 4 && c.includes(name)),
    )
    .sort((a, b) => a.d - b.d || a.c.localeCompare(b.c))
    .slice(0, 3)
    .map(({ c }) => c);
  return close.length === 0 ? '' : ` (did you mean ${close.join(' or ')}?)`;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

function sortProblems(problems: RunbookProblem[]): RunbookProblem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => (a.p.line ?? 0) - (b.p.line ?? 0) || a.i - b.i)
    .map(({ p }) => p);
}
