/**
 * Stopping and replacing instances with real processes: the whole process group is waited for (a
 * wrapper command leaves the real server draining after the wrapper died), readiness counts only when
 * the new instance holds the port, and stops honour the operation's deadline and signal.
 */
import { createServer, type Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { UnavailableError } from '../../core/index.ts';
import { alive, readStateFile, setup, useCleanups, waitFor } from './fleet-test-kit.ts';
import { groupMembers } from './process.ts';
import { MINI_SERVER } from './test-support.ts';

useCleanups();

/** The mini server behind a shell that does not exec it (like `npm start`): the group leader is `sh`. */
function wrapped(delaySeconds = 0): string[] {
  const pause = delaySeconds > 0 ? `sleep ${delaySeconds}; ` : '';
  return [
    '/bin/sh',
    '-c',
    `${pause}"$0" "$@"; echo "wrapper: server exited with $?"`,
    process.execPath,
    MINI_SERVER,
  ];
}

describe('local platform: replacing an instance behind a wrapper command', () => {
  it('restart and set-version wait until the old server has drained, and the new one serves afterwards', async () => {
    const { platform, dataDir } = await setup(
      {
        replicas: 1,
        version: 'v1',
        command: wrapped(),
        env: { MINI_SHUTDOWN_DELAY_MS: '1500' },
      },
      undefined,
      { stopGraceMs: 10_000 },
    );
    await platform.scale(1);
    for (const step of [() => platform.restart(), () => platform.setVersion('v2')]) {
      const before = (await readStateFile(dataDir)).instances[0]!;
      const began = performance.now();
      await step();
      // The drain of the old server was waited for (the leader `sh` died at once).
      expect(performance.now() - began).toBeGreaterThanOrEqual(1400);
      const after = (await readStateFile(dataDir)).instances[0]!;
      expect(after.pid).not.toBe(before.pid);
      expect(await groupMembers(before.pid!, before.startTime!)).toEqual([]);
      // Still serving once the old one would have finished draining: the new process holds the port.
      await sleep(500);
      expect(await alive(after.pid!, after.startTime!)).toBe(true);
      const [instance] = await platform.instances();
      expect(instance?.ready, instance?.reason).toBe(true);
    }
    expect((await platform.instances())[0]?.version).toBe('v2');
    await platform.scale(0);
  }, 60_000);
});

describe('local platform: readiness belongs to the new instance', () => {
  let squatter: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => (squatter ? squatter.close(() => resolve()) : resolve()));
    squatter = undefined;
  });

  it('does not take the answer of another process on the port for the restarted instance', async () => {
    const { platform, basePort, token } = await setup({ replicas: 1, command: wrapped(1) });
    await platform.scale(1);
    const err = await platform
      .restart({
        timeoutMs: 8000,
        onProgress: (p) => {
          // Between the stop and the start: another program takes the port and answers like a game server.
          if (p.message.includes('stopped game-0') && !squatter) {
            squatter = createServer((req, res) => {
              res.writeHead(req.headers.authorization === `Bearer ${token.reveal()}` ? 200 : 401);
              res.end('{}');
            });
            squatter.listen(basePort, '127.0.0.1');
          }
        },
      })
      .catch((e: unknown) => e);
    expect(squatter).toBeDefined();
    expect(err).toBeInstanceOf(UnavailableError);
    // The new instance could not bind (the squatter has the port) and died; whether its last probe
    // ran before or after the squatter began listening is a race, so either probe message is right. What
    // matters is that the squatter's 200 was never taken for the restarted game-0.
    expect((err as Error).message).toMatch(
      /game-0 died .*its last readiness probe: (port \d+ is held by a process outside the instance.s process group|nothing listens on port \d+)/,
    );
    const [instance] = await waitFor('game-0 seen down', async () => {
      const list = await platform.instances();
      return list[0]?.phase !== 'pending' && list[0]?.phase !== 'running' ? list : undefined;
    });
    expect(instance?.ready).toBe(false);
  }, 30_000);
});

describe('local platform: stops honour the deadline and the signal', () => {
  const stubborn = { version: 'stubborn', versions: { stubborn: { MINI_IGNORE_SIGTERM: '1' } } };

  it('a scale-down past its timeout kills what ignores SIGTERM instead of waiting the whole grace', async () => {
    const { platform, dataDir } = await setup({ replicas: 2, ...stubborn }, undefined, {
      stopGraceMs: 20_000,
    });
    await platform.scale(2);
    const pids = (await readStateFile(dataDir)).instances.map((i) => [i.pid!, i.startTime!] as const);
    const began = performance.now();
    await platform.scale(0, { timeoutMs: 1000 }).catch(() => undefined);
    expect(performance.now() - began).toBeLessThan(6000);
    for (const [pid, startTime] of pids) expect(await alive(pid, startTime)).toBe(false);
  }, 30_000);

  it('a restart cancelled while it stops an instance kills it at once and reports the cancellation', async () => {
    const { platform, dataDir } = await setup({ replicas: 1, ...stubborn }, undefined, {
      stopGraceMs: 20_000,
    });
    await platform.scale(1);
    const { pid, startTime } = (await readStateFile(dataDir)).instances[0]!;
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('operator cancelled')), 500);
    const began = performance.now();
    const err = await platform.restart({ signal: controller.signal }).catch((e: unknown) => e);
    expect(performance.now() - began).toBeLessThan(6000);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain('cancelled');
    expect(await alive(pid!, startTime!)).toBe(false);
  }, 30_000);

  it('a failed rollout past its timeout waits for the put-back a short grace, not a whole readinessTimeout', async () => {
    const { platform } = await setup({
      replicas: 1,
      version: 'slow',
      versions: { slow: { MINI_START_DELAY_MS: '9000' } },
      readinessTimeout: '30s',
    });
    await platform.scale(1, { timeoutMs: 30_000 });
    const began = performance.now();
    const err = await platform.setVersion('broken', { timeoutMs: 1500 }).catch((e: unknown) => e);
    const took = performance.now() - began;
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain('not ready yet');
    // Deadline (1.5 s) + grace (5 s), with room for a slow machine; the slow version needs 9 s.
    expect(took).toBeLessThan(8500);
    await platform.scale(0);
  }, 60_000);
});
