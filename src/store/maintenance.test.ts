import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { storeBackends, type Cleanups } from '../../test/support/store-places.ts';
import { ConflictError, ManualClock, NotFoundError } from '../core/index.ts';
import type { MaintenanceWindow } from '../maintenance/types.ts';
import type { Actor } from '../runbooks/model.ts';
import { openStore, type Store, type StoreOptions } from './index.ts';

const cleanups: Cleanups = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const alice: Actor = { id: 'token:abc', name: 'alice', role: 'operator', kind: 'token' };
const scope = { service: 'game', environment: 'production' };

function window(id: string, startsAt: string, endsAt: string, extra: Partial<MaintenanceWindow> = {}) {
  return {
    id,
    name: 'maintenance',
    origin: 'adhoc',
    startsAt,
    endsAt,
    timezone: 'Asia/Seoul',
    tasks: ['db', 'logs'],
    hold: false,
    state: 'scheduled',
    createdBy: 'alice',
    createdAt: '',
    updatedAt: '',
    ...extra,
  } satisfies MaintenanceWindow;
}

describe.each(storeBackends(cleanups))('maintenance windows ($backend)', ({ backend, place }) => {
  const clock = new ManualClock(new Date('2026-12-01T00:00:00Z'));
  const open = async (options: StoreOptions) => {
    const store = await openStore({ ...options, clock });
    stores.push(store);
    return store;
  };

  it('records a window, reads it back, and refuses an overlapping one naming it and its times', async () => {
    const store = await open(await place());
    const a = await store.maintenance.create(
      scope,
      window('mw-20261203T0400Z-aaaaaa', '2026-12-03T04:00:00.000Z', '2026-12-03T06:00:00.000Z', {
        version: '1.2.0',
        tasks: ['db', 'update'],
        message: 'Back at 06:00',
        hold: true,
      }),
      alice,
    );
    expect(a).toMatchObject({
      id: 'mw-20261203T0400Z-aaaaaa',
      tasks: ['db', 'update'],
      version: '1.2.0',
      hold: true,
      state: 'scheduled',
      createdAt: '2026-12-01T00:00:00.000Z',
    });
    expect(await store.maintenance.get(scope, a.id)).toEqual(a);
    // Another service's scope never sees it.
    expect(await store.maintenance.get({ ...scope, environment: 'staging' }, a.id)).toBeUndefined();

    const err = await store.maintenance
      .create(
        scope,
        window('mw-20261203T0500Z-bbbbbb', '2026-12-03T05:00:00.000Z', '2026-12-03T07:00:00.000Z'),
        alice,
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as Error).message).toContain(
      'overlaps window mw-20261203T0400Z-aaaaaa ("maintenance", scheduled, 2026-12-03T04:00:00.000Z–2026-12-03T06:00:00.000Z)',
    );
    // Touching ends do not overlap; another scope may overlap.
    await store.maintenance.create(
      scope,
      window('mw-20261203T0600Z-cccccc', '2026-12-03T06:00:00.000Z', '2026-12-03T07:00:00.000Z'),
      alice,
    );
    await store.maintenance.create(
      { ...scope, environment: 'staging' },
      window('mw-20261203T0500Z-dddddd', '2026-12-03T05:00:00.000Z', '2026-12-03T07:00:00.000Z'),
      alice,
    );
    expect((await store.maintenance.list(scope)).map((w) => w.id)).toEqual([
      'mw-20261203T0400Z-aaaaaa',
      'mw-20261203T0600Z-cccccc',
    ]);
    const audit = await store.audit.list({ limit: 10 });
    expect(audit.filter((e) => e.action === 'maintenance.plan').map((e) => e.target)).toContain(
      'maintenance:mw-20261203T0400Z-aaaaaa',
    );
  });

  it('two concurrent plans of overlapping spans (two store connections): exactly one is recorded', async () => {
    const options = await place();
    const one = await open(options);
    // SQLite's data directory is one process's: the second plan comes through the same store there.
    const two = backend === 'postgres' ? await open(options) : one;
    const results = await Promise.allSettled(
      [one, two, one, two].map((store, i) =>
        store.maintenance.create(
          scope,
          window(`mw-20261203T0400Z-${i}aaaaa`, `2026-12-03T04:0${i}:00.000Z`, '2026-12-03T06:00:00.000Z'),
          alice,
        ),
      ),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConflictError);
    expect(await one.maintenance.list(scope)).toHaveLength(1);
  });

  it('transitions only from the states given (one of two concurrent wins); a cancelled window frees its span', async () => {
    const store = await open(await place());
    const w = await store.maintenance.create(
      scope,
      window('mw-20261203T0400Z-aaaaaa', '2026-12-03T04:00:00.000Z', '2026-12-03T06:00:00.000Z'),
      alice,
    );
    const [first, second] = await Promise.all([
      store.maintenance.transition(
        scope,
        w.id,
        ['scheduled'],
        { state: 'running', runId: 'r1' },
        alice,
        'maintenance.start',
      ),
      store.maintenance.transition(
        scope,
        w.id,
        ['scheduled'],
        { state: 'running', runId: 'r2' },
        alice,
        'maintenance.start',
      ),
    ]);
    expect([first?.runId, second?.runId].filter(Boolean)).toHaveLength(1);
    const cancelled = await store.maintenance.transition(
      scope,
      w.id,
      ['scheduled', 'running'],
      { state: 'cancelled', reason: 'postponed' },
      alice,
      'maintenance.cancel',
    );
    expect(cancelled).toMatchObject({ state: 'cancelled', reason: 'postponed' });
    expect(
      await store.maintenance.transition(scope, w.id, ['scheduled'], { state: 'running' }, alice, 'x'),
    ).toBeUndefined();
    await expect(
      store.maintenance.transition(scope, 'mw-20991203T0400Z-nonexx', ['scheduled'], {}, alice, 'x'),
    ).rejects.toBeInstanceOf(NotFoundError);
    // Its span is free again.
    await store.maintenance.create(
      scope,
      window('mw-20261203T0400Z-bbbbbb', '2026-12-03T04:00:00.000Z', '2026-12-03T06:00:00.000Z'),
      alice,
    );
    expect(
      (await store.maintenance.list(scope, { states: ['scheduled', 'running'] })).map((x) => x.id),
    ).toEqual(['mw-20261203T0400Z-bbbbbb']);
  });

  it('claims a notice exactly once, also from a second connection and after a restart', async () => {
    const options = await place();
    const store = await open(options);
    const due = new Date('2026-12-02T04:00:00Z');
    const claims = await Promise.all(
      [1, 2, 3].map(() => store.maintenance.claimNotice(scope, 'mw-x', 'T-24h', due, { retry: true })),
    );
    expect(claims.filter((c) => c.claimed)).toHaveLength(1);
    await store.maintenance.finishNotice(scope, 'mw-x', 'T-24h', 'partial', { players: 3 });
    if (backend === 'postgres') {
      const other = await open(options);
      expect((await other.maintenance.claimNotice(scope, 'mw-x', 'T-24h', due)).claimed).toBe(false);
    }
    await store.close();
    const reopened = await open(options);
    expect(
      (await reopened.maintenance.claimNotice(scope, 'mw-x', 'T-24h', due, { retry: true })).claimed,
    ).toBe(false);
    expect(
      (await reopened.maintenance.claimNotice(scope, 'mw-x', 'T-60m', new Date('2026-12-03T03:00:00Z')))
        .claimed,
    ).toBe(true);
    expect(await reopened.maintenance.notices(scope, 'mw-x')).toMatchObject([
      {
        key: 'T-24h',
        status: 'partial',
        detail: { players: 3 },
        dueAt: '2026-12-02T04:00:00.000Z',
        attempts: 1,
      },
      { key: 'T-60m', status: 'sending', detail: null },
    ]);
  });

  it('claims a failed notice again after 30 s and an abandoned one after 2 min, one claimer per attempt', async () => {
    const store = await open(await place());
    clock.set('2026-12-01T00:00:00Z');
    const due = new Date('2026-12-01T00:00:00Z');
    expect((await store.maintenance.claimNotice(scope, 'mw-r', 'T-10m', due)).claimed).toBe(true);
    await store.maintenance.finishNotice(scope, 'mw-r', 'T-10m', 'failed', { players: { error: 'down' } });
    // Too soon, or not asked to retry: not claimed.
    expect((await store.maintenance.claimNotice(scope, 'mw-r', 'T-10m', due, { retry: true })).claimed).toBe(
      false,
    );
    clock.advance(31_000);
    expect((await store.maintenance.claimNotice(scope, 'mw-r', 'T-10m', due)).claimed).toBe(false);
    const retries = await Promise.all(
      [1, 2, 3].map(() => store.maintenance.claimNotice(scope, 'mw-r', 'T-10m', due, { retry: true })),
    );
    expect(retries.filter((c) => c.claimed)).toEqual([{ claimed: true, retryOf: 'failed', attempts: 2 }]);
    // Left sending (the process died): claimed again only once it is 2 minutes old.
    clock.advance(60_000);
    expect((await store.maintenance.claimNotice(scope, 'mw-r', 'T-10m', due, { retry: true })).claimed).toBe(
      false,
    );
    clock.advance(61_000);
    expect(await store.maintenance.claimNotice(scope, 'mw-r', 'T-10m', due, { retry: true })).toEqual({
      claimed: true,
      retryOf: 'stale',
      attempts: 3,
    });
    // Another scope's notice of the same window id is its own.
    const other = { service: 'game', environment: 'staging' };
    expect((await store.maintenance.claimNotice(other, 'mw-r', 'T-10m', due)).claimed).toBe(true);
    expect((await store.maintenance.notices(other, 'mw-r')).map((n) => n.attempts)).toEqual([1]);
  });

  it('keeps window ids per scope (two environments, one recurring entry) and compares spans from the lead time', async () => {
    const store = await open(await place());
    const staging = { service: 'game', environment: 'staging' };
    const w = window('mw-20261210T0400Z-weekly', '2026-12-10T04:00:00.000Z', '2026-12-10T06:00:00.000Z', {
      origin: 'recurring',
    });
    await store.maintenance.create(scope, w, alice);
    await store.maintenance.create(staging, w, alice);
    const again = await store.maintenance.create(scope, w, alice).catch((e: unknown) => e as ConflictError);
    expect(again).toBeInstanceOf(ConflictError);
    expect((again as ConflictError).details).toMatchObject({ exists: true, startsAt: w.startsAt });
    expect(
      await store.maintenance.transition(
        staging,
        w.id,
        ['scheduled'],
        { state: 'cancelled' },
        alice,
        'maintenance.cancel',
      ),
    ).toMatchObject({ state: 'cancelled' });
    expect((await store.maintenance.get(scope, w.id))?.state).toBe('scheduled');
    // Back to back: its run (an hour before) would overlap the window before it.
    const next = window('mw-20261210T0630Z-aaaaaa', '2026-12-10T06:30:00.000Z', '2026-12-10T07:00:00.000Z');
    await expect(store.maintenance.create(scope, next, alice, { leadMs: 3_600_000 })).rejects.toThrow(
      /overlaps window mw-20261210T0400Z-weekly/,
    );
    expect((await store.maintenance.create(scope, next, alice, { leadMs: 1_800_000 })).id).toBe(next.id);
  });
});
