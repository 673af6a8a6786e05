import { randomUUID } from 'node:crypto';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { type FastifyPluginAsyncZod, hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { SEVERITIES } from '../../config/schema.ts';
import { InputError, toGameopsError } from '../../core/index.ts';
import type { OncallService } from '../../oncall/index.ts';
import { actorOf } from '../auth.ts';
import type { ServerContext } from '../context.ts';
import { httpStatusFor } from '../errors.ts';
import { errorSchema } from '../schemas.ts';

/*
 * The on-call API: who is on call, shifts and iCal, overrides, pages (open, list, show, acknowledge,
 * resolve) and the signed acknowledge links. `gameops oncall … --json` prints the same shapes.
 * Access (server/auth.ts): viewer reads, operator writes overrides, responder pages and acknowledges,
 * and `/api/ack/…` is public (the signed token is the credential).
 */

const isoTime = z.string().describe('ISO 8601');
const instant = z.iso.datetime({
  offset: true,
  error: 'must be an ISO-8601 date-time, e.g. 2026-03-10T12:00:00Z',
});
const nameSchema = z.string().min(1).max(64);

export const pageTargetApiSchema = z
  .union([
    z.strictObject({ person: nameSchema }),
    z.strictObject({ team: nameSchema }),
    z.strictObject({ teamLead: nameSchema }),
    z.strictObject({ schedule: nameSchema, layer: nameSchema.optional() }),
  ])
  .meta({ id: 'PageTarget' });

const overrideRefSchema = z.object({
  id: z.string(),
  replaces: z.string().optional().describe('Who the rotation has on call there.'),
  reason: z.string().optional(),
});

export const layerOnCallSchema = z
  .object({
    layer: z.string(),
    person: z.string().optional().describe('Absent before the rotation starts.'),
    name: z.string().optional(),
    start: isoTime.optional(),
    end: isoTime.optional(),
    override: overrideRefSchema.optional().describe('Set when an override put this person here.'),
  })
  .meta({ id: 'OncallLayer' });

export const scheduleOnCallSchema = z
  .object({ schedule: z.string(), timezone: z.string(), at: isoTime, layers: z.array(layerOnCallSchema) })
  .meta({ id: 'OncallNow' });

export const shiftSchema = z
  .object({
    schedule: z.string(),
    layer: z.string(),
    person: z.string(),
    start: isoTime,
    end: isoTime,
    override: overrideRefSchema.optional(),
  })
  .meta({ id: 'OncallShift' });

export const overrideSchema = z
  .object({
    id: z.string(),
    schedule: z.string(),
    layer: z.string(),
    person: z.string(),
    from: isoTime,
    to: isoTime,
    reason: z.string().optional(),
    createdAt: isoTime,
    createdBy: z
      .string()
      .describe("Who made it: the person's name (a token's name; the local admin is the OS user)."),
  })
  .meta({ id: 'OncallOverride' });

const pageStatusSchema = z.enum(['triggered', 'acknowledged', 'resolved', 'exhausted', 'suppressed']);

export const pageSchema = z
  .object({
    id: z.string(),
    dedupKey: z.string(),
    incidentId: z.string().optional(),
    subject: z.string(),
    severity: z.enum(SEVERITIES),
    policy: z.string().optional(),
    status: pageStatusSchema,
    level: z
      .number()
      .int()
      .describe('The escalation level reached, 0-based (0 = the first level; human output says "level 1").'),
    round: z.number().int().describe('The repeat round (0-based).'),
    createdAt: isoTime,
    nextEscalationAt: isoTime.optional(),
    acknowledgedAt: isoTime.optional(),
    acknowledgedBy: z
      .string()
      .optional()
      .describe("Who acknowledged it: the person's name, not an actor id."),
    resolvedAt: isoTime.optional(),
    suppressedBy: z.string().optional().describe('The suppression window that held it back.'),
  })
  .meta({ id: 'Page' });

export const deliverySchema = z
  .object({
    deliveryId: z.string().describe('Stable across retries and restarts; receivers deduplicate on it.'),
    level: z.number().int().describe("The escalation level, 0-based like the page's."),
    round: z.number().int().describe('The repeat round, 0-based.'),
    person: z.string().optional(),
    channel: z.string(),
    status: z.enum(['pending', 'sending', 'delivered', 'failed', 'cancelled']),
    nextAt: isoTime.optional().describe('When the next attempt is due.'),
    lastError: z.string().optional(),
    attempts: z.array(
      z.object({
        n: z.number().int(),
        at: isoTime,
        outcome: z.enum(['ok', 'failed', 'interrupted']),
        destination: z.string().optional(),
        response: z.string().optional(),
        error: z.string().optional(),
        durationMs: z.number(),
        retryAfterMs: z.number().optional(),
      }),
    ),
  })
  .meta({ id: 'PageDelivery' });

export const pageDetailSchema = pageSchema
  .extend({
    body: z.string(),
    targets: z.array(pageTargetApiSchema).optional(),
    exhaustedAt: isoTime.optional(),
    resolvedBy: z.string().optional().describe("Who resolved it: the person's name, not an actor id."),
    deliveries: z.array(deliverySchema),
  })
  .meta({ id: 'PageDetail' });

export const pageChangeSchema = z
  .object({ page: pageSchema, changed: z.boolean().describe('False when it already was in that state.') })
  .meta({ id: 'PageChange' });

const errors = { 400: errorSchema, 401: errorSchema, 403: errorSchema, 404: errorSchema, 503: errorSchema };
const pageParams = z.object({ id: z.string().min(1).max(100) });
const scheduleParams = z.object({ name: z.string().min(1).max(64) });

export const createPageBodySchema = z
  .strictObject({
    targets: z
      .array(pageTargetApiSchema)
      .min(1)
      .max(50)
      .optional()
      .describe('Page these directly (one level); otherwise the policy escalates.'),
    policy: z.string().min(1).max(64).optional().describe('Default: oncall.defaultPolicy, else the first.'),
    subject: z.string().trim().min(1).max(300),
    body: z.string().max(20_000).default(''),
    severity: z.enum(SEVERITIES).default('P3'),
    incidentId: z.string().min(1).max(100).optional(),
    dedupKey: z
      .string()
      .min(1)
      .max(300)
      .optional()
      .describe(
        'The same key returns the first page instead of paging again (default: a new one). Keys starting ' +
          'with incident:, gameops: or heartbeat: are reserved.',
      ),
    suppressible: z
      .boolean()
      .default(false)
      .describe('Let suppression windows hold this page back (default: a page asked for by hand goes out).'),
  })
  .meta({ id: 'CreatePage' });

export function oncallRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  const service = async (): Promise<OncallService> =>
    (await (await import('../../app/ops.ts')).openOps(ctx.resources)).oncall;

  return async (app) => {
    // The acknowledge page's button posts a form; its fields are not used (the token is in the path).
    app.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: 4096 },
      (_request, _body, done) => done(null, {}),
    );

    app.get(
      '/api/oncall/stalls',
      {
        schema: {
          summary:
            'What the stall auditor found: escalation steps and deliveries that were over a minute late ' +
            '(the paging loop stalled or gameops was down), newest first.',
          querystring: z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).default(100) }),
          response: {
            200: z.object({
              stalls: z.array(
                z.object({ ref: z.string(), pageId: z.string(), dueAt: z.string(), detectedAt: z.string() }),
              ),
            }),
            ...errors,
          },
        },
      },
      async (request) => ({ stalls: await (await service()).stalls(request.query.limit) }),
    );

    app.get(
      '/api/oncall',
      {
        schema: {
          summary:
            'Who is on call in every layer of every schedule (or one), now or at `at`, overrides applied.',
          querystring: z.strictObject({ at: instant.optional(), schedule: nameSchema.optional() }),
          response: { 200: z.object({ schedules: z.array(scheduleOnCallSchema) }), ...errors },
        },
      },
      async (request) => {
        const { at, schedule } = request.query;
        return {
          schedules: await (
            await service()
          ).whoIsOnCall({
            ...(at !== undefined ? { at: new Date(at) } : {}),
            ...(schedule !== undefined ? { schedule } : {}),
          }),
        };
      },
    );

    app.get(
      '/api/oncall/schedules/:name/shifts',
      {
        schema: {
          summary:
            'The shifts of a schedule in [from, to) (default: now to 28 days ahead; at most 366 days).',
          params: scheduleParams,
          querystring: z.strictObject({
            from: instant.optional(),
            to: instant.optional(),
            layer: nameSchema.optional(),
          }),
          response: { 200: z.object({ schedule: z.string(), shifts: z.array(shiftSchema) }), ...errors },
        },
      },
      async (request) => {
        const { from, to } = range(request.query.from, request.query.to, ctx.resources.clock.now());
        const shifts = await (await service()).shifts(request.params.name, from, to, request.query.layer);
        return { schedule: request.params.name, shifts };
      },
    );

    app.get(
      '/api/oncall/schedules/:name.ics',
      {
        schema: {
          summary:
            'The schedule as iCalendar (text/calendar): one event per shift with person and layer, times in ' +
            'UTC, UIDs stable across fetches (default range: a week back to 90 days ahead).',
          params: scheduleParams,
          querystring: z.strictObject({ from: instant.optional(), to: instant.optional() }),
          response: { 200: z.string(), ...errors },
        },
      },
      async (request, reply) => ical(reply, request.params.name, request.query.from, request.query.to),
    );

    const ical = async (reply: FastifyReply, name: string, from?: string, to?: string): Promise<string> => {
      const text = await (
        await service()
      ).ical(
        name,
        from !== undefined ? new Date(from) : undefined,
        to !== undefined ? new Date(to) : undefined,
      );
      void reply
        .type('text/calendar; charset=utf-8')
        .header('content-disposition', `inline; filename="${name}.ics"`);
      return text;
    };

    app.get(
      '/api/oncall/overrides',
      {
        schema: {
          summary: 'Overrides that have not ended (of one schedule when given), by start.',
          querystring: z.strictObject({ schedule: nameSchema.optional() }),
          response: { 200: z.object({ overrides: z.array(overrideSchema) }), ...errors },
        },
      },
      async (request) => ({
        overrides: await (await service()).overrides({ schedule: request.query.schedule }),
      }),
    );

    app.post(
      '/api/oncall/overrides',
      {
        schema: {
          summary:
            'Cover a layer of a schedule with another person in [from, to). 409 names an overlapping override ' +
            'of the same layer; 400 names an unknown schedule, layer or person, or a bad range.',
          body: z.strictObject({
            schedule: nameSchema,
            layer: nameSchema.optional().describe('Default: the first layer (primary).'),
            person: nameSchema,
            from: instant,
            to: instant,
            reason: z.string().max(500).optional(),
          }),
          response: { 201: overrideSchema, ...errors, 409: errorSchema },
        },
      },
      async (request, reply) => {
        const { from, to, ...rest } = request.body;
        const override = await (
          await service()
        ).addOverride({ ...rest, from: new Date(from), to: new Date(to) }, actorOf(request));
        void reply.code(201);
        return override;
      },
    );

    app.delete(
      '/api/oncall/overrides/:id',
      {
        schema: {
          summary: 'Remove an override.',
          params: z.object({ id: z.string().min(1).max(100) }),
          response: { 200: overrideSchema, ...errors },
        },
      },
      async (request) => (await service()).removeOverride(request.params.id, actorOf(request)),
    );

    app.post(
      '/api/pages',
      {
        schema: {
          summary:
            'Page people (targets: a person, a team, a team lead, whoever is on call in a schedule) or run an ' +
            'escalation policy. Deliveries go out in the background; GET /api/pages/<id> shows them.',
          body: createPageBodySchema,
          response: { 201: pageSchema, ...errors },
        },
      },
      async (request, reply) => {
        const { dedupKey, targets, policy, incidentId, suppressible, ...rest } = request.body;
        const page = await (
          await service()
        ).manualPage(
          {
            ...rest,
            dedupKey: dedupKey ?? `manual:${randomUUID()}`,
            ...(targets !== undefined ? { targets: targets } : {}),
            ...(policy !== undefined ? { policy } : {}),
            ...(incidentId !== undefined ? { incidentId } : {}),
          },
          actorOf(request),
          { suppressible },
        );
        void reply.code(201).header('location', `/api/pages/${encodeURIComponent(page.id)}`);
        return page;
      },
    );

    app.get(
      '/api/pages',
      {
        schema: {
          summary: 'Pages, newest first.',
          querystring: z.strictObject({
            status: z
              .union([pageStatusSchema, z.array(pageStatusSchema)])
              .optional()
              .describe('Only these (repeat the parameter for several).'),
            incident: z.string().min(1).max(100).optional(),
            limit: z.coerce.number().int().min(1).max(1000).default(100),
          }),
          response: { 200: z.object({ pages: z.array(pageSchema) }), ...errors },
        },
      },
      async (request) => {
        const { status, incident, limit } = request.query;
        const pages = await (
          await service()
        ).pages({
          limit,
          ...(status !== undefined ? { status: Array.isArray(status) ? status : [status] } : {}),
          ...(incident !== undefined ? { incidentId: incident } : {}),
        });
        return { pages };
      },
    );

    app.get(
      '/api/pages/:id',
      {
        schema: {
          summary: 'A page with every delivery (person, channel, status) and every attempt.',
          params: pageParams,
          response: { 200: pageDetailSchema, ...errors },
        },
      },
      async (request) => (await service()).pageDetail(request.params.id),
    );

    for (const action of ['ack', 'resolve'] as const) {
      app.post(
        `/api/pages/:id/${action}`,
        {
          schema: {
            summary:
              action === 'ack'
                ? 'Acknowledge: escalation stops (a page already acknowledged answers changed: false).'
                : 'Resolve: the page ends.',
            params: pageParams,
            response: { 200: pageChangeSchema, ...errors },
          },
        },
        async (request) => {
          const oncall = await service();
          return action === 'ack'
            ? oncall.acknowledge(request.params.id, actorOf(request))
            : oncall.resolve(request.params.id, actorOf(request));
        },
      );
    }

    const tokenParams = z.object({ token: z.string().min(1).max(1000) });
    const ackResponses = {
      200: z.string(),
      400: z.string(),
      403: z.string(),
      404: z.string(),
      500: z.string(),
      503: z.string(),
    };
    /** The options of both acknowledge-link routes (GET shows the page, POST acknowledges). */
    const ackRoute = (summary: string) => ({
      schema: { summary, params: tokenParams, response: ackResponses },
      // The origin guard (server/origin.ts) refuses a cross-site POST before the handler: answer it as
      // the same HTML page, not the API's JSON error (which this route's schema does not describe).
      errorHandler: (err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void => {
        void reply.send(refused(reply, err));
      },
    });

    app.get(
      '/api/ack/:token',
      ackRoute(
        'The page a signed acknowledge link opens: what it acknowledges, and a button (POST). A GET never ' +
          'acknowledges (link scanners open links). 403 for a changed, forged or expired link.',
      ),
      async (request, reply) => {
        try {
          const view = await (await service()).checkAckToken(request.params.token);
          const done = view.page.status !== 'triggered' && view.page.status !== 'exhausted';
          return html(
            reply,
            200,
            'Acknowledge page',
            `<h1>${esc(view.page.subject)}</h1>
<p>Severity ${esc(view.page.severity)} · page ${esc(view.page.id)}${view.page.incidentId ? ` · incident ${esc(view.page.incidentId)}` : ''} · opened ${esc(view.page.createdAt)}</p>
${
  done
    ? `<p class="done">This page is already ${esc(view.page.status)}${view.page.acknowledgedBy ? ` (by ${esc(view.page.acknowledgedBy)})` : ''}.</p>`
    : `<form method="post"><button type="submit">Acknowledge as ${esc(view.name)}</button></form>
<p>Escalation stops once acknowledged. This link works until ${esc(view.expiresAt)}.</p>`
}`,
          );
        } catch (err) {
          return refused(reply, err);
        }
      },
    );

    app.post(
      '/api/ack/:token',
      ackRoute('Acknowledge as the person the signed link names (actor `ack-link:<person>`); audited.'),
      async (request, reply) => {
        try {
          const { page, changed, person } = await (await service()).acknowledgeByLink(request.params.token);
          return html(
            reply,
            200,
            'Acknowledged',
            changed
              ? `<h1>Acknowledged</h1><p>${esc(page.subject)}: acknowledged as ${esc(person)}. Escalation has stopped.</p>`
              : `<h1>Already ${esc(page.status)}</h1><p>${esc(page.subject)} is already ${esc(page.status)}${page.acknowledgedBy ? ` (by ${esc(page.acknowledgedBy)})` : ''}; nothing changed.</p>`,
          );
        } catch (err) {
          return refused(reply, err);
        }
      },
    );
  };
}

function range(from: string | undefined, to: string | undefined, now: Date): { from: Date; to: Date } {
  const start = from !== undefined ? new Date(from) : now;
  const end = to !== undefined ? new Date(to) : new Date(start.getTime() + 28 * 86_400_000);
  return { from: start, to: end };
}

/** HTML-escapes text (every user-supplied string on the acknowledge pages goes through this). */
function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function html(reply: FastifyReply, status: number, title: string, body: string): string {
  void reply
    .code(status)
    .type('text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY')
    .header(
      'content-security-policy',
      "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    );
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>gameops · ${esc(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem}button{font-size:1.2rem;padding:.6rem 1.4rem}</style>
</head><body>
${body}
</body></html>
`;
}

/**
 * A refused link as a page people can read: 400 for a malformed link, 403 for a bad or expired link or a
 * cross-site POST, 503 (or 500) when gameops cannot answer.
 */
function refused(reply: FastifyReply, err: unknown): string {
  const error = hasZodFastifySchemaValidationErrors(err)
    ? new InputError('this acknowledge link is malformed: open the link from the notification again')
    : toGameopsError(err);
  const status = httpStatusFor(error.code);
  return html(
    reply,
    status,
    'Cannot acknowledge',
    `<h1>Cannot acknowledge</h1><p>${esc(status >= 500 ? 'gameops cannot answer right now; try again shortly, or use gameops oncall ack <page id>.' : error.message)}</p>`,
  );
}
