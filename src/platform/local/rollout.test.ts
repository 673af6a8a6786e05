/**
 * Rollouts with real processes: the stability window after readiness (a version that dies right after
 * its first good answer fails the rollout), and what a failed rollout leaves to roll back to.
 */
import { describe, expect, it } from 'vitest';
import { UnavailableError } from '../../core/index.ts';
import { readStateFile, setup, startFixture, kill9, useCleanups, waitFor } from './fleet-test-kit.ts';

useCleanups();

describe('local platform: the stability window', () => {
  it('fails a rollout to a version that dies soon after its first ready answer, and puts the instance back', async () => {
    const { platform, dataDir } = await setup(
      { replicas: 2, versions: { flaky: { MINI_CRASH_AFTER_READY_MS: '300' } } },
      undefined,
      { minReadyMs: 1500 },
    );
    await platform.scale(2);
    const err = await platform.setVersion('flaky', { timeoutMs: 20_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/game-0 died \(exited with code 1\)/);
    expect((err as UnavailableError).details?.progress).toMatchObject({
      operation: 'set-version',
      updated: 0,
    });
    const list = await platform.instances();
    expect(list.map((i) => [i.name, i.version, i.ready])).toEqual([
      ['game-0', 'v1', true],
      ['game-1', 'v1', true],
    ]);
    expect((await readStateFile(dataDir)).version).toBe('v1');
    await platform.scale(0);
  }, 30_000);

  it('a version that stays up through the window rolls out, each instance held for the window', async () => {
    const { platform } = await setup({ replicas: 2 }, undefined, { minReadyMs: 1000 });
    await platform.scale(2);
    const messages: string[] = [];
    const began = performance.now();
    const result = await platform.setVersion('v2', { onProgress: (p) => messages.push(p.message) });
    expect(performance.now() - began).toBeGreaterThanOrEqual(2000);
    expect(result.progress.updated).toBe(2);
    expect(messages.some((m) => m.includes('staying up'))).toBe(true);
    await platform.scale(0);
  }, 30_000);
});

describe('local platform: what a failed rollout leaves to roll back to', () => {
  it('keeps the rollback target: v1 → v2, a failed v2 → broken, then rollback goes to v1', async () => {
    const { platform, dataDir } = await setup({ replicas: 2, readinessTimeout: '2s' });
    await platform.scale(2);
    await platform.setVersion('v2');
    const err = await platform.setVersion('broken').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    const state = await readStateFile(dataDir);
    expect([state.version, state.previousVersion]).toEqual(['v2', 'v1']);
    const back = await platform.rollback();
    expect(back).toMatchObject({ version: 'v1', previousVersion: 'v2' });
    expect((await platform.instances()).map((i) => [i.version, i.ready])).toEqual([
      ['v1', true],
      ['v1', true],
    ]);
    await platform.scale(0);
  }, 30_000);

  it('a rollout interrupted by the death of its gameops process leaves the version it came from to roll back to', async () => {
    const { platform, dataDir, basePort, token } = await setup({
      replicas: 1,
      versions: { slow: { MINI_START_DELAY_MS: '60000' } },
    });
    await platform.scale(1);
    const gameops = await startFixture(['set-version', dataDir, String(basePort), 'slow'], {
      FIXTURE_OPS_TOKEN: token.reveal(),
    });
    await waitFor('the rollout to start game-0 on slow', async () => {
      const entry = (await readStateFile(dataDir)).instances[0];
      return entry?.version === 'slow' && entry.pid !== undefined ? true : undefined;
    });
    await kill9(gameops);
    const state = await readStateFile(dataDir);
    expect([state.version, state.previousVersion]).toEqual(['slow', 'v1']);
    const back = await platform.rollback();
    expect(back).toMatchObject({ version: 'v1' });
    expect((await platform.instances()).map((i) => [i.version, i.ready])).toEqual([['v1', true]]);
    await platform.scale(0);
  }, 30_000);
});
