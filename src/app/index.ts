export { bootstrap, shutdown } from './bootstrap.ts';
export type { Resources, BootstrapOptions } from './bootstrap.ts';
export { runAndRecordDailyCheck } from './daily.ts';
export { createLogger } from './log.ts';
export type { Logger } from './log.ts';
export type { Metrics } from './metrics.ts';
export { openFleet, superviseFleet } from './fleet.ts';
export {
  openRunbooks,
  closeRunbooks,
  invalidRunbooks,
  runbooksDir,
  secretMasker,
  validateRunbooks,
  workRunbooks,
} from './runbooks.ts';
export type { InvalidRunbook, RunbookValidation } from './runbooks.ts';
export { openOps, closeOps, workOps, OPS_TICK_MS } from './ops.ts';
export type { Ops } from './ops.ts';
