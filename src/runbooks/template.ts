/**
 * Templates and conditions: `${{ expr }}` references inside step arguments, messages and conditions.
 *
 * There is no expression language and nothing is evaluated: an expression is a dotted path under one of
 * three roots, walked over plain objects and arrays.
 *
 * - `params.<name>[.<path>]`: a parameter of the run.
 * - `steps.<id>.output[.<path>]`: the output of a finished step (or of a step in the scope with an output,
 *   such as the check step whose assertions are judged); `steps.<id>.status`: its status.
 *   Group children are `steps.<group>.<child>.output`.
 * - `run.id`, `run.requestedBy`.
 *
 * Array elements are numeric segments (`items.0.name`). A string that is exactly one reference keeps the
 * referenced value's type (`${{ params.x }}` alone for a parameter not given is undefined); any other
 * string containing references is interpolated as text (objects as JSON). Keys of objects are never
 * templated.
 */
import { InputError } from '../core/index.ts';
import type { CompareOp, Condition, StepStatus, Template } from './model.ts';

/** What a template may refer to while a run is planned or running. */
export interface TemplateScope {
  params: Record<string, unknown>;
  /** Steps known so far; a step absent here has not started. */
  steps: Record<string, { status: StepStatus; output?: unknown }>;
  run: { id: string; requestedBy: string };
}

/**
 * One `${{ expr }}` found in a template. For `steps`, `path` starts with `output` or `status`
 * (`steps.rank.output.hottest` → `{ stepId: 'rank', path: ['output', 'hottest'] }`).
 */
export interface TemplateRef {
  /** The expression as written between the braces, trimmed: `steps.rank.output.hottest`. */
  expr: string;
  root: 'params' | 'steps' | 'run';
  stepId?: string;
  path: string[];
}

/** Statuses after which a step's output no longer changes and may be referred to. */
export const FINISHED_STEP_STATUSES: readonly StepStatus[] = [
  'succeeded',
  'warned',
  'failed',
  'skipped',
  'cancelled',
  'compensated',
];

const OPEN = '${{';
const CLOSE = '}}';
const SEGMENT = /^[A-Za-z0-9_-]+$/;
const FORBIDDEN_SEGMENTS = new Set(['__proto__', 'constructor', 'prototype']);
const RUN_FIELDS = new Set(['id', 'requestedBy']);
/** The longest template string quoted in an error message. */
const MAX_QUOTED = 120;

/** A reference to something that does not exist (as opposed to something not known yet). */
class MissingValueError extends InputError {}

interface Part {
  /** Literal text, or undefined for a reference. */
  text?: string;
  ref?: TemplateRef;
}

/**
 * Every reference in a template (strings nested anywhere in arrays and objects), in order of appearance.
 * @throws InputError naming the string when a `${{ }}` is malformed (unclosed, empty, an unknown root, a
 *   path segment that is not `[A-Za-z0-9_-]+`, a prototype key).
 */
export function templateRefs(t: Template): TemplateRef[] {
  const refs: TemplateRef[] = [];
  walkStrings(t, (s) => {
    for (const part of parseString(s)) if (part.ref) refs.push(part.ref);
  });
  return refs;
}

/**
 * The template with every reference replaced by its value.
 * @throws InputError naming the reference when it cannot be resolved: a step that has not finished
 *   (`steps.rank.output.hottest: step rank has not finished`), a missing field
 *   (`steps.rank.output.hottest: step rank's output has no field hottest`), a parameter that is not set.
 */
export function resolveTemplate(t: Template, scope: TemplateScope): unknown {
  if (typeof t === 'string') return resolveString(t, scope);
  if (Array.isArray(t)) return t.map((item: unknown) => resolveTemplate(item, scope));
  if (isPlainObject(t)) {
    return Object.fromEntries(Object.entries(t).map(([key, value]) => [key, resolveTemplate(value, scope)]));
  }
  return t;
}

/** Whether `resolveTemplate` would succeed with this scope (every referenced value is known and present). */
export function canResolve(t: Template, scope: TemplateScope): boolean {
  try {
    resolveTemplate(t, scope);
    return true;
  } catch (err) {
    if (err instanceof InputError) return false;
    throw err;
  }
}

/**
 * Evaluates a condition. Two numbers (or numeric strings) compare numerically; two other strings compare
 * as text for `lt`..`ge`; `eq`/`ne` compare other values structurally. `in`/`notIn` need `to` to be an
 * array. `exists` holds for any value but undefined and null; `truthy` fails for undefined, null, false,
 * 0, '' and []. For `exists` and `truthy` a missing parameter or field counts as undefined (a step that
 * has not finished is still an error).
 * @throws InputError naming the condition's reference when a value cannot be resolved or compared.
 */
export function evaluateCondition(c: Condition, scope: TemplateScope): boolean {
  const lenient = c.op === 'exists' || c.op === 'truthy';
  let value: unknown;
  try {
    value = resolveTemplate(c.value, scope);
  } catch (err) {
    if (!(lenient && err instanceof MissingValueError)) throw err;
    value = undefined;
  }
  if (c.op === 'exists') return value !== undefined && value !== null;
  if (c.op === 'truthy') return isTruthy(value);
  const to = resolveTemplate(c.to, scope);
  return compare(value, c.op, to, describe(c.value));
}

/** Whether `s` contains at least one `${{`. Cheap pre-check; does not validate. */
export function hasTemplate(t: Template): boolean {
  let found = false;
  walkStrings(t, (s) => {
    if (s.includes(OPEN)) found = true;
  });
  return found;
}

// ---------------------------------------------------------------------------------------------------

function compare(value: unknown, op: Exclude<CompareOp, 'exists' | 'truthy'>, to: unknown, what: string) {
  switch (op) {
    case 'eq':
      return equal(value, to);
    case 'ne':
      return !equal(value, to);
    case 'in':
    case 'notIn': {
      if (!Array.isArray(to)) {
        throw new InputError(
          `condition on ${what}: "${op}" needs a list to compare with, got ${typeName(to)}`,
        );
      }
      const found = to.some((item: unknown) => equal(value, item));
      return op === 'in' ? found : !found;
    }
    case 'lt':
    case 'le':
    case 'gt':
    case 'ge': {
      const order = ordering(value, to);
      if (order === undefined) {
        throw new InputError(
          `condition on ${what}: cannot order ${typeName(value)} ${JSON.stringify(value) ?? 'undefined'} against ${typeName(to)} ${JSON.stringify(to) ?? 'undefined'} (need two numbers or two strings)`,
        );
      }
      if (op === 'lt') return order < 0;
      if (op === 'le') return order <= 0;
      if (op === 'gt') return order > 0;
      return order >= 0;
    }
  }
}

const NUMERIC = /^\s*-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$/;

function asNumber(v: unknown): number | undefined {
  if (typeof v === 'number' && !Number.isNaN(v)) return v;
  if (typeof v === 'string' && NUMERIC.test(v)) return Number(v);
  return undefined;
}

function ordering(a: unknown, b: unknown): number | undefined {
  const x = asNumber(a);
  const y = asNumber(b);
  if (x !== undefined && y !== undefined) return x === y ? 0 : x < y ? -1 : 1;
  if (typeof a === 'string' && typeof b === 'string') return a === b ? 0 : a < b ? -1 : 1;
  return undefined;
}

function equal(a: unknown, b: unknown): boolean {
  const x = asNumber(a);
  const y = asNumber(b);
  if (x !== undefined && y !== undefined) return x === y;
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((item: unknown, i) => equal(item, b[i]));
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && equal(a[k], b[k]));
  }
  return false;
}

function isTruthy(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  return Boolean(v);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

function describe(t: Template): string {
  return typeof t === 'string' ? quote(t) : (JSON.stringify(t) ?? 'undefined');
}

function quote(s: string): string {
  return JSON.stringify(s.length > MAX_QUOTED ? `${s.slice(0, MAX_QUOTED)}…` : s);
}

function resolveString(s: string, scope: TemplateScope): unknown {
  if (!s.includes(OPEN)) return s;
  const parts = parseString(s);
  const only = parts.length === 1 ? parts[0]?.ref : undefined;
  if (only) {
    // `${{ params.x }}` alone, x declared but not given: undefined, so that an optional argument can be
    // passed through (an object field holding it is then absent). Inside text it is an error.
    if (only.root === 'params' && only.path.length === 1 && scope.params[only.path[0]!] === undefined) {
      return undefined;
    }
    return lookup(only, scope);
  }
  return parts.map((part) => (part.ref ? asText(lookup(part.ref, scope)) : (part.text ?? ''))).join('');
}

function asText(v: unknown): string {
  if (v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v) ?? '';
}

/** Splits a string into literal text and references. */
function parseString(s: string): Part[] {
  const parts: Part[] = [];
  let at = 0;
  while (at < s.length) {
    const open = s.indexOf(OPEN, at);
    if (open < 0) {
      parts.push({ text: s.slice(at) });
      break;
    }
    if (open > at) parts.push({ text: s.slice(at, open) });
    const close = s.indexOf(CLOSE, open + OPEN.length);
    if (close < 0) throw malformed(s, `"${OPEN}" is not closed with "${CLOSE}"`);
    const expr = s.slice(open + OPEN.length, close).trim();
    parts.push({ ref: parseExpr(expr, s) });
    at = close + CLOSE.length;
  }
  return parts;
}

function malformed(s: string, why: string): InputError {
  return new InputError(`invalid template ${quote(s)}: ${why}`);
}

function parseExpr(expr: string, s: string): TemplateRef {
  if (expr === '') throw malformed(s, 'empty reference');
  if (expr.includes(OPEN)) throw malformed(s, `"${OPEN}" inside a reference`);
  const segments = expr.split('.');
  for (const segment of segments) {
    if (segment === '') throw malformed(s, `empty path segment in ${expr}`);
    if (FORBIDDEN_SEGMENTS.has(segment)) throw malformed(s, `${expr}: "${segment}" may not be referred to`);
    if (!SEGMENT.test(segment)) {
      throw malformed(
        s,
        `${expr}: "${segment}" is not a name (letters, digits, _ and - only; no expressions)`,
      );
    }
  }
  const [root, ...rest] = segments as [string, ...string[]];
  switch (root) {
    case 'params':
      if (rest.length === 0) throw malformed(s, 'params needs a parameter name: params.<name>');
      return { expr, root, path: rest };
    case 'run':
      if (rest.length !== 1 || !RUN_FIELDS.has(rest[0]!)) {
        throw malformed(s, `${expr}: run has only run.id and run.requestedBy`);
      }
      return { expr, root, path: rest };
    case 'steps': {
      // steps.<id>.output... or steps.<group>.<child>.output... (step ids never contain "output"/"status").
      const at = rest.findIndex((seg, i) => i > 0 && i <= 2 && (seg === 'output' || seg === 'status'));
      if (at < 0) {
        throw malformed(s, `${expr}: use steps.<id>.output[.<path>] or steps.<id>.status`);
      }
      const path = rest.slice(at);
      if (path[0] === 'status' && path.length > 1) {
        throw malformed(s, `${expr}: steps.<id>.status has no fields`);
      }
      return { expr, root, stepId: rest.slice(0, at).join('.'), path };
    }
    default:
      throw malformed(s, `unknown root "${root}" in ${expr} (use params, steps or run)`);
  }
}

function lookup(ref: TemplateRef, scope: TemplateScope): unknown {
  switch (ref.root) {
    case 'run':
      return ref.path[0] === 'id' ? scope.run.id : scope.run.requestedBy;
    case 'params': {
      const [name, ...rest] = ref.path as [string, ...string[]];
      if (!Object.hasOwn(scope.params, name) || scope.params[name] === undefined) {
        throw new MissingValueError(`${ref.expr}: parameter ${name} is not set`);
      }
      return walk(scope.params[name], rest, ref, `parameter ${name}`);
    }
    case 'steps': {
      const id = ref.stepId!;
      const state = Object.hasOwn(scope.steps, id) ? scope.steps[id] : undefined;
      if (ref.path[0] === 'status') {
        return state?.status ?? 'pending';
      }
      // A step's output is read once it finished; a check's assertions also see the values of the step
      // being judged (the engine puts them in the scope while it is still running).
      if (!state || (!FINISHED_STEP_STATUSES.includes(state.status) && state.output === undefined)) {
        throw new InputError(`${ref.expr}: step ${id} has not finished`);
      }
      const rest = ref.path.slice(1);
      if (state.output === undefined && rest.length > 0) {
        throw new MissingValueError(`${ref.expr}: step ${id} has no output (it ${state.status})`);
      }
      return walk(state.output, rest, ref, `step ${id}'s output`);
    }
  }
}

function walk(value: unknown, path: string[], ref: TemplateRef, what: string): unknown {
  let current = value;
  const walked: string[] = [];
  for (const segment of path) {
    const where = walked.length === 0 ? what : `${what}.${walked.join('.')}`;
    if (Array.isArray(current)) {
      const index = /^\d+$/.test(segment) ? Number(segment) : -1;
      if (index < 0 || index >= current.length) {
        throw new MissingValueError(
          `${ref.expr}: ${where} has no element ${segment} (a list of ${current.length})`,
        );
      }
      current = current[index];
    } else if (isPlainObject(current) && Object.hasOwn(current, segment)) {
      current = current[segment];
    } else {
      throw new MissingValueError(`${ref.expr}: ${where} has no field ${segment}`);
    }
    walked.push(segment);
  }
  return current;
}

function walkStrings(t: Template, visit: (s: string) => void): void {
  if (typeof t === 'string') visit(t);
  else if (Array.isArray(t)) for (const item of t) walkStrings(item, visit);
  else if (isPlainObject(t)) for (const value of Object.values(t)) walkStrings(value, visit);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}
