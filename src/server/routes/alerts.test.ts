import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { authHeaders, bearer } from '../../../test/support/auth.ts';
import { postAlerts, startAlertmanager } from '../../../test/harness/index.ts';
import { createAlertService } from '../../alerts/index.ts';
import { createAlertmanagerClient } from '../../connectors/alertmanager.ts';
import { bootstrap, shutdown, type Resources } from '../../app/index.ts';
import type { Ops } from '../../app/ops.ts';
import { InputError, ManualClock, systemClock, UnavailableError } from '../../core/index.ts';
import type { AlertIncidents } from '../../ops/contracts.ts';
import type { Store } from '../../store/index.ts';
import { buildServer, type GameopsServer } from '../index.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Records what intake asks of incidents: one incident per group key. */
function fakeIncidents() {
  const opened: string[] = [];
  const groups = new Map<string, string>();
  const incidents: AlertIncidents = {
    openOrJoin: (input) => {
      opened.push(input.alert.fingerprint);
      const id = groups.get(input.groupKey) ?? `INC-${groups.size + 1}`;
      groups.set(input.groupKey, id);
      return Promise.resolve({ incidentId: id, created: opened.length === 1 });
    },
    alertResolved: () => Promise.resolve(),
  };
  return { incidents, opened };
}

async function serverWith(options: { storeDown?: boolean; realClock?: boolean } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'gameops-alerts-api-'));
  dirs.push(dir);
  const path = join(dir, 'gameops.yaml');
  writeFileSync(
    path,
    [
      'service: { name: test-game, environment: test }',
      `database: { dataDir: ${join(dir, 'data')} }`,
      'alerts:',
      `  maxPayloadBytes: ${options.realClock ? 1024 * 1024 : 4096}`,
      '  heartbeats: [{ name: nightly-backup, every: 1h }]',
      '',
    ].join('\n'),
  );
  const clock = options.realClock ? systemClock : new ManualClock('2026-03-01T10:00:00Z');
  const resources: Resources = await bootstrap({
    configPath: path,
    store: 'required',
    logLevel: 'silent',
    clock,
  });
  const store = resources.store!;
  const { incidents, opened } = fakeIncidents();
  const alertStore: Store = options.storeDown
    ? {
        ...store,
        alerts: {
          ...store.alerts,
          upsertBatch: () =>
            Promise.reject(new UnavailableError('PostgreSQL store at postgres://db: connection refused')),
        },
      }
    : store;
  const alerts = createAlertService({
    config: resources.config,
    store: alertStore,
    clock,
    log: resources.log,
    incidents,
  });
  // The other services are not this test's subject: openOps returns what is already opened.
  resources.ops = { alerts, tick: (now: Date) => alerts.tick(now) } as unknown as Ops;
  const server: GameopsServer = await buildServer(resources);
  const responder = await authHeaders(resources, 'responder');
  return {
    resources,
    server,
    responder,
    opened,
    /** Waits for the processing the intake started after answering. */
    settle: () => alerts.processPending(),
    close: async () => {
      await server.close();
      await shutdown(resources);
    },
  };
}

function amPayload(fps: string[], overrides: Record<string, unknown> = {}) {
  return {
    version: '4',
    groupKey: '{}:{alertname="Down"}',
    truncatedAlerts: 0,
    status: 'firing',
    receiver: 'gameops',
    groupLabels: { alertname: 'Down' },
    commonLabels: {},
    commonAnnotations: {},
    externalURL: 'http://am:9093',
    alerts: fps.map((fp) => ({
      status: 'firing',
      labels: { alertname: 'Down', instance: fp },
      annotations: {},
      startsAt: '2026-03-01T09:00:00Z',
      endsAt: '0001-01-01T00:00:00Z',
      generatorURL: '',
      fingerprint: fp,
    })),
    ...overrides,
  };
}

describe('POST /api/alerts/alertmanager', () => {
  it('stores before answering, then links; the same payload twice changes nothing', async () => {
    const { server, responder, opened, settle, close } = await serverWith();
    try {
      const res = await server.app.inject({
        method: 'POST',
        url: '/api/alerts/alertmanager',
        headers: responder,
        payload: amPayload(['a1', 'a2']),
      });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({
        received: 2,
        created: 2,
        changed: 0,
        unchanged: 0,
        resolvedByAbsence: 0,
        absent: 0,
        truncated: 0,
      });
      await settle();
      expect(opened.sort()).toEqual(['a1', 'a2']);
      const again = await server.app.inject({
        method: 'POST',
        url: '/api/alerts/alertmanager',
        headers: responder,
        payload: amPayload(['a1', 'a2']),
      });
      expect(again.json()).toMatchObject({ created: 0, changed: 0, unchanged: 2 });
      await settle();
      expect(opened).toHaveLength(2);
      const list = await server.app.inject({
        method: 'GET',
        url: '/api/alerts?status=firing&label=instance=a2',
        headers: responder,
      });
      expect(list.statusCode).toBe(200);
      const [alert] = list.json<{ alerts: Array<{ id: string; incidentId: string }> }>().alerts;
      expect(alert?.incidentId).toBe('INC-1');
      const one = await server.app.inject({
        method: 'GET',
        url: `/api/alerts/${alert!.id}`,
        headers: responder,
      });
      expect(one.json()).toMatchObject({ fingerprint: 'a2', status: 'firing', pending: false });
      expect(
        (await server.app.inject({ method: 'GET', url: '/api/alerts/nope', headers: responder })).statusCode,
      ).toBe(404);
    } finally {
      await close();
    }
  });

  it('401 without or with a bad token; 400 naming the field and 413 naming the limit, nothing stored', async () => {
    const { server, responder, close } = await serverWith();
    try {
      const anonymous = await server.app.inject({
        method: 'POST',
        url: '/api/alerts/alertmanager',
        payload: amPayload(['x']),
      });
      expect(anonymous.statusCode).toBe(401);
      const bad = await server.app.inject({
        method: 'POST',
        url: '/api/alerts/alertmanager',
        headers: bearer('gops_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'),
        payload: amPayload(['x']),
      });
      expect(bad.statusCode).toBe(401);

      const malformed = amPayload(['x', 'y']);
      (malformed.alerts[1] as Record<string, unknown>)['startsAt'] = 'soon';
      const res400 = await server.app.inject({
        method: 'POST',
        url: '/api/alerts/alertmanager',
        headers: responder,
        payload: malformed,
      });
      expect(res400.statusCode).toBe(400);
      expect(res400.json()).toMatchObject({
        error: { code: 'input', details: { field: 'alerts[1].startsAt' } },
      });
      expect(res400.json<{ error: { message: string } }>().error.message).toContain('alerts[1].startsAt');

      const notJson = await server.app.inject({
        method: 'POST',
        url: '/api/alerts/alertmanager',
        headers: { ...responder, 'content-type': 'application/json' },
        payload: '{"version": "4",',
      });
      expect(notJson.statusCode).toBe(400);

      const huge = amPayload(Array.from({ length: 40 }, (_, i) => `fp${i}`));
      const res413 = await server.app.inject({
        method: 'POST',
        url: '/api/alerts/alertmanager',
        headers: responder,
        payload: huge,
      });
      expect(res413.statusCode).toBe(413);
      expect(res413.json<{ error: { message: string } }>().error.message).toContain(
        'alerts.maxPayloadBytes (4096 bytes)',
      );

      const list = await server.app.inject({ method: 'GET', url: '/api/alerts', headers: responder });
      expect(list.json()).toEqual({ alerts: [] });
    } finally {
      await close();
    }
  });

  it('a store that is down answers 503 with Retry-After, never 4xx (Alertmanager retries)', async () => {
    const { server, responder, close } = await serverWith({ storeDown: true });
    try {
      const res = await server.app.inject({
        method: 'POST',
        url: '/api/alerts/alertmanager',
        headers: responder,
        payload: amPayload(['s']),
      });
      expect(res.statusCode).toBe(503);
      expect(res.headers['retry-after']).toBe('5');
      expect(res.json<{ error: { message: string } }>().error.message).toContain('connection refused');
      const generic = await server.app.inject({
        method: 'POST',
        url: '/api/alerts',
        headers: responder,
        payload: { alerts: [{ name: 'x' }] },
      });
      expect(generic.statusCode).toBe(503);
    } finally {
      await close();
    }
  });

  it('services that cannot be opened answer 503, not 4xx (Alertmanager would drop the notification)', async () => {
    const { server, resources, responder, close } = await serverWith();
    try {
      resources.ops = undefined;
      resources.opsOpening = Promise.reject(
        new InputError('alerts.routes[0].matchers[0]: "x" is not a matcher'),
      );
      resources.opsOpening.catch(() => undefined);
      const res = await server.app.inject({
        method: 'POST',
        url: '/api/alerts/alertmanager',
        headers: responder,
        payload: amPayload(['z']),
      });
      expect(res.statusCode).toBe(503);
      expect(res.headers['retry-after']).toBe('5');
      expect(res.json<{ error: { message: string } }>().error.message).toContain(
        'alert intake is not available',
      );
    } finally {
      resources.opsOpening = undefined;
      await close();
    }
  });

  it('a viewer may read but not post alerts', async () => {
    const { server, resources, close } = await serverWith();
    try {
      const viewer = await authHeaders(resources, 'viewer');
      expect(
        (
          await server.app.inject({
            method: 'POST',
            url: '/api/alerts/alertmanager',
            headers: viewer,
            payload: amPayload(['v']),
          })
        ).statusCode,
      ).toBe(403);
      expect(
        (await server.app.inject({ method: 'GET', url: '/api/alerts', headers: viewer })).statusCode,
      ).toBe(200);
      const spec = await server.app.inject({ method: 'GET', url: '/api/openapi.json' });
      expect(spec.statusCode).toBe(200);
      expect(Object.keys(spec.json<{ paths: Record<string, unknown> }>().paths)).toEqual(
        expect.arrayContaining([
          '/api/alerts/alertmanager',
          '/api/alerts/silences/{id}',
          '/api/heartbeats/{name}',
        ]),
      );
    } finally {
      await close();
    }
  });
});

describe('generic alerts, suppressions, silences and heartbeats over HTTP', () => {
  it('posts generic alerts, manages suppression windows, pings heartbeats', async () => {
    const { server, responder, opened, settle, close } = await serverWith();
    try {
      const posted = await server.app.inject({
        method: 'POST',
        url: '/api/alerts',
        headers: responder,
        payload: { alerts: [{ name: 'QueueBacklog', labels: { queue: 'mm' }, summary: 'backlog' }] },
      });
      expect(posted.statusCode).toBe(200);
      expect(posted.json()).toMatchObject({ created: 1 });
      await settle();
      expect(opened).toHaveLength(1);
      const typo = await server.app.inject({
        method: 'POST',
        url: '/api/alerts',
        headers: responder,
        payload: { alerts: [{ nme: 'x' }] },
      });
      expect(typo.statusCode).toBe(400);
      expect(typo.json<{ error: { message: string } }>().error.message).toMatch(/alerts\[0\]/);

      const created = await server.app.inject({
        method: 'POST',
        url: '/api/alerts/suppressions',
        headers: responder,
        payload: { name: 'db work', matchers: ['team="db"'], duration: '1h', comment: 'planned' },
      });
      expect(created.statusCode).toBe(201);
      const window = created.json<{ id: string }>();
      expect(window).toMatchObject({ origin: 'adhoc', active: true, createdBy: 'test-responder' });
      const listed = await server.app.inject({
        method: 'GET',
        url: '/api/alerts/suppressions',
        headers: responder,
      });
      expect(listed.json<{ windows: unknown[] }>().windows).toHaveLength(1);
      const badWindow = await server.app.inject({
        method: 'POST',
        url: '/api/alerts/suppressions',
        headers: responder,
        payload: { matchers: ['team=="db"'], duration: '1h', comment: 'x' },
      });
      expect(badWindow.statusCode).toBe(400);
      expect(badWindow.json<{ error: { message: string } }>().error.message).toContain('matchers[0]');
      const ended = await server.app.inject({
        method: 'DELETE',
        url: `/api/alerts/suppressions/${window.id}`,
        headers: responder,
      });
      expect(ended.json()).toMatchObject({ active: false, endedBy: 'test-responder' });

      const silences = await server.app.inject({
        method: 'GET',
        url: '/api/alerts/silences',
        headers: responder,
      });
      expect(silences.statusCode).toBe(503);
      expect(silences.json<{ error: { message: string } }>().error.message).toContain(
        'no Alertmanager is configured',
      );

      const ping = await server.app.inject({
        method: 'POST',
        url: '/api/heartbeats/nightly-backup',
        headers: responder,
      });
      expect(ping.statusCode).toBe(200);
      expect(ping.json()).toMatchObject({
        name: 'nightly-backup',
        status: 'up',
        pings: 1,
        lastPingAt: '2026-03-01T10:00:00.000Z',
      });
      const unknown = await server.app.inject({
        method: 'POST',
        url: '/api/heartbeats/nope',
        headers: responder,
      });
      expect(unknown.statusCode).toBe(404);
      const beats = await server.app.inject({ method: 'GET', url: '/api/heartbeats', headers: responder });
      expect(beats.json<{ heartbeats: Array<{ name: string }> }>().heartbeats.map((h) => h.name)).toEqual([
        'nightly-backup',
      ]);
    } finally {
      await close();
    }
  });
});

describe('a real Alertmanager delivering to gameops', () => {
  it(
    'every alert it holds reaches gameops, truncated groups included, and resolves follow',
    { timeout: 90_000 },
    async () => {
      const { server, resources, responder, opened, settle, close } = await serverWith({ realClock: true });
      try {
        await server.app.listen({ host: '127.0.0.1', port: 0 });
        const address = server.app.server.address();
        const port = typeof address === 'object' && address ? address.port : 0;
        const token = responder.authorization.slice('Bearer '.length);
        // Alertmanager's receiver is gameops: groups by alertname, at most 20 alerts per payload.
        const live = await startAlertmanager({
          configYaml: [
            'route:',
            '  receiver: gameops',
            "  group_by: ['alertname']",
            '  group_wait: 0s',
            '  group_interval: 1s',
            '  repeat_interval: 1h',
            'receivers:',
            '  - name: gameops',
            '    webhook_configs:',
            `      - url: http://127.0.0.1:${port}/api/alerts/alertmanager`,
            '        send_resolved: true',
            '        max_alerts: 20',
            '        http_config:',
            `          authorization: { credentials: "${token}" }`,
            '',
          ].join('\n'),
        });
        try {
          // The service reconciles against this Alertmanager.
          const alerts = createAlertService({
            config: resources.config,
            store: resources.store!,
            clock: systemClock,
            log: resources.log,
            incidents: {
              openOrJoin: (input) => {
                opened.push(input.alert.fingerprint);
                return Promise.resolve({ incidentId: `INC-${input.groupKey.length}`, created: false });
              },
              alertResolved: () => Promise.resolve(),
            },
            alertmanager: createAlertmanagerClient({ url: live.url }),
          });
          resources.ops = { alerts, tick: (now: Date) => alerts.tick(now) } as unknown as Ops;
          const groups = { GameopsE2eA: 10, GameopsE2eB: 25, GameopsE2eC: 5 };
          await postAlerts(
            live.url,
            Object.entries(groups).flatMap(([name, n]) =>
              Array.from({ length: n }, (_, i) => ({ labels: { alertname: name, instance: `i${i}` } })),
            ),
          );
          const firing = async () => (await alerts.list({ status: 'firing', limit: 1000 })).length;
          await until(async () => (await firing()) === 40, 'all 40 alerts firing in gameops', live.logFile);
          await alerts.processPending();
          expect(new Set(opened).size).toBe(40);
          const stored = await alerts.list({ limit: 1000 });
          // Every payload of group B carries 20 of its 25 alerts (max_alerts; truncatedAlerts: 5): the other 5
          // can only have come from reconciling the truncated group against GET /api/v2/alerts.
          expect(stored.filter((a) => a.name === 'GameopsE2eB')).toHaveLength(25);

          await postAlerts(
            live.url,
            Array.from({ length: 4 }, (_, i) => ({
              labels: { alertname: 'GameopsE2eA', instance: `i${i}` },
              startsAt: stored.find((a) => a.name === 'GameopsE2eA' && a.labels['instance'] === `i${i}`)!
                .startsAt,
              endsAt: new Date(),
            })),
          );
          await until(
            async () => (await firing()) === 36,
            'the 4 resolved alerts resolved in gameops',
            live.logFile,
          );
        } finally {
          await live.stop();
        }
        await settle();
      } finally {
        await close();
      }
    },
  );
});

/** Polls `check` (a real Alertmanager delivers on its own schedule) for up to 30 s. */
async function until(check: () => Promise<boolean>, what: string, logFile: string): Promise<void> {
  for (let i = 0; i < 150; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(
    `timed out waiting for: ${what}; Alertmanager log:\n${readFileSync(logFile, 'utf8').slice(-3000)}`,
  );
}
