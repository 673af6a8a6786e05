import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { authHeaders } from '../../../test/support/auth.ts';
import { bootstrap, shutdown } from '../../app/index.ts';
import { ManualClock } from '../../core/index.ts';
import { buildServer } from '../index.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function serverWith(runbooks: string) {
  const dir = mkdtempSync(join(tmpdir(), 'gameops-schedules-api-'));
  dirs.push(dir);
  const path = join(dir, 'gameops.yaml');
  writeFileSync(
    path,
    `service: { name: test-game, environment: test }\ndatabase: { dataDir: ${join(dir, 'data')} }\n${runbooks}`,
  );
  const resources = await bootstrap({
    configPath: path,
    store: 'required',
    logLevel: 'silent',
    clock: new ManualClock('2026-01-01T12:00:00Z'),
  });
  const server = await buildServer(resources);
  return {
    resources,
    server,
    close: async () => {
      await server.close();
      await shutdown(resources);
    },
  };
}

describe('GET /api/schedules', () => {
  it('lists schedules with time zone, next occurrences and history, to a viewer; not without a token', async () => {
    const { resources, server, close } = await serverWith(
      'runbooks: { timezone: Asia/Seoul, schedules: [{ name: weekly, runbook: daily-check, cron: "0 6 * * MON", timezone: Europe/Berlin }] }\n',
    );
    try {
      const scope = { service: 'test-game', environment: 'test' };
      const missed = new Date('2026-01-01T00:00:00Z');
      await resources.store?.scheduleFires.recordMissed(scope, 'daily-check', [missed], missed);

      const anonymous = await server.app.inject({ method: 'GET', url: '/api/schedules' });
      expect(anonymous.statusCode).toBe(401);

      const res = await server.app.inject({
        method: 'GET',
        url: '/api/schedules',
        headers: await authHeaders(resources, 'viewer'),
      });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({
        schedules: [
          {
            name: 'weekly',
            runbook: 'daily-check',
            cron: '0 6 * * MON',
            timezone: 'Europe/Berlin',
            enabled: true,
            origin: 'config',
            graceMs: 3_600_000,
            next: ['2026-01-05T05:00:00.000Z', '2026-01-12T05:00:00.000Z', '2026-01-19T05:00:00.000Z'],
            missedSinceLastFired: 0,
          },
          {
            name: 'daily-check',
            runbook: 'daily-check',
            cron: '0 9 * * *',
            timezone: 'Asia/Seoul',
            enabled: true,
            origin: 'default',
            graceMs: 3_600_000,
            next: ['2026-01-02T00:00:00.000Z', '2026-01-03T00:00:00.000Z', '2026-01-04T00:00:00.000Z'],
            lastMissed: { occurrence: '2026-01-01T00:00:00.000Z', recordedAt: '2026-01-01T00:00:00.000Z' },
            missedSinceLastFired: 1,
          },
        ],
      });
    } finally {
      await close();
    }
  });

  it('a schedule with a bad time zone is a 400 naming the field', async () => {
    const { resources, server, close } = await serverWith(
      'runbooks: { schedules: [{ name: x, runbook: daily-check, cron: "0 9 * * *", timezone: Mars/Base }] }\n',
    );
    try {
      const res = await server.app.inject({
        method: 'GET',
        url: '/api/schedules',
        headers: await authHeaders(resources, 'viewer'),
      });
      expect(res.statusCode).toBe(400);
      expect(res.json<{ error: { message: string } }>().error.message).toContain(
        'runbooks.schedules[0].timezone: "Mars/Base" is not a known IANA time zone',
      );
    } finally {
      await close();
    }
  });
});
