import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrap, shutdown, type Resources } from '../app/index.ts';
import { CHECK_NAMES } from '../checks/index.ts';
import { startSilentServer } from '../../test/harness/index.ts';
import { authHeaders } from '../../test/support/auth.ts';
import { writeTestConfig } from '../../test/support/config.ts';
import { buildServer, type GameopsServer } from './index.ts';

describe('HTTP API (real MariaDB, Redis, Alertmanager; embedded store)', () => {
  let resources: Resources;
  let server: GameopsServer;
  let auth: { authorization: string };

  beforeAll(async () => {
    const { path } = writeTestConfig();
    resources = await bootstrap({ configPath: path, store: 'required', metrics: true, logLevel: 'silent' });
    server = await buildServer(resources);
    auth = await authHeaders(resources);
  });
  afterAll(async () => {
    await server.close();
    await shutdown(resources);
  });

  const call = (method: 'GET' | 'POST', url: string) => server.app.inject({ method, url, headers: auth });

  it('answers liveness and readiness', async () => {
    expect((await call('GET', '/healthz')).json()).toEqual({ status: 'ok' });
    const ready = await call('GET', '/readyz');
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: 'ready' });
  });

  it('runs the daily check, records it, and serves it back', async () => {
    const posted = await call('POST', '/api/checks/daily');
    expect(posted.statusCode).toBe(200);
    const run = posted.json<{
      id: string;
      trigger: string;
      results: Array<{ name: string; status: string }>;
    }>();
    expect(run.trigger).toBe('api');
    expect(run.results.map((r) => r.name).sort()).toEqual([...CHECK_NAMES].sort());
    // No platform and no backups configured here: those checks are skipped.
    for (const r of run.results)
      expect(
        ['fleet', 'logs', 'game', 'backups'].includes(r.name) ? ['skipped'] : ['ok', 'warn', 'fail'],
      ).toContain(r.status);

    const latest = await call('GET', '/api/checks/latest');
    expect(latest.json<{ id: string }>().id).toBe(run.id);
    const one = await call('GET', `/api/checks/${run.id}`);
    expect(one.json<{ id: string }>().id).toBe(run.id);
    const list = await call('GET', `/api/checks?since=${encodeURIComponent('2000-01-01T00:00:00Z')}&limit=5`);
    expect(list.json<{ runs: Array<{ id: string }> }>().runs[0]?.id).toBe(run.id);
    const future = await call('GET', `/api/checks?since=${encodeURIComponent('2999-01-01T00:00:00Z')}`);
    expect(future.json<{ runs: unknown[] }>().runs).toEqual([]);
  });

  it('shares one run between concurrent POSTs', async () => {
    const [a, b] = await Promise.all([call('POST', '/api/checks/daily'), call('POST', '/api/checks/daily')]);
    expect(a.json<{ id: string }>().id).toBe(b.json<{ id: string }>().id);
  });

  it('exposes its own metrics after a run', async () => {
    await call('POST', '/api/checks/daily');
    const res = await call('GET', '/metrics');
    expect(res.headers['content-type']).toContain('text/plain');
    expect(res.body).toMatch(/gameops_check_status\{check="database"\} [0-3]/);
    expect(res.body).toMatch(/gameops_check_runs_total\{status="\w+"\} \d+/);
    expect(res.body).toContain('gameops_build_info{');
    expect(res.body).toContain('gameops_process_resident_memory_bytes');
  });

  it.each([
    ['/api/checks?since=yesterday', 400, 'querystring.since'],
    ['/api/checks?limit=0', 400, 'querystring.limit'],
    ['/api/checks?limit=100000', 400, 'querystring.limit'],
    ['/api/checks?bogus=1', 400, 'querystring'],
    ['/api/checks/not-a-uuid', 400, 'params.id'],
    ['/api/checks/00000000-0000-4000-8000-000000000000', 404, 'no check run'],
    ['/api/nope', 404, 'no route GET /api/nope'],
  ])('rejects %s with %i and a message naming it', async (url, status, mentions) => {
    const res = await call('GET', url);
    expect(res.statusCode).toBe(status);
    const body = res.json<{ error: { code: string; message: string } }>();
    expect(body.error.code).toBe(status === 400 ? 'input' : 'not_found');
    expect(JSON.stringify(body)).toContain(mentions);
  });

  it('says whether a run reached the store', async () => {
    const res = await call('POST', '/api/checks/daily');
    expect(res.json<{ recorded: boolean; warning?: string }>()).toMatchObject({ recorded: true });
    expect(res.json<{ warning?: string }>().warning).toBeUndefined();
  });

  it.each([
    ['a non-loopback Host (DNS rebinding)', 'GET', { host: 'attacker.example:8787' }, 403],
    [
      'a DNS name that starts like a loopback address',
      'POST',
      { host: '127.0.0.1.evil.example:8787', origin: 'http://127.0.0.1.evil.example:8787' },
      403,
    ],
    ['a loopback address literal', 'GET', { host: '127.0.0.2:8787' }, 200],
    ['a cross-site POST (Origin elsewhere)', 'POST', { origin: 'http://evil.example' }, 403],
    ['a cross-site POST (Sec-Fetch-Site)', 'POST', { 'sec-fetch-site': 'cross-site' }, 403],
    ['a malformed Origin', 'POST', { origin: 'not a url' }, 403],
    ['a same-origin POST', 'POST', { host: '127.0.0.1:8787', origin: 'http://127.0.0.1:8787' }, 200],
    ['a tool without Origin', 'POST', { host: 'localhost:8787' }, 200],
  ] as const)('answers %s with %i', async (_what, method, headers, status) => {
    const res = await server.app.inject({
      method,
      url: method === 'GET' ? '/api/checks/latest' : '/api/checks/daily',
      headers: { ...auth, ...headers },
    });
    expect(res.statusCode).toBe(status);
    if (status === 403) expect(res.json<{ error: { code: string } }>().error.code).toBe('not_allowed');
  });

  it('serves an OpenAPI document describing the routes', async () => {
    const doc = (await call('GET', '/api/openapi.json')).json<{
      openapi: string;
      paths: Record<string, unknown>;
    }>();
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/healthz',
        '/readyz',
        '/metrics',
        '/api/checks/daily',
        '/api/checks/latest',
        '/api/checks',
      ]),
    );
  });

  it('never returns a secret', async () => {
    const bodies = await Promise.all(['/api', '/api/checks/latest', '/metrics'].map((u) => call('GET', u)));
    const text = bodies.map((b) => b.body).join('\n');
    const pw = resources.config.mysql?.password?.reveal();
    expect(pw).toBeTruthy();
    expect(text).not.toContain(pw);
  });
});

describe('HTTP API with no config at all', () => {
  it('comes up, explains how to configure, and reports checks as not configured', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-unconfigured-'));
    const resources = await bootstrap({ store: 'required', logLevel: 'silent', cwd: dir, env: { all: {} } });
    const server = await buildServer(resources);
    const headers = await authHeaders(resources);
    try {
      const info = (await server.app.inject({ method: 'GET', url: '/api', headers })).json<{
        configured: boolean;
        hint: string;
      }>();
      expect(info.configured).toBe(false);
      expect(info.hint).toContain('gameops.yaml');
      const run = (await server.app.inject({ method: 'POST', url: '/api/checks/daily', headers })).json<{
        status: string;
        results: Array<{ name: string; status: string; summary: string }>;
      }>();
      const skipped = run.results.filter((r) => r.status === 'skipped');
      expect(skipped.length).toBeGreaterThanOrEqual(3);
      expect(skipped.map((r) => r.name).sort()).toEqual([
        'alerts',
        'backups',
        'database',
        'fleet',
        'game',
        'logs',
        'redis',
      ]);
      for (const r of skipped) expect(r.summary).toContain('not configured');
    } finally {
      await server.close();
      await shutdown(resources);
    }
  });
});

describe('HTTP API graceful shutdown', () => {
  it('past the grace period interrupts a running check, still answers it and records it', async () => {
    const silent = await startSilentServer();
    const { path } = writeTestConfig();
    const text = readFileSync(path, 'utf8')
      .replace(/mysql: \{ host: [^,]+, port: \d+/, `mysql: { host: 127.0.0.1, port: ${silent.port}`)
      .replace('timeout: 5s', 'timeout: 60s');
    writeFileSync(path, text);
    const resources = await bootstrap({ configPath: path, store: 'required', logLevel: 'silent' });
    const server = await buildServer(resources);
    const headers = await authHeaders(resources);
    try {
      const pending = server.app.inject({ method: 'POST', url: '/api/checks/daily', headers });
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = Date.now();
      await server.close(200);
      expect(Date.now() - started).toBeLessThan(10_000);
      const run = (await pending).json<{
        id: string;
        results: Array<{ name: string; status: string; summary: string }>;
      }>();
      const db = run.results.find((r) => r.name === 'database');
      expect(db?.status).toBe('error');
      expect(db?.summary).toContain('interrupted: gameops is shutting down');
      expect((await resources.store!.checkRuns.get(run.id))?.id).toBe(run.id);
    } finally {
      await shutdown(resources);
      await silent.stop();
    }
  });
});
