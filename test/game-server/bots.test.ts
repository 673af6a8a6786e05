/** `bin/gameops-bots` and the bot runner against real reference servers. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startBots, type BotSummary } from '../../examples/game-server/bot-runner.ts';
import { parsePrometheusText } from '../../src/platform/game-client.ts';
import { services } from '../harness/index.ts';
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
  ]) {
    const bad = await runBots(args);
    expect(bad.code, args.join(' ')).toBe(2);
    expect(bad.stderr).not.toBe('');
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
