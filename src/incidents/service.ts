import { createHash } from 'node:crypto';
import type { Logger } from '../app/log.ts';
import type { GameopsConfig } from '../config/load.ts';
import {
  type Clock,
  ConflictError,
  InputError,
  NotAllowedError,
  NotFoundError,
  errorMessage,
} from '../core/index.ts';
import { roleAtLeast } from '../identity/index.ts';
import type {
  AlertIncidents,
  AlertRef,
  IncidentEvents,
  PageTarget,
  PageView,
  Pager,
  Severity,
  TimelineEntryInput,
} from '../ops/contracts.ts';
import type { Actor, RunService, RunView, Trigger } from '../runbooks/model.ts';
import type {
  ActionItemOwner,
  ActionItemRecord,
  IncidentChanges,
  IncidentRecord,
  IncidentRepo,
  IncidentScope,
  ListIncidentsFilter,
  NewTimelineEntry,
  PostmortemVersion,
  TimelineEntryRecord,
} from '../store/incidents.ts';
import type { Store } from '../store/index.ts';
import {
  type IncidentDetail,
  type IncidentRole,
  type IncidentStatus,
  type IncidentView,
  type NoticeAudience,
  type PostmortemView,
  type StatusDraft,
  type TimelineEntry,
  type TimelineFormat,
  INCIDENT_ROLES,
  INCIDENT_STATUSES,
  OPEN_STATUSES,
  ROLE_TITLES,
  allowedNext,
  createDirectory,
  groupTitle,
  incidentLabel,
  initialChecklist,
  noIncident,
  parseIncidentId,
  runbookFromUrl,
  severityOf,
  transitionAllowed,
} from './model.ts';
import {
  type ActionItemLine,
  actionItemLines,
  editedSections,
  generateSections,
  mergeSections,
  parsePostmortem,
  refuseTimelineEdit,
  renderPostmortem,
} from './postmortem.ts';
import { businessHoursDue } from './hours.ts';
import { buildDraft, noControl, timelineCsv, timelineJson, timelineMarkdown } from './render.ts';

export interface IncidentServiceDeps {
  config: GameopsConfig;
  store: Store;
  clock: Clock;
  log: Logger;
  pager: Pager;
  runs: () => Promise<RunService>;
}

export interface DeclareInput {
  title: string;
  severity: Severity;
  /** @default config service.name */
  service?: string | undefined;
  summary?: string | undefined;
  impact?: string | undefined;
  /** An escalation policy to page instead of the severity's. */
  policy?: string | undefined;
  /** @default true: page the on-call (severity policy) as an alert-opened incident would. */
  page?: boolean | undefined;
  commander?: string | undefined;
  owner?: string | undefined;
}

export interface DetailsInput {
  title?: string | undefined;
  summary?: string | undefined;
  impact?: string | undefined;
  rootCause?: string | undefined;
}

export interface ActionItemInput {
  title: string;
  owner?: ActionItemOwner | undefined;
  /** YYYY-MM-DD */
  dueDate?: string | undefined;
}

export interface ActionItemChange {
  title?: string | undefined;
  owner?: ActionItemOwner | null | undefined;
  dueDate?: string | null | undefined;
  status?: 'open' | 'done' | undefined;
}

/**
 * Incidents (runbook §2, §8.1): lifecycle, war room, status updates, timeline, post-mortems. Incident ids
 * are `INC-<n>` (also accepted: `inc-<n>`, `<n>`). Every change is audited; changes that people make
 * need the responder role. Side effects on paging happen through the Pager, idempotent by dedup key.
 */
export interface IncidentService extends AlertIncidents, IncidentEvents {
  /** Declares an incident by hand and pages (unless `page: false`). */
  declare: (input: DeclareInput, actor: Actor) => Promise<IncidentView>;
  /** Newest first. */
  list: (filter?: ListIncidentsFilter) => Promise<IncidentView[]>;
  /** @throws NotFoundError `no incident INC-<n>` */
  get: (id: string) => Promise<IncidentDetail>;
  /** Acknowledges the incident's pages; a declared incident moves to investigating. */
  acknowledge: (id: string, actor: Actor) => Promise<IncidentView>;
  /**
   * Moves the lifecycle on (forward, skipping allowed; back only resolved → investigating, a reopen).
   * Resolving resolves the pages, stops status-update reminders and (re)generates the post-mortem.
   * @throws ConflictError naming the current and the requested status.
   */
  transition: (id: string, to: IncidentStatus, actor: Actor, note?: string) => Promise<IncidentView>;
  setSeverity: (id: string, severity: string, actor: Actor, reason?: string) => Promise<IncidentView>;
  /** Assigns (or hands over, or with `null` clears) a war-room role or the owner: a config person id. */
  assignRole: (
    id: string,
    role: IncidentRole | 'owner',
    person: string | null,
    actor: Actor,
  ) => Promise<IncidentView>;
  /** Ticks (or unticks) a checklist item. */
  checklist: (id: string, item: string, done: boolean, actor: Actor) => Promise<IncidentView>;
  /** Title, summary, impact, root cause. */
  setDetails: (id: string, details: DetailsInput, actor: Actor) => Promise<IncidentView>;
  /** Posts a status update (resets the due time) and optionally sends it as a notice. */
  statusUpdate: (
    id: string,
    input: { text: string; notify?: NoticeAudience[] | undefined },
    actor: Actor,
  ) => Promise<IncidentView>;
  /** A status update drafted from the timeline since the last one. */
  draft: (id: string, actor?: Actor) => Promise<StatusDraft>;
  note: (id: string, text: string, actor: Actor) => Promise<TimelineEntry>;
  /** Pages more people into the incident (one level to these targets). */
  callIn: (
    id: string,
    input: { targets: PageTarget[]; message?: string | undefined },
    actor: Actor,
  ) => Promise<PageView>;
  /** Sends a notice to the stakeholder or customer channels (config incidents.notices). */
  notice: (id: string, input: { audience: NoticeAudience; text: string }, actor: Actor) => Promise<void>;
  /** Starts a runbook for the incident and links the run into its timeline. */
  runRunbook: (
    id: string,
    runbook: string,
    params: Record<string, unknown>,
    actor: Actor,
    options?: { idempotencyKey?: string | undefined; trigger?: Trigger | undefined },
  ) => Promise<RunView>;
  /** Stored entries merged with the linked runs' events (steps, approvals), oldest first. */
  timeline: (id: string, actor?: Actor) => Promise<TimelineEntry[]>;
  export: (id: string, format: TimelineFormat, actor?: Actor) => Promise<string>;
  /**
   * The latest post-mortem; when none is saved yet, an unsaved generated draft (version 0: reading never
   * writes). Versions are saved on resolve, on `regenerate` (which needs the responder role) and on edit.
   */
  postmortem: (
    id: string,
    options?: { regenerate?: boolean | undefined },
    actor?: Actor,
  ) => Promise<PostmortemView>;
  /** Saves an edited post-mortem on top of `baseVersion`. @throws ConflictError when it is stale. */
  edit: (
    id: string,
    input: { baseVersion: number; markdown: string },
    actor: Actor,
  ) => Promise<PostmortemView>;
  actionItems: {
    list: (id: string) => Promise<ActionItemRecord[]>;
    add: (id: string, item: ActionItemInput, actor: Actor) => Promise<ActionItemRecord>;
    update: (id: string, itemId: string, change: ActionItemChange, actor: Actor) => Promise<ActionItemRecord>;
    remove: (id: string, itemId: string, actor: Actor) => Promise<void>;
  };
  /** Status-update reminders and missed-update escalations due at `now`. Safe on several instances. */
  tick: (now: Date) => Promise<void>;
}

/** gameops itself, for automatic changes (alerts, reminders). */
export const SYSTEM_ACTOR: Actor = { id: 'system', name: 'gameops', role: 'admin', kind: 'system' };

const MAX_TITLE = 300;
const MAX_TEXT = 20_000;
const MAX_RUN_EVENTS = 2000;

export function createIncidentService(deps: IncidentServiceDeps): IncidentService {
  const { config, clock, log, pager } = deps;
  const repo: IncidentRepo = deps.store.incidents;
  const scope: IncidentScope = { service: config.service.name, environment: config.service.environment };
  const directory = createDirectory(config);
  const timeZone = config.runbooks.timezone;
  const level = (severity: string) => config.incidents.severities[severityOf(severity)];

  // ---------------------------------------------------------------------------------------------
  // helpers

  function mayChange(actor: Actor): void {
    if (!roleAtLeast(actor.role, 'responder'))
      throw new NotAllowedError(
        `${actor.name} (${actor.role}) may not change incidents: needs responder or above`,
      );
  }

  function text(value: unknown, field: string, max: number, required = true): string {
    if (typeof value !== 'string' || (required && value.trim() === ''))
      throw new InputError(`${field}: must be ${required ? 'a non-empty ' : ''}text`, { details: { field } });
    if (value.length > max)
      throw new InputError(`${field}: at most ${max} characters (got ${value.length})`, {
        details: { field },
      });
    return value.trim();
  }

  function dueAfter(severity: string, from: Date): string | null {
    const every = level(severity).statusUpdateEvery;
    return every === undefined ? null : new Date(from.getTime() + every).toISOString();
  }

  async function load(id: string): Promise<IncidentRecord> {
    const number = parseIncidentId(id);
    const found = await repo.get(scope, number);
    if (!found) throw noIncident(number);
    return found;
  }

  function view(r: IncidentRecord, runs: IncidentView['runs'] = []): IncidentView {
    const sev = severityOf(r.severity);
    const lvl = level(sev);
    const timestamps: IncidentView['timestamps'] = {};
    for (const t of r.transitions) timestamps[t.to] = t.at;
    const dueAt =
      lvl.respondWithin !== undefined
        ? new Date(Date.parse(r.createdAt) + lvl.respondWithin).toISOString()
        : businessHoursDue(new Date(r.createdAt), config.incidents.businessHours)?.toISOString();
    const roles: IncidentView['roles'] = {};
    for (const role of INCIDENT_ROLES) {
      const person = r.roles[role];
      if (person !== undefined) roles[role] = directory.person(person) ?? { id: person, name: person };
    }
    return {
      id: incidentLabel(r.number),
      number: r.number,
      title: r.title,
      severity: sev,
      severityDescription: lvl.description,
      service: r.service,
      status: r.status,
      source: r.source,
      ...(r.groupKey !== undefined ? { groupKey: r.groupKey } : {}),
      ...(r.policy !== undefined ? { policy: r.policy } : {}),
      summary: r.summary,
      impact: r.impact,
      rootCause: r.rootCause,
      warRoom: lvl.warRoom,
      responseTarget: {
        ...(lvl.respondWithin !== undefined
          ? { respondWithinMs: lvl.respondWithin }
          : { businessHours: true }),
        ...(dueAt ? { dueAt } : {}),
        ...(dueAt && r.acknowledgedAt ? { met: r.acknowledgedAt <= dueAt } : {}),
      },
      roles,
      ...(r.owner !== undefined
        ? { owner: directory.person(r.owner) ?? { id: r.owner, name: r.owner } }
        : {}),
      checklist: r.checklist,
      timestamps,
      transitions: r.transitions,
      ...(r.acknowledgedAt !== undefined ? { acknowledgedAt: r.acknowledgedAt } : {}),
      ...(r.acknowledgedBy !== undefined ? { acknowledgedBy: r.acknowledgedBy } : {}),
      ...(r.lastUpdateAt !== undefined ? { lastUpdateAt: r.lastUpdateAt } : {}),
      ...(r.nextUpdateDueAt !== undefined ? { nextUpdateDueAt: r.nextUpdateDueAt } : {}),
      suggestedRunbooks: r.suggestedRunbooks,
      runs,
      createdBy: r.createdBy,
      createdAt: r.createdAt,
      updatedAt: r.updatedAt,
    };
  }

  async function fullView(r: IncidentRecord): Promise<IncidentView> {
    return view(r, await repo.runs(scope, r.number));
  }

  function mutate<T>(
    number: number,
    decide: (current: IncidentRecord) => {
      changes?: IncidentChanges;
      entries?: NewTimelineEntry[];
      audit?: { actor: Actor; action: string; data?: Record<string, unknown> };
      result: T;
    },
  ) {
    return repo.mutate(scope, number, decide);
  }

  /** The policy paged for an incident: its severity's, else its route's, else the default. */
  function policyOf(r: { severity: string; policy?: string | undefined }): string | undefined {
    return level(r.severity).policy ?? r.policy ?? config.oncall.defaultPolicy;
  }

  function labelsOf(r: IncidentRecord, extra: Record<string, string> = {}): Record<string, string> {
    // An alert's own labels win: suppression windows match them as Alertmanager wrote them.
    return { severity: r.severity, service: r.service, ...extra, incident: incidentLabel(r.number) };
  }

  function incidentLinks(label: string) {
    return config.server.publicUrl
      ? [{ title: label, url: `${config.server.publicUrl.replace(/\/+$/, '')}/api/incidents/${label}` }]
      : undefined;
  }

  /**
   * The dedup key of an incident's opening page: `incident:<id>` while it has never been reopened,
   * `incident:<id>:reopen-<n>` after its n-th reopen, so that a reopened incident pages anew instead of
   * finding its old, resolved page.
   */
  function pageKey(r: IncidentRecord): string {
    const reopens = r.transitions.filter((t) => t.from === 'resolved' && t.to === 'investigating').length;
    const id = incidentLabel(r.number);
    return reopens === 0 ? `incident:${id}` : `incident:${id}:reopen-${reopens}`;
  }

  async function pageOpened(r: IncidentRecord, extraLabels: Record<string, string> = {}): Promise<PageView> {
    const id = incidentLabel(r.number);
    const links = incidentLinks(id);
    const key = pageKey(r);
    const page = await pager.page({
      dedupKey: key,
      incidentId: id,
      subject: `[${id} ${r.severity}] ${r.title}`,
      body: [
        `${r.severity} incident ${id} on ${r.service}: ${r.title}`,
        ...(r.summary ? [r.summary] : []),
        `Acknowledge: gameops incident ack ${id}`,
      ].join('\n'),
      severity: severityOf(r.severity),
      labels: labelsOf(r, extraLabels),
      policy: policyOf(r),
      ...(links ? { links } : {}),
    });
    const escalateTo = level(r.severity).escalateTo;
    if (escalateTo.length > 0) {
      await pager.notify({
        dedupKey: `${key}:opened:${r.severity}`,
        incidentId: id,
        kind: 'notification',
        subject: `[${id} ${r.severity}] opened: ${r.title}`,
        body: `${r.severity} (${level(r.severity).description}) incident ${id} on ${r.service}: ${r.title}`,
        to: escalateTo,
        ...(links ? { links } : {}),
      });
    }
    return page;
  }

  /**
   * Pages for an open incident without failing the caller: the incident stands whatever paging says
   * (no escalation policy configured, on-call store down). The failure goes into the log and, once per
   * page key, onto the timeline; a later call pages again (the pager is idempotent by key).
   */
  async function pageOrRecord(
    r: IncidentRecord,
    extraLabels: Record<string, string> = {},
    hint = '',
  ): Promise<void> {
    try {
      await pageOpened(r, extraLabels);
    } catch (err) {
      const label = incidentLabel(r.number);
      log.error({ incident: label, err: errorMessage(err) }, 'could not page for an incident');
      await mutate(r.number, () => ({
        entries: [
          {
            kind: 'page-failed',
            message: `could not page the on-call: ${errorMessage(err)}${hint}`,
            data: { dedupKey: pageKey(r) },
            dedupKey: `page-failed:${pageKey(r)}`,
          },
        ],
        result: undefined,
      }));
    }
  }

  /**
   * A severity change of `cur` (nothing when it is already `severity`): the record's changes and the
   * timeline entry. Used by setSeverity and by a joining alert of a higher severity.
   */
  function severityChange(
    cur: IncidentRecord,
    severity: Severity,
    actor: Actor,
    why: string | undefined,
  ): { changes: IncidentChanges; entries: NewTimelineEntry[] } | undefined {
    if (cur.severity === severity) return undefined;
    const open = OPEN_STATUSES.includes(cur.status);
    const due = open ? dueAfter(severity, clock.now()) : null;
    // A faster cadence brings the next update forward; a slower one keeps the one already due.
    const next =
      cur.nextUpdateDueAt !== undefined && due !== null && cur.nextUpdateDueAt < due
        ? cur.nextUpdateDueAt
        : due;
    return {
      changes: { severity, nextUpdateDueAt: next },
      entries: [
        {
          kind: 'severity',
          message: `severity ${cur.severity} → ${severity}${why ? `: ${why}` : ''}${level(severity).warRoom && !level(cur.severity).warRoom ? ' (war room opened)' : ''}`,
          actor,
          data: { from: cur.severity, to: severity },
        },
      ],
    };
  }

  /** After a raise: the new severity's policy is paged (when it differs) and its escalateTo told. */
  async function pageRaised(
    incident: IncidentRecord,
    from: string,
    actor: Actor,
    why: string | undefined,
    extraLabels: Record<string, string> = {},
  ): Promise<void> {
    const label = incidentLabel(incident.number);
    const severity = severityOf(incident.severity);
    try {
      if (policyOf(incident) !== policyOf({ severity: from, policy: incident.policy }))
        await pager.page(
          {
            dedupKey: `${pageKey(incident)}:severity:${severity}`,
            incidentId: label,
            subject: `[${label} ${severity}] raised to ${severity}: ${incident.title}`,
            body: `${label} was raised from ${from} to ${severity}${why ? `: ${why}` : ''}`,
            severity,
            labels: labelsOf(incident, extraLabels),
            policy: policyOf(incident),
          },
          actor,
        );
      await pageOpened(incident, extraLabels);
    } catch (err) {
      log.error({ incident: label, err: errorMessage(err) }, 'could not page for a raised severity');
    }
  }

  /** Who is reminded about a status update: IC and Communications, else the owner, else the on-call. */
  function reminderTargets(r: IncidentRecord): PageTarget[] {
    const people = [r.roles.commander, r.roles.communications].filter(
      (p): p is string => p !== undefined && directory.person(p) !== undefined,
    );
    if (people.length > 0) return [...new Set(people)].map((person) => ({ person }));
    if (r.owner !== undefined && directory.person(r.owner)) return [{ person: r.owner }];
    return directory.firstLevel(policyOf(r));
  }

  async function runEntries(r: IncidentRecord, actor: Actor): Promise<TimelineEntry[]> {
    const linked = await repo.runs(scope, r.number);
    if (linked.length === 0) return [];
    const out: TimelineEntry[] = [];
    let runs: RunService;
    try {
      runs = await deps.runs();
    } catch (err) {
      return linked.map((l) => ({
        at: l.startedAt,
        kind: 'runbook-run',
        message: `run ${l.runId} (${l.runbook}): its steps cannot be read (${errorMessage(err)})`,
        data: { runId: l.runId },
        runId: l.runId,
      }));
    }
    for (const link of linked) {
      try {
        const run = await runs.get(link.runId, actor);
        let after = 0;
        let count = 0;
        for (;;) {
          const events = await runs.events(link.runId, after, actor, { waitMs: 0 });
          if (events.length === 0) break;
          for (const e of events) {
            after = Math.max(after, e.seq);
            if (e.type === 'log' || e.status === 'pending' || e.status === 'queued') continue;
            if (++count > MAX_RUN_EVENTS) break;
            const what = e.type === 'run' ? `run ${link.runId} (${link.runbook})` : `step ${e.stepId ?? '?'}`;
            out.push({
              at: e.at,
              kind: 'runbook-run',
              message: `${what} ${e.status ?? ''}${e.message ? `: ${e.message}` : ''}`.trim(),
              data: {
                runId: link.runId,
                runbook: link.runbook,
                ...(e.stepId !== undefined ? { stepId: e.stepId } : {}),
                ...(e.status !== undefined ? { status: e.status } : {}),
              },
              runId: link.runId,
            });
          }
          if (count > MAX_RUN_EVENTS) break;
        }
        for (const step of run.steps) {
          const a = step.approval;
          if (!a) continue;
          out.push({
            at: a.requestedAt,
            kind: 'runbook-run',
            message: `approval requested for step ${step.id} of run ${link.runId}`,
            data: { runId: link.runId, stepId: step.id, approval: 'requested' },
            runId: link.runId,
          });
          if (a.decision && a.decidedAt)
            out.push({
              at: a.decidedAt,
              kind: 'runbook-run',
              message: `step ${step.id} ${a.decision} by ${a.decidedBy?.name ?? 'someone'}${a.comment ? `: ${a.comment}` : ''}`,
              actor: a.decidedBy,
              data: { runId: link.runId, stepId: step.id, approval: a.decision },
              runId: link.runId,
            });
        }
      } catch (err) {
        out.push({
          at: link.startedAt,
          kind: 'runbook-run',
          message: `run ${link.runId} (${link.runbook}): its events cannot be read (${errorMessage(err)})`,
          data: { runId: link.runId },
          runId: link.runId,
        });
      }
    }
    return out;
  }

  async function mergedTimeline(r: IncidentRecord, actor: Actor): Promise<TimelineEntry[]> {
    const stored: TimelineEntry[] = (await repo.timeline(scope, r.number)).map(fromStored);
    const merged = [...stored, ...(await runEntries(r, actor))];
    return merged.sort((a, b) =>
      a.at < b.at ? -1 : a.at > b.at ? 1 : (a.seq ?? Infinity) - (b.seq ?? Infinity),
    );
  }

  async function postmortemView(r: IncidentRecord, versions: PostmortemVersion[]): Promise<PostmortemView> {
    const latest = versions[versions.length - 1]!;
    return {
      incidentId: incidentLabel(r.number),
      version: latest.version,
      markdown: latest.markdown,
      kind: latest.kind,
      edited: latest.edited,
      createdAt: latest.createdAt,
      createdBy: latest.createdBy,
      history: versions.map((v) => ({
        version: v.version,
        kind: v.kind,
        createdAt: v.createdAt,
        createdBy: v.createdBy,
      })),
    };
  }

  /**
   * The post-mortem. `view`: the latest version, or when there is none an unsaved generated draft
   * (version 0; reading never writes). `save`: the latest, generating and storing version 1 when there is
   * none. `regenerate`: rebuilt (keeping edited sections) and stored when it changed.
   */
  async function generate(
    r: IncidentRecord,
    actor: Actor,
    mode: 'view' | 'save' | 'regenerate',
  ): Promise<PostmortemView> {
    const versions = await repo.postmortems(scope, r.number);
    const latest = versions[versions.length - 1];
    if (latest && mode !== 'regenerate') return postmortemView(r, versions);
    const generated = generateSections({
      incident: await fullView(r),
      timeline: await mergedTimeline(r, actor),
      items: await repo.actionItems(scope, r.number),
      runs: await repo.runs(scope, r.number),
      timeZone,
      publicUrl: config.server.publicUrl,
      directory,
    });
    const sections = mergeSections(generated, latest?.sections, latest?.edited ?? []);
    const markdown = renderPostmortem(incidentLabel(r.number), sections);
    if (latest && latest.markdown === markdown) return postmortemView(r, versions);
    if (mode === 'view')
      return {
        incidentId: incidentLabel(r.number),
        version: 0,
        markdown,
        kind: 'generated',
        edited: [],
        createdAt: clock.now().toISOString(),
        createdBy: actor.name,
        history: [],
      };
    try {
      await repo.savePostmortem(
        scope,
        r.number,
        latest?.version ?? 0,
        { markdown, sections, edited: latest?.edited ?? [], kind: 'generated' },
        actor,
      );
    } catch (err) {
      // Someone saved a version meanwhile: theirs stands.
      if (!(err instanceof ConflictError)) throw err;
    }
    return postmortemView(r, await repo.postmortems(scope, r.number));
  }

  // ---------------------------------------------------------------------------------------------

  const service: IncidentService = {
    async openOrJoin(input) {
      const severity = severityOf(input.severity);
      const { alert } = input;
      const suggested = new Set<string>();
      if (input.runbook !== undefined) suggested.add(input.runbook);
      const fromUrl = runbookFromUrl(alert.runbookUrl);
      if (fromUrl !== undefined && !suggested.has(fromUrl) && (await runbookExists(fromUrl)))
        suggested.add(fromUrl);
      const source = input.groupKey.startsWith('heartbeat:') ? 'heartbeat' : 'alert';
      // Named after the group (alertname and its common labels), not its first instance; the first
      // alert's summary is the incident's summary.
      const title =
        (source === 'alert' ? groupTitle(input.groupKey, alert.name, MAX_TITLE) : undefined) ??
        input.title.slice(0, MAX_TITLE);
      const { incident, created } = await repo.open(
        scope,
        {
          title,
          severity,
          service: input.service,
          source,
          groupKey: input.groupKey,
          policy: input.policy,
          summary: alert.summary,
          suggestedRunbooks: [...suggested],
          checklist: initialChecklist(config),
          nextUpdateDueAt: dueAfter(severity, clock.now()) ?? undefined,
          createdBy: SYSTEM_ACTOR,
        },
        [
          {
            kind: 'declared',
            message: `${severity} incident opened by ${source === 'heartbeat' ? 'a missed heartbeat' : `alert ${alert.name}`}: ${title}`,
            data: { groupKey: input.groupKey },
          },
        ],
      );
      const number = incident.number;
      const { incident: current, result: raisedFrom } = await mutate(number, (cur) => {
        const runbooks = [...new Set([...cur.suggestedRunbooks, ...suggested])];
        // A joining alert of a higher severity raises the incident (never lowers it).
        const raise =
          severity < severityOf(cur.severity) && OPEN_STATUSES.includes(cur.status)
            ? severityChange(cur, severity, SYSTEM_ACTOR, `alert ${alert.name} is ${severity}`)
            : undefined;
        const changes: IncidentChanges = { ...(raise?.changes ?? {}) };
        if (runbooks.length !== cur.suggestedRunbooks.length) changes.suggestedRunbooks = runbooks;
        return {
          changes,
          entries: [
            ...(raise?.entries ?? []),
            {
              kind: 'alert-fired',
              message: `alert fired: ${alert.name}${alert.summary ? `: ${alert.summary}` : ''}`,
              at: validTime(alert.startsAt) ?? clock.now().toISOString(),
              data: alertData(alert),
              dedupKey: `alert:${alert.fingerprint}:${alert.startsAt}`,
            },
          ],
          audit: {
            actor: SYSTEM_ACTOR,
            action: raise ? 'incident.alert-raised' : 'incident.alert',
            data: {
              fingerprint: alert.fingerprint,
              ...(raise ? { from: cur.severity, to: severity } : {}),
            },
          },
          result: raise ? cur.severity : undefined,
        };
      });
      if (raisedFrom !== undefined)
        await pageRaised(
          current,
          raisedFrom,
          SYSTEM_ACTOR,
          `alert ${alert.name} is ${severity}`,
          alert.labels,
        );
      // Every call: a page that a crash (or a failed page) kept from being opened is opened now
      // (idempotent by key). A paging failure does not undo the incident: it is on the timeline.
      await pageOrRecord(current, alert.labels);
      return { incidentId: incidentLabel(number), created };
    },

    async alertResolved(incidentId, alert, stillFiring) {
      const number = parseIncidentId(incidentId);
      const autoResolve = config.incidents.resolveWithAlerts && stillFiring <= 0;
      const resolvedKey = (a: { fingerprint?: unknown; startsAt?: unknown }) =>
        `alert-resolved:${String(a.fingerprint)}:${String(a.startsAt)}`;
      const thisKey = resolvedKey(alert);
      // Nothing still firing: every alert that fired into the incident has resolved. When intake resolves
      // several in one webhook, the first call resolves the incident and writes the post-mortem, so each
      // alert's own entry is recorded now (same dedup key per fingerprint and startsAt: the later calls
      // add nothing) and the post-mortem's timeline shows every one of them.
      const othersResolved: NewTimelineEntry[] = [];
      if (stillFiring <= 0) {
        const stored = (await repo.timeline(scope, number)).map(fromStored);
        const done = new Set(
          stored.filter((e) => e.kind === 'alert-resolved').map((e) => resolvedKey(e.data)),
        );
        for (const e of stored) {
          if (e.kind !== 'alert-fired') continue;
          const key = resolvedKey(e.data);
          if (key === thisKey || done.has(key)) continue;
          done.add(key);
          othersResolved.push({
            kind: 'alert-resolved',
            message: `alert resolved: ${typeof e.data.alertname === 'string' ? e.data.alertname : alert.name}`,
            data: e.data,
            dedupKey: key,
          });
        }
      }
      const { result: resolved } = await mutate(number, (cur) => {
        const resolve = autoResolve && OPEN_STATUSES.includes(cur.status) && cur.source !== 'manual';
        const at = clock.now().toISOString();
        return {
          ...(resolve ? { changes: resolveChanges(cur, at, SYSTEM_ACTOR) } : {}),
          entries: [
            {
              kind: 'alert-resolved',
              message: `alert resolved: ${alert.name}${stillFiring > 0 ? ` (${stillFiring} still firing)` : ''}`,
              at: validTime(alert.endsAt) ?? at,
              data: alertData(alert),
              dedupKey: thisKey,
            },
            ...othersResolved.map((e) => ({ ...e, at: validTime(alert.endsAt) ?? at })),
            ...(resolve
              ? [
                  {
                    kind: 'status',
                    message: `${cur.status} → resolved: every alert resolved`,
                    data: { from: cur.status, to: 'resolved' },
                  },
                ]
              : []),
          ],
          audit: {
            actor: SYSTEM_ACTOR,
            action: resolve ? 'incident.resolve' : 'incident.alert-resolved',
            data: { fingerprint: alert.fingerprint, stillFiring },
          },
          result: resolve,
        };
      });
      // Only the call that resolved the incident ends its pages and writes the post-mortem: the other
      // alerts of a big group resolving after it only add their timeline entry.
      if (resolved) await afterResolve(number, SYSTEM_ACTOR, true);
    },

    async append(incidentId, entry: TimelineEntryInput) {
      const number = parseIncidentId(incidentId);
      await mutate(number, (cur) => {
        const ack = entry.kind === 'page-acknowledged' && cur.status === 'declared';
        const at = (entry.at ?? clock.now()).toISOString();
        const by = entry.actor?.name ?? 'gameops';
        const changes: IncidentChanges = {};
        if (ack) {
          Object.assign(changes, {
            status: 'investigating',
            transitions: [...cur.transitions, { from: cur.status, to: 'investigating', at, by }],
          });
        }
        if (entry.kind === 'page-acknowledged' && cur.acknowledgedAt === undefined) {
          changes.acknowledgedAt = at;
          changes.acknowledgedBy = by;
          const person = entry.actor ? directory.personOfActor(entry.actor) : undefined;
          // Without a war room, whoever acknowledged owns it (their person id, else their name).
          if (!level(cur.severity).warRoom && cur.owner === undefined && entry.actor)
            changes.owner = person?.id ?? entry.actor.name;
        }
        return {
          changes,
          entries: [
            { kind: entry.kind, message: entry.message, actor: entry.actor, data: entry.data, at },
            ...(ack
              ? [
                  {
                    kind: 'status',
                    message: `declared → investigating: page acknowledged by ${by}`,
                    data: { from: 'declared', to: 'investigating' },
                    at,
                  },
                ]
              : []),
          ],
          audit: {
            actor: entry.actor ?? SYSTEM_ACTOR,
            action: `incident.${entry.kind}`,
            data: entry.data ?? {},
          },
          result: undefined,
        };
      });
    },

    async declare(input, actor) {
      mayChange(actor);
      const title = text(input.title, 'title', MAX_TITLE);
      const severity = severityOf(input.severity);
      const serviceName =
        input.service !== undefined ? text(input.service, 'service', 100) : config.service.name;
      const summary =
        input.summary !== undefined ? text(input.summary, 'summary', MAX_TEXT, false) : undefined;
      const impact = input.impact !== undefined ? text(input.impact, 'impact', MAX_TEXT, false) : undefined;
      if (input.policy !== undefined && !config.oncall.policies.some((p) => p.name === input.policy))
        throw new InputError(`policy: "${input.policy}" is not an escalation policy in oncall.policies`, {
          details: { field: 'policy' },
        });
      const roles: Partial<Record<IncidentRole, string>> = {};
      if (input.commander !== undefined)
        roles.commander = directory.requirePerson(input.commander, 'commander').id;
      const owner = input.owner !== undefined ? directory.requirePerson(input.owner, 'owner').id : undefined;
      const { incident } = await repo.open(
        scope,
        {
          title,
          severity,
          service: serviceName,
          source: 'manual',
          policy: input.policy,
          summary,
          impact,
          roles,
          owner,
          checklist: initialChecklist(config),
          nextUpdateDueAt: dueAfter(severity, clock.now()) ?? undefined,
          createdBy: actor,
        },
        [
          { kind: 'declared', message: `${severity} incident declared by ${actor.name}: ${title}`, actor },
          ...(roles.commander
            ? [
                {
                  kind: 'role',
                  message: `Incident Commander: ${directory.person(roles.commander)?.name ?? roles.commander}`,
                  actor,
                  data: { role: 'commander', to: roles.commander },
                },
              ]
            : []),
          ...(owner
            ? [
                {
                  kind: 'owner',
                  message: `Owner: ${directory.person(owner)?.name ?? owner}`,
                  actor,
                  data: { role: 'owner', to: owner },
                },
              ]
            : []),
        ],
      );
      // The incident stands whatever paging says; a failure is on the timeline and in the log.
      if (input.page !== false) await pageOrRecord(incident, {}, ' (use call-in)');
      return fullView((await repo.get(scope, incident.number)) ?? incident);
    },

    async list(filter = {}) {
      for (const status of filter.status ?? [])
        if (!(INCIDENT_STATUSES as readonly string[]).includes(status))
          throw new InputError(`status: "${status}" is not one of ${INCIDENT_STATUSES.join(', ')}`, {
            details: { field: 'status' },
          });
      if (filter.severity) filter = { ...filter, severity: filter.severity.map(severityOf) };
      if (
        filter.limit !== undefined &&
        (!Number.isInteger(filter.limit) || filter.limit < 1 || filter.limit > 1000)
      )
        throw new InputError(`limit: a whole number from 1 to 1000 (got ${filter.limit})`, {
          details: { field: 'limit' },
        });
      return (await repo.list(scope, filter)).map((r) => view(r));
    },

    async get(id) {
      const r = await load(id);
      const detail: IncidentDetail = await fullView(r);
      try {
        detail.pages = await pager.pagesOf(detail.id);
      } catch (err) {
        detail.pagesUnavailable = errorMessage(err);
      }
      return detail;
    },

    async acknowledge(id, actor) {
      mayChange(actor);
      const r = await load(id);
      if (!OPEN_STATUSES.includes(r.status))
        throw new ConflictError(
          `${incidentLabel(r.number)} is ${r.status}: there is nothing to acknowledge`,
          {
            details: { status: r.status },
          },
        );
      const pages = await pager.acknowledgeIncident(incidentLabel(r.number), actor);
      const { incident } = await mutate(r.number, (cur) => {
        const at = clock.now().toISOString();
        const changes: IncidentChanges = {};
        const entries: NewTimelineEntry[] = [];
        if (cur.status === 'declared') {
          changes.status = 'investigating';
          changes.transitions = [
            ...cur.transitions,
            { from: 'declared', to: 'investigating', at, by: actor.name },
          ];
          entries.push({
            kind: 'status',
            message: `declared → investigating: acknowledged by ${actor.name}`,
            actor,
            data: { from: 'declared', to: 'investigating' },
          });
        }
        if (cur.acknowledgedAt === undefined) {
          changes.acknowledgedAt = at;
          changes.acknowledgedBy = actor.name;
          entries.push({
            kind: 'page-acknowledged',
            message: `acknowledged by ${actor.name} (${pages} page${pages === 1 ? '' : 's'})`,
            actor,
            data: { pages },
          });
        }
        const person = directory.personOfActor(actor);
        // Without a war room, whoever acknowledged owns it (their person id, else their name).
        if (!level(cur.severity).warRoom && cur.owner === undefined) {
          changes.owner = person?.id ?? actor.name;
          entries.push({
            kind: 'owner',
            message: `Owner: ${person?.name ?? actor.name} (acknowledged)`,
            actor,
            data: { role: 'owner', to: changes.owner },
          });
        }
        return {
          changes,
          entries,
          audit: { actor, action: 'incident.acknowledge', data: { pages } },
          result: undefined,
        };
      });
      return fullView(incident);
    },

    async transition(id, to, actor, note) {
      mayChange(actor);
      const r = await load(id);
      const label = incidentLabel(r.number);
      const reason = note !== undefined ? text(note, 'note', MAX_TEXT, false) : undefined;
      const check = (cur: IncidentRecord): void => {
        if (!transitionAllowed(cur.status, to)) {
          const next = allowedNext(cur.status);
          throw new ConflictError(
            `${label} is ${cur.status}; it cannot go to ${to} (from ${cur.status}: ${next.length > 0 ? next.join(', ') : 'nothing, it is closed'})`,
            { details: { current: cur.status, requested: to } },
          );
        }
      };
      check(r);
      // Leaving the open statuses (resolved, or straight to postmortem/closed) ends the pages first.
      const ends = (from: IncidentStatus): boolean =>
        OPEN_STATUSES.includes(from) && !OPEN_STATUSES.includes(to);
      if (ends(r.status)) await pager.resolveIncident(label, actor);
      const { incident, result: ended } = await mutate(r.number, (cur) => {
        check(cur);
        const at = clock.now().toISOString();
        const reopen = cur.status === 'resolved' && to === 'investigating';
        let changes: IncidentChanges;
        if (ends(cur.status)) changes = resolveChanges(cur, at, actor, to);
        else {
          changes = {
            status: to,
            transitions: [...cur.transitions, { from: cur.status, to, at, by: actor.name }],
          };
          if (reopen) {
            Object.assign(changes, {
              ownsGroup: true,
              nextUpdateDueAt: dueAfter(cur.severity, clock.now()),
              remindedFor: null,
              missedFor: null,
            });
          }
        }
        return {
          changes,
          entries: [
            {
              kind: 'status',
              message: `${cur.status} → ${to}${reopen ? ' (reopened)' : ''}${reason ? `: ${reason}` : ''}`,
              actor,
              data: { from: cur.status, to, ...(reopen ? { reopened: true } : {}) },
            },
          ],
          audit: {
            actor,
            action: reopen ? 'incident.reopen' : `incident.${to}`,
            data: { from: cur.status, to },
          },
          result: ends(cur.status),
        };
      });
      if (ended) await afterResolve(incident.number, actor, !ends(r.status));
      else if (to === 'postmortem') await generate(incident, actor, 'save');
      // Reopened: a new page (its own key), whatever became of the first one.
      if (r.status === 'resolved' && to === 'investigating')
        await pageOrRecord(incident, {}, ' (use call-in)');
      return fullView((await repo.get(scope, incident.number)) ?? incident);
    },

    async setSeverity(id, severityText, actor, reason) {
      mayChange(actor);
      const severity = severityOf(severityText);
      const r = await load(id);
      const why = reason !== undefined ? text(reason, 'reason', MAX_TEXT, false) : undefined;
      const { incident, result: from } = await mutate(r.number, (cur) => {
        const change = severityChange(cur, severity, actor, why);
        if (!change) return { result: undefined };
        return {
          ...change,
          audit: { actor, action: 'incident.severity', data: { from: cur.severity, to: severity } },
          result: cur.severity,
        };
      });
      // Raised: the new severity's people are paged and told (new keys: the first page stays as it was).
      if (from !== undefined && severity < from && OPEN_STATUSES.includes(incident.status))
        await pageRaised(incident, from, actor, why);
      return fullView(incident);
    },

    async assignRole(id, role, person, actor) {
      mayChange(actor);
      if (role !== 'owner' && !(INCIDENT_ROLES as readonly string[]).includes(role))
        throw new InputError(
          `role: "${String(role)}" is not one of ${[...INCIDENT_ROLES, 'owner'].join(', ')}`,
          {
            details: { field: 'role' },
          },
        );
      const who = person === null ? undefined : directory.requirePerson(person, 'person');
      const r = await load(id);
      const title = ROLE_TITLES[role];
      const { incident, result: changed } = await mutate(r.number, (cur) => {
        const before = role === 'owner' ? cur.owner : cur.roles[role];
        if (before === who?.id) return { result: false };
        const handover = before !== undefined && who !== undefined;
        const changes: IncidentChanges =
          role === 'owner'
            ? { owner: who?.id ?? null }
            : {
                roles: Object.fromEntries(
                  Object.entries({ ...cur.roles, [role]: who?.id }).filter(([, v]) => v !== undefined),
                ),
              };
        const beforeName = before !== undefined ? (directory.person(before)?.name ?? before) : undefined;
        return {
          changes,
          entries: [
            {
              kind: role === 'owner' ? 'owner' : 'role',
              message: who
                ? `${title}: ${handover ? `${beforeName} handed over to ` : ''}${who.name}`
                : `${title}: ${beforeName ?? 'nobody'} stepped down`,
              actor,
              data: {
                role,
                ...(before !== undefined ? { from: before } : {}),
                ...(who ? { to: who.id } : {}),
                handover,
              },
            },
          ],
          audit: {
            actor,
            action: 'incident.role',
            data: { role, from: before ?? null, to: who?.id ?? null },
          },
          result: true,
        };
      });
      if (changed && who) {
        const label = incidentLabel(incident.number);
        await pager
          .notify({
            dedupKey: `incident:${label}:role:${role}:${who.id}:${incident.revision}`,
            incidentId: label,
            kind: 'notification',
            subject: `[${label} ${incident.severity}] you are ${title}: ${incident.title}`,
            body: `${actor.name} made you ${title} of ${label} (${incident.status}).`,
            to: [{ person: who.id }],
          })
          .catch((err: unknown) =>
            log.warn({ incident: label, err: errorMessage(err) }, 'could not tell the new role holder'),
          );
      }
      return fullView(incident);
    },

    async checklist(id, itemId, done, actor) {
      mayChange(actor);
      const r = await load(id);
      const { incident } = await mutate(r.number, (cur) => {
        const item = cur.checklist.find((i) => i.id === itemId);
        if (!item)
          throw new NotFoundError(
            `${incidentLabel(cur.number)} has no checklist item ${itemId} (items: ${cur.checklist.map((i) => i.id).join(', ')})`,
            { details: { field: 'item' } },
          );
        if ((item.done !== undefined) === done) return { result: undefined };
        const at = clock.now().toISOString();
        return {
          changes: {
            checklist: cur.checklist.map((i) =>
              i.id === itemId ? { ...i, done: done ? { by: actor.name, at } : undefined } : i,
            ),
          },
          entries: [
            {
              kind: 'checklist',
              message: `${done ? 'done' : 'not done'}: ${item.text}`,
              actor,
              data: { item: itemId, done },
            },
          ],
          audit: { actor, action: 'incident.checklist', data: { item: itemId, done } },
          result: undefined,
        };
      });
      return fullView(incident);
    },

    async setDetails(id, details, actor) {
      mayChange(actor);
      const changes: IncidentChanges = {};
      if (details.title !== undefined) changes.title = text(details.title, 'title', MAX_TITLE);
      if (details.summary !== undefined) changes.summary = text(details.summary, 'summary', MAX_TEXT, false);
      if (details.impact !== undefined) changes.impact = text(details.impact, 'impact', MAX_TEXT, false);
      if (details.rootCause !== undefined)
        changes.rootCause = text(details.rootCause, 'rootCause', MAX_TEXT, false);
      const r = await load(id);
      const fields = Object.keys(changes);
      if (fields.length === 0) return fullView(r);
      const { incident } = await mutate(r.number, () => ({
        changes,
        entries: [{ kind: 'note', message: `${fields.join(', ')} updated`, actor, data: { fields } }],
        audit: { actor, action: 'incident.details', data: { fields } },
        result: undefined,
      }));
      return fullView(incident);
    },

    async statusUpdate(id, input, actor) {
      mayChange(actor);
      const body = text(input.text, 'text', MAX_TEXT);
      const audiences = [...new Set(input.notify ?? [])];
      for (const a of audiences) channelsFor(a);
      const r = await load(id);
      const { incident, entries } = await mutate(r.number, (cur) => ({
        changes: {
          lastUpdateAt: clock.now().toISOString(),
          nextUpdateDueAt: OPEN_STATUSES.includes(cur.status) ? dueAfter(cur.severity, clock.now()) : null,
        },
        entries: [
          {
            kind: 'status-update',
            message: `status update: ${body}`,
            actor,
            data: { text: body, notify: audiences },
          },
        ],
        audit: { actor, action: 'incident.status-update', data: { notify: audiences } },
        result: undefined,
      }));
      const seq = entries[0]?.seq ?? incident.revision;
      for (const audience of audiences)
        await sendNotice(incident, audience, body, actor, `update:${seq}`, true);
      return fullView(incident);
    },

    async draft(id, actor = SYSTEM_ACTOR) {
      const r = await load(id);
      return buildDraft(await fullView(r), await mergedTimeline(r, actor), timeZone);
    },

    async note(id, noteText, actor) {
      mayChange(actor);
      const body = text(noteText, 'text', MAX_TEXT);
      const r = await load(id);
      const { entries } = await mutate(r.number, () => ({
        entries: [{ kind: 'note', message: body, actor }],
        audit: { actor, action: 'incident.note' },
        result: undefined,
      }));
      return fromStored(entries[0]!);
    },

    async callIn(id, input, actor) {
      mayChange(actor);
      if (!Array.isArray(input.targets) || input.targets.length === 0)
        throw new InputError('targets: name at least one person, team or schedule', {
          details: { field: 'targets' },
        });
      input.targets.forEach((t, i) => directory.checkTarget(t, `targets[${i}]`));
      const message =
        input.message !== undefined ? text(input.message, 'message', MAX_TEXT, false) : undefined;
      const r = await load(id);
      const label = incidentLabel(r.number);
      const now = clock.now().toISOString();
      const key = createHash('sha256')
        .update(JSON.stringify([input.targets, message ?? '', now]))
        .digest('hex')
        .slice(0, 16);
      const links = incidentLinks(label);
      const page = await pager.page(
        {
          dedupKey: `incident:${label}:call-in:${key}`,
          incidentId: label,
          subject: `[${label} ${r.severity}] you are called in: ${r.title}`,
          body: [
            `${actor.name} calls you into ${label} (${r.status}): ${r.title}`,
            ...(message ? [message] : []),
          ].join('\n'),
          severity: severityOf(r.severity),
          labels: labelsOf(r),
          targets: input.targets,
          ...(links ? { links } : {}),
        },
        actor,
      );
      await mutate(r.number, () => ({
        entries: [
          {
            kind: 'call-in',
            message: `called in ${input.targets.map(targetName).join(', ')}${message ? `: ${message}` : ''}`,
            actor,
            data: { targets: input.targets, pageId: page.id },
          },
        ],
        audit: { actor, action: 'incident.call-in', data: { targets: input.targets, pageId: page.id } },
        result: undefined,
      }));
      return page;
    },

    async notice(id, input, actor) {
      mayChange(actor);
      const body = text(input.text, 'text', MAX_TEXT);
      channelsFor(input.audience);
      const r = await load(id);
      const key = createHash('sha256')
        .update(`${body}\n${clock.now().toISOString()}`)
        .digest('hex')
        .slice(0, 16);
      await sendNotice(r, input.audience, body, actor, `notice:${key}`, false);
    },

    async runRunbook(id, runbook, params, actor, options = {}) {
      mayChange(actor);
      const r = await load(id);
      const label = incidentLabel(r.number);
      const runs = await deps.runs();
      const run = await runs.start(
        {
          runbook,
          params,
          trigger: options.trigger ?? 'api',
          reason: `incident ${label}`,
          ...(options.idempotencyKey !== undefined ? { idempotencyKey: options.idempotencyKey } : {}),
        },
        actor,
      );
      await repo.linkRun(
        scope,
        r.number,
        { runId: run.id, runbook: run.runbook, startedAt: run.createdAt, startedBy: actor.name },
        {
          kind: 'runbook-run',
          message: `runbook ${run.runbook} started (run ${run.id})`,
          actor,
          data: { runId: run.id, runbook: run.runbook },
        },
        actor,
      );
      return run;
    },

    async timeline(id, actor = SYSTEM_ACTOR) {
      return mergedTimeline(await load(id), actor);
    },

    async export(id, format, actor = SYSTEM_ACTOR) {
      const r = await load(id);
      const entries = await mergedTimeline(r, actor);
      const v = view(r);
      if (format === 'json') return timelineJson(v, entries);
      if (format === 'markdown') return timelineMarkdown(v, entries, timeZone);
      if (format === 'csv') return timelineCsv(entries);
      throw new InputError(`format: "${String(format)}" is not one of json, markdown, csv`, {
        details: { field: 'format' },
      });
    },

    async postmortem(id, options = {}, actor = SYSTEM_ACTOR) {
      if (options.regenerate) mayChange(actor);
      return generate(await load(id), actor, options.regenerate === true ? 'regenerate' : 'view');
    },

    async edit(id, input, actor) {
      mayChange(actor);
      if (!Number.isInteger(input.baseVersion) || input.baseVersion < 0)
        throw new InputError('baseVersion: the version the edit started from (a whole number)', {
          details: { field: 'baseVersion' },
        });
      const markdown = text(input.markdown, 'markdown', 200_000);
      // Terminal escapes and other control characters never get into a stored document.
      const sections = Object.fromEntries(
        Object.entries(parsePostmortem(markdown)).map(([title, body]) => [noControl(title), noControl(body)]),
      );
      const r = await load(id);
      const label = incidentLabel(r.number);
      const versions = await repo.postmortems(scope, r.number);
      const base = versions.find((v) => v.version === input.baseVersion);
      const latest = versions[versions.length - 1];
      if ((latest?.version ?? 0) !== input.baseVersion)
        throw new ConflictError(
          `the post-mortem of ${label} is at version ${latest?.version ?? 0}, not ${input.baseVersion}: someone saved a newer version; load it and apply your edit again`,
          { details: { field: 'baseVersion', current: latest?.version ?? 0 } },
        );
      // No version saved yet: the edit started from the unsaved draft that GET shows.
      const from = base?.sections ?? parsePostmortem((await generate(r, actor, 'view')).markdown);
      let changed = editedSections(from, sections);
      // The draft's timeline may have grown since it was read: only lines it never had are an edit.
      if (!base && changed.includes('Timeline')) {
        const now = new Set((from.Timeline ?? '').split('\n'));
        if ((sections.Timeline ?? '').split('\n').every((line) => now.has(line)))
          changed = changed.filter((t) => t !== 'Timeline');
      }
      refuseTimelineEdit(changed);
      const edited = [...new Set([...(base?.edited ?? []), ...changed])];
      // Action Items lines are synced into the action items (so regeneration keeps every edit).
      if (changed.includes('Action Items'))
        await syncActionItems(r, actionItemLines(sections['Action Items']), actor);
      await repo.savePostmortem(
        scope,
        r.number,
        input.baseVersion,
        { markdown: renderPostmortem(label, sections), sections, edited, kind: 'edited' },
        actor,
      );
      return postmortemView(r, await repo.postmortems(scope, r.number));
    },

    actionItems: {
      list: async (id) => repo.actionItems(scope, (await load(id)).number),
      async add(id, item, actor) {
        mayChange(actor);
        const title = text(item.title, 'title', 500);
        if (item.owner !== undefined) directory.checkOwner(item.owner, 'owner');
        const dueDate = item.dueDate !== undefined ? date(item.dueDate) : undefined;
        const r = await load(id);
        return repo.addActionItem(scope, r.number, { title, owner: item.owner, dueDate }, actor);
      },
      async update(id, itemId, change, actor) {
        mayChange(actor);
        if (change.owner) directory.checkOwner(change.owner, 'owner');
        if (change.status !== undefined && change.status !== 'open' && change.status !== 'done')
          throw new InputError(`status: "${String(change.status)}" is not open or done`, {
            details: { field: 'status' },
          });
        const r = await load(id);
        return repo.updateActionItem(
          scope,
          r.number,
          itemId,
          {
            ...(change.title !== undefined ? { title: text(change.title, 'title', 500) } : {}),
            ...(change.owner !== undefined ? { owner: change.owner } : {}),
            ...(change.dueDate !== undefined
              ? { dueDate: change.dueDate === null ? null : date(change.dueDate) }
              : {}),
            ...(change.status !== undefined ? { status: change.status } : {}),
          },
          actor,
        );
      },
      async remove(id, itemId, actor) {
        mayChange(actor);
        await repo.deleteActionItem(scope, (await load(id)).number, itemId, actor);
      },
    },

    async tick(now) {
      for (const r of await repo.dueForUpdate(scope, now)) {
        try {
          await remindOrEscalate(r, now);
        } catch (err) {
          log.error(
            { incident: incidentLabel(r.number), err: errorMessage(err) },
            'status-update reminder failed; retrying next tick',
          );
        }
      }
    },
  };

  // ---------------------------------------------------------------------------------------------

  async function runbookExists(name: string): Promise<boolean> {
    try {
      await (await deps.runs()).runbook(name, SYSTEM_ACTOR);
      return true;
    } catch {
      return false;
    }
  }

  function resolveChanges(
    cur: IncidentRecord,
    at: string,
    actor: Actor,
    to: IncidentStatus = 'resolved',
  ): IncidentChanges {
    return {
      status: to,
      ownsGroup: false,
      nextUpdateDueAt: null,
      transitions: [...cur.transitions, { from: cur.status, to, at, by: actor.name }],
    };
  }

  /** After a resolve: the pages end, and the post-mortem is (re)generated from the timeline. */
  async function afterResolve(number: number, actor: Actor, resolvePages: boolean): Promise<void> {
    const label = incidentLabel(number);
    if (resolvePages)
      await pager.resolveIncident(label, actor).catch((err: unknown) => {
        log.error(
          { incident: label, err: errorMessage(err) },
          'could not resolve the pages of a resolved incident',
        );
        throw err;
      });
    const r = await repo.get(scope, number);
    if (r) await generate(r, actor, 'regenerate');
  }

  function channelsFor(audience: NoticeAudience): string[] {
    if (audience !== 'stakeholders' && audience !== 'customers')
      throw new InputError(`audience: "${String(audience)}" is not stakeholders or customers`, {
        details: { field: 'audience' },
      });
    const channels = config.incidents.notices[audience];
    if (channels.length === 0)
      throw new InputError(
        `incidents.notices.${audience} names no channel: there is nowhere to send ${audience} notices`,
        {
          details: { field: 'audience' },
        },
      );
    return channels;
  }

  async function sendNotice(
    r: IncidentRecord,
    audience: NoticeAudience,
    body: string,
    actor: Actor,
    key: string,
    ofUpdate: boolean,
  ): Promise<void> {
    const label = incidentLabel(r.number);
    const channels = channelsFor(audience);
    await pager.notify({
      dedupKey: `incident:${label}:${key}:${audience}`,
      incidentId: label,
      kind: 'notice',
      subject: `[${label}] ${r.title}`,
      body,
      to: channels.map((channel) => ({ channel })),
    });
    await mutate(r.number, () => ({
      entries: [
        {
          kind: 'notice',
          message: `${audience} notice sent (${channels.join(', ')})`,
          actor,
          data: { audience, channels, ...(ofUpdate ? { ofUpdate } : {}) },
        },
      ],
      audit: { actor, action: 'incident.notice', data: { audience, channels } },
      result: undefined,
    }));
  }

  /** A person or team named in an Action Items line (id or name, any case). @throws InputError */
  function ownerOf(text: string): ActionItemOwner {
    const id = text.trim().toLowerCase();
    if (directory.person(id)) return { person: id };
    if (config.teams.some((t) => t.id === id)) return { team: id };
    const team = config.teams.find((t) => t.name.toLowerCase() === id);
    if (team) return { team: team.id };
    const person = config.people.find((p) => p.name.toLowerCase() === id);
    if (person) return { person: person.id };
    throw new InputError(
      `markdown: Action Items owner "${text}" is neither a person nor a team of the config (or "unassigned")`,
      { details: { field: 'markdown', section: 'Action Items' } },
    );
  }

  /**
   * Syncs edited Action Items lines into the items: a line with an item marker (or the same title)
   * updates that item's title, owner, due date and status; a new line becomes a new item. Everything is
   * checked before the first write. A line removed from the section does not delete its item (use
   * `--remove-item`): the next regeneration lists it again.
   */
  async function syncActionItems(r: IncidentRecord, lines: ActionItemLine[], actor: Actor): Promise<void> {
    const items = await repo.actionItems(scope, r.number);
    const planned = lines.map((line) => {
      const existing = line.id
        ? items.find((i) => i.id === line.id)
        : items.find((i) => i.title.toLowerCase() === line.title.toLowerCase());
      if (line.id && !existing)
        throw new InputError(
          `markdown: Action Items line "${line.title.slice(0, 120)}" names item ${line.id}, which ${incidentLabel(r.number)} does not have (remove its <!-- item: --> marker to add it as a new item)`,
          { details: { field: 'markdown', section: 'Action Items' } },
        );
      const title = text(line.title, 'markdown: Action Items title', 500);
      const owner = line.owner === undefined ? undefined : line.owner === null ? null : ownerOf(line.owner);
      return { line, existing, title, owner };
    });
    for (const { line, existing, title, owner } of planned) {
      const status = line.done ? 'done' : 'open';
      if (existing) {
        const change: Parameters<IncidentRepo['updateActionItem']>[3] = {};
        if (existing.title !== title) change.title = title;
        if (owner !== undefined && JSON.stringify(owner ?? null) !== JSON.stringify(existing.owner ?? null))
          change.owner = owner;
        if (line.due !== undefined && (line.due ?? undefined) !== existing.dueDate) change.dueDate = line.due;
        if (existing.status !== status) change.status = status;
        if (Object.keys(change).length > 0)
          await repo.updateActionItem(scope, r.number, existing.id, change, actor);
        continue;
      }
      const created = await repo.addActionItem(
        scope,
        r.number,
        { title, owner: owner ?? undefined, dueDate: line.due ?? undefined },
        actor,
      );
      if (line.done) await repo.updateActionItem(scope, r.number, created.id, { status: 'done' }, actor);
    }
  }

  async function remindOrEscalate(r: IncidentRecord, now: Date): Promise<void> {
    const due = r.nextUpdateDueAt;
    if (due === undefined) return;
    const label = incidentLabel(r.number);
    const missed = now.getTime() >= Date.parse(due) + config.incidents.statusUpdateGrace;
    if (r.remindedFor !== due) {
      const draft = buildDraft(await fullView(r), await mergedTimeline(r, SYSTEM_ACTOR), timeZone);
      const links = incidentLinks(label);
      const targets = reminderTargets(r);
      // Sent first (idempotent by key), recorded after: a crash in between re-sends the same reminder.
      // Nobody to remind (no roles, no owner, no escalation policy): the timeline says so instead.
      if (targets.length > 0)
        await pager.notify({
          dedupKey: `incident:${label}:update-due:${due}`,
          incidentId: label,
          kind: 'reminder',
          subject: `[${label} ${r.severity}] status update due: ${r.title}`,
          body: `A status update on ${label} is due now. Draft:\n\n${draft.text}\n\nPost it: gameops incident update ${label} --text "..."`,
          to: targets,
          ...(links ? { links } : {}),
        });
      await mutate(r.number, (cur) =>
        cur.nextUpdateDueAt === due && cur.remindedFor !== due
          ? {
              changes: { remindedFor: due },
              entries: [
                {
                  kind: 'status-update-due',
                  message: `status update due; reminded ${reminderTargets(cur).map(targetName).join(', ') || 'nobody (no on-call configured)'}`,
                  data: { dueAt: due },
                  dedupKey: `update-due:${due}`,
                },
              ],
              audit: { actor: SYSTEM_ACTOR, action: 'incident.update-reminder', data: { dueAt: due } },
              result: undefined,
            }
          : { result: undefined },
      );
    }
    if (!missed || r.missedFor === due) return;
    const escalateTo = level(r.severity).escalateTo;
    const escalates = escalateTo.length > 0 || config.oncall.policies.length > 0;
    if (escalates)
      await pager.page({
        dedupKey: `incident:${label}:update-missed:${due}`,
        incidentId: label,
        subject: `[${label} ${r.severity}] status update missed: ${r.title}`,
        body: `No status update on ${label} since it was due at ${due}.`,
        severity: severityOf(r.severity),
        labels: labelsOf(r),
        ...(escalateTo.length > 0 ? { targets: escalateTo } : { policy: policyOf(r) }),
      });
    const every = level(r.severity).statusUpdateEvery;
    await mutate(r.number, (cur) =>
      cur.nextUpdateDueAt === due && cur.missedFor !== due
        ? {
            changes: {
              missedFor: due,
              // The next reminder comes one cadence after the missed one, and never in the past: after
              // downtime, one reminder and one escalation cover the whole gap instead of a burst.
              nextUpdateDueAt:
                every !== undefined
                  ? new Date(Math.max(Date.parse(due), now.getTime()) + every).toISOString()
                  : null,
            },
            entries: [
              {
                kind: 'status-update-missed',
                message: `status update missed (due ${due}); ${
                  !escalates
                    ? 'nobody to escalate to (no escalateTo, no escalation policy)'
                    : `escalated to ${escalateTo.length > 0 ? escalateTo.map(targetName).join(', ') : `policy ${policyOf(cur) ?? 'default'}`}`
                }`,
                data: { dueAt: due },
                dedupKey: `update-missed:${due}`,
              },
            ],
            audit: { actor: SYSTEM_ACTOR, action: 'incident.update-missed', data: { dueAt: due } },
            result: undefined,
          }
        : { result: undefined },
    );
  }

  return service;
}

function fromStored(e: TimelineEntryRecord): TimelineEntry {
  return {
    seq: e.seq,
    at: e.at,
    kind: e.kind,
    message: e.message,
    ...(e.actor ? { actor: e.actor } : {}),
    data: e.data,
  };
}

function alertData(alert: AlertRef): Record<string, unknown> {
  return {
    fingerprint: alert.fingerprint,
    startsAt: alert.startsAt,
    alertname: alert.name,
    labels: alert.labels,
    ...(alert.generatorUrl !== undefined ? { generatorUrl: alert.generatorUrl } : {}),
    ...(alert.runbookUrl !== undefined ? { runbookUrl: alert.runbookUrl } : {}),
  };
}

function validTime(iso: string | undefined): string | undefined {
  if (iso === undefined) return undefined;
  const ms = Date.parse(iso);
  // Alertmanager's "0001-01-01T00:00:00Z" means unset.
  return Number.isFinite(ms) && ms > 0 ? new Date(ms).toISOString() : undefined;
}

function date(value: string): string {
  if (
    typeof value !== 'string' ||
    !/^\d{4}-\d{2}-\d{2}$/.test(value) ||
    Number.isNaN(Date.parse(`${value}T00:00:00Z`))
  )
    throw new InputError(`dueDate: "${String(value)}" is not a date (YYYY-MM-DD)`, {
      details: { field: 'dueDate' },
    });
  return value;
}

function targetName(t: PageTarget): string {
  if ('person' in t) return t.person;
  if ('team' in t) return `team ${t.team}`;
  if ('teamLead' in t) return `lead of ${t.teamLead}`;
  return `on-call ${t.schedule}${t.layer ? `/${t.layer}` : ''}`;
}
