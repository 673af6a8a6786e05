import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock, UnavailableError } from '../core/index.ts';
import { bootstrap, shutdown, type Resources } from './index.ts';
import { closeOps, openOps, workOps, type Ops } from './ops.ts';

const opened: Resources[] = [];
afterEach(async () => {
  for (const r of opened.splice(0)) await shutdown(r);
});

async function resources(store: 'required' | 'none', extra = ''): Promise<Resources> {
  const dir = mkdtempSync(join(tmpdir(), 'gameops-app-ops-'));
  const path = join(dir, 'gameops.yaml');
  writeFileSync(
    path,
    `service: { name: app-ops, environment: test }\ndatabase: { dataDir: ${join(dir, 'data')} }\n${extra}`,
  );
  const r = await bootstrap({
    configPath: path,
    store,
    logLevel: 'silent',
    clock: new ManualClock('2026-03-02T09:00:00Z'),
  });
  opened.push(r);
  return r;
}

/** An Ops whose tick records its calls and takes `tickMs`. */
function fakeOps(tickMs: number): { ops: Ops; ticks: Date[]; overlaps: () => number } {
  const ticks: Date[] = [];
  let running = 0;
  let overlaps = 0;
  const ops = {
    tick: async (now: Date) => {
      running++;
      if (running > 1) overlaps++;
      ticks.push(now);
      await delay(tickMs);
      running--;
    },
  } as unknown as Ops;
  return { ops, ticks, overlaps: () => overlaps };
}

describe('workOps', () => {
  it('ticks with the clock of the resources, never two ticks at once, and stops promptly on abort', async () => {
    const r = await resources('none');
    const fake = fakeOps(30);
    r.ops = fake.ops;
    const controller = new AbortController();
    const working = workOps(r, controller.signal, { everyMs: 10 });
    await delay(200);
    const started = performance.now();
    controller.abort();
    await working;
    // At most the tick in flight is finished.
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(fake.ticks.length).toBeGreaterThan(2);
    expect(fake.overlaps()).toBe(0);
    expect(fake.ticks.every((t) => t.toISOString() === '2026-03-02T09:00:00.000Z')).toBe(true);
    const after = fake.ticks.length;
    await delay(50);
    expect(fake.ticks.length).toBe(after);
  });

  it('waits about `everyMs` between tick starts when ticks are quick', async () => {
    const r = await resources('none');
    const fake = fakeOps(0);
    r.ops = fake.ops;
    const controller = new AbortController();
    const working = workOps(r, controller.signal, { everyMs: 100 });
    await delay(350);
    controller.abort();
    await working;
    // About 4 (at 0, 100, 200, 300 ms); never a busy loop.
    expect(fake.ticks.length).toBeGreaterThanOrEqual(2);
    expect(fake.ticks.length).toBeLessThanOrEqual(6);
  });

  it('without a store, logs and returns (the server goes on without incident response)', async () => {
    const r = await resources('none');
    const controller = new AbortController();
    await workOps(r, controller.signal, { everyMs: 10 });
    await expect(openOps(r)).rejects.toThrow(UnavailableError);
    await expect(openOps(r)).rejects.toThrow(/need the store/);
  });
});

describe('openOps', () => {
  it('opens the services once for callers that arrive together, and closeOps forgets them', async () => {
    const r = await resources('required');
    const [a, b] = await Promise.all([openOps(r), openOps(r)]);
    expect(a).toBe(b);
    expect(r.ops).toBe(a);
    await closeOps(r);
    expect(r.ops).toBeUndefined();
    expect(r.opsOpening).toBeUndefined();
  });

  it('ticks alerts, on-call and incidents in that order; one failing does not stop the others', async () => {
    const r = await resources('required');
    const ops = await openOps(r);
    const calls: string[] = [];
    ops.alerts.tick = async () => {
      calls.push('alerts');
      throw new Error('alert store unreachable');
    };
    ops.oncall.tick = async () => {
      calls.push('oncall');
      throw new Error('smtp down');
    };
    ops.incidents.tick = async (now) => {
      calls.push(`incidents@${now.toISOString()}`);
    };
    const errors: unknown[] = [];
    r.log.error = (obj: unknown) => {
      errors.push(obj);
    };
    await ops.tick(new Date('2026-03-02T09:00:05Z'));
    expect(calls).toEqual(['alerts', 'oncall', 'incidents@2026-03-02T09:00:05.000Z']);
    expect(errors).toEqual([
      expect.objectContaining({ duty: 'alerts', err: 'alert store unreachable' }),
      expect.objectContaining({ duty: 'oncall', err: 'smtp down' }),
    ]);
  });

  it('opens on examples/gameops.yaml: its routes, windows, schedules and policies are all accepted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-app-ops-example-'));
    const secrets = join(dir, '.gameops/stack/secrets');
    mkdirSync(secrets, { recursive: true });
    for (const name of ['mysql-password', 'redis-password', 'game-mysql-password', 'game-ops-token'])
      writeFileSync(join(secrets, name), 'a-secret-of-32-characters-or-so!!');
    const r = await bootstrap({
      configPath: join(import.meta.dirname, '../../examples/gameops.yaml'),
      cwd: dir,
      store: 'required',
      logLevel: 'silent',
      clock: new ManualClock('2026-03-04T07:00:00Z'),
    });
    opened.push(r);
    const ops = await openOps(r);
    // Wednesday 16:00 in Seoul: after the weekly maintenance window (Wednesdays 06:00 for 2h).
    expect(await ops.alerts.active({ service: 'example-game' }, new Date('2026-03-04T07:00:00Z'))).toBe(
      undefined,
    );
    // Wednesday 06:30 in Seoul (Tuesday 21:30 UTC): inside it.
    expect(
      (await ops.alerts.active({ service: 'example-game' }, new Date('2026-03-03T21:30:00Z')))?.name,
    ).toBe('weekly-maintenance');
    await ops.tick(r.clock.now());
  });
});
