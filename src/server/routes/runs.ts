import { Readable } from 'node:stream';
import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { errorMessage, InputError, toGameopsError } from '../../core/index.ts';
import { openRunbooks } from '../../app/index.ts';
import {
  TERMINAL_RUN_STATUSES,
  type RunEvent,
  type RunService,
  type RunStatus,
} from '../../runbooks/model.ts';
import type { ServerContext } from '../context.ts';
import { errorSchema } from '../schemas.ts';
import { actorOf } from '../auth.ts';
import {
  paramsSchema,
  plannedStepSchema,
  roleSchema,
  runbookNameSchema,
  stepKindSchema,
} from './runbooks.ts';

/*
 * Schemas of the run API; `gameops runs … --json` prints the same shapes.
 */

export const RUN_STATUSES = [
  'queued',
  'running',
  'waiting',
  'paused',
  'needs-verification',
  'succeeded',
  'failed',
  'cancelled',
] as const satisfies readonly RunStatus[];

const runStatusSchema = z.enum(RUN_STATUSES);
const stepStatusSchema = z.enum([
  'pending',
  'running',
  'retrying',
  'waiting',
  'needs-verification',
  'succeeded',
  'warned',
  'failed',
  'skipped',
  'cancelled',
  'compensated',
]);
const triggerSchema = z.enum(['cli', 'api', 'schedule', 'alert', 'runbook']);
const isoTime = z.string().describe('ISO 8601');

export const actorSchema = z
  .object({
    id: z.string().describe('`token:<id>`, `local:<os user>`, `schedule:<name>`, `system`'),
    name: z.string(),
    role: roleSchema,
    kind: z.enum(['token', 'local', 'schedule', 'system']),
  })
  .meta({ id: 'Actor' });

const runIdSchema = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/, 'a run id');
const stepIdSchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'a step id: letters, digits, "_", "-" and "." (group.child)');

export const approvalViewSchema = z
  .object({
    planHash: z.string().describe('sha256 of the covered steps’ resolved targets and arguments.'),
    requestedAt: isoTime,
    expiresAt: isoTime,
    covers: z.array(plannedStepSchema),
    decision: z.enum(['approved', 'rejected']).optional(),
    decidedBy: actorSchema.optional(),
    decidedAt: isoTime.optional(),
    comment: z.string().optional(),
    message: z.string().optional().describe('The approval message, templates resolved when requested.'),
  })
  .meta({ id: 'Approval' });

export const stepStateSchema = z
  .object({
    id: z.string(),
    kind: stepKindSchema,
    status: stepStatusSchema,
    attempt: z.number(),
    fence: z.number(),
    startedAt: isoTime.optional(),
    finishedAt: isoTime.optional(),
    notBefore: isoTime.optional().describe('When a retry or the next poll of a wait is due.'),
    output: z.unknown().optional(),
    error: z.object({ code: z.string(), message: z.string() }).optional(),
    approval: approvalViewSchema.optional(),
    childRunId: z.string().optional(),
  })
  .meta({ id: 'StepState' });

const runSummaryFields = {
  id: z.string(),
  runbook: z.string(),
  version: z.string(),
  status: runStatusSchema,
  trigger: triggerSchema,
  requestedBy: actorSchema,
  createdAt: isoTime,
  startedAt: isoTime.optional(),
  finishedAt: isoTime.optional(),
  reason: z.string().optional().describe('One line: why it failed, what it waits for.'),
  parentRunId: z.string().optional(),
  outcome: z
    .enum(['ok', 'warn', 'fail'])
    .optional()
    .describe('A succeeded run: fail when a check failed (and the run went on), warn when one warned.'),
};

export const runSummarySchema = z.object(runSummaryFields).meta({ id: 'RunSummary' });

export const runViewSchema = z
  .object({
    ...runSummaryFields,
    params: z.record(z.string(), z.unknown()).describe('Secrets masked.'),
    definitionHash: z.string(),
    steps: z.array(stepStateSchema),
  })
  .meta({ id: 'Run' });

export const runEventSchema = z
  .object({
    seq: z.number().describe('Grows by one per event of the run.'),
    runId: z.string(),
    at: isoTime,
    type: z.enum(['run', 'step', 'log']),
    stepId: z.string().optional(),
    status: z.union([runStatusSchema, stepStatusSchema]).optional(),
    message: z.string().optional().describe('log: the line (masked); run/step: a reason.'),
  })
  .meta({ id: 'RunEvent' });

/**
 * The body that starts a run (POST /api/runs, and a run for an incident): `trigger` is `cli` when
 * `command` (e.g. `gameops run`) sent it to this server.
 */
export function startRunBody(command: string) {
  return z.strictObject({
    runbook: runbookNameSchema,
    params: paramsSchema.default({}),
    idempotencyKey: z.string().min(1).max(200).optional(),
    trigger: z
      .enum(['api', 'cli'])
      .default('api')
      .describe(`cli: started by \`${command}\` talking to this server.`),
  });
}

const runParams = z.object({ id: runIdSchema });
const stepParams = z.object({ id: runIdSchema, step: stepIdSchema });
const note = z.string().max(2000, 'at most 2000 characters');

const statusList = z
  .string()
  .max(200)
  .transform((text, ctx) => {
    const out: RunStatus[] = [];
    for (const raw of text.split(',')) {
      const s = raw.trim();
      if (s === '') continue;
      if (!(RUN_STATUSES as readonly string[]).includes(s)) {
        ctx.addIssue({ code: 'custom', message: `"${s}" is not a run status (${RUN_STATUSES.join(', ')})` });
        return z.NEVER;
      }
      out.push(s as RunStatus);
    }
    return out;
  })
  .describe(`Statuses separated by commas: ${RUN_STATUSES.join(', ')}.`);

const listQuery = z.strictObject({
  runbook: runbookNameSchema.optional(),
  status: statusList.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  before: runIdSchema.optional().describe('Runs created before this run (paging, newest first).'),
});

const MAX_WAIT_MS = 60_000;
const eventsQuery = z.strictObject({
  after: z.coerce.number().int().min(0).optional().describe('Only events after this sequence number.'),
  waitMs: z.coerce
    .number()
    .int()
    .min(0)
    .max(MAX_WAIT_MS)
    .optional()
    .describe('JSON only (Accept: application/json): wait up to this long for the first new event.'),
});

const runResponses = {
  200: runViewSchema,
  400: errorSchema,
  401: errorSchema,
  403: errorSchema,
  404: errorSchema,
  409: errorSchema,
  503: errorSchema,
};

export interface RunRoutesOptions {
  /** Heartbeat comment interval of event streams. @default 15 s */
  heartbeatMs?: number;
}

/** Runs over HTTP: start, list, show, the event stream, approvals, ticks, verification, control. */
export function runRoutes(ctx: ServerContext, options: RunRoutesOptions = {}): FastifyPluginAsyncZod {
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const service = (): Promise<RunService> => openRunbooks(ctx.resources);
  /** Open event streams: ended when the server starts closing, so they do not hold it open. */
  const streams = new Set<AbortController>();

  return async (app) => {
    app.addHook('preClose', async () => {
      for (const c of streams) c.abort();
    });

    app.post(
      '/api/runs',
      {
        schema: {
          summary:
            'Start a run. Parameters are validated against the runbook (400 names the field). The same ' +
            'idempotencyKey returns the first run instead of starting another.',
          body: startRunBody('gameops run'),
          response: { ...runResponses, 201: runViewSchema },
        },
      },
      async (request, reply) => {
        const { runbook, params, idempotencyKey, trigger } = request.body;
        const view = await (
          await service()
        ).start(
          { runbook, params, trigger, ...(idempotencyKey !== undefined ? { idempotencyKey } : {}) },
          actorOf(request),
        );
        void reply.code(201).header('location', `/api/runs/${encodeURIComponent(view.id)}`);
        return view;
      },
    );

    app.get(
      '/api/runs',
      {
        schema: {
          summary: 'Runs of this service and environment, newest first.',
          querystring: listQuery,
          response: {
            200: z.object({ runs: z.array(runSummarySchema) }),
            400: errorSchema,
            401: errorSchema,
            403: errorSchema,
          },
        },
      },
      async (request) => {
        const { runbook, status, limit, before } = request.query;
        const runs = await (
          await service()
        ).list(
          {
            limit,
            ...(runbook !== undefined ? { runbook } : {}),
            ...(status !== undefined && status.length > 0 ? { status } : {}),
            ...(before !== undefined ? { before } : {}),
          },
          actorOf(request),
        );
        return { runs };
      },
    );

    app.get(
      '/api/runs/:id',
      {
        schema: {
          summary: 'One run: its steps, attempts, errors, outputs and approvals.',
          params: runParams,
          response: runResponses,
        },
      },
      async (request) => (await service()).get(request.params.id, actorOf(request)),
    );

    app.get(
      '/api/runs/:id/events',
      {
        schema: {
          summary:
            'The run’s events as server-sent events (`id: <seq>`, `event: run|step|log`, `data: <RunEvent JSON>`), ' +
            'from the start or after `after` / the Last-Event-ID header, then live; a `: heartbeat` comment every ' +
            '15 s. The stream ends when the run is terminal and every event was sent. With ' +
            '`Accept: application/json`: `{"events": [...]}` after `after`, waiting up to `waitMs` for the first.',
          params: runParams,
          querystring: eventsQuery,
          headers: z.object({
            'last-event-id': z.string().regex(/^\d+$/, 'a sequence number').optional(),
          }),
          response: {
            200: z.unknown().describe('text/event-stream of RunEvent, or (JSON) {"events": RunEvent[]}'),
            400: errorSchema,
            401: errorSchema,
            403: errorSchema,
            404: errorSchema,
          },
        },
      },
      async (request, reply) => {
        const runs = await service();
        const actor = actorOf(request);
        const runId = request.params.id;
        const lastEventId = request.headers['last-event-id'];
        // An EventSource that reconnects repeats its URL (and its ?after=) and adds Last-Event-ID, which is
        // where it really is.
        const after = lastEventId !== undefined ? Number(lastEventId) : (request.query.after ?? 0);
        if (!Number.isSafeInteger(after))
          throw new InputError('headers.last-event-id: not a sequence number');
        // Unknown run or not allowed: an error answer, before any stream starts.
        let view = await runs.get(runId, actor);

        const controller = new AbortController();
        const signal = controller.signal;
        reply.raw.on('close', () => {
          controller.abort();
          streams.delete(controller);
        });

        if (wantsJson(request.headers.accept)) {
          const events = await runs.events(runId, after, actor, {
            waitMs: request.query.waitMs ?? 0,
            signal: AbortSignal.any([signal, ctx.shutdownSignal]),
          });
          return { events };
        }
        if (request.query.waitMs !== undefined)
          throw new InputError('querystring.waitMs: only with Accept: application/json');

        streams.add(controller);
        // A stream holds its connection for as long as it lasts; when it ends the connection goes too.
        void reply.header('connection', 'close');
        const log = ctx.resources.log;
        async function* sse(): AsyncGenerator<string> {
          if (!reply.raw.headersSent) reply.raw.flushHeaders();
          let seq = after;
          try {
            // Tells EventSource clients how long to wait before reconnecting.
            yield 'retry: 2000\n\n';
            while (!signal.aborted) {
              const terminalBefore = TERMINAL_RUN_STATUSES.includes(view.status);
              const events = await runs.events(runId, seq, actor, {
                waitMs: terminalBefore ? 0 : heartbeatMs,
                signal,
              });
              if (signal.aborted) return;
              for (const event of events) {
                seq = Math.max(seq, event.seq);
                yield frame(event);
              }
              if (events.length > 0) {
                const last = events.findLast((e) => e.type === 'run');
                if (last?.status) view = { ...view, status: last.status as RunStatus };
                continue;
              }
              // Nothing new: the run is over (everything was sent), or it is quiet (heartbeat).
              if (terminalBefore) return;
              view = await runs.get(runId, actor);
              if (!TERMINAL_RUN_STATUSES.includes(view.status)) yield ': heartbeat\n\n';
            }
          } catch (err) {
            if (signal.aborted) return;
            const g = toGameopsError(err);
            if (g.code === 'internal')
              log.error({ runId, err: errorMessage(err) }, 'run event stream failed');
            const message = g.code === 'internal' ? 'internal error' : g.message;
            yield `event: error\ndata: ${JSON.stringify({ error: { code: g.code, message } })}\n\n`;
          } finally {
            streams.delete(controller);
          }
        }
        return reply
          .header('content-type', 'text/event-stream; charset=utf-8')
          .header('cache-control', 'no-store')
          .header('x-accel-buffering', 'no')
          .send(Readable.from(sse(), { objectMode: false }));
      },
    );

    app.post(
      '/api/runs/:id/approvals/:step',
      {
        schema: {
          summary:
            'Approve or reject an approval step. `planHash` is the hash the approver was shown (GET the run: ' +
            'steps[].approval.planHash); if the plan changed since, or the request expired, 409; the requester ' +
            'when four-eyes applies, 403.',
          params: stepParams,
          body: z.strictObject({
            decision: z.enum(['approve', 'reject']),
            planHash: z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 hex hash (64 characters)'),
            comment: note.optional(),
          }),
          response: runResponses,
        },
      },
      async (request) => {
        const { decision, planHash, comment } = request.body;
        return (await service()).decide(
          {
            runId: request.params.id,
            stepId: request.params.step,
            decision,
            planHash,
            ...(comment !== undefined ? { comment } : {}),
          },
          actorOf(request),
        );
      },
    );

    app.post(
      '/api/runs/:id/steps/:step/complete',
      {
        schema: {
          summary: 'Tick a manual step, with a note and (when the step asks for it) an evidence link.',
          params: stepParams,
          body: z
            .strictObject({ note: note.optional(), evidence: z.string().max(2000).optional() })
            .nullish(),
          response: runResponses,
        },
      },
      async (request) => {
        const { note: text, evidence } = request.body ?? {};
        return (await service()).complete(
          {
            runId: request.params.id,
            stepId: request.params.step,
            ...(text !== undefined ? { note: text } : {}),
            ...(evidence !== undefined ? { evidence } : {}),
          },
          actorOf(request),
        );
      },
    );

    app.post(
      '/api/runs/:id/steps/:step/verify',
      {
        schema: {
          summary:
            'Settle a needs-verification step: `done` (it took effect: counts as succeeded) or `not-done` ' +
            '(run it again).',
          params: stepParams,
          body: z.strictObject({ outcome: z.enum(['done', 'not-done']), note: note.optional() }),
          response: runResponses,
        },
      },
      async (request) => {
        const { outcome, note: text } = request.body;
        return (await service()).verify(
          {
            runId: request.params.id,
            stepId: request.params.step,
            outcome,
            ...(text !== undefined ? { note: text } : {}),
          },
          actorOf(request),
        );
      },
    );

    app.post(
      '/api/runs/:id/cancel',
      {
        schema: {
          summary: 'Cancel a run: running steps are aborted; compensation runs when the runbook asks for it.',
          params: runParams,
          body: z.strictObject({ reason: note.optional() }).nullish(),
          response: runResponses,
        },
      },
      async (request) =>
        (await service()).cancel(request.params.id, actorOf(request), request.body?.reason ?? undefined),
    );

    app.post(
      '/api/runs/:id/pause',
      {
        schema: {
          summary: 'Pause a run: running steps finish, nothing new starts until resume.',
          params: runParams,
          body: z.strictObject({}).nullish(),
          response: runResponses,
        },
      },
      async (request) => (await service()).pause(request.params.id, actorOf(request)),
    );

    app.post(
      '/api/runs/:id/resume',
      {
        schema: {
          summary: 'Resume a paused run.',
          params: runParams,
          body: z.strictObject({}).nullish(),
          response: runResponses,
        },
      },
      async (request) => (await service()).resume(request.params.id, actorOf(request)),
    );

    app.post(
      '/api/runs/:id/retry',
      {
        schema: {
          summary:
            'Run a failed or cancelled run again from step `from` (and everything after it), with `params` ' +
            'overriding some parameters.',
          params: runParams,
          body: z.strictObject({ from: stepIdSchema, params: paramsSchema.optional() }),
          response: runResponses,
        },
      },
      async (request) => {
        const { from, params } = request.body;
        return (await service()).retry(
          { runId: request.params.id, from, ...(params !== undefined ? { params } : {}) },
          actorOf(request),
        );
      },
    );
  };
}

/** One event as a server-sent event. JSON has no raw newlines, so `data` is one line. */
function frame(event: RunEvent): string {
  return `id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

/** JSON only when the client asks for it over an event stream (EventSource and curl get the stream). */
function wantsJson(accept: string | undefined): boolean {
  if (!accept) return false;
  const types = accept.split(',').map((t) => t.split(';')[0]?.trim().toLowerCase());
  return types.includes('application/json') && !types.includes('text/event-stream');
}
