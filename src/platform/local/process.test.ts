/**
 * Process helpers with real processes: the exit status of a child seen dead before Node handled its exit,
 * and descriptors inherited by gameops that must not reach game servers.
 */
import { closeSync, openSync } from 'node:fs';
import { readFile, readdir, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cleanups, kill9, readStateFile, setup, startFixture, useCleanups } from './fleet-test-kit.ts';
import { isSameProcess, procStatSync } from './proc.ts';
import { describeExit, exitOf, exitStatus, spawnDetached } from './process.ts';
import { tempDataDir } from './test-support.ts';

useCleanups();

describe('the exit status of a child of this process', () => {
  it('is waited for when the child is seen dead before Node handled its exit, not called unknown', async () => {
    const dir = await tempDataDir();
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const child = await spawnDetached({
      command: ['sleep', '30'],
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      logFile: join(dir, 'child.log'),
    });
    process.kill(child.pid, 'SIGKILL');
    // Synchronously, so the event loop cannot handle the exit meanwhile: what a supervisor round that
    // looks at /proc at this moment sees.
    const until = Date.now() + 5000;
    while (isSameProcess(procStatSync(child.pid), child.startTime) && Date.now() < until);
    expect(isSameProcess(procStatSync(child.pid), child.startTime)).toBe(false);
    // The status as it was read before (at once): unknown, though this process is the parent.
    expect(describeExit(exitOf(child.pid, child.startTime))).toMatch(/exit status unknown/);
    // As rounds read it now: the exit event is waited for.
    expect(describeExit(await exitStatus(child.pid, child.startTime))).toBe('killed by SIGKILL');
  });

  it('is unknown at once for a process that is not a child of this one', async () => {
    const began = performance.now();
    expect(await exitStatus(1, '0')).toBeUndefined();
    expect(performance.now() - began).toBeLessThan(100);
  });
});

describe('descriptors gameops inherited', () => {
  it('do not reach the game servers it starts', async () => {
    const { dataDir, basePort, token, platform } = await setup({ replicas: 1 });
    await platform.readConfig(); // creates the fleet directory
    const marker = join(dataDir, 'inherited-marker');
    const fd = openSync(marker, 'w');
    cleanups.push(async () => closeSync(fd));
    // gameops started by a parent that left descriptor 40 open (not close-on-exec).
    const gameops = await startFixture(
      ['scale', dataDir, String(basePort), '1'],
      { FIXTURE_OPS_TOKEN: token.reveal() },
      { at: 40, fd },
    );
    const fixtureFds = await readdir(`/proc/${gameops.pid}/fd`);
    const inFixture = await Promise.all(
      fixtureFds.map((n) => readlink(`/proc/${gameops.pid}/fd/${n}`).catch(() => '')),
    );
    expect(inFixture).toContain(marker); // the premise: gameops itself holds it
    const { pid } = (await readStateFile(dataDir)).instances[0]!;
    const fds = await readdir(`/proc/${pid}/fd`);
    const targets = await Promise.all(fds.map((n) => readlink(`/proc/${pid}/fd/${n}`).catch(() => '')));
    expect(targets).not.toContain(marker);
    expect((await readFile(`/proc/${pid}/cmdline`, 'utf8')).length).toBeGreaterThan(0);
    await kill9(gameops);
    await platform.scale(0);
  }, 30_000);
});
