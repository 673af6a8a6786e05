import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { authHeaders, bearer } from '../../../test/support/auth.ts';
import { bootstrap, shutdown, type Resources } from '../../app/index.ts';
import { ManualClock } from '../../core/index.ts';
import { DEFAULT_ONCALL, oncallConfigText } from '../../oncall/oncall.fixture.ts';
import { buildServer } from '../index.ts';

const dirs: string[] = [];
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function serve(): Promise<{ resources: Resources; server: Awaited<ReturnType<typeof buildServer>> }> {
  const dir = mkdtempSync(join(tmpdir(), 'gameops-oncall-api-'));
  dirs.push(dir);
  const path = join(dir, 'gameops.yaml');
  writeFileSync(path, `${oncallConfigText(DEFAULT_ONCALL)}\ndatabase: { dataDir: ${join(dir, 'data')} }\n`);
  const resources = await bootstrap({
    configPath: path,
    store: 'required',
    logLevel: 'silent',
    clock: new ManualClock('2026-03-10T12:00:00Z'),
  });
  const server = await buildServer(resources);
  closers.push(async () => {
    await server.close();
    await shutdown(resources);
  });
  return { resources, server };
}

/** The fields these tests read from JSON answers. */
interface Json {
  id: string;
  schedules: Array<{ layers: Array<{ person?: string }> }>;
  shifts: Array<{ person: string }>;
  overrides: Array<{ person: string }>;
  pages: Array<{ id: string }>;
  error: { message: string };
}
const body = (res: { json: () => unknown }): Json => res.json() as Json;

describe('on-call API', () => {
  it('who is on call, shifts, iCal and overrides (operator writes, viewer reads)', async () => {
    const { resources, server } = await serve();
    const viewer = await authHeaders(resources, 'viewer');
    const operator = await authHeaders(resources, 'operator');
    const now = await server.app.inject({ method: 'GET', url: '/api/oncall', headers: viewer });
    expect(now.statusCode).toBe(200);
    expect(body(now).schedules[0]!.layers.map((l) => l.person)).toEqual(['bob', 'alice']);
    const at = await server.app.inject({
      method: 'GET',
      url: '/api/oncall?at=2026-03-03T12:00:00Z',
      headers: viewer,
    });
    expect(body(at).schedules[0]!.layers[0]!.person).toBe('alice');
    const stalls = await server.app.inject({ method: 'GET', url: '/api/oncall/stalls', headers: viewer });
    expect(stalls.statusCode).toBe(200);
    expect(stalls.json()).toEqual({ stalls: [] });
    const badLimit = await server.app.inject({
      method: 'GET',
      url: '/api/oncall/stalls?limit=0',
      headers: viewer,
    });
    expect(badLimit.statusCode).toBe(400);
    const badAt = await server.app.inject({ method: 'GET', url: '/api/oncall?at=tuesday', headers: viewer });
    expect(badAt.statusCode).toBe(400);

    const shifts = await server.app.inject({
      method: 'GET',
      url: '/api/oncall/schedules/game/shifts?from=2026-03-09T00:00:00Z&to=2026-03-17T00:00:00Z&layer=primary',
      headers: viewer,
    });
    expect(shifts.statusCode).toBe(200);
    expect(body(shifts).shifts.map((s) => s.person)).toEqual(['alice', 'bob', 'alice']);
    const unknown = await server.app.inject({
      method: 'GET',
      url: '/api/oncall/schedules/nope/shifts',
      headers: viewer,
    });
    expect(unknown.statusCode).toBe(404);

    const ics = await server.app.inject({
      method: 'GET',
      url: '/api/oncall/schedules/game.ics',
      headers: viewer,
    });
    expect(ics.statusCode).toBe(200);
    expect(ics.headers['content-type']).toMatch(/^text\/calendar/);
    expect(ics.body).toMatch(/DTSTART:\d{8}T\d{6}Z/);

    const override = {
      schedule: 'game',
      person: 'dave',
      from: '2026-03-10T11:00:00Z',
      to: '2026-03-10T20:00:00Z',
    };
    const asViewer = await server.app.inject({
      method: 'POST',
      url: '/api/oncall/overrides',
      headers: viewer,
      payload: override,
    });
    expect(asViewer.statusCode).toBe(403);
    const created = await server.app.inject({
      method: 'POST',
      url: '/api/oncall/overrides',
      headers: operator,
      payload: override,
    });
    expect(created.statusCode).toBe(201);
    const overlap = await server.app.inject({
      method: 'POST',
      url: '/api/oncall/overrides',
      headers: operator,
      payload: { ...override, person: 'carol' },
    });
    expect(overlap.statusCode).toBe(409);
    expect(body(overlap).error.message).toContain(`overlaps override ${body(created).id}`);
    const backwards = await server.app.inject({
      method: 'POST',
      url: '/api/oncall/overrides',
      headers: operator,
      payload: { ...override, from: override.to, to: override.from },
    });
    expect(backwards.statusCode).toBe(400);
    const list = await server.app.inject({ method: 'GET', url: '/api/oncall/overrides', headers: viewer });
    expect(body(list).overrides.map((o) => o.person)).toEqual(['dave']);
    const removed = await server.app.inject({
      method: 'DELETE',
      url: `/api/oncall/overrides/${body(created).id}`,
      headers: operator,
    });
    expect(removed.statusCode).toBe(200);
  });

  it('pages, shows deliveries, acknowledges and resolves; unknown page 404; bad token 401', async () => {
    const { resources, server } = await serve();
    const responder = await authHeaders(resources, 'responder');
    const viewer = await authHeaders(resources, 'viewer');
    const payload = { targets: [{ person: 'dave' }], subject: 'Shard 3 lagging', severity: 'P2' };
    expect(
      (await server.app.inject({ method: 'POST', url: '/api/pages', headers: viewer, payload })).statusCode,
    ).toBe(403);
    const created = await server.app.inject({
      method: 'POST',
      url: '/api/pages',
      headers: responder,
      payload,
    });
    expect(created.statusCode).toBe(201);
    const page = body(created);
    expect(page).toMatchObject({ status: 'triggered', severity: 'P2', subject: 'Shard 3 lagging' });
    const bad = await server.app.inject({
      method: 'POST',
      url: '/api/pages',
      headers: responder,
      payload: { targets: [{ person: 'zed' }], subject: 'x' },
    });
    expect(bad.statusCode).toBe(400);
    expect(body(bad).error.message).toContain('unknown person "zed"');

    const list = await server.app.inject({
      method: 'GET',
      url: '/api/pages?status=triggered',
      headers: viewer,
    });
    expect(body(list).pages.map((p) => p.id)).toEqual([page.id]);
    const detail = await server.app.inject({ method: 'GET', url: `/api/pages/${page.id}`, headers: viewer });
    expect(detail.statusCode).toBe(200);
    expect(body(detail)).toMatchObject({ id: page.id, targets: [{ person: 'dave' }], deliveries: [] });

    const ack = await server.app.inject({
      method: 'POST',
      url: `/api/pages/${page.id}/ack`,
      headers: responder,
    });
    expect(body(ack)).toMatchObject({ changed: true, page: { status: 'acknowledged' } });
    const resolve = await server.app.inject({
      method: 'POST',
      url: `/api/pages/${page.id}/resolve`,
      headers: responder,
    });
    expect(body(resolve)).toMatchObject({ changed: true, page: { status: 'resolved' } });

    const missing = await server.app.inject({ method: 'GET', url: '/api/pages/pg-nope', headers: viewer });
    expect(missing.statusCode).toBe(404);
    const missingAck = await server.app.inject({
      method: 'POST',
      url: '/api/pages/pg-nope/ack',
      headers: responder,
    });
    expect(missingAck.statusCode).toBe(404);
    const badToken = await server.app.inject({
      method: 'GET',
      url: '/api/pages',
      headers: bearer('gops_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'),
    });
    expect(badToken.statusCode).toBe(401);
  });

  it('signed acknowledge links: GET shows a page (escaped) and never acknowledges, POST does; forged or expired → 403', async () => {
    const { resources, server } = await serve();
    const responder = await authHeaders(resources, 'responder');
    const created = await server.app.inject({
      method: 'POST',
      url: '/api/pages',
      headers: responder,
      payload: {
        targets: [{ person: 'bob' }],
        subject: '<script>alert(1)</script> raid down',
        severity: 'P1',
      },
    });
    const id = body(created).id;
    const { openOps } = await import('../../app/ops.ts');
    const oncall = (await openOps(resources)).oncall;
    const link = await oncall.ackLink(id, 'bob');
    expect(link).toMatch(/^https:\/\/gameops\.example\.com\/api\/ack\//);
    const url = new URL(link!).pathname;

    const shown = await server.app.inject({ method: 'GET', url });
    expect(shown.statusCode).toBe(200);
    expect(shown.headers['content-type']).toMatch(/^text\/html/);
    expect(shown.body).toContain('<form method="post">');
    expect(shown.body).toContain('Acknowledge as Bob');
    expect(shown.body).not.toContain('<script>');
    expect(shown.body).toContain('&#60;script&#62;');
    expect((await oncall.pageDetail(id)).status).toBe('triggered');

    // A page elsewhere posting to the link (a form or a no-cors fetch) is refused by the origin guard, as
    // the link's own HTML page (not a 500 because the JSON error does not match the route's schema).
    for (const headers of [{ origin: 'http://evil.example' }, { 'sec-fetch-site': 'cross-site' }]) {
      const crossSite = await server.app.inject({ method: 'POST', url, headers });
      expect(crossSite.statusCode).toBe(403);
      expect(crossSite.headers['content-type']).toMatch(/^text\/html/);
      expect(crossSite.body).toContain('Cannot acknowledge');
      expect(crossSite.body).toMatch(/may not change anything/);
    }
    expect((await oncall.pageDetail(id)).status).toBe('triggered');

    // The confirmation page's own form: same origin, as a browser sends it.
    const done = await server.app.inject({
      method: 'POST',
      url,
      headers: {
        host: '127.0.0.1:4870',
        origin: 'http://127.0.0.1:4870',
        'sec-fetch-site': 'same-origin',
        'content-type': 'application/x-www-form-urlencoded',
      },
      payload: '',
    });
    expect(done.statusCode).toBe(200);
    expect(done.body).toContain('acknowledged as bob');
    expect(await oncall.pageDetail(id)).toMatchObject({
      status: 'acknowledged',
      acknowledgedBy: 'Bob',
    });
    const again = await server.app.inject({ method: 'POST', url });
    expect(again.statusCode).toBe(200);
    expect(again.body).toContain('Already acknowledged');

    const forged = await server.app.inject({ method: 'POST', url: `${url.slice(0, -3)}xyz` });
    expect(forged.statusCode).toBe(403);
    expect(forged.body).toContain('not valid');
    (resources.clock as ManualClock).advance(25 * 3_600_000);
    const expired = await server.app.inject({ method: 'GET', url });
    expect(expired.statusCode).toBe(403);
    expect(expired.body).toContain('expired');
    const audit = await resources.store!.audit.list({ action: 'oncall.page.acknowledge' });
    expect(audit.map((r) => r.actor.id)).toEqual(['ack-link:bob']);
  });
});
