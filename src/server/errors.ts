import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import { ErrorCode, assertNever, toGameopsError } from '../core/index.ts';
import type { Logger } from '../app/index.ts';

/** The one mapping from the error taxonomy to HTTP status. */
export function httpStatusFor(code: ErrorCode): number {
  switch (code) {
    case ErrorCode.input:
      return 400;
    case ErrorCode.notAllowed:
      return 403;
    case ErrorCode.notFound:
      return 404;
    case ErrorCode.conflict:
      return 409;
    case ErrorCode.unavailable:
      return 503;
    case ErrorCode.internal:
      return 500;
    default:
      return assertNever(code, 'error code');
  }
}

export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}

/** Fastify error handler: every error leaves as JSON `{ error: { code, message, details? } }`. */
export function errorHandler(log: Logger) {
  return (err: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (hasZodFastifySchemaValidationErrors(err)) {
      const issues = err.validation.map((v) => ({
        field: `${err.validationContext ?? 'request'}${v.instancePath.replaceAll('/', '.')}`,
        message: v.message ?? 'invalid',
      }));
      const first = issues[0];
      return reply.code(400).send({
        error: {
          code: ErrorCode.input,
          message: first ? `${first.field}: ${first.message}` : 'invalid request',
          details: { issues },
        },
      } satisfies ErrorBody);
    }
    if (isResponseSerializationError(err)) {
      log.error({ url: request.url, issues: err.cause.issues }, 'response did not match its schema');
      return reply
        .code(500)
        .send({ error: { code: ErrorCode.internal, message: 'internal error' } } satisfies ErrorBody);
    }
    // Fastify's own client errors (bad JSON body, unsupported media type, body too large) keep their 4xx.
    if (
      typeof err.statusCode === 'number' &&
      err.statusCode >= 400 &&
      err.statusCode < 500 &&
      !('code' in err && isOurCode(err.code))
    ) {
      return reply
        .code(err.statusCode)
        .send({ error: { code: ErrorCode.input, message: err.message } } satisfies ErrorBody);
    }
    const g = toGameopsError(err);
    const status = httpStatusFor(g.code);
    if (status >= 500) log.error({ err: g.message, code: g.code, url: request.url }, 'request failed');
    // Internal errors keep their detail in the log, not in the response.
    const message = g.code === ErrorCode.internal ? 'internal error' : g.message;
    return reply.code(status).send({
      error: {
        code: g.code,
        message,
        ...(g.details && g.code !== ErrorCode.internal ? { details: g.details } : {}),
      },
    } satisfies ErrorBody);
  };
}

function isOurCode(code: unknown): boolean {
  return typeof code === 'string' && (Object.values(ErrorCode) as string[]).includes(code);
}
