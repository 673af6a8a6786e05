/** Unit tests of the reference server's pure parts: scheduler, tick window, world, config. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, test } from 'vitest';
import {
  loadConfig,
  maintenanceFromGameConfig,
  readGameConfig,
  scrubSecrets,
} from '../../examples/game-server/config.ts';
import { printable } from '../../examples/game-server/bot-runner.ts';
import { createLogger } from '../../examples/game-server/log.ts';
import { percentiles, TickLoop, TickWindow, type TickInfo } from '../../examples/game-server/loop.ts';
import { createMetrics } from '../../examples/game-server/metrics.ts';
import { Persistence } from '../../examples/game-server/persistence.ts';
import { clientMessageSchema, describeIssue } from '../../examples/game-server/protocol.ts';
import { World } from '../../examples/game-server/world.ts';

/** A timer API driven by hand: `fire()` runs the pending callback after moving the clock to its due time. */
function manualTimers() {
  let now = 1000;
  let pending: { callback: () => void; at: number } | undefined;
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
    timers: {
      set: (callback: () => void, ms: number) => {
        pending = { callback, at: now + ms };
        return pending;
      },
      clear: () => {
        pending = undefined;
      },
    },
    /** Runs the pending timer `lateMs` after it was due. */
    fire(lateMs = 0) {
      const next = pending!;
      pending = undefined;
      now = Math.max(now, next.at) + lateMs;
      next.callback();
    },
    delay: () => (pending ? pending.at - now : undefined),
  };
}

describe('TickLoop', () => {
  test('schedules from the start time, so late ticks do not push the later ones back', () => {
    const t = manualTimers();
    const ticks: TickInfo[] = [];
    const loop = new TickLoop({ rate: 30, onTick: (info) => ticks.push(info), now: t.now, timers: t.timers });
    loop.start();
    // Tick 0 ran at once; each later tick fires 5 ms late.
    for (let i = 0; i < 30; i++) t.fire(5);
    expect(ticks).toHaveLength(31);
    const last = ticks.at(-1)!;
    // 30 ticks later is one second later, however late each one fired.
    expect(last.scheduledAt - ticks[0]!.scheduledAt).toBeCloseTo(1000, 6);
    expect(last.lagMs).toBeCloseTo(5, 0);
    loop.stop();
  });

  test('measures each tick and skips ticks when more than a second behind', () => {
    const t = manualTimers();
    const done: number[] = [];
    const skipped: number[] = [];
    const loop = new TickLoop({
      rate: 10,
      now: t.now,
      timers: t.timers,
      onTick: () => t.advance(3),
      onTickDone: (_info, ms) => done.push(ms),
      onSkip: (n) => skipped.push(n),
    });
    loop.start();
    expect(done).toEqual([3]);
    // Next tick is due 100 ms after the start; 3 ms have passed.
    expect(t.delay()).toBe(97);
    t.fire(2500); // the process stalled for 2.5 s
    expect(skipped).toEqual([25]);
    loop.stop();
    expect(t.delay()).toBeUndefined();
  });
});

describe('TickWindow', () => {
  test('percentiles over the last N ticks and the achieved rate', () => {
    const window = new TickWindow(100);
    for (let i = 0; i < 250; i++) window.record(i * 40, i % 100 === 99 ? 20 : 1, 2);
    expect(window.size).toBe(100);
    expect(window.lag()).toEqual({ p50: 1, p99: 1, max: 20 });
    expect(window.duration().p99).toBe(2);
    expect(window.ticksPerSecond()).toBeCloseTo(25, 6);
  });

  test('percentiles of nothing are zeros', () => {
    expect(percentiles(new Float64Array(0))).toEqual({ p50: 0, p99: 0, max: 0 });
    expect(new TickWindow(10).ticksPerSecond()).toBe(0);
  });
});

describe('World', () => {
  test('moves stay on the map and nearby players are found across cells', () => {
    const world = new World();
    const a = world.add(1, 'a', 149, 149);
    world.add(2, 'b', 151, 151); // a neighbouring cell, 2.8 units away
    world.add(3, 'c', 900, 900);
    const near: string[] = [];
    world.forEachNear(a, 150, (other) => {
      near.push(other.name);
    });
    expect(near.sort()).toEqual(['a', 'b']);
    world.move(a, -10, -10);
    world.move(a, -1000, 5000);
    expect({ x: a.x, y: a.y }).toEqual({ x: 0, y: 1000 });
    near.length = 0;
    world.forEachNear(a, 150, (other) => {
      near.push(other.name);
    });
    expect(near).toEqual(['a']);
    expect(world.remove(2)?.name).toBe('b');
    expect(world.count).toBe(2);
  });
});

describe('protocol', () => {
  test('validates player messages and names the field', () => {
    expect(clientMessageSchema.parse({ type: 'chat', text: 'hi' })).toEqual({
      type: 'chat',
      text: 'hi',
      scope: 'all',
    });
    const tooFar = clientMessageSchema.safeParse({ type: 'move', dx: 11, dy: 0 });
    expect(tooFar.success).toBe(false);
    expect(describeIssue(tooFar.error!)).toMatch(/^dx: /);
    const control = clientMessageSchema.safeParse({ type: 'chat', text: 'a\u0007b' });
    expect(describeIssue(control.error!)).toBe('text: no control or text-direction characters');
    for (const text of ['a\nb', 'a\u0085b', 'a\u202eb', 'a\u2066b', 'a\u200fb', 'a\u061cb', 'a\u007fb'])
      expect(clientMessageSchema.safeParse({ type: 'chat', text }).success, JSON.stringify(text)).toBe(false);
    expect(clientMessageSchema.safeParse({ type: 'chat', text: 'héllo — ☃ 日本' }).success).toBe(true);
    expect(clientMessageSchema.safeParse({ type: 'login', name: 'a b' }).success).toBe(false);
    expect(clientMessageSchema.safeParse({ type: 'move', dx: 1, dy: 1, extra: 1 }).success).toBe(false);
  });
});

describe('bot-runner output', () => {
  test('text from a server is escaped before it reaches a terminal', () => {
    expect(printable('Back \u001b[2Jsoon\u0007')).toBe('Back \\x1b[2Jsoon\\x07');
    expect(printable('abc\u202edcba\u2066x\u0085')).toBe('abc\\u202edcba\\u2066x\\x85');
    expect(printable('Maintenance 04:00–06:00 ☃')).toBe('Maintenance 04:00–06:00 ☃');
  });
});

describe('config', () => {
  const base = {
    GAME_PORT: '7700',
    GAME_INSTANCE: 'game-0',
    GAME_VERSION: '1.0.0',
    GAME_OPS_TOKEN: 'a-token-of-at-least-16',
    GAME_MYSQL_HOST: '127.0.0.1',
    GAME_MYSQL_USER: 'game',
    GAME_MYSQL_PASSWORD: 'db-password-value',
    GAME_MYSQL_DATABASE: 'gamedb',
    GAME_REDIS_HOST: '127.0.0.1',
  };

  test('defaults, and empty variables count as unset', () => {
    const config = loadConfig({ ...base, GAME_TICK_RATE: '', GAME_HOST: '' });
    expect(config).toMatchObject({ host: '127.0.0.1', tickRate: 30, inputBatchSize: 100, inputBudgetMs: 50 });
    expect(config.redis).toEqual({ host: '127.0.0.1', port: 6379, password: undefined, keyPrefix: '' });
  });

  test('names every bad variable and never shows a secret', () => {
    const env = { ...base, GAME_PORT: 'x', GAME_OPS_TOKEN: 'short-secret', GAME_MYSQL_HOST: undefined };
    expect(() => loadConfig(env)).toThrow(
      /GAME_PORT: .*; GAME_OPS_TOKEN: at least 16 characters; GAME_MYSQL_HOST: set GAME_MYSQL_HOST/,
    );
    try {
      loadConfig(env);
    } catch (err) {
      expect((err as Error).message).not.toContain('short-secret');
    }
    expect(() => loadConfig({ ...base, GAME_INSTANCE: undefined })).toThrow('GAME_INSTANCE: required');
  });

  test('secrets are removed from the environment once read', () => {
    const env: NodeJS.ProcessEnv = { ...base, GAME_REDIS_PASSWORD: 'r' };
    scrubSecrets(env);
    expect(env.GAME_OPS_TOKEN).toBeUndefined();
    expect(env.GAME_MYSQL_PASSWORD).toBeUndefined();
    expect(env.GAME_REDIS_PASSWORD).toBeUndefined();
    expect(env.GAME_PORT).toBe('7700');
  });

  test('the game config: a JSON file or a directory of keys', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'game-config-'));
    try {
      expect(readGameConfig(path.join(dir, 'missing.json'))).toBeUndefined();
      const file = path.join(dir, 'game-config.json');
      fs.writeFileSync(file, JSON.stringify({ maintenance_mode: 'true', maintenance_message: 'back at 10' }));
      expect(maintenanceFromGameConfig(readGameConfig(file)!)).toEqual({
        enabled: true,
        message: 'back at 10',
        startsAt: undefined,
      });
      const keys = path.join(dir, 'configmap');
      fs.mkdirSync(keys);
      fs.writeFileSync(path.join(keys, 'maintenance_mode'), 'on\n');
      fs.writeFileSync(path.join(keys, 'maintenance_starts_at'), '2026-11-26T10:00:00+09:00');
      fs.writeFileSync(path.join(keys, '..data'), 'ignored');
      expect(maintenanceFromGameConfig(readGameConfig(keys)!)).toEqual({
        enabled: true,
        message: undefined,
        startsAt: '2026-11-26T01:00:00.000Z',
      });
      fs.writeFileSync(file, '["not", "an object"]');
      expect(() => readGameConfig(file)).toThrow(/must be a JSON object of string values/);
      expect(maintenanceFromGameConfig({ maintenance_mode: 'false' }).enabled).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Persistence', () => {
  /** A logger whose lines are kept as parsed objects. */
  function memoryLog(): { log: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
    const lines: Array<Record<string, unknown>> = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        for (const line of chunk.toString().split('\n'))
          if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
        callback();
      },
    });
    return { log: createLogger({ level: 'debug', destination }), lines };
  }

  test('a hung MySQL: the query is abandoned and its connection destroyed, Redis goes on, queues stay bounded', async () => {
    const { log, lines } = memoryLog();
    const metrics = createMetrics();
    let destroyed = 0;
    let queries = 0;
    // Every query hangs for ever, as behind a frozen network.
    const pool = {
      getConnection: async () => ({
        query: () => {
          queries += 1;
          return new Promise(() => undefined);
        },
        release: () => undefined,
        destroy: () => {
          destroyed += 1;
        },
      }),
      end: async () => undefined,
    };
    const written: string[] = [];
    const redis = {
      pipeline: () => {
        const ops: string[] = [];
        const p = {
          set: (key: string) => ops.push(`set ${key}`),
          delIfOurs: (key: string) => ops.push(`del ${key}`),
          hset: (key: string) => ops.push(`hset ${key}`),
          exec: async () => {
            written.push(...ops);
            return ops.map(() => [null, 'OK']);
          },
        };
        return p;
      },
      disconnect: () => undefined,
    };
    const persistence = new Persistence({
      pool: pool as never,
      redis: redis as never,
      instance: 'game-0',
      version: '1',
      log,
      metrics,
      onlinePlayers: () => [],
      timeoutMs: 200,
      maxPending: 3,
    });
    const at = new Date();
    persistence.sessionStarted('s1', 'a', at);
    const flushing = persistence.flush();
    await new Promise((resolve) => setTimeout(resolve, 20));
    // While the MySQL write hangs, later writes still reach Redis.
    persistence.sessionStarted('s2', 'b', at);
    await persistence.flush();
    await flushing;
    expect(written).toEqual(['set presence:a', 'set presence:b']);
    expect(queries).toBe(1);
    expect(destroyed).toBe(1);
    const failure = lines.find((l) => l.level === 'ERROR' && l.kind === 'mysql');
    expect(failure?.msg).toMatch(
      /could not write 1 session rows to MySQL \(kept for retry\): no answer within 200 ms/,
    );
    // Rows are kept, to the bound of each queue: the oldest are dropped and counted.
    for (let i = 3; i <= 6; i++) persistence.sessionStarted(`s${i}`, `p${i}`, at);
    expect(persistence.pending).toBe(3 + 3);
    expect(lines.find((l) => l.kind === 'overflow-mysql')?.msg).toBe(
      'session queue full: dropped the 1 oldest session rows',
    );
    expect(lines.find((l) => l.kind === 'overflow-redis')?.msg).toBe(
      'Redis queue full: dropped the 1 oldest presence/state changes',
    );
    const errors = (await metrics.registry.getSingleMetric('game_errors_total')!.get()).values;
    expect(errors.find((v) => v.labels.kind === 'persistence')!.value).toBeGreaterThanOrEqual(4);
  });
});
