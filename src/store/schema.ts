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

export interface StoreDatabase {
  check_runs: CheckRunsTable;
}
