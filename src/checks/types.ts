import type { Clock } from '../core/index.ts';
import type { GameopsConfig } from '../config/index.ts';
import type { Platform } from '../platform/port.ts';
import type { BackupRepo } from '../store/backups.ts';
import type { KeptConnections } from './kept-connections.ts';
import type { CheckStatus } from './statuses.ts';

/** One thing a check found worth reporting: a threshold crossed, a restart, a long query. */
export interface Finding {
  status: CheckStatus;
  /** What it is about, e.g. `/var/lib/mysql`, `connections`, `query 1234`. */
  subject: string;
  message: string;
  value?: number | string;
  threshold?: number;
}

/** The result of one check in a run. `values` are the measured figures (JSON-safe, no secrets). */
export interface CheckResult {
  name: CheckName;
  status: CheckStatus;
  /** One line for people, e.g. "MariaDB 11.4.2: 12/151 connections (8 %), 0 slow since last check". */
  summary: string;
  durationMs: number;
  values: Record<string, unknown>;
  findings: Finding[];
  /** Present when status is `error`: what could not be measured. */
  error?: { code: string; message: string };
}

export const CHECK_NAMES = [
  'database',
  'redis',
  'disk',
  'alerts',
  'fleet',
  'logs',
  'game',
  'backups',
] as const;
export type CheckName = (typeof CHECK_NAMES)[number];

/** What a check receives. `previous` is the same check's last recorded result, for deltas. */
export interface CheckContext {
  config: GameopsConfig;
  clock: Clock;
  signal: AbortSignal;
  previous: CheckResult | undefined;
  /** When the previous result was recorded. */
  previousAt: Date | undefined;
  /** The game-server platform, when `platform` is configured (the fleet, logs and game checks use it). */
  platform: Platform | undefined;
  /** Reads a game server's `GET /ops/status` (docs/game-server-contract.md). */
  gameStatus: GameStatusReader | undefined;
  /** Why `platform` is missing although one is configured (it could not be opened). */
  platformProblem?: string | undefined;
  /** The backup catalog (the store's), for the backups check; undefined when the store is not open. */
  backupCatalog?: Pick<BackupRepo, 'list' | 'restorable' | 'reapAbandoned'> | undefined;
  /** Connections kept between checks by a long-running process (the server); undefined: connect per check. */
  kept?: KeptConnections | undefined;
}

/** What the game check needs from a game server. */
export interface GameStatusReader {
  status(opsUrl: string, options?: { signal?: AbortSignal }): Promise<GameServerStatus>;
}

/** The parts of `GET /ops/status` the daily check reads. */
export interface GameServerStatus {
  version: string;
  playersOnline: number;
  acceptingLogins: boolean;
  draining: boolean;
  maintenance: { enabled: boolean; message?: string | null | undefined };
  tickRate: number;
  tickLagMs: { p50: number; p99: number; max: number };
}

export interface Check {
  name: CheckName;
  /** Whether the config has what this check needs; unconfigured checks report `skipped`. */
  configured(config: GameopsConfig): boolean;
  /** What the check talks to, e.g. `MariaDB at db:3306`: named in the error when the check times out. */
  target?(config: GameopsConfig): string;
  run(ctx: CheckContext): Promise<Omit<CheckResult, 'name' | 'durationMs'>>;
}

/** A whole daily-check run as recorded in the store and returned by the API. */
export interface CheckRun {
  id: string;
  kind: 'daily';
  service: string;
  environment: string;
  trigger: 'cli' | 'api' | 'schedule';
  status: CheckStatus;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  results: CheckResult[];
}
