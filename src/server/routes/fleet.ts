import { Readable } from 'node:stream';
import { z } from 'zod';
import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { errorMessage, InputError, NotFoundError, toGameopsError } from '../../core/index.ts';
import { openFleet } from '../../app/index.ts';
import type { Fleet, RolloutResult, WaitOptions } from '../../platform/index.ts';
import type { ServerContext } from '../context.ts';
import { httpStatusFor } from '../errors.ts';
import { createOperationRegistry, type OperationControl } from '../operations.ts';
import { errorSchema } from '../schemas.ts';

/*
 * Schemas. They validate what comes in, and they are the documentation (OpenAPI) of what goes out; the
 * JSON the CLI prints with `gameops fleet … --json` has the same shapes.
 */

const MAX_REPLICAS = 1000;
const instanceName = z.string().min(1).max(253);
const versionName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/, 'letters, digits, ".", "_", "+" and "-", at most 128');
const playerMessage = z.string().min(1).max(500, 'at most 500 characters');

const booleanish = z
  .enum(['true', 'false', '1', '0'], { error: 'true or false' })
  .transform((v) => v === 'true' || v === '1');

/** `k=v,k2=v2` into a label map (the same rules as the CLI's `-l`). */
const selectorSchema = z
  .string()
  .max(4096)
  .transform((text, ctx) => {
    const labels: Record<string, string> = {};
    for (const raw of text.split(',')) {
      const pair = raw.trim();
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      const key = eq < 0 ? '' : pair.slice(0, eq).trim();
      const value = eq < 0 ? '' : pair.slice(eq + 1).trim();
      if (key === '' || key.length > 317 || value.length > 63) {
        ctx.addIssue({ code: 'custom', message: `"${pair}" is not key=value (key 1-317, value at most 63)` });
        return z.NEVER;
      }
      labels[key] = value;
    }
    return labels;
  })
  .describe('Label selector, `key=value` pairs separated by commas; all must match.');

const isoTime = z.string().describe('ISO 8601');

export const instanceSchema = z.object({
  name: z.string(),
  phase: z.enum(['pending', 'running', 'crashloop', 'failed', 'stopped', 'unknown']),
  ready: z.boolean(),
  restarts: z.number(),
  startedAt: isoTime.optional(),
  version: z.string(),
  node: z.string().optional(),
  opsUrl: z.string().optional(),
  labels: z.record(z.string(), z.string()),
  reason: z.string().optional(),
});

const percentiles = z.looseObject({ p50: z.number(), p99: z.number(), max: z.number() });

/** What a game server said on `GET /ops/status` (docs/game-server-contract.md); extra fields pass through. */
export const gameStatusSchema = z.looseObject({
  instance: z.string().optional(),
  version: z.string().optional(),
  playersOnline: z.number(),
  acceptingLogins: z.boolean().optional(),
  maintenance: z
    .looseObject({
      enabled: z.boolean(),
      message: z.string().nullable().optional(),
      startsAt: z.string().nullable().optional(),
    })
    .optional(),
  draining: z.boolean().optional(),
  tickLagMs: percentiles.optional(),
  tickDurationMs: percentiles.optional(),
});

export const gateSchema = z
  .object({
    closed: z.boolean(),
    message: z.string().optional(),
    startsAt: isoTime.optional(),
  })
  .meta({ id: 'FleetGate' });

export const autoscalerSchema = z
  .object({
    enabled: z.boolean(),
    name: z.string().optional(),
    currentReplicas: z.number(),
    desiredReplicas: z.number(),
    minReplicas: z.number().optional(),
    maxReplicas: z.number().optional(),
    metrics: z.array(
      z.object({ name: z.string(), current: z.string().optional(), target: z.string().optional() }),
    ),
    conditions: z.array(z.object({ type: z.string(), status: z.string(), message: z.string().optional() })),
  })
  .meta({ id: 'FleetAutoscaler' });

export const fleetStatusSchema = z
  .object({
    platform: z.string(),
    target: z.string(),
    instances: z.array(
      instanceSchema.extend({ game: gameStatusSchema.optional(), gameProblem: z.string().optional() }),
    ),
    totals: z.object({
      instances: z.number(),
      ready: z.number(),
      playersOnline: z.number(),
      notAnswering: z.number(),
    }),
    versions: z.array(z.string()),
    gate: gateSchema,
    autoscaler: autoscalerSchema.optional(),
    autoscalerProblem: z.string().optional(),
  })
  .meta({ id: 'FleetStatus' });

const usageRow = z.object({ name: z.string(), cpuMillicores: z.number(), memoryBytes: z.number() });
export const usageSchema = z
  .object({
    at: isoTime,
    windowMs: z.number(),
    instances: z.array(usageRow),
    nodes: z.array(
      usageRow.extend({
        cpuCapacityMillicores: z.number().optional(),
        memoryCapacityBytes: z.number().optional(),
      }),
    ),
  })
  .meta({ id: 'FleetUsage' });

const outcomeSchema = z.object({ instance: z.string(), ok: z.boolean(), error: z.string().optional() });

export const gateResultSchema = z
  .object({
    gate: gateSchema,
    status: z.enum(['ok', 'partial']).describe('partial: some ready instance did not confirm'),
    instances: z.array(outcomeSchema),
  })
  .meta({ id: 'FleetGateResult' });

export const rolloutProgressSchema = z
  .object({
    operation: z.string(),
    desired: z.number(),
    updated: z.number(),
    ready: z.number(),
    available: z.number(),
    message: z.string(),
  })
  .meta({ id: 'RolloutProgress' });

/** A finished scale/restart/set-version/rollback, with the gate re-applied when it is closed (ADR 0006). */
export const rolloutOutcomeSchema = z
  .object({
    rollout: z.object({
      operation: z.string(),
      version: z.string(),
      previousVersion: z.string().optional(),
      replicas: z.number(),
      durationMs: z.number(),
      progress: rolloutProgressSchema,
    }),
    gate: gateResultSchema.optional(),
    gateProblem: z.string().optional(),
  })
  .meta({ id: 'RolloutOutcome' });

export const drainResultSchema = z
  .object({
    status: z.enum(['empty', 'timeout', 'partial']),
    playersRemaining: z.number(),
    instances: z.array(outcomeSchema.extend({ playersRemaining: z.number().optional() })),
    waitedMs: z.number(),
  })
  .meta({ id: 'DrainResult' });

const diagnosticKind = z.enum(['cpu-profile', 'heap-snapshot', 'stack-dump']);

export const artefactSchema = z
  .object({
    instance: z.string(),
    kind: diagnosticKind,
    path: z.string(),
    bytes: z.number(),
    sha256: z.string(),
    createdAt: isoTime,
  })
  .meta({ id: 'Artefact' });

const operationBase = {
  id: z.uuid(),
  description: z.string(),
  request: z.record(z.string(), z.unknown()).describe('The validated input the operation was started with.'),
  status: z.enum(['running', 'succeeded', 'failed']),
  startedAt: isoTime,
  finishedAt: isoTime.optional(),
  error: errorSchema.shape.error.optional(),
};

export const operationSchema = z
  .discriminatedUnion('kind', [
    z.object({
      ...operationBase,
      kind: z.enum(['scale', 'restart', 'set-version', 'rollback']),
      progress: rolloutProgressSchema.optional(),
      result: rolloutOutcomeSchema.optional(),
    }),
    z.object({
      ...operationBase,
      kind: z.literal('drain'),
      progress: z.object({ playersRemaining: z.number() }).optional(),
      result: drainResultSchema.optional(),
    }),
    z.object({
      ...operationBase,
      kind: z.literal('diagnostics'),
      progress: z.never().optional(),
      result: artefactSchema.optional(),
    }),
  ])
  .meta({ id: 'FleetOperation' });

/** A failed operation (with ?wait=true) or a plain error. The operation is tried first: it has an id. */
const operationOrError = z.union([operationSchema, errorSchema]);

const operationResponses = {
  200: operationSchema.describe('?wait=true: the operation succeeded'),
  202: operationSchema.describe('Started; poll the Location header'),
  400: operationOrError,
  403: errorSchema,
  404: operationOrError,
  409: operationOrError,
  500: operationOrError,
  503: operationOrError,
};

const waitQuery = z.strictObject({
  wait: booleanish
    .optional()
    .describe('true: answer when the operation has finished (200, or the error status with the operation)'),
});

const timeoutSeconds = z
  .number()
  .int()
  .min(1)
  .max(6 * 3600)
  .optional()
  .describe('Stop waiting after this many seconds (default: the platform’s rolloutTimeout).');

const selectorQuery = z.strictObject({ selector: selectorSchema.optional() });

const logsQuery = z.strictObject({
  instance: instanceName.optional().describe('One instance; default: every selected instance.'),
  selector: selectorSchema.optional(),
  sinceSeconds: z.coerce
    .number()
    .int()
    .min(1)
    .max(30 * 86_400)
    .optional(),
  tail: z.coerce.number().int().min(0).max(100_000).optional(),
  follow: booleanish.optional().describe('Keep streaming new lines until the client disconnects.'),
});

const countQuery = z.strictObject({
  pattern: z.string().min(1).max(1000).describe('A plain substring, e.g. ERROR.'),
  instance: instanceName.optional(),
  selector: selectorSchema.optional(),
  sinceSeconds: z.coerce
    .number()
    .int()
    .min(1)
    .max(30 * 86_400)
    .optional(),
});

type RolloutOutcome = z.output<typeof rolloutOutcomeSchema>;
/** Operations are built by the registry (kinds as strings); this route module only starts known kinds. */
type OperationBody = z.input<typeof operationSchema>;

/** The fleet over HTTP: status, usage, logs, the traffic gate, and long operations run in the background. */
export function fleetRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  let opening: Promise<Fleet> | undefined;
  /** One fleet per server, opened at first use; a failed open (no `platform:` section) is retried next time. */
  const fleet = (): Promise<Fleet> => {
    opening ??= openFleet(ctx.resources).catch((err: unknown) => {
      opening = undefined;
      throw err;
    });
    return opening;
  };
  const operations = createOperationRegistry({
    clock: ctx.resources.clock,
    track: (work) => ctx.track(work),
    signal: ctx.shutdownSignal,
    onInternalError: (op, err) =>
      ctx.resources.log.error(
        { operation: op.id, kind: op.kind, err: errorMessage(err) },
        'operation failed',
      ),
  });
  /** Streams that follow logs: ended when the server starts closing, so they do not hold it open. */
  const follows = new Set<AbortController>();

  return async (app) => {
    app.addHook('preClose', async () => {
      for (const c of follows) c.abort();
    });

    /** Starts an operation; answers 202 with a Location, or (`wait`) the finished operation. */
    async function launch(
      reply: FastifyReply,
      wait: boolean | undefined,
      options: Parameters<typeof operations.start>[0],
      work: (control: OperationControl) => Promise<unknown>,
    ): Promise<OperationBody> {
      const { operation, finished } = operations.start(options, work);
      void reply.header('location', `/api/fleet/operations/${operation.id}`);
      if (!wait) {
        void reply.code(202);
        return operation as OperationBody;
      }
      const done = await finished;
      void reply.code(done.error ? httpStatusFor(done.error.code) : 200);
      return done as OperationBody;
    }

    /** A rollout-type operation: one at a time, the gate re-applied after it when closed. */
    function rollout(
      f: Fleet,
      timeout: number | undefined,
      run: (options: WaitOptions) => Promise<RolloutResult>,
    ): (control: OperationControl) => Promise<RolloutOutcome> {
      return async (control) => {
        const result = await run({
          signal: control.signal,
          onProgress: (p) => control.progress(p),
          ...(timeout !== undefined ? { timeoutMs: timeout * 1000 } : {}),
        });
        return { rollout: result, ...(await f.gateAfterRollout(control.signal)) };
      };
    }

    app.get(
      '/api/fleet',
      {
        schema: {
          summary:
            'Every game-server instance joined with what its game server says, totals, the gate, the autoscaler.',
          querystring: selectorQuery,
          response: { 200: fleetStatusSchema, 400: errorSchema, 503: errorSchema },
        },
      },
      async (request) => {
        const f = await fleet();
        const { selector } = request.query;
        return f.status({ ...(selector ? { labels: selector } : {}), signal: ctx.shutdownSignal });
      },
    );

    app.get(
      '/api/fleet/usage',
      {
        schema: {
          summary: 'CPU and memory per node and per instance.',
          querystring: selectorQuery,
          response: { 200: usageSchema, 400: errorSchema, 503: errorSchema },
        },
      },
      async (request) => {
        const { selector } = request.query;
        return (await fleet()).platform.usage(selector ? { labels: selector } : {});
      },
    );

    app.get(
      '/api/fleet/autoscaler',
      {
        schema: {
          summary: 'The autoscaler of the fleet (`enabled: false` when there is none).',
          response: { 200: autoscalerSchema, 400: errorSchema, 503: errorSchema },
        },
      },
      async () => (await fleet()).platform.autoscaler(),
    );

    app.get(
      '/api/fleet/gate',
      {
        schema: {
          summary: 'The traffic gate as recorded in the game config (ADR 0006).',
          response: { 200: gateSchema, 400: errorSchema, 503: errorSchema },
        },
      },
      async () => (await fleet()).gate(),
    );

    app.post(
      '/api/fleet/gate',
      {
        schema: {
          summary:
            'Close or open the traffic gate: recorded in the game config, then told to every live instance (ready or not) ' +
            '(closed: new logins refused, connected players keep playing). `partial` names instances that did not confirm.',
          body: z.strictObject({
            closed: z.boolean(),
            message: playerMessage.optional().describe('What players are told.'),
            startsAt: z.iso
              .datetime({ offset: true, error: 'must be an ISO-8601 date-time' })
              .optional()
              .describe('When the maintenance starts (told to players; informational).'),
          }),
          response: { 200: gateResultSchema, 400: errorSchema, 403: errorSchema, 503: errorSchema },
        },
      },
      async (request) => {
        const { closed, message, startsAt } = request.body;
        return (await fleet()).setGate(
          { closed, ...(message !== undefined ? { message } : {}), ...(startsAt ? { startsAt } : {}) },
          ctx.shutdownSignal,
        );
      },
    );

    app.get(
      '/api/fleet/logs',
      {
        schema: {
          summary:
            'Log lines as NDJSON (`{"instance","line"}` per line), streamed as they are read. With follow=true ' +
            'the stream continues until the client disconnects. An error after the first line ends the stream ' +
            'with one `{"error":{code,message}}` line.',
          querystring: logsQuery,
          response: {
            200: z.unknown().describe('application/x-ndjson: one {"instance","line"} object per line'),
            400: errorSchema,
            404: errorSchema,
            503: errorSchema,
          },
        },
      },
      async (request, reply) => {
        const { instance, selector, sinceSeconds, tail, follow } = request.query;
        const f = await fleet();
        if (instance !== undefined) await requireInstance(f, instance);
        const controller = new AbortController();
        const signal = AbortSignal.any([controller.signal, ctx.shutdownSignal]);
        // The response closes when it is done or when the client goes away: stop reading either way.
        reply.raw.on('close', () => {
          controller.abort();
          follows.delete(controller);
        });
        if (follow) {
          follows.add(controller);
          // A follow holds its connection for as long as it lasts; when it ends (client gone, server
          // closing) the connection goes too, so an idle keep-alive socket cannot hold up a shutdown.
          void reply.header('connection', 'close');
        }

        const lines = f.platform.logs({
          ...(instance !== undefined ? { names: [instance] } : {}),
          ...(selector ? { labels: selector } : {}),
          ...(sinceSeconds !== undefined ? { sinceMs: sinceSeconds * 1000 } : {}),
          ...(tail !== undefined ? { tail } : {}),
          ...(follow ? { follow: true } : {}),
          signal,
        });
        async function* ndjson(): AsyncGenerator<string> {
          // Fastify writes the headers with the first chunk; a follow may wait long for its first line,
          // and the client should know at once that the stream is open. (The first pull happens when
          // Fastify pipes this stream, after it has set the headers.)
          if (!reply.raw.headersSent) reply.raw.flushHeaders();
          try {
            for await (const { instance: name, line } of lines)
              yield `${JSON.stringify({ instance: name, line })}\n`;
          } catch (err) {
            if (!signal.aborted) {
              const g = toGameopsError(err);
              yield `${JSON.stringify({ error: { code: g.code, message: g.code === 'internal' ? 'internal error' : g.message } })}\n`;
            }
          } finally {
            follows.delete(controller);
          }
        }
        return reply
          .header('content-type', 'application/x-ndjson; charset=utf-8')
          .header('cache-control', 'no-store')
          .send(Readable.from(ndjson(), { objectMode: false }));
      },
    );

    app.get(
      '/api/fleet/logs/count',
      {
        schema: {
          summary: 'Lines containing `pattern` (a plain substring) per instance, counted as they are read.',
          querystring: countQuery,
          response: {
            200: z.object({
              pattern: z.string(),
              perInstance: z.record(z.string(), z.number()),
              total: z.number(),
              bytesScanned: z.number(),
            }),
            400: errorSchema,
            404: errorSchema,
            503: errorSchema,
          },
        },
      },
      async (request, reply) => {
        const { pattern, instance, selector, sinceSeconds } = request.query;
        const f = await fleet();
        if (instance !== undefined) await requireInstance(f, instance);
        const controller = new AbortController();
        reply.raw.on('close', () => controller.abort());
        const count = await f.platform.countLines({
          pattern,
          ...(instance !== undefined ? { names: [instance] } : {}),
          ...(selector ? { labels: selector } : {}),
          ...(sinceSeconds !== undefined ? { sinceMs: sinceSeconds * 1000 } : {}),
          signal: AbortSignal.any([controller.signal, ctx.shutdownSignal]),
        });
        return { pattern, ...count };
      },
    );

    app.post(
      '/api/fleet/scale',
      {
        schema: {
          summary:
            'Set the number of instances and wait until that many are ready (in the background). Scaling to 0 ' +
            'stops every game server and needs `confirm: true`. One rollout-type operation at a time (409).',
          querystring: waitQuery,
          body: z.strictObject({
            replicas: z
              .number({ error: `an integer from 0 to ${MAX_REPLICAS}` })
              .int({ error: `an integer from 0 to ${MAX_REPLICAS}` })
              .min(0, `an integer from 0 to ${MAX_REPLICAS}`)
              .max(MAX_REPLICAS, `an integer from 0 to ${MAX_REPLICAS}`),
            confirm: z.boolean().optional().describe('Required (true) to scale to 0.'),
            timeoutSeconds,
          }),
          response: operationResponses,
        },
      },
      async (request, reply) => {
        const { replicas, confirm, timeoutSeconds: timeout } = request.body;
        if (replicas === 0 && confirm !== true)
          throw new InputError(
            'body.replicas: scaling to 0 stops every game server and disconnects every player; send "confirm": true',
          );
        const f = await fleet();
        return launch(
          reply,
          request.query.wait,
          { kind: 'scale', description: `scale to ${replicas}`, request: request.body, exclusive: 'rollout' },
          rollout(f, timeout, (o) => f.platform.scale(replicas, o)),
        );
      },
    );

    app.post(
      '/api/fleet/restart',
      {
        schema: {
          summary: 'Rolling restart, `maxUnavailable` instances at a time (in the background).',
          querystring: waitQuery,
          body: z
            .strictObject({
              instances: z.array(instanceName).min(1).max(MAX_REPLICAS).optional(),
              maxUnavailable: z.number().int().min(1).max(MAX_REPLICAS).optional(),
              timeoutSeconds,
            })
            .nullish(),
          response: operationResponses,
        },
      },
      async (request, reply) => {
        const { instances, maxUnavailable, timeoutSeconds: timeout } = request.body ?? {};
        const f = await fleet();
        return launch(
          reply,
          request.query.wait,
          {
            kind: 'restart',
            description: instances ? `restart of ${instances.join(', ')}` : 'restart',
            request: request.body ?? {},
            exclusive: 'rollout',
          },
          rollout(f, timeout, (o) =>
            f.platform.restart({
              ...o,
              ...(maxUnavailable !== undefined ? { maxUnavailable } : {}),
              ...(instances ? { filter: { names: instances } } : {}),
            }),
          ),
        );
      },
    );

    app.post(
      '/api/fleet/version',
      {
        schema: {
          summary:
            'Roll the fleet to another version (in the background); POST /api/fleet/rollback goes back.',
          querystring: waitQuery,
          body: z.strictObject({ version: versionName, timeoutSeconds }),
          response: operationResponses,
        },
      },
      async (request, reply) => {
        const { version, timeoutSeconds: timeout } = request.body;
        const f = await fleet();
        return launch(
          reply,
          request.query.wait,
          {
            kind: 'set-version',
            description: `set-version ${version}`,
            request: request.body,
            exclusive: 'rollout',
          },
          rollout(f, timeout, (o) => f.platform.setVersion(version, o)),
        );
      },
    );

    app.post(
      '/api/fleet/rollback',
      {
        schema: {
          summary: 'Roll back to the version before the last set-version (in the background).',
          querystring: waitQuery,
          body: z.strictObject({ timeoutSeconds }).nullish(),
          response: operationResponses,
        },
      },
      async (request, reply) => {
        const timeout = request.body?.timeoutSeconds;
        const f = await fleet();
        return launch(
          reply,
          request.query.wait,
          { kind: 'rollback', description: 'rollback', request: request.body ?? {}, exclusive: 'rollout' },
          rollout(f, timeout, (o) => f.platform.rollback(o)),
        );
      },
    );

    app.post(
      '/api/fleet/drain',
      {
        schema: {
          summary:
            'Ask every live instance (ready or not) to empty (new logins refused, players saved and disconnected at the ' +
            'deadline) and wait until no player is left. Cannot be undone. One drain at a time.',
          querystring: waitQuery,
          body: z
            .strictObject({
              message: playerMessage.optional(),
              deadlineSeconds: z.number().int().min(1).max(3600).optional(),
              selector: selectorSchema.optional(),
            })
            .nullish(),
          response: operationResponses,
        },
      },
      async (request, reply) => {
        const { message, deadlineSeconds, selector } = request.body ?? {};
        const f = await fleet();
        return launch(
          reply,
          request.query.wait,
          {
            kind: 'drain',
            description: `drain (deadline ${deadlineSeconds ?? 30} s)`,
            request: request.body ?? {},
            exclusive: 'drain',
          },
          (control) =>
            f.drain({
              ...(message !== undefined ? { message } : {}),
              ...(deadlineSeconds !== undefined ? { deadlineSeconds } : {}),
              ...(selector ? { filter: { labels: selector } } : {}),
              signal: control.signal,
              onProgress: (playersRemaining) => control.progress({ playersRemaining }),
            }),
        );
      },
    );

    app.post(
      '/api/fleet/diagnostics',
      {
        schema: {
          summary:
            'Take a CPU profile, heap snapshot or stack dump from one instance and store it as an artefact ' +
            '(path, size, sha256 in the result).',
          querystring: waitQuery,
          body: z
            .strictObject({
              instance: instanceName,
              kind: diagnosticKind,
              seconds: z.number().int().min(1).max(60).optional().describe('cpu-profile only (default 10).'),
            })
            .refine((b) => b.seconds === undefined || b.kind === 'cpu-profile', {
              path: ['seconds'],
              error: 'only for kind cpu-profile',
            }),
          response: operationResponses,
        },
      },
      async (request, reply) => {
        const { instance, kind, seconds } = request.body;
        const f = await fleet();
        await requireInstance(f, instance);
        return launch(
          reply,
          request.query.wait,
          { kind: 'diagnostics', description: `${kind} of ${instance}`, request: request.body },
          (control) =>
            f.diagnostics(instance, kind, {
              ...(seconds !== undefined ? { seconds } : {}),
              signal: control.signal,
            }),
        );
      },
    );

    app.get(
      '/api/fleet/operations',
      {
        schema: {
          summary:
            'Recent fleet operations of this server (the last 100 finished, and every running one), newest first.',
          response: { 200: z.object({ operations: z.array(operationSchema) }) },
        },
      },
      async () => ({ operations: operations.list() as OperationBody[] }),
    );

    app.get(
      '/api/fleet/operations/:id',
      {
        schema: {
          summary: 'One fleet operation: its status, latest progress, and result or error.',
          params: z.object({ id: z.uuid({ error: 'must be an operation id (UUID)' }) }),
          response: { 200: operationSchema, 400: errorSchema, 404: errorSchema },
        },
      },
      async (request) => {
        const op = operations.get(request.params.id);
        if (!op)
          throw new NotFoundError(
            `no fleet operation ${request.params.id} (this server keeps the last 100 since it started)`,
          );
        return op as OperationBody;
      },
    );
  };
}

async function requireInstance(f: Fleet, name: string): Promise<void> {
  const [found] = await f.platform.instances({ names: [name] });
  if (!found) throw new NotFoundError(`no instance named "${name}" on ${f.platform.describe()}`);
}
