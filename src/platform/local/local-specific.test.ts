/**
 * What only the local adapter promises, with real processes: supervision and backoff (ManualClock),
 * adoption by another gameops process, the pid-reuse guard, log rotation, the fleet lock across
 * processes, ports taken by others, a corrupted state file, and secrets kept off command lines.
 */
import { spawn } from 'node:child_process';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConflictError, ManualClock, UnavailableError, secret, systemClock } from '../../core/index.ts';
import {
  alive,
  cleanups,
  kill9,
  readStateFile,
  setup,
  startFixture,
  useCleanups,
  waitFor,
} from './fleet-test-kit.ts';
import { createLocalPlatform } from './index.ts';
import { procStat } from './proc.ts';
import type { FleetState } from './state.ts';
import {
  REPO,
  destroyFleet,
  freePortBlock,
  localConfig,
  randomToken,
  tempDataDir,
  writeErrorLines,
} from './test-support.ts';

useCleanups();

describe('local platform: supervision', () => {
  it('restarts a crashed instance with exponential backoff by the clock, and resets it after a stable run', async () => {
    const clock = new ManualClock('2026-11-26T09:00:00Z');
    const { platform, dataDir } = await setup(
      { version: 'crashy', versions: { crashy: { MINI_CRASH_AFTER_MS: '1500', MINI_EXIT_CODE: '3' } } },
      clock,
    );
    const first = await platform.superviseOnce();
    expect(first.started).toEqual(['game-0']);
    expect((await platform.instances())[0]).toMatchObject({ restarts: 0, version: 'crashy' });

    const crashAndCheck = async (expectedDelayMs: number, restarts: number): Promise<void> => {
      const { pid } = (await readStateFile(dataDir)).instances[0]!;
      await waitFor('the crash', async () => ((await procStat(pid!)) === undefined ? true : undefined));
      const round = await platform.superviseOnce();
      expect(round.backingOff).toEqual(['game-0']);
      const [crashed] = await platform.instances();
      expect(crashed?.phase).toBe('crashloop');
      expect(crashed?.ready).toBe(false);
      expect(crashed?.reason).toContain('exited with code 3');
      const state = (await readStateFile(dataDir)).instances[0]!;
      expect(state.lastExit).toMatchObject({ pid, code: 3, signal: null });
      expect(Date.parse(state.nextAttemptAt!) - clock.now().getTime()).toBe(expectedDelayMs);

      clock.advance(expectedDelayMs - 1);
      expect((await platform.superviseOnce()).backingOff).toEqual(['game-0']);
      clock.advance(1);
      expect((await platform.superviseOnce()).started).toEqual(['game-0']);
      expect((await platform.instances())[0]?.restarts).toBe(restarts);
    };
    await crashAndCheck(1000, 1);
    await crashAndCheck(2000, 2);
    await crashAndCheck(4000, 3);

    // Up for the stable period (by the clock) before it crashes again: the backoff starts over.
    clock.advance(60_000);
    await platform.superviseOnce();
    expect((await readStateFile(dataDir)).instances[0]?.failures).toBe(0);
    await crashAndCheck(1000, 4);
    await platform.scale(0);
  }, 60_000);

  it('caps the backoff at 60 s, and reports why a start failed', async () => {
    const clock = new ManualClock('2026-11-26T09:00:00Z');
    const dataDir = await tempDataDir();
    cleanups.push(() => destroyFleet(dataDir));
    const missing = join(dataDir, 'no-such-program');
    const config = localConfig({ basePort: await freePortBlock(1), replicas: 1 });
    // A program that does not exist: every start fails, and each failure doubles the wait.
    const platform = createLocalPlatform({
      config: { ...config, version: 'gone', versions: { gone: { command: [missing], cwd: REPO, env: {} } } },
      dataDir,
      clock,
    });
    cleanups.push(() => platform.close());
    const delays: number[] = [];
    for (let i = 0; i < 9; i++) {
      await platform.superviseOnce();
      const entry = (await readStateFile(dataDir)).instances[0]!;
      const delay = Date.parse(entry.nextAttemptAt!) - clock.now().getTime();
      delays.push(delay);
      expect(entry.problem).toContain(missing);
      clock.advance(delay);
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]);
    const [instance] = await platform.instances();
    expect(instance?.phase).toBe('failed');
    expect(instance?.reason).toContain('ENOENT');
    const err = await platform.scale(1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain('cannot start game-0');
  }, 30_000);

  it('leaves alone the instances an operation owns', async () => {
    const { platform, open } = await setup({ replicas: 2, readinessTimeout: '3s' });
    await platform.scale(2);
    const other = open();
    // A rollout to the broken version owns game-0 while it waits for it; the supervisor must not touch it.
    const rollout = platform.setVersion('broken').catch((err: unknown) => err);
    await waitFor('the rollout to own an instance', async () => {
      const round = await other.superviseOnce();
      return round.skipped.includes('game-0') ? round : undefined;
    });
    const err = await rollout;
    expect(err).toBeInstanceOf(UnavailableError);
    const round = await other.superviseOnce();
    expect(round.skipped).toEqual([]);
    expect(round.started).toEqual([]);
    expect((await platform.instances()).map((i) => [i.version, i.ready])).toEqual([
      ['v1', true],
      ['v1', true],
    ]);
    await platform.scale(0);
  }, 30_000);

  it('stops an instance that ignores SIGTERM with SIGKILL after the grace period', async () => {
    const { platform, dataDir } = await setup({
      version: 'stubborn',
      versions: { stubborn: { MINI_IGNORE_SIGTERM: '1' } },
    });
    await platform.scale(1);
    const { pid, startTime } = (await readStateFile(dataDir)).instances[0]!;
    const began = performance.now();
    await platform.scale(0);
    expect(performance.now() - began).toBeGreaterThanOrEqual(1900);
    expect(await alive(pid!, startTime!)).toBe(false);
  }, 30_000);

  it('runs supervise() until its signal aborts, restarting what dies', async () => {
    const { platform, dataDir } = await setup({}, systemClock, {
      supervisor: { intervalMs: 100, backoffBaseMs: 100 },
    });
    const controller = new AbortController();
    const supervising = platform.supervise({ signal: controller.signal });
    const started = await waitFor('the first start', async () => {
      const entry = (await readStateFile(dataDir).catch(() => undefined))?.instances[0];
      return entry?.pid !== undefined ? entry : undefined;
    });
    process.kill(started.pid!, 'SIGKILL');
    const restarted = await waitFor('the restart', async () => {
      const entry = (await readStateFile(dataDir)).instances[0];
      return entry?.pid !== undefined && entry.pid !== started.pid ? entry : undefined;
    });
    expect(restarted.restarts).toBe(1);
    expect(restarted.lastExit?.reason).toBe('killed by SIGKILL');
    controller.abort();
    await supervising;
    await platform.scale(0);
  }, 30_000);
});

describe('local platform: operations', () => {
  it('reports a cancelled rollout as an UnavailableError with its progress, and puts the instance back', async () => {
    const { platform } = await setup({
      replicas: 2,
      version: 'v1',
      versions: { slow: { MINI_START_DELAY_MS: '2000' } },
    });
    await platform.scale(2);
    const controller = new AbortController();
    const err = await platform
      .setVersion('slow', {
        signal: controller.signal,
        onProgress: (p) => {
          if (p.message.includes('replacing'))
            setTimeout(() => controller.abort(new Error('operator cancelled')), 200);
        },
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).details?.progress).toMatchObject({
      operation: 'set-version',
      updated: 0,
    });
    const list = await waitFor('game-0 back on v1', async () => {
      const all = await platform.instances();
      return all.every((i) => i.ready && i.version === 'v1') ? all : undefined;
    });
    expect(list).toHaveLength(2);
    // The fleet's version is the old one again, so a scale-up starts v1.
    expect((await platform.scale(3)).version).toBe('v1');
    await platform.scale(0);
  }, 30_000);

  it('is not ready for a probe with the wrong token, and says why', async () => {
    const { platform, open } = await setup({ replicas: 1 });
    await platform.scale(1);
    const stranger = open(systemClock, { opsToken: randomToken() });
    const [instance] = await stranger.instances();
    expect(instance?.ready).toBe(false);
    expect(instance?.reason).toBe('GET /ops/status answered 401');
    expect((await platform.instances())[0]?.ready).toBe(true);
    await platform.scale(0);
  }, 30_000);

  it('scales to zero and back up on the same ports', async () => {
    const { platform } = await setup({ replicas: 2 });
    await platform.scale(2);
    expect((await platform.scale(0)).replicas).toBe(0);
    expect(await platform.instances()).toEqual([]);
    expect((await platform.autoscaler()).currentReplicas).toBe(0);
    const again = await platform.scale(2);
    expect(again.progress.ready).toBe(2);
    await platform.scale(0);
  }, 30_000);
});

describe('local platform: adoption', () => {
  it('keeps game servers running when the gameops process that started them dies, and adopts them', async () => {
    const { dataDir, basePort, token, platform } = await setup({ replicas: 2 });
    const gameops = await startFixture(['scale', dataDir, String(basePort), '2'], {
      FIXTURE_OPS_TOKEN: token.reveal(),
    });
    const before = await readStateFile(dataDir);
    expect(before.instances.map((i) => i.pid)).toHaveLength(2);
    await kill9(gameops);

    const list = await platform.instances();
    expect(list.map((i) => [i.name, i.phase, i.ready])).toEqual([
      ['game-0', 'running', true],
      ['game-1', 'running', true],
    ]);
    const round = await platform.superviseOnce();
    expect(round.started).toEqual([]);
    const after = await readStateFile(dataDir);
    expect(after.instances.map((i) => [i.pid, i.startTime])).toEqual(
      before.instances.map((i) => [i.pid, i.startTime]),
    );
    // Not our children: liveness comes from /proc, and a kill is noticed.
    process.kill(before.instances[1]!.pid!, 'SIGKILL');
    await waitFor('the adopted instance to be seen dead', async () =>
      (await platform.instances())[1]?.phase === 'failed' ? true : undefined,
    );
    const [, dead] = await platform.instances();
    expect(dead?.reason).toContain('exit status unknown');
    expect((await platform.superviseOnce()).backingOff).toEqual(['game-1']);
    await platform.scale(0);
  }, 60_000);

  it('a new adapter over the same data directory keeps the same processes', async () => {
    const { platform, open, dataDir } = await setup({ replicas: 2 });
    await platform.scale(2);
    const before = await platform.instances();
    await platform.close();
    const again = open();
    const after = await again.instances();
    expect(after.map((i) => [i.name, i.startedAt, i.ready])).toEqual(
      before.map((i) => [i.name, i.startedAt, true]),
    );
    expect((await again.superviseOnce()).started).toEqual([]);
    const result = await again.scale(2);
    expect(result.replicas).toBe(2);
    expect((await again.instances()).map((i) => i.startedAt)).toEqual(before.map((i) => i.startedAt));
    expect((await readStateFile(dataDir)).replicas).toBe(2);
    await again.scale(0);
  }, 30_000);

  it('never signals a process that reuses a recorded pid (start time differs)', async () => {
    const { platform, dataDir } = await setup({ replicas: 1 });
    const stranger = spawn('sleep', ['60'], { stdio: 'ignore' });
    cleanups.push(async () => {
      stranger.kill('SIGKILL');
    });
    const strangerStat = await procStat(stranger.pid!);
    const state: FleetState = {
      schema: 1,
      version: 'v1',
      replicas: 1,
      instances: [
        {
          index: 0,
          version: 'v1',
          pid: stranger.pid!,
          startTime: String(Number(strangerStat!.startTime) - 7),
          restarts: 0,
          failures: 0,
        },
      ],
      updatedAt: new Date().toISOString(),
    };
    await platform.readConfig(); // creates the fleet directory
    await writeFile(join(dataDir, 'fleet', 'state.json'), JSON.stringify(state), { mode: 0o600 });

    const [instance] = await platform.instances();
    expect(instance?.phase).toBe('failed');
    expect(instance?.ready).toBe(false);
    const round = await platform.superviseOnce();
    expect(round.backingOff).toEqual(['game-0']);
    await platform.scale(1);
    const [started] = await platform.instances();
    expect(started?.ready).toBe(true);
    await platform.scale(0);
    expect(await alive(stranger.pid!, strangerStat!.startTime)).toBe(true);
  }, 30_000);
});

describe('local platform: the fleet lock', () => {
  it('gives a second adapter a ConflictError naming the running operation', async () => {
    const { platform, open } = await setup({ replicas: 2 });
    await platform.scale(2);
    const other = open();
    let started!: () => void;
    const progress = new Promise<void>((resolve) => (started = resolve));
    const rollout = platform.setVersion('v2', { onProgress: () => started() });
    await progress;
    const err = await other.scale(3).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as Error).message).toMatch(/set-version by this gameops process since \d{4}-/);
    expect((err as ConflictError).details).toMatchObject({ pid: process.pid, operation: 'set-version' });
    await rollout;
    expect((await other.scale(2)).version).toBe('v2');
    await platform.scale(0);
  }, 30_000);

  it('is held by another process until it dies, even by SIGKILL', async () => {
    const { platform, dataDir } = await setup();
    await platform.readConfig();
    const holder = await startFixture(['hold-lock', dataDir]);
    const err = await platform.scale(1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as Error).message).toContain(`fixture-hold by gameops pid ${holder.pid}`);
    expect(await platform.patchConfig({ a: 'b' }).catch((e: unknown) => e)).toBeInstanceOf(ConflictError);
    await kill9(holder);
    await platform.scale(1);
    expect((await platform.instances())[0]?.ready).toBe(true);
    await platform.scale(0);
  }, 30_000);
});

describe('local platform: refusals', () => {
  let squatter: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => (squatter ? squatter.close(() => resolve()) : resolve()));
    squatter = undefined;
  });

  it('names a port taken by a foreign process and starts nothing', async () => {
    const { platform, basePort, dataDir } = await setup({ replicas: 1 });
    squatter = createServer();
    await new Promise<void>((resolve) => squatter!.listen(basePort + 1, '127.0.0.1', resolve));
    const err = await platform.scale(2).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(
      new RegExp(`^port 127\\.0\\.0\\.1:${basePort + 1} \\(for game-1\\) is already in use`),
    );
    // A refusal before anything changed, not a failed rollout: no progress to report.
    expect((err as UnavailableError).details?.progress).toBeUndefined();
    const state = await readStateFile(dataDir).catch(() => undefined);
    expect(state?.instances.filter((i) => i.pid !== undefined) ?? []).toEqual([]);
    expect((await platform.instances()).map((i) => i.phase)).toEqual(['stopped']);
  }, 30_000);

  it('refuses a corrupted state file with a clear error (unavailable, not bad input), and kills nothing', async () => {
    const { platform, open, dataDir } = await setup({ replicas: 1 });
    await platform.scale(1);
    const file = join(dataDir, 'fleet', 'state.json');
    const good = await readFile(file, 'utf8');
    const { pid, startTime } = (await readStateFile(dataDir)).instances[0]!;
    const other = open();
    const corruptions = [
      ['{"schema":1,', /is not JSON/],
      [JSON.stringify({ ...JSON.parse(good), replicas: -3 }), /replicas/],
      [JSON.stringify({ ...JSON.parse(good), instances: [{ index: 0, pid: 'x' }] }), /instances\.0\./],
    ] as const;
    for (const [content, problem] of corruptions) {
      await writeFile(file, content);
      for (const call of [
        () => other.instances(),
        () => other.scale(0),
        () => other.superviseOnce(),
        () => other.restart(),
      ]) {
        const err = await call().catch((e: unknown) => e);
        // Not the caller's input: gameops's own file is broken (503 through the API, not 400).
        expect(err).toBeInstanceOf(UnavailableError);
        expect((err as UnavailableError).details?.progress).toBeUndefined();
        expect((err as Error).message).toContain(file);
        expect((err as Error).message).toMatch(problem);
      }
      expect(await alive(pid!, startTime!)).toBe(true);
    }
    await writeFile(file, good);
    expect((await other.instances())[0]?.ready).toBe(true);
    await other.scale(0);
  }, 30_000);

  it('passes secrets through the environment only, and keeps them out of state, logs and command lines', async () => {
    process.env.GAMEOPS_TEST_PARENT_SECRET = 'parent-secret-value';
    cleanups.push(async () => {
      delete process.env.GAMEOPS_TEST_PARENT_SECRET;
    });
    const dbPassword = secret('db-password-value-123', 'env:X');
    const { platform, dataDir, token } = await setup({
      replicas: 1,
      env: { GAME_TICK_RATE: '30' },
      secretEnv: { GAME_MYSQL_PASSWORD: dbPassword },
    });
    await platform.scale(1);
    const { pid } = (await readStateFile(dataDir)).instances[0]!;
    const environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
    expect(environ).toContain(`GAME_OPS_TOKEN=${token.reveal()}`);
    expect(environ).toContain('GAME_MYSQL_PASSWORD=db-password-value-123');
    expect(environ).toContain('GAME_TICK_RATE=30');
    expect(environ).toContain('GAME_INSTANCE=game-0');
    expect(environ.some((e) => e.startsWith('GAMEOPS_TEST_PARENT_SECRET='))).toBe(false);
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    expect(cmdline).not.toContain(token.reveal());
    expect(cmdline).not.toContain('db-password');
    const fleetDir = join(dataDir, 'fleet');
    for (const name of await readdir(fleetDir, { recursive: true })) {
      const path = join(fleetDir, name);
      if (!(await stat(path)).isFile()) continue;
      const content = await readFile(path, 'latin1');
      expect(content, name).not.toContain(token.reveal());
      expect(content, name).not.toContain('db-password-value');
    }
    expect((await stat(join(fleetDir, 'state.json'))).mode & 0o777).toBe(0o600);
    expect((await stat(fleetDir)).mode & 0o777).toBe(0o700);
    await platform.scale(0);
  }, 30_000);
});

describe('local platform: logs', () => {
  it('rotates by size, keeps `keep` files, and reads them oldest first', async () => {
    const { platform, dataDir, token } = await setup({ replicas: 1, logs: { maxBytes: 64 * 1024, keep: 2 } });
    await platform.scale(1);
    const [instance] = await platform.instances();
    const url = instance!.opsUrl!;
    const writeLines = async (n: number): Promise<void> => {
      const response = await fetch(`${url}/ops/test/log-lines?n=${n}&bytes=200`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token.reveal()}` },
      });
      expect(response.status).toBe(200);
      await response.arrayBuffer();
    };
    const logDir = join(dataDir, 'fleet', 'logs');
    for (let round = 0; round < 3; round++) {
      await writeLines(400); // ~80 KB
      await writeErrorLines(url, token, 1);
      expect((await platform.superviseOnce()).rotated).toEqual(['game-0']);
    }
    const names = (await readdir(logDir)).sort();
    expect(names).toEqual(['game-0.log', 'game-0.log.1', 'game-0.log.2']);
    // The game server's O_APPEND descriptor writes at the new end: no hole at the old offset.
    await writeErrorLines(url, token, 1);
    const live = await stat(join(logDir, 'game-0.log'));
    expect(live.size).toBeLessThan(1000);
    expect((await platform.superviseOnce()).rotated).toEqual([]);

    const count = await platform.countLines({ pattern: '"level":"ERROR"' });
    // Three rounds wrote one ERROR line each; the oldest rotated file was dropped (keep: 2); plus one live.
    expect(count.total).toBe(3);
    const lines: string[] = [];
    for await (const line of platform.logs({})) lines.push(line.line);
    const times = lines.map((l) => Date.parse((JSON.parse(l) as { time: string }).time));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    const tail = [];
    for await (const line of platform.logs({ tail: 2 })) tail.push(line.line);
    expect(tail).toHaveLength(2);
    expect(tail[1]).toContain('"level":"ERROR"');
    await platform.scale(0);
  }, 30_000);
});
