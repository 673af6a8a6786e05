import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupKey, backupsSection, bootstrapIn } from '../../../test/support/backups.ts';
import { writeReferenceFleetConfig, type ReferenceFleetConfig } from '../../../test/support/fleet.ts';
import { openBackups } from '../../app/backups.ts';
import { openFleet } from '../../app/fleet.ts';
import { destroyFleet } from '../../platform/local/test-support.ts';
import { bootstrap, shutdown, type Resources } from '../../app/index.ts';
import { openRunbooks } from '../../app/runbooks.ts';
import type { Engine } from '../engine.ts';
import { formatDuration, ManualClock } from '../../core/index.ts';
import { z } from 'zod';
import { sqlitePlace, type Cleanups } from '../../../test/support/store-places.ts';
import { openStore } from '../../store/index.ts';
import { actors, gate, runbook, testEngine } from '../engine.fixture.ts';
import type { ActionDefinition, Actor, Catalog, RunView, StepContext } from '../model.ts';
import { stepProgress } from './backup.ts';
import { createCatalog } from './index.ts';
import { createRunbookServices, stepContext } from './test-support.ts';

const admin: Actor = { id: 'local:tester', name: 'tester', role: 'admin', kind: 'local' };
const responder: Actor = { id: 'token:r', name: 'rita', role: 'responder', kind: 'token' };

/** Files of `dir`, recursively, as relative path → content. */
function snapshot(dir: string, prefix = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) Object.assign(out, snapshot(path, `${prefix}${name}/`));
    else out[`${prefix}${name}`] = readFileSync(path, 'utf8');
  }
  return out;
}

/** Every stored file under `dir` (the filesystem storage), recursively. */
function storedFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...storedFiles(path));
    else out.push(path);
  }
  return out;
}

describe('backup actions and runbooks (files-only sets on filesystem storage)', () => {
  let dir: string;
  let game: string;
  let storage: string;
  let resources: Resources;
  let engine: Engine;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gameops-backup-actions-'));
    game = join(dir, 'game');
    storage = join(dir, 'backups');
    mkdirSync(join(game, 'maps'), { recursive: true });
    writeFileSync(join(game, 'config.yaml'), 'motd: hello\nmaxPlayers: 64\n');
    writeFileSync(join(game, 'maps', 'arena.map'), 'x'.repeat(200_000));
    resources = await bootstrapIn(
      dir,
      backupsSection(dir, await backupKey(), {
        storage,
        files: [game],
        extra: [`  targets: [{ name: staging, filesRoot: ${join(dir, 'staging')} }]`],
      }),
    );
    engine = await openRunbooks(resources);
  });

  afterAll(async () => {
    if (resources) await shutdown(resources);
    rmSync(dir, { recursive: true, force: true });
  });

  async function run(runbook: string, params: Record<string, unknown> = {}, actor = admin): Promise<RunView> {
    const view = await engine.start({ runbook, params, trigger: 'cli' }, actor);
    return (await engine.runUntilIdle({ runId: view.id })) ?? engine.get(view.id, actor);
  }

  const step = (view: RunView, id: string) => view.steps.find((s) => s.id === id)!;

  async function logs(runId: string): Promise<string[]> {
    const events = await engine.events(runId, 0, admin, { waitMs: 0 });
    return events.filter((e) => e.type === 'log').map((e) => e.message ?? '');
  }

  let firstId = '';

  it('backup: create → verify → prune, with progress lines (bytes, rate) in the step log', async () => {
    const view = await run('backup');
    expect(view.status, JSON.stringify(view.steps.map((s) => [s.id, s.status, s.error]))).toBe('succeeded');
    expect(view.steps.map((s) => [s.id, s.status])).toEqual([
      ['create', 'succeeded'],
      ['verify', 'succeeded'],
      ['prune', 'succeeded'],
    ]);
    const created = step(view, 'create').output as {
      id: string;
      state: string;
      sizeBytes: number;
      objects: number;
    };
    expect(created).toMatchObject({ state: 'complete', components: ['files'] });
    expect(created.id).toMatch(/^bk-\d{8}T\d{6}Z-[0-9a-f]{6}$/);
    expect(created.objects).toBeGreaterThan(0);
    expect(created.sizeBytes).toBeGreaterThan(0);
    firstId = created.id;
    expect(step(view, 'verify').output).toMatchObject({ id: firstId, ok: true });
    // create and verify say the size the same way: the objects, then the manifest.
    const verified = step(view, 'verify').output as { objects: number; bytes: number; size: string };
    const createdSize = step(view, 'create').output as {
      objectBytes: number;
      manifestBytes: number;
      size: string;
    };
    expect(verified.bytes).toBe(createdSize.objectBytes);
    expect(createdSize.objectBytes + createdSize.manifestBytes).toBe(created.sizeBytes);
    expect(createdSize.manifestBytes).toBeGreaterThan(0);
    expect(verified.size).toBe(createdSize.size);
    expect(createdSize.size).toMatch(/^\d+ object\(s\), .+ \(\+ manifest .+\)$/);
    const lines = await logs(view.id);
    expect(lines.some((l) => /\/s\b/.test(l) && /B/.test(l))).toBe(true);
    const service = await openBackups(resources);
    const [set] = await service.list();
    expect(set).toMatchObject({ id: firstId, state: 'complete', verifyOk: true });
  });

  it('backup-drill: defaults to the newest complete set, restores into scratch, records files restorable', async () => {
    const view = await run('backup-drill');
    expect(view.status, JSON.stringify(view.steps.map((s) => [s.id, s.status, s.error]))).toBe('succeeded');
    expect(step(view, 'set').output).toMatchObject({ id: firstId });
    expect(step(view, 'drill').output).toMatchObject({ id: firstId, ok: true });
    // The report goes to the run log only: its output does not claim a notification was sent.
    const report = step(view, 'report').output as Record<string, unknown>;
    expect(report['message']).toContain(`Drill of backup ${firstId}`);
    expect(report).not.toHaveProperty('sent');
    const restorable = await (await openBackups(resources)).restorable();
    expect(restorable).toEqual([
      { component: 'files', setId: firstId, at: expect.any(String) as unknown, runId: view.id },
    ]);
  });

  it('backup-prune with dryRun lists every set with why it stays, deleting nothing', async () => {
    const before = storedFiles(storage).sort();
    const view = await run('backup-prune', { dryRun: true });
    expect(view.status).toBe('succeeded');
    const report = step(view, 'prune').output as {
      dryRun: boolean;
      decisions: Array<{ id: string; keep: boolean }>;
    };
    expect(report.dryRun).toBe(true);
    expect(report.decisions).toContainEqual(expect.objectContaining({ id: firstId, keep: true }));
    expect(storedFiles(storage).sort()).toEqual(before);
    expect((await logs(view.id)).some((l) => l.startsWith(`keep ${firstId}`))).toBe(true);
  });

  it('backup-restore stops at the approval (naming set, age, components, target); nothing is restored until approved', async () => {
    const original = snapshot(game);
    writeFileSync(join(game, 'config.yaml'), 'motd: CHANGED AFTER THE BACKUP\n');
    const waiting = await run('backup-restore', { id: firstId });
    expect(waiting.status).toBe('waiting');
    const approve = step(waiting, 'approve');
    expect(approve.status).toBe('waiting');
    const message = approve.approval?.message ?? '';
    expect(message).toMatch(
      new RegExp(
        `^Restore files from backup ${firstId} \\(taken \\S+, .+ ago\\) to the ORIGINAL systems: what is there now is replaced \\(files not in the backup are deleted\\)\\. Approve: gameops runs approve ${waiting.id} approve --yes `,
      ),
    );
    // No JSON array, said once.
    expect(message).not.toMatch(/[[\]"]/);
    expect(message.split(firstId)).toHaveLength(2);
    expect(step(waiting, 'restore-files').status).toBe('pending');
    expect(readFileSync(join(game, 'config.yaml'), 'utf8')).toBe('motd: CHANGED AFTER THE BACKUP\n');
    // A responder may not approve (operator or admin).
    await expect(
      engine.decide(
        { runId: waiting.id, stepId: 'approve', decision: 'approve', planHash: approve.approval!.planHash },
        responder,
      ),
    ).rejects.toThrow(/operator|admin|may not/);
    await engine.decide(
      { runId: waiting.id, stepId: 'approve', decision: 'approve', planHash: approve.approval!.planHash },
      admin,
    );
    const done = (await engine.runUntilIdle({ runId: waiting.id }))!;
    expect(
      done.steps.map((s) => [s.id, s.status]),
      JSON.stringify(done.steps.map((s) => [s.id, s.status, s.error])),
    ).toEqual(
      expect.arrayContaining([
        ['restore-mysql', 'skipped'],
        ['restore-redis', 'skipped'],
        ['restore-config', 'skipped'],
        ['restore-files', 'succeeded'],
        // No platform: traffic is not stopped, nothing restarted.
        ['stop-traffic', 'skipped'],
        ['restart', 'skipped'],
      ]),
    );
    expect((step(done, 'done').output as { message: string }).message).toMatch(
      new RegExp(`^Restore of files from backup ${firstId} to original done \\(run ${waiting.id}\\)`),
    );
    expect(snapshot(game)).toEqual(original);
  });

  it('backup-restore to a staging target restores under its filesRoot and leaves the originals alone', async () => {
    writeFileSync(join(game, 'config.yaml'), 'motd: production now\n');
    const waiting = await run('backup-restore', { id: firstId, target: 'staging' });
    const approve = step(waiting, 'approve');
    expect(waiting.status).toBe('waiting');
    expect(approve.approval?.message).toContain('to target staging');
    await engine.decide(
      { runId: waiting.id, stepId: 'approve', decision: 'approve', planHash: approve.approval!.planHash },
      admin,
    );
    const done = (await engine.runUntilIdle({ runId: waiting.id }))!;
    expect(step(done, 'restore-files').status, JSON.stringify(step(done, 'restore-files').error)).toBe(
      'succeeded',
    );
    expect(step(done, 'stop-traffic').status).toBe('skipped');
    const restored = snapshot(join(dir, 'staging'));
    expect(Object.entries(restored).find(([path]) => path.endsWith('config.yaml'))?.[1]).toBe(
      'motd: hello\nmaxPlayers: 64\n',
    );
    expect(readFileSync(join(game, 'config.yaml'), 'utf8')).toBe('motd: production now\n');
    const unknown = await run('backup-restore', { id: firstId, target: 'nowhere' });
    expect(step(unknown, 'plan').error?.message).toContain('no restore target "nowhere"');
  });

  it('a restore refuses a component the set does not have before any approval is asked', async () => {
    const view = await run('backup-restore', { id: firstId, components: ['mysql'] });
    expect(view.status).toBe('failed');
    expect(step(view, 'plan').error?.message).toContain(`backup ${firstId} has no mysql component`);
    expect(step(view, 'approve').status).not.toBe('waiting');
  });

  it('a malformed id is refused by the runbook before anything runs', async () => {
    await expect(
      engine.start({ runbook: 'backup-restore', params: { id: '../../etc' }, trigger: 'cli' }, admin),
    ).rejects.toThrow(/id/);
  });

  it('backup-verify fails naming the first bad object when a stored byte is flipped', async () => {
    const second = step(await run('backup'), 'create').output as { id: string };
    const objects = storedFiles(join(storage, second.id)).filter((f) => !f.endsWith('manifest.json'));
    expect(objects.length).toBeGreaterThan(0);
    const victim = objects[0]!;
    const bytes = readFileSync(victim);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = bytes[at]! ^ 0x01;
    writeFileSync(victim, bytes);
    const view = await run('backup-verify', { id: second.id });
    expect(view.status).toBe('failed');
    const message = step(view, 'verify').error?.message ?? '';
    expect(message).toContain(`backup ${second.id} failed verification`);
    expect(message).toContain(victim.slice(storage.length + 1));
    const set = await (await openBackups(resources)).show(second.id);
    expect(set.set.verifyOk).toBe(false);
    // The drill action on the same set fails its step, listing what failed.
    const drill = createCatalog().action('backup.drill')!;
    await expect(
      drill.run(drill.args.parse({ id: second.id }), stepContext(createRunbookServices(resources))),
    ).rejects.toThrow(new RegExp(`the drill of backup ${second.id} failed: files: `));
    expect((await (await openBackups(resources)).show(second.id)).set.drillOk).toBe(false);
  });

  it('backup.latest names the newest complete set and refuses when verifiedOnly finds none', async () => {
    const catalog = createCatalog();
    const latest = catalog.action('backup.latest')!;
    const services = createRunbookServices(resources);
    const out = (await latest.run(latest.args.parse({}), stepContext(services))) as { id: string };
    expect(out.id).toMatch(/^bk-/);
    expect(latest.effect).toBe('read-only');
    expect(catalog.action('backup.restore')!.effect).toBe('destructive');
    expect(await catalog.action('backup.restore')!.verify!({}, stepContext(services))).toBe('unknown');
  });
});

describe('backup-restore to the original systems with a platform (local reference fleet)', () => {
  let written: ReferenceFleetConfig;
  let resources: Resources;
  let engine: Engine;
  let game: string;

  beforeAll(async () => {
    written = await writeReferenceFleetConfig({ prefix: 'bkrestore' });
    game = join(written.dir, 'game-files');
    mkdirSync(game);
    writeFileSync(join(game, 'rules.yaml'), 'xpRate: 1\n');
    appendFileSync(
      written.path,
      [
        ...backupsSection(written.dir, await backupKey(), {
          storage: join(written.dir, 'backups'),
          files: [game],
          extra: ['  kubernetes: { enabled: false }'],
        }),
        '',
      ].join('\n'),
    );
    resources = await bootstrap({ configPath: written.path, store: 'required', logLevel: 'silent' });
    engine = await openRunbooks(resources);
    await (await openFleet(resources)).platform.scale(1);
  });

  afterAll(async () => {
    if (resources) await shutdown(resources);
    if (written) await destroyFleet(written.dataDir);
  });

  it('closes the traffic gate, restores, restarts the game servers and opens the gate again', async () => {
    const backup = await engine.start({ runbook: 'backup', params: {}, trigger: 'cli' }, admin);
    const backedUp = (await engine.runUntilIdle({ runId: backup.id }))!;
    expect(backedUp.status).toBe('succeeded');
    const id = (backedUp.steps.find((s) => s.id === 'create')!.output as { id: string }).id;
    writeFileSync(join(game, 'rules.yaml'), 'xpRate: 1000\n');

    const started = await engine.start({ runbook: 'backup-restore', params: { id }, trigger: 'cli' }, admin);
    const waiting = (await engine.runUntilIdle({ runId: started.id }))!;
    const approve = waiting.steps.find((s) => s.id === 'approve')!;
    expect(waiting.status).toBe('waiting');
    expect(approve.approval?.message).toContain('players are kept out (maintenance mode)');
    expect(approve.approval?.covers.map((c) => c.id)).toEqual(
      expect.arrayContaining(['stop-traffic', 'restore-files', 'restart', 'traffic-back']),
    );
    expect((await (await openFleet(resources)).gate()).closed).toBe(false);
    await engine.decide(
      { runId: started.id, stepId: 'approve', decision: 'approve', planHash: approve.approval!.planHash },
      admin,
    );
    const done = (await engine.runUntilIdle({ runId: started.id }))!;
    const status = Object.fromEntries(done.steps.map((s) => [s.id, s.status]));
    expect(status, JSON.stringify(done.steps.map((s) => [s.id, s.status, s.error]))).toMatchObject({
      'stop-traffic': 'succeeded',
      'restore-files': 'succeeded',
      restart: 'succeeded',
      'traffic-back': 'succeeded',
    });
    // Traffic was stopped before the files were replaced, and let back only after the restart.
    const at = (id: string, key: 'startedAt' | 'finishedAt') => done.steps.find((s) => s.id === id)![key]!;
    expect(at('stop-traffic', 'finishedAt') <= at('restore-files', 'startedAt')).toBe(true);
    expect(at('restart', 'finishedAt') <= at('traffic-back', 'startedAt')).toBe(true);
    expect(readFileSync(join(game, 'rules.yaml'), 'utf8')).toBe('xpRate: 1\n');
    expect((await (await openFleet(resources)).gate()).closed).toBe(false);
  });
});

describe('stepProgress', () => {
  it('logs bytes, rate and ETA to the step about every 2 s on the step clock', () => {
    const clock = new ManualClock('2026-11-26T10:00:00Z');
    const lines: string[] = [];
    const ctx = { clock, log: (line: string) => lines.push(line) } as unknown as StepContext;
    const progress = stepProgress(ctx);
    progress.phase('download', 10 * 1024 * 1024);
    expect(lines).toHaveLength(1);
    for (let i = 0; i < 8; i++) {
      clock.advance(500);
      progress.add(512 * 1024);
    }
    // 4 s of 1 MiB/s: two more lines, not eight.
    expect(lines).toHaveLength(3);
    expect(lines.at(-1)).toMatch(/^download 4(\.0)? MiB of 10(\.0)? MiB, 1(\.0)? MiB\/s, ETA /);
    expect(lines.at(-1)).toContain(formatDuration(6000));
  });
});

describe('backup.create after a crash', () => {
  it('an interrupted create is re-run by the next worker (its verify() says not-done) and the next step reads the NEW set', async () => {
    const cleanups: Cleanups = [];
    const store = await openStore(sqlitePlace(cleanups).options);
    try {
      const clock = new ManualClock('2026-11-26T18:00:00Z');
      const real = createCatalog().action('backup.create')!;
      expect(real.idempotent).toBe(false);
      expect(await real.verify!({}, {} as StepContext)).toBe('not-done');
      // The real action's definition (effect, idempotent, args, verify) with a run that does not need a
      // storage: the first attempt hangs as if its process died; the second takes set -000002.
      const hung = gate();
      let creates = 0;
      const create: ActionDefinition = {
        ...real,
        async run(_args, ctx) {
          creates += 1;
          if (creates === 1) {
            hung.enter(ctx);
            await hung.promise;
            return { id: 'bk-20261126T180000Z-000001' };
          }
          return { id: 'bk-20261126T180001Z-000002', state: 'complete' };
        },
      };
      const read: string[] = [];
      const readAction: ActionDefinition = {
        name: 'test.read-set',
        description: 'records the set it is given',
        effect: 'read-only',
        idempotent: true,
        args: z.strictObject({ id: z.string() }),
        target: () => 'a set',
        async run(args: { id: string }) {
          read.push(args.id);
          return { id: args.id };
        },
      };
      const actions = [create, readAction];
      const catalog: Catalog = {
        action: (name) => actions.find((a) => a.name === name),
        check: () => undefined,
        actions: () => actions,
        checks: () => [],
      };
      const rb = runbook('backup-crash', [
        { id: 'create', kind: 'action', action: 'backup.create', args: {} },
        {
          id: 'verify',
          kind: 'action',
          action: 'test.read-set',
          needs: ['create'],
          args: { id: '${{ steps.create.output.id }}' },
        },
      ]);
      const first = testEngine({ store, clock, catalog, runbooks: [rb], workerId: 'worker-1' });
      const started = await first.start(
        { runbook: 'backup-crash', params: {}, trigger: 'cli' },
        actors.alice,
      );
      const stop = new AbortController();
      const idle = first.runUntilIdle({ runId: started.id, signal: stop.signal });
      await hung.entered;
      stop.abort();
      await idle;

      const second = testEngine({ store, clock, catalog, runbooks: [rb], workerId: 'worker-2' });
      const view = (await second.runUntilIdle({ runId: started.id }))!;
      expect(view.status, JSON.stringify(view.steps)).toBe('succeeded');
      const createStep = view.steps.find((s) => s.id === 'create')!;
      expect(createStep).toMatchObject({ status: 'succeeded', attempt: 2 });
      expect(createStep.output).toMatchObject({ id: 'bk-20261126T180001Z-000002' });
      expect(creates).toBe(2);
      expect(read).toEqual(['bk-20261126T180001Z-000002']);
      const events = await second.events(started.id, 0, actors.alice, { waitMs: 0 });
      expect(events.map((e) => e.message ?? '').join('\n')).toContain('did not take effect; it runs again');
      hung.open();
    } finally {
      await store.close();
      for (const cleanup of cleanups.reverse()) await cleanup();
    }
  });
});
