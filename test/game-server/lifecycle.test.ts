/**
 * Maintenance, drain and shutdown of the reference game server, with bots as players. Each test has its
 * own server: a drain or a shutdown is for good.
 */
import { afterEach, expect, test } from 'vitest';
import { startBots, type BotRun } from '../../examples/game-server/bot-runner.ts';
import { parsePrometheusText } from '../../src/platform/game-client.ts';
import { services } from '../harness/index.ts';
import { botEvents as events, connectPlayer, eventually, loginPlayer } from './player.ts';
import {
  deleteKeys,
  startGameServer,
  type GameServerOptions,
  type GameServerProcess,
} from './server-process.ts';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function server(options: Partial<GameServerOptions> = {}): Promise<GameServerProcess> {
  const { mariadb, redis } = services();
  const started = await startGameServer({ mariadb, redis, ...options });
  cleanups.push(() => started.stop('SIGKILL'));
  return started;
}

function bots(options: Parameters<typeof startBots>[0]): BotRun {
  const run = startBots(options);
  cleanups.push(() => run.stop());
  return run;
}

interface Status {
  playersOnline: number;
  acceptingLogins: boolean;
  draining: boolean;
  maintenance: { enabled: boolean; message: string | null; startsAt: string | null };
  drain: { deadline: string; message: string } | null;
}

async function status(s: GameServerProcess): Promise<Status> {
  return (await (await s.ops('/ops/status')).json()) as Status;
}

async function post(s: GameServerProcess, path: string, body: unknown): Promise<Response> {
  return s.ops(path, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  });
}

async function metric(
  s: GameServerProcess,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const samples = parsePrometheusText(await (await fetch(`${s.opsUrl}/metrics`)).text());
  return samples
    .filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
    .reduce((sum, x) => sum + x.value, 0);
}

type SessionRow = { player: string; ended_at: Date | null; end_reason: string | null };
async function sessions(s: GameServerProcess): Promise<SessionRow[]> {
  const sql = await s.sql();
  try {
    const [rows] = await sql.query(
      'SELECT player, ended_at, end_reason FROM player_sessions ORDER BY player',
    );
    return rows as SessionRow[];
  } finally {
    await sql.end();
  }
}

async function presenceKeys(s: GameServerProcess): Promise<string[]> {
  const redis = s.redis();
  try {
    // KEYS takes the pattern literally (no prefix added): this server's keys only.
    return (await redis.keys(`${s.keyPrefix}presence:*`)).sort();
  } finally {
    redis.disconnect();
  }
}

test('maintenance: every player sees the notice, new logins are refused, players in the game stay', async () => {
  const s = await server();
  const run = bots({ players: 8, durationMs: 120_000, urls: [s.wsUrl], namePrefix: 'm', backoffMs: 100 });
  await events(run, 8, (e) => e.type === 'login');
  expect((await status(s)).playersOnline).toBe(8);

  const noticed = events(run, 8, (e) => e.type === 'notice' && e.kind === 'maintenance' && e.enabled);
  const on = await post(s, '/ops/maintenance', {
    enabled: true,
    message: 'Back at 10:00',
    startsAt: '2026-11-26T10:00:00Z',
  });
  expect(on.status).toBe(200);
  expect(await on.json()).toMatchObject({
    acceptingLogins: false,
    maintenance: { enabled: true, message: 'Back at 10:00', startsAt: '2026-11-26T10:00:00.000Z' },
    playersOnline: 8,
  });
  expect((await noticed).map((e) => (e.type === 'notice' ? e.message : ''))).toEqual(
    Array(8).fill('Back at 10:00'),
  );

  const newcomer = await connectPlayer(s.wsUrl);
  newcomer.send({ type: 'login', name: 'latecomer' });
  expect(await newcomer.next('refused')).toEqual({
    type: 'refused',
    reason: 'maintenance',
    message: 'Back at 10:00',
  });
  expect((await newcomer.closed).code).toBe(4001);

  // The players already in keep playing.
  const snapshots = run.summary().snapshotsReceived;
  await eventually('snapshots keep coming', () => run.summary().snapshotsReceived > snapshots + 16);
  expect((await status(s)).playersOnline).toBe(8);
  expect(await metric(s, 'game_logins_refused_total', { reason: 'maintenance' })).toBe(1);
  expect(await metric(s, 'game_maintenance_enabled')).toBe(1);

  // Idempotent: the same state again (the same instant, written in another zone) sends nothing;
  // switching off sends one more notice each.
  expect(
    (
      await post(s, '/ops/maintenance', {
        enabled: true,
        message: 'Back at 10:00',
        startsAt: '2026-11-26T19:00:00+09:00',
      })
    ).status,
  ).toBe(200);
  const reopened = events(run, 8, (e) => e.type === 'notice' && e.kind === 'maintenance' && !e.enabled);
  const off = await post(s, '/ops/maintenance', { enabled: false });
  expect(await off.json()).toMatchObject({
    acceptingLogins: true,
    maintenance: { enabled: false, message: null },
  });
  await reopened;
  // Notices arrive in order on each socket: a repeated "on" would have come before the "off".
  expect(run.summary().noticesSeen).toBe(16);

  const { welcome } = await loginPlayer(s.wsUrl, 'welcome-back');
  expect(welcome.maintenance.enabled).toBe(false);
  const summary = await run.stop();
  expect(summary).toMatchObject({ connected: 8, refused: 0, errors: 0, gaveUp: 0 });
});

test('drain: players save and leave, playersOnline falls to 0, sessions end and presence goes', async () => {
  const s = await server({ instance: 'game-drain' });
  const run = bots({
    players: 10,
    durationMs: 120_000,
    urls: [s.wsUrl],
    namePrefix: 'd',
    backoffMs: 100,
    maxReconnects: 2,
  });
  await events(run, 10, (e) => e.type === 'login');
  await eventually('ten open sessions', async () => {
    const rows = await sessions(s);
    return rows.length === 10 && rows.every((r) => r.ended_at === null) ? rows : undefined;
  });
  expect(await presenceKeys(s)).toHaveLength(10);

  const drained = events(run, 10, (e) => e.type === 'drain');
  const started = Date.now();
  const res = await post(s, '/ops/drain', { message: 'Patch 2.1: please log out', deadlineSeconds: 20 });
  expect(res.status).toBe(200);
  const answer = (await res.json()) as Status & { playersRemaining: number };
  expect(answer).toMatchObject({
    draining: true,
    acceptingLogins: false,
    drain: { message: 'Patch 2.1: please log out' },
  });
  expect(answer.playersRemaining).toBeLessThanOrEqual(10);
  const deadline = Date.parse(answer.drain!.deadline);
  expect(deadline - started).toBeGreaterThan(18_000);
  expect(deadline - started).toBeLessThan(22_000);
  expect((await drained).every((e) => e.type === 'drain' && e.message === 'Patch 2.1: please log out')).toBe(
    true,
  );

  // gameops's way to know the instance is empty: poll status until playersOnline is 0.
  await eventually('playersOnline 0', async () => ((await status(s)).playersOnline === 0 ? true : undefined));
  expect(Date.now() - started).toBeLessThan(10_000); // well before the deadline: the players left themselves

  // Bots knocking again are refused while draining.
  await eventually('a refused reconnection', () => (run.summary().refusedByReason.draining ?? 0) > 0);
  const rows = await eventually('ten ended sessions', async () => {
    const found = await sessions(s);
    return found.every((r) => r.ended_at !== null) ? found : undefined;
  });
  expect(rows.map((r) => r.end_reason)).toEqual(Array(10).fill('drain'));
  await eventually('presence gone', async () => ((await presenceKeys(s)).length === 0 ? true : undefined));
  expect(await metric(s, 'game_draining')).toBe(1);
  expect(run.summary()).toMatchObject({ drained: 10, errors: 0 });
});

test('drain deadline: a player who ignores it is saved and disconnected with 4003', async () => {
  const s = await server();
  const { player, welcome } = await loginPlayer(s.wsUrl, 'stubborn');
  const first = (await (await post(s, '/ops/drain', { deadlineSeconds: 1 })).json()) as Status;
  expect(await player.next('drain')).toMatchObject({ secondsLeft: 1, deadline: first.drain!.deadline });
  // A later, longer deadline does not postpone the first.
  const again = (await (await post(s, '/ops/drain', { deadlineSeconds: 300 })).json()) as Status;
  expect(again.drain!.deadline).toBe(first.drain!.deadline);
  expect(await player.next('bye')).toEqual({ type: 'bye', reason: 'kicked', saved: true });
  expect((await player.closed).code).toBe(4003);
  expect((await status(s)).playersOnline).toBe(0);
  const [row] = await eventually('the session ended', async () => {
    const found = await sessions(s);
    return found[0]?.ended_at ? found : undefined;
  });
  expect(row).toMatchObject({ player: 'stubborn', end_reason: 'kicked' });
  const redis = s.redis();
  try {
    const saved = await redis.hgetall('player:stubborn');
    expect({ x: Number(saved.x), y: Number(saved.y) }).toEqual({ x: welcome.x, y: welcome.y });
  } finally {
    redis.disconnect();
  }
});

test('SIGTERM: players are drained, every session ends with shutdown, exit code 0', async () => {
  const s = await server({ keepData: true, env: { GAME_SHUTDOWN_DRAIN_SECONDS: '2' } });
  cleanups.push(async () => {
    const sql = await s.sql();
    await sql.query(`DROP DATABASE IF EXISTS \`${s.database}\``).finally(() => sql.end());
    await deleteKeys(services().redis, s.keyPrefix);
  });
  const run = bots({ players: 5, durationMs: 120_000, urls: [s.wsUrl], namePrefix: 't', maxReconnects: 0 });
  await events(run, 5, (e) => e.type === 'login');
  const { player: stubborn } = await loginPlayer(s.wsUrl, 'ignores-drain');
  await eventually('six open sessions', async () => ((await sessions(s)).length === 6 ? true : undefined));

  const exit = await s.stop('SIGTERM');
  expect(exit).toEqual({ code: 0, signal: null });
  expect(await stubborn.next('drain')).toMatchObject({ secondsLeft: 2 });
  expect(await stubborn.next('bye')).toEqual({ type: 'bye', reason: 'shutdown', saved: true });
  expect((await stubborn.closed).code).toBe(1001);

  const rows = await sessions(s);
  expect(rows).toHaveLength(6);
  expect(rows.map((r) => r.end_reason)).toEqual(Array(6).fill('shutdown'));
  expect(rows.every((r) => r.ended_at !== null)).toBe(true);
  expect(await presenceKeys(s)).toEqual([]);
  const levels = s.logs().map((l) => l.level);
  expect(levels).not.toContain('ERROR');
  expect(s.logs().at(-1)?.msg).toBe('stopped');
  expect(run.summary().drained).toBe(5);
});
