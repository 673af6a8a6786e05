/**
 * `POST /ops/notice` on the reference game server (one process for the file): announcements reach every
 * player while logins stay open, bad bodies are refused naming the field, the token is required, the
 * game-server client sends it, and bots count announcements apart from maintenance notices.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startBots } from '../../examples/game-server/bot-runner.ts';
import { secret } from '../../src/core/index.ts';
import { createGameServerClient } from '../../src/platform/game-client.ts';
import { services } from '../harness/index.ts';
import { botEvents, eventually, loginPlayer, type TestPlayer } from './player.ts';
import { REPO_ROOT, startGameServer, type GameServerProcess } from './server-process.ts';

let server: GameServerProcess;

beforeAll(async () => {
  const { mariadb, redis } = services();
  server = await startGameServer({ mariadb, redis, instance: 'game-notice-0' });
});

afterAll(async () => {
  await server?.stop();
});

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return server.ops(path, {
    method: 'POST',
    body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...headers },
  });
}

describe('POST /ops/notice', () => {
  test('every player gets the announcement, logins stay open, and the answer counts who was told', async () => {
    const players: TestPlayer[] = [];
    for (const name of ['ann', 'bob']) players.push((await loginPlayer(server.wsUrl, name)).player);
    try {
      const res = await post('/ops/notice', {
        message: 'Maintenance tomorrow 04:00–06:00',
        startsAt: '2026-11-27T05:00:00+01:00',
        endsAt: '2026-11-27T06:00:00Z',
      });
      expect(res.status).toBe(200);
      // Nothing but the count: no names, no token.
      expect(await res.json()).toEqual({ delivered: 2 });
      for (const player of players)
        expect(await player.next('notice')).toEqual({
          type: 'notice',
          kind: 'announcement',
          message: 'Maintenance tomorrow 04:00–06:00',
          startsAt: '2026-11-27T04:00:00.000Z',
          endsAt: '2026-11-27T06:00:00.000Z',
        });
      // Logins are still accepted, and the status is untouched.
      const { player: late, welcome } = await loginPlayer(server.wsUrl, 'carol');
      players.push(late);
      expect(welcome.maintenance.enabled).toBe(false);
      const status = (await (await server.ops('/ops/status')).json()) as Record<string, unknown>;
      expect(status).toMatchObject({ acceptingLogins: true, draining: false, playersOnline: 3 });
      // Times are optional and come back as null.
      const bare = await post('/ops/notice', { message: 'Hello' });
      expect(await bare.json()).toEqual({ delivered: 3 });
      expect(await late.next('notice')).toEqual({
        type: 'notice',
        kind: 'announcement',
        message: 'Hello',
        startsAt: null,
        endsAt: null,
      });
    } finally {
      for (const player of players) player.close();
    }
  });

  test('a bad body is a 400 naming the field; no token is a 401; too large is a 413', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{}, /^message: /],
      [{ message: '' }, /^message: /],
      [{ message: 'x'.repeat(501) }, /^message: at most 500 characters/],
      [{ message: 'hi', startsAt: 'tomorrow' }, /^startsAt: an ISO 8601/],
      [{ message: 'hi', startsAt: '2026-11-27T06:00:00Z', endsAt: '2026-11-27T04:00:00Z' }, /^endsAt: /],
      [{ message: 'hi', colour: 'red' }, /^body: unknown field colour/],
      ['{not json', /^body: not valid JSON/],
      ['', /^body: required/],
    ];
    for (const [body, message] of cases) {
      const res = await post('/ops/notice', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const error = ((await res.json()) as { error: { code: string; message: string } }).error;
      expect(error.code).toBe('input');
      expect(error.message).toMatch(message);
    }
    const anonymous = await fetch(`${server.opsUrl}/ops/notice`, {
      method: 'POST',
      body: JSON.stringify({ message: 'hi' }),
    });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toBe('Bearer');
    const huge = await post('/ops/notice', { message: 'hi', pad: 'x'.repeat(70 * 1024) });
    expect(huge.status).toBe(413);
    expect((await server.ops('/ops/notice')).status).toBe(405);
  });

  test('messages players read refuse control and text-direction characters, naming the field', async () => {
    const texts = [
      'one\ntwo',
      'bell\u0007',
      'c1\u0085',
      'del\u007f',
      'exe\u202etxt',
      'iso\u2066x',
      'rlm\u200f',
    ];
    for (const text of texts)
      for (const path of ['/ops/notice', '/ops/maintenance', '/ops/drain']) {
        const res = await post(
          path,
          path === '/ops/maintenance' ? { enabled: true, message: text } : { message: text },
        );
        expect(res.status, `${path} ${JSON.stringify(text)}`).toBe(400);
        const error = ((await res.json()) as { error: { message: string } }).error;
        expect(error.message).toMatch(/^message: no control or text-direction characters/);
      }
    // Nothing was changed by the refused requests.
    expect(await (await server.ops('/ops/status')).json()).toMatchObject({
      maintenance: { enabled: false },
      draining: false,
    });
    // gameops refuses the same before asking, and times the way the server does (not Date.parse).
    const client = createGameServerClient({ token: secret(server.token, 'inline'), timeoutMs: 5000 });
    await expect(client.notice(server.opsUrl, { message: 'a\u202eb' })).rejects.toMatchObject({
      code: 'input',
      message: expect.stringMatching(/^notice message: .*U\+202E/) as unknown,
    });
    await expect(client.drain(server.opsUrl, { message: 'a\nb' })).rejects.toThrow(
      /^drain message: .*U\+000A/,
    );
    await expect(client.setMaintenance(server.opsUrl, { enabled: true, message: 'x\u0085' })).rejects.toThrow(
      /^maintenance message: /,
    );
    for (const startsAt of ['1', 'Nov 26', '2026-11-27'])
      await expect(client.notice(server.opsUrl, { message: 'hi', startsAt })).rejects.toThrow(
        /^notice startsAt: .* is not an ISO 8601 date-time with offset/,
      );
    expect((await (await server.ops('/ops/status')).json()) as Record<string, unknown>).toMatchObject({
      maintenance: { enabled: false },
      draining: false,
      pendingWrites: expect.any(Number) as unknown,
    });
  });

  test('the game-server client sends it and refuses bad input before asking', async () => {
    const client = createGameServerClient({ token: secret(server.token, 'inline'), timeoutMs: 5000 });
    expect(await client.notice(server.opsUrl, { message: 'nobody here' })).toEqual({ delivered: 0 });
    await expect(
      client.notice(server.opsUrl, {
        message: 'hi',
        startsAt: '2026-11-27T06:00:00Z',
        endsAt: '2026-11-27T05:00:00Z',
      }),
    ).rejects.toThrow(/notice endsAt: .* is before startsAt/);
    await expect(client.notice(server.opsUrl, { message: '' })).rejects.toMatchObject({ code: 'input' });
    const wrong = createGameServerClient({ token: secret(`${server.token}x`, 'inline'), timeoutMs: 5000 });
    await expect(wrong.notice(server.opsUrl, { message: 'hi' })).rejects.toMatchObject({
      code: 'unavailable',
      message: expect.stringMatching(/token rejected \(HTTP 401\)/) as unknown,
    });
  });

  test('bots count announcements apart from maintenance notices, and emit them as events', async () => {
    const lines: string[] = [];
    const run = startBots({
      players: 3,
      durationMs: 60_000,
      urls: [server.wsUrl],
      namePrefix: 'n',
      log: (line) => lines.push(line),
    });
    try {
      await botEvents(run, 3, (e) => e.type === 'login', 10_000);
      const told = botEvents(run, 3, (e) => e.type === 'notice' && e.kind === 'announcement', 10_000);
      expect(
        await (await post('/ops/notice', { message: 'Back soon', endsAt: '2026-11-27T06:00:00Z' })).json(),
      ).toEqual({
        delivered: 3,
      });
      const events = await told;
      expect(events).toHaveLength(3);
      expect(events[0]).toMatchObject({
        kind: 'announcement',
        message: 'Back soon',
        endsAt: '2026-11-27T06:00:00.000Z',
      });
      const summary = run.summary();
      expect(summary.noticesByKind).toEqual({ announcement: 3 });
      expect(summary.noticesSeen).toBe(3);
      // One log line for the run, however many bots read it.
      expect(lines.filter((l) => l.startsWith('notice: announcement: Back soon'))).toHaveLength(1);
    } finally {
      await run.stop();
    }
  });
});

test('gameops-bots --events prints each announcement as a JSON line and counts it by kind in the summary', async () => {
  const child = spawn(path.join(REPO_ROOT, 'bin/gameops-bots'), [
    '--players',
    '2',
    '--duration',
    '3s',
    '--url',
    server.wsUrl,
    '--name-prefix',
    'cli',
    '--events',
    '--json',
  ]);
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  await eventually('2 bots online', async () => {
    const status = (await (await server.ops('/ops/status')).json()) as { playersOnline: number };
    return status.playersOnline === 2;
  });
  expect(await (await post('/ops/notice', { message: 'Patch at 04:00' })).json()).toEqual({ delivered: 2 });
  expect(await exited).toBe(0);
  const lines = stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const notices = lines.filter((l) => (l['event'] as { type?: string } | undefined)?.type === 'notice');
  expect(notices.map((l) => l['event'])).toEqual([
    {
      type: 'notice',
      bot: expect.any(Number) as unknown,
      kind: 'announcement',
      message: 'Patch at 04:00',
      startsAt: null,
      endsAt: null,
    },
    {
      type: 'notice',
      bot: expect.any(Number) as unknown,
      kind: 'announcement',
      message: 'Patch at 04:00',
      startsAt: null,
      endsAt: null,
    },
  ]);
  // The last line is the summary.
  expect(lines.at(-1)).toMatchObject({ noticesSeen: 2, noticesByKind: { announcement: 2 } });
});
