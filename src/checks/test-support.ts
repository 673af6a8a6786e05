/**
 * Test-only helpers for the check and connector tests (not exported from index.ts): a GameopsConfig built
 * through the real config parser, with passwords passed as `env:` references the way a deployment does it.
 */
import { parseConfigText, readEnv, type GameopsConfig } from '../config/index.ts';

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
  alertmanager?: { url: string; bearerToken?: string };
  /** Per-check deadline in ms. */
  timeout?: number;
  thresholds?: Record<string, unknown>;
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
  if (parts.alertmanager) {
    const { bearerToken, ...rest } = parts.alertmanager;
    if (bearerToken !== undefined) env['TEST_AM_TOKEN'] = bearerToken;
    doc['alertmanager'] = {
      ...rest,
      ...(bearerToken !== undefined ? { bearerToken: 'env:TEST_AM_TOKEN' } : {}),
    };
  }
  doc['checks'] = {
    ...(parts.timeout !== undefined ? { timeout: parts.timeout } : {}),
    thresholds: parts.thresholds ?? {},
  };
  return parseConfigText(JSON.stringify(doc), 'test.yaml', readEnv(env)).config;
}
