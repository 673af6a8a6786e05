import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { NotFoundError } from '../../core/index.ts';
import { runAndRecordDailyCheck } from '../../app/index.ts';
import { checkRunOutcomeSchema, checkRunSchema, checksQuerySchema, errorSchema } from '../schemas.ts';

type CheckRunOutcome = z.output<typeof checkRunOutcomeSchema>;
import type { ServerContext } from '../context.ts';

/** The daily check over HTTP: run now, latest, history. */
export function checkRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  // Single flight: concurrent POSTs share one run instead of stampeding the game's databases.
  let inFlight: Promise<CheckRunOutcome> | undefined;
  const runNow = (): Promise<CheckRunOutcome> => {
    inFlight ??= ctx
      .track(runAndRecordDailyCheck(ctx.resources, 'api', { signal: ctx.shutdownSignal }))
      .then(({ run, recorded, warning }) => ({ ...run, recorded, ...(warning ? { warning } : {}) }))
      .finally(() => {
        inFlight = undefined;
      });
    return inFlight;
  };

  return async (app) => {
    app.post(
      '/api/checks/daily',
      {
        schema: {
          summary: 'Run the daily health check now and return its result (recorded in the store).',
          response: { 200: checkRunOutcomeSchema, 403: errorSchema, 503: errorSchema },
        },
      },
      () => runNow(),
    );

    app.get(
      '/api/checks/latest',
      {
        schema: {
          summary: 'The most recent daily-check run of this service and environment.',
          response: { 200: checkRunSchema, 404: errorSchema },
        },
      },
      async () => {
        const run = await ctx.store().checkRuns.latest('daily', scopeOf(ctx));
        if (!run)
          throw new NotFoundError('no daily check has been recorded yet; POST /api/checks/daily runs one');
        return run;
      },
    );

    app.get(
      '/api/checks',
      {
        schema: {
          summary: 'Daily-check runs of this service and environment, newest first.',
          querystring: checksQuerySchema,
          response: { 200: z.object({ runs: z.array(checkRunSchema) }), 400: errorSchema },
        },
      },
      async (request) => {
        const { since, until, limit } = request.query;
        const runs = await ctx.store().checkRuns.list({
          ...scopeOf(ctx),
          limit,
          ...(since ? { since: new Date(since) } : {}),
          ...(until ? { until: new Date(until) } : {}),
        });
        return { runs };
      },
    );

    app.get(
      '/api/checks/:id',
      {
        schema: {
          summary: 'One daily-check run by id.',
          params: z.object({ id: z.uuid({ error: 'must be a run id (UUID)' }) }),
          response: { 200: checkRunSchema, 400: errorSchema, 404: errorSchema },
        },
      },
      async (request) => {
        const run = await ctx.store().checkRuns.get(request.params.id);
        if (!run) throw new NotFoundError(`no check run with id ${request.params.id}`);
        return run;
      },
    );
  };
}

/** This instance's service and environment: instances sharing a PostgreSQL store see their own runs. */
function scopeOf(ctx: ServerContext): { service: string; environment: string } {
  const { service } = ctx.resources.config;
  return { service: service.name, environment: service.environment };
}
