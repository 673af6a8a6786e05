/**
 * The runbook as written: one zod schema shared by YAML files and TypeScript built-ins, before
 * compile.ts turns it into the model's `Runbook` (flat steps with explicit dependencies and defaults).
 *
 * A step's kind is the kind key it holds: `action`, `check` (or `assert` alone), `approval`, `manual`,
 * `wait`, `notify`, `runbook` or `parallel`. Unknown keys are refused everywhere. YAML parameters are a
 * small typed spec (see `paramSpecSchema`); TypeScript built-ins pass a zod object instead.
 */
import { z } from 'zod';
import { durationSchema, ErrorCode } from '../core/index.ts';
import { ROLES } from './model.ts';

/** The keys that decide a step's kind, in the order of `stepKindSchemas`. */
export const STEP_KIND_KEYS = [
  'action',
  'check',
  'approval',
  'manual',
  'wait',
  'notify',
  'runbook',
  'parallel',
] as const;
export type StepKindKey = (typeof STEP_KIND_KEYS)[number];

const NAME_RE = /^[a-z0-9][a-z0-9-]*$/;
const STEP_ID_RE = /^[a-z0-9][a-z0-9_-]*$/;
const PARAM_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const OPERATION_RE = /^[a-z][a-zA-Z0-9_-]*(\.[a-z][a-zA-Z0-9_-]*)*$/;
/** Ids a parallel group and its children cannot have: `steps.<group>.<child>.output` would be ambiguous. */
const RESERVED_STEP_IDS = new Set(['output', 'status']);

const roleSchema = z.enum(ROLES);
const duration = durationSchema;

/** A runbook name: `high-cpu`. */
export const runbookNameSchema = z
  .string()
  .max(64)
  .regex(NAME_RE, 'use lower-case letters, digits and -, starting with a letter or digit');

const stepIdSchema = z
  .string()
  .max(64)
  .regex(STEP_ID_RE, 'step ids are lower-case letters, digits, _ and -, starting with a letter or digit');

const operationSchema = z
  .string()
  .max(100)
  .regex(OPERATION_RE, 'an action or check name such as fleet.scale');

/** Free-form arguments: any JSON, in which strings may hold `${{ }}` references. */
const argsSchema = z
  .record(z.string(), z.unknown())
  .describe('Arguments; strings may hold ${{ params.x }}, ${{ steps.<id>.output.x }} references.');

const compareOpSchema = z.enum(['eq', 'ne', 'lt', 'le', 'gt', 'ge', 'in', 'notIn', 'exists', 'truthy']);

const hasValue = (c: { value?: unknown }) => c.value !== undefined;
const conditionSchema = z
  .strictObject({
    value: z.unknown().describe('A value or ${{ }} reference.'),
    op: compareOpSchema,
    to: z.unknown().optional().describe('What value is compared with (not for exists, truthy).'),
  })
  .refine(hasValue, { message: 'value is required', path: ['value'] })
  .meta({ id: 'condition' });

const assertionSchema = z
  .strictObject({
    value: z.unknown(),
    op: compareOpSchema,
    to: z.unknown().optional(),
    status: z.enum(['warn', 'fail']).optional().describe('What the step is when this does not hold (fail).'),
    message: z.string().min(1).max(500).describe('Shown when the assertion does not hold.'),
  })
  .refine(hasValue, { message: 'value is required', path: ['value'] })
  .meta({ id: 'assertion' });

const retrySchema = z
  .strictObject({
    attempts: z.number().int().min(1).max(100).describe('Total attempts including the first.'),
    delay: duration.optional().describe('Delay before the second attempt (1s).'),
    factor: z.number().min(1).max(10).optional().describe('Each delay is the previous times this (2).'),
    maxDelay: duration.optional().describe('Longest delay between attempts (5m).'),
    nonRetryable: z
      .array(z.enum(Object.values(ErrorCode)))
      .optional()
      .describe('Error codes never retried (input, not_allowed).'),
  })
  .meta({ id: 'retry' });

const commonFields = {
  id: stepIdSchema,
  title: z.string().min(1).max(200).optional(),
  needs: z
    .array(z.string().min(1).max(130))
    .optional()
    .describe('Steps that must finish first (default: the previous step in the list).'),
  when: conditionSchema.optional().describe('Run only when this holds; otherwise the step is skipped.'),
  timeout: duration.optional(),
  retry: retrySchema.optional(),
  onFailure: z
    .enum(['abort', 'continue', 'compensate'])
    .optional()
    .describe('abort (default), continue, compensate'),
};

const actionStep = z
  .strictObject({
    ...commonFields,
    action: operationSchema.describe('A registered action, e.g. fleet.scale.'),
    args: argsSchema.optional(),
    compensate: z
      .strictObject({ action: operationSchema, args: argsSchema.optional() })
      .optional()
      .describe('Puts things back when the run fails with onFailure compensate.'),
  })
  .meta({ id: 'actionStep' });

const checkStep = z
  .strictObject({
    ...commonFields,
    check: operationSchema.optional().describe('A registered check; without one only assert is evaluated.'),
    args: argsSchema.optional(),
    assert: z.array(assertionSchema).optional(),
  })
  .refine((s) => s.check !== undefined || s.assert !== undefined, {
    message: 'a check step needs check or assert',
    path: ['check'],
  })
  .meta({ id: 'checkStep' });

const approvalStep = z
  .strictObject({
    ...commonFields,
    approval: z.strictObject({
      covers: z.array(z.string().min(1)).min(1).describe('The action steps this approval allows.'),
      approvers: z.array(roleSchema).min(1).optional().describe('Roles that may approve (operator).'),
      fourEyes: z.boolean().optional().describe('The approver must not be the requester (false).'),
      expiresIn: duration.optional().describe('How long the request and the approval stay valid (30m).'),
      message: z.string().min(1).max(2000).optional(),
    }),
  })
  .meta({ id: 'approvalStep' });

const manualStep = z
  .strictObject({
    ...commonFields,
    manual: z.union([
      z.string().min(1).max(5000),
      z.strictObject({
        instructions: z.string().min(1).max(5000),
        evidence: z.enum(['none', 'optional', 'required']).optional(),
      }),
    ]),
  })
  .meta({ id: 'manualStep' });

const untilSchema = z
  .strictObject({
    check: operationSchema.optional(),
    args: argsSchema.optional(),
    assert: z.array(assertionSchema).min(1),
  })
  .describe('Poll until every assertion holds.');

const waitStep = z
  .strictObject({
    ...commonFields,
    wait: z.union([
      duration.describe('A fixed delay, e.g. 30s.'),
      z
        .strictObject({
          for: duration.optional().describe('A fixed delay.'),
          until: untilSchema.optional(),
          interval: duration.optional().describe('How often until is polled (5s).'),
        })
        .refine((w) => (w.for === undefined) !== (w.until === undefined), {
          message: 'a wait needs exactly one of for and until',
        }),
    ]),
  })
  .meta({ id: 'waitStep' });

const notifyStep = z
  .strictObject({
    ...commonFields,
    notify: z.union([
      z.string().min(1).max(5000),
      z.strictObject({
        channel: z.string().min(1).optional(),
        message: z.string().min(1).max(5000),
      }),
    ]),
  })
  .meta({ id: 'notifyStep' });

const runbookStep = z
  .strictObject({
    ...commonFields,
    runbook: runbookNameSchema.describe('Another runbook, run as a child run.'),
    params: argsSchema.optional(),
  })
  .meta({ id: 'runbookStep' });

/** Every kind but parallel: what a parallel group may hold. Same order as STEP_KIND_KEYS. */
const childStepSchema = z.union([
  actionStep,
  checkStep,
  approvalStep,
  manualStep,
  waitStep,
  notifyStep,
  runbookStep,
]);

const parallelFields = {
  ...commonFields,
  parallel: z.array(childStepSchema).min(1).max(100).describe('Steps that run at the same time.'),
};
const parallelStep = z.strictObject(parallelFields);
/** A parallel group whose children are checked one by one (see parseRunbookInput). */
const parallelHead = z.strictObject({ ...parallelFields, parallel: z.array(z.unknown()).min(1).max(100) });

/** The schema of each kind but parallel. */
const STEP_SCHEMAS = {
  action: actionStep,
  check: checkStep,
  approval: approvalStep,
  manual: manualStep,
  wait: waitStep,
  notify: notifyStep,
  runbook: runbookStep,
} as const;

/** A step as written. Its kind is the kind key it holds. */
export const stepInputSchema = z.union([
  actionStep,
  checkStep,
  approvalStep,
  manualStep,
  waitStep,
  notifyStep,
  runbookStep,
  parallelStep,
]);

const PARAM_TYPES = ['string', 'integer', 'number', 'boolean', 'array'] as const;

const itemSpecSchema = z
  .strictObject({
    type: z.enum(['string', 'integer', 'number', 'boolean']),
    enum: z
      .array(z.union([z.string(), z.number()]))
      .min(1)
      .optional(),
    minimum: z.number().optional(),
    maximum: z.number().optional(),
    pattern: z.string().optional(),
    maxLength: z.number().int().min(0).optional(),
  })
  .meta({ id: 'paramItemSpec' });

/** A YAML parameter: a small typed spec, compiled to zod by `paramsFromSpec`. */
export const paramSpecSchema = z.strictObject({
  type: z.enum(PARAM_TYPES),
  description: z.string().max(1000).optional(),
  default: z.unknown().optional(),
  required: z.boolean().optional().describe('Must be given (false; a parameter with a default never is).'),
  enum: z
    .array(z.union([z.string(), z.number()]))
    .min(1)
    .optional(),
  minimum: z.number().optional().describe('integer, number: smallest allowed.'),
  maximum: z.number().optional().describe('integer, number: largest allowed.'),
  pattern: z.string().optional().describe('string: a regular expression the whole value must match.'),
  maxLength: z.number().int().min(0).optional().describe('string: longest; array: most items.'),
  items: itemSpecSchema.optional().describe('array: what each item is (string).'),
});
export type ParamSpec = z.infer<typeof paramSpecSchema>;

const paramSpecsSchema = z
  .record(z.string().regex(PARAM_NAME_RE, 'parameter names are letters, digits and _'), paramSpecSchema)
  .refine((r) => Object.keys(r).length <= 100, 'at most 100 parameters');

const zodObjectSchema = z.custom<z.ZodObject>((v) => v instanceof z.ZodObject, {
  message: 'params must be a map of parameter specs (or, in TypeScript, a zod object)',
});

function runbookSchema<P extends z.ZodType, S extends z.ZodType>(params: P, step: S) {
  return z.strictObject({
    name: runbookNameSchema,
    version: z
      .union([z.string().min(1).max(64), z.number()])
      .optional()
      .describe('Version of this definition ("1").'),
    title: z.string().min(1).max(200).optional(),
    description: z.string().max(10_000).optional(),
    runBy: z.array(roleSchema).optional().describe('Roles that may start it; empty or absent: admin only.'),
    timeout: duration.optional().describe('Deadline of a whole run.'),
    tags: z.array(z.string().min(1).max(64)).max(50).optional(),
    params: params.optional(),
    steps: z.array(step).min(1).max(1000),
  });
}

/** A runbook as written, YAML or TypeScript. */
export const runbookInputSchema = runbookSchema(
  z.union([paramSpecsSchema, zodObjectSchema]),
  stepInputSchema,
);

/** The same with steps left for parseRunbookInput to check one by one, by their kind. */
const runbookHeadSchema = runbookSchema(z.unknown(), z.unknown());

/** A runbook as written in YAML (parameters are specs): the source of docs/runbook.schema.json. */
export const yamlRunbookSchema = runbookSchema(paramSpecsSchema, stepInputSchema);

/** What a runbook author writes (TypeScript built-ins: `params` may be a zod object). */
export type RunbookInput = z.input<typeof runbookInputSchema>;
/** A runbook input after validation (durations in milliseconds). */
export type ParsedRunbook = z.output<typeof runbookInputSchema>;
export type StepInput = z.output<typeof stepInputSchema>;
export type ChildStepInput = z.output<typeof childStepSchema>;

/** The JSON Schema of a YAML runbook, for editors (docs/runbook.schema.json). */
export function runbookJsonSchema(): Record<string, unknown> {
  return {
    title: 'gameops runbook',
    ...z.toJSONSchema(yamlRunbookSchema, {
      io: 'input',
      unrepresentable: 'any',
      target: 'draft-2020-12',
    }),
  };
}

type Path = Array<string | number>;

/** A problem of a runbook as written: where (a path in the input) and what. */
export interface InputProblem {
  path: Path;
  message: string;
}

/**
 * Validates a runbook as written. Each step is checked against the schema of the kind it holds (a union
 * of all kinds would explain a mistake in terms of whichever kind zod tried), unknown keys are reported
 * one by one at the key, and a union of forms (`manual: text` or a mapping) by the form given.
 */
export function parseRunbookInput(
  raw: unknown,
): { success: true; data: ParsedRunbook } | { success: false; problems: InputProblem[] } {
  const problems: InputProblem[] = [];
  const head = runbookHeadSchema.safeParse(raw);
  if (!head.success) problems.push(...explainIssues(head.error.issues, raw, []));
  const rawParams = (raw as { params?: unknown } | null)?.params;
  let params: ParsedRunbook['params'];
  if (rawParams instanceof z.ZodObject) {
    params = rawParams;
  } else if (rawParams !== undefined) {
    const specs = paramSpecsSchema.safeParse(rawParams);
    if (specs.success) params = specs.data;
    else problems.push(...explainIssues(specs.error.issues, raw, [], ['params']));
  }
  const rawSteps = (raw as { steps?: unknown } | null)?.steps;
  const steps: StepInput[] = [];
  if (Array.isArray(rawSteps)) {
    rawSteps.forEach((step: unknown, i) => {
      const parsed = parseStep(step, ['steps', i], true, problems);
      if (parsed) steps.push(parsed);
    });
  }
  if (problems.length > 0 || !head.success) return { success: false, problems };
  const { params: _params, ...rest } = head.data;
  return { success: true, data: { ...rest, ...(params === undefined ? {} : { params }), steps } };
}

function parseStep(raw: unknown, path: Path, top: boolean, problems: InputProblem[]): StepInput | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    problems.push({
      path,
      message: `a step must be a mapping with an id and one of ${STEP_KIND_KEYS.join(', ')}`,
    });
    return undefined;
  }
  const kinds = stepKindKeys(raw);
  if (kinds.length === 0) {
    problems.push({ path, message: `a step needs one of ${STEP_KIND_KEYS.join(', ')} (or assert)` });
    return undefined;
  }
  if (kinds.length > 1) {
    problems.push({ path, message: `a step has one kind; this one has ${kinds.join(' and ')}` });
    return undefined;
  }
  const kind = kinds[0]!;
  const id = (raw as { id?: unknown }).id;
  if ((kind === 'parallel' || !top) && typeof id === 'string' && RESERVED_STEP_IDS.has(id)) {
    problems.push({
      path: [...path, 'id'],
      message: `"${id}" cannot name a parallel group or a step in one (steps.<group>.<step>.output would be ambiguous)`,
    });
  }
  if (kind !== 'parallel') {
    const result = STEP_SCHEMAS[kind].safeParse(raw);
    if (result.success) return result.data;
    problems.push(...explainIssues(result.error.issues, raw, [], path));
    return undefined;
  }
  if (!top) {
    problems.push({ path: [...path, 'parallel'], message: 'parallel groups cannot be nested' });
    return undefined;
  }
  const group = parallelHead.safeParse(raw);
  if (!group.success) problems.push(...explainIssues(group.error.issues, raw, [], path));
  const rawChildren = (raw as { parallel?: unknown }).parallel;
  const children: ChildStepInput[] = [];
  const groupWhen = (raw as { when?: unknown }).when !== undefined;
  if (Array.isArray(rawChildren)) {
    rawChildren.forEach((child: unknown, j) => {
      if (groupWhen && typeof child === 'object' && child !== null && Object.hasOwn(child, 'when')) {
        problems.push({
          path: [...path, 'parallel', j, 'when'],
          message:
            'the group has a when, which applies to each of its steps; a step in it cannot have its own',
        });
      }
      const parsed = parseStep(child, [...path, 'parallel', j], false, problems);
      if (parsed && !('parallel' in parsed)) children.push(parsed);
    });
  }
  return group.success ? { ...group.data, parallel: children } : undefined;
}

/**
 * Zod issues as problems: unknown keys one by one at the key; a union of forms explained by the option
 * that fits the value's type (or "expected string or object").
 */
function explainIssues(
  issues: readonly z.core.$ZodIssue[],
  raw: unknown,
  base: Path,
  prefix: Path = [],
): InputProblem[] {
  const out: InputProblem[] = [];
  for (const issue of issues) {
    const path = [...base, ...issue.path.map((p) => (typeof p === 'number' ? p : String(p)))];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys)
        out.push({ path: [...prefix, ...path, key], message: `unknown key "${key}"` });
    } else if (issue.code === 'invalid_key') {
      out.push({ path: [...prefix, ...path], message: issue.issues[0]?.message ?? issue.message });
    } else if (issue.code === 'invalid_union') {
      const fitting = issue.errors.filter(
        (errs) => !errs.some((e) => e.path.length === 0 && e.code === 'invalid_type'),
      );
      if (fitting.length === 1) {
        out.push(...explainIssues(fitting[0]!, raw, path, prefix));
      } else {
        const expected = issue.errors.flatMap((errs) =>
          errs
            .filter((e) => e.path.length === 0 && e.code === 'invalid_type')
            .map((e) => (e as { expected?: string }).expected ?? 'value'),
        );
        out.push({
          path: [...prefix, ...path],
          message: expected.length > 0 ? `expected ${[...new Set(expected)].join(' or ')}` : issue.message,
        });
      }
    } else {
      out.push({ path: [...prefix, ...path], message: issue.message });
    }
  }
  return out;
}

/**
 * The kind keys a raw step holds (`assert` alone counts as check), to choose which step schema explains
 * its problems.
 */
export function stepKindKeys(raw: unknown): StepKindKey[] {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return [];
  const keys = STEP_KIND_KEYS.filter((k) => Object.hasOwn(raw, k));
  if (keys.length === 0 && Object.hasOwn(raw, 'assert')) return ['check'];
  return keys;
}

/**
 * Compiles YAML parameter specs into a strict zod object (unknown parameters refused; errors name the
 * field).
 * @returns the schema, or the problems of the specs, each with its path under `params`.
 */
export function paramsFromSpec(
  specs: Record<string, ParamSpec>,
): { schema: z.ZodObject } | { problems: Array<{ path: Array<string | number>; message: string }> } {
  const problems: Array<{ path: Array<string | number>; message: string }> = [];
  const shape: Record<string, z.ZodType> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const fail = (message: string, ...sub: Array<string | number>) =>
      problems.push({ path: [name, ...sub], message });
    let schema = paramSchema(spec, (message, ...sub) => fail(message, ...sub));
    if (spec.items !== undefined && spec.type !== 'array') fail('items is only for arrays', 'items');
    if (spec.description) schema = schema.describe(spec.description);
    if (spec.default !== undefined) {
      const checked = schema.safeParse(spec.default);
      if (!checked.success) {
        fail(`default does not fit the parameter: ${issueText(checked.error.issues)}`, 'default');
      } else {
        schema = schema.default(checked.data as never);
      }
    } else if (spec.required !== true) {
      schema = schema.optional();
    }
    shape[name] = schema;
  }
  if (problems.length > 0) return { problems };
  return { schema: z.strictObject(shape) };
}

type Fail = (message: string, ...sub: Array<string | number>) => void;

function paramSchema(spec: ParamSpec | z.infer<typeof itemSpecSchema>, fail: Fail): z.ZodType {
  const { type } = spec;
  const numeric = type === 'integer' || type === 'number';
  if (!numeric && (spec.minimum !== undefined || spec.maximum !== undefined)) {
    fail(
      `minimum and maximum are for integer and number, not ${type}`,
      spec.minimum !== undefined ? 'minimum' : 'maximum',
    );
  }
  if (type !== 'string' && spec.pattern !== undefined) fail(`pattern is for strings, not ${type}`, 'pattern');
  if (type !== 'string' && type !== 'array' && spec.maxLength !== undefined) {
    fail(`maxLength is for strings and arrays, not ${type}`, 'maxLength');
  }
  if (spec.enum !== undefined) {
    if (!numeric && type !== 'string') {
      fail(
        `enum is for strings and numbers, not ${type}${type === 'array' ? ' (put it in items)' : ''}`,
        'enum',
      );
    } else {
      const wrong = spec.enum.findIndex((v) =>
        type === 'string'
          ? typeof v !== 'string'
          : typeof v !== 'number' || (type === 'integer' && !Number.isInteger(v)),
      );
      if (wrong >= 0) fail(`enum values must be of type ${type}`, 'enum', wrong);
    }
  }
  switch (type) {
    case 'string': {
      if (spec.enum !== undefined) return z.enum(spec.enum.map(String) as [string, ...string[]]);
      let s = z.string();
      if (spec.maxLength !== undefined) s = s.max(spec.maxLength);
      if (spec.pattern !== undefined) {
        try {
          const re = new RegExp(`^(?:${spec.pattern})$`, 'u');
          s = s.regex(re, `must match ${spec.pattern}`);
        } catch (err) {
          fail(`not a valid regular expression: ${(err as Error).message}`, 'pattern');
        }
      }
      return s;
    }
    case 'integer':
    case 'number': {
      if (spec.enum !== undefined) {
        return z.literal(spec.enum.filter((v): v is number => typeof v === 'number'));
      }
      let n = type === 'integer' ? z.number().int() : z.number();
      if (spec.minimum !== undefined) n = n.min(spec.minimum);
      if (spec.maximum !== undefined) n = n.max(spec.maximum);
      if (spec.minimum !== undefined && spec.maximum !== undefined && spec.minimum > spec.maximum) {
        fail(`minimum ${spec.minimum} is larger than maximum ${spec.maximum}`, 'minimum');
      }
      return n;
    }
    case 'boolean':
      return z.boolean();
    case 'array': {
      const items =
        'items' in spec && spec.items
          ? paramSchema(spec.items, (m, ...sub) => fail(m, 'items', ...sub))
          : z.string();
      let a = z.array(items);
      if (spec.maxLength !== undefined) a = a.max(spec.maxLength);
      return a;
    }
  }
}

/** One line for a list of zod issues: `field: message; field: message`. */
export function issueText(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .map((issue) => {
      const field = pathText(issue.path);
      return field ? `${field}: ${issue.message}` : issue.message;
    })
    .join('; ');
}

/** `steps[3].args.replicas` for `['steps', 3, 'args', 'replicas']`. */
export function pathText(path: ReadonlyArray<PropertyKey>): string {
  return path
    .map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`))
    .join('')
    .replace(/^\./, '');
}
