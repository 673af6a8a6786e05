export {
  connectMysql,
  withMysql,
  mysqlTarget,
  mysqlError,
  mysqlFlavour,
  grantsIncludeProcess,
} from './mysql.ts';
export type {
  MysqlClient,
  MysqlConnectOptions,
  MysqlQueryOptions,
  MysqlServerVersion,
  MysqlFlavour,
  MysqlGlobalStatus,
  MysqlProcess,
} from './mysql.ts';
export {
  connectRedis,
  withRedis,
  redisTarget,
  redisError,
  parseRedisInfo,
  parseRedisInfoSections,
} from './redis.ts';
export type {
  RedisClient,
  RedisConnectOptions,
  RedisInfo,
  RedisInfoSections,
  RedisLatencySample,
} from './redis.ts';
export { createAlertmanagerClient, alertmanagerTarget } from './alertmanager.ts';
export type {
  AlertmanagerClient,
  AlertmanagerAlert,
  AlertmanagerStatus,
  AlertQuery,
  AlertmanagerRequestOptions,
} from './alertmanager.ts';
export {
  readMounts,
  parseMountinfo,
  decodeMountField,
  realFilesystems,
  isPseudoFilesystem,
  mountFor,
  usageFromStatfs,
  discoverFilesystems,
  measurePath,
} from './filesystems.ts';
export type { Mount, FilesystemUsage } from './filesystems.ts';
export { describeError, errorCode } from './failures.ts';
export { httpAuth } from './http-auth.ts';
export type { HttpAuth, HttpCredentials } from './http-auth.ts';
export { readCapped, BodyTooLargeError } from './http-body.ts';
