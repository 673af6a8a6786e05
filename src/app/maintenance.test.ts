import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bootstrapIn } from '../../test/support/backups.ts';
import { ManualClock } from '../core/index.ts';
import type { Actor } from '../runbooks/model.ts';
import type { ResolvedSchedule } from '../schedules/resolve.ts';
import { shutdown } from './index.ts';
import { maintenanceHoldOff, openMaintenance, workMaintenance } from './maintenance.ts';
import { openRunbooks } from './runbooks.ts';
import { createCatalog } from '../runbooks/actions/index.ts';
import { createRunbookServices, stepContext } from '../runbooks/actions/test-support.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const alice: Actor = { id: 'local:alice', name: 'alice', role: 'admin', kind: 'local' };
const schedule = (runbook: string) => ({ name: runbook, runbook }) as ResolvedSchedule;

describe('maintenance in the process (serve wiring)', () => {
  it("holds off maintenance.holdOff's runbooks while a window is open; serve's loop starts the real maintenance run", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-maintenance-app-'));
    dirs.push(dir);
    const clock = new ManualClock('2099-12-02T18:30:00Z');
    const resources = await bootstrapIn(dir, ['maintenance: { timezone: Asia/Seoul, leadTime: 60m }'], {
      clock,
      logLevel: 'silent',
    });
    try {
      const service = await openMaintenance(resources);
      expect(await openMaintenance(resources)).toBe(service);
      const { window } = await service.plan(
        { startsAt: '2099-12-03 04:00', endsAt: '2099-12-03 05:00' },
        alice,
      );
      const holdOff = maintenanceHoldOff(resources);
      // From leadTime before the start (the run starts then).
      expect(await holdOff(schedule('backup'), clock.now())).toEqual({
        until: new Date('2099-12-02T20:00:00.000Z'),
        reason: `maintenance window ${window.id}`,
      });
      clock.set('2099-12-02T17:59:00Z');
      expect(await holdOff(schedule('backup'), clock.now())).toBeUndefined();
      clock.set('2099-12-02T18:30:00Z');

      // The loop's first tick (the run is due: leadTime before the start) starts the maintenance run on
      // the real engine, with the window's parameters; the engine's worker is not running here.
      const stop = new AbortController();
      const loop = workMaintenance(resources, stop.signal, { everyMs: 5 });
      for (let i = 0; i < 400 && (await service.get(window.id)).window.state === 'scheduled'; i++)
        await new Promise((resolve) => setTimeout(resolve, 5));
      stop.abort();
      await loop;
      const { window: running } = await service.get(window.id);
      expect(running.reason).toBeUndefined();
      expect(running.state).toBe('running');
      const run = await (await openRunbooks(resources)).get(running.runId!, alice);
      expect(run).toMatchObject({ runbook: 'maintenance', trigger: 'schedule' });
      expect(run.params).toMatchObject({ window: window.id, tasks: ['db', 'logs'], hold: false });

      clock.set('2099-12-02T19:10:00Z');
      expect(await holdOff(schedule('backup'), clock.now())).toEqual({
        until: new Date('2099-12-02T20:00:00.000Z'),
        reason: `maintenance window ${window.id} (running)`,
      });
      expect(await holdOff(schedule('db-maintenance'), clock.now())).toBeDefined();
      // Not listed in maintenance.holdOff: runs as usual.
      expect(await holdOff(schedule('daily-check'), clock.now())).toBeUndefined();
      // Past the planned end while its run has not ended: still held off, a minute at a time.
      clock.set('2099-12-02T20:00:00Z');
      expect(await holdOff(schedule('backup'), clock.now())).toEqual({
        until: new Date('2099-12-02T20:01:00.000Z'),
        reason: `maintenance window ${window.id} (running)`,
      });
      // The run (it changed nothing: no worker ran it) is cancelled by the tick after the end.
      await service.tick(clock.now());
      expect((await openRunbooks(resources).then((r) => r.get(running.runId!, alice))).status).toBe(
        'cancelled',
      );
      expect((await service.get(window.id)).window).toMatchObject({
        state: 'cancelled',
        reason: expect.stringMatching(/^the window ended before its run .* changed anything/) as string,
      });
      expect(await holdOff(schedule('backup'), clock.now())).toBeUndefined();
    } finally {
      await shutdown(resources);
    }
  });

  it("the maintenance run's preflight refuses a window that is no longer scheduled or running (the store, through services)", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-maintenance-app-'));
    dirs.push(dir);
    const clock = new ManualClock('2099-12-02T10:00:00Z');
    const resources = await bootstrapIn(dir, ['maintenance: { timezone: UTC, leadTime: 5m }'], {
      clock,
      logLevel: 'silent',
    });
    const services = createRunbookServices(resources);
    try {
      const service = await openMaintenance(resources);
      const { window } = await service.plan(
        { startsAt: '2099-12-03 04:00', endsAt: '2099-12-03 05:00' },
        alice,
      );
      const preflight = createCatalog().action('maintenance.preflight')!;
      const attempt = () =>
        preflight
          .run(
            preflight.args.parse({
              window: window.id,
              startsAt: window.startsAt,
              endsAt: window.endsAt,
              tasks: [],
            }),
            stepContext(services),
          )
          .then(
            () => '',
            (err: unknown) => (err as Error).message,
          );
      // No platform here: refused for that, not for the window.
      expect(await attempt()).not.toContain(`window ${window.id}`);
      await service.cancel(window.id, alice, 'patch not ready');
      expect(await attempt()).toMatch(
        new RegExp(
          `^maintenance cannot start \\(nothing was changed\\): window ${window.id}: it is cancelled \\(cancelled by alice: patch not ready\\)`,
        ),
      );
    } finally {
      await services.close();
      await shutdown(resources);
    }
  });
});
