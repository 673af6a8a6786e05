import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { postgresPlace, sqlitePlace, type Cleanups } from '../../test/support/store-places.ts';
import { ManualClock, type GameopsError } from '../core/index.ts';
import { createLogger } from '../app/log.ts';
import {
  type Harness,
  fakeSuppressions,
  oncallConfig,
  openHarness,
  recordingChannels,
  recordingEvents,
} from '../oncall/oncall.fixture.ts';
import { createOncallService } from '../oncall/service.ts';
import type { Actor } from '../runbooks/model.ts';
import { openStore, type Store, type StoreOptions } from './index.ts';
import type { NewPage } from './oncall.ts';

const cleanups: Cleanups = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const admin: Actor = { id: 'local:root', name: 'root', role: 'admin', kind: 'local' };
const NOW = '2026-03-10T12:00:00.000Z';
const SCOPE = { service: 'game', environment: 'test' };

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

function pageRow(id: string, dedupKey: string): NewPage {
  return {
    id,
    dedup_key: dedupKey,
    kind: 'page',
    incident_id: 'INC-1',
    subject: 's',
    body: 'b',
    severity: 'P1',
    labels: '{}',
    policy: 'default',
    targets: null,
    links: '[]',
    status: 'triggered',
    level: 0,
    round: 0,
    next_step: 0,
    next_at: NOW,
    created_at: NOW,
    created_by: 'system',
    updated_at: NOW,
    acknowledged_at: null,
    acknowledged_by: null,
    resolved_at: null,
    resolved_by: null,
    exhausted_at: null,
    suppressed_by: null,
    suppressed_until: null,
    escalates_from: NOW,
  };
}

const notification = (pageId: string, person = 'bob') => ({
  delivery_id: `${pageId}.0.0.${person}.hook`,
  page_id: pageId,
  level: 0,
  round: 0,
  person,
  channel: 'hook',
  channel_index: 0,
  next_at: NOW,
});

describe.each(backends)('on-call store on $backend', ({ place }) => {
  async function open(): Promise<Store> {
    const store = await openStore({ ...(await place()), clock: new ManualClock(NOW) });
    stores.push(store);
    return store;
  }

  it('keeps one page per dedup key, with its notifications, audited when an actor pages', async () => {
    const store = await open();
    const first = await store.oncall
      .forScope(SCOPE)
      .insertPage(pageRow('pg-1', 'incident:INC-1'), [notification('pg-1')], admin);
    expect(first.created).toBe(true);
    const again = await store.oncall
      .forScope(SCOPE)
      .insertPage(pageRow('pg-2', 'incident:INC-1'), [notification('pg-2')], admin);
    expect(again).toMatchObject({ created: false, page: { id: 'pg-1' } });
    expect((await store.oncall.forScope(SCOPE).notifications('pg-1')).map((n) => n.delivery_id)).toEqual([
      'pg-1.0.0.bob.hook',
    ]);
    expect(await store.oncall.forScope(SCOPE).notifications('pg-2')).toEqual([]);
    expect((await store.audit.list()).map((r) => [r.action, r.target])).toEqual([
      ['oncall.page', 'page:pg-1'],
    ]);
  });

  it('moves a page on from one step once, however many claim it together', async () => {
    const store = await open();
    await store.oncall.forScope(SCOPE).insertPage(pageRow('pg-1', 'k'), []);
    const results = await Promise.all(
      [0, 1, 2, 3].map(() =>
        store.oncall
          .forScope(SCOPE)
          .advance('pg-1', 0, { level: 0, round: 0, nextStep: 1, nextAt: NOW }, [notification('pg-1')]),
      ),
    );
    expect(results.filter(Boolean)).toHaveLength(1);
    expect((await store.oncall.forScope(SCOPE).page('pg-1'))?.next_step).toBe(1);
    // A step fired again after a crash inserts nothing new: the delivery id is the key.
    expect(
      await store.oncall
        .forScope(SCOPE)
        .advance('pg-1', 1, { level: 0, round: 0, nextStep: 2, nextAt: NOW }, [notification('pg-1')]),
    ).toBe(true);
    expect(await store.oncall.forScope(SCOPE).notifications('pg-1')).toHaveLength(1);
  });

  it('claims a delivery once; a lapsed claim is taken over with the attempt recorded as interrupted', async () => {
    const store = await open();
    await store.oncall.forScope(SCOPE).insertPage(pageRow('pg-1', 'k'), [notification('pg-1')]);
    const [row] = await store.oncall.forScope(SCOPE).dueNotifications(new Date(NOW), 10);
    const lease = new Date(Date.parse(NOW) + 30_000);
    const claims = await Promise.all(
      [0, 1, 2].map(() => store.oncall.forScope(SCOPE).claimNotification(row!, new Date(NOW), lease)),
    );
    expect(claims.filter((c) => c !== undefined)).toEqual([1]);
    expect(
      await store.oncall.forScope(SCOPE).dueNotifications(new Date(Date.parse(NOW) + 29_000), 10),
    ).toEqual([]);
    const [lapsed] = await store.oncall.forScope(SCOPE).dueNotifications(lease, 10);
    expect(lapsed).toMatchObject({ status: 'sending', attempts: 1 });
    // The first claimant's late answer is not recorded once the claim moved on.
    expect(
      await store.oncall
        .forScope(SCOPE)
        .claimNotification(lapsed!, lease, new Date(lease.getTime() + 30_000)),
    ).toBe(2);
    const stale = await store.oncall.forScope(SCOPE).finishAttempt('pg-1.0.0.bob.hook', 1, {
      at: NOW,
      outcome: 'ok',
      durationMs: 1,
      status: 'delivered',
    });
    expect(stale).toBe(false);
    expect(
      await store.oncall.forScope(SCOPE).finishAttempt('pg-1.0.0.bob.hook', 2, {
        at: lease.toISOString(),
        outcome: 'ok',
        response: 'HTTP 204',
        durationMs: 5,
        status: 'delivered',
      }),
    ).toBe(true);
    expect((await store.oncall.forScope(SCOPE).attempts('pg-1')).map((a) => [a.n, a.outcome])).toEqual([
      [1, 'interrupted'],
      [2, 'ok'],
    ]);
  });

  it('acknowledging cancels pending deliveries; a retry of a closed page is cancelled', async () => {
    const store = await open();
    await store.oncall
      .forScope(SCOPE)
      .insertPage(pageRow('pg-1', 'k'), [notification('pg-1', 'bob'), notification('pg-1', 'alice')]);
    const [bob] = (await store.oncall.forScope(SCOPE).notifications('pg-1')).filter(
      (n) => n.person === 'bob',
    );
    const n = await store.oncall
      .forScope(SCOPE)
      .claimNotification(bob!, new Date(NOW), new Date(Date.parse(NOW) + 30_000));
    const closed = await store.oncall.forScope(SCOPE).close('pg-1', 'acknowledged', admin, new Date(NOW));
    expect(closed).toMatchObject({ changed: true, page: { status: 'acknowledged', next_at: null } });
    expect(
      (await store.oncall.forScope(SCOPE).close('pg-1', 'acknowledged', admin, new Date(NOW))).changed,
    ).toBe(false);
    await store.oncall.forScope(SCOPE).finishAttempt(bob!.delivery_id, n!, {
      at: NOW,
      outcome: 'failed',
      error: 'HTTP 503',
      durationMs: 1,
      status: 'pending',
      nextAt: NOW,
    });
    expect(
      (await store.oncall.forScope(SCOPE).notifications('pg-1')).map((x) => [x.person, x.status]),
    ).toEqual([
      ['alice', 'cancelled'],
      ['bob', 'cancelled'],
    ]);
    const missing = (await store.oncall
      .forScope(SCOPE)
      .close('nope', 'resolved', admin, new Date(NOW))
      .catch((e: unknown) => e)) as GameopsError;
    expect(missing.code).toBe('not_found');
  });

  it('refuses an overlapping override of the same layer, naming it; keeps one setting value', async () => {
    const store = await open();
    const row = {
      id: 'ovr-1',
      schedule: 'game',
      layer: 'primary',
      person: 'dave',
      starts_at: '2026-03-11T00:00:00.000Z',
      ends_at: '2026-03-12T00:00:00.000Z',
      reason: null,
      created_at: NOW,
      created_by: admin.id,
    };
    await store.oncall.forScope(SCOPE).addOverride(row, admin);
    const clash = (await store.oncall
      .forScope(SCOPE)
      .addOverride(
        { ...row, id: 'ovr-2', starts_at: '2026-03-11T12:00:00.000Z', ends_at: '2026-03-13T00:00:00.000Z' },
        admin,
      )
      .catch((e: unknown) => e)) as GameopsError;
    expect(clash.code).toBe('conflict');
    expect(clash.message).toContain('overlaps override ovr-1 (dave');
    await store.oncall.forScope(SCOPE).addOverride({ ...row, id: 'ovr-3', layer: 'backup' }, admin);
    // Overlapping overrides added at the same time: one wins.
    const racing = await Promise.allSettled(
      ['ovr-4', 'ovr-5', 'ovr-6'].map((id) =>
        store.oncall.forScope(SCOPE).addOverride(
          {
            ...row,
            id,
            layer: 'tertiary',
            starts_at: '2026-03-20T00:00:00.000Z',
            ends_at: '2026-03-21T00:00:00.000Z',
          },
          admin,
        ),
      ),
    );
    expect(racing.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    await store.oncall
      .forScope(SCOPE)
      .removeOverride(
        (await store.oncall.forScope(SCOPE).overrides({ schedule: 'game' })).find(
          (o) => o.layer === 'tertiary',
        )!.id,
        admin,
      );
    expect((await store.oncall.forScope(SCOPE).overrides({ schedule: 'game' })).map((o) => o.id)).toEqual([
      'ovr-1',
      'ovr-3',
    ]);
    const values = await Promise.all(
      ['a', 'b', 'c'].map((v) => store.oncall.forScope(SCOPE).setting('k', () => v)),
    );
    expect(new Set(values).size).toBe(1);
    expect(await store.oncall.forScope(SCOPE).setting('k', () => 'z')).toBe(values[0]);
  });
});

describe('two gameops instances on one PostgreSQL database', () => {
  it('fire each escalation level and delivery once when they tick together', async () => {
    const options = (await postgresPlace(cleanups)).options;
    const clock = new ManualClock('2026-03-10T12:00:00Z');
    const channels = recordingChannels(clock);
    const harnesses: Harness[] = [];
    for (let i = 0; i < 2; i += 1) harnesses.push(await openHarness(options, { clock, channels }));
    stores.push(...harnesses.map((h) => h.store));
    const [a, b] = harnesses as [Harness, Harness];
    const page = await a.service.page({
      dedupKey: 'incident:INC-9',
      incidentId: 'INC-9',
      subject: 'x',
      body: '',
      severity: 'P1',
    });
    expect(
      (
        await b.service.page({
          dedupKey: 'incident:INC-9',
          incidentId: 'INC-9',
          subject: 'x',
          body: '',
          severity: 'P1',
        })
      ).id,
    ).toBe(page.id);
    for (let second = 0; second <= 31 * 60; second += 30) {
      clock.set(Date.parse('2026-03-10T12:00:00Z') + second * 1000);
      await Promise.all([a.service.tick(clock.now()), b.service.tick(clock.now())]);
    }
    expect(channels.sent.map((s) => s.message.deliveryId)).toEqual([
      `${page.id}.0.0.bob.hook`,
      `${page.id}.1.0.alice.hook`,
      `${page.id}.2.0.carol.mail`,
    ]);
  });
});

describe.each(backends)('on-call scopes on $backend', ({ place }) => {
  it('two instances (staging, production) on one store: the same dedup key is independent, ticks never cross', async () => {
    const options = await place();
    const clock = new ManualClock('2026-03-10T12:00:00Z');
    const staging = recordingChannels(clock);
    const production = recordingChannels(clock);
    const configFor = (environment: string) => {
      const config = oncallConfig();
      config.service = { ...config.service, environment };
      return config;
    };
    const a = await openHarness(options, { clock, channels: staging, config: configFor('staging') });
    stores.push(a.store);
    // A second gameops instance (production) on the same database.
    const b = {
      service: createOncallService({
        config: configFor('production'),
        store: a.store,
        clock,
        log: createLogger('silent'),
        channels: production,
        events: recordingEvents(),
        suppressions: fakeSuppressions(),
      }),
    };
    const input = {
      dedupKey: 'incident:INC-1',
      incidentId: 'INC-1',
      subject: 'x',
      body: '',
      severity: 'P1' as const,
    };
    const pa = await a.service.page(input);
    const pb = await b.service.page(input);
    expect(pb.id).not.toBe(pa.id);
    expect((await a.service.pages()).map((p) => p.id)).toEqual([pa.id]);
    expect((await b.service.pages()).map((p) => p.id)).toEqual([pb.id]);
    await expect(a.service.pageDetail(pb.id)).rejects.toMatchObject({ name: 'NotFoundError' });
    // Only staging ticks: production's page is not sent by staging's loop.
    await a.service.tick(clock.now());
    expect(staging.sent.map((s) => s.message.pageId)).toEqual([pa.id]);
    expect(production.sent).toEqual([]);
    // Resolving staging's incident leaves production's page open.
    await a.service.resolveIncident('INC-1');
    expect((await b.service.pageDetail(pb.id)).status).toBe('triggered');
    await b.service.tick(clock.now());
    expect(production.sent.map((s) => s.message.pageId)).toEqual([pb.id]);
    // Overrides are per instance too.
    await a.service.addOverride(
      {
        schedule: 'game',
        person: 'carol',
        from: new Date('2026-03-11T00:00:00Z'),
        to: new Date('2026-03-12T00:00:00Z'),
      },
      admin,
    );
    expect(await b.service.overrides()).toEqual([]);
  });
});

describe.each(backends)('on-call retention on $backend', ({ place }) => {
  it('prunes resolved/exhausted pages (with deliveries and attempts) and stalls before the cut; open pages stay', async () => {
    const store = await openStore({ ...(await place()), clock: new ManualClock(NOW) });
    stores.push(store);
    const repo = store.oncall.forScope(SCOPE);
    await repo.insertPage({ ...pageRow('pg-old', 'k1'), status: 'resolved' }, [notification('pg-old')]);
    await repo.insertPage({ ...pageRow('pg-open', 'k2') }, [notification('pg-open')]);
    const [due] = await repo.dueNotifications(new Date(NOW), 10);
    const n = await repo.claimNotification(due!, new Date(NOW), new Date(Date.parse(NOW) + 30_000));
    await repo.finishAttempt(due!.delivery_id, n!, {
      at: NOW,
      outcome: 'ok',
      durationMs: 1,
      status: 'delivered',
    });
    await repo.recordStall({ ref: 'page:pg-old:step:0', page_id: 'pg-old', due_at: NOW, detected_at: NOW });
    // Another scope's old page is not this scope's to prune.
    await store.oncall
      .forScope({ service: 'game', environment: 'prod' })
      .insertPage({ ...pageRow('pg-prod', 'k1'), status: 'resolved' }, []);
    expect(await repo.prune(new Date(NOW))).toEqual({ pages: 0, stalls: 0 });
    expect(await repo.prune(new Date(Date.parse(NOW) + 1))).toEqual({ pages: 1, stalls: 1 });
    expect(await repo.page('pg-old')).toBeUndefined();
    expect(await repo.notifications('pg-old')).toEqual([]);
    expect(await repo.attempts('pg-old')).toEqual([]);
    expect(await repo.page('pg-open')).toBeDefined();
    expect(await repo.notifications('pg-open')).toHaveLength(1);
    expect(
      await store.oncall.forScope({ service: 'game', environment: 'prod' }).page('pg-prod'),
    ).toBeDefined();
  });
});
