import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { tokenExpiryMs } from '../../identity/index.ts';
import { ROLES } from '../../runbooks/model.ts';
import { tokenNameSchema } from '../../store/index.ts';
import { actorOf } from '../auth.ts';
import type { ServerContext } from '../context.ts';
import { errorSchema } from '../schemas.ts';

export const tokenRecordSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    role: z.enum(ROLES),
    createdAt: z.string(),
    createdBy: z.string(),
    expiresAt: z.string().optional(),
    revokedAt: z.string().optional(),
    lastUsedAt: z.string().optional(),
  })
  .meta({ id: 'TokenRecord' });

const createTokenSchema = z
  .strictObject({
    name: tokenNameSchema,
    role: z.enum(ROLES, { error: `must be one of ${ROLES.join(', ')}` }),
    expiresIn: z.string().optional().describe('A duration such as 30d or 12h; never expires when absent.'),
    expiresAt: z.iso.datetime({ offset: true, error: 'must be an ISO-8601 date-time' }).optional(),
  })
  .refine((body) => body.expiresIn === undefined || body.expiresAt === undefined, {
    message: 'give expiresIn or expiresAt, not both',
    path: ['expiresAt'],
  });

/** API tokens over HTTP; admin only. The token itself appears once, in the POST response. */
export function tokenRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  return async (app) => {
    app.get(
      '/api/tokens',
      {
        config: { access: 'admin' },
        schema: {
          summary: 'Every API token (never its secret), newest first. Admin.',
          response: { 200: z.object({ tokens: z.array(tokenRecordSchema) }), 403: errorSchema },
        },
      },
      async () => ({ tokens: await ctx.store().tokens.list() }),
    );

    app.post(
      '/api/tokens',
      {
        config: { access: 'admin' },
        schema: {
          summary: 'Creates a token; the response is the only place its secret is ever shown. Admin.',
          body: createTokenSchema,
          response: {
            201: z.object({ token: z.string(), record: tokenRecordSchema }),
            400: errorSchema,
            403: errorSchema,
          },
        },
      },
      async (request, reply) => {
        const { name, role, expiresIn, expiresAt } = request.body;
        const now = ctx.resources.clock.now();
        const expires =
          expiresAt !== undefined
            ? new Date(expiresAt)
            : expiresIn !== undefined
              ? new Date(now.getTime() + tokenExpiryMs(expiresIn))
              : undefined;
        const created = await ctx.store().tokens.create({
          name,
          role,
          createdBy: actorOf(request),
          ...(expires ? { expiresAt: expires } : {}),
        });
        return reply.code(201).header('cache-control', 'no-store').send(created);
      },
    );

    app.delete(
      '/api/tokens/:id',
      {
        config: { access: 'admin' },
        schema: {
          summary: 'Revokes a token at once (revoking a revoked one changes nothing). Admin.',
          params: z.object({ id: z.string().regex(/^[0-9a-f]{12}$/, 'must be a token id (12 hex digits)') }),
          response: {
            200: z.object({ token: tokenRecordSchema }),
            400: errorSchema,
            403: errorSchema,
            404: errorSchema,
          },
        },
      },
      async (request) => ({ token: await ctx.store().tokens.revoke(request.params.id, actorOf(request)) }),
    );
  };
}
