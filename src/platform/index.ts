export { InstancePhase } from './port.ts';
export type {
  Platform,
  Instance,
  InstanceFilter,
  ResourceUsage,
  NodeUsage,
  UsageReport,
  LogQuery,
  LogLine,
  LineCount,
  LogRotation,
  RolloutProgress,
  WaitOptions,
  RestartOptions,
  RolloutResult,
  GameConfig,
  AutoscalerStatus,
  ConfigObject,
  ConfigApplyResult,
} from './port.ts';
export { createPlatform } from './factory.ts';
export type { PlatformOptions } from './factory.ts';
export { createFleet, storeArtefact, MAINTENANCE_KEY, MAINTENANCE_MESSAGE_KEY } from './fleet.ts';
export type {
  Fleet,
  FleetDeps,
  FleetInstance,
  FleetStatus,
  GateState,
  GateResult,
  DrainResult,
  Artefact,
  PerInstanceOutcome,
  NoticeResult,
  DrainPlayersInput,
  DrainPlayersResult,
  DrainingInstance,
} from './fleet.ts';
export { checkPlayerText, createGameServerClient } from './game-client.ts';
export { unsafeCharacter } from '../core/index.ts';
export type { GameServerClient, GameStatus, DiagnosticKind, NoticeInput } from './game-client.ts';
export { countLinesMatching } from './lines.ts';
