/** The local platform adapter: game servers as supervised processes on this machine (ADR 0004). */
export { createLocalPlatform } from './platform.ts';
export type {
  LocalLogger,
  LocalPlatform,
  LocalPlatformOptions,
  SupervisorOptions,
  SupervisorRound,
} from './platform.ts';
