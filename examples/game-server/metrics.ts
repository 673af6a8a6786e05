/** The game server's Prometheus metrics (docs/game-server-contract.md, "GET /metrics"). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Tick buckets in seconds: fine from 1 to 50 ms, where a 30 Hz loop's p99 lives (its period is 33 ms),
 * coarser beyond.
 */
export const TICK_BUCKETS = [
  0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.006, 0.0075, 0.01, 0.0125, 0.015, 0.0175,
  0.02, 0.025, 0.03, 0.035, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1,
];

/** Server-side errors only: bad input from players is counted apart (`game_bad_messages_total`). */
export type ErrorKind = 'persistence' | 'internal';
export type DropReason = 'late' | 'rate' | 'overflow';

export interface GameMetrics {
  readonly registry: Registry;
  readonly playersConnected: Gauge;
  readonly sessionsOpen: Gauge;
  readonly errors: Counter<'kind'>;
  readonly badMessages: Counter;
  readonly tickDuration: Histogram;
  readonly tickLag: Histogram;
  readonly ticks: Counter;
  readonly ticksSkipped: Counter;
  readonly inputsProcessed: Counter;
  readonly inputsDropped: Counter<'reason'>;
  readonly logins: Counter;
  readonly loginsRefused: Counter<'reason'>;
  readonly maintenanceEnabled: Gauge;
  readonly draining: Gauge;
  readonly persistenceQueue: Gauge;
}

export function createMetrics(): GameMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const errors = new Counter({
    name: 'game_errors_total',
    help: 'Server-side errors: persistence (a MySQL or Redis write failed or hung), internal (a bug).',
    labelNames: ['kind'] as const,
    registers,
  });
  for (const kind of ['persistence', 'internal'] satisfies ErrorKind[]) errors.inc({ kind }, 0);
  const inputsDropped = new Counter({
    name: 'game_inputs_dropped_total',
    help: 'Player inputs dropped: late (older than the latency budget), rate (over the per-player cap), overflow (queue full).',
    labelNames: ['reason'] as const,
    registers,
  });
  for (const reason of ['late', 'rate', 'overflow'] satisfies DropReason[]) inputsDropped.inc({ reason }, 0);
  const loginsRefused = new Counter({
    name: 'game_logins_refused_total',
    help: 'Logins refused: maintenance, draining, full, duplicate.',
    labelNames: ['reason'] as const,
    registers,
  });
  for (const reason of ['maintenance', 'draining', 'full', 'duplicate']) loginsRefused.inc({ reason }, 0);
  return {
    registry,
    playersConnected: new Gauge({ name: 'game_players_connected', help: 'Logged-in players.', registers }),
    sessionsOpen: new Gauge({ name: 'game_sessions_open', help: 'Open WebSocket connections.', registers }),
    errors,
    badMessages: new Counter({
      name: 'game_bad_messages_total',
      help: 'Malformed messages and frames from players (bad client input, not a server error).',
      registers,
    }),
    tickDuration: new Histogram({
      name: 'game_tick_duration_seconds',
      help: 'Work done per tick.',
      buckets: TICK_BUCKETS,
      registers,
    }),
    tickLag: new Histogram({
      name: 'game_tick_lag_seconds',
      help: 'How late each tick started against its schedule.',
      buckets: TICK_BUCKETS,
      registers,
    }),
    ticks: new Counter({ name: 'game_ticks_total', help: 'Ticks run.', registers }),
    ticksSkipped: new Counter({
      name: 'game_ticks_skipped_total',
      help: 'Ticks skipped because the loop fell more than one second behind.',
      registers,
    }),
    inputsProcessed: new Counter({
      name: 'game_inputs_processed_total',
      help: 'Player inputs applied.',
      registers,
    }),
    inputsDropped,
    logins: new Counter({ name: 'game_logins_total', help: 'Successful logins.', registers }),
    loginsRefused,
    maintenanceEnabled: new Gauge({
      name: 'game_maintenance_enabled',
      help: '1 while maintenance mode is on.',
      registers,
    }),
    draining: new Gauge({ name: 'game_draining', help: '1 while draining.', registers }),
    persistenceQueue: new Gauge({
      name: 'game_persistence_queue',
      help: 'Session and presence writes waiting to be flushed.',
      registers,
    }),
  };
}
