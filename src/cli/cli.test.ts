import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHECK_NAMES } from '../checks/index.ts';
import { describe, expect, inject, it } from 'vitest';
import { startSilentServer } from '../../test/harness/index.ts';
import { bearer, serveToken } from '../../test/support/auth.ts';
import { writeTestConfig } from '../../test/support/config.ts';
import { openStore } from '../store/index.ts';
import { configJsonSchema } from './commands/config.ts';

const MAIN = join(import.meta.dirname, 'main.ts');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the real CLI as a separate process (cold start, like a person would). */
function gameops(
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; entry?: string } = {},
): Promise<Result> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [options.entry ?? MAIN, ...args], {
      cwd: options.cwd ?? process.cwd(),
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: performance.now() - started }));
  });
}

/** Starts `gameops serve` as a real process and resolves once it says where it listens. */
async function startServe(
  path: string,
  cwd: string,
): Promise<{ address: string; child: ChildProcess; exited: Promise<number | null>; stderr: () => string }> {
  const child = spawn(process.execPath, [MAIN, 'serve', '--port', '0', '--config', path], {
    cwd,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const address = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m?.[1]) resolve(m[1]);
    });
    child.on('exit', () => reject(new Error(`serve exited early: ${stderr}`)));
  });
  return { address, child, exited, stderr: () => stderr };
}

describe('gameops check daily (real servers, real process)', () => {
  it('--json prints every check with real values and exits by status', async () => {
    const { path } = writeTestConfig();
    const res = await gameops(['check', 'daily', '--json', '--config', path]);
    const run = JSON.parse(res.stdout) as {
      status: string;
      results: Array<{ name: string; status: string; values: Record<string, unknown> }>;
    };
    expect(run.results.map((r) => r.name).sort()).toEqual([...CHECK_NAMES].sort());
    const byName = Object.fromEntries(run.results.map((r) => [r.name, r]));
    expect(String(byName.database?.values.version)).toMatch(/\d+\.\d+/);
    expect(String(byName.redis?.values.version)).toMatch(/\d+\.\d+/);
    expect(res.code).toBe({ ok: 0, skipped: 0, warn: 1, fail: 2, error: 2 }[run.status]);
  });

  it('records runs so the second run computes deltas against the first', async () => {
    const { path } = writeTestConfig();
    await gameops(['check', 'daily', '--json', '--config', path]);
    const second = JSON.parse((await gameops(['check', 'daily', '--json', '--config', path])).stdout) as {
      results: Array<{ name: string; values: Record<string, unknown> }>;
    };
    const db = second.results.find((r) => r.name === 'database');
    expect(db?.values).toHaveProperty('slowQueriesSinceLastCheck');
  });

  it('records in PostgreSQL when DATABASE_URL is set (two runs: the second has deltas)', async () => {
    const { path } = writeTestConfig();
    const env = { DATABASE_URL: inject('services').postgres.url };
    const first = await gameops(['check', 'daily', '--json', '--config', path], { env });
    expect(first.stderr).not.toContain('warning');
    const second = JSON.parse(
      (await gameops(['check', 'daily', '--json', '--config', path], { env })).stdout,
    ) as {
      id: string;
      results: Array<{ name: string; values: Record<string, unknown> }>;
    };
    expect(second.results.find((r) => r.name === 'database')?.values['slowQueriesBaseline']).toBe(false);
    const store = await openStore({ url: env.DATABASE_URL });
    try {
      expect(store.backend).toBe('postgres');
      expect((await store.checkRuns.get(second.id))?.id).toBe(second.id);
    } finally {
      await store.close();
    }
  });

  it('reports a dead database as an error naming it, exit 2, without hanging', async () => {
    const { path } = writeTestConfig('');
    const text = readFileSync(path, 'utf8').replace(
      /mysql: \{ host: [^,]+, port: \d+/,
      'mysql: { host: 127.0.0.1, port: 1',
    );
    writeFileSync(path, text.replace('timeout: 5s', 'timeout: 2s'));
    const res = await gameops(['check', 'daily', '--json', '--config', path]);
    expect(res.code).toBe(2);
    const run = JSON.parse(res.stdout) as {
      results: Array<{ name: string; status: string; summary: string }>;
    };
    const db = run.results.find((r) => r.name === 'database');
    expect(db?.status).toBe('error');
    expect(db?.summary).toContain('127.0.0.1:1');
  });

  it('still checks and reports when the store cannot be opened, saying why', async () => {
    const { path, dir } = writeTestConfig();
    writeFileSync(join(dir, 'not-a-dir'), 'x');
    writeFileSync(
      path,
      readFileSync(path, 'utf8').replace(/dataDir: [^ }]+/, `dataDir: ${join(dir, 'not-a-dir', 'data')}`),
    );
    const res = await gameops(['check', 'daily', '--json', '--config', path]);
    expect([0, 1, 2]).toContain(res.code);
    expect(res.stderr).toMatch(/warning: results not recorded/);
    expect((JSON.parse(res.stdout) as { results: unknown[] }).results).toHaveLength(CHECK_NAMES.length);
  });

  it('with no config file at all checks what it can and leaves nothing behind', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'gameops-empty-'));
    const res = await gameops(['check', 'daily', '--json'], { cwd: empty });
    expect([0, 1, 2]).toContain(res.code);
    expect(res.stderr).toContain('no config file found');
    expect(readdirSync(empty)).toEqual([]);
  });

  it('stops quietly when its reader goes away (| head)', async () => {
    const { path } = writeTestConfig();
    const res = await new Promise<Result>((resolve, reject) => {
      const started = performance.now();
      const child = spawn(
        process.execPath,
        [MAIN, 'check', 'daily', '--no-record', '--json', '--config', path],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let stderr = '';
      child.stdout.once('data', () => child.stdout.destroy());
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout: '', stderr, ms: performance.now() - started }));
    });
    expect(res.stderr).not.toMatch(/EPIPE|Unhandled|at /);
  });

  it('--markdown prints a table to paste into a ticket', async () => {
    const { path } = writeTestConfig();
    const res = await gameops(['check', 'daily', '--markdown', '--no-record', '--config', path]);
    expect(res.stdout).toContain('| Check | Status | Summary |');
    expect(res.stdout).toMatch(/\| database \|/);
  });

  it('prints a human table by default with no colour when not a terminal', async () => {
    const { path } = writeTestConfig();
    const res = await gameops(['check', 'daily', '--no-record', '--config', path]);
    expect(res.stdout).toMatch(/^CHECK\s+STATUS\s+TIME\s+SUMMARY$/m);
    expect(res.stdout).toMatch(/Overall: (OK|WARN|FAIL|ERROR)/);
    expect(res.stdout).not.toContain('\u001b[');
  });
});

describe('the bundled CLI (dist/, what bin/gameops runs after setup)', () => {
  it('runs the daily check the same way as the sources, the second time from its code cache', async () => {
    const bundle = join(import.meta.dirname, '../../dist/gameops.mjs');
    expect(existsSync(bundle), 'dist/gameops.mjs is built by `npm run setup` and `npm test`').toBe(true);
    const { path } = writeTestConfig();
    const cache = mkdtempSync(join(tmpdir(), 'gameops-cli-code-cache-'));
    try {
      const env = { GAMEOPS_CODE_CACHE: cache };
      for (const round of ['first', 'cached']) {
        const res = await gameops(['check', 'daily', '--json', '--config', path], { entry: bundle, env });
        expect(res.stderr, round).toBe('');
        const run = JSON.parse(res.stdout) as { results: Array<{ name: string; status: string }> };
        expect(run.results.map((r) => r.name).sort()).toEqual([...CHECK_NAMES].sort());
        expect(run.results.find((r) => r.name === 'database')?.status).not.toBe('error');
      }
      // One cache directory (this Node and build), with the `check` command's files in it.
      const [build] = readdirSync(cache);
      expect(build).toMatch(new RegExp(`^${process.version}-${process.arch}-[0-9a-f]{12}$`));
      expect(readdirSync(join(cache, build!, 'check'))).toContain('gameops.cjs.v8');
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  });
});

describe('gameops CLI: bad input and could-not-run (exit 3)', () => {
  it('names file, line and field of a bad config', async () => {
    const { path } = writeTestConfig('', { withServices: false });
    writeFileSync(path, 'service:\n  name: g\nredis:\n  port: seventy\n');
    const res = await gameops(['check', 'daily', '--config', path]);
    expect(res.code).toBe(3);
    expect(res.stderr).toContain(`${path}:4:`);
    expect(res.stderr).toContain('redis.port');
    expect(res.stdout).toBe('');
  });

  it.each([
    [['check', 'daily', '--bogus'], /unknown option '--bogus'/],
    [['check', 'weekly'], /unknown command 'weekly'/],
    [['check', 'daily', '--timeout', 'soon'], /--timeout: "soon" is not a duration/],
    [['check', 'daily', '--json', '--markdown'], /cannot be used with/],
    [['serve', '--port', '99999'], /--port: "99999" is not a port/],
    [['--config', '/nonexistent.yaml', 'check', 'daily'], /nonexistent\.yaml: file not found/],
    [['--config', '', 'check', 'daily'], /--config: the file name is empty/],
    [['--log-level', 'loud', 'check', 'daily'], /argument 'loud' is invalid/],
  ])('%j → exit 3 with a clear message', async (args, message) => {
    const res = await gameops(args);
    expect(res.code).toBe(3);
    expect(res.stderr).toMatch(message);
  });

  it('documents exit codes in --help', async () => {
    const res = await gameops(['check', 'daily', '--help']);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('Exit codes:');
    expect(res.stdout).toMatch(/3\s+could not run/);
  });
});

describe('gameops config', () => {
  it('check prints the resolved config with secrets masked', async () => {
    const { path } = writeTestConfig();
    const res = await gameops(['config', 'check', '--config', path]);
    expect(res.code).toBe(0);
    expect(res.stderr).toContain('is valid');
    expect(res.stdout).toContain('password: "********"');
    const pw = readFileSync(join(path, '..', 'mysql-password'), 'utf8');
    expect(res.stdout).not.toContain(pw);
  });

  it('schema prints the JSON Schema, and docs/gameops.schema.json is up to date', async () => {
    const res = await gameops(['config', 'schema']);
    const schema = JSON.parse(res.stdout) as { properties: Record<string, unknown> };
    expect(Object.keys(schema.properties)).toEqual(
      expect.arrayContaining(['service', 'mysql', 'redis', 'checks']),
    );
    const committed = readFileSync(join(import.meta.dirname, '../../docs/gameops.schema.json'), 'utf8');
    expect(JSON.parse(committed), 'run: ./bin/gameops config schema > docs/gameops.schema.json').toEqual(
      configJsonSchema(),
    );
  });
});

describe('gameops serve (real process)', () => {
  it('listens, answers, refuses a second process on the same data dir, and stops on SIGTERM', async () => {
    const { path, dir } = writeTestConfig();
    const { address, child, exited, stderr } = await startServe(path, dir);
    try {
      expect(address).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(await (await fetch(`${address}/healthz`)).json()).toEqual({ status: 'ok' });
      const run = (await (
        await fetch(`${address}/api/checks/daily`, {
          method: 'POST',
          headers: bearer(serveToken(join(dir, 'data'))),
        })
      ).json()) as { id: string };
      expect(run.id).toMatch(/[0-9a-f-]{36}/);

      const second = await gameops(['serve', '--port', '0', '--config', path], { cwd: dir });
      expect(second.code).toBe(3);
      expect(second.stderr).toMatch(/in use by another gameops process/);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(stderr()).toContain('gameops: stopped');
  });

  it('says clearly when its port is taken', async () => {
    const { path, dir } = writeTestConfig();
    const first = await startServe(path, dir);
    try {
      const port = new URL(first.address).port;
      const other = writeTestConfig();
      const res = await gameops(['serve', '--port', port, '--config', other.path], { cwd: other.dir });
      expect(res.code).toBe(3);
      expect(res.stderr).toContain(`cannot listen on 127.0.0.1:${port}: the port is already in use`);
    } finally {
      first.child.kill('SIGTERM');
      await first.exited;
    }
  });

  it('on SIGTERM lets a running check finish, answers it, and records it before exiting', async () => {
    const silent = await startSilentServer();
    try {
      const { path, dir } = writeTestConfig();
      // MySQL that accepts and never answers: the check takes the whole 3 s deadline.
      const text = readFileSync(path, 'utf8').replace(
        /mysql: \{ host: [^,]+, port: \d+/,
        `mysql: { host: 127.0.0.1, port: ${silent.port}`,
      );
      writeFileSync(path, text.replace('timeout: 5s', 'timeout: 3s'));
      const { address, child, exited } = await startServe(path, dir);
      const pending = fetch(`${address}/api/checks/daily`, {
        method: 'POST',
        headers: bearer(serveToken(join(dir, 'data'))),
      });
      await new Promise((resolve) => setTimeout(resolve, 500));
      child.kill('SIGTERM');
      const response = await pending;
      expect(response.status).toBe(200);
      const run = (await response.json()) as {
        id: string;
        results: Array<{ name: string; status: string; summary: string }>;
      };
      const db = run.results.find((r) => r.name === 'database');
      expect(db?.status).toBe('error');
      expect(db?.summary).toContain('did not answer within 3000 ms');
      expect(await exited).toBe(0);
      const store = await openStore({ dataDir: join(dir, 'data') });
      try {
        expect((await store.checkRuns.get(run.id))?.id).toBe(run.id);
      } finally {
        await store.close();
      }
    } finally {
      await silent.stop();
    }
  });
});
