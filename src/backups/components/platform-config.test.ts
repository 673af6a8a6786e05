/**
 * The `kubernetes` backup component (the platform's config) against real adapters: the local platform
 * (its game config file) and the Kubernetes adapter against the API **stand-in** (test/k8s-standin; not
 * Kubernetes: docs/adr/0005). Objects go to plain files (test-support.ts): encryption is the codec's.
 */
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { Logger } from '../../app/log.ts';
import { InputError, UnavailableError, systemClock } from '../../core/index.ts';
import { createLocalPlatform } from '../../platform/local/index.ts';
import { destroyFleet, freePortBlock, localConfig, tempDataDir } from '../../platform/local/test-support.ts';
import { startFleet, type Fleet } from '../../../test/k8s-standin/fleet.ts';
import type { Secret } from '../../../test/k8s-standin/index.ts';
import type { ComponentBackup, ManifestComponent } from '../types.ts';
import {
  PLATFORM_CONFIG_OBJECT,
  backupPlatformConfig,
  canonicalJson,
  drillPlatformConfig,
  restorePlatformConfig,
  type PlatformConfigVerification,
} from './platform-config.ts';
import { RecordingProgress, TestObjectStore } from './test-support.ts';

const CANARY = 'canary-secret-value-9c41e7d2';
const CANARY_B64 = Buffer.from(CANARY).toString('base64');

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function store(): Promise<TestObjectStore> {
  const s = await TestObjectStore.create({ component: 'kubernetes' });
  cleanups.push(() => s.cleanup());
  return s;
}

async function fleet(): Promise<Fleet> {
  // No RBAC: deploy/rbac.yaml's own test covers the grants; here the component is under test.
  const f = await startFleet({ replicas: 1, rbac: false });
  cleanups.push(() => f.close());
  f.standIn.createSecret('db-credentials', { password: CANARY }, { labels: { app: 'game' } });
  f.standIn.createSecret(
    'default-token-abcde',
    { token: 't' },
    { type: 'kubernetes.io/service-account-token' },
  );
  f.standIn.createConfigMap('matchmaking', { 'rules.yaml': 'regions: [eu]\n' });
  return f;
}

/** A logger at the most verbose level whose every line is kept. */
function capturingLog(): { log: Logger; text: () => string } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });
  const log: Logger = pino({ level: 'trace' }, sink);
  return { log, text: () => lines.join('') };
}

function manifestEntry(s: TestObjectStore, backup: ComponentBackup): ManifestComponent {
  return {
    ...backup,
    kind: 'kubernetes',
    startedAt: '2026-01-01T00:00:00Z',
    completedAt: '2026-01-01T00:00:01Z',
    objects: [...s.records],
  };
}

describe('platform config component: Kubernetes (API stand-in)', () => {
  it('refuses to back up Secrets unencrypted, and writes nothing', async () => {
    const f = await fleet();
    const s = await store();
    const err = await backupPlatformConfig(f.platform, s.writeContext(await s.tempDir()), {
      encrypted: false,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain(
      'Secrets are always encrypted: set backups.encryption.recipients',
    );
    expect((err as Error).message).not.toContain(CANARY);
    expect(s.records).toEqual([]);
    expect(await s.files()).toEqual([]);
  });

  it('backs up every ConfigMap and Secret (no SA token), never logging a value; restore recreates them; drill passes', async () => {
    const f = await fleet();
    const s = await store();
    const captured = capturingLog();
    const progress = new RecordingProgress();
    const ctx = { ...s.writeContext(await s.tempDir(), { progress }), log: captured.log };
    const backup = await backupPlatformConfig(f.platform, ctx, { encrypted: true });
    expect(s.records.map((r) => r.name)).toEqual([PLATFORM_CONFIG_OBJECT]);

    const v = backup.verification as PlatformConfigVerification;
    expect(v.counts).toEqual({ ConfigMap: 2, Secret: 1, File: 0, total: 3 });
    expect(v.objects.map((o) => `${o.kind}/${o.name}`)).toEqual([
      'ConfigMap/game-config',
      'ConfigMap/matchmaking',
      'Secret/db-credentials',
    ]);
    // The plain object holds the Secret (the codec encrypts it); nothing else the component emits does.
    const plain = (await s.bytes(PLATFORM_CONFIG_OBJECT)).toString('utf8');
    expect(plain).toContain(CANARY_B64);
    expect(plain).not.toContain('default-token');
    const emitted = [captured.text(), JSON.stringify(backup), progress.notes.join('\n')].join('\n');
    expect(captured.text()).toContain('platform config backed up');
    for (const leak of [CANARY, CANARY_B64]) expect(emitted).not.toContain(leak);
    // Canonical: the same namespace gives the same bytes.
    const again = await store();
    await backupPlatformConfig(f.platform, again.writeContext(await again.tempDir()), { encrypted: true });
    expect((await again.bytes(PLATFORM_CONFIG_OBJECT)).toString('utf8')).toBe(plain);

    const entry = manifestEntry(s, backup);
    const drill = await drillPlatformConfig(entry, s.readContext(await s.tempDir()));
    expect(drill.ok, JSON.stringify(drill.checks)).toBe(true);
    expect(drill.component).toBe('kubernetes');
    expect(drill.checks.map((c) => c.subject)).toContain('Secret db-credentials');
    expect(drill.bytes).toBe(s.records[0]!.plainSize);

    // Disaster: the Secret and a ConfigMap are gone, the game config changed.
    f.standIn.store.delete('secrets', 'game', 'db-credentials');
    f.standIn.store.delete('configmaps', 'game', 'matchmaking');
    await f.platform.patchConfig({ motd: 'changed' });
    const restoreLog = capturingLog();
    const result = await restorePlatformConfig(entry, f.platform, {
      ...s.readContext(await s.tempDir()),
      log: restoreLog.log,
    });
    expect(result).toEqual({ created: 2, replaced: 1 });
    expect(await f.platform.readConfig()).toEqual({ motd: 'hello' });
    const secret = f.standIn.store.get<Secret>('secrets', 'game', 'db-credentials')!;
    expect(secret.data).toEqual({ password: CANARY_B64 });
    expect(secret.metadata.labels).toEqual({ app: 'game' });
    for (const leak of [CANARY, CANARY_B64]) expect(restoreLog.text()).not.toContain(leak);
  });

  it('drill fails naming the object whose hash differs from the manifest; restore then applies nothing', async () => {
    const f = await fleet();
    const s = await store();
    const backup = await backupPlatformConfig(f.platform, s.writeContext(await s.tempDir()), {
      encrypted: true,
    });
    const v = structuredClone(backup.verification) as PlatformConfigVerification;
    const secret = v.objects.find((o) => o.name === 'db-credentials')!;
    secret.sha256 = '0'.repeat(64);
    const entry = { ...manifestEntry(s, backup), verification: v };
    const drill = await drillPlatformConfig(entry, s.readContext(await s.tempDir()));
    expect(drill.ok).toBe(false);
    expect(drill.checks.filter((c) => !c.ok).map((c) => c.subject)).toEqual(['Secret db-credentials']);

    f.standIn.store.delete('configmaps', 'game', 'matchmaking');
    const err = await restorePlatformConfig(entry, f.platform, s.readContext(await s.tempDir())).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain('Secret db-credentials differs from the manifest');
    expect(f.standIn.store.get('configmaps', 'game', 'matchmaking')).toBeUndefined();
  });

  it('a missing object in the set, or a count that differs, fails the drill', async () => {
    const f = await fleet();
    const s = await store();
    const backup = await backupPlatformConfig(f.platform, s.writeContext(await s.tempDir()), {
      encrypted: true,
    });
    const v = structuredClone(backup.verification) as PlatformConfigVerification;
    v.objects.push({ kind: 'Secret', name: 'was-there', keys: 1, sha256: 'a'.repeat(64) });
    v.counts.Secret = 2;
    v.counts.total = 4;
    const drill = await drillPlatformConfig(
      { ...manifestEntry(s, backup), verification: v },
      s.readContext(await s.tempDir()),
    );
    expect(drill.ok).toBe(false);
    expect(drill.checks.filter((c) => !c.ok).map((c) => `${c.subject}: ${c.actual}`)).toEqual([
      'Secret was-there: missing',
      'Secret count: 1',
      'total count: 3',
    ]);
    const none = await drillPlatformConfig(
      manifestEntry(s, backup),
      s.readContext(await s.tempDir(), { objects: [] }),
    ).catch((e: unknown) => e);
    expect(none).toBeInstanceOf(UnavailableError);
    expect((none as Error).message).toContain(PLATFORM_CONFIG_OBJECT);
  });
});

describe('platform config component: local platform', () => {
  it('backs up the game config file unencrypted (no Secrets) and restores it', async () => {
    const dataDir = await tempDataDir();
    cleanups.push(() => destroyFleet(dataDir));
    const platform = createLocalPlatform({
      config: localConfig({ basePort: await freePortBlock(2), replicas: 0 }),
      dataDir,
      clock: systemClock,
    });
    cleanups.push(() => platform.close());
    await platform.patchConfig({ motd: 'welcome', maintenance_mode: 'false' });
    const s = await store();
    const backup = await backupPlatformConfig(platform, s.writeContext(await s.tempDir()), {
      encrypted: false,
    });
    expect((backup.verification as PlatformConfigVerification).counts).toEqual({
      ConfigMap: 0,
      Secret: 0,
      File: 1,
      total: 1,
    });
    await platform.patchConfig({ motd: 'broken', maintenance_mode: null, extra: '1' });
    const entry = manifestEntry(s, backup);
    expect(await restorePlatformConfig(entry, platform, s.readContext(await s.tempDir()))).toEqual({
      created: 0,
      replaced: 1,
    });
    expect(await platform.readConfig()).toEqual({ motd: 'welcome', maintenance_mode: 'false' });
    expect((await drillPlatformConfig(entry, s.readContext(await s.tempDir()))).ok).toBe(true);
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every level and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: undefined } })).toBe(
      '{"a":{"d":[2,{"y":2,"z":1}]},"b":1}',
    );
  });
});
