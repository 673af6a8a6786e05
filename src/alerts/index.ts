/**
 * Alert intake (issue #5): Alertmanager webhooks and generic alerts stored durably and routed into
 * incidents, reconciliation with Alertmanager, Alertmanager silences, paging suppression windows and
 * heartbeats. The contracts with incidents and on-call are in
 * src/ops/contracts.ts.
 */
export { createAlertService, ALERT_RETENTION_MS, AM_WARMUP_MS, AM_EMPTY_GUARD } from './service.ts';
export type {
  AlertService,
  AlertServiceDeps,
  CreateSilenceInput,
  CreateWindowInput,
  HeartbeatView,
  IngestResult,
  ProcessResult,
  ReconcileResult,
  SilenceView,
  WindowView,
} from './service.ts';
export {
  parseMatcher,
  parseMatchers,
  matchesAll,
  formatMatcher,
  unsafeRegex,
  MAX_REGEX_LENGTH,
  MAX_MATCHED_VALUE,
} from './matchers.ts';
export type { Matcher, MatchOp } from './matchers.ts';
export {
  alertmanagerPayloadSchema,
  genericPayloadSchema,
  genericFingerprint,
  normaliseInstant,
  MAX_ALERTS_PER_PAYLOAD,
} from './payloads.ts';
export { decide, compileRoutes, gameopsRunbook } from './routing.ts';
export type { RouteDecision } from './routing.ts';
export type { StoredAlert, ListAlertsQuery, AlertStatus } from '../store/alerts.ts';
