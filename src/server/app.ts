import Fastify, { type FastifyInstance } from 'fastify';
import fastifySwagger from '@fastify/swagger';
import {
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import { VERSION } from '../core/index.ts';
import type { Resources } from '../app/index.ts';
import { createServerContext, type ServerContext } from './context.ts';
import { errorHandler } from './errors.ts';
import { installAuth } from './auth.ts';
import { guardOrigin } from './origin.ts';
import { alertRoutes } from './routes/alerts.ts';
import { auditRoutes } from './routes/audit.ts';
import { backupRoutes } from './routes/backups.ts';
import { maintenanceRoutes } from './routes/maintenance.ts';
import { checkRoutes } from './routes/checks.ts';
import { fleetRoutes } from './routes/fleet.ts';
import { healthRoutes } from './routes/health.ts';
import { incidentRoutes } from './routes/incidents.ts';
import { infoRoutes } from './routes/info.ts';
import { oncallRoutes } from './routes/oncall.ts';
import { scheduleRoutes } from './routes/schedules.ts';
import { runbookRoutes } from './routes/runbooks.ts';
import { runRoutes } from './routes/runs.ts';
import { tokenRoutes } from './routes/tokens.ts';

export interface GameopsServer {
  app: FastifyInstance;
  context: ServerContext;
  /** Stops taking requests, waits for in-flight work (bounded by `graceMs`), then closes. */
  close(graceMs?: number): Promise<void>;
}

/** Builds the HTTP API over a resources bag. Does not listen; the caller decides where. */
export async function buildServer(resources: Resources): Promise<GameopsServer> {
  const context = createServerContext(resources);
  const app = Fastify({
    logger: false,
    bodyLimit: 1024 * 1024,
    requestTimeout: 120_000,
    return503OnClosing: true,
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler(errorHandler(resources.log));
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({
      error: { code: 'not_found', message: `no route ${request.method} ${request.url.split('?')[0]}` },
    }),
  );
  app.addHook('onRequest', async (request) => guardOrigin(request, resources.config.server.host));
  // Every route but probes, /metrics and the API description needs a token (src/server/auth.ts).
  installAuth(app, context, { clock: resources.clock });
  // While shutting down, every response closes its connection, so keep-alive clients do not hold the
  // server open after their last in-flight request is answered.
  app.addHook('onSend', async (_request, reply) => {
    if (context.shuttingDown()) void reply.header('connection', 'close');
  });
  app.addHook('onResponse', (request, reply, done) => {
    resources.metrics?.observeHttp(
      request.method,
      request.routeOptions.url ?? 'unmatched',
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
    done();
  });

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'gameops API', version: VERSION, description: 'Operations for online game services.' },
    },
    transform: jsonSchemaTransform,
  });
  await app.register(healthRoutes(context));
  await app.register(infoRoutes(context));
  await app.register(checkRoutes(context));
  await app.register(fleetRoutes(context));
  await app.register(scheduleRoutes(context));
  await app.register(runbookRoutes(context));
  await app.register(runRoutes(context));
  await app.register(auditRoutes(context));
  await app.register(tokenRoutes(context));
  await app.register(incidentRoutes(context));
  await app.register(oncallRoutes(context));
  await app.register(alertRoutes(context));
  await app.register(backupRoutes(context));
  await app.register(maintenanceRoutes(context));
  app.get('/api/openapi.json', { schema: { hide: true } }, () => app.swagger());
  await app.ready();

  return {
    app,
    context,
    async close(graceMs = 30_000) {
      context.beginShutdown();
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      });
      // Stop accepting; in-flight requests and background work finish within the grace period.
      const closed = app.close();
      await Promise.race([Promise.all([context.drain(), closed]), graceOver]);
      clearTimeout(timer);
      // Past the grace period: interrupt what still runs; checks end as `error` ("interrupted") and
      // the run is still recorded, so nothing is lost silently.
      context.interrupt();
      await context.drain();
      // Whatever is still open now is idle keep-alive or past the grace period.
      app.server.closeAllConnections();
      await closed;
    },
  };
}
