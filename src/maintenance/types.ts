/**
 * Planned maintenance (issue #7, runbook §4): the contracts shared by the window service
 * (`service.ts`), the store (`src/store/maintenance.ts`), the `maintenance` runbook
 * (`src/runbooks/builtin/maintenance.ts`) and the CLI and API.
 *
 * A window is a planned span in which the game is closed for maintenance. It is created by `gameops
 * maintenance plan` (one-off) or materialised from `maintenance.recurring` (one row per occurrence). The
 * service's `tick(now)` sends the notices before it, starts the `maintenance` run `maintenance.leadTime`
 * before its start (preflight and approval happen then; the run waits for the start), follows the run to
 * its end, and answers the scheduler's question "is a window open now?" (conflicting scheduled runs are
 * held off until it ends).
 */
import { MAINTENANCE_TASKS } from '../config/schema.ts';

export { MAINTENANCE_TASKS };
export type MaintenanceTask = (typeof MAINTENANCE_TASKS)[number];

/** `mw-<UTC start, minutes>-<6 hex>` (one-off) or `mw-<UTC start>-<recurring name>` (an occurrence). */
export const WINDOW_ID_PATTERN = /^mw-\d{8}T\d{4}Z-[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * - `scheduled`: planned, its run not started yet.
 * - `running`: claimed by the window service (its run being started), or its `maintenance` run exists and has
 *   not ended (it may be waiting for the start, or an approval).
 * - `completed`: the run succeeded (service back).
 * - `failed`: the run failed and put the service back (compensation).
 * - `held`: the service is not known to be back: the run failed with hold, a compensation failed, or the run
 *   was cancelled after logins closed. Maintenance stays on until a `maintenance-reopen` run succeeds.
 * - `cancelled`: cancelled before or during the run (a started run is cancelled and compensated).
 */
export type WindowState = 'scheduled' | 'running' | 'completed' | 'failed' | 'held' | 'cancelled';

export interface MaintenanceWindow {
  id: string;
  /** One-off: free text given at plan time (or "maintenance"); recurring: the config entry's name. */
  name: string;
  origin: 'adhoc' | 'recurring';
  /** ISO 8601 UTC. */
  startsAt: string;
  endsAt: string;
  /** IANA zone the times are shown in to players and people (the game's time zone). */
  timezone: string;
  tasks: MaintenanceTask[];
  /** The game-server version to roll to (task `update`). */
  version?: string | undefined;
  /** Players' notice text (else a standard one naming the times). */
  message?: string | undefined;
  /** On failure keep maintenance on (no compensation) for the operator to fix and reopen. */
  hold: boolean;
  state: WindowState;
  runId?: string | undefined;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
  /** Why it failed or was cancelled. */
  reason?: string | undefined;
}

/** The parameters of the `maintenance` runbook (the window service starts it with these). */
export interface MaintenanceRunParams {
  /** The window this run serves (null: started by hand with `gameops run maintenance`). */
  window: string | null;
  startsAt: string;
  endsAt: string;
  tasks: MaintenanceTask[];
  version: string | null;
  message: string | null;
  hold: boolean;
}

/** Player-minutes lost by a window: an estimate shown by `maintenance plan --dry-run` and on approval. */
export interface PlayerMinutesEstimate {
  /** Players online now (the fleet's game servers), when they could be asked. */
  currentPlayers?: number | undefined;
  /**
   * Players online over the same span a week earlier (average), when history exists: from Prometheus
   * (`game_players_connected`) when configured, else from recorded daily checks near that time.
   */
  lastWeekPlayers?: number | undefined;
  lastWeekSource?: 'prometheus' | 'check-runs' | undefined;
  /** The figure used: last week's when known (the same hour is the best predictor), else the current. */
  players: number;
  durationMinutes: number;
  /** players × durationMinutes, rounded. */
  playerMinutes: number;
  /** One line for people, e.g. "≈ 4,120 player-minutes (206 players × 20 min; same hour last week)". */
  summary: string;
  /** Why a source is missing (fleet unreachable, no history). */
  notes: string[];
}

/** The notice offsets of a window that are due at `now` and not sent (computed by notices.ts). */
export interface DueNotice {
  /** `T-24h`, `T-60m`, `T-10m`, `T-1m`; and `start`, `end`, `cancelled`. */
  key: string;
  /** When it was due. */
  at: string;
}
