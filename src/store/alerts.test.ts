import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { postgresPlace, sqlitePlace, type Cleanups } from '../../test/support/store-places.ts';
import { ManualClock } from '../core/index.ts';
import type { Actor } from '../runbooks/model.ts';
import { alertId, type AlertUpsert } from './alerts.ts';
import { openStore, type Store, type StoreOptions } from './index.ts';

const cleanups: Cleanups = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const alice: Actor = { id: 'token:abc', name: 'alice', role: 'responder', kind: 'token' };

const backends = [
  {
    backend: 'sqlite' as const,
    place: (): Promise<StoreOptions> => Promise.resolve(sqlitePlace(cleanups).options),
  },
  {
    backend: 'postgres' as const,
    place: async (): Promise<StoreOptions> => (await postgresPlace(cleanups)).options,
  },
];

function alert(fp: string, overrides: Partial<AlertUpsert> = {}): AlertUpsert {
  return {
    fingerprint: fp,
    startsAt: '2026-03-01T09:00:00.000Z',
    status: 'firing',
    name: 'GameServerDown',
    labels: { alertname: 'GameServerDown', instance: fp },
    annotations: { summary: `server ${fp} down` },
    ...overrides,
  };
}

describe.each(backends)('alert store on $backend', ({ place }) => {
  let clock: ManualClock;
  async function open(): Promise<Store> {
    clock = new ManualClock('2026-03-01T10:00:00Z');
    const store = await openStore({ ...(await place()), clock });
    stores.push(store);
    return store;
  }

  it('upserts by (fingerprint, startsAt): a duplicate delivery changes nothing, a status change is pending', async () => {
    const { alerts } = await open();
    const batch = { source: 'alertmanager' as const, groupKey: 'g1', receiver: 'gameops', snapshot: true };
    expect(await alerts.upsertBatch({ ...batch, alerts: [alert('a'), alert('b')] })).toEqual({
      created: 2,
      changed: 0,
      unchanged: 0,
      resolvedByAbsence: 0,
      absent: 0,
      linked: new Map(),
    });
    const pending = await alerts.pending(10);
    expect(pending.map((a) => a.fingerprint).sort()).toEqual(['a', 'b']);
    expect(await alerts.markProcessed(alertId('a', '2026-03-01T09:00:00.000Z'), 'firing', 'INC-1')).toBe(
      true,
    );
    expect(await alerts.markProcessed(alertId('b', '2026-03-01T09:00:00.000Z'), 'firing', 'INC-1')).toBe(
      true,
    );
    const before = await alerts.list();

    clock.advance(60_000);
    expect(await alerts.upsertBatch({ ...batch, alerts: [alert('a'), alert('b')] })).toEqual({
      created: 0,
      changed: 0,
      unchanged: 2,
      resolvedByAbsence: 0,
      absent: 0,
      // Both re-sent while firing and linked: the caller checks that their incident is still open.
      linked: new Map([
        ['INC-1', [alertId('a', '2026-03-01T09:00:00.000Z'), alertId('b', '2026-03-01T09:00:00.000Z')]],
      ]),
    });
    expect(await alerts.pending(10)).toEqual([]);
    const after = await alerts.list();
    expect(after.map(({ lastSeenAt: _, ...rest }) => rest)).toEqual(
      before.map(({ lastSeenAt: _, ...rest }) => rest),
    );
    expect(await alerts.firingCount('INC-1')).toBe(2);

    // Same fingerprint, new startsAt: a new instance.
    await alerts.upsertBatch({
      ...batch,
      alerts: [alert('a'), alert('b'), alert('a', { startsAt: '2026-03-01T09:30:00.000Z' })],
    });
    expect((await alerts.list({ labels: { instance: 'a' } })).length).toBe(2);

    // Resolved: pending again, and stays resolved whatever a late "firing" says.
    await alerts.upsertBatch({
      ...batch,
      alerts: [alert('a', { status: 'resolved', endsAt: '2026-03-01T09:59:00.000Z' }), alert('b')],
      snapshot: false,
    });
    const resolved = await alerts.get(alertId('a', '2026-03-01T09:00:00.000Z'));
    expect(resolved).toMatchObject({
      status: 'resolved',
      resolvedBy: 'payload',
      pending: true,
      incidentId: 'INC-1',
    });
    await alerts.upsertBatch({ ...batch, alerts: [alert('a'), alert('b')], snapshot: false });
    expect((await alerts.get(resolved.id)).status).toBe('resolved');
    expect(await alerts.firingCount('INC-1')).toBe(1);
  });

  it('a snapshot resolves the firing alerts of its group it no longer contains; a truncated one does not', async () => {
    const { alerts } = await open();
    const base = { source: 'alertmanager' as const, groupKey: 'g1', receiver: 'r' };
    await alerts.upsertBatch({ ...base, snapshot: true, alerts: [alert('a'), alert('b'), alert('c')] });
    await alerts.upsertBatch({ ...base, groupKey: 'g2', snapshot: true, alerts: [alert('x')] });
    clock.advance(1000);
    // Truncated (not a snapshot): nothing inferred.
    expect(
      (await alerts.upsertBatch({ ...base, snapshot: false, alerts: [alert('a')] })).resolvedByAbsence,
    ).toBe(0);
    const outcome = await alerts.upsertBatch({ ...base, snapshot: true, alerts: [alert('a')] });
    expect(outcome.resolvedByAbsence).toBe(2);
    const firing = await alerts.list({ status: 'firing' });
    expect(firing.map((a) => a.fingerprint).sort()).toEqual(['a', 'x']);
    const b = await alerts.get(alertId('b', '2026-03-01T09:00:00.000Z'));
    expect(b).toMatchObject({
      status: 'resolved',
      resolvedBy: 'snapshot',
      endsAt: '2026-03-01T10:00:01.000Z',
    });
  });

  it('a resolve gameops inferred (snapshot, reconcile) reopens on a later firing; a payload resolve is final', async () => {
    const { alerts } = await open();
    const base = { source: 'alertmanager' as const, groupKey: 'g1', receiver: 'gameops' };
    const at = '2026-03-01T09:00:00.000Z';
    await alerts.upsertBatch({ ...base, snapshot: true, alerts: [alert('a'), alert('b'), alert('c')] });
    await alerts.markProcessedMany([alertId('a', at), alertId('b', at), alertId('c', at)], 'firing', 'INC-1');
    // b silenced in Alertmanager (left out of the notification); c resolved in a payload.
    clock.advance(60_000);
    const out = await alerts.upsertBatch({
      ...base,
      snapshot: true,
      alerts: [alert('a'), alert('c', { status: 'resolved', endsAt: '2026-03-01T09:01:00.000Z' })],
    });
    expect(out).toMatchObject({ resolvedByAbsence: 1, absent: 0 });
    await alerts.markProcessedMany([alertId('b', at), alertId('c', at)], 'resolved', undefined);
    await alerts.resolveMissing([alertId('a', at)], clock.now().toISOString());
    await alerts.markProcessed(alertId('a', at), 'resolved', undefined);
    // The silence ends: all three are sent firing again, same startsAt.
    clock.advance(60_000);
    const again = await alerts.upsertBatch({
      ...base,
      snapshot: true,
      alerts: [alert('a'), alert('b'), alert('c')],
    });
    expect(again).toMatchObject({ changed: 2, unchanged: 1 });
    const byFp = new Map((await alerts.list()).map((a) => [a.fingerprint, a]));
    expect(byFp.get('a')).toMatchObject({ status: 'firing', pending: true, incidentId: 'INC-1' });
    expect(byFp.get('a')?.resolvedBy).toBeUndefined();
    expect(byFp.get('b')).toMatchObject({ status: 'firing', pending: true });
    expect(byFp.get('c')).toMatchObject({ status: 'resolved', resolvedBy: 'payload', pending: false });
    // Both at once (an HA pair sends the same): still one row each, reopened once.
    await Promise.all(
      [1, 2].map(() => alerts.upsertBatch({ ...base, snapshot: false, alerts: [alert('b')] })),
    );
    expect((await alerts.list()).filter((a) => a.fingerprint === 'b')).toHaveLength(1);
  });

  it('with confirmAbsence a snapshot only counts what it lacks; requeue makes linked firing alerts pending', async () => {
    const { alerts } = await open();
    const base = { source: 'alertmanager' as const, groupKey: 'g1', receiver: 'gameops' };
    const at = '2026-03-01T09:00:00.000Z';
    await alerts.upsertBatch({ ...base, snapshot: true, alerts: [alert('a'), alert('b')] });
    expect(await alerts.markProcessedMany([alertId('a', at), alertId('b', at)], 'firing', 'INC-4')).toBe(2);
    expect(await alerts.markProcessedMany([alertId('a', at)], 'firing', 'INC-4')).toBe(0);
    const out = await alerts.upsertBatch({
      ...base,
      snapshot: true,
      confirmAbsence: true,
      alerts: [alert('a')],
    });
    expect(out).toMatchObject({ resolvedByAbsence: 0, absent: 1 });
    expect((await alerts.firing('alertmanager', 'g1')).map((a) => a.fingerprint).sort()).toEqual(['a', 'b']);
    expect(await alerts.requeue('INC-9', [alertId('a', at)])).toBe(0);
    expect(await alerts.requeue('INC-4', [alertId('a', at)])).toBe(1);
    expect((await alerts.pending(10)).map((a) => a.fingerprint)).toEqual(['a']);
  });

  it('an undated alert continues the firing instance of its fingerprint, read inside the transaction', async () => {
    const { alerts } = await open();
    const base = { source: 'generic' as const, groupKey: 'generic', snapshot: false };
    await alerts.upsertBatch({ ...base, alerts: [alert('u', { startsAt: '2026-03-01T08:00:00.000Z' })] });
    clock.advance(60_000);
    await alerts.upsertBatch({
      ...base,
      alerts: [
        alert('u', { startsAt: clock.now().toISOString(), continues: true }),
        alert('v', { continues: true }),
      ],
    });
    const rows = await alerts.list();
    expect(rows.filter((a) => a.fingerprint === 'u').map((a) => a.startsAt)).toEqual([
      '2026-03-01T08:00:00.000Z',
    ]);
    expect(rows.filter((a) => a.fingerprint === 'v')).toHaveLength(1);
  });

  it('stores 1,000 alerts of one payload in one transaction, all or nothing', async () => {
    const { alerts } = await open();
    const many = Array.from({ length: 1000 }, (_, i) => alert(`fp${i}`));
    expect(
      (await alerts.upsertBatch({ source: 'alertmanager', groupKey: 'big', snapshot: true, alerts: many }))
        .created,
    ).toBe(1000);
    expect((await alerts.list({ limit: 1000 })).length).toBe(1000);
    // A payload whose last row cannot be stored (NOT NULL startsAt, in the second multi-row statement,
    // after the first 500 rows were written) leaves nothing of itself behind.
    const broken = [
      ...Array.from({ length: 600 }, (_, i) => alert(`new${i}`)),
      alert('bad', { startsAt: null as unknown as string }),
    ];
    await expect(
      alerts.upsertBatch({ source: 'alertmanager', groupKey: 'big2', snapshot: true, alerts: broken }),
    ).rejects.toThrow();
    expect(
      (await alerts.list({ limit: 1000, status: 'firing' })).filter((a) => a.groupKey === 'big2'),
    ).toEqual([]);
  });

  it('takes the same payload twice at once (an HA pair) without error or duplicate', async () => {
    const { alerts } = await open();
    const batch = {
      source: 'alertmanager' as const,
      groupKey: 'ha',
      snapshot: true,
      alerts: [alert('a'), alert('b')],
    };
    const outcomes = await Promise.all([alerts.upsertBatch(batch), alerts.upsertBatch(batch)]);
    expect(outcomes.every((o) => o.resolvedByAbsence === 0)).toBe(true);
    expect((await alerts.list()).map((a) => a.fingerprint).sort()).toEqual(['a', 'b']);
  });

  it('finds the firing instance of a fingerprint and resolves alerts Alertmanager no longer has', async () => {
    const { alerts } = await open();
    await alerts.upsertBatch({
      source: 'alertmanager',
      groupKey: 'g',
      snapshot: false,
      alerts: [alert('a'), alert('b')],
    });
    expect(await alerts.firingSince(['a', 'zzz'])).toEqual(new Map([['a', '2026-03-01T09:00:00.000Z']]));
    const seen = clock.now().toISOString();
    clock.advance(1000);
    // b seen again after the question was asked: kept.
    await alerts.upsertBatch({
      source: 'alertmanager',
      groupKey: 'g',
      snapshot: false,
      alerts: [alert('b')],
    });
    const ids = (await alerts.firing('alertmanager')).map((a) => a.id);
    expect(await alerts.resolveMissing(ids, seen)).toBe(1);
    expect((await alerts.firing('alertmanager')).map((a) => a.fingerprint)).toEqual(['b']);
    expect((await alerts.get(alertId('a', '2026-03-01T09:00:00.000Z'))).resolvedBy).toBe('reconcile');
  });

  it('prunes alerts resolved and processed before a cutoff, never firing or pending ones', async () => {
    const { alerts } = await open();
    const base = { source: 'alertmanager' as const, groupKey: 'p', snapshot: false };
    await alerts.upsertBatch({
      ...base,
      alerts: [alert('old', { status: 'resolved' }), alert('pend', { status: 'resolved' }), alert('fire')],
    });
    await alerts.markProcessed(alertId('old', '2026-03-01T09:00:00.000Z'), 'resolved', undefined);
    clock.advance(86_400_000);
    expect(await alerts.prune('2026-03-02T00:00:00.000Z', 100)).toBe(1);
    expect((await alerts.list()).map((a) => a.fingerprint).sort()).toEqual(['fire', 'pend']);
  });

  it('keeps ad-hoc suppression windows, audited, and ends them once', async () => {
    const store = await open();
    const w = await store.alerts.createWindow({
      name: 'db upgrade',
      matchers: ['service="db"'],
      startsAt: '2026-03-01T10:00:00.000Z',
      endsAt: '2026-03-01T12:00:00.000Z',
      comment: 'planned',
      by: alice,
    });
    expect(await store.alerts.windows({ activeAfter: '2026-03-01T11:00:00.000Z' })).toEqual([w]);
    clock.advance(60_000);
    const ended = await store.alerts.endWindow(w.id, alice);
    expect(ended).toMatchObject({ endedAt: '2026-03-01T10:01:00.000Z', endedBy: 'alice' });
    await store.alerts.endWindow(w.id, alice);
    expect(await store.alerts.windows({ activeAfter: '2026-03-01T11:00:00.000Z' })).toEqual([]);
    await expect(store.alerts.endWindow('sw-nope', alice)).rejects.toMatchObject({ code: 'not_found' });
    const audit = await store.audit.list({ target: `suppression:${w.id}` });
    expect(audit.map((r) => r.action).sort()).toEqual(['suppression.create', 'suppression.end']);
  });

  it('tracks heartbeats: first sighting, pings, one outage at a time, recovery kept until told', async () => {
    const { alerts } = await open();
    const [hb] = await alerts.heartbeats(['backup']);
    expect(hb).toEqual({ name: 'backup', firstSeenAt: '2026-03-01T10:00:00.000Z', pings: 0 });
    expect(await alerts.markDown('backup', '2026-03-01T10:10:00.000Z', null)).toBe(true);
    expect(await alerts.markDown('backup', '2026-03-01T10:10:00.000Z', null)).toBe(false);
    await alerts.linkOutage('backup', '2026-03-01T10:10:00.000Z', 'INC-4');
    clock.advance(30 * 60_000);
    const pinged = await alerts.ping('backup');
    expect(pinged).toMatchObject({
      pings: 1,
      lastPingAt: '2026-03-01T10:30:00.000Z',
      recoveredSince: '2026-03-01T10:10:00.000Z',
      recoveredIncidentId: 'INC-4',
      recoveredAt: '2026-03-01T10:30:00.000Z',
    });
    expect(pinged.downSince).toBeUndefined();
    // No new outage while the recovery was not told to its incident.
    expect(await alerts.markDown('backup', '2026-03-01T10:40:00.000Z', '2026-03-01T10:30:00.000Z')).toBe(
      false,
    );
    await alerts.clearRecovered('backup', '2026-03-01T10:10:00.000Z');
    expect(await alerts.markDown('backup', '2026-03-01T10:40:00.000Z', '2026-03-01T10:30:00.000Z')).toBe(
      true,
    );
    const [after] = await alerts.heartbeats(['backup']);
    expect(after?.recoveredSince).toBeUndefined();
  });
});
