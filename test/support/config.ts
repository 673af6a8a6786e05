import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject } from 'vitest';

/**
 * Writes a gameops.yaml for the shared test servers into a fresh temp dir, with passwords in 0600
 * files referenced as `file:` secrets (the way a real deployment should do it). Returns the dir and
 * the config path. `extra` is appended verbatim (YAML), e.g. thresholds or disk paths.
 */
export function writeTestConfig(
  extra = '',
  options: { withServices?: boolean } = {},
): { dir: string; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'gameops-test-'));
  const lines = [
    'service: { name: test-game, environment: test }',
    `database: { dataDir: ${join(dir, 'data')} }`,
  ];
  if (options.withServices !== false) {
    const { mariadb, redis, alertmanager } = inject('services');
    writeFileSync(join(dir, 'mysql-password'), mariadb.password, { mode: 0o600 });
    lines.push(
      `mysql: { host: ${mariadb.host}, port: ${mariadb.port}, user: ${mariadb.user}, password: "file:${join(dir, 'mysql-password')}", database: gamedb }`,
    );
    if (redis.password) {
      writeFileSync(join(dir, 'redis-password'), redis.password, { mode: 0o600 });
      lines.push(
        `redis: { host: ${redis.host}, port: ${redis.port}, password: "file:${join(dir, 'redis-password')}" }`,
      );
    } else {
      lines.push(`redis: { host: ${redis.host}, port: ${redis.port} }`);
    }
    lines.push(`alertmanager: { url: "${alertmanager.url}" }`);
    lines.push(`checks: { timeout: 5s, thresholds: { disk: { paths: ["${dir}"] } } }`);
  }
  const path = join(dir, 'gameops.yaml');
  writeFileSync(path, `${lines.join('\n')}\n${extra}`);
  return { dir, path };
}
