/**
 * Alert intake reliability (issue #5, "Reliability"): a real Alertmanager sends to a real `gameops serve`;
 * 1,000 alerts over 10 groups are pushed while gameops is killed (SIGKILL) mid-stream and restarted on
 * the same port and data directory. Once Alertmanager's retries have settled, every alert Alertmanager
 * has is in gameops (by fingerprint) and each group has exactly one incident (no duplicate).
 *
 * And the receiver's side of the contract in-process: a store that cannot write answers 5xx (which
 * Alertmanager retries), never 4xx (which it drops), and keeps nothing half-way.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { bootstrap, shutdown, type Resources } from '../../src/app/index.ts';
import { buildServer } from '../../src/server/index.ts';
import { openStore, type Store } from '../../src/store/index.ts';
import { createToken } from '../support/auth.ts';
import {
  freePort,
  getAlerts,
  postAlerts,
  startAlertmanager,
  type AlertInput,
  type AlertmanagerHandle,
} from '../harness/index.ts';
import {
  alertmanagerConfig,
  gameops,
  startServe,
  startWebhookSink,
  waitFor,
  writePrivate,
  type ServeProcess,
  type WebhookSink,
} from './ops.support.ts';

const GROUPS = 10;
const PER_GROUP = 100;
const BATCHES = 20;

interface GameopsAlert {
  fingerprint: string;
  labels: Record<string, string>;
  status: string;
  incidentId?: string;
}

interface GameopsIncident {
  id: string;
  title: string;
}

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

/** A gameops config that pages one person through a webhook receiver (pages must go somewhere). */
function intakeConfig(dataDir: string, hookUrl: string): string {
  return `service: { name: intake-game, environment: test }
database: { dataDir: "${dataDir}" }
notifications:
  allowPrivate: ['127.0.0.1']
  channels:
    - { name: hook, kind: webhook, url: "${hookUrl}" }
people:
  - { id: alice, name: Alice, contacts: [hook] }
oncall:
  policies:
    - { name: intake, levels: [{ after: 0s, targets: [{ person: alice }] }] }
`;
}

describe('alert intake from a real Alertmanager, gameops killed mid-stream', () => {
  it('has every alert Alertmanager has and one incident per group after a kill -9 and restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-e2e-intake-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const dataDir = join(dir, 'data');
    const hooks: WebhookSink = await startWebhookSink();
    cleanups.push(() => hooks.close());
    const configPath = writePrivate(dir, 'gameops.yaml', intakeConfig(dataDir, hooks.url));
    const store = await openStore({ dataDir });
    let responderToken: string;
    let adminToken: string;
    try {
      responderToken = await createToken(store, 'responder', 'alertmanager');
      adminToken = await createToken(store, 'admin', 'e2e-admin');
    } finally {
      await store.close();
    }
    const port = await freePort();
    const alertmanager: AlertmanagerHandle = await startAlertmanager({
      configYaml: alertmanagerConfig({
        gameopsUrl: `http://127.0.0.1:${port}`,
        credentialsFile: writePrivate(dir, 'am-token', responderToken),
        groupBy: ['group'],
        groupInterval: '1s',
      }),
    });
    cleanups.push(() => alertmanager.stop());
    const logFile = join(dir, 'serve.log');
    let serve: ServeProcess = await startServe({ config: configPath, port, logFile });
    cleanups.push(() => serve.stop());

    // 1,000 alerts in 20 batches, round-robin over the 10 groups; gameops dies after the 8th batch and
    // comes back while the rest are still arriving.
    const startsAt = new Date(Date.now() - 60_000);
    const all: AlertInput[] = [];
    for (let i = 0; i < GROUPS * PER_GROUP; i++)
      all.push({
        labels: {
          alertname: 'PlayerShardLag',
          group: `g${i % GROUPS}`,
          shard: `shard-${i}`,
          severity: 'warning',
        },
        annotations: { summary: `shard ${i} lags behind` },
        startsAt,
      });
    const api = async <T>(path: string): Promise<T> => {
      const response = await fetch(`${serve.url}${path}`, {
        headers: { authorization: `Bearer ${adminToken}` },
        signal: AbortSignal.timeout(10_000),
      });
      const text = await response.text();
      if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status}: ${text}`);
      return JSON.parse(text) as T;
    };
    const gameopsAlerts = async (): Promise<GameopsAlert[]> =>
      (await api<{ alerts: GameopsAlert[] }>('/api/alerts?limit=1000')).alerts;
    const perBatch = all.length / BATCHES;
    let heldBeforeKill = 0;
    let restarting: Promise<ServeProcess> | undefined;
    for (let b = 0; b < BATCHES; b++) {
      await postAlerts(alertmanager.url, all.slice(b * perBatch, (b + 1) * perBatch));
      if (b === 7) {
        // Mid-stream: gameops has part of the alerts at most.
        heldBeforeKill = (await gameopsAlerts()).length;
        await serve.kill();
        restarting = delay(1_500).then(() => startServe({ config: configPath, port, logFile }));
      }
      await delay(150);
    }
    serve = await restarting!;
    expect(heldBeforeKill).toBeLessThan(GROUPS * PER_GROUP);

    // Alertmanager's retries settle: everything it has, gameops has, each alert linked to its incident.
    const amAlerts = await getAlerts(alertmanager.url);
    expect(amAlerts).toHaveLength(GROUPS * PER_GROUP);
    const expected = new Set(amAlerts.map((a) => a.fingerprint));
    const settled = await waitFor(
      'gameops to hold every alert Alertmanager has, each in an incident',
      async () => {
        const mine = await gameopsAlerts();
        const held = new Set(mine.filter((a) => a.incidentId !== undefined).map((a) => a.fingerprint));
        return [...expected].every((f) => held.has(f)) ? mine : undefined;
      },
      {
        timeoutMs: 60_000,
        everyMs: 500,
        detail: () => `--- gameops log ---\n${serve.logTail(30)}`,
      },
    );
    // Nothing extra, nothing twice (one row per fingerprint: all share one startsAt).
    expect(settled).toHaveLength(GROUPS * PER_GROUP);
    expect(new Set(settled.map((a) => a.fingerprint)).size).toBe(GROUPS * PER_GROUP);
    expect(settled.every((a) => a.status === 'firing')).toBe(true);

    // Exactly one incident per group.
    const incidentsByGroup = new Map<string, Set<string>>();
    for (const a of settled) {
      const group = a.labels['group']!;
      const set = incidentsByGroup.get(group) ?? new Set<string>();
      set.add(a.incidentId!);
      incidentsByGroup.set(group, set);
    }
    expect(incidentsByGroup.size).toBe(GROUPS);
    for (const [group, ids] of incidentsByGroup) expect([group, ids.size]).toEqual([group, 1]);
    const incidents = (await api<{ incidents: GameopsIncident[] }>('/api/incidents?limit=1000')).incidents;
    expect(incidents).toHaveLength(GROUPS);
    expect(new Set(incidents.map((i) => i.id))).toEqual(
      new Set([...incidentsByGroup.values()].flatMap((ids) => [...ids])),
    );
  }, 90_000);
});

describe('alert intake when the store cannot write', () => {
  const payload = (n: number) => ({
    version: '4',
    groupKey: '{}:{alertname="DiskFull"}',
    truncatedAlerts: 0,
    status: 'firing',
    receiver: 'gameops',
    groupLabels: { alertname: 'DiskFull' },
    commonLabels: { alertname: 'DiskFull' },
    commonAnnotations: {},
    externalURL: 'http://alertmanager.example:9093',
    alerts: Array.from({ length: n }, (_, i) => ({
      status: 'firing',
      labels: { alertname: 'DiskFull', instance: `db-${i}` },
      annotations: { summary: `db-${i} disk full` },
      startsAt: '2026-03-02T09:00:00Z',
      endsAt: '0001-01-01T00:00:00Z',
      generatorURL: 'http://prometheus.example:9090/graph',
      fingerprint: `f${i.toString(16).padStart(15, '0')}`,
    })),
  });

  async function serverWith(fail: (store: Store) => Store): Promise<{
    resources: Resources;
    post: (body: unknown) => Promise<{ status: number; body: string }>;
    store: Store;
  }> {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-e2e-intake-fail-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'gameops.yaml');
    writeFileSync(
      path,
      `service: { name: intake-fail, environment: test }\ndatabase: { dataDir: "${join(dir, 'data')}" }\n`,
    );
    const resources = await bootstrap({ configPath: path, store: 'required', logLevel: 'silent' });
    cleanups.push(() => shutdown(resources));
    const store = resources.store!;
    const token = await createToken(store, 'responder', 'alertmanager');
    resources.store = fail(store);
    const server = await buildServer(resources);
    cleanups.push(() => server.close());
    return {
      resources,
      store,
      post: async (body) => {
        const response = await server.app.inject({
          method: 'POST',
          url: '/api/alerts/alertmanager',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          payload: JSON.stringify(body),
        });
        return { status: response.statusCode, body: response.body };
      },
    };
  }

  it('answers 5xx, never 4xx, when a write fails, and keeps nothing; the retry then lands', async () => {
    let failing = true;
    const { post, store } = await serverWith((real) => ({
      ...real,
      alerts: {
        ...real.alerts,
        upsertBatch: (batch) =>
          failing
            ? Promise.reject(new Error('SQLITE_IOERR: disk I/O error'))
            : real.alerts.upsertBatch(batch),
      },
    }));
    const refused = await post(payload(3));
    expect(refused.status).toBeGreaterThanOrEqual(500);
    expect(refused.status).toBeLessThan(600);
    expect(await store.alerts.list()).toEqual([]);
    // Alertmanager retries the same payload once the store is back.
    failing = false;
    const accepted = await post(payload(3));
    expect(accepted.status).toBeGreaterThanOrEqual(200);
    expect(accepted.status).toBeLessThan(300);
    expect((await store.alerts.list()).map((a) => a.fingerprint).sort()).toEqual([
      'f000000000000000',
      'f000000000000001',
      'f000000000000002',
    ]);
  });

  it('answers 5xx when the store is gone altogether (closed under it)', async () => {
    const { post, store } = await serverWith((real) => real);
    await store.close();
    const refused = await post(payload(1));
    expect(refused.status).toBeGreaterThanOrEqual(500);
    expect(refused.status).toBeLessThan(600);
  });

  it('answers 4xx for a payload that is wrong (it would be wrong on every retry), naming the field', async () => {
    const { post, store } = await serverWith((real) => real);
    const bad = payload(2);
    (bad.alerts[1] as { startsAt: string }).startsAt = 'yesterday';
    const refused = await post(bad);
    expect(refused.status).toBe(400);
    expect(refused.body).toContain('alerts[1].startsAt');
    expect(await store.alerts.list()).toEqual([]);
  });
});

describe('gameops serve with an alert route it cannot use', () => {
  it('does not start (Alertmanager would otherwise get a refusal for every webhook), naming the field', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gameops-e2e-intake-badroute-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const path = writePrivate(
      dir,
      'gameops.yaml',
      `service: { name: intake-bad, environment: test }
database: { dataDir: "${join(dir, 'data')}" }
alerts:
  routes:
    - { matchers: ['alertname="ServerDown"', 'instance=~"(game"'], severity: P1 }
`,
    );
    const port = await freePort();
    const result = await gameops(['serve', '--port', String(port), '--config', path]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('alerts.routes[0].matchers[1]');
    // It never listened.
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });
});
