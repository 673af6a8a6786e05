import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { resolveSchedules, scheduleStatuses } from '../../schedules/index.ts';
import type { ServerContext } from '../context.ts';
import { errorSchema } from '../schemas.ts';

const occurrenceSchema = z.string().describe('ISO-8601 UTC instant of the occurrence.');

export const scheduleStatusSchema = z
  .object({
    name: z.string(),
    runbook: z.string(),
    cron: z.string().describe('Five-field cron expression, read in `timezone`.'),
    timezone: z.string().describe('IANA time zone.'),
    enabled: z.boolean(),
    origin: z
      .enum(['config', 'default'])
      .describe('`default`: the built-in daily check (runbooks.defaultSchedules).'),
    graceMs: z.number().describe('How late an occurrence missed while gameops was down may still run.'),
    next: z.array(occurrenceSchema).describe('The next occurrences (none when disabled).'),
    lastFired: z
      .object({ occurrence: occurrenceSchema, runId: z.string().optional(), recordedAt: z.string() })
      .optional(),
    lastMissed: z.object({ occurrence: occurrenceSchema, recordedAt: z.string() }).optional(),
    missedSinceLastFired: z.number().int(),
  })
  .meta({ id: 'ScheduleStatus' });

export const scheduleReportSchema = z.object({
  schedules: z.array(scheduleStatusSchema),
  historyUnavailable: z
    .string()
    .optional()
    .describe('Why lastFired/lastMissed are absent (the store could not be read).'),
});

/** `GET /api/schedules`: what `gameops schedules list --json` prints. Reading needs viewer (server/auth.ts). */
export function scheduleRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  return async (app) => {
    app.get(
      '/api/schedules',
      {
        schema: {
          summary:
            'Runbook schedules: time zone, next occurrences, and the last occurrence that fired or was missed.',
          response: { 200: scheduleReportSchema, 400: errorSchema },
        },
      },
      async () => {
        const { config, loaded, store, storeProblem, clock } = ctx.resources;
        return scheduleStatuses(resolveSchedules(config.runbooks, { configured: loaded.configured }), {
          fires: store?.scheduleFires,
          scope: { service: config.service.name, environment: config.service.environment },
          now: clock.now(),
          ...(storeProblem ? { storeProblem } : {}),
        });
      },
    );
  };
}
