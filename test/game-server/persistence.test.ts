/**
 * Writes to MySQL and Redis are off the tick path: with both frozen (SIGSTOP), the game keeps ticking and
 * players keep playing; the writes wait and land once the servers are back. A MySQL that hangs (a proxy
 * that holds the connection and forwards nothing) does not stop presence in Redis, and is reported.
 * Private servers, since freezing the shared ones would stall every other test.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { parsePrometheusText } from '../../src/platform/game-client.ts';
import {
  randomSecret,
  startMariaDB,
  startRedis,
  type MariaDBHandle,
  type RedisHandle,
} from '../harness/index.ts';
import { eventually, loginPlayer } from './player.ts';
import { startGameServer, type GameServerProcess } from './server-process.ts';
import { startFreezableProxy, type FreezableProxy } from './tcp-proxy.ts';

let db: MariaDBHandle;
let redis: RedisHandle;
let server: GameServerProcess;
let frozen = false;

const freeze = (signal: 'SIGSTOP' | 'SIGCONT'): void => {
  process.kill(db.pid, signal);
  process.kill(redis.pid, signal);
  frozen = signal === 'SIGSTOP';
};

beforeAll(async () => {
  [db, redis] = await Promise.all([startMariaDB(), startRedis({ password: randomSecret() })]);
  server = await startGameServer({ mariadb: db, redis });
});

afterAll(async () => {
  if (frozen) freeze('SIGCONT');
  await server?.stop();
  await Promise.allSettled([db?.stop(), redis?.stop()]);
});

async function metric(name: string, labels: Record<string, string> = {}, of = server): Promise<number> {
  const samples = parsePrometheusText(await (await fetch(`${of.opsUrl}/metrics`)).text());
  const found = samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  return found.length === 0 ? NaN : found.reduce((sum, s) => sum + s.value, 0);
}

const queued = (of = server): Promise<number> => metric('game_persistence_queue', {}, of);

type Row = { player: string; ended_at: Date | null; end_reason: string | null };
async function rows(of = server): Promise<Row[]> {
  const sql = await of.sql();
  try {
    return (
      await sql.query('SELECT player, ended_at, end_reason FROM player_sessions ORDER BY player')
    )[0] as Row[];
  } finally {
    await sql.end();
  }
}

test('MySQL and Redis frozen: the game keeps ticking, and the writes land when they are back', async () => {
  const first = await loginPlayer(server.wsUrl, 'before-freeze');
  await eventually('the first session row', async () => ((await rows()).length === 1 ? true : undefined));

  freeze('SIGSTOP');
  const since = server.logs().length;
  // Playing goes on: a move shows in the next snapshots.
  first.player.send({ type: 'move', dx: first.welcome.x > 500 ? -5 : 5, dy: 0 });
  await eventually('the move applied', async () => {
    const snapshot = await first.player.next('snapshot');
    return snapshot.x !== first.welcome.x ? true : undefined;
  });
  // A login still works: the saved position cannot be read (Redis times out), so the player spawns anew.
  const second = await loginPlayer(server.wsUrl, 'during-freeze');
  expect(second.welcome.name).toBe('during-freeze');
  // Leaving is answered without waiting long, honestly: the position is not written (saved: false); the
  // session's end and the save wait in memory, and /ops/status counts them.
  first.player.send({ type: 'leave' });
  expect(await first.player.next('bye')).toMatchObject({ reason: 'leave', saved: false });
  await eventually('writes queued', async () => ((await queued()) > 0 ? true : undefined));
  const status = (await (await server.ops('/ops/status')).json()) as {
    playersOnline: number;
    pendingWrites: number;
    ticksPerSecond: number;
  };
  expect(status.playersOnline).toBe(1);
  expect(status.pendingWrites).toBeGreaterThan(0);
  expect(status.ticksPerSecond).toBeGreaterThan(25);
  // The failures are logged as errors (the Redis writes time out; the MySQL batch just waits).
  await server.waitForLog((l) => l.level === 'ERROR' && /Redis/.test(l.msg ?? ''), { since });

  freeze('SIGCONT');
  const landed = await eventually(
    'both sessions written',
    async () => {
      const found = await rows();
      return found.length === 2 && found[0]!.ended_at !== null ? found : undefined;
    },
    20_000,
  );
  expect(landed.map((r) => [r.player, r.end_reason])).toEqual([
    ['before-freeze', 'leave'],
    ['during-freeze', null],
  ]);
  await eventually('the queue drained', async () => ((await queued()) === 0 ? true : undefined), 20_000);
  const after = (await (await server.ops('/ops/status')).json()) as { pendingWrites: number };
  expect(after.pendingWrites).toBe(0);
  const presence = server.redis();
  try {
    expect(await presence.get('presence:during-freeze')).toBe(server.instance);
    expect(await presence.exists('presence:before-freeze')).toBe(0);
  } finally {
    presence.disconnect();
  }
  second.player.close();
});

test('MySQL hung (connection open, nothing answered): presence still goes to Redis, the failure is an ERROR, the rows land after', async () => {
  let proxy: FreezableProxy | undefined;
  let hung: GameServerProcess | undefined;
  try {
    proxy = await startFreezableProxy({ host: db.host, port: db.port });
    hung = await startGameServer({
      mariadb: db,
      redis,
      env: { GAME_MYSQL_PORT: String(proxy.port), GAME_MYSQL_QUERY_TIMEOUT_MS: '1000' },
    });
    const s = hung;
    const first = await loginPlayer(s.wsUrl, 'first');
    await eventually('the first session row', async () => ((await rows(s)).length === 1 ? true : undefined));
    const errorsBefore = await metric('game_errors_total', { kind: 'persistence' }, s);

    proxy.freeze();
    const since = s.logs().length;
    // Its row's write hangs; before the fix, nothing at all was written from then on.
    const second = await loginPlayer(s.wsUrl, 'second');
    await new Promise((resolve) => setTimeout(resolve, 600));
    const third = await loginPlayer(s.wsUrl, 'third');
    first.player.send({ type: 'leave' });
    await first.player.next('bye');
    const presence = s.redis();
    try {
      await eventually(
        'presence of the later players written and the leaver’s removed while MySQL hangs',
        async () =>
          (await presence.get('presence:third')) === s.instance &&
          (await presence.get('presence:second')) === s.instance &&
          (await presence.exists('presence:first')) === 0
            ? true
            : undefined,
        5000,
      );
    } finally {
      presence.disconnect();
    }
    const logged = await s.waitForLog((l) => l.level === 'ERROR' && /MySQL/.test(l.msg ?? ''), {
      since,
      timeoutMs: 10_000,
    });
    expect(logged.msg).toMatch(/no answer within 1000 ms|still running after/);
    expect(await metric('game_errors_total', { kind: 'persistence' }, s)).toBeGreaterThan(errorsBefore);
    expect(await queued(s)).toBeGreaterThan(0);
    // The game itself never noticed.
    const status = (await (await s.ops('/ops/status')).json()) as { ticksPerSecond: number };
    expect(status.ticksPerSecond).toBeGreaterThan(25);

    proxy.thaw();
    const landed = await eventually(
      'every session written once MySQL answers again',
      async () => {
        const found = await rows(s);
        return found.length === 3 && found[0]!.ended_at !== null ? found : undefined;
      },
      20_000,
    );
    expect(landed.map((r) => [r.player, r.end_reason])).toEqual([
      ['first', 'leave'],
      ['second', null],
      ['third', null],
    ]);
    await eventually('the queue drained', async () => ((await queued(s)) === 0 ? true : undefined), 20_000);
    second.player.close();
    third.player.close();
  } finally {
    proxy?.thaw();
    await hung?.stop();
    await proxy?.close();
  }
}, 60_000);
