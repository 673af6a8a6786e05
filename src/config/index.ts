export { configSchema, thresholdsSchema, backupsSchema } from './schema.ts';
export type { ConfigInput, ParsedConfig } from './schema.ts';
export { loadConfig, parseConfigText, resolveSecretRef, ConfigError } from './load.ts';
export type {
  GameopsConfig,
  LoadedConfig,
  ConfigProblem,
  MysqlConfig,
  RedisConfig,
  AlertmanagerConfig,
  PrometheusConfig,
  Thresholds,
  PlatformConfig,
  LocalPlatformConfig,
  KubernetesPlatformConfig,
  GameConfigSection,
  BackupsConfig,
  StorageConfig,
  RestoreTargetConfig,
} from './load.ts';
export { readEnv } from './env.ts';
export type { GameopsEnv } from './env.ts';
