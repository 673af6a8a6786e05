import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type Clock, NotAllowedError } from '../core/index.ts';
import { roleAtLeast, rolesFrom } from '../identity/index.ts';
import type { Actor, Role } from '../runbooks/model.ts';
import type { ServerContext } from './context.ts';

/** Who may call a route: anyone (`public`), or an authenticated actor of at least this role. */
export type RouteAccess = 'public' | Role;

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller; undefined only on public routes. */
    actor: Actor | undefined;
  }
  interface FastifyContextConfig {
    /** Overrides the access rules of {@link routeAccess} for this route. */
    access?: RouteAccess;
  }
}

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Answer without a token: probes, Prometheus, the API description. */
const PUBLIC_READS = new Set(['/healthz', '/readyz', '/metrics', '/api/openapi.json']);

/**
 * Which role a route needs when it does not say (`config.access`). Reads need viewer; changes need
 * operator, except:
 * - `POST /api/checks/daily`: responder (it only reads the game's dependencies, and on-call runs it);
 * - `/api/runs…`, `/api/runbooks…`: viewer for every method: the engine's AccessPolicy decides per
 *   runbook (`runBy`) and per approval step (`approvers`), so a responder can start what allows it;
 * - `/api/tokens…`, `POST /api/audit/verify`: admin; `GET /api/audit`: operator.
 * - incident response (issue #5): responder for `/api/incidents…`, `/api/pages…`, `/api/alerts…` and
 *   `/api/heartbeats…` (alert intake, heartbeat pings, acknowledging, silencing: on-call work);
 *   operator for on-call overrides; `/api/ack/…` is public: a signed acknowledge link is its own credential.
 * - backups (issue #6): viewer reads `/api/backups…`; operator starts a backup, verify, drill or restore
 *   (the restore still waits for its approval inside the run).
 * Unknown routes need viewer, so a caller without a token learns nothing, not even a 404.
 */
export function routeAccess(method: string, url: string | undefined): RouteAccess {
  const read = READS.has(method);
  if (url === undefined) return 'viewer';
  if (read && PUBLIC_READS.has(url)) return 'public';
  if (url.startsWith('/api/ack/')) return 'public';
  if (url === '/api/tokens' || url.startsWith('/api/tokens/')) return 'admin';
  if (url === '/api/audit/verify') return 'admin';
  if (url === '/api/audit' || url.startsWith('/api/audit/')) return 'operator';
  if (/^\/api\/(runs|runbooks)(\/|$)/.test(url)) return 'viewer';
  if (/^\/api\/backups(\/|$)/.test(url)) return read ? 'viewer' : 'operator';
  if (read) return 'viewer';
  if (url === '/api/checks/daily') return 'responder';
  if (/^\/api\/(incidents|pages|alerts|heartbeats)(\/|$)/.test(url)) return 'responder';
  return 'operator';
}

/** The authenticated caller of a non-public route. @throws NotAllowedError on a public one (a bug). */
export function actorOf(request: FastifyRequest): Actor {
  if (!request.actor)
    throw new NotAllowedError(`${request.method} ${request.url} has no authenticated caller`);
  return request.actor;
}

export interface AuthOptions {
  clock: Clock;
  /** Failed token checks one address may make in a burst. @default 10 */
  failureBurst?: number;
  /** How often one more failed check is allowed again. @default 6000 (10 a minute) */
  failureRefillMs?: number;
}

/**
 * Installs authentication: `Authorization: Bearer <token>` resolves to `request.actor` through the store's
 * tokens; a missing, malformed, unknown, revoked or expired token is answered 401 (the token is never
 * repeated), a role too weak for the route 403. Addresses that present bad tokens repeatedly get 429
 * instead of 401 for a while; a valid token is never limited. Runs after the origin guard.
 */
export function installAuth(app: FastifyInstance, ctx: ServerContext, options: AuthOptions): void {
  const limiter = createFailureLimiter(options.clock, {
    burst: options.failureBurst ?? 10,
    refillMs: options.failureRefillMs ?? 6000,
  });
  app.decorateRequest('actor', undefined);
  app.addHook('onRequest', async (request, reply) => {
    const access =
      request.routeOptions.config.access ?? routeAccess(request.method, request.routeOptions.url);
    if (access === 'public') return;
    // Only failures are limited: a valid token is always let through, even from an address that has
    // been presenting bad ones (a colleague behind the same NAT, a CLI after a typo in GAMEOPS_TOKEN).
    const refuse = (message: string): FastifyReply => {
      const waitMs = limiter.blockedFor(request.ip);
      if (waitMs > 0) {
        const seconds = Math.ceil(waitMs / 1000);
        return reply
          .code(429)
          .header('retry-after', String(seconds))
          .send({
            error: {
              code: 'unavailable',
              message: `too many failed authentications from ${request.ip}; retry in ${seconds}s`,
            },
          });
      }
      limiter.fail(request.ip);
      return unauthenticated(reply, message);
    };
    const header = request.headers.authorization;
    if (header === undefined || header.trim() === '') {
      return unauthenticated(
        reply,
        'authentication required: send Authorization: Bearer <token> (gameops tokens create)',
      );
    }
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!match) return refuse('the Authorization header must be "Bearer <token>"');
    const actor = await ctx.store().tokens.resolve(match[1]!);
    if (!actor) return refuse('the token is not valid: malformed, unknown, revoked or expired');
    request.actor = actor;
    if (!roleAtLeast(actor.role, access)) {
      const route = `${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]}`;
      throw new NotAllowedError(
        `${actor.name} (${actor.role}) may not ${route}: needs ${rolesFrom(access)}`,
        {
          details: { actor: actor.id, role: actor.role, needs: access },
        },
      );
    }
    return undefined;
  });
}

function unauthenticated(reply: FastifyReply, message: string): FastifyReply {
  return reply
    .code(401)
    .header('www-authenticate', 'Bearer realm="gameops"')
    .send({ error: { code: 'unauthenticated', message } });
}

/** Per-address token buckets of failed authentications. */
export interface FailureLimiter {
  /** Milliseconds until this address may try again; 0 when it may now. */
  blockedFor(address: string): number;
  /** Counts one failed authentication. */
  fail(address: string): void;
  /** Addresses tracked (for tests). */
  size(): number;
}

/** Addresses remembered at most; full buckets are forgotten first. */
const MAX_TRACKED = 10_000;

export function createFailureLimiter(
  clock: Clock,
  options: { burst: number; refillMs: number },
): FailureLimiter {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const refilled = (address: string, now: number): number => {
    const bucket = buckets.get(address);
    if (!bucket) return options.burst;
    return Math.min(options.burst, bucket.tokens + (now - bucket.at) / options.refillMs);
  };
  const prune = (now: number): void => {
    for (const address of buckets.keys()) {
      if (buckets.size < MAX_TRACKED) return;
      if (refilled(address, now) >= options.burst) buckets.delete(address);
    }
    // Still full of addresses that failed recently: forget the oldest.
    for (const address of buckets.keys()) {
      if (buckets.size < MAX_TRACKED) return;
      buckets.delete(address);
    }
  };
  return {
    blockedFor(address) {
      const tokens = refilled(address, clock.now().getTime());
      return tokens >= 1 ? 0 : Math.ceil((1 - tokens) * options.refillMs);
    },
    fail(address) {
      const now = clock.now().getTime();
      const tokens = Math.max(0, refilled(address, now) - 1);
      buckets.delete(address);
      if (buckets.size >= MAX_TRACKED) prune(now);
      buckets.set(address, { tokens, at: now });
    },
    size: () => buckets.size,
  };
}
