import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText, readEnv, type GameopsConfig } from '../config/index.ts';
import { ManualClock } from '../core/index.ts';
import type { Actor } from '../runbooks/model.ts';
import { openStore, type Store } from '../store/index.ts';
import { backupsCheck } from './backups.ts';
import { runDailyCheck } from './daily.ts';
import type { CheckResult } from './types.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const by: Actor = { id: 'local:t', name: 't', role: 'admin', kind: 'local' };

function config(backups: string | undefined): GameopsConfig {
  const text = ['service: { name: test-game, environment: test }', ...(backups ? [backups] : [])].join('\n');
  return parseConfigText(text, 'test.yaml', readEnv({})).config;
}

describe('the backups daily check', () => {
  let dir: string;
  let store: Store;
  let configured: GameopsConfig;
  const clock = new ManualClock('2026-11-20T03:00:00Z');
  let n = 0;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gameops-backups-check-'));
    store = await openStore({ dataDir: join(dir, 'data'), clock });
    const recipient = await identityToRecipient(await generateX25519Identity());
    configured = config(
      [
        'backups:',
        `  storage: { kind: filesystem, path: ${join(dir, 'b')} }`,
        `  encryption: { recipients: [${recipient}] }`,
        `  files: { paths: [${dir}] }`,
        '  restorable: { warnAfter: 8d, failAfter: 31d }',
      ].join('\n'),
    );
  });

  afterAll(async () => {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function check(
    cfg = configured,
    catalog: Store['backups'] | null = store.backups,
  ): Promise<CheckResult> {
    const run = await runDailyCheck({
      config: cfg,
      clock,
      trigger: 'cli',
      checks: [backupsCheck],
      ...(catalog ? { backupCatalog: catalog } : {}),
    });
    return run.results[0]!;
  }

  const id = (): string => `bk-20261120T0${n}0000Z-00000${(n++).toString(16)}`;

  /** Starts a new files set (holder h) and returns its id. */
  async function beginSet(): Promise<string> {
    const setId = id();
    await store.backups.begin({
      id: setId,
      service: 'test-game',
      environment: 'test',
      components: ['files'],
      storage: 'filesystem /x',
      by,
      holder: 'h',
      leaseMs: 60_000,
    });
    return setId;
  }

  async function completeSet(): Promise<string> {
    const setId = await beginSet();
    await store.backups.complete(setId, 'h', {
      sizeBytes: 10,
      objectCount: 2,
      manifestKey: `${setId}/manifest.json`,
      manifestSha256: '0'.repeat(64),
    });
    return setId;
  }

  it('is skipped when backups are not configured', async () => {
    expect(await check(config(undefined))).toMatchObject({ status: 'skipped', summary: 'not configured' });
  });

  it('is skipped, naming the catalog and gameops serve, when the store is not open in this process', async () => {
    const result = await check(configured, null);
    expect(result.status).toBe('skipped');
    expect(result.summary).toContain('backup catalog is not open in this process');
    expect(result.summary).toContain('gameops serve');
  });

  it('fails with no complete set and a component never proven restorable', async () => {
    const result = await check();
    expect(result.status).toBe('fail');
    expect(result.findings).toContainEqual(
      expect.objectContaining({ status: 'fail', subject: 'newest set', message: 'no complete backup set' }),
    );
    expect(result.findings).toContainEqual(
      expect.objectContaining({
        status: 'fail',
        message: 'files: never proven restorable (gameops backup drill)',
      }),
    );
  });

  it('is ok for a fresh drilled set, warns after 26 h and fails after 50 h', async () => {
    const setId = await completeSet();
    await store.backups.recordDrill(setId, { ok: true, report: {}, restorable: ['files'], by });
    let result = await check();
    expect(result.status, result.summary).toBe('ok');
    expect(result.values).toMatchObject({ newestComplete: setId, restorable: { files: { setId } } });
    clock.advance(27 * HOUR);
    result = await check();
    expect(result.status).toBe('warn');
    expect(result.findings).toContainEqual(
      expect.objectContaining({ status: 'warn', subject: 'newest set' }),
    );
    expect(result.summary).toContain(setId);
    clock.advance(24 * HOUR);
    result = await check();
    expect(result.status).toBe('fail');
    expect(result.findings).toContainEqual(
      expect.objectContaining({ status: 'fail', subject: 'newest set' }),
    );
  });

  it('warns naming a newest set that failed, and ages "last proven restorable" against warnAfter/failAfter', async () => {
    await completeSet();
    let result = await check();
    expect(result.status, result.summary).toBe('ok');
    // 9 days after the drill (made 51 h before the new set): warn.
    clock.advance(9 * DAY - 51 * HOUR);
    const failed = await beginSet();
    await store.backups.fail(failed, { error: 'storage full: filesystem /x', leftovers: [] });
    result = await check();
    expect(result.findings).toContainEqual(
      expect.objectContaining({
        status: 'warn',
        subject: failed,
        message: `the newest backup ${failed} failed: storage full: filesystem /x`,
      }),
    );
    expect(result.findings).toContainEqual(
      expect.objectContaining({ status: 'warn', subject: 'files restorable' }),
    );
    clock.advance(23 * DAY);
    result = await check();
    expect(result.findings).toContainEqual(
      expect.objectContaining({ status: 'fail', subject: 'files restorable' }),
    );
    expect(result.status).toBe('fail');
  });
  it("warns when the newest complete set failed its last verify, and marks a dead holder's set abandoned", async () => {
    const good = await completeSet();
    await store.backups.recordDrill(good, { ok: true, report: {}, restorable: ['files'], by });
    clock.advance(HOUR);
    const corrupt = await completeSet();
    await store.backups.recordVerify(corrupt, { ok: true, error: null, by });
    clock.advance(HOUR);
    await store.backups.recordVerify(corrupt, {
      ok: false,
      error: `${corrupt}/files/files.tar.zst.age: stored SHA-256 differs`,
      by,
    });
    let result = await check();
    expect(result.status).toBe('warn');
    expect(result.findings).toContainEqual(
      expect.objectContaining({
        status: 'warn',
        subject: corrupt,
        message: expect.stringMatching(/failed its last verify: .*stored SHA-256 differs/) as string,
      }),
    );
    // A running set whose process stopped renewing: failed (abandoned) once its lease is over.
    const dead = await beginSet();
    clock.advance(61_000);
    result = await check();
    expect((await store.backups.get(dead))?.state).toBe('failed');
    expect(result.findings).toContainEqual(
      expect.objectContaining({
        status: 'warn',
        subject: dead,
        message: expect.stringMatching(/abandoned/) as string,
      }),
    );
  });
});
