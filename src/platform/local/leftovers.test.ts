/**
 * Processes left above the desired replicas by a scale-down that was interrupted (its gameops process
 * killed while game servers ignored SIGTERM): shown by `instances()`, and stopped by the supervisor or
 * by the next operation.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { alive, kill9, readStateFile, setup, spawnFixture, useCleanups, waitFor } from './fleet-test-kit.ts';

useCleanups();

const stubborn = { version: 'stubborn', versions: { stubborn: { MINI_IGNORE_SIGTERM: '1' } } };

/** Scales 2 → 0 in another gameops process and SIGKILLs it while the game servers ignore SIGTERM. */
async function interruptedScaleDown(dataDir: string, basePort: number, token: string): Promise<void> {
  const gameops = spawnFixture(['scale', dataDir, String(basePort), '0'], { FIXTURE_OPS_TOKEN: token });
  await waitFor('both game servers to ignore SIGTERM', async () => {
    const logs = await Promise.all(
      [0, 1].map((i) => readFile(join(dataDir, 'fleet', 'logs', `game-${i}.log`), 'utf8').catch(() => '')),
    );
    return logs.every((l) => l.includes('ignoring SIGTERM')) ? true : undefined;
  });
  await kill9(gameops);
}

describe('local platform: left over by an interrupted scale-down', () => {
  it('shows the processes still running above the replicas, and the supervisor stops them', async () => {
    const { platform, dataDir, basePort, token } = await setup({ replicas: 2, ...stubborn });
    await platform.scale(2);
    const before = (await readStateFile(dataDir)).instances;
    await interruptedScaleDown(dataDir, basePort, token.reveal());
    expect((await readStateFile(dataDir)).replicas).toBe(0);
    const list = await platform.instances();
    expect(list.map((i) => i.name)).toEqual(['game-0', 'game-1']);
    for (const instance of list) {
      expect(instance.phase).toBe('pending');
      expect(instance.reason).toMatch(/left over from an interrupted scale-down/);
    }
    expect((await platform.autoscaler()).currentReplicas).toBe(2);
    const round = await platform.superviseOnce();
    expect(round.stopped).toEqual(['game-0', 'game-1']);
    for (const e of before) expect(await alive(e.pid!, e.startTime!)).toBe(false);
    expect(await platform.instances()).toEqual([]);
  }, 40_000);

  it('the next restart stops them before anything else', async () => {
    const { platform, dataDir, basePort, token } = await setup({ replicas: 2, ...stubborn });
    await platform.scale(2);
    const before = (await readStateFile(dataDir)).instances;
    await interruptedScaleDown(dataDir, basePort, token.reveal());
    await platform.restart();
    for (const e of before) expect(await alive(e.pid!, e.startTime!)).toBe(false);
    expect(await platform.instances()).toEqual([]);
    expect((await readStateFile(dataDir)).instances).toEqual([]);
  }, 40_000);
});
