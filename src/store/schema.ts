import type { Generated } from 'kysely';
import type { AlertTables } from './alerts.ts';
import type { BackupTables } from './backups.ts';
import type { IncidentTables } from './incidents.ts';
import type { MaintenanceTables } from './maintenance.ts';
import type { OncallTables } from './oncall.ts';

/** Table types for Kysely, as the migrations create them. Timestamps are ISO-8601 UTC text; JSON is text. */
export interface CheckRunsTable {
  id: string;
  kind: string;
  service: string;
  environment: string;
  trigger: string;
  status: string;
  started_at: string;
  finished_at: string;
  duration_ms: number;
  /** JSON: CheckResult[]. */
  results: string;
}

export interface RunsTable {
  id: string;
  service: string;
  environment: string;
  runbook: string;
  version: string;
  definition_hash: string;
  /** JSON: the compiled Runbook minus its zod schema. */
  definition: string;
  /** JSON. */
  params: string;
  status: string;
  trigger: string;
  /** JSON: Actor. */
  requested_by: string;
  idempotency_key: string | null;
  parent_run_id: string | null;
  parent_step_id: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  deadline_at: string | null;
  reason: string | null;
  paused: Generated<number>;
  cancel_requested: Generated<number>;
  compensating: Generated<number>;
  lease_owner: string | null;
  lease_expires_at: string | null;
  event_seq: Generated<number>;
  revision: Generated<number>;
  updated_at: string;
}

export interface RunStepsTable {
  run_id: string;
  step_id: string;
  kind: string;
  status: string;
  attempt: Generated<number>;
  fence: Generated<number>;
  started_at: string | null;
  finished_at: string | null;
  finished_seq: number | null;
  not_before: string | null;
  /** JSON. */
  output: string | null;
  /** JSON: { code, message }. */
  error: string | null;
  /** JSON: ApprovalView. */
  approval: string | null;
  child_run_id: string | null;
  /** JSON: the state of the step's compensation. */
  compensation: string | null;
  lease_owner: string | null;
  lease_expires_at: string | null;
}

export interface StepAttemptsTable {
  run_id: string;
  step_id: string;
  attempt: number;
  fence: number;
  worker: string;
  /** started | succeeded | failed | unknown */
  status: string;
  started_at: string;
  finished_at: string | null;
  error: string | null;
}

export interface RunEventsTable {
  run_id: string;
  seq: number;
  at: string;
  type: string;
  step_id: string | null;
  status: string | null;
  message: string | null;
}

export interface CountersTable {
  name: string;
  value: number;
}

export interface AuditLogTable {
  seq: number;
  at: string;
  /** JSON: Actor. */
  actor: string;
  action: string;
  target: string;
  /** JSON. */
  data: string;
  prev_hash: string;
  hash: string;
}

export interface AuditHeadTable {
  id: number;
  seq: number;
  hash: string;
}

export interface ApiTokensTable {
  id: string;
  name: string;
  role: string;
  hash: string;
  created_at: string;
  created_by: string;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
}

export interface ScheduleFiresTable {
  service: string;
  environment: string;
  schedule: string;
  /** ISO-8601 UTC instant of the occurrence. */
  occurrence: string;
  /** fired | missed */
  outcome: string;
  run_id: string | null;
  recorded_at: string;
}

/** Every table; the incident-response domains (issue #5) declare theirs beside their repos. */
export interface StoreDatabase
  extends IncidentTables, OncallTables, AlertTables, BackupTables, MaintenanceTables {
  check_runs: CheckRunsTable;
  runs: RunsTable;
  run_steps: RunStepsTable;
  step_attempts: StepAttemptsTable;
  run_events: RunEventsTable;
  counters: CountersTable;
  audit_log: AuditLogTable;
  audit_head: AuditHeadTable;
  api_tokens: ApiTokensTable;
  schedule_fires: ScheduleFiresTable;
}
