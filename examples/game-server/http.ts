/**
 * The HTTP side of the server: `/ops/*` (bearer token) and `/metrics` (open), as specified in
 * docs/game-server-contract.md. Players' WebSocket upgrades are handed to the game.
 *
 * Beyond the contract, this reference server has `POST /ops/debug/burn?ms=N` (same token): it keeps one
 * core busy for N ms in 20 ms slices (0 stops it), so that troubleshooting runbooks (high-cpu) have a
 * busy instance to find and profile.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import {
  BusyError,
  DIAGNOSTIC_FILES,
  DiagnosticUnavailableError,
  type DiagnosticKind,
  type Diagnostics,
} from './diagnostics.ts';
import type { Game } from './game.ts';
import type { Logger } from './log.ts';
import type { GameMetrics } from './metrics.ts';
import { playerMessageSchema } from './protocol.ts';

export const MAX_BODY_BYTES = 64 * 1024;
/** A diagnostic download may always take this long… */
const MIN_SEND_DEADLINE_MS = 10 * 60_000;
/** …and longer only at this average rate (bytes per second). */
const MIN_SEND_RATE = 1024 * 1024;
/** Default of `idleTimeoutMs`. */
export const DEFAULT_DIAGNOSTICS_IDLE_TIMEOUT_MS = 30_000;

const isoDate = z.iso.datetime({ offset: true, message: 'an ISO 8601 date-time, e.g. 2026-11-26T10:00:00Z' });

const maintenanceBody = z.strictObject({
  enabled: z.boolean(),
  message: playerMessageSchema.optional(),
  // Kept in UTC, so the same instant in another zone is the same state (idempotency).
  startsAt: isoDate.transform((v) => new Date(v).toISOString()).optional(),
});

/** `POST /ops/notice`: an announcement to players; `endsAt` may not come before `startsAt`. */
const noticeBody = z
  .strictObject({
    message: playerMessageSchema,
    startsAt: isoDate.transform((v) => new Date(v).toISOString()).optional(),
    endsAt: isoDate.transform((v) => new Date(v).toISOString()).optional(),
  })
  .refine((b) => b.startsAt === undefined || b.endsAt === undefined || b.endsAt >= b.startsAt, {
    path: ['endsAt'],
    message: 'must not be before startsAt',
  });

const drainBody = z.strictObject({
  message: playerMessageSchema.optional(),
  deadlineSeconds: z.number().int().min(1).max(3600).default(30),
});

const cpuProfileQuery = z.object({
  seconds: z.coerce.number().int().min(1).max(60).default(10),
});

/** `POST /ops/debug/burn?ms=N`: keep one core busy for N ms (0 stops a burn); for troubleshooting drills. */
const burnQuery = z.object({
  ms: z.coerce.number().int().min(0).max(600_000),
});
/** A burn spins this long at a time, then lets the event loop (ticks, requests) run. */
const BURN_SLICE_MS = 20;

type ErrorCode =
  | 'input'
  | 'unauthorized'
  | 'not_found'
  | 'not_allowed'
  | 'conflict'
  | 'too_large'
  | 'unavailable'
  | 'internal';

const STATUS_OF: Readonly<Record<ErrorCode, number>> = {
  input: 400,
  unauthorized: 401,
  not_found: 404,
  not_allowed: 405,
  conflict: 409,
  too_large: 413,
  unavailable: 503,
  internal: 500,
};

/** The client went away, or stopped reading, during a diagnostic: an abort, not a server error. */
class ClientGoneError extends Error {
  override readonly name = 'ClientGoneError';
}

/** Errors a response stream fails with when its client disconnects. */
const CLIENT_GONE_CODES = new Set([
  'ERR_STREAM_PREMATURE_CLOSE',
  'ECONNRESET',
  'EPIPE',
  'ERR_STREAM_DESTROYED',
]);

class HttpError extends Error {
  readonly code: ErrorCode;
  readonly headers: Record<string, string>;
  constructor(code: ErrorCode, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.code = code;
    this.headers = headers;
  }
}

export interface OpsHandlerOptions {
  game: Game;
  diagnostics: Diagnostics;
  metrics: GameMetrics;
  log: Logger;
  token: string;
  /**
   * A diagnostic download whose client reads nothing for this long is cut off (and the slot freed).
   * @default 30 s
   */
  idleTimeoutMs?: number;
}

/** Routes: path → allowed method. */
const ROUTES: Readonly<Record<string, 'GET' | 'POST'>> = {
  '/ops/status': 'GET',
  '/ops/maintenance': 'POST',
  '/ops/notice': 'POST',
  '/ops/drain': 'POST',
  '/ops/diagnostics/cpu-profile': 'POST',
  '/ops/diagnostics/heap-snapshot': 'POST',
  '/ops/diagnostics/stack-dump': 'POST',
  '/ops/debug/burn': 'POST',
  '/metrics': 'GET',
};

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

/** Builds the request handler for the HTTP server. */
export function createRequestHandler(
  options: OpsHandlerOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  const { game, diagnostics, metrics, log } = options;
  const expected = digest(options.token);
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_DIAGNOSTICS_IDLE_TIMEOUT_MS;
  /** Until when (performance.now()) a burn keeps the CPU busy, and whether one is running. */
  let burnUntil = 0;
  let burning = false;

  /** Spins for a slice, yields to the event loop, and goes on until `burnUntil`. */
  function burnSlice(): void {
    const sliceEnd = Math.min(burnUntil, performance.now() + BURN_SLICE_MS);
    while (performance.now() < sliceEnd) {
      // Busy on purpose: this is the load a CPU profile is meant to find.
    }
    if (performance.now() < burnUntil) setImmediate(burnSlice);
    else burning = false;
  }

  /** Constant time: both sides are hashed to the same length before comparing. */
  function authorised(req: IncomingMessage): boolean {
    const match = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '');
    if (!match?.[1]) return false;
    return timingSafeEqual(digest(match[1]), expected);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://game.invalid');
    const path = url.pathname;
    if (path === '/metrics') {
      if (req.method !== 'GET') throw new HttpError('not_allowed', 'use GET', { allow: 'GET' });
      const text = await metrics.registry.metrics();
      res.writeHead(200, { 'content-type': metrics.registry.contentType });
      res.end(text);
      return;
    }
    if (path === '/ops' || path.startsWith('/ops/')) {
      if (!authorised(req))
        throw new HttpError('unauthorized', 'missing or wrong bearer token', {
          'www-authenticate': 'Bearer',
        });
    }
    const method = ROUTES[path];
    if (method === undefined) throw new HttpError('not_found', `no such endpoint: ${path.slice(0, 100)}`);
    if (req.method !== method) throw new HttpError('not_allowed', `use ${method}`, { allow: method });

    switch (path) {
      case '/ops/status':
        return sendJson(res, 200, game.status());
      case '/ops/maintenance': {
        const body = parse(maintenanceBody, await readJson(req, false));
        refuseWhenShuttingDown();
        game.setMaintenance(body);
        return sendJson(res, 200, game.status());
      }
      case '/ops/notice': {
        const body = parse(noticeBody, await readJson(req, false));
        refuseWhenShuttingDown();
        return sendJson(res, 200, { delivered: game.announce(body) });
      }
      case '/ops/drain': {
        const body = parse(drainBody, await readJson(req, true));
        refuseWhenShuttingDown();
        game.drain(body);
        const status = game.status();
        return sendJson(res, 200, { ...status, playersRemaining: status.playersOnline });
      }
      case '/ops/diagnostics/cpu-profile': {
        const query = parse(cpuProfileQuery, Object.fromEntries(url.searchParams));
        await drainRequest(req);
        return withSlot('cpu-profile', async () => {
          const aborted = new AbortController();
          const onClose = (): void => {
            if (!res.writableFinished) aborted.abort(new ClientGoneError('the client went away'));
          };
          res.once('close', onClose);
          try {
            const profile = await diagnostics.cpuProfile(query.seconds, aborted.signal);
            sendFile(res, 'cpu-profile', profile);
          } finally {
            res.off('close', onClose);
          }
        });
      }
      case '/ops/diagnostics/heap-snapshot': {
        await drainRequest(req);
        return withSlot('heap-snapshot', async () => {
          const snapshot = await diagnostics.heapSnapshot();
          try {
            // Gone while V8 walked the heap: nobody to send it to.
            if (res.destroyed) throw new ClientGoneError('the client went away');
            res.writeHead(200, fileHeaders('heap-snapshot', snapshot.bytes));
            const guard = guardSend(res, snapshot.bytes);
            try {
              await pipeline(snapshot.stream, res);
            } catch (err) {
              const code = (err as { code?: unknown }).code;
              if (guard.reason() !== undefined || (typeof code === 'string' && CLIENT_GONE_CODES.has(code)))
                throw new ClientGoneError(guard.reason() ?? 'the client went away');
              throw err;
            }
          } finally {
            // Closes the (already unlinked) file: its data is gone with it.
            snapshot.stream.destroy();
          }
        });
      }
      case '/ops/diagnostics/stack-dump': {
        await drainRequest(req);
        return withSlot('stack-dump', async () => sendFile(res, 'stack-dump', diagnostics.stackDump()));
      }
      case '/ops/debug/burn': {
        const query = parse(burnQuery, Object.fromEntries(url.searchParams));
        await drainRequest(req);
        burnUntil = performance.now() + query.ms;
        if (query.ms > 0 && !burning) {
          burning = true;
          setImmediate(burnSlice);
        }
        log.warn({ ms: query.ms }, query.ms > 0 ? `burning CPU for ${query.ms} ms` : 'CPU burn stopped');
        return sendJson(res, 200, { burning: query.ms > 0, ms: query.ms });
      }
      default:
        throw new HttpError('not_found', `no such endpoint: ${path.slice(0, 100)}`);
    }
  }

  function refuseWhenShuttingDown(): void {
    if (game.shuttingDown) throw new HttpError('unavailable', 'the server is shutting down');
  }

  async function withSlot(kind: DiagnosticKind, work: () => Promise<void>): Promise<void> {
    let slot;
    try {
      slot = diagnostics.acquire(kind);
    } catch (err) {
      if (err instanceof BusyError) throw new HttpError('conflict', err.message);
      throw err;
    }
    log.info({ diagnostic: kind }, `diagnostic ${kind} started`);
    try {
      await work();
      log.info({ diagnostic: kind }, `diagnostic ${kind} sent`);
    } catch (err) {
      if (isAbort(err)) {
        const reason = err instanceof Error ? err.message : 'aborted';
        log.warn({ diagnostic: kind, reason }, `diagnostic ${kind} abandoned: ${reason}`);
        throw err;
      }
      if (err instanceof DiagnosticUnavailableError) {
        // Disk trouble is the server's (ERROR); a refusal up front only tells the caller (WARN).
        if (err.failed) log.error({ diagnostic: kind }, `diagnostic ${kind} failed: ${err.message}`);
        else log.warn({ diagnostic: kind }, `diagnostic ${kind} refused: ${err.message}`);
        throw new HttpError('unavailable', err.message);
      }
      throw err;
    } finally {
      slot.release();
    }
  }

  /**
   * Bounds the sending of a diagnostic: the client must keep reading (nothing read for `idleTimeoutMs`
   * cuts it off) and finish within 10 minutes or at 1 MiB/s on average, whichever is longer. A client
   * that stops reading would otherwise hold the socket, its buffers and (for a heap snapshot) the slot
   * for ever. Returns why the response was cut, once it has been.
   */
  function guardSend(res: ServerResponse, bytes: number): { reason: () => string | undefined } {
    let reason: string | undefined;
    res.setTimeout(idleTimeoutMs, () => {
      reason ??= `the client read nothing for ${idleTimeoutMs} ms`;
      res.destroy();
    });
    const deadlineMs = Math.max(MIN_SEND_DEADLINE_MS, (bytes / MIN_SEND_RATE) * 1000);
    const timer = setTimeout(() => {
      reason ??= `the download took longer than ${Math.round(deadlineMs / 1000)} s`;
      res.destroy();
    }, deadlineMs);
    res.once('close', () => {
      clearTimeout(timer);
      if (reason !== undefined) log.warn({ reason }, `diagnostic download cut off: ${reason}`);
    });
    return { reason: () => reason };
  }

  function fileHeaders(kind: DiagnosticKind, bytes: number): Record<string, string | number> {
    return {
      'content-type': DIAGNOSTIC_FILES[kind].contentType,
      'content-disposition': `attachment; filename="${diagnostics.filename(kind)}"`,
      'content-length': bytes,
      'cache-control': 'no-store',
    };
  }

  function sendFile(res: ServerResponse, kind: DiagnosticKind, text: string): void {
    const body = Buffer.from(text, 'utf8');
    res.writeHead(200, fileHeaders(kind, body.length));
    guardSend(res, body.length);
    res.end(body);
  }

  return (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (err instanceof HttpError) {
        sendError(res, err.code, err.message, err.headers);
        if (err.code === 'too_large') req.destroy();
        return;
      }
      if (isAbort(err)) {
        res.destroy();
        return;
      }
      metrics.errors.inc({ kind: 'internal' });
      log.error({ err, path: req.url?.slice(0, 100) }, 'internal error answering an ops request');
      sendError(res, 'internal', `internal error: ${err instanceof Error ? err.message : String(err)}`);
    });
  };
}

function isAbort(err: unknown): boolean {
  return err instanceof ClientGoneError || (err instanceof Error && err.name === 'AbortError');
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(text);
}

function sendError(
  res: ServerResponse,
  code: ErrorCode,
  message: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(STATUS_OF[code], {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(JSON.stringify({ error: { code, message } }));
}

/** Reads a JSON body of at most MAX_BODY_BYTES. An empty body is `{}` when `emptyOk`, else an error. */
async function readJson(req: IncomingMessage, emptyOk: boolean): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) throw new HttpError('too_large', `body larger than ${MAX_BODY_BYTES} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > MAX_BODY_BYTES) throw new HttpError('too_large', `body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') {
    if (emptyOk) return {};
    throw new HttpError('input', 'body: required (a JSON object)');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new HttpError('input', 'body: not valid JSON');
  }
}

/** Reads and discards a body the endpoint does not use (bounded like any other). */
async function drainRequest(req: IncomingMessage): Promise<void> {
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpError('too_large', `body larger than ${MAX_BODY_BYTES} bytes`);
  }
}

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = issue?.path.join('.') || 'body';
  const message =
    issue?.code === 'unrecognized_keys'
      ? `unknown field ${issue.keys.join(', ').slice(0, 100)}`
      : (issue?.message ?? 'invalid');
  throw new HttpError('input', `${field}: ${message}`);
}
