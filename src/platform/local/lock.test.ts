/**
 * The fleet and state locks against other processes, while adapters in this process take and release
 * locks on the same files (as `gameops serve` does: supervisor and API operations in one process).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConflictError, systemClock } from '../../core/index.ts';
import { runFixture, setup, useCleanups } from './fleet-test-kit.ts';
import { FileLock } from './lock.ts';

useCleanups();

describe('local platform: locks within one process', () => {
  it('the fleet lock held by an operation still refuses another process after another adapter here was refused', async () => {
    const { platform, open, dataDir } = await setup({
      replicas: 1,
      versions: { slow: { MINI_START_DELAY_MS: '3000' } },
    });
    await platform.scale(1);
    let replacing!: () => void;
    const started = new Promise<void>((resolve) => (replacing = resolve));
    const rollout = platform.setVersion('slow', {
      onProgress: (p) => {
        if (p.message.includes('replacing')) replacing();
      },
    });
    await started;
    // Another adapter in this process: refused (it waits for the lock, and closes what it opened).
    const other = open();
    expect(await other.scale(2).catch((e: unknown) => e)).toBeInstanceOf(ConflictError);
    await other.superviseOnce();
    // Another process must still be refused while the rollout runs.
    expect(await runFixture(['try-lock', dataDir, 'operation.lock'])).toMatch(/^refused: /);
    await rollout;
    expect(await runFixture(['try-lock', dataDir, 'operation.lock'])).toBe('acquired');
    await platform.scale(0);
  }, 30_000);

  it('the state lock held here still refuses another process after another holder here was refused and gave up', async () => {
    const { platform, dataDir } = await setup();
    await platform.readConfig(); // creates the fleet directory
    const file = join(dataDir, 'fleet', 'state.lock');
    const held = await new FileLock(file, 'the state', systemClock, false).acquire('test', 0);
    const second = new FileLock(file, 'the state', systemClock, false);
    expect(await second.acquire('test-2', 50).catch((e: unknown) => e)).toBeInstanceOf(ConflictError);
    expect(await runFixture(['try-lock', dataDir, 'state.lock'])).toMatch(/^refused: /);
    await held.release();
    // In this process, a waiter gets the lock as soon as it is released.
    const first = await second.acquire('test-3', 0);
    const waiting = new FileLock(file, 'the state', systemClock, false).acquire('test-4', 5000);
    await first.release();
    await (await waiting).release();
    expect(await runFixture(['try-lock', dataDir, 'state.lock'])).toBe('acquired');
  }, 30_000);
});
