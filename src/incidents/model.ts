import type { GameopsConfig } from '../config/load.ts';
import { SEVERITIES } from '../config/schema.ts';
import { InputError, NotFoundError } from '../core/index.ts';
import type { PageTarget, PageView, Severity } from '../ops/contracts.ts';
import type { Actor } from '../runbooks/model.ts';
import {
  type ActionItemOwner,
  type ActionItemRecord,
  type ChecklistItem,
  type ChecklistPhase,
  type IncidentRole,
  type IncidentSource,
  type IncidentStatus,
  type LinkedRun,
  type Transition,
  INCIDENT_STATUSES,
  incidentLabel,
} from '../store/incidents.ts';

export { INCIDENT_ROLES, INCIDENT_STATUSES, CHECKLIST_PHASES, incidentLabel } from '../store/incidents.ts';
export type {
  ActionItemOwner,
  ActionItemRecord,
  ChecklistItem,
  ChecklistPhase,
  IncidentRole,
  IncidentSource,
  IncidentStatus,
  LinkedRun,
  Transition,
};

/** How people name the war-room roles. */
export const ROLE_TITLES: Record<IncidentRole | 'owner', string> = {
  commander: 'Incident Commander',
  technicalLead: 'Technical Lead',
  communications: 'Communications',
  scribe: 'Scribe',
  owner: 'Owner',
};

/** The phase checklists of runbook §2.3, used where config incidents.checklists sets none. */
export const DEFAULT_CHECKLISTS: Record<ChecklistPhase, string[]> = {
  first15Minutes: [
    'Establish the blast radius',
    'Apply a mitigation',
    'Notify stakeholders',
    'Start the timeline',
  ],
  inProgress: [
    'Status update every 15 minutes',
    'Call in more people when needed',
    'Send customer notices',
    'Review rollback options',
  ],
  afterResolution: [
    'Confirm the service is back to normal',
    'Strengthen monitoring',
    'Schedule the RCA',
    'Write the initial report',
  ],
};

export const PHASE_TITLES: Record<ChecklistPhase, string> = {
  first15Minutes: 'First response (0-15 min)',
  inProgress: 'In progress (15 min - resolution)',
  afterResolution: 'After resolution',
};

/** Statuses of an incident that is still being worked on (status updates are due, it owns its group). */
export const OPEN_STATUSES: readonly IncidentStatus[] = ['declared', 'investigating', 'mitigated'];

export interface PersonRef {
  id: string;
  name: string;
}

/** An incident as the API and the CLI show it. */
export interface IncidentView {
  /** `INC-<n>`. */
  id: string;
  number: number;
  title: string;
  severity: Severity;
  /** The severity's description from config (§2.1). */
  severityDescription: string;
  service: string;
  status: IncidentStatus;
  source: IncidentSource;
  groupKey?: string | undefined;
  policy?: string | undefined;
  summary: string;
  impact: string;
  rootCause: string;
  /** P1/P2 by default: roles, phase checklists and status updates; otherwise an owner. */
  warRoom: boolean;
  /**
   * The acknowledgement target of the severity: due `respondWithin` after declaration; a severity
   * without one responds within business hours (incidents.businessHours): by the end of the business
   * hours it was declared in, or declared outside them, of the next business day's.
   */
  responseTarget: {
    businessHours?: boolean | undefined;
    respondWithinMs?: number | undefined;
    dueAt?: string | undefined;
    met?: boolean | undefined;
  };
  roles: Partial<Record<IncidentRole, PersonRef>>;
  /** A person id (or, when whoever acknowledged is not in config people, their name). */
  owner?: PersonRef | undefined;
  checklist: ChecklistItem[];
  /** When it last entered each status. */
  timestamps: Partial<Record<IncidentStatus, string>>;
  transitions: Transition[];
  acknowledgedAt?: string | undefined;
  acknowledgedBy?: string | undefined;
  lastUpdateAt?: string | undefined;
  nextUpdateDueAt?: string | undefined;
  /** Gameops runbooks offered on the incident ("run this runbook"). */
  suggestedRunbooks: string[];
  runs: LinkedRun[];
  createdBy: Actor;
  createdAt: string;
  updatedAt: string;
}

/** `incident show`: the incident with its pages (when paging answers). */
export interface IncidentDetail extends IncidentView {
  pages?: PageView[] | undefined;
  /** Why the pages could not be read. */
  pagesUnavailable?: string | undefined;
}

/** One line of the timeline: stored entries have `seq`; entries of linked runs have `runId`. */
export interface TimelineEntry {
  seq?: number | undefined;
  at: string;
  kind: string;
  message: string;
  actor?: Actor | undefined;
  data: Record<string, unknown>;
  runId?: string | undefined;
}

export interface StatusDraft {
  incidentId: string;
  /** What the last update was (or the declaration), the draft covers what happened since. */
  since: string;
  dueAt?: string | undefined;
  subject: string;
  text: string;
  /** How many timeline entries the draft is built from. */
  entries: number;
}

export interface PostmortemView {
  incidentId: string;
  version: number;
  markdown: string;
  kind: 'generated' | 'edited';
  /** Sections a person edited: kept when the post-mortem is regenerated (except Timeline and Action Items). */
  edited: string[];
  createdAt: string;
  createdBy: string;
  /** Every version, oldest first, without their text. */
  history: Array<{ version: number; kind: 'generated' | 'edited'; createdAt: string; createdBy: string }>;
}

export type NoticeAudience = 'stakeholders' | 'customers';
export type TimelineFormat = 'json' | 'markdown' | 'csv';

/** Parses `INC-7`, `inc-7` or `7`. @throws InputError naming the value. */
export function parseIncidentId(text: string): number {
  const match = /^(?:inc-)?(\d{1,9})$/i.exec(text.trim());
  const n = match ? Number(match[1]) : NaN;
  if (!Number.isSafeInteger(n) || n < 1)
    throw new InputError(`"${text}" is not an incident id (use INC-7, inc-7 or 7)`, {
      details: { field: 'id' },
    });
  return n;
}

export function noIncident(number: number): NotFoundError {
  return new NotFoundError(`no incident ${incidentLabel(number)}`, {
    details: { id: incidentLabel(number) },
  });
}

/** A severity in any case (`p2`, ` P2 `) → `P2`. @throws InputError naming the value. */
export function severityOf(value: string): Severity {
  const upper = value.trim().toUpperCase();
  if (!(SEVERITIES as readonly string[]).includes(upper))
    throw new InputError(`severity "${value}" is not one of ${SEVERITIES.join(', ')}`, {
      details: { field: 'severity' },
    });
  return upper as Severity;
}

/** The people, teams and schedules of the config, for validating who an incident names. */
export interface Directory {
  person(id: string): PersonRef | undefined;
  /** @throws InputError naming the id and what is known. */
  requirePerson(id: string, field: string): PersonRef;
  /** The config person whose id, name or e-mail is this actor's name. */
  personOfActor(actor: Actor): PersonRef | undefined;
  /** @throws InputError naming the unknown person, team or schedule. */
  checkTarget(target: PageTarget, field: string): void;
  checkOwner(owner: ActionItemOwner, field: string): void;
  ownerName(owner: ActionItemOwner): string;
  /** The first level of an escalation policy (by name, else the default, else the first). */
  firstLevel(policy: string | undefined): PageTarget[];
}

export function createDirectory(config: GameopsConfig): Directory {
  const people = new Map(config.people.map((p) => [p.id, { id: p.id, name: p.name, email: p.email }]));
  const teams = new Map(config.teams.map((t) => [t.id, t]));
  const schedules = new Map(config.oncall.schedules.map((s) => [s.name, s]));
  const list = (names: Iterable<string>): string => {
    const all = [...names];
    return all.length > 0 ? all.join(', ') : 'none configured';
  };
  const dir: Directory = {
    person: (id) => {
      const p = people.get(id);
      return p ? { id: p.id, name: p.name } : undefined;
    },
    requirePerson(id, field) {
      const p = dir.person(id);
      if (!p)
        throw new InputError(
          `${field}: "${id}" is not a person in config people (known: ${list(people.keys())})`,
          {
            details: { field },
          },
        );
      return p;
    },
    personOfActor(actor) {
      const name = actor.name.toLowerCase();
      for (const p of people.values())
        if (p.id === name || p.name.toLowerCase() === name || p.email?.toLowerCase() === name)
          return { id: p.id, name: p.name };
      return undefined;
    },
    checkTarget(target, field) {
      if ('person' in target) dir.requirePerson(target.person, `${field}.person`);
      else if ('team' in target || 'teamLead' in target) {
        const id = 'team' in target ? target.team : target.teamLead;
        if (!teams.has(id))
          throw new InputError(
            `${field}: "${id}" is not a team in config teams (known: ${list(teams.keys())})`,
            {
              details: { field },
            },
          );
      } else {
        const schedule = schedules.get(target.schedule);
        if (!schedule)
          throw new InputError(
            `${field}: "${target.schedule}" is not an on-call schedule (known: ${list(schedules.keys())})`,
            { details: { field } },
          );
        if (target.layer !== undefined && !schedule.layers.some((l) => l.name === target.layer))
          throw new InputError(
            `${field}: schedule ${target.schedule} has no layer "${target.layer}" (layers: ${list(schedule.layers.map((l) => l.name))})`,
            { details: { field } },
          );
      }
    },
    checkOwner(owner, field) {
      if ('person' in owner) dir.requirePerson(owner.person, `${field}.person`);
      else dir.checkTarget({ team: owner.team }, field);
    },
    ownerName(owner) {
      if ('person' in owner) return people.get(owner.person)?.name ?? owner.person;
      return teams.get(owner.team)?.name ?? owner.team;
    },
    firstLevel(policy) {
      const policies = config.oncall.policies;
      const chosen =
        policies.find((p) => p.name === policy) ??
        policies.find((p) => p.name === config.oncall.defaultPolicy) ??
        policies[0];
      return chosen?.levels[0]?.targets ?? [];
    },
  };
  return dir;
}

/** The checklist of a new incident: config incidents.checklists, else §2.3. */
export function initialChecklist(config: GameopsConfig): ChecklistItem[] {
  const items: ChecklistItem[] = [];
  for (const phase of ['first15Minutes', 'inProgress', 'afterResolution'] as const) {
    const texts = config.incidents.checklists[phase] ?? DEFAULT_CHECKLISTS[phase];
    texts.forEach((text, i) => items.push({ id: `${phase}-${i + 1}`, phase, text }));
  }
  return items;
}

/** Whether `to` may follow `from`: forward (skipping allowed), or a reopen from resolved to investigating. */
export function transitionAllowed(from: IncidentStatus, to: IncidentStatus): boolean {
  if (from === 'resolved' && to === 'investigating') return true;
  return INCIDENT_STATUSES.indexOf(to) > INCIDENT_STATUSES.indexOf(from);
}

export function allowedNext(from: IncidentStatus): IncidentStatus[] {
  return INCIDENT_STATUSES.filter((to) => transitionAllowed(from, to));
}

/** A gameops runbook named by an alert's `runbook_url` annotation: `gameops:<name>` or `…/runbooks/<name>`. */
export function runbookFromUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const trimmed = url.trim();
  const scheme = /^gameops:([a-z0-9][a-z0-9._-]{0,99})$/i.exec(trimmed);
  if (scheme) return scheme[1];
  try {
    const parsed = new URL(trimmed);
    const path = /\/runbooks\/([a-z0-9][a-z0-9._-]{0,99})\/?$/i.exec(parsed.pathname);
    return path?.[1];
  } catch {
    return undefined;
  }
}

/** `k="v"` pairs of a group key (Alertmanager's `{}:{alertname="X", service="login"}`, a route's `r:k="v",…`). */
const GROUP_PAIR = /([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"/g;

/**
 * The title of an incident opened by an alert group: named after the group, not its first instance:
 * the alertname plus the group's other labels, e.g. `LoginFailing (service=login)`. At most three labels,
 * values cut at 40 characters. Undefined when the group key names no labels (a heartbeat, a generic alert):
 * the caller keeps the title it was given.
 */
export function groupTitle(groupKey: string, alertname: string, maxLength: number): string | undefined {
  const pairs: Array<[string, string]> = [];
  // Alertmanager's key is `<route matchers>:{<group labels>}`: only the last block names the group.
  const at = groupKey.lastIndexOf(':{');
  const labelsPart = at >= 0 && groupKey.endsWith('}') ? groupKey.slice(at + 1) : groupKey;
  for (const m of labelsPart.matchAll(GROUP_PAIR)) {
    const value = (m[2] ?? '').replace(/\\(.)/g, '$1');
    pairs.push([m[1]!, value]);
  }
  if (pairs.length === 0) return undefined;
  const name = pairs.find(([k]) => k === 'alertname')?.[1] || alertname;
  const labels = pairs
    .filter(([k, v]) => k !== 'alertname' && v !== '')
    .slice(0, 3)
    .map(([k, v]) => `${k}=${v.length > 40 ? `${v.slice(0, 39)}…` : v}`);
  const title = labels.length > 0 ? `${name} (${labels.join(', ')})` : name;
  return title.length > maxLength ? `${title.slice(0, maxLength - 1)}…` : title;
}
