/**
 * The maintenance side of the fleet actions against a real local fleet of the reference game server with
 * players on it: announcements (fleet.notice), waiting for players to leave and draining them at the
 * deadline (fleet.drain-players), an instance that stops answering mid-drain, restarting only the drained
 * instances (fleet.restart-drained), and rotating the game servers' logs (fleet.rotate-logs).
 *
 * The deadline runs on a manual clock: the test moves it on when it wants the deadline reached; the only
 * real waiting is the game servers' own (players leaving, the one-second kick notice).
 */
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Redis } from 'ioredis';
import { startBots, type BotRun } from '../../../examples/game-server/bot-runner.ts';
import { startFreezableProxy, type FreezableProxy } from '../../../test/game-server/tcp-proxy.ts';
import { services as harness } from '../../../test/harness/index.ts';
import { writeReferenceFleetConfig, type ReferenceFleetConfig } from '../../../test/support/fleet.ts';
import type { Resources } from '../../app/bootstrap.ts';
import { ManualClock } from '../../core/index.ts';
import type { DrainPlayersResult, FleetStatus, LogRotation, NoticeResult } from '../../platform/index.ts';
import { destroyFleet } from '../../platform/local/test-support.ts';
import type { RunbookServices } from './services.ts';
import {
  catalogAction,
  createRunbookServices,
  resourcesFromFile,
  shutdown,
  stepContext,
  type TestStep,
} from './test-support.ts';

/** A player who logs in and stays until told `leave()`; with `obeyDrain`, leaves when asked to drain. */
async function player(url: string, name: string, obeyDrain: boolean) {
  const ws = new WebSocket(url);
  const seen: string[] = [];
  /** `saved` of each `bye`. */
  const byes: boolean[] = [];
  await new Promise<void>((resolve, reject) => {
    ws.once('error', reject);
    ws.once('open', () => ws.send(JSON.stringify({ type: 'login', name })));
    ws.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString()) as { type: string; kind?: string };
      if (message.type !== 'snapshot')
        seen.push(message.kind ? `${message.type}:${message.kind}` : message.type);
      if (message.type === 'bye') byes.push((message as { saved?: boolean }).saved === true);
      if (message.type === 'welcome') resolve();
      if (message.type === 'refused') reject(new Error(`${name} was refused a login`));
      if (message.type === 'drain' && obeyDrain) ws.send(JSON.stringify({ type: 'leave' }));
    });
  });
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  return { seen, byes, closed, leave: () => ws.send(JSON.stringify({ type: 'leave' })), ws };
}

/** Resolves when more than `already` lines matching `pattern` have been logged by the step. */
async function logged(ctx: TestStep, pattern: RegExp, already = 0): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (ctx.lines.filter((l) => pattern.test(l)).length > already) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`no line matching ${String(pattern)}; logged: ${ctx.lines.join(' | ')}`);
}

describe('fleet maintenance actions on a local reference fleet with players', () => {
  let written: ReferenceFleetConfig;
  let resources: Resources;
  let services: RunbookServices;
  /** Between the game servers and Redis: frozen, their writes hang (a hung Redis) without touching the shared one. */
  let redisProxy: FreezableProxy;
  let keyPrefix: string;
  const clock = new ManualClock(Date.now());
  const wsUrl = (i: number) => `ws://127.0.0.1:${written.basePort + i}/play`;

  async function run<T>(name: string, args: unknown, ctx: TestStep = stepContext(services)): Promise<T> {
    const def = catalogAction(name);
    return (await def.run(def.args.parse(args), ctx)) as T;
  }

  /** Pid of a local instance, from the fleet's state file. */
  function pidOf(index: number): number {
    const state = JSON.parse(readFileSync(join(written.dataDir, 'fleet', 'state.json'), 'utf8')) as {
      instances: Array<{ index: number; pid?: number }>;
    };
    const pid = state.instances.find((i) => i.index === index)?.pid;
    if (pid === undefined) throw new Error(`no pid for game-${index}`);
    return pid;
  }

  beforeAll(async () => {
    written = await writeReferenceFleetConfig({ prefix: 'rbmaint' });
    const { redis } = harness();
    redisProxy = await startFreezableProxy({ host: redis.host, port: redis.port });
    const text = readFileSync(written.path, 'utf8');
    keyPrefix = /GAME_REDIS_KEY_PREFIX: "([^"]+)"/.exec(text)![1]!;
    // A silent instance is given up on after half a second, not five.
    writeFileSync(
      written.path,
      text
        .replace('requestTimeout: 5s', 'requestTimeout: 500ms')
        .replace(`GAME_REDIS_HOST: "${redis.host}"`, 'GAME_REDIS_HOST: "127.0.0.1"')
        .replace(`GAME_REDIS_PORT: "${redis.port}"`, `GAME_REDIS_PORT: "${redisProxy.port}"`),
    );
    resources = await resourcesFromFile(written.path, clock);
    services = createRunbookServices(resources);
    await (await services.fleet()).platform.scale(2);
  });

  afterAll(async () => {
    redisProxy?.thaw();
    if (resources) await shutdown(resources);
    if (written) await destroyFleet(written.dataDir);
    await redisProxy?.close();
  });

  it('fleet.notice tells every bot of every instance, logins stay open', async () => {
    const bots: BotRun = startBots({
      players: 4,
      durationMs: 60_000,
      urls: [wsUrl(0), wsUrl(1)],
      namePrefix: 'nb',
    });
    try {
      for (let i = 0; i < 200 && bots.summary().onlineAtEnd < 4; i++)
        await new Promise((resolve) => setTimeout(resolve, 25));
      const ctx = stepContext(services);
      const result = await run<NoticeResult>(
        'fleet.notice',
        { message: 'Maintenance tomorrow 04:00 UTC', startsAt: '2026-11-27T04:00:00Z' },
        ctx,
      );
      expect(result).toMatchObject({ status: 'ok', delivered: 4 });
      expect(result.instances.map((i) => [i.instance, i.ok, i.delivered])).toEqual([
        ['game-0', true, 2],
        ['game-1', true, 2],
      ]);
      expect(ctx.lines).toContain('notice delivered to 4 player(s) on 2 instance(s)');
      for (let i = 0; i < 200 && (bots.summary().noticesByKind['announcement'] ?? 0) < 4; i++)
        await new Promise((resolve) => setTimeout(resolve, 25));
      expect(bots.summary().noticesByKind).toEqual({ announcement: 4 });
      const status = await run<FleetStatus>('fleet.status', {});
      expect(status.instances.every((i) => i.game?.acceptingLogins === true)).toBe(true);
      // Bad input never reaches an instance.
      expect(catalogAction('fleet.notice').args.safeParse({ message: '' }).error?.issues[0]?.path).toEqual([
        'message',
      ]);
      await expect(
        run('fleet.notice', {
          message: 'x',
          startsAt: '2026-11-27T04:00:00Z',
          endsAt: '2026-11-27T03:00:00Z',
        }),
      ).rejects.toMatchObject({ code: 'input', message: expect.stringContaining('endsAt') as unknown });
    } finally {
      await bots.stop();
    }
  });

  it('fleet.drain-players returns as soon as players have left by themselves', async () => {
    const a = await player(wsUrl(0), 'leaves-a', false);
    const b = await player(wsUrl(1), 'leaves-b', false);
    await run('fleet.gate', { closed: true, message: 'maintenance' });
    const ctx = stepContext(services);
    const draining = run<DrainPlayersResult>('fleet.drain-players', { deadlineMs: 600_000 }, ctx);
    await logged(ctx, /^2 player\(s\) online on 2 instance\(s\)/);
    a.leave();
    await logged(ctx, /^1 player\(s\) online/);
    b.leave();
    const result = await draining;
    expect(result).toMatchObject({
      status: 'empty',
      playersAtStart: 2,
      playersRemaining: 0,
      kicked: false,
      playersKicked: 0,
      needsRestart: [],
    });
    expect(result.emptyAt).toBeDefined();
    // Nobody was drained: the instances still take logins once the gate opens.
    expect((await run<FleetStatus>('fleet.status', {})).instances.map((i) => i.game?.draining)).toEqual([
      false,
      false,
    ]);
    expect(
      catalogAction('fleet.drain-players').args.safeParse({ deadlineMs: -1 }).error?.issues[0]?.path,
    ).toEqual(['deadlineMs']);
  });

  it('empty only once the leavers are saved: a hung Redis keeps the drain waiting, then it times out naming the writes', async () => {
    await run('fleet.gate', { closed: false });
    const saver = await player(wsUrl(0), 'saver', false);
    await run('fleet.gate', { closed: true, message: 'maintenance' });
    redisProxy.freeze();
    try {
      const ctx = stepContext(services);
      const failure = run('fleet.drain-players', { deadlineMs: 60_000, kickNoticeSeconds: 1 }, ctx).catch(
        (err: unknown) => err,
      );
      await logged(ctx, /^1 player\(s\) online on 1 instance/);
      saver.leave();
      expect(await saver.closed).toBe(1000);
      // Out of the game at once, but told honestly that the save is not written.
      expect(saver.byes).toEqual([false]);
      const pending = /^0 player\(s\) online on 0 instance\(s\); \d+ write\(s\) not yet saved/;
      await logged(ctx, pending);
      // The deadline (nobody to drain), then the wait after it: the writes never land.
      clock.advance(60_000);
      await logged(ctx, pending, ctx.lines.filter((l) => pending.test(l)).length);
      clock.advance(31_000);
      const err = (await failure) as {
        code: string;
        message: string;
        details: { drain: DrainPlayersResult };
      };
      expect(err.code).toBe('unavailable');
      expect(err.message).toMatch(/0 player\(s\) online, [1-9]\d* write\(s\) not saved/);
      expect(err.message).toMatch(/game-0 \(0 player\(s\), [1-9]\d* write\(s\) pending\)/);
      expect(err.details.drain).toMatchObject({ status: 'timeout', playersRemaining: 0, needsRestart: [] });
      expect(err.details.drain.pendingWritesUnknown).toEqual([]);
    } finally {
      redisProxy.thaw();
    }
    // Redis back: the writes land, and only then is the fleet empty.
    const ctx = stepContext(services);
    const result = await run<DrainPlayersResult>('fleet.drain-players', { deadlineMs: 60_000 }, ctx);
    expect(result).toMatchObject({ status: 'empty', pendingWrites: 0, playersRemaining: 0, kicked: false });
    expect(ctx.lines.join('\n')).toMatch(/no player online and every save written/);
    const { redis } = harness();
    const check = new Redis({
      host: redis.host,
      port: redis.port,
      password: redis.password,
      lazyConnect: true,
    });
    try {
      await check.connect();
      expect(await check.hget(`${keyPrefix}player:saver`, 'savedAt')).not.toBeNull();
    } finally {
      check.disconnect();
    }
  });

  it('an instance that comes up during the drain is listed, polled and closed too', async () => {
    await run('fleet.gate', { closed: false });
    const early = await player(wsUrl(0), 'early', false);
    await run('fleet.gate', { closed: true, message: 'maintenance' });
    const ctx = stepContext(services);
    const draining = run<DrainPlayersResult>('fleet.drain-players', { deadlineMs: 600_000 }, ctx);
    await logged(ctx, /^1 player\(s\) online on 1 instance/);
    const fleet = await services.fleet();
    try {
      await fleet.platform.scale(3);
      const [added] = await fleet.platform.instances({ names: ['game-2'] });
      expect((await fleet.game.status(added!.opsUrl!)).maintenance.enabled).toBe(true);
      early.leave();
      const result = await draining;
      expect(result).toMatchObject({
        status: 'empty',
        playersAtStart: 1,
        silentAtStart: 0,
        notWaitedFor: [],
      });
      expect(result.instances.map((i) => [i.instance, i.ok, i.playersRemaining])).toEqual([
        ['game-0', true, 0],
        ['game-1', true, 0],
        ['game-2', true, 0],
      ]);
    } finally {
      await fleet.platform.scale(2);
    }
  });

  it('at the deadline, players still online are told, saved and disconnected; only their instance is drained', async () => {
    await run('fleet.gate', { closed: false });
    const stays = await player(wsUrl(1), 'stays', false);
    const obeys = await player(wsUrl(1), 'obeys', true);
    await run('fleet.gate', { closed: true, message: 'maintenance' });
    const ctx = stepContext(services);
    const draining = run<DrainPlayersResult>(
      'fleet.drain-players',
      { deadlineMs: 60_000, kickNoticeSeconds: 1, message: 'Closing for maintenance' },
      ctx,
    );
    await logged(ctx, /^2 player\(s\) online on 1 instance\(s\)/);
    clock.advance(60_000);
    const result = await draining;
    expect(result).toMatchObject({
      status: 'empty',
      playersAtStart: 2,
      kicked: true,
      playersKicked: 2,
      needsRestart: ['game-1'],
    });
    expect(await stays.closed).toBe(4003);
    expect(await obeys.closed).toBe(1000);
    expect(stays.seen).toContain('drain');
    expect(ctx.lines.join('\n')).toMatch(
      /deadline reached: 2 player\(s\) told to leave.*game-1 refuse\(s\) logins/,
    );
    const status = await run<FleetStatus>('fleet.status', {});
    expect(status.instances.map((i) => [i.name, i.game?.draining])).toEqual([
      ['game-0', false],
      ['game-1', true],
    ]);
  });

  it('an instance that stops answering mid-drain makes it partial and fails the step, never counted as empty', async () => {
    await run('fleet.gate', { closed: false });
    const stays = await player(wsUrl(0), 'stays-0', false);
    await run('fleet.gate', { closed: true, message: 'maintenance' });
    const pid = pidOf(1);
    const ctx = stepContext(services);
    process.kill(pid, 'SIGSTOP');
    try {
      const draining = run<DrainPlayersResult>(
        'fleet.drain-players',
        { deadlineMs: 0, kickNoticeSeconds: 1 },
        ctx,
      );
      const failure = draining.catch((err: unknown) => err);
      expect(await stays.closed).toBe(4003);
      await logged(ctx, /^0 player\(s\) online on 0 instance\(s\); 1 instance\(s\) not answering/);
      clock.advance(60_000);
      const err = (await failure) as {
        code: string;
        message: string;
        details: { drain: DrainPlayersResult };
      };
      expect(err.code).toBe('unavailable');
      expect(err.message).toMatch(/is not empty after .*instance\(s\) not answering: game-1/);
      expect(err.details.drain).toMatchObject({ status: 'partial', kicked: true, playersRemaining: 0 });
      expect(err.details.drain.needsRestart).toContain('game-0');
      expect(err.details.drain.instances.find((i) => i.instance === 'game-1')).toMatchObject({ ok: false });
      expect(
        err.details.drain.instances.find((i) => i.instance === 'game-1')?.playersRemaining,
      ).toBeUndefined();
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  });

  it('fleet.restart-drained restarts only drained instances and tells them the gate again', async () => {
    const restartDrained = catalogAction('fleet.restart-drained');
    expect(await restartDrained.verify!({}, stepContext(services))).toBe('not-done');
    const before = await run<FleetStatus>('fleet.status', {});
    const drained = before.instances.filter((i) => i.game?.draining).map((i) => i.name);
    expect(drained).toContain('game-0');
    const ctx = stepContext(services);
    const result = await run<{ restarted: string[]; gate?: { status: string } }>(
      'fleet.restart-drained',
      {},
      ctx,
    );
    expect(result.restarted).toEqual(drained);
    expect(result.gate?.status).toBe('ok');
    const after = await run<FleetStatus>('fleet.status', {});
    for (const i of after.instances) {
      expect(i.game?.draining).toBe(false);
      // Back with the gate closed: maintenance is still on.
      expect(i.game?.maintenance.enabled).toBe(true);
      const old = before.instances.find((b) => b.name === i.name)!;
      expect(i.startedAt !== old.startedAt).toBe(drained.includes(i.name));
    }
    expect(await restartDrained.verify!({}, stepContext(services))).toBe('done');
    // Nothing left to restart: a second run changes nothing.
    expect(await run('fleet.restart-drained', {})).toMatchObject({ restarted: [] });
    await run('fleet.gate', { closed: false });
  });

  it('fleet.rotate-logs rotates every non-empty game-server log and keeps the lines readable', async () => {
    const logs = join(written.dataDir, 'fleet', 'logs');
    const ctx = stepContext(services);
    const result = await run<LogRotation>('fleet.rotate-logs', {}, ctx);
    expect(result.rotated).toEqual(['game-0', 'game-1']);
    expect(result.note).toBeUndefined();
    for (const name of result.rotated) expect(existsSync(join(logs, `${name}.log.1`))).toBe(true);
    expect(ctx.lines).toContain('rotated the logs of game-0, game-1');
    // Rotated lines are still read: the instances' start lines are counted.
    const fleet = await services.fleet();
    const counted = await fleet.platform.countLines({ pattern: '"msg":"listening on ' });
    expect(counted.perInstance['game-0']).toBeGreaterThanOrEqual(1);
  });
});
