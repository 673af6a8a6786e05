import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { closedPort, getAlerts, postAlerts, services, startAlertmanager } from '../../test/harness/index.ts';
import { sqlitePlace, type Cleanups } from '../../test/support/store-places.ts';
import { createLogger } from '../app/log.ts';
import { parseConfigText, readEnv } from '../config/index.ts';
import { InputError, ManualClock, NotFoundError, UnavailableError } from '../core/index.ts';
import { createAlertmanagerClient, type AlertmanagerClient } from '../connectors/alertmanager.ts';
import type { AlertIncidents, AlertRef } from '../ops/contracts.ts';
import type { Actor } from '../runbooks/model.ts';
import { openStore, type Store } from '../store/index.ts';
import { createIncidentService } from '../incidents/index.ts';
import { FakePager } from '../incidents/test-support.ts';
import { createAlertService, type AlertService } from './index.ts';
import { AM_WARMUP_MS } from './service.ts';

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
      alertGroups: () => Promise.resolve([]),
      // Started long ago: its empty answer may resolve.
      status: () =>
        Promise.resolve({ version: '0.28.1', uptime: '2020-01-01T00:00:00Z', clusterStatus: 'ready' }),
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
  it('starts no new outage while an earlier recovery was not told to its incident', async () => {
    const { service, incidents, clock } = await setup({
      heartbeats: [{ name: 'cron', every: '10m', grace: '0s' }],
    });
    await service.tick(clock.now());
    clock.advance(11 * 60_000);
    await service.tick(clock.now());
    expect(incidents.opened).toHaveLength(1);
    const told = incidents.alertResolved;
    incidents.alertResolved = () => Promise.reject(new UnavailableError('incidents down'));
    await service.ping('cron');
    // Overdue again while the recovery is still untold: no second outage.
    clock.advance(11 * 60_000);
    await service.tick(clock.now());
    await service.tick(clock.now());
    expect(incidents.opened).toHaveLength(1);
    incidents.alertResolved = told;
    await service.tick(clock.now());
    expect(incidents.resolved).toHaveLength(1);
    await service.tick(clock.now());
    expect(incidents.opened).toHaveLength(2);
  });

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

  it(
    'reconciles: firing alerts Alertmanager no longer has resolve; a truncated group gets the alerts it left out',
    { timeout: 60_000 },
    async () => {
      // Its own Alertmanager grouping by `run`, so the group of the payload is a group it has.
      const live = await startAlertmanager({
        configYaml: [
          'route:',
          "  receiver: 'null'",
          "  group_by: ['run']",
          'receivers:',
          "  - name: 'null'",
          '',
        ].join('\n'),
      });
      cleanups.push(() => live.stop());
      const am = createAlertmanagerClient({ url: live.url });
      const { url } = live;
      const run = randomUUID();
      const labels = (i: number) => ({ alertname: 'GameopsReconcile', run, instance: `i${i}` });
      await postAlerts(
        url,
        [0, 1, 2].map((i) => ({ labels: labels(i) })),
      );
      const inAm = await getAlerts(url, { run });
      expect(inAm).toHaveLength(3);
      // Past Alertmanager's warm-up (it just started: nothing would resolve yet).
      const { service, incidents } = await setup(
        {},
        { alertmanager: am, now: new Date(Date.now() + AM_WARMUP_MS + 60_000) },
      );
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
    },
  );
});

/** A fake Alertmanager client: `have` is what GET /api/v2/alerts(/groups) answers, `started` its uptime. */
function fakeAlertmanager(state: {
  have: Array<{ fingerprint: string; labels: Record<string, string>; startsAt: string }>;
  groups?: Array<{ labels: Record<string, string>; receiver: string; fingerprints: string[] }>;
  started: string;
}): AlertmanagerClient & { asked: string[] } {
  const asked: string[] = [];
  const view = (a: (typeof state.have)[number]) => ({
    ...a,
    annotations: {},
    status: { state: 'suppressed' },
  });
  return {
    target: 'http://am.test',
    asked,
    alerts: (query) => {
      asked.push(`alerts silenced=${String(query?.silenced)} inhibited=${String(query?.inhibited)}`);
      return Promise.resolve(state.have.map(view));
    },
    alertGroups: () => {
      asked.push('groups');
      return Promise.resolve(
        (state.groups ?? []).map((g) => ({
          labels: g.labels,
          receiver: { name: g.receiver },
          alerts: state.have.filter((a) => g.fingerprints.includes(a.fingerprint)).map(view),
        })),
      );
    },
    status: () => Promise.resolve({ version: '0.28.1', uptime: state.started, clusterStatus: 'ready' }),
    createSilence: () => Promise.reject(new Error('unused')),
    silences: () => Promise.resolve([]),
    expireSilence: () => Promise.resolve(),
  };
}

describe('review fixes', () => {
  const at = '2026-03-01T09:59:00.123Z';
  const inAm = (fp: string, startsAt = at) => ({
    fingerprint: fp,
    labels: { alertname: 'GameServerDown', instance: fp, severity: 'critical' },
    startsAt,
  });

  it('without an Alertmanager a snapshot absence resolves, and the same alert firing again reopens and rejoins', async () => {
    const { service, incidents, clock } = await setup();
    await service.followUp(await service.ingestAlertmanager(payload([amAlert('s1'), amAlert('s2')])));
    clock.advance(60_000);
    // s2 silenced in Alertmanager: left out of the notification.
    const r = await service.ingestAlertmanager(payload([amAlert('s1')]));
    expect(r).toMatchObject({ resolvedByAbsence: 1, absent: 0 });
    await service.followUp(r);
    expect(incidents.resolved.map((x) => x.alert.fingerprint)).toEqual(['s2']);
    clock.advance(60_000);
    const back = await service.ingestAlertmanager(payload([amAlert('s1'), amAlert('s2')]));
    expect(back).toMatchObject({ changed: 1 });
    await service.followUp(back);
    expect(incidents.opened.map((o) => o.alert.fingerprint)).toEqual(['s1', 's2', 's2']);
    const s2 = (await service.list({ labels: { instance: 's2' } }))[0];
    expect(s2).toMatchObject({ status: 'firing', pending: false, incidentId: 'INC-1', processed: 'firing' });
  });

  it('with an Alertmanager an absence is confirmed against it (silenced and inhibited included) before resolving', async () => {
    const am = fakeAlertmanager({
      have: [inAm('c1'), inAm('c2')],
      groups: [
        { labels: { alertname: 'GameServerDown' }, receiver: 'gameops', fingerprints: ['c1', 'c2'] },
        // Another group whose labels include the payload's: not this group.
        { labels: { alertname: 'GameServerDown', zone: 'eu' }, receiver: 'gameops', fingerprints: ['c9'] },
      ],
      started: '2026-03-01T08:00:00Z',
    });
    const { service, incidents, clock } = await setup({}, { alertmanager: am });
    await service.followUp(await service.ingestAlertmanager(payload([amAlert('c1'), amAlert('c2')])));
    clock.advance(60_000);
    const r = await service.ingestAlertmanager(payload([amAlert('c1')]));
    expect(r).toMatchObject({ resolvedByAbsence: 0, absent: 1, reconcileGroup: { receiver: 'gameops' } });
    await service.followUp(r);
    // Alertmanager still has c2 (silenced): it keeps firing.
    expect(am.asked).toContain('groups');
    expect((await service.list({ status: 'firing' })).map((a) => a.fingerprint).sort()).toEqual(['c1', 'c2']);
    // Alertmanager lost c2 for real: the next confirmation resolves it.
    am.asked.length = 0;
    const state = { have: [inAm('c1')] };
    Object.assign(
      am,
      fakeAlertmanager({
        ...state,
        groups: [{ labels: { alertname: 'GameServerDown' }, receiver: 'gameops', fingerprints: ['c1'] }],
        started: '2026-03-01T08:00:00Z',
      }),
    );
    clock.advance(60_000);
    await service.followUp(await service.ingestAlertmanager(payload([amAlert('c1')])));
    expect((await service.list({ labels: { instance: 'c2' } }))[0]).toMatchObject({
      status: 'resolved',
      resolvedBy: 'reconcile',
    });
    expect(incidents.resolved.map((x) => x.alert.fingerprint)).toEqual(['c2']);
  });

  it('reconcile keys by (fingerprint, startsAt) and resolves nothing right after an Alertmanager restart or on an empty answer', async () => {
    const state = {
      have: [] as ReturnType<typeof inAm>[],
      started: '2026-03-01T09:58:00Z',
    };
    const am = fakeAlertmanager(state);
    Object.assign(am, {
      alerts: () =>
        Promise.resolve(state.have.map((a) => ({ ...a, annotations: {}, status: { state: 'active' } }))),
      status: () => Promise.resolve({ version: 'x', uptime: state.started, clusterStatus: 'ready' }),
    });
    const { service, clock } = await setup({}, { alertmanager: am });
    const fps = Array.from({ length: 12 }, (_, i) => `r${i}`);
    await service.followUp(await service.ingestAlertmanager(payload(fps.map((f) => amAlert(f)))));
    // Started 2 minutes ago, empty: nothing resolves.
    expect((await service.reconcile()).resolved).toBe(0);
    // Long up, but empty while 12 fire: nothing resolves either.
    state.started = '2026-03-01T08:00:00Z';
    expect((await service.reconcile()).resolved).toBe(0);
    // It has all but r0, and r1 only as a newer instance (another startsAt): r0 and r1 resolve.
    clock.advance(60_000);
    state.have = [inAm('r1', '2026-03-01T10:00:30.000Z'), ...fps.slice(2).map((f) => inAm(f))];
    expect((await service.reconcile()).resolved).toBe(2);
    expect((await service.list({ status: 'resolved' })).map((a) => a.fingerprint).sort()).toEqual([
      'r0',
      'r1',
    ]);
  });

  it('caps labels and annotations at intake (recorded, never refused)', async () => {
    const { service } = await setup();
    const labels: Record<string, string> = { alertname: 'Big', instance: 'x'.repeat(5000) };
    for (let i = 0; i < 150; i++) labels[`l${String(i).padStart(3, '0')}`] = 'v';
    labels['n'.repeat(300)] = 'long name';
    const r = await service.ingestAlertmanager(
      payload([amAlert('big1', { labels, annotations: { description: 'd'.repeat(20_000) } })]),
    );
    expect(r.created).toBe(1);
    const [stored] = await service.list();
    expect(Object.keys(stored!.labels)).toHaveLength(100);
    expect(stored!.labels['alertname']).toBe('Big');
    expect(stored!.labels['instance']).toHaveLength(1024);
    expect(Object.keys(stored!.labels).every((k) => k.length <= 128)).toBe(true);
    expect(stored!.annotations['description']).toHaveLength(8192);
    expect(stored!.annotations['gameops_truncated']).toBe('labels,annotations');
    const generic = await service.ingestGeneric({ alerts: [{ name: 'G', labels: { v: 'y'.repeat(3000) } }] });
    expect(generic.created).toBe(1);
    expect((await service.list({ labels: { alertname: 'G' } }))[0]?.labels['v']).toHaveLength(1024);
  });

  it('refuses regexes that are not RE2-safe in routes, silences and windows, naming the matcher', async () => {
    await expect(setup({ routes: [{ matchers: ['instance=~"(a+)+"'] }] })).rejects.toThrow(
      'alerts.routes[0].matchers[0]',
    );
    const { service } = await setup();
    for (const bad of ['instance=~"(a|a)*"', 'instance=~"(?=a).*"', 'instance=~".*-.*-.*-.*-prod"'])
      await expect(
        service.windows.create({ matchers: [bad], duration: '1h', comment: 'x' }, alice),
      ).rejects.toThrow(/matchers\[0\]: .* is refused/);
    await expect(
      service.silences.create({ matchers: ['instance=~"(.*,)*x"'], duration: '1h', comment: 'x' }, alice),
    ).rejects.toBeInstanceOf(InputError);
  });

  it('two concurrent generic posts of the same undated alert are one instance', async () => {
    const { service, clock } = await setup();
    const body = { alerts: [{ name: 'Lag', labels: { shard: '3' } }] };
    const first = service.ingestGeneric(body);
    clock.advance(5);
    const second = service.ingestGeneric(body);
    await Promise.all([first, second]);
    expect(await service.list()).toHaveLength(1);
  });

  it('processes a big group with one link update per batch and yields to the event loop meanwhile', async () => {
    const { service, incidents, store } = await setup();
    const fps = Array.from({ length: 300 }, (_, i) => `y${i}`);
    await service.ingestAlertmanager(payload(fps.map((f) => amAlert(f))));
    let openedWhenTimerRan = -1;
    setImmediate(() => {
      openedWhenTimerRan = incidents.opened.length;
    });
    const r = await service.processPending();
    expect(r).toMatchObject({ linked: 300, failed: 0 });
    expect(openedWhenTimerRan).toBeGreaterThan(0);
    expect(openedWhenTimerRan).toBeLessThan(300);
    expect(await store.alerts.pending(10)).toEqual([]);
  });

  it('the first alert of a group is linked even when a later one of the group fails', async () => {
    const { service, incidents } = await setup();
    await service.ingestAlertmanager(payload([amAlert('z1'), amAlert('z2')]));
    const open = incidents.openOrJoin;
    let calls = 0;
    incidents.openOrJoin = (input) =>
      ++calls === 2 ? Promise.reject(new UnavailableError('boom')) : open(input);
    expect(await service.processPending()).toMatchObject({ linked: 1, failed: 1 });
    expect((await service.list({ labels: { instance: 'z1' } }))[0]).toMatchObject({ incidentId: 'INC-1' });
  });
});

describe('review fixes with the incident service', () => {
  async function real() {
    const clock = new ManualClock('2026-03-01T10:00:00Z');
    const store = await openStore({ ...sqlitePlace(cleanups).options, clock });
    stores.push(store);
    const config = configOf();
    const log = createLogger('silent');
    const pager = new FakePager();
    const incidents = createIncidentService({
      config,
      store,
      clock,
      log,
      pager,
      runs: () => Promise.reject(new Error('no runs')),
    });
    const service = createAlertService({ config, store, clock, log, incidents });
    return { clock, store, incidents, service };
  }

  it('a still-firing alert re-sent after its incident was resolved by hand opens a new incident', async () => {
    const { service, incidents, clock } = await real();
    await service.followUp(await service.ingestAlertmanager(payload([amAlert('h1')])));
    expect((await service.list())[0]?.incidentId).toBe('INC-1');
    await incidents.transition('INC-1', 'resolved', alice, 'fixed, we think');
    clock.advance(60_000);
    await service.followUp(await service.ingestAlertmanager(payload([amAlert('h1')])));
    const [alert] = await service.list();
    expect(alert).toMatchObject({ status: 'firing', pending: false });
    expect(alert?.incidentId).not.toBe('INC-1');
    expect((await incidents.list()).some((i) => i.id === alert?.incidentId && i.status !== 'resolved')).toBe(
      true,
    );
  });

  it('an alert that resolves before it was linked tells its group open incident', async () => {
    const { service, incidents, store } = await real();
    await service.followUp(await service.ingestAlertmanager(payload([amAlert('q1')])));
    // q2 arrives and resolves before processing ever linked it (a crash in between).
    await store.alerts.upsertBatch({
      source: 'alertmanager',
      groupKey: '{}:{alertname="GameServerDown"}',
      snapshot: false,
      alerts: [
        {
          fingerprint: 'q2',
          startsAt: '2026-03-01T09:59:00.123Z',
          status: 'resolved',
          endsAt: '2026-03-01T10:00:00.000Z',
          name: 'GameServerDown',
          labels: { alertname: 'GameServerDown', instance: 'q2', severity: 'critical' },
          annotations: {},
        },
      ],
    });
    expect(await service.processPending()).toMatchObject({ resolved: 1 });
    const timeline = await incidents.timeline('INC-1');
    expect(timeline.some((e) => e.kind === 'alert-resolved' && JSON.stringify(e).includes('q2'))).toBe(true);
  });
});
