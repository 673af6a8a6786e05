import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { postgresPlace, sqlitePlace, type Cleanups } from '../../test/support/store-places.ts';
import { ConflictError, ManualClock, NotFoundError } from '../core/index.ts';
import type { Actor } from '../runbooks/model.ts';
import type { NewIncident } from './incidents.ts';
import { openStore, type Store, type StoreOptions } from './index.ts';

const cleanups: Cleanups = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const alice: Actor = { id: 'token:a1', name: 'alice', role: 'responder', kind: 'token' };
const scope = { service: 'game', environment: 'production' };

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

function incident(over: Partial<NewIncident> = {}): NewIncident {
  return {
    title: 'Login errors',
    severity: 'P2',
    service: 'login',
    source: 'manual',
    checklist: [{ id: 'first15Minutes-1', phase: 'first15Minutes', text: 'Establish the blast radius' }],
    createdBy: alice,
    ...over,
  };
}

describe.each(backends)('incident store on $backend', ({ place }) => {
  let clock: ManualClock;
  async function open(options?: StoreOptions): Promise<Store> {
    clock = new ManualClock('2026-03-01T10:00:00Z');
    const store = await openStore({ ...(options ?? (await place())), clock });
    stores.push(store);
    return store;
  }

  it('numbers incidents per service and environment and audits the declaration', async () => {
    const store = await open();
    const a = await store.incidents.open(scope, incident(), [{ kind: 'declared', message: 'declared' }]);
    const b = await store.incidents.open(scope, incident({ title: 'Lag' }), []);
    const other = await store.incidents.open({ service: 'game', environment: 'staging' }, incident(), []);
    expect([a.incident.number, b.incident.number, other.incident.number]).toEqual([1, 2, 1]);
    expect(a.incident).toMatchObject({
      title: 'Login errors',
      status: 'declared',
      transitions: [{ from: null, to: 'declared', at: '2026-03-01T10:00:00.000Z', by: 'alice' }],
    });
    expect(await store.incidents.timeline(scope, 1)).toEqual([
      { seq: 1, at: '2026-03-01T10:00:00.000Z', kind: 'declared', message: 'declared', data: {} },
    ]);
    const audit = await store.audit.list({ action: 'incident.*' });
    expect(audit.map((r) => [r.action, r.target])).toEqual([
      ['incident.declare', 'incident:INC-1'],
      ['incident.declare', 'incident:INC-2'],
      ['incident.declare', 'incident:INC-1'],
    ]);
    expect((await store.audit.verify()).ok).toBe(true);
  });

  it('two concurrent opens for one alert group make one incident; a resolved one frees the group', async () => {
    const store = await open();
    const results = await Promise.all(
      Array.from({ length: 6 }, () => store.incidents.open(scope, incident({ groupKey: 'g1' }), [])),
    );
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.incident.number))).toEqual(new Set([1]));
    expect(await store.incidents.list(scope)).toHaveLength(1);
    await store.incidents.mutate(scope, 1, () => ({
      changes: { status: 'resolved', ownsGroup: false },
      result: 0,
    }));
    const again = await store.incidents.open(scope, incident({ groupKey: 'g1' }), []);
    expect(again).toMatchObject({ created: true, incident: { number: 2, ownsGroup: true } });
    // The old one cannot take the group back while the new one owns it.
    const reopened = await store.incidents.mutate(scope, 1, () => ({
      changes: { status: 'investigating', ownsGroup: true },
      result: 0,
    }));
    expect(reopened.incident.ownsGroup).toBe(false);
  });

  it('changes under the row lock do not lose each other, and timeline entries are kept once per key', async () => {
    const store = await open();
    await store.incidents.open(scope, incident(), []);
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        store.incidents.mutate(scope, 1, (cur) => ({
          changes: { summary: `${cur.summary}${i}` },
          entries: [{ kind: 'note', message: `n${i}`, dedupKey: `k${i % 4}` }],
          audit: { actor: alice, action: 'incident.note' },
          result: 0,
        })),
      ),
    );
    const got = await store.incidents.get(scope, 1);
    expect(got?.summary.split('').sort()).toEqual(['0', '1', '2', '3', '4', '5', '6', '7']);
    const timeline = await store.incidents.timeline(scope, 1);
    expect(timeline.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(got?.revision).toBe(8);
  });

  it('refuses unknown incidents and a decision that throws changes nothing', async () => {
    const store = await open();
    await expect(store.incidents.timeline(scope, 99)).rejects.toThrow(NotFoundError);
    await expect(store.incidents.get(scope, 99)).resolves.toBeUndefined();
    await expect(store.incidents.mutate(scope, 99, () => ({ result: 0 }))).rejects.toThrow(
      'no incident INC-99',
    );
    await store.incidents.open(scope, incident(), []);
    await expect(
      store.incidents.mutate(scope, 1, () => {
        throw new ConflictError('no');
      }),
    ).rejects.toThrow('no');
    expect((await store.incidents.get(scope, 1))?.revision).toBe(0);
  });

  it('keeps post-mortem versions and refuses a stale base version', async () => {
    const store = await open();
    await store.incidents.open(scope, incident(), []);
    const doc = { markdown: '# x', sections: { Summary: 'x' }, edited: [], kind: 'generated' as const };
    expect((await store.incidents.savePostmortem(scope, 1, 0, doc, alice)).version).toBe(1);
    clock.advance(60_000);
    await store.incidents.savePostmortem(scope, 1, 1, { ...doc, kind: 'edited', edited: ['Summary'] }, alice);
    await expect(store.incidents.savePostmortem(scope, 1, 1, doc, alice)).rejects.toThrow(/version 2, not 1/);
    const versions = await store.incidents.postmortems(scope, 1);
    expect(versions.map((v) => [v.version, v.kind, v.createdAt, v.createdBy])).toEqual([
      [1, 'generated', '2026-03-01T10:00:00.000Z', 'alice'],
      [2, 'edited', '2026-03-01T10:01:00.000Z', 'alice'],
    ]);
  });

  it('action items: add, update, mark done (who and when), remove', async () => {
    const store = await open();
    await store.incidents.open(scope, incident(), []);
    const item = await store.incidents.addActionItem(
      scope,
      1,
      { title: 'Add pool metrics', owner: { team: 'ops' }, dueDate: '2026-03-10' },
      alice,
    );
    clock.advance(1000);
    const done = await store.incidents.updateActionItem(scope, 1, item.id, { status: 'done' }, alice);
    expect(done).toMatchObject({ status: 'done', doneBy: 'alice', doneAt: '2026-03-01T10:00:01.000Z' });
    const reopened = await store.incidents.updateActionItem(
      scope,
      1,
      item.id,
      { status: 'open', owner: null },
      alice,
    );
    expect(reopened.doneAt).toBeUndefined();
    expect(reopened.owner).toBeUndefined();
    await expect(store.incidents.updateActionItem(scope, 1, 'nope', {}, alice)).rejects.toThrow(
      'INC-1 has no action item nope',
    );
    await store.incidents.deleteActionItem(scope, 1, item.id, alice);
    expect(await store.incidents.actionItems(scope, 1)).toEqual([]);
  });

  it('links a run once and finds incidents due for a status update', async () => {
    const store = await open();
    await store.incidents.open(scope, incident({ nextUpdateDueAt: '2026-03-01T10:15:00.000Z' }), []);
    const run = {
      runId: 'r1',
      runbook: 'restart',
      startedAt: '2026-03-01T10:00:00.000Z',
      startedBy: 'alice',
    };
    const entry = { kind: 'runbook-run', message: 'run r1' };
    await store.incidents.linkRun(scope, 1, run, entry, alice);
    await store.incidents.linkRun(scope, 1, run, entry, alice);
    expect(await store.incidents.runs(scope, 1)).toEqual([run]);
    expect(await store.incidents.timeline(scope, 1)).toHaveLength(1);
    expect(await store.incidents.dueForUpdate(scope, new Date('2026-03-01T10:14:59Z'))).toEqual([]);
    expect(await store.incidents.dueForUpdate(scope, new Date('2026-03-01T10:15:00Z'))).toHaveLength(1);
  });
});
