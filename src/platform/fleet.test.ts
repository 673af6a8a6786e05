/**
 * The fleet service over the local platform with real game-server processes (the mini game server
 * fixture): the gate and drain never count an instance as done without its word, and artefacts are
 * written whole or not at all.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock, systemClock, UnavailableError } from '../core/index.ts';
import { createFleet, storeArtefact } from './fleet.ts';
import { createGameServerClient } from './game-client.ts';
import { createLocalPlatform } from './local/index.ts';
import { destroyFleet, freePortBlock, localConfig, randomToken, tempDataDir } from './local/test-support.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((c) => c()));
});

describe('fleet: gate and drain on instances that do not answer', () => {
  it('a live instance that is not ready is asked too, and a silence makes the result partial', async () => {
    const dataDir = await tempDataDir();
    const token = randomToken();
    const platform = createLocalPlatform({
      config: localConfig({
        basePort: await freePortBlock(2),
        replicas: 1,
        version: 'broken',
        readinessTimeout: '1s',
      }),
      dataDir,
      opsToken: token,
      clock: systemClock,
    });
    cleanups.push(async () => {
      await platform.close();
      await destroyFleet(dataDir);
    });
    // `broken` listens but never passes readiness: its process runs (it may have players) but is not ready.
    await expect(platform.scale(1, { timeoutMs: 1500 })).rejects.toThrow();
    const [instance] = await platform.instances();
    expect(instance).toMatchObject({ name: 'game-0', ready: false });
    expect(['running', 'pending']).toContain(instance?.phase);

    const fleet = createFleet({
      platform,
      game: createGameServerClient({ token, timeoutMs: 1000 }),
      clock: systemClock,
      artefactDir: join(dataDir, 'artefacts'),
    });
    const gate = await fleet.setGate({ closed: true, message: 'maintenance at 10:00' });
    expect(gate.status).toBe('partial');
    expect(gate.instances).toEqual([expect.objectContaining({ instance: 'game-0', ok: false })]);
    expect((await fleet.gate()).closed).toBe(true);

    const drained = await fleet.drain({ deadlineSeconds: 1, waitMs: 0 });
    expect(drained.status).toBe('partial');
    expect(drained.instances).toEqual([expect.objectContaining({ instance: 'game-0', ok: false })]);

    // A notice does not skip it (and say ok): it is named, not told.
    const notice = await fleet.notice({ message: 'maintenance at 10:00' });
    expect(notice).toMatchObject({ status: 'partial', delivered: 0 });
    expect(notice.instances).toEqual([expect.objectContaining({ instance: 'game-0', ok: false })]);
    // Looking for drained instances asks it too: silent, so not known to be anything.
    const found = await fleet.drainedInstances();
    expect(found.draining).toEqual([]);
    expect(found.notAnswering).toEqual([expect.objectContaining({ instance: 'game-0', ok: false })]);
    // Text players would read is refused before any instance is asked, naming the field.
    await expect(fleet.notice({ message: 'a\u202eb' })).rejects.toThrow(/^notice message: .*U\+202E/);
    await expect(fleet.setGate({ closed: true, message: 'two\nlines' })).rejects.toThrow(/^message: /);
    await expect(fleet.setGate({ closed: true, startsAt: 'Nov 26' })).rejects.toThrow(/^startsAt: /);
    await expect(fleet.drainPlayers({ deadlineMs: 0, message: 'x\u2066' })).rejects.toThrow(/^message: /);
  }, 30_000);
});

describe('fleet: artefacts', () => {
  it('stores a stream whole with its size and sha256, and leaves nothing when the stream breaks', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gameops-artefacts-'));
    const clock = new ManualClock('2026-11-26T09:00:00Z');
    const body = Buffer.alloc(3 * 1024 * 1024, 'x');
    const stored = await storeArtefact(dir, 'game-0', 'heap-snapshot', Readable.from([body]), clock);
    expect(stored).toMatchObject({
      instance: 'game-0',
      bytes: body.length,
      createdAt: '2026-11-26T09:00:00.000Z',
    });
    expect(stored.sha256).toBe(createHash('sha256').update(body).digest('hex'));
    expect(await readFile(stored.path)).toEqual(body);
    expect(stored.path).toMatch(/game-0-2026-11-26T09-00-00-000Z\.heapsnapshot$/);

    const broken = new Readable({
      read() {
        this.push(Buffer.alloc(1024));
        this.destroy(new Error('connection reset mid-way'));
      },
    });
    clock.advance(1000);
    const failure = storeArtefact(dir, '../../etc/passwd', 'cpu-profile', broken, clock);
    await expect(failure).rejects.toBeInstanceOf(UnavailableError);
    await expect(failure).rejects.toThrow(/connection reset mid-way/);
    // Only the first, whole artefact; no partial file, and the hostile name never left the directory.
    expect(await readdir(dir)).toEqual([stored.path.split('/').at(-1)]);
  });
});
