import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { closedPort, getAlerts, postAlerts, services } from '../../test/harness/index.ts';
import { sqlitePlace, type Cleanups } from '../../test/support/store-places.ts';
import { createLogger } from '../app/log.ts';
import { parseConfigText, readEnv } from '../config/index.ts';
import { InputError, ManualClock, NotFoundError, UnavailableError } from '../core/index.ts';
import { createAlertmanagerClient, type AlertmanagerClient } from '../connectors/alertmanager.ts';
import type { AlertIncidents, AlertRef } from '../ops/contracts.ts';
import type { Actor } from '../runbooks/model.ts';
import { openStore, type Store } from '../store/index.ts';
import { createAlertService, type AlertService } from './index.ts';

const cleanups: Cleanups = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const alice: Actor = { id: 'token:a1', name: 'alice', role: 'responder', kind: 'token' };

/** A recording AlertIncidents: one incident per open group key. */
class FakeIncidents implements AlertIncidents {
  opened: Array<Parameters<AlertIncidents['openOrJoin']>[0]> = [];
  resolved: Array<{ incidentId: string; alert: AlertRef; stillFiring: number }> = [];
  byGroup = new Map<string, string>();
  failNext = 0;
  openOrJoin = (input: Parameters<AlertIncidents['openOrJoin']>[0]) => {
    if (this.failNext > 0) {
      this.failNext--;
      return Promise.reject(new UnavailableError('incidents store down'));
    }
    this.opened.push(input);
    const existing = this.byGroup.get(input.groupKey);
    if (existing) return Promise.resolve({ incidentId: existing, created: false });
    const id = `INC-${this.byGroup.size + 1}`;
    this.byGroup.set(input.groupKey, id);
    return Promise.resolve({ incidentId: id, created: true });
  };
  alertResolved = (incidentId: string, alert: AlertRef, stillFiring: number) => {
    this.resolved.push({ incidentId, alert, stillFiring });
    return Promise.resolve();
  };
}

function configOf(alerts: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  const doc = { service: { name: 'test-game', environment: 'test' }, alerts, ...extra };
  return parseConfigText(JSON.stringify(doc), 'test.yaml', readEnv({})).config;
}

interface Setup {
  service: AlertService;
  store: Store;
  clock: ManualClock;
  incidents: FakeIncidents;
}

async function setup(
  alerts: Record<string, unknown> = {},
  options: { alertmanager?: AlertmanagerClient; extra?: Record<string, unknown>; now?: Date } = {},
): Promise<Setup> {
  const clock = new ManualClock(options.now ?? '2026-03-01T10:00:00Z');
  const store = await openStore({ ...sqlitePlace(cleanups).options, clock });
  stores.push(store);
  const incidents = new FakeIncidents();
  const service = createAlertService({
    config: configOf(alerts, options.extra),
    store,
    clock,
    log: createLogger('silent'),
    incidents,
    alertmanager: options.alertmanager,
  });
  return { service, store, clock, incidents };
}

function amAlert(fp: string, overrides: Record<string, unknown> = {}) {
  return {
    status: 'firing',
    labels: { alertname: 'GameServerDown', instance: fp, severity: 'critical' },
    annotations: { summary: `game server ${fp} down`, runbook_url: 'https://wiki.example/restart' },
    startsAt: '2026-03-01T09:59:00.123456789Z',
    endsAt: '0001-01-01T00:00:00Z',
    generatorURL: 'http://prometheus/graph',
    fingerprint: fp,
    ...overrides,
  };
}

function payload(alerts: unknown[], overrides: Record<string, unknown> = {}) {
  return {
    version: '4',
    groupKey: '{}:{alertname="GameServerDown"}',
    truncatedAlerts: 0,
    status: 'firing',
    receiver: 'gameops',
    groupLabels: { alertname: 'GameServerDown' },
    commonLabels: { alertname: 'GameServerDown' },
    commonAnnotations: {},
    externalURL: 'http://alertmanager:9093',
    alerts,
    someFieldAlertmanagerMayAdd: true,
    ...overrides,
  };
}

describe('alert intake', () => {
  it('stores a webhook, then opens one incident per group and links every alert; duplicates change nothing', async () => {
    const { service, incidents } = await setup();
    const first = await service.ingestAlertmanager(payload([amAlert('aa01'), amAlert('aa02')]));
    expect(first).toMatchObject({ received: 2, created: 2, changed: 0, unchanged: 0, truncated: 0 });
    // Nothing reaches incidents before processing.
    expect(incidents.opened).toEqual([]);
    await service.followUp(first);
    expect(incidents.opened).toHaveLength(2);
    expect(incidents.opened[0]).toMatchObject({
      groupKey: '{}:{alertname="GameServerDown"}',
      title: 'game server aa01 down',
      severity: 'P1',
      service: 'test-game',
      alert: {
        fingerprint: 'aa01',
        startsAt: '2026-03-01T09:59:00.123Z',
        status: 'firing',
        name: 'GameServerDown',
        runbookUrl: 'https://wiki.example/restart',
        generatorUrl: 'http://prometheus/graph',
      },
    });
    expect(incidents.opened[0]?.alert.endsAt).toBeUndefined();
    const listed = await service.list({ status: 'firing' });
    expect(listed.every((a) => a.incidentId === 'INC-1' && !a.pending)).toBe(true);

    const again = await service.ingestAlertmanager(payload([amAlert('aa01'), amAlert('aa02')]));
    expect(again).toMatchObject({ created: 0, changed: 0, unchanged: 2, resolvedByAbsence: 0 });
    await service.followUp(again);
    expect(incidents.opened).toHaveLength(2);
    expect(incidents.resolved).toEqual([]);
  });

  it('a resolve (sent or missed) tells the incident how many of its alerts still fire', async () => {
    const { service, incidents } = await setup();
    await service.followUp(
      await service.ingestAlertmanager(payload([amAlert('b1'), amAlert('b2'), amAlert('b3')])),
    );
    // b1 resolved explicitly; b2 missing from the snapshot (a lost resolve); b3 still fires.
    const r = await service.ingestAlertmanager(
      payload([amAlert('b1', { status: 'resolved', endsAt: '2026-03-01T10:00:00Z' }), amAlert('b3')]),
    );
    expect(r.resolvedByAbsence).toBe(1);
    await service.followUp(r);
    expect(incidents.resolved.map((x) => [x.alert.fingerprint, x.stillFiring]).sort()).toEqual([
      ['b1', 1],
      ['b2', 1],
    ]);
    await service.followUp(
      await service.ingestAlertmanager(
        payload([amAlert('b3', { status: 'resolved' })], { status: 'resolved' }),
      ),
    );
    expect(incidents.resolved.at(-1)).toMatchObject({
      incidentId: 'INC-1',
      stillFiring: 0,
      alert: { fingerprint: 'b3', status: 'resolved' },
    });
  });

  it('a truncated payload does not resolve what it left out', async () => {
    const { service, incidents } = await setup();
    await service.followUp(await service.ingestAlertmanager(payload([amAlert('c1'), amAlert('c2')])));
    const r = await service.ingestAlertmanager(payload([amAlert('c1')], { truncatedAlerts: 1 }));
    expect(r).toMatchObject({ resolvedByAbsence: 0, truncated: 1, reconcileGroup: { receiver: 'gameops' } });
    // No Alertmanager configured: the follow-up logs and still processes.
    await service.followUp(r);
    expect(incidents.resolved).toEqual([]);
    expect((await service.list({ status: 'firing' })).length).toBe(2);
  });

  it('refuses malformed payloads naming the field, storing nothing', async () => {
    const { service } = await setup();
    const cases: Array<[unknown, string]> = [
      [payload([amAlert('d1')], { version: '3' }), 'version'],
      [payload([amAlert('d1', { startsAt: 'yesterday' })]), 'alerts[0].startsAt'],
      [payload([amAlert('d1'), amAlert('d2', { fingerprint: undefined })]), 'alerts[1].fingerprint'],
      [payload([amAlert('d1', { status: 'burning' })]), 'alerts[0].status'],
      [payload([amAlert('d1', { labels: { a: 1 } })]), 'alerts[0].labels.a'],
      [{ ...payload([]), groupKey: undefined }, 'groupKey'],
      ['not json at all', '(body)'],
      [null, '(body)'],
    ];
    for (const [body, field] of cases) {
      const err = await service.ingestAlertmanager(body).catch((e: unknown) => e);
      expect(err, field).toBeInstanceOf(InputError);
      expect((err as InputError).message, field).toContain(field);
    }
    expect(await service.list()).toEqual([]);
  });

  it('routes: first match sets severity, service, policy, runbook and groups by labels; createIncident false records only', async () => {
    const { service, incidents } = await setup(
      {
        routes: [
          { name: 'noise', matchers: ['alertname="Watchdog"'], createIncident: false },
          {
            name: 'db',
            matchers: ['team="db"', 'instance=~"db-.*"'],
            severity: 'P2',
            service: 'database',
            policy: 'db-oncall',
            runbook: 'db-failover',
            groupBy: ['cluster'],
          },
        ],
        severityLabels: { page: 'P1', warning: 'P3' },
      },
      {
        extra: {
          people: [{ id: 'dana', name: 'Dana', contacts: [] }],
          oncall: {
            policies: [{ name: 'db-oncall', levels: [{ after: 0, targets: [{ person: 'dana' }] }] }],
          },
          server: { publicUrl: 'https://ops.example' },
        },
      },
    );
    await service.followUp(
      await service.ingestAlertmanager(
        payload([
          amAlert('e1', { labels: { alertname: 'Watchdog' } }),
          amAlert('e2', { labels: { alertname: 'Lag', team: 'db', instance: 'db-1', cluster: 'eu' } }),
          amAlert('e3', { labels: { alertname: 'Lag', team: 'db', instance: 'db-2', cluster: 'us' } }),
          amAlert('e4', {
            labels: { alertname: 'Odd', severity: 'warning', service: 'login' },
            annotations: { runbook_url: 'https://ops.example/runbooks/restart-login' },
          }),
          amAlert('e5', { labels: { alertname: 'Unknown', severity: 'weird' }, annotations: {} }),
        ]),
      ),
    );
    const byFp = new Map(incidents.opened.map((o) => [o.alert.fingerprint, o]));
    expect(byFp.has('e1')).toBe(false);
    expect((await service.list({ labels: { alertname: 'Watchdog' } }))[0]).toMatchObject({
      pending: false,
      processed: 'firing',
    });
    expect(byFp.get('e2')).toMatchObject({
      groupKey: 'db:cluster="eu"',
      severity: 'P2',
      service: 'database',
      policy: 'db-oncall',
      runbook: 'db-failover',
    });
    expect(byFp.get('e3')?.groupKey).toBe('db:cluster="us"');
    expect(byFp.get('e4')).toMatchObject({ severity: 'P3', service: 'login', runbook: 'restart-login' });
    expect(byFp.get('e5')).toMatchObject({ severity: 'P3', title: 'Unknown' });
  });

  it('refuses a config route with a bad matcher, naming it', async () => {
    await expect(setup({ routes: [{ matchers: ['team=="db"'] }] })).rejects.toThrow(
      /alerts\.routes\[0\]\.matchers\[0\]/,
    );
  });

  it('keeps alerts pending when incidents fail, and the next tick links them', async () => {
    const { service, incidents, clock } = await setup();
    incidents.failNext = 5;
    await service.followUp(await service.ingestAlertmanager(payload([amAlert('f1')])));
    expect((await service.list())[0]).toMatchObject({ pending: true });
    incidents.failNext = 0;
    await service.tick(clock.now());
    expect((await service.list())[0]).toMatchObject({ pending: false, incidentId: 'INC-1' });
  });

  it('after a crash between storing and processing, a new process links the stored alerts in its first tick', async () => {
    const first = await setup();
    await first.service.ingestAlertmanager(payload([amAlert('h1'), amAlert('h2')]));
    // "Crash": no follow-up. Another service over the same store (a restarted gameops):
    const incidents = new FakeIncidents();
    const restarted = createAlertService({
      config: configOf(),
      store: first.store,
      clock: first.clock,
      log: createLogger('silent'),
      incidents,
    });
    await restarted.tick(first.clock.now());
    expect(incidents.opened.map((o) => o.alert.fingerprint)).toEqual(['h1', 'h2']);
    await restarted.tick(first.clock.now());
    expect(incidents.opened).toHaveLength(2);
  });

  it('reconciles in tick at start and then every alerts.reconcileEvery; an Alertmanager that is down is retried, not thrown', async () => {
    const calls: Date[] = [];
    let down = true;
    const fakeAm = {
      target: 'http://am.test',
      alerts: () => {
        calls.push(clockRef.now());
        return down
          ? Promise.reject(new UnavailableError('Alertmanager at http://am.test: connection refused'))
          : Promise.resolve([]);
      },
      status: () => Promise.reject(new Error('unused')),
      createSilence: () => Promise.reject(new Error('unused')),
      silences: () => Promise.resolve([]),
      expireSilence: () => Promise.resolve(),
    } satisfies AlertmanagerClient;
    const clockRef = { now: () => new Date(0) };
    const { service, clock } = await setup({ reconcileEvery: '1m' }, { alertmanager: fakeAm });
    clockRef.now = () => clock.now();
    await service.followUp(await service.ingestAlertmanager(payload([amAlert('k1')])));
    await service.tick(clock.now());
    expect(calls).toHaveLength(1);
    clock.advance(30_000);
    await service.tick(clock.now());
    expect(calls).toHaveLength(1);
    down = false;
    clock.advance(30_000);
    await service.tick(clock.now());
    expect(calls).toHaveLength(2);
    // Alertmanager has nothing: the alert gameops holds as firing resolves (a missed resolve).
    expect((await service.list())[0]).toMatchObject({ status: 'resolved', resolvedBy: 'reconcile' });
  });

  it('takes generic alerts: fingerprint from name and labels, continuing the firing instance, resolving it', async () => {
    const { service, incidents, clock } = await setup();
    const r = await service.ingestGeneric({
      alerts: [
        { name: 'QueueBacklog', labels: { queue: 'matchmaking', severity: 'page' }, summary: 'backlog 10k' },
      ],
    });
    expect(r).toMatchObject({ created: 1 });
    await service.followUp(r);
    expect(incidents.opened[0]).toMatchObject({
      groupKey: 'generic:QueueBacklog',
      severity: 'P1',
      title: 'backlog 10k',
    });
    clock.advance(60_000);
    // Same alert again, labels in another order: the same instance.
    const again = await service.ingestGeneric({
      alerts: [
        { name: 'QueueBacklog', labels: { severity: 'page', queue: 'matchmaking' }, summary: 'backlog 10k' },
      ],
    });
    expect(again).toMatchObject({ created: 0, unchanged: 1 });
    await service.followUp(
      await service.ingestGeneric({
        alerts: [
          { name: 'QueueBacklog', status: 'resolved', labels: { queue: 'matchmaking', severity: 'page' } },
        ],
      }),
    );
    expect(incidents.resolved).toHaveLength(1);
    expect(incidents.resolved[0]).toMatchObject({ incidentId: 'INC-1', stillFiring: 0 });
    const err = await service
      .ingestGeneric({ alerts: [{ name: 'x', colour: 'red' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain('alerts[0]');
    await expect(service.ingestGeneric({ alerts: [] })).rejects.toThrow(/alerts/);
  });

  it('lists with filters and gets by id', async () => {
    const { service } = await setup();
    await service.followUp(await service.ingestAlertmanager(payload([amAlert('g1'), amAlert('g2')])));
    const [one] = await service.list({ labels: { instance: 'g2' } });
    expect(one?.fingerprint).toBe('g2');
    expect(await service.get(one!.id)).toEqual(one);
    expect((await service.list({ incidentId: 'INC-1' })).length).toBe(2);
    await expect(service.get('nope')).rejects.toBeInstanceOf(NotFoundError);
    await expect(service.list({ status: 'open' as 'firing' })).rejects.toThrow(/status/);
  });
});

describe('paging suppression', () => {
  it('answers the config window or ad-hoc window that covers the labels at that instant', async () => {
    const { service, clock } = await setup({
      suppressions: [
        {
          name: 'weekly-maintenance',
          cron: '0 4 * * 2',
          duration: '2h',
          timezone: 'Asia/Seoul',
          matchers: ['service="game"'],
        },
      ],
    });
    // Tuesday 04:00 KST = Monday 19:00 UTC.
    expect(await service.active({ service: 'game' }, new Date('2026-03-02T19:30:00Z'))).toEqual({
      name: 'weekly-maintenance',
      endsAt: '2026-03-02T21:00:00.000Z',
    });
    expect(await service.active({ service: 'login' }, new Date('2026-03-02T19:30:00Z'))).toBeUndefined();

    const w = await service.windows.create(
      { name: 'db upgrade', matchers: ['team="db"'], duration: '90m', comment: 'planned' },
      alice,
    );
    expect(w).toMatchObject({
      origin: 'adhoc',
      active: true,
      startsAt: '2026-03-01T10:00:00.000Z',
      endsAt: '2026-03-01T11:30:00.000Z',
    });
    expect(await service.active({ team: 'db' }, clock.now())).toEqual({
      name: 'db upgrade',
      endsAt: '2026-03-01T11:30:00.000Z',
    });
    expect(await service.active({ team: 'db' }, new Date('2026-03-01T11:30:00Z'))).toBeUndefined();
    const listed = await service.windows.list();
    expect(listed.map((x) => [x.name, x.origin, x.active])).toEqual([
      ['weekly-maintenance', 'config', false],
      ['db upgrade', 'adhoc', true],
    ]);
    expect(listed[0]?.startsAt).toBe('2026-03-02T19:00:00.000Z');
    clock.advance(60_000);
    expect(await service.windows.end(w.id!, alice)).toMatchObject({ active: false, endedBy: 'alice' });
    expect(await service.active({ team: 'db' }, clock.now())).toBeUndefined();
    await expect(service.windows.end('weekly-maintenance', alice)).rejects.toThrow(/config/);
  });

  it('refuses bad windows naming the field', async () => {
    const { service } = await setup();
    await expect(
      service.windows.create({ matchers: ['x'], duration: '1h', comment: 'c' }, alice),
    ).rejects.toThrow(/matchers\[0\]/);
    await expect(service.windows.create({ duration: 'soon', comment: 'c' }, alice)).rejects.toThrow(
      /duration/,
    );
    await expect(service.windows.create({ duration: '31d', comment: 'c' }, alice)).rejects.toThrow(
      /duration: at most 30d/,
    );
    await expect(
      service.windows.create({ endsAt: '2020-01-01T00:00:00Z', comment: 'c' }, alice),
    ).rejects.toThrow(/endsAt/);
    await expect(service.windows.create({ duration: '1h', comment: ' ' }, alice)).rejects.toThrow(/comment/);
  });
});

describe('heartbeats', () => {
  it('pages once when pings stop (counting from first sighting), and the next ping resolves it', async () => {
    const { service, incidents, clock } = await setup({
      heartbeats: [{ name: 'nightly-backup', every: '1h', grace: '10m', severity: 'P2' }],
    });
    await service.tick(clock.now());
    expect((await service.heartbeats())[0]).toMatchObject({
      status: 'waiting',
      dueAt: '2026-03-01T11:10:00.000Z',
    });
    clock.set('2026-03-01T11:09:59Z');
    await service.tick(clock.now());
    expect(incidents.opened).toEqual([]);
    clock.set('2026-03-01T11:15:00Z');
    await service.tick(clock.now());
    await service.tick(clock.now());
    expect(incidents.opened).toHaveLength(1);
    expect(incidents.opened[0]).toMatchObject({
      groupKey: 'heartbeat:nightly-backup',
      severity: 'P2',
      alert: {
        fingerprint: 'heartbeat:nightly-backup',
        startsAt: '2026-03-01T11:10:00.000Z',
        status: 'firing',
      },
    });
    expect((await service.heartbeats())[0]).toMatchObject({ status: 'down', incidentId: 'INC-1' });

    clock.set('2026-03-01T11:20:00Z');
    const pinged = await service.ping('nightly-backup');
    expect(pinged).toMatchObject({
      status: 'up',
      lastPingAt: '2026-03-01T11:20:00.000Z',
      dueAt: '2026-03-01T12:30:00.000Z',
    });
    expect(incidents.resolved).toHaveLength(1);
    expect(incidents.resolved[0]).toMatchObject({
      incidentId: 'INC-1',
      stillFiring: 0,
      alert: { status: 'resolved', startsAt: '2026-03-01T11:10:00.000Z', endsAt: '2026-03-01T11:20:00.000Z' },
    });
    await service.tick(clock.now());
    expect(incidents.resolved).toHaveLength(1);
    await expect(service.ping('nope')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('after gameops was down, counts from its restart (pings sent meanwhile were lost), not from the last ping', async () => {
    const first = await setup({ heartbeats: [{ name: 'cron', every: '1h', grace: '0s' }] });
    await first.service.ping('cron');
    // gameops is down for a day; then a new process starts.
    first.clock.advance(86_400_000);
    const incidents = new FakeIncidents();
    const restarted = createAlertService({
      config: configOf({ heartbeats: [{ name: 'cron', every: '1h', grace: '0s' }] }),
      store: first.store,
      clock: first.clock,
      log: createLogger('silent'),
      incidents,
    });
    await restarted.tick(first.clock.now());
    expect(incidents.opened).toEqual([]);
    first.clock.advance(3_600_000);
    await restarted.tick(first.clock.now());
    expect(incidents.opened).toHaveLength(1);
    expect(incidents.opened[0]?.alert.startsAt).toBe('2026-03-02T11:00:00.000Z');
  });

  it('opens the incident on the next tick when it failed the first time', async () => {
    const { service, incidents, clock } = await setup({
      heartbeats: [{ name: 'cron', every: '10s', grace: '0s' }],
    });
    await service.tick(clock.now());
    clock.advance(11_000);
    incidents.failNext = 1;
    await service.tick(clock.now());
    expect(incidents.opened).toEqual([]);
    await service.tick(clock.now());
    expect(incidents.opened).toHaveLength(1);
  });
});

describe('with a real Alertmanager', () => {
  const client = () => createAlertmanagerClient({ url: services().alertmanager.url });

  it('creates, lists and expires silences; validation happens before anything is sent', async () => {
    // Alertmanager refuses silences that end in its past: the clock starts at the real time here.
    const now = new Date(Math.floor(Date.now() / 1000) * 1000);
    const { service, store } = await setup({}, { alertmanager: client(), now });
    const run = randomUUID();
    const s = await service.silences.create(
      { matchers: [`run="${run}"`, 'instance=~"eu-.*"'], duration: '2h', comment: 'maintenance' },
      alice,
    );
    expect(s).toMatchObject({
      state: 'active',
      createdBy: 'alice',
      endsAt: new Date(now.getTime() + 2 * 3_600_000).toISOString(),
    });
    const listed = (await service.silences.list({ matchers: [`run="${run}"`] })).find((x) => x.id === s.id);
    expect(listed).toMatchObject({
      matchers: [`run="${run}"`, 'instance=~"eu-.*"'],
      createdBy: 'alice',
      comment: 'maintenance',
    });
    const audit = await store.audit.list({ target: `silence:${s.id}` });
    expect(audit.map((r) => r.action)).toEqual(['silence.create']);
    await expect(
      service.silences.expire('00000000-0000-0000-0000-000000000000', alice),
    ).rejects.toBeInstanceOf(NotFoundError);

    await service.silences.expire(s.id, alice);
    const after = (await service.silences.list()).find((x) => x.id === s.id);
    expect(after?.state).toBe('expired');

    for (const [input, field] of [
      [{ matchers: [], duration: '1h', comment: 'c' }, 'matchers'],
      [{ matchers: ['a=~".*"'], duration: '1h', comment: 'c' }, 'empty string'],
      [{ matchers: ['bad'], duration: '1h', comment: 'c' }, 'matchers[0]'],
      [{ matchers: ['a="b"'], duration: '1h', comment: '' }, 'comment'],
      [{ matchers: ['a="b"'], comment: 'c' }, 'duration'],
    ] as const) {
      await expect(service.silences.create(input as never, alice), field).rejects.toThrow(field);
    }
  });

  it('names Alertmanager when it is down, and says when none is configured', async () => {
    const down = await setup(
      {},
      { alertmanager: createAlertmanagerClient({ url: `http://127.0.0.1:${await closedPort()}` }) },
    );
    const err = await down.service.silences
      .create({ matchers: ['a="b"'], duration: '1h', comment: 'c' }, alice)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/Alertmanager at http:\/\/127\.0\.0\.1/);
    const none = await setup();
    await expect(none.service.silences.list()).rejects.toThrow(/no Alertmanager is configured/);
  });

  it('reconciles: firing alerts Alertmanager no longer has resolve; a truncated group gets the alerts it left out', async () => {
    const am = client();
    const { url } = services().alertmanager;
    const run = randomUUID();
    const labels = (i: number) => ({ alertname: 'GameopsReconcile', run, instance: `i${i}` });
    await postAlerts(
      url,
      [0, 1, 2].map((i) => ({ labels: labels(i) })),
    );
    const inAm = await getAlerts(url, { run });
    expect(inAm).toHaveLength(3);
    const { service, incidents } = await setup({}, { alertmanager: am });
    const groupKey = `{}:{run="${run}"}`;
    const first = inAm[0]!;
    const r = await service.ingestAlertmanager(
      payload(
        [
          {
            status: 'firing',
            labels: first.labels,
            annotations: {},
            startsAt: first.startsAt,
            fingerprint: first.fingerprint,
          },
          amAlert('ffff000000000001', { labels: { alertname: 'GameopsReconcile', run, instance: 'gone' } }),
        ],
        { groupKey, truncatedAlerts: 2, receiver: 'null', groupLabels: { run } },
      ),
    );
    await service.followUp(r);
    const firing = await service.list({ status: 'firing', labels: { run } });
    expect(firing.map((a) => a.fingerprint).sort()).toEqual(inAm.map((a) => a.fingerprint).sort());
    expect((await service.list({ labels: { instance: 'gone' } }))[0]).toMatchObject({
      status: 'resolved',
      resolvedBy: 'reconcile',
    });
    expect(incidents.opened.filter((o) => o.groupKey === groupKey)).toHaveLength(3);

    // The periodic reconcile: an alert resolved in Alertmanager while its resolve never reached us.
    await postAlerts(url, [
      {
        labels: labels(2),
        startsAt: inAm.find((a) => a.labels['instance'] === 'i2')!.startsAt,
        endsAt: new Date(),
      },
    ]);
    const result = await service.reconcile();
    expect(result.resolved).toBe(1);
    expect((await service.list({ status: 'firing', labels: { run } })).length).toBe(2);
  });
});
