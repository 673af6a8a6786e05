import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { ServerContext } from '../context.ts';

// PLACEHOLDER (issue #5, being written): the oncall API.
export function oncallRoutes(_ctx: ServerContext): FastifyPluginAsyncZod {
  return async () => {};
}
