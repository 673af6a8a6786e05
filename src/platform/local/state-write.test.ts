/**
 * When the state file cannot be written (a full disk), nothing is left running that the state does not
 * name: starts are recorded as an intent before anything is spawned, and what was spawned is stopped
 * when recording it fails.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManualClock, UnavailableError } from '../../core/index.ts';
import { alive, readStateFile, runFixture, setup, useCleanups, waitFor } from './fleet-test-kit.ts';
import { groupMembers } from './process.ts';
import { writeState, type FleetState } from './state.ts';

useCleanups();

/** A state writer that fails (ENOSPC) for states naming a process not in the last state written. */
function failingAfterSpawn(): {
  writer: (dir: string, state: FleetState) => Promise<void>;
  refused: Array<{ pid: number; startTime: string }>;
  failing: { on: boolean };
} {
  const refused: Array<{ pid: number; startTime: string }> = [];
  const failing = { on: true };
  let known = new Set<number>();
  const writer = async (dir: string, state: FleetState): Promise<void> => {
    const fresh = state.instances.filter((e) => e.pid !== undefined && !known.has(e.pid));
    if (failing.on && fresh.length > 0) {
      refused.push(...fresh.map((e) => ({ pid: e.pid!, startTime: e.startTime! })));
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    }
    await writeState(dir, state);
    known = new Set(state.instances.flatMap((e) => (e.pid !== undefined ? [e.pid] : [])));
  };
  return { writer, refused, failing };
}

describe('local platform: a state file that cannot be written', () => {
  it('scale stops what it spawned when recording it fails, and says why', async () => {
    const { writer, refused, failing } = failingAfterSpawn();
    const { platform, dataDir } = await setup({ replicas: 2 }, undefined, { stateWriter: writer });
    const err = await platform.scale(2).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain('ENOSPC');
    expect(refused.length).toBeGreaterThan(0);
    for (const { pid, startTime } of refused) {
      expect(await alive(pid, startTime)).toBe(false);
      expect(await groupMembers(pid, startTime)).toEqual([]);
    }
    // The disk has room again: the next scale starts them, nothing in the way.
    failing.on = false;
    expect((await platform.scale(2)).progress.ready).toBe(2);
    expect((await readStateFile(dataDir)).instances.every((e) => e.pid !== undefined)).toBe(true);
    await platform.scale(0);
  }, 30_000);

  it('a disk full before anything changed is a refusal naming the state file, not a failed rollout', async () => {
    const { platform, dataDir } = await setup({ replicas: 1 }, undefined, {
      stateWriter: async () => {
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      },
    });
    const err = await platform.scale(1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toBe(
      `cannot write the fleet state file ${join(dataDir, 'fleet', 'state.json')}: ENOSPC: no space left on device, write`,
    );
    expect((err as UnavailableError).details?.progress).toBeUndefined();
    expect(await platform.instances()).toMatchObject([{ name: 'game-0', phase: 'stopped' }]);
  }, 30_000);

  it('a supervisor round stops what it spawned when recording it fails', async () => {
    const { writer, refused } = failingAfterSpawn();
    const clock = new ManualClock('2026-11-26T09:00:00Z');
    const { platform } = await setup({ replicas: 1 }, clock, { stateWriter: writer });
    await platform.superviseOnce().catch(() => undefined);
    expect(refused.length).toBeGreaterThan(0);
    for (const { pid, startTime } of refused) expect(await alive(pid, startTime)).toBe(false);
  }, 30_000);
});

describe('local platform: a start interrupted between the spawn and the state write', () => {
  it('shows the instance pending, then the supervisor adopts the process the start left', async () => {
    const { platform, dataDir, basePort, token } = await setup({ replicas: 1 });
    await platform.readConfig(); // creates the fleet directory
    await runFixture(['scale-and-die', dataDir, String(basePort), '1'], {
      FIXTURE_OPS_TOKEN: token.reveal(),
    });
    const state = await readStateFile(dataDir);
    expect(state.instances[0]?.pid).toBeUndefined();
    expect(state.instances[0]?.starting).toBeDefined();
    const [pending] = await platform.instances();
    expect(pending?.phase).toBe('pending');
    expect(pending?.reason).toMatch(/a start by gameops pid \d+ at .* was interrupted/);
    const round = await platform.superviseOnce();
    expect(round.started).toEqual(['game-0']);
    const adopted = (await readStateFile(dataDir)).instances[0]!;
    expect(adopted.starting).toBeUndefined();
    const environ = (await readFile(`/proc/${adopted.pid}/environ`, 'utf8')).split('\0');
    expect(environ).toContain('GAME_INSTANCE=game-0');
    // The process the interrupted start left, not a second one (that one would have found the port taken).
    await waitFor('the adopted game server to be ready', async () =>
      (await platform.instances())[0]?.ready ? true : undefined,
    );
    expect((await platform.superviseOnce()).started).toEqual([]);
    expect((await readStateFile(dataDir)).instances[0]?.pid).toBe(adopted.pid);
    await platform.scale(0);
  }, 30_000);
});
