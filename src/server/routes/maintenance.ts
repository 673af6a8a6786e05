import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { openMaintenance } from '../../app/maintenance.ts';
import { checkWindowId } from '../../maintenance/time.ts';
import type { MaintenanceService } from '../../maintenance/service.ts';
import { MAINTENANCE_TASKS, type MaintenanceWindow } from '../../maintenance/types.ts';
import type { ServerContext } from '../context.ts';
import { actorOf } from '../auth.ts';
import { errorSchema } from '../schemas.ts';
import { planSchema } from './runbooks.ts';

/*
 * Maintenance windows over HTTP (runbook §4.1): list, show, plan (or a dry run: the maintenance run's
 * steps, the notices and the player-minutes estimate, nothing recorded) and cancel. Reading needs viewer;
 * planning and cancelling operator (routeAccess's default for changes). The server's loop sends the
 * notices and starts the runs.
 */

const isoTime = z.string().describe('ISO 8601 UTC');
const stateSchema = z.enum(['scheduled', 'running', 'completed', 'failed', 'held', 'cancelled']);

export const windowSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    origin: z.enum(['adhoc', 'recurring']),
    startsAt: isoTime,
    endsAt: isoTime,
    timezone: z.string().describe("The game's time zone the times are shown in."),
    tasks: z.array(z.enum(MAINTENANCE_TASKS)),
    version: z.string().optional(),
    message: z.string().optional(),
    hold: z.boolean().describe('On failure keep maintenance on (no compensation).'),
    state: stateSchema,
    runId: z.string().optional(),
    createdBy: z.string(),
    createdAt: isoTime,
    updatedAt: isoTime,
    reason: z.string().optional(),
  })
  .meta({ id: 'MaintenanceWindow' });

const noticeSchema = z.object({
  windowId: z.string(),
  key: z.string().describe('T-24h, T-60m, T-10m, T-1m, cancelled'),
  dueAt: isoTime,
  sentAt: isoTime,
  status: z.enum(['sending', 'sent', 'partial', 'failed']),
  detail: z.unknown().describe('What players and each channel got.'),
});

const estimateSchema = z
  .object({
    currentPlayers: z.number().optional(),
    lastWeekPlayers: z.number().optional(),
    lastWeekSource: z.enum(['prometheus', 'check-runs']).optional(),
    players: z.number(),
    durationMinutes: z.number(),
    playerMinutes: z.number(),
    summary: z.string(),
    notes: z.array(z.string()),
  })
  .meta({ id: 'PlayerMinutesEstimate' });

const plannedSchema = z
  .object({
    window: windowSchema,
    stored: z.boolean().describe('False for a dry run: nothing was recorded.'),
    runStartsAt: isoTime.describe(
      'When the maintenance run starts (maintenance.leadTime before the window).',
    ),
    estimate: estimateSchema,
    plan: planSchema.describe(
      "The maintenance runbook's steps with this window's parameters (effect, approval, compensation).",
    ),
    notices: z.array(z.object({ key: z.string(), at: isoTime })),
    replaces: z
      .array(z.object({ name: z.string(), startsAt: isoTime, endsAt: isoTime }))
      .describe('Occurrences of maintenance.recurring this window takes the place of (serve skips them).'),
  })
  .meta({ id: 'MaintenancePlan' });

const idParams = z.object({ id: z.string().min(1).max(200) });

const errors = {
  400: errorSchema,
  401: errorSchema,
  403: errorSchema,
  404: errorSchema,
  409: errorSchema,
  503: errorSchema,
};

/** Maintenance windows over HTTP. */
export function maintenanceRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  const service = () => openMaintenance(ctx.resources);

  return async (app) => {
    app.get(
      '/api/maintenance/windows',
      {
        schema: {
          summary:
            'Maintenance windows ending in the last 7 days or later, oldest first; with all=true every window, ' +
            'newest first. truncated says that more windows exist than were answered (at most limit).',
          querystring: z.strictObject({
            all: z.enum(['true', 'false']).default('false'),
            limit: z.coerce.number().int().min(1).max(1000).default(200),
          }),
          response: {
            200: z.object({ windows: z.array(windowSchema), truncated: z.boolean() }),
            ...errors,
          },
        },
      },
      async (request) => {
        const { all, limit } = request.query;
        const svc = await service();
        return all === 'true' ? newestWindows((o) => svc.list(o), limit) : upcomingWindows(svc, limit);
      },
    );

    app.get(
      '/api/maintenance/windows/:id',
      {
        schema: {
          summary: 'One window and the notices sent for it. 400 for a malformed id, 404 for an unknown one.',
          params: idParams,
          response: { 200: z.object({ window: windowSchema, notices: z.array(noticeSchema) }), ...errors },
        },
      },
      async (request) => (await service()).get(checkWindowId(request.params.id)),
    );

    app.post(
      '/api/maintenance/windows',
      {
        schema: {
          summary:
            'Plan a window (operator): 201 with the window, the estimate of player-minutes lost, the notices and ' +
            "the maintenance run's steps; with dryRun 200 and nothing recorded. 400 names the field (a start in the " +
            'past, an end not after it, over 24 h, update without version, an unknown version); 409 names the ' +
            'window it overlaps.',
          body: z.strictObject({
            startsAt: z
              .string()
              .min(1)
              .max(60)
              .describe("ISO 8601 with an offset, or 'YYYY-MM-DD HH:mm' in the game's time zone."),
            endsAt: z.string().min(1).max(60),
            tasks: z.array(z.enum(MAINTENANCE_TASKS)).min(1).max(MAINTENANCE_TASKS.length).optional(),
            version: z.string().min(1).max(128).optional(),
            message: z.string().min(1).max(500).optional(),
            name: z.string().min(1).max(64).optional(),
            hold: z.boolean().optional(),
            dryRun: z.boolean().default(false),
          }),
          response: { 200: plannedSchema, 201: plannedSchema, ...errors },
        },
      },
      async (request, reply) => {
        const { dryRun, ...input } = request.body;
        const planned = await (await service()).plan(input, actorOf(request), { dryRun });
        if (!dryRun)
          void reply
            .code(201)
            .header('location', `/api/maintenance/windows/${encodeURIComponent(planned.window.id)}`);
        return planned;
      },
    );

    app.post(
      '/api/maintenance/windows/:id/cancel',
      {
        schema: {
          summary:
            "Cancel a window (operator): a scheduled one at once; a running one only while its run has changed nothing (the engine's cancel does not compensate). 409 otherwise, saying why.",
          params: idParams,
          body: z.strictObject({ reason: z.string().trim().min(1).max(500) }),
          response: { 200: z.object({ window: windowSchema }), ...errors },
        },
      },
      async (request) => ({
        window: await (
          await service()
        ).cancel(checkWindowId(request.params.id), actorOf(request), request.body.reason),
      }),
    );
  };
}

/** The most windows the store answers at once (its list's cap). */
const STORE_PAGE = 1000;
/** `all=true` reads at most this many pages (20,000 windows: centuries of weekly maintenance). */
const MAX_PAGES = 20;

/** Windows from now on (and the last 7 days), oldest first, at most `limit`; truncated when more exist. */
export async function upcomingWindows(
  service: Pick<MaintenanceService, 'list'>,
  limit: number,
): Promise<{ windows: MaintenanceWindow[]; truncated: boolean }> {
  const windows = await service.list({ limit: Math.min(limit + 1, STORE_PAGE) });
  return {
    windows: windows.slice(0, limit),
    truncated: windows.length > limit || windows.length === STORE_PAGE,
  };
}

/**
 * Every window, newest first, at most `limit`; truncated when more exist. The service lists oldest first
 * (by start) from an end time on, so this pages from the last page's latest start: a window starting at
 * or after it ends after it, and every window starting before it was on the page (ids seen are skipped).
 */
export async function newestWindows(
  list: MaintenanceService['list'],
  limit: number,
  pageSize = STORE_PAGE,
): Promise<{ windows: MaintenanceWindow[]; truncated: boolean }> {
  const byId = new Map<string, MaintenanceWindow>();
  let since = new Date(0);
  let complete = false;
  for (let page = 0; page < MAX_PAGES; page++) {
    const windows = await list({ since, limit: pageSize });
    let added = 0;
    for (const w of windows)
      if (!byId.has(w.id)) {
        byId.set(w.id, w);
        added++;
      }
    const last = windows.at(-1);
    if (windows.length < pageSize || last === undefined) {
      complete = true;
      break;
    }
    // A page of windows all seen already (a page's worth start at, or span, one instant): stop, said as cut.
    if (added === 0) break;
    since = new Date(last.startsAt);
  }
  const windows = [...byId.values()].sort(
    (a, b) => b.startsAt.localeCompare(a.startsAt) || b.id.localeCompare(a.id),
  );
  return { windows: windows.slice(0, limit), truncated: !complete || windows.length > limit };
}
