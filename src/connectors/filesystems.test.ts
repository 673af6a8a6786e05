import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { smallFilesystem, type SmallFilesystemHandle } from '../../test/harness/index.ts';
import { InputError } from '../core/index.ts';
import { discoverFilesystems, isPseudoFilesystem, measurePath } from './filesystems.ts';

describe('filesystems connector (this machine)', () => {
  it('discovers the root filesystem and no pseudo filesystems', async () => {
    const found = await discoverFilesystems();
    expect(found.some((fs) => fs.mountPoint === '/')).toBe(true);
    for (const fs of found) {
      expect(isPseudoFilesystem(fs.fsType ?? '')).toBe(false);
      expect(fs.sizeBytes).toBeGreaterThan(0);
      expect(fs.usedPercent).toBeGreaterThanOrEqual(0);
      expect(fs.usedPercent).toBeLessThanOrEqual(100);
    }
    const mountPoints = found.map((fs) => fs.mountPoint);
    expect(new Set(mountPoints).size).toBe(mountPoints.length);
  });

  it('a path that does not exist is an InputError naming it', async () => {
    await expect(measurePath('/nonexistent/gameops/path')).rejects.toThrow(InputError);
    await expect(measurePath('/nonexistent/gameops/path')).rejects.toThrow(
      'disk path /nonexistent/gameops/path',
    );
  });
});

describe('filesystems connector on a small real filesystem', () => {
  let fs: SmallFilesystemHandle;
  beforeAll(async () => {
    fs = await smallFilesystem(8);
  });
  afterAll(async () => {
    await fs.stop();
  });

  it('measures space like df and finds the mount holding a path below it', async () => {
    const reached = await fs.fill(60);
    const usage = await measurePath(fs.path);
    expect(usage.mountPoint).toBe(fs.path);
    expect(usage.fsType).toBe(fs.method === 'tmpfs' ? 'tmpfs' : 'ext4');
    // Rounded up to a tenth, like df rounds up to a whole percent.
    expect(usage.usedPercent).toBeGreaterThanOrEqual(reached);
    expect(usage.usedPercent).toBeLessThan(reached + 0.2);
    expect(usage.sizeBytes).toBeGreaterThan(7 * 1024 * 1024);
    expect(usage.inodesUsed).toBeGreaterThanOrEqual(1);

    const below = await measurePath(join(fs.path, '.'));
    expect(below.mountPoint).toBe(fs.path);
    expect(below.usedBytes).toBe(usage.usedBytes);
  });
});
