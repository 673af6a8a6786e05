import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseConfigText, readEnv } from './index.ts';

const env = readEnv({ DB_PASS: 's3cret-from-env' });
const parse = (text: string) => parseConfigText(text, 'gameops.yaml', env, '/srv');

function problemOf(text: string): { message: string; problems: Array<{ field: string; line?: number }> } {
  try {
    parse(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    return {
      message: e.message,
      problems: (e.details?.problems ?? []) as Array<{ field: string; line?: number }>,
    };
  }
  throw new Error('expected a ConfigError');
}

describe('config parsing', () => {
  it('fills documented defaults from a minimal file', () => {
    const { config, warnings } = parse('service: { name: my-game }\n');
    expect(config.service.environment).toBe('production');
    expect(config.server).toEqual({ host: '127.0.0.1', port: 8787 });
    expect(config.checks.timeout).toBe(5000);
    expect(config.checks.thresholds.disk).toMatchObject({ warnPercent: 80, failPercent: 90 });
    expect(config.checks.thresholds.database.connectionsWarnPercent).toBe(80);
    expect(config.database.dataDir).toBe('/srv/.gameops');
    expect(config.mysql).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  it('resolves env: and file: secrets and never prints them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-cfg-'));
    writeFileSync(join(dir, 'redis-pass'), 'from-a-file\n');
    const { config } = parseConfigText(
      `service: { name: g }\nmysql: { user: mon, password: env:DB_PASS }\nredis: { password: file:${dir}/redis-pass }\n`,
      'gameops.yaml',
      env,
    );
    expect(config.mysql?.password?.reveal()).toBe('s3cret-from-env');
    expect(config.redis?.password?.reveal()).toBe('from-a-file');
    const shown = JSON.stringify(config) + inspect(config, { depth: 10 }) + String(config.mysql?.password);
    expect(shown).not.toContain('s3cret-from-env');
    expect(shown).not.toContain('from-a-file');
  });

  it('accepts an inline password with a warning', () => {
    const { config, warnings } = parse('service: { name: g }\nmysql: { user: mon, password: hunter2 }\n');
    expect(config.mysql?.password?.reveal()).toBe('hunter2');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('mysql.password');
    expect(warnings[0]).not.toContain('hunter2');
  });

  it.each([
    ['missing service', 'server: { port: 1 }\n', 'service', 1],
    ['wrong type', 'service: { name: g }\nmysql:\n  user: mon\n  port: "3306x"\n', 'mysql.port', 4],
    ['unknown key', 'service: { name: g }\nredis:\n  hots: x\n', 'redis.hots', 3],
    [
      'out of range',
      'service: { name: g }\nchecks:\n  thresholds:\n    disk:\n      warnPercent: 180\n',
      'checks.thresholds.disk.warnPercent',
      5,
    ],
    [
      'fail below warn',
      'service: { name: g }\nchecks:\n  thresholds:\n    disk: { warnPercent: 85, failPercent: 70 }\n',
      'checks.thresholds.disk.failPercent',
      4,
    ],
    ['bad duration', 'service: { name: g }\nchecks:\n  timeout: 5 minutes\n', 'checks.timeout', 3],
    ['bad url', 'service: { name: g }\nalertmanager: { url: "ftp://x" }\n', 'alertmanager.url', 2],
    [
      'unknown team member',
      'service: { name: g }\nteams: [{ id: ops, name: Ops, members: [zed] }]\n',
      'teams[0].members[0]',
      2,
    ],
  ])('%s names the field and line', (_name, text, field, line) => {
    const { message, problems } = problemOf(text);
    expect(problems[0]?.field).toBe(field);
    expect(problems[0]?.line).toBe(line);
    expect(message).toContain('gameops.yaml:');
    expect(message).toContain(field);
  });

  it('reports YAML syntax errors with a line', () => {
    const { message, problems } = problemOf('service:\n  name: [unclosed\n');
    expect(problems[0]?.field).toBe('(yaml)');
    expect(problems[0]?.line).toBeGreaterThan(0);
    expect(message).toMatch(/gameops\.yaml:\d+:\d+/);
  });

  it('rejects duplicate keys', () => {
    expect(problemOf('service: { name: a }\nservice: { name: b }\n').problems[0]?.field).toBe('(yaml)');
  });

  it('names a missing env secret without failing later', () => {
    const { message } = problemOf('service: { name: g }\nmysql: { user: mon, password: env:NOPE_NOT_SET }\n');
    expect(message).toContain('mysql.password');
    expect(message).toContain('NOPE_NOT_SET');
  });

  it('runs unconfigured when there is no file at all', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-cfg-'));
    const loaded = loadConfig({ env: readEnv({}), cwd: dir });
    expect(loaded.configured).toBe(false);
    expect(loaded.file).toBeUndefined();
  });

  it('fails clearly for an explicit file that does not exist', () => {
    expect(() => loadConfig({ path: '/nonexistent/gameops.yaml', env: readEnv({}) })).toThrow(
      /gameops\.yaml: file not found/,
    );
  });

  it('uses DATABASE_URL as the store when set', () => {
    const { config } = parseConfigText(
      'service: { name: g }\n',
      'x.yaml',
      readEnv({ DATABASE_URL: 'postgres://u:pw@h/db' }),
    );
    expect(config.database.url?.reveal()).toBe('postgres://u:pw@h/db');
    expect(JSON.stringify(config)).not.toContain(':pw@');
  });

  it('loads the example config (with its secret files present)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-cfg-'));
    const secrets = join(dir, '.gameops/stack/secrets');
    mkdirSync(secrets, { recursive: true });
    writeFileSync(join(secrets, 'mysql-password'), 'x');
    writeFileSync(join(secrets, 'redis-password'), 'y');
    const loaded = loadConfig({
      path: join(import.meta.dirname, '../../examples/gameops.yaml'),
      env: readEnv({}),
      cwd: dir,
    });
    expect(loaded.config.mysql?.port).toBe(13306);
    expect(loaded.warnings).toEqual([]);
  });
});
