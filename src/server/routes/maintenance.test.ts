import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authHeaders } from '../../../test/support/auth.ts';
import { bootstrapIn } from '../../../test/support/backups.ts';
import { shutdown, type Resources } from '../../app/index.ts';
import { buildServer, type GameopsServer } from '../index.ts';

describe('maintenance API', () => {
  let dir: string;
  let resources: Resources;
  let server: GameopsServer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gameops-maintenance-api-'));
    resources = await bootstrapIn(dir, ['maintenance: { timezone: Asia/Seoul }'], { logLevel: 'silent' });
    server = await buildServer(resources);
  });

  afterAll(async () => {
    await server?.close();
    if (resources) await shutdown(resources);
    rmSync(dir, { recursive: true, force: true });
  });

  async function call(method: 'GET' | 'POST', url: string, role?: 'viewer' | 'operator', body?: unknown) {
    return server.app.inject({
      method,
      url,
      ...(role ? { headers: await authHeaders(resources, role) } : {}),
      ...(body !== undefined ? { payload: body as Record<string, unknown> } : {}),
    });
  }

  const span = { startsAt: '2099-12-03 04:00', endsAt: '2099-12-03 06:00' };

  it('reads need viewer, planning and cancelling operator', async () => {
    expect((await call('GET', '/api/maintenance/windows')).statusCode).toBe(401);
    const list = await call('GET', '/api/maintenance/windows', 'viewer');
    expect(list.statusCode).toBe(200);
    expect(list.json()).toEqual({ windows: [] });
    expect((await call('POST', '/api/maintenance/windows', 'viewer', span)).statusCode).toBe(403);
    expect(
      (
        await call('POST', '/api/maintenance/windows/mw-20991202T1900Z-abcdef/cancel', 'viewer', {
          reason: 'x',
        })
      ).statusCode,
    ).toBe(403);
  });

  it('a dry run answers the steps, the notices and the player-minutes estimate, and records nothing', async () => {
    const res = await call('POST', '/api/maintenance/windows', 'operator', { ...span, dryRun: true });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json<{
      stored: boolean;
      window: { startsAt: string; endsAt: string; state: string };
      estimate: { playerMinutes: number; durationMinutes: number; summary: string; notes: string[] };
      plan: { runbook: string; steps: Array<{ id: string; effect?: string }> };
      notices: Array<{ key: string; at: string }>;
    }>();
    expect(body.stored).toBe(false);
    expect(body.window).toMatchObject({
      startsAt: '2099-12-02T19:00:00.000Z',
      endsAt: '2099-12-02T21:00:00.000Z',
    });
    expect(body.estimate).toMatchObject({ durationMinutes: 120, playerMinutes: 0 });
    expect(body.estimate.notes).toContain('players online now unknown: no platform is configured');
    expect(body.plan.runbook).toBe('maintenance');
    expect(body.plan.steps.some((s) => s.effect === 'mutating')).toBe(true);
    expect(body.notices.map((n) => n.key)).toEqual(['T-24h', 'T-60m', 'T-10m', 'T-1m']);
    expect((await call('GET', '/api/maintenance/windows', 'viewer')).json()).toEqual({ windows: [] });
  });

  it('plans, shows, refuses an overlap (409 naming it) and bad input (400 naming the field), cancels', async () => {
    const res = await call('POST', '/api/maintenance/windows', 'operator', {
      ...span,
      message: 'Back at 06:00',
    });
    expect(res.statusCode, res.body).toBe(201);
    const { window } = res.json<{ window: { id: string } }>();
    expect(res.headers.location).toBe(`/api/maintenance/windows/${window.id}`);
    const shown = await call('GET', `/api/maintenance/windows/${window.id}`, 'viewer');
    const detail = shown.json<{
      window: { id: string; state: string; createdBy: string };
      notices: unknown[];
    }>();
    expect(detail.window).toMatchObject({ id: window.id, state: 'scheduled' });
    expect(detail.window.createdBy).toMatch(/^test-operator/);
    expect(detail.notices).toEqual([]);

    const overlap = await call('POST', '/api/maintenance/windows', 'operator', {
      startsAt: '2099-12-02T20:00:00Z',
      endsAt: '2099-12-02T22:00:00Z',
      dryRun: true,
    });
    expect(overlap.statusCode).toBe(409);
    expect(overlap.json<{ error: { message: string } }>().error.message).toContain(
      `overlaps maintenance window ${window.id}`,
    );

    const bad: Array<[Record<string, unknown>, string]> = [
      [{ startsAt: '2020-01-01 04:00', endsAt: '2020-01-01 05:00' }, 'start: '],
      [{ ...span, endsAt: '2099-12-03 03:00' }, 'end: '],
      [{ ...span, tasks: ['update'] }, 'version: the update task needs a version'],
      [{ ...span, tasks: ['reboot'] }, 'tasks'],
    ];
    for (const [payload, message] of bad) {
      const r = await call('POST', '/api/maintenance/windows', 'operator', { ...payload, dryRun: true });
      expect(r.statusCode, JSON.stringify(payload)).toBe(400);
      expect(r.json<{ error: { message: string } }>().error.message).toContain(message);
    }
    expect((await call('GET', '/api/maintenance/windows/../../etc', 'viewer')).statusCode).toBe(404);
    expect((await call('GET', '/api/maintenance/windows/mw-bad', 'viewer')).statusCode).toBe(400);
    expect(
      (await call('GET', '/api/maintenance/windows/mw-20991202T1900Z-ffffff', 'viewer')).statusCode,
    ).toBe(404);

    const cancelled = await call('POST', `/api/maintenance/windows/${window.id}/cancel`, 'operator', {
      reason: 'patch not ready',
    });
    expect(cancelled.statusCode, cancelled.body).toBe(200);
    const after = cancelled.json<{ window: { state: string; reason: string } }>().window;
    expect(after.state).toBe('cancelled');
    expect(after.reason).toMatch(/^cancelled by test-operator(-\d+)?: patch not ready$/);
    expect(
      (await call('POST', `/api/maintenance/windows/${window.id}/cancel`, 'operator', { reason: 'x' }))
        .statusCode,
    ).toBe(409);
    expect(
      (await call('POST', `/api/maintenance/windows/${window.id}/cancel`, 'operator', {})).statusCode,
    ).toBe(400);
  });

  it('is described in the OpenAPI document', async () => {
    const doc = (await call('GET', '/api/openapi.json')).json<{ paths: Record<string, unknown> }>();
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/api/maintenance/windows',
        '/api/maintenance/windows/{id}',
        '/api/maintenance/windows/{id}/cancel',
      ]),
    );
  });
});
