import { spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeOwnedTempDir, sweepStaleBackupDirs } from './temp-dirs.ts';

const base = await fsp.mkdtemp(join(tmpdir(), 'gameops-temp-dirs-test-'));
afterAll(() => fsp.rm(base, { recursive: true, force: true }));

/** A process that has exited: its pid (with its start time) names no live process. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid!;
}

describe('backup working directories', () => {
  it('are 0700, stamped with their owner; the sweep removes those of a killed gameops only', async () => {
    const mine = await makeOwnedTempDir('drill');
    try {
      expect((await fsp.stat(mine)).mode & 0o777).toBe(0o700);
      const live = join(base, 'gameops-backup-live');
      const dead = join(base, 'gameops-restore-dead');
      const unstamped = join(base, 'gameops-backup-unstamped');
      const other = join(base, 'gameops-somethingelse-x');
      for (const d of [live, dead, unstamped, other]) await fsp.mkdir(d);
      await fsp.copyFile(join(mine, '.gameops-owner'), join(live, '.gameops-owner'));
      await fsp.writeFile(join(dead, '.gameops-owner'), `${await deadPid()} 123\n`);
      await fsp.writeFile(join(dead, 'defaults.cnf'), '[client]\npassword=secret\n');
      await fsp.writeFile(join(other, '.gameops-owner'), `${await deadPid()} 123\n`);
      expect(await sweepStaleBackupDirs(base)).toEqual([dead]);
      for (const d of [live, unstamped, other]) await expect(fsp.stat(d)).resolves.toBeTruthy();
      await expect(fsp.stat(dead)).rejects.toThrow(/ENOENT/);
    } finally {
      await fsp.rm(mine, { recursive: true, force: true });
    }
  });
});
