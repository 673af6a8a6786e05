import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { errorMessage } from '../../core/index.ts';
import type { ServerContext } from '../context.ts';

/** Liveness, readiness and gameops's own Prometheus metrics. */
export function healthRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  return async (app) => {
    app.get(
      '/healthz',
      {
        schema: {
          summary: 'Liveness: the process is up.',
          response: { 200: z.object({ status: z.literal('ok') }) },
        },
      },
      () => ({ status: 'ok' as const }),
    );

    app.get(
      '/readyz',
      {
        schema: {
          summary: 'Readiness: the store answers and the server is not shutting down.',
          response: {
            200: z.object({ status: z.literal('ready') }),
            503: z.object({ status: z.literal('not ready'), reason: z.string() }),
          },
        },
      },
      async (_request, reply) => {
        if (ctx.shuttingDown()) return reply.code(503).send({ status: 'not ready', reason: 'shutting down' });
        try {
          await ctx.resources.store?.ping();
          return { status: 'ready' as const };
        } catch (err) {
          return reply.code(503).send({ status: 'not ready', reason: `store: ${errorMessage(err)}` });
        }
      },
    );

    app.get(
      '/metrics',
      { schema: { summary: "gameops's own metrics (Prometheus text format).", hide: false } },
      async (_request, reply) => {
        const metrics = ctx.resources.metrics;
        if (!metrics) return reply.code(404).send('metrics are not enabled\n');
        return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
      },
    );
  };
}
