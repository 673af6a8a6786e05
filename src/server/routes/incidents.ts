import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { SEVERITIES, pageTargetSchema } from '../../config/schema.ts';
import type { IncidentService } from '../../incidents/index.ts';
import { INCIDENT_ROLES, INCIDENT_STATUSES, incidentLabel, parseIncidentId } from '../../incidents/index.ts';
import type { ServerContext } from '../context.ts';
import { errorSchema } from '../schemas.ts';
import { actorOf } from '../auth.ts';
import { actorSchema, runViewSchema, startRunBody } from './runs.ts';

/*
 * Schemas of the incidents API; `gameops incident … --json` prints the same shapes.
 */

const isoTime = z.string().describe('ISO 8601');
const severitySchema = z.enum(SEVERITIES);
/** A severity as callers write it: any case (`p2` = `P2`). */
const severityInput = z
  .string()
  .max(10)
  .transform((text) => text.trim().toUpperCase())
  .pipe(severitySchema)
  .describe('P1 … P4, in any case');
const statusSchema = z.enum(INCIDENT_STATUSES);
const roleSchema = z.enum([...INCIDENT_ROLES, 'owner']);
const personRef = z.object({ id: z.string(), name: z.string() });
const personId = z.string().min(1).max(64);
const shortText = (max: number) => z.string().max(max, `at most ${max} characters`);
const audienceSchema = z.enum(['stakeholders', 'customers']);

export const checklistItemSchema = z
  .object({
    id: z.string(),
    phase: z.enum(['first15Minutes', 'inProgress', 'afterResolution']),
    text: z.string(),
    done: z.object({ by: z.string(), at: isoTime }).optional(),
  })
  .meta({ id: 'IncidentChecklistItem' });

export const incidentSchema = z
  .object({
    id: z.string().describe('INC-<n>'),
    number: z.number(),
    title: z.string(),
    severity: severitySchema,
    severityDescription: z.string(),
    service: z.string(),
    status: statusSchema,
    source: z.enum(['manual', 'alert', 'heartbeat']),
    groupKey: z.string().optional(),
    policy: z.string().optional(),
    summary: z.string(),
    impact: z.string(),
    rootCause: z.string(),
    warRoom: z.boolean(),
    responseTarget: z.object({
      businessHours: z.boolean().optional().describe('Due within business hours (no respondWithin).'),
      respondWithinMs: z.number().optional(),
      dueAt: isoTime.optional(),
      met: z.boolean().optional(),
    }),
    roles: z.object({
      commander: personRef.optional(),
      technicalLead: personRef.optional(),
      communications: personRef.optional(),
      scribe: personRef.optional(),
    }),
    owner: personRef.optional(),
    checklist: z.array(checklistItemSchema),
    timestamps: z.partialRecord(statusSchema, isoTime).describe('When it last entered each status.'),
    transitions: z.array(
      z.object({ from: statusSchema.nullable(), to: statusSchema, at: isoTime, by: z.string() }),
    ),
    acknowledgedAt: isoTime.optional(),
    acknowledgedBy: z.string().optional(),
    lastUpdateAt: isoTime.optional(),
    nextUpdateDueAt: isoTime.optional(),
    suggestedRunbooks: z.array(z.string()).describe('Gameops runbooks offered ("run this runbook").'),
    runs: z.array(
      z.object({ runId: z.string(), runbook: z.string(), startedAt: isoTime, startedBy: z.string() }),
    ),
    createdBy: actorSchema,
    createdAt: isoTime,
    updatedAt: isoTime,
  })
  .meta({ id: 'Incident' });

export const incidentPageSchema = z
  .object({
    id: z.string(),
    dedupKey: z.string(),
    incidentId: z.string().optional(),
    subject: z.string(),
    severity: severitySchema,
    policy: z.string().optional(),
    status: z.enum(['triggered', 'acknowledged', 'resolved', 'exhausted', 'suppressed']),
    level: z
      .number()
      .int()
      .describe('The escalation level reached, 0-based (0 = the first level; human output says "level 1").'),
    round: z.number().int().describe('The repeat round, 0-based.'),
    createdAt: isoTime,
    nextEscalationAt: isoTime.optional(),
    acknowledgedAt: isoTime.optional(),
    acknowledgedBy: z.string().optional(),
    resolvedAt: isoTime.optional(),
    suppressedBy: z.string().optional(),
  })
  .meta({ id: 'IncidentPage' });

export const incidentDetailSchema = incidentSchema
  .extend({
    pages: z.array(incidentPageSchema).optional(),
    pagesUnavailable: z.string().optional().describe('Why the pages could not be read.'),
  })
  .meta({ id: 'IncidentDetail' });

export const timelineEntrySchema = z
  .object({
    seq: z.number().optional().describe('Stored entries; entries of linked runs have runId instead.'),
    at: isoTime,
    kind: z.string(),
    message: z.string(),
    actor: actorSchema.optional(),
    data: z.record(z.string(), z.unknown()),
    runId: z.string().optional(),
  })
  .meta({ id: 'IncidentTimelineEntry' });

export const postmortemSchema = z
  .object({
    incidentId: z.string(),
    version: z.number(),
    markdown: z.string(),
    kind: z.enum(['generated', 'edited']),
    edited: z.array(z.string()).describe('Sections a person edited: kept when regenerated.'),
    createdAt: isoTime,
    createdBy: z.string(),
    history: z.array(
      z.object({
        version: z.number(),
        kind: z.enum(['generated', 'edited']),
        createdAt: isoTime,
        createdBy: z.string(),
      }),
    ),
  })
  .meta({ id: 'Postmortem' });

const ownerSchema = z.union([z.strictObject({ person: personId }), z.strictObject({ team: personId })]);
const dueDate = z.iso.date({ error: 'must be a date, YYYY-MM-DD' });

export const actionItemSchema = z
  .object({
    id: z.string(),
    title: z.string(),
    owner: z.union([z.object({ person: z.string() }), z.object({ team: z.string() })]).optional(),
    dueDate: z.string().optional(),
    status: z.enum(['open', 'done']),
    createdAt: isoTime,
    createdBy: z.string(),
    updatedAt: isoTime,
    doneAt: isoTime.optional(),
    doneBy: z.string().optional(),
  })
  .meta({ id: 'ActionItem' });

export const statusDraftSchema = z
  .object({
    incidentId: z.string(),
    since: isoTime,
    dueAt: isoTime.optional(),
    subject: z.string(),
    text: z.string(),
    entries: z.number(),
  })
  .meta({ id: 'StatusDraft' });

const idParams = z.object({
  id: z.string().regex(/^(?:[Ii][Nn][Cc]-)?\d{1,9}$/, 'an incident id: INC-7, inc-7 or 7'),
});
const errors = {
  400: errorSchema,
  401: errorSchema,
  403: errorSchema,
  404: errorSchema,
  409: errorSchema,
  503: errorSchema,
};
const incidentResponses = { 200: incidentSchema, ...errors };

const list = <T extends string>(values: readonly T[], what: string, normalize = (s: string) => s) =>
  z
    .string()
    .max(200)
    .transform((text, ctx) => {
      const out: T[] = [];
      for (const raw of text.split(',')) {
        const s = normalize(raw.trim());
        if (s === '') continue;
        if (!(values as readonly string[]).includes(s)) {
          ctx.addIssue({ code: 'custom', message: `"${s}" is not ${what} (${values.join(', ')})` });
          return z.NEVER;
        }
        out.push(s as T);
      }
      return out;
    });

/** Incidents over HTTP: declare, list, show, lifecycle, war room, timeline, post-mortem, action items. */
export function incidentRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  const incidents = async (): Promise<IncidentService> =>
    (await (await import('../../app/ops.ts')).openOps(ctx.resources)).incidents;

  return async (app) => {
    app.get(
      '/api/incidents',
      {
        schema: {
          summary: 'Incidents of this service and environment, newest first.',
          querystring: z.strictObject({
            status: list(INCIDENT_STATUSES, 'an incident status').optional(),
            severity: list(SEVERITIES, 'a severity', (s) => s.toUpperCase()).optional(),
            open: z
              .enum(['true', 'false'])
              .optional()
              .describe('true: only declared, investigating and mitigated ones.'),
            limit: z.coerce.number().int().min(1).max(1000).default(100),
          }),
          response: { 200: z.object({ incidents: z.array(incidentSchema) }), ...errors },
        },
      },
      async (request) => {
        const { status, severity, open, limit } = request.query;
        return {
          incidents: await (
            await incidents()
          ).list({
            limit,
            ...(status ? { status } : {}),
            ...(severity ? { severity } : {}),
            ...(open === 'true' ? { open: true } : {}),
          }),
        };
      },
    );

    app.post(
      '/api/incidents',
      {
        schema: {
          summary:
            'Declare an incident. It pages the on-call through the severity’s policy (unless page is false) ' +
            'and tells the severity’s escalateTo.',
          body: z.strictObject({
            title: z.string().min(1).max(300),
            severity: severityInput,
            service: z.string().min(1).max(100).optional(),
            summary: shortText(20_000).optional(),
            impact: shortText(20_000).optional(),
            policy: z.string().min(1).max(100).optional(),
            page: z.boolean().default(true),
            commander: personId.optional().describe('A person id: the Incident Commander.'),
            owner: personId.optional().describe('A person id: the owner (P3/P4).'),
          }),
          response: { ...incidentResponses, 201: incidentSchema },
        },
      },
      async (request, reply) => {
        const view = await (await incidents()).declare(request.body, actorOf(request));
        void reply.code(201).header('location', `/api/incidents/${view.id}`);
        return view;
      },
    );

    app.get(
      '/api/incidents/:id',
      {
        schema: {
          summary: 'One incident with its pages.',
          params: idParams,
          response: { 200: incidentDetailSchema, ...errors },
        },
      },
      async (request) => (await incidents()).get(request.params.id),
    );

    app.patch(
      '/api/incidents/:id',
      {
        schema: {
          summary: 'Change the title, summary, impact or root cause.',
          params: idParams,
          body: z.strictObject({
            title: z.string().min(1).max(300).optional(),
            summary: shortText(20_000).optional(),
            impact: shortText(20_000).optional(),
            rootCause: shortText(20_000).optional(),
          }),
          response: incidentResponses,
        },
      },
      async (request) => (await incidents()).setDetails(request.params.id, request.body, actorOf(request)),
    );

    app.post(
      '/api/incidents/:id/ack',
      {
        schema: {
          summary: 'Acknowledge: the incident’s pages stop escalating; declared moves to investigating.',
          params: idParams,
          response: incidentResponses,
        },
      },
      async (request) => (await incidents()).acknowledge(request.params.id, actorOf(request)),
    );

    app.post(
      '/api/incidents/:id/status',
      {
        schema: {
          summary:
            'Move the lifecycle: declared → investigating → mitigated → resolved → postmortem → closed ' +
            '(forward, skipping allowed; resolved → investigating reopens). Anything else is 409.',
          params: idParams,
          body: z.strictObject({ status: statusSchema, note: shortText(20_000).optional() }),
          response: incidentResponses,
        },
      },
      async (request) =>
        (await incidents()).transition(
          request.params.id,
          request.body.status,
          actorOf(request),
          request.body.note,
        ),
    );

    app.post(
      '/api/incidents/:id/severity',
      {
        schema: {
          summary: 'Change the severity (raising it pages the new severity’s policy and escalateTo).',
          params: idParams,
          body: z.strictObject({ severity: severityInput, reason: shortText(20_000).optional() }),
          response: incidentResponses,
        },
      },
      async (request) =>
        (await incidents()).setSeverity(
          request.params.id,
          request.body.severity,
          actorOf(request),
          request.body.reason,
        ),
    );

    app.post(
      '/api/incidents/:id/roles',
      {
        schema: {
          summary: 'Assign or hand over a war-room role (or the owner) to a person; null clears it.',
          params: idParams,
          body: z.strictObject({ role: roleSchema, person: personId.nullable() }),
          response: incidentResponses,
        },
      },
      async (request) =>
        (await incidents()).assignRole(
          request.params.id,
          request.body.role,
          request.body.person,
          actorOf(request),
        ),
    );

    app.post(
      '/api/incidents/:id/checklist/:item',
      {
        schema: {
          summary: 'Tick (done: true) or untick a checklist item.',
          params: idParams.extend({ item: z.string().min(1).max(100) }),
          body: z.strictObject({ done: z.boolean().default(true) }),
          response: incidentResponses,
        },
      },
      async (request) =>
        (await incidents()).checklist(
          request.params.id,
          request.params.item,
          request.body.done,
          actorOf(request),
        ),
    );

    app.post(
      '/api/incidents/:id/updates',
      {
        schema: {
          summary: 'Post a status update (resets the due time); notify sends it to those notice channels.',
          params: idParams,
          body: z.strictObject({
            text: z.string().min(1).max(20_000),
            notify: z.array(audienceSchema).max(2).default([]),
          }),
          response: incidentResponses,
        },
      },
      async (request) => (await incidents()).statusUpdate(request.params.id, request.body, actorOf(request)),
    );

    app.get(
      '/api/incidents/:id/updates/draft',
      {
        schema: {
          summary: 'A status update drafted from the timeline since the last update.',
          params: idParams,
          response: { 200: statusDraftSchema, ...errors },
        },
      },
      async (request) => (await incidents()).draft(request.params.id, actorOf(request)),
    );

    app.post(
      '/api/incidents/:id/notes',
      {
        schema: {
          summary: 'Add a note to the timeline.',
          params: idParams,
          body: z.strictObject({ text: z.string().min(1).max(20_000) }),
          response: { 201: timelineEntrySchema, ...errors },
        },
      },
      async (request, reply) => {
        const entry = await (await incidents()).note(request.params.id, request.body.text, actorOf(request));
        void reply.code(201);
        return entry;
      },
    );

    app.post(
      '/api/incidents/:id/call-in',
      {
        schema: {
          summary: 'Call in more people: pages these persons, teams or schedules into the incident.',
          params: idParams,
          body: z.strictObject({
            targets: z.array(pageTargetSchema).min(1).max(20),
            message: shortText(2000).optional(),
          }),
          response: { 200: incidentPageSchema, ...errors },
        },
      },
      async (request) => (await incidents()).callIn(request.params.id, request.body, actorOf(request)),
    );

    app.post(
      '/api/incidents/:id/notices',
      {
        schema: {
          summary: 'Send a stakeholder or customer notice through the channels of incidents.notices.',
          params: idParams,
          body: z.strictObject({ audience: audienceSchema, text: z.string().min(1).max(20_000) }),
          response: { 202: z.object({ sent: z.literal(true) }), ...errors },
        },
      },
      async (request, reply) => {
        await (await incidents()).notice(request.params.id, request.body, actorOf(request));
        void reply.code(202);
        return { sent: true as const };
      },
    );

    app.post(
      '/api/incidents/:id/runs',
      {
        schema: {
          summary: 'Start a runbook for the incident; the run is linked into its timeline.',
          params: idParams,
          body: startRunBody('gameops incident run'),
          response: { 201: runViewSchema, ...errors },
        },
      },
      async (request, reply) => {
        const { runbook, params, idempotencyKey, trigger } = request.body;
        const run = await (
          await incidents()
        ).runRunbook(request.params.id, runbook, params, actorOf(request), {
          trigger,
          ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
        });
        void reply.code(201).header('location', `/api/runs/${encodeURIComponent(run.id)}`);
        return run;
      },
    );

    app.get(
      '/api/incidents/:id/timeline',
      {
        schema: {
          summary:
            'The timeline (alerts, pages, runs and their steps and approvals, roles, updates, notes): JSON ' +
            '{"entries": [...]}, or format=markdown / format=csv (formula cells neutralised) as a download.',
          params: idParams,
          querystring: z.strictObject({ format: z.enum(['json', 'markdown', 'csv']).default('json') }),
          response: {
            200: z.union([
              z.object({ incident: z.string(), entries: z.array(timelineEntrySchema) }),
              z.string(),
            ]),
            ...errors,
          },
        },
      },
      async (request, reply) => {
        const service = await incidents();
        const { id } = request.params;
        const { format } = request.query;
        const actor = actorOf(request);
        const label = incidentLabel(parseIncidentId(id));
        if (format === 'json') return { incident: label, entries: await service.timeline(id, actor) };
        const text = await service.export(id, format, actor);
        const name = `${label}-timeline.${format === 'csv' ? 'csv' : 'md'}`;
        return reply
          .header(
            'content-type',
            format === 'csv' ? 'text/csv; charset=utf-8' : 'text/markdown; charset=utf-8',
          )
          .header('content-disposition', `attachment; filename="${name}"`)
          .serializer((payload: unknown) => String(payload))
          .send(text);
      },
    );

    app.get(
      '/api/incidents/:id/postmortem',
      {
        schema: {
          summary:
            'The latest post-mortem (Markdown, §8.1); when none is saved yet, an unsaved draft generated from the timeline (version 0, empty history: reading never saves). Versions are saved on resolve, regenerate and edit.',
          params: idParams,
          response: { 200: postmortemSchema, ...errors },
        },
      },
      async (request) => (await incidents()).postmortem(request.params.id, {}, actorOf(request)),
    );

    app.post(
      '/api/incidents/:id/postmortem/regenerate',
      {
        schema: {
          summary:
            'Regenerate: every section from the incident again, except sections a person edited (kept), ' +
            'with Timeline and Action Items always rebuilt. A new version when anything changed.',
          params: idParams,
          response: { 200: postmortemSchema, ...errors },
        },
      },
      async (request) =>
        (await incidents()).postmortem(request.params.id, { regenerate: true }, actorOf(request)),
    );

    app.put(
      '/api/incidents/:id/postmortem',
      {
        schema: {
          summary:
            'Save an edited post-mortem on top of baseVersion (409 when someone saved a newer one). New or ' +
            'ticked "- [ ]" lines under Action Items become action items.',
          params: idParams,
          body: z.strictObject({
            baseVersion: z.number().int().min(0),
            markdown: z.string().min(1).max(200_000),
          }),
          response: { 200: postmortemSchema, ...errors },
        },
      },
      async (request) => (await incidents()).edit(request.params.id, request.body, actorOf(request)),
    );

    app.get(
      '/api/incidents/:id/action-items',
      {
        schema: {
          summary: 'The post-mortem’s action items.',
          params: idParams,
          response: { 200: z.object({ items: z.array(actionItemSchema) }), ...errors },
        },
      },
      async (request) => ({ items: await (await incidents()).actionItems.list(request.params.id) }),
    );

    app.post(
      '/api/incidents/:id/action-items',
      {
        schema: {
          summary: 'Add an action item (owner: a person or a team; due date YYYY-MM-DD).',
          params: idParams,
          body: z.strictObject({
            title: z.string().min(1).max(500),
            owner: ownerSchema.optional(),
            dueDate: dueDate.optional(),
          }),
          response: { 201: actionItemSchema, ...errors },
        },
      },
      async (request, reply) => {
        const item = await (
          await incidents()
        ).actionItems.add(request.params.id, request.body, actorOf(request));
        void reply.code(201);
        return item;
      },
    );

    app.patch(
      '/api/incidents/:id/action-items/:item',
      {
        schema: {
          summary: 'Change an action item: title, owner (null: none), due date (null: none), status.',
          params: idParams.extend({ item: z.string().min(1).max(100) }),
          body: z.strictObject({
            title: z.string().min(1).max(500).optional(),
            owner: ownerSchema.nullable().optional(),
            dueDate: dueDate.nullable().optional(),
            status: z.enum(['open', 'done']).optional(),
          }),
          response: { 200: actionItemSchema, ...errors },
        },
      },
      async (request) =>
        (await incidents()).actionItems.update(
          request.params.id,
          request.params.item,
          request.body,
          actorOf(request),
        ),
    );

    app.delete(
      '/api/incidents/:id/action-items/:item',
      {
        schema: {
          summary: 'Remove an action item.',
          params: idParams.extend({ item: z.string().min(1).max(100) }),
          response: { 204: z.null(), ...errors },
        },
      },
      async (request, reply) => {
        await (
          await incidents()
        ).actionItems.remove(request.params.id, request.params.item, actorOf(request));
        return reply.code(204).send(null);
      },
    );
  };
}
