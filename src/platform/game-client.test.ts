/**
 * The game-server client against the real reference game server (examples/game-server), and against
 * misbehaving servers: a silent one, a closed port, and a stub that answers garbage.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loginPlayer } from '../../test/game-server/player.ts';
import { startGameServer, type GameServerProcess } from '../../test/game-server/server-process.ts';
import { closedPort, services, startSilentServer } from '../../test/harness/index.ts';
import { ConflictError, InputError, secret, UnavailableError } from '../core/index.ts';
import { createGameServerClient, histogramQuantile, parsePrometheusText } from './game-client.ts';

let server: GameServerProcess;

beforeAll(async () => {
  const { mariadb, redis } = services();
  server = await startGameServer({ mariadb, redis, instance: 'game-client-0', version: '3.1.0' });
});

afterAll(async () => {
  await server?.stop();
});

const client = () =>
  createGameServerClient({ token: secret(server.token, 'env:GAME_OPS_TOKEN'), timeoutMs: 5000 });

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The rejection of `promise`, which must reject. */
async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

/** Asserts that an error names the URL and does not carry the token anywhere. */
function expectSafe(err: Error, url: string, token = server.token): void {
  expect(err.message).toContain(url);
  expect(err.message).not.toContain(token);
  expect(JSON.stringify((err as { details?: unknown }).details ?? {})).not.toContain(token);
}

describe('against the reference server', () => {
  test('status, maintenance on and off', async () => {
    const game = client();
    const status = await game.status(server.opsUrl);
    expect(status).toMatchObject({
      instance: 'game-client-0',
      version: '3.1.0',
      acceptingLogins: true,
      maintenance: { enabled: false, message: null, startsAt: null },
      draining: false,
      drain: null,
      tickRate: 30,
    });
    const closed = await game.setMaintenance(`${server.opsUrl}/`, {
      enabled: true,
      message: 'Back soon',
      startsAt: '2026-11-26T19:00:00+09:00',
    });
    expect(closed).toMatchObject({
      acceptingLogins: false,
      maintenance: { enabled: true, message: 'Back soon', startsAt: '2026-11-26T10:00:00.000Z' },
    });
    const open = await game.setMaintenance(server.opsUrl, { enabled: false });
    expect(open.maintenance.enabled).toBe(false);
  });

  test('metrics: players, errors (server-side only), tick p99 from the histogram', async () => {
    const game = client();
    const { player } = await loginPlayer(server.wsUrl, 'counted');
    try {
      // A player's garbage is counted apart (game_bad_messages_total): it is not a server error.
      player.sendRaw('garbage');
      await player.next('error');
      const metrics = await game.metrics(server.opsUrl);
      expect(metrics.playersConnected).toBe(1);
      expect(metrics.errorsTotal).toBe(0);
      expect(metrics.ticks).toBeGreaterThan(0);
      expect(metrics.tickP99Ms).toBeGreaterThan(0);
      expect(metrics.tickP99Ms).toBeLessThan(50);
    } finally {
      player.close();
    }
  });

  test('diagnostics stream with a safe file name; one at a time (ConflictError)', async () => {
    const game = client();
    const profiling = game.diagnostics(server.opsUrl, 'cpu-profile', { seconds: 2 });
    await server.waitForLog((l) => l.msg === 'diagnostic cpu-profile started');
    const busy = await failure(game.diagnostics(server.opsUrl, 'stack-dump'));
    expect(busy).toBeInstanceOf(ConflictError);
    expect(busy.message).toMatch(/busy \(HTTP 409\): a cpu-profile is already running/);
    const profile = await profiling;
    expect(profile.filename).toMatch(/^game-client-0-.*\.cpuprofile$/);
    expect(profile.contentType).toBe('application/json');
    const body = await collect(profile.stream);
    expect(profile.bytes).toBe(body.length);
    expect((JSON.parse(body.toString()) as { nodes: unknown[] }).nodes.length).toBeGreaterThan(0);

    const heap = await game.diagnostics(server.opsUrl, 'heap-snapshot');
    expect(heap.filename).toMatch(/\.heapsnapshot$/);
    const snapshot = JSON.parse((await collect(heap.stream)).toString()) as {
      snapshot: { node_count: number };
    };
    expect(snapshot.snapshot.node_count).toBeGreaterThan(0);

    const report = await game.diagnostics(server.opsUrl, 'stack-dump');
    expect(report.filename).toMatch(/\.report\.json$/);
    expect(JSON.parse((await collect(report.stream)).toString())).toHaveProperty('header');
  });

  test('a diagnostic over its size cap is refused before or while streaming', async () => {
    const game = client();
    const err = await failure(game.diagnostics(server.opsUrl, 'stack-dump', { maxBytes: 1000 }));
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toMatch(
      /the file is [\d.]+ (bytes|MiB), over the 1000 bytes cap; not downloading it$/,
    );
    expectSafe(err, server.opsUrl);
  });

  test('aborting a CPU profile stops it on the server, which can profile again at once', async () => {
    const game = client();
    const controller = new AbortController();
    const since = server.logs().length;
    const profiling = game.diagnostics(server.opsUrl, 'cpu-profile', {
      seconds: 30,
      signal: controller.signal,
    });
    await server.waitForLog((l) => l.msg === 'diagnostic cpu-profile started', { since });
    controller.abort(new Error('operator cancelled'));
    expect((await failure(profiling)).message).toBe('operator cancelled');
    const report = await eventuallyFree(() => game.diagnostics(server.opsUrl, 'stack-dump'));
    await collect(report.stream);
  });

  test('a wrong token, or none: UnavailableError "token rejected", never showing the token', async () => {
    const wrong = createGameServerClient({
      token: secret(`${server.token}-wrong`, 'inline'),
      timeoutMs: 5000,
    });
    for (const call of [
      () => wrong.status(server.opsUrl),
      () => wrong.setMaintenance(server.opsUrl, { enabled: true }),
      () => wrong.drain(server.opsUrl),
      () => wrong.diagnostics(server.opsUrl, 'stack-dump'),
    ]) {
      const err = await failure(call());
      expect(err).toBeInstanceOf(UnavailableError);
      expect(err.message).toMatch(/token rejected \(HTTP 401\)/);
      expectSafe(err, server.opsUrl, `${server.token}-wrong`);
    }
    const none = createGameServerClient({ timeoutMs: 5000 });
    const err = await failure(none.status(server.opsUrl));
    expect(err.message).toBe(
      `game server ${server.opsUrl}: GET /ops/status: the server needs a token (HTTP 401); set game.opsToken`,
    );
    // /metrics is open: no token needed.
    expect((await none.metrics(server.opsUrl)).ticks).toBeGreaterThan(0);
  });

  test('drain: the answer says how many players remain', async () => {
    const game = client();
    const { player } = await loginPlayer(server.wsUrl, 'last-one');
    const drained = await game.drain(server.opsUrl, { message: 'bye', deadlineSeconds: 60 });
    expect(drained).toMatchObject({ draining: true, acceptingLogins: false, drain: { message: 'bye' } });
    expect(drained.playersRemaining).toBeLessThanOrEqual(1);
    player.send({ type: 'leave' });
    await player.closed;
    expect((await game.status(server.opsUrl)).playersOnline).toBe(0);
  });
});

/** Retries `call` while it fails with a ConflictError (the server frees the slot as it notices the abort). */
async function eventuallyFree<T>(call: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof ConflictError) || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

describe('misbehaving servers', () => {
  test('a server that accepts and never answers: timeout after N ms, naming the URL', async () => {
    const silent = await startSilentServer();
    try {
      const url = `http://127.0.0.1:${silent.port}`;
      const game = createGameServerClient({
        token: secret('a-token-that-must-not-show', 'inline'),
        timeoutMs: 300,
      });
      const began = performance.now();
      const err = await failure(game.status(url));
      expect(performance.now() - began).toBeLessThan(2000);
      expect(err).toBeInstanceOf(UnavailableError);
      expect(err.message).toBe(`game server ${url}: GET /ops/status: no answer within 300 ms`);
      expectSafe(err, url, 'a-token-that-must-not-show');
      const metricsErr = await failure(game.metrics(url));
      expect(metricsErr.message).toBe(`game server ${url}: GET /metrics: no answer within 300 ms`);
      const diagErr = await failure(game.diagnostics(url, 'stack-dump', { timeoutMs: 300 }));
      expect(diagErr.message).toBe(
        `game server ${url}: POST /ops/diagnostics/stack-dump: no answer within 300 ms`,
      );
    } finally {
      await silent.stop();
    }
  });

  test('a closed port: connection refused', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const err = await failure(createGameServerClient({ timeoutMs: 2000 }).status(url));
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toBe(`game server ${url}: GET /ops/status: connection refused (ECONNREFUSED)`);
  });

  describe('a stub answering badly', () => {
    let stub: http.Server;
    let url: string;
    const answers = new Map<string, (res: http.ServerResponse) => void>();

    beforeAll(async () => {
      stub = http.createServer((req, res) => {
        const answer = answers.get(`${req.method} ${req.url}`);
        if (answer) answer(res);
        else
          res
            .writeHead(500, { 'content-type': 'application/json' })
            .end('{"error":{"code":"internal","message":"boom"}}');
      });
      await new Promise<void>((resolve) => stub.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      stub.closeAllConnections();
      await new Promise((resolve) => stub.close(resolve));
    });

    const game = () =>
      createGameServerClient({ token: secret('stub-token-value', 'inline'), timeoutMs: 2000 });

    test('garbage, the wrong shape, an oversize body, a 500 and a 400', async () => {
      answers.set('GET /ops/status', (res) => res.writeHead(200).end('<html>not json</html>'));
      let err = await failure(game().status(url));
      expect(err).toBeInstanceOf(UnavailableError);
      expect(err.message).toBe(
        `game server ${url}: GET /ops/status: answered a body that is not JSON: <html>not json</html>`,
      );

      answers.set('GET /ops/status', (res) => res.writeHead(200).end('{"instance":"x","playersOnline":-1}'));
      err = await failure(game().status(url));
      expect(err.message).toMatch(/GET \/ops\/status: answered an unexpected body \(version: /);

      answers.set('GET /ops/status', (res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`{"pad":"${'x'.repeat(2 * 1024 * 1024)}"}`);
      });
      err = await failure(game().status(url));
      expect(err.message).toBe(
        `game server ${url}: GET /ops/status: the answer is too large; refusing to read it`,
      );

      err = await failure(game().drain(url));
      expect(err).toBeInstanceOf(UnavailableError);
      expect(err.message).toBe(`game server ${url}: POST /ops/drain: HTTP 500: boom`);

      answers.set('POST /ops/maintenance', (res) =>
        res.writeHead(400).end('{"error":{"code":"input","message":"message: at most 500 characters"}}'),
      );
      err = await failure(game().setMaintenance(url, { enabled: true }));
      expect(err).toBeInstanceOf(InputError);
      expect(err.message).toBe(
        `game server ${url}: POST /ops/maintenance: refused the request (HTTP 400): message: at most 500 characters`,
      );

      answers.set('GET /metrics', (res) => res.writeHead(200).end('game_players_connected one\n'));
      err = await failure(game().metrics(url));
      expect(err.message).toMatch(
        /GET \/metrics: answered a body that is not Prometheus text \(line 1: "one" is not a number\)/,
      );
      answers.set('GET /metrics', (res) => res.writeHead(200).end('game_players_connected 3\n'));
      err = await failure(game().metrics(url));
      expect(err.message).toMatch(/GET \/metrics: does not export game_errors_total$/);
      for (const e of [err]) expectSafe(e, url, 'stub-token-value');
    });

    test('a diagnostic stream that stalls, or runs past its cap, fails with an UnavailableError', async () => {
      answers.set('POST /ops/diagnostics/heap-snapshot', (res) => {
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-disposition': 'attachment; filename="../../etc/passwd"',
        });
        res.write('{"snapshot":');
        // …and nothing more.
      });
      const stalled = await game().diagnostics(url, 'heap-snapshot');
      expect(stalled.filename).toBe('passwd');
      const stall = await failure(collect(stalled.stream));
      expect(stall).toBeInstanceOf(UnavailableError);
      expect(stall.message).toBe(
        `game server ${url}: POST /ops/diagnostics/heap-snapshot: the file stalled: no data for 2000 ms`,
      );

      answers.set('POST /ops/diagnostics/stack-dump', (res) => {
        res.writeHead(200, { 'content-type': 'application/json' }); // chunked: no Content-Length to refuse early
        res.end('x'.repeat(64 * 1024));
      });
      const big = await game().diagnostics(url, 'stack-dump', { maxBytes: 10_000 });
      expect(big.bytes).toBeUndefined();
      expect(big.filename).toMatch(/^stack-dump-.*\.report\.json$/);
      const capped = await failure(collect(big.stream));
      expect(capped.message).toBe(
        `game server ${url}: POST /ops/diagnostics/stack-dump: the file is larger than 10000 bytes; stopped reading it`,
      );
    });

    test('a diagnostic that trickles (never stalling) is cut off at its overall deadline', async () => {
      const trickle = (res: http.ServerResponse): void => {
        res.writeHead(200, { 'content-type': 'application/json' });
        // A byte every 100 ms: never the 2 s the stall timer waits for, and never the end.
        const timer = setInterval(() => res.write(' '), 100);
        res.on('close', () => clearInterval(timer));
      };
      answers.set('POST /ops/diagnostics/cpu-profile?seconds=1', trickle);
      answers.set('POST /ops/diagnostics/heap-snapshot', trickle);
      const quick = createGameServerClient({ token: secret('stub-token-value', 'inline'), timeoutMs: 500 });
      // Default for a CPU profile: its start allowance (500 ms + 1 s) plus the client timeout again.
      let began = performance.now();
      const profile = await quick.diagnostics(url, 'cpu-profile', { seconds: 1 });
      const cut = await failure(collect(profile.stream));
      expect(performance.now() - began).toBeLessThan(4000);
      expect(cut).toBeInstanceOf(UnavailableError);
      expect(cut.message).toBe(
        `game server ${url}: POST /ops/diagnostics/cpu-profile?seconds=1: the file did not arrive within 2000 ms; stopped reading it`,
      );
      // Or as asked.
      began = performance.now();
      const heap = await quick.diagnostics(url, 'heap-snapshot', { deadlineMs: 800 });
      const heapCut = await failure(collect(heap.stream));
      expect(performance.now() - began).toBeLessThan(2500);
      expect(heapCut.message).toMatch(
        /heap-snapshot: the file did not arrive within 800 ms; stopped reading it$/,
      );
    });
  });

  test('bad arguments are InputErrors raised before any request', async () => {
    const game = createGameServerClient({ timeoutMs: 1000 });
    const cases: Array<[() => Promise<unknown>, RegExp]> = [
      [() => game.status('not a url'), /is not a URL/],
      [() => game.status('ftp://host:21'), /only http and https/],
      [() => game.status('http://user:pw@127.0.0.1:1'), /must not carry credentials/],
      [
        () => game.setMaintenance('http://127.0.0.1:1', { enabled: true, message: 'x'.repeat(501) }),
        /1 to 500 characters/,
      ],
      [
        () => game.setMaintenance('http://127.0.0.1:1', { enabled: true, startsAt: 'soon' }),
        /not an ISO 8601 date-time with offset/,
      ],
      [() => game.drain('http://127.0.0.1:1', { deadlineSeconds: 0 }), /an integer from 1 to 3600/],
      [
        () => game.diagnostics('http://127.0.0.1:1', 'cpu-profile', { seconds: 61 }),
        /an integer from 1 to 60/,
      ],
    ];
    for (const [call, message] of cases) {
      const err = await failure(call());
      expect(err).toBeInstanceOf(InputError);
      expect(err.message).toMatch(message);
      expect(err.message).not.toContain(':pw@');
    }
  });
});

test('Prometheus text and histogram quantiles', () => {
  const samples = parsePrometheusText(
    [
      '# HELP x help',
      '# TYPE x histogram',
      'x_bucket{le="0.001"} 0',
      'x_bucket{le="0.002",path="a \\"quoted\\" one"} 50',
      'x_bucket{le="0.004"} 99',
      'x_bucket{le="+Inf"} 100',
      'y NaN',
      'z 1.5e3 1700000000000',
    ].join('\n'),
  );
  expect(samples[1]).toEqual({
    name: 'x_bucket',
    labels: { le: '0.002', path: 'a "quoted" one' },
    value: 50,
  });
  expect(samples.find((s) => s.name === 'z')?.value).toBe(1500);
  expect(Number.isNaN(samples.find((s) => s.name === 'y')?.value)).toBe(true);
  const buckets = [
    { le: 0.001, count: 0 },
    { le: 0.002, count: 50 },
    { le: 0.004, count: 99 },
    { le: Infinity, count: 100 },
  ];
  expect(histogramQuantile(0.5, buckets)).toBeCloseTo(0.002, 9);
  expect(histogramQuantile(0.99, buckets)).toBeCloseTo(0.004, 9);
  expect(histogramQuantile(0.75, buckets)).toBeCloseTo(0.002 + 0.002 * (25 / 49), 9);
  expect(histogramQuantile(0.999, buckets)).toBe(0.004); // in +Inf: the largest finite bound
  expect(histogramQuantile(0.99, [{ le: Infinity, count: 0 }])).toBeNull();
  expect(() => parsePrometheusText('x{le="1" 2')).toThrow(/line 1/);
});
