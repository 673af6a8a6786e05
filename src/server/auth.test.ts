import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrap, shutdown, type Resources } from '../app/index.ts';
import { ManualClock } from '../core/index.ts';
import type { Role } from '../runbooks/model.ts';
import { bearer, createToken } from '../../test/support/auth.ts';
import { writeTestConfig } from '../../test/support/config.ts';
import { createFailureLimiter, routeAccess } from './auth.ts';
import { buildServer, type GameopsServer } from './index.ts';

interface ErrorReply {
  error: { code: string; message: string };
}

describe('API authentication and roles (embedded store)', () => {
  let resources: Resources;
  let server: GameopsServer;
  let clock: ManualClock;
  const tokens = {} as Record<Role, string>;

  beforeAll(async () => {
    const { path } = writeTestConfig('', { withServices: false });
    clock = new ManualClock('2026-03-01T10:00:00Z');
    resources = await bootstrap({
      configPath: path,
      store: 'required',
      metrics: true,
      logLevel: 'silent',
      clock,
    });
    server = await buildServer(resources);
    for (const role of ['viewer', 'responder', 'operator', 'admin'] as const) {
      tokens[role] = await createToken(resources.store!, role, `test-${role}`);
    }
  });
  afterAll(async () => {
    await server.close();
    await shutdown(resources);
  });

  const as = (role: Role | undefined, method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object) =>
    server.app.inject({
      method,
      url,
      // Each test its own address, so the failure limiter of one test does not answer another's.
      remoteAddress: `10.0.0.${role ? 1 : 2}`,
      ...(role ? { headers: bearer(tokens[role]) } : {}),
      ...(payload ? { payload } : {}),
    });

  it('answers probes, /metrics and the API description without a token', async () => {
    for (const url of ['/healthz', '/readyz', '/metrics', '/api/openapi.json']) {
      expect((await as(undefined, 'GET', url)).statusCode, url).toBe(200);
    }
  });

  it('answers everything else 401 without a token, naming how to authenticate, unknown routes included', async () => {
    for (const [method, url] of [
      ['GET', '/api'],
      ['GET', '/api/checks/latest'],
      ['POST', '/api/fleet/scale'],
      ['GET', '/api/tokens'],
      ['GET', '/api/nope'],
    ] as const) {
      const res = await as(undefined, method, url);
      expect(res.statusCode, url).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Bearer realm="gameops"');
      expect(res.json<ErrorReply>().error).toEqual({
        code: 'unauthenticated',
        message: 'authentication required: send Authorization: Bearer <token> (gameops tokens create)',
      });
    }
  });

  it('answers 401 to a malformed header, an unknown, a revoked and an expired token, never repeating it', async () => {
    const store = resources.store!;
    const { token: revoked, record } = await store.tokens.create({
      name: 'gone',
      role: 'admin',
      createdBy: { id: 'local:test', name: 'test', role: 'admin', kind: 'local' },
    });
    await store.tokens.revoke(record.id, { id: 'local:test', name: 'test', role: 'admin', kind: 'local' });
    const { token: expiring } = await store.tokens.create({
      name: 'brief',
      role: 'admin',
      createdBy: { id: 'local:test', name: 'test', role: 'admin', kind: 'local' },
      expiresAt: new Date(clock.now().getTime() + 60_000),
    });
    clock.advance(60_000);
    const unknown = `gops_0123456789ab_${'A'.repeat(43)}`;
    for (const [i, authorization] of [
      `Basic ${Buffer.from('a:b').toString('base64')}`,
      `Bearer ${unknown}`,
      `Bearer ${revoked}`,
      `Bearer ${expiring}`,
      `Bearer ${tokens.admin.slice(0, -1)}`,
    ].entries()) {
      const res = await server.app.inject({
        method: 'GET',
        url: '/api',
        remoteAddress: `10.1.0.${i}`,
        headers: { authorization },
      });
      expect(res.statusCode, authorization).toBe(401);
      expect(res.json<ErrorReply>().error.code).toBe('unauthenticated');
      expect(res.body).not.toContain(authorization.split(' ')[1]);
    }
  });

  it.each([
    // [role, method, url, expected status]
    ['viewer', 'GET', '/api', 200],
    ['viewer', 'GET', '/api/checks', 200],
    ['viewer', 'POST', '/api/checks/daily', 403],
    ['responder', 'POST', '/api/fleet/gate', 403],
    ['viewer', 'GET', '/api/audit', 403],
    ['responder', 'GET', '/api/audit', 403],
    ['operator', 'GET', '/api/audit', 200],
    ['operator', 'POST', '/api/audit/verify', 403],
    ['admin', 'POST', '/api/audit/verify', 200],
    ['operator', 'GET', '/api/tokens', 403],
    ['admin', 'GET', '/api/tokens', 200],
  ] as const)('a %s on %s %s gets %i', async (role, method, url, status) => {
    const res = await as(role, method, url);
    expect(res.statusCode, res.body).toBe(status);
  });

  it('says which role is needed when refusing', async () => {
    const res = await as('viewer', 'POST', '/api/checks/daily');
    expect(res.json<ErrorReply>().error).toMatchObject({
      code: 'not_allowed',
      message: 'test-viewer (viewer) may not POST /api/checks/daily: needs responder, operator or admin',
    });
    const fleet = await as('responder', 'POST', '/api/fleet/scale', { replicas: 2 });
    expect(fleet.statusCode).toBe(403);
    expect(fleet.json<ErrorReply>().error.message).toContain('needs operator or admin');
  });

  it('creates a token shown once, which then works; lists without secrets; revokes it at once', async () => {
    const created = await as('admin', 'POST', '/api/tokens', {
      name: 'alice',
      role: 'responder',
      expiresIn: '30d',
    });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.headers['cache-control']).toBe('no-store');
    const { token, record } = created.json<{ token: string; record: { id: string; expiresAt: string } }>();
    expect(record.expiresAt).toBe(new Date(clock.now().getTime() + 30 * 86_400_000).toISOString());
    const info = await server.app.inject({ method: 'GET', url: '/api', headers: bearer(token) });
    expect(info.statusCode).toBe(200);

    const list = await as('admin', 'GET', '/api/tokens');
    expect(list.body).not.toContain(token.slice(18));
    expect(
      list
        .json<{ tokens: Array<{ id: string; lastUsedAt?: string }> }>()
        .tokens.find((t) => t.id === record.id),
    ).toMatchObject({
      lastUsedAt: clock.now().toISOString(),
    });

    const revoked = await as('admin', 'DELETE', `/api/tokens/${record.id}`);
    expect(revoked.json<{ token: { revokedAt: string } }>().token.revokedAt).toBe(clock.now().toISOString());
    const after = await server.app.inject({
      method: 'GET',
      url: '/api',
      headers: bearer(token),
      remoteAddress: '10.2.0.1',
    });
    expect(after.statusCode).toBe(401);

    const audit = await as('operator', 'GET', `/api/audit?target=token:${record.id}`);
    const records = audit.json<{ records: Array<{ action: string; actor: { name: string } }> }>().records;
    expect(records.map((r) => [r.action, r.actor.name])).toEqual([
      ['token.create', 'test-admin'],
      ['token.revoke', 'test-admin'],
    ]);
    expect(audit.body).not.toContain(token);
  });

  it('refuses bad token requests naming the field', async () => {
    for (const [payload, mentions] of [
      [{ name: '', role: 'viewer' }, 'body.name'],
      [{ name: 'x', role: 'root' }, 'body.role'],
      [{ name: 'x', role: 'viewer', expiresIn: 'soon' }, 'expiresIn: \\"soon\\" is not a duration'],
      [
        { name: 'x', role: 'viewer', expiresIn: '1d', expiresAt: '2030-01-01T00:00:00Z' },
        'expiresIn or expiresAt',
      ],
      [{ name: 'x', role: 'viewer', expiresAt: '2020-01-01T00:00:00Z' }, 'expiresAt must be in the future'],
    ] as const) {
      const res = await as('admin', 'POST', '/api/tokens', payload);
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
      expect(res.body).toContain(mentions);
    }
    const unknown = await as('admin', 'DELETE', '/api/tokens/0123456789ab');
    expect(unknown.statusCode).toBe(404);
    const malformed = await as('admin', 'DELETE', '/api/tokens/nope');
    expect(malformed.statusCode).toBe(400);
  });

  it('lists and filters audit records, and verifies the chain', async () => {
    const res = await as('operator', 'GET', '/api/audit?action=token.*&limit=2');
    const { records } = res.json<{ records: Array<{ seq: number; action: string }> }>();
    expect(records.length).toBe(2);
    expect(records[0]!.seq).toBeLessThan(records[1]!.seq);
    expect(records.every((r) => r.action.startsWith('token.'))).toBe(true);
    const bad = await as('operator', 'GET', '/api/audit?since=yesterday');
    expect(bad.statusCode).toBe(400);
    expect(bad.body).toContain('querystring.since');
    const verified = await as('admin', 'POST', '/api/audit/verify');
    expect(verified.json()).toMatchObject({ ok: true, problems: [] });
    const head = verified.json<{ head: { seq: number; hash: string } }>().head;
    const expected = await as('admin', 'POST', `/api/audit/verify?expect=${head.seq}:${head.hash}`);
    expect(expected.json()).toMatchObject({ ok: true, expected: head });
    const ahead = await as('admin', 'POST', `/api/audit/verify?expect=${head.seq + 1000}:${head.hash}`);
    expect(ahead.json<{ ok: boolean }>().ok).toBe(false);
    const malformed = await as('admin', 'POST', '/api/audit/verify?expect=nope');
    expect(malformed.statusCode).toBe(400);
    expect(malformed.body).toContain('expect: \\"nope\\" is not <seq>:<hash>');
  });

  it('answers 429 to an address after 10 bad tokens until the bucket refills, never to a good token', async () => {
    const address = '10.9.9.9';
    const attempt = (authorization: string) =>
      server.app.inject({ method: 'GET', url: '/api', remoteAddress: address, headers: { authorization } });
    for (let i = 0; i < 10; i += 1) expect((await attempt(`Bearer gops_bad${i}`)).statusCode).toBe(401);
    const blocked = await attempt('Bearer gops_bad10');
    expect(blocked.statusCode).toBe(429);
    expect(blocked.headers['retry-after']).toBe('6');
    expect(blocked.json<ErrorReply>().error.message).toBe(
      'too many failed authentications from 10.9.9.9; retry in 6s',
    );
    expect((await attempt('Basic abc')).statusCode, 'a malformed header is limited too').toBe(429);
    // A valid token from the same address is never limited (only failures are).
    expect((await attempt(`Bearer ${tokens.viewer}`)).statusCode).toBe(200);
    // Another address is not affected; probes are never limited.
    expect((await as('viewer', 'GET', '/api')).statusCode).toBe(200);
    expect(
      (await server.app.inject({ method: 'GET', url: '/healthz', remoteAddress: address })).statusCode,
    ).toBe(200);
    clock.advance(6000);
    expect((await attempt('Bearer gops_bad11')).statusCode).toBe(401);
    expect((await attempt('Bearer gops_bad12')).statusCode).toBe(429);
  });

  it('audits the config file it was started with', async () => {
    const records = await resources.store!.audit.list({ action: 'config.load' });
    expect(records).toHaveLength(1);
    expect(records[0]!.actor.kind).toBe('local');
    expect(records[0]!.target).toBe(`config:${resources.loaded.file}`);
  });
});

describe('API without a store', () => {
  it('refuses every authenticated route 503 (it cannot check tokens), probes still answer', async () => {
    const { path } = writeTestConfig('', { withServices: false });
    const resources = await bootstrap({ configPath: path, store: 'none', logLevel: 'silent' });
    const server = await buildServer(resources);
    try {
      const res = await server.app.inject({
        method: 'GET',
        url: '/api',
        headers: bearer(`gops_0123456789ab_${'A'.repeat(43)}`),
      });
      expect(res.statusCode).toBe(503);
      expect(res.json<ErrorReply>().error.message).toContain('the store is not open');
      expect((await server.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    } finally {
      await server.close();
      await shutdown(resources);
    }
  });
});

describe('route access rules', () => {
  it.each([
    ['GET', '/healthz', 'public'],
    ['HEAD', '/metrics', 'public'],
    ['POST', '/metrics', 'operator'],
    ['GET', '/api/openapi.json', 'public'],
    ['GET', '/api', 'viewer'],
    ['GET', undefined, 'viewer'],
    ['GET', '/api/fleet', 'viewer'],
    ['POST', '/api/fleet/scale', 'operator'],
    ['POST', '/api/checks/daily', 'responder'],
    ['POST', '/api/runs', 'viewer'],
    ['POST', '/api/runs/:id/steps/:stepId/approve', 'viewer'],
    ['GET', '/api/runbooks/:name', 'viewer'],
    ['POST', '/api/runbooksx', 'operator'],
    ['GET', '/api/tokens', 'admin'],
    ['DELETE', '/api/tokens/:id', 'admin'],
    ['GET', '/api/audit', 'operator'],
    ['POST', '/api/audit/verify', 'admin'],
    ['PUT', '/api/something-new', 'operator'],
  ] as const)('%s %s needs %s', (method, url, access) => {
    expect(routeAccess(method, url)).toBe(access);
  });
});

describe('failure limiter', () => {
  it('refills one attempt per interval and forgets addresses beyond its bound', () => {
    const clock = new ManualClock();
    const limiter = createFailureLimiter(clock, { burst: 2, refillMs: 1000 });
    limiter.fail('a');
    expect(limiter.blockedFor('a')).toBe(0);
    limiter.fail('a');
    expect(limiter.blockedFor('a')).toBe(1000);
    clock.advance(400);
    expect(limiter.blockedFor('a')).toBe(600);
    clock.advance(600);
    expect(limiter.blockedFor('a')).toBe(0);
    for (let i = 0; i < 10_050; i += 1) limiter.fail(`addr-${i}`);
    expect(limiter.size()).toBeLessThanOrEqual(10_000);
    expect(limiter.blockedFor('addr-10049')).toBe(0);
  });
});
