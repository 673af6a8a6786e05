export {
  ErrorCode,
  GameopsError,
  InputError,
  NotFoundError,
  ConflictError,
  NotAllowedError,
  UnavailableError,
  toGameopsError,
  errorMessage,
  assertNever,
} from './errors.ts';
export type { Clock } from './clock.ts';
export { systemClock, ManualClock } from './clock.ts';
export { parseDuration, formatDuration, durationSchema } from './duration.ts';
export { withTimeout } from './timeout.ts';
export type { Secret } from './secret.ts';
export { secret, isSecret, maskSecrets } from './secret.ts';
export { VERSION } from './version.ts';
export { mapLimit } from './concurrency.ts';
export { sleep } from './sleep.ts';
export type { WallClock } from './zone.ts';
export { isTimeZone, wallClock, zoneOffsetAt } from './zone.ts';
export { playerTextSchema, unsafeCharacter } from './text.ts';
