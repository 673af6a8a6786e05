import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { VERSION } from '../../core/index.ts';
import type { ServerContext } from '../context.ts';

/** What this gameops instance operates, and how to configure it when it operates nothing yet. */
export function infoRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  return async (app) => {
    app.get(
      '/api',
      {
        schema: {
          summary: 'This gameops instance: version, service, configuration state, store.',
          response: {
            200: z.object({
              version: z.string(),
              service: z.string(),
              environment: z.string(),
              configured: z.boolean(),
              configFile: z.string().nullable(),
              store: z.object({ backend: z.string(), location: z.string() }),
              connections: z.object({
                mysql: z.boolean(),
                redis: z.boolean(),
                alertmanager: z.boolean(),
                prometheus: z.boolean(),
              }),
              hint: z.string().optional(),
            }),
          },
        },
      },
      () => {
        const { config, loaded, store } = ctx.resources;
        return {
          version: VERSION,
          service: config.service.name,
          environment: config.service.environment,
          configured: loaded.configured,
          configFile: loaded.file ?? null,
          store: { backend: store?.backend ?? 'none', location: store?.location ?? '' },
          connections: {
            mysql: config.mysql !== undefined,
            redis: config.redis !== undefined,
            alertmanager: config.alertmanager !== undefined,
            prometheus: config.prometheus !== undefined,
          },
          ...(loaded.configured ? {} : { hint: UNCONFIGURED_HINT }),
        };
      },
    );
  };
}

export const UNCONFIGURED_HINT =
  'No config file: gameops is running on its embedded store with no game service to check. ' +
  'Copy examples/gameops.yaml to ./gameops.yaml (or pass --config / set GAMEOPS_CONFIG) and fill in ' +
  'MySQL, Redis and Alertmanager; `gameops config check` validates it.';
