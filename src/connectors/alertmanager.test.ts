import { randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closedPort,
  createSilence,
  postAlerts,
  services,
  startSilentServer,
  type SilentServerHandle,
} from '../../test/harness/index.ts';
import { testConfig } from '../checks/test-support.ts';
import type { AlertmanagerConfig } from '../config/index.ts';
import { NotFoundError, secret, UnavailableError } from '../core/index.ts';
import { createAlertmanagerClient } from './alertmanager.ts';
import type { HttpCredentials } from './http-auth.ts';

describe('Alertmanager connector (shared Alertmanager, API v2)', () => {
  const client = () =>
    createAlertmanagerClient(
      testConfig({ alertmanager: { url: services().alertmanager.url } }).alertmanager!,
    );

  it('returns active alerts with the fields gameops uses, not silenced ones', async () => {
    const { url } = services().alertmanager;
    const run = randomUUID();
    await postAlerts(url, [
      {
        labels: { alertname: 'GameopsConnectorTest', run, instance: 'a', severity: 'warning' },
        annotations: { summary: 'visible', runbook_url: 'https://runbooks.example/a' },
        generatorURL: 'http://prometheus.example/graph',
      },
      { labels: { alertname: 'GameopsConnectorTest', run, instance: 'b', severity: 'critical' } },
    ]);
    await createSilence(url, [
      { name: 'run', value: run },
      { name: 'instance', value: 'b' },
    ]);
    // Alertmanager applies silences asynchronously; poll briefly until the silenced alert drops out.
    let mine: Awaited<ReturnType<ReturnType<typeof client>['alerts']>> = [];
    for (let i = 0; i < 50; i++) {
      mine = (await client().alerts()).filter((a) => a.labels['run'] === run);
      if (mine.length === 1) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({
      labels: { alertname: 'GameopsConnectorTest', instance: 'a', severity: 'warning' },
      annotations: { summary: 'visible', runbook_url: 'https://runbooks.example/a' },
      generatorURL: 'http://prometheus.example/graph',
      status: { state: 'active' },
    });
    expect(mine[0]?.fingerprint).toMatch(/^[0-9a-f]+$/);
    const all = (await client().alerts({ silenced: true })).filter((a) => a.labels['run'] === run);
    expect(all).toHaveLength(2);
  });

  it('reads the version and the start instant (uptime) from /api/v2/status', async () => {
    const status = await client().status();
    expect(status.version).toMatch(/^\d+\.\d+/);
    expect(Number.isNaN(Date.parse(status.uptime ?? ''))).toBe(false);
  });

  it('lists alerts by notification group (labels, receiver, alerts) from /api/v2/alerts/groups', async () => {
    const { url } = services().alertmanager;
    const run = randomUUID();
    await postAlerts(url, [{ labels: { alertname: 'GameopsGroupsTest', run, instance: 'g1' } }]);
    const groups = await client().alertGroups({ filter: [`run="${run}"`], silenced: true, inhibited: true });
    expect(groups).toHaveLength(1);
    expect(groups[0]?.receiver.name).toBe('null');
    expect(groups[0]?.labels).toEqual({});
    expect(groups[0]?.alerts.map((a) => a.labels['instance'])).toEqual(['g1']);
  });

  it('a non-2xx answer is an UnavailableError with the status and the start of the body', async () => {
    const bad = createAlertmanagerClient(
      testConfig({ alertmanager: { url: `${services().alertmanager.url}/no-such-prefix` } }).alertmanager!,
    );
    const err = await bad.alerts().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/GET \/no-such-prefix\/api\/v2\/alerts answered 404/);
  });
});

describe('Alertmanager connector against a stub HTTP server (Alertmanager has no bearer auth of its own)', () => {
  let server: Server;
  let url: string;
  let seen: IncomingHttpHeaders | undefined;
  let body: string | ((headers: IncomingHttpHeaders) => string) = '[]';
  let status = 200;
  beforeAll(async () => {
    server = createServer((req, res) => {
      seen = req.headers;
      res
        .writeHead(status, { 'content-type': 'application/json' })
        .end(typeof body === 'function' ? body(req.headers) : body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('sends the bearer token and never shows it in errors', async () => {
    const token = `tok-${randomUUID()}`;
    const am = createAlertmanagerClient(
      testConfig({ alertmanager: { url, bearerToken: token } }).alertmanager!,
    );
    body = '[]';
    status = 200;
    expect(await am.alerts()).toEqual([]);
    expect(seen?.authorization).toBe(`Bearer ${token}`);
    status = 401;
    body = `invalid token ${token} ${'x'.repeat(400)}`;
    const err = await am.alerts().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    const message = (err as Error).message;
    expect(message).toContain('answered 401');
    expect(message).not.toContain(token);
    expect(message.length).toBeLessThan(400);
  });

  /** A config the config file cannot express (the schema refuses it), built by hand to test the defences. */
  function withCredentials(credentials: HttpCredentials, base = url): AlertmanagerConfig {
    return { ...testConfig({ alertmanager: { url } }).alertmanager!, url: base, ...credentials };
  }

  it('sends Basic credentials and never shows the password nor its base64 form, even when echoed back', async () => {
    const password = `pw-${randomUUID()}`;
    const encoded = Buffer.from(`ops:${password}`).toString('base64');
    const am = createAlertmanagerClient(
      testConfig({ alertmanager: { url, username: 'ops', password } }).alertmanager!,
    );
    body = '[]';
    status = 200;
    expect(await am.alerts()).toEqual([]);
    expect(seen?.authorization).toBe(`Basic ${encoded}`);

    // A hostile or careless proxy echoing the request back.
    status = 401;
    body = (headers) => `denied: authorization=${headers.authorization ?? ''} password=${password}`;
    const err = await am.alerts().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    const message = (err as Error).message;
    expect(message).toContain('answered 401');
    expect(message).toContain('authorization=');
    expect(message).not.toContain(password);
    expect(message).not.toContain(encoded);
    expect(JSON.stringify((err as UnavailableError).details)).not.toContain(encoded);
  });

  it('prefers the bearer token should both be configured (the config refuses it), and still masks the password', async () => {
    const token = `tok-${randomUUID()}`;
    const password = `pw-${randomUUID()}`;
    const am = createAlertmanagerClient(
      withCredentials({
        username: 'ops',
        password: secret(password, 'test'),
        bearerToken: secret(token, 'test'),
      }),
    );
    body = '[]';
    status = 200;
    await am.alerts();
    expect(seen?.authorization).toBe(`Bearer ${token}`);
    status = 500;
    body = `${token} ${password}`;
    const message = await am.alerts().then(
      () => '',
      (e: unknown) => (e as Error).message,
    );
    expect(message).toContain('answered 500');
    expect(message).not.toContain(token);
    expect(message).not.toContain(password);
  });

  it('never takes credentials from the URL (the config refuses them): nothing sent, nothing shown', async () => {
    const address = new URL(url);
    const am = createAlertmanagerClient(withCredentials({}, `http://ops:S3cretInUrl@${address.host}`));
    body = '[]';
    status = 200;
    await am.alerts();
    expect(seen?.authorization).toBeUndefined();
    expect(am.target).toBe(`http://${address.host}`);
    status = 404;
    body = 'nope';
    const message = await am.alerts().then(
      () => '',
      (e: unknown) => (e as Error).message,
    );
    expect(message).not.toContain('S3cretInUrl');
  });

  it('rejects an answer of the wrong shape', async () => {
    const am = createAlertmanagerClient(testConfig({ alertmanager: { url } }).alertmanager!);
    status = 200;
    body = JSON.stringify({ status: 'success', data: [] }); // what API v1 answered
    await expect(am.alerts()).rejects.toThrow(/unexpected shape/);
  });
});

describe('Alertmanager connector: silences (shared Alertmanager, API v2)', () => {
  const client = () =>
    createAlertmanagerClient(
      testConfig({ alertmanager: { url: services().alertmanager.url } }).alertmanager!,
    );

  it('creates a silence, lists it with its matchers, expires it, and filters alerts by matchers', async () => {
    const run = randomUUID();
    const now = Date.now();
    const id = await client().createSilence({
      matchers: [
        { name: 'run', value: run, isRegex: false, isEqual: true },
        { name: 'instance', value: 'eu-.*', isRegex: true, isEqual: false },
      ],
      startsAt: new Date(now).toISOString(),
      endsAt: new Date(now + 3_600_000).toISOString(),
      createdBy: 'alice',
      comment: 'connector test',
    });
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const [listed] = await client().silences([`run="${run}"`]);
    expect(listed).toMatchObject({
      id,
      status: { state: 'active' },
      createdBy: 'alice',
      comment: 'connector test',
      matchers: [
        { name: 'run', value: run, isRegex: false, isEqual: true },
        { name: 'instance', value: 'eu-.*', isRegex: true, isEqual: false },
      ],
    });
    await client().expireSilence(id);
    const [expired] = await client().silences([`run="${run}"`]);
    expect(expired?.status.state).toBe('expired');
    await expect(client().expireSilence(randomUUID())).rejects.toBeInstanceOf(NotFoundError);

    await postAlerts(services().alertmanager.url, [
      { labels: { alertname: 'GameopsFilterTest', run, instance: 'x' } },
      { labels: { alertname: 'GameopsFilterTest', run, instance: 'y' } },
    ]);
    const filtered = await client().alerts({ filter: [`run="${run}"`, 'instance="y"'] });
    expect(filtered.map((a) => a.labels['instance'])).toEqual(['y']);
  });

  it('a silence Alertmanager refuses is an InputError with its reason', async () => {
    const now = Date.now();
    await expect(
      client().createSilence({
        matchers: [{ name: 'a', value: 'b', isRegex: false, isEqual: true }],
        startsAt: new Date(now).toISOString(),
        endsAt: new Date(now - 3_600_000).toISOString(),
        createdBy: 'alice',
        comment: 'backwards',
      }),
    ).rejects.toThrow(/refused the silence: .*(end time|before)/);
  });

  it('a closed port is an UnavailableError for writes too', async () => {
    const port = await closedPort();
    const am = createAlertmanagerClient(
      testConfig({ alertmanager: { url: `http://127.0.0.1:${port}` } }).alertmanager!,
    );
    await expect(am.expireSilence('x')).rejects.toThrow(
      `Alertmanager at http://127.0.0.1:${port}: DELETE /api/v2/silence/x failed: connection refused (ECONNREFUSED)`,
    );
    await expect(am.silences()).rejects.toBeInstanceOf(UnavailableError);
  });
});

describe('Alertmanager connector with a dependency that is down or hangs', () => {
  let silent: SilentServerHandle;
  beforeAll(async () => {
    silent = await startSilentServer();
  });
  afterAll(async () => {
    await silent.stop();
  });

  it('a closed port is an UnavailableError naming the URL', async () => {
    const port = await closedPort();
    const am = createAlertmanagerClient(
      testConfig({ alertmanager: { url: `http://127.0.0.1:${port}` } }).alertmanager!,
    );
    await expect(am.alerts()).rejects.toThrow(
      `Alertmanager at http://127.0.0.1:${port}: GET /api/v2/alerts failed: connection refused (ECONNREFUSED)`,
    );
  });

  it('a silence write to a server that never answers times out', async () => {
    const am = createAlertmanagerClient(
      testConfig({ alertmanager: { url: `http://${silent.host}:${silent.port}` } }).alertmanager!,
    );
    await expect(
      am.createSilence(
        {
          matchers: [{ name: 'a', value: 'b', isRegex: false, isEqual: true }],
          startsAt: new Date().toISOString(),
          endsAt: new Date(Date.now() + 60_000).toISOString(),
          createdBy: 'alice',
          comment: 'x',
        },
        { timeoutMs: 300 },
      ),
    ).rejects.toThrow('POST /api/v2/silences did not answer within 300 ms');
  });

  it('a server that never answers times out', async () => {
    const am = createAlertmanagerClient(
      testConfig({ alertmanager: { url: `http://${silent.host}:${silent.port}` } }).alertmanager!,
    );
    await expect(am.alerts({}, { timeoutMs: 300 })).rejects.toThrow('did not answer within 300 ms');
  });
});

describe('Alertmanager connector against a misbehaving stub (no real Alertmanager can be made to do this)', () => {
  let server: Server;
  let url: string;
  let behaviour: 'huge' | 'drip' = 'huge';
  beforeAll(async () => {
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      if (behaviour === 'drip') {
        // Headers and the start of a body, then nothing: the deadline must still hold.
        res.write('[{"labels":');
        return;
      }
      // An endless array: the connector must stop reading, not buffer it all.
      const chunk = Buffer.from(
        `${'{"labels":{},"startsAt":"x","fingerprint":"f","status":{"state":"active"}},'.repeat(2000)}`,
      );
      res.write('[');
      const pump = (): void => {
        while (res.write(chunk)) if (res.destroyed) return;
        res.once('drain', pump);
      };
      pump();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('refuses a response larger than 64 MiB instead of exhausting memory', async () => {
    behaviour = 'huge';
    const am = createAlertmanagerClient(testConfig({ alertmanager: { url } }).alertmanager!);
    await expect(am.alerts({}, { timeoutMs: 20_000 })).rejects.toThrow(
      /more than 64 MiB; refusing to read it/,
    );
  });

  it('a body that starts and never finishes times out', async () => {
    behaviour = 'drip';
    const am = createAlertmanagerClient(testConfig({ alertmanager: { url } }).alertmanager!);
    const started = Date.now();
    await expect(am.alerts({}, { timeoutMs: 800 })).rejects.toThrow(/did not answer within 800 ms/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
