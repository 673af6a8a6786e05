import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AlertService, IngestResult } from '../../alerts/index.ts';
import { ErrorCode, GameopsError, InputError, UnavailableError, errorMessage } from '../../core/index.ts';
import { actorOf } from '../auth.ts';
import type { ServerContext } from '../context.ts';
import { errorHandler, type ErrorBody } from '../errors.ts';
import { errorSchema } from '../schemas.ts';

/** Seconds a sender is told to wait after a transient failure (Alertmanager retries 5xx with backoff anyway). */
const RETRY_AFTER_SECONDS = 5;

const ingestResultSchema = z
  .object({
    received: z.number().int(),
    created: z.number().int(),
    changed: z.number().int(),
    unchanged: z.number().int(),
    resolvedByAbsence: z.number().int(),
    /** Firing alerts absent from the snapshot, confirmed against Alertmanager before they resolve. */
    absent: z.number().int(),
    truncated: z.number().int(),
  })
  .meta({ id: 'AlertIngestResult' });

export const storedAlertSchema = z
  .object({
    id: z.string(),
    fingerprint: z.string(),
    startsAt: z.string(),
    status: z.enum(['firing', 'resolved']),
    endsAt: z.string().optional(),
    name: z.string(),
    labels: z.record(z.string(), z.string()),
    annotations: z.record(z.string(), z.string()),
    generatorUrl: z.string().optional(),
    source: z.string(),
    groupKey: z.string(),
    receiver: z.string().optional(),
    firstSeenAt: z.string(),
    lastSeenAt: z.string(),
    resolvedAt: z.string().optional(),
    resolvedBy: z.enum(['payload', 'snapshot', 'reconcile']).optional(),
    incidentId: z.string().optional(),
    processed: z.enum(['firing', 'resolved']).optional(),
    pending: z.boolean(),
  })
  .meta({ id: 'Alert' });

export const silenceSchema = z
  .object({
    id: z.string(),
    state: z.string(),
    matchers: z.array(z.string()),
    startsAt: z.string(),
    endsAt: z.string(),
    createdBy: z.string(),
    comment: z.string(),
  })
  .meta({ id: 'Silence' });

export const windowSchema = z
  .object({
    id: z.string().optional(),
    name: z.string(),
    origin: z.enum(['config', 'adhoc']),
    matchers: z.array(z.string()),
    cron: z.string().optional(),
    timezone: z.string().optional(),
    durationMs: z.number(),
    startsAt: z.string().optional(),
    endsAt: z.string().optional(),
    active: z.boolean(),
    comment: z.string().optional(),
    createdBy: z.string().optional(),
    endedAt: z.string().optional(),
    endedBy: z.string().optional(),
  })
  .meta({ id: 'SuppressionWindow' });

export const heartbeatSchema = z
  .object({
    name: z.string(),
    description: z.string().optional(),
    everyMs: z.number(),
    graceMs: z.number(),
    status: z.enum(['up', 'down', 'waiting']),
    lastPingAt: z.string().optional(),
    dueAt: z.string(),
    downSince: z.string().optional(),
    incidentId: z.string().optional(),
    pings: z.number().int(),
    firstSeenAt: z.string(),
  })
  .meta({ id: 'Heartbeat' });

const stringList = z.union([z.string(), z.array(z.string())]).optional();
const listOf = (value: string | string[] | undefined): string[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

const listQuerySchema = z.strictObject({
  status: z.enum(['firing', 'resolved']).optional(),
  incident: z.string().min(1).max(100).optional().describe('Only alerts linked to this incident id.'),
  label: stringList.describe('name=value; repeat for several (all must match).'),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

const createSilenceSchema = z.strictObject({
  matchers: z.array(z.string()).min(1).describe('Alertmanager matchers, e.g. alertname="GameServerDown".'),
  duration: z.union([z.string(), z.number()]).optional().describe('e.g. 2h; or give endsAt.'),
  startsAt: z.string().optional(),
  endsAt: z.string().optional(),
  comment: z.string().min(1),
});

const createWindowSchema = z.strictObject({
  name: z.string().optional(),
  matchers: z.array(z.string()).default([]),
  duration: z.union([z.string(), z.number()]).optional(),
  startsAt: z.string().optional(),
  endsAt: z.string().optional(),
  comment: z.string().min(1),
});

const idParams = z.strictObject({ id: z.string().min(1).max(100) });

/** The intake answer: what was stored (the follow-up's group is internal). */
function answer(result: IngestResult): z.infer<typeof ingestResultSchema> {
  return {
    received: result.received,
    created: result.created,
    changed: result.changed,
    unchanged: result.unchanged,
    resolvedByAbsence: result.resolvedByAbsence,
    absent: result.absent,
    truncated: result.truncated,
  };
}

/**
 * Alert intake over HTTP (issue #5). The webhook follows Alertmanager's receiver contract
 * (field-notes.md): the payload is committed in one transaction before the 200; a store that is down
 * answers 503 with Retry-After (Alertmanager retries 5xx, and drops what gets a 4xx); a malformed payload
 * is 400 naming the field, an oversized one 413 naming alerts.maxPayloadBytes, nothing stored either way.
 * Routing into incidents happens after the answer (and again in the background loop). Writes need
 * responder (server/auth.ts), reads viewer.
 */
export function alertRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  return async (app) => {
    const maxPayloadBytes = ctx.resources.config.alerts.maxPayloadBytes;
    const alerts = async (): Promise<AlertService> =>
      (await (await import('../../app/ops.ts')).openOps(ctx.resources)).alerts;
    // For the intake routes, services that cannot be opened (no store, a config the services refuse) are
    // a server problem, never the sender's: 503, so Alertmanager keeps the notification and retries.
    const intake = async (): Promise<AlertService> => {
      try {
        return await alerts();
      } catch (err) {
        if (err instanceof GameopsError && err.code === ErrorCode.unavailable) throw err;
        throw new UnavailableError(`alert intake is not available: ${errorMessage(err)}`);
      }
    };
    const base = errorHandler(ctx.resources.log);
    // This plugin's routes only: a clear 413, and Retry-After on every 503.
    app.setErrorHandler((err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        return reply.code(413).send({
          error: {
            code: ErrorCode.input,
            message: `the payload is larger than alerts.maxPayloadBytes (${maxPayloadBytes} bytes); nothing was stored`,
            details: { field: '(body)', limit: maxPayloadBytes },
          },
        } satisfies ErrorBody);
      }
      if (err instanceof GameopsError && err.code === ErrorCode.unavailable)
        void reply.header('retry-after', String(RETRY_AFTER_SECONDS));
      return base(err, request, reply);
    });

    /** One intake route: stores the payload `ingest` reads before the answer, then routes it. */
    const intakeRoute = (
      path: string,
      summary: string,
      ingest: (service: AlertService, payload: unknown) => Promise<IngestResult>,
    ): void => {
      app.post(
        path,
        {
          bodyLimit: maxPayloadBytes,
          schema: {
            summary,
            response: {
              200: ingestResultSchema,
              400: errorSchema,
              401: errorSchema,
              403: errorSchema,
              413: errorSchema,
              503: errorSchema,
            },
          },
        },
        async (request) => {
          const service = await intake();
          const result = await ingest(service, request.body);
          void ctx.track(service.followUp(result));
          return answer(result);
        },
      );
    };
    intakeRoute(
      '/api/alerts/alertmanager',
      'Alertmanager webhook receiver (payload version 4). Answers 200 once the whole payload is stored; 503 (retry) when the store is down; 400/413 for a payload that can never be stored. Responder.',
      (service, payload) => service.ingestAlertmanager(payload),
    );
    intakeRoute(
      '/api/alerts',
      'Generic alerts: {alerts: [{name, status?, labels?, annotations?, startsAt?, endsAt?, fingerprint?, summary?}]}; stored before the answer, then routed like Alertmanager alerts. Responder.',
      (service, payload) => service.ingestGeneric(payload),
    );

    app.get(
      '/api/alerts',
      {
        schema: {
          summary: 'Stored alerts, most recently seen first.',
          querystring: listQuerySchema,
          response: { 200: z.object({ alerts: z.array(storedAlertSchema) }), 400: errorSchema },
        },
      },
      async (request) => {
        const labels: Record<string, string> = {};
        for (const pair of listOf(request.query.label)) {
          const at = pair.indexOf('=');
          if (at <= 0)
            throw new InputError(`label: "${pair.slice(0, 80)}" must be name=value`, {
              details: { field: 'label' },
            });
          labels[pair.slice(0, at)] = pair.slice(at + 1);
        }
        const list = await (
          await alerts()
        ).list({
          status: request.query.status,
          incidentId: request.query.incident,
          labels,
          limit: request.query.limit,
        });
        return { alerts: list };
      },
    );

    app.get(
      '/api/alerts/silences',
      {
        schema: {
          summary: 'Alertmanager silences (API v2).',
          querystring: z.strictObject({
            state: z.enum(['active', 'pending', 'expired']).optional(),
            match: stringList.describe('Only silences with these matchers (repeat).'),
          }),
          response: {
            200: z.object({ silences: z.array(silenceSchema) }),
            400: errorSchema,
            503: errorSchema,
          },
        },
      },
      async (request) => ({
        silences: await (
          await alerts()
        ).silences.list({ state: request.query.state, matchers: listOf(request.query.match) }),
      }),
    );

    app.post(
      '/api/alerts/silences',
      {
        schema: {
          summary: 'Creates an Alertmanager silence; createdBy is the caller. Responder.',
          body: createSilenceSchema,
          response: { 201: silenceSchema, 400: errorSchema, 503: errorSchema },
        },
      },
      async (request, reply) => {
        const silence = await (await alerts()).silences.create(request.body, actorOf(request));
        return reply.code(201).send(silence);
      },
    );

    app.delete(
      '/api/alerts/silences/:id',
      {
        schema: {
          summary: 'Expires an Alertmanager silence. Responder.',
          params: idParams,
          response: { 204: z.null(), 404: errorSchema, 503: errorSchema },
        },
      },
      async (request, reply) => {
        await (await alerts()).silences.expire(request.params.id, actorOf(request));
        return reply.code(204).send(null);
      },
    );

    app.get(
      '/api/alerts/suppressions',
      {
        schema: {
          summary:
            'Paging suppression windows: from the config (current or next occurrence) and ad hoc (not over yet, or all).',
          querystring: z.strictObject({ all: z.enum(['true', 'false']).optional() }),
          response: { 200: z.object({ windows: z.array(windowSchema) }) },
        },
      },
      async (request) => ({
        windows: await (await alerts()).windows.list({ all: request.query.all === 'true' }),
      }),
    );

    app.post(
      '/api/alerts/suppressions',
      {
        schema: {
          summary: 'Creates an ad-hoc paging suppression window (audited). Responder.',
          body: createWindowSchema,
          response: { 201: windowSchema, 400: errorSchema },
        },
      },
      async (request, reply) => {
        const window = await (await alerts()).windows.create(request.body, actorOf(request));
        return reply.code(201).send(window);
      },
    );

    app.delete(
      '/api/alerts/suppressions/:id',
      {
        schema: {
          summary: 'Ends an ad-hoc suppression window now (audited). Responder.',
          params: idParams,
          response: { 200: windowSchema, 400: errorSchema, 404: errorSchema },
        },
      },
      async (request) => (await alerts()).windows.end(request.params.id, actorOf(request)),
    );

    app.get(
      '/api/alerts/:id',
      {
        schema: {
          summary: 'One stored alert.',
          params: idParams,
          response: { 200: storedAlertSchema, 404: errorSchema },
        },
      },
      async (request) => (await alerts()).get(request.params.id),
    );

    app.post(
      '/api/heartbeats/:name',
      {
        bodyLimit: 64 * 1024,
        schema: {
          summary: 'A ping from a job; when pings stop for every + grace, a page fires. Responder.',
          params: z.strictObject({ name: z.string().min(1).max(100) }),
          response: { 200: heartbeatSchema, 404: errorSchema, 503: errorSchema },
        },
      },
      async (request) => (await alerts()).ping(request.params.name),
    );

    app.get(
      '/api/heartbeats',
      {
        schema: {
          summary: 'Configured heartbeats and their state.',
          response: { 200: z.object({ heartbeats: z.array(heartbeatSchema) }) },
        },
      },
      async () => ({ heartbeats: await (await alerts()).heartbeats() }),
    );
  };
}
