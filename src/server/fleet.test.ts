import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrap, shutdown, type Resources } from '../app/index.ts';
import { writeTestConfig } from '../../test/support/config.ts';
import {
  connectPlayer,
  writeMiniFleetConfig,
  writeReferenceFleetConfig,
  type ReferenceFleetConfig,
} from '../../test/support/fleet.ts';
import { destroyFleet } from '../platform/local/test-support.ts';
import { authHeaders } from '../../test/support/auth.ts';
import { buildServer, type GameopsServer } from './index.ts';

interface Operation {
  id: string;
  kind: string;
  status: 'running' | 'succeeded' | 'failed';
  startedAt: string;
  finishedAt?: string;
  progress?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { code: string; message: string; details?: Record<string, unknown> };
}

interface Status {
  instances: Array<{ name: string; ready: boolean; version: string; opsUrl?: string; game?: unknown }>;
  totals: { instances: number; ready: number; playersOnline: number; notAnswering: number };
  versions: string[];
  gate: { closed: boolean; message?: string };
}

describe('fleet API (local platform, real game-server processes)', () => {
  let config: { path: string; dataDir: string; token: string };
  let resources: Resources;
  let server: GameopsServer;
  let auth: { authorization: string };

  const call = async (
    method: 'GET' | 'POST',
    url: string,
    body?: unknown,
    headers?: Record<string, string>,
  ) =>
    server.app.inject({
      method,
      url,
      ...(body === undefined ? {} : { payload: body as object }),
      headers: { ...auth, ...headers },
    });
  const status = async (): Promise<Status> => (await call('GET', '/api/fleet')).json<Status>();
  const operationIds = async (): Promise<string[]> =>
    (await call('GET', '/api/fleet/operations'))
      .json<{ operations: Operation[] }>()
      .operations.map((o) => o.id);
  /** Polls an operation until it has finished. */
  const settle = async (location: string): Promise<Operation> => {
    const until = Date.now() + 60_000;
    for (;;) {
      const op = (await call('GET', location)).json<Operation>();
      if (op.status !== 'running' || Date.now() > until) return op;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  beforeAll(async () => {
    config = await writeMiniFleetConfig();
    resources = await bootstrap({ configPath: config.path, store: 'none', logLevel: 'silent' });
    server = await buildServer(resources);
    auth = await authHeaders(resources, 'operator');
  });
  afterAll(async () => {
    // Every game server this file started is stopped: through the API, then by the pids of the state.
    await call('POST', '/api/fleet/scale?wait=true', { replicas: 0, confirm: true }).catch(() => undefined);
    await server.close();
    await shutdown(resources);
    await destroyFleet(config.dataDir);
  });

  it('GET /api/fleet before anything runs: no instances, the gate open', async () => {
    const res = await call('GET', '/api/fleet');
    expect(res.statusCode).toBe(200);
    expect(res.json<Status>()).toMatchObject({ totals: { instances: 0, ready: 0 }, gate: { closed: false } });
  });

  it('POST /api/fleet/scale: 202 with a Location, polled to success', async () => {
    const res = await call('POST', '/api/fleet/scale', { replicas: 2 });
    expect(res.statusCode).toBe(202);
    const started = res.json<Operation>();
    expect(started).toMatchObject({ kind: 'scale', status: 'running' });
    expect(res.headers.location).toBe(`/api/fleet/operations/${started.id}`);
    const done = await settle(res.headers.location as string);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect(done.finishedAt).toBeDefined();
    expect(done.result).toMatchObject({ rollout: { operation: 'scale', replicas: 2, version: 'v1' } });
    expect(done.progress).toMatchObject({ operation: 'scale', desired: 2, ready: 2 });
    const s = await status();
    expect(s.totals).toMatchObject({ instances: 2, ready: 2, notAnswering: 0 });
    expect(s.instances.map((i) => i.name)).toEqual(['game-0', 'game-1']);
    expect(await operationIds()).toContain(started.id);
  });

  it.each([[-1], [1001], [2.5], ['abc'], ['2'], [null]])(
    'POST /api/fleet/scale {replicas: %j}: 400 naming the field, nothing started',
    async (replicas) => {
      const before = await operationIds();
      const res = await call('POST', '/api/fleet/scale', { replicas });
      expect(res.statusCode).toBe(400);
      const body = res.json<{ error: { code: string; message: string } }>();
      expect(body.error.code).toBe('input');
      expect(body.error.message).toMatch(/^body\.replicas: /);
      expect(await operationIds()).toEqual(before);
      expect((await status()).totals.instances).toBe(2);
    },
  );

  it('scaling to 0 needs confirm: true', async () => {
    const res = await call('POST', '/api/fleet/scale', { replicas: 0 });
    expect(res.statusCode).toBe(400);
    expect(res.json<{ error: { message: string } }>().error.message).toContain('"confirm": true');
    expect((await status()).totals.instances).toBe(2);
  });

  it('a second rollout while one runs: 409 naming the running one', async () => {
    const first = await call('POST', '/api/fleet/restart', { maxUnavailable: 1 });
    expect(first.statusCode).toBe(202);
    const running = first.json<Operation>();
    const second = await call('POST', '/api/fleet/scale', { replicas: 3 });
    expect(second.statusCode).toBe(409);
    const body = second.json<{ error: { code: string; message: string } }>();
    expect(body.error.code).toBe('conflict');
    expect(body.error.message).toContain('another rollout is running: restart');
    expect(body.error.message).toContain(running.id);
    const done = await settle(first.headers.location as string);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect((await status()).totals.instances).toBe(2);
  });

  it('?wait=true answers with the finished operation: 200 on success', async () => {
    const up = await call('POST', '/api/fleet/scale?wait=true', { replicas: 3 });
    expect(up.statusCode).toBe(200);
    expect(up.json<Operation>()).toMatchObject({ status: 'succeeded', result: { rollout: { replicas: 3 } } });
    const down = await call('POST', '/api/fleet/scale?wait=true', { replicas: 2 });
    expect(down.statusCode).toBe(200);
    expect((await status()).totals.instances).toBe(2);
  });

  it('set-version and rollback; a version that never becomes ready fails with its last progress (503)', async () => {
    const v2 = await call('POST', '/api/fleet/version?wait=true', { version: 'v2' });
    expect(v2.statusCode, v2.body).toBe(200);
    expect((await status()).versions).toEqual(['v2']);
    const back = await call('POST', '/api/fleet/rollback?wait=true');
    expect(back.statusCode, back.body).toBe(200);
    expect(back.json<Operation>().result).toMatchObject({
      rollout: { version: 'v1', previousVersion: 'v2' },
    });
    expect((await status()).versions).toEqual(['v1']);

    const broken = await call('POST', '/api/fleet/version?wait=true', {
      version: 'broken',
      timeoutSeconds: 3,
    });
    expect(broken.statusCode).toBe(503);
    const op = broken.json<Operation>();
    expect(op.status).toBe('failed');
    expect(op.error?.code).toBe('unavailable');
    expect(op.error?.details?.progress).toMatchObject({ operation: 'set-version' });
    const s = await status();
    expect(s.totals.ready).toBe(2);

    const bad = await call('POST', '/api/fleet/version', { version: 'v 1' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json<{ error: { message: string } }>().error.message).toMatch(/^body\.version: /);
  });

  it('GET /api/fleet/logs streams NDJSON; unknown instance 404; count per instance', async () => {
    const s = await status();
    const game1 = s.instances.find((i) => i.name === 'game-1')!;
    const wrote = await fetch(`${game1.opsUrl}/ops/test/log-errors?n=2`, {
      method: 'POST',
      headers: { authorization: `Bearer ${config.token}` },
    });
    expect(wrote.status).toBe(200);

    const tail = await call('GET', '/api/fleet/logs?instance=game-1&tail=2');
    expect(tail.statusCode).toBe(200);
    expect(tail.headers['content-type']).toContain('application/x-ndjson');
    const lines = tail.body
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { instance: string; line: string });
    expect(lines).toHaveLength(2);
    for (const l of lines) {
      expect(l.instance).toBe('game-1');
      expect(l.line).toContain('"level":"ERROR"');
    }
    const both = await call('GET', '/api/fleet/logs?selector=app=game-server&tail=1');
    expect(
      both.body
        .trimEnd()
        .split('\n')
        .map((l) => (JSON.parse(l) as { instance: string }).instance)
        .sort(),
    ).toEqual(['game-0', 'game-1']);

    const unknown = await call('GET', '/api/fleet/logs?instance=game-9');
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json<{ error: { message: string } }>().error.message).toContain('game-9');
    for (const url of [
      '/api/fleet/logs?tail=-1',
      '/api/fleet/logs?follow=maybe',
      '/api/fleet/logs?selector=x',
    ])
      expect((await call('GET', url)).statusCode, url).toBe(400);

    const count = await call(
      'GET',
      `/api/fleet/logs/count?pattern=${encodeURIComponent('"level":"ERROR"')}&sinceSeconds=3600`,
    );
    expect(count.statusCode).toBe(200);
    expect(count.json()).toMatchObject({ perInstance: { 'game-0': 0, 'game-1': 2 }, total: 2 });
    expect((await call('GET', '/api/fleet/logs/count')).statusCode).toBe(400);
  });

  it('usage and autoscaler', async () => {
    const usage = await call('GET', '/api/fleet/usage');
    expect(usage.statusCode).toBe(200);
    const report = usage.json<{
      instances: Array<{ name: string; cpuMillicores: number }>;
      nodes: unknown[];
    }>();
    expect(report.instances.map((i) => i.name).sort()).toEqual(['game-0', 'game-1']);
    expect(report.nodes).toHaveLength(1);
    const autoscaler = await call('GET', '/api/fleet/autoscaler');
    expect(autoscaler.json()).toMatchObject({ enabled: false });
  });

  it('operations: listed newest first; an unknown id is 404, a bad one 400', async () => {
    const list = (await call('GET', '/api/fleet/operations')).json<{ operations: Operation[] }>().operations;
    expect(list.length).toBeGreaterThan(3);
    const times = list.map((o) => o.startedAt);
    expect([...times].sort().reverse()).toEqual(times);
    expect((await call('GET', '/api/fleet/operations/00000000-0000-4000-8000-000000000000')).statusCode).toBe(
      404,
    );
    expect((await call('GET', '/api/fleet/operations/nope')).statusCode).toBe(400);
  });

  it('refuses a cross-site state change (Origin guard) and unknown query parameters', async () => {
    const res = await call('POST', '/api/fleet/scale', { replicas: 3 }, { origin: 'http://evil.example' });
    expect(res.statusCode).toBe(403);
    expect((await call('POST', '/api/fleet/scale?bogus=1', { replicas: 3 })).statusCode).toBe(400);
    expect((await status()).totals.instances).toBe(2);
  });

  it('documents the fleet routes in OpenAPI', async () => {
    const doc = (await call('GET', '/api/openapi.json')).json<{ paths: Record<string, unknown> }>();
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/api/fleet',
        '/api/fleet/usage',
        '/api/fleet/gate',
        '/api/fleet/logs',
        '/api/fleet/logs/count',
        '/api/fleet/scale',
        '/api/fleet/restart',
        '/api/fleet/version',
        '/api/fleet/rollback',
        '/api/fleet/drain',
        '/api/fleet/diagnostics',
        '/api/fleet/operations',
        '/api/fleet/operations/{id}',
      ]),
    );
  });

  it('graceful shutdown waits for a running operation, then interrupts it past the grace period', async () => {
    // A second server over the same fleet, so this one can be closed.
    const other = await bootstrap({ configPath: config.path, store: 'none', logLevel: 'silent' });
    const second = await buildServer(other);
    const otherAuth = await authHeaders(other, 'operator');
    try {
      const pending = second.app.inject({
        headers: otherAuth,
        method: 'POST',
        url: '/api/fleet/version?wait=true',
        payload: { version: 'slow' },
      });
      await new Promise((resolve) => setTimeout(resolve, 500));
      const started = Date.now();
      await second.close(300);
      expect(Date.now() - started).toBeLessThan(10_000);
      const res = await pending;
      expect(res.statusCode).toBe(503);
      const op = res.json<Operation>();
      expect(op.status).toBe('failed');
      expect(op.error?.code).toBe('unavailable');
    } finally {
      await shutdown(other);
    }
    // Put the fleet back on v1 for the tests after this one.
    const back = await call('POST', '/api/fleet/version?wait=true', { version: 'v1' });
    expect(back.statusCode, back.body).toBe(200);
    expect((await status()).versions).toEqual(['v1']);
  });

  it('follow=true streams new lines until the client disconnects, and does not hold up shutdown', async () => {
    // A second server over the same fleet, listening for real, so the client can go away.
    const other = await bootstrap({ configPath: config.path, store: 'none', logLevel: 'silent' });
    const second = await buildServer(other);
    const otherAuth = await authHeaders(other, 'viewer');
    let closed = false;
    try {
      const address = await second.app.listen({ host: '127.0.0.1', port: 0 });
      const game0 = (await status()).instances.find((i) => i.name === 'game-0')!;
      const read = async (
        url: string,
        stopWhen: (text: string) => boolean,
        controller?: AbortController,
      ): Promise<{ text: string; ended: boolean; reader: ReadableStreamDefaultReader<Uint8Array> }> => {
        const response = await fetch(url, {
          headers: otherAuth,
          ...(controller ? { signal: controller.signal } : {}),
        });
        expect(response.status).toBe(200);
        const reader: ReadableStreamDefaultReader<Uint8Array> = response.body!.getReader();
        let text = '';
        const decoder = new TextDecoder();
        const poke = setInterval(() => {
          void fetch(`${game0.opsUrl}/ops/test/log-errors?n=1`, {
            method: 'POST',
            headers: { authorization: `Bearer ${config.token}` },
          })
            .then((r) => r.arrayBuffer())
            .catch(() => undefined);
        }, 300);
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return { text, ended: true, reader };
            text += decoder.decode(value, { stream: true });
            if (stopWhen(text)) return { text, ended: false, reader };
          }
        } finally {
          clearInterval(poke);
        }
      };

      const controller = new AbortController();
      const first = await read(
        `${address}/api/fleet/logs?instance=game-0&follow=true&tail=0`,
        (t) => (t.match(/test error/g) ?? []).length >= 2,
        controller,
      );
      expect(first.ended).toBe(false);
      controller.abort();

      // A follow still open when the server closes is ended by the server, quickly.
      const open = await read(`${address}/api/fleet/logs?instance=game-0&follow=true&tail=0`, (t) =>
        t.includes('test error'),
      );
      const started = Date.now();
      const closing = second.close(20_000);
      for (;;) {
        const { done } = await open.reader.read();
        if (done) break;
      }
      await closing;
      closed = true;
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      if (!closed) await second.close(1000);
      await shutdown(other);
    }
  });
});

describe('fleet API with reference game servers: gate, drain, diagnostics', () => {
  let config: ReferenceFleetConfig;
  let resources: Resources;
  let server: GameopsServer;

  let auth: { authorization: string };
  const call = async (method: 'GET' | 'POST', url: string, body?: unknown) =>
    server.app.inject({
      method,
      url,
      headers: auth,
      ...(body === undefined ? {} : { payload: body as object }),
    });
  const status = async (): Promise<Status> => (await call('GET', '/api/fleet')).json<Status>();
  const opsStatus = async (opsUrl: string) =>
    (await (
      await fetch(`${opsUrl}/ops/status`, { headers: { authorization: `Bearer ${config.token}` } })
    ).json()) as { maintenance: { enabled: boolean; message: string | null }; playersOnline: number };

  beforeAll(async () => {
    config = await writeReferenceFleetConfig({ prefix: 'fleetapi' });
    resources = await bootstrap({ configPath: config.path, store: 'none', logLevel: 'silent' });
    server = await buildServer(resources);
    auth = await authHeaders(resources, 'operator');
    const up = await call('POST', '/api/fleet/scale?wait=true', { replicas: 2 });
    expect(up.statusCode, up.body).toBe(200);
  });
  afterAll(async () => {
    await call('POST', '/api/fleet/scale?wait=true', { replicas: 0, confirm: true }).catch(() => undefined);
    await server.close();
    await shutdown(resources);
    await destroyFleet(config.dataDir);
  });

  it('POST /api/fleet/gate closes and opens the gate on every ready game server', async () => {
    const closed = await call('POST', '/api/fleet/gate', {
      closed: true,
      message: 'Maintenance at 10:00',
      startsAt: '2030-01-01T10:00:00Z',
    });
    expect(closed.statusCode, closed.body).toBe(200);
    expect(closed.json()).toMatchObject({
      status: 'ok',
      gate: { closed: true, message: 'Maintenance at 10:00' },
      instances: [
        { instance: 'game-0', ok: true },
        { instance: 'game-1', ok: true },
      ],
    });
    expect((await call('GET', '/api/fleet/gate')).json()).toMatchObject({ closed: true });
    const s = await status();
    expect(s.gate.closed).toBe(true);
    for (const i of s.instances)
      expect((await opsStatus(i.opsUrl!)).maintenance).toMatchObject({
        enabled: true,
        message: 'Maintenance at 10:00',
      });

    const opened = await call('POST', '/api/fleet/gate', { closed: false });
    expect(opened.json()).toMatchObject({ status: 'ok', gate: { closed: false } });
    for (const i of s.instances) expect((await opsStatus(i.opsUrl!)).maintenance.enabled).toBe(false);

    for (const body of [
      { closed: true, startsAt: 'soon' },
      { closed: true, message: '' },
      { closed: 'yes' },
      {},
    ])
      expect((await call('POST', '/api/fleet/gate', body)).statusCode, JSON.stringify(body)).toBe(400);
    expect((await call('GET', '/api/fleet/gate')).json()).toMatchObject({ closed: false });
  });

  it('POST /api/fleet/drain: players leave, the operation reports them and waits until empty', async () => {
    const game1 = (await status()).instances.find((i) => i.name === 'game-1')!;
    const player = await connectPlayer(`${game1.opsUrl!.replace(/^http/, 'ws')}/play`, 'carol', 1500);
    try {
      expect((await status()).totals.playersOnline).toBe(1);
      const res = await call('POST', '/api/fleet/drain', { deadlineSeconds: 20, message: 'saving' });
      expect(res.statusCode).toBe(202);
      let sawPlayer = false;
      const until = Date.now() + 30_000;
      let op = res.json<Operation>();
      while (op.status === 'running' && Date.now() < until) {
        if (op.progress?.playersRemaining === 1) sawPlayer = true;
        await new Promise((resolve) => setTimeout(resolve, 100));
        op = (await call('GET', res.headers.location as string)).json<Operation>();
      }
      expect(sawPlayer).toBe(true);
      expect(op).toMatchObject({
        kind: 'drain',
        status: 'succeeded',
        progress: { playersRemaining: 0 },
        result: {
          status: 'empty',
          playersRemaining: 0,
          instances: [
            { instance: 'game-0', ok: true, playersRemaining: 0 },
            { instance: 'game-1', ok: true, playersRemaining: 0 },
          ],
        },
      });
    } finally {
      player.terminate();
    }
    const restarted = await call('POST', '/api/fleet/restart?wait=true', { maxUnavailable: 2 });
    expect(restarted.statusCode, restarted.body).toBe(200);
    expect((await call('POST', '/api/fleet/drain', { deadlineSeconds: 0 })).statusCode).toBe(400);
  });

  it('POST /api/fleet/diagnostics stores an artefact whose sha256 matches the file', async () => {
    const res = await call('POST', '/api/fleet/diagnostics?wait=true', {
      instance: 'game-0',
      kind: 'stack-dump',
    });
    expect(res.statusCode, res.body).toBe(200);
    const artefact = res.json<Operation>().result as { path: string; bytes: number; sha256: string };
    const file = readFileSync(artefact.path);
    expect(file.length).toBe(artefact.bytes);
    expect(createHash('sha256').update(file).digest('hex')).toBe(artefact.sha256);

    const unknown = await call('POST', '/api/fleet/diagnostics', { instance: 'game-9', kind: 'stack-dump' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json<{ error: { message: string } }>().error.message).toContain('game-9');
    const seconds = await call('POST', '/api/fleet/diagnostics', {
      instance: 'game-0',
      kind: 'stack-dump',
      seconds: 5,
    });
    expect(seconds.statusCode).toBe(400);
    expect(seconds.json<{ error: { message: string } }>().error.message).toContain('body.seconds');
    const kind = await call('POST', '/api/fleet/diagnostics', { instance: 'game-0', kind: 'core-dump' });
    expect(kind.statusCode).toBe(400);
  });
});

describe('fleet API without a platform', () => {
  it('answers 400 saying to add a platform section, for reads and operations alike', async () => {
    const { path } = writeTestConfig('', { withServices: false });
    const resources = await bootstrap({ configPath: path, store: 'none', logLevel: 'silent' });
    const server = await buildServer(resources);
    const headers = await authHeaders(resources, 'operator');
    try {
      for (const [method, url, payload] of [
        ['GET', '/api/fleet', undefined],
        ['GET', '/api/fleet/gate', undefined],
        ['POST', '/api/fleet/scale', { replicas: 1 }],
      ] as const) {
        const res = await server.app.inject({ method, url, headers, ...(payload ? { payload } : {}) });
        expect(res.statusCode, url).toBe(400);
        expect(res.json<{ error: { message: string } }>().error.message).toContain(
          'add a `platform:` section',
        );
      }
    } finally {
      await server.close();
      await shutdown(resources);
    }
  });
});
