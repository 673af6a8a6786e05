import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { storeBackends, type Cleanups } from '../../test/support/store-places.ts';
import { ConflictError, ManualClock } from '../core/index.ts';
import type { Actor } from '../runbooks/model.ts';
import { openStore, type Store } from './index.ts';

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

const backends = storeBackends(cleanups);

function begin(store: Store, id: string, holder = 'host:1') {
  return store.backups.begin({
    id,
    ...scope,
    components: ['mysql', 'files'],
    storage: 'filesystem /tmp/x',
    by: alice,
    holder,
    leaseMs: 60_000,
  });
}

describe.each(backends)('backup catalog ($backend)', ({ place }) => {
  const open = async (clock: ManualClock) => {
    const store = await openStore({ ...(await place()), clock });
    stores.push(store);
    return store;
  };

  it('holds one backup at a time: a second begin is refused naming the running set, never interleaved', async () => {
    const clock = new ManualClock(new Date('2026-11-26T10:00:00Z'));
    const store = await open(clock);
    const first = await begin(store, 'bk-20261126T100000Z-aaaaaa');
    expect(first.state).toBe('running');
    await expect(begin(store, 'bk-20261126T100001Z-bbbbbb', 'host:2')).rejects.toThrow(
      /bk-20261126T100000Z-aaaaaa is running \(held by host:1, lease until 2026-11-26T10:01:00.000Z/,
    );
    const both = await Promise.allSettled([
      store.backups.complete('bk-20261126T100000Z-aaaaaa', 'host:1', {
        sizeBytes: 10,
        objectCount: 2,
        manifestKey: 'bk-20261126T100000Z-aaaaaa/manifest.json',
        manifestSha256: 'a'.repeat(64),
      }),
    ]);
    expect(both[0]?.status).toBe('fulfilled');
    // Released: the next one starts.
    const second = await begin(store, 'bk-20261126T100002Z-cccccc', 'host:2');
    expect(second.state).toBe('running');
    expect((await store.backups.get('bk-20261126T100000Z-aaaaaa'))?.state).toBe('complete');
  });

  it('two begins at the same moment: exactly one wins', async () => {
    const clock = new ManualClock(new Date('2026-11-26T10:00:00Z'));
    const store = await open(clock);
    const results = await Promise.allSettled(
      ['aaaaa1', 'aaaaa2', 'aaaaa3', 'aaaaa4'].map((s, i) =>
        begin(store, `bk-20261126T100000Z-${s}`, `host:${i}`),
      ),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConflictError);
  });

  it('a holder that stopped renewing is taken over; its set is marked failed (abandoned), and it cannot complete', async () => {
    const clock = new ManualClock(new Date('2026-11-26T10:00:00Z'));
    const store = await open(clock);
    await begin(store, 'bk-20261126T100000Z-aaaaaa', 'host:dead');
    clock.advance(61_000);
    await begin(store, 'bk-20261126T100101Z-bbbbbb', 'host:2');
    const dead = await store.backups.get('bk-20261126T100000Z-aaaaaa');
    expect(dead?.state).toBe('failed');
    expect(dead?.error).toMatch(/abandoned.*host:dead/);
    await expect(
      store.backups.complete('bk-20261126T100000Z-aaaaaa', 'host:dead', {
        sizeBytes: 1,
        objectCount: 1,
        manifestKey: 'k',
        manifestSha256: 'a'.repeat(64),
      }),
    ).rejects.toThrow(/lost its lock/);
    expect(await store.backups.renew('bk-20261126T100000Z-aaaaaa', 'host:dead', 60_000)).toBe(false);
    expect(await store.backups.renew('bk-20261126T100101Z-bbbbbb', 'host:2', 60_000, { phase: 'dump' })).toBe(
      true,
    );
    expect((await store.backups.get('bk-20261126T100101Z-bbbbbb'))?.progress).toEqual({ phase: 'dump' });
  });

  it('a failed set keeps its leftovers for prune, releases the lock, and is audited', async () => {
    const clock = new ManualClock(new Date('2026-11-26T10:00:00Z'));
    const store = await open(clock);
    await begin(store, 'bk-20261126T100000Z-aaaaaa');
    await store.backups.noteObjects('bk-20261126T100000Z-aaaaaa', [
      'bk-20261126T100000Z-aaaaaa/mysql/a.zst.age',
    ]);
    const failed = await store.backups.fail('bk-20261126T100000Z-aaaaaa', {
      error: 'storage full',
      leftovers: ['bk-20261126T100000Z-aaaaaa/mysql/a.zst.age'],
    });
    expect(failed).toMatchObject({
      state: 'failed',
      error: 'storage full',
      objects: ['bk-20261126T100000Z-aaaaaa/mysql/a.zst.age'],
    });
    await begin(store, 'bk-20261126T100001Z-bbbbbb');
    await store.backups.markPruned('bk-20261126T100000Z-aaaaaa', alice, [
      'bk-20261126T100000Z-aaaaaa/mysql/a.zst.age',
    ]);
    expect((await store.backups.get('bk-20261126T100000Z-aaaaaa'))?.state).toBe('pruned');
    const actions = (await store.audit.list({ limit: 50 })).map((r) => r.action);
    expect(actions).toEqual(expect.arrayContaining(['backup.start', 'backup.fail', 'backup.prune']));
  });

  it('drills record last verified restorable per component; list is newest first and scoped', async () => {
    const clock = new ManualClock(new Date('2026-11-26T10:00:00Z'));
    const store = await open(clock);
    await begin(store, 'bk-20261126T100000Z-aaaaaa');
    await store.backups.complete('bk-20261126T100000Z-aaaaaa', 'host:1', {
      sizeBytes: 10,
      objectCount: 2,
      manifestKey: 'm',
      manifestSha256: 'a'.repeat(64),
    });
    clock.advance(1000);
    await store.backups.recordVerify('bk-20261126T100000Z-aaaaaa', { ok: true, error: null, by: alice });
    await store.backups.recordDrill('bk-20261126T100000Z-aaaaaa', {
      ok: false,
      report: { checks: 3 },
      restorable: ['mysql'],
      by: alice,
      runId: 'run-1',
    });
    expect(await store.backups.restorable(scope)).toEqual([
      {
        component: 'mysql',
        setId: 'bk-20261126T100000Z-aaaaaa',
        at: '2026-11-26T10:00:01.000Z',
        runId: 'run-1',
      },
    ]);
    clock.advance(1000);
    await begin(store, 'bk-20261126T100002Z-bbbbbb');
    const listed = await store.backups.list(scope);
    expect(listed.map((s) => s.id)).toEqual(['bk-20261126T100002Z-bbbbbb', 'bk-20261126T100000Z-aaaaaa']);
    expect(listed[1]).toMatchObject({
      verifyOk: true,
      drillOk: false,
      drillReport: { checks: 3 },
      sizeBytes: 10,
    });
    expect(await store.backups.list({ service: 'other', environment: 'production' })).toEqual([]);
  });
});
