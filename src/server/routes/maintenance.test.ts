import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authHeaders } from '../../../test/support/auth.ts';
import { bootstrapIn } from '../../../test/support/backups.ts';
import { shutdown, type Resources } from '../../app/index.ts';
import { openMaintenance } from '../../app/maintenance.ts';
import type { MaintenanceWindow } from '../../maintenance/types.ts';
import { buildServer, type GameopsServer } from '../index.ts';
import { newestWindows } from './maintenance.ts';

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
    expect(list.json()).toEqual({ windows: [], truncated: false });
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
    expect((await call('GET', '/api/maintenance/windows', 'viewer')).json()).toEqual({
      windows: [],
      truncated: false,
    });
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

  it('all=true lists newest first and says when the list was cut; paging reads past a full page', async () => {
    const scope = {
      service: resources.config.service.name,
      environment: resources.config.service.environment,
    };
    const actor = { id: 'local:test', name: 'test', role: 'admin', kind: 'local' } as const;
    const past = (day: string, suffix: string): MaintenanceWindow => ({
      id: `mw-2020${day.replace('-', '')}T0400Z-${suffix}`,
      name: 'maintenance',
      origin: 'adhoc',
      startsAt: `2020-${day}T04:00:00.000Z`,
      endsAt: `2020-${day}T05:00:00.000Z`,
      timezone: 'Asia/Seoul',
      tasks: ['db'],
      hold: false,
      state: 'completed',
      createdBy: 'test',
      createdAt: '2019-12-01T00:00:00.000Z',
      updatedAt: '2019-12-01T00:00:00.000Z',
    });
    for (const w of [past('01-01', 'aaaaaa'), past('01-08', 'bbbbbb'), past('01-15', 'cccccc')])
      await resources.store!.maintenance.create(scope, w, actor);
    const all = (await call('GET', '/api/maintenance/windows?all=true', 'viewer')).json<{
      windows: MaintenanceWindow[];
      truncated: boolean;
    }>();
    expect(all.truncated).toBe(false);
    const starts = all.windows.map((w) => w.startsAt);
    expect(starts).toEqual([...starts].sort().reverse());
    expect(starts.slice(-3)).toEqual([
      '2020-01-15T04:00:00.000Z',
      '2020-01-08T04:00:00.000Z',
      '2020-01-01T04:00:00.000Z',
    ]);
    const cut = (await call('GET', '/api/maintenance/windows?all=true&limit=2', 'viewer')).json<{
      windows: MaintenanceWindow[];
      truncated: boolean;
    }>();
    expect(cut).toEqual({ windows: all.windows.slice(0, 2), truncated: true });

    // Pages of two windows each still read them all, newest first (each page from the last one's start).
    const service = await openMaintenance(resources);
    const paged = await newestWindows((o) => service.list(o), 100, 2);
    expect(paged.truncated).toBe(false);
    expect(paged.windows.map((w) => w.id)).toEqual(all.windows.map((w) => w.id));
    // More windows at one start than a page holds: the paging cannot get past them and says the list was cut.
    await resources.store!.maintenance.create(scope, past('01-15', 'dddddd'), actor);
    expect((await newestWindows((o) => service.list(o), 100, 2)).truncated).toBe(true);
    const bigger = await newestWindows((o) => service.list(o), 100, 3);
    expect(bigger.truncated).toBe(false);
    expect(bigger.windows.map((w) => w.id).slice(-4)).toEqual([
      'mw-20200115T0400Z-dddddd',
      'mw-20200115T0400Z-cccccc',
      'mw-20200108T0400Z-bbbbbb',
      'mw-20200101T0400Z-aaaaaa',
    ]);
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
