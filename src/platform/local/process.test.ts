/**
 * Process helpers with real processes: the exit status of a child seen dead before Node handled its exit.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cleanups, useCleanups } from './fleet-test-kit.ts';
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
