import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { ROLES } from '../../runbooks/model.ts';
import { parseAuditExpectation } from '../../store/index.ts';
import type { ServerContext } from '../context.ts';
import { errorSchema } from '../schemas.ts';

export const actorSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    role: z.enum(ROLES),
    kind: z.enum(['token', 'local', 'schedule', 'system']),
  })
  .meta({ id: 'Actor' });

export const auditRecordSchema = z
  .object({
    seq: z.number(),
    at: z.string(),
    actor: actorSchema,
    action: z.string(),
    target: z.string(),
    data: z.record(z.string(), z.unknown()),
    prevHash: z.string(),
    hash: z.string(),
  })
  .meta({ id: 'AuditRecord' });

export const auditVerificationSchema = z
  .object({
    ok: z.boolean(),
    records: z.number(),
    head: z.object({ seq: z.number(), hash: z.string() }).optional(),
    expected: z
      .object({ seq: z.number(), hash: z.string() })
      .optional()
      .describe('The record checked for with ?expect=<seq>:<hash>.'),
    problems: z.array(z.object({ seq: z.number(), problem: z.string() })),
  })
  .meta({ id: 'AuditVerification' });

const isoTime = (what: string) =>
  z.iso
    .datetime({ offset: true, error: 'must be an ISO-8601 date-time, e.g. 2026-11-26T00:00:00Z' })
    .describe(what);

const auditQuerySchema = z.strictObject({
  since: isoTime('Records at or after this time.').optional(),
  until: isoTime('Records before this time.').optional(),
  actor: z.string().min(1).max(300).optional().describe('Actor id, e.g. token:0a1b2c3d4e5f or local:alice.'),
  action: z.string().min(1).max(100).optional().describe('An action, or a prefix ending in * (run.*).'),
  target: z.string().min(1).max(1000).optional().describe('A target, or a prefix ending in * (run:abc*).'),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  afterSeq: z.coerce.number().int().min(0).optional().describe('Page forward: records after this seq.'),
});

/**
 * The audit log over HTTP. Reading it needs operator (it names every actor and target); verifying the
 * chain needs admin.
 */
export function auditRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  return async (app) => {
    app.get(
      '/api/audit',
      {
        config: { access: 'operator' },
        schema: {
          summary:
            'Audit records, ascending by seq: the newest `limit` matching ones, or with afterSeq the next page. Operator or admin.',
          querystring: auditQuerySchema,
          response: {
            200: z.object({ records: z.array(auditRecordSchema) }),
            400: errorSchema,
            403: errorSchema,
          },
        },
      },
      async (request) => {
        const { since, until, actor, action, target, limit, afterSeq } = request.query;
        const records = await ctx.store().audit.list({
          limit,
          ...(since ? { since: new Date(since) } : {}),
          ...(until ? { until: new Date(until) } : {}),
          ...(actor ? { actorId: actor } : {}),
          ...(action ? { action } : {}),
          ...(target ? { target } : {}),
          ...(afterSeq === undefined ? {} : { afterSeq }),
        });
        return { records };
      },
    );

    app.post(
      '/api/audit/verify',
      {
        config: { access: 'admin' },
        schema: {
          summary:
            'Walks the whole hash chain and reports every edited, deleted, reordered or cut-off record. Admin.',
          querystring: z.object({
            expect: z
              .string()
              .max(200)
              .optional()
              .describe(
                '<seq>:<hash> of a record kept elsewhere (an earlier head): the chain must still hold it, ' +
                  'and the head must be at or after it (catches the newest records deleted with the head rewritten).',
              ),
          }),
          response: { 200: auditVerificationSchema, 400: errorSchema, 403: errorSchema },
        },
      },
      (request) => {
        const { expect } = request.query;
        return ctx.track(
          ctx.store().audit.verify(expect === undefined ? {} : { expect: parseAuditExpectation(expect) }),
        );
      },
    );
  };
}
