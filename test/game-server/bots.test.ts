/** `bin/gameops-bots` and the bot runner against real reference servers. */
import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { WebSocketServer, type RawData } from 'ws';
import { startBots, type BotEvent, type BotSummary } from '../../examples/game-server/bot-runner.ts';
import { rawText } from '../../examples/game-server/protocol.ts';
import { parsePrometheusText } from '../../src/platform/game-client.ts';
import { freePort, services } from '../harness/index.ts';
import { REPO_ROOT, startGameServer, type GameServerProcess } from './server-process.ts';

const BOTS = path.join(REPO_ROOT, 'bin/gameops-bots');
let a: GameServerProcess;
let b: GameServerProcess;

beforeAll(async () => {
  const { mariadb, redis } = services();
  [a, b] = await Promise.all([
    startGameServer({ mariadb, redis, instance: 'game-a' }),
    startGameServer({ mariadb, redis, instance: 'game-b' }),
  ]);
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});

async function logins(s: GameServerProcess): Promise<number> {
  const samples = parsePrometheusText(await (await fetch(`${s.opsUrl}/metrics`)).text());
  return samples.find((x) => x.name === 'game_logins_total')?.value ?? 0;
}

function runBots(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(BOTS, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('gameops-bots spreads players over the servers given and prints a JSON summary', async () => {
  const [beforeA, beforeB] = await Promise.all([logins(a), logins(b)]);
  const run = await runBots([
    '--players',
    '6',
    '--duration',
    '3s',
    '--ramp',
    '500ms',
    '--url',
    a.wsUrl,
    '--url',
    b.wsUrl,
    '--chat-every',
    '1s',
    '--name-prefix',
    'cli',
    '--json',
  ]);
  expect(run.code, run.stderr).toBe(0);
  const summary = JSON.parse(run.stdout) as BotSummary;
  expect(summary).toMatchObject({
    players: 6,
    connected: 6,
    logins: 6,
    refused: 0,
    errors: 0,
    gaveUp: 0,
    onlineAtEnd: 6,
  });
  expect(summary.messagesSent).toBeGreaterThan(6 * 4); // logins plus moves and chat
  expect(summary.snapshotsReceived).toBeGreaterThan(0);
  expect(summary.chatReceived).toBeGreaterThan(0);
  expect(summary.messagesPerSecond).toBeGreaterThan(0);
  expect(summary.durationSeconds).toBeGreaterThanOrEqual(3);
  expect([(await logins(a)) - beforeA, (await logins(b)) - beforeB]).toEqual([3, 3]);
});

test('gameops-bots prints a readable summary by default and refuses bad usage with exit 2', async () => {
  const run = await runBots([
    '--players',
    '1',
    '--duration',
    '1s',
    '--url',
    a.wsUrl,
    '--name-prefix',
    'human',
  ]);
  expect(run.code).toBe(0);
  expect(run.stdout).toMatch(/^bots: 1 players for \d+(\.\d)? s\n {2}connected {3}1 \(logins 1/);
  for (const args of [
    ['--players', '0'],
    ['--duration', 'soon'],
    ['--url', 'http://127.0.0.1:1/play'],
    ['--url', 'ws://user:secret@127.0.0.1:1/play'],
    ['--duration', '1s', '--ramp', '2s'],
    ['--ping-interval', '0ms'],
  ]) {
    const bad = await runBots(args);
    expect(bad.code, args.join(' ')).toBe(2);
    expect(bad.stderr).not.toBe('');
  }
  const help = await runBots(['--help']);
  expect(help.code).toBe(0);
  expect(help.stdout).toMatch(/--max-reconnects <n>[\s\S]*about 40 to 80 s[\s\S]*\(default: 20\)/);
  expect(help.stdout).toMatch(/--ping-interval <d>[\s\S]*silent[\s\S]*\(default: 5s\)/);
});

/**
 * A stand-in server speaking just enough of the protocol: welcomes each login, then says nothing, and
 * (`frozen`) does not answer pings either, like a server process that hangs. Listens on `port` (0: any).
 */
async function standIn(options: {
  frozen: boolean;
  port?: number;
}): Promise<{ url: string; connections: () => number; close: () => Promise<void> }> {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: options.port ?? 0,
    autoPong: !options.frozen,
    perMessageDeflate: false,
  });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  let connections = 0;
  wss.on('connection', (ws) => {
    connections += 1;
    ws.once('message', (data: RawData) => {
      const { name } = JSON.parse(rawText(data)) as { name: string };
      const welcome = { type: 'welcome', name, instance: 'stand-in', version: '0', x: 1, y: 1, tickRate: 30 };
      ws.send(JSON.stringify({ ...welcome, maintenance: { enabled: false, message: null, startsAt: null } }));
    });
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/play`,
    connections: () => connections,
    close: async () => {
      for (const ws of wss.clients) ws.terminate();
      await new Promise((resolve) => wss.close(resolve));
    },
  };
}

function nextEvent(
  run: ReturnType<typeof startBots>,
  type: BotEvent['type'],
  timeoutMs: number,
): Promise<BotEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} event within ${timeoutMs} ms`)), timeoutMs);
    const listener = (event: BotEvent): void => {
      if (event.type !== type) return;
      clearTimeout(timer);
      run.events.off('event', listener);
      resolve(event);
    };
    run.events.on('event', listener);
  });
}

test('a bot drops a server that went silent (no pong) and reconnects', async () => {
  const frozen = await standIn({ frozen: true });
  const run = startBots({
    players: 1,
    durationMs: 30_000,
    urls: [frozen.url],
    namePrefix: 'frozen',
    pingIntervalMs: 200,
    backoffMs: 50,
  });
  try {
    await nextEvent(run, 'login', 5000);
    const began = performance.now();
    const timeout = await nextEvent(run, 'timeout', 5000);
    expect(performance.now() - began).toBeLessThan(1500);
    expect(timeout).toMatchObject({ bot: 0, url: frozen.url });
    expect((timeout as { silentMs: number }).silentMs).toBeGreaterThanOrEqual(400);
    // …and is back (on the only server there is).
    await nextEvent(run, 'login', 5000);
    expect(frozen.connections()).toBeGreaterThanOrEqual(2);
    expect(run.summary().timeouts).toBeGreaterThanOrEqual(1);
  } finally {
    await run.stop();
    await frozen.close();
  }
});

test('by default, bots keep trying long enough for a single server to restart', async () => {
  const port = await freePort();
  const run = startBots({
    players: 2,
    durationMs: 30_000,
    urls: [`ws://127.0.0.1:${port}/play`],
    namePrefix: 'restart',
    backoffMs: 50, // the default attempts, with a short first wait: 5 attempts used to span under 1.6 s
  });
  let server: Awaited<ReturnType<typeof standIn>> | undefined;
  try {
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(run.summary().gaveUp).toBe(0);
    server = await standIn({ frozen: false, port });
    await nextEvent(run, 'login', 10_000);
    const summary = await run.stop();
    expect(summary.gaveUp).toBe(0);
    expect(summary.connectFailures).toBeGreaterThan(0);
  } finally {
    await run.stop();
    await server?.close();
  }
});

test('bots refused by a server in maintenance reconnect to another one', async () => {
  const closed = await a.ops('/ops/maintenance', {
    method: 'POST',
    body: JSON.stringify({ enabled: true, message: 'closed' }),
    headers: { 'content-type': 'application/json' },
  });
  expect(closed.status).toBe(200);
  try {
    const run = startBots({
      players: 4,
      durationMs: 60_000,
      urls: [a.wsUrl, b.wsUrl],
      namePrefix: 'failover',
      backoffMs: 50,
    });
    const where = new Map<number, string>();
    await new Promise<void>((resolve) => {
      run.events.on('event', (event) => {
        if (event.type !== 'login') return;
        where.set(event.bot, event.url);
        if (where.size === 4) resolve();
      });
    });
    const summary: BotSummary = await run.stop();
    expect([...where.values()]).toEqual(Array(4).fill(b.wsUrl));
    expect(summary).toMatchObject({
      connected: 4,
      refused: 2,
      refusedByReason: { maintenance: 2 },
      errors: 0,
    });
  } finally {
    await a.ops('/ops/maintenance', {
      method: 'POST',
      body: JSON.stringify({ enabled: false }),
      headers: { 'content-type': 'application/json' },
    });
  }
});
