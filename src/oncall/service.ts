import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Logger } from '../app/log.ts';
import { retryDelayMs } from '../channels/retry.ts';
import type { GameopsConfig } from '../config/load.ts';
import { SEVERITIES } from '../config/schema.ts';
import {
  type Clock,
  InputError,
  NotAllowedError,
  NotFoundError,
  errorMessage,
  mapLimit,
} from '../core/index.ts';
import type {
  AttemptOutcome,
  IncidentEvents,
  Link,
  OutboundMessage,
  PageInput,
  PageTarget,
  PageView,
  Pager,
  Suppressions,
  TimelineEntryInput,
} from '../ops/contracts.ts';
import type { Actor } from '../runbooks/model.ts';
import type { Store } from '../store/index.ts';
import type { NewNotification, NewPage, NotificationRow, PageRow } from '../store/oncall.ts';
import { ACK_KEY_SETTING, newAckKey, readAckToken, signAckToken } from './ack-link.ts';
import { shiftsCalendar } from './ical.ts';
import type {
  AckLinkView,
  Delivery,
  Override,
  OverrideInput,
  PageChange,
  PageDetail,
  PageFilter,
  ScheduleOnCall,
  Shift,
} from './model.ts';
import {
  type LayerSpec,
  type OverrideSpec,
  type ScheduleSpec,
  isTimeZone,
  layerShifts,
  shiftAt,
} from './rotation.ts';

/**
 * On-call: schedules and overrides, pages that escalate through a policy until acknowledged, and their
 * deliveries through channels. Everything that must survive a restart is in the store; `tick(now)` moves
 * it on (due escalation steps, due delivery attempts, the stall auditor) and is safe to run in several
 * gameops instances sharing PostgreSQL at once.
 */
export interface OncallService extends Pager {
  /** Who is on call in every layer of every schedule (or of `schedule`) at `at` (default now). */
  whoIsOnCall: (options?: {
    at?: Date | undefined;
    schedule?: string | undefined;
  }) => Promise<ScheduleOnCall[]>;
  /**
   * The shifts of a schedule (overrides applied) overlapping [from, to), at most 366 days.
   * @throws NotFoundError for an unknown schedule; InputError for a bad range or unknown layer.
   */
  shifts: (schedule: string, from: Date, to: Date, layer?: string) => Promise<Shift[]>;
  /** The schedule as iCalendar text over [from, to) (default: a week back to 90 days ahead). */
  ical: (schedule: string, from?: Date, to?: Date) => Promise<string>;
  /**
   * Stores an override: `person` covers a layer of a schedule in [from, to).
   * @throws InputError naming the field (unknown schedule, layer or person; to not after from; to in the past).
   * @throws ConflictError naming the override it overlaps in that layer.
   */
  addOverride: (input: OverrideInput, actor: Actor) => Promise<Override>;
  /** Overrides ending after `from` (default now), of `schedule` when given. */
  overrides: (filter?: { schedule?: string | undefined; from?: Date | undefined }) => Promise<Override[]>;
  /** @throws NotFoundError for an unknown id. */
  removeOverride: (id: string, actor: Actor) => Promise<Override>;
  /**
   * A page a person asked for (POST /api/pages, `gameops oncall page`). Suppression windows apply only
   * when `suppressible` (someone paging by hand means it). @throws InputError for a dedup key with a
   * reserved prefix ({@link RESERVED_DEDUP_PREFIXES}), an unknown policy or target.
   */
  manualPage: (
    input: PageInput,
    actor: Actor,
    options?: { suppressible?: boolean | undefined },
  ) => Promise<PageView>;
  /** Pages, newest first (one-shot notifications are not listed). */
  pages: (filter?: PageFilter) => Promise<PageView[]>;
  /** A page with its deliveries and every attempt. @throws NotFoundError for an unknown id. */
  pageDetail: (id: string) => Promise<PageDetail>;
  /** Stops escalation (a triggered or exhausted page). @throws NotFoundError for an unknown id. */
  acknowledge: (id: string, actor: Actor) => Promise<PageChange>;
  /** Ends the page (acknowledged or not). @throws NotFoundError for an unknown id. */
  resolve: (id: string, actor: Actor) => Promise<PageChange>;
  /** The signed acknowledge link for `person` on a page; undefined without server.publicUrl. */
  ackLink: (pageId: string, person: string) => Promise<string | undefined>;
  /** The signed token alone (what the link carries). */
  ackToken: (pageId: string, person: string) => Promise<string>;
  /**
   * What a token stands for, for its confirmation page.
   * @throws NotAllowedError for a malformed, forged or expired token (saying which).
   */
  checkAckToken: (token: string) => Promise<AckLinkView>;
  /** Acknowledges as the token's person (actor `ack-link:<person>`). @throws NotAllowedError as checkAckToken. */
  acknowledgeByLink: (token: string) => Promise<PageChange & { person: string }>;
  /** The stall auditor's records (late escalation steps and deliveries), newest first. */
  stalls: (limit?: number) => Promise<Stall[]>;
  /** One round of background work at `now`: the stall auditor, due escalation steps, due deliveries. */
  tick: (now: Date) => Promise<void>;
}

/** One attempt at one channel; the shape of src/channels' `Channels.attempt`. */
export interface ChannelAttempts {
  attempt: (channel: string, message: OutboundMessage, signal?: AbortSignal) => Promise<AttemptOutcome>;
}

export interface OncallDeps {
  config: GameopsConfig;
  store: Store;
  clock: Clock;
  log: Logger;
  channels: ChannelAttempts;
  events: IncidentEvents;
  suppressions: Suppressions;
  /** For retry jitter; tests pin it. @default Math.random */
  random?: () => number;
}

/** With schedules but no policy, the second layers are paged this long after the first. */
export const FALLBACK_SECOND_LEVEL_MS = 15 * 60_000;

/** At most this much random delay is added on top of a peer's Retry-After (a quarter of it when smaller). */
export const RETRY_AFTER_JITTER_MS = 5_000;
/** A retry later than this (or than the page's next escalation step) tries the next contact channel now. */
export const PARK_AFTER_MS = 60_000;

/** Resolved and exhausted pages, one-shot notifications and stall records are kept this long: 90 days. */
export const RETENTION_MS = 90 * 86_400_000;
const PRUNE_EVERY_MS = 3_600_000;

/** A late escalation step or delivery the auditor found. */
export interface Stall {
  /** `page:<id>:step:<n>` or `delivery:<id>:attempt:<n>`. */
  ref: string;
  pageId: string;
  dueAt: string;
  detectedAt: string;
}

/** Dedup-key prefixes gameops uses itself (incident pages, its own alerts, heartbeats); people may not. */
export const RESERVED_DEDUP_PREFIXES = ['incident:', 'gameops:', 'heartbeat:'] as const;

/** An escalation or delivery due longer ago than this and not done means the loop stalled. */
export const STALL_AFTER_MS = 60_000;
/** While a stall page is open, a new stall episode pages again only after this long: 1 hour. */
export const STALL_REPAGE_MS = 3_600_000;
const STALL_DEDUP_PREFIX = 'gameops:escalation-stalled:';
/** The gap before a policy runs again (repeat) when its first two levels are not apart: 1 minute. */
export const DEFAULT_ROUND_GAP_MS = 60_000;
/** How long a claimed delivery attempt may take beyond the channel timeout before another claim may retry it. */
const LEASE_MARGIN_MS = 30_000;
const BATCH = 200;
/**
 * How long (clock time) one tick goes on claiming deliveries. Claims stop after it, so every claim's lease
 * (channel timeout + margin, from the claim) is still valid when its attempt ends, and the next tick (with
 * fresh escalation steps) is not held up by a long queue.
 */
export const DELIVERY_BUDGET_MS = 20_000;
const DELIVERY_CONCURRENCY = 8;
const MAX_RANGE_MS = 366 * 86_400_000;
const SYSTEM: Actor = { id: 'system', name: 'gameops', role: 'admin', kind: 'system' };

const targetSchema = z.union([
  z.strictObject({ person: z.string().min(1) }),
  z.strictObject({ team: z.string().min(1) }),
  z.strictObject({ teamLead: z.string().min(1) }),
  z.strictObject({ schedule: z.string().min(1), layer: z.string().min(1).optional() }),
]);
const linkSchema = z.strictObject({
  title: z.string().min(1).max(200),
  url: z.url({ protocol: /^https?$/ }),
});
const pageInputSchema = z.object({
  dedupKey: z.string().min(1).max(300),
  incidentId: z.string().min(1).max(100).optional(),
  subject: z.string().trim().min(1).max(300),
  body: z.string().max(20_000),
  severity: z.enum(SEVERITIES),
  labels: z.record(z.string(), z.string()).optional(),
  policy: z.string().min(1).optional(),
  targets: z.array(targetSchema).min(1).max(50).optional(),
  links: z.array(linkSchema).max(20).optional(),
});
const notifyInputSchema = z.object({
  dedupKey: z.string().min(1).max(300),
  incidentId: z.string().min(1).max(100).optional(),
  kind: z.enum(['reminder', 'notice', 'notification']),
  subject: z.string().trim().min(1).max(300),
  body: z.string().max(20_000),
  to: z
    .array(z.union([targetSchema, z.strictObject({ channel: z.string().min(1) })]))
    .min(1)
    .max(50),
  links: z.array(linkSchema).max(20).optional(),
});

/** The levels a page escalates through, and how often they run. */
interface Plan {
  levels: Array<{ after: number; targets: PageTarget[] }>;
  repeat: number;
  /** The length of one round: the last level's delay plus the gap (see {@link roundGap}). */
  roundMs: number;
}

/**
 * The gap between a policy's last level and its next round: the time its first level has to answer
 * (level 1's delay minus level 0's), or {@link DEFAULT_ROUND_GAP_MS} when the policy has one level or its
 * first two levels fire together. Round r starts at r × (last level's delay + gap) after the page opened.
 */
export function roundGap(levels: ReadonlyArray<{ after: number }>): number {
  const first = levels[0]?.after ?? 0;
  const second = levels[1]?.after;
  return second !== undefined && second > first ? second - first : DEFAULT_ROUND_GAP_MS;
}

function planOf(levels: Array<{ after: number; targets: PageTarget[] }>, repeat: number): Plan {
  const last = levels[levels.length - 1]?.after ?? 0;
  return { levels, repeat, roundMs: last + roundGap(levels) };
}

/** When escalation step `step` (round × levels + level; levels × (repeat+1): exhaustion) is due. */
export function stepDueAt(createdAt: number, plan: Plan, step: number): number {
  const n = plan.levels.length;
  const total = n * (plan.repeat + 1);
  if (step >= total) return createdAt + (plan.repeat + 1) * plan.roundMs;
  const round = Math.floor(step / n);
  return createdAt + round * plan.roundMs + plan.levels[step % n]!.after;
}

export function createOncallService(deps: OncallDeps): OncallService {
  const { config, store, clock, log, channels, events, suppressions } = deps;
  // Every row is this instance's (service + environment): instances sharing a database never cross-fire.
  const repo = store.oncall.forScope({
    service: config.service.name,
    environment: config.service.environment,
  });
  const random = deps.random ?? Math.random;
  const oncall = config.oncall;
  const schedules: ScheduleSpec[] = oncall.schedules.map((s) => ({
    name: s.name,
    timezone: s.timezone,
    layers: s.layers.map((l) => ({ ...l, handoff: { weekday: l.handoff.weekday, time: l.handoff.time } })),
  }));
  // A schedule whose zone this runtime does not know cannot say who is on call. Paging goes on (its
  // targets reach nobody, so the level fails over to the next one, and the timeline says so); reading the
  // schedule names the problem.
  const badZones = new Set(schedules.filter((s) => !isTimeZone(s.timezone)).map((s) => s.name));
  for (const name of badZones)
    log.error(
      { schedule: name },
      `on-call schedule ${name}: its timezone is not a known IANA time zone; nobody is on call there until it is fixed`,
    );
  const checkZone = (schedule: ScheduleSpec): ScheduleSpec => {
    if (badZones.has(schedule.name))
      throw new InputError(
        `oncall schedule ${schedule.name}: timezone "${schedule.timezone}" is not a known IANA time zone (e.g. Europe/Berlin)`,
        { details: { field: 'timezone' } },
      );
    return schedule;
  };
  const people = new Map(config.people.map((p) => [p.id, p]));
  const teams = new Map(config.teams.map((t) => [t.id, t]));
  const channelNames = new Set(config.notifications.channels.map((c) => c.name));
  const nameOf = (person: string): string => people.get(person)?.name ?? person;
  const publicUrl = config.server.publicUrl?.replace(/\/+$/, '');
  const retryPolicy = { firstMs: oncall.delivery.firstRetry, maxMs: oncall.delivery.maxRetry };
  let ackKey: Promise<string> | undefined;
  const key = (): Promise<string> => {
    ackKey ??= repo.setting(ACK_KEY_SETTING, newAckKey).catch((err: unknown) => {
      ackKey = undefined;
      throw err;
    });
    return ackKey;
  };

  // -------------------------------------------------------------------------------------------------
  // schedules

  const scheduleNamed = (name: string): ScheduleSpec => {
    const found = schedules.find((s) => s.name === name);
    if (!found)
      throw new NotFoundError(
        `no on-call schedule named "${name}" (known: ${schedules.map((s) => s.name).join(', ') || 'none'})`,
        { details: { field: 'schedule' } },
      );
    return checkZone(found);
  };
  const layerNamed = (schedule: ScheduleSpec, name: string | undefined): LayerSpec => {
    if (name === undefined) return schedule.layers[0]!;
    const found = schedule.layers.find((l) => l.name === name);
    if (!found)
      throw new InputError(
        `layer: schedule "${schedule.name}" has no layer "${name}" (it has ${schedule.layers.map((l) => l.name).join(', ')})`,
        { details: { field: 'layer' } },
      );
    return found;
  };
  const overridesAround = async (from: Date, to: Date, schedule?: string): Promise<OverrideSpec[]> =>
    (await repo.overrides({ ...(schedule ? { schedule } : {}), from, to })).map((o) => ({
      id: o.id,
      schedule: o.schedule,
      layer: o.layer,
      person: o.person,
      startsAt: o.starts_at,
      endsAt: o.ends_at,
      reason: o.reason ?? undefined,
    }));
  /** Who is on call in a schedule's layer at `at`. */
  const onCallAt = async (
    schedule: ScheduleSpec,
    layer: LayerSpec,
    at: Date,
  ): Promise<string | undefined> => {
    const overrides = await overridesAround(at, new Date(at.getTime() + 1), schedule.name);
    return shiftAt(schedule, layer, overrides, at)?.person;
  };

  // -------------------------------------------------------------------------------------------------
  // pages

  const checkTarget = (t: PageTarget, path: string): void => {
    const unknown = (what: string, value: string, known: Iterable<string>): never => {
      throw new InputError(
        `${path}: unknown ${what} "${value}" (known: ${[...known].join(', ') || 'none'})`,
        {
          details: { field: path },
        },
      );
    };
    if ('person' in t) {
      if (!people.has(t.person)) unknown('person', t.person, people.keys());
    } else if ('team' in t) {
      if (!teams.has(t.team)) unknown('team', t.team, teams.keys());
    } else if ('teamLead' in t) {
      const team = teams.get(t.teamLead);
      if (!team) unknown('team', t.teamLead, teams.keys());
      else if (team.lead === undefined)
        throw new InputError(`${path}: team "${team.id}" has no lead`, { details: { field: path } });
    } else {
      const s = schedules.find((x) => x.name === t.schedule);
      if (!s)
        unknown(
          'on-call schedule',
          t.schedule,
          schedules.map((x) => x.name),
        );
      else if (t.layer !== undefined && !s.layers.some((l) => l.name === t.layer))
        unknown(
          `layer of ${s.name}`,
          t.layer,
          s.layers.map((l) => l.name),
        );
    }
  };

  /** The people a target stands for at `at` (a schedule: whoever is on call then). */
  const peopleOf = async (t: PageTarget, at: Date): Promise<string[]> => {
    if ('person' in t) return people.has(t.person) ? [t.person] : [];
    if ('team' in t) return teams.get(t.team)?.members ?? [];
    if ('teamLead' in t) {
      const lead = teams.get(t.teamLead)?.lead;
      return lead === undefined ? [] : [lead];
    }
    const schedule = schedules.find((s) => s.name === t.schedule);
    if (!schedule || badZones.has(schedule.name)) return [];
    const layer =
      t.layer === undefined ? schedule.layers[0] : schedule.layers.find((l) => l.name === t.layer);
    if (!layer) return [];
    const person = await onCallAt(schedule, layer, at);
    return person === undefined ? [] : [person];
  };

  const contactsOf = (person: string): string[] => {
    const own = people.get(person)?.contacts ?? [];
    return own.length > 0 ? own : oncall.defaultContacts;
  };

  /**
   * With schedules but no policy: each schedule's first layer at once, then each second layer (where one
   * exists) after 15 minutes. Undefined when there is no schedule either.
   */
  const fallbackPlan: Plan | undefined = (() => {
    if (schedules.length === 0) return undefined;
    const levels: Plan['levels'] = [
      { after: 0, targets: schedules.map((s) => ({ schedule: s.name, layer: s.layers[0]!.name })) },
    ];
    const second = schedules
      .filter((s) => s.layers.length > 1)
      .map((s) => ({ schedule: s.name, layer: s.layers[1]!.name }));
    if (second.length > 0) levels.push({ after: FALLBACK_SECOND_LEVEL_MS, targets: second });
    return planOf(levels, 0);
  })();
  let warnedNoPolicy = false;

  const planFor = (row: Pick<PageRow, 'targets' | 'policy'>): Plan => {
    if (row.targets !== null) {
      const targets = JSON.parse(row.targets) as PageTarget[];
      return planOf([{ after: 0, targets }], 0);
    }
    const policy =
      oncall.policies.find((p) => p.name === row.policy) ??
      oncall.policies.find((p) => p.name === oncall.defaultPolicy) ??
      oncall.policies[0];
    if (!policy) return fallbackPlan ?? planOf([{ after: 0, targets: [] }], 0);
    return planOf(policy.levels, policy.repeat);
  };

  const deliveryId = (pageId: string, level: number, round: number, person: string | null, channel: string) =>
    `${pageId}.${level}.${round}.${person ?? '-'}.${channel}`;

  /** The first-channel notifications of a level for these people; those without a channel are returned apart. */
  const notificationsFor = (
    pageId: string,
    level: number,
    round: number,
    persons: string[],
    at: string,
  ): { rows: NewNotification[]; unreachable: string[] } => {
    const rows: NewNotification[] = [];
    const unreachable: string[] = [];
    for (const person of persons) {
      const channel = contactsOf(person)[0];
      if (channel === undefined) {
        unreachable.push(person);
        continue;
      }
      rows.push({
        delivery_id: deliveryId(pageId, level, round, person, channel),
        page_id: pageId,
        level,
        round,
        person,
        channel,
        channel_index: 0,
        next_at: at,
      });
    }
    return { rows, unreachable };
  };

  const timeline = async (
    row: Pick<PageRow, 'incident_id' | 'id'>,
    entry: TimelineEntryInput,
  ): Promise<void> => {
    if (row.incident_id === null) return;
    try {
      await events.append(row.incident_id, { ...entry, data: { pageId: row.id, ...entry.data } });
    } catch (err) {
      log.warn(
        { page: row.id, incident: row.incident_id, kind: entry.kind, err: errorMessage(err) },
        'could not add a page event to the incident timeline',
      );
    }
  };

  const toView = (row: PageRow): PageView => ({
    id: row.id,
    dedupKey: row.dedup_key,
    ...(row.incident_id === null ? {} : { incidentId: row.incident_id }),
    subject: row.subject,
    severity: (row.severity ?? 'P3') as PageView['severity'],
    ...(row.policy === null ? {} : { policy: row.policy }),
    status: row.status as PageView['status'],
    level: row.level,
    round: row.round,
    createdAt: row.created_at,
    ...(row.next_at === null ? {} : { nextEscalationAt: row.next_at }),
    ...(row.acknowledged_at === null ? {} : { acknowledgedAt: row.acknowledged_at }),
    ...(row.acknowledged_by === null ? {} : { acknowledgedBy: row.acknowledged_by }),
    ...(row.resolved_at === null ? {} : { resolvedAt: row.resolved_at }),
    ...(row.suppressed_by === null ? {} : { suppressedBy: row.suppressed_by }),
  });

  const parse = <T>(schema: z.ZodType<T>, value: unknown, what: string): T => {
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const path = issue?.path.join('.') ?? '';
      throw new InputError(`${what}${path ? ` ${path}` : ''}: ${issue?.message ?? 'is invalid'}`, {
        details: { field: path },
      });
    }
    return parsed.data;
  };

  const newPageId = (): string => `pg-${randomUUID().replaceAll('-', '').slice(0, 16)}`;

  const basePageRow = (id: string, now: string, actor: Actor | undefined) => ({
    id,
    created_at: now,
    created_by: (actor ?? SYSTEM).name,
    updated_at: now,
    acknowledged_at: null,
    acknowledged_by: null,
    resolved_at: null,
    resolved_by: null,
    exhausted_at: null,
  });

  /** Asks the suppression windows; fails open (a page nobody needed beats a page that never went out). */
  const activeWindow = async (
    labels: Record<string, string>,
    now: Date,
    what: string,
  ): Promise<Awaited<ReturnType<Suppressions['active']>>> => {
    try {
      return await suppressions.active(labels, now);
    } catch (err) {
      log.warn({ page: what, err: errorMessage(err) }, 'could not check suppression windows; paging anyway');
      return undefined;
    }
  };

  /**
   * A suppressed page whose window may have ended: still suppressed (its end moved on) or, when no
   * window applies any more and it is not closed, it starts escalating now.
   */
  const reconsiderSuppressed = async (
    row: PageRow,
    now: Date,
    labels: Record<string, string> = JSON.parse(row.labels) as Record<string, string>,
  ): Promise<PageRow> => {
    if (row.status !== 'suppressed') return row;
    const window = await activeWindow(labels, now, row.id);
    if (window) {
      if (window.endsAt !== row.suppressed_until || window.name !== row.suppressed_by)
        await repo.extendSuppression(row.id, window.name, window.endsAt);
      return (await repo.page(row.id)) ?? row;
    }
    const firstAt = new Date(stepDueAt(now.getTime(), planFor(row), 0));
    if (await repo.unsuppress(row.id, now, firstAt)) {
      log.info({ page: row.id, window: row.suppressed_by }, 'suppression ended; paging');
      await timeline(row, {
        kind: 'page-escalated',
        message: `Page "${row.subject}": suppression ended, paging (window ${row.suppressed_by ?? '?'} no longer applies)`,
        data: { window: row.suppressed_by, suppressionEnded: now.toISOString() },
      });
    }
    return (await repo.page(row.id)) ?? row;
  };

  /** Pager.page: a page of the system (an incident's); suppression windows apply. */
  const page = (raw: PageInput, actor?: Actor): Promise<PageView> =>
    openPage(raw, actor, { suppressible: true });

  const openPage = async (
    raw: PageInput,
    actor: Actor | undefined,
    options: { suppressible: boolean },
  ): Promise<PageView> => {
    const input = parse(pageInputSchema, raw, 'page');
    input.targets?.forEach((t, i) => checkTarget(t, `targets[${i}]`));
    if (input.targets === undefined) {
      if (input.policy !== undefined && !oncall.policies.some((p) => p.name === input.policy))
        throw new InputError(
          `policy: unknown escalation policy "${input.policy}" (known: ${oncall.policies.map((p) => p.name).join(', ') || 'none'})`,
          { details: { field: 'policy' } },
        );
    }
    // Nothing to escalate through (no policy, no schedule): stored as exhausted, on the timeline, never
    // thrown (a system page after its incident exists must not fail and be retried forever).
    const nowhere = input.targets === undefined && oncall.policies.length === 0 && fallbackPlan === undefined;
    const existing = await repo.pageByDedupKey(input.dedupKey);
    if (existing) {
      // A repeat page of a suppressed one (the alert still firing): send it once no window applies.
      return toView(await reconsiderSuppressed(existing, clock.now(), input.labels ?? {}));
    }
    const now = clock.now();
    const at = now.toISOString();
    const suppressed = options.suppressible
      ? await activeWindow(input.labels ?? {}, now, input.dedupKey)
      : undefined;
    const policy =
      input.targets !== undefined
        ? null
        : (input.policy ?? oncall.defaultPolicy ?? oncall.policies[0]?.name ?? null);
    const id = newPageId();
    const row: NewPage = {
      ...basePageRow(id, at, actor),
      dedup_key: input.dedupKey,
      kind: 'page',
      incident_id: input.incidentId ?? null,
      subject: input.subject,
      body: input.body,
      severity: input.severity,
      labels: JSON.stringify(input.labels ?? {}),
      policy,
      targets: input.targets ? JSON.stringify(input.targets) : null,
      links: JSON.stringify(input.links ?? []),
      status: nowhere ? 'exhausted' : suppressed ? 'suppressed' : 'triggered',
      level: 0,
      round: 0,
      // Level 0 is the first step, due at its delay (usually 0s: now); tick fires it, resolving its targets then.
      next_step: suppressed || nowhere ? null : 0,
      exhausted_at: nowhere ? at : null,
      next_at:
        suppressed || nowhere
          ? null
          : new Date(
              stepDueAt(
                now.getTime(),
                planFor({ targets: input.targets ? JSON.stringify(input.targets) : null, policy }),
                0,
              ),
            ).toISOString(),
      suppressed_by: suppressed?.name ?? null,
      suppressed_until: suppressed?.endsAt ?? null,
      escalates_from: at,
    };
    const { page: stored, created } = await repo.insertPage(row, [], actor);
    if (created) {
      if (nowhere) {
        if (!warnedNoPolicy)
          log.warn(
            { page: id },
            'a page has nobody to go to: no escalation policy and no on-call schedule is configured (configure oncall.policies)',
          );
        warnedNoPolicy = true;
        await timeline(stored, {
          kind: 'page-failed',
          message: `Page "${input.subject}" could not be sent: no escalation policy or on-call schedule exists (configure oncall.policies)`,
          data: { reason: 'no-policy' },
        });
      } else if (suppressed) {
        log.info({ page: id, window: suppressed.name }, 'page suppressed by a suppression window');
        await timeline(stored, {
          kind: 'page-suppressed',
          message: `Page "${input.subject}" not sent: suppressed by window ${suppressed.name} (until ${suppressed.endsAt})`,
          data: { window: suppressed.name, endsAt: suppressed.endsAt },
        });
      } else {
        log.info({ page: id, policy, incident: input.incidentId }, 'page opened');
      }
    }
    return toView(stored);
  };

  const notify: Pager['notify'] = async (raw) => {
    const input = parse(notifyInputSchema, raw, 'notify');
    input.to.forEach((t, i) => {
      if ('channel' in t) {
        if (!channelNames.has(t.channel))
          throw new InputError(
            `to[${i}].channel: unknown channel "${t.channel}" (known: ${[...channelNames].join(', ') || 'none'})`,
            { details: { field: `to[${i}].channel` } },
          );
      } else checkTarget(t, `to[${i}]`);
    });
    if (await repo.pageByDedupKey(input.dedupKey)) return;
    // A notice about an incident whose page a suppression window holds back (the P1/P2 "tell the CTO"
    // notice) is held back too: skipped, and the timeline says so. Reminders and plain notifications go
    // out (they are about work people already do).
    if (input.kind === 'notice' && input.incidentId !== undefined) {
      const incidentPage = await currentIncidentPage(input.incidentId);
      if (incidentPage?.status === 'suppressed') {
        log.info({ incident: input.incidentId, window: incidentPage.suppressed_by }, 'notice suppressed');
        await timeline(incidentPage, {
          kind: 'page-suppressed',
          message: `Notice "${input.subject}" not sent: the incident's page is suppressed by window ${incidentPage.suppressed_by ?? '?'}`,
          data: { window: incidentPage.suppressed_by, dedupKey: input.dedupKey },
        });
        return;
      }
    }
    const now = clock.now();
    const at = now.toISOString();
    const id = newPageId();
    const persons = new Set<string>();
    const direct: NewNotification[] = [];
    for (const t of input.to) {
      if ('channel' in t) {
        direct.push({
          delivery_id: deliveryId(id, 0, 0, null, t.channel),
          page_id: id,
          level: 0,
          round: 0,
          person: null,
          channel: t.channel,
          channel_index: 0,
          next_at: at,
        });
      } else for (const p of await peopleOf(t, now)) persons.add(p);
    }
    const { rows, unreachable } = notificationsFor(id, 0, 0, [...persons], at);
    const row: NewPage = {
      ...basePageRow(id, at, undefined),
      dedup_key: input.dedupKey,
      kind: 'notify',
      incident_id: input.incidentId ?? null,
      subject: input.subject,
      body: input.body,
      severity: null,
      labels: JSON.stringify({ kind: input.kind }),
      policy: null,
      targets: JSON.stringify(input.to),
      links: JSON.stringify(input.links ?? []),
      status: 'triggered',
      level: 0,
      round: 0,
      next_step: null,
      next_at: null,
      suppressed_by: null,
      suppressed_until: null,
      escalates_from: at,
    };
    const { created, page: stored } = await repo.insertPage(row, [...direct, ...rows]);
    if (!created) return;
    if (rows.length + direct.length === 0 || unreachable.length > 0) {
      const who = unreachable.length > 0 ? unreachable.map(nameOf).join(', ') : 'anyone';
      log.warn({ notification: id, unreachable }, 'a notification has nobody to reach');
      await timeline(stored, {
        kind: 'page-failed',
        message: `${input.kind} "${input.subject}" could not be sent to ${who}: no contact channel (people[].contacts, oncall.defaultContacts)`,
        data: { unreachable },
      });
    }
  };

  /**
   * The incident's current page: its newest `incident:<id>` or, after a reopen, `incident:<id>:reopen-<n>`
   * (not the missed-update pages, which are about the status updates, not the incident being paged).
   */
  const currentIncidentPage = async (incidentId: string): Promise<PageRow | undefined> => {
    const base = `incident:${incidentId}`;
    const pages = await repo.pages({ incidentId, kind: 'page', limit: 1000 });
    return pages.find((p) => p.dedup_key === base || p.dedup_key.startsWith(`${base}:reopen-`));
  };

  const closeMany = async (
    incidentId: string,
    status: 'acknowledged' | 'resolved',
    actor: Actor,
  ): Promise<number> => {
    const open = await repo.pages({
      incidentId,
      status:
        status === 'acknowledged'
          ? ['triggered', 'exhausted', 'suppressed']
          : ['triggered', 'exhausted', 'suppressed', 'acknowledged'],
      limit: 1000,
    });
    let changed = 0;
    for (const row of open) if ((await close(row.id, status, actor)).changed) changed += 1;
    return changed;
  };

  const close = async (
    id: string,
    status: 'acknowledged' | 'resolved',
    actor: Actor,
  ): Promise<PageChange> => {
    const { page: row, changed } = await repo.close(id, status, actor, clock.now());
    if (changed) {
      log.info({ page: id, by: actor.id }, `page ${status}`);
      await timeline(row, {
        kind: status === 'acknowledged' ? 'page-acknowledged' : 'page-resolved',
        message:
          status === 'acknowledged'
            ? `Page "${row.subject}" acknowledged by ${actor.name}`
            : `Page "${row.subject}" resolved${actor.kind === 'system' ? '' : ` by ${actor.name}`}`,
        actor,
      });
    }
    return { page: toView(row), changed };
  };

  // -------------------------------------------------------------------------------------------------
  // background work

  /** Fires (or exhausts) the due step of one page. */
  const fireStep = async (row: PageRow, now: Date): Promise<void> => {
    if (row.next_step === null) return;
    const plan = planFor(row);
    const n = plan.levels.length;
    const step = row.next_step;
    const at = now.toISOString();
    if (step >= n * (plan.repeat + 1)) {
      const moved = await repo.advance(
        row.id,
        step,
        {
          level: row.level,
          round: row.round,
          nextStep: null,
          nextAt: null,
          status: 'exhausted',
        },
        [],
      );
      if (moved) {
        log.warn({ page: row.id }, 'page exhausted every escalation level without an acknowledgement');
        await timeline(row, {
          kind: 'page-exhausted',
          message: `Page "${row.subject}" went through every escalation level${plan.repeat > 0 ? ` (${plan.repeat + 1} rounds)` : ''} without an acknowledgement; it stays open until acknowledged or resolved`,
          data: { level: row.level, round: row.round },
        });
      }
      return;
    }
    const level = step % n;
    const round = Math.floor(step / n);
    const persons = new Set<string>();
    for (const t of plan.levels[level]!.targets) for (const p of await peopleOf(t, now)) persons.add(p);
    const { rows, unreachable } = notificationsFor(row.id, level, round, [...persons], at);
    const created = Date.parse(row.escalates_from);
    const moved = await repo.advance(
      row.id,
      step,
      {
        level,
        round,
        nextStep: step + 1,
        nextAt: new Date(stepDueAt(created, plan, step + 1)).toISOString(),
      },
      rows,
    );
    if (!moved) return;
    const who = [...persons].map(nameOf).join(', ') || 'nobody';
    log.info({ page: row.id, level, round, persons: [...persons] }, 'escalation level fired');
    if (step > 0) {
      await timeline(row, {
        kind: 'page-escalated',
        message: `Page "${row.subject}" escalated to level ${level + 1}${round > 0 ? ` (round ${round + 1})` : ''}: ${who}`,
        data: { level, round, persons: [...persons] },
      });
    }
    if (rows.length === 0) {
      const why =
        persons.size === 0
          ? `nobody to page at level ${level + 1} (no one on call, or an empty team)`
          : `no contact channel for ${unreachable.map(nameOf).join(', ')} (people[].contacts, oncall.defaultContacts)`;
      await timeline(row, {
        kind: 'page-failed',
        message: `Page "${row.subject}": ${why}; escalating`,
        data: { level, round, unreachable },
      });
      log.warn({ page: row.id, level, round }, `page could not be sent: ${why}`);
      await repo.escalateNow(row.id, step + 1, now);
    } else if (unreachable.length > 0) {
      await timeline(row, {
        kind: 'page-failed',
        message: `Page "${row.subject}": no contact channel for ${unreachable.map(nameOf).join(', ')}`,
        data: { level, round, unreachable },
      });
    }
  };

  const messageFor = async (row: PageRow, n: NotificationRow): Promise<OutboundMessage> => {
    const person = n.person === null ? undefined : people.get(n.person);
    const links = JSON.parse(row.links) as Link[];
    const kind: OutboundMessage['kind'] =
      row.kind === 'page'
        ? 'page'
        : ((JSON.parse(row.labels) as { kind?: OutboundMessage['kind'] }).kind ?? 'notification');
    const lines = [row.body];
    if (row.kind === 'page') {
      const ack = n.person === null ? undefined : await ackLink(row.id, n.person);
      if (ack) links.unshift({ title: 'Acknowledge', url: ack });
      lines.push(
        '',
        `Page ${row.id}, escalation level ${n.level + 1}${n.round > 0 ? `, round ${n.round + 1}` : ''}.`,
        // The signed link travels in `links` (each channel renders it); the CLI works everywhere.
        `Acknowledge${ack ? ' with the link, or' : ''}: gameops oncall ack ${row.id}`,
      );
    }
    return {
      deliveryId: n.delivery_id,
      kind,
      subject: row.subject,
      text: lines.join('\n').trim(),
      ...(row.severity === null ? {} : { severity: row.severity as OutboundMessage['severity'] & string }),
      ...(row.incident_id === null ? {} : { incidentId: row.incident_id }),
      pageId: row.id,
      ...(person ? { recipient: { id: person.id, name: person.name, email: person.email } } : {}),
      links,
    };
  };

  /** One attempt at one due notification, and what follows from it. */
  const deliver = async (n: NotificationRow, deadline: number): Promise<void> => {
    const timeoutMs = oncall.delivery.timeout;
    // The lease runs from the claim (not from the tick's start): a claim late in a long tick still holds
    // for a whole attempt. Past the tick's budget nothing more is claimed; the next tick takes it.
    const claimedAt = clock.now();
    if (claimedAt.getTime() > deadline) return;
    const attemptNo = await repo.claimNotification(
      n,
      claimedAt,
      new Date(claimedAt.getTime() + timeoutMs + LEASE_MARGIN_MS),
    );
    if (attemptNo === undefined) return;
    const row = await repo.page(n.page_id);
    if (!row) return;
    const message = await messageFor(row, n);
    let outcome: AttemptOutcome;
    try {
      outcome = await channels.attempt(n.channel, message, AbortSignal.timeout(timeoutMs + 1_000));
    } catch (err) {
      outcome = { ok: false, retryable: true, error: errorMessage(err), durationMs: 0 };
    }
    const at = clock.now();
    // Failures on this channel so far: each row is one (person, channel), and `attempts` counts its tries.
    const failures = attemptNo;
    if (outcome.ok) {
      const recorded = await repo.finishAttempt(n.delivery_id, attemptNo, {
        at: at.toISOString(),
        outcome: 'ok',
        destination: outcome.destination,
        response: outcome.response,
        durationMs: outcome.durationMs,
        status: 'delivered',
      });
      if (recorded && row.kind === 'page') {
        await timeline(row, {
          kind: 'page-sent',
          message: `Paged ${n.person === null ? n.channel : nameOf(n.person)} via ${n.channel} (level ${n.level + 1}${n.round > 0 ? `, round ${n.round + 1}` : ''})`,
          data: {
            deliveryId: n.delivery_id,
            person: n.person,
            channel: n.channel,
            level: n.level,
            round: n.round,
          },
        });
      }
      return;
    }
    const contacts = n.person === null ? [n.channel] : contactsOf(n.person);
    let retry = outcome.retryable && failures < oncall.delivery.attempts;
    let delay = 0;
    if (retry) {
      delay = retryDelayMs(failures, retryPolicy, outcome.retryAfterMs, random);
      // Jitter on top of Retry-After: many deliveries told the same time must not all come back at once.
      if (outcome.retryAfterMs !== undefined)
        delay += Math.round(random() * Math.min(RETRY_AFTER_JITTER_MS, outcome.retryAfterMs / 4));
      // A channel parked past the next escalation step (or over a minute) is not waited for: the
      // person's next contact channel is tried now.
      const nextStepAt = row.kind === 'page' && row.next_at !== null ? Date.parse(row.next_at) : undefined;
      const parked = delay > PARK_AFTER_MS || (nextStepAt !== undefined && at.getTime() + delay > nextStepAt);
      if (parked && n.person !== null && contacts[n.channel_index + 1] !== undefined) {
        log.info(
          { page: row.id, deliveryId: n.delivery_id, channel: n.channel, retryInMs: delay },
          'channel asks to wait too long; trying the next contact channel now',
        );
        retry = false;
      }
    }
    const nextChannel = retry ? undefined : contacts[n.channel_index + 1];
    const next: NewNotification | undefined =
      nextChannel === undefined || n.person === null
        ? undefined
        : {
            delivery_id: deliveryId(n.page_id, n.level, n.round, n.person, nextChannel),
            page_id: n.page_id,
            level: n.level,
            round: n.round,
            person: n.person,
            channel: nextChannel,
            channel_index: n.channel_index + 1,
            next_at: at.toISOString(),
          };
    const recorded = await repo.finishAttempt(
      n.delivery_id,
      attemptNo,
      {
        at: at.toISOString(),
        outcome: 'failed',
        destination: outcome.destination,
        error: outcome.error,
        durationMs: outcome.durationMs,
        retryAfterMs: outcome.retryAfterMs,
        status: retry ? 'pending' : 'failed',
        ...(retry
          ? {
              nextAt: new Date(at.getTime() + delay).toISOString(),
            }
          : {}),
      },
      next,
    );
    if (!recorded || retry) return;
    log.warn(
      {
        page: row.id,
        deliveryId: n.delivery_id,
        channel: n.channel,
        attempts: attemptNo,
        err: outcome.error,
      },
      next ? 'channel gave up; trying the next contact channel' : 'delivery failed on every channel',
    );
    if (next) return;
    const who =
      n.person === null
        ? `channel ${n.channel}`
        : `${nameOf(n.person)} on any channel (${contacts.join(', ')})`;
    await timeline(row, {
      kind: 'page-failed',
      message:
        `${row.kind === 'page' ? 'Page' : 'Message'} "${row.subject}" could not reach ${who}: ${outcome.error}` +
        (row.kind === 'page' ? '; escalating to the next level now' : ''),
      data: {
        deliveryId: n.delivery_id,
        person: n.person,
        channel: n.channel,
        level: n.level,
        round: n.round,
      },
    });
    if (row.kind === 'page') {
      const plan = planFor(row);
      await repo.escalateNow(row.id, n.round * plan.levels.length + n.level + 1, at);
    }
  };

  /** The auditor: escalations and deliveries due over a minute ago that did not happen. */
  const audit = async (now: Date): Promise<void> => {
    const { pages: latePages, notifications: lateDeliveries } = await repo.overdue(
      new Date(now.getTime() - STALL_AFTER_MS),
    );
    const detected = now.toISOString();
    const fresh: Array<{ ref: string; dueAt: string }> = [];
    for (const p of latePages) {
      const ref = `page:${p.id}:step:${p.next_step ?? 'none'}`;
      if (await repo.recordStall({ ref, page_id: p.id, due_at: p.next_at!, detected_at: detected }))
        fresh.push({ ref, dueAt: p.next_at! });
    }
    for (const d of lateDeliveries) {
      const ref = `delivery:${d.delivery_id}:attempt:${d.attempts + 1}`;
      if (await repo.recordStall({ ref, page_id: d.page_id, due_at: d.next_at, detected_at: detected }))
        fresh.push({ ref, dueAt: d.next_at });
    }
    if (fresh.length === 0) return;
    const oldest = fresh.reduce((a, b) => (a.dueAt <= b.dueAt ? a : b));
    const lateBy = Math.round((now.getTime() - Date.parse(oldest.dueAt)) / 1000);
    log.error(
      { stalled: fresh.length, oldestDueAt: oldest.dueAt, lateBySeconds: lateBy },
      'escalations or deliveries were late: the paging loop stalled or gameops was down; sending them now',
    );
    const targets =
      oncall.selfAlert.length > 0
        ? oncall.selfAlert
        : (oncall.policies.find((p) => p.name === oncall.defaultPolicy) ?? oncall.policies[0])?.levels[0]
            ?.targets;
    if (!targets || targets.length === 0) {
      log.error('no one to tell about the stalled paging loop (set oncall.selfAlert)');
      return;
    }
    // One page per stall episode, not per minute: while the last stall page is still open (not resolved)
    // and less than STALL_REPAGE_MS old, later stalls only go to the log.
    const [last] = await repo.pages({ dedupPrefix: STALL_DEDUP_PREFIX, limit: 1 });
    if (last && last.status !== 'resolved' && now.getTime() - Date.parse(last.created_at) < STALL_REPAGE_MS) {
      log.warn(
        { page: last.id, stalled: fresh.length },
        'paging loop still late; the stall page is already open',
      );
      return;
    }
    // Never suppressed: a maintenance window must not hide that paging itself is broken.
    await openPage(
      {
        dedupKey: `${STALL_DEDUP_PREFIX}${detected.slice(0, 16)}`,
        subject: `gameops paging was late: ${fresh.length} escalation step(s) or deliveries up to ${lateBy}s overdue`,
        body:
          `gameops found ${fresh.length} escalation step(s) or delivery attempt(s) that were due over ${STALL_AFTER_MS / 1000}s ago ` +
          `and had not happened (oldest due ${oldest.dueAt}): its paging loop stalled or gameops was down. They are being sent now. ` +
          `Check the gameops server's health and logs.`,
        severity: 'P2',
        labels: { alertname: 'GameopsEscalationStalled' },
        targets,
      },
      undefined,
      { suppressible: false },
    );
  };

  let running: Promise<void> | undefined;
  let prunedAt: number | undefined;
  /** At most once an hour (per process): drops what the retention no longer keeps. */
  const prune = async (now: Date): Promise<void> => {
    if (prunedAt !== undefined && now.getTime() - prunedAt < PRUNE_EVERY_MS) return;
    prunedAt = now.getTime();
    const removed = await repo.prune(new Date(now.getTime() - RETENTION_MS));
    if (removed.pages + removed.stalls > 0)
      log.info(removed, `removed on-call pages and stalls older than ${RETENTION_MS / 86_400_000} days`);
  };
  const tickOnce = async (now: Date): Promise<void> => {
    await audit(now);
    await prune(now);
    for (const row of await repo.suppressedDue(now, BATCH)) await reconsiderSuppressed(row, now);
    // A step that escalates at once (nobody reachable) makes the next one due now: loop while there is work.
    for (let round = 0; round < 20; round += 1) {
      const due = await repo.duePages(now, BATCH);
      for (const row of due) await fireStep(row, now);
      const deadline = clock.now().getTime() + DELIVERY_BUDGET_MS;
      const deliveries = await repo.dueNotifications(now, BATCH);
      await mapLimit(deliveries, DELIVERY_CONCURRENCY, (n) => deliver(n, deadline));
      if (due.length === 0 && deliveries.length === 0) break;
      if (clock.now().getTime() > deadline) break;
    }
  };

  const ackToken = async (pageId: string, person: string): Promise<string> =>
    signAckToken(await key(), {
      pageId,
      person,
      expiresAt: new Date(clock.now().getTime() + oncall.ackLinks.expireAfter),
    });

  const ackLink = async (pageId: string, person: string): Promise<string | undefined> =>
    publicUrl === undefined ? undefined : `${publicUrl}/api/ack/${await ackToken(pageId, person)}`;

  const checkAckToken = async (token: string): Promise<AckLinkView> => {
    const read = readAckToken(await key(), token, clock.now());
    if (!read.ok) {
      if (read.reason === 'expired')
        throw new NotAllowedError(
          `this acknowledge link expired at ${read.claim.expiresAt.toISOString()}; acknowledge with gameops oncall ack ${read.claim.pageId}`,
        );
      throw new NotAllowedError(
        'this acknowledge link is not valid: it was changed, cut short or not issued by this gameops',
      );
    }
    const row = await repo.page(read.claim.pageId);
    if (!row) throw new NotAllowedError('this acknowledge link names a page that does not exist');
    return {
      page: toView(row),
      person: read.claim.person,
      name: nameOf(read.claim.person),
      expiresAt: read.claim.expiresAt.toISOString(),
    };
  };

  const service: OncallService = {
    page,
    notify,
    async manualPage(input, actor, options = {}) {
      const keyOf = (input as { dedupKey?: unknown }).dedupKey;
      if (typeof keyOf === 'string') {
        const lower = keyOf.toLowerCase();
        const reserved = RESERVED_DEDUP_PREFIXES.find((p) => lower.startsWith(p));
        if (reserved !== undefined)
          throw new InputError(
            `dedupKey: "${keyOf}" starts with "${reserved}", which gameops reserves for its own pages; choose another key`,
            { details: { field: 'dedupKey' } },
          );
      }
      return openPage(input, actor, { suppressible: options.suppressible === true });
    },
    acknowledgeIncident: (incidentId, actor) => closeMany(incidentId, 'acknowledged', actor),
    resolveIncident: (incidentId, actor) => closeMany(incidentId, 'resolved', actor ?? SYSTEM),
    async pagesOf(incidentId) {
      return (await repo.pages({ incidentId, limit: 1000 })).map(toView);
    },

    async whoIsOnCall(options = {}) {
      const at = options.at ?? clock.now();
      if (Number.isNaN(at.getTime()))
        throw new InputError('at: not a valid instant', { details: { field: 'at' } });
      const list =
        options.schedule === undefined ? schedules.map(checkZone) : [scheduleNamed(options.schedule)];
      const overrides = await overridesAround(at, new Date(at.getTime() + 1));
      return list.map((schedule) => ({
        schedule: schedule.name,
        timezone: schedule.timezone,
        at: at.toISOString(),
        layers: schedule.layers.map((layer) => {
          const shift = shiftAt(schedule, layer, overrides, at);
          return {
            layer: layer.name,
            ...(shift
              ? {
                  person: shift.person,
                  name: nameOf(shift.person),
                  start: shift.start,
                  end: shift.end,
                  ...(shift.override ? { override: shift.override } : {}),
                }
              : {}),
          };
        }),
      }));
    },

    async shifts(name, from, to, layerName) {
      const schedule = scheduleNamed(name);
      if (Number.isNaN(from.getTime()))
        throw new InputError('from: not a valid instant', { details: { field: 'from' } });
      if (Number.isNaN(to.getTime()))
        throw new InputError('to: not a valid instant', { details: { field: 'to' } });
      if (to.getTime() <= from.getTime())
        throw new InputError(`to (${to.toISOString()}) must be after from (${from.toISOString()})`, {
          details: { field: 'to' },
        });
      if (to.getTime() - from.getTime() > MAX_RANGE_MS)
        throw new InputError('to: the range may span at most 366 days', { details: { field: 'to' } });
      const layers = layerName === undefined ? schedule.layers : [layerNamed(schedule, layerName)];
      const overrides = await overridesAround(from, to, schedule.name);
      return layers
        .flatMap((layer) => layerShifts(schedule, layer, overrides, from, to))
        .sort((a, b) => a.start.localeCompare(b.start) || a.layer.localeCompare(b.layer));
    },

    async ical(name, from, to) {
      const now = clock.now();
      const start = from ?? new Date(now.getTime() - 7 * 86_400_000);
      const end = to ?? new Date(now.getTime() + 90 * 86_400_000);
      const schedule = scheduleNamed(name);
      return shiftsCalendar(schedule, await service.shifts(name, start, end), nameOf, now, start);
    },

    async addOverride(input, actor) {
      const schedule = schedules.find((s) => s.name === input.schedule);
      if (!schedule)
        throw new InputError(
          `schedule: unknown on-call schedule "${input.schedule}" (known: ${schedules.map((s) => s.name).join(', ') || 'none'})`,
          { details: { field: 'schedule' } },
        );
      const layer = layerNamed(schedule, input.layer);
      if (!people.has(input.person))
        throw new InputError(
          `person: unknown person "${input.person}" (known: ${[...people.keys()].join(', ') || 'none'})`,
          { details: { field: 'person' } },
        );
      if (!(input.from instanceof Date) || Number.isNaN(input.from.getTime()))
        throw new InputError('from: not a valid instant', { details: { field: 'from' } });
      if (!(input.to instanceof Date) || Number.isNaN(input.to.getTime()))
        throw new InputError('to: not a valid instant', { details: { field: 'to' } });
      if (input.to.getTime() <= input.from.getTime())
        throw new InputError(
          `to (${input.to.toISOString()}) must be after from (${input.from.toISOString()})`,
          {
            details: { field: 'to' },
          },
        );
      const now = clock.now();
      if (input.to.getTime() <= now.getTime())
        throw new InputError(`to (${input.to.toISOString()}) is in the past`, { details: { field: 'to' } });
      const reason = input.reason?.trim();
      if (reason !== undefined && reason.length > 500)
        throw new InputError('reason: at most 500 characters', { details: { field: 'reason' } });
      const row = await repo.addOverride(
        {
          id: `ovr-${randomUUID().replaceAll('-', '').slice(0, 12)}`,
          schedule: schedule.name,
          layer: layer.name,
          person: input.person,
          starts_at: input.from.toISOString(),
          ends_at: input.to.toISOString(),
          reason: reason || null,
          created_at: now.toISOString(),
          created_by: actor.name,
        },
        actor,
      );
      return overrideView(row);
    },

    async overrides(filter = {}) {
      const rows = await repo.overrides({
        ...(filter.schedule !== undefined ? { schedule: filter.schedule } : {}),
        from: filter.from ?? clock.now(),
      });
      return rows.map(overrideView);
    },

    async removeOverride(id, actor) {
      return overrideView(await repo.removeOverride(id, actor));
    },

    async pages(filter = {}) {
      return (
        await repo.pages({
          ...(filter.status ? { status: filter.status } : {}),
          ...(filter.incidentId !== undefined ? { incidentId: filter.incidentId } : {}),
          ...(filter.limit !== undefined ? { limit: filter.limit } : {}),
        })
      ).map(toView);
    },

    async pageDetail(id) {
      const row = await repo.page(id);
      if (!row || row.kind !== 'page')
        throw new NotFoundError(`no page with id ${id} (gameops oncall pages)`, { details: { id } });
      const [notifications, attempts] = await Promise.all([repo.notifications(id), repo.attempts(id)]);
      const deliveries: Delivery[] = notifications.map((n) => ({
        deliveryId: n.delivery_id,
        level: n.level,
        round: n.round,
        ...(n.person === null ? {} : { person: n.person }),
        channel: n.channel,
        status: n.status as Delivery['status'],
        ...(n.status === 'pending' ? { nextAt: n.next_at } : {}),
        ...(n.last_error === null ? {} : { lastError: n.last_error }),
        attempts: attempts
          .filter((a) => a.delivery_id === n.delivery_id)
          .map((a) => ({
            n: a.n,
            at: a.at,
            outcome: a.outcome as 'ok' | 'failed' | 'interrupted',
            ...(a.destination === null ? {} : { destination: a.destination }),
            ...(a.response === null ? {} : { response: a.response }),
            ...(a.error === null ? {} : { error: a.error }),
            durationMs: a.duration_ms,
            ...(a.retry_after_ms === null ? {} : { retryAfterMs: a.retry_after_ms }),
          })),
      }));
      return {
        ...toView(row),
        body: row.body,
        ...(row.targets === null ? {} : { targets: JSON.parse(row.targets) as PageTarget[] }),
        ...(row.exhausted_at === null ? {} : { exhaustedAt: row.exhausted_at }),
        ...(row.resolved_by === null ? {} : { resolvedBy: row.resolved_by }),
        deliveries,
      };
    },

    acknowledge: async (id, actor) => {
      await assertPage(id);
      return close(id, 'acknowledged', actor);
    },
    resolve: async (id, actor) => {
      await assertPage(id);
      return close(id, 'resolved', actor);
    },
    async stalls(limit) {
      return (await repo.stalls(limit)).map((s) => ({
        ref: s.ref,
        pageId: s.page_id,
        dueAt: s.due_at,
        detectedAt: s.detected_at,
      }));
    },
    ackLink,
    ackToken,
    checkAckToken,
    async acknowledgeByLink(token) {
      const view = await checkAckToken(token);
      const actor: Actor = {
        id: `ack-link:${view.person}`,
        name: view.name,
        role: 'responder',
        kind: 'token',
      };
      return { ...(await close(view.page.id, 'acknowledged', actor)), person: view.person };
    },

    tick(now) {
      // One tick at a time in this process (a slow channel must not let two ticks claim side by side).
      running ??= tickOnce(now).finally(() => {
        running = undefined;
      });
      return running;
    },
  };

  const assertPage = async (id: string): Promise<void> => {
    const row = await repo.page(id);
    if (!row || row.kind !== 'page')
      throw new NotFoundError(`no page with id ${id} (gameops oncall pages)`, { details: { id } });
  };

  return service;
}

function overrideView(row: {
  id: string;
  schedule: string;
  layer: string;
  person: string;
  starts_at: string;
  ends_at: string;
  reason: string | null;
  created_at: string;
  created_by: string;
}): Override {
  return {
    id: row.id,
    schedule: row.schedule,
    layer: row.layer,
    person: row.person,
    from: row.starts_at,
    to: row.ends_at,
    ...(row.reason === null ? {} : { reason: row.reason }),
    createdAt: row.created_at,
    createdBy: row.created_by,
  };
}
