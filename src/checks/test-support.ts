/**
 * Test-only helpers for the check and connector tests (not exported from index.ts): a GameopsConfig built
 * through the real config parser, with passwords passed as `env:` references the way a deployment does it.
 */
import { parseConfigText, readEnv, type GameopsConfig } from '../config/index.ts';

/** An HTTP API's part of the config: Basic auth (username + password) or a bearer token. */
export interface HttpApiParts {
  url: string;
  username?: string;
  password?: string;
  bearerToken?: string;
}

export interface TestConfigParts {
  mysql?: {
    host: string;
    port: number;
    user: string;
    password?: string;
    database?: string;
    socketPath?: string;
  };
  redis?: { host: string; port: number; password?: string };
  alertmanager?: HttpApiParts;
  prometheus?: HttpApiParts;
  /** Per-check deadline in ms. */
  timeout?: number;
  thresholds?: Record<string, unknown>;
  /** The `platform` section as written in the file. */
  platform?: Record<string, unknown>;
}

/** Builds a config from parts (JSON is YAML, so the text goes through parseConfigText unchanged). */
export function testConfig(parts: TestConfigParts = {}): GameopsConfig {
  const env: Record<string, string> = {};
  const doc: Record<string, unknown> = { service: { name: 'test-game', environment: 'test' } };
  if (parts.mysql) {
    const { password, ...rest } = parts.mysql;
    if (password !== undefined) env['TEST_MYSQL_PASSWORD'] = password;
    doc['mysql'] = { ...rest, ...(password !== undefined ? { password: 'env:TEST_MYSQL_PASSWORD' } : {}) };
  }
  if (parts.redis) {
    const { password, ...rest } = parts.redis;
    if (password !== undefined) env['TEST_REDIS_PASSWORD'] = password;
    doc['redis'] = { ...rest, ...(password !== undefined ? { password: 'env:TEST_REDIS_PASSWORD' } : {}) };
  }
  for (const [key, prefix] of [
    ['alertmanager', 'TEST_AM'],
    ['prometheus', 'TEST_PROM'],
  ] as const) {
    const api = parts[key];
    if (!api) continue;
    const { bearerToken, password, ...rest } = api;
    if (bearerToken !== undefined) env[`${prefix}_TOKEN`] = bearerToken;
    if (password !== undefined) env[`${prefix}_PASSWORD`] = password;
    doc[key] = {
      ...rest,
      ...(bearerToken !== undefined ? { bearerToken: `env:${prefix}_TOKEN` } : {}),
      ...(password !== undefined ? { password: `env:${prefix}_PASSWORD` } : {}),
    };
  }
  if (parts.platform) doc['platform'] = parts.platform;
  doc['checks'] = {
    ...(parts.timeout !== undefined ? { timeout: parts.timeout } : {}),
    thresholds: parts.thresholds ?? {},
  };
  return parseConfigText(JSON.stringify(doc), 'test.yaml', readEnv(env)).config;
}
