import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { invalidRunbooks, openRunbooks } from '../../app/index.ts';
import { ROLES, type RunService } from '../../runbooks/model.ts';
import type { ServerContext } from '../context.ts';
import { errorSchema } from '../schemas.ts';
import { actorOf } from '../auth.ts';

/*
 * Schemas of the runbook API. They validate what comes in and document (OpenAPI) what goes out; the JSON
 * that `gameops runbooks … --json` and `gameops run --dry-run --json` print has the same shapes.
 */

export const roleSchema = z.enum(ROLES);
export const stepKindSchema = z.enum([
  'action',
  'check',
  'approval',
  'manual',
  'wait',
  'notify',
  'runbook',
  'group',
]);
export const effectSchema = z.enum(['read-only', 'mutating', 'destructive']);

/** A runbook name as it may appear in a path or a body (unknown names are a 404 naming them). */
export const runbookNameSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'a runbook name: letters, digits, "-", "_" and "."');

/** Parameters of a run: validated against the runbook's own schema by the engine (errors name the field). */
export const paramsSchema = z
  .record(z.string(), z.unknown())
  .describe("The runbook's parameters (see its paramsJsonSchema); secrets are masked in every answer.");

const approvalRuleFields = {
  covers: z.array(z.string()).optional().describe('Approval steps: the steps the approval allows.'),
  approvers: z.array(roleSchema).optional().describe('Approval steps: roles that may approve (or higher).'),
  fourEyes: z.boolean().optional().describe('Approval steps: the approver must not be the requester.'),
  expiresInMs: z.number().optional(),
};

export const runbookInfoSchema = z
  .object({
    name: z.string(),
    version: z.string(),
    title: z.string(),
    description: z.string(),
    source: z.union([
      z.object({ kind: z.literal('builtin') }),
      z.object({ kind: z.literal('file'), path: z.string() }),
    ]),
    paramsJsonSchema: z.record(z.string(), z.unknown()).describe('JSON Schema of the parameters.'),
    runBy: z.array(roleSchema).describe('Roles that may start it (or higher); empty: admin only.'),
    tags: z.array(z.string()),
    steps: z.array(
      z.object({
        id: z.string(),
        kind: stepKindSchema,
        title: z.string(),
        action: z.string().optional(),
        effect: effectSchema.optional(),
        needs: z.array(z.string()).optional(),
        ...approvalRuleFields,
      }),
    ),
  })
  .meta({ id: 'Runbook' });

const approvalRuleSchema = z.object({
  covers: z.array(z.string()),
  approvers: z.array(roleSchema),
  fourEyes: z.boolean(),
  expiresInMs: z.number(),
});

export const plannedStepSchema = z
  .object({
    id: z.string(),
    kind: stepKindSchema,
    title: z.string(),
    action: z.string().optional(),
    effect: effectSchema.optional(),
    idempotent: z.boolean().optional(),
    target: z.string().optional().describe('The exact thing acted on; absent while it depends on outputs.'),
    args: z.unknown().optional().describe('Resolved arguments (secrets masked).'),
    pending: z.string().optional().describe('Why args are not resolved yet, e.g. "uses steps.rank.output".'),
    approvedBy: z.string().optional().describe('The approval step that must allow it.'),
    compensation: z
      .object({ action: z.string(), target: z.string().optional(), args: z.unknown().optional() })
      .optional(),
    skip: z.boolean().optional().describe('Its condition is known to be false: it would be skipped.'),
    needs: z.array(z.string()),
    approval: approvalRuleSchema.optional(),
  })
  .meta({ id: 'PlannedStep' });

export const planSchema = z
  .object({
    runbook: z.string(),
    version: z.string(),
    hash: z.string().describe('sha256 of the compiled definition.'),
    params: z.record(z.string(), z.unknown()),
    steps: z.array(plannedStepSchema),
  })
  .meta({ id: 'Plan' });

const invalidRunbookSchema = z
  .object({
    file: z.string().describe('The file in runbooks.dir.'),
    name: z.string().optional().describe("Its runbook's name, when it has one."),
    problems: z.array(
      z.object({
        line: z.number().int().optional(),
        field: z.string(),
        stepId: z.string().optional(),
        message: z.string(),
        text: z.string().describe('The problem as one line: file:line: field: message.'),
      }),
    ),
  })
  .meta({ id: 'InvalidRunbook' });

/** The runbooks over HTTP: list, one, and dry-run plans. */
export function runbookRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  const service = (): Promise<RunService> => openRunbooks(ctx.resources);
  return async (app) => {
    app.get(
      '/api/runbooks',
      {
        schema: {
          summary:
            'Every runbook: the built-in ones and those in runbooks.dir; `invalid` lists the files of ' +
            'runbooks.dir that were set aside, with each problem as file:line.',
          response: {
            200: z.object({
              runbooks: z.array(runbookInfoSchema),
              invalid: z.array(invalidRunbookSchema),
            }),
            401: errorSchema,
            403: errorSchema,
            503: errorSchema,
          },
        },
      },
      async (request) => ({
        runbooks: await (await service()).runbooks(actorOf(request)),
        invalid: await invalidRunbooks(ctx.resources),
      }),
    );

    app.get(
      '/api/runbooks/:name',
      {
        schema: {
          summary: 'One runbook: its parameters (JSON Schema), steps, who may run it.',
          params: z.object({ name: runbookNameSchema }),
          response: {
            200: runbookInfoSchema,
            400: errorSchema,
            401: errorSchema,
            403: errorSchema,
            404: errorSchema,
          },
        },
      },
      async (request) => (await service()).runbook(request.params.name, actorOf(request)),
    );

    app.post(
      '/api/runbooks/:name/plan',
      {
        schema: {
          summary:
            'Dry-run: the resolved plan (every action with its exact target and arguments, which steps need ' +
            'approval, what would be compensated). Nothing runs.',
          params: z.object({ name: runbookNameSchema }),
          body: z.strictObject({ params: paramsSchema.default({}) }).nullish(),
          response: {
            200: planSchema,
            400: errorSchema,
            401: errorSchema,
            403: errorSchema,
            404: errorSchema,
          },
        },
      },
      async (request) =>
        (await service()).plan(
          { runbook: request.params.name, params: request.body?.params ?? {} },
          actorOf(request),
        ),
    );
  };
}
