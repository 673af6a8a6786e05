/**
 * On-call (issue #5, runbook §6.2): schedules with rotations, layers and overrides; escalation policies;
 * pages and their deliveries through channels; signed acknowledge links. See service.ts.
 */
export {
  type ChannelAttempts,
  type OncallDeps,
  type OncallService,
  type Stall,
  DEFAULT_ROUND_GAP_MS,
  RESERVED_DEDUP_PREFIXES,
  RETENTION_MS,
  STALL_AFTER_MS,
  createOncallService,
  roundGap,
  stepDueAt,
} from './service.ts';
export type * from './model.ts';
export { baseShifts, layerShifts, shiftAt, isTimeZone } from './rotation.ts';
export { shiftsCalendar } from './ical.ts';
export { readAckToken, signAckToken } from './ack-link.ts';
