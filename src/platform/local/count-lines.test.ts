/**
 * countLines over many instances reads a bounded number of files at once (each reader holds a
 * descriptor and a 1 MiB buffer), not every instance at the same time.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { systemClock } from '../../core/index.ts';
import type * as Lines from '../lines.ts';
import { cleanups, useCleanups } from './fleet-test-kit.ts';
import { createLocalPlatform } from './index.ts';
import { writeState } from './state.ts';
import { destroyFleet, freePortBlock, localConfig, tempDataDir } from './test-support.ts';

const readers = vi.hoisted(() => ({ open: 0, max: 0 }));

vi.mock('../lines.ts', async (importOriginal) => {
  const lines = await importOriginal<typeof Lines>();
  return {
    ...lines,
    fileChunks: async function* (...args: Parameters<typeof lines.fileChunks>) {
      readers.open++;
      readers.max = Math.max(readers.max, readers.open);
      try {
        // Hold the reader open a moment, as a large file would.
        await new Promise((resolve) => setTimeout(resolve, 20));
        yield* lines.fileChunks(...args);
      } finally {
        readers.open--;
      }
    },
  };
});

useCleanups();

describe('local platform: countLines over many instances', () => {
  it('reads at most 16 instances at once, and counts them all', async () => {
    const dataDir = await tempDataDir();
    cleanups.push(() => destroyFleet(dataDir));
    const instances = 60;
    const platform = createLocalPlatform({
      config: localConfig({ basePort: await freePortBlock(1), replicas: instances }),
      dataDir,
      clock: systemClock,
    });
    cleanups.push(() => platform.close());
    const fleetDir = join(dataDir, 'fleet');
    await mkdir(join(fleetDir, 'logs'), { recursive: true, mode: 0o700 });
    await writeState(fleetDir, {
      schema: 1,
      version: 'v1',
      replicas: instances,
      instances: [],
      updatedAt: new Date().toISOString(),
    });
    for (let i = 0; i < instances; i++)
      await writeFile(join(fleetDir, 'logs', `game-${i}.log`), '{"level":"ERROR"}\n{"level":"INFO"}\n');
    const count = await platform.countLines({ pattern: '"level":"ERROR"' });
    expect(count.total).toBe(instances);
    expect(Object.keys(count.perInstance)).toHaveLength(instances);
    expect(readers.max).toBeGreaterThan(1);
    expect(readers.max).toBeLessThanOrEqual(16);
  }, 30_000);
});
