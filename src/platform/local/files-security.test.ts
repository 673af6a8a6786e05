/**
 * The fleet directory and the logs against a loose or tampered directory: modes tightened, a directory
 * of another user refused, and no game output, rotation or log read going through a symlink.
 */
import {
  chmod,
  chown,
  lstat,
  mkdir,
  readFile,
  readdir,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UnavailableError } from '../../core/index.ts';
import { cleanups, setup, useCleanups } from './fleet-test-kit.ts';
import { rotateIfNeeded } from './logs.ts';
import { tempDataDir } from './test-support.ts';

useCleanups();

const isRoot = process.getuid?.() === 0;

describe('local platform: the fleet directory', () => {
  it('makes a fleet and logs directory created earlier with a loose mode private (0700)', async () => {
    const { platform, dataDir } = await setup();
    await mkdir(join(dataDir, 'fleet', 'logs'), { recursive: true, mode: 0o777 });
    await chmod(join(dataDir, 'fleet'), 0o755);
    await chmod(join(dataDir, 'fleet', 'logs'), 0o777);
    await platform.instances();
    expect((await stat(join(dataDir, 'fleet'))).mode & 0o777).toBe(0o700);
    expect((await stat(join(dataDir, 'fleet', 'logs'))).mode & 0o777).toBe(0o700);
  });

  it.skipIf(!isRoot)(
    'refuses a fleet directory that belongs to another user, saying whose it is',
    async () => {
      const { platform, dataDir } = await setup();
      await mkdir(join(dataDir, 'fleet'), { mode: 0o700 });
      await chown(join(dataDir, 'fleet'), 65534, 65534);
      const err = await platform.instances().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toContain('belongs to uid 65534, not to this user (uid 0)');
      expect((await stat(join(dataDir, 'fleet'))).uid).toBe(65534);
    },
  );
});

describe('local platform: logs and symlinks', () => {
  it('refuses to start an instance whose log file is a symlink, and writes nothing through it', async () => {
    const { platform, dataDir } = await setup({ replicas: 1 });
    const elsewhere = await tempDataDir();
    cleanups.push(() => rm(elsewhere, { recursive: true, force: true }));
    const victim = join(elsewhere, 'victim');
    await writeFile(victim, 'precious\n');
    await mkdir(join(dataDir, 'fleet', 'logs'), { recursive: true, mode: 0o700 });
    await symlink(victim, join(dataDir, 'fleet', 'logs', 'game-0.log'));
    const err = await platform.scale(1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain('is a symbolic link');
    expect(await readFile(victim, 'utf8')).toBe('precious\n');
  }, 30_000);

  it('rotation neither writes through a symlink at .log.1 nor copies and truncates a symlinked live log', async () => {
    const dir = await tempDataDir();
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const victim = join(dir, 'victim');
    await writeFile(victim, 'precious\n');
    const log = join(dir, 'game-0.log');
    await writeFile(log, 'x'.repeat(100_000));
    await symlink(victim, `${log}.1`);
    expect(await rotateIfNeeded(log, 64 * 1024, 2)).toBe(true);
    expect(await readFile(victim, 'utf8')).toBe('precious\n');
    expect((await lstat(`${log}.1`)).isFile()).toBe(true);
    expect((await stat(`${log}.1`)).size).toBe(100_000);
    expect((await stat(`${log}.1`)).mode & 0o777).toBe(0o600);
    expect((await stat(log)).size).toBe(0);
    expect((await readdir(dir)).sort()).toEqual(['game-0.log', 'game-0.log.1', 'game-0.log.2', 'victim']);

    // A live log that is a symlink to a big file: not rotated (not copied, not truncated).
    const secret = join(dir, 'secret');
    await writeFile(secret, 's'.repeat(100_000));
    const other = join(dir, 'game-1.log');
    await symlink(secret, other);
    expect(await rotateIfNeeded(other, 64 * 1024, 2)).toBe(false);
    expect((await stat(secret)).size).toBe(100_000);
    expect((await readdir(dir)).filter((n) => n.startsWith('game-1.log.'))).toEqual([]);
  });

  it('does not read logs through a symlink in place of a log file', async () => {
    const { platform, dataDir } = await setup({ replicas: 1 });
    await platform.instances(); // creates the directories
    const secret = join(dataDir, 'secret');
    await writeFile(secret, 'top-secret-line\n');
    await symlink(secret, join(dataDir, 'fleet', 'logs', 'game-0.log'));
    const lines: string[] = [];
    for await (const line of platform.logs({})) lines.push(line.line);
    expect(lines).toEqual([]);
    expect((await platform.countLines({ pattern: 'top-secret' })).total).toBe(0);
  });
});
