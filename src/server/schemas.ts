import { z } from 'zod';
import { CHECK_NAMES } from '../checks/index.ts';

/** API shapes. They document the JSON that `gameops check daily --json` prints, too. */
export const checkStatusSchema = z.enum(['ok', 'warn', 'fail', 'error', 'skipped']);

export const findingSchema = z.object({
  status: checkStatusSchema,
  subject: z.string(),
  message: z.string(),
  value: z.union([z.number(), z.string()]).optional(),
  threshold: z.number().optional(),
});

export const checkResultSchema = z.object({
  name: z.enum(CHECK_NAMES),
  status: checkStatusSchema,
  summary: z.string(),
  durationMs: z.number(),
  values: z.record(z.string(), z.unknown()),
  findings: z.array(findingSchema),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});

export const checkRunSchema = z
  .object({
    id: z.string(),
    kind: z.literal('daily'),
    service: z.string(),
    environment: z.string(),
    trigger: z.enum(['cli', 'api', 'schedule']),
    status: checkStatusSchema,
    startedAt: z.string(),
    finishedAt: z.string(),
    durationMs: z.number(),
    results: z.array(checkResultSchema),
  })
  .meta({ id: 'CheckRun' });

export const errorSchema = z
  .object({
    error: z.object({
      code: z.string(),
      message: z.string(),
      details: z.record(z.string(), z.unknown()).optional(),
    }),
  })
  .meta({ id: 'Error' });

export const checksQuerySchema = z.strictObject({
  since: z.iso
    .datetime({ offset: true, error: 'must be an ISO-8601 date-time, e.g. 2026-11-26T00:00:00Z' })
    .optional()
    .describe('Only runs started at or after this time.'),
  until: z.iso.datetime({ offset: true, error: 'must be an ISO-8601 date-time' }).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
});

/** What POST /api/checks/daily returns: the run, and whether it reached the store. */
export const checkRunOutcomeSchema = checkRunSchema
  .extend({
    recorded: z
      .boolean()
      .describe('false when the run could not be stored (see warning); its figures are still valid'),
    warning: z.string().optional(),
  })
  .meta({ id: 'CheckRunOutcome' });
