import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { InputError } from '../core/index.ts';
import { ConfigError, loadConfig, parseConfigText, readEnv } from './index.ts';

const env = readEnv({ DB_PASS: 's3cret-from-env' });
const parse = (text: string) => parseConfigText(text, 'gameops.yaml', env, '/srv');

interface Failure {
  message: string;
  problems: Array<{ field: string; line?: number; message: string }>;
}

function problemOf(text: string, parseWith: (text: string) => unknown = parse): Failure {
  return failureOf(() => parseWith(text));
}

function failureOf(work: () => unknown): Failure {
  try {
    work();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    return {
      message: e.message,
      problems: (e.details?.problems ?? []) as Failure['problems'],
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

  it('rejects duplicate keys, naming the key and both lines', () => {
    const { message, problems } = problemOf('service: { name: a }\nserver: {}\nservice: { name: b }\n');
    expect(problems).toEqual([
      { field: 'service', line: 3, column: 1, message: 'duplicate key (first at line 1)' },
    ]);
    expect(message).toBe('invalid config gameops.yaml:3:1: service: duplicate key (first at line 1)');
    expect(problemOf('service: { name: a, name: b }\n').problems[0]?.field).toBe('service.name');
    expect(problemOf('service: { name: g }\n? [a, b]\n: 1\n').problems[0]).toMatchObject({
      field: '(root)',
      line: 2,
      message: 'keys must be plain text or numbers (not empty, a list, a mapping or an alias)',
    });
  });

  it('names a missing env secret with its file, line and field', () => {
    const { message, problems } = problemOf(
      'service: { name: g }\nmysql:\n  user: mon\n  password: env:NOPE_NOT_SET\n',
    );
    expect(problems).toEqual([
      {
        field: 'mysql.password',
        line: 4,
        column: 3,
        message: 'environment variable NOPE_NOT_SET is not set',
      },
    ]);
    expect(message).toBe(
      'invalid config gameops.yaml:4:3: mysql.password: environment variable NOPE_NOT_SET is not set',
    );
  });

  it('names every unresolvable secret at once, a missing secret file with its line', () => {
    const { message, problems } = problemOf(
      'service: { name: g }\nredis: { password: file:/nonexistent/redis-pass }\n' +
        'notifications:\n  channels:\n    - { name: ops, kind: slack, webhookUrl: env:NO_SLACK_HOOK }\n',
    );
    expect(problems.map((p) => [p.field, p.line])).toEqual([
      ['redis.password', 2],
      ['notifications.channels[0].webhookUrl', 5],
    ]);
    expect(message).toContain(
      'gameops.yaml:2:10: redis.password: cannot read secret file /nonexistent/redis-pass: file not found',
    );
    expect(message).toContain(
      'gameops.yaml:5:33: notifications.channels[0].webhookUrl: environment variable',
    );
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
    writeFileSync(join(secrets, 'game-mysql-password'), 'z');
    writeFileSync(join(secrets, 'game-ops-token'), 'a-token-of-32-characters-or-so!!');
    const loaded = loadConfig({
      path: join(import.meta.dirname, '../../examples/gameops.yaml'),
      env: readEnv({}),
      cwd: dir,
    });
    expect(loaded.config.mysql?.port).toBe(13306);
    expect(loaded.config.platform?.kind).toBe('local');
    expect(loaded.config.game.opsToken?.reveal()).toBe('a-token-of-32-characters-or-so!!');
    expect(loaded.warnings).toEqual([]);
  });
});

describe('config: credentials never sit in a printed URL', () => {
  const PASSWORD = 'Pw-n0t-for-printing';
  const RECIPIENT = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';
  it.each([
    ['alertmanager.url', `alertmanager: { url: "http://admin:${PASSWORD}@am:9093" }`, 'username + password'],
    ['prometheus.url', `prometheus: { url: "https://admin:${PASSWORD}@prom:9090" }`, 'bearerToken'],
    ['prometheus.url', `prometheus: { url: "https://:${PASSWORD}@prom:9090" }`, 'bearerToken'],
    ['prometheus.url', `prometheus: { url: "https://${PASSWORD}@prom:9090" }`, 'bearerToken'],
    [
      'backups.storage.endpoint',
      `backups: { encryption: { recipients: [${RECIPIENT}] }, storage: { kind: s3, bucket: backups, endpoint: "http://key:${PASSWORD}@minio:9000" } }`,
      'accessKeyId',
    ],
    [
      'notifications.channels[0].url',
      `notifications: { channels: [{ name: hook, kind: webhook, url: "https://u:${PASSWORD}@hooks/x" }] }`,
      'token',
    ],
  ])('%s with user:password@ is refused', (field, yaml, hint) => {
    const { message, problems } = problemOf(`service: { name: g }\n${yaml}\n`);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ field, line: 2 });
    expect(problems[0]?.message).toMatch(/^credentials in the URL are not allowed; use /);
    expect(message).toContain(hint);
    expect(JSON.stringify({ message, problems })).not.toContain(PASSWORD);
  });

  it('takes Basic auth as username + password: env:NAME, masked', () => {
    const { config, warnings } = parseConfigText(
      'service: { name: g }\n' +
        'alertmanager: { url: "http://am:9093", username: ops, password: env:AM_PASS }\n' +
        'prometheus: { url: "http://prom:9090", bearerToken: env:PROM_TOKEN }\n',
      'gameops.yaml',
      readEnv({ AM_PASS: 'am-basic-pass', PROM_TOKEN: 'prom-token' }),
    );
    expect(config.alertmanager?.username).toBe('ops');
    expect(config.alertmanager?.password?.reveal()).toBe('am-basic-pass');
    expect(config.alertmanager?.bearerToken).toBeUndefined();
    expect(config.prometheus?.bearerToken?.reveal()).toBe('prom-token');
    expect(config.prometheus?.password).toBeUndefined();
    expect(JSON.stringify(config)).not.toContain('am-basic-pass');
    expect(warnings).toEqual([]);
  });

  it.each([
    [
      'bearerToken and Basic auth',
      'alertmanager: { url: "http://am", username: ops, password: env:P, bearerToken: env:T }',
      'alertmanager.bearerToken',
      /cannot be combined with username\/password/,
    ],
    [
      'username without password',
      'prometheus: { url: "http://prom", username: ops }',
      'prometheus.username',
      /needs a password/,
    ],
    [
      'password without username',
      'prometheus: { url: "http://prom", password: env:P }',
      'prometheus.password',
      /needs a username/,
    ],
  ])('refuses %s, naming the field', (_name, yaml, field, message) => {
    const { problems } = problemOf(`service: { name: g }\n${yaml}\n`);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ field, line: 2 });
    expect(problems[0]?.message).toMatch(message);
  });
});

describe('config: the store URL is PostgreSQL or nothing', () => {
  const PASSWORD = 'Db-pw-n0t-for-printing';
  it('refuses a database.url that is not postgres://, naming the field, not the URL', () => {
    const failure = failureOf(() =>
      parseConfigText(
        'service: { name: g }\ndatabase:\n  url: env:STORE_URL\n',
        'gameops.yaml',
        readEnv({ STORE_URL: `mysql://root:${PASSWORD}@db/gameops` }),
      ),
    );
    expect(failure.problems).toEqual([
      {
        field: 'database.url',
        line: 3,
        column: 3,
        message:
          'only PostgreSQL is supported: the URL must start with postgres:// or postgresql://; remove it to use the embedded store',
      },
    ]);
    expect(JSON.stringify(failure)).not.toContain(PASSWORD);
  });

  it('refuses a DATABASE_URL that is not postgres://, naming the variable, not the URL', () => {
    for (const url of [`sqlite:///var/lib/${PASSWORD}.db`, `mysql://root:${PASSWORD}@db/gameops`]) {
      const failure = failureOf(() =>
        parseConfigText('service: { name: g }\n', 'gameops.yaml', readEnv({ DATABASE_URL: url })),
      );
      expect(failure.message).toBe(
        'environment variable DATABASE_URL: only PostgreSQL is supported: the URL must start with postgres:// or postgresql://; unset it to use the embedded store',
      );
      expect(failure.problems[0]?.field).toBe('DATABASE_URL');
      expect(JSON.stringify(failure)).not.toContain(PASSWORD);
    }
    // The same check when running unconfigured.
    const dir = mkdtempSync(join(tmpdir(), 'gameops-cfg-'));
    expect(
      failureOf(() => loadConfig({ env: readEnv({ DATABASE_URL: 'redis://h' }), cwd: dir })).message,
    ).toMatch(/^environment variable DATABASE_URL: only PostgreSQL is supported/);
  });

  it('refuses a postgres:// URL that does not parse, without repeating it', () => {
    const failure = failureOf(() =>
      parseConfigText(
        'service: { name: g }\n',
        'gameops.yaml',
        readEnv({ DATABASE_URL: `postgres://u:${PASSWORD}@db:notaport/g` }),
      ),
    );
    expect(failure.message).toMatch(/^environment variable DATABASE_URL: is not a valid URL/);
    expect(JSON.stringify(failure)).not.toContain(PASSWORD);
  });

  it('accepts postgres:// and postgresql:// from the file or DATABASE_URL', () => {
    for (const url of ['postgres://u:pw@h/db', 'postgresql://u:pw@h:5433/db', 'POSTGRES://h/db']) {
      expect(parse(`service: { name: g }\ndatabase: { url: "${url}" }\n`).config.database.url?.reveal()).toBe(
        url,
      );
      const { config } = parseConfigText('service: { name: g }\n', 'x.yaml', readEnv({ DATABASE_URL: url }));
      expect(config.database.url?.reveal()).toBe(url);
      expect(config.database.url?.source).toBe('env:DATABASE_URL');
    }
  });
});

describe('config: hostile files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gameops-cfg-hostile-'));
  const load = (path: string) => loadConfig({ path, env: readEnv({}), cwd: dir });

  /** A FIFO and a listening unix socket in `dir`; closes the socket afterwards. */
  async function specialFiles(): Promise<{ fifo: string; socket: string; close(): void }> {
    const fifo = join(dir, `fifo-${Math.random().toString(36).slice(2)}`);
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const socket = join(dir, `sock-${Math.random().toString(36).slice(2)}`);
    const server = createServer().listen(socket);
    await once(server, 'listening');
    return { fifo, socket, close: () => server.close() };
  }

  it('refuses a config file that is not a regular file, before reading it', async () => {
    const special = await specialFiles();
    try {
      const cases: Array<[string, string]> = [
        [dir, 'a directory'],
        ['/dev/zero', 'a character device'],
        [special.fifo, 'a FIFO'],
        [special.socket, 'a socket'],
      ];
      for (const [path, kind] of cases) {
        const { message, problems } = failureOf(() => load(path));
        expect(message).toBe(`${path}: not a regular file (it is ${kind})`);
        expect(problems).toEqual([{ field: '(file)', message: `not a regular file (it is ${kind})` }]);
      }
    } finally {
      special.close();
    }
  });

  it('refuses a config file over 1 MiB, before reading it', () => {
    const big = join(dir, 'big.yaml');
    writeFileSync(big, `service: { name: g }\n#${'x'.repeat(1024 * 1024)}\n`);
    expect(failureOf(() => load(big)).message).toBe(
      `${big}: too large (${1024 * 1024 + 23} bytes; the limit for a config file is 1 MiB)`,
    );
    const exactly = join(dir, 'exactly.yaml');
    const head = 'service: { name: g }\n#';
    writeFileSync(exactly, `${head}${'x'.repeat(1024 * 1024 - head.length - 1)}\n`);
    expect(load(exactly).config.service.name).toBe('g');
    expect(failureOf(() => parse(`#${'x'.repeat(1024 * 1024)}`)).message).toMatch(
      /^invalid config gameops\.yaml: \(file\): larger than 1 MiB/,
    );
  });

  it('refuses a file: secret that is not a regular file or is over 64 KiB, naming field and line', async () => {
    const special = await specialFiles();
    try {
      const large = join(dir, 'large-secret');
      writeFileSync(large, 'x'.repeat(64 * 1024 + 1));
      const fits = join(dir, 'fits-secret');
      writeFileSync(fits, `${'y'.repeat(64 * 1024 - 1)}\n`);
      const cases: Array<[string, string]> = [
        [dir, 'not a regular file (it is a directory)'],
        ['/dev/zero', 'not a regular file (it is a character device)'],
        [special.fifo, 'not a regular file (it is a FIFO)'],
        [special.socket, 'not a regular file (it is a socket)'],
        [large, `too large (${64 * 1024 + 1} bytes; the limit for a secret file is 64 KiB)`],
      ];
      for (const [path, reason] of cases) {
        const { problems } = problemOf(`service: { name: g }\nredis:\n  password: file:${path}\n`);
        expect(problems).toEqual([
          {
            field: 'redis.password',
            line: 3,
            column: 3,
            message: `cannot read secret file ${path}: ${reason}`,
          },
        ]);
      }
      expect(
        parse(`service: { name: g }\nredis: { password: file:${fits} }\n`).config.redis?.password?.reveal(),
      ).toHaveLength(64 * 1024 - 1);
    } finally {
      special.close();
    }
  });

  it('refuses a mapping of more than 10,000 keys (1 MiB of keys)', () => {
    const lines = ['service: { name: g }', 'x:'];
    let size = 30;
    for (let i = 0; size < 1024 * 1024 - 40; i++) {
      const line = `  k${i.toString(36)}: 1`;
      lines.push(line);
      size += line.length + 1;
    }
    const text = `${lines.join('\n')}\n`;
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(1024 * 1024);
    // No timing assertion (they fail on a loaded machine): a quadratic check of 1 MiB of keys takes
    // minutes, so the test's own timeout is what catches one.
    const { problems } = problemOf(text);
    expect(problems).toEqual([
      {
        field: 'x',
        line: 3,
        column: 3,
        message: `a mapping with ${lines.length - 2} keys; at most 10000 are accepted`,
      },
    ]);
  });

  it('checks many 10,000-key mappings with duplicates in linear time', () => {
    const maps = Array.from({ length: 9 }, (_, m) => {
      const keys = Array.from({ length: 9_999 }, (_, i) => `k${i}: 1`);
      keys.push('k0: 2');
      return `m${m}: { ${keys.join(', ')} }`;
    });
    const text = `service: { name: g }\n${maps.join('\n')}\n`;
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(1024 * 1024);
    // Quadratic duplicate detection would take minutes here: the test's timeout catches it.
    const { message, problems } = problemOf(text);
    expect(problems).toHaveLength(9);
    expect(problems.map((p) => [p.field, p.line, p.message])).toEqual(
      Array.from({ length: 9 }, (_, m) => [`m${m}.k0`, m + 2, `duplicate key (first at line ${m + 2})`]),
    );
    expect(message).toMatch(/^invalid config \(9 problems\):/);
  });

  it('refuses an alias bomb with a ConfigError naming the file', () => {
    const bomb = [
      'a: &a [x, x, x, x, x, x, x, x, x]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]',
      'e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]',
    ].join('\n');
    const { message, problems } = problemOf(`service: { name: g }\n${bomb}\n`);
    expect(problems[0]?.field).toBe('(yaml)');
    expect(message).toMatch(/^invalid config gameops\.yaml: \(yaml\): aliases expand too far/);
  });

  it('refuses deeply nested flow collections with a ConfigError', () => {
    const { problems } = problemOf(`service: { name: g }\nx: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`);
    expect(problems[0]?.field).toBe('(yaml)');
  });

  it('names at most 10 unknown keys, then counts the rest', () => {
    const keys = Array.from({ length: 25 }, (_, i) => `k${i}: 1`).join(', ');
    const { message, problems } = problemOf(`service: { name: g }\nredis: { ${keys} }\n`);
    expect(problems).toHaveLength(1);
    expect(problems[0]?.field).toBe('redis.k0,k1,k2,k3,k4,k5,k6,k7,k8,k9 and 15 more');
    expect(problems[0]?.message).toBe(
      'unknown keys "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9" and 15 more',
    );
    expect(problems[0]?.line).toBe(2);
    expect(message.length).toBeLessThan(300);
  });

  it('lists at most 20 problems, then counts the rest', () => {
    const people = Array.from({ length: 500 }, () => '{ id: "Bad Id", name: x }').join(', ');
    const { message, problems } = problemOf(`service: { name: g }\npeople: [${people}]\n`);
    expect(problems).toHaveLength(20);
    expect(message).toMatch(/^invalid config \(500 problems\):\n/);
    expect(message).toMatch(/\n {2}and 480 more$/);
  });
});

describe('config: bounded durations', () => {
  it.each([
    ['checks.timeout', 'checks: { timeout: 0 }', 'must be between 100ms and 10m (got 0ms)'],
    ['checks.timeout', 'checks: { timeout: 25d }', 'must be between 100ms and 10m (got 25d0h)'],
    ['checks.timeout', 'checks: { timeout: 99ms }', 'must be between 100ms and 10m (got 99ms)'],
    [
      'mysql.connectTimeout',
      'mysql: { user: m, connectTimeout: 0 }',
      'must be between 100ms and 10m (got 0ms)',
    ],
    [
      'mysql.connectTimeout',
      'mysql: { user: m, connectTimeout: 11m }',
      'must be between 100ms and 10m (got 11m00s)',
    ],
    [
      'checks.retention',
      'checks: { retention: 23h }',
      'must be between 1d and 3650d (10 years) (got 23h00m)',
    ],
    [
      'checks.retention',
      'checks: { retention: 3651d }',
      'must be between 1d and 3650d (10 years) (got 3651d0h)',
    ],
  ])('%s: %s is refused', (field, yaml, reason) => {
    const { message, problems } = problemOf(`service: { name: g }\n${yaml}\n`);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ field, line: 2, message: reason });
    expect(message).toContain(`${field}: ${reason}`);
  });

  it('accepts the bounds, and keeps check runs 90 days by default', () => {
    const { config } = parse(
      'service: { name: g }\nmysql: { user: m, connectTimeout: 10m }\nchecks: { timeout: 100ms, retention: 1d }\n',
    );
    expect(config.mysql?.connectTimeout).toBe(600_000);
    expect(config.checks.timeout).toBe(100);
    expect(config.checks.retention).toBe(86_400_000);
    expect(parse('service: { name: g }\n').config.checks.retention).toBe(90 * 86_400_000);
    expect(parse('service: { name: g }\nchecks: { retention: 3650d }\n').config.checks.retention).toBe(
      3650 * 86_400_000,
    );
  });
});

describe('config: environment variables', () => {
  it.each([
    [
      { GAMEOPS_CONFIG: '' },
      'environment variable GAMEOPS_CONFIG is set but empty; unset it or give it a value',
    ],
    [{ DATABASE_URL: '' }, 'environment variable DATABASE_URL is set but empty; unset it or give it a value'],
    [
      { GAMEOPS_LOG_LEVEL: 'verbose' },
      'environment variable GAMEOPS_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "verbose")',
    ],
  ])('%o gives an InputError naming the variable', (source, message) => {
    const variable = Object.keys(source)[0];
    let caught: unknown;
    try {
      readEnv(source);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InputError);
    expect((caught as InputError).code).toBe('input');
    expect((caught as InputError).message).toBe(message);
    expect((caught as InputError).details).toEqual({ variable });
  });
});

describe('config: the platform section', () => {
  const local = (extra: string) =>
    'service: { name: g }\nplatform:\n  kind: local\n  version: "1.0"\n' +
    '  versions: { "1.0": { command: [node, server.ts] } }\n' +
    extra;

  it('resolves secretEnv to masked secrets and makes working directories absolute', () => {
    const { config } = parse(local('  secretEnv: { GAME_MYSQL_PASSWORD: env:DB_PASS }\n'));
    expect(config.platform?.kind).toBe('local');
    if (config.platform?.kind !== 'local') throw new Error('not local');
    expect(config.platform.secretEnv['GAME_MYSQL_PASSWORD']?.reveal()).toBe('s3cret-from-env');
    expect(config.platform.versions['1.0']?.cwd).toBe('/srv');
    expect(JSON.stringify(config)).not.toContain('s3cret-from-env');
    expect(config.platform.basePort).toBe(7700);
  });

  it.each([
    [
      local('').replace('version: "1.0"', 'version: "2.0"'),
      'platform.version',
      'is not one of versions (1.0)',
    ],
    [
      local('').replace('version: "1.0"', 'version: "constructor"'),
      'platform.version',
      'is not one of versions',
    ],
    [local('  replicas: -1\n'), 'platform.replicas', ''],
    [local('  replicas: 2.5\n'), 'platform.replicas', ''],
    [local('  replicas: 5\n  basePort: 65534\n'), 'platform.basePort', 'leaves no port for 5 instances'],
    [local('  env: { "BAD-NAME": x }\n'), 'platform.env', 'environment variable name'],
    [local('').replace('[node, server.ts]', '[]'), 'platform.versions.1.0.command', ''],
    [local('').replace('version: "1.0"', 'version: "../x"'), 'platform.version', ''],
    ['service: { name: g }\nplatform: { kind: kubernetes }\n', 'platform.deployment', ''],
    ['service: { name: g }\nplatform: { kind: docker }\n', 'platform.kind', ''],
  ])('refuses a bad platform section, naming the field (%#)', (text, field, message) => {
    const failure = problemOf(text);
    const problem = failure.problems.find((p) => p.field.startsWith(field));
    expect(problem, JSON.stringify(failure.problems)).toBeDefined();
    expect(problem?.message).toContain(message);
  });
});

describe('config: incidents, on-call and alert intake', () => {
  const people = `people:
  - { id: alice, name: Alice, email: alice@example.com, contacts: [mail] }
  - { id: bob, name: Bob }
teams:
  - { id: ops, name: Ops, members: [alice, bob], lead: alice }
notifications:
  channels:
    - { name: mail, kind: email, smtpUrl: "env:DB_PASS", from: gameops@example.com }
    - { name: hook, kind: webhook, url: "https://hooks.example.com/x", signingSecret: "env:DB_PASS" }
    - { name: dc, kind: discord, webhookUrl: "env:DB_PASS" }
`;

  it('fills §2.1 severities and the default alert intake settings', () => {
    const { config } = parse('service: { name: my-game }\n');
    expect(config.incidents.severities.P1).toMatchObject({
      respondWithin: 0,
      warRoom: true,
      statusUpdateEvery: 900_000,
    });
    expect(config.incidents.severities.P2).toMatchObject({ respondWithin: 900_000, warRoom: true });
    expect(config.incidents.severities.P3).toMatchObject({ respondWithin: 3_600_000, warRoom: false });
    expect(config.incidents.severities.P4.respondWithin).toBeUndefined();
    expect(config.incidents.statusUpdateGrace).toBe(300_000);
    expect(config.alerts.severityLabels.critical).toBe('P1');
    expect(config.alerts.reconcileEvery).toBe(300_000);
    expect(config.oncall.delivery).toMatchObject({ attempts: 5, firstRetry: 30_000, maxRetry: 600_000 });
  });

  it('resolves the signing secret and the Discord URL as masked secrets', () => {
    const { config } = parse(`service: { name: my-game }\n${people}`);
    const [, hook, dc] = config.notifications.channels;
    expect(hook?.kind === 'webhook' && hook.signingSecret?.reveal()).toBe('s3cret-from-env');
    expect(dc?.kind === 'discord' && dc.webhookUrl.reveal()).toBe('s3cret-from-env');
    expect(inspect(config)).not.toContain('s3cret-from-env');
  });

  it('accepts a weekly rotation with primary and backup layers and the 0/15/30/60 policy', () => {
    const { config } = parse(`service: { name: my-game }
${people}oncall:
  schedules:
    - name: game-ops
      timezone: Asia/Seoul
      layers:
        - { name: primary, start: "2026-01-05", participants: [alice, bob] }
        - { name: backup, start: "2026-01-05", participants: [bob, alice] }
  policies:
    - name: default
      levels:
        - { after: 0s, targets: [{ schedule: game-ops }] }
        - { after: 15m, targets: [{ schedule: game-ops, layer: backup }] }
        - { after: 30m, targets: [{ teamLead: ops }] }
        - { after: 1h, targets: [{ person: bob }] }
`);
    const [layer] = config.oncall.schedules[0]!.layers;
    expect(layer).toMatchObject({ rotation: 'weekly', handoff: { weekday: 'monday', time: '10:00' } });
    expect(config.oncall.policies[0]!.levels.map((l) => l.after)).toEqual([0, 900_000, 1_800_000, 3_600_000]);
  });

  it('names every unknown person, team, channel, schedule, layer and policy', () => {
    const { problems } = problemOf(`service: { name: my-game }
${people}oncall:
  defaultContacts: [pager]
  schedules:
    - { name: s1, layers: [{ name: primary, start: "2026-01-05", participants: [carol] }] }
  policies:
    - name: p1
      levels:
        - { after: 0s, targets: [{ schedule: s1, layer: backup }, { team: devs }, { schedule: nope }] }
        - { after: 10m, targets: [{ person: alice }] }
        - { after: 5m, targets: [{ person: alice }] }
incidents:
  severities:
    P1: { description: down, warRoom: true, policy: missing }
alerts:
  routes: [{ matchers: ['severity="critical"'], policy: p2 }]
`);
    const byField = Object.fromEntries(problems.map((p) => [p.field, p.message]));
    expect(byField['oncall.defaultContacts[0]']).toMatch(/unknown channel "pager"/);
    expect(byField['oncall.schedules[0].layers[0].participants[0]']).toMatch(/unknown person "carol"/);
    expect(byField['oncall.policies[0].levels[0].targets[0].layer']).toMatch(
      /schedule "s1" has no layer "backup"/,
    );
    expect(byField['oncall.policies[0].levels[0].targets[1].team']).toMatch(/unknown team "devs"/);
    expect(byField['oncall.policies[0].levels[0].targets[2].schedule']).toMatch(
      /unknown on-call schedule "nope"/,
    );
    expect(byField['oncall.policies[0].levels[2].after']).toMatch(/not be earlier than the level before/);
    expect(byField['incidents.severities.P1.policy']).toMatch(/unknown escalation policy "missing"/);
    expect(byField['alerts.routes[0].policy']).toMatch(/unknown escalation policy "p2"/);
  });

  it('refuses a schedule layer without participants, naming it', () => {
    const { problems } = problemOf(`service: { name: my-game }
${people}oncall:
  schedules:
    - { name: s1, layers: [{ name: primary, start: "2026-01-05", participants: [] }] }
`);
    const problem = problems.find((p) => p.field === 'oncall.schedules[0].layers[0].participants');
    expect(problem?.message).toMatch(/at least one participant/);
  });

  it('refuses a recurring maintenance window that would update and a notice offset given twice, naming them', () => {
    const { problems } = problemOf(`service: { name: my-game }
maintenance:
  notices: { before: [24h, 60m, 1h] }
  recurring:
    - { name: thursday, cron: "0 4 * * 4", duration: 2h, tasks: [db, update] }
`);
    const byField = Object.fromEntries(problems.map((p) => [p.field, p.message]));
    expect(byField['maintenance.recurring[0].tasks[1]']).toMatch(
      /db or logs: a recurring window gives no version/,
    );
    expect(byField['maintenance.notices.before']).toMatch(/an offset is given twice/);
  });

  it('refuses a suppression window that is both recurring and one-off, and a duplicate channel name', () => {
    const { problems } = problemOf(`service: { name: my-game }
notifications:
  channels:
    - { name: hook, kind: webhook, url: "https://a.example.com/" }
    - { name: hook, kind: webhook, url: "https://b.example.com/" }
alerts:
  suppressions:
    - { name: thursday, cron: "0 4 * * 4", start: "2026-12-03T04:00:00+09:00", duration: 2h }
`);
    const fields = problems.map((p) => p.field);
    expect(fields).toContain('alerts.suppressions[0]');
    expect(fields).toContain('notifications.channels[1].name');
  });

  it('checks alert matchers when the config loads, naming the matcher', () => {
    const { problems } = problemOf(
      `service: { name: my-game }\nalerts:\n  routes: [{ matchers: ['severity=~"(a"', 'x y'] }]\n`,
    );
    const byField = Object.fromEntries(problems.map((p) => [p.field, p.message]));
    expect(byField['alerts.routes[0].matchers[0]']).toMatch(/"\(a" is not a valid regex/);
    expect(byField['alerts.routes[1]']).toBeUndefined();
    expect(byField['alerts.routes[0].matchers[1]']).toMatch(/"x y" is not a matcher/);
  });
});
