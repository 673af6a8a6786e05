export { CheckStatus, worst, worstOf, exitCodeFor } from './statuses.ts';
export { CHECK_NAMES } from './types.ts';
export type {
  Check,
  CheckContext,
  CheckName,
  CheckResult,
  CheckRun,
  Finding,
  GameStatusReader,
  GameServerStatus,
} from './types.ts';
export { runDailyCheck, runChecksSequentially, dailyChecks } from './daily.ts';
export type { DailyCheckOptions } from './daily.ts';
export { KeptConnections } from './kept-connections.ts';
export { databaseCheck } from './database.ts';
export { redisCheck } from './redis.ts';
export { diskCheck } from './disk.ts';
export { alertsCheck } from './alerts.ts';
export { fleetCheck, restartDeltas } from './fleet.ts';
export type { RestartDelta } from './fleet.ts';
export { logsCheck } from './logs.ts';
export { gameCheck } from './game.ts';
export { backupsCheck } from './backups.ts';
export type { ActiveAlert } from './alerts.ts';
export {
  levelFor,
  percentOf,
  counterDelta,
  restartedSince,
  uptimeRestarted,
  percentile,
  latencyLevel,
  latencySummary,
  fragmentationLevel,
  formatBytes,
  shortStatement,
} from './thresholds.ts';
export type { CounterDelta, LatencySummary } from './thresholds.ts';
