/**
 * Connections that go bad without closing: a player whose network vanished (no pongs), and one that stops
 * reading what the server sends. Neither may stay online for ever nor make the server hold unbounded
 * memory for it.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { WebSocket } from 'ws';
import { services } from '../harness/index.ts';
import { eventually, loginPlayer } from './player.ts';
import { startGameServer, type GameServerProcess } from './server-process.ts';

/** A fast heartbeat. */
let server: GameServerProcess;
/** The default heartbeat (a reader that does not read does not answer pings either), and room for the
 * flood of chat the slow-reader test needs. */
let flooded: GameServerProcess;

beforeAll(async () => {
  const { mariadb, redis } = services();
  [server, flooded] = await Promise.all([
    startGameServer({ mariadb, redis, env: { GAME_PING_INTERVAL_MS: '300' } }),
    startGameServer({ mariadb, redis, env: { GAME_MAX_INPUTS_PER_SECOND: '1000' } }),
  ]);
});

afterAll(async () => {
  await Promise.all([server?.stop(), flooded?.stop()]);
});

interface Status {
  playersOnline: number;
  sessions: number;
}
const status = async (of: GameServerProcess): Promise<Status> =>
  (await (await of.ops('/ops/status')).json()) as Status;

test('a player that stops answering pings is cut after two missed pongs; one that answers stays', async () => {
  const sql = await server.sql();
  const ghost = await loginPlayer(server.wsUrl, 'vanished', { autoPong: false });
  const alive = await loginPlayer(server.wsUrl, 'present');
  try {
    const began = performance.now();
    await ghost.player.closed;
    // Pings every 300 ms: cut at the third tick of the heartbeat after login, give or take one.
    expect(performance.now() - began).toBeLessThan(3000);
    const ended = await eventually('the session ended as a disconnect', async () => {
      const [rows] = await sql.query(
        "SELECT end_reason FROM player_sessions WHERE player = 'vanished' AND ended_at IS NOT NULL",
      );
      return (rows as unknown[]).length === 1 ? (rows as Array<{ end_reason: string }>) : undefined;
    });
    expect(ended[0]!.end_reason).toBe('disconnect');
    await server.waitForLog((l) => l.msg === 'a connection stopped answering pings; cut');
    // The name is free again at once.
    const back = await loginPlayer(server.wsUrl, 'vanished');
    back.player.close();
    // The one that answers is still there, well past two ping periods.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(alive.player.ws.readyState).toBe(WebSocket.OPEN);
    alive.player.send({ type: 'move', dx: 1, dy: 0 });
    await alive.player.next('snapshot');
  } finally {
    alive.player.close();
    await sql.end();
  }
});

test('a player that stops reading is closed once it stays behind (4007), not buffered without bound', async () => {
  // The reader sits in the middle; five talkers around it, each near it but not near each other, so every
  // chat line goes to the reader (and its talker) only.
  const redis = flooded.redis();
  const talkers = Array.from({ length: 5 }, (_, i) => ({
    name: `talker-${i}`,
    x: 500 + 140 * Math.cos((2 * Math.PI * i) / 5),
    y: 500 + 140 * Math.sin((2 * Math.PI * i) / 5),
  }));
  try {
    await redis.hset('player:reader', 'x', 500, 'y', 500);
    for (const t of talkers) await redis.hset(`player:${t.name}`, 'x', t.x, 'y', t.y);
  } finally {
    redis.disconnect();
  }
  const reader = await loginPlayer(flooded.wsUrl, 'reader');
  const since = flooded.logs().length;
  // Stops reading: the socket is no longer read, so the kernel's buffers fill and then the server's.
  (reader.player.ws as unknown as { _socket: { pause(): void } })._socket.pause();
  const sockets = await Promise.all(
    talkers.map(
      (t) =>
        new Promise<WebSocket>((resolve, reject) => {
          const ws = new WebSocket(flooded.wsUrl, { perMessageDeflate: false });
          ws.on('error', reject);
          ws.on('open', () => ws.send(JSON.stringify({ type: 'login', name: t.name })));
          ws.once('message', () => resolve(ws));
        }),
    ),
  );
  const line = JSON.stringify({ type: 'chat', text: 'x'.repeat(200), scope: 'near' });
  // 50 lines every 50 ms each: 1000 per second per talker, the configured cap.
  const flood = setInterval(() => {
    for (const ws of sockets)
      if (ws.readyState === WebSocket.OPEN) for (let i = 0; i < 50; i++) ws.send(line);
  }, 50);
  try {
    const closed = await flooded.waitForLog(
      (l) => l.msg === 'a player is not reading what is sent; closed (4007)',
      { since, timeoutMs: 25_000 },
    );
    expect(closed.level).toBe('WARN');
    // Behind by more than the soft cap, but the server never queued past the hard cap.
    expect(closed.bufferedBytes as number).toBeGreaterThan(256 * 1024);
    expect(closed.bufferedBytes as number).toBeLessThanOrEqual(1024 * 1024 + 4096);
    await eventually('the reader gone', async () => {
      const s = await status(flooded);
      return s.playersOnline === talkers.length ? true : undefined;
    });
  } finally {
    clearInterval(flood);
    for (const ws of sockets) ws.close();
    reader.player.ws.terminate();
  }
}, 40_000);
