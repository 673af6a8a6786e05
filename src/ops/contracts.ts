/**
 * The contracts between the incident-response domains (issue #5), so that each can be built and tested
 * on its own and wired together in one place (src/app/ops.ts):
 *
 *   alerts (intake, routing, heartbeats, suppressions)
 *     └─ AlertIncidents ─▶ incidents (lifecycle, war room, timeline, post-mortems)
 *                             └─ Pager ─▶ oncall (schedules, escalation, pages, deliveries)
 *                                            ├─ Channels ─▶ channels (webhook, Slack, Discord, email)
 *                                            ├─ Suppressions ◀─ alerts
 *                                            └─ IncidentEvents ─▶ incidents (timeline entries)
 *
 * Every background duty is a `tick(now)` that is safe to call from several gameops instances sharing
 * PostgreSQL (claims are conditional updates), and takes the time as an argument (tests use a fake clock).
 */
import type { SEVERITIES } from '../config/schema.ts';
import type { Actor } from '../runbooks/model.ts';

export type Severity = (typeof SEVERITIES)[number];

/** Who a page or an escalation level goes to (config: pageTargetSchema). */
export type PageTarget =
  | { person: string }
  | { team: string }
  | { teamLead: string }
  | { schedule: string; layer?: string | undefined };

export interface Link {
  title: string;
  url: string;
}

// ---------------------------------------------------------------------------------------------------
// channels (src/channels): one attempt at one channel

export type ChannelKind = 'webhook' | 'slack' | 'discord' | 'email';

/** What goes out through a channel. */
export interface OutboundMessage {
  /**
   * Stable across retries and restarts (e.g. `<pageId>.<level>.<round>.<person>.<channel>`): the webhook
   * sends it as `X-Gameops-Delivery` and in the body, email as Message-ID, so receivers deduplicate.
   */
  deliveryId: string;
  kind: 'page' | 'reminder' | 'notice' | 'notification';
  /** One line. */
  subject: string;
  /** Plain text. */
  text: string;
  severity?: Severity;
  incidentId?: string;
  pageId?: string;
  /** The person paged: email goes to their address when the channel has no fixed `to`. */
  recipient?: { id: string; name: string; email?: string | undefined };
  /** e.g. the signed "Acknowledge" link, the incident. */
  links?: Link[];
}

export type AttemptOutcome =
  | {
      ok: true;
      /** Where it went, without path or credentials: `hooks.slack.com`, `smtp.example.com:587`. */
      destination: string;
      /** `HTTP 204`, or the SMTP server's answer. */
      response: string;
      durationMs: number;
    }
  | {
      ok: false;
      /** false: do not try this channel again for this message (4xx but 408/429, refused destination, bad config). */
      retryable: boolean;
      /** From Retry-After (or Discord's retry_after), when the peer said. */
      retryAfterMs?: number | undefined;
      /** One line, no secret (webhook URLs, SMTP passwords masked). */
      error: string;
      destination?: string | undefined;
      durationMs: number;
    };

// ---------------------------------------------------------------------------------------------------
// oncall (src/oncall): what incidents and alerts ask of paging

export interface PageInput {
  /** Idempotency: a second page() with the same key returns the first page (e.g. `incident:<id>`). */
  dedupKey: string;
  incidentId?: string | undefined;
  subject: string;
  body: string;
  severity: Severity;
  /** Labels matched against suppression windows (alert labels; incidents add severity and service). */
  labels?: Record<string, string> | undefined;
  /** An escalation policy name (default: oncall.defaultPolicy, else the first policy). */
  policy?: string | undefined;
  /** Instead of a policy: one level to these targets ("call in more people"). */
  targets?: PageTarget[] | undefined;
  links?: Link[] | undefined;
}

export type PageStatus = 'triggered' | 'acknowledged' | 'resolved' | 'exhausted' | 'suppressed';

export interface PageView {
  id: string;
  dedupKey: string;
  incidentId?: string | undefined;
  subject: string;
  severity: Severity;
  policy?: string | undefined;
  status: PageStatus;
  /** The escalation level reached (0-based) and the repeat round. */
  level: number;
  round: number;
  createdAt: string;
  nextEscalationAt?: string | undefined;
  acknowledgedAt?: string | undefined;
  acknowledgedBy?: string | undefined;
  resolvedAt?: string | undefined;
  /** Why it was suppressed (the window's name). */
  suppressedBy?: string | undefined;
}

/**
 * Paging as incidents (and heartbeats, through incidents) use it. Implemented by src/oncall.
 * Every method is durable: it returns once the store has the page; deliveries happen in `tick`.
 */
export interface Pager {
  /** Opens a page that escalates until acknowledged or resolved (or is suppressed by a window). */
  page(input: PageInput, actor?: Actor): Promise<PageView>;
  /** One-shot messages (reminders, notices, "you were assigned IC"): delivered with retries, no escalation. */
  notify(input: {
    dedupKey: string;
    incidentId?: string | undefined;
    kind: 'reminder' | 'notice' | 'notification';
    subject: string;
    body: string;
    to: Array<PageTarget | { channel: string }>;
    links?: Link[] | undefined;
  }): Promise<void>;
  /** Acknowledges every open page of the incident; returns how many. */
  acknowledgeIncident(incidentId: string, actor: Actor): Promise<number>;
  /** Resolves every open page of the incident (escalation ends); returns how many. */
  resolveIncident(incidentId: string, actor?: Actor): Promise<number>;
  /** The incident's pages with their deliveries (for `incident show`). */
  pagesOf(incidentId: string): Promise<PageView[]>;
}

// ---------------------------------------------------------------------------------------------------
// incidents (src/incidents): what oncall and alerts tell incidents

export type TimelineKind =
  | 'declared'
  | 'status'
  | 'severity'
  | 'role'
  | 'owner'
  | 'checklist'
  | 'note'
  | 'status-update'
  | 'status-update-due'
  | 'status-update-missed'
  | 'alert-fired'
  | 'alert-resolved'
  | 'page-sent'
  | 'page-failed'
  | 'page-escalated'
  | 'page-acknowledged'
  | 'page-resolved'
  | 'page-exhausted'
  | 'page-suppressed'
  | 'call-in'
  | 'notice'
  | 'runbook-run'
  | 'postmortem';

export interface TimelineEntryInput {
  kind: TimelineKind;
  /** One line, for people. */
  message: string;
  /** Undefined: gameops itself. */
  actor?: Actor | undefined;
  data?: Record<string, unknown> | undefined;
  /** @default now */
  at?: Date | undefined;
}

/**
 * How oncall reports page events into an incident's timeline. Implemented by src/incidents: a
 * `page-acknowledged` entry also moves a `declared` incident to `investigating`.
 */
export interface IncidentEvents {
  append(incidentId: string, entry: TimelineEntryInput): Promise<void>;
}

/** An alert as incidents see it. */
export interface AlertRef {
  fingerprint: string;
  startsAt: string;
  status: 'firing' | 'resolved';
  endsAt?: string | undefined;
  /** alertname */
  name: string;
  summary?: string | undefined;
  labels: Record<string, string>;
  /** The `runbook_url` annotation. */
  runbookUrl?: string | undefined;
  generatorUrl?: string | undefined;
}

/** What alert intake asks of incidents. Implemented by src/incidents. */
export interface AlertIncidents {
  /**
   * Opens an incident for a new alert group, or joins the open (not resolved) one with this group key,
   * and records the alert on its timeline (once per fingerprint and startsAt). Opening pages (policy).
   */
  openOrJoin(input: {
    groupKey: string;
    title: string;
    severity: Severity;
    service: string;
    policy?: string | undefined;
    /** A gameops runbook offered on the incident ("run this runbook"). */
    runbook?: string | undefined;
    alert: AlertRef;
  }): Promise<{ incidentId: string; created: boolean }>;
  /**
   * An alert of the incident resolved. `stillFiring` is how many of its alerts still fire: at 0, with
   * incidents.resolveWithAlerts, the incident resolves (and its pages with it).
   */
  alertResolved(incidentId: string, alert: AlertRef, stillFiring: number): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------
// alerts (src/alerts): what oncall asks of suppression windows

export interface ActiveSuppression {
  /** The window's name (config or created with `gameops alerts silence --suppress`). */
  name: string;
  endsAt: string;
}

export interface Suppressions {
  /** The window that suppresses paging for these labels at `at`, if any. */
  active(labels: Record<string, string>, at: Date): Promise<ActiveSuppression | undefined>;
}
