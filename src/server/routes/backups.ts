import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import {
  backupDetail,
  backupSummary,
  checkBackupIdInput,
  checkBackupRequest,
  openBackups,
  type BackupRequest,
} from '../../app/backups.ts';
import { openRunbooks } from '../../app/index.ts';
import { COMPONENT_KINDS } from '../../backups/types.ts';
import { NotFoundError } from '../../core/index.ts';
import type { Actor, RunView } from '../../runbooks/model.ts';
import type { BackupSetRecord } from '../../store/index.ts';
import type { ServerContext } from '../context.ts';
import { actorOf } from '../auth.ts';
import { errorSchema } from '../schemas.ts';

/*
 * Backups over HTTP (runbook §5): the catalog (list, show, last verified restorable) and starting the
 * backup runbooks (create, verify, drill, restore). What changes anything goes through a runbook run, so
 * it is durable, audited and, for a restore, approval-gated inside the run. No secret is ever answered:
 * storage is described without credentials, and a drill's compared values of the platform's config
 * (Secrets) are left out.
 */

const isoTime = z.string().describe('ISO 8601');
const statusSchema = z.enum(['running', 'complete', 'failed', 'verified', 'drilled', 'pruned']);

export const backupSummarySchema = z
  .object({
    id: z.string(),
    status: statusSchema.describe('complete sets show how far they were proven: verified, drilled.'),
    state: z.enum(['running', 'complete', 'failed', 'pruned']).describe('The catalog state.'),
    createdAt: isoTime,
    completedAt: isoTime.nullable(),
    ageSeconds: z.number(),
    sizeBytes: z.number(),
    objects: z.number(),
    components: z.array(z.string()),
    storage: z.string().describe('Where it is stored (no credentials).'),
    requestedBy: z.string(),
    error: z.string().nullable(),
    verify: z.object({ at: isoTime, ok: z.boolean(), error: z.string().nullable() }).nullable(),
    drill: z.object({ at: isoTime, ok: z.boolean() }).nullable(),
    prunedAt: isoTime.nullable(),
  })
  .meta({ id: 'BackupSet' });

const componentViewSchema = z.object({
  kind: z.string(),
  objects: z.number(),
  sizeBytes: z.number().describe('Stored (compressed, encrypted).'),
  plainBytes: z.number().describe('Before compression and encryption.'),
  tool: z.object({ name: z.string(), version: z.string() }),
  source: z
    .record(z.string(), z.union([z.string(), z.number(), z.null()]))
    .describe('Binlog position, offsets.'),
  notes: z.array(z.string()),
  startedAt: isoTime,
  completedAt: isoTime,
});

const drillViewSchema = z.object({
  ok: z.boolean(),
  components: z.array(
    z.object({
      component: z.string(),
      ok: z.boolean(),
      checks: z.array(
        z.object({
          subject: z.string(),
          ok: z.boolean(),
          expected: z.string().optional(),
          actual: z.string().optional(),
          note: z.string().optional(),
        }),
      ),
      notes: z.array(z.string()),
      bytes: z.number(),
      durationMs: z.number(),
    }),
  ),
  errors: z.array(z.object({ component: z.string(), error: z.string() })),
});

export const backupDetailSchema = backupSummarySchema
  .extend({
    objectBytes: z
      .number()
      .nullable()
      .describe('Stored bytes of the objects (null until complete); sizeBytes adds the manifest.'),
    manifestBytes: z.number().nullable().describe("The manifest's bytes (null until complete)."),
    manifest: z
      .object({
        format: z.string(),
        gameopsVersion: z.string(),
        encryption: z.object({ kind: z.string(), recipients: z.array(z.string()) }),
        compression: z.object({ kind: z.string(), level: z.number() }),
        components: z.array(componentViewSchema),
      })
      .nullable()
      .describe('The manifest summary; null until the set is complete.'),
    lastDrill: drillViewSchema.nullable(),
  })
  .meta({ id: 'BackupSetDetail' });

const restorableSchema = z
  .object({
    restorable: z.array(
      z.object({
        component: z.string(),
        setId: z.string(),
        at: isoTime.describe('When a drill last proved it restorable.'),
        runId: z.string().nullable(),
      }),
    ),
  })
  .meta({ id: 'BackupRestorable' });

const startedSchema = z
  .object({
    runId: z.string(),
    runbook: z.string(),
    status: z.string(),
    location: z.string().describe('Follow the run here (GET, or /events for the stream).'),
  })
  .meta({ id: 'BackupRunStarted' });

// The id is checked in the handler (checkBackupId), so a malformed one is answered 400 naming it.
const idParams = z.object({ id: z.string().min(1).max(300) });
const componentsBody = z.array(z.enum(COMPONENT_KINDS)).min(1).max(COMPONENT_KINDS.length).optional();
const incidentField = z
  .string()
  .regex(/^(?:[Ii][Nn][Cc]-)?\d{1,9}$/, 'an incident id: INC-7, inc-7 or 7')
  .optional()
  .describe('Start the run for this incident: it is linked into its timeline.');

const errors = {
  400: errorSchema,
  401: errorSchema,
  403: errorSchema,
  404: errorSchema,
  409: errorSchema,
  503: errorSchema,
};

/** The backup catalog and the backup runbooks over HTTP. */
export function backupRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  const backups = () => openBackups(ctx.resources);
  const now = () => ctx.resources.clock.now();

  /** The set of this service, or 400 (malformed id, named) / 404 (unknown). */
  const known = async (id: string): Promise<BackupSetRecord> => {
    checkBackupIdInput(id);
    const { config } = ctx.resources;
    const set = await ctx.store().backups.get(id);
    if (!set || set.service !== config.service.name || set.environment !== config.service.environment)
      throw new NotFoundError(`no backup set ${id} (GET /api/backups lists them)`);
    return set;
  };

  /**
   * The set of a verify, drill or restore, checked before its run starts: 400 (malformed id, a target
   * that is not configured, a component not in the set), 404 (unknown set), 409 (not complete).
   */
  const checked = async (request: BackupRequest): Promise<BackupSetRecord> => {
    const set = await known(request.id);
    await checkBackupRequest(await backups(), ctx.resources.config, request);
    return set;
  };

  const start = async (
    runbook: string,
    params: Record<string, unknown>,
    actor: Actor,
    incident?: string,
  ): Promise<RunView> => {
    if (incident !== undefined) {
      const { openOps } = await import('../../app/ops.ts');
      return (await openOps(ctx.resources)).incidents.runRunbook(incident, runbook, params, actor, {
        trigger: 'api',
      });
    }
    return (await openRunbooks(ctx.resources)).start({ runbook, params, trigger: 'api' }, actor);
  };

  const started = (view: RunView) => ({
    runId: view.id,
    runbook: view.runbook,
    status: view.status,
    location: `/api/runs/${encodeURIComponent(view.id)}`,
  });

  return async (app) => {
    app.get(
      '/api/backups',
      {
        schema: {
          summary: 'Backup sets of this service and environment, newest first.',
          querystring: z.strictObject({ limit: z.coerce.number().int().min(1).max(500).default(100) }),
          response: { 200: z.object({ backups: z.array(backupSummarySchema) }), ...errors },
        },
      },
      async (request) => {
        const sets = await (await backups()).list({ limit: request.query.limit });
        const at = now();
        return { backups: sets.map((s) => backupSummary(s, at)) };
      },
    );

    app.get(
      '/api/backups/restorable',
      {
        schema: {
          summary: 'Per component, the newest set a drill proved restorable, and when.',
          response: { 200: restorableSchema, ...errors },
        },
      },
      async () => ({ restorable: await (await backups()).restorable() }),
    );

    app.get(
      '/api/backups/:id',
      {
        schema: {
          summary:
            'One set: state, size, components, the manifest summary (objects, sizes, tool versions, source ' +
            'positions, recipients, notes) and the last verify and drill. 400 for a malformed id, 404 for an unknown one.',
          params: idParams,
          response: { 200: backupDetailSchema, ...errors },
        },
      },
      async (request) => {
        await known(request.params.id);
        const { set, manifest } = await (await backups()).show(request.params.id);
        return backupDetail(set, manifest, now());
      },
    );

    app.post(
      '/api/backups',
      {
        schema: {
          summary:
            'Take a backup set: starts the `backup` runbook (create, verify, prune); 202 with the run.',
          body: z
            .strictObject({
              components: componentsBody,
              prune: z.boolean().default(true),
            })
            .default({ prune: true }),
          response: { 202: startedSchema, ...errors },
        },
      },
      async (request, reply) => {
        const { components, prune } = request.body;
        const view = await start('backup', { components: components ?? null, prune }, actorOf(request));
        void reply.code(202).header('location', `/api/runs/${encodeURIComponent(view.id)}`);
        return started(view);
      },
    );

    app.post(
      '/api/backups/:id/verify',
      {
        schema: {
          summary:
            'Verify a set: starts the `backup-verify` runbook; 202 with the run. 404 for an unknown set, 409 for ' +
            'one that is not complete.',
          params: idParams,
          response: { 202: startedSchema, ...errors },
        },
      },
      async (request, reply) => {
        const set = await checked({ id: request.params.id });
        const view = await start('backup-verify', { id: set.id }, actorOf(request));
        void reply.code(202).header('location', `/api/runs/${encodeURIComponent(view.id)}`);
        return started(view);
      },
    );

    app.post(
      '/api/backups/:id/drill',
      {
        schema: {
          summary:
            'Drill a set into scratch copies: starts the `backup-drill` runbook; 202 with the run. 400 for a ' +
            'component not in the set, 404 for an unknown set, 409 for one that is not complete.',
          params: idParams,
          body: z.strictObject({ components: componentsBody }).default({}),
          response: { 202: startedSchema, ...errors },
        },
      },
      async (request, reply) => {
        const set = await checked({ id: request.params.id, components: request.body.components ?? null });
        const view = await start(
          'backup-drill',
          { id: set.id, components: request.body.components ?? null },
          actorOf(request),
        );
        void reply.code(202).header('location', `/api/runs/${encodeURIComponent(view.id)}`);
        return started(view);
      },
    );

    app.post(
      '/api/backups/:id/restore',
      {
        schema: {
          summary:
            'Restore a set: starts the `backup-restore` runbook (operator or admin); the run waits for its ' +
            'approval before anything is replaced. 202 with the run. 400 for a target that is not configured or a ' +
            'component not in the set, 404 for an unknown set, 409 for one that is not complete; no run is started then.',
          params: idParams,
          body: z
            .strictObject({
              components: componentsBody,
              target: z
                .string()
                .min(1)
                .max(100)
                .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'original, or a backups.targets name')
                .default('original'),
              channel: z.string().min(1).max(100).optional(),
              incident: incidentField,
            })
            .default({ target: 'original' }),
          response: { 202: startedSchema, ...errors },
        },
      },
      async (request, reply) => {
        const { components, target, channel, incident } = request.body;
        const set = await checked({ id: request.params.id, components: components ?? null, target });
        const view = await start(
          'backup-restore',
          { id: set.id, components: components ?? null, target, channel: channel ?? null },
          actorOf(request),
          incident,
        );
        void reply.code(202).header('location', `/api/runs/${encodeURIComponent(view.id)}`);
        return started(view);
      },
    );
  };
}
