/**
 * Backups end to end (issue #6), on real servers: a MariaDB holding a generated game database, a Redis
 * with AOF on, a files directory; storage on the filesystem and on S3 (s3rver, a **stand-in** for S3).
 * create → verify → drill → production damaged → restore, compared with digests taken independently of
 * the backup code (bench/backup-dataset.ts `tableDigests`), plus the failure cases of the issue: a full
 * disk, the database dying mid-dump, a flipped byte, a wrong key, two backups at once, hostile ids, and
 * plaintext canaries never stored.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import fsp from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as age from 'age-encryption';
import { generateGameDatabase, tableDigests } from '../../bench/backup-dataset.ts';
import { createBackupService, type BackupService } from '../../src/backups/service.ts';
import { openObjectStore } from '../../src/backups/storage/index.ts';
import type { ObjectStore } from '../../src/backups/types.ts';
import { loadConfig, readEnv, type GameopsConfig } from '../../src/config/index.ts';
import { ConflictError, InputError, NotFoundError, secret, systemClock } from '../../src/core/index.ts';
import type { Actor } from '../../src/runbooks/model.ts';
import { openStore, type Store } from '../../src/store/index.ts';
import {
  type MariaDBHandle,
  type RedisHandle,
  type S3rverHandle,
  smallFilesystem,
  startMariaDB,
  startRedis,
  startS3rver,
} from '../harness/index.ts';

const log = pino({ level: 'silent' });
const operator: Actor = { id: 'local:ops', name: 'ops', role: 'operator', kind: 'local' };
const CANARY_PASSWORD = `canary-Pw-${randomBytes(6).toString('hex')}`;
const CANARY_SECRET = `canary-Secret-${randomBytes(6).toString('hex')}`;

let db: MariaDBHandle;
let redis: RedisHandle;
let s3: S3rverHandle;
let dir: string;
let filesDir: string;
let identityFile: string;
let recipient: string;
const stores: Store[] = [];
const services: BackupService[] = [];

function sha(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Writes a config and opens the service on it, with its own store. */
async function openService(
  storageYaml: string,
  options: { identity?: string; files?: string[]; components?: string } = {},
): Promise<{ service: BackupService; store: Store; config: GameopsConfig; storage: ObjectStore }> {
  const home = mkdtempSync(join(dir, 'svc-'));
  writeFileSync(join(home, 'mysql-password'), db.password, { mode: 0o600 });
  writeFileSync(join(home, 'redis-password'), redis.password ?? '', { mode: 0o600 });
  const yaml = [
    'service: { name: backup-e2e, environment: test }',
    `database: { dataDir: ${join(home, 'data')} }`,
    `mysql: { host: 127.0.0.1, port: ${db.port}, user: root, password: "file:${join(home, 'mysql-password')}", database: gamedb }`,
    `redis: { host: 127.0.0.1, port: ${redis.port}, password: "file:${join(home, 'redis-password')}" }`,
    'backups:',
    `  storage: ${storageYaml}`,
    `  encryption: { recipients: [${recipient}], identity: "file:${options.identity ?? identityFile}" }`,
    `  files: { paths: ${JSON.stringify(options.files ?? [filesDir])} }`,
    '  mysql: { chunkBytes: 1048576 }',
    '  redis: { samples: 50 }',
  ].join('\n');
  const file = join(home, 'gameops.yaml');
  writeFileSync(file, `${yaml}\n`);
  const { config } = loadConfig({ path: file, env: readEnv({}) });
  const store = await openStore({ dataDir: config.database.dataDir });
  stores.push(store);
  const storage = openObjectStore(config.backups!.storage, { log });
  const service = createBackupService({ config, store, clock: systemClock, log, storage, leaseMs: 30_000 });
  services.push(service);
  return { service, store, config, storage };
}

async function allStoredBytes(storage: ObjectStore, prefix: string): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const info of storage.list(prefix)) {
    const body = await storage.get(info.key);
    const chunks: Buffer[] = [];
    for await (const chunk of body as AsyncIterable<Buffer>) chunks.push(chunk);
    out.push(Buffer.concat(chunks));
  }
  return out;
}

async function redisState(client: Redis): Promise<{ keys: number; digest: string }> {
  const keys = (await client.keys('*')).sort();
  const h = createHash('sha256');
  for (const key of keys) {
    const type = await client.type(key);
    h.update(`${key}\0${type}\0`);
    if (type === 'string') h.update((await client.getBuffer(key)) ?? Buffer.alloc(0));
    else if (type === 'hash') h.update(JSON.stringify(Object.entries(await client.hgetall(key)).sort()));
    else if (type === 'list') h.update(JSON.stringify(await client.lrange(key, 0, -1)));
    else if (type === 'set') h.update(JSON.stringify((await client.smembers(key)).sort()));
    else if (type === 'zset') h.update(JSON.stringify(await client.zrange(key, '0', '-1', 'WITHSCORES')));
  }
  return { keys: keys.length, digest: h.digest('hex') };
}

async function fileDigests(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await fsp.readdir(root, { recursive: true, withFileTypes: true })) {
    const full = join(entry.parentPath, entry.name);
    const rel = full.slice(root.length + 1);
    if (entry.isSymbolicLink()) out[rel] = `link:${await fsp.readlink(full)}`;
    else if (entry.isFile())
      out[rel] = `${((await fsp.stat(full)).mode & 0o777).toString(8)}:${sha(await fsp.readFile(full))}`;
    else if (entry.isDirectory()) out[rel] = 'dir';
  }
  return out;
}

const target = () => ({ host: '127.0.0.1', port: db.port, user: 'root', password: db.password });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gameops-backup-e2e-'));
  [db, redis, s3] = await Promise.all([
    startMariaDB(),
    startRedis({ password: `r-${randomBytes(8).toString('hex')}`, appendonly: true }),
    startS3rver({ buckets: ['gameops-backups'] }),
  ]);
  await generateGameDatabase(
    { ...target(), database: 'gamedb' },
    { targetBytes: 6 * 1024 * 1024, chunkRows: 20_000 },
  );
  const conn = await mysql.createConnection({ ...target(), database: 'gamedb' });
  await conn.query('CREATE TABLE accounts (id INT PRIMARY KEY, login VARCHAR(40), password VARCHAR(80))');
  await conn.query('INSERT INTO accounts VALUES (1, ?, ?)', ['gm', CANARY_PASSWORD]);
  await conn.end();
  const client = new Redis({ port: redis.port, password: redis.password, lazyConnect: true });
  await client.connect();
  const pipe = client.pipeline();
  for (let i = 0; i < 5000; i++) pipe.set(`session:${i}`, randomBytes(24).toString('base64'));
  for (let i = 0; i < 200; i++) pipe.hset(`player:${i}`, { level: String(i), guild: `g${i % 7}` });
  pipe.zadd('leaderboard', 1, 'a', 2, 'b', 3, 'c');
  pipe.sadd('online', 'a', 'b');
  pipe.rpush('queue', 'x', 'y', 'z');
  pipe.set('canary', CANARY_PASSWORD);
  await pipe.exec();
  await client.quit();
  filesDir = join(dir, 'game-files');
  await fsp.mkdir(join(filesDir, 'conf', 'empty'), { recursive: true });
  await fsp.writeFile(join(filesDir, 'conf', 'server.yaml'), 'maxPlayers: 5000\n', { mode: 0o644 });
  await fsp.writeFile(join(filesDir, 'conf', 'secret.env'), `API_SECRET=${CANARY_SECRET}\n`, { mode: 0o600 });
  await fsp.writeFile(join(filesDir, '맵-데이터.bin'), randomBytes(300_000));
  await fsp.symlink('conf/server.yaml', join(filesDir, 'current.yaml'));
  const identity = await age.generateIdentity();
  recipient = await age.identityToRecipient(identity);
  identityFile = join(dir, 'backup-key.txt');
  writeFileSync(identityFile, `# created: 2026-11-26\n# public key: ${recipient}\n${identity}\n`, {
    mode: 0o600,
  });
}, 240_000);

afterAll(async () => {
  await Promise.allSettled(services.map((s) => s.close()));
  await Promise.allSettled(stores.map((s) => s.close()));
  await Promise.allSettled([db?.stop(), redis?.stop(), s3?.stop()]);
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
}, 60_000);

describe.each([
  {
    kind: 'filesystem',
    yaml: () => `{ kind: filesystem, path: ${join(dir, `fs-${randomBytes(3).toString('hex')}`)} }`,
  },
  {
    kind: 'S3 stand-in (s3rver)',
    yaml: () =>
      `{ kind: s3, bucket: gameops-backups, prefix: "e2e-${randomBytes(3).toString('hex')}/", endpoint: "${s3.endpoint}", forcePathStyle: true, accessKeyId: S3RVER, secretAccessKey: S3RVER, partSize: 5242880, storageClass: { default: STANDARD } }`,
  },
])('backup round trip on $kind storage', ({ yaml }) => {
  it('create → verify → drill → restore after damage gives back the same database, Redis and files; canaries never stored', async () => {
    const { service, storage, store } = await openService(yaml());
    const digestsBefore = await tableDigests(target(), 'gamedb');
    const client = new Redis({ port: redis.port, password: redis.password });
    const redisBefore = await redisState(client);
    const filesBefore = await fileDigests(filesDir);

    const set = await service.create({ by: operator });
    expect(set.state).toBe('complete');
    expect(set.components.sort()).toEqual(['files', 'mysql', 'redis']);
    const { manifest } = await service.show(set.id);
    expect(manifest?.components.map((c) => c.kind).sort()).toEqual(['files', 'mysql', 'redis']);
    expect(manifest?.encryption.recipients).toEqual([recipient]);
    // The MySQL dump was split (chunkBytes 1 MiB) so a restore can load in parallel.
    expect(manifest?.components.find((c) => c.kind === 'mysql')?.objects.length).toBeGreaterThan(8);

    // Plaintext canaries: nowhere in any stored byte, in any encoding that could leak.
    const blobs = await allStoredBytes(storage, `${set.id}/`);
    expect(blobs.length).toBe(set.objectCount + 1);
    for (const canary of [CANARY_PASSWORD, CANARY_SECRET]) {
      for (const form of [
        canary,
        Buffer.from(canary).toString('base64'),
        Buffer.from(canary).toString('hex'),
      ])
        for (const blob of blobs) expect(blob.includes(form)).toBe(false);
    }

    const verified = await service.verify(set.id, { by: operator });
    expect(verified).toMatchObject({ ok: true, objects: set.objectCount });

    const drill = await service.drill(set.id, { by: operator });
    expect(drill.errors).toEqual([]);
    for (const c of drill.components)
      expect({ component: c.component, failed: c.checks.filter((k) => !k.ok) }).toEqual({
        component: c.component,
        failed: [],
      });
    expect(drill.ok).toBe(true);
    expect((await service.restorable()).map((r) => r.component).sort()).toEqual(['files', 'mysql', 'redis']);
    // The drill's scratch databases are gone.
    const conn = await mysql.createConnection(target());
    const [dbs] = await conn.query("SHOW DATABASES LIKE 'gameops\\_drill%'");
    expect(dbs).toEqual([]);

    // Production is damaged...
    await conn.query('DELETE FROM gamedb.players WHERE id % 3 = 0');
    await conn.query('DROP TABLE gamedb.purchases');
    await conn.query('UPDATE gamedb.accounts SET password = NULL');
    await client.flushall();
    await client.set('written-after-backup', '1');
    await fsp.writeFile(join(filesDir, 'conf', 'server.yaml'), 'maxPlayers: 1\n');
    await fsp.rm(join(filesDir, '맵-데이터.bin'));
    // ...and restored from the set.
    for (const component of ['mysql', 'redis', 'files'] as const) {
      const report = await service.restoreComponent(set.id, component, { by: operator });
      expect(report.component).toBe(component);
    }
    // CHECKSUM TABLE includes FLOAT bits, which a logical dump rounds to 6 significant digits: tables with
    // FLOAT columns are compared by rows and content (FLOAT as printed), every other table exactly.
    const digestsAfter = await tableDigests(target(), 'gamedb');
    const comparable = (d: typeof digestsAfter) =>
      Object.fromEntries(
        Object.entries(d).map(([t, v]) => [t, v.floatColumns.length > 0 ? { ...v, checksum: 'float' } : v]),
      );
    expect(comparable(digestsAfter)).toEqual(comparable(digestsBefore));
    expect(Object.values(digestsBefore).some((v) => v.floatColumns.length > 0)).toBe(true);
    expect(await redisState(client)).toEqual(redisBefore);
    expect(await fileDigests(filesDir)).toEqual(filesBefore);

    // Redis has AOF on: a restart loads the AOF, which must hold the restored data (redis#837).
    const info = await client.info('persistence');
    expect(info).toMatch(/aof_enabled:1/);
    const actions = (await store.audit.list({ limit: 200 })).map((r) => r.action);
    expect(actions).toEqual(
      expect.arrayContaining([
        'backup.start',
        'backup.complete',
        'backup.verify',
        'backup.drill',
        'backup.restore.done',
      ]),
    );
    await conn.end();
    client.disconnect();
  }, 300_000);
});

describe('backups: failures end cleanly', () => {
  it('a 1 MiB full filesystem as storage: the set fails with "storage full", nothing is marked complete, nothing left', async () => {
    const small = await smallFilesystem(1);
    try {
      const big = join(dir, `big-${randomBytes(3).toString('hex')}`);
      await fsp.mkdir(big);
      await fsp.writeFile(join(big, 'random.bin'), randomBytes(3 * 1024 * 1024));
      const { service } = await openService(`{ kind: filesystem, path: ${join(small.path, 'backups')} }`, {
        files: [big],
      });
      await expect(service.create({ by: operator, components: ['files'] })).rejects.toThrow(/storage full/);
      const [set] = await service.list();
      expect(set).toMatchObject({ state: 'failed', manifestKey: null, objects: [] });
      expect(set?.error).toMatch(/storage full/);
      const left = await fsp.readdir(join(small.path, 'backups'), { recursive: true });
      expect(left.filter((name) => !name.endsWith('/') && /\.(age|json)$|\.tmp-/.test(name))).toEqual([]);
      await expect(service.verify(set!.id, { by: operator })).resolves.toMatchObject({ ok: false });
    } finally {
      await small.stop();
    }
  }, 120_000);

  it('the database dying mid-dump fails the set and removes its partial objects', async () => {
    const victim = await startMariaDB();
    try {
      await generateGameDatabase(
        { host: '127.0.0.1', port: victim.port, user: 'root', password: victim.password, database: 'gamedb' },
        { targetBytes: 24 * 1024 * 1024, chunkRows: 50_000, parallel: 1 },
      );
      const home = mkdtempSync(join(dir, 'victim-'));
      writeFileSync(join(home, 'pw'), victim.password, { mode: 0o600 });
      const storagePath = join(home, 'storage');
      writeFileSync(
        join(home, 'gameops.yaml'),
        [
          'service: { name: victim, environment: test }',
          `database: { dataDir: ${join(home, 'data')} }`,
          `mysql: { host: 127.0.0.1, port: ${victim.port}, user: root, password: "file:${join(home, 'pw')}", database: gamedb }`,
          `backups: { storage: { kind: filesystem, path: ${storagePath} }, encryption: { recipients: [${recipient}] }, mysql: { chunkBytes: 1048576 } }`,
        ].join('\n'),
      );
      const { config } = loadConfig({ path: join(home, 'gameops.yaml'), env: readEnv({}) });
      const store = await openStore({ dataDir: config.database.dataDir });
      stores.push(store);
      let killed = false;
      const service = createBackupService({
        config,
        store,
        clock: systemClock,
        log,
        leaseMs: 30_000,
      });
      services.push(service);
      const progress = {
        phase() {},
        note() {},
        add() {
          if (!killed) {
            killed = true;
            process.kill(victim.pid, 'SIGKILL');
          }
        },
      };
      await expect(service.create({ by: operator, progress })).rejects.toThrow();
      const [set] = await service.list();
      expect(set?.state).toBe('failed');
      expect(set?.manifestKey).toBeNull();
      const left = await fsp.readdir(storagePath, { recursive: true }).catch(() => []);
      expect(left.filter((n) => /\.(age|json)$/.test(n))).toEqual([]);
    } finally {
      await victim.stop();
    }
  }, 180_000);

  it('a flipped byte is named by verify; a wrong key is refused naming it; hostile ids are refused', async () => {
    const storagePath = join(dir, `fs-${randomBytes(3).toString('hex')}`);
    const { service, config, store, storage } = await openService(
      `{ kind: filesystem, path: ${storagePath} }`,
    );
    const set = await service.create({ by: operator, components: ['files', 'redis'] });
    const { manifest } = await service.show(set.id);
    const victim = manifest!.components.flatMap((c) => c.objects).find((o) => o.size > 1000)!;
    const file = join(storagePath, victim.key);
    const bytes = await fsp.readFile(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    await fsp.writeFile(file, bytes);
    const report = await service.verify(set.id, { by: operator });
    expect(report.ok).toBe(false);
    expect(report.firstBad?.key).toBe(victim.key);

    const other = await age.generateIdentity();
    const otherRecipient = await age.identityToRecipient(other);
    const wrong = createBackupService({
      config: {
        ...config,
        backups: {
          ...config.backups!,
          encryption: {
            ...config.backups!.encryption,
            identity: secret(`${other}\n`, 'file:/etc/gameops/other-key.txt'),
          },
        },
      },
      store,
      clock: systemClock,
      log,
      storage,
    });
    services.push(wrong);
    const refusal = wrong.verify(set.id, { by: operator });
    await expect(refusal).rejects.toThrow(InputError);
    await expect(refusal).rejects.toThrow(/other-key\.txt/);
    await expect(wrong.verify(set.id, { by: operator })).rejects.toThrow(otherRecipient.slice(0, 12));
    await expect(wrong.drill(set.id, { by: operator })).rejects.toThrow(InputError);

    for (const id of ['../../etc/passwd', 'bk-20261126T170500Z-../x', '', 'bk-bad'])
      await expect(service.show(id)).rejects.toThrow(InputError);
    await expect(service.show('bk-20261126T170500Z-000000')).rejects.toThrow(NotFoundError);
  }, 120_000);

  it('two backups started at once: one runs, the other is refused and never interleaves', async () => {
    const { service } = await openService(
      `{ kind: filesystem, path: ${join(dir, `fs-${randomBytes(3).toString('hex')}`)} }`,
    );
    const results = await Promise.allSettled([
      service.create({ by: operator, components: ['files', 'redis'] }),
      service.create({ by: operator, components: ['files', 'redis'] }),
    ]);
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(rejected).toHaveLength(1);
    expect(rejected[0]?.reason).toBeInstanceOf(ConflictError);
    expect((await service.list()).filter((s) => s.state === 'complete')).toHaveLength(1);
  }, 120_000);

  it('a lock held by a process of this host that is gone (Ctrl-C) is taken over at once; its set is abandoned', async () => {
    const { service, store } = await openService(
      `{ kind: filesystem, path: ${join(dir, `fs-${randomBytes(3).toString('hex')}`)} }`,
    );
    const gone = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    await new Promise((resolve) => gone.once('exit', resolve));
    await store.backups.begin({
      id: 'bk-20261126T100000Z-dead00',
      service: 'backup-e2e',
      environment: 'test',
      components: ['files'],
      storage: 'x',
      by: operator,
      holder: `${hostname()}:${gone.pid}`,
      leaseMs: 600_000,
    });
    const set = await service.create({ by: operator, components: ['files'] });
    expect(set.state).toBe('complete');
    const dead = await store.backups.get('bk-20261126T100000Z-dead00');
    expect(dead?.state).toBe('failed');
    expect(dead?.error).toMatch(/abandoned/);
  }, 60_000);

  it('prune --dry-run lists every set with its reasons and deletes nothing', async () => {
    const { service } = await openService(
      `{ kind: filesystem, path: ${join(dir, `fs-${randomBytes(3).toString('hex')}`)} }`,
    );
    const set = await service.create({ by: operator, components: ['files'] });
    const plan = await service.prune({ by: operator, dryRun: true });
    expect(plan.decisions.find((d) => d.id === set.id)).toMatchObject({ keep: true });
    expect(plan.decisions.find((d) => d.id === set.id)?.reasons.join(' ')).toMatch(/30 days/);
    expect(plan.deleted).toEqual([]);
  }, 60_000);
});
