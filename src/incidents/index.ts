/**
 * Incidents (issue #5; runbook §2 and §8.1): lifecycle with a timestamp per transition, war room (roles,
 * phase checklists, status updates with reminders and escalation), the timeline (alerts, pages, runbook
 * runs, notes) and its exports, post-mortems with history and action items. Alert intake opens and joins
 * incidents through {@link IncidentService.openOrJoin}; on-call reports page events through `append`.
 */
export { createIncidentService, SYSTEM_ACTOR } from './service.ts';
export type {
  ActionItemChange,
  ActionItemInput,
  DeclareInput,
  DetailsInput,
  IncidentService,
  IncidentServiceDeps,
} from './service.ts';
export {
  CHECKLIST_PHASES,
  DEFAULT_CHECKLISTS,
  INCIDENT_ROLES,
  INCIDENT_STATUSES,
  PHASE_TITLES,
  ROLE_TITLES,
  incidentLabel,
  parseIncidentId,
  runbookFromUrl,
  severityOf,
} from './model.ts';
export type {
  ActionItemOwner,
  ActionItemRecord,
  ChecklistItem,
  ChecklistPhase,
  IncidentDetail,
  IncidentRole,
  IncidentSource,
  IncidentStatus,
  IncidentView,
  LinkedRun,
  NoticeAudience,
  PersonRef,
  PostmortemView,
  StatusDraft,
  TimelineEntry,
  TimelineFormat,
  Transition,
} from './model.ts';
export { csvCell } from './render.ts';
export type { ListIncidentsFilter } from '../store/incidents.ts';
export { SECTIONS as POSTMORTEM_SECTIONS } from './postmortem.ts';
