export { CheckStatus, worst, worstOf, exitCodeFor } from './statuses.ts';
export { CHECK_NAMES } from './types.ts';
export type { Check, CheckContext, CheckName, CheckResult, CheckRun, Finding } from './types.ts';
export { runDailyCheck, runChecksSequentially, dailyChecks } from './daily.ts';
export type { DailyCheckOptions } from './daily.ts';
export { databaseCheck } from './database.ts';
export { redisCheck } from './redis.ts';
export { diskCheck } from './disk.ts';
export { alertsCheck } from './alerts.ts';
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
