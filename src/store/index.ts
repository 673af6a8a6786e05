export { openStore } from './store.ts';
export type { Store, StoreOptions } from './store.ts';
export type { CheckRunRepo, ListCheckRunsOptions, RunScope } from './check-runs.ts';
export type { ScheduleFire, ScheduleFireRepo, ScheduleOutcome } from './schedules.ts';
export { appendAudit, canonicalJson, parseAuditExpectation, AUDIT_GENESIS_HASH } from './audit.ts';
export { tokenNameSchema } from './tokens.ts';
export type { TokenRepo, TokenRecord, CreateTokenInput } from './tokens.ts';
export type {
  AuditRepo,
  AuditEntry,
  AuditExpectation,
  AuditRecord,
  AuditProblem,
  AuditVerification,
  ListAuditOptions,
} from './audit.ts';
export type {
  ActiveRun,
  ListRunsFilter,
  RunPatch,
  RunRepo,
  RunTx,
  StepPatch,
  StoredAttempt,
  StoredEvent,
  StoredRun,
  StoredStep,
} from './runs.ts';
export type { BackupRepo, BackupSetRecord, BackupState, BeginBackupInput } from './backups.ts';
export type { MaintenanceNotice, MaintenanceRepo, NoticeStatus, WindowPatch } from './maintenance.ts';
export { OPEN_WINDOW_STATES } from './maintenance.ts';
