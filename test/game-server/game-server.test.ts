/**
 * The reference game server as a real process against real MariaDB and Redis: the ops API, players'
 * protocol, persistence, metrics and diagnostics. (Maintenance, drain and shutdown, which change the
 * server for good, have their own servers in lifecycle.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parsePrometheusText } from '../../src/platform/game-client.ts';
import { services } from '../harness/index.ts';
import { connectPlayer, eventually, loginPlayer } from './player.ts';
import { startGameServer, type GameServerProcess } from './server-process.ts';

let server: GameServerProcess;

beforeAll(async () => {
  const { mariadb, redis } = services();
  server = await startGameServer({
    mariadb,
    redis,
    instance: 'game-test-0',
    version: '2.3.4',
    // Room for a login and 20 malformed messages in one burst (the rate test below sends 100).
    env: { GAME_MAX_INPUTS_PER_SECOND: '40' },
  });
});

afterAll(async () => {
  await server?.stop();
});

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${server.opsUrl}/metrics`)).text();
  return parsePrometheusText(text)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

describe('ops API', () => {
  test('GET /ops/status answers the documented document', async () => {
    const res = await server.ops('/ops/status');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    const status = (await res.json()) as Record<string, unknown>;
    expect(status).toMatchObject({
      instance: 'game-test-0',
      version: '2.3.4',
      acceptingLogins: true,
      maintenance: { enabled: false, message: null, startsAt: null },
      draining: false,
      drain: null,
      shuttingDown: false,
      tickRate: 30,
      windowSeconds: 60,
    });
    expect(typeof status.playersOnline).toBe('number');
    expect(typeof status.sessions).toBe('number');
    expect(status.uptimeSeconds).toBeGreaterThanOrEqual(0);
    for (const key of ['tickLagMs', 'tickDurationMs', 'tickCpuMs']) {
      const figures = status[key] as Record<string, unknown>;
      expect(Object.keys(figures)).toEqual(['p50', 'p99', 'max']);
      expect(Object.values(figures).every((v) => typeof v === 'number')).toBe(true);
    }
    // The loop runs before the server listens; the achieved rate shows from the second tick on.
    await eventually('an achieved tick rate', async () => {
      const later = (await (await server.ops('/ops/status')).json()) as { ticksPerSecond: number };
      return later.ticksPerSecond > 0 ? true : undefined;
    });
  });

  test('401 without or with a wrong token on every /ops path, never echoing it; /metrics is open', async () => {
    const wrong = `${server.token}x`;
    const paths = [
      ['GET', '/ops/status'],
      ['POST', '/ops/maintenance'],
      ['POST', '/ops/drain'],
      ['POST', '/ops/diagnostics/cpu-profile?seconds=1'],
      ['POST', '/ops/diagnostics/heap-snapshot'],
      ['POST', '/ops/diagnostics/stack-dump'],
      ['GET', '/ops/no-such-thing'],
    ] as const;
    for (const [method, path] of paths) {
      for (const authorization of ['', `Bearer ${wrong}`, `Basic ${server.token}`, 'Bearer']) {
        const res = await fetch(`${server.opsUrl}${path}`, {
          method,
          headers: authorization ? { authorization } : {},
        });
        expect(res.status, `${method} ${path} with "${authorization.slice(0, 6)}"`).toBe(401);
        expect(res.headers.get('www-authenticate')).toBe('Bearer');
        const body = await res.text();
        expect(JSON.parse(body)).toEqual({
          error: { code: 'unauthorized', message: 'missing or wrong bearer token' },
        });
        expect(body).not.toContain(server.token);
      }
    }
    // The scheme is case-insensitive.
    expect(
      (await server.ops('/ops/status', { headers: { authorization: `bearer ${server.token}` } })).status,
    ).toBe(200);
    const metrics = await fetch(`${server.opsUrl}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
  });

  test('bad input: 400 naming the field; 413 past 64 KiB; 404 and 405', async () => {
    const post = (path: string, body: string) =>
      server.ops(path, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    const cases: Array<[string, string, RegExp]> = [
      ['/ops/maintenance', '{"enabled":"yes"}', /^enabled: /],
      ['/ops/maintenance', '', /^body: required/],
      ['/ops/maintenance', '{"enabled":true', /^body: not valid JSON/],
      [
        '/ops/maintenance',
        JSON.stringify({ enabled: true, message: 'm'.repeat(501) }),
        /^message: at most 500/,
      ],
      ['/ops/maintenance', '{"enabled":true,"startsAt":"tomorrow"}', /^startsAt: an ISO 8601/],
      ['/ops/maintenance', '{"enabled":true,"colour":"red"}', /^body: unknown field colour/],
      ['/ops/maintenance', '[]', /^body: /],
      ['/ops/drain', '{"deadlineSeconds":0}', /^deadlineSeconds: /],
      ['/ops/drain', '{"deadlineSeconds":1.5}', /^deadlineSeconds: /],
      ['/ops/drain', '{"message":""}', /^message: /],
    ];
    for (const [path, body, message] of cases) {
      const res = await post(path, body);
      expect(res.status, `${path} ${body.slice(0, 40)}`).toBe(400);
      const answer = (await res.json()) as { error: { code: string; message: string } };
      expect(answer.error.code).toBe('input');
      expect(answer.error.message).toMatch(message);
    }
    for (const path of [
      '/ops/diagnostics/cpu-profile?seconds=0',
      '/ops/diagnostics/cpu-profile?seconds=61',
    ]) {
      const res = await server.ops(path, { method: 'POST' });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/^seconds: /);
    }
    const big = await post(
      '/ops/maintenance',
      JSON.stringify({ enabled: true, message: 'x'.repeat(70_000) }),
    );
    expect(big.status).toBe(413);
    expect(((await big.json()) as { error: { code: string } }).error.code).toBe('too_large');
    const missing = await server.ops('/ops/nothing-here');
    expect(missing.status).toBe(404);
    const wrongMethod = await server.ops('/ops/maintenance');
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('POST');
    // Nothing above changed the server.
    const status = (await (await server.ops('/ops/status')).json()) as { acceptingLogins: boolean };
    expect(status.acceptingLogins).toBe(true);
  });
});

describe('players', () => {
  test('log in, move and chat: chat reaches everyone, or only players nearby', async () => {
    const redis = server.redis();
    try {
      // Saved positions place the players (and prove they are restored at login).
      await redis.hset('player:alice', 'x', 500, 'y', 500);
      await redis.hset('player:bob', 'x', 520, 'y', 500);
      await redis.hset('player:carol', 'x', 900, 'y', 100);
    } finally {
      redis.disconnect();
    }
    const alice = await loginPlayer(server.wsUrl, 'alice');
    const bob = await loginPlayer(server.wsUrl, 'bob');
    const carol = await loginPlayer(server.wsUrl, 'carol');
    try {
      expect(alice.welcome).toMatchObject({
        name: 'alice',
        instance: 'game-test-0',
        version: '2.3.4',
        x: 500,
        y: 500,
      });
      expect(bob.welcome).toMatchObject({ x: 520, y: 500, tickRate: 30 });

      for (let i = 0; i < 3; i++) alice.player.send({ type: 'move', dx: 10, dy: 0 });
      const moved = await eventually('alice at x=530 in her snapshot', async () => {
        const snapshot = await alice.player.next('snapshot');
        return snapshot.x === 530 ? snapshot : undefined;
      });
      expect(moved.y).toBe(500);
      expect(moved.players).toContainEqual(['bob', 520, 500]);
      expect(moved.players.map((p) => p[0])).not.toContain('carol');

      alice.player.send({ type: 'chat', text: 'hello near', scope: 'near' });
      expect(await bob.player.next('chat')).toEqual({
        type: 'chat',
        from: 'alice',
        text: 'hello near',
        scope: 'near',
      });
      alice.player.send({ type: 'chat', text: 'hello all' });
      // carol's first chat is the one to everyone: the nearby one never reached her.
      expect(await carol.player.next('chat')).toEqual({
        type: 'chat',
        from: 'alice',
        text: 'hello all',
        scope: 'all',
      });
      expect(await bob.player.next('chat')).toMatchObject({ text: 'hello all' });
      expect(await alice.player.next('chat')).toMatchObject({ text: 'hello near' });
    } finally {
      for (const p of [alice, bob, carol]) p.player.close();
    }
  });

  test('malformed input is answered and counted, logged once at WARN (never ERROR); the server keeps running', async () => {
    const before = await metric('game_bad_messages_total');
    const errorsBefore = await metric('game_errors_total');
    const since = server.logs().length;
    const { player } = await loginPlayer(server.wsUrl, 'mallory');
    try {
      player.sendRaw('this is not json');
      player.sendRaw(Buffer.from([1, 2, 3]));
      player.send({ type: 'fly' });
      player.send({ type: 'move', dx: 100, dy: 0 });
      player.send({ type: 'chat', text: '' });
      const errors = [];
      for (let i = 0; i < 5; i++) errors.push((await player.next('error')).message);
      expect(errors[0]).toBe('not JSON');
      expect(errors[1]).toMatch(/binary frames/);
      expect(errors[2]).toMatch(/^type: /);
      expect(errors[3]).toMatch(/^dx: /);
      expect(errors[4]).toMatch(/^text: /);
      expect(await metric('game_bad_messages_total')).toBe(before + 5);
      // Bad client input is not a server error: no ERROR line, nothing in game_errors_total.
      expect(await metric('game_errors_total')).toBe(errorsBefore);
      const logged = server.logs().filter((l) => l.player === 'mallory' && /malformed/.test(l.msg ?? ''));
      expect(logged).toEqual([
        expect.objectContaining({
          level: 'WARN',
          problem: 'not JSON',
          msg: 'malformed message from a player (later ones on this connection are counted, not logged)',
        }),
      ]);
      expect(
        server
          .logs()
          .slice(since)
          .filter((l) => l.level === 'ERROR'),
      ).toEqual([]);
      // Still playing, and the server still answers.
      player.send({ type: 'move', dx: 1, dy: 1 });
      await player.next('snapshot');
      expect((await server.ops('/ops/status')).status).toBe(200);
    } finally {
      player.close();
    }
    // With the count when the connection closes.
    const total = await server.waitForLog((l) => l.player === 'mallory' && l.malformed !== undefined, {
      since,
    });
    expect(total).toMatchObject({ level: 'WARN', malformed: 5 });
    // Every line is one JSON object with an ISO time and an upper-case level.
    for (const line of server.logs()) {
      expect(line.notJson).toBeUndefined();
      expect(line.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(['DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL']).toContain(line.level);
      expect(typeof line.msg).toBe('string');
    }
  });

  test('an oversized frame closes that socket with 1009; 20 malformed messages close with 1008', async () => {
    const before = await metric('game_bad_messages_total');
    const { player: big } = await loginPlayer(server.wsUrl, 'big-sender');
    big.sendRaw(JSON.stringify({ type: 'chat', text: 'x'.repeat(5000) }));
    expect((await big.closed).code).toBe(1009);
    await server.waitForLog(
      (l) =>
        l.level === 'WARN' &&
        l.msg === 'malformed frame from a player; connection closed' &&
        l.player === 'big-sender',
    );

    const { player: noisy } = await loginPlayer(server.wsUrl, 'noisy');
    for (let i = 0; i < 20; i++) noisy.sendRaw('{');
    expect((await noisy.closed).code).toBe(1008);
    expect(await metric('game_bad_messages_total')).toBe(before + 21);
    expect(await metric('game_errors_total')).toBe(0);
    expect((await server.ops('/ops/status')).status).toBe(200);
  });

  test('before login, one malformed message closes the connection (1008), logged at WARN', async () => {
    const before = await metric('game_bad_messages_total');
    const since = server.logs().length;
    for (const bad of [
      { type: 'move', dx: 1, dy: 1 },
      { type: 'login', name: 'no spaces allowed' },
      'junk',
    ]) {
      const early = await connectPlayer(server.wsUrl);
      if (typeof bad === 'string') early.sendRaw(bad);
      else early.send(bad);
      const error = await early.next('error');
      expect(error.message).toMatch(/^(log in before sending move|name: .*|not JSON)$/);
      expect((await early.closed).code).toBe(1008);
    }
    expect(await metric('game_bad_messages_total')).toBe(before + 3);
    const lines = server.logs().slice(since);
    expect(lines.filter((l) => l.msg === 'malformed message before login; connection closed')).toHaveLength(
      3,
    );
    expect(lines.filter((l) => l.level === 'ERROR')).toEqual([]);
  });

  test('login rules: duplicates refused with 4004 while the first answers pings', async () => {
    const early = await connectPlayer(server.wsUrl);
    early.send({ type: 'login', name: 'dup' });
    await early.next('welcome');
    early.send({ type: 'login', name: 'dup' });
    expect((await early.next('error')).message).toBe('already logged in');

    const refusedBefore = await metric('game_logins_refused_total', { reason: 'duplicate' });
    const second = await connectPlayer(server.wsUrl);
    second.send({ type: 'login', name: 'dup' });
    expect(await second.next('refused')).toMatchObject({ reason: 'duplicate' });
    expect((await second.closed).code).toBe(4004);
    expect(await metric('game_logins_refused_total', { reason: 'duplicate' })).toBe(refusedBefore + 1);
    early.close();
    await early.closed;
  });

  test('a login takes over its name from a session that stopped answering: 4006, ended "replaced"', async () => {
    // Connected but answering nothing, as behind a network that vanished (the heartbeat has not cut it yet).
    const ghost = await loginPlayer(server.wsUrl, 'phantom', { autoPong: false });
    const x = ghost.welcome.x > 500 ? ghost.welcome.x - 5 : ghost.welcome.x + 5;
    ghost.player.send({ type: 'move', dx: x - ghost.welcome.x, dy: 0 });
    const last = await eventually('the move applied', async () => {
      const snapshot = await ghost.player.next('snapshot');
      return snapshot.x === x ? snapshot : undefined;
    });
    const sql = await server.sql();
    const began = performance.now();
    const back = await loginPlayer(server.wsUrl, 'phantom');
    try {
      // The old session gets a ping and two seconds to answer it.
      expect(performance.now() - began).toBeLessThan(5000);
      // Where the old session was, not where a save would put it.
      expect(back.welcome).toMatchObject({ name: 'phantom', x: last.x, y: last.y });
      expect(await ghost.player.next('bye')).toEqual({ type: 'bye', reason: 'replaced', saved: true });
      expect((await ghost.player.closed).code).toBe(4006);
      const sessions = await eventually('the old session ended as replaced, the new one open', async () => {
        const [found] = await sql.query(
          "SELECT end_reason, ended_at FROM player_sessions WHERE player = 'phantom' ORDER BY started_at",
        );
        const list = found as Array<{ end_reason: string | null; ended_at: Date | null }>;
        return list.length === 2 && list[0]!.ended_at !== null ? list : undefined;
      });
      expect(sessions.map((r) => r.end_reason)).toEqual(['replaced', null]);
      // The new session plays.
      back.player.send({ type: 'move', dx: 1, dy: 0 });
      await back.player.next('snapshot');
    } finally {
      back.player.close();
      await sql.end();
    }
  });

  test('inputs beyond the per-player rate are dropped and counted, not applied', async () => {
    const before = await metric('game_inputs_dropped_total', { reason: 'rate' });
    const { player } = await loginPlayer(server.wsUrl, 'spammer');
    try {
      for (let i = 0; i < 100; i++) player.send({ type: 'move', dx: 0.5, dy: 0 });
      const dropped = await eventually('rate drops counted', async () => {
        const now = await metric('game_inputs_dropped_total', { reason: 'rate' });
        return now - before >= 50 ? now - before : undefined;
      });
      // The bucket holds 40 (less the login) and refills at 40/s: most of a 100-message burst goes.
      expect(dropped).toBeLessThanOrEqual(61);
    } finally {
      player.close();
    }
  });

  test('sessions in MySQL and presence in Redis appear while playing and are cleaned up after', async () => {
    const sql = await server.sql();
    const redis = server.redis();
    try {
      await redis.hset('player:leaver', 'x', 100, 'y', 100);
      const leaver = await loginPlayer(server.wsUrl, 'leaver');
      const dropper = await loginPlayer(server.wsUrl, 'dropper');
      type Row = {
        player: string;
        instance: string;
        version: string;
        ended_at: Date | null;
        end_reason: string | null;
      };
      const rows = async (): Promise<Row[]> =>
        (
          await sql.query(
            "SELECT player, instance, version, started_at, ended_at, end_reason FROM player_sessions WHERE player IN ('leaver', 'dropper') ORDER BY player",
          )
        )[0] as Row[];
      const open = await eventually('two open session rows', async () => {
        const found = await rows();
        return found.length === 2 ? found : undefined;
      });
      expect(open).toEqual([
        expect.objectContaining({
          player: 'dropper',
          instance: 'game-test-0',
          version: '2.3.4',
          ended_at: null,
        }),
        expect.objectContaining({ player: 'leaver', ended_at: null, end_reason: null }),
      ]);
      expect(await redis.get('presence:leaver')).toBe('game-test-0');
      const ttl = await redis.ttl('presence:leaver');
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(60);

      // The leave is queued behind the move, so the saved position includes it.
      leaver.player.send({ type: 'move', dx: 3, dy: 4 });
      leaver.player.send({ type: 'leave' });
      expect(await leaver.player.next('bye')).toEqual({ type: 'bye', reason: 'leave', saved: true });
      expect((await leaver.player.closed).code).toBe(1000);
      dropper.player.ws.terminate();

      const ended = await eventually('both sessions ended', async () => {
        const found = await rows();
        return found.every((r) => r.ended_at !== null) ? found : undefined;
      });
      expect(ended.map((r) => [r.player, r.end_reason])).toEqual([
        ['dropper', 'disconnect'],
        ['leaver', 'leave'],
      ]);
      await eventually('presence keys removed', async () =>
        (await redis.exists('presence:leaver', 'presence:dropper')) === 0 ? true : undefined,
      );
      const saved = await redis.hgetall('player:leaver');
      expect(leaver.welcome).toMatchObject({ x: 100, y: 100 });
      expect(saved).toMatchObject({ x: '103', y: '104' });
      expect(Number.isFinite(Date.parse(saved.savedAt!))).toBe(true);
    } finally {
      await sql.end();
      redis.disconnect();
    }
  });
});

test('GET /metrics parses and has the contract’s metrics', async () => {
  const text = await (await fetch(`${server.opsUrl}/metrics`)).text();
  const samples = parsePrometheusText(text);
  const names = new Set(samples.map((s) => s.name));
  for (const name of [
    'game_players_connected',
    'game_sessions_open',
    'game_errors_total',
    'game_tick_duration_seconds_bucket',
    'game_tick_duration_seconds_count',
    'game_tick_lag_seconds_bucket',
    'game_ticks_total',
    'game_ticks_skipped_total',
    'game_inputs_processed_total',
    'game_inputs_dropped_total',
    'game_logins_total',
    'game_logins_refused_total',
    'game_maintenance_enabled',
    'game_draining',
    'game_persistence_queue',
    'process_cpu_seconds_total',
    'process_resident_memory_bytes',
    'nodejs_eventloop_lag_seconds',
  ])
    expect(names, name).toContain(name);
  const bounds = samples
    .filter((s) => s.name === 'game_tick_duration_seconds_bucket')
    .map((s) => Number(s.labels.le));
  // Fine enough to read a p99 between 1 and 50 ms: at least ten bounds in that range.
  expect(bounds.filter((b) => b >= 0.001 && b <= 0.05).length).toBeGreaterThanOrEqual(10);
  expect(text).toMatch(/# TYPE game_tick_duration_seconds histogram/);
  expect(samples.find((s) => s.name === 'game_ticks_total')!.value).toBeGreaterThan(0);
});

describe('diagnostics', () => {
  test('a CPU profile over N seconds; a second diagnostic meanwhile gets 409', async () => {
    const since = server.logs().length;
    const profiling = server.ops('/ops/diagnostics/cpu-profile?seconds=2', { method: 'POST' });
    await server.waitForLog((l) => l.msg === 'diagnostic cpu-profile started', { since });
    const busy = await server.ops('/ops/diagnostics/stack-dump', { method: 'POST' });
    expect(busy.status).toBe(409);
    const { error } = (await busy.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe('conflict');
    expect(error.message).toMatch(/^a cpu-profile is already running/);
    const res = await profiling;
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('content-disposition')).toMatch(
      /^attachment; filename="game-test-0-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z\.cpuprofile"$/,
    );
    const profile = (await res.json()) as {
      nodes: unknown[];
      startTime: number;
      endTime: number;
      samples: number[];
    };
    expect(profile.nodes.length).toBeGreaterThan(0);
    expect(profile.endTime - profile.startTime).toBeGreaterThanOrEqual(1_900_000); // microseconds
    expect(Array.isArray(profile.samples)).toBe(true);
  });

  test('a heap snapshot, streamed', async () => {
    const res = await server.ops('/ops/diagnostics/heap-snapshot', { method: 'POST' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(res.headers.get('content-disposition')).toMatch(/filename="game-test-0-.*\.heapsnapshot"$/);
    const text = await res.text();
    expect(Number(res.headers.get('content-length'))).toBe(Buffer.byteLength(text));
    const snapshot = JSON.parse(text) as {
      snapshot: { meta: { node_fields: string[] }; node_count: number };
      nodes: number[];
    };
    expect(snapshot.snapshot.meta.node_fields).toContain('name');
    expect(snapshot.nodes.length).toBe(
      snapshot.snapshot.node_count * snapshot.snapshot.meta.node_fields.length,
    );
  });

  test('a stack dump (diagnostic report) without secrets', async () => {
    const res = await server.ops('/ops/diagnostics/stack-dump', { method: 'POST' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toMatch(/filename="game-test-0-.*\.report\.json"$/);
    const text = await res.text();
    const report = JSON.parse(text) as {
      header: { nodejsVersion: string };
      javascriptStack: unknown;
      environmentVariables: Record<string, string>;
    };
    expect(report.header.nodejsVersion).toMatch(/^v24\./);
    expect(report.javascriptStack).toBeDefined();
    expect(report.environmentVariables.GAME_INSTANCE).toBe('game-test-0');
    expect(report.environmentVariables.GAME_OPS_TOKEN).toBeUndefined();
    expect(text).not.toContain(server.token);
    expect(text).not.toContain(services().mariadb.password);
  });
});
